//! `GET /metrics` and the job progress `GET /jobs/<id>` reports.

mod common;

use common::{Server, eventually};

/// The value of the sample line that starts with `series ` in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[test]
fn metrics_expose_both_pools_latencies_and_http() {
    let server = Server::start(&["--job-workers", "3", "--max-body-bytes", "100"]);
    let id = server.submit(r#"{"kind":"sleep","ms":0}"#);
    server.wait_finished(&id);
    let failed = server.submit(r#"{"kind":"panic","message":"boom"}"#);
    server.wait_finished(&failed);
    server.get("/panic").expect_error(500);
    server.get("/nope").expect_error(404);
    server.post("/jobs", &"x".repeat(200)).expect_error(413);

    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .starts_with("application/openmetrics-text"),
        "{:?}",
        reply.headers
    );
    let text = &reply.body;
    assert!(text.ends_with("# EOF\n"), "{text}");
    let value =
        |series: &str| sample(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(value("harbor_pool_workers{pool=\"jobs\"}"), 3.0);
    assert_eq!(value("harbor_pool_workers{pool=\"http\"}"), 8.0);
    assert_eq!(value("harbor_pool_alive_workers{pool=\"jobs\"}"), 3.0);
    assert_eq!(
        value("harbor_pool_jobs_submitted_total{pool=\"jobs\"}"),
        2.0
    );
    assert_eq!(
        value("harbor_pool_jobs_completed_total{pool=\"jobs\"}"),
        1.0
    );
    assert_eq!(value("harbor_pool_jobs_panicked_total{pool=\"jobs\"}"), 1.0);
    assert_eq!(value("harbor_pool_jobs_panicked_total{pool=\"http\"}"), 1.0);
    assert_eq!(
        value("harbor_pool_worker_restarts_total{pool=\"jobs\"}"),
        0.0
    );
    for pool in ["jobs", "http"] {
        for histogram in [
            "harbor_pool_queue_wait_seconds",
            "harbor_pool_run_time_seconds",
        ] {
            let count = value(&format!("{histogram}_count{{pool=\"{pool}\"}}"));
            let inf = value(&format!(
                "{histogram}_bucket{{le=\"+Inf\",pool=\"{pool}\"}}"
            ));
            assert!(count >= 1.0, "{histogram} {pool}");
            assert_eq!(count, inf, "{histogram} {pool}: +Inf holds every job");
        }
    }
    assert_eq!(
        value("http_requests_total{route=\"/panic\",status=\"500\"}"),
        1.0
    );
    assert_eq!(
        value("http_requests_total{route=\"unmatched\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        value("http_requests_total{route=\"/jobs\",status=\"413\"}"),
        1.0
    );
    assert!(value("http_requests_total{route=\"/jobs/{id}/wait\",status=\"200\"}") >= 2.0);
    assert!(value("http_request_duration_seconds_count{route=\"/jobs\"}") >= 3.0);
    assert_eq!(
        value("http_limit_rejections_total{limit=\"body_bytes\"}"),
        1.0
    );
    assert!(value("http_open_connections") >= 1.0);
    assert!(value("http_connections_accepted_total") >= 1.0);
    assert_eq!(value("http_connections_refused_total"), 0.0);

    // The scrape itself is counted by the next one.
    let again = server.get("/metrics").body;
    assert_eq!(
        sample(
            &again,
            "http_requests_total{route=\"/metrics\",status=\"200\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn a_progress_job_reports_each_step() {
    let server = Server::start(&[]);
    let id = server.submit(r#"{"kind":"progress","steps":4,"ms":100}"#);
    let finished = server.wait_finished(&id);
    assert_eq!(finished["status"], "completed");
    assert_eq!(finished["progress"]["done"], 4);
    assert_eq!(finished["progress"]["total"], 4);
    assert_eq!(finished["progress"]["message"], "step 4 of 4");
    assert_eq!(server.job(&id)["progress"], finished["progress"]);

    // Seen part-way, and cancelled part-way: it stops where it was.
    let id = server.submit(r#"{"kind":"progress","steps":1000,"ms":20}"#);
    let partway = eventually("a step or two to be done", || {
        let job = server.job(&id);
        (job["progress"]["done"].as_u64() >= Some(2)).then_some(job)
    });
    assert_eq!(partway["status"], "running");
    assert_eq!(partway["progress"]["total"], 1000);
    assert_eq!(
        server.delete(&format!("/jobs/{id}")).json()["outcome"],
        "requested"
    );
    let cancelled = server.wait_finished(&id);
    assert_eq!(cancelled["status"], "cancelled");
    let done = cancelled["progress"]["done"].as_u64().expect("a count");
    assert!((2..1000).contains(&done), "{cancelled}");

    for (body, mentions) in [
        (r#"{"kind":"progress","ms":1}"#, "steps"),
        (r#"{"kind":"progress","steps":5}"#, "ms"),
        (
            r#"{"kind":"progress","steps":100000,"ms":100000}"#,
            "at most",
        ),
    ] {
        let error = server.post("/jobs", body).expect_error(400);
        assert!(error.contains(mentions), "{body}: {error}");
    }
}
