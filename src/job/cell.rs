//! The internal job cell: [`JobCell`], the one allocation of a tracked job
//! shared by the queue, the registry and the job's handle; the views of it
//! they hold ([`Tracked`], type-erased, for the queue and the registry;
//! [`Slot`], typed, for the handle); [`new_cell`], which builds it; and
//! [`Message`], a unit of work on the queue.
//!
//! The invariants are numbered in the parent module's docs (`job.rs`):
//! 1 to 4 are the cell's.

use std::panic::RefUnwindSafe;
use std::sync::{Arc, Mutex, Weak};

use super::handle::Awaiting;
use super::{JobHandle, JobId, JobOptions, JobStatus};
use crate::cancel::CancelToken;
use crate::error::{JobError, JobResult};
use crate::events::{Span, SpanSlot};
use crate::metrics::Tick;
use crate::observer::{Feed, Mark};
use crate::registry::{Record, Submitted};
use crate::shared::Shared;
use crate::sync::lock;
use crate::unwind;

/// How a worker's run of a tracked job ended.
pub(crate) struct Outcome {
    pub(crate) status: JobStatus,
    pub(crate) panicked: bool,
}

/// A tracked job, type-erased for the queue and the registry.
/// `RefUnwindSafe` so that a [`CancelToken`] holding a job stays unwind-safe.
pub(crate) trait Tracked: Send + Sync + RefUnwindSafe {
    fn record(&self) -> &Record;

    /// Takes the span current where the job was submitted (nothing
    /// without the `tracing` feature), for the worker that runs it.
    fn take_span(&self) -> Span;

    /// Runs the job on the current (worker) thread, after `Record::start`,
    /// handing it `token` (made by [`CancelToken::for_job`] from this job).
    /// Never unwinds: user panics are caught (invariant 4).
    fn run(&self, token: &CancelToken) -> Outcome;

    /// Drops the closure without running it (invariant 1). Returns whether
    /// there was one to drop (it had neither run nor been dropped before).
    fn discard(&self) -> bool;

    /// Stores the result for a job whose worker died under it.
    fn lose(&self, message: &str);

    /// Stores [`JobError::Abandoned`] as the result of a job given up on,
    /// and refuses (drops) whatever the job returns later.
    fn abandon(&self);
}

/// The typed side of a tracked job, seen by its [`JobHandle`].
pub(super) trait Slot<T>: Tracked {
    fn take_result(&self) -> Option<Result<T, JobError>>;
    fn detach(&self);
    /// Takes the result and detaches, under one lock: for `join`, which
    /// consumes the handle.
    fn take_result_and_detach(&self) -> Option<Result<T, JobError>>;
}

pub(crate) struct JobCell<F, T> {
    record: Record,
    /// Until a worker takes it to run the job, or the job is discarded.
    span: SpanSlot,
    job: Mutex<Option<F>>,
    slot: Mutex<SlotState<T>>,
}

struct SlotState<T> {
    result: Option<Result<T, JobError>>,
    detached: bool,
}

impl<F, T> JobCell<F, T>
where
    F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn store(&self, result: Result<T, JobError>) {
        let refused = {
            let mut slot = lock(&self.slot);
            if slot.detached {
                Some(result)
            } else {
                slot.result = Some(result);
                None
            }
        };
        // Outside the lock, contained (invariants 3 and 4).
        if let Some(result) = refused {
            unwind::drop_quietly(result);
        }
    }
}

impl<F, T> Tracked for JobCell<F, T>
where
    F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn record(&self) -> &Record {
        &self.record
    }

    fn take_span(&self) -> Span {
        self.span.take()
    }

    fn run(&self, token: &CancelToken) -> Outcome {
        let Some(job) = lock(&self.job).take() else {
            // Unreachable: only a started job runs, and a started job was not
            // discarded (invariant 1). Answer safely anyway.
            return Outcome {
                status: JobStatus::Cancelled,
                panicked: false,
            };
        };
        let (status, result, panicked) = match unwind::catch(|| job(token)) {
            Ok(Ok(value)) => (JobStatus::Completed, Ok(value), false),
            Ok(Err(err)) if token.is_cancelled() => {
                unwind::drop_quietly(err);
                (JobStatus::Cancelled, Err(JobError::Cancelled), false)
            }
            Ok(Err(err)) => {
                let message = unwind::catch(|| err.to_string()).unwrap_or_else(|panic| {
                    format!("the job's error panicked while being formatted: {panic}")
                });
                (
                    JobStatus::Failed(message),
                    Err(JobError::Failed(err)),
                    false,
                )
            }
            Err(message) => (
                JobStatus::Failed(message.clone()),
                Err(JobError::Panicked(message)),
                true,
            ),
        };
        self.store(result);
        Outcome { status, panicked }
    }

    fn discard(&self) -> bool {
        let job = lock(&self.job).take();
        let had = job.is_some();
        // Never to run: its span goes too (closing it runs the subscriber).
        if let Some(message) = unwind::drop_quietly((job, self.span.take())) {
            // Runs on the supervisor and in the worker's drop guard too.
            log_quietly!(log::warn!(
                "dropping cancelled job {} panicked: {message}",
                self.record.id
            ));
        }
        had
    }

    fn lose(&self, message: &str) {
        let mut slot = lock(&self.slot);
        // A result already stored is the job's real one: keep it.
        if !slot.detached && slot.result.is_none() {
            slot.result = Some(Err(JobError::WorkerDied(message.to_owned())));
        }
    }

    fn abandon(&self) {
        let mut slot = lock(&self.slot);
        if !slot.detached && slot.result.is_none() {
            slot.result = Some(Err(JobError::Abandoned));
        }
        // Invariant 3's refusal: the value the job may still return is
        // dropped by its thread when it does.
        slot.detached = true;
    }
}

impl<F, T> Slot<T> for JobCell<F, T>
where
    F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    T: Send + 'static,
{
    fn take_result(&self) -> Option<Result<T, JobError>> {
        lock(&self.slot).result.take()
    }

    fn detach(&self) {
        drop(self.take_result_and_detach());
    }

    fn take_result_and_detach(&self) -> Option<Result<T, JobError>> {
        let mut slot = lock(&self.slot);
        slot.detached = true;
        // Returned, so a result the caller drops is dropped after unlocking
        // (invariant 4).
        slot.result.take()
    }
}

/// Builds the shared cell for a new tracked job, on the submitting thread
/// (it captures that thread's current span).
#[cfg(test)]
pub(crate) fn new_cell<F, T>(
    id: JobId,
    options: JobOptions,
    feed: Option<Arc<Feed>>,
    job: F,
) -> (Arc<dyn Tracked>, JobHandleParts<T>)
where
    F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    T: Send + 'static,
{
    let at = Submitted::now(options.timeout);
    new_cell_in(SpanSlot::current(), at, id, options, feed, job)
}

/// [`new_cell`] with the submitting thread's span and the submission time
/// already read: runs no user code and cannot unwind.
pub(crate) fn new_cell_in<F, T>(
    span: SpanSlot,
    at: Submitted,
    id: JobId,
    options: JobOptions,
    feed: Option<Arc<Feed>>,
    job: F,
) -> (Arc<dyn Tracked>, JobHandleParts<T>)
where
    F: FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    T: Send + 'static,
{
    let mut record = Record::new_at(id, options.timeout, options.abandon_after, at);
    record.mark = Mark::new(feed);
    let cell = Arc::new(JobCell {
        record,
        span,
        job: Mutex::new(Some(job)),
        slot: Mutex::new(SlotState {
            result: None,
            detached: false,
        }),
    });
    (cell.clone(), JobHandleParts { cell })
}

/// Builds a tracked job and its handle outside any pool (for unit tests).
#[cfg(test)]
pub(crate) fn test_cell<T: Send + 'static>(
    job: impl FnOnce(&CancelToken) -> JobResult<T> + Send + 'static,
    shared: &Arc<Shared>,
) -> (Arc<dyn Tracked>, JobHandle<T>) {
    let id = shared.registry.new_id();
    let (cell, parts) = new_cell(id, JobOptions::default(), None, job);
    (cell, parts.into_handle(Arc::downgrade(shared), shared.id))
}

/// The typed half of [`new_cell`], turned into a handle once the job is queued.
pub(crate) struct JobHandleParts<T> {
    cell: Arc<dyn Slot<T>>,
}

impl<T> JobHandleParts<T> {
    /// The handle of a job queued on the pool `shared`, whose id is `pool`.
    pub(crate) fn into_handle(self, shared: Weak<Shared>, pool: usize) -> JobHandle<T> {
        JobHandle {
            cell: self.cell,
            shared,
            pool,
            awaiting: Awaiting::Idle,
        }
    }
}

/// A unit of work on the queue.
pub(crate) enum Message {
    /// An untracked job from [`Pool::execute`](crate::Pool::execute), and
    /// the span current where it was submitted, and when it was submitted
    /// (for the queue wait histogram).
    Run(Box<dyn FnOnce() + Send + 'static>, Span, Tick),
    /// A tracked job.
    Track(Arc<dyn Tracked>),
    /// Test seam: a tracked job whose worker thread dies while running it,
    /// outside any `catch_unwind` (as a bug in the pool would).
    #[cfg(test)]
    Poison(Arc<dyn Tracked>),
}

impl Message {
    /// The tracked job inside, if any.
    pub(crate) fn tracked(&self) -> Option<&Arc<dyn Tracked>> {
        match self {
            Message::Run(..) => None,
            Message::Track(job) => Some(job),
            #[cfg(test)]
            Message::Poison(job) => Some(job),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_slot_drops_results_at_once() {
        let (cell, parts) = new_cell(
            JobId::new(),
            JobOptions::default(),
            None,
            |_: &CancelToken| Ok(vec![1_u8; 16]),
        );
        let handle = parts.into_handle(Weak::new(), 0);
        let typed = Arc::clone(&handle.cell);
        drop(handle);
        assert!(cell.record().start(0));
        let outcome = cell.run(&CancelToken::for_job(Arc::clone(&cell)));
        assert_eq!(outcome.status, JobStatus::Completed);
        assert!(
            typed.take_result().is_none(),
            "a detached job keeps no value"
        );
    }

    /// A job that returns just as the supervisor gives up on it: its record
    /// is `Abandoned` first, so its handle must say so too, whether it joins
    /// before or after the slot refuses the value (first terminal state
    /// wins, registry invariant 1).
    #[test]
    fn a_value_returned_as_the_job_is_abandoned_is_not_handed_out() {
        for join_before_the_slot_refuses in [false, true] {
            let (cell, parts) = new_cell(
                JobId::new(),
                JobOptions::default(),
                None,
                |_: &CancelToken| Ok(7),
            );
            let handle = parts.into_handle(Weak::new(), 0);
            assert!(cell.record().start(0));
            // The job returns and stores its value; the supervisor abandons
            // the record before the worker marks it finished.
            let outcome = cell.run(&CancelToken::for_job(Arc::clone(&cell)));
            assert_eq!(outcome.status, JobStatus::Completed);
            assert!(cell.record().abandon().is_some());
            let joined = if join_before_the_slot_refuses {
                let joined = handle.join();
                cell.abandon();
                joined
            } else {
                cell.abandon();
                handle.join()
            };
            assert!(cell.record().finish(outcome.status).is_none());
            assert_eq!(cell.record().status(), JobStatus::Abandoned);
            assert!(
                matches!(joined, Err(JobError::Abandoned)),
                "joined {joined:?} (join first: {join_before_the_slot_refuses})"
            );
        }
    }
}
