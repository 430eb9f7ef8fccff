//! Runs every example that finishes on its own, so none can rot: each must
//! exit 0 within a time limit and print what it promises. (The job service
//! is the workspace member `server/`, with its own tests.)

mod common;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// An example that takes longer than this is killed and the test fails.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn panics() {
    let (out, err) = run_example_with("panics", &[]);
    assert_lines(
        &out,
        &[
            "start hook panicked 3 times; the supervisor respawned 3 workers; 2 of 2 alive",
            "a &str payload               -> failed: a &str payload",
            "a String payload             -> failed: a String payload: bad input on line 3",
            "a custom payload             -> failed: job panicked with a non-string payload",
            "a payload whose Drop panics  -> failed: job panicked with a non-string payload",
            "an Err (not a panic)         -> failed: returned an error",
            "a job that succeeds          -> completed",
            "an untracked job             -> failed: panicked",
            "stats: submitted 7, completed 1, failed 6 (5 of them panicked), cancelled 0",
            "workers alive: 2 of 2; restarts: 3 (all from the start hook)",
        ],
    );
    // Quiet: the panic hook prints nothing on the pool's threads, so stderr
    // holds only the pool's log, which has one warning per job panic.
    let records: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        records.iter().all(|l| l.starts_with('[')),
        "not a log record on stderr:\n{err}"
    );
    let job_panics = records
        .iter()
        .filter(|l| l.contains(" WARN ") && l.contains("panicked on panics-"))
        .count();
    // Every job submitted has a row, and the counters add up to the rows
    // (and the panics to the warnings).
    let rows: Vec<&str> = out
        .lines()
        .filter_map(|line| line.split_once(" -> ").map(|(_, outcome)| outcome))
        .collect();
    let count = |prefix: &str| rows.iter().filter(|r| r.starts_with(prefix)).count();
    let stats = out
        .lines()
        .find_map(|line| line.strip_prefix("stats: "))
        .expect("a stats line");
    let expected = format!(
        "submitted {}, completed {}, failed {} ({job_panics} of them panicked), cancelled {}",
        rows.len(),
        count("completed"),
        count("failed"),
        count("cancelled"),
    );
    assert_eq!(
        stats, expected,
        "the counters disagree with the rows in:\n{out}\nor the log:\n{err}"
    );
}

#[test]
fn soak() {
    let (out, _) = run_example_with("soak", &["--seconds", "3", "--threads", "2"]);
    assert_lines(&out, &["soak: seed ", "jobs: ", "RSS: max ", "soak: ok"]);
}

#[test]
fn cancel() {
    let out = run_example("cancel");
    assert_lines(
        &out,
        &[
            "sleeper is running, queued is pending",
            "cancel(queued)  -> cancelled",
            "cancel(sleeper) -> requested",
            "queued ended cancelled; its closure ran: false",
            "cancel(counter) -> requested",
            "job with a 100 ms timeout ended cancelled",
            "stubborn ended completed",
            "cancel(finished job) -> already_finished",
            "cancel(unknown id)   -> not_found",
            "stats: completed 1, cancelled 4, failed 0",
        ],
    );
}

#[test]
fn shutdown() {
    let out = run_example("shutdown");
    assert_lines(
        &out,
        &[
            "submit after shutdown -> error: pool is shut down",
            "running (1 h)      cancelled",
            "stats: cancelled 3, alive 0",
            "short (20 ms)      completed",
            "long (1 h)         cancelled",
            "shutdown_timeout returned true",
            "shutdown_timeout returned false",
            "the stubborn job finished later on its own: completed",
        ],
    );
}

#[test]
fn misbehaving() {
    let out = run_example("misbehaving");
    assert_lines(
        &out,
        &[
            "after its 100 ms deadline and 200 ms grace: Some(Abandoned)",
            "the pool still serves jobs (42); 2 workers alive, 1 stray thread",
            "at examples/misbehaving.rs:",
            ": index out of range",
            "cancel by id: requested",
            "the job ended Some(Cancelled)",
            "ended abandoned",
            "ended cancelled",
            "untracked jobs dropped: 1, stray threads left: 1, every other thread joined: true",
        ],
    );
    assert!(!out.contains("never printed"), "{out}");
}

/// Asserts that `out` contains every one of `lines`.
fn assert_lines(out: &str, lines: &[&str]) {
    for line in lines {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

/// Runs the example `name` to completion and returns its stdout. Fails if
/// it exits non-zero or runs past [`LIMIT`] (it is killed then).
fn run_example(name: &str) -> String {
    run_example_with(name, &[]).0
}

/// [`run_example`] with `args` (and `RUST_LOG` unset, so each example logs at
/// its default level); returns its stdout and stderr.
fn run_example_with(name: &str, args: &[&str]) -> (String, String) {
    let child = Command::new(common::example_binary(name))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("start example {name}: {err}"));
    let mut child = Killed(child);
    let stdout = drain(child.0.stdout.take().expect("piped stdout"));
    let stderr = drain(child.0.stderr.take().expect("piped stderr"));
    let status = wait_with_limit(&mut child.0, LIMIT)
        .unwrap_or_else(|| panic!("example {name} ran longer than {LIMIT:?}; killed"));
    // The pipes close when the process exits, so these joins return.
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.success(),
        "example {name} failed ({status})\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"
    );
    (stdout, stderr)
}

/// Kills the child if it is still running when dropped (a failed test).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The child's exit status, or `None` if it is still running after `limit`.
fn wait_with_limit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    // Polls: std offers no wait-with-timeout on a child.
    loop {
        if let Some(status) = child.try_wait().expect("query the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
