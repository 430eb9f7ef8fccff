//! The registry's unit tests: retention and eviction (invariant 3),
//! shrinking (invariant 5), ids and the ring (invariant 9, `ring.rs`).
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
            .map(|s| lock(&s.lock).retired.len())
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
    // Dealt round the shards, in order within each.
    let shards: std::collections::HashSet<usize> = ids[..SHARDS]
        .iter()
        .map(|&id| registry.place(id).0)
        .collect();
    assert_eq!(shards.len(), SHARDS);
    assert_eq!(registry.place(ids[SHARDS]).0, registry.place(ids[0]).0);
    assert_eq!(registry.place(ids[SHARDS]).1, registry.place(ids[0]).1 + 1);
    // Another registry's ids for the same places differ.
    let other = Registry::new(64);
    assert!((0..SHARDS).all(|k| other.new_id() != ids[k]));
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
    // Two numbers in one shard, inserted out of order (two submitters
    // racing): the later one comes and goes first, the front moves past
    // both, and the earlier one is filed in the overflow.
    let registry = Registry::new(64);
    let ids: Vec<JobId> = (0..=SHARDS).map(|_| registry.new_id()).collect();
    let (early, late) = (ids[0], ids[SHARDS]);
    assert_eq!(registry.place(early).0, registry.place(late).0);
    let job = |id| new_cell(id, JobOptions::default(), None, |_: &CancelToken| Ok(())).0;
    registry.insert(job(late));
    assert!(registry.remove(late).is_some());
    registry.insert(job(early));
    let shard = registry.place(early).0;
    assert_eq!(lock(&registry.shards[shard].lock).records.overflowed(), 1);
    assert_eq!(registry.get(early).unwrap().record().id, early);
    assert!(registry.remove(early).is_some());
    assert_eq!(registry.len(), 0);
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
        assert!(
            state.records.span() <= 4 + ring::SLACK,
            "{}",
            state.records.span()
        );
        assert!(state.records.capacity() <= SHRINK_FLOOR);
        assert_eq!(state.records.overflowed(), 1);
    }
    assert_eq!(registry.get(stays).unwrap().record().id, stays);
    assert!(registry.remove(stays).is_some());
    assert_eq!(registry.len(), 0);
}
