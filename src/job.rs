//! Job ids, statuses, options, the internal job types and [`JobHandle`].
//!
//! A tracked job is one allocation, a [`JobCell`](cell::JobCell), shared by
//! the queue, the registry and the job's handle. It holds the type-erased
//! [`Record`](crate::registry::Record) (status and times), the closure
//! until a worker takes it, and the result slot the handle reads. (A job
//! with a timeout or its own grace has them in a second, small
//! allocation.)
//!
//! Invariants:
//!
//! 1. The closure is taken at most once: by the worker that started the job,
//!    or dropped by whoever cancelled it while pending.
//! 2. The result slot is written before the record becomes terminal, so a
//!    [`JobHandle::join`] that sees a terminal record finds the result there.
//!    A cancelled-while-pending job writes no result; `join` reports
//!    [`JobError::Cancelled`](crate::JobError::Cancelled) for an empty
//!    slot.
//! 3. Once the handle is dropped (detached), the slot refuses results and
//!    they are dropped at once, so finished records kept for status queries
//!    hold no job values.
//! 4. No user code (the job, its captures' or results' `Drop`, its error's
//!    `Display`) runs while a lock is held, and all of it runs under
//!    `catch_unwind` on the worker.
//! 5. A [`JobHandle`] waited on ([`join`](JobHandle::join),
//!    [`wait`](JobHandle::wait), [`join_timeout`](JobHandle::join_timeout),
//!    or polled as a future) by one of its own pool's workers runs the job
//!    there if it is still pending (worker invariant 7): submit-then-join
//!    inside a job never deadlocks, however few workers the pool has.
//! 6. A future awaiting a job ([`JobHandle`] as a `Future`, or
//!    [`WaitStatus`] from [`Pool::wait_async`](crate::Pool::wait_async))
//!    holds at most one waker registration in the job's record and
//!    withdraws it when dropped (registry invariant 7), so futures that
//!    come and go leave nothing behind. Nothing polls: the thread that ends
//!    the job wakes them.
//! 7. A handle yields its result once, through `join` or a `Ready` poll;
//!    afterwards polling and `join` return
//!    [`JobError::ResultTaken`](crate::JobError::ResultTaken).
//!
//! What lives where: the public job types one per file, [`JobId`] in
//! `id.rs`, [`JobStatus`] and [`CancelOutcome`] in `status.rs`,
//! [`JobOptions`] in `options.rs`, [`JobInfo`] in `info.rs`, and
//! [`JobHandle`] with its `Future` impl (and [`WaitStatus`], the future of
//! `Pool::wait_async`) in `handle.rs`; the internal job cell, its
//! [`Tracked`] and typed views, [`new_cell`] and the queue's [`Message`] in
//! `cell.rs`.

mod cell;
mod handle;
mod id;
mod info;
mod options;
mod status;

pub use self::handle::JobHandle;
pub use self::id::JobId;
pub use self::info::JobInfo;
pub use self::options::JobOptions;
pub use self::status::{CancelOutcome, JobStatus};

pub(crate) use self::cell::{Message, Tracked, new_cell_in};
#[cfg(test)]
pub(crate) use self::cell::{new_cell, test_cell};
pub(crate) use self::handle::WaitStatus;
