//! A PostgreSQL registry of [`harbor_pool`] jobs, so that every replica of
//! a service can answer for and cancel any replica's job by id.
//!
//! harbor jobs are closures: they cannot move between processes. So this
//! is a shared **registry**, not a queue: a job runs on the replica that
//! accepted it, and its status, progress, error and cancel requests live
//! in PostgreSQL, where every replica reads and acts on them.
//!
//! * [`Store::record`] takes the pool's job snapshots (`&[JobInfo]`, as
//!   the pool's observer delivers them) and writes them in batches, one
//!   statement per batch, never letting a stale state overwrite a later
//!   one. A database that goes away never blocks the caller: states are
//!   buffered (bounded, coalesced by job) and written after a reconnect.
//! * [`Store::job`], [`Store::wait`] and [`Store::wait_async`] read any
//!   replica's job; [`Store::cancel`] cancels it from any replica: one
//!   statement records the request and notifies the owner, whose handler
//!   ([`Store::set_cancel_handler`], typically `Pool::cancel`) cancels it.
//! * Replicas hold leases. A crashed replica's unfinished jobs read as
//!   [`StoredStatus::Lost`] once its lease expires, and a replica
//!   restarted under the same id marks its previous run's unfinished jobs
//!   `lost`: a job is never silently re-run.
//!
//! # Example
//!
//! ```no_run
//! use harbor_pool::Pool;
//! use harbor_store_postgres::{CancelRequest, Store, StoreConfig, StoredStatus};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "postgres://harbor@localhost/harbor";
//! // Replica A runs jobs and records them.
//! let pool = Arc::new(Pool::new(4)?);
//! let a = Store::open(StoreConfig::new(url, "a").address("http://a:8080"))?;
//! let weak = Arc::downgrade(&pool);
//! a.set_cancel_handler(move |id| {
//!     if let Some(pool) = weak.upgrade() {
//!         pool.cancel(id);
//!     }
//! });
//! let handle = pool.submit(|token| {
//!     token.sleep(Duration::from_secs(3600))?;
//!     Ok(())
//! })?;
//! a.record(&[pool.info(handle.id()).unwrap()]);
//! a.flush(Duration::from_secs(5));
//!
//! // Replica B (another process) sees it and cancels it.
//! let b = Store::open(StoreConfig::new(url, "b"))?;
//! assert_eq!(b.job(handle.id())?.unwrap().replica, "a");
//! assert!(matches!(b.cancel(handle.id())?, CancelRequest::Requested { .. }));
//! handle.wait(Duration::from_secs(5));
//! a.record(&[pool.info(handle.id()).unwrap()]);
//! let job = b.wait(handle.id(), Duration::from_secs(5))?.unwrap();
//! assert_eq!(job.status, StoredStatus::Cancelled);
//! # Ok(())
//! # }
//! ```
//!
//! # Why the synchronous `postgres` crate
//!
//! The store runs its own threads (writer, listener, waiter, maintenance),
//! like the pool it serves, and is fed from the pool's observer thread:
//! blocking calls on dedicated threads are the simple, honest shape, with
//! no runtime to own, start or shut down, and no way to be dropped inside
//! one by accident. `postgres` drives each connection on the calling
//! thread. Async callers are served without a runtime dependency:
//! [`Store::wait_async`] is a plain future woken by the waiter thread (the
//! pool's own futures work the same way), and the short reads
//! ([`Store::job`], [`Store::cancel`]) go through the runtime's blocking
//! pool (`spawn_blocking`). `tokio-postgres` would have tied the store to
//! tokio and its lifecycle to a runtime's for little gain here: batching,
//! not pipelining, is what makes writes fast.
//!
//! # Schema, guarantees and design
//!
//! The crate's README has the schema and what is and is not guaranteed;
//! the design (with a diagram) and how `harbor-server` uses the store are
//! in the workspace's `docs/design.md` ("Several replicas: the PostgreSQL
//! store"): read them beside this documentation.
//!
//! # Testing
//!
//! The `testing` feature adds [`testing`]: a throwaway PostgreSQL for
//! tests, started from the installed binaries. Only tests use it.
//!
//! # Logging
//!
//! Through `log`: warn when writes start failing (info when they resume),
//! when the buffer overflows and when jobs are marked lost; error when a
//! cancel handler panics or the store gives up on unwritten states at
//! shutdown; info at open and stop; debug and trace for the rest.
#![forbid(unsafe_code)]

mod buffer;
mod config;
mod conn;
mod error;
mod job;
mod listener;
mod maintenance;
mod schema;
mod store;
mod wait;
mod writer;

// `impl harbor_pool::JobObserver for Store`.
mod observer;

#[cfg(feature = "testing")]
pub mod testing;

pub use crate::config::{MAX_REPLICA_ID_BYTES, StoreConfig};
pub use crate::error::StoreError;
pub use crate::job::{CancelRequest, StoredJob, StoredStatus, Transition};
pub use crate::schema::SCHEMA_VERSION;
pub use crate::store::{Store, StoreStats};
pub use crate::wait::WaitFuture;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<Store>();
        assert_send_sync::<StoreConfig>();
        assert_send_sync::<StoreError>();
        assert_send_sync::<StoredJob>();
        assert_send_sync::<Transition>();
        assert_send_sync::<WaitFuture>();
        assert_send_sync::<CancelRequest>();
    }
}
