//! Waiting for a job to end, from any replica: blocking or as a future,
//! woken by `NOTIFY` and by a poll, never by a runtime.
//!
//! Every wait is a [`WaitSlot`] handed to the waiter thread, which reads
//! the waited jobs in one query when a slot arrives, when the listener
//! relays a `harbor_done` notification (a batch with a terminal state was
//! written somewhere), every `wait_poll`, and at each slot's deadline.
//!
//! Invariants:
//!
//! 1. A slot is resolved once; later results are ignored.
//! 2. Every slot is resolved by its deadline plus one query: with the job
//!    once it is terminal, else at the deadline with its latest state read
//!    (`Ok(None)` if the store never had it), or `NoAnswer` if no read
//!    succeeded; `Shutdown` when the store stops.
//! 3. A slot's lock is never held while waking its waker (user code).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use harbor_pool::JobId;
use postgres::Client;

use crate::StoreError;
use crate::conn::{JOB_COLUMNS, JOB_FROM, connect, job_from_row};
use crate::job::StoredJob;
use crate::store::Inner;

type WaitResult = Result<Option<StoredJob>, StoreError>;

#[derive(Debug, Default)]
struct SlotState {
    result: Option<WaitResult>,
    waker: Option<Waker>,
    /// The job as last read, for a deadline whose own read fails.
    last: Option<Option<StoredJob>>,
}

/// One wait. See the module docs.
#[derive(Debug)]
pub(crate) struct WaitSlot {
    pub(crate) id: JobId,
    started: Instant,
    pub(crate) deadline: Instant,
    state: Mutex<SlotState>,
    done: Condvar,
}

impl WaitSlot {
    pub(crate) fn new(id: JobId, timeout: Duration) -> Arc<Self> {
        let started = Instant::now();
        Arc::new(WaitSlot {
            id,
            started,
            deadline: started + timeout,
            state: Mutex::new(SlotState::default()),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps invariants 1 and 3.
    pub(crate) fn resolve(&self, result: WaitResult) {
        let mut state = self.lock();
        if state.result.is_some() {
            return;
        }
        state.result = Some(result);
        let waker = state.waker.take();
        drop(state);
        self.done.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn is_resolved(&self) -> bool {
        self.lock().result.is_some()
    }

    /// Resolves at the deadline with the latest state read (invariant 2).
    fn expire(&self) {
        let last = self.lock().last.clone();
        self.resolve(match last {
            Some(job) => Ok(job),
            None => Err(StoreError::NoAnswer {
                id: self.id,
                waited: self.started.elapsed(),
            }),
        });
    }

    /// Blocks until resolved, at most `bound`; then `NoAnswer`.
    pub(crate) fn block(&self, bound: Duration) -> WaitResult {
        let until = Instant::now() + bound;
        let mut state = self.lock();
        // Wait loop: until resolved (invariant 2 bounds it) or the bound.
        loop {
            if let Some(result) = state.result.take() {
                return result;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::NoAnswer {
                    id: self.id,
                    waited: self.started.elapsed(),
                });
            }
            state = self
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// A wait for a job to end, from
/// [`Store::wait_async`](crate::Store::wait_async): a future that any
/// executor can poll, woken by the store's waiter thread; it blocks no
/// thread and needs no runtime.
///
/// Resolves to the job once it is terminal; at the timeout, to its latest
/// state (`Ok(None)` if the store has no such job), or `NoAnswer` if the
/// database could not be read at all. Dropping it abandons the wait.
///
/// # Examples
///
/// ```no_run
/// use harbor_store_postgres::{Store, StoreConfig};
/// use std::time::Duration;
///
/// # async fn handler(store: &Store, id: harbor_pool::JobId) -> Result<(), harbor_store_postgres::StoreError> {
/// let job = store.wait_async(id, Duration::from_secs(30)).await?;
/// if let Some(job) = job {
///     assert_eq!(job.id, id);
///     println!("{}", job.status);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a wait does nothing unless awaited"]
pub struct WaitFuture {
    slot: Arc<WaitSlot>,
}

impl WaitFuture {
    pub(crate) fn new(slot: Arc<WaitSlot>) -> Self {
        WaitFuture { slot }
    }
}

impl Future for WaitFuture {
    type Output = WaitResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.lock();
        if let Some(result) = state.result.take() {
            return Poll::Ready(result);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The waiter thread. See the module docs.
pub(crate) fn run(inner: Arc<Inner>, slots: Receiver<Arc<WaitSlot>>, pokes: Receiver<()>) {
    let mut active: Vec<Arc<WaitSlot>> = Vec::new();
    let mut client: Option<Client> = None;
    let mut next_poll = Instant::now() + inner.config.wait_poll;
    loop {
        let now = Instant::now();
        let wake_at = active
            .iter()
            .map(|slot| slot.deadline)
            .min()
            .map_or(now + Duration::from_secs(1), |deadline| {
                deadline.min(next_poll)
            });
        let timeout = wake_at.saturating_duration_since(now);
        let mut fresh = Vec::new();
        select! {
            recv(inner.stop) -> _ => {
                // Disconnected: the store is shutting down (invariant 2).
                for slot in active.drain(..).chain(slots.try_iter()) {
                    slot.resolve(Err(StoreError::Shutdown));
                }
                return;
            }
            recv(slots) -> slot => match slot {
                Ok(slot) => {
                    fresh.push(slot);
                    fresh.extend(slots.try_iter());
                }
                Err(_) => return,
            },
            recv(pokes) -> _ => {
                check(&inner, &mut client, &active);
            }
            default(timeout) => {}
        }
        if !fresh.is_empty() {
            // A job may have ended before its wait began: read it now.
            check(&inner, &mut client, &fresh);
            active.append(&mut fresh);
        }
        let now = Instant::now();
        if now >= next_poll {
            next_poll = now + inner.config.wait_poll;
            check(&inner, &mut client, &active);
        }
        let expired: Vec<Arc<WaitSlot>> = active
            .iter()
            .filter(|slot| slot.deadline <= now && !slot.is_resolved())
            .cloned()
            .collect();
        if !expired.is_empty() {
            check(&inner, &mut client, &expired);
            for slot in &expired {
                slot.expire();
            }
        }
        // A slot only this thread holds has no waiter left.
        active.retain(|slot| !slot.is_resolved() && Arc::strong_count(slot) > 1);
    }
}

/// Reads `slots`' jobs in one query; resolves those that have ended and
/// remembers the others' states. On failure drops the connection (the next
/// check reconnects: checks come at most every `wait_poll` and on events).
fn check(inner: &Inner, client: &mut Option<Client>, slots: &[Arc<WaitSlot>]) {
    if slots.is_empty() {
        return;
    }
    if client.as_ref().is_none_or(Client::is_closed) {
        match connect(&inner.config, "waiter") {
            Ok(new) => *client = Some(new),
            Err(err) => {
                log::debug!("waits: cannot connect: {err}");
                *client = None;
                return;
            }
        }
    }
    let Some(conn) = client.as_mut() else { return };
    let ids: Vec<uuid::Uuid> = slots.iter().map(|slot| *slot.id.as_uuid()).collect();
    let sql = format!("SELECT {JOB_COLUMNS} {JOB_FROM} WHERE j.id = ANY($1)");
    let rows = match conn.query(&sql, &[&ids]) {
        Ok(rows) => rows,
        Err(err) => {
            log::debug!("waits: read failed: {}", crate::error::describe(&err));
            *client = None;
            return;
        }
    };
    let mut jobs: HashMap<JobId, StoredJob> = HashMap::with_capacity(rows.len());
    for row in &rows {
        match job_from_row(row) {
            Ok(job) => {
                jobs.insert(job.id, job);
            }
            Err(err) => log::warn!("waits: {err}"),
        }
    }
    for slot in slots {
        let job = jobs.get(&slot.id).cloned();
        if let Some(job) = job.as_ref().filter(|job| job.status.is_terminal()) {
            slot.resolve(Ok(Some(job.clone())));
        } else {
            slot.lock().last = Some(job);
        }
    }
}
