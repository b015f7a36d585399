//! The `federation` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::app::Application;
use crate::catalog::ProjectSpec;
use crate::client::{self, ClientCommand, ClientOptions};
use crate::config::{self, Settings, Sources};
use crate::{store, telemetry};

/// Exit status for invalid configuration (same as a usage error).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "federation",
    version,
    about = "Federation control plane: project catalog, hub liveness and federation events",
    long_about = "Federation control plane: keeps the project catalog and hub liveness in \
PostgreSQL, ingests hub heartbeats from NATS, serves the API-key-protected REST catalog \
and Prometheus metrics.\n\n\
Settings come from built-in defaults, then the YAML file (--config), then environment \
variables FEDERATION__SECTION__KEY (e.g. FEDERATION__SERVER__PORT=8001). The original \
service's variables also work: DATABASE_URL, NATS_URL, FEDERATION_API_KEYS, \
HEARTBEAT_STALE_THRESHOLD_SECONDS, HEARTBEAT_STALE_CHECK_INTERVAL_SECONDS, \
FEDERATION_PORT, LOG_LEVEL.\n\n\
The client commands (projects, spokes, maintenance, watch, status) talk to a running \
service over its REST API only, at --server (FEDERATION_URL, default \
http://127.0.0.1:8001) with --api-key (FEDERATION_API_KEY; else the quickstart's \
.quickstart/keys.env for a server on this machine). See docs/cli.md.\n\n\
Exit status: 0 success, 1 runtime failure, 2 invalid configuration or usage (also a \
request the server found invalid: 400, 422), 3 authentication (401, 403), 4 not found \
(404), 5 conflict (409), 6 server error (5xx) or server unreachable."
)]
pub struct Cli {
    /// Settings file (YAML). Without it, config/federation.yaml is read if present.
    #[arg(
        long,
        short,
        global = true,
        value_name = "PATH",
        env = "FEDERATION_CONFIG"
    )]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub client: ClientOptions,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: HTTP API and metrics, migrations and seeding at start.
    ///
    /// Starts listening at once (/health answers, /ready says why it is not
    /// ready), then connects to PostgreSQL, retrying with backoff for up to
    /// database.startup_timeout, applies pending migrations and seeds the
    /// catalog from catalog.projects_file. SIGTERM or SIGINT drain in-flight
    /// requests and exit 0.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the settings and the projects file, print a summary, and exit.
    ///
    /// Lists every problem at once, each with its path and origin; exits 2
    /// if there is any. Connects to nothing.
    CheckConfig,
    /// Run the federation sync worker (without the HTTP API).
    ///
    /// Consumes federation events from JetStream and resyncs periodically:
    /// each run renders the tfvars file and reconciles Keycloak identity
    /// providers from the registry (see docs/sync.md). Several may run: one
    /// leads. With --once, runs one reconcile, prints what it did and exits
    /// (1 if a target failed).
    Sync(SyncArgs),
    /// Report drift between the registry, Keycloak, the tfvars file and hub
    /// liveness.
    ///
    /// Exit status 0 when clean, 1 when there is drift or a side could not
    /// be checked. --fix runs a reconcile first; --dry-run prints what a
    /// reconcile would do and changes nothing.
    Drift(DriftArgs),
    /// Make this control plane the NATS authority: create, once, an
    /// operator, a system account (SYS), the federation account
    /// (FEDERATION) with their signing keys, the service's credentials and
    /// DIR/nats-server.conf (operator mode).
    ///
    /// Idempotent: existing files are checked and kept, a second run
    /// changes nothing and says so. Seeds and creds files are 0600, the
    /// directories 0700. Needs no other setting. Then run
    /// `nats-server -c DIR/nats-server.conf` and set identity.dir to DIR
    /// (see docs/security.md).
    NatsInit(NatsInitArgs),
    /// Issue NATS credentials for one hub: may publish only
    /// hub.presence.<slug>, nothing else, and expire.
    ///
    /// Writes the .creds file to --out (0600) or prints it on standard
    /// output; what was issued (never the seed) goes to standard error.
    NatsCreds(NatsCredsArgs),
    /// Hubs in the catalog: list, get, delete, history (client).
    #[command(subcommand)]
    Projects(client::ProjectsCommand),
    /// Partner spokes: list, get, approve, suspend, reinstate, revoke,
    /// history, steps, retry, approve-revision, reject-revision (client). A spoke is named by its instance code (FRA: the
    /// live spoke of that code) or its id.
    #[command(subcommand)]
    Spokes(client::SpokesCommand),
    /// A hub's planned downtime: start, stop (client).
    #[command(subcommand)]
    Maintenance(client::MaintenanceCommand),
    /// Tenant routing: nodes, rules, tenants (list, set, delete) and
    /// resolve (client).
    #[command(subcommand)]
    Routing(client::RoutingCommand),
    /// Follow federation events as they happen, one line each (client).
    ///
    /// Reads GET /api/fed/watch (server-sent events) until interrupted; a
    /// stream that breaks is resumed after the last event seen. With -o
    /// json, each line is the CloudEvent's JSON.
    Watch(client::WatchArgs),
    /// The federation on one screen: hubs by status, maintenance, spokes
    /// awaiting approval, drift, circuit breakers, self-preservation
    /// (client).
    Status,
    /// Print a shell completion script.
    ///
    /// bash: `federation completions bash > /etc/bash_completion.d/federation`;
    /// zsh: `federation completions zsh > "${fpath[1]}/_federation"`;
    /// fish: `federation completions fish > ~/.config/fish/completions/federation.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The client command this is, if it is one; else itself back.
    fn into_client(self) -> Result<ClientCommand, Command> {
        Ok(match self {
            Command::Projects(c) => ClientCommand::Projects(c),
            Command::Spokes(c) => ClientCommand::Spokes(c),
            Command::Maintenance(c) => ClientCommand::Maintenance(c),
            Command::Watch(a) => ClientCommand::Watch(a),
            Command::Status => ClientCommand::Status,
            Command::Routing(c) => ClientCommand::Routing(c),
            other => return Err(other),
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct NatsInitArgs {
    /// Directory to keep the authority in (created 0700 if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct NatsCredsArgs {
    /// The authority's directory; identity.dir when not given.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The hub's project slug.
    #[arg(long)]
    pub slug: String,
    /// Lifetime (e.g. 30d, 12h); identity.hub_creds_ttl when not given.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub expires_in: Option<std::time::Duration>,
    /// Write the .creds file here (0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Run one reconcile and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, clap::Args)]
pub struct DriftArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run a reconcile, then report the drift left.
    #[arg(long, conflicts_with = "dry_run")]
    pub fix: bool,
    /// Print the plan a reconcile would carry out; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Mark the legacy identity provider `<code>-idp` as managed by this
    /// service first (with `--fix`, the reconcile then takes it over).
    #[arg(long, value_name = "CODE", conflicts_with = "dry_run")]
    pub adopt: Option<String>,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    // The client commands read no settings: only the REST API.
    let command = match cli.command.into_client() {
        Ok(client) => return client::run(cli.client, client).await,
        Err(Command::Completions { shell }) => return completions(shell),
        Err(server) => server,
    };
    let cli = Cli { command, ..cli };
    let sources = config::sources(cli.config.as_deref());
    // The authority's commands need no database, keys or NATS settings.
    match &cli.command {
        Command::NatsInit(args) => return crate::identity::cli::init(&args.dir),
        Command::NatsCreds(args) => {
            return crate::identity::cli::creds(
                &sources,
                args.dir.as_deref(),
                &args.slug,
                args.expires_in,
                args.out.as_deref(),
            )
        }
        _ => {}
    }
    let (settings, seeds) = match load(&sources) {
        Ok(loaded) => loaded,
        Err(report) => {
            eprint!("{report}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = match cli.command {
        Command::CheckConfig => {
            print!("{}", summary(&settings, &seeds));
            return ExitCode::SUCCESS;
        }
        Command::Migrate => {
            telemetry::init(&settings.log, std::io::stderr);
            migrate(&settings).await
        }
        Command::Serve => {
            telemetry::init(&settings.log, std::io::stdout);
            serve(settings, seeds).await
        }
        Command::Sync(args) => {
            telemetry::init(&settings.log, std::io::stderr);
            let result = if args.once {
                crate::sync::cli::sync_once(settings).await
            } else {
                crate::app::run_sync(settings).await.map(|()| true)
            };
            match result {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
        // Run before the settings are loaded, above.
        Command::NatsInit(_)
        | Command::NatsCreds(_)
        | Command::Projects(_)
        | Command::Spokes(_)
        | Command::Maintenance(_)
        | Command::Routing(_)
        | Command::Watch(_)
        | Command::Status
        | Command::Completions { .. } => Ok(()),
        Command::Drift(args) => {
            telemetry::init(&settings.log, std::io::stderr);
            match crate::sync::cli::drift(settings, args.json, args.fix, args.dry_run, args.adopt)
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the completion script for `shell` (a reader that stops early,
/// `| head`, is no failure).
fn completions(shell: clap_complete::Shell) -> ExitCode {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "federation", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write the completion script: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

/// Settings and seed projects, or the text listing every problem.
pub fn load(sources: &Sources) -> Result<(Settings, Vec<ProjectSpec>), String> {
    let settings = Settings::load(sources).map_err(|e| e.to_string())?;
    let seeds = match &settings.catalog.projects_file {
        Some(path) => crate::catalog::seed::load(path).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    Ok((settings, seeds))
}

async fn serve(settings: Settings, seeds: Vec<ProjectSpec>) -> anyhow::Result<()> {
    #[allow(unused_mut)] // mutated in debug builds only
    let mut app = Application::build(settings, seeds).await?;
    // Tests of the failure path (debug builds only, never in a release):
    // `<worker>` or `<worker>@<ms>` makes that worker panic after a while.
    #[cfg(debug_assertions)]
    if let Ok(spec) = std::env::var(TEST_WORKER_PANIC) {
        let (name, ms) = spec.split_once('@').unwrap_or((&spec, "1000"));
        let after = std::time::Duration::from_millis(ms.parse().unwrap_or(1000));
        app.inject_worker_panic(name, after);
    }
    tokio::spawn(crate::app::cancel_on_signal(app.shutdown_token()));
    app.run_until_stopped().await
}

/// Names a worker that panics (debug builds only), for the tests of the
/// failure path against the real binary.
#[cfg(debug_assertions)]
pub const TEST_WORKER_PANIC: &str = "FEDERATION_TEST_WORKER_PANIC";

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let options = store::connect_options(&settings.database).context("database.url")?;
    let pool = store::lazy_pool(&settings.database, options);
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(crate::app::cancel_on_signal(cancel.clone()));
    store::wait_until_reachable(&pool, settings.database.startup_timeout, &cancel).await?;
    let before = store::pending_migrations(&pool).await?;
    store::migrate(&pool).await.context("applying migrations")?;
    println!("applied {before} migration(s); schema is up to date");
    pool.close().await;
    Ok(())
}

/// What check-config prints: the effective settings, secrets as fingerprints.
fn summary(s: &Settings, seeds: &[ProjectSpec]) -> String {
    let fps = |keys: &[secrecy::SecretString]| {
        keys.iter()
            .map(|k| crate::auth::fingerprint(k.expose_secret()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from("configuration OK\n");
    out += &format!("  listen:           {}:{}\n", s.server.host, s.server.port);
    out += &format!(
        "  database:         {}\n",
        config::redact_urls(s.database.url.expose_secret())
    );
    if s.nats.enabled {
        out += &format!(
            "  nats:             {} (queue group {})\n",
            s.nats.display_url(),
            s.nats.queue_group
        );
    } else {
        out += "  nats:             disabled\n";
    }
    match &s.identity.dir {
        Some(dir) => {
            out += &format!(
                "  nats identity:    {} (service.creds; hub creds last {})\n",
                dir.display(),
                humantime::format_duration(s.identity.hub_creds_ttl)
            )
        }
        None => out += "  nats identity:    none (identity.dir not set)\n",
    }
    out += &format!(
        "  admin keys:       {} [{}]\n",
        s.auth.admin_keys.len(),
        fps(&s.auth.admin_keys)
    );
    out += &format!(
        "  agent keys:       {} [{}]{}\n",
        s.auth.agent_keys.len(),
        fps(&s.auth.agent_keys),
        if s.auth.allow_shared_agent_keys {
            ""
        } else {
            " (refused: auth.allow_shared_agent_keys is false)"
        }
    );
    out += &format!(
        "  audit log:        kept {}\n",
        humantime::format_duration(s.audit.retention)
    );
    out += &format!(
        "  heartbeat:        degraded after {}, offline after {}, check every {}\n",
        humantime::format_duration(s.heartbeat.degraded_after),
        humantime::format_duration(s.heartbeat.stale_threshold),
        humantime::format_duration(s.heartbeat.check_interval),
    );
    out += &format!(
        "  events:           stream {} ({} replica(s)), duplicate window {}, retention {}; hub code {}\n",
        s.events.stream,
        s.events.stream_replicas,
        humantime::format_duration(s.events.duplicate_window),
        humantime::format_duration(s.events.retention),
        s.federation.hub_code,
    );
    match &s.catalog.projects_file {
        Some(p) => {
            out += &format!(
                "  projects file:    {} ({} projects)\n",
                p.display(),
                seeds.len()
            )
        }
        None => out += "  projects file:    none\n",
    }
    out += &crate::sync::cli::summary(&s.sync);
    out
}
