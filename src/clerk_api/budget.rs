//! The request-rate budget: a token bucket that holds at most one token and refills at the
//! configured rate, so requests start at least `1 / rate` apart and any window of `t` seconds sees
//! at most `ceil(t × rate)` of them. No burst allowance: Clerk counts every request against a limit
//! the application shares, and a backfill gains nothing from bursting.
//!
//! Waiters queue in order on an async mutex and sleep on tokio's timer (no polling loop). The gap
//! is measured from when each request was actually let through, not from when it was scheduled,
//! so a late timer wake-up cannot squeeze the next two requests closer together. The price is a
//! little speed: tokio's timer has a 1 ms resolution and wakes up late rather than early, so at 200
//! requests per second the client makes about 160; at the default shares (25 or 2.5 per second) the
//! loss is a few percent at most. Erring low is the point.
//!
//! A `429` moves the next slot to the end of its `Retry-After` for every request sharing the
//! budget ([`RateBudget::hold_until`]). A waiter that is dropped (its request cancelled) uses up
//! nothing.

use std::time::Duration;

use tokio::{sync::Mutex, time::Instant};

/// Paces requests to a rate.
#[derive(Debug)]
pub(crate) struct RateBudget {
    /// The least time between two requests.
    interval: Duration,
    /// The earliest moment the next request may start.
    next: Mutex<Instant>,
}

// === impl RateBudget ===

impl RateBudget {
    /// A budget of `per_second` requests per second (validated positive and finite by the config).
    pub(crate) fn new(per_second: f64) -> Self {
        RateBudget {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits until a request may start, and books the slot after it.
    pub(crate) async fn acquire(&self) {
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = Instant::now() + self.interval;
    }

    /// Lets no request start before `until` (Clerk said to wait).
    pub(crate) async fn hold_until(&self, until: Instant) {
        let mut next = self.next.lock().await;
        *next = (*next).max(until);
    }
}

#[cfg(test)]
mod tests {
    //! Real time, at rates high enough to keep these fast (tokio's `test-util` clock is not
    //! enabled).

    use super::*;

    #[tokio::test]
    async fn requests_are_spaced_by_the_interval() {
        let budget = RateBudget::new(100.0);
        let mut starts = Vec::new();
        for _ in 0..5 {
            budget.acquire().await;
            starts.push(Instant::now());
        }
        for pair in starts.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(10), "{starts:?}");
        }
    }

    #[tokio::test]
    async fn hold_until_delays_the_next_request() {
        let budget = RateBudget::new(1000.0);
        budget.acquire().await;
        let start = Instant::now();
        budget.hold_until(start + Duration::from_millis(50)).await;
        budget.acquire().await;
        assert!(Instant::now() - start >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn concurrent_waiters_share_one_pace() {
        let budget = std::sync::Arc::new(RateBudget::new(200.0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    budget.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times.sort();
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(5), "{times:?}");
        }
    }
}
