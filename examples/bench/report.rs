//! The figures of a run and the table they are printed as (Markdown, so it can be pasted into the
//! README), each beside its target.

use std::time::Duration;

use crate::{
    Plan, bridge::Memory, costs::Costs, fsync::Floor, stats::Summary, subscribe::Received,
};

/// Durable ingest at 64 connections must reach this share of the ceiling's requests per second
/// (the do-nothing receiver on the same CPU, stack and load, measured in the same run)...
const TARGET_INGEST_SHARE_OF_CEILING: f64 = 0.50;
/// ... with a p99 latency under this multiple of the mean a closed loop implies (connections /
/// rate, by Little's law): a bound on the tail that scales with the host's speed.
const TARGET_INGEST_P99_OVER_MEAN: f64 = 4.0;
/// Ingest over one connection must reach this share of the serial bound: one request to the
/// ceiling, then one bare fsync, one after the other (nothing can overlap with one webhook in
/// flight).
const TARGET_SINGLE_SHARE_OF_SERIAL: f64 = 0.50;
/// Catch-up must replay at least this multiple of the 64-connection ingest rate of the same run
/// (the ratio of the former absolute targets, 150,000/s and 20,000/s), so a subscriber that fell
/// behind catches up while ingest goes on.
const TARGET_CATCH_UP_OVER_INGEST: f64 = 7.5;
/// A snapshot must send at least this multiple of the 64-connection ingest rate of the same run,
/// in objects per second (the former 50,000/s over 20,000/s), and keep the peak RSS under
/// [`TARGET_PEAK_KIB`].
const TARGET_SNAPSHOT_OVER_INGEST: f64 = 2.5;
/// The first fan-out run (10 live subscribers) may cost at most this share of the ingest rate of
/// the 0-subscriber burst just before it.
const TARGET_FAN_OUT_COST: f64 = 0.20;
/// Memory budgets do not depend on the host's speed, so they stay absolute.
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

/// The do-nothing receiver's runs, with the ingest runs' requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ceilings {
    /// Over one connection.
    pub(crate) single: Ingest,
    /// Over 64 connections.
    pub(crate) burst: Ingest,
}

/// The fan-out scenario: a burst without subscribers, then the runs with live ones.
#[derive(Debug, Clone)]
pub(crate) struct FanOuts {
    /// The burst just before, without subscribers: what the runs' cost is measured against.
    pub(crate) baseline: Ingest,
    /// One run per subscriber count, fewest first.
    pub(crate) runs: Vec<FanOut>,
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
    /// Events received out of order or after a gap, all subscribers together.
    pub(crate) gaps: usize,
    /// How far the subscribers fell behind.
    pub(crate) lag: Lag,
    /// The bridge's memory after the subscribers finished (peak since the run began).
    pub(crate) peak: Memory,
}

/// Subscriber lag in a fan-out run: the acknowledged head minus a subscriber's last sequence,
/// sampled for every subscriber every few milliseconds during the burst.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lag {
    /// Largest sample, in events.
    pub(crate) max: u64,
    /// 99th percentile of the samples, in events.
    pub(crate) p99: u64,
    /// From the burst's last answer until every subscriber had the last event.
    pub(crate) after_burst: Duration,
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
    /// The do-nothing receiver, on the bridge's CPU, before the bridge starts.
    pub(crate) ceiling: Ceilings,
    /// The bridge's own work per webhook, stage by stage, measured in-process.
    pub(crate) costs: Option<Costs>,
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
    /// Ingest over 64 connections without and with live subscribers.
    pub(crate) fan_out: Option<FanOuts>,
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
    /// Ingest on the JetStream store (R1, R3), each with a bridge of its own.
    pub(crate) jetstream: Option<crate::jetstream::JetStreamRuns>,
}

// === impl Report ===

impl Report {
    /// A report with the figures taken before any load.
    pub(crate) fn new(
        cpus: Option<(usize, usize)>,
        body_bytes: usize,
        floor: Floor,
        ceiling: Ceilings,
    ) -> Self {
        Report {
            cpus,
            body_bytes,
            floor,
            ceiling,
            costs: None,
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
            jetstream: None,
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
        let ceiling = &self.ceiling;
        let mut rows = vec![
            floor_row(
                "bare fsync (4 KiB write + fsync), same data dir",
                &self.floor,
            ),
            ingest_row(
                "ceiling: do-nothing hyper receiver on the same CPU, 1 connection",
                &ceiling.single,
                None,
            ),
            ingest_row(
                "ceiling: do-nothing hyper receiver on the same CPU, 64 connections",
                &ceiling.burst,
                None,
            ),
        ];
        if let (Some(single), Some(burst), Some(dedup)) = (&self.single, &self.burst, &self.dedup) {
            rows.push(single_row(single, &ceiling.single, &self.floor));
            rows.push(burst_row(burst, &ceiling.burst));
            rows.extend(self.costs.map(|costs| costs_row(costs, burst)));
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
            rows.extend(end_to_end_rows(e2e, floor, self.single.as_ref(), plan));
        }
        if let Some(fill) = &self.fill {
            rows.push(ingest_row(
                "ingest, 64 connections, filling the log",
                fill,
                None,
            ));
        }
        if let Some(catch_up) = &self.catch_up {
            let ingest = self.burst.as_ref().or(self.fill.as_ref());
            rows.push(catch_up_row(catch_up, ingest));
        }
        if let Some(snapshot) = &self.snapshot {
            let ingest = self.burst.as_ref().or(snapshot.fill.as_ref());
            rows.extend(snapshot_rows(snapshot, ingest));
        }
        if let Some(fan_out) = &self.fan_out {
            rows.extend(fan_out_rows(fan_out));
        }
        if let Some(runs) = &self.jetstream {
            rows.extend(jetstream_rows(runs, self.burst.as_ref()));
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
        ];
        let fan_outs = self.fan_out.iter().flat_map(|f| &f.runs).map(|run| {
            (
                format!("fan-out, {} subscribers", run.subscribers),
                Some(run.peak),
            )
        });
        let peaks = peaks
            .into_iter()
            .map(|(what, memory)| (what.to_owned(), memory))
            .chain(fan_outs);
        rows.extend(peaks.filter_map(|(what, memory)| {
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
            .chain(self.fan_out.iter().flat_map(|f| {
                std::iter::once(f.baseline.stored).chain(f.runs.iter().map(|r| r.ingest.stored))
            }))
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

/// Ingest over one connection against the serial bound: a request to the ceiling, then a bare
/// fsync (a durable receiver with one webhook in flight cannot overlap them).
fn single_row(single: &Ingest, ceiling: &Ingest, floor: &Floor) -> String {
    let per = |rate: f64| 1.0 / rate.max(f64::MIN_POSITIVE);
    let bound = 1.0 / (per(ceiling.per_sec) + per(floor.per_sec));
    let share = single.per_sec / bound;
    let target = format!(
        "≥ {:.0}% of 1 / (1/ceiling + 1/fsync) = {}/s (measured {:.0}%; {:.0}% of bare fsync, {:.0}% of the ceiling)",
        TARGET_SINGLE_SHARE_OF_SERIAL * 100.0,
        count(bound),
        share * 100.0,
        single.per_sec / floor.per_sec.max(f64::MIN_POSITIVE) * 100.0,
        single.per_sec / ceiling.per_sec.max(f64::MIN_POSITIVE) * 100.0,
    );
    let met = share >= TARGET_SINGLE_SHARE_OF_SERIAL;
    ingest_row("ingest, 1 connection", single, Some((&target, Some(met))))
}

/// Ingest over 64 connections as a share of the ceiling, and its tail against its mean.
fn burst_row(burst: &Ingest, ceiling: &Ingest) -> String {
    let share = burst.per_sec / ceiling.per_sec.max(f64::MIN_POSITIVE);
    let mean = 64.0 / burst.per_sec.max(f64::MIN_POSITIVE);
    let p99_bound = Duration::from_secs_f64(mean * TARGET_INGEST_P99_OVER_MEAN);
    let cpu_ratio =
        burst.cpu_per_webhook.as_secs_f64() / ceiling.cpu_per_webhook.as_secs_f64().max(1e-9);
    let met = share >= TARGET_INGEST_SHARE_OF_CEILING && burst.latency.p99 < p99_bound;
    let target = format!(
        "≥ {:.0}% of the ceiling (measured {:.1}%; {:.1}× its CPU per request), p99 < {:.0} × 64/rate = {}",
        TARGET_INGEST_SHARE_OF_CEILING * 100.0,
        share * 100.0,
        cpu_ratio,
        TARGET_INGEST_P99_OVER_MEAN,
        ms(p99_bound)
    );
    ingest_row("ingest, 64 connections", burst, Some((&target, Some(met))))
}

/// The stages of the bridge's own work, against its whole CPU per webhook in the burst.
fn costs_row(costs: Costs, burst: &Ingest) -> String {
    let whole = burst.cpu_per_webhook.as_secs_f64().max(1e-9);
    let share = |d: Duration| d.as_secs_f64() / whole * 100.0;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    row(
        "its own work per webhook, in-process (load generator's CPU)",
        &format!(
            "svix verify {:.1} µs ({:.0}%), decode {:.1} µs ({:.0}%), record encode {:.1} µs ({:.0}%); \
             together {:.1} µs of the {:.0} µs per webhook above; the rest is HTTP, storage and scheduling",
            us(costs.verify),
            share(costs.verify),
            us(costs.decode),
            share(costs.decode),
            us(costs.encode),
            share(costs.encode),
            us(costs.total()),
            whole * 1e6,
        ),
        "",
        None,
    )
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
                Some(slow.stalled.per_sec >= before.min(after)),
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

/// The paced run; delivery is judged against two fsyncs (a commit under way, then its own) and
/// twice the 1-connection round trip of this run (HTTP, verification, decode, and the gRPC leg),
/// when the ingest scenario ran.
fn end_to_end_rows(
    e2e: &EndToEnd,
    floor: &Floor,
    single: Option<&Ingest>,
    plan: Plan,
) -> [String; 2] {
    let bound = single.map(|single| floor.latency.p99 * 2 + single.latency.p99 * 2);
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
            &bound.map_or_else(
                || "(needs the ingest scenario)".to_owned(),
                |bound| {
                    format!(
                        "p99 < 2 × fsync p99 + 2 × 1-connection ingest p99 = {}",
                        ms(bound)
                    )
                },
            ),
            bound.map(|bound| e2e.delivered.p99 < bound),
        ),
    ]
}

/// Catch-up against the 64-connection ingest of the same run (none without one).
fn catch_up_row(catch_up: &CatchUp, ingest: Option<&Ingest>) -> String {
    let ratio = ingest.map(|i| catch_up.per_sec / i.per_sec.max(f64::MIN_POSITIVE));
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
        &ratio.map_or_else(
            || "(needs a 64-connection ingest run)".to_owned(),
            |ratio| {
                format!(
                    "≥ {TARGET_CATCH_UP_OVER_INGEST:.1} × ingest at 64 connections (measured {ratio:.1}×)"
                )
            },
        ),
        ratio.map(|ratio| ratio >= TARGET_CATCH_UP_OVER_INGEST),
    )
}

/// The run that filled the second bridge's log, if any, and the snapshot.
/// The snapshot against the 64-connection ingest of the same run (or of the fill of its bridge).
fn snapshot_rows(snapshot: &Snapshot, ingest: Option<&Ingest>) -> Vec<String> {
    let ratio = ingest.map(|i| snapshot.per_sec / i.per_sec.max(f64::MIN_POSITIVE));
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
        && ratio.is_none_or(|ratio| ratio >= TARGET_SNAPSHOT_OVER_INGEST)
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
            "≥ {TARGET_SNAPSHOT_OVER_INGEST:.1} × ingest at 64 connections (measured {}), RSS < {}, every object",
            ratio.map_or_else(|| "n/a".to_owned(), |ratio| format!("{ratio:.1}×")),
            mib(TARGET_PEAK_KIB)
        ),
        Some(met),
    ));
    rows
}

/// The 0-subscriber burst, then for each fan-out run its ingest (the first judged by its cost)
/// and its deliveries with the subscribers' lag.
fn fan_out_rows(fan_out: &FanOuts) -> Vec<String> {
    let baseline = &fan_out.baseline;
    let mut rows = vec![ingest_row(
        "fan-out: ingest, 64 connections, 0 subscribers (just before)",
        baseline,
        None,
    )];
    for (i, run) in fan_out.runs.iter().enumerate() {
        let subscribers = run.subscribers;
        let cost = 1.0 - run.ingest.per_sec / baseline.per_sec.max(f64::MIN_POSITIVE);
        let target = if i == 0 {
            let met = cost < TARGET_FAN_OUT_COST;
            (
                format!(
                    "cost < {:.0}% of the 0-subscriber rate (measured {:.0}%)",
                    TARGET_FAN_OUT_COST * 100.0,
                    cost * 100.0
                ),
                Some(met),
            )
        } else {
            (format!("(cost {:.0}%)", cost * 100.0), None)
        };
        rows.push(ingest_row(
            &format!("fan-out: ingest, 64 connections, {subscribers} live subscribers"),
            &run.ingest,
            Some((target.0.as_str(), target.1)),
        ));
        rows.push(deliveries_row(run));
    }
    rows
}

/// What the subscribers of a fan-out run received, and how far behind they fell.
fn deliveries_row(run: &FanOut) -> String {
    let expected = run.ingest.stored * run.subscribers;
    row(
        &format!(
            "fan-out: deliveries to {} subscribers; lag behind the acknowledged head",
            run.subscribers
        ),
        &format!(
            "{}/{} events, {} out of order; lag during the burst max {} events, p99 {}; \
             every subscriber had the last event {:.2} s after the burst",
            count(run.delivered as f64),
            count(expected as f64),
            count(run.gaps as f64),
            count(run.lag.max as f64),
            count(run.lag.p99 as f64),
            run.lag.after_burst.as_secs_f64()
        ),
        "all, in order",
        Some(run.delivered == expected && run.gaps == 0),
    )
}

/// A table row for an ingest run.
/// Each JetStream run: its rate, latency and CPU per webhook, the bridge's peak memory, its rate
/// as a share of the embedded log's 64-connection burst of the same run (no target: a comparison),
/// and how soon the shared state held the burst.
fn jetstream_rows(
    runs: &crate::jetstream::JetStreamRuns,
    embedded: Option<&Ingest>,
) -> Vec<String> {
    runs.iter()
        .map(|(what, ingest, state)| {
            let share = embedded.map_or_else(String::new, |embedded| {
                let share = ingest.per_sec / embedded.per_sec.max(f64::MIN_POSITIVE);
                format!("{:.0}% of the embedded log's rate; ", share * 100.0)
            });
            let caught_up = match state.after_burst {
                Some(after) => format!("{:.1} s after the burst", after.as_secs_f64()),
                None => "not within 120 s of the burst".to_owned(),
            };
            let note = format!(
                "{share}bridge RSS peak {}; state (snapshots) caught up {caught_up}, {}/s applied",
                mib(ingest.peak.peak_kib),
                count(state.per_sec)
            );
            ingest_row(
                &format!("ingest, 64 connections, {what}"),
                ingest,
                Some((&note, None)),
            )
        })
        .collect()
}

fn ingest_row(what: &str, ingest: &Ingest, target: Option<(&str, Option<bool>)>) -> String {
    let failed = if ingest.failed > 0 {
        format!(", {} not stored", ingest.failed)
    } else {
        String::new()
    };
    let result = format!(
        "{}/s, p50 {}, p99 {} ({} requests{failed}; server CPU {:.2} cores, {} µs each)",
        count(ingest.per_sec),
        ms(ingest.latency.p50),
        ms(ingest.latency.p99),
        count(ingest.stored as f64),
        ingest.cores,
        ingest.cpu_per_webhook.as_micros()
    );
    match target {
        Some((target, met)) => row(what, &result, target, met),
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
