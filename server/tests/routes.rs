//! Everything the first version of the server (`examples/web_server.rs`,
//! tiny_http) was checked for, against `harbor-server`: routes, JSON shapes,
//! status codes, bad input, job lifecycles, full queues, bad flags.

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc::TryRecvError;

use common::{DEADLINE, Reply, Server, UNKNOWN_ID, eventually};

#[test]
fn index_lists_the_routes() {
    let server = Server::start(&[]);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    for route in ["/sleep", "/panic", "/jobs", "/stats", "/wait"] {
        assert!(page.body.contains(route), "the index lists {route}");
    }
    for route in ["/metrics", "\"progress\""] {
        assert!(page.body.contains(route), "the index lists {route}");
    }
    // Answered on a runtime thread: no request-pool worker is needed.
    assert!(page.header("x-worker").starts_with("rt-"));
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405() {
    let server = Server::start(&[]);
    for path in ["/nope", "/jobs/x/y", &format!("/jobs/{UNKNOWN_ID}/nope")] {
        server.get(path).expect_error(404);
    }
    let cases: [(&str, &str, &str); 7] = [
        ("PUT", "/", "GET"),
        ("POST", "/stats", "GET"),
        ("DELETE", "/panic", "GET"),
        ("POST", "/sleep", "GET"),
        ("GET", "/jobs", "POST"),
        ("PUT", &format!("/jobs/{UNKNOWN_ID}"), "GET, DELETE"),
        ("POST", &format!("/jobs/{UNKNOWN_ID}/wait"), "GET"),
    ];
    for (method, path, allow) in cases {
        let reply = server.request(method, path, None);
        reply.expect_error(405);
        assert_eq!(reply.header("allow"), allow, "{method} {path}");
    }
}

#[test]
fn malformed_input_is_400() {
    let server = Server::start(&[]);
    for path in [
        "/jobs/not-a-uuid",
        "/jobs/67e55044-10b1-426f-9247-bb680e5fe0cZ",
        "/jobs/67e5504410b1426f9247bb680e5fe0c8",
        "/jobs/not-a-uuid/wait",
    ] {
        let error = server.get(path).expect_error(400);
        assert!(error.contains("invalid job id"), "{path}: {error}");
    }
    server.delete("/jobs/not-a-uuid").expect_error(400);
    server
        .get(&format!("/jobs/{UNKNOWN_ID}/wait?timeout_ms=soon"))
        .expect_error(400);
    server.get("/sleep?ms=forever").expect_error(400);
    server.get("/sleep?ms=99999999").expect_error(400);

    let bodies = [
        ("", "malformed JSON"),
        ("not json", "malformed JSON"),
        ("{\"kind\":\"sleep\",\"ms\":", "malformed JSON"),
        ("[1, 2]", "JSON object"),
        ("{}", "kind"),
        ("{\"kind\":7}", "kind"),
        ("{\"kind\":\"dance\"}", "unknown kind"),
        ("{\"kind\":\"sleep\"}", "ms"),
        ("{\"kind\":\"sleep\",\"ms\":-1}", "ms"),
        ("{\"kind\":\"sleep\",\"ms\":\"2000\"}", "ms"),
        ("{\"kind\":\"count\"}", "to"),
        ("{\"kind\":\"fail\",\"message\":42}", "message"),
        (
            "{\"kind\":\"sleep\",\"ms\":1,\"timeout_ms\":\"x\"}",
            "timeout_ms",
        ),
    ];
    for (body, mentions) in bodies {
        let error = server.post("/jobs", body).expect_error(400);
        assert!(error.contains(mentions), "{body:?}: {error}");
    }
    let huge = format!(
        "{{\"kind\":\"fail\",\"message\":\"{}\"}}",
        "x".repeat(100_000)
    );
    server.post("/jobs", &huge).expect_error(413);
    // None of it hurt the server.
    let stats = server.stats();
    assert_eq!(stats["jobs"]["submitted"], 0);
    assert_eq!(stats["http"]["panicked"], 0);
}

#[test]
fn unknown_and_forgotten_ids_are_404() {
    let server = Server::start(&["--job-workers", "1", "--retain-finished", "1"]);
    server.get(&format!("/jobs/{UNKNOWN_ID}")).expect_error(404);
    server
        .delete(&format!("/jobs/{UNKNOWN_ID}"))
        .expect_error(404);
    server
        .get(&format!("/jobs/{UNKNOWN_ID}/wait?timeout_ms=10"))
        .expect_error(404);

    let first = server.submit(r#"{"kind":"sleep","ms":0}"#);
    assert_eq!(server.wait_finished(&first)["status"], "completed");
    let second = server.submit(r#"{"kind":"sleep","ms":0}"#);
    assert_eq!(server.wait_finished(&second)["status"], "completed");
    // Only one finished record is kept: the first is forgotten.
    eventually("the first job to be forgotten", || {
        (server.get(&format!("/jobs/{first}")).status == 404).then_some(())
    });
    server.get(&format!("/jobs/{first}")).expect_error(404);
    server.delete(&format!("/jobs/{first}")).expect_error(404);
    assert_eq!(server.job(&second)["status"], "completed");
}

#[test]
fn a_completed_job_reports_its_times_and_worker() {
    let server = Server::start(&[]);
    let reply = server.post("/jobs", r#"{"kind":"sleep","ms":50}"#);
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["id"].as_str().expect("an id").to_owned();
    assert_eq!(reply.header("location"), format!("/jobs/{id}"));

    let job = server.wait_finished(&id);
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["status"], "completed");
    assert_eq!(job["finished"], true);
    assert!(job.get("error").is_none(), "{job}");
    assert!(job["timeout_ms"].is_null());
    assert!(
        job["progress"].is_null(),
        "a sleep job reports no progress: {job}"
    );
    assert!(
        job["worker"]
            .as_str()
            .expect("a worker")
            .starts_with("job-")
    );
    let times: Vec<&str> = ["submitted_at", "started_at", "finished_at"]
        .iter()
        .map(|field| job[field].as_str().expect("a time"))
        .collect();
    for time in &times {
        // RFC 3339, UTC, milliseconds: 2025-01-31T12:00:00.250Z
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    }
    assert!(
        times.is_sorted(),
        "submitted <= started <= finished: {times:?}"
    );
    assert_eq!(server.job(&id), job, "GET /jobs/<id> agrees with /wait");

    let count = server.submit(r#"{"kind":"count","to":100000}"#);
    assert_eq!(server.wait_finished(&count)["status"], "completed");

    let reply = server.delete(&format!("/jobs/{id}"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["outcome"], "already_finished");
}

#[test]
fn failing_jobs_are_failed_with_their_message() {
    let server = Server::start(&[]);
    let failed = server.submit(r#"{"kind":"fail","message":"bad input on line 3"}"#);
    let panicked = server.submit(r#"{"kind":"panic","message":"boom in a job"}"#);

    let job = server.wait_finished(&failed);
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "bad input on line 3");
    let job = server.wait_finished(&panicked);
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "boom in a job");
    assert_eq!(server.job(&panicked)["error"], "boom in a job");

    let stats = eventually("both failures counted", || {
        let stats = server.stats();
        (stats["jobs"]["failed"] == 2).then_some(stats)
    });
    assert_eq!(stats["jobs"]["panicked"], 1);
    // The panic cost the job pool no thread.
    assert_eq!(stats["jobs"]["alive"], stats["jobs"]["workers"]);
    assert_eq!(stats["jobs"]["restarts"], 0);
}

#[test]
fn jobs_are_cancelled_by_id_while_pending_and_while_running() {
    let server = Server::start(&["--job-workers", "1"]);
    let running = server.submit(r#"{"kind":"sleep","ms":60000}"#);
    server.wait_running(&running);
    // The only job worker is busy for a minute, so this one stays pending.
    let pending = server.submit(r#"{"kind":"count","to":1000000000000000}"#);
    assert_eq!(server.job(&pending)["status"], "pending");

    let reply = server.delete(&format!("/jobs/{pending}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["outcome"], "cancelled");
    let job = server.wait_finished(&pending);
    assert_eq!(job["status"], "cancelled");
    assert!(job["started_at"].is_null(), "never ran: {job}");

    let reply = server.delete(&format!("/jobs/{running}"));
    assert_eq!(reply.json()["outcome"], "requested");
    let job = server.wait_finished(&running);
    assert_eq!(job["status"], "cancelled");
    assert!(job.get("error").is_none(), "{job}");

    // A CPU-bound job notices through token.check().
    let counting = server.submit(r#"{"kind":"count","to":1000000000000000}"#);
    server.wait_running(&counting);
    assert_eq!(
        server.delete(&format!("/jobs/{counting}")).json()["outcome"],
        "requested"
    );
    assert_eq!(server.wait_finished(&counting)["status"], "cancelled");

    assert_eq!(
        server.delete(&format!("/jobs/{running}")).json()["outcome"],
        "already_finished"
    );
    let stats = eventually("three cancellations counted", || {
        let stats = server.stats();
        (stats["jobs"]["cancelled"] == 3).then_some(stats)
    });
    assert_eq!(stats["jobs"]["failed"], 0);
}

#[test]
fn timeout_ms_cancels_a_job_at_its_deadline() {
    let server = Server::start(&[]);
    let id = server.submit(r#"{"kind":"sleep","ms":60000,"timeout_ms":100}"#);
    let job = server.wait_finished(&id);
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["timeout_ms"], 100);
}

#[test]
fn wait_times_out_with_the_current_status() {
    let server = Server::start(&[]);
    let id = server.submit(r#"{"kind":"sleep","ms":60000}"#);
    let reply = server.get(&format!("/jobs/{id}/wait?timeout_ms=50"));
    assert_eq!(reply.status, 200);
    let job = reply.json();
    assert_eq!(job["finished"], false);
    assert!(matches!(
        job["status"].as_str(),
        Some("pending" | "running")
    ));
    server.delete(&format!("/jobs/{id}"));
    assert_eq!(server.wait_finished(&id)["status"], "cancelled");
}

#[test]
fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
    let server = Server::start(&["--workers", "2"]);
    for _ in 0..3 {
        let reply = server.get("/panic");
        let error = reply.expect_error(500);
        assert!(error.contains("panicked"), "{error}");
        assert!(error.contains("deliberate panic"), "{error}");
        // The panic happened on a request-pool worker.
        assert!(reply.header("x-worker").starts_with("http-"), "{reply:?}");
    }
    for _ in 0..10 {
        assert_eq!(server.get("/").status, 200);
    }
    // The handler hears of the panic as the job ends; the pool's counters
    // may lag a moment.
    let stats = eventually("three handler panics counted", || {
        let stats = server.stats();
        (stats["http"]["panicked"] == 3).then_some(stats)
    });
    let http = &stats["http"];
    assert_eq!(http["failed"], 3);
    // Caught, not fatal: no worker died or had to be respawned.
    assert_eq!(http["alive"], 2);
    assert_eq!(http["restarts"], 0);
}

#[test]
fn sleep_answers_after_5_s_while_other_requests_are_served() {
    let server = Server::start(&[]);
    let sleeper = server.in_background("/sleep");
    // The sleeper is a job on the request pool; /stats runs on the runtime.
    eventually("/sleep to be running", || {
        (server.stats()["http"]["busy"].as_u64() >= Some(1)).then_some(())
    });
    assert_eq!(server.get("/").status, 200);
    assert_eq!(server.get("/stats").status, 200);
    assert!(
        matches!(sleeper.try_recv(), Err(TryRecvError::Empty)),
        "other requests were answered while /sleep was still running"
    );
    let slept = sleeper.recv_timeout(DEADLINE).expect("/sleep answers");
    assert_eq!(slept.status, 200);
    assert_eq!(slept.json()["slept_ms"], 5000);
    // The job ran on a request-pool worker.
    assert!(slept.header("x-worker").starts_with("http-"), "{slept:?}");
}

#[test]
fn full_queues_answer_503() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--queue",
        "1",
        "--job-workers",
        "1",
        "--job-queue",
        "1",
    ]);

    // One job worker and one queue slot: of three long jobs, at least one
    // finds the queue full.
    let replies: Vec<Reply> = (0..3)
        .map(|_| server.post("/jobs", r#"{"kind":"sleep","ms":60000}"#))
        .collect();
    let full: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert!(!full.is_empty(), "a full job queue answers 503");
    for reply in &full {
        assert!(reply.error().contains("queue is full"), "{}", reply.body);
        assert_eq!(reply.header("retry-after"), "1");
    }
    for reply in replies.iter().filter(|r| r.status != 503) {
        assert_eq!(reply.status, 202, "{}", reply.body);
        let id = reply.json()["id"].as_str().expect("an id").to_owned();
        server.delete(&format!("/jobs/{id}"));
        assert_eq!(server.wait_finished(&id)["status"], "cancelled");
    }

    // One request worker and one queue slot: of four slow requests sent at
    // once, at least one is refused at the door.
    let sleepers: Vec<_> = (0..4)
        .map(|_| server.in_background("/sleep?ms=1500"))
        .collect();
    let replies: Vec<Reply> = sleepers
        .iter()
        .map(|sleeper| {
            sleeper
                .recv_timeout(DEADLINE)
                .expect("every request is answered")
        })
        .collect();
    let refused = replies.iter().filter(|r| r.status == 503).count();
    assert!(refused >= 1, "a full request queue answers 503");
    for reply in &replies {
        match reply.status {
            200 => assert_eq!(reply.json()["slept_ms"], 1500),
            _ => assert!(reply.expect_error(503).contains("request queue is full")),
        }
    }
    assert_eq!(server.get("/").status, 200, "the server recovers");
}

#[test]
fn bad_arguments_exit_2_with_the_usage() {
    for (args, message) in [
        (&["--frobnicate"][..], "unknown option --frobnicate"),
        (&["--workers", "0"], "--workers 0: must be from 1 to 4096"),
        (&["--max-body-bytes", "lots"], "--max-body-bytes lots: "),
        (
            &["--header-timeout-ms"],
            "--header-timeout-ms needs a value",
        ),
    ] {
        let output = Command::new(common::binary())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run harbor-server");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: harbor-server"), "{stderr}");
    }
    let help = Command::new(common::binary())
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .expect("run harbor-server --help");
    assert_eq!(help.status.code(), Some(0));
    let usage = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--addr",
        "--workers",
        "--queue",
        "--job-workers",
        "--job-queue",
        "--retain-finished",
        "--http-threads",
        "--max-connections",
        "--max-header-bytes",
        "--max-body-bytes",
        "--header-timeout-ms",
        "--body-timeout-ms",
        "--keep-alive-timeout-ms",
        "--request-timeout-ms",
        "--shutdown-grace-ms",
    ] {
        assert!(usage.contains(flag), "{flag} in\n{usage}");
    }
}

#[test]
fn a_port_in_use_is_an_error_not_a_hang() {
    let server = Server::start(&[]);
    let output = Command::new(common::binary())
        .args(["--addr", &server.addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run a second harbor-server");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}
