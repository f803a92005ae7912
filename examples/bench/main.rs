//! Benchmark of a release `clerk-bridge`: ingest throughput and latency, end-to-end latency,
//! catch-up, snapshot, fan-out and memory, against the project's targets, with the disk's bare
//! fsync rate and a do-nothing receiver on the same HTTP stack and CPU (the ceiling, [`ceiling`])
//! for reference: every speed target is a ratio between figures of the same run. It starts the
//! bridge as a separate process on loopback (pinned to one CPU with `taskset` when there are two,
//! the load generator on the other), drives it with signed `user.created` webhooks of about 3 KB
//! (distinct `svix-id`s and user ids), and prints a table.
//!
//! ```text
//! cargo run --release --example bench             # full run, about four minutes
//! cargo run --release --example bench -- --quick  # smoke run, about 15 seconds
//! ```
//! The benchmark builds `target/release/clerk-bridge` itself. Options: `--data-dir DIR` (parent of
//! the bridge's temporary data directory; default `target/release/bench-data`: put it on the disk
//! you care about, not on tmpfs), `--no-pin`, `--only SCENARIO` (`ingest`, `slow-consumer`,
//! `end-to-end`, `catch-up`, `snapshot`, `fan-out`, `jetstream`: one scenario, e.g. to profile the bridge with
//! `perf record -p PID`).

mod bridge;
mod ceiling;
mod costs;
mod fsync;
mod jetstream;
mod load;
// The integration tests' nats-server harness (pinned binary, single server and local cluster).
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/it/nats.rs"]
mod nats;
mod phases;
mod report;
mod stats;
mod subscribe;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;

/// jemalloc, as the bridge uses, so the ceiling receiver (this binary in its hidden mode) runs on
/// the same allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Benchmark a release clerk-bridge against its performance targets")]
struct Args {
    /// A short smoke run instead of the full benchmark.
    #[arg(long)]
    quick: bool,
    /// Do not pin the bridge and the load generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Where to create the bridge's temporary data directory (default: target/release/bench-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run only this scenario (e.g. to profile it).
    #[arg(long, value_enum)]
    only: Option<Scenario>,
}

/// The scenarios of a run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// Ingest at 1 and 64 connections, and the deduplication check.
    Ingest,
    /// Ingest at 64 connections while one subscriber reads nothing, between two runs without.
    SlowConsumer,
    /// Steady rate, sent → 2xx and sent → delivered.
    EndToEnd,
    /// One subscriber replays the stored events (the log is filled first if needed).
    CatchUp,
    /// One subscriber reads a snapshot of the state of a second bridge, filled with distinct
    /// objects first.
    Snapshot,
    /// Ingest at 64 connections without subscribers, then with 10 and 100 live ones.
    FanOut,
    /// Ingest at 64 connections on the JetStream store: one nats-server (R1), then three (R3).
    Jetstream,
}

/// Why the benchmark could not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// Something around the measurement failed (build, process, protocol).
    #[error("{0}")]
    Setup(String),
    /// A socket, a child process or a `/proc` file failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Signing a webhook failed.
    #[error("signing: {0}")]
    Sign(#[from] svix::webhooks::WebhookError),
    /// Connecting to the gRPC port failed.
    #[error("gRPC connection: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The bridge answered a gRPC call with an error.
    #[error("gRPC: {0}")]
    Status(#[from] tonic::Status),
}

/// How much work each phase does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Duration of the bare fsync loop.
    pub(crate) fsync: Duration,
    /// Duration of the single-connection ingest run.
    pub(crate) single: Duration,
    /// Webhooks of each 64-connection ingest run (without subscribers, with a stalled one, with
    /// 100 live ones).
    pub(crate) burst: usize,
    /// Live subscribers of the two fan-out runs (the cost target applies to the first).
    pub(crate) subscribers: [usize; 2],
    /// Shortest time each ceiling run lasts (its requests are sent again until then).
    pub(crate) ceiling: Duration,
    /// Webhooks of the end-to-end run, sent at [`Plan::e2e_rate`].
    pub(crate) e2e: usize,
    /// Send rate of the end-to-end run, per second.
    pub(crate) e2e_rate: u32,
    /// Stored events replayed by the catch-up run.
    pub(crate) catch_up: usize,
    /// Objects in the state the snapshot run reads.
    pub(crate) snapshot: usize,
}

impl Plan {
    /// The full benchmark: a few minutes.
    const FULL: Plan = Plan {
        fsync: Duration::from_secs(2),
        single: Duration::from_secs(3),
        burst: 50_000,
        subscribers: [10, 100],
        ceiling: Duration::from_secs(3),
        e2e: 10_000,
        e2e_rate: 1_000,
        catch_up: 200_000,
        snapshot: 100_000,
    };
    /// The smoke run (`--quick`, about 15 seconds): a check that the benchmark works, not a
    /// measurement.
    const QUICK: Plan = Plan {
        fsync: Duration::from_millis(500),
        single: Duration::from_secs(1),
        burst: 5_000,
        subscribers: [10, 100],
        ceiling: Duration::from_millis(500),
        e2e: 2_000,
        e2e_rate: 1_000,
        catch_up: 20_000,
        snapshot: 10_000,
    };
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(ceiling::RECEIVER_FLAG) {
        return ceiling::run_receiver();
    }
    let args = Args::parse();
    if cfg!(debug_assertions) {
        eprintln!("bench: run it with --release (cargo run --release --example bench)");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the bridge, pins the CPUs, and runs every phase on a single-threaded runtime.
fn run(args: &Args) -> Result<(), BenchError> {
    let bin = bridge::build_release()?;
    let cpus = if args.no_pin { None } else { pin_cpus() };
    let data_parent = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => bin.with_file_name("bench-data"),
    };
    let plan = if args.quick { Plan::QUICK } else { Plan::FULL };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        tokio::select! {
            report = phases::run(&bin, &data_parent, cpus, plan, args.only) => report,
            // Returning drops the bridge process handle, which kills the bridge.
            _ = tokio::signal::ctrl_c() => Err(BenchError::Setup("interrupted".into())),
        }
    })?;
    report.print(plan);
    Ok(())
}

/// Pins this process to the first allowed CPU and returns (generator CPU, bridge CPU), when there
/// are two CPUs and `taskset` works.
fn pin_cpus() -> Option<(usize, usize)> {
    let cpus = bridge::allowed_cpus();
    let (&generator, &bridge) = (cpus.first()?, cpus.get(1)?);
    if !bridge::pin_self(generator) {
        eprintln!("bench: taskset is not available; running unpinned");
        return None;
    }
    Some((generator, bridge))
}
