//! The store as the pool's observer: the seam of `harbor_pool` (branch
//! wt-obs) delivers coalesced job snapshots on the pool's observer thread;
//! this hands them to [`Store::record`], which only buffers.
//!
//! Switched on by deleting the `#[cfg(harbor_observer)]` lines in
//! `lib.rs` once `harbor_pool::JobObserver` exists.

use std::sync::Arc;

use crate::Store;

/// A [`Store`] shared with a pool as its observer.
///
/// # Examples
///
/// ```no_run
/// use harbor_store_postgres::{Store, StoreConfig, StoreObserver};
/// use std::sync::Arc;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Arc::new(Store::open(StoreConfig::new("postgres://localhost/harbor", "a"))?);
/// let observer = StoreObserver::new(Arc::clone(&store));
/// let pool = harbor_pool::Pool::builder().observer(observer).build()?;
/// let handle = pool.submit(|_| Ok(()))?;
/// handle.join()?;
/// pool.shutdown();
/// assert!(store.shutdown(std::time::Duration::from_secs(5)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StoreObserver(Arc<Store>);

impl StoreObserver {
    /// Observes into `store`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = std::sync::Arc::new(harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a"))?);
    /// let observer = harbor_store_postgres::StoreObserver::new(store.clone());
    /// assert_eq!(observer.store().replica_id(), "a");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(store: Arc<Store>) -> Self {
        StoreObserver(store)
    }

    /// The store observed into.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = std::sync::Arc::new(harbor_store_postgres::Store::open(
    ///     harbor_store_postgres::StoreConfig::new("postgres://localhost/harbor", "a"))?);
    /// assert!(std::sync::Arc::ptr_eq(harbor_store_postgres::StoreObserver::new(store.clone()).store(), &store));
    /// # Ok(())
    /// # }
    /// ```
    pub fn store(&self) -> &Arc<Store> {
        &self.0
    }
}

impl harbor_pool::JobObserver for StoreObserver {
    fn observe(&self, batch: &[harbor_pool::JobInfo]) {
        self.0.record(batch);
    }
}
