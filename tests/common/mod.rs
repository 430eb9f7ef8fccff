//! Helpers shared by the integration tests.
//!
//! Every wait here is bounded by a deadline, so a bug fails the test instead
//! of hanging CI.
#![allow(dead_code)] // each test binary uses a different subset

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
