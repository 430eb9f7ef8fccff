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
                             cancelled (default 1000)";

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
}

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
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Serve with this configuration.
    Serve(Config),
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
    /// Parses the arguments after the program name.
    pub(crate) fn from_args(
        mut args: impl Iterator<Item = String>,
    ) -> Result<Command, ConfigError> {
        let mut config = Config::default();
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
                _ => return Err(ConfigError::new(format!("unknown option {flag}"))),
            }
        }
        Ok(Command::Serve(config))
    }
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
    }
}
