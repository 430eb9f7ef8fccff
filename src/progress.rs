//! Progress a tracked job reports through its token: the public
//! [`Progress`] snapshot, and [`ProgressCell`], the numbers in the job's
//! record.
//!
//! The numbers (`done`, `total`) are set in hot loops, so setting them takes
//! no lock and allocates nothing: they sit in a sequence lock built from
//! atomics alone (no `unsafe`). The message is set rarely; it lives beside
//! the status under the record's state lock (`registry/record.rs`), capped at
//! [`Progress::MAX_MESSAGE_BYTES`].
//!
//! Invariants:
//!
//! 1. `seq` is even when no write is in progress and odd during one. A
//!    writer makes it odd with a `fetch_or`, and owns the write only if it
//!    was even before; so writers take turns (concurrent writers are
//!    serialised; the last to take `seq` wins) and readers never hold a
//!    writer up.
//! 2. A writer stores the numbers after making `seq` odd (a release fence
//!    orders them after it) and then makes `seq` even again, moved on by
//!    one version, with a release store. A reader loads `seq` (acquire), the
//!    numbers (relaxed), then fences (acquire) and loads `seq` again: equal
//!    and even means both numbers came from one write, never a pair torn
//!    between two (H.-J. Boehm, "Can seqlocks get along with programming
//!    language memory models?", 2012).
//! 3. Bit 1 of `seq` records whether that write had a total; `seq == 0`
//!    means no numbers were ever set.
//! 4. Neither side runs user code or takes a lock; a writer waits only for
//!    another writer's few stores, a reader only for a write in progress.
//!    Every wait spins briefly, then yields.

// The loom facade: `ProgressCell` is modelled (`loom_tests` below).
use crate::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(all(test, loom))]
use loom::thread::yield_now;
#[cfg(not(all(test, loom)))]
use std::thread::yield_now;

/// The latest progress a tracked job reported through its
/// [`CancelToken`](crate::CancelToken).
///
/// Read it with [`Pool::info`](crate::Pool::info) (the
/// [`JobInfo::progress`](crate::JobInfo::progress) field) or
/// [`JobHandle::progress`](crate::JobHandle::progress). It is `None` there
/// until the job reports, and it stays in the record once the job ends.
///
/// The numbers and the message are set by separate calls
/// ([`CancelToken::set_progress`](crate::CancelToken::set_progress),
/// [`CancelToken::set_progress_message`](crate::CancelToken::set_progress_message))
/// and read separately, so a snapshot taken while the job reports may pair
/// new numbers with the previous message. `done` and `total` always come
/// from the same call.
///
/// # Examples
///
/// ```
/// use harbor_pool::{Pool, Progress};
///
/// let pool = Pool::new(1).unwrap();
/// let handle = pool
///     .submit(|token| {
///         token.set_progress_message("copying");
///         for chunk in 1..=4 {
///             token.set_progress(chunk, Some(4));
///         }
///         Ok(())
///     })
///     .unwrap();
/// let id = handle.id();
/// handle.wait(std::time::Duration::from_secs(10));
/// let progress: Progress = pool.info(id).unwrap().progress.unwrap();
/// assert_eq!((progress.done, progress.total), (4, Some(4)));
/// assert_eq!(progress.message.as_deref(), Some("copying"));
/// assert_eq!(progress.fraction(), Some(1.0));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Progress {
    /// Units of work done, as last reported (0 if only a message was set).
    pub done: u64,
    /// Units of work in all, if the job knows.
    pub total: Option<u64>,
    /// The last message, if one was set; at most
    /// [`MAX_MESSAGE_BYTES`](Self::MAX_MESSAGE_BYTES) bytes.
    pub message: Option<String>,
}

impl Progress {
    /// The longest message kept, in bytes: a longer one is cut at the last
    /// character boundary at or below it, so a job cannot grow its record
    /// (kept after it ends, up to
    /// [`retain_finished`](crate::Builder::retain_finished)) without bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::{Pool, Progress};
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool
    ///     .submit(|token| {
    ///         token.set_progress_message("x".repeat(10_000));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// handle.wait(std::time::Duration::from_secs(10));
    /// let message = handle.progress().unwrap().message.unwrap();
    /// assert_eq!(message.len(), Progress::MAX_MESSAGE_BYTES);
    /// ```
    pub const MAX_MESSAGE_BYTES: usize = 256;

    /// `done / total`, or `None` without a total (or with a total of 0). Not
    /// clamped: a job that reports more than its total gets more than 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use harbor_pool::Pool;
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let handle = pool
    ///     .submit(|token| {
    ///         token.set_progress(1, Some(4));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// handle.wait(std::time::Duration::from_secs(10));
    /// assert_eq!(handle.progress().unwrap().fraction(), Some(0.25));
    /// ```
    pub fn fraction(&self) -> Option<f64> {
        match self.total {
            Some(total) if total > 0 => Some(self.done as f64 / total as f64),
            _ => None,
        }
    }
}

/// Cuts `message` to at most [`Progress::MAX_MESSAGE_BYTES`] at a character
/// boundary, and gives back any capacity beyond its length, so a record
/// never keeps more than the cap (plus the allocator's rounding).
pub(crate) fn cap_message(mut message: String) -> Box<str> {
    if message.len() > Progress::MAX_MESSAGE_BYTES {
        let mut end = Progress::MAX_MESSAGE_BYTES;
        // Bounded: a UTF-8 character is at most 4 bytes long.
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message.into_boxed_str()
}

/// Bit 0 of `seq`: a write is in progress (invariant 1).
const WRITING: u64 = 1;
/// Bit 1 of `seq`: the last write had a total (invariant 3).
const HAS_TOTAL: u64 = 2;
/// One version of `seq`, above the two flag bits.
const VERSION: u64 = 4;

/// The numbers of a job's progress, in its record: a sequence lock of
/// atomics (see the module docs for the invariants).
#[derive(Default)]
pub(crate) struct ProgressCell {
    seq: AtomicU64,
    done: AtomicU64,
    /// Meaningful only when `seq` has [`HAS_TOTAL`].
    total: AtomicU64,
}

impl ProgressCell {
    /// Stores `done` and `total` as one update (invariants 1 and 2).
    pub(crate) fn set(&self, done: u64, total: Option<u64>) {
        let mut backoff = Backoff::default();
        // Bounded by the writer in progress, if any, finishing its three
        // stores (invariant 4).
        let seq = loop {
            // One read-modify-write when no other writer is mid-write. If
            // one is, the bit was set already and this changes nothing.
            // Acquire: this write comes after the previous writer's stores,
            // which its release store of `seq` published.
            let seq = self.seq.fetch_or(WRITING, Ordering::Acquire);
            if seq & WRITING == 0 {
                break seq;
            }
            // Another writer is mid-write. Tries are spaced out, so they
            // rarely take the line from it.
            backoff.snooze();
        };
        // Release fence: a reader that sees either store below also sees
        // `seq` odd after its acquire fence (invariant 2).
        fence(Ordering::Release);
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total.unwrap_or(0), Ordering::Relaxed);
        let flags = if total.is_some() { HAS_TOTAL } else { 0 };
        // The version wraps after 2^62 writes, which no job makes.
        self.end_write((seq & !(WRITING | HAS_TOTAL)).wrapping_add(VERSION) | flags);
    }

    /// Makes `seq` even again: a release store, which publishes the
    /// numbers to a reader's acquire load and to the next writer's
    /// `fetch_or`.
    ///
    /// Under loom it is a swap instead: loom 0.7 can order a plain store
    /// between the read and the write of another thread's
    /// read-modify-write (tokio-rs/loom#254), and would show a writer
    /// spinning forever on an odd `seq` that was already released. A
    /// release swap synchronises with those loads exactly as the store
    /// does.
    #[inline]
    fn end_write(&self, seq: u64) {
        #[cfg(not(all(test, loom)))]
        self.seq.store(seq, Ordering::Release);
        #[cfg(all(test, loom))]
        self.seq.swap(seq, Ordering::Release);
    }

    /// The numbers of the latest complete write, or `None` if there was
    /// none (invariants 2 and 3).
    pub(crate) fn get(&self) -> Option<(u64, Option<u64>)> {
        let mut backoff = Backoff::default();
        // Bounded by writes in progress: each retry means a write began or
        // ended meanwhile (invariant 4).
        loop {
            match self.try_get() {
                Ok(numbers) => return numbers,
                Err(Busy) => backoff.snooze(),
            }
        }
    }

    /// One attempt at [`get`](Self::get): `Err(Busy)` if a write was in
    /// progress or completed meanwhile. (The loom models check this, not
    /// the retrying loop: a model may let a retried load read the same
    /// stale value forever.)
    fn try_get(&self) -> Result<Option<(u64, Option<u64>)>, Busy> {
        // Acquire: pairs with a writer's release store of `seq`.
        let before = self.seq.load(Ordering::Acquire);
        if before == 0 {
            return Ok(None);
        }
        if before & WRITING != 0 {
            return Err(Busy);
        }
        let done = self.done.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        // Acquire fence: if a number came from a later write, the load
        // below sees that write's odd `seq` (invariant 2).
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != before {
            return Err(Busy);
        }
        Ok(Some((done, (before & HAS_TOTAL != 0).then_some(total))))
    }
}

/// A read met a write (see [`ProgressCell::try_get`]).
#[derive(Debug, PartialEq)]
struct Busy;

/// Spins a little, then yields (invariant 4). Under loom, always yields.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    /// Spin rounds (1, 2, 4, ... iterations) before yielding.
    const SPINS: u32 = 6;

    fn snooze(&mut self) {
        if cfg!(all(test, loom)) || self.0 >= Self::SPINS {
            yield_now();
        } else {
            for _ in 0..1_u32 << self.0 {
                std::hint::spin_loop();
            }
        }
        self.0 = self.0.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_until_set_then_the_latest_write() {
        let cell = ProgressCell::default();
        assert_eq!(cell.get(), None);
        cell.set(0, None);
        assert_eq!(cell.get(), Some((0, None)));
        cell.set(3, Some(10));
        assert_eq!(cell.get(), Some((3, Some(10))));
        cell.set(u64::MAX, Some(u64::MAX));
        assert_eq!(cell.get(), Some((u64::MAX, Some(u64::MAX))));
        cell.set(4, None);
        assert_eq!(cell.get(), Some((4, None)));
    }

    #[test]
    fn message_is_capped_at_a_char_boundary() {
        let cap = Progress::MAX_MESSAGE_BYTES;
        assert_eq!(&*cap_message("short".into()), "short");
        assert_eq!(cap_message("a".repeat(cap)).len(), cap);
        assert_eq!(cap_message("a".repeat(cap + 1)).len(), cap);
        // "é" is 2 bytes: an odd cut would split one.
        let accents = "é".repeat(cap);
        let capped = cap_message(format!("a{accents}"));
        assert_eq!(capped.len(), cap - 1);
        assert!(capped[1..].chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_capped_message_gives_its_memory_back() {
        let mut big = String::with_capacity(1 << 20);
        big.push_str(&"z".repeat(1000));
        let capped = cap_message(big);
        // A `Box<str>` has no spare capacity: its length is its allocation.
        assert_eq!(capped.len(), Progress::MAX_MESSAGE_BYTES);
    }
}

/// loom models of the sequence lock (see "Verification" in
/// `docs/design.md`): writers racing each other and a reader.
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::Arc;
    use loom::thread;

    use super::ProgressCell;
    use crate::sync::model;

    /// Two writers and a reader: a read that succeeds never returns a torn
    /// pair (each writer writes `done == total`), and the cell ends with
    /// one of the two writes whole (invariants 1 and 2). The racing read is
    /// one attempt (`try_get`): loom would let a retry loop read a stale
    /// `seq` forever.
    #[test]
    fn loom_writers_vs_reader() {
        model(|| {
            let cell = Arc::new(ProgressCell::default());
            let writers: Vec<_> = [1_u64, 2]
                .into_iter()
                .map(|n| {
                    let cell = Arc::clone(&cell);
                    thread::spawn(move || cell.set(n, Some(n)))
                })
                .collect();
            if let Ok(Some((done, total))) = cell.try_get() {
                assert_eq!(Some(done), total, "a torn pair");
            }
            for writer in writers {
                writer.join().unwrap();
            }
            let (done, total) = cell.get().expect("both writes finished");
            assert!(done == 1 || done == 2);
            assert_eq!(Some(done), total);
        });
    }

    /// A write with a total, then one without, against a reader: the flag
    /// bit travels with its own write's numbers (invariant 3).
    #[test]
    fn loom_total_flag_vs_reader() {
        model(|| {
            let cell = Arc::new(ProgressCell::default());
            let writer = {
                let cell = Arc::clone(&cell);
                thread::spawn(move || {
                    cell.set(1, Some(7));
                    cell.set(2, None);
                })
            };
            match cell.try_get() {
                Err(_) | Ok(None | Some((1, Some(7))) | Some((2, None))) => {}
                torn => panic!("a torn read: {torn:?}"),
            }
            writer.join().unwrap();
            assert_eq!(cell.get(), Some((2, None)));
        });
    }
}
