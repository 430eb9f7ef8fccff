//! [`JobId`]: a tracked job's id, a UUID made by the pool's registry, and
//! its one spelling (printed and parsed as the hyphenated UUID).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::ParseJobIdError;

/// The id of a tracked job: a UUID, unique and unguessable.
///
/// It prints and parses as the hyphenated UUID, so it can travel through
/// URLs, logs and JSON. A pool makes its ids as version 8 (custom) UUIDs:
/// 69 random bits, so an id cannot be guessed from another, and the place
/// where the pool files the job's record, so finding it by id is an index,
/// not a hash probe. Any UUID parses into a `JobId`; one the pool did not
/// make simply finds no job. Treat ids as opaque: the layout may change.
///
/// # Examples
///
/// ```
/// use harbor_pool::{JobId, Pool};
///
/// let pool = Pool::new(1).unwrap();
/// let handle = pool.submit(|_| Ok(())).unwrap();
/// let id: JobId = handle.id();
/// let text = id.to_string();
/// assert_eq!(text.len(), 36);
/// assert_eq!(text.parse::<JobId>().unwrap(), id);
/// assert!("nope".parse::<JobId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Uuid);

impl JobId {
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        JobId(Uuid::new_v4())
    }

    /// The UUID behind this id.
    ///
    /// # Examples
    ///
    /// ```
    /// let id: harbor_pool::JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
    /// assert_eq!(id.as_uuid().to_string(), "67e55044-10b1-426f-9247-bb680e5fe0c8");
    /// ```
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for JobId {
    fn from(uuid: Uuid) -> Self {
        JobId(uuid)
    }
}

impl From<JobId> for Uuid {
    fn from(id: JobId) -> Self {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0.hyphenated())
    }
}

impl FromStr for JobId {
    type Err = ParseJobIdError;

    /// Parses the hyphenated form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`),
    /// in either case. Other UUID spellings are refused, so one id has one
    /// spelling in URLs and logs.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(ParseJobIdError {
                reason: format!(
                    "expected a hyphenated uuid of 36 characters, found {}",
                    s.len()
                ),
            });
        }
        Uuid::try_parse(s)
            .map(JobId)
            .map_err(|err| ParseJobIdError {
                reason: err.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_other_spellings() {
        let id = JobId::new();
        let simple = id.as_uuid().simple().to_string();
        assert!(simple.parse::<JobId>().is_err());
        assert_eq!(id.to_string().to_uppercase().parse::<JobId>().unwrap(), id);
        assert!("".parse::<JobId>().is_err());
        assert!(
            "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"
                .parse::<JobId>()
                .is_err()
        );
    }
}
