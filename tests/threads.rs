//! The process's thread count returns to its baseline after a pool is
//! dropped. Alone in its own test binary so no other test's threads count.

mod common;

use std::time::Duration;

use harbor_pool::{JobOptions, Pool};

#[test]
fn no_thread_is_left_behind() {
    common::quiet_panics();
    let baseline = common::thread_names().len();
    assert!(baseline > 0, "needs /proc/self/task");
    for round in 0..3 {
        let pool = Pool::builder()
            .workers(4)
            .on_thread_start(move |i| {
                if round == 1 && i == 0 {
                    panic!("respawned workers must be joined too");
                }
            })
            .build()
            .unwrap();
        for _ in 0..100 {
            pool.execute(|| ()).unwrap();
        }
        let timed = pool
            .submit_with(JobOptions::new().timeout(Duration::from_secs(60)), |_| {
                Ok(())
            })
            .unwrap();
        timed.join().unwrap();
        assert!(common::thread_names().len() >= baseline + 4);
        match round {
            0 => pool.shutdown(),
            1 => drop(pool.shutdown_now()),
            _ => drop(pool),
        }
        // Awaited, not read once: see `common::no_threads_named`.
        assert!(
            common::eventually(|| common::thread_names().len() == baseline),
            "round {round}: {:?}",
            common::thread_names()
        );
    }
}
