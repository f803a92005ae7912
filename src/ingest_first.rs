//! The fan-out policy, ingest first: during a webhook burst, live deliveries yield to ingest, and
//! catch up after it.
//!
//! Ingest and delivery share the bridge's CPU, and a delivery costs about as much CPU whether it
//! goes out alone or in a batch: its bytes are copied to a socket, and on loopback the kernel
//! spends as much again receiving them (bench `--only fan-out`: 10 live subscribers took 30-45% of
//! ingest, 100 took 61-68%, whether each stream woke per group commit or every 20 ms). So the only
//! way to keep webhooks fast under a burst is to deliver less during it. While a burst is under
//! way (at least [`BURST_IN_FLIGHT`] verified webhooks being stored at once), all streams together
//! deliver per [`DELIVERY_WINDOW`] as many events as webhooks were answered in the window before
//! (at least [`MIN_WINDOW_EVENTS`]): a budget that follows the host's own speed, so deliveries
//! take a fixed small share of the CPU however fast the host and however many subscribers there
//! are. A stream whose share is used up waits for the next window. When the burst ends they
//! deliver at full speed again, from the in-memory tail or the log: no event is missed or
//! reordered, since positions are sequences.
//!
//! The lag this allows is bounded: a stream more than [`MAX_DEFERRED`] events behind the head no
//! longer yields, so a burst that never ends cannot push subscribers towards retention's limit.
//! Outside bursts (a steady 1,000/s keeps one or two webhooks in flight) nothing is held back,
//! so end-to-end latency is untouched. Only webhooks that passed signature verification count:
//! no one without the signing secret can slow deliveries down.

use std::sync::{
    Mutex, PoisonError,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use tokio::time::{Duration, Instant};

/// Webhooks being stored at once from which ingest counts as a burst. A paced 1,000/s keeps one
/// or two in flight; a burst over many connections about as many as it has connections.
pub const BURST_IN_FLIGHT: usize = 8;
/// The period of the deliveries' shared allowance during a burst: the most a live delivery waits
/// for its share (a 50 ms window put up to 50 ms on the bench's end-to-end p99 when the shared
/// host stalled and ingest briefly looked like a burst).
pub const DELIVERY_WINDOW: Duration = Duration::from_millis(10);
/// The least all streams together may deliver per [`DELIVERY_WINDOW`] during a burst (1,600/s),
/// so they always progress.
pub const MIN_WINDOW_EVENTS: usize = 16;
/// The most one request takes from a window's allowance, so that the streams waking together at
/// a window's start share it rather than the first taking all of it.
pub const MAX_GRANT: usize = 32;
/// How far behind the head a stream may fall by yielding; beyond it, it delivers at full speed.
pub const MAX_DEFERRED: u64 = 65_536;

/// How many verified webhooks are being stored right now, and the deliveries' allowance while
/// that is a burst. Shared by ingress (which counts) and the subscription streams (which ask).
#[derive(Debug)]
pub struct IngestActivity {
    /// Verified webhooks between verification and their answer.
    in_flight: AtomicUsize,
    /// Verified webhooks answered since start: the ingest rate the allowance follows.
    answered: AtomicU64,
    /// What is left of the current window's allowance.
    allowance: Mutex<Allowance>,
}

/// The deliveries' allowance in one window.
#[derive(Debug)]
struct Allowance {
    /// [`IngestActivity::answered`] when it started.
    answered: u64,
    /// When the window ends (and a new one starts at the next request).
    ends: Instant,
    /// Events still allowed in it.
    left: usize,
}

/// What a stream may deliver now: [`IngestActivity::allowed`].
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Grant {
    /// How many events.
    pub events: usize,
    /// The end of the window it was taken from (`None` outside a burst: nothing to give back).
    window: Option<Instant>,
}

/// One verified webhook being stored; counted in [`IngestActivity`] until dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a IngestActivity);

// === impl IngestActivity ===

impl Default for IngestActivity {
    fn default() -> Self {
        let now = Instant::now();
        IngestActivity {
            in_flight: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            allowance: Mutex::new(Allowance {
                answered: 0,
                ends: now,
                left: 0,
            }),
        }
    }
}

impl IngestActivity {
    /// Counts one more webhook in flight until the returned guard drops.
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Whether a burst is under way.
    pub fn is_burst(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) >= BURST_IN_FLIGHT
    }

    /// How many of the `wanted` next events a stream `behind` events behind the head may deliver
    /// now. Zero events means: wait until [`IngestActivity::next_window`].
    pub fn allowed(&self, wanted: usize, behind: u64) -> Grant {
        if behind > MAX_DEFERRED || !self.is_burst() {
            return Grant {
                events: wanted,
                window: None,
            };
        }
        let mut allowance = self.lock();
        let now = Instant::now();
        if now >= allowance.ends {
            *allowance = self.next_allowance(&allowance, now);
        }
        let events = wanted.min(allowance.left).min(MAX_GRANT);
        allowance.left -= events;
        Grant {
            events,
            window: Some(allowance.ends),
        }
    }

    /// Returns the part of `grant` a stream did not deliver (it found fewer events, or its window
    /// filled) to the window it came from, if that window is still open.
    pub fn give_back(&self, grant: Grant, delivered: usize) {
        let Some(window) = grant.window else { return };
        let mut allowance = self.lock();
        if allowance.ends == window && Instant::now() < window {
            allowance.left += grant.events.saturating_sub(delivered);
        }
    }

    /// When the current window ends and a stream that got nothing may ask again.
    pub fn next_window(&self) -> Instant {
        self.lock().ends
    }

    /// The allowance of a window starting `now`: the webhooks answered since `previous` started,
    /// per [`DELIVERY_WINDOW`] (when no stream asked for a while, that time is averaged over).
    fn next_allowance(&self, previous: &Allowance, now: Instant) -> Allowance {
        let answered = self.answered.load(Ordering::Relaxed);
        let started = previous
            .ends
            .checked_sub(DELIVERY_WINDOW)
            .unwrap_or(previous.ends);
        let since = now.saturating_duration_since(started).max(DELIVERY_WINDOW);
        let per_window = (answered - previous.answered) as f64 * DELIVERY_WINDOW.as_secs_f64()
            / since.as_secs_f64();
        Allowance {
            answered,
            ends: now + DELIVERY_WINDOW,
            left: (per_window as usize).max(MIN_WINDOW_EVENTS),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Allowance> {
        // Two plain fields, always left consistent: a panic elsewhere cannot leave them torn.
        self.allowance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.answered.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burst(activity: &IngestActivity) -> Vec<InFlight<'_>> {
        (0..BURST_IN_FLIGHT).map(|_| activity.begin()).collect()
    }

    #[test]
    fn a_burst_is_as_many_webhooks_in_flight_as_the_threshold_and_ends_when_they_are_answered() {
        let activity = IngestActivity::default();
        let mut in_flight = burst(&activity);
        assert!(activity.is_burst());
        in_flight.pop();
        assert!(!activity.is_burst());
        drop(in_flight);
        assert_eq!(activity.in_flight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn outside_a_burst_every_delivery_is_allowed() {
        let activity = IngestActivity::default();
        let _few: Vec<_> = (1..BURST_IN_FLIGHT).map(|_| activity.begin()).collect();
        for _ in 0..100 {
            assert_eq!(activity.allowed(128, 10).events, 128);
        }
        assert_eq!(activity.allowed(128, MAX_DEFERRED + 1).events, 128);
    }

    #[tokio::test(start_paused = true)]
    async fn during_a_burst_all_streams_share_an_allowance_that_follows_the_ingest_rate() {
        let activity = IngestActivity::default();
        let _burst = burst(&activity);
        // Nothing answered yet: the least allowance.
        let granted: usize = (0..100).map(|_| activity.allowed(128, 10).events).sum();
        assert_eq!(granted, MIN_WINDOW_EVENTS);
        assert_eq!(activity.allowed(128, 10).events, 0);
        // 500 webhooks answered in this window: the next one allows 500 deliveries in all, at
        // most MAX_GRANT per request.
        for _ in 0..500 {
            drop(activity.begin());
        }
        tokio::time::sleep_until(activity.next_window()).await;
        let grants: Vec<usize> = (0..100).map(|_| activity.allowed(128, 10).events).collect();
        assert!(grants.iter().all(|&g| g <= MAX_GRANT), "{grants:?}");
        assert_eq!(grants.iter().sum::<usize>(), 500);
        assert_eq!(activity.allowed(128, 10).events, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_too_far_behind_no_longer_yields() {
        let activity = IngestActivity::default();
        let _burst = burst(&activity);
        while activity.allowed(16, 10).events > 0 {}
        assert_eq!(activity.allowed(128, MAX_DEFERRED + 1).events, 128);
    }

    #[tokio::test(start_paused = true)]
    async fn what_a_stream_did_not_deliver_goes_back_to_its_window_only() {
        let activity = IngestActivity::default();
        let _burst = burst(&activity);
        let grant = activity.allowed(MIN_WINDOW_EVENTS, 10);
        assert_eq!(activity.allowed(128, 10).events, 0);
        activity.give_back(grant, 4);
        assert_eq!(activity.allowed(128, 10).events, MIN_WINDOW_EVENTS - 4);
        // A grant from a window that has ended adds nothing to the next.
        tokio::time::sleep_until(activity.next_window()).await;
        let fresh = activity.allowed(128, 10).events;
        activity.give_back(grant, 0);
        assert_eq!(activity.allowed(128, 10).events, 0, "{fresh}");
    }
}
