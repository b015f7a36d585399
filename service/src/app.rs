//! Wires the service together: state, HTTP server, start-up and background
//! tasks, and the one shutdown path they all share.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::ApiKeys;
use crate::catalog::ProjectSpec;
use crate::catalog_view::{follow, CatalogView};
use crate::config::Settings;
use crate::events::relay::OutboxRelay;
use crate::events::watch::EventFeed;
use crate::health::{DatabaseMonitor, Readiness};
use crate::ingest::{Ingest, Sight, Sinks};
use crate::leader::{self, Election};
use crate::metrics::Metrics;
use crate::nats::NatsConnection;
use crate::state::{App, AppState};
use crate::store;
use crate::sweeper::StaleSweeper;

/// A built, not yet running service.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    seeds: Vec<ProjectSpec>,
    shutdown: CancellationToken,
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
        let metrics = Metrics::new();
        let nats = if settings.nats.enabled {
            Some(Arc::new(
                NatsConnection::connect(&settings.nats, metrics.nats.clone()).await?,
            ))
        } else {
            None
        };
        let sync = Arc::new(
            crate::sync::SyncEngine::new(db.clone(), settings.sync.clone(), metrics.sync.clone())
                .context("setting up the Keycloak client")?,
        );
        let shutdown = CancellationToken::new();
        let events = EventFeed::new(
            db.clone(),
            &settings.events,
            settings.server.max_watch_clients,
            metrics.events.clone(),
            shutdown.clone(),
        );
        let db_health = DatabaseMonitor::new(
            db.connect_options().as_ref().clone(),
            metrics.health.database_up.clone(),
        );
        let state = AppState(Arc::new(App {
            db_health,
            db_gauges: Arc::default(),
            view: CatalogView::new(settings.catalog.view),
            sync,
            keys: ApiKeys::new(&settings.auth),
            settings: Arc::new(settings),
            db,
            metrics: Arc::new(metrics),
            readiness: Arc::new(Readiness::default()),
            sight: Arc::new(Sight::new(nats.clone())),
            nats,
            events,
        }));
        Ok(Application {
            listener,
            state,
            seeds,
            shutdown,
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

    /// Serves until the shutdown token is cancelled, then drains in-flight
    /// requests (bounded by `server.shutdown_grace`). Fails if start-up
    /// cannot reach the database in time.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            seeds,
            shutdown,
        } = self;
        let grace = state.settings.server.shutdown_grace;
        let addr = listener.local_addr()?;
        let router = crate::api::router(state.clone());
        let mut server = tokio::spawn(crate::server::serve(
            listener,
            router,
            crate::server::Limits::from_settings(&state.settings.server),
            state.metrics.connections.clone(),
            shutdown.clone(),
            grace,
        ));
        let monitor = tokio::spawn(state.db_health.clone().run(shutdown.clone()));
        tracing::info!(%addr, max_connections = state.settings.server.max_connections, "listening");

        let startup = start(&state, &seeds, &shutdown);
        let listener = tokio::select! {
            result = startup => {
                match result {
                    Ok(listener) => listener,
                    Err(e) => {
                        shutdown.cancel();
                        let _ = tokio::time::timeout(grace, &mut server).await;
                        return Err(e);
                    }
                }
            }
            result = &mut server => {
                shutdown.cancel();
                result.context("HTTP server task")?;
                anyhow::bail!("the HTTP server stopped unexpectedly");
            }
        };

        let workers = match start_workers(&state, listener, &shutdown).await {
            Ok(w) => w,
            Err(e) => {
                shutdown.cancel();
                let _ = tokio::time::timeout(grace, &mut server).await;
                return Err(e);
            }
        };
        state.readiness.mark_serving();
        tracing::info!("service ready");
        shutdown.cancelled().await;
        tracing::info!(
            grace_s = grace.as_secs_f64(),
            "shutting down: draining in-flight requests"
        );
        // The server closes what is still open after `grace` by itself.
        server.await.context("HTTP server task")?;
        workers.finish(grace).await;
        let _ = monitor.await;
        if let Some(nats) = &state.nats {
            nats.close().await;
        }
        state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The watch feed's tail, and (with NATS) the outbox relay under its
/// leader election. They stop on `shutdown`.
fn spawn_event_tasks(
    state: &AppState,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(state.events.clone().run_tail())];
    if let Some(nats) = &state.nats {
        let (election, campaign) = Election::spawn(
            "relay",
            leader::keys::RELAY,
            (*state.db.connect_options()).clone(),
            state.settings.events.poll_interval,
            state.metrics.events.relay_leader.clone(),
            shutdown.clone(),
        );
        let relay = OutboxRelay::new(
            state.db.clone(),
            nats.client().clone(),
            state.settings.events.clone(),
            state.metrics.events.clone(),
        );
        tasks.push(campaign);
        tasks.push(tokio::spawn(relay.run(election, shutdown.clone())));
    }
    tasks
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

/// Starts the federation sync worker when `sync.enabled`: it campaigns for
/// the SYNC lead and runs only while it holds it. A run in flight at
/// shutdown is abandoned at its next await; its events are redelivered to
/// the next leader.
fn spawn_sync_worker(
    state: &AppState,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    if !state.settings.sync.enabled {
        return Vec::new();
    }
    let connect = state.db.connect_options().as_ref().clone();
    let (election, campaign) = crate::leader::Election::spawn(
        "sync",
        crate::leader::keys::SYNC,
        connect,
        SYNC_ELECTION_CHECK,
        state.metrics.sync.leader.clone(),
        shutdown.clone(),
    );
    let events = state
        .nats
        .as_ref()
        .map(|n| crate::sync::worker::EventSource {
            client: n.client().clone(),
            stream: state.settings.events.stream.clone(),
            relay: Arc::new(crate::events::relay::OutboxRelay::new(
                state.db.clone(),
                n.client().clone(),
                state.settings.events.clone(),
                state.metrics.events.clone(),
            )),
        });
    let worker = crate::sync::worker::SyncWorker::new(state.sync.clone(), events);
    vec![
        tokio::spawn(worker.run(Some(election), shutdown.clone())),
        campaign,
    ]
}

/// How often the sync election retries the lock and checks its session.
const SYNC_ELECTION_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Background work that runs once the database is ready: the catalog
/// view's reloads, heartbeat ingestion, the sweeper, the event feed and
/// relay, the sync worker. All of it watches the one shutdown token.
struct Workers {
    ingest: Option<Ingest>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// After shutdown fired: ingestion writes what it still holds (its
    /// events are relayed by whichever replica leads next), then every
    /// other task gets `grace` to stop.
    async fn finish(self, grace: std::time::Duration) {
        if let Some(ingest) = self.ingest {
            ingest.finish().await;
        }
        for t in self.tasks {
            if tokio::time::timeout(grace, t).await.is_err() {
                tracing::warn!("a background task did not stop within the grace period");
            }
        }
    }
}

async fn start_workers(
    state: &AppState,
    listener: Option<PgListener>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Workers> {
    let mut workers = Workers {
        ingest: None,
        tasks: Vec::new(),
    };
    // The flusher and the sweeper apply their own changes to the view; the
    // follower skips their notifications by this name.
    let direct_writer = follow::direct_writer_name();
    if let Some(listener) = listener {
        workers.tasks.push(tokio::spawn(follow::run(
            state.view.clone(),
            state.db.clone(),
            listener,
            direct_writer.clone(),
            state.settings.catalog.resync_interval,
            shutdown.clone(),
        )));
    }
    workers.tasks.extend(spawn_event_tasks(state, shutdown));
    workers.tasks.extend(spawn_sync_worker(state, shutdown));
    let Some(nats) = &state.nats else {
        tracing::info!("NATS disabled: no heartbeat ingestion, no stale sweeping");
        return Ok(workers);
    };
    let settings = &state.settings;
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
    let flusher_db = single_connection();
    workers.ingest = Some(
        Ingest::start(
            nats.client().clone(),
            &settings.nats,
            &settings.heartbeat,
            Sinks {
                pool: flusher_db,
                metrics: state.metrics.ingest.clone(),
                catalog_metrics: state.metrics.catalog.clone(),
                sight: state.sight.clone(),
                view: state.view.clone(),
            },
            shutdown.clone(),
        )
        .await?,
    );
    let (election, campaign) = Election::spawn(
        "sweeper",
        leader::keys::SWEEPER,
        store::connect_options(&settings.database)?,
        std::time::Duration::from_secs(1),
        state.metrics.sweeper.leader.clone(),
        shutdown.clone(),
    );
    let sweeper = StaleSweeper::new(single_connection(), state.view.clone(), &settings.heartbeat);
    workers.tasks.push(tokio::spawn(sweeper.run(
        election,
        state.sight.clone(),
        state.metrics.sweeper.clone(),
        state.metrics.catalog.clone(),
        shutdown.clone(),
    )));
    workers.tasks.push(campaign);
    Ok(workers)
}

pub use common::signal::cancel_on_signal;
