//! The shutdown signal: SIGTERM (Kubernetes) or SIGINT (Ctrl-C); and periodic work that stops with it.

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Ticks of periodic background work (retention, health checks, stream info) until a stop.
#[derive(Debug)]
pub struct Every {
    /// The ticks; a late tick delays the next rather than bunching them.
    ticks: Interval,
    /// Ends the ticks.
    stop: CancellationToken,
}

// === impl Every ===

impl Every {
    /// Ticks every `period` (the first at once) until `stop` is cancelled.
    pub fn new(period: Duration, stop: CancellationToken) -> Self {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Every { ticks, stop }
    }

    /// Waits for the next tick: `true`, or `false` once stopped.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.ticks.tick() => !self.stop.is_cancelled(),
            () = self.stop.cancelled() => false,
        }
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
    Ok(())
}
