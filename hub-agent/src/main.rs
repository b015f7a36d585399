//! `hub-agent`: the sidecar that publishes a hub's presence heartbeats.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Publishes this hub's presence heartbeat to NATS on hub.presence.<slug>.
#[derive(Debug, Parser)]
#[command(name = "hub-agent", version)]
struct Cli {
    /// Settings file (YAML).
    #[arg(long, short, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    tracing::info!(config = ?cli.config, subject = protocol::subjects::HEARTBEAT_WILDCARD, "hub-agent skeleton: publishing arrives with the heartbeat pipeline");
    ExitCode::SUCCESS
}
