//! Every error of the store.

use harbor_pool::JobId;

/// Why a store operation failed.
///
/// # Examples
///
/// ```
/// use harbor_store_postgres::{StoreConfig, StoreError};
///
/// let err = StoreConfig::new("host=localhost", "").validate().unwrap_err();
/// assert!(matches!(err, StoreError::Config(_)));
/// assert_eq!(err.to_string(), "bad store config: the replica id is empty");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A setting of [`StoreConfig`](crate::StoreConfig) is out of range or
    /// the database URL does not parse; the text names it.
    #[error("bad store config: {0}")]
    Config(String),
    /// PostgreSQL could not be reached, or the connection broke during the
    /// operation. Nothing is retried by a read or a cancel: ask again.
    #[error("postgres unavailable: {}", describe(.0))]
    Unavailable(#[source] postgres::Error),
    /// PostgreSQL answered with an error (a bug, or a schema changed by hand).
    #[error("postgres error: {}", describe(.0))]
    Postgres(#[source] postgres::Error),
    /// The store has been shut down.
    #[error("the store is shut down")]
    Shutdown,
    /// A wait ended at its deadline without a single answer from
    /// PostgreSQL about the job (the database was unreachable throughout).
    #[error("job {id}: no answer from postgres within {waited:?}")]
    NoAnswer {
        /// The job waited for.
        id: JobId,
        /// How long the wait lasted.
        waited: std::time::Duration,
    },
    /// A row holds a value the store does not know (a newer replica's
    /// status, or a row changed by hand).
    #[error("job {id}: unknown status {status:?} in the store")]
    UnknownStatus {
        /// The job whose row it is.
        id: JobId,
        /// The text found in its `status` column.
        status: String,
    },
}

impl StoreError {
    /// Sorts a driver error: a closed or failed connection is
    /// [`Unavailable`](Self::Unavailable), anything the server answered is
    /// [`Postgres`](Self::Postgres).
    pub(crate) fn from_pg(err: postgres::Error) -> Self {
        if err.as_db_error().is_some() && !is_connection_gone(&err) {
            StoreError::Postgres(err)
        } else {
            StoreError::Unavailable(err)
        }
    }

    /// Whether the error says the connection cannot be used again, so the
    /// caller should drop it and reconnect.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(harbor_store_postgres::StoreError::Shutdown.is_unavailable() == false);
    /// ```
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Whether a driver error means the server went away: the connection is
/// closed, or the server is shutting down or terminated the backend
/// (SQLSTATE class 57, "operator intervention", and class 08, "connection
/// exception").
pub(crate) fn is_connection_gone(err: &postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("57") || code.starts_with("08")
        }
        None => err.as_db_error().is_none(),
    }
}

/// A driver error with the server's message, which the driver's own
/// `Display` ("db error") leaves to its source.
pub(crate) fn describe(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => match std::error::Error::source(err) {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}
