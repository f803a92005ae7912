//! The `clerk-bridge` binary: parses config, binds the listeners, runs the library.

use std::process::ExitCode;

use clap::Parser;
use clerk_bridge::{
    Config, Listeners, RunError,
    config::{Cli, Command, EXIT_BAD_CONFIG},
    log::OpenError,
    run, shutdown, telemetry,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    let Command::Serve(args) = cli.command;
    let config = match Config::try_from_args(&args) {
        Ok(config) => config,
        Err(e) => return usage_error(&e.to_string()),
    };
    telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return failure(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(serve(config))
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
    tracing::info!(http = %config.http_addr, grpc = %config.grpc_addr, "Listening");
    let token = CancellationToken::new();
    if let Err(e) = shutdown::cancel_on_signal(token.clone()) {
        return failure(&format!("cannot install signal handlers: {e}"));
    }
    match run(config, Listeners { http, grpc }, token).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::OpenLog(e @ (OpenError::DataDir { .. } | OpenError::Locked(_)))) => {
            usage_error(&format!("invalid --data-dir: {e}"))
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
