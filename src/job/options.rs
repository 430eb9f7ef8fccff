//! [`JobOptions`], the per-job options of
//! [`Pool::submit_with`](crate::Pool::submit_with).

use std::time::Duration;

/// Per-job options for [`Pool::submit_with`](crate::Pool::submit_with).
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobOptions, JobStatus, Pool};
/// use std::time::Duration;
///
/// let pool = Pool::new(1).unwrap();
/// let handle = pool
///     .submit_with(JobOptions::new().timeout(Duration::from_millis(20)), |token| {
///         token.sleep(Duration::from_secs(60))?; // ends early at the deadline
///         Ok(())
///     })
///     .unwrap();
/// assert_eq!(handle.wait(Duration::from_secs(30)), Some(JobStatus::Cancelled));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) abandon_after: Option<Duration>,
}

impl JobOptions {
    /// Options with no deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = harbor_pool::JobOptions::new();
    /// assert_eq!(options, harbor_pool::JobOptions::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives the job a deadline `timeout` after submission. When it passes,
    /// a pending job is cancelled (it never starts) and a running job's
    /// token is cancelled. One timer thread drives every deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = harbor_pool::JobOptions::new().timeout(Duration::from_secs(5));
    /// assert_ne!(options, harbor_pool::JobOptions::new());
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Abandons this job if it has not returned `grace` after the pool
    /// cancelled its token (by id, by its deadline, or by
    /// `shutdown_now`), overriding
    /// [`Builder::abandon_after`](crate::Builder::abandon_after): it ends
    /// [`JobStatus::Abandoned`](super::JobStatus::Abandoned) and its worker
    /// thread is replaced.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = harbor_pool::JobOptions::new()
    ///     .timeout(Duration::from_secs(5))
    ///     .abandon_after(Duration::from_secs(1));
    /// assert_ne!(options, harbor_pool::JobOptions::new());
    /// ```
    pub fn abandon_after(mut self, grace: Duration) -> Self {
        self.abandon_after = Some(grace);
        self
    }
}
