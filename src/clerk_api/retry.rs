//! When to try a request again, and how long to wait first.
//!
//! Backoff grows 1.5-fold per attempt from the initial value (the factor Clerk's own SDKs use, per
//! the spec's `x-speakeasy-retries`), is capped, and is jittered into its upper half so that
//! clients which failed together do not retry together. A `429` waits exactly `Retry-After` when
//! the header holds a number of seconds; when it is absent or unreadable (an HTTP date included)
//! the backoff applies instead.

use std::time::Duration;

use http::{HeaderMap, header::RETRY_AFTER};

/// The growth of the backoff per attempt.
const BACKOFF_FACTOR: f64 = 1.5;

/// Attempts and waits for one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts per request, the first included.
    pub(crate) max_attempts: u32,
    /// The backoff after the first failure.
    pub(crate) initial_backoff: Duration,
    /// The longest backoff.
    pub(crate) max_backoff: Duration,
    /// The longest `Retry-After` waited out in place.
    pub(crate) max_retry_after: Duration,
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): a random point in the upper half
    /// of `initial × 1.5^(attempt-1)`, capped at `max_backoff`.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.initial_backoff.as_secs_f64() * BACKOFF_FACTOR.powi(exponent);
        let full = grown.min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(full * (0.5 + fastrand::f64() / 2.0))
    }
}

/// The `Retry-After` of a response, when it is a whole number of seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_grows_stays_capped_and_jittered_in_its_upper_half() {
        let policy = policy();
        for _ in 0..100 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(112) && third <= Duration::from_millis(225));
            assert!(policy.backoff(40) <= Duration::from_secs(1));
            assert!(policy.backoff(u32::MAX) >= Duration::from_millis(500));
        }
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        for (value, expected) in [
            ("3", Some(Duration::from_secs(3))),
            (" 0 ", Some(Duration::ZERO)),
            ("-1", None),
            ("soon", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ] {
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            assert_eq!(retry_after(&headers), expected, "{value}");
        }
    }
}
