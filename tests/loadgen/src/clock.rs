//! One time origin for the whole process, so a send and a receipt recorded by different tasks
//! compare as plain microsecond counts.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Fixes the origin (the first call wins).
pub(crate) fn start() {
    ORIGIN.get_or_init(Instant::now);
}

/// Microseconds since the origin.
pub(crate) fn now_us() -> u64 {
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Seconds since the origin, for progress lines.
pub(crate) fn secs() -> f64 {
    Duration::from_micros(now_us()).as_secs_f64()
}

/// A progress line on stderr, stamped with the seconds since the start.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[loadgen {:7.2}s] {}", $crate::clock::secs(), format_args!($($arg)*))
    };
}
pub(crate) use progress;

/// Resolves once `stop` holds true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
