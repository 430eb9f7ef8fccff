//! Command-line flags: every setting of the server, parsed and checked
//! before anything starts. A bad flag or value is a [`ConfigError`]; `main`
//! prints it with the usage and exits 2.

use std::fmt;
use std::time::Duration;

/// The usage text printed on `--help` and after a bad flag.
pub(crate) const USAGE: &str = "\
usage: harbor-server [--addr HOST:PORT] [--workers N] [--queue N]
                     [--job-workers N] [--job-queue N] [--retain-finished N]
                     [--http-threads N] [--max-connections N]
                     [--max-header-bytes N] [--max-body-bytes N]
                     [--header-timeout-ms N] [--body-timeout-ms N]
                     [--keep-alive-timeout-ms N] [--request-timeout-ms N]
                     [--shutdown-grace-ms N]
                     [--database-url URL [--replica-id ID] [--replica-address URL]
                      [--lease-ms N] [--cancel-poll-ms N] [--wait-poll-ms N]]

  --addr HOST:PORT           where to listen (default 127.0.0.1:7878; port 0 picks a free port)
  --workers N                request-pool threads, which run /sleep and /panic (default 8)
  --queue N                  request-pool jobs that may wait for a thread before 503 (default 64)
  --job-workers N            demo-job threads (default 2)
  --job-queue N              demo jobs that may wait for a thread before 503 (default 256)
  --retain-finished N        finished jobs remembered for GET /jobs/<id> (default 10000)
  --http-threads N           async runtime threads serving HTTP (default: available parallelism, at least 2)
  --max-connections N        open connections; more are accepted and closed at once
                             (default 1024, lowered to the open-file limit less 64)
  --max-header-bytes N       largest request head; larger -> 431 (default 16384)
  --max-body-bytes N         largest request body; larger -> 413 (default 65536)
  --header-timeout-ms N      time to receive a request head -> 408 (default 10000)
  --body-timeout-ms N        time to receive a request body -> 408 (default 10000)
  --keep-alive-timeout-ms N  an idle keep-alive connection is closed after it (default 60000)
  --request-timeout-ms N     a handler running longer answers 503 (default 70000)
  --shutdown-grace-ms N      after SIGINT/SIGTERM, demo jobs get this long before they are
                             cancelled (default 1000)

  With a PostgreSQL store, replicas sharing one database answer, wait for and cancel
  each other's jobs by id (without it, everything stays in memory):
  --database-url URL         the store's database, a postgres:// URL or libpq key=value string
                             (default: the HARBOR_DATABASE_URL environment variable; none: in memory)
  --replica-id ID            this replica's stable id, the same across its restarts
                             (default HOSTNAME:PORT, the listening port)
  --replica-address URL      where clients reach this replica, shown with its jobs
                             (default http://HOST:PORT, the listening address)
  --lease-ms N               this replica's lease: its unfinished jobs read `lost` once it has
                             gone this long without a heartbeat (default 15000, at least 1000)
  --cancel-poll-ms N         how often cancel requests are polled for, besides NOTIFY (default 2000)
  --wait-poll-ms N           how often remote waits re-read the store, besides NOTIFY (default 1000)";

/// The environment variable read for the database URL when
/// `--database-url` is not given.
pub(crate) const DATABASE_URL_ENV: &str = "HARBOR_DATABASE_URL";

/// The smallest `--max-header-bytes`: room for a short request line and a
/// few headers.
pub(crate) const MIN_HEADER_BYTES: usize = 256;
/// The largest `--max-header-bytes` (HTTP/2's limit is a `u32`, and no
/// head needs more).
pub(crate) const MAX_HEADER_BYTES: usize = 16 << 20;
/// The largest `--max-body-bytes`: the server buffers a body in memory.
pub(crate) const MAX_BODY_BYTES: usize = 64 << 20;
/// The most runtime threads `--http-threads` may ask for.
pub(crate) const MAX_HTTP_THREADS: usize = 1024;
/// The longest any `-ms` flag may be: a day.
const MAX_MILLIS: u64 = 24 * 3600 * 1000;

/// Every setting of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) addr: String,
    pub(crate) workers: usize,
    pub(crate) queue: usize,
    pub(crate) job_workers: usize,
    pub(crate) job_queue: usize,
    pub(crate) retain_finished: usize,
    pub(crate) http_threads: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) keep_alive_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
    /// The store's settings; `None`: in memory.
    pub(crate) store: Option<StoreFlags>,
}

/// The PostgreSQL store's flags, present when a database URL is.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StoreFlags {
    pub(crate) database_url: String,
    /// `None`: `HOSTNAME:PORT`, known once listening.
    pub(crate) replica_id: Option<String>,
    /// `None`: `http://HOST:PORT`, the listening address.
    pub(crate) replica_address: Option<String>,
    pub(crate) lease: Duration,
    pub(crate) cancel_poll: Duration,
    pub(crate) wait_poll: Duration,
}

impl fmt::Debug for StoreFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: the store's own Debug hides it.
        f.debug_struct("StoreFlags")
            .field("replica_id", &self.replica_id)
            .field("replica_address", &self.replica_address)
            .field("lease", &self.lease)
            .field("cancel_poll", &self.cancel_poll)
            .field("wait_poll", &self.wait_poll)
            .finish_non_exhaustive()
    }
}

/// The store flags' defaults, before a URL says whether they are used.
#[derive(Debug, Default)]
struct StoreArgs {
    database_url: Option<String>,
    replica_id: Option<String>,
    replica_address: Option<String>,
    lease: Option<Duration>,
    cancel_poll: Option<Duration>,
    wait_poll: Option<Duration>,
}

/// The default lease, cancel poll and wait poll (the store's defaults).
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_CANCEL_POLL: Duration = Duration::from_secs(2);
pub(crate) const DEFAULT_WAIT_POLL: Duration = Duration::from_secs(1);
/// The shortest lease the store accepts.
const MIN_LEASE: Duration = Duration::from_secs(1);

impl Default for Config {
    fn default() -> Self {
        let parallelism = std::thread::available_parallelism().map_or(2, usize::from);
        Config {
            addr: "127.0.0.1:7878".to_owned(),
            workers: 8,
            queue: 64,
            job_workers: 2,
            job_queue: 256,
            retain_finished: harbor_pool::DEFAULT_RETAIN_FINISHED,
            http_threads: parallelism.clamp(2, MAX_HTTP_THREADS),
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(70),
            shutdown_grace: Duration::from_secs(1),
            store: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Serve with this configuration (boxed: it is large, `Help` is not).
    Serve(Box<Config>),
    /// Print the usage and exit 0.
    Help,
}

/// A bad command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

impl Config {
    /// Parses the arguments after the program name; the database URL
    /// comes from `--database-url`, else from `env_url` (the value of
    /// [`DATABASE_URL_ENV`], if set and not empty).
    pub(crate) fn from_args_and_env(
        args: impl Iterator<Item = String>,
        env_url: Option<String>,
    ) -> Result<Command, ConfigError> {
        Config::parse(args, env_url.filter(|url| !url.is_empty()))
    }

    /// Parses the arguments after the program name, with no environment.
    #[cfg(test)]
    pub(crate) fn from_args(args: impl Iterator<Item = String>) -> Result<Command, ConfigError> {
        Config::parse(args, None)
    }

    fn parse(
        mut args: impl Iterator<Item = String>,
        env_url: Option<String>,
    ) -> Result<Command, ConfigError> {
        let mut config = Config::default();
        let mut store = StoreArgs::default();
        while let Some(flag) = args.next() {
            if matches!(flag.as_str(), "-h" | "--help") {
                return Ok(Command::Help);
            }
            let value = |args: &mut dyn Iterator<Item = String>| {
                args.next()
                    .ok_or_else(|| ConfigError::new(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--addr" => config.addr = value(&mut args)?,
                "--workers" => config.workers = count(&flag, &value(&mut args)?, 1, 4096)?,
                "--queue" => config.queue = count(&flag, &value(&mut args)?, 1, usize::MAX)?,
                "--job-workers" => {
                    config.job_workers = count(&flag, &value(&mut args)?, 1, 4096)?;
                }
                "--job-queue" => {
                    config.job_queue = count(&flag, &value(&mut args)?, 1, usize::MAX)?;
                }
                "--retain-finished" => {
                    config.retain_finished = count(&flag, &value(&mut args)?, 0, usize::MAX)?;
                }
                "--http-threads" => {
                    config.http_threads = count(&flag, &value(&mut args)?, 1, MAX_HTTP_THREADS)?;
                }
                "--max-connections" => {
                    config.max_connections = count(&flag, &value(&mut args)?, 1, 1 << 24)?;
                }
                "--max-header-bytes" => {
                    config.max_header_bytes = count(
                        &flag,
                        &value(&mut args)?,
                        MIN_HEADER_BYTES,
                        MAX_HEADER_BYTES,
                    )?;
                }
                "--max-body-bytes" => {
                    config.max_body_bytes = count(&flag, &value(&mut args)?, 0, MAX_BODY_BYTES)?;
                }
                "--header-timeout-ms" => config.header_timeout = millis(&flag, &value(&mut args)?)?,
                "--body-timeout-ms" => config.body_timeout = millis(&flag, &value(&mut args)?)?,
                "--keep-alive-timeout-ms" => {
                    config.keep_alive_timeout = millis(&flag, &value(&mut args)?)?;
                }
                "--request-timeout-ms" => {
                    config.request_timeout = millis(&flag, &value(&mut args)?)?;
                }
                "--shutdown-grace-ms" => {
                    config.shutdown_grace = millis(&flag, &value(&mut args)?)?;
                }
                "--database-url" => {
                    store.database_url = Some(non_empty(&flag, value(&mut args)?)?);
                }
                "--replica-id" => store.replica_id = Some(non_empty(&flag, value(&mut args)?)?),
                "--replica-address" => {
                    store.replica_address = Some(non_empty(&flag, value(&mut args)?)?);
                }
                "--lease-ms" => {
                    let lease = millis(&flag, &value(&mut args)?)?;
                    if lease < MIN_LEASE {
                        return Err(ConfigError::new(format!(
                            "{flag} {}: must be at least {}",
                            lease.as_millis(),
                            MIN_LEASE.as_millis()
                        )));
                    }
                    store.lease = Some(lease);
                }
                "--cancel-poll-ms" => store.cancel_poll = Some(millis(&flag, &value(&mut args)?)?),
                "--wait-poll-ms" => store.wait_poll = Some(millis(&flag, &value(&mut args)?)?),
                _ => return Err(ConfigError::new(format!("unknown option {flag}"))),
            }
        }
        config.store = store.resolve(env_url)?;
        Ok(Command::Serve(Box::new(config)))
    }
}

impl StoreArgs {
    /// The store's flags if a URL was given (by flag or environment); a
    /// store flag without one is an error, not silently ignored.
    fn resolve(self, env_url: Option<String>) -> Result<Option<StoreFlags>, ConfigError> {
        let Some(database_url) = self.database_url.or(env_url) else {
            let given = [
                ("--replica-id", self.replica_id.is_some()),
                ("--replica-address", self.replica_address.is_some()),
                ("--lease-ms", self.lease.is_some()),
                ("--cancel-poll-ms", self.cancel_poll.is_some()),
                ("--wait-poll-ms", self.wait_poll.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
                return Err(ConfigError::new(format!(
                    "{flag} needs --database-url (or {DATABASE_URL_ENV})"
                )));
            }
            return Ok(None);
        };
        Ok(Some(StoreFlags {
            database_url,
            replica_id: self.replica_id,
            replica_address: self.replica_address,
            lease: self.lease.unwrap_or(DEFAULT_LEASE),
            cancel_poll: self.cancel_poll.unwrap_or(DEFAULT_CANCEL_POLL),
            wait_poll: self.wait_poll.unwrap_or(DEFAULT_WAIT_POLL),
        }))
    }
}

/// A value that may not be empty.
fn non_empty(flag: &str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(format!("{flag} may not be empty")));
    }
    Ok(value)
}

/// A whole number in `min..=max`.
fn count(flag: &str, value: &str, min: usize, max: usize) -> Result<usize, ConfigError> {
    let number: usize = value
        .parse()
        .map_err(|err| ConfigError::new(format!("{flag} {value}: {err}")))?;
    if number < min || number > max {
        let range = if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("from {min} to {max}")
        };
        return Err(ConfigError::new(format!("{flag} {value}: must be {range}")));
    }
    Ok(number)
}

/// Milliseconds, from 1 to a day.
fn millis(flag: &str, value: &str) -> Result<Duration, ConfigError> {
    let number: u64 = value
        .parse()
        .map_err(|err| ConfigError::new(format!("{flag} {value}: {err}")))?;
    if number == 0 || number > MAX_MILLIS {
        return Err(ConfigError::new(format!(
            "{flag} {value}: must be from 1 to {MAX_MILLIS} milliseconds"
        )));
    }
    Ok(Duration::from_millis(number))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, ConfigError> {
        Config::from_args(args.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn defaults_match_the_usage() {
        let Ok(Command::Serve(config)) = parse(&[]) else {
            panic!("no flags serves");
        };
        assert_eq!(config.addr, "127.0.0.1:7878");
        assert_eq!((config.workers, config.queue), (8, 64));
        assert_eq!((config.job_workers, config.job_queue), (2, 256));
        assert_eq!(config.max_connections, 1024);
        assert_eq!(config.max_header_bytes, 16384);
        assert_eq!(config.max_body_bytes, 65536);
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.body_timeout, Duration::from_secs(10));
        assert_eq!(config.keep_alive_timeout, Duration::from_secs(60));
        assert_eq!(config.request_timeout, Duration::from_secs(70));
        assert_eq!(config.shutdown_grace, Duration::from_secs(1));
        assert!(config.http_threads >= 2);
        for default in [
            "default 127.0.0.1:7878",
            "(default 8)",
            "(default 64)",
            "(default 2)",
            "(default 256)",
            "(default 10000)",
            "default 1024",
            "(default 16384)",
            "(default 65536)",
            "(default 60000)",
            "(default 70000)",
            "(default 1000)",
        ] {
            assert!(USAGE.contains(default), "{default}");
        }
    }

    #[test]
    fn every_flag_sets_its_setting() {
        let Ok(Command::Serve(config)) = parse(&[
            "--addr",
            "0.0.0.0:0",
            "--workers",
            "3",
            "--queue",
            "2",
            "--job-workers",
            "4",
            "--job-queue",
            "5",
            "--retain-finished",
            "6",
            "--http-threads",
            "7",
            "--max-connections",
            "8",
            "--max-header-bytes",
            "4096",
            "--max-body-bytes",
            "10",
            "--header-timeout-ms",
            "11",
            "--body-timeout-ms",
            "12",
            "--keep-alive-timeout-ms",
            "13",
            "--request-timeout-ms",
            "14",
            "--shutdown-grace-ms",
            "15",
        ]) else {
            panic!("every flag parses");
        };
        assert_eq!(config.addr, "0.0.0.0:0");
        assert_eq!(
            (
                config.workers,
                config.queue,
                config.job_workers,
                config.job_queue
            ),
            (3, 2, 4, 5)
        );
        assert_eq!(
            (
                config.retain_finished,
                config.http_threads,
                config.max_connections
            ),
            (6, 7, 8)
        );
        assert_eq!((config.max_header_bytes, config.max_body_bytes), (4096, 10));
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            [
                config.header_timeout,
                config.body_timeout,
                config.keep_alive_timeout,
                config.request_timeout,
                config.shutdown_grace
            ],
            [ms(11), ms(12), ms(13), ms(14), ms(15)]
        );
    }

    #[test]
    fn bad_flags_and_values_are_errors() {
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
        assert_eq!(parse(&["--workers", "2", "-h"]), Ok(Command::Help));
        let error = |args: &[&str]| parse(args).expect_err("an error").to_string();
        assert_eq!(error(&["--frobnicate"]), "unknown option --frobnicate");
        assert_eq!(error(&["--workers"]), "--workers needs a value");
        assert!(error(&["--workers", "x"]).starts_with("--workers x: "));
        assert!(error(&["--workers", "0"]).contains("must be from 1 to 4096"));
        assert!(error(&["--workers", "-1"]).starts_with("--workers -1: "));
        assert!(error(&["--max-header-bytes", "10"]).contains("from 256"));
        assert!(error(&["--max-body-bytes", "999999999999"]).contains("to 67108864"));
        assert!(error(&["--header-timeout-ms", "0"]).contains("from 1 to"));
        assert!(error(&["--shutdown-grace-ms", "soon"]).starts_with("--shutdown-grace-ms soon: "));
        assert!(error(&["--max-connections", "0"]).contains("from 1"));
        assert!(error(&["--queue", "0"]).contains("at least 1"));
        assert!(error(&["--http-threads", "0"]).contains("from 1"));
        assert_eq!(
            error(&["--replica-id", "a"]),
            "--replica-id needs --database-url (or HARBOR_DATABASE_URL)"
        );
        assert_eq!(
            error(&["--lease-ms", "2000"]),
            "--lease-ms needs --database-url (or HARBOR_DATABASE_URL)"
        );
        assert_eq!(
            error(&["--database-url", ""]),
            "--database-url may not be empty"
        );
        assert_eq!(
            error(&["--database-url", "host=db", "--lease-ms", "999"]),
            "--lease-ms 999: must be at least 1000"
        );
    }

    #[test]
    fn the_store_is_off_without_a_url_and_takes_the_environment_s() {
        let Ok(Command::Serve(config)) = parse(&[]) else {
            panic!("no flags serves");
        };
        assert_eq!(config.store, None);
        let from_env = |args: &[&str], env: Option<&str>| match Config::from_args_and_env(
            args.iter().map(|arg| (*arg).to_owned()),
            env.map(str::to_owned),
        ) {
            Ok(Command::Serve(config)) => config.store,
            other => panic!("{other:?}"),
        };
        assert_eq!(from_env(&[], Some("")), None);
        let store = from_env(&[], Some("host=env")).expect("a store");
        assert_eq!(store.database_url, "host=env");
        assert_eq!(store.replica_id, None);
        assert_eq!(
            (store.lease, store.cancel_poll, store.wait_poll),
            (DEFAULT_LEASE, DEFAULT_CANCEL_POLL, DEFAULT_WAIT_POLL)
        );
        // The flag wins over the environment.
        let store = from_env(
            &[
                "--database-url",
                "postgres://db/harbor",
                "--replica-id",
                "a",
                "--replica-address",
                "http://a:8080",
                "--lease-ms",
                "3000",
                "--cancel-poll-ms",
                "300",
                "--wait-poll-ms",
                "200",
            ],
            Some("host=env"),
        )
        .expect("a store");
        assert_eq!(store.database_url, "postgres://db/harbor");
        assert_eq!(store.replica_id.as_deref(), Some("a"));
        assert_eq!(store.replica_address.as_deref(), Some("http://a:8080"));
        let ms = Duration::from_millis;
        assert_eq!(
            (store.lease, store.cancel_poll, store.wait_poll),
            (ms(3000), ms(300), ms(200))
        );
        for default in ["(default 15000", "(default 2000)", "(default 1000)"] {
            assert!(USAGE.contains(default), "{default}");
        }
        // The URL's password stays out of debug output.
        let config = Config {
            store: Some(StoreFlags {
                database_url: "postgres://u:s3cret@db/h".into(),
                ..store
            }),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
