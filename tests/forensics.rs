//! Panic forensics: the location and backtrace of a job's panic, the
//! process-wide hook that captures them and how it chains to the hook
//! installed before it.
//!
//! Alone in its own test binary, in one test run in order: the pool's hook
//! is installed once per process, and which hook was there first matters.

mod common;

use std::backtrace::BacktraceStatus;
use std::panic::{self, PanicHookInfo};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use harbor_pool::{CapturePanics, JobHandle, JobPanic, JobResult, JobStatus, Pool};

const NON_STRING: &str = "job panicked with a non-string payload";

/// Every panic the previous hook saw: (thread name, message).
static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn seen() -> Vec<(String, String)> {
    SEEN.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// How many panics on threads named `prefix...` with `message` the previous
/// hook saw.
fn seen_count(prefix: &str, message: &str) -> usize {
    seen()
        .iter()
        .filter(|(thread, text)| thread.starts_with(prefix) && text == message)
        .count()
}

fn payload_text(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        NON_STRING.to_owned()
    }
}

/// The hook installed before any pool's: counts every panic, and reports
/// those other than this test's own (on a thread or with a message starting
/// "fx-") as the default hook would, so a failing assertion still shows.
fn install_counting_hook() -> usize {
    let default = panic::take_hook();
    // Not a zero-sized closure, so its box has an address of its own.
    let tag = String::from("counting hook");
    let hook: Box<dyn Fn(&PanicHookInfo<'_>) + Send + Sync> = Box::new(move |info| {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        let message = payload_text(info);
        let quiet = thread.starts_with("fx-") || message.starts_with("fx-");
        SEEN.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((thread, message));
        if !quiet && !tag.is_empty() {
            default(info);
        }
    });
    let address = hook_address(&*hook);
    panic::set_hook(hook);
    address
}

/// The address of the hook installed now (put back at once).
fn current_hook_address() -> usize {
    let hook = panic::take_hook();
    let address = hook_address(&*hook);
    panic::set_hook(hook);
    address
}

/// Where a hook's closure lives: the box's data, not the box.
fn hook_address(hook: &(dyn Fn(&PanicHookInfo<'_>) + Send + Sync)) -> usize {
    hook as *const (dyn Fn(&PanicHookInfo<'_>) + Send + Sync) as *const () as usize
}

fn pool(name: &str, capture: CapturePanics, quiet: bool) -> Pool {
    Pool::builder()
        .workers(1)
        .thread_name(name)
        .capture_panics(capture)
        .quiet_panics(quiet)
        .build()
        .unwrap()
}

/// The job's panic as its record shows it, once it is terminal.
fn panic_of<T>(pool: &Pool, job: &JobHandle<T>) -> Arc<JobPanic> {
    assert!(
        matches!(job.wait(common::PATIENCE), Some(JobStatus::Failed(_))),
        "the job did not fail in time"
    );
    pool.info(job.id())
        .expect("retained")
        .panic
        .expect("a panic recorded")
}

/// A payload that is neither `&str` nor `String`.
#[derive(Debug)]
struct Custom(#[allow(dead_code)] u32);

#[test]
fn forensics_in_one_process() {
    common::init_logging();
    let counting = install_counting_hook();

    // 1. `Off` touches no hook; the job panic reaches the previous hook as
    //    before, and the record still has the message and the thread.
    let off = pool("fx-off", CapturePanics::Off, false);
    assert_eq!(current_hook_address(), counting, "Off installed a hook");
    let job = off.submit(|_| -> JobResult<()> { panic!("off") }).unwrap();
    let panic = panic_of(&off, &job);
    assert_eq!(
        (panic.message.as_str(), panic.thread.as_str()),
        ("off", "fx-off-0")
    );
    assert!(panic.location.is_none() && panic.backtrace.is_none());
    assert_eq!(seen_count("fx-off-0", "off"), 1);

    // 2. The first pool that captures installs the hook, once.
    let traced = pool("fx-bt", CapturePanics::LocationAndBacktrace, false);
    let installed = current_hook_address();
    assert_ne!(installed, counting, "no hook installed");
    let located = pool("fx-loc", CapturePanics::Location, true);
    assert_eq!(current_hook_address(), installed, "installed twice");

    // 3. Location and backtrace for every kind of payload.
    let line_str = line!() + 2;
    let str_job = traced
        .submit(|_| -> JobResult<()> { panic!("static") })
        .unwrap();
    let line_string = line!() + 2;
    let string_job = traced
        .submit(|_| -> JobResult<()> { panic!("formatted {}", 42) })
        .unwrap();
    let line_custom = line!() + 2;
    let custom_job = traced
        .submit(|_| -> JobResult<()> { panic::panic_any(Custom(7)) })
        .unwrap();
    for (job, line, message) in [
        (&str_job, line_str, "static"),
        (&string_job, line_string, "formatted 42"),
        (&custom_job, line_custom, NON_STRING),
    ] {
        let panic = panic_of(&traced, job);
        assert_eq!(panic.message, message);
        assert_eq!(panic.thread, "fx-bt-0");
        let location = panic.location.clone().expect("location captured");
        assert_eq!(
            (location.file.as_str(), location.line),
            (file!(), line),
            "{message}"
        );
        assert!(location.column > 1, "{location}");
        let backtrace = panic.backtrace.clone().expect("backtrace captured");
        assert_eq!(backtrace.status(), BacktraceStatus::Captured);
        // The job's own frames are in it: the closure in this test.
        let text = backtrace.to_string();
        assert!(text.contains("forensics_in_one_process"), "{text}");
        // Not quiet: the previous hook saw it too.
        assert_eq!(seen_count("fx-bt-0", message), 1, "{message}");
        // Snapshots of one record compare equal (the same backtrace).
        assert_eq!(traced.info(job.id()), traced.info(job.id()));
    }
    assert_eq!(
        str_job.join().unwrap_err().to_string(),
        "job panicked: static"
    );

    // 4. Another pool, other settings, in the same process: a location and
    //    no backtrace, and quiet: the previous hook never sees it.
    let line = line!() + 2;
    let job = located
        .submit(|_| -> JobResult<()> { panic!("quiet") })
        .unwrap();
    let panic = panic_of(&located, &job);
    assert_eq!(panic.location.as_ref().map(|l| l.line), Some(line));
    assert!(panic.backtrace.is_none());
    assert_eq!(
        seen_count("fx-loc", "quiet"),
        0,
        "a quiet pool's panic was reported"
    );

    // 5. The `Off` pool is still untouched by the hook: nothing captured, the
    //    previous hook sees its panics.
    let job = off
        .submit(|_| -> JobResult<()> { panic!("off again") })
        .unwrap();
    let panic = panic_of(&off, &job);
    assert!(panic.location.is_none() && panic.backtrace.is_none());
    assert_eq!(seen_count("fx-off-0", "off again"), 1);
    // Untracked jobs are captured (and silenced) the same way.
    located.execute(|| panic!("untracked quiet")).unwrap();
    common::join(&located);
    assert_eq!(seen_count("fx-loc", "untracked quiet"), 0);

    // 6. Panics that are not a job's reach the previous hook unchanged: on
    //    another thread, on the test's own thread, and on a quiet pool's
    //    worker outside a job (its start hook).
    std::thread::Builder::new()
        .name("fx-outside".into())
        .spawn(|| panic!("outside"))
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(seen_count("fx-outside", "outside"), 1);
    let _ = panic::catch_unwind(|| panic!("fx-on the test thread"));
    assert_eq!(
        seen()
            .iter()
            .filter(|(_, m)| m == "fx-on the test thread")
            .count(),
        1
    );
    let hooked = Pool::builder()
        .workers(1)
        .thread_name("fx-start")
        .quiet_panics(true)
        .capture_panics(CapturePanics::Location)
        .restart_limit(10, std::time::Duration::from_secs(60))
        .on_thread_start(|_| {
            static ONCE: std::sync::Once = std::sync::Once::new();
            let mut first = false;
            ONCE.call_once(|| first = true);
            if first {
                panic!("start hook");
            }
        })
        .build()
        .unwrap();
    assert!(common::eventually(|| hooked.stats().alive == 1));
    assert_eq!(seen_count("fx-start-0", "start hook"), 1);
    // ... and the `on_panic` callback of a quiet pool: the slot is disarmed
    // before it runs.
    let calling = Pool::builder()
        .workers(1)
        .thread_name("fx-cb")
        .quiet_panics(true)
        .on_panic(|report| panic!("callback for {}", report.panic.message))
        .build()
        .unwrap();
    let job = calling
        .submit(|_| -> JobResult<()> { panic!("job") })
        .unwrap();
    assert!(job.join().is_err());
    calling.shutdown(); // joins the worker: the callback is over
    assert_eq!(seen_count("fx-cb-0", "job"), 0);
    assert_eq!(seen_count("fx-cb-0", "callback for job"), 1);

    // 7. A panic the job caught itself is not taken for the one that ended
    //    it: the location is the last panic's; a payload re-raised with
    //    `resume_unwind` (which skips the hooks) has none.
    let line = line!() + 4;
    let job = located
        .submit(|_| -> JobResult<()> {
            let _ = panic::catch_unwind(|| panic!("caught inside"));
            panic!("after")
        })
        .unwrap();
    let panic = panic_of(&located, &job);
    assert_eq!(panic.message, "after");
    assert_eq!(panic.location.as_ref().map(|l| l.line), Some(line));
    let job = located
        .submit(|_| -> JobResult<()> {
            let caught = panic::catch_unwind(|| panic!("first")).unwrap_err();
            drop(caught);
            panic::resume_unwind(Box::new("re-raised"))
        })
        .unwrap();
    let panic = panic_of(&located, &job);
    assert_eq!(panic.message, "re-raised");
    assert_eq!(panic.location, None, "the caught panic's location was kept");

    // 8. A job run inline by a job that waits for it (one worker) gets its
    //    own capture, and the outer job's is intact after it.
    let located = Arc::new(located);
    let inner_pool = Arc::clone(&located);
    let (id_tx, id_rx) = mpsc::channel();
    let inner_line = line!() + 3;
    let outer = located
        .submit(move |_| -> JobResult<()> {
            let inner = inner_pool.submit(|_| -> JobResult<()> { panic!("inner") })?;
            id_tx.send(inner.id()).unwrap();
            assert!(inner.join().is_err());
            panic!("outer")
        })
        .unwrap();
    let panic = panic_of(&located, &outer);
    assert_eq!(panic.message, "outer");
    assert_eq!(
        panic.location.as_ref().map(|l| l.line),
        Some(inner_line + 3)
    );
    let inner = id_rx.recv_timeout(common::PATIENCE).unwrap();
    let panic = located.info(inner).unwrap().panic.unwrap();
    assert_eq!(panic.message, "inner");
    assert_eq!(panic.location.as_ref().map(|l| l.line), Some(inner_line));
    assert_eq!(panic.thread, "fx-loc-0", "run inline on the waiting worker");
    assert_eq!(
        seen_count("fx-loc", "inner") + seen_count("fx-loc", "outer"),
        0
    );
}
