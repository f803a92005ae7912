//! Latency samples and their percentiles.

use std::time::Duration;

/// Latencies of one phase, in microseconds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Latencies {
    /// The samples, in the order recorded.
    micros: Vec<u32>,
}

/// Percentiles of a set of latencies.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Summary {
    /// Median.
    pub(crate) p50: Duration,
    /// 99th percentile.
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

    /// Records one sample.
    pub(crate) fn record(&mut self, latency: Duration) {
        self.micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    /// Adds the samples of `other`.
    pub(crate) fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    /// Sorts the samples and reads the percentiles.
    pub(crate) fn summary(mut self) -> Summary {
        self.micros.sort_unstable();
        Summary {
            p50: self.percentile(0.50),
            p99: self.percentile(0.99),
        }
    }

    /// The sample at rank `p` (0..=1) of the sorted samples; zero when there are none.
    fn percentile(&self, p: f64) -> Duration {
        let Some(last) = self.micros.len().checked_sub(1) else {
            return Duration::ZERO;
        };
        // Ranks are small (at most a few million), so the float round trip is exact enough.
        let rank = ((last as f64) * p).round() as usize;
        Duration::from_micros(u64::from(self.micros[rank.min(last)]))
    }
}

/// `count` events over `elapsed`, per second.
pub(crate) fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}
