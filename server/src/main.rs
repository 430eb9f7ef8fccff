//! `harbor-server`: the harbor-pool job service, a JSON HTTP API whose work
//! runs on supervised, panic-resilient pools.
//!
//! ```text
//! cargo run -p harbor-server [-- --addr 127.0.0.1:7878]
//! ```
//!
//! See `server/README.md` for the routes, the flags, the limits and how the
//! server is built; the rooms:
//!
//! | module | owns |
//! |---|---|
//! | `config` | flags, their defaults and checks |
//! | `accept` | the accept loop, the connection limit, hyper's settings |
//! | `guard` | the connection guard: request heads and idle connections |
//! | `limits` | request bodies and handler time |
//! | `service` | the per-request service and its layers |
//! | `routes`, `demo`, `reply` | the routes, the demo jobs, response helpers |
//! | `metrics` | `GET /metrics` |
//! | `shutdown` | signals and the stop sequence |

#![forbid(unsafe_code)]

mod accept;
mod config;
mod demo;
mod guard;
mod limits;
mod metrics;
mod reply;
mod routes;
mod service;
mod shutdown;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use harbor_pool::Pool;

use crate::config::{Command, Config, ConfigError, USAGE};
use crate::metrics::Pools;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(Command::Serve(config)) => config,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => return usage_error(&err),
    };
    shutdown::install_panic_hook();
    let pools = match build_pools(&config) {
        Ok(pools) => Arc::new(pools),
        Err(err) => return usage_error(&err),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.http_threads)
        .thread_name_fn(|| {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            // Relaxed: only a name.
            format!("rt-{}", NEXT.fetch_add(1, Ordering::Relaxed))
        })
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("harbor-server: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(shutdown::serve(&config, Arc::clone(&pools)));
    // Connections still open after the drain bound are dropped here.
    runtime.shutdown_timeout(shutdown::RUNTIME_GRACE);
    shutdown::stop_pools(&pools);
    let _ = std::io::stdout().flush();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("harbor-server: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A bad flag or value: the error and the usage on stderr, exit 2.
fn usage_error(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("harbor-server: {err}\n{USAGE}");
    ExitCode::from(2)
}

/// The request pool and the demo-job pool. Their settings come from flags,
/// so a setting the pool refuses is a bad flag.
fn build_pools(config: &Config) -> Result<Pools, ConfigError> {
    let http = Pool::builder()
        .workers(config.workers)
        .queue_capacity(config.queue)
        .thread_name("http")
        // Its finished records are never asked for by id.
        .retain_finished(0)
        .quiet_panics(true)
        .build()
        .map_err(|err| ConfigError::new(format!("request pool: {err}")))?;
    let jobs = Pool::builder()
        .workers(config.job_workers)
        .queue_capacity(config.job_queue)
        .retain_finished(config.retain_finished)
        .thread_name("job")
        .quiet_panics(true)
        .build()
        .map_err(|err| ConfigError::new(format!("job pool: {err}")))?;
    Ok(Pools { http, jobs })
}
