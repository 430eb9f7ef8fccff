//! loom models of the observer protocol (declared in the parent module,
//! `observer/feed.rs`, whose list "invariant N" means).

use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::job::{JobId, JobStatus};
use crate::registry::Record;
use crate::sync::model;

/// Drains what `queue` holds as the observer thread does: clear each
/// job's flag, then snapshot it. Returns the snapshots.
fn drain(record: &Record, queue: &Mutex<usize>) -> Vec<(JobStatus, Option<u64>)> {
    let queued = std::mem::take(&mut *queue.lock().unwrap());
    (0..queued)
        .map(|_| {
            record.mark.clear();
            let info = record.info(&[]);
            (info.status, info.progress.map(|p| p.done))
        })
        .collect()
}

/// Note vs drain (invariant 2): a job reports progress (lock-free) and
/// ends while the observer drains it once; after the final drain, the
/// last snapshot shows both, whichever way the note met the drain. A
/// stand-in queue (a count under a mutex) replaces the channel, which
/// loom does not model. Breaks if the clear comes after the snapshot,
/// or if the clear is a plain store (checked) rather than a swap.
#[test]
fn loom_note_vs_drain() {
    model(|| {
        let record = Arc::new(Record::new(JobId::new(), None, None));
        let queue = Arc::new(Mutex::new(0_usize));
        // Submitted: queued once.
        assert!(record.mark.claim());
        *queue.lock().unwrap() += 1;
        let job = {
            let (record, queue) = (Arc::clone(&record), Arc::clone(&queue));
            thread::spawn(move || {
                record.progress.set(7, None);
                if record.mark.claim() {
                    *queue.lock().unwrap() += 1;
                }
                let _ = record.finish(JobStatus::Completed);
                if record.mark.claim() {
                    *queue.lock().unwrap() += 1;
                }
            })
        };
        let mut seen = drain(&record, &queue);
        job.join().unwrap();
        seen.extend(drain(&record, &queue));
        assert_eq!(seen.last(), Some(&(JobStatus::Completed, Some(7))));
        // Invariant 1: never queued twice at once, so at most three
        // entries (one per claim that found the flag clear).
        assert!(seen.len() <= 3);
    });
}
