//! `clerk-bridge backfill` and `clerk-bridge reconcile`: ask a running bridge to run a pass against
//! Clerk's Backend API (or follow the one running), show its progress, and exit 0 once it completed;
//! non-zero, with the bridge's reason, when it did not (e.g. the safety bound on deletions).
//!
//! Progress goes to stderr, about once a second; the final counts to stdout. Leaving (Ctrl-C) does
//! not stop the pass: it belongs to the bridge.

use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{Stream, StreamExt};

use super::GrpcClientArgs;
use crate::proto::{
    BackfillRequest, ReconcileRequest, SyncProgress, SyncState,
    sync_service_client::SyncServiceClient,
};

/// How often a progress line is printed at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Flags of `clerk-bridge backfill` and `clerk-bridge reconcile`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Where the bridge is.
    #[command(flatten)]
    pub bridge: GrpcClientArgs,
}

/// Runs `backfill`.
///
/// # Errors
/// When the bridge cannot be reached, refuses (no secret key, another pass running), or the pass
/// did not complete.
pub async fn backfill(args: SyncArgs) -> anyhow::Result<()> {
    let mut client = SyncServiceClient::new(args.bridge.connect().await?);
    let stream = client.backfill(BackfillRequest {}).await?.into_inner();
    follow(stream.map(|m| m.map(|m| m.progress)), "backfill").await
}

/// Runs `reconcile`.
///
/// # Errors
/// As [`backfill`].
pub async fn reconcile(args: SyncArgs) -> anyhow::Result<()> {
    let mut client = SyncServiceClient::new(args.bridge.connect().await?);
    let stream = client.reconcile(ReconcileRequest {}).await?.into_inner();
    follow(stream.map(|m| m.map(|m| m.progress)), "reconcile").await
}

/// Shows a pass's progress until its final state.
async fn follow(
    mut stream: impl Stream<Item = Result<Option<SyncProgress>, tonic::Status>> + Unpin,
    pass: &'static str,
) -> anyhow::Result<()> {
    let mut display = Display::new(pass);
    while let Some(message) = stream.next().await {
        if let Some(progress) = message?
            && let Some(result) = display.show(&progress)
        {
            return result;
        }
    }
    display.cut_off()
}

/// Prints progress lines, at most one per [`PROGRESS_EVERY`].
#[derive(Debug)]
struct Display {
    /// `backfill` or `reconcile`.
    pass: &'static str,
    /// When the last line was printed.
    last: Option<Instant>,
}

// === impl Display ===

impl Display {
    fn new(pass: &'static str) -> Self {
        Display { pass, last: None }
    }

    /// Shows `progress`; the command's result once it is final.
    fn show(&mut self, progress: &SyncProgress) -> Option<anyhow::Result<()>> {
        match progress.state() {
            SyncState::Completed => {
                println!("{}", summary(self.pass, progress));
                Some(Ok(()))
            }
            SyncState::Failed => {
                eprintln!("-- {}", line(progress));
                Some(Err(anyhow::anyhow!(
                    "{} did not complete: {}",
                    self.pass,
                    progress.message
                )))
            }
            _ => {
                if self
                    .last
                    .is_none_or(|last| last.elapsed() >= PROGRESS_EVERY)
                {
                    eprintln!("-- {}", line(progress));
                    self.last = Some(Instant::now());
                }
                None
            }
        }
    }

    /// The stream ended without a final state (the bridge shut down).
    fn cut_off(&self) -> anyhow::Result<()> {
        anyhow::bail!(
            "the bridge ended the stream before the {} finished; it resumes when the bridge starts again",
            self.pass
        )
    }
}

/// `users: 5000/12000 read, 120 appended, 4880 unchanged, 0 deleted · 1234 objects/s · ~7000 left`.
fn line(p: &SyncProgress) -> String {
    let kind = if p.kind.is_empty() { "done" } else { &p.kind };
    let left = p.expected.saturating_sub(p.read);
    format!(
        "{kind}: {}/{} read, {} appended, {} unchanged, {} deleted · {:.0} objects/s · ~{left} left",
        p.read, p.expected, p.appended, p.unchanged, p.deleted, p.objects_per_second
    )
}

/// The closing line of a completed pass.
fn summary(pass: &str, p: &SyncProgress) -> String {
    let mut text = format!(
        "{pass} completed: {} objects read, {} appended, {} unchanged",
        p.read, p.appended, p.unchanged
    );
    if pass == "reconcile" {
        text.push_str(&format!(
            ", {} deleted, {} found on lookup",
            p.deleted, p.confirmed_present
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(state: SyncState) -> SyncProgress {
        SyncProgress {
            state: state.into(),
            kind: "user".to_owned(),
            read: 40,
            appended: 3,
            unchanged: 37,
            expected: 100,
            message: "because".to_owned(),
            ..SyncProgress::default()
        }
    }

    #[test]
    fn running_passes_show_lines_and_final_states_end_the_command() {
        let mut display = Display::new("reconcile");
        assert!(display.show(&progress(SyncState::Running)).is_none());
        assert!(line(&progress(SyncState::Running)).starts_with("user: 40/100 read, 3 appended"));
        assert!(matches!(
            display.show(&progress(SyncState::Completed)),
            Some(Ok(()))
        ));
        let failed = display
            .show(&progress(SyncState::Failed))
            .unwrap()
            .unwrap_err();
        assert!(failed.to_string().contains("because"), "{failed}");
        assert!(summary("reconcile", &progress(SyncState::Completed)).contains("0 deleted"));
    }
}
