//! The registry's unit tests: retention and eviction (invariant 3),
//! shrinking (invariant 5), ids and the ring (invariant 9, `ring.rs`).
use std::cell::Cell;
use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::cancel::CancelToken;
use crate::job::{JobOptions, new_cell};

thread_local! {
    /// Shrinks done by this thread (each test runs on its own thread).
    pub(super) static SHRINKS: Cell<usize> = const { Cell::new(0) };
}

#[test]
fn retention_evicts_oldest_first() {
    let registry = Registry::new(3);
    let ids: Vec<JobId> = (0..10)
        .map(|_| {
            let job = new_job(&registry);
            let id = job.record().id;
            registry.insert(job);
            id
        })
        .collect();
    for &id in &ids {
        registry.retire(id);
    }
    assert_eq!(registry.len(), 3);
    for &id in &ids[..7] {
        assert!(registry.get(id).is_none());
    }
    for &id in &ids[7..] {
        assert!(registry.get(id).is_some());
    }
}

#[test]
fn large_retention_evicts_in_batches_within_bounds() {
    let retain = 64;
    let registry = Registry::new(retain);
    let batch = registry.batch;
    assert_eq!(batch, 4);
    let ids: Vec<JobId> = (0..1_000)
        .map(|_| {
            let job = new_job(&registry);
            let id = job.record().id;
            registry.insert(job);
            registry.retire(id);
            assert!(registry.len() <= retain, "never above the limit");
            id
        })
        .collect();
    let kept = registry.len();
    assert!(kept > retain - batch, "{kept}");
    // The newest are kept, the oldest gone.
    assert!(
        ids[ids.len() - kept..]
            .iter()
            .all(|&id| registry.get(id).is_some())
    );
    assert!(
        ids[..ids.len() - kept]
            .iter()
            .all(|&id| registry.get(id).is_none())
    );
}

#[test]
fn concurrent_retirers_keep_within_bounds() {
    // Several threads retiring into shared shards: every eviction finds
    // what it claimed (none is skipped in a shard it read unlocked), so
    // the count ends within the bounds of invariant 3.
    for retain in [0, 1, 5, 64] {
        let registry = Registry::new(retain);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..5_000 {
                        let job = new_job(&registry);
                        let id = job.record().id;
                        registry.insert(job);
                        registry.retire(id);
                    }
                });
            }
        });
        let kept = registry.len();
        assert!(kept <= retain, "{kept} kept of {retain}");
        assert!(kept + registry.batch > retain, "{kept} kept of {retain}");
        let queued: usize = registry
            .shards
            .iter()
            .map(|s| lock(&s.retiring.lock).len())
            .sum();
        assert_eq!(queued, kept, "every kept record is queued once");
    }
}

/// A new pending record with an id of `registry`'s.
fn new_job(registry: &Registry) -> Arc<dyn Tracked> {
    new_cell(
        registry.new_id(),
        JobOptions::default(),
        None,
        |_: &CancelToken| Ok(()),
    )
    .0
}

/// Inserts a new pending record and returns its id.
fn insert_new(registry: &Registry) -> JobId {
    let job = new_job(registry);
    let id = job.record().id;
    registry.insert(job);
    id
}

/// An eviction returns only once every retired record below its boundary
/// is gone, even one another evictor is still removing (invariant 3):
/// evictor B pauses between popping `first` and removing it from its ring,
/// and evictor C, whose boundary is above `first`, returns only after B
/// removed it. With the pop and the removal under different locks, C
/// skipped `first`'s shard and returned with `first` still there.
#[test]
fn an_eviction_returns_only_once_older_popped_records_are_gone() {
    let registry = Arc::new(Registry::new(0));
    let first = insert_new(&registry);
    let second = insert_new(&registry);
    let (paused, go) = MID_EVICTION.pause(registry.salt as usize);
    let b = {
        let registry = Arc::clone(&registry);
        std::thread::spawn(move || registry.retire(first))
    };
    paused
        .recv_timeout(Duration::from_secs(10))
        .expect("B reached its eviction");
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let c = {
        let registry = Arc::clone(&registry);
        std::thread::spawn(move || {
            registry.retire(second);
            seen_tx.send(registry.get(first).is_none()).unwrap();
        })
    };
    // C must not return while B is paused; if it does, what it saw fails
    // the test below. Then B is released either way.
    let early = seen.recv_timeout(Duration::from_millis(500)).ok();
    go.send(()).unwrap();
    let gone = early.or_else(|| seen.recv_timeout(Duration::from_secs(10)).ok());
    b.join().unwrap();
    c.join().unwrap();
    assert_eq!(gone, Some(true), "C returned with `first` still retained");
    assert!(registry.get(second).is_none());
}

#[test]
fn shards_shrink_after_a_burst() {
    let retain = 64;
    let registry = Registry::new(retain);
    let ids: Vec<JobId> = (0..SHARDS * 2_000).map(|_| insert_new(&registry)).collect();
    let grown: usize = registry.capacities().iter().sum();
    assert!(grown >= ids.len());
    for &id in &ids {
        registry.retire(id);
    }
    assert!(registry.len() <= retain);
    // Every shard back at or below the floor: nothing is held for the
    // records that left.
    let capacities = registry.capacities();
    assert!(
        capacities.iter().all(|&c| c <= SHRINK_FLOOR),
        "{capacities:?} (grown to {grown} in all)"
    );
}

#[test]
fn removing_failed_submissions_shrinks_too() {
    let registry = Registry::new(64);
    let ids: Vec<JobId> = (0..SHARDS * 2_000).map(|_| insert_new(&registry)).collect();
    for &id in &ids {
        assert!(registry.remove(id).is_some());
    }
    let capacities = registry.capacities();
    assert!(
        capacities.iter().all(|&c| c <= SHRINK_FLOOR),
        "{capacities:?}"
    );
}

#[test]
fn steady_load_never_reallocates() {
    // Well above the floor in every shard: about 600 retained and 200
    // pending records each, the count moving by a batch as records are
    // evicted.
    let retain = SHARDS * 600;
    let registry = Registry::new(retain);
    let mut pending = std::collections::VecDeque::new();
    let mut step = || {
        pending.push_back(insert_new(&registry));
        if pending.len() > SHARDS * 200 {
            registry.retire(pending.pop_front().unwrap());
        }
    };
    for _ in 0..4 * retain {
        step();
    }
    let settled = SHRINKS.with(Cell::get);
    for _ in 0..4 * retain {
        step();
    }
    assert_eq!(SHRINKS.with(Cell::get), settled, "shrank at steady state");
}

#[test]
fn ids_are_unique_version_8_uuids_that_find_their_records() {
    let registry = Registry::new(64);
    let ids: Vec<JobId> = (0..SHARDS * 300).map(|_| insert_new(&registry)).collect();
    let distinct: std::collections::HashSet<JobId> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len());
    for &id in &ids {
        assert_eq!(id.as_uuid().get_version_num(), 8, "{id}");
        assert_eq!(id.as_uuid().get_variant(), uuid::Variant::RFC4122, "{id}");
        assert_eq!(registry.get(id).unwrap().record().id, id);
    }
    // Numbered in order within a shard.
    let [a, b, _] = same_shard(&registry);
    assert_eq!(registry.place(b).1, registry.place(a).1 + 1);
    // Another registry's ids for the same places differ.
    let other = Registry::new(64);
    assert!((0..SHARDS * 300).all(|_| !distinct.contains(&other.new_id())));
}

#[test]
fn foreign_and_forged_ids_find_nothing() {
    let registry = Registry::new(64);
    let id = insert_new(&registry);
    let bits = id.as_uuid().as_u128();
    // The same place, other random bits: a guess at a neighbour's id.
    for flip in [1_u128 << 100, 1 << 70, 1 << 65] {
        let forged = JobId::from(Uuid::from_u128(bits ^ flip));
        assert_eq!(registry.place(forged), registry.place(id));
        assert!(registry.get(forged).is_none());
        assert!(registry.with(forged, |_| ()).is_none());
        assert!(registry.remove(forged).is_none());
    }
    for foreign in [
        JobId::new(),
        JobId::from(Uuid::nil()),
        JobId::from(Uuid::max()),
    ] {
        assert!(registry.get(foreign).is_none());
        assert!(registry.remove(foreign).is_none());
    }
    assert!(registry.get(id).is_some(), "still there");
    assert_eq!(registry.len(), 1);
}

#[test]
fn a_record_whose_slot_the_front_passed_is_still_found() {
    // Three numbers in one shard, inserted out of order (submitters
    // racing): the middle one comes and goes, the front moves past the
    // first, which then arrives and is filed in the overflow.
    let registry = Registry::new(64);
    let [early, middle, late] = same_shard(&registry);
    registry.insert(job_for(late));
    registry.insert(job_for(middle));
    assert!(registry.remove(middle).is_some());
    registry.insert(job_for(early));
    let shard = registry.place(early).0;
    assert_eq!(lock(&registry.shards[shard].lock).overflowed(), 1);
    for id in [early, late] {
        assert_eq!(registry.get(id).unwrap().record().id, id);
        assert!(registry.remove(id).is_some());
    }
    assert_eq!(registry.len(), 0);
}

/// Three new ids of one shard, numbered in order.
fn same_shard(registry: &Registry) -> [JobId; 3] {
    let first = registry.new_id();
    let shard = registry.place(first).0;
    [first, next_in(registry, shard), next_in(registry, shard)]
}

/// A new id of shard `shard`.
fn next_in(registry: &Registry, shard: usize) -> JobId {
    loop {
        let id = registry.new_id();
        if registry.place(id).0 == shard {
            return id;
        }
    }
}

#[test]
fn a_record_that_stays_costs_one_entry_not_a_slot_per_job_since() {
    // One job that never ends while a million come and go in its shard:
    // the ring stays short, the long-lived record moves to the overflow
    // and is still found and removed.
    let registry = Registry::new(0);
    let stays = insert_new(&registry);
    let shard = registry.place(stays).0;
    for _ in 0..SHARDS * 40_000 {
        let id = insert_new(&registry);
        assert!(registry.remove(id).is_some());
    }
    {
        let state = lock(&registry.shards[shard].lock);
        assert!(state.span() <= 4 + ring::SLACK, "{}", state.span());
        assert!(state.capacity() <= SHRINK_FLOOR);
        assert_eq!(state.overflowed(), 1);
    }
    assert_eq!(registry.get(stays).unwrap().record().id, stays);
    assert!(registry.remove(stays).is_some());
    assert_eq!(registry.len(), 0);
}

/// A job numbered `id`, not yet inserted.
fn job_for(id: JobId) -> Arc<dyn Tracked> {
    new_cell(id, JobOptions::default(), None, |_: &CancelToken| Ok(())).0
}

/// Span and records held of the shard of `id`.
fn ring_of(registry: &Registry, id: JobId) -> (usize, usize) {
    let state = lock(&registry.shards[registry.place(id).0].lock);
    (state.span(), state.len())
}

#[test]
fn numbers_taken_and_never_inserted_do_not_stretch_the_ring() {
    // Ids made and dropped (nothing in the library does that any more: a
    // job takes its id only once it has its queue slot) leave gaps; the
    // next insert far ahead starts the ring again instead of spanning them.
    let registry = Registry::new(0);
    let first = registry.new_id();
    registry.insert(job_for(first));
    for _ in 0..SHARDS * 20_000 {
        registry.new_id();
    }
    let next = next_in(&registry, registry.place(first).0);
    registry.insert(job_for(next));
    let (span, held) = ring_of(&registry, next);
    assert_eq!(held, 2);
    assert!(span <= 4 * 2 + ring::SLACK, "{span} slots for 2 records");
    // Both still found, and removed.
    for id in [first, next] {
        assert_eq!(registry.get(id).unwrap().record().id, id);
        assert!(registry.remove(id).is_some());
    }
    assert_eq!(registry.len(), 0);
}

#[test]
fn refused_submissions_take_no_numbers() {
    // `try_submit` against a full bounded queue, as the server's `POST
    // /jobs` under load: the ring of the next job's shard spans no gap.
    let pool = crate::Pool::builder()
        .workers(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (running, started) = std::sync::mpsc::channel::<()>();
    let blocker = pool
        .submit(move |_| {
            running.send(()).unwrap();
            let _ = held.recv();
            Ok(())
        })
        .unwrap();
    started
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap();
    let mut queued = Vec::new();
    while let Ok(handle) = pool.try_submit(|_| Ok(())) {
        queued.push(handle);
    }
    let refused = (0..SHARDS * 5_000)
        .filter(|_| pool.try_submit(|_| Ok(())).is_err())
        .count();
    assert_eq!(refused, SHARDS * 5_000);
    release.send(()).unwrap();
    blocker.join().unwrap();
    for handle in queued {
        handle.join().unwrap();
    }
    let registry = &pool.shared.registry;
    let next: u64 = registry
        .shards
        .iter()
        .map(|s| s.next.load(Ordering::Relaxed))
        .sum();
    assert!(next <= 3, "{next} numbers taken for at most 3 jobs");
    let handle = pool.submit(|_| Ok(())).unwrap();
    let (span, held) = ring_of(registry, handle.id());
    assert!(
        span <= 4 * held.max(1) + ring::SLACK,
        "{span} slots for {held}"
    );
    handle.join().unwrap();
}

#[test]
fn one_removal_moves_a_few_records_not_a_run() {
    // Many long-lived records at the front of each ring, then a churn of
    // short jobs: the ring moves the long-lived ones out a few at a time.
    let registry = Registry::new(0);
    for _ in 0..2_000 * SHARDS {
        registry.insert(job_for(registry.new_id()));
    }
    let mut worst = 0;
    for _ in 0..(4 * 2_000 + 200) * SHARDS {
        let id = registry.new_id();
        registry.insert(job_for(id));
        let overflowed =
            |registry: &Registry| lock(&registry.shards[registry.place(id).0].lock).overflowed();
        let before = overflowed(&registry);
        assert!(registry.remove(id).is_some());
        worst = worst.max(overflowed(&registry) - before);
    }
    assert!(worst <= 4, "one removal moved {worst} records");
    // And the runs have left: every ring is back within its bound.
    for shard in registry.shards.iter() {
        let state = lock(&shard.lock);
        let (span, held) = (state.span(), state.held());
        assert!(span <= 4 * held + ring::SLACK, "{span} slots for {held}");
    }
}

#[test]
fn ids_spread_over_every_shard_from_any_thread() {
    let registry = Registry::new(0);
    let shards: HashSet<usize> = (0..SHARDS * 16)
        .map(|_| registry.place(registry.new_id()).0)
        .collect();
    assert_eq!(shards.len(), SHARDS);
    // A new thread's first id is not always in the same shard.
    let firsts: HashSet<usize> = (0..64)
        .map(|_| {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| registry.place(registry.new_id()).0)
                    .join()
                    .unwrap()
            })
        })
        .collect();
    assert!(firsts.len() > 8, "{firsts:?}");
}

#[test]
fn an_in_order_append_moves_at_most_a_few_records() {
    // Numbers inserted strictly in order, none skipped or late: one record
    // in four stays (long jobs), the rest come and go (short jobs). An
    // append at the back never restarts the ring.
    let mut ring = ring::Ring::default();
    let mut ids = std::collections::HashMap::new();
    for n in 0..100_u64 {
        let id = JobId::new();
        ids.insert(n, id);
        assert!(ring.insert(n, u64::MAX, job_for(id)).is_none());
    }
    for n in (0..100_u64).filter(|n| n % 4 != 0) {
        assert!(ring.remove(n, ids[&n]).is_some());
    }
    let mut worst = (0, 0);
    for n in 100..400_u64 {
        let id = JobId::new();
        let before = ring.overflowed();
        assert!(ring.insert(n, u64::MAX, job_for(id)).is_none());
        let moved = ring.overflowed() - before;
        if moved > worst.0 {
            worst = (moved, n);
        }
        assert!(ring.remove(n, id).is_some());
    }
    assert!(
        worst.0 <= 4,
        "inserting {} moved {} records",
        worst.1,
        worst.0
    );
}
