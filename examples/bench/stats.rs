//! Latency samples and their percentiles.

use std::time::Duration;

use clerk_bridge::stats::percentile;

/// Latencies of one phase, in microseconds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Latencies {
    /// The samples, in the order recorded.
    micros: Vec<u32>,
}

/// Percentiles of a set of latencies.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Summary {
    /// Half the samples took at most this.
    pub(crate) p50: Duration,
    /// 99% of the samples took at most this.
    pub(crate) p99: Duration,
}

// === impl Latencies ===

impl Latencies {
    /// Room for `n` samples, so recording does not allocate while timing.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Latencies {
            micros: Vec::with_capacity(n),
        }
    }

    /// Records one sample, in whole microseconds (over `u32::MAX`, about 71 minutes, saturates).
    pub(crate) fn record(&mut self, latency: Duration) {
        self.micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    /// Adds the samples of `other`.
    pub(crate) fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    /// Sorts the samples and reads the percentiles (nearest rank, as `clerk-bridge trigger` does;
    /// zero without samples).
    pub(crate) fn summary(mut self) -> Summary {
        self.micros.sort_unstable();
        let at = |p| Duration::from_micros(u64::from(percentile(&self.micros, p)));
        Summary {
            p50: at(50),
            p99: at(99),
        }
    }
}

/// `count` events over `elapsed`, per second.
pub(crate) fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}
