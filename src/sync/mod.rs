//! Backfill and reconciliation: the bridge's second producer, beside webhooks. A pass lists users,
//! organizations and organization memberships from Clerk's Backend API ([`crate::clerk_api`]) and
//! appends, as ordinary events, every object newer than the log's state; reconciliation also
//! appends the deletion of objects Clerk no longer has (see the `pass` module for its guards).
//!
//! One pass runs at a time, owned by the bridge: callers start it or follow its progress (a
//! [`watch`] of [`SyncProgress`]), and leaving does not stop it. It is saved in the log after every
//! page, so a restarted bridge resumes it ([`Syncer::resume_saved`]). Optionally reconciliation
//! runs on a schedule ([`Syncer::reconcile_every`]).

mod pass;
mod records;
pub mod service;
mod target;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

pub use pass::{MAX_DELETE_FLOOR, MAX_DELETE_SHARE, Mode};
use pass::{Pass, Saved};
pub use target::{SavedPassError, Target};

use crate::{
    clerk_api::Client,
    clock::now_ms,
    proto::{SyncProgress, SyncState},
    telemetry::metrics::Metrics,
};

/// Why a pass cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No secret key was configured.
    #[error(
        "the bridge has no Clerk secret key: start it with CLERK_SECRET_KEY or --clerk-secret-key-file"
    )]
    NoSecretKey,
    /// A pass of the other kind is running.
    #[error("a {0} pass is running; wait for it to end")]
    Busy(&'static str),
}

/// Starts passes and tracks the one running.
#[derive(Debug, Clone)]
pub struct Syncer {
    /// Shared by every handle (the gRPC service, the schedule).
    inner: Arc<Inner>,
}

/// The state behind [`Syncer`].
#[derive(Debug)]
struct Inner {
    /// Clerk's Backend API; `None` when no secret key is configured.
    client: Option<Client>,
    /// Where passes append.
    target: Target,
    /// Where passes are counted.
    metrics: Arc<Metrics>,
    /// The running (or last) pass: its mode and progress.
    current: Mutex<Option<(Mode, watch::Receiver<SyncProgress>)>>,
    /// Where pass tasks run, so shutdown waits for them.
    tasks: TaskTracker,
    /// Stops a running pass (it resumes at the next start).
    shutdown: CancellationToken,
}

// === impl Syncer ===

impl Syncer {
    /// A syncer appending to `target`; passes need `client`.
    pub fn new(
        client: Option<Client>,
        target: Target,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Syncer {
            inner: Arc::new(Inner {
                client,
                target,
                metrics,
                current: Mutex::new(None),
                tasks,
                shutdown,
            }),
        }
    }

    /// Starts a pass of `mode`, or returns the progress of the one of that mode already running.
    ///
    /// # Errors
    /// [`SyncError`] without a secret key, or while a pass of the other mode runs.
    pub fn start(&self, mode: Mode) -> Result<watch::Receiver<SyncProgress>, SyncError> {
        let mut current = self.current();
        if let Some((running, progress)) = current.as_ref()
            && progress.borrow().state() == SyncState::Running
        {
            return match *running == mode {
                true => Ok(progress.clone()),
                false => Err(SyncError::Busy(running.as_str())),
            };
        }
        let client = self.inner.client.clone().ok_or(SyncError::NoSecretKey)?;
        let progress = self.spawn(client, Saved::new(mode, self.inner.target.head()));
        *current = Some((mode, progress.clone()));
        Ok(progress)
    }

    /// Resumes the pass an earlier run of the bridge left unfinished, if any (on JetStream, unless
    /// another bridge runs it). Without a secret key it says so and leaves the pass saved.
    ///
    /// # Errors
    /// When the saved pass cannot be read.
    pub async fn resume_saved(&self) -> Result<(), SavedPassError> {
        let saved = match self.inner.target.saved().await {
            Ok(saved) => saved,
            // The servers may still be electing leaders: not a reason to stay down. The pass stays
            // saved for the next bridge to start (or a new pass).
            Err(error) if matches!(self.inner.target, Target::JetStream(_)) => {
                tracing::warn!(%error, "Could not look for an unfinished pass on JetStream");
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let Some(saved) = saved.as_deref().and_then(Saved::parse) else {
            return Ok(());
        };
        let Some(client) = self.inner.client.clone() else {
            tracing::warn!(
                pass = saved.mode.as_str(),
                "An unfinished pass is saved; set CLERK_SECRET_KEY to resume it"
            );
            return Ok(());
        };
        tracing::info!(pass = saved.mode.as_str(), "Resuming an unfinished pass");
        let mode = saved.mode;
        let progress = self.spawn(client, saved);
        *self.current() = Some((mode, progress));
        Ok(())
    }

    /// Runs a reconciliation pass every `interval` until shutdown (skipping a turn while another
    /// pass runs).
    pub async fn reconcile_every(self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.inner.shutdown.cancelled() => return,
            }
            if self.reconciled_within(interval).await {
                tracing::info!("Scheduled reconciliation skipped: another bridge ran one lately");
                continue;
            }
            match self.start(Mode::Reconciliation) {
                Ok(mut progress) => {
                    // Wait for this pass to end before the next turn.
                    while progress.borrow_and_update().state() == SyncState::Running {
                        if progress.changed().await.is_err() {
                            break;
                        }
                    }
                }
                Err(error) => tracing::info!(%error, "Scheduled reconciliation skipped"),
            }
        }
    }

    /// Whether a reconciliation pass that began less than about `interval` ago has completed, on
    /// any bridge sharing the store. A tenth of the interval is left for the timers' drift, so
    /// that a bridge's own last pass, begun one tick ago, never makes it skip its turn.
    async fn reconciled_within(&self, interval: Duration) -> bool {
        let Some(began_ms) = self.inner.target.reconciled_at().await else {
            return false;
        };
        let since = u128::try_from(now_ms().saturating_sub(began_ms)).unwrap_or(0);
        since < interval.as_millis() * 9 / 10
    }

    /// Spawns a pass from `saved` and returns its progress.
    fn spawn(&self, client: Client, saved: Saved) -> watch::Receiver<SyncProgress> {
        let initial = saved.progress(SyncState::Running, String::new(), 0.0);
        let (progress, receiver) = watch::channel(initial);
        let span = tracing::info_span!("sync", pass = saved.mode.as_str());
        let pass = Pass {
            client,
            target: self.inner.target.clone(),
            metrics: self.inner.metrics.clone(),
            saved,
            progress,
            shutdown: self.inner.shutdown.clone(),
        };
        self.inner.tasks.spawn(pass.run().instrument(span));
        receiver
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<(Mode, watch::Receiver<SyncProgress>)>> {
        // The guarded value is replaced whole, so a panic cannot leave it half-written.
        self.inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
