//! The figures of a run and the table they are printed as (Markdown, so it can be pasted into the
//! README), each beside its target.

use std::time::Duration;

use crate::{
    Plan,
    bridge::Memory,
    fsync::Floor,
    stats::{Summary, rate},
    subscribe::Received,
};

/// Ingest at 64 connections must reach this many durable webhooks per second...
const TARGET_INGEST_PER_SEC: f64 = 20_000.0;
/// ... with a p99 latency under this.
const TARGET_INGEST_P99: Duration = Duration::from_millis(10);
/// Catch-up must reach this many events per second to one subscriber.
const TARGET_CATCH_UP_PER_SEC: f64 = 150_000.0;
/// A snapshot must reach this many objects per second to one subscriber (and keep the peak RSS
/// under [`TARGET_PEAK_KIB`]).
const TARGET_SNAPSHOT_PER_SEC: f64 = 50_000.0;
/// 100 live subscribers may cost at most this share of ingest throughput.
const TARGET_FAN_OUT_COST: f64 = 0.20;
/// Idle RSS must stay under this, in KiB.
const TARGET_IDLE_KIB: u64 = 20 * 1024;
/// Peak RSS under any load must stay under this, in KiB.
const TARGET_PEAK_KIB: u64 = 64 * 1024;

/// What one closed-loop ingest run measured: each connection sends its next webhook as soon as
/// the previous one is answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ingest {
    /// Webhooks answered 200 as newly stored.
    pub(crate) stored: usize,
    /// Webhooks answered otherwise.
    pub(crate) failed: usize,
    /// Stored webhooks per second.
    pub(crate) per_sec: f64,
    /// Request → 2xx latency.
    pub(crate) latency: Summary,
    /// CPUs the bridge kept busy on average (1.0 = one CPU all the time).
    pub(crate) cores: f64,
    /// Bridge CPU time per stored webhook.
    pub(crate) cpu_per_webhook: Duration,
    /// The bridge's memory at the end (peak since the run began).
    pub(crate) peak: Memory,
}

/// The deduplication check: the first webhooks of the burst sent again (same ids, signed anew).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dedup {
    /// Webhooks sent again.
    pub(crate) sent: usize,
    /// Answered as duplicates.
    pub(crate) duplicates: usize,
    /// Whether the head moved (it must not).
    pub(crate) head_moved: bool,
}

/// The fan-out run: a burst while live subscribers stream every event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FanOut {
    /// Live subscribers.
    pub(crate) subscribers: usize,
    /// The ingest run they watched.
    pub(crate) ingest: Ingest,
    /// Events received by all subscribers together.
    pub(crate) delivered: usize,
    /// From the first webhook until the last subscriber had every event.
    pub(crate) drained: Duration,
    /// The bridge's memory after the subscribers finished (peak since the run began).
    pub(crate) peak: Memory,
}

/// The slow-consumer run: a burst with one subscriber that reads nothing, between two without.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlowConsumer {
    /// The burst before, without subscribers.
    pub(crate) before: Ingest,
    /// The burst while the subscriber read nothing.
    pub(crate) stalled: Ingest,
    /// The burst after, without subscribers.
    pub(crate) after: Ingest,
    /// What the stalled subscriber received once it read again.
    pub(crate) received: Received,
    /// From when it read again until its last event.
    pub(crate) drained: Duration,
}

/// The paced end-to-end run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndToEnd {
    /// Webhooks stored.
    pub(crate) stored: usize,
    /// Webhooks answered otherwise.
    pub(crate) failed: usize,
    /// Stored webhooks per second actually achieved (the plan asks for [`Plan::e2e_rate`]).
    pub(crate) per_sec: f64,
    /// Send → 2xx.
    pub(crate) ack: Summary,
    /// Send → received by the subscriber.
    pub(crate) delivered: Summary,
    /// The bridge's memory (peak during the run).
    pub(crate) peak: Memory,
}

/// The catch-up run: one new subscriber replays the last stored events.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CatchUp {
    /// Events replayed.
    pub(crate) events: usize,
    /// Events per second, from subscribing to the last event.
    pub(crate) per_sec: f64,
    /// CPUs the bridge kept busy on average.
    pub(crate) cores: f64,
    /// The bridge's memory (peak during the run).
    pub(crate) peak: Memory,
}

/// The snapshot run: one new subscriber reads the state of a second bridge, up to the
/// `snapshot_end` marker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    /// Objects the state should hold: the webhooks stored while filling its log.
    pub(crate) expected: usize,
    /// Events received before the end marker.
    pub(crate) received: usize,
    /// Objects sent, by the end marker's count.
    pub(crate) reported: u64,
    /// Objects per second, from subscribing to the end marker.
    pub(crate) per_sec: f64,
    /// CPUs the bridge kept busy on average.
    pub(crate) cores: f64,
    /// The bridge's memory (peak during the snapshot).
    pub(crate) peak: Memory,
    /// The run that filled its log.
    pub(crate) fill: Option<Ingest>,
}

/// Everything a run measured; a scenario left out by `--only` stays `None`.
#[derive(Debug)]
pub(crate) struct Report {
    /// (load generator CPU, bridge CPU) when pinned.
    pub(crate) cpus: Option<(usize, usize)>,
    /// Size of one webhook body, in bytes (every body is about the same size).
    pub(crate) body_bytes: usize,
    /// Bare fsync on the data directory, before the bridge starts.
    pub(crate) floor: Floor,
    /// Memory after start-up.
    pub(crate) idle: Memory,
    /// Ingest over one connection.
    pub(crate) single: Option<Ingest>,
    /// Ingest over 64 connections, no subscribers.
    pub(crate) burst: Option<Ingest>,
    /// Redelivery check.
    pub(crate) dedup: Option<Dedup>,
    /// Ingest with a stalled subscriber.
    pub(crate) slow_consumer: Option<SlowConsumer>,
    /// Ingest over 64 connections with live subscribers.
    pub(crate) fan_out: Option<FanOut>,
    /// Bare fsync again, just before the end-to-end run (the disk's speed varies).
    pub(crate) e2e_floor: Option<Floor>,
    /// The steady-rate run.
    pub(crate) end_to_end: Option<EndToEnd>,
    /// The run that filled the log for catch-up, if one was needed.
    pub(crate) fill: Option<Ingest>,
    /// Replay of stored events to one subscriber.
    pub(crate) catch_up: Option<CatchUp>,
    /// A snapshot of a second bridge's state to one subscriber.
    pub(crate) snapshot: Option<Snapshot>,
    /// The log's head at the end.
    pub(crate) head: u64,
}

// === impl Report ===

impl Report {
    /// A report with the figures taken before any load.
    pub(crate) fn new(cpus: Option<(usize, usize)>, body_bytes: usize, floor: Floor) -> Self {
        Report {
            cpus,
            body_bytes,
            floor,
            idle: Memory::default(),
            single: None,
            burst: None,
            dedup: None,
            slow_consumer: None,
            fan_out: None,
            e2e_floor: None,
            end_to_end: None,
            fill: None,
            catch_up: None,
            snapshot: None,
            head: 0,
        }
    }

    /// Prints the header and the table to stdout.
    pub(crate) fn print(&self, plan: Plan) {
        println!("{}", self.header());
        println!();
        println!("| measure | result | target | |");
        println!("|---|---|---|---|");
        for row in self.rows(plan) {
            println!("{row}");
        }
    }

    fn header(&self) -> String {
        let pinning = match self.cpus {
            Some((generator, bridge)) => {
                format!("bridge pinned to CPU {bridge}, load generator to CPU {generator}")
            }
            None => "not pinned".to_owned(),
        };
        format!(
            "clerk-bridge benchmark, {}\n{}; {pinning}; webhook bodies of {} bytes",
            date(),
            machine(),
            self.body_bytes
        )
    }

    fn rows(&self, plan: Plan) -> Vec<String> {
        let mut rows = vec![floor_row(
            "bare fsync (4 KiB write + fsync), same data dir",
            &self.floor,
        )];
        if let (Some(single), Some(burst), Some(dedup)) = (&self.single, &self.burst, &self.dedup) {
            rows.push(ingest_row("ingest, 1 connection", single, None));
            rows.push(burst_row(burst));
            rows.push(dedup_row(dedup));
        }
        if let Some(slow) = &self.slow_consumer {
            rows.extend(slow_consumer_rows(slow));
        }
        if let (Some(floor), Some(e2e)) = (&self.e2e_floor, &self.end_to_end) {
            rows.push(floor_row(
                "bare fsync again, just before the end-to-end run",
                floor,
            ));
            rows.extend(end_to_end_rows(e2e, floor, plan));
        }
        if let Some(fill) = &self.fill {
            rows.push(ingest_row(
                "ingest, 64 connections, filling the log",
                fill,
                None,
            ));
        }
        if let Some(catch_up) = &self.catch_up {
            rows.push(catch_up_row(catch_up));
        }
        if let Some(snapshot) = &self.snapshot {
            rows.extend(snapshot_rows(snapshot));
        }
        if let Some(fan_out) = &self.fan_out {
            rows.extend(fan_out_rows(fan_out, self.burst.as_ref()));
        }
        rows.extend(self.memory_rows());
        rows.push(self.stored_row());
        rows
    }

    fn memory_rows(&self) -> Vec<String> {
        let mut rows = vec![row(
            "RSS idle",
            &mib(self.idle.rss_kib),
            &format!("< {}", mib(TARGET_IDLE_KIB)),
            Some(self.idle.rss_kib < TARGET_IDLE_KIB),
        )];
        let peaks = [
            ("ingest, 1 connection", self.single.map(|i| i.peak)),
            ("ingest, 64 connections", self.burst.map(|i| i.peak)),
            (
                "ingest, 64 connections, 1 stalled subscriber",
                self.slow_consumer.map(|s| s.stalled.peak),
            ),
            ("end-to-end", self.end_to_end.map(|e| e.peak)),
            ("filling the log", self.fill.map(|i| i.peak)),
            ("catch-up", self.catch_up.map(|c| c.peak)),
            ("fan-out, 100 subscribers", self.fan_out.map(|f| f.peak)),
        ];
        rows.extend(peaks.into_iter().filter_map(|(what, memory)| {
            let memory = memory?;
            Some(row(
                &format!("RSS peak: {what}"),
                &mib(memory.peak_kib),
                &format!("< {}", mib(TARGET_PEAK_KIB)),
                Some(memory.peak_kib < TARGET_PEAK_KIB),
            ))
        }));
        rows
    }

    /// Webhooks acknowledged as newly stored by the first bridge, in all runs (the snapshot run
    /// has a bridge of its own).
    fn stored(&self) -> usize {
        [self.single, self.burst, self.fill]
            .into_iter()
            .flatten()
            .map(|i| i.stored)
            .chain(
                self.slow_consumer
                    .into_iter()
                    .flat_map(|s| [s.before.stored, s.stalled.stored, s.after.stored]),
            )
            .chain(self.fan_out.map(|f| f.ingest.stored))
            .chain(self.end_to_end.map(|e| e.stored))
            .sum()
    }

    fn stored_row(&self) -> String {
        let stored = self.stored();
        row(
            "acknowledged webhooks vs. log head",
            &format!(
                "{} acknowledged, head {}",
                count(stored as f64),
                count(self.head as f64)
            ),
            "equal (each stored once)",
            Some(stored as u64 == self.head),
        )
    }
}

fn floor_row(what: &str, floor: &Floor) -> String {
    row(
        what,
        &format!(
            "{}/s, p50 {}, p99 {}",
            count(floor.per_sec),
            ms(floor.latency.p50),
            ms(floor.latency.p99)
        ),
        "(durability floor)",
        None,
    )
}

fn burst_row(burst: &Ingest) -> String {
    let met = burst.per_sec >= TARGET_INGEST_PER_SEC && burst.latency.p99 < TARGET_INGEST_P99;
    let target = format!(
        "≥ {}/s, p99 < {}",
        count(TARGET_INGEST_PER_SEC),
        ms(TARGET_INGEST_P99)
    );
    ingest_row("ingest, 64 connections", burst, Some((&target, met)))
}

fn dedup_row(dedup: &Dedup) -> String {
    let head = if dedup.head_moved {
        "head moved"
    } else {
        "head unchanged"
    };
    row(
        "redelivered svix-ids",
        &format!(
            "{}/{} answered duplicate, {head}",
            count(dedup.duplicates as f64),
            count(dedup.sent as f64)
        ),
        "all, stored once",
        Some(dedup.duplicates == dedup.sent && !dedup.head_moved),
    )
}

/// The two bursts without subscribers, the one with a stalled subscriber (judged against the
/// slower of the two: "not slowed by more than the run-to-run noise"), and the stalled
/// subscriber's catch-up.
fn slow_consumer_rows(slow: &SlowConsumer) -> [String; 3] {
    let (before, after) = (slow.before.per_sec, slow.after.per_sec);
    let mean = (before + after) / 2.0;
    let noise = (before - after).abs() / mean.max(f64::MIN_POSITIVE);
    let slowdown = 1.0 - slow.stalled.per_sec / mean.max(f64::MIN_POSITIVE);
    let expected = slow.stalled.stored;
    [
        row(
            "slow consumer: ingest, 64 connections, no subscriber, before / after",
            &format!(
                "{}/s / {}/s (run-to-run noise {:.0}%)",
                count(before),
                count(after),
                noise * 100.0
            ),
            "",
            None,
        ),
        ingest_row(
            "slow consumer: ingest, 64 connections, 1 subscriber reading nothing",
            &slow.stalled,
            Some((
                &format!(
                    "≥ the slower run without (slowdown {:.0}% vs. their mean)",
                    slowdown * 100.0
                ),
                slow.stalled.per_sec >= before.min(after),
            )),
        ),
        row(
            "slow consumer: then the stalled subscriber reads",
            &format!(
                "{}/{} events, {} out of order, in {:.2} s",
                count(slow.received.events as f64),
                count(expected as f64),
                count(slow.received.gaps as f64),
                slow.drained.as_secs_f64()
            ),
            "all, in order",
            Some(slow.received.events == expected && slow.received.gaps == 0),
        ),
    ]
}

fn end_to_end_rows(e2e: &EndToEnd, floor: &Floor, plan: Plan) -> [String; 2] {
    let bound = floor.latency.p99 * 2 + Duration::from_millis(1);
    let label = format!("at {}/s", count(f64::from(plan.e2e_rate)));
    let failed = if e2e.failed > 0 {
        format!(", {} failed", e2e.failed)
    } else {
        String::new()
    };
    [
        row(
            &format!("webhook sent → 2xx, {label}"),
            &format!(
                "p50 {}, p99 {} ({}/s achieved{failed})",
                ms(e2e.ack.p50),
                ms(e2e.ack.p99),
                count(e2e.per_sec)
            ),
            "",
            None,
        ),
        row(
            &format!("webhook sent → received by a subscriber, {label}"),
            &format!(
                "p50 {}, p99 {}",
                ms(e2e.delivered.p50),
                ms(e2e.delivered.p99)
            ),
            &format!("p99 < 2 × fsync p99 + 1 ms = {}", ms(bound)),
            Some(e2e.delivered.p99 < bound),
        ),
    ]
}

fn catch_up_row(catch_up: &CatchUp) -> String {
    row(
        &format!(
            "catch-up: {} stored events to 1 subscriber",
            count(catch_up.events as f64)
        ),
        &format!(
            "{}/s (bridge CPU {:.2} cores)",
            count(catch_up.per_sec),
            catch_up.cores
        ),
        &format!("≥ {}/s", count(TARGET_CATCH_UP_PER_SEC)),
        Some(catch_up.per_sec >= TARGET_CATCH_UP_PER_SEC),
    )
}

/// The run that filled the second bridge's log, if any, and the snapshot.
fn snapshot_rows(snapshot: &Snapshot) -> Vec<String> {
    let mut rows = Vec::with_capacity(2);
    if let Some(fill) = &snapshot.fill {
        rows.push(ingest_row(
            "snapshot: ingest, 64 connections, filling a second bridge's log",
            fill,
            None,
        ));
    }
    let complete =
        snapshot.received == snapshot.expected && snapshot.reported == snapshot.received as u64;
    let met = complete
        && snapshot.per_sec >= TARGET_SNAPSHOT_PER_SEC
        && snapshot.peak.peak_kib < TARGET_PEAK_KIB;
    rows.push(row(
        &format!(
            "snapshot: {} objects to 1 subscriber",
            count(snapshot.expected as f64)
        ),
        &format!(
            "{} objects/s, RSS peak {} ({} received, {} by `snapshot_end`; bridge CPU {:.2} cores)",
            count(snapshot.per_sec),
            mib(snapshot.peak.peak_kib),
            count(snapshot.received as f64),
            count(snapshot.reported as f64),
            snapshot.cores
        ),
        &format!(
            "≥ {} objects/s, RSS < {}, every object",
            count(TARGET_SNAPSHOT_PER_SEC),
            mib(TARGET_PEAK_KIB)
        ),
        Some(met),
    ));
    rows
}

fn fan_out_rows(fan_out: &FanOut, burst: Option<&Ingest>) -> Vec<String> {
    let subscribers = fan_out.subscribers;
    let mut rows = Vec::with_capacity(3);
    let target = burst.map(|burst| {
        let cost = 1.0 - fan_out.ingest.per_sec / burst.per_sec.max(f64::MIN_POSITIVE);
        rows.push(row(
            "fan-out: ingest, 64 connections, 0 subscribers",
            &format!("{}/s (the 64-connection run)", count(burst.per_sec)),
            "",
            None,
        ));
        let target = format!(
            "cost < {:.0}% (measured {:.0}%)",
            TARGET_FAN_OUT_COST * 100.0,
            cost * 100.0
        );
        (target, cost < TARGET_FAN_OUT_COST)
    });
    rows.push(ingest_row(
        &format!("fan-out: ingest, 64 connections, {subscribers} live subscribers"),
        &fan_out.ingest,
        target.as_ref().map(|(t, met)| (t.as_str(), *met)),
    ));
    rows.push(row(
        &format!("fan-out: deliveries to {subscribers} subscribers"),
        &format!(
            "{} events in {:.1} s: {}/s",
            count(fan_out.delivered as f64),
            fan_out.drained.as_secs_f64(),
            count(rate(fan_out.delivered, fan_out.drained))
        ),
        "",
        None,
    ));
    rows
}

/// A table row for an ingest run.
fn ingest_row(what: &str, ingest: &Ingest, target: Option<(&str, bool)>) -> String {
    let failed = if ingest.failed > 0 {
        format!(", {} not stored", ingest.failed)
    } else {
        String::new()
    };
    let result = format!(
        "{}/s, p50 {}, p99 {} ({} webhooks{failed}; bridge CPU {:.2} cores, {} µs/webhook)",
        count(ingest.per_sec),
        ms(ingest.latency.p50),
        ms(ingest.latency.p99),
        count(ingest.stored as f64),
        ingest.cores,
        ingest.cpu_per_webhook.as_micros()
    );
    match target {
        Some((target, met)) => row(what, &result, target, Some(met)),
        None => row(what, &result, "", None),
    }
}

fn row(what: &str, result: &str, target: &str, met: Option<bool>) -> String {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "",
    };
    format!("| {what} | {result} | {target} | {verdict} |")
}

/// Milliseconds with two decimals.
fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// KiB as MiB with one decimal.
fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A count or rate, rounded, with thousands separators.
fn count(value: f64) -> String {
    // Rates and counts here are far below 2^53, so the conversion is exact enough.
    let digits = (value.max(0.0).round() as u64).to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Today's date (UTC), from `date`.
fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map_or_else(|| "(date unknown)".to_owned(), |d| d.trim().to_owned())
}

/// CPU model, CPU count and kernel.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    // Not `available_parallelism`: this process is pinned to one CPU by now.
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cpus} CPUs, Linux {}", kernel.trim())
}
