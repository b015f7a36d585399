//! `hub-agent`: the sidecar that publishes a hub's presence heartbeats.

mod agent;
mod config;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Publishes this hub's presence heartbeat to NATS on hub.presence.<slug>.
///
/// Every interval (default 30 s, with jitter) it publishes a heartbeat with
/// its agent id, an increasing sequence number, its interval and version;
/// `degraded` when the optional local health probe fails. At start it can
/// register (or update) its project in the catalog with an agent API key,
/// retrying until the catalog answers. On SIGTERM or SIGINT it publishes an
/// `offline` heartbeat, flushes, and exits 0 within 2 s.
///
/// Enrollment: given a join token (HUB_AGENT__JOIN_TOKEN or --join-token,
/// or a file holding one, HUB_AGENT__JOIN_TOKEN_FILE) and no hub token in its state directory (state_dir, default
/// /var/lib/hub-agent), it exchanges the join token once at catalog.url for
/// its hub token and NATS credentials, keeps them there (0600), uses them
/// from then on and refreshes them before they expire.
///
/// Settings: defaults, then the YAML file (--config, default
/// config/hub-agent.yaml if present), then the original hub's variables
/// NATS_URL, FEDERATION_URL, FEDERATION_API_KEY, LOG_LEVEL, then
/// HUB_AGENT__KEY / HUB_AGENT__SECTION__KEY (e.g. HUB_AGENT__SLUG=alpha,
/// HUB_AGENT__NATS__URL=nats://nats:4222).
///
/// Exit status: 0 clean stop, 1 runtime failure, 2 invalid configuration.
#[derive(Debug, Parser)]
#[command(name = "hub-agent", version)]
struct Cli {
    /// Settings file (YAML).
    #[arg(long, short, value_name = "PATH", env = "HUB_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the settings, print a summary and exit.
    #[arg(long)]
    check_config: bool,
    /// A single-use join token to enroll with (prefer HUB_AGENT__JOIN_TOKEN:
    /// command lines are visible to other users). Ignored when the state
    /// directory already holds a hub token.
    #[arg(long, value_name = "TOKEN")]
    join_token: Option<String>,
}

/// How the agent will authenticate, without any secret.
fn identity_summary(settings: &config::AgentSettings) -> String {
    let dir = settings.hub.state_dir.display();
    if settings.hub.state_dir.join(state::TOKEN).is_file() {
        format!("hub token in {dir}")
    } else if settings.hub.join_token.is_some() {
        format!("enroll with the join token, keep the credential in {dir}")
    } else if let Some(file) = &settings.hub.join_token_file {
        format!(
            "enroll with the join token in {}, keep the credential in {dir}",
            file.display()
        )
    } else if settings.catalog.api_key.is_some() {
        "shared agent key".to_owned()
    } else {
        "none".to_owned()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = config::sources(cli.config.as_deref());
    let loaded = match cli.join_token {
        Some(token) => config::AgentSettings::load_with_join_token(&sources, token),
        None => config::AgentSettings::load(&sources),
    };
    let settings = match loaded {
        Ok(s) => s,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!(
            "configuration OK\n  slug:     {}\n  subject:  {}\n  nats:     {}\n  interval: {:?} ± {}%\n  catalog:  {}\n  identity: {}",
            settings.hub.slug,
            protocol::subjects::heartbeat_subject(&settings.hub.slug),
            settings.nats.display_url(),
            settings.hub.interval,
            (settings.hub.jitter * 100.0).round(),
            settings.catalog.url.as_deref().unwrap_or("no registration"),
            identity_summary(&settings),
        );
        return ExitCode::SUCCESS;
    }
    common::telemetry::init(&settings.log, std::io::stderr);
    // One thread is plenty for one heartbeat every few seconds.
    common::runtime::run(tokio::runtime::Builder::new_current_thread(), async {
        let shutdown = CancellationToken::new();
        tokio::spawn(common::signal::cancel_on_signal(shutdown.clone()));
        match agent::run(settings, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "fatal");
                ExitCode::FAILURE
            }
        }
    })
}
