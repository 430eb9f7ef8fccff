//! The store as a pool's observer: `harbor_pool`'s observer seam delivers coalesced job snapshots on the pool's observer thread,
//! and [`Store::record`] only buffers them, so it never slows that thread
//! down on the database.

use crate::Store;

/// A [`Store`] observes a pool: every tracked job's transitions go to
/// [`Store::record`].
///
/// # Examples
///
/// ```no_run
/// use harbor_pool::Pool;
/// use harbor_store_postgres::{Store, StoreConfig};
/// use std::sync::Arc;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Arc::new(Store::open(StoreConfig::new("postgres://localhost/harbor", "a"))?);
/// let pool = Arc::new(Pool::builder().observer(store.clone()).build()?);
/// let weak = Arc::downgrade(&pool);
/// store.set_cancel_handler(move |id| {
///     if let Some(pool) = weak.upgrade() {
///         pool.cancel(id);
///     }
/// });
/// let handle = pool.submit(|_| Ok(()))?;
/// let id = handle.id();
/// handle.join()?;
/// pool.shutdown(); // delivers the last transitions
/// assert!(store.flush(std::time::Duration::from_secs(5)));
/// assert!(store.job(id)?.unwrap().status.is_terminal());
/// assert!(store.shutdown(std::time::Duration::from_secs(5)));
/// # Ok(())
/// # }
/// ```
impl harbor_pool::JobObserver for Store {
    fn observe(&self, batch: &[harbor_pool::JobInfo]) {
        self.record(batch);
    }
}
