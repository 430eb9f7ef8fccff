//! The PostgreSQL store behind `--database-url`: opening it, and the
//! reads, waits and cancels by id the routes make of it when a job is not
//! in this replica's pool.
//!
//! The store's calls that touch the database ([`Store::job`],
//! [`Store::cancel`]) block for a query, so they run on tokio's blocking
//! pool (`spawn_blocking`), never on a runtime thread;
//! [`Store::wait_async`] is a future woken by the store's own waiter
//! thread and holds no thread while it waits. The pool's observer feeds
//! the store ([`Store::record`] only buffers), so a store that cannot
//! reach PostgreSQL never slows or stops a local job, and local status is
//! always answered from the pool first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use harbor_pool::JobId;
use harbor_store_postgres::{CancelRequest, Store, StoreConfig, StoreError, StoredJob};

use crate::config::{ConfigError, StoreFlags};
use crate::metrics::Pools;

/// How long a store read or cancel may take beyond the store's own bound
/// (one query, plus a connect timeout): a hung blocking call answers 503
/// after it instead of holding its request until the request timeout.
const CALL_BOUND: Duration = Duration::from_secs(15);

/// The store, and who this replica is in it.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) store: Arc<Store>,
    /// This replica's id in the store.
    pub(crate) replica: String,
    /// Where clients reach it, as registered.
    pub(crate) address: String,
}

/// Why the store did not open.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// A bad setting (exit 2, with the usage).
    Config(ConfigError),
    /// PostgreSQL could not be reached or refused us (exit 1).
    Unavailable(String),
}

/// Opens the store for this replica. `addr` is where the server listens:
/// the replica id defaults to `HOSTNAME:PORT` and the address to
/// `http://HOST:PORT`.
pub(crate) fn open(flags: &StoreFlags, addr: Option<SocketAddr>) -> Result<Attached, OpenError> {
    let port = addr.map_or(0, |addr| addr.port());
    let replica = flags
        .replica_id
        .clone()
        .unwrap_or_else(|| format!("{}:{port}", hostname()));
    let address = flags.replica_address.clone().unwrap_or_else(|| match addr {
        Some(addr) => format!("http://{addr}"),
        None => String::new(),
    });
    let config = StoreConfig::new(flags.database_url.clone(), replica.clone())
        .address(address.clone())
        .lease(flags.lease)
        .cancel_poll(flags.cancel_poll)
        .wait_poll(flags.wait_poll);
    let store = Store::open(config).map_err(|err| match err {
        StoreError::Config(message) => OpenError::Config(ConfigError::new(message)),
        other => OpenError::Unavailable(format!("cannot open the job store: {other}")),
    })?;
    log::info!(
        "job store attached: replica {replica} at {address}, lease {:?}",
        flags.lease
    );
    Ok(Attached {
        store: Arc::new(store),
        replica,
        address,
    })
}

/// The machine's host name (`uname`'s node name), or `localhost`.
fn hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name.into_owned()
    }
}

/// Why a store call gave no answer: the message of a 503.
#[derive(Debug)]
pub(crate) struct Unanswered(pub(crate) String);

impl Attached {
    /// Cancel requests for this replica's jobs, made from any replica,
    /// cancel them in the job pool. The store calls it on its listener
    /// thread; `Pool::cancel` takes a lock briefly at most.
    pub(crate) fn cancel_through(&self, pools: &Arc<Pools>) {
        let pools = Arc::downgrade(pools);
        self.store.set_cancel_handler(move |id| {
            if let Some(pools) = pools.upgrade() {
                let outcome = pools.jobs.cancel(id);
                log::debug!("cancel of job {id} requested through the store: {outcome:?}");
            }
        });
    }

    /// Any replica's job, read from the store on a blocking thread.
    pub(crate) async fn job(&self, id: JobId) -> Result<Option<StoredJob>, Unanswered> {
        let store = Arc::clone(&self.store);
        blocking(move || store.job(id)).await
    }

    /// A cancel request for any replica's job, on a blocking thread.
    pub(crate) async fn cancel(&self, id: JobId) -> Result<CancelRequest, Unanswered> {
        let store = Arc::clone(&self.store);
        blocking(move || store.cancel(id)).await
    }

    /// Waits up to `timeout` for any replica's job to end, holding no
    /// thread: the store's waiter thread wakes the future (on `NOTIFY`
    /// from the writing replica, or its poll). The job's latest state at
    /// the timeout; `None` if the store has no such job.
    pub(crate) async fn wait(
        &self,
        id: JobId,
        timeout: Duration,
    ) -> Result<Option<StoredJob>, Unanswered> {
        // The store resolves a wait by its deadline plus one query; the
        // extra bound only covers a query hung on a dead network.
        match tokio::time::timeout(timeout + CALL_BOUND, self.store.wait_async(id, timeout)).await {
            Ok(result) => result.map_err(unanswered),
            Err(_) => Err(Unanswered(format!(
                "job store: no answer about job {id} within {:?}",
                timeout + CALL_BOUND
            ))),
        }
    }
}

/// Runs a blocking store call on tokio's blocking pool, bounded.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Unanswered> {
    match tokio::time::timeout(CALL_BOUND, tokio::task::spawn_blocking(call)).await {
        Ok(Ok(result)) => result.map_err(unanswered),
        Ok(Err(join)) => Err(Unanswered(format!("job store call failed: {join}"))),
        Err(_) => Err(Unanswered(format!(
            "job store: no answer within {CALL_BOUND:?}"
        ))),
    }
}

fn unanswered(err: StoreError) -> Unanswered {
    match err {
        StoreError::Shutdown => Unanswered("server is shutting down".to_owned()),
        other => {
            log::warn!("job store: {other}");
            Unanswered(format!("job store unavailable: {other}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_replica_id_is_a_config_error_before_connecting() {
        let flags = StoreFlags {
            // Nothing listens here; the bad id is refused first.
            database_url: "host=127.0.0.1 port=1 connect_timeout=1".into(),
            replica_id: Some("x".repeat(harbor_store_postgres::MAX_REPLICA_ID_BYTES + 1)),
            replica_address: None,
            lease: Duration::from_secs(15),
            cancel_poll: Duration::from_secs(2),
            wait_poll: Duration::from_secs(1),
        };
        assert!(matches!(open(&flags, None), Err(OpenError::Config(_))));
        let unreachable = StoreFlags {
            replica_id: Some("a".into()),
            ..flags
        };
        match open(&unreachable, None) {
            Err(OpenError::Unavailable(message)) => {
                assert!(
                    message.starts_with("cannot open the job store: "),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_host_name_is_never_empty() {
        assert!(!hostname().is_empty());
    }
}
