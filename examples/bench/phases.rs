//! The phases of a run, in order. Each returns its figures for the [`Report`].

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::{
    BenchError, Plan, Scenario,
    bridge::{self, Bridge, Memory},
    ceiling::Ceiling,
    costs, fsync, jetstream,
    load::{self, Outcome, Prepared, SentAt},
    report::{
        CatchUp, Ceilings, Dedup, EndToEnd, FanOut, FanOuts, Ingest, Lag, Report, SlowConsumer,
        Snapshot,
    },
    stats::{Latencies, rate},
    subscribe::{self, Received, SubscriberRuntime, Subscription},
};

/// Connections of the burst runs.
const BURST_CONNECTIONS: usize = 64;
/// Connections of the paced end-to-end run.
const PACED_CONNECTIONS: usize = 16;
/// Redeliveries of already stored webhooks in the deduplication check.
const REDELIVERIES: usize = 1_000;
/// Webhooks signed at a time when filling the log for the catch-up run (bounds the generator's
/// memory).
const FILL_CHUNK: usize = 50_000;
/// Longest any burst may run.
const BURST_LIMIT: Duration = Duration::from_secs(120);
/// Webhooks per second the single connection could plausibly reach on a fast disk; bounds how many
/// are signed for it.
const SINGLE_MAX_RATE: u64 = 5_000;
/// How often the fan-out runs sample each subscriber's lag behind the acknowledged head.
const LAG_SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// The signed requests of the two ingest runs, sent to the ceiling receiver first, then to the
/// bridge.
#[derive(Debug)]
struct IngestRequests {
    /// For the single connection.
    single: Arc<Vec<Prepared>>,
    /// For the 64 connections.
    burst: Arc<Vec<Prepared>>,
}

/// Runs every phase (or only the scenario `only`) against a fresh bridge whose data directory is
/// created under `data_parent`.
pub(crate) async fn run(
    bin: &Path,
    data_parent: &Path,
    cpus: Option<(usize, usize)>,
    plan: Plan,
    only: Option<Scenario>,
) -> Result<Report, BenchError> {
    let data = bridge::data_dir_in(data_parent)?;
    eprintln!("bench: bare fsync on {} ...", data.path().display());
    let floor = fsync::measure(data.path(), plan.fsync)?;
    let single_max = plan.single.as_secs().max(1) * SINGLE_MAX_RATE;
    let requests = IngestRequests {
        single: Arc::new(load::prepare("single", 0..single_max as usize)?),
        burst: Arc::new(load::prepare("burst", 0..plan.burst)?),
    };
    let ceiling = measure_ceiling(cpus.map(|c| c.1), &requests, plan.ceiling).await?;
    eprintln!("bench: the bridge's own work per webhook, stage by stage ...");
    let costs = costs::measure(&requests.burst)?;
    let burst = requests.burst.clone();
    let bridge = Bridge::start(bin, &data.path().join("log"), cpus.map(|c| c.1)).await?;
    let subscribers = SubscriberRuntime::start()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut report = Report::new(cpus, requests.single[0].body_len, floor, ceiling);
    report.costs = Some(costs);
    report.idle = bridge.memory()?;
    let wanted = |scenario| only.is_none_or(|only| only == scenario);
    if wanted(Scenario::Ingest) {
        run_ingest(&bridge, plan, requests, &mut report).await?;
    }
    if wanted(Scenario::SlowConsumer) {
        report.slow_consumer = Some(slow_consumer(&bridge, &subscribers, plan).await?);
    }
    if wanted(Scenario::EndToEnd) {
        report.e2e_floor = Some(fsync::measure(data.path(), plan.fsync)?);
        report.end_to_end = Some(end_to_end(&bridge, &subscribers, plan).await?);
    }
    if wanted(Scenario::CatchUp) {
        report.fill = fill(&bridge, plan.catch_up).await?;
        report.catch_up = Some(catch_up(&bridge, plan.catch_up).await?);
    }
    if wanted(Scenario::Snapshot) {
        let cpu = cpus.map(|c| c.1);
        report.snapshot = Some(snapshot(bin, data_parent, cpu, plan.snapshot).await?);
    }
    // Last: memory a process has touched stays resident, so the run with the most streams would
    // inflate the peaks of every run after it.
    if wanted(Scenario::FanOut) {
        report.fan_out = Some(fan_outs(&bridge, &subscribers, plan).await?);
    }
    report.head = head(&bridge).await?;
    bridge.stop().await?;
    if wanted(Scenario::Jetstream) {
        let cpu = cpus.map(|c| c.1);
        report.jetstream = Some(jetstream::ingest(bin, data_parent, cpu, &burst).await?);
    }
    Ok(report)
}

/// The do-nothing receiver on `cpu`, at 1 and at 64 connections, with the ingest runs' requests;
/// each run sends them again until it has lasted `at_least`.
async fn measure_ceiling(
    cpu: Option<usize>,
    requests: &IngestRequests,
    at_least: Duration,
) -> Result<Ceilings, BenchError> {
    let ceiling = Ceiling::start(cpu).await?;
    eprintln!("bench: ceiling (do-nothing receiver), 1 and {BURST_CONNECTIONS} connections ...");
    let single = ceiling_run(&ceiling, &requests.single, 1, at_least).await?;
    let burst = ceiling_run(&ceiling, &requests.burst, BURST_CONNECTIONS, at_least).await?;
    ceiling.stop().await?;
    Ok(Ceilings { single, burst })
}

/// Closed-loop runs of `requests` against the ceiling until they have lasted `at_least` in all.
async fn ceiling_run(
    ceiling: &Ceiling,
    requests: &Arc<Vec<Prepared>>,
    connections: usize,
    at_least: Duration,
) -> Result<Ingest, BenchError> {
    let cpu = ceiling.cpu_time()?;
    let mut total = Outcome::default();
    while total.elapsed < at_least {
        let outcome =
            load::closed_loop(ceiling.http, requests.clone(), connections, BURST_LIMIT).await?;
        total.stored += outcome.stored;
        total.failed += outcome.failed + outcome.duplicates;
        total.elapsed += outcome.elapsed;
        total.latencies.merge(outcome.latencies);
    }
    let cpu = ceiling.cpu_time()? - cpu;
    Ok(Ingest::new(total, cpu, Memory::default()))
}

/// Ingest at 1 and at 64 connections, then the deduplication check.
async fn run_ingest(
    bridge: &Bridge,
    plan: Plan,
    requests: IngestRequests,
    report: &mut Report,
) -> Result<(), BenchError> {
    report.single = Some(send(bridge, requests.single, 1, plan.single).await?);
    report.burst = Some(send(bridge, requests.burst, BURST_CONNECTIONS, BURST_LIMIT).await?);
    report.dedup = Some(redeliver(bridge, "burst").await?);
    Ok(())
}

/// Sends `requests` over the 64 connections of the burst, as the ingest scenario does.
pub(crate) async fn send_burst(
    bridge: &Bridge,
    requests: Arc<Vec<Prepared>>,
) -> Result<Ingest, BenchError> {
    send(bridge, requests, BURST_CONNECTIONS, BURST_LIMIT).await
}

/// Sends `count` fresh webhooks (ids `msg_<tag>...`) over `connections` connections for at most
/// `limit`.
async fn ingest(
    bridge: &Bridge,
    tag: &str,
    count: usize,
    connections: usize,
    limit: Duration,
) -> Result<Ingest, BenchError> {
    let requests = Arc::new(load::prepare(tag, 0..count)?);
    send(bridge, requests, connections, limit).await
}

/// Sends `requests` over `connections` connections for at most `limit`, with the bridge's CPU
/// time and peak memory over the run.
async fn send(
    bridge: &Bridge,
    requests: Arc<Vec<Prepared>>,
    connections: usize,
    limit: Duration,
) -> Result<Ingest, BenchError> {
    eprintln!("bench: ingest, {connections} connection(s) ...");
    bridge.reset_peak()?;
    let cpu = bridge.cpu_time()?;
    let outcome = load::closed_loop(bridge.http, requests, connections, limit).await?;
    let cpu = bridge.cpu_time()? - cpu;
    Ok(Ingest::new(outcome, cpu, bridge.memory()?))
}

/// Sends again the first webhooks of the run tagged `tag` (same ids, signed anew) and checks that
/// every one is answered as a duplicate and the head does not move.
async fn redeliver(bridge: &Bridge, tag: &str) -> Result<Dedup, BenchError> {
    let head_before = head(bridge).await?;
    let requests = Arc::new(load::prepare(tag, 0..REDELIVERIES)?);
    let outcome = load::closed_loop(bridge.http, requests, 8, BURST_LIMIT).await?;
    Ok(Dedup {
        sent: REDELIVERIES,
        duplicates: outcome.duplicates,
        head_moved: head(bridge).await? != head_before,
    })
}

/// A 64-connection burst while one subscriber, live from the head, reads nothing, between two
/// bursts without subscribers (their difference is the run-to-run noise the stalled run is
/// judged against). The stalled subscriber then reads everything it missed.
async fn slow_consumer(
    bridge: &Bridge,
    runtime: &SubscriberRuntime,
    plan: Plan,
) -> Result<SlowConsumer, BenchError> {
    let before = ingest(
        bridge,
        "slow-before",
        plan.burst,
        BURST_CONNECTIONS,
        BURST_LIMIT,
    )
    .await?;
    eprintln!("bench: ... and with one stalled subscriber");
    let mut stalled = live_subscription(runtime, bridge.grpc).await?;
    let during = ingest(bridge, "slow", plan.burst, BURST_CONNECTIONS, BURST_LIMIT).await?;
    let (_last_tx, last_rx) = watch::channel(head(bridge).await?);
    let start = Instant::now();
    let reader = runtime.spawn(async move { stalled.count_until(last_rx).await });
    let received = subscribe::joined(reader).await?;
    let after = ingest(
        bridge,
        "slow-after",
        plan.burst,
        BURST_CONNECTIONS,
        BURST_LIMIT,
    )
    .await?;
    Ok(SlowConsumer {
        before,
        stalled: during,
        after,
        received,
        drained: received.last_at - start,
    })
}

/// A 64-connection burst without subscribers, then one with each count of `plan.subscribers`
/// streaming live from the head (the larger last).
async fn fan_outs(
    bridge: &Bridge,
    runtime: &SubscriberRuntime,
    plan: Plan,
) -> Result<FanOuts, BenchError> {
    let baseline = ingest(
        bridge,
        "fanout0-",
        plan.burst,
        BURST_CONNECTIONS,
        BURST_LIMIT,
    )
    .await?;
    let mut runs = Vec::with_capacity(plan.subscribers.len());
    for (i, subscribers) in plan.subscribers.into_iter().enumerate() {
        let tag = format!("fanout{}-", i + 1);
        runs.push(fan_out(bridge, runtime, subscribers, &tag, plan.burst).await?);
    }
    Ok(FanOuts { baseline, runs })
}

/// A 64-connection burst of `burst` webhooks while `subscribers` subscribers stream live from the
/// head, sampling how far each is behind the acknowledged head.
async fn fan_out(
    bridge: &Bridge,
    runtime: &SubscriberRuntime,
    subscribers: usize,
    tag: &str,
    burst: usize,
) -> Result<FanOut, BenchError> {
    eprintln!("bench: fan-out, {subscribers} live subscribers ...");
    let requests = Arc::new(load::prepare(tag, 0..burst)?);
    let (last_tx, last_rx) = watch::channel(u64::MAX);
    let mut readers = Vec::with_capacity(subscribers);
    let mut positions = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let mut subscription = live_subscription(runtime, bridge.grpc).await?;
        positions.push(subscription.newest());
        let last = last_rx.clone();
        readers.push(runtime.spawn(async move { subscription.count_until(last).await }));
    }
    let head_before = head(bridge).await?;
    let stored = Arc::new(AtomicUsize::new(0));
    bridge.reset_peak()?;
    let cpu = bridge.cpu_time()?;
    let run = load::closed_loop_counted(
        bridge.http,
        requests,
        BURST_CONNECTIONS,
        BURST_LIMIT,
        stored.clone(),
    );
    let acknowledged = || head_before + stored.load(Ordering::Relaxed) as u64;
    let (outcome, mut lags) = sample_lag(run, acknowledged, &positions).await;
    let outcome = outcome?;
    let burst_end = Instant::now();
    let (cpu, ingest_memory) = (bridge.cpu_time()? - cpu, bridge.memory()?);
    last_tx.send_replace(head(bridge).await?);
    let received = wait_readers(readers).await?;
    lags.sort_unstable();
    Ok(FanOut {
        subscribers,
        ingest: Ingest::new(outcome, cpu, ingest_memory),
        delivered: received.events,
        gaps: received.gaps,
        lag: Lag {
            max: lags.last().copied().unwrap_or(0),
            p99: clerk_bridge::stats::percentile(&lags, 99),
            after_burst: received.last_at.max(burst_end) - burst_end,
        },
        peak: bridge.memory()?,
    })
}

/// Runs `burst` while sampling, every [`LAG_SAMPLE_EVERY`], how many events each subscriber
/// (its last sequence in `positions`) is behind the `acknowledged` head.
async fn sample_lag<T>(
    burst: impl Future<Output = T>,
    acknowledged: impl Fn() -> u64,
    positions: &[Arc<AtomicU64>],
) -> (T, Vec<u64>) {
    let mut lags = Vec::new();
    let mut tick = tokio::time::interval(LAG_SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(burst);
    loop {
        tokio::select! {
            done = &mut burst => return (done, lags),
            _ = tick.tick() => {
                let head = acknowledged();
                lags.extend(positions.iter().map(|p| head.saturating_sub(p.load(Ordering::Relaxed))));
            }
        }
    }
}

/// Waits for every subscriber of a fan-out; returns the events they received in all, the events
/// out of order, and when the last one arrived.
async fn wait_readers(
    readers: Vec<JoinHandle<Result<Received, BenchError>>>,
) -> Result<Received, BenchError> {
    let mut all: Option<Received> = None;
    for reader in readers {
        let received = subscribe::joined(reader).await?;
        all = Some(match all {
            None => received,
            Some(all) => Received {
                events: all.events + received.events,
                last_at: all.last_at.max(received.last_at),
                gaps: all.gaps + received.gaps,
            },
        });
    }
    all.ok_or_else(|| BenchError::Setup("a fan-out run without subscribers".into()))
}

/// A subscription from the head that has passed its caught-up marker, opened on the subscriber
/// runtime (so its connection's tasks run there too).
async fn live_subscription(
    runtime: &SubscriberRuntime,
    grpc: SocketAddr,
) -> Result<Subscription, BenchError> {
    let opened = runtime.spawn(async move {
        let channel = subscribe::connect(grpc).await?;
        let mut subscription = Subscription::open(channel, None).await?;
        subscription.caught_up().await?;
        Ok(subscription)
    });
    subscribe::joined(opened).await
}

/// Webhooks at a steady `plan.e2e_rate` with one live subscriber: send → 2xx and send → delivered.
async fn end_to_end(
    bridge: &Bridge,
    runtime: &SubscriberRuntime,
    plan: Plan,
) -> Result<EndToEnd, BenchError> {
    eprintln!("bench: end-to-end at {}/s ...", plan.e2e_rate);
    let requests = Arc::new(load::prepare("e2e", 0..plan.e2e)?);
    let sent_at = SentAt::default();
    let (last_tx, last_rx) = watch::channel(u64::MAX);
    let mut subscription = live_subscription(runtime, bridge.grpc).await?;
    let sent = sent_at.clone();
    let reader = runtime.spawn(async move { subscription.latencies_until(last_rx, sent).await });
    bridge.reset_peak()?;
    let outcome = load::paced(
        bridge.http,
        requests,
        plan.e2e_rate,
        PACED_CONNECTIONS,
        sent_at,
    )
    .await?;
    last_tx.send_replace(head(bridge).await?);
    let delivered: Latencies = subscribe::joined(reader).await?;
    Ok(EndToEnd {
        stored: outcome.stored,
        failed: outcome.failed,
        per_sec: rate(outcome.stored, outcome.elapsed),
        ack: outcome.latencies.summary(),
        delivered: delivered.summary(),
        peak: bridge.memory()?,
    })
}

/// Stores more webhooks until the log holds at least `events`; `None` if it already does.
async fn fill(bridge: &Bridge, events: usize) -> Result<Option<Ingest>, BenchError> {
    let missing = events.saturating_sub(usize::try_from(head(bridge).await?).unwrap_or(0));
    if missing == 0 {
        return Ok(None);
    }
    eprintln!("bench: filling the log with {missing} more events ...");
    bridge.reset_peak()?;
    let cpu = bridge.cpu_time()?;
    let mut total = Outcome::default();
    for start in (0..missing).step_by(FILL_CHUNK) {
        let chunk = start..(start + FILL_CHUNK).min(missing);
        let requests = Arc::new(load::prepare("fill", chunk)?);
        let outcome =
            load::closed_loop(bridge.http, requests, BURST_CONNECTIONS, BURST_LIMIT).await?;
        total.stored += outcome.stored;
        total.failed += outcome.failed + outcome.duplicates;
        total.elapsed += outcome.elapsed;
        total.latencies.merge(outcome.latencies);
    }
    let cpu = bridge.cpu_time()? - cpu;
    Ok(Some(Ingest::new(total, cpu, bridge.memory()?)))
}

/// One new subscriber replays the last `events` stored events.
async fn catch_up(bridge: &Bridge, events: usize) -> Result<CatchUp, BenchError> {
    eprintln!("bench: catch-up of {events} events ...");
    let head = head(bridge).await?;
    let after = head.saturating_sub(events as u64);
    bridge.reset_peak()?;
    let (start, cpu) = (Instant::now(), bridge.cpu_time()?);
    let channel = subscribe::connect(bridge.grpc).await?;
    let mut subscription = Subscription::open(channel, Some(after)).await?;
    let (_last_tx, last_rx) = watch::channel(head);
    let received = subscription.count_until(last_rx).await?;
    let elapsed = received.last_at - start;
    Ok(CatchUp {
        events: received.events,
        per_sec: rate(received.events, elapsed),
        cores: (bridge.cpu_time()? - cpu).as_secs_f64() / elapsed.as_secs_f64(),
        peak: bridge.memory()?,
    })
}

/// One new subscriber reads a snapshot of the state of a second bridge (started on `cpu` with a
/// fresh data directory under `data_parent`), whose log is first filled with `objects` webhooks
/// about distinct users: the state of the first bridge holds every object of the other runs.
async fn snapshot(
    bin: &Path,
    data_parent: &Path,
    cpu: Option<usize>,
    objects: usize,
) -> Result<Snapshot, BenchError> {
    let data = bridge::data_dir_in(data_parent)?;
    let bridge = Bridge::start(bin, &data.path().join("log"), cpu).await?;
    let fill = fill(&bridge, objects).await?;
    eprintln!("bench: snapshot of {objects} objects ...");
    bridge.reset_peak()?;
    let (start, cpu) = (Instant::now(), bridge.cpu_time()?);
    let channel = subscribe::connect(bridge.grpc).await?;
    let read = Subscription::snapshot(channel)
        .await?
        .read_snapshot()
        .await?;
    let elapsed = read.end_at - start;
    let snapshot = Snapshot {
        expected: fill.as_ref().map_or(0, |f| f.stored),
        received: read.events,
        reported: read.objects,
        per_sec: rate(read.events, elapsed),
        cores: (bridge.cpu_time()? - cpu).as_secs_f64() / elapsed.as_secs_f64(),
        peak: bridge.memory()?,
        fill,
    };
    bridge.stop().await?;
    Ok(snapshot)
}

/// The log's head, from the start marker of a fresh stream.
async fn head(bridge: &Bridge) -> Result<u64, BenchError> {
    let channel = subscribe::connect(bridge.grpc).await?;
    Subscription::open(channel, None).await?.head().await
}

// === impl Ingest ===

impl Ingest {
    fn new(outcome: Outcome, cpu: Duration, memory: Memory) -> Self {
        Ingest {
            cores: cpu.as_secs_f64() / outcome.elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
            cpu_per_webhook: cpu / u32::try_from(outcome.stored.max(1)).unwrap_or(u32::MAX),
            stored: outcome.stored,
            failed: outcome.failed + outcome.duplicates,
            per_sec: rate(outcome.stored, outcome.elapsed),
            latency: outcome.latencies.summary(),
            peak: memory,
        }
    }
}
