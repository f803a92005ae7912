//! One backfill or reconciliation pass: list every kind from Clerk, append what is newer than the
//! state, and (reconciliation) delete what Clerk no longer has.
//!
//! After every page the pass saves where it stands in the log (its [`Saved`] state as JSON, and for
//! reconciliation the ids it saw), after the page's appends are durable: a crash re-reads at most
//! that page, whose appends are then duplicates. A restarted bridge resumes the saved pass.
//!
//! Deletion is guarded three ways. Only a pass whose every listing reports itself complete deletes
//! anything. Before deleting, it counts the candidates (live in the state, not seen in Clerk, not
//! changed since the pass began) and stops if any kind has more than the safety bound. And each
//! candidate is looked up on its own: only a 404 deletes it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    records::{self, type_prefix},
    target::Target,
};
use crate::{
    clerk_api::{self, Client, Cursor, Kind, Lookup},
    clock::{now_ms, timestamp_from_millis},
    jetstream::{LEASE_TTL, SharedLease},
    log::{Appended, NewRecord, PassUpdate, StoredObject, WriteError},
    proto::{EventSource, SyncProgress, SyncState},
    record,
    telemetry::metrics::Metrics,
};

/// Format version of [`Saved`]; a saved pass of another version is dropped.
const SAVED_VERSION: u32 = 1;
/// A kind may lose at most this many objects in one pass, or [`MAX_DELETE_SHARE`] of them.
pub const MAX_DELETE_FLOOR: u64 = 50;
/// A kind may lose at most this share of its live objects in one pass, or [`MAX_DELETE_FLOOR`].
pub const MAX_DELETE_SHARE: f64 = 0.01;
/// How often a resumed pass asks for the lease of a bridge that died.
const CLAIM_POLL: Duration = Duration::from_secs(1);
/// Deletion candidates read from the log at a time.
const CANDIDATE_BATCH: usize = 100;

/// Which pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Append what is newer; delete nothing.
    Backfill,
    /// Backfill, then delete what Clerk no longer has.
    Reconciliation,
}

/// Where a pass stands, saved after every page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Saved {
    /// [`SAVED_VERSION`].
    v: u32,
    /// Which pass.
    pub(super) mode: Mode,
    /// Index into [`Kind::ALL`] of the kind being listed (3 once all are).
    kind_index: usize,
    /// The listing's cursor after its last saved page; `None` before its first.
    cursor: Option<Cursor>,
    /// The log's head when the pass began: objects changed after it are not deletion candidates.
    through: u64,
    /// Whether every listing so far called itself complete.
    complete: bool,
    /// The counts so far.
    counts: Counts,
    /// When the pass began (unix ms).
    started_at_ms: i64,
}

/// What a pass has done.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counts {
    /// Objects read from Clerk.
    read: u64,
    /// Appended as newer.
    appended: u64,
    /// Already held in this version or newer.
    unchanged: u64,
    /// Clerk's totals at the start of each listing.
    expected: u64,
    /// Deleted after a 404.
    deleted: u64,
    /// Not listed, but found when looked up.
    confirmed_present: u64,
}

/// Why a pass stopped before its end.
#[derive(Debug, thiserror::Error)]
pub(super) enum PassError {
    /// Clerk's API failed in a way retries did not fix.
    #[error("Clerk's Backend API: {0}")]
    Clerk(#[from] clerk_api::Error),
    /// The log could not store.
    #[error("the log could not store the pass's events: {0}")]
    Log(#[from] WriteError),
    /// The log could not be read.
    #[error("the log could not be read: {0}")]
    Read(#[from] rusqlite::Error),
    /// The JetStream state could not be read.
    #[error("the JetStream state could not be read: {0}")]
    State(String),
    /// The bridge is shutting down; the pass resumes at the next start.
    #[error("interrupted by shutdown; the pass resumes when the bridge starts again")]
    Interrupted,
    /// Another bridge on the JetStream stream runs a pass.
    #[error("another bridge runs a pass on this stream; wait for it to end")]
    Elsewhere,
    /// The pass's lease on JetStream could not be kept (the servers were unreachable).
    #[error("the pass lost its lease (NATS unreachable); run it again")]
    LeaseLost,
    /// Some listing may have missed objects, so nothing was deleted.
    #[error(
        "a listing may have missed objects (Clerk's counts changed during the pass): nothing was deleted; run reconcile again"
    )]
    Incomplete,
    /// Too many deletions for one pass.
    #[error(
        "would delete {candidates} {kind} objects, more than the safety bound of {bound}: nothing was deleted (check that CLERK_SECRET_KEY is this instance's key)"
    )]
    Unsafe {
        /// The kind.
        kind: &'static str,
        /// How many it would delete.
        candidates: u64,
        /// The bound.
        bound: u64,
    },
}

// === impl PassError ===

impl PassError {
    /// Whether the saved pass outlives this error: it resumes later (shutdown, a lost lease), or
    /// it is the pass of another bridge.
    fn keeps_saved_pass(&self) -> bool {
        matches!(
            self,
            PassError::Interrupted | PassError::Elsewhere | PassError::LeaseLost
        )
    }
}

/// A pass at work.
#[derive(Debug)]
pub(super) struct Pass {
    /// Reads Clerk.
    pub(super) client: Client,
    /// Stores what it finds.
    pub(super) target: Target,
    /// Counts objects and passes.
    pub(super) metrics: Arc<Metrics>,
    /// Where it stands.
    pub(super) saved: Saved,
    /// Published after every page.
    pub(super) progress: watch::Sender<SyncProgress>,
    /// Stops the pass at shutdown.
    pub(super) shutdown: CancellationToken,
}

// === impl Saved ===

impl Saved {
    /// A new pass, beginning at the log's current head.
    pub(super) fn new(mode: Mode, through: u64) -> Self {
        Saved {
            v: SAVED_VERSION,
            mode,
            kind_index: 0,
            cursor: None,
            through,
            complete: true,
            counts: Counts::default(),
            started_at_ms: now_ms(),
        }
    }

    /// A pass saved by an earlier run; `None` for one this version cannot continue.
    pub(super) fn parse(json: &str) -> Option<Self> {
        serde_json::from_str::<Saved>(json)
            .ok()
            .filter(|saved| saved.v == SAVED_VERSION)
    }

    /// The progress message of this state.
    pub(super) fn progress(&self, state: SyncState, message: String, elapsed: f64) -> SyncProgress {
        let c = self.counts;
        SyncProgress {
            state: state.into(),
            kind: Kind::ALL
                .get(self.kind_index)
                .map(|k| k.as_str().to_owned())
                .unwrap_or_default(),
            read: c.read,
            appended: c.appended,
            unchanged: c.unchanged,
            expected: c.expected,
            objects_per_second: if elapsed > 0.0 {
                c.read as f64 / elapsed
            } else {
                0.0
            },
            deleted: c.deleted,
            confirmed_present: c.confirmed_present,
            requests: 0,
            message,
            started_at: timestamp_from_millis(self.started_at_ms),
        }
    }
}

// === impl Mode ===

impl Mode {
    /// The metric label, and what the logs call it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Backfill => "backfill",
            Mode::Reconciliation => "reconciliation",
        }
    }

    fn source(self) -> EventSource {
        match self {
            Mode::Backfill => EventSource::Backfill,
            Mode::Reconciliation => EventSource::Reconciliation,
        }
    }
}

// === impl Pass ===

impl Pass {
    /// Runs the pass to its end, publishing a final progress message either way.
    pub(super) async fn run(mut self) {
        let started = Instant::now();
        let outcome = match self.claim().await {
            Ok(lease) => self.run_holding(lease.as_ref(), started).await,
            Err(error) => Err(error),
        };
        let elapsed = started.elapsed().as_secs_f64();
        let keeps_saved = matches!(&outcome, Err(e) if e.keeps_saved_pass());
        let (state, message, result) = match &outcome {
            Ok(()) => (SyncState::Completed, String::new(), "completed"),
            Err(e @ PassError::Incomplete) => (SyncState::Failed, e.to_string(), "incomplete"),
            Err(e @ PassError::Unsafe { .. }) => (SyncState::Failed, e.to_string(), "unsafe"),
            Err(e) if keeps_saved => (SyncState::Failed, e.to_string(), "interrupted"),
            Err(e) => (SyncState::Failed, e.to_string(), "failed"),
        };
        if outcome.is_ok()
            && self.saved.mode == Mode::Reconciliation
            && let Err(error) = self
                .target
                .record_reconciled(self.saved.started_at_ms)
                .await
        {
            tracing::warn!(%error, "Could not record this reconciliation for the schedules");
        }
        // A pass that ended for good forgets its bookkeeping; an interrupted one keeps it to
        // resume, and one that never ran here leaves that of the bridge running it.
        if !keeps_saved && let Err(error) = self.target.save(PassUpdate::default()).await {
            tracing::warn!(%error, "Could not clear the ended pass's bookkeeping");
        }
        let c = self.saved.counts;
        tracing::info!(
            pass = self.saved.mode.as_str(),
            result,
            read = c.read,
            appended = c.appended,
            unchanged = c.unchanged,
            deleted = c.deleted,
            confirmed_present = c.confirmed_present,
            seconds = elapsed,
            "Sync pass ended"
        );
        if !keeps_saved {
            self.metrics
                .sync_pass_ended(self.saved.mode.as_str(), result);
        }
        let _ = self
            .progress
            .send(self.saved.progress(state, message, elapsed));
    }

    /// Takes the right to run the one pass of all bridges (on JetStream, a lease). A resumed pass
    /// may find the lease of the bridge that ran it before it died: it waits for it to expire.
    async fn claim(&self) -> Result<Option<SharedLease>, PassError> {
        let resumed = self.saved.kind_index > 0 || self.saved.cursor.is_some();
        let patience = if resumed {
            LEASE_TTL + CLAIM_POLL
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now() + patience;
        loop {
            if let Some(lease) = self.target.claim().await? {
                return Ok(lease);
            }
            if Instant::now() >= deadline {
                return Err(PassError::Elsewhere);
            }
            tokio::select! {
                () = tokio::time::sleep(CLAIM_POLL) => {}
                () = self.shutdown.cancelled() => return Err(PassError::Interrupted),
            }
        }
    }

    /// Runs the pass while `lease` (on JetStream) holds.
    async fn run_holding(
        &mut self,
        lease: Option<&SharedLease>,
        started: Instant,
    ) -> Result<(), PassError> {
        let fresh = self.saved.kind_index == 0 && self.saved.cursor.is_none();
        let Some(lease) = lease else {
            return self.list_and_repair(fresh, started).await;
        };
        let lost = lease.lost();
        tokio::select! {
            outcome = self.list_and_repair(fresh, started) => outcome,
            () = lost.cancelled() => Err(PassError::LeaseLost),
        }
    }

    async fn list_and_repair(&mut self, fresh: bool, started: Instant) -> Result<(), PassError> {
        self.save(fresh, Vec::new()).await?;
        while let Some(&kind) = Kind::ALL.get(self.saved.kind_index) {
            self.list(kind, started).await?;
            self.saved.kind_index += 1;
            self.saved.cursor = None;
            self.save(false, Vec::new()).await?;
        }
        if self.saved.mode == Mode::Reconciliation {
            self.delete_missing(started).await?;
        }
        Ok(())
    }

    /// Lists every object of `kind`, from the saved cursor if there is one.
    async fn list(&mut self, kind: Kind, started: Instant) -> Result<(), PassError> {
        let mut listing = match self.saved.cursor.take() {
            Some(cursor) => self.client.resume(cursor)?,
            None => {
                self.saved.counts.expected += self.client.count(kind).await?;
                self.client.list(kind)
            }
        };
        loop {
            let page = tokio::select! {
                page = listing.next_page() => page?,
                () = self.shutdown.cancelled() => return Err(PassError::Interrupted),
            };
            let Some(page) = page else { break };
            let seen = self.apply_page(kind, &page).await?;
            self.saved.cursor = Some(listing.cursor().clone());
            self.save(false, seen).await?;
            self.publish(started);
        }
        let complete = listing.report().is_some_and(|report| report.complete);
        self.saved.complete &= complete;
        Ok(())
    }

    /// Appends every object of `page` that is newer than the state (the writer batches them);
    /// returns the page's ids for reconciliation's bookkeeping.
    async fn apply_page(
        &mut self,
        kind: Kind,
        page: &[Value],
    ) -> Result<Vec<(String, String)>, PassError> {
        let source = self.saved.mode.source();
        let records: Vec<NewRecord> = page
            .iter()
            .filter_map(|object| records::updated(kind, object, source))
            .collect();
        let seen = match self.saved.mode {
            Mode::Backfill => Vec::new(),
            Mode::Reconciliation => records
                .iter()
                .filter_map(|r| r.object.as_ref())
                .map(|o| (o.kind.clone(), o.id.clone()))
                .collect(),
        };
        let outcomes = self.target.append_all(records).await?;
        let before = self.saved.counts;
        for outcome in outcomes {
            self.count(outcome);
        }
        self.saved.counts.read += u64::try_from(page.len()).unwrap_or(u64::MAX);
        self.count_metrics(before);
        Ok(seen)
    }

    fn count(&mut self, appended: Appended) {
        match appended {
            Appended::Stored(_) => self.saved.counts.appended += 1,
            Appended::Duplicate(_) | Appended::Superseded(_) => self.saved.counts.unchanged += 1,
        }
    }

    /// Exports what changed in the counts since `before`.
    fn count_metrics(&self, before: Counts) {
        let (pass, now) = (self.saved.mode.as_str(), self.saved.counts);
        for (outcome, delta) in [
            ("read", now.read - before.read),
            ("appended", now.appended - before.appended),
            ("unchanged", now.unchanged - before.unchanged),
            ("deleted", now.deleted - before.deleted),
            (
                "confirmed_present",
                now.confirmed_present - before.confirmed_present,
            ),
        ] {
            if delta > 0 {
                self.metrics.sync_objects(pass, outcome, delta);
            }
        }
    }

    /// Deletes what the state holds as live and Clerk no longer has, within the guards of the
    /// module docs.
    async fn delete_missing(&mut self, started: Instant) -> Result<(), PassError> {
        if !self.saved.complete {
            return Err(PassError::Incomplete);
        }
        for kind in Kind::ALL {
            self.check_bound(kind).await?;
        }
        for kind in Kind::ALL {
            self.delete_missing_of(kind, started).await?;
        }
        Ok(())
    }

    /// Fails when `kind` has more deletion candidates than the safety bound.
    async fn check_bound(&self, kind: Kind) -> Result<(), PassError> {
        let (through, prefix) = (self.saved.through, type_prefix(kind));
        let (live, candidates) = self.target.live_and_unseen(prefix, through).await?;
        let bound = MAX_DELETE_FLOOR.max((live as f64 * MAX_DELETE_SHARE) as u64);
        if candidates > bound {
            return Err(PassError::Unsafe {
                kind: kind.as_str(),
                candidates,
                bound,
            });
        }
        Ok(())
    }

    /// Looks every candidate of `kind` up, deleting those Clerk answers 404 for.
    async fn delete_missing_of(&mut self, kind: Kind, started: Instant) -> Result<(), PassError> {
        let (through, prefix) = (self.saved.through, type_prefix(kind));
        let mut after = String::new();
        loop {
            let candidates = self
                .target
                .unseen_live_objects(prefix, through, after.clone(), CANDIDATE_BATCH)
                .await?;
            for candidate in &candidates.objects {
                self.confirm(kind, candidate).await?;
            }
            let Some(last) = candidates.objects.last() else {
                return Ok(());
            };
            self.publish(started);
            if candidates.complete {
                return Ok(());
            }
            after = last.id.clone();
        }
    }

    /// Looks one candidate up: a 404 deletes it, an answer repairs it as any listed object.
    async fn confirm(&mut self, kind: Kind, candidate: &StoredObject) -> Result<(), PassError> {
        let last = record::decode(&candidate.event)
            .ok()
            .and_then(|event| records::data_of(&event.payload_json));
        let Some(lookup) = last.as_ref().and_then(|data| Lookup::of(kind, data)) else {
            tracing::warn!(id = %candidate.id, "Cannot look this object up; not deleting it");
            return Ok(());
        };
        if self.shutdown.is_cancelled() {
            return Err(PassError::Interrupted);
        }
        let before = self.saved.counts;
        match self.client.get(&lookup).await? {
            None => {
                if let Some(record) = records::deleted(kind, &candidate.id, last.as_ref()) {
                    self.target.append(record).await?;
                    self.saved.counts.deleted += 1;
                }
            }
            Some(object) => {
                self.saved.counts.confirmed_present += 1;
                if let Some(record) = records::updated(kind, &object, self.saved.mode.source()) {
                    let appended = self.target.append(record).await?;
                    self.count(appended);
                }
            }
        }
        self.count_metrics(before);
        Ok(())
    }

    /// Saves where the pass stands (and what it saw) durably.
    async fn save(&self, fresh: bool, seen: Vec<(String, String)>) -> Result<(), PassError> {
        // Serializing plain fields and a cursor of strings and numbers cannot fail.
        let state = serde_json::to_string(&self.saved).ok();
        self.target.save(PassUpdate { fresh, seen, state }).await?;
        Ok(())
    }

    fn publish(&self, started: Instant) {
        let elapsed = started.elapsed().as_secs_f64();
        let _ = self.progress.send(
            self.saved
                .progress(SyncState::Running, String::new(), elapsed),
        );
    }
}
