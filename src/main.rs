//! The `clerk-bridge` binary: parses config, binds the listeners, runs the library.

use std::process::ExitCode;

use clap::Parser;
use clerk_bridge::{
    Config, Listeners, RunError,
    cli::{Cli, Command, UsageError},
    config::EXIT_BAD_CONFIG,
    fd_budget,
    log::OpenError,
    run, shutdown, telemetry,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// jemalloc instead of glibc's malloc: allocation was a sixth of the bridge's cycles per webhook.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(e.to_string().lines().next().unwrap_or("bad arguments")),
    };
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Consumers(args) => return run_client(clerk_bridge::cli::consumers::run(args)),
        Command::Trigger(args) => return run_client(clerk_bridge::cli::trigger::run(args)),
        Command::Tail(args) => return run_client(clerk_bridge::cli::tail::run(args)),
        Command::Snapshot(args) => return run_client(clerk_bridge::cli::snapshot::run(args)),
        Command::Backfill(args) => return run_client(clerk_bridge::cli::sync::backfill(args)),
        Command::Reconcile(args) => return run_client(clerk_bridge::cli::sync::reconcile(args)),
        Command::CopyToJetstream(args) => return run_client(clerk_bridge::cli::copy::run(args)),
    };
    let config = match args.to_config() {
        Ok(config) => config,
        Err(e) => return usage_error(&e.to_string()),
    };
    telemetry::init(args.log_format);
    // Before any socket is opened: the caps must fit the descriptors the process may open.
    fd_budget::raise_and_check(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return failure(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(serve(config))
}

/// Runs a one-shot client subcommand on a small runtime.
fn run_client(command: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<UsageError>() {
            Some(usage) => usage_error(&usage.0),
            None => failure(&client_error(&e)),
        },
    }
}

/// A gRPC status shows as its message; anything else as its chain.
fn client_error(e: &anyhow::Error) -> String {
    match e.downcast_ref::<tonic::Status>() {
        Some(status) => format!("{:?}: {}", status.code(), status.message()),
        None => format!("{e:#}"),
    }
}

async fn serve(config: Config) -> ExitCode {
    let http = match TcpListener::bind(config.http_addr).await {
        Ok(l) => l,
        Err(e) => {
            return usage_error(&format!(
                "cannot listen on --http-addr {}: {e}",
                config.http_addr
            ));
        }
    };
    let grpc = match TcpListener::bind(config.grpc_addr).await {
        Ok(l) => l,
        Err(e) => {
            return usage_error(&format!(
                "cannot listen on --grpc-addr {}: {e}",
                config.grpc_addr
            ));
        }
    };
    let metrics = match config.metrics_addr {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => return usage_error(&format!("cannot listen on --metrics-addr {addr}: {e}")),
        },
        None => None,
    };
    // The bound addresses (not the configured ones), so port 0 can be used and discovered.
    let http_addr = http
        .local_addr()
        .map_or_else(|_| config.http_addr.to_string(), |a| a.to_string());
    let grpc_addr = grpc
        .local_addr()
        .map_or_else(|_| config.grpc_addr.to_string(), |a| a.to_string());
    let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
    tracing::info!(
        http = %http_addr,
        grpc = %grpc_addr,
        metrics = metrics_addr.map(tracing::field::display),
        "Listening"
    );
    let token = CancellationToken::new();
    if let Err(e) = shutdown::cancel_on_signal(token.clone()) {
        return failure(&format!("cannot install signal handlers: {e}"));
    }
    match run(
        config,
        Listeners {
            http,
            grpc,
            metrics,
        },
        token,
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::OpenLog(e @ (OpenError::DataDir { .. } | OpenError::Locked(_)))) => {
            usage_error(&format!("invalid --data-dir: {e}"))
        }
        Err(e @ (RunError::File { .. } | RunError::Tls(_) | RunError::OpenJetStream(_))) => {
            usage_error(&e.to_string())
        }
        Err(e) => failure(&e.to_string()),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("clerk-bridge: {message}");
    ExitCode::from(EXIT_BAD_CONFIG as u8)
}

fn failure(message: &str) -> ExitCode {
    eprintln!("clerk-bridge: {message}");
    ExitCode::FAILURE
}
