//! The store's settings, checked before anything connects.

use std::time::Duration;

use crate::StoreError;

/// How to reach PostgreSQL and how the store behaves: who this replica is,
/// how long its lease lasts, how often it polls, how much it buffers.
///
/// Setters take and return the config by value, like
/// `std::thread::Builder`. [`Store::open`](crate::Store::open) checks every
/// setting ([`validate`](Self::validate)) and names a bad one in
/// [`StoreError::Config`].
///
/// # Examples
///
/// ```
/// use harbor_store_postgres::StoreConfig;
/// use std::time::Duration;
///
/// let config = StoreConfig::new("postgres://harbor@db/harbor", "replica-a")
///     .address("http://10.0.0.5:8080")
///     .lease(Duration::from_secs(20))
///     .cancel_poll(Duration::from_secs(2))
///     .retention(Some(Duration::from_secs(7 * 24 * 3600)));
/// assert!(config.validate().is_ok());
/// assert_eq!(config.heartbeat_interval(), Duration::from_secs(20) / 3);
///
/// // Its Debug output, fit for logs, hides a password in the URL.
/// let secret = StoreConfig::new("postgres://harbor:s3cret@db/harbor", "a");
/// assert!(!format!("{secret:?}").contains("s3cret"));
/// let secret = StoreConfig::new("host=db password=s3cret user=harbor", "a");
/// assert!(!format!("{secret:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct StoreConfig {
    pub(crate) url: String,
    pub(crate) replica: String,
    pub(crate) address: Option<String>,
    pub(crate) lease: Duration,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) cancel_poll: Duration,
    pub(crate) wait_poll: Duration,
    pub(crate) notifications: bool,
    pub(crate) buffer_capacity: usize,
    pub(crate) max_batch: usize,
    pub(crate) retention: Option<Duration>,
    pub(crate) retention_interval: Duration,
    pub(crate) retention_batch: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact(&self.url))
            .field("replica", &self.replica)
            .field("address", &self.address)
            .field("lease", &self.lease)
            .field("heartbeat", &self.heartbeat_interval())
            .field("cancel_poll", &self.cancel_poll)
            .field("wait_poll", &self.wait_poll)
            .field("notifications", &self.notifications)
            .field("buffer_capacity", &self.buffer_capacity)
            .field("max_batch", &self.max_batch)
            .field("retention", &self.retention)
            .field("retention_interval", &self.retention_interval)
            .field("retention_batch", &self.retention_batch)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &(self.backoff_min..self.backoff_max))
            .finish()
    }
}

/// The URL with its password replaced by `***`: `user:***@host` in a URL,
/// `password=***` in a `key=value` string.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}");
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The longest replica id accepted, in bytes.
pub const MAX_REPLICA_ID_BYTES: usize = 200;

impl StoreConfig {
    /// A config for `replica` (this process's stable id: the same id
    /// across restarts, so a restart can mark its previous run's jobs
    /// `lost`) storing into the database at `url` (a `postgres://` URL or
    /// `key=value` string, as libpq takes).
    ///
    /// Defaults: lease 15 s (heartbeat every third of it), cancel poll
    /// 2 s, wait poll 1 s, LISTEN/NOTIFY on, a buffer of 100,000 jobs,
    /// batches of up to 5,000, retention of finished rows for 7 days
    /// checked every minute and deleted 1,000 rows at a time, connect
    /// timeout 5 s, reconnect backoff from 50 ms up to 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = harbor_store_postgres::StoreConfig::new("host=/run/postgresql", "a");
    /// assert_eq!(config.replica_id(), "a");
    /// ```
    pub fn new(url: impl Into<String>, replica: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            replica: replica.into(),
            address: None,
            lease: Duration::from_secs(15),
            heartbeat: None,
            cancel_poll: Duration::from_secs(2),
            wait_poll: Duration::from_secs(1),
            notifications: true,
            buffer_capacity: 100_000,
            max_batch: 5_000,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_interval: Duration::from_secs(60),
            retention_batch: 1_000,
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
        }
    }

    /// This replica's id.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(harbor_store_postgres::StoreConfig::new("", "b").replica_id(), "b");
    /// ```
    pub fn replica_id(&self) -> &str {
        &self.replica
    }

    /// Where clients reach this replica (say its base URL), shown to
    /// readers of its jobs. Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = harbor_store_postgres::StoreConfig::new("", "a").address("http://a:8080");
    /// assert!(config.validate().is_err()); // the empty URL, not the address
    /// ```
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// How long this replica's lease lasts from each heartbeat: once it has
    /// expired without a clean stop, readers see the replica's unfinished
    /// jobs as `lost`. At least 1 s; default 15 s. An outage of PostgreSQL
    /// longer than the lease costs this replica its unfinished jobs (they
    /// are marked `lost` when its heartbeat gets through again): readers
    /// cannot tell a dead replica from one they cannot hear.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a");
    /// assert!(config.clone().lease(Duration::from_millis(10)).validate().is_err());
    /// assert!(config.lease(Duration::from_secs(2)).validate().is_ok());
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often the lease is renewed. Default: a third of the lease; at
    /// most half of it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a")
    ///     .heartbeat(Duration::from_secs(1));
    /// assert_eq!(config.heartbeat_interval(), Duration::from_secs(1));
    /// ```
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// The heartbeat period in force: the one set, or a third of the lease.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a").lease(Duration::from_secs(9));
    /// assert_eq!(config.heartbeat_interval(), Duration::from_secs(3));
    /// ```
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat.unwrap_or(self.lease / 3)
    }

    /// How often this replica asks PostgreSQL for cancel requests of its
    /// own unfinished jobs, besides listening for them: the bound on how
    /// long a lost notification delays a cancel. At least 10 ms; default
    /// 2 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a").cancel_poll(Duration::ZERO);
    /// assert!(config.validate().is_err());
    /// ```
    pub fn cancel_poll(mut self, every: Duration) -> Self {
        self.cancel_poll = every;
        self
    }

    /// How often waits ([`Store::wait`](crate::Store::wait)) re-read their
    /// jobs besides being woken by notifications: the bound on how late a
    /// wait sees a job become `lost` (no notification says so) or a state
    /// whose notification was lost. At least 10 ms; default 1 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a").wait_poll(Duration::from_millis(200));
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn wait_poll(mut self, every: Duration) -> Self {
        self.wait_poll = every;
        self
    }

    /// Whether to LISTEN for notifications at all. Turn it off behind a
    /// connection pooler that cannot hold a LISTEN (PgBouncer in
    /// transaction mode): cancels and waits then run on the polls alone.
    /// Default: on.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a").notifications(false);
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn notifications(mut self, listen: bool) -> Self {
        self.notifications = listen;
        self
    }

    /// How many jobs' latest states may wait in memory for the database
    /// (while it is slow or away). A job's newer state replaces its older
    /// one, so this counts jobs, not transitions. When full, a terminal
    /// state evicts an unfinished one (whose own terminal state comes
    /// later) and anything else is dropped, counted in
    /// [`StoreStats::overflowed`](crate::StoreStats::overflowed) and logged.
    /// At least 1; default 100,000.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a").buffer_capacity(0);
    /// assert!(config.validate().is_err());
    /// ```
    pub fn buffer_capacity(mut self, jobs: usize) -> Self {
        self.buffer_capacity = jobs;
        self
    }

    /// The most job states written by one statement. 1 to 65,536; default
    /// 5,000.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a").max_batch(100);
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn max_batch(mut self, jobs: usize) -> Self {
        self.max_batch = jobs;
        self
    }

    /// How long finished rows (terminal for at least that long) are kept;
    /// `None` keeps them forever. Default: 7 days.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a").retention(None);
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn retention(mut self, keep: Option<Duration>) -> Self {
        self.retention = keep;
        self
    }

    /// How often retention runs, and how many rows one `DELETE` removes
    /// (a pass repeats it until fewer are left). Defaults: every minute,
    /// 1,000 rows. The interval is at least 10 ms, the batch at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a")
    ///     .retention_schedule(Duration::from_secs(10), 500);
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn retention_schedule(mut self, every: Duration, batch: usize) -> Self {
        self.retention_interval = every;
        self.retention_batch = batch;
        self
    }

    /// The bound on one connection attempt, used where the URL sets none.
    /// Default: 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a")
    ///     .connect_timeout(Duration::from_secs(1));
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The reconnect backoff of the background threads: the first retry
    /// after `min`, doubling up to `max`. Defaults: 50 ms, 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = harbor_store_postgres::StoreConfig::new("host=x", "a")
    ///     .backoff(Duration::from_secs(2), Duration::from_secs(1));
    /// assert!(config.validate().is_err());
    /// ```
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// Checks every setting; the error names the first bad one.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = harbor_store_postgres::StoreConfig::new("host=x", "a")
    ///     .max_batch(0)
    ///     .validate()
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "bad store config: max_batch must be 1 to 65536, not 0");
    /// ```
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |text: String| Err(StoreError::Config(text));
        let floor = std::time::Duration::from_millis(10);
        if self.replica.is_empty() {
            return bad("the replica id is empty".into());
        }
        if self.replica.len() > MAX_REPLICA_ID_BYTES {
            return bad(format!(
                "the replica id is {} bytes, at most {MAX_REPLICA_ID_BYTES}",
                self.replica.len()
            ));
        }
        if self.replica.chars().any(char::is_whitespace) {
            return bad("the replica id contains whitespace".into());
        }
        if self.lease < Duration::from_secs(1) {
            return bad(format!("lease must be at least 1s, not {:?}", self.lease));
        }
        let beat = self.heartbeat_interval();
        if beat < floor || beat > self.lease / 2 {
            return bad(format!(
                "heartbeat must be 10ms to half the lease ({:?}), not {beat:?}",
                self.lease / 2
            ));
        }
        for (name, value) in [
            ("cancel_poll", self.cancel_poll),
            ("wait_poll", self.wait_poll),
            ("retention interval", self.retention_interval),
        ] {
            if value < floor {
                return bad(format!("{name} must be at least 10ms, not {value:?}"));
            }
        }
        if self.buffer_capacity == 0 {
            return bad("buffer_capacity must be at least 1".into());
        }
        if self.max_batch == 0 || self.max_batch > 65_536 {
            return bad(format!(
                "max_batch must be 1 to 65536, not {}",
                self.max_batch
            ));
        }
        if self.retention_batch == 0 {
            return bad("the retention batch must be at least 1".into());
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return bad(format!(
                "backoff must be 0 < min <= max, not {:?}..{:?}",
                self.backoff_min, self.backoff_max
            ));
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout must not be zero".into());
        }
        self.pg_config().map(|_| ())
    }

    /// The driver's config: the URL, with this config's connect timeout
    /// where the URL sets none and TCP keepalives, so a dead server is
    /// noticed rather than waited on forever; `application_name` is
    /// `harbor-store <replica> <role>`, so `pg_stat_activity` shows which
    /// connection is which.
    pub(crate) fn pg_config(&self) -> Result<postgres::Config, StoreError> {
        self.pg_config_for("reader")
    }

    pub(crate) fn pg_config_for(&self, role: &str) -> Result<postgres::Config, StoreError> {
        let mut config: postgres::Config = self
            .url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Config(format!("database url: {e}")))?;
        if self.url.trim().is_empty() {
            return Err(StoreError::Config("the database url is empty".into()));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.connect_timeout);
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.application_name(&format!("harbor-store {} {role}", self.replica));
        Ok(config)
    }
}
