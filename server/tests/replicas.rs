//! Two `harbor-server` replicas sharing one PostgreSQL (`--database-url`):
//! status, progress, waits and cancels by id across them; a replica killed
//! with SIGKILL, restarted; PostgreSQL stopped under load; a clean stop.
//!
//! Each test starts its own PostgreSQL with the store's launcher
//! (`harbor_store_postgres::testing`), skipped with a notice where the
//! binaries are absent unless `HARBOR_REQUIRE_POSTGRES=1`. Every wait is
//! bounded: HTTP calls by the client's timeout, conditions by
//! [`common::eventually`], long-polls by their `timeout_ms`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{DEADLINE, Server, UNKNOWN_ID, eventually};
use harbor_store_postgres::testing::Postgres;
use serde_json::Value;

/// A replica `id` on `pg` with the tests' short periods: a lease of
/// `lease_ms`, polls of 300 ms, and `extra` flags.
fn replica(pg: &Postgres, id: &str, lease_ms: u64, extra: &[&str]) -> Server {
    let url = pg.url();
    let lease = lease_ms.to_string();
    let mut args = vec![
        "--database-url",
        url.as_str(),
        "--replica-id",
        id,
        "--lease-ms",
        lease.as_str(),
        "--cancel-poll-ms",
        "300",
        "--wait-poll-ms",
        "300",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// `GET /jobs/<id>` on `server` once it answers 200 with `check` true.
fn seen(server: &Server, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(what, || {
        let reply = server.get(&format!("/jobs/{id}"));
        if reply.status != 200 {
            return None;
        }
        let job = reply.json();
        check(&job).then_some(job)
    })
}

#[test]
fn a_job_on_a_is_seen_on_b_with_its_progress_and_waited_for_there() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let a = replica(&pg, "a", 15_000, &[]);
    let b = replica(&pg, "b", 15_000, &[]);

    let id = a.submit(r#"{"kind":"progress","steps":40,"ms":50}"#);
    // Locally, the in-memory JSON plus the replica.
    let local = a.job(&id);
    assert_eq!(local["replica"], "a", "{local}");
    assert_eq!(local["replica_address"], a.base.as_str(), "{local}");
    assert!(local.get("worker").is_some() && local.get("timeout_ms").is_some());

    // On B, from the store: running, with progress, owned by A.
    let remote = seen(&b, &id, "B to see the job running with progress", |job| {
        job["status"] == "running" && job["progress"]["done"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(remote["replica"], "a", "{remote}");
    assert_eq!(remote["replica_address"], a.base.as_str(), "{remote}");
    assert_eq!(remote["progress"]["total"], 40, "{remote}");
    assert_eq!(remote["finished"], false, "{remote}");
    for field in ["submitted_at", "started_at", "worker", "timeout_ms"] {
        assert!(remote.get(field).is_some(), "{field} in {remote}");
    }

    // /wait on B for A's job: answered when A writes its end.
    let reply = b.get(&format!("/jobs/{id}/wait?timeout_ms=15000"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let done = reply.json();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["finished"], true, "{done}");
    assert_eq!(done["progress"]["done"], 40, "{done}");
    assert!(done["finished_at"].is_string(), "{done}");

    // A failure's text travels too.
    let failed = a.submit(r#"{"kind":"fail","message":"bad input"}"#);
    let job = seen(&b, &failed, "B to see the failure", |job| {
        job["finished"] == true
    });
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"], "bad input", "{job}");

    // Nobody's job: 404 from both routes, at once.
    for path in [
        format!("/jobs/{UNKNOWN_ID}"),
        format!("/jobs/{UNKNOWN_ID}/wait?timeout_ms=30000"),
    ] {
        let started = Instant::now();
        let error = b.get(&path).expect_error(404);
        assert!(error.contains("on any replica"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10), "{path}");
    }
    let error = b.delete(&format!("/jobs/{UNKNOWN_ID}")).expect_error(404);
    assert!(error.contains("on any replica"), "{error}");
}

#[test]
fn a_cancel_on_b_reaches_a_running_job_on_a_within_a_second() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let a = replica(&pg, "a", 15_000, &[]);
    let b = replica(&pg, "b", 15_000, &[]);

    let id = a.submit(r#"{"kind":"sleep","ms":60000}"#);
    a.wait_running(&id);
    seen(&b, &id, "B to see the job running", |job| {
        job["status"] == "running"
    });

    let asked = Instant::now();
    let reply = b.delete(&format!("/jobs/{id}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let outcome = reply.json();
    assert_eq!(outcome["outcome"], "requested", "{outcome}");
    assert_eq!(outcome["replica"], "a", "{outcome}");
    // A's own long-poll answers as soon as its pool cancels the job.
    let reply = a.get(&format!("/jobs/{id}/wait?timeout_ms=1000"));
    let took = asked.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let job = reply.json();
    assert_eq!(job["status"], "cancelled", "after {took:?}: {job}");
    assert!(
        took <= Duration::from_secs(1),
        "cancelled on A {took:?} after the DELETE on B"
    );

    // B reads it cancelled, with the request's time.
    let job = seen(&b, &id, "B to see the job cancelled", |job| {
        job["status"] == "cancelled"
    });
    assert!(job["cancel_requested_at"].is_string(), "{job}");
    // Cancelling it again from B: already finished.
    let again = b.delete(&format!("/jobs/{id}")).json();
    assert_eq!(again["outcome"], "already_finished", "{again}");
    assert_eq!(again["status"], "cancelled", "{again}");
    // From A, its own pool answers.
    let local = a.delete(&format!("/jobs/{id}")).json();
    assert_eq!(local["outcome"], "already_finished", "{local}");
    assert_eq!(local["replica"], "a", "{local}");
}

#[test]
fn a_killed_replica_s_jobs_become_lost_after_its_lease_and_its_restart_serves_new_ones() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    // One job worker on A: one job running, one pending behind it.
    let mut a = replica(&pg, "a", 2_000, &["--job-workers", "1"]);
    let b = replica(&pg, "b", 2_000, &[]);

    let done = a.submit(r#"{"kind":"sleep","ms":0}"#);
    a.wait_finished(&done);
    let running = a.submit(r#"{"kind":"sleep","ms":60000}"#);
    let pending = a.submit(r#"{"kind":"sleep","ms":60000}"#);
    a.wait_running(&running);
    seen(&b, &running, "B to see A's running job", |job| {
        job["status"] == "running"
    });
    seen(&b, &pending, "B to see A's pending job", |job| {
        job["status"] == "pending"
    });
    seen(&b, &done, "B to see A's finished job", |job| {
        job["status"] == "completed"
    });

    a.kill();
    a.wait_exit();
    let killed = Instant::now();
    // B's long-poll on the running job answers once A's lease is over.
    let reply = b.get(&format!("/jobs/{running}/wait?timeout_ms=15000"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let job = reply.json();
    assert_eq!(
        job["status"],
        "lost",
        "{:?} after the kill: {job}",
        killed.elapsed()
    );
    assert_eq!(job["finished"], true, "{job}");
    assert!(job["finished_at"].is_string(), "{job}");
    let job = b.job(&pending);
    assert_eq!(job["status"], "lost", "{job}");
    // A real ending stays what it was.
    assert_eq!(b.job(&done)["status"], "completed");

    // A again, under the same id: its old jobs are lost there too (from
    // the store: its new pool never knew them), and it serves new ones.
    let a = replica(&pg, "a", 2_000, &[]);
    let old = a.job(&running);
    assert_eq!(old["status"], "lost", "{old}");
    assert_eq!(old["replica"], "a", "{old}");
    let fresh = a.submit(r#"{"kind":"sleep","ms":0}"#);
    assert_eq!(a.wait_finished(&fresh)["status"], "completed");
    let job = seen(&b, &fresh, "B to see the new job", |job| {
        job["status"] == "completed"
    });
    assert_eq!(job["replica"], "a", "{job}");
    assert_eq!(job["replica_address"], a.base.as_str(), "{job}");
}

#[test]
fn a_replica_restarted_under_its_id_marks_its_previous_run_s_jobs_lost_at_once() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    // A lease far longer than this test's waits: only the restart can
    // make the job lost in time.
    let mut a = replica(&pg, "a", 120_000, &[]);
    let b = replica(&pg, "b", 120_000, &[]);
    let id = a.submit(r#"{"kind":"sleep","ms":60000}"#);
    a.wait_running(&id);
    seen(&b, &id, "B to see the job running", |job| {
        job["status"] == "running"
    });
    a.kill();
    a.wait_exit();
    assert_eq!(b.job(&id)["status"], "running", "the lease still holds");

    let a = replica(&pg, "a", 120_000, &[]);
    let job = b.job(&id);
    assert_eq!(job["status"], "lost", "{job}");
    assert_eq!(a.job(&id)["status"], "lost");
}

/// One replica's load, from another thread (a [`Server`] stays on the
/// test's): jobs submitted until `stop`, each one's local status read back
/// right after (it must always answer). Returns every accepted job's id and
/// whether it was made to fail.
fn load(agent: &ureq::Agent, base: &str, stop: &AtomicBool) -> Vec<(String, bool)> {
    let mut accepted = Vec::new();
    let mut n = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let fail = n.is_multiple_of(7);
        let body = if fail {
            format!(r#"{{"kind":"fail","message":"job {n} failed"}}"#)
        } else {
            r#"{"kind":"sleep","ms":0}"#.to_owned()
        };
        let mut reply = agent
            .post(format!("{base}/jobs"))
            .content_type("application/json")
            .send(&body)
            .expect("POST /jobs");
        let text = reply.body_mut().read_to_string().expect("a body");
        if reply.status() == 503 {
            continue; // the queue is full: not accepted
        }
        assert_eq!(reply.status(), 202, "{text}");
        let id = serde_json::from_str::<Value>(&text).expect("JSON")["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        // Local status, whatever the store's state.
        let mut reply = agent
            .get(format!("{base}/jobs/{id}"))
            .call()
            .expect("GET /jobs/<id>");
        let text = reply.body_mut().read_to_string().expect("a body");
        assert_eq!(reply.status(), 200, "{text}");
        let job: Value = serde_json::from_str(&text).expect("JSON");
        assert!(job["replica"].is_string(), "{job}");
        accepted.push((id, fail));
    }
    accepted
}

/// Rows of `ids` in the store: id -> (status, error), as written.
fn stored(pg: &Postgres, ids: &[uuid::Uuid]) -> HashMap<String, (String, Option<String>)> {
    let mut client = pg.client();
    client
        .query(
            "SELECT id::text, status, error FROM harbor_jobs WHERE id = ANY($1)",
            &[&ids],
        )
        .expect("read the jobs")
        .into_iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

#[test]
fn both_replicas_keep_serving_through_a_postgres_outage_and_the_store_catches_up() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    // A lease longer than the outage; every finished job remembered
    // locally.
    let extra = [
        "--job-workers",
        "2",
        "--job-queue",
        "4096",
        "--retain-finished",
        "1000000",
    ];
    let a = replica(&pg, "a", 60_000, &extra);
    let b = replica(&pg, "b", 60_000, &extra);
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = [&a, &b]
        .into_iter()
        .map(|server| {
            let (agent, base, stop) =
                (server.agent.clone(), server.base.clone(), Arc::clone(&stop));
            thread::spawn(move || load(&agent, &base, &stop))
        })
        .collect();
    // Some states written before the outage, so the store has connections
    // to lose.
    eventually("jobs in the store before the outage", || {
        let count: i64 = pg
            .client()
            .query_one("SELECT count(*) FROM harbor_jobs", &[])
            .expect("count")
            .get(0);
        (count >= 50).then_some(())
    });
    let submitted = |server: &Server| server.stats()["jobs"]["submitted"].as_u64().unwrap();
    let before = (submitted(&a), submitted(&b));
    pg.stop();
    let down = Instant::now();
    // A job of A read on B needs the store: a prompt 503, not a hang.
    let id_on_a = a.submit(r#"{"kind":"sleep","ms":0}"#);
    let started = Instant::now();
    let reply = b.get(&format!("/jobs/{id_on_a}"));
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.error().contains("job store"), "{}", reply.body);
    assert!(started.elapsed() < DEADLINE);
    // Down for three seconds at least, both replicas accepting and
    // answering jobs throughout (the load threads check each one).
    eventually("three seconds of outage under load", || {
        (down.elapsed() >= Duration::from_secs(3)
            && submitted(&a) >= before.0 + 100
            && submitted(&b) >= before.1 + 100)
            .then_some(())
    });
    let during = (submitted(&a) - before.0, submitted(&b) - before.1);
    pg.restart();
    let up = Instant::now();
    eventually("more jobs after the outage", || {
        (submitted(&a) >= before.0 + during.0 + 50 && submitted(&b) >= before.1 + during.1 + 50)
            .then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let mut jobs: Vec<(String, bool)> = Vec::new();
    for handle in loads {
        jobs.extend(handle.join().expect("a load thread"));
    }
    jobs.push((id_on_a, false));
    let ids: Vec<uuid::Uuid> = jobs.iter().map(|(id, _)| id.parse().unwrap()).collect();

    // Every accepted job in the store with its true terminal status.
    let mut rows = HashMap::new();
    eventually("every job in the store, finished", || {
        rows = stored(&pg, &ids);
        (rows.len() == jobs.len()
            && rows
                .values()
                .all(|(status, _)| status != "pending" && status != "running"))
        .then_some(())
    });
    for (id, fail) in &jobs {
        let (status, error) = &rows[id];
        if *fail {
            assert_eq!(status, "failed", "{id}");
            assert!(
                error.as_deref().is_some_and(|e| e.ends_with("failed")),
                "{id}"
            );
        } else {
            assert_eq!(status, "completed", "{id}: {error:?}");
        }
    }
    // The writers lost their connection and came back; nothing dropped.
    for server in [&a, &b] {
        assert!(server.metric("harbor_store_reconnects_total{connection=\"writer\"}") >= 1.0);
        assert_eq!(server.metric("harbor_store_overflowed_total"), 0.0);
        assert_eq!(server.metric("harbor_store_buffered_jobs"), 0.0);
    }
    eprintln!(
        "outage: {} jobs accepted in all, {} + {} while PostgreSQL was down; \
         caught up {:?} after the restart",
        jobs.len(),
        during.0,
        during.1,
        up.elapsed()
    );
}

#[test]
fn a_clean_stop_leaves_the_jobs_last_states_and_the_replica_s_stop_in_the_store() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let mut a = replica(&pg, "a", 15_000, &["--shutdown-grace-ms", "100"]);
    let id = a.submit(r#"{"kind":"sleep","ms":60000}"#);
    a.wait_running(&id);
    a.signal("TERM");
    assert!(a.wait_exit().success(), "{}", a.stderr());
    let mut client = pg.client();
    let uuid: uuid::Uuid = id.parse().unwrap();
    let row = client
        .query_one("SELECT status FROM harbor_jobs WHERE id = $1", &[&uuid])
        .unwrap();
    // Cancelled by the shutdown's grace, and that state reached the store
    // before the store stopped and marked what was unfinished `lost`.
    assert_eq!(row.get::<_, String>(0), "cancelled");
    let row = client
        .query_one(
            "SELECT stopped_at IS NOT NULL FROM harbor_replicas WHERE id = 'a'",
            &[],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0), "the stop is recorded");
}

#[test]
fn a_database_unreachable_at_start_exits_1_and_a_store_flag_without_one_exits_2() {
    // No PostgreSQL needed: nothing listens on port 1. Bounded by
    // `timeout`, as the server itself is by its 5 s connect timeout.
    let run = |args: &[&str]| {
        std::process::Command::new("timeout")
            .args(["--kill-after=5", "60"])
            .arg(common::binary())
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env_remove("HARBOR_DATABASE_URL")
            .output()
            .expect("run harbor-server")
    };
    let out = run(&[
        "--database-url",
        "host=127.0.0.1 port=1 user=postgres connect_timeout=2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot open the job store"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
    let out = run(&["--replica-id", "a"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--replica-id needs --database-url"),
        "{stderr}"
    );
}
