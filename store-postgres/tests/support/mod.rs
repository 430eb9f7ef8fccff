//! A real PostgreSQL for the tests: its own cluster in a temporary
//! directory on a free port, started from the installed binaries
//! (`/usr/lib/postgresql/*/bin`), stopped and removed when dropped, also
//! when the test panics.
//!
//! PostgreSQL refuses to run as root; as root (CI), `initdb`, `pg_ctl` and
//! `postgres` run as the `postgres` user through `runuser`, with the
//! directory handed to that user. Where the binaries are absent the tests
//! print that they skipped, unless `HARBOR_REQUIRE_POSTGRES=1` (set by
//! `.ci/run`), which makes that a failure.
//!
//! Every wait here is bounded.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "soon" on a loaded 2-core box.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `condition` holds, checking every 5 ms, for at most
/// `within`. Returns whether it held. Awaits an eventual state with a
/// deadline; never used to order events.
pub(crate) fn eventually_within(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// [`eventually_within`] [`PATIENCE`].
pub(crate) fn eventually(condition: impl FnMut() -> bool) -> bool {
    eventually_within(PATIENCE, condition)
}

/// The directory of the newest installed PostgreSQL's binaries, if any.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    // `id -u` rather than libc: the tests forbid unsafe code too.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A PostgreSQL server of the test's own.
#[derive(Debug)]
pub(crate) struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    durable: bool,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Postgres {
    /// Starts a fresh cluster for tests (no fsync: the tests never crash
    /// the machine); `None` (after printing why) where PostgreSQL is not
    /// installed and not required.
    pub(crate) fn start() -> Option<Postgres> {
        Self::start_with(false)
    }

    /// Starts a fresh cluster, durable (fsync and synchronous commit, the
    /// defaults) or not.
    pub(crate) fn start_with(durable: bool) -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            if std::env::var("HARBOR_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!(
                    "HARBOR_REQUIRE_POSTGRES=1 but no PostgreSQL under /usr/lib/postgresql/*/bin"
                );
            }
            eprintln!("skipped: no PostgreSQL binaries under /usr/lib/postgresql/*/bin");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "harbor-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        let as_postgres = is_root();
        let mut pg = Postgres {
            bin,
            dir,
            port: 0,
            as_postgres,
            durable,
        };
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&pg.dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown the cluster directory to postgres");
        }
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.port = free_port();
        pg.boot();
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of the binaries (as `postgres` when root) and checks it
    /// succeeded, bounded by a watchdog.
    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let path = self.bin.join(tool);
        let command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = Command::new("timeout")
            .args(["--kill-after=5", "60"])
            .arg(command.get_program())
            .args(command.get_args())
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}\n{}\nlog:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default(),
        );
        output
    }

    /// Starts the server and waits until it accepts connections.
    fn boot(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c shared_buffers=32MB \
             -c max_connections=60 -c shared_preload_libraries=pg_stat_statements{}",
            self.port,
            self.dir.display(),
            if self.durable {
                ""
            } else {
                " -c fsync=off -c synchronous_commit=off"
            }
        );
        let data = self.data();
        let log = self.dir.join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// The connection string of the `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        )
    }

    /// A plain client, for the tests' own queries.
    pub(crate) fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to the test server")
    }

    /// Stops the server (fast mode: sessions are cut), keeping its data.
    pub(crate) fn stop(&self) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "stop",
            ],
        );
    }

    /// Starts the stopped server again, on the same port.
    pub(crate) fn restart(&self) {
        self.boot();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate mode: nothing to keep. Ignores failure (already stopped).
        let path = self.bin.join("pg_ctl");
        let data = self.data();
        let command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = Command::new("timeout")
            .args(["--kill-after=5", "30"])
            .arg(command.get_program())
            .args(command.get_args())
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free now on 127.0.0.1 (the kernel's pick).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// A store config for `replica` on `pg` with the test's short periods:
/// lease 3 s, polls of 300 ms, retention off, backoff 20 ms to 500 ms.
pub(crate) fn config(pg: &Postgres, replica: &str) -> harbor_store_postgres::StoreConfig {
    harbor_store_postgres::StoreConfig::new(pg.url(), replica)
        .lease(Duration::from_secs(3))
        .cancel_poll(Duration::from_millis(300))
        .wait_poll(Duration::from_millis(300))
        .retention(None)
        .backoff(Duration::from_millis(20), Duration::from_millis(500))
}

/// A new job id.
pub(crate) fn new_id() -> harbor_pool::JobId {
    uuid::Uuid::new_v4().into()
}

/// Counts the rows of `harbor_jobs` with `status` as stored (not as read).
pub(crate) fn stored_status(
    client: &mut postgres::Client,
    id: harbor_pool::JobId,
) -> Option<String> {
    client
        .query_opt(
            "SELECT status FROM harbor_jobs WHERE id = $1",
            &[id.as_uuid()],
        )
        .unwrap()
        .map(|row| row.get(0))
}
