//! A real PostgreSQL for tests (the `testing` feature): its own cluster in
//! a temporary directory on a free port, started from the installed
//! binaries (`/usr/lib/postgresql/*/bin`), stopped and removed when
//! dropped, also when the test panics. The store's own tests and the
//! server's (`server/tests/replicas.rs`) use it; it is no part of the
//! store's API for services and is compiled only with the feature.
//!
//! PostgreSQL refuses to run as root; as root (CI), `initdb`, `pg_ctl` and
//! `postgres` run as the `postgres` user through `runuser`, with the
//! directory handed to that user. Where the binaries are absent,
//! [`Postgres::start`] prints a notice to stderr that the test is skipped
//! (a test harness's output, the one print of this crate) and returns
//! `None`, unless `HARBOR_REQUIRE_POSTGRES=1` (set by `.ci/run`), which
//! makes that a panic.
//!
//! Every wait here is bounded: each binary runs under `timeout`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

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
///
/// # Examples
///
/// ```no_run
/// use harbor_store_postgres::testing::Postgres;
///
/// let Some(pg) = Postgres::start() else {
///     return; // skipped: no PostgreSQL installed
/// };
/// let mut client = pg.client();
/// let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
/// assert_eq!(one, 1);
/// pg.stop();
/// pg.restart();
/// assert!(pg.url().contains(&format!("port={}", pg.port())));
/// ```
#[derive(Debug)]
pub struct Postgres {
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
    pub fn start() -> Option<Postgres> {
        Self::start_with(false)
    }

    /// Starts a fresh cluster, durable (fsync and synchronous commit, the
    /// defaults) or not.
    pub fn start_with(durable: bool) -> Option<Postgres> {
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

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection string of the `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        )
    }

    /// A plain client, for the tests' own queries.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to the test server")
    }

    /// Stops the server (fast mode: sessions are cut), keeping its data.
    pub fn stop(&self) {
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
    pub fn restart(&self) {
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
