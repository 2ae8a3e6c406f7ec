//! The server's clock: the wall clock, guarded against jumps.
//!
//! Event times are wall-clock instants, and business days follow them, so a clock that jumps a
//! month ahead for a minute (then is corrected) must not start a new business day or stamp events
//! in the future. The guard anchors the wall clock to the monotonic clock: while the wall clock
//! agrees with the anchor's progress (within [`TOLERANCE`]) it is followed; when it jumps, the
//! anchored time is used instead, and only a jump that persists for [`PERSIST`] is accepted as a
//! real correction (e.g. NTP fixing a clock that was wrong at start).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGauge;

use crate::core::Timestamp;

/// Differences up to this are ordinary drift and adjustments: the wall clock is followed.
pub const TOLERANCE: Duration = Duration::from_secs(120);
/// A jump that lasts this long is taken as a correction and followed.
pub const PERSIST: Duration = Duration::from_secs(600);

/// The guard's state; pure, so tests drive it with made-up instants.
#[derive(Debug, Default)]
pub struct ClockGuard {
    /// A wall-clock reading trusted at a monotonic instant.
    anchor: Option<(Timestamp, Instant)>,
    /// Since when the wall clock has disagreed with the anchor.
    off_since: Option<Instant>,
}

/// What one reading gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The time to use.
    pub now: Timestamp,
    /// Wall clock minus the time used, in seconds (0 while they agree).
    pub skew_s: i64,
}

impl ClockGuard {
    /// The time to use for a wall-clock reading `wall` taken at monotonic instant `mono`.
    pub fn read(&mut self, wall: Timestamp, mono: Instant) -> Reading {
        let Some((anchor_wall, anchor_mono)) = self.anchor else {
            self.anchor = Some((wall, mono));
            return Reading {
                now: wall,
                skew_s: 0,
            };
        };
        let elapsed = mono.saturating_duration_since(anchor_mono);
        let expected = anchor_wall + chrono::Duration::from_std(elapsed).unwrap_or_default();
        let skew = wall - expected;
        let tolerance = chrono::Duration::from_std(TOLERANCE).unwrap_or_default();
        if skew.abs() <= tolerance {
            self.anchor = Some((wall, mono));
            self.off_since = None;
            return Reading {
                now: wall,
                skew_s: 0,
            };
        }
        let since = *self.off_since.get_or_insert(mono);
        if mono.saturating_duration_since(since) >= PERSIST {
            tracing::warn!(
                skew_s = skew.num_seconds(),
                "the wall clock has differed for 10 minutes; following it from now on"
            );
            self.anchor = Some((wall, mono));
            self.off_since = None;
            return Reading {
                now: wall,
                skew_s: 0,
            };
        }
        if since == mono {
            tracing::warn!(
                skew_s = skew.num_seconds(),
                "the wall clock jumped; keeping the server's own time until it settles"
            );
        }
        Reading {
            now: expected,
            skew_s: skew.num_seconds(),
        }
    }
}

/// The guarded wall clock as the site actors take it; the skew goes to `/metrics` and `/readyz`.
pub fn guarded(skew: IntGauge) -> crate::site::Clock {
    let guard = Arc::new(Mutex::new(ClockGuard::default()));
    Arc::new(move || {
        let reading = guard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(chrono::Utc::now(), Instant::now());
        skew.set(reading.skew_s);
        reading.now
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> Timestamp {
        chrono::Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn follows_the_wall_clock_while_it_behaves() {
        let mut g = ClockGuard::default();
        let t0 = Instant::now();
        assert_eq!(g.read(at(0), t0).now, at(0));
        assert_eq!(g.read(at(60), t0 + Duration::from_secs(60)).now, at(60));
        // A small step (an NTP adjustment) is followed.
        assert_eq!(g.read(at(170), t0 + Duration::from_secs(120)).now, at(170));
    }

    #[test]
    fn a_jump_that_is_corrected_changes_nothing() {
        let mut g = ClockGuard::default();
        let t0 = Instant::now();
        g.read(at(0), t0);
        // A month ahead for a minute: the server keeps its own time.
        let month = 30 * 86_400;
        let r = g.read(at(month + 10), t0 + Duration::from_secs(10));
        assert_eq!(r.now, at(10));
        assert_eq!(r.skew_s, month);
        let r = g.read(at(month + 70), t0 + Duration::from_secs(70));
        assert_eq!(r.now, at(70));
        // Corrected: followed again, no skew.
        let r = g.read(at(80), t0 + Duration::from_secs(80));
        assert_eq!(
            r,
            Reading {
                now: at(80),
                skew_s: 0
            }
        );
    }

    #[test]
    fn a_lasting_difference_is_a_correction() {
        let mut g = ClockGuard::default();
        let t0 = Instant::now();
        g.read(at(0), t0);
        // The clock was an hour slow at start; NTP fixes it.
        let r = g.read(at(3_600 + 5), t0 + Duration::from_secs(5));
        assert_eq!(r.now, at(5));
        let later = t0 + Duration::from_secs(5) + PERSIST;
        let r = g.read(at(3_600 + 605), later);
        assert_eq!(r.now, at(3_600 + 605));
        assert_eq!(r.skew_s, 0);
    }

    #[test]
    fn times_never_run_backwards_while_guarded() {
        let mut g = ClockGuard::default();
        let t0 = Instant::now();
        let mut last = g.read(at(0), t0).now;
        // A wall clock that wanders back and forth by hours, sampled every 7 s for 9 minutes.
        for i in 1..80_i64 {
            let wall = at(i * 7 + if i % 3 == 0 { -7_200 } else { 0 });
            let now = g.read(wall, t0 + Duration::from_secs((i * 7) as u64)).now;
            assert!(now >= last, "step {i}: {now} < {last}");
            last = now;
        }
    }
}
