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
//! | `store` | the PostgreSQL store behind `--database-url`: opening it, reads, waits and cancels by id across replicas |
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
mod store;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use harbor_pool::Pool;
use harbor_store_postgres::Store;

use crate::config::{Command, Config, ConfigError, DATABASE_URL_ENV, USAGE};
use crate::metrics::Pools;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let env_url = std::env::var(DATABASE_URL_ENV).ok();
    let config = match Config::from_args_and_env(std::env::args().skip(1), env_url) {
        Ok(Command::Serve(config)) => *config,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => return usage_error(&err),
    };
    shutdown::install_panic_hook();
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
    // Listening first: the replica's default id and address are the
    // listening port and address.
    let listener = match runtime.block_on(shutdown::bind(&config.addr)) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("harbor-server: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Opened on the main thread, outside the runtime: it connects and
    // migrates, blocking.
    let store = match &config.store {
        None => None,
        Some(flags) => match store::open(flags, listener.local_addr().ok()) {
            Ok(attached) => Some(Arc::new(attached)),
            Err(store::OpenError::Config(err)) => return usage_error(&err),
            Err(store::OpenError::Unavailable(err)) => {
                eprintln!("harbor-server: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    let pools = match build_pools(&config, store.as_deref().map(|attached| &attached.store)) {
        Ok(pools) => Arc::new(pools),
        Err(err) => return usage_error(&err),
    };
    if let Some(attached) = &store {
        attached.cancel_through(&pools);
    }
    let served = runtime.block_on(shutdown::serve(
        &config,
        listener,
        Arc::clone(&pools),
        store.clone(),
    ));
    // Connections still open after the drain bound are dropped here.
    runtime.shutdown_timeout(shutdown::RUNTIME_GRACE);
    // The pools first, so that their jobs' last states reach the store.
    shutdown::stop_pools(&pools);
    if let Some(attached) = &store {
        shutdown::stop_store(&attached.store);
    }
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

/// The request pool and the demo-job pool, whose jobs' transitions go to
/// the store when there is one. Their settings come from flags, so a
/// setting the pool refuses is a bad flag.
fn build_pools(config: &Config, store: Option<&Arc<Store>>) -> Result<Pools, ConfigError> {
    let http = Pool::builder()
        .workers(config.workers)
        .queue_capacity(config.queue)
        .thread_name("http")
        // Its finished records are never asked for by id.
        .retain_finished(0)
        .quiet_panics(true)
        .build()
        .map_err(|err| ConfigError::new(format!("request pool: {err}")))?;
    let mut jobs = Pool::builder();
    if let Some(store) = store {
        jobs = jobs.observer(Arc::clone(store) as Arc<dyn harbor_pool::JobObserver>);
    }
    let jobs = jobs
        .workers(config.job_workers)
        .queue_capacity(config.job_queue)
        .retain_finished(config.retain_finished)
        .thread_name("job")
        .quiet_panics(true)
        .build()
        .map_err(|err| ConfigError::new(format!("job pool: {err}")))?;
    Ok(Pools { http, jobs })
}
