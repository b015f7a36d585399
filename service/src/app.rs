//! The composition root: builds the service's [`Components`] once, and
//! from them the HTTP state ([`AppState`]) and the background workers of
//! both `serve` and `federation sync`, run under one [`Supervisor`] and
//! stopped by the one shutdown path they share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::ApiKeys;
use crate::catalog::ProjectSpec;
use crate::catalog_view::{follow, CatalogView};
use crate::config::Settings;
use crate::events::relay::OutboxRelay;
use crate::events::watch::EventFeed;
use crate::health::{DatabaseMonitor, Readiness};
use crate::identity::revocations::Revocations;
use crate::identity::Authority;
use crate::ingest::{Ingest, Sight, Sinks};
use crate::leader::{self, Candidacy, Election};
use crate::metrics::Metrics;
use crate::nats::NatsConnection;
use crate::retention::{self, Log};
use crate::routing_view::publish::SnapshotPublisher;
use crate::routing_view::{self, RoutingView};
use crate::state::{App, AppState};
use crate::store;
use crate::supervisor::Supervisor;
use crate::sweeper::StaleSweeper;
use crate::sync::worker::{EventSource, SyncWorker};
use crate::sync::SyncEngine;

/// The service's components, built once. `serve` hands them to the HTTP
/// state and starts every worker from them; `federation sync` starts only
/// the sync worker from the same value.
#[derive(Clone)]
pub struct Components {
    pub settings: Arc<Settings>,
    pub db: PgPool,
    pub metrics: Arc<Metrics>,
    /// `None` when `nats.enabled` is false.
    pub nats: Option<Arc<NatsConnection>>,
    pub sync: Arc<SyncEngine>,
    pub sight: Arc<Sight>,
    pub view: Arc<CatalogView>,
    /// Tenant routing in memory.
    pub routing: Arc<RoutingView>,
    pub events: Arc<EventFeed>,
    /// The NATS authority, when `identity.dir` is set.
    pub authority: Option<Arc<Authority>>,
    /// Pushes hub revocations to NATS (authority and NATS both on).
    pub revocations: Option<Arc<Revocations>>,
}

impl Components {
    /// Connects NATS (when enabled) and builds every component on `db`,
    /// which need not answer yet.
    pub async fn build(
        settings: Settings,
        db: PgPool,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let nats = if settings.nats.enabled {
            Some(Arc::new(
                NatsConnection::connect(&settings.nats, metrics.nats.clone()).await?,
            ))
        } else {
            None
        };
        let sync = Arc::new(
            SyncEngine::new(db.clone(), settings.sync.clone(), metrics.sync.clone())
                .context("setting up the Keycloak client")?,
        );
        let authority = Authority::from_settings(&settings.identity)
            .context("identity.dir")?
            .map(Arc::new);
        if let Some(authority) = &authority {
            tracing::info!(
                dir = %authority.dir().display(),
                account = authority.account(),
                "NATS authority: connecting with its service credentials; hub credentials are issued by the FEDERATION account's signing key"
            );
        }
        let revocations = match (&authority, settings.nats.enabled) {
            (Some(authority), true) => Some(Revocations::new(
                authority.clone(),
                db.clone(),
                &settings.nats,
                metrics.revocations.clone(),
            )),
            _ => None,
        };
        let events = EventFeed::new(
            db.clone(),
            &settings.events,
            settings.server.max_watch_clients,
            metrics.events.clone(),
            shutdown.clone(),
        );
        Ok(Components {
            view: CatalogView::new(settings.catalog.view),
            routing: RoutingView::new(),
            sight: Arc::new(Sight::new(nats.clone())),
            settings: Arc::new(settings),
            db,
            metrics: Arc::new(metrics),
            nats,
            sync,
            events,
            authority,
            revocations,
        })
    }

    /// The HTTP state over these components.
    pub fn app_state(&self) -> AppState {
        let db_health = DatabaseMonitor::new(
            self.db.connect_options().as_ref().clone(),
            self.metrics.health.database_up.clone(),
        );
        AppState(Arc::new(App {
            db_health,
            db_gauges: Arc::default(),
            view: self.view.clone(),
            routing: self.routing.clone(),
            sync: self.sync.clone(),
            keys: ApiKeys::new(&self.settings.auth),
            last_used: Arc::default(),
            authority: self.authority.clone(),
            revocations: self.revocations.clone(),
            settings: self.settings.clone(),
            db: self.db.clone(),
            metrics: self.metrics.clone(),
            readiness: Arc::new(Readiness::default()),
            sight: self.sight.clone(),
            nats: self.nats.clone(),
            events: self.events.clone(),
        }))
    }

    /// A supervisor reporting to these components' `worker_up` gauges.
    pub fn supervisor(&self) -> Supervisor {
        Supervisor::new(self.metrics.workers.clone())
    }

    /// Campaigns for `office` under the supervisor (as `office.campaign`),
    /// checking every `workers.leader_check_interval`.
    fn elect(
        &self,
        workers: &mut Supervisor,
        office: leader::Office,
        gauge: prometheus_client::metrics::gauge::Gauge,
        shutdown: &CancellationToken,
    ) -> Election {
        let (election, campaign) = Election::prepare(Candidacy {
            name: office.name,
            key: office.key,
            connect: (*self.db.connect_options()).clone(),
            check_every: self.settings.workers.leader_check_interval,
            gauge,
            shutdown: shutdown.clone(),
        });
        workers.spawn(office.campaign, campaign);
        election
    }

    /// The watch feed's tail, and (with NATS) the outbox relay under its
    /// leader election.
    fn spawn_event_workers(&self, workers: &mut Supervisor, shutdown: &CancellationToken) {
        workers.spawn("watch_tail", self.events.clone().run_tail());
        let Some(nats) = &self.nats else {
            return;
        };
        let election = self.elect(
            workers,
            leader::RELAY,
            self.metrics.events.relay_leader.clone(),
            shutdown,
        );
        let relay = OutboxRelay::new(
            self.db.clone(),
            nats.client().clone(),
            self.settings.events.clone(),
            self.metrics.events.clone(),
        );
        workers.spawn("relay", relay.run(election, shutdown.clone()));
    }

    /// Tenant routing: following the routing tables, and (with NATS)
    /// publishing the gateways' snapshot.
    fn spawn_routing_workers(&self, workers: &mut Supervisor, shutdown: &CancellationToken) {
        workers.spawn(
            "routing_follow",
            routing_view::follow(self.routing.clone(), self.db.clone(), shutdown.clone()),
        );
        let Some(nats) = &self.nats else {
            return;
        };
        let publisher = SnapshotPublisher {
            view: self.routing.clone(),
            catalog: self.view.clone(),
            pool: self.db.clone(),
            client: nats.client().clone(),
            settings: self.settings.routing.clone(),
        };
        workers.spawn("routing_publish", publisher.run(shutdown.clone()));
    }

    /// The federation sync worker: it campaigns for the SYNC lead and runs
    /// only while it holds it. A run in flight at shutdown is abandoned at
    /// its next await; its events are redelivered to the next leader.
    pub fn spawn_sync_worker(&self, workers: &mut Supervisor, shutdown: &CancellationToken) {
        let election = self.elect(
            workers,
            leader::SYNC,
            self.metrics.sync.leader.clone(),
            shutdown,
        );
        let events = self.nats.as_ref().map(|n| EventSource {
            client: n.client().clone(),
            events: self.settings.events.clone(),
        });
        let worker = SyncWorker::new(self.sync.clone(), events);
        workers.spawn("sync", worker.run(Some(election), shutdown.clone()));
    }

    /// Everything `serve` runs once the database is ready: the catalog
    /// view's reloads, the event feed and relay, the sync worker (when
    /// `sync.enabled`), heartbeat ingestion and the sweeper (with NATS).
    /// All of it watches the one shutdown token.
    async fn spawn_serve_workers(
        &self,
        workers: &mut Supervisor,
        listener: Option<PgListener>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        // The flusher and the sweeper apply their own changes to the view; the
        // follower skips their notifications by this name.
        let direct_writer = follow::direct_writer_name();
        if let Some(listener) = listener {
            workers.spawn(
                "catalog_follow",
                follow::run(
                    self.view.clone(),
                    self.db.clone(),
                    listener,
                    direct_writer.clone(),
                    self.settings.catalog.resync_interval,
                    shutdown.clone(),
                ),
            );
        }
        self.spawn_event_workers(workers, shutdown);
        self.spawn_routing_workers(workers, shutdown);
        for (log, retention) in [
            (Log::Audit, self.settings.audit.retention),
            (Log::History, self.settings.catalog.history_retention),
        ] {
            let pruner = retention::run_pruner(self.db.clone(), log, retention, shutdown.clone());
            workers.spawn(log.worker(), pruner);
        }
        if let Some(revocations) = &self.revocations {
            workers.spawn("revocations", revocations.clone().run(shutdown.clone()));
        }
        if self.settings.sync.enabled {
            self.spawn_sync_worker(workers, shutdown);
        }
        let Some(nats) = &self.nats else {
            tracing::info!("NATS disabled: no heartbeat ingestion, no stale sweeping");
            return Ok(());
        };
        // With identity.dir the servers should refuse anonymous clients;
        // a one-off check, not a worker: it ends once it has an answer.
        if self.settings.identity.dir.is_some() {
            tokio::spawn(
                nats.clone()
                    .watch_for_anonymous_access(self.settings.nats.clone(), shutdown.clone()),
            );
        }
        let settings = &self.settings;
        // The flusher's statements carry thousands of rows; a connection keeps
        // its buffers at the largest message it sent, so one connection of its
        // own holds them instead of every connection of the shared pool.
        // A statement stuck behind a lock counts as a failure, not as silence.
        let statement_timeout = settings
            .heartbeat
            .write_failure_grace
            .as_millis()
            .to_string();
        let direct_options = store::connect_options(&settings.database)?
            .application_name(&direct_writer)
            .options([("statement_timeout", statement_timeout.as_str())]);
        let single_connection = || {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(settings.database.acquire_timeout)
                .test_before_acquire(false)
                .connect_lazy_with(direct_options.clone())
        };
        let ingest = Ingest::start(
            nats.client().clone(),
            &settings.nats,
            &settings.heartbeat,
            Sinks {
                pool: single_connection(),
                metrics: self.metrics.ingest.clone(),
                catalog_metrics: self.metrics.catalog.clone(),
                sight: self.sight.clone(),
                view: self.view.clone(),
            },
            shutdown.clone(),
        )
        .await?;
        workers.spawn("heartbeat_subscriber", ingest.subscriber);
        workers.spawn("heartbeat_flusher", ingest.flusher);
        let election = self.elect(
            workers,
            leader::SWEEPER,
            self.metrics.sweeper.leader.clone(),
            shutdown,
        );
        let sweeper =
            StaleSweeper::new(single_connection(), self.view.clone(), &settings.heartbeat);
        workers.spawn(
            "sweeper",
            sweeper.run(
                election,
                self.sight.clone(),
                self.metrics.sweeper.clone(),
                self.metrics.catalog.clone(),
                shutdown.clone(),
            ),
        );
        Ok(())
    }
}

/// A built, not yet running service.
pub struct Application {
    listener: TcpListener,
    components: Components,
    state: AppState,
    seeds: Vec<ProjectSpec>,
    shutdown: CancellationToken,
    fault: Option<(String, Duration)>,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and prepares the state.
    /// Connects to nothing yet: that happens in [`Self::run_until_stopped`],
    /// while `/health` and `/ready` already answer.
    pub async fn build(settings: Settings, seeds: Vec<ProjectSpec>) -> anyhow::Result<Self> {
        let options = store::connect_options(&settings.database).context("database.url")?;
        let db = store::lazy_pool(&settings.database, options);
        Self::build_with_pool(settings, seeds, db).await
    }

    /// As [`Self::build`], with a pool made by the caller (tests).
    pub async fn build_with_pool(
        settings: Settings,
        seeds: Vec<ProjectSpec>,
        db: PgPool,
    ) -> anyhow::Result<Self> {
        let addr = SocketAddr::new(settings.server.host, settings.server.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let mut settings = settings;
        // Database pools and elections, the health check, NATS.
        let other_connections = settings.database.max_connections as usize + 8;
        settings.server.max_connections =
            crate::server::fit_to_file_limit(settings.server.max_connections, other_connections);
        settings.server.max_watch_clients = settings
            .server
            .max_watch_clients
            .min(settings.server.max_connections);
        let shutdown = CancellationToken::new();
        let components = Components::build(settings, db, &shutdown).await?;
        let state = components.app_state();
        Ok(Application {
            listener,
            components,
            state,
            seeds,
            shutdown,
            fault: None,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancelling this token stops the service gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// For tests of the failure path: the background worker `name` panics
    /// `after` it started.
    #[doc(hidden)]
    pub fn inject_worker_panic(&mut self, name: impl Into<String>, after: Duration) {
        self.fault = Some((name.into(), after));
    }

    /// Serves until the shutdown token is cancelled, then drains in-flight
    /// requests (bounded by `server.shutdown_grace`) while the workers stop
    /// (all together bounded by `workers.shutdown_deadline`, counted from
    /// the signal). Fails if start-up cannot reach the database in time, or
    /// if a worker stopped while serving: then `/ready` says so, the
    /// service shuts down the same way, and the error names the worker.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            components,
            state,
            seeds,
            shutdown,
            fault,
        } = self;
        let grace = state.settings.server.shutdown_grace;
        let deadline = state.settings.workers.shutdown_deadline;
        let addr = listener.local_addr()?;
        let router = crate::api::router(state.clone(), crate::ui::router(&state));
        let mut server = tokio::spawn(crate::server::serve(
            listener,
            router,
            crate::server::Limits::from_settings(&state.settings.server),
            state.metrics.connections.clone(),
            shutdown.clone(),
            grace,
        ));
        let mut workers = components.supervisor();
        if let Some((name, after)) = fault {
            workers.inject_panic(name, after);
        }
        workers.spawn(
            "database_monitor",
            state.db_health.clone().run(shutdown.clone()),
        );
        tracing::info!(%addr, max_connections = state.settings.server.max_connections, "listening");
        for warning in state.settings.compatibility_warnings() {
            tracing::warn!("{warning}");
        }

        let startup = start(&state, &seeds, &shutdown);
        let started = tokio::select! {
            result = startup => match result {
                Ok(listener) => components
                    .spawn_serve_workers(&mut workers, listener, &shutdown)
                    .await
                    .map_err(Failure::Startup),
                Err(e) => Err(Failure::Startup(e)),
            },
            Some(exit) = workers.until_failure(&shutdown) => Err(Failure::Worker(exit.to_string())),
            result = &mut server => Err(Failure::Server(result.err())),
        };
        let failure = match started {
            Ok(()) => {
                state.readiness.mark_serving();
                tracing::info!(workers = workers.len(), "service ready");
                // Biased: once shutdown fired, a worker or the server
                // ending is its doing, not a failure.
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => None,
                    Some(exit) = workers.until_failure(&shutdown) => {
                        Some(Failure::Worker(exit.to_string()))
                    }
                    result = &mut server => Some(Failure::Server(result.err())),
                }
            }
            Err(f) => Some(f),
        };
        let stop_by = Instant::now() + deadline;
        if let Some(Failure::Worker(reason)) = &failure {
            state.readiness.mark_failed(reason.clone());
        }
        shutdown.cancel();
        tracing::info!(
            grace_s = grace.as_secs_f64(),
            deadline_s = deadline.as_secs_f64(),
            "shutting down: draining in-flight requests, stopping the workers"
        );
        // The server closes what is still open after `grace` by itself.
        let server_done = async {
            if matches!(failure, Some(Failure::Server(_))) {
                return Ok(());
            }
            // Startup failed: the drain gets what the grace allows.
            match tokio::time::timeout(grace + Duration::from_secs(1), &mut server).await {
                Ok(r) => r.map_err(anyhow::Error::from),
                Err(_) => {
                    server.abort();
                    Ok(())
                }
            }
        };
        let (served, aborted) = tokio::join!(server_done, workers.stop_by(stop_by));
        if !aborted.is_empty() {
            tracing::warn!(
                aborted = aborted.join(", "),
                deadline_s = deadline.as_secs_f64(),
                "workers aborted at the shutdown deadline"
            );
        }
        if let Some(nats) = &state.nats {
            nats.close().await;
        }
        state.db.close().await;
        match failure {
            None => {
                served.context("HTTP server task")?;
                tracing::info!("stopped");
                Ok(())
            }
            Some(Failure::Startup(e)) => Err(e),
            Some(Failure::Worker(reason)) => {
                tracing::info!("stopped after a worker failed");
                anyhow::bail!("{reason}; the service stopped")
            }
            Some(Failure::Server(Some(e))) => {
                Err(anyhow::Error::from(e).context("HTTP server task"))
            }
            Some(Failure::Server(None)) => anyhow::bail!("the HTTP server stopped unexpectedly"),
        }
    }
}

/// Why `serve` stops other than by its shutdown token.
enum Failure {
    /// Start-up failed (database unreachable, migrations, seeding, ...).
    Startup(anyhow::Error),
    /// A background worker stopped while serving (its description).
    Worker(String),
    /// The HTTP server task ended (with its join error, if it failed).
    Server(Option<tokio::task::JoinError>),
}

/// `federation sync` without `--once`: the sync worker alone, under its
/// election, from the same [`Components`] as `serve`, until a signal (or
/// until it fails: then non-zero, as `serve`).
pub async fn run_sync(settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let db = crate::sync::cli::ready_pool(&settings, &shutdown).await?;
    if !settings.nats.enabled {
        tracing::warn!("nats.enabled is false: the sync runs on its periodic resync only");
    }
    let deadline = settings.workers.shutdown_deadline;
    let components = Components::build(settings, db, &shutdown).await?;
    let mut workers = components.supervisor();
    components.spawn_sync_worker(&mut workers, &shutdown);
    let failure = workers.until_failure(&shutdown).await;
    shutdown.cancel();
    workers.stop_by(Instant::now() + deadline).await;
    if let Some(nats) = &components.nats {
        nats.close().await;
    }
    components.db.close().await;
    match failure {
        None => Ok(()),
        Some(exit) => anyhow::bail!("{exit}; stopped"),
    }
}

/// Start-up: reach the database (retrying), migrate, seed, listen for
/// catalog changes and load the view.
async fn start(
    state: &AppState,
    seeds: &[ProjectSpec],
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<PgListener>> {
    let db_settings = &state.settings.database;
    state.readiness.set_phase("waiting for the database");
    store::wait_until_reachable(&state.db, db_settings.startup_timeout, shutdown).await?;
    if db_settings.migrate_on_start {
        state.readiness.set_phase("applying migrations");
        store::migrate(&state.db)
            .await
            .context("applying migrations")?;
    }
    if !seeds.is_empty() {
        state.readiness.set_phase("seeding projects");
        let (created, updated, unchanged) = store::projects::seed(&state.db, seeds)
            .await
            .context("seeding projects")?;
        state
            .metrics
            .catalog
            .register
            .inc_by((created + updated) as u64);
        let file = state
            .settings
            .catalog
            .projects_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        tracing::info!(
            file,
            projects = seeds.len(),
            created,
            updated,
            unchanged,
            "projects seeded from {file}"
        );
    }
    let listener = if state.view.enabled() {
        state.readiness.set_phase("loading the catalog view");
        // Listen first: a change committed after the load is then notified.
        let listener = follow::listen(&state.db)
            .await
            .context("listening for catalog changes")?;
        let n = state
            .view
            .reload(&state.db)
            .await
            .context("loading the catalog view")?;
        tracing::debug!(projects = n, "catalog view loaded");
        Some(listener)
    } else {
        None
    };
    state.readiness.mark_database_ready();
    state.db_health.check_now();
    Ok(listener)
}

pub use common::signal::cancel_on_signal;
