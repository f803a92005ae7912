//! Ingest on the JetStream store beside the embedded log, in the same run: a bridge on the same CPU
//! over one nats-server (R1), then over a local cluster of three with the stream at R3. The
//! servers are not pinned: they share the machine with the load generator (and, on two CPUs, with
//! the bridge), so these figures are a floor of what separate NATS machines would give.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    BenchError,
    bridge::{self, Bridge},
    load::{self, Prepared},
    nats::NatsServer,
    phases,
    report::Ingest,
};

/// Longest wait for a new stream to store its first webhook.
const WARM_UP_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for the state builder to apply the burst.
const STATE_LIMIT: Duration = Duration::from_secs(120);

/// The JetStream runs: `(what, ingest, state)` for R1 and R3.
pub(crate) type JetStreamRuns = Vec<(String, Ingest, StateCatchUp)>;

/// How the shared state (snapshots' source) followed the burst: the builder applies the stream
/// into a key-value bucket beside ingest, on the same CPU.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateCatchUp {
    /// From the burst's last answer until the state held the head; `None` past [`STATE_LIMIT`].
    pub(crate) after_burst: Option<Duration>,
    /// Events the builder applied per second over the burst and its catch-up.
    pub(crate) per_sec: f64,
}

/// Ingest at 64 connections of `requests` on R1 and on R3, each with a bridge of its own.
pub(crate) async fn ingest(
    bin: &Path,
    data_parent: &Path,
    cpu: Option<usize>,
    requests: &Arc<Vec<Prepared>>,
) -> Result<JetStreamRuns, BenchError> {
    eprintln!("bench: ingest on JetStream, R1 (one nats-server) ...");
    let server = NatsServer::start();
    let single = run(bin, data_parent, cpu, requests, &server.url, 1).await?;
    drop(server);
    eprintln!("bench: ingest on JetStream, R3 (a local cluster of three) ...");
    let cluster = NatsServer::cluster();
    let urls = cluster
        .iter()
        .map(|node| node.url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let replicated = run(bin, data_parent, cpu, requests, &urls, 3).await?;
    Ok(vec![
        ("JetStream R1, one server".to_owned(), single.0, single.1),
        (
            "JetStream R3, three local servers".to_owned(),
            replicated.0,
            replicated.1,
        ),
    ])
}

/// Sends one webhook until it is stored: a stream just created may still be electing its leader,
/// which is start-up, not ingest.
async fn warm_up(bridge: &Bridge) -> Result<(), BenchError> {
    let request = Arc::new(load::prepare("warm", 0..1)?);
    let deadline = Instant::now() + WARM_UP_LIMIT;
    while Instant::now() < deadline {
        let outcome = load::closed_loop(bridge.http, request.clone(), 1, WARM_UP_LIMIT).await?;
        if outcome.stored + outcome.duplicates == 1 {
            return Ok(());
        }
    }
    Err(BenchError::Setup(
        "the JetStream bridge stored nothing within 30 s".into(),
    ))
}

/// One bridge on the stream of `urls` at `replicas`, sent `requests` once.
async fn run(
    bin: &Path,
    data_parent: &Path,
    cpu: Option<usize>,
    requests: &Arc<Vec<Prepared>>,
    urls: &str,
    replicas: usize,
) -> Result<(Ingest, StateCatchUp), BenchError> {
    let data = bridge::data_dir_in(data_parent)?;
    let replicas = replicas.to_string();
    let flags = ["--nats-url", urls, "--nats-replicas", replicas.as_str()];
    let bridge = Bridge::start_with(bin, data.path(), cpu, &flags).await?;
    warm_up(&bridge).await?;
    let ingest = phases::send_burst(&bridge, requests.clone()).await?;
    let state = state_catch_up(&bridge, &ingest).await?;
    bridge.stop().await?;
    Ok((ingest, state))
}

/// Waits for the state builder's applied sequence to reach the head after a burst.
async fn state_catch_up(bridge: &Bridge, ingest: &Ingest) -> Result<StateCatchUp, BenchError> {
    let ended = Instant::now();
    let head = bridge.metric("clerk_bridge_log_head_sequence").await?;
    let mut after_burst = None;
    while ended.elapsed() < STATE_LIMIT {
        if bridge.metric("clerk_bridge_state_applied_sequence").await? >= head {
            after_burst = Some(ended.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let burst = ingest.stored as f64 / ingest.per_sec.max(f64::MIN_POSITIVE);
    let applying = burst + after_burst.unwrap_or(STATE_LIMIT).as_secs_f64();
    Ok(StateCatchUp {
        after_burst,
        per_sec: ingest.stored as f64 / applying,
    })
}
