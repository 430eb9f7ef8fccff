//! Leases: a crashed replica's unfinished jobs read `lost`; a restart under
//! the same id marks its previous run's unfinished jobs `lost`; a clean
//! stop records itself.
//!
//! The crashed replica is a real process killed with SIGKILL: this test
//! binary run again as `child_replica` (an ignored test that acts only when
//! `HARBOR_CHILD_URL` is set).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use harbor_pool::{JobId, JobStatus};
use harbor_store_postgres::{Store, StoreConfig, StoredStatus, Transition};
use support::{PATIENCE, new_id};

/// The child: opens replica `HARBOR_CHILD_REPLICA` with a lease of
/// `HARBOR_CHILD_LEASE_S`, records two running jobs and a completed one,
/// prints their ids, then waits to be killed (at most a minute).
#[test]
#[ignore = "run by the lease tests as a child process"]
fn child_replica() {
    let Ok(url) = std::env::var("HARBOR_CHILD_URL") else {
        return;
    };
    let replica = std::env::var("HARBOR_CHILD_REPLICA").unwrap();
    let lease: u64 = std::env::var("HARBOR_CHILD_LEASE_S")
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::open(
        StoreConfig::new(url, replica)
            .lease(Duration::from_secs(lease))
            .retention(None),
    )
    .unwrap();
    let now = SystemTime::now();
    let ids: Vec<JobId> = (0..3).map(|_| new_id()).collect();
    store.record_transitions([
        Transition::new(ids[0], JobStatus::Running, now),
        Transition::new(ids[1], JobStatus::Pending, now),
        Transition::new(ids[2], JobStatus::Completed, now),
    ]);
    assert!(store.flush(PATIENCE));
    println!("READY {} {} {}", ids[0], ids[1], ids[2]);
    // Killed long before this returns; bounded so a stray child ends.
    let (_keep, never) = mpsc::channel::<()>();
    let _ = never.recv_timeout(Duration::from_secs(60));
    std::process::exit(3);
}

/// A running child replica and its three jobs (running, pending, completed).
struct ChildReplica {
    child: Child,
    ids: Vec<JobId>,
}

impl ChildReplica {
    fn start(pg: &support::Postgres, replica: &str, lease_s: u64) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_replica",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HARBOR_CHILD_URL", pg.url())
            .env("HARBOR_CHILD_REPLICA", replica)
            .env("HARBOR_CHILD_LEASE_S", lease_s.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness prints "test child_replica ... " first.
                if let Some(at) = line.find("READY ") {
                    let _ = tx.send(line[at + "READY ".len()..].to_owned());
                }
            }
        });
        let ids = match rx.recv_timeout(PATIENCE * 2) {
            Ok(line) => line.split(' ').map(|id| id.parse().unwrap()).collect(),
            Err(_) => {
                let _ = child.kill();
                panic!("the child replica did not get ready");
            }
        };
        ChildReplica { child, ids }
    }

    /// SIGKILL: no clean stop, no last heartbeat.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildReplica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_killed_replicas_unfinished_jobs_read_lost_once_its_lease_expires() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let reader = Store::open(support::config(&pg, "reader")).unwrap();
    let mut child = ChildReplica::start(&pg, "crashy", 2);
    let (running, pending, completed) = (child.ids[0], child.ids[1], child.ids[2]);
    assert_eq!(
        reader.job(running).unwrap().unwrap().status,
        StoredStatus::Running
    );
    // A wait that only the poll can end: no notification says "lost".
    let waiting = {
        let url = pg.url();
        std::thread::spawn(move || {
            let store = Store::open(
                StoreConfig::new(url, "waiter")
                    .wait_poll(Duration::from_millis(200))
                    .retention(None),
            )
            .unwrap();
            store.wait(running, PATIENCE * 2)
        })
    };
    child.kill();
    assert!(support::eventually(|| {
        reader.job(running).unwrap().unwrap().status == StoredStatus::Lost
    }));
    let lost = reader.job(running).unwrap().unwrap();
    assert!(lost.finished_at.is_some());
    assert_eq!(
        reader.job(pending).unwrap().unwrap().status,
        StoredStatus::Lost
    );
    assert_eq!(
        reader.job(completed).unwrap().unwrap().status,
        StoredStatus::Completed
    );
    let waited = waiting.join().unwrap().unwrap().unwrap();
    assert_eq!(waited.status, StoredStatus::Lost);
    // A cancel of a lost job finds it finished.
    assert_eq!(
        reader.cancel(running).unwrap(),
        harbor_store_postgres::CancelRequest::Finished(StoredStatus::Lost)
    );
}

#[test]
fn a_replica_restarted_under_its_id_marks_its_previous_runs_jobs_lost() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    // A long lease: only the restart can make the jobs lost in this test.
    let mut child = ChildReplica::start(&pg, "phoenix", 3600);
    let (running, pending, completed) = (child.ids[0], child.ids[1], child.ids[2]);
    child.kill();
    let mut client = pg.client();
    assert_eq!(
        support::stored_status(&mut client, running).as_deref(),
        Some("running")
    );
    let again =
        Store::open(support::config(&pg, "phoenix").lease(Duration::from_secs(3600))).unwrap();
    // Stored, not just computed: the lease is fresh.
    assert_eq!(
        support::stored_status(&mut client, running).as_deref(),
        Some("lost")
    );
    assert_eq!(
        support::stored_status(&mut client, pending).as_deref(),
        Some("lost")
    );
    assert_eq!(
        again.job(running).unwrap().unwrap().status,
        StoredStatus::Lost
    );
    assert_eq!(
        again.job(completed).unwrap().unwrap().status,
        StoredStatus::Completed
    );
    // The new run's jobs are served as usual, and a late state of an old
    // one changes nothing.
    let fresh = new_id();
    let now = SystemTime::now();
    again.record_transitions([
        Transition::new(fresh, JobStatus::Running, now),
        Transition::new(running, JobStatus::Completed, now),
    ]);
    assert!(again.flush(PATIENCE));
    assert_eq!(
        again.job(fresh).unwrap().unwrap().status,
        StoredStatus::Running
    );
    assert_eq!(
        again.job(running).unwrap().unwrap().status,
        StoredStatus::Lost
    );
}

#[test]
fn a_clean_stop_is_recorded_and_ends_the_lease() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = Store::open(support::config(&pg, "a").lease(Duration::from_secs(3600))).unwrap();
    let (done, unfinished) = (new_id(), new_id());
    let now = SystemTime::now();
    a.record_transitions([
        Transition::new(done, JobStatus::Completed, now),
        Transition::new(unfinished, JobStatus::Running, now),
    ]);
    assert!(a.shutdown(PATIENCE), "written and recorded");
    let mut client = pg.client();
    let row = client
        .query_one(
            "SELECT stopped_at IS NOT NULL, lease_expires_at <= now() FROM harbor_replicas WHERE id = 'a'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (true, true));
    assert_eq!(
        support::stored_status(&mut client, done).as_deref(),
        Some("completed")
    );
    assert_eq!(
        support::stored_status(&mut client, unfinished).as_deref(),
        Some("lost")
    );
    assert!(matches!(
        a.job(done),
        Err(harbor_store_postgres::StoreError::Shutdown)
    ));
}

#[test]
fn heartbeats_keep_a_live_replicas_jobs_running_past_the_lease() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = Store::open(
        support::config(&pg, "a")
            .lease(Duration::from_secs(1))
            .heartbeat(Duration::from_millis(200)),
    )
    .unwrap();
    let id = new_id();
    a.record_transitions([Transition::new(id, JobStatus::Running, SystemTime::now())]);
    assert!(a.flush(PATIENCE));
    // Three leases' worth of heartbeats.
    assert!(support::eventually(|| a.stats().heartbeats >= 15));
    assert_eq!(a.job(id).unwrap().unwrap().status, StoredStatus::Running);
}

#[test]
fn a_replica_that_outlived_its_lease_in_an_outage_keeps_its_jobs_lost() {
    let Some(pg) = support::Postgres::start() else {
        return;
    };
    let a = Store::open(
        support::config(&pg, "a")
            .lease(Duration::from_secs(1))
            .heartbeat(Duration::from_millis(200)),
    )
    .unwrap();
    let before = new_id();
    a.record_transitions([Transition::new(
        before,
        JobStatus::Running,
        SystemTime::now(),
    )]);
    assert!(a.flush(PATIENCE));
    pg.stop();
    let stopped = std::time::Instant::now();
    // Down for longer than the lease (a bounded wait for the outage's
    // length, not a synchronisation).
    assert!(support::eventually(
        || stopped.elapsed() >= Duration::from_secs(2)
    ));
    pg.restart();
    let beats = a.stats().heartbeats;
    assert!(support::eventually(|| a.stats().heartbeats > beats));
    // Readers saw it lost while the lease was out; it stays lost, stored,
    // though the replica is back and its lease renewed (by the heartbeat
    // that finds its lease lapsed, or by the sweep, whichever runs first:
    // the test fails only with both gone).
    let mut client = pg.client();
    assert_eq!(
        support::stored_status(&mut client, before).as_deref(),
        Some("lost")
    );
    a.record_transitions([Transition::new(
        before,
        JobStatus::Completed,
        SystemTime::now(),
    )]);
    let after = new_id();
    a.record_transitions([Transition::new(
        after,
        JobStatus::Running,
        SystemTime::now(),
    )]);
    assert!(a.flush(PATIENCE));
    assert_eq!(a.job(before).unwrap().unwrap().status, StoredStatus::Lost);
    assert_eq!(a.job(after).unwrap().unwrap().status, StoredStatus::Running);
}
