//! The latency clock: raw ticks (`quanta`'s reading), nanoseconds between
//! two of them, and the wall-clock times derived from them through a
//! per-thread anchor ([`wall_at`]). The invariants are numbered in the
//! parent module's docs (`metrics.rs`).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// A raw reading of the latency clock (TSC ticks, or the OS's monotonic
/// nanoseconds where the TSC is not invariant), or [`NOT_READ`].
pub(crate) type Tick = u64;

/// The tick of a job submitted while latency metrics are off.
pub(crate) const NOT_READ: Tick = 0;

/// The process's latency clock: `quanta`'s, calibrated once (usually about
/// a millisecond, at most 200 ms on a very busy machine; on first use, which
/// the first pool's build makes). A raw read is one `rdtsc`, about 11 ns on
/// the machine of `docs/benchmarks.md` against 30 ns for
/// `std::time::Instant::now`; ticks become nanoseconds only for a
/// difference (one multiply and shift).
fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Reads the clock.
#[inline]
pub(crate) fn now() -> Tick {
    clock().raw()
}

/// Nanoseconds from `start` to `end`; zero if the clock seems to have gone
/// backwards (readings on different cores), never a huge latency.
#[inline]
pub(crate) fn nanos_between(start: Tick, end: Tick) -> u64 {
    clock().delta_as_nanos(start, end)
}

/// How long a thread's wall-clock anchor serves ([`wall_at`]) before the
/// wall clock is read again. The tick scale is calibrated to a few parts
/// in 10^5, so a time derived over 10 ms is off by well under a
/// microsecond (plus what NTP slews the wall clock by meanwhile, at most
/// 5 µs over 10 ms).
const ANCHOR_NANOS: u64 = 10_000_000;

thread_local! {
    /// This thread's last wall-clock reading and the tick read with it.
    /// `Cell`s of plain values with a `const` initialiser: no destructor.
    static ANCHOR: Cell<(SystemTime, Tick)> = const { Cell::new((SystemTime::UNIX_EPOCH, NOT_READ)) };
}

/// The wall-clock time at tick `at`, which the caller read just now (or a
/// worker's boundary tick, invariant 5): this thread's anchor plus the
/// ticks since, reading the wall clock (about 35 ns here) only when the
/// anchor is older than 10 ms. So a tracked job's three times (submitted,
/// started, finished) cost no wall-clock read on a busy pool, where they
/// cost three. Times derived on different threads may disagree by a
/// microsecond; callers keep a job's times in order.
pub(crate) fn wall_at(at: Tick) -> SystemTime {
    ANCHOR
        .try_with(|anchor| {
            let (wall, tick) = anchor.get();
            if tick == NOT_READ || at > tick {
                let nanos = nanos_between(tick, at);
                if tick != NOT_READ && nanos <= ANCHOR_NANOS {
                    return wall + Duration::from_nanos(nanos);
                }
                let wall = SystemTime::now();
                anchor.set((wall, at));
                return wall;
            }
            // A tick from before the anchor (a reading taken on another
            // core, or `at == tick`): the anchor itself if equal, else the
            // wall clock, without re-anchoring on an older tick.
            if at == tick { wall } else { SystemTime::now() }
        })
        // While the thread's locals are destroyed: read it.
        .unwrap_or_else(|_| SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_come_from_an_anchor_refreshed_every_10_ms() {
        let from = now();
        // The first call on a thread reads the wall clock and anchors there.
        let anchored = wall_at(from);
        let wall = SystemTime::now();
        assert!(wall.duration_since(anchored).unwrap() < Duration::from_secs(1));
        // Ticks for between 5 and 10 ms later: derived from the anchor.
        let mut ticks = 1;
        while nanos_between(from, from + ticks) < ANCHOR_NANOS / 2 {
            ticks *= 2;
        }
        let nanos = nanos_between(from, from + ticks);
        assert!(nanos <= ANCHOR_NANOS, "{nanos}");
        assert_eq!(
            wall_at(from + ticks),
            anchored + Duration::from_nanos(nanos)
        );
        // Beyond 10 ms: a fresh reading, and a new anchor.
        let later = from + 4 * ticks;
        let fresh = wall_at(later);
        assert!(fresh >= wall);
        assert_eq!(wall_at(later), fresh);
        // Before the anchor: a reading, and the anchor stays.
        assert!(wall_at(from) >= fresh);
        assert_eq!(
            wall_at(later + 1),
            fresh + Duration::from_nanos(nanos_between(later, later + 1))
        );
    }

    #[test]
    fn ticks_measure_real_time() {
        let started = now();
        let wall = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let measured = nanos_between(started, now());
        let elapsed = u64::try_from(wall.elapsed().as_nanos()).unwrap();
        // Same interval, two clocks: within a millisecond and 5% of each
        // other (the sleep itself may be long on a loaded machine).
        assert!(measured >= 19_000_000, "{measured} ns");
        let diff = measured.abs_diff(elapsed);
        assert!(diff < 1_000_000 + elapsed / 20, "{measured} vs {elapsed}");
    }
}
