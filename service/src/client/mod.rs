//! The operator's command line (`federation projects`, `spokes`,
//! `maintenance`, `watch`, `status`): a client of the REST API only, like
//! kubectl. It reads no settings file and touches no database: whatever it
//! shows, `curl` against the same server would show.
//!
//! `api` sends the requests (API key, problem documents, `Link` pages),
//! `render` prints (table, JSON, YAML), one module per command group, and
//! one error type, [`ClientError`], which decides the exit status.

mod api;
mod error;
mod key;
mod projects;
mod render;
mod routing;
mod spokes;
mod status;
mod watch;

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

pub use api::Api;
pub use error::{ClientError, Exit};
pub use key::ApiKey;
pub use routing::RoutingCommand;

/// The service the CLI talks to when neither `--server` nor `FEDERATION_URL`
/// says otherwise (the quickstart's).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8001";

/// Options of every client command; they may come before or after the
/// command (`federation -o json projects list`, `federation projects list -o json`).
#[derive(Debug, Clone, Args)]
pub struct ClientOptions {
    /// The service's base URL.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "FEDERATION_URL",
        default_value = DEFAULT_SERVER,
        help_heading = "Client options (projects, spokes, maintenance, watch, status)"
    )]
    pub server: String,
    /// API key sent as X-API-Key. Prefer the environment variable (a
    /// command line is visible to other users). Without either, the
    /// quickstart's .quickstart/keys.env (in this directory or a parent) is
    /// used for a server on this machine.
    #[arg(
        long,
        global = true,
        value_name = "KEY",
        env = "FEDERATION_API_KEY",
        hide_env_values = true,
        help_heading = "Client options (projects, spokes, maintenance, watch, status)"
    )]
    pub api_key: Option<ApiKey>,
    /// Output format: a table for people, or the server's JSON (or YAML)
    /// for scripts.
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        default_value_t = Format::Table,
        help_heading = "Client options (projects, spokes, maintenance, watch, status)"
    )]
    pub output: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// A client command, as parsed.
#[derive(Debug)]
pub enum ClientCommand {
    Projects(ProjectsCommand),
    Spokes(SpokesCommand),
    Maintenance(MaintenanceCommand),
    Watch(WatchArgs),
    Status,
    Routing(RoutingCommand),
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// List hubs (every page), ordered by slug.
    List(ProjectListArgs),
    /// Show one hub.
    Get {
        /// The project's slug.
        slug: String,
    },
    /// Delete a hub from the catalog (admin key).
    Delete {
        /// The project's slug.
        slug: String,
    },
    /// A hub's status changes, newest first (one page).
    History(HistoryArgs),
}

#[derive(Debug, Args)]
pub struct ProjectListArgs {
    /// Only hubs in this status (online, degraded, offline).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only hubs carrying this tag; repeat for hubs carrying every one.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The project's slug.
    pub slug: String,
    /// Entries to show, 1 to 1000 (the server's default: 100).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Only entries older than this id (a previous page's `next_before`).
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum SpokesCommand {
    /// List spokes, by instance code.
    List {
        /// Only spokes in this status (pending, approved, suspended, revoked).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
    },
    /// Show one spoke: its instance code (the live spoke of that code) or id.
    Get {
        /// Instance code (FRA) or spoke id (spoke-fra-ee18ad42).
        spoke: String,
    },
    /// pending → approved (admin key).
    Approve(TransitionArgs),
    /// approved → suspended (admin key).
    Suspend(TransitionArgs),
    /// suspended → approved (admin key).
    Reinstate(TransitionArgs),
    /// any live status → revoked, for good (admin key).
    Revoke(TransitionArgs),
    /// Every state change of a spoke, oldest first.
    History {
        /// Instance code (FRA) or spoke id (spoke-fra-ee18ad42).
        spoke: String,
    },
    /// The onboarding's record: every change of the spoke's conditions,
    /// oldest first (steps taken, failed, undone).
    Steps {
        /// Instance code (FRA) or spoke id (spoke-fra-ee18ad42).
        spoke: String,
    },
    /// Run the sync now for an approved spoke whose onboarding failed, and
    /// show where it stands (admin key).
    Retry {
        /// Instance code (FRA) or spoke id (spoke-fra-ee18ad42).
        spoke: String,
    },
    /// Approve the spoke's pending revision (update in place): it rolls
    /// out once its new IdP answers (admin key).
    ApproveRevision(TransitionArgs),
    /// Reject the spoke's pending revision (admin key).
    RejectRevision(TransitionArgs),
}

#[derive(Debug, Args)]
pub struct TransitionArgs {
    /// Instance code (FRA: the live spoke of that code) or spoke id.
    pub spoke: String,
    /// Why; recorded in the spoke's history, the event and the audit log.
    #[arg(long)]
    pub reason: String,
    /// Who decided, recorded as the actor (else the key's fingerprint is).
    #[arg(long)]
    pub operator: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceCommand {
    /// Start (or replace) a hub's maintenance window: the sweeper leaves it
    /// alone until the window ends (admin key, or the hub's own token).
    Start(MaintenanceStartArgs),
    /// End a hub's maintenance window now (nothing to do when there is none).
    Stop {
        /// The project's slug.
        slug: String,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("window").required(true).args(["duration", "until"])))]
pub struct MaintenanceStartArgs {
    /// The project's slug.
    pub slug: String,
    /// How long, from now: 2h, 90m, 1d (at most 30 days).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// When it ends, RFC 3339 (2026-12-01T02:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Why the hub is down.
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Start right after this event id instead of from now.
    #[arg(long, value_name = "EVENT_ID")]
    pub after: Option<String>,
}

/// Runs a client command; its exit status (see [`Exit`]).
pub async fn run(options: ClientOptions, command: ClientCommand) -> ExitCode {
    match execute(options, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            // `federation projects list | head`: the reader had enough.
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}", e.report());
            ExitCode::from(e.exit() as u8)
        }
    }
}

async fn execute(options: ClientOptions, command: ClientCommand) -> Result<(), ClientError> {
    let api = Api::new(&options.server, options.api_key)?;
    let out = options.output;
    match command {
        ClientCommand::Projects(cmd) => projects::run(&api, out, cmd).await,
        ClientCommand::Maintenance(cmd) => projects::maintenance(&api, out, cmd).await,
        ClientCommand::Spokes(cmd) => spokes::run(&api, out, cmd).await,
        ClientCommand::Watch(args) => watch::run(&api, out, args).await,
        ClientCommand::Status => status::run(&api, out).await,
        ClientCommand::Routing(cmd) => routing::run(&api, out, cmd).await,
    }
}
