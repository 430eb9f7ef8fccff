//! Helpers shared by the integration tests.
//!
//! Every wait here is bounded by a deadline, so a bug fails the test instead
//! of hanging CI.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "soon" on a loaded 2-core CI box.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `condition` holds, checking every millisecond, for at most
/// `PATIENCE`. Returns whether it held. This awaits an eventual state with a
/// deadline; it is not used to order events (channels and barriers do that).
pub(crate) fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `pool.join()`, bounded: fails the test if the pool is not idle within
/// `PATIENCE`, instead of hanging it.
pub(crate) fn join(pool: &harbor_pool::Pool) {
    assert!(
        pool.join_timeout(PATIENCE),
        "the pool did not become idle within {PATIENCE:?}"
    );
}

/// Occupies one worker of `pool` with a job that returns once the returned
/// sender is used (or dropped). Returns after the job has started.
pub(crate) fn block_worker(pool: &harbor_pool::Pool) -> std::sync::mpsc::Sender<()> {
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    pool.execute(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(PATIENCE);
    })
    .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    release_tx
}

/// Names of this process's threads (Linux truncates them to 15 bytes).
pub(crate) fn thread_names() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// Whether every thread whose name starts with `prefix` is gone, waiting up
/// to `PATIENCE`. A joined thread has finished running, but Linux removes it
/// from `/proc/self/task` a moment after `pthread_join` returns (the join
/// wakes when the thread's id is cleared, early in the kernel's exit path),
/// so this awaits that instead of reading the list once.
pub(crate) fn no_threads_named(prefix: &str) -> bool {
    eventually(|| threads_named(prefix) == 0)
}

/// How many of this process's threads have a name starting with `prefix`.
pub(crate) fn threads_named(prefix: &str) -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with(prefix))
        .count()
}

/// Installs a panic hook that stays quiet for the deliberate panics on pool
/// threads (named `...-N`; their messages are asserted through job statuses
/// instead) and reports every other panic, such as a failing assertion, as
/// usual.
pub(crate) fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            let pool_thread = name
                .rsplit_once('-')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !pool_thread {
                report(info);
            }
        }));
    });
}

/// Starts env_logger once (RUST_LOG=debug shows the pool's lifecycle).
pub(crate) fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// The built example `name`, building it if it is missing or older than
/// its sources. `cargo test` builds examples before running tests, next to
/// this test binary: `target/<profile>/deps/<test>` ->
/// `target/<profile>/examples/<name>`.
pub(crate) fn example_binary(name: &str) -> PathBuf {
    static CHECKED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    // Held while building, so tests running in parallel build one at a time.
    let mut checked = CHECKED.lock().unwrap_or_else(PoisonError::into_inner);
    if !checked.iter().any(|done| done == name) {
        if !is_fresh(&binary, name) {
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .args(["build", "--quiet", "--example", name])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name() == Some("release".as_ref()) {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("run cargo build");
            assert!(status.success(), "cargo build --example {name} failed");
        }
        checked.push(name.to_owned());
    }
    assert!(binary.exists(), "no example binary at {}", binary.display());
    binary
}

/// `true` if `binary` exists and is newer than the files it is built from.
fn is_fresh(binary: &Path, name: &str) -> bool {
    let modified = |path: &Path| path.metadata().and_then(|meta| meta.modified()).ok();
    let Some(built) = modified(binary) else {
        return false;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![
        root.join("Cargo.toml"),
        root.join("examples").join(format!("{name}.rs")),
    ];
    if let Ok(entries) = std::fs::read_dir(root.join("src")) {
        sources.extend(entries.flatten().map(|entry| entry.path()));
    }
    sources
        .iter()
        .all(|source| modified(source).is_none_or(|time| time <= built))
}
