//! Percentiles (nearest rank) of latency samples in microseconds.

/// The nearest-rank percentile `p` (0–100) of `samples`, in milliseconds; `None` when empty.
/// Reorders `samples`.
pub(crate) fn percentile_ms(samples: &mut [u32], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let n = samples.len();
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let index = rank.clamp(1, n) - 1;
    let (_, v, _) = samples.select_nth_unstable(index);
    Some(round3(f64::from(*v) / 1000.0))
}

/// Rounds to three decimals (microsecond resolution of milliseconds).
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A latency in microseconds, saturated into `u32` (71 minutes).
pub(crate) fn micros(from_us: u64, to_us: u64) -> u32 {
    u32::try_from(to_us.saturating_sub(from_us)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile_ms(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&mut v, 100.0), Some(100.0));
        let mut one = vec![1500];
        assert_eq!(percentile_ms(&mut one, 99.0), Some(1.5));
        assert_eq!(percentile_ms(&mut [], 50.0), None);
    }

    #[test]
    fn saturating_micros() {
        assert_eq!(micros(10, 5), 0);
        assert_eq!(micros(5, 10), 5);
        assert_eq!(micros(0, u64::MAX), u32::MAX);
    }
}
