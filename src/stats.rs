//! Percentiles of measured samples: the one definition behind the latencies `clerk-bridge trigger`
//! prints and the benchmark (`examples/bench`) reports, so their p50 and p99 mean the same thing.
//!
//! The definition is nearest rank: the `p`th percentile of `n` sorted samples is the sample at
//! 1-based rank ⌈p·n/100⌉. It is always one of the samples (never an interpolation), at least `p`%
//! of the samples are at or below it, and it needs no floating point.

/// The `p`th percentile (`p` in 0..=100; larger is read as 100) of `sorted`, by nearest rank; the
/// zero value (`T::default()`) when there are no samples.
///
/// `sorted` must be in ascending order: the caller sorts once and reads several percentiles.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: usize) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (sorted.len() * p.min(100))
        .div_ceil(100)
        .clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn percentiles_pick_by_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50), 50);
        assert_eq!(percentile(&sorted, 99), 99);
        assert_eq!(percentile(&sorted, 100), 100);
        assert_eq!(percentile(&sorted, 0), 1, "p0 is the smallest sample");
        assert_eq!(percentile(&sorted, 250), 100, "p above 100 is p100");
        // Ten samples: p99 is the 10th (⌈9.9⌉), p50 the 5th.
        assert_eq!(percentile(&sorted[..10], 99), 10);
        assert_eq!(percentile(&sorted[..10], 50), 5);
    }

    #[test]
    fn one_sample_is_every_percentile_and_none_is_zero() {
        let ms = Duration::from_millis;
        assert_eq!(percentile(&[ms(7)], 1), ms(7));
        assert_eq!(percentile(&[ms(7)], 99), ms(7));
        assert_eq!(percentile::<Duration>(&[], 50), Duration::ZERO);
        assert_eq!(percentile::<u32>(&[], 99), 0);
    }
}
