//! Serving until a signal, and the stop sequence:
//!
//! 1. SIGINT or SIGTERM: the accept loop stops and the listening socket
//!    closes (`shutting down: no longer accepting connections`); every
//!    connection is shut down gracefully (HTTP/1: `Connection: close` on
//!    the request in flight, idle ones closed; HTTP/2: GOAWAY); the job
//!    pool stops taking jobs.
//! 2. Demo jobs get `--shutdown-grace-ms`, then their tokens are cancelled
//!    (`Pool::shutdown_timeout`, on a blocking thread); long-polls on them
//!    then answer.
//! 3. Requests already received are answered: the connections get the
//!    grace plus [`DRAIN_GRACE`] (the longest `/sleep`) to finish; any still
//!    open then are dropped.
//! 4. The request pool shuts down (its jobs cancelled after
//!    [`POOL_GRACE`]); the summary goes to stdout.
//! 5. With a store: the store shuts down last, so that the pools' last
//!    transitions are in it ([`STORE_GRACE`] to write what it buffers; a
//!    clean stop marks the replica stopped and its unfinished jobs, if
//!    any, `lost`); exit 0.
//!
//! A second signal at any point exits at once with status 130. So the
//! process exits within the grace plus about 13 s.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::accept;
use crate::config::Config;
use crate::guard::Limits;
use crate::limits::RequestLimits;
use crate::metrics::{Metrics, Pools};
use crate::routes::{App, SLEEP_MAX};
use crate::service;
use crate::store::Attached;

/// How long requests get to finish after the demo jobs' grace.
pub(crate) const DRAIN_GRACE: Duration = SLEEP_MAX;
/// How long the runtime's remaining tasks get once serving is over.
pub(crate) const RUNTIME_GRACE: Duration = Duration::from_secs(1);
/// How long the request pool's jobs get at exit before they are cancelled.
pub(crate) const POOL_GRACE: Duration = Duration::from_secs(1);
/// How long the store gets at exit to write what it buffers.
pub(crate) const STORE_GRACE: Duration = Duration::from_secs(5);
/// File descriptors kept for the server's own use below the limit.
const RESERVED_FDS: u64 = 64;

/// Logs panics that are not a pool's job panics (the pools, built with
/// `quiet_panics`, keep theirs off stderr and log each once), so every
/// panic is one log record and nothing else is printed. Installed before
/// the pools are built: their hook chains to this one.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a non-string payload");
        match info.location() {
            Some(at) => log::error!("thread {name} panicked at {at}: {message}"),
            None => log::error!("thread {name} panicked: {message}"),
        }
    }));
}

/// SIGINT and SIGTERM.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// `--max-connections`, lowered to what the open-file limit allows.
fn connection_limit(requested: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let Some(soft) = limit.current else {
        return requested; // unlimited
    };
    let cap = usize::try_from(soft.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if requested > cap {
        log::info!(
            "--max-connections {requested} lowered to {cap}: the open-file limit is {soft} \
             ({RESERVED_FDS} kept for the server itself)"
        );
        return cap;
    }
    requested
}

/// Binds the listening socket.
pub(crate) async fn bind(addr: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| format!("cannot listen on {addr}: {err}"))
}

/// Serves until a signal, then stops (steps 1 to 3 of the module docs).
pub(crate) async fn serve(
    config: &Config,
    listener: TcpListener,
    pools: Arc<Pools>,
    store: Option<Arc<Attached>>,
) -> Result<(), String> {
    let addr = listener
        .local_addr()
        .map_err(|err| format!("cannot read the listening address: {err}"))?;
    let mut signals = Signals::new().map_err(|err| format!("cannot handle signals: {err}"))?;
    let max_connections = connection_limit(config.max_connections);
    let metrics = Arc::new(Metrics::new(
        Arc::clone(&pools),
        store.as_ref().map(|attached| Arc::clone(&attached.store)),
    ));
    let app = Arc::new(App {
        pools: Arc::clone(&pools),
        metrics: Arc::clone(&metrics),
        store,
    });
    let request_limits = Arc::new(RequestLimits {
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout,
        request_timeout: config.request_timeout,
        metrics: Arc::clone(&metrics),
    });
    let limits = Limits {
        max_header_bytes: config.max_header_bytes,
        header_timeout: config.header_timeout,
        keep_alive_timeout: config.keep_alive_timeout,
    };
    let shared = Arc::new(accept::Shared {
        stack: service::stack(app, request_limits),
        metrics,
        builder: accept::builder(&limits),
        limits: Arc::new(limits),
        permits: Arc::new(Semaphore::new(max_connections)),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let accepting = tokio::spawn(accept::accept_loop(listener, Arc::clone(&shared), stop_rx));

    // Connections are accepted from here on.
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    log::info!(
        "{} request workers, {} job workers, {} runtime threads, up to {max_connections} \
         connections; Ctrl-C or SIGTERM to stop",
        config.workers,
        config.job_workers,
        config.http_threads
    );

    let first = signals.next().await;
    let stopped = Instant::now();
    let _ = stop_tx.send(true);
    tokio::spawn(async move {
        let second = signals.next().await;
        eprintln!("harbor-server: second signal ({second}), exiting at once");
        std::process::exit(130);
    });
    // The loop returns at once; the listening socket closes with it.
    if let Err(err) = accepting.await {
        log::error!("the accept loop failed: {err}");
    }
    println!("shutting down: no longer accepting connections");
    let _ = std::io::stdout().flush();
    log::info!("{first}: stopping");

    let grace = config.shutdown_grace;
    let jobs = tokio::task::spawn_blocking(move || pools.jobs.shutdown_timeout(grace));
    let deadline = stopped + grace + DRAIN_GRACE;
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout_at(deadline, shared.permits.acquire_many(all))
        .await
        .is_err()
    {
        let open = max_connections - shared.permits.available_permits();
        log::warn!(
            "{open} connections still open {:?} after the signal; closing them",
            grace + DRAIN_GRACE
        );
    }
    match tokio::time::timeout_at(deadline, jobs).await {
        Ok(Ok(report)) if !report.joined() => {
            log::warn!("some demo jobs ignored cancellation; not waiting for them");
        }
        Ok(_) => {}
        Err(_) => log::warn!("the job pool did not stop in time; not waiting for it"),
    }
    Ok(())
}

/// Step 4: stops both pools (bounded) and prints the summary.
pub(crate) fn stop_pools(pools: &Pools) {
    if !pools.http.shutdown_timeout(POOL_GRACE).joined() {
        log::warn!("some request-pool jobs ignored cancellation; not waiting for them");
    }
    if !pools.jobs.shutdown_timeout(POOL_GRACE).joined() {
        log::warn!("some demo jobs ignored cancellation; not waiting for them");
    }
    let http = pools.http.stats();
    let jobs = pools.jobs.stats();
    println!(
        "stopped: http pool: handled {}, panicked {}; \
         job pool: completed {}, failed {}, cancelled {}",
        http.completed + http.failed,
        http.panicked,
        jobs.completed,
        jobs.failed,
        jobs.cancelled
    );
}

/// Step 5: stops the store (bounded), after the pools.
pub(crate) fn stop_store(store: &harbor_store_postgres::Store) {
    if !store.shutdown(STORE_GRACE) {
        log::warn!(
            "the job store did not stop cleanly within {STORE_GRACE:?}: some states may be \
             unwritten, and this replica's lease is left to expire"
        );
    }
}
