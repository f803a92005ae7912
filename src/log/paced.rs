//! Background threads that do one job when the writer pokes them, at most once per interval: the
//! checkpointer and the watermark keeper. A poke while the job runs or rests is remembered (one is
//! enough), so the job runs once more after the rest and no poke is lost; many pokes cost one run.

use std::{
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Tells a paced thread that there is work. Dropping it stops the thread.
#[derive(Debug)]
pub(super) struct Poke(SyncSender<()>);

/// Starts a thread named `name` that runs `job` after each poke, at most once per `interval`,
/// until its [`Poke`] is dropped.
///
/// # Errors
/// When the thread cannot be started.
pub(super) fn spawn(
    name: &'static str,
    interval: Duration,
    mut job: impl FnMut() + Send + 'static,
) -> std::io::Result<(Poke, JoinHandle<()>)> {
    // One pending poke is enough: a run does everything asked before it starts.
    let (poke, pokes) = mpsc::sync_channel(1);
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            run(&pokes, interval, &mut job);
            tracing::debug!(thread = name, "Log thread stopped");
        })?;
    Ok((Poke(poke), handle))
}

// === impl Poke ===

impl Poke {
    /// Asks for a run; never blocks.
    pub(super) fn poke(&self) {
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::debug!("A paced log thread has stopped; poke ignored");
            }
        }
    }
}

/// Runs `job` after each poke, paced by `interval`, until the poke is dropped.
fn run(pokes: &Receiver<()>, interval: Duration, job: &mut impl FnMut()) {
    while pokes.recv().is_ok() {
        job();
        while rest(pokes, interval) {
            job();
        }
    }
}

/// Waits out `interval` after a run and says whether pokes came meanwhile. Stops waiting as soon
/// as the poke is dropped, so that [`Log::close`](super::Log::close), which joins these threads,
/// does not wait out the interval too.
fn rest(pokes: &Receiver<()>, interval: Duration) -> bool {
    let until = Instant::now() + interval;
    let mut poked = false;
    loop {
        match pokes.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(()) => poked = true,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return poked,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[test]
    fn pokes_during_a_rest_make_one_more_run_and_a_drop_ends_the_rest_at_once() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let interval = Duration::from_secs(60);
        let (poke, handle) = spawn("test-paced", interval, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        poke.poke();
        poke.poke();
        poke.poke();
        let dropped = Instant::now();
        drop(poke);
        handle.join().unwrap();
        assert!(dropped.elapsed() < interval, "the rest was waited out");
        // The first poke ran at once; the others, whether they came before the run or during
        // the rest, are at most one more run.
        assert!((1..=2).contains(&runs.load(Ordering::SeqCst)));
    }
}
