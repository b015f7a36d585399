//! Federation sync, level-triggered: an event only says "look again". Each
//! run reads the whole desired state from the registry and makes both
//! targets match it exactly, idempotently:
//!
//! - `tfvars`: `federation_partners` in `hub.auto.tfvars`, written
//!   atomically and only when it changes, then an optional post-command;
//! - `keycloak`: one OIDC identity provider `<code>-idp` per spoke in the hub
//!   realm, created, updated, disabled or deleted; only IdPs marked as ours
//!   are touched.
//!
//! Each run also probes every approved spoke's IdP (OIDC discovery, issuer,
//! JWKS), records what it saw as the spoke's conditions
//! ([`crate::conditions`]), and derives the links from them ([`links`]).
//!
//! Each target has a circuit breaker in PostgreSQL and retries with backoff;
//! the two run side by side, so one that is down never blocks the other.
//! [`SyncEngine::reconcile`] is one run; [`worker`] decides when to run.

pub mod breaker;
pub mod cli;
pub mod drift;
pub mod idp;
pub mod keycloak;
pub mod lease;
pub mod links;
pub mod metrics;
pub mod plan;
pub mod probe;
pub mod registry;
pub mod status;
pub mod tfvars;
pub mod timeouts;
pub mod worker;

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use self::breaker::{Admission, Breaker, BreakerState};
use self::drift::DriftReport;
use self::keycloak::{KeycloakClient, KeycloakError};
use self::lease::Leases;
use self::metrics::SyncMetrics;
use self::plan::{IdpChange, Observation, Plan, TfvarsSide};
use self::registry::Registry;
use crate::conditions::{reasons, ConditionType, Observed};
pub use crate::config::SyncSettings;
use common::retry::Backoff;

/// Advisory lock (transaction-scoped) serialising reconcile runs across the
/// worker, `POST /api/federation/drift` and `federation drift --fix`, on any
/// replica. Distinct from the election key, which the worker's leader holds.
pub const RECONCILE_LOCK: i64 = 0x6665_6472_6563_6f6e; // "fedrecon"

/// Identity provider requests in flight at once during a run.
const KEYCLOAK_CONCURRENCY: usize = 8;

/// A sync target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Tfvars,
    Keycloak,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Tfvars, Target::Keycloak];

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Tfvars => "tfvars",
            Target::Keycloak => "keycloak",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Startup,
    Event,
    Resync,
    Retry,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Event => "event",
            Trigger::Resync => "resync",
            Trigger::Retry => "retry",
            Trigger::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Success,
    Failure,
    /// Not attempted: the target is off or its breaker is open.
    Skipped,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
            RunResult::Skipped => "skipped",
        }
    }
}

/// What one run did to one target.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TargetReport {
    pub result: RunResult,
    /// Writes made: the file, or identity providers created, updated, deleted.
    pub changes: usize,
    /// What was done, one line each.
    pub actions: Vec<String>,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The target's circuit breaker after the run.
    pub breaker: BreakerState,
    /// When an open breaker lets the next attempt through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// A failure that may pass by itself (unreachable, 5xx, I/O): the worker
    /// retries with backoff. Others (a taken alias, a 4xx) wait for the next
    /// event or resync.
    #[serde(skip)]
    pub transient: bool,
}

impl TargetReport {
    fn new(started_at: DateTime<Utc>) -> Self {
        TargetReport {
            transient: false,
            result: RunResult::Success,
            changes: 0,
            actions: Vec::new(),
            error: None,
            breaker: BreakerState::Closed,
            retry_at: None,
            started_at,
            finished_at: started_at,
        }
    }
}

/// One reconcile run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunReport {
    pub trigger: Trigger,
    pub approved_spokes: usize,
    pub tfvars: TargetReport,
    pub keycloak: TargetReport,
}

impl RunReport {
    pub fn failed(&self) -> bool {
        self.tfvars.result == RunResult::Failure || self.keycloak.result == RunResult::Failure
    }

    /// Worth running again soon: a transient failure, or a target refused
    /// by its breaker.
    pub fn needs_retry(&self) -> bool {
        [&self.tfvars, &self.keycloak]
            .iter()
            .any(|t| t.transient || t.retry_at.is_some())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The registry could not be read: nothing was attempted.
    #[error("cannot read the registry: {0}")]
    Database(#[from] sqlx::Error),
}

/// One run's reconcile logic and the clients it needs.
pub struct SyncEngine {
    pool: PgPool,
    settings: SyncSettings,
    keycloak: Option<KeycloakClient>,
    /// For the IdP probes (no retries: the next run looks again).
    probe_http: reqwest::Client,
    tfvars_breaker: Breaker,
    keycloak_breaker: Breaker,
    backoff: Backoff,
    metrics: SyncMetrics,
    /// This engine's name as a lease holder (unique per engine).
    holder: String,
    /// The adaptive timeout of Keycloak requests (shared with the client).
    keycloak_timeout: std::sync::Arc<timeouts::StepTimeout>,
}

impl SyncEngine {
    pub fn new(
        pool: PgPool,
        settings: SyncSettings,
        metrics: SyncMetrics,
    ) -> Result<SyncEngine, reqwest::Error> {
        let backoff = settings.retry.backoff();
        let keycloak_timeout = std::sync::Arc::new(timeouts::StepTimeout::new(
            &settings.adaptive_timeout,
            settings.keycloak.request_timeout,
        ));
        let keycloak =
            KeycloakClient::from_settings(&settings.keycloak, backoff, keycloak_timeout.clone())?;
        let timeout = settings.keycloak.request_timeout;
        let probe_http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
            .build()?;
        metrics.set_step_timeout(timeouts::Step::KeycloakRequest, keycloak_timeout.current());
        Ok(SyncEngine {
            probe_http,
            tfvars_breaker: Breaker::new(pool.clone(), Target::Tfvars, &settings.breaker),
            keycloak_breaker: Breaker::new(pool.clone(), Target::Keycloak, &settings.breaker),
            pool,
            settings,
            keycloak,
            backoff,
            metrics,
            holder: format!("sync-{}", uuid::Uuid::new_v4()),
            keycloak_timeout,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn settings(&self) -> &SyncSettings {
        &self.settings
    }

    pub fn metrics(&self) -> &SyncMetrics {
        &self.metrics
    }

    pub fn keycloak_configured(&self) -> bool {
        self.keycloak.is_some()
    }

    fn breaker(&self, target: Target) -> &Breaker {
        match target {
            Target::Tfvars => &self.tfvars_breaker,
            Target::Keycloak => &self.keycloak_breaker,
        }
    }

    /// One run: reads the registry, reconciles both targets side by side,
    /// updates links, records the outcome. Runs are serialised across
    /// replicas by [`RECONCILE_LOCK`].
    pub async fn reconcile(&self, trigger: Trigger) -> Result<RunReport, SyncError> {
        // A transaction-scoped lock: released by commit, rollback, or the
        // connection's end, even if this future is dropped mid-run.
        let mut lock = self.pool.begin().await?;
        crate::store::sync::advisory_xact_lock(&mut lock, RECONCILE_LOCK).await?;
        let registry = registry::load(&self.pool).await?;
        // The leases of the spokes this run acts on; one another live
        // holder has is left to it (its writes are fenced, so are ours).
        let ids: Vec<String> = registry.spokes.iter().map(|s| s.id.clone()).collect();
        let pid: i32 = sqlx::query_scalar!(r#"SELECT pg_backend_pid() AS "pid!""#)
            .fetch_one(&mut *lock)
            .await?;
        let ttl = self.settings.lease_ttl;
        let leases = Leases::acquire(&self.pool, &self.holder, Some(pid), &ids, ttl).await?;
        if leases.len() < ids.len() {
            tracing::warn!(
                held_elsewhere = ids.len() - leases.len(),
                "spokes leased by another holder are left to it this run"
            );
        }
        let (tfvars, keycloak, ()) = tokio::join!(
            self.timed(
                Target::Tfvars,
                trigger,
                self.tfvars_target(&registry, &leases)
            ),
            self.timed(
                Target::Keycloak,
                trigger,
                self.keycloak_target(&registry, &leases)
            ),
            self.probe_idps(&registry, &leases),
        );
        let approved_ids: Vec<String> = registry.approved().map(|s| s.id.clone()).collect();
        if let Err(e) = links::derive(&self.pool, &approved_ids, &leases).await {
            tracing::warn!(error = %e, "cannot derive the links from the conditions");
        }
        if let Err(e) = leases.release(&self.pool).await {
            tracing::warn!(error = %e, "cannot release the spoke leases (they expire)");
        }
        self.metrics.set_step_timeout(
            timeouts::Step::KeycloakRequest,
            self.keycloak_timeout.current(),
        );
        let report = RunReport {
            trigger,
            approved_spokes: registry.approved().count(),
            tfvars,
            keycloak,
        };
        let _ = lock.rollback().await;
        tracing::info!(
            trigger = trigger.as_str(),
            approved = report.approved_spokes,
            tfvars = report.tfvars.result.as_str(),
            tfvars_changes = report.tfvars.changes,
            keycloak = report.keycloak.result.as_str(),
            keycloak_changes = report.keycloak.changes,
            "sync run finished"
        );
        Ok(report)
    }

    /// Runs a target, then records its outcome (run row, breaker gauge,
    /// metrics). Recording failures are logged: the run itself happened.
    async fn timed(
        &self,
        target: Target,
        trigger: Trigger,
        run: impl std::future::Future<Output = TargetReport>,
    ) -> TargetReport {
        let clock = Instant::now();
        let mut report = run.await;
        report.finished_at = Utc::now();
        self.metrics
            .set_breaker(target, report.breaker.gauge_value());
        if report.result != RunResult::Skipped {
            self.metrics.observe_run(
                target,
                report.result == RunResult::Success,
                clock.elapsed().as_secs_f64(),
            );
        }
        if let Some(e) = &report.error {
            tracing::warn!(target = target.as_str(), error = %e, "sync target failed");
        }
        // A target that is off has nothing to record.
        let off = report.result == RunResult::Skipped && report.error.is_none();
        if !off {
            if let Err(e) = status::record_run(&self.pool, target, trigger.as_str(), &report).await
            {
                tracing::warn!(target = target.as_str(), error = %e, "cannot record the sync run");
            }
        }
        report
    }

    /// Asks the breaker; fills `report` and returns `false` when refused.
    async fn admit(&self, target: Target, report: &mut TargetReport) -> bool {
        match self.breaker(target).admit().await {
            Ok((Admission::Refused { retry_at }, state)) => {
                report.result = RunResult::Skipped;
                report.breaker = state;
                report.retry_at = Some(retry_at);
                report.error = Some(format!(
                    "circuit breaker open until {}",
                    retry_at.format("%Y-%m-%dT%H:%M:%SZ")
                ));
                false
            }
            Ok((_, state)) => {
                report.breaker = state;
                true
            }
            Err(e) => {
                // Without the breaker's state we still try: the breaker
                // protects the target, it must not stop the sync.
                tracing::warn!(target = target.as_str(), error = %e, "cannot read the circuit breaker");
                true
            }
        }
    }

    /// Closes or counts against the breaker after an attempt.
    async fn settle(&self, target: Target, report: &mut TargetReport, breaker_failure: bool) {
        let b = self.breaker(target);
        let result = if breaker_failure {
            b.record_failure(report.error.as_deref().unwrap_or("failed"))
                .await
        } else {
            b.record_success().await
        };
        match result {
            Ok(state) => report.breaker = state,
            Err(e) => {
                tracing::warn!(target = target.as_str(), error = %e, "cannot update the circuit breaker")
            }
        }
    }

    async fn tfvars_target(&self, registry: &Registry, leases: &Leases) -> TargetReport {
        let mut report = TargetReport::new(Utc::now());
        let t = &self.settings.tfvars;
        let (rendered, applied) = (
            ConditionType::TfvarsRendered,
            ConditionType::TerraformApplied,
        );
        if !t.enabled {
            report.result = RunResult::Skipped;
            let off = "sync.tfvars is off";
            let observed = [
                Observed::unknown(rendered, reasons::TFVARS_DISABLED, off),
                Observed::unknown(applied, reasons::TFVARS_DISABLED, off),
            ];
            self.record(registry, leases, &observed).await;
            return report;
        }
        if !self.admit(Target::Tfvars, &mut report).await {
            return report;
        }
        let partners = tfvars::desired(registry, &self.settings);
        let outcome = self.write_tfvars(&partners, &mut report).await;
        let observed = match &outcome {
            Ok(command) => vec![
                Observed::is_true(rendered, reasons::RENDERED),
                if *command {
                    Observed::is_true(applied, reasons::APPLIED)
                } else {
                    Observed::is_true(applied, reasons::NO_POST_COMMAND)
                },
            ],
            Err(TfvarsFailure::Write(e)) => {
                vec![Observed::is_false(
                    rendered,
                    reasons::TFVARS_WRITE_FAILED,
                    e,
                )]
            }
            Err(TfvarsFailure::PostCommand(e)) => vec![
                Observed::is_true(rendered, reasons::RENDERED),
                Observed::is_false(applied, reasons::POST_COMMAND_FAILED, e),
            ],
        };
        self.record(registry, leases, &observed).await;
        let failed = outcome.is_err();
        if let Err(TfvarsFailure::Write(e) | TfvarsFailure::PostCommand(e)) = outcome {
            report.result = RunResult::Failure;
            report.error = Some(e);
            report.transient = true;
        }
        self.settle(Target::Tfvars, &mut report, failed).await;
        report
    }

    /// Writes the file and runs the post-command if there is one (then
    /// `Ok(true)`).
    async fn write_tfvars(
        &self,
        partners: &BTreeMap<String, tfvars::Partner>,
        report: &mut TargetReport,
    ) -> Result<bool, TfvarsFailure> {
        let t = &self.settings.tfvars;
        let content =
            tfvars::render(partners, t.format).map_err(|e| TfvarsFailure::Write(e.to_string()))?;
        let path = t.path.clone();
        let written = self
            .backoff
            .retry(
                || {
                    let (path, content) = (path.clone(), content.clone());
                    async move {
                        tokio::task::spawn_blocking(move || {
                            tfvars::write_if_changed(&path, &content)
                        })
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())
                    }
                },
                |_| true,
            )
            .await
            .map_err(TfvarsFailure::Write)?;
        if written {
            report.changes += 1;
            report.actions.push(format!(
                "wrote {} ({} partners)",
                path.display(),
                partners.len()
            ));
        }
        if t.post_command.is_empty() {
            return Ok(false);
        }
        // Level-triggered too: a post-command that failed, or never ran
        // because the process died after the rename, runs again until it has
        // succeeded for this exact content.
        let sha = tfvars::digest(&content);
        let done_for = status::post_command_succeeded_for(&self.pool)
            .await
            .map_err(|e| {
                TfvarsFailure::PostCommand(format!("cannot read the post-command state: {e}"))
            })?;
        if !written && done_for.as_deref() == Some(sha.as_str()) {
            return Ok(true);
        }
        let started = Utc::now();
        let outcome = tfvars::run_post_command(
            &t.post_command,
            &path,
            partners.len(),
            t.post_command_timeout,
        )
        .await;
        let command = t.post_command.join(" ");
        report
            .actions
            .push(format!("ran post-command: {}", outcome.describe()));
        if let Err(e) =
            status::record_post_command(&self.pool, &command, &sha, &outcome, started).await
        {
            tracing::warn!(error = %e, "cannot record the post-command outcome");
        }
        if outcome.succeeded() {
            Ok(true)
        } else {
            Err(TfvarsFailure::PostCommand(format!(
                "post-command {}",
                outcome.describe()
            )))
        }
    }

    async fn keycloak_target(&self, registry: &Registry, leases: &Leases) -> TargetReport {
        let mut report = TargetReport::new(Utc::now());
        let configured = ConditionType::IdpConfigured;
        let Some(kc) = &self.keycloak else {
            report.result = RunResult::Skipped;
            let off = Observed::is_false(
                configured,
                reasons::KEYCLOAK_NOT_CONFIGURED,
                "sync.keycloak.base_url is not set: no identity provider is made",
            );
            self.record(registry, leases, std::slice::from_ref(&off))
                .await;
            return report;
        };
        if !self.admit(Target::Keycloak, &mut report).await {
            let msg = report.error.clone().unwrap_or_default();
            let open = Observed::is_false(configured, links::codes::CIRCUIT_OPEN, msg);
            self.record(registry, leases, std::slice::from_ref(&open))
                .await;
            return report;
        }
        let idps = match kc.list().await {
            Ok(list) => list,
            Err(e) => {
                report.result = RunResult::Failure;
                report.error = Some(e.to_string());
                report.transient = e.is_transient();
                let down = Observed::is_false(configured, link_code(&e), e.to_string());
                self.record(registry, leases, std::slice::from_ref(&down))
                    .await;
                let target_down = e.is_target_failure();
                self.settle(Target::Keycloak, &mut report, target_down)
                    .await;
                return report;
            }
        };
        // Only the holder acts on a spoke; orphans belong to no spoke.
        let actions: Vec<plan::IdpAction> = plan::keycloak_actions(registry, &idps, &self.settings)
            .into_iter()
            .filter(|a| a.spoke.as_ref().is_none_or(|s| leases.holds(&s.id)))
            .collect();
        let results: Vec<(plan::IdpAction, Result<(), KeycloakError>)> =
            futures::stream::iter(actions)
                .map(|a| async move {
                    let r = self.apply(kc, &a).await;
                    (a, r)
                })
                .buffer_unordered(KEYCLOAK_CONCURRENCY)
                .collect()
                .await;

        let mut failed_spokes: BTreeMap<String, (&'static str, String)> = BTreeMap::new();
        let mut errors = Vec::new();
        let mut target_down = false;
        for (action, result) in &results {
            let what = describe(&action.change);
            match (result, &action.change) {
                (Ok(()), IdpChange::Blocked { alias, .. }) => {
                    let msg = format!(
                        "identity provider {alias} exists and is not managed by this service; left alone"
                    );
                    errors.push(msg.clone());
                    if let Some(s) = &action.spoke {
                        failed_spokes.insert(s.id.clone(), (links::codes::IDP_ALIAS_TAKEN, msg));
                    }
                }
                (Ok(()), _) => {
                    report.changes += 1;
                    report.actions.push(what);
                }
                (Err(e), _) => {
                    target_down |= e.is_target_failure();
                    report.transient |= e.is_transient();
                    let msg = format!("{what}: {e}");
                    errors.push(msg.clone());
                    if let Some(s) = &action.spoke {
                        failed_spokes.insert(s.id.clone(), (link_code(e), msg));
                    }
                }
            }
        }
        report.actions.sort();
        if !errors.is_empty() {
            report.result = RunResult::Failure;
            report.error = Some(summarise(&errors));
        }
        // IdpConfigured: approved spokes whose IdP is in place are True.
        let observed: Vec<(&str, i64, Observed)> = registry
            .approved()
            .map(|spoke| {
                let o = match failed_spokes.get(&spoke.id) {
                    Some((code, msg)) => Observed::is_false(configured, code, msg.clone()),
                    None => Observed::is_true(configured, reasons::IN_SYNC),
                };
                (spoke.id.as_str(), spoke.generation, o)
            })
            .collect();
        let rows: Vec<(&str, i64, &Observed)> =
            observed.iter().map(|(id, g, o)| (*id, *g, o)).collect();
        self.record_rows(&rows, leases).await;
        self.settle(Target::Keycloak, &mut report, target_down)
            .await;
        report
    }

    async fn apply(
        &self,
        kc: &KeycloakClient,
        action: &plan::IdpAction,
    ) -> Result<(), KeycloakError> {
        match (&action.change, &action.body) {
            (IdpChange::Create { .. }, Some(body)) => match kc.create(body).await {
                // Created meanwhile (by a run we do not see, or a retry whose
                // first answer was lost): make it right on the next run.
                Err(KeycloakError::Status { status: 409, .. }) => {
                    match kc.get(&body.alias).await? {
                        Some(actual) if idp::is_managed(&actual) => {
                            kc.update(&idp::merged(body, &actual)).await
                        }
                        _ => Err(KeycloakError::Status {
                            op: "create an identity provider",
                            status: 409,
                            detail: ": the alias is taken".into(),
                        }),
                    }
                }
                other => other,
            },
            (IdpChange::Update { .. }, Some(body)) => kc.update(body).await,
            (IdpChange::Delete { alias }, _) => kc.delete(alias).await.map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Probes every approved spoke's IdP side by side and records
    /// `IdpReachable`.
    async fn probe_idps(&self, registry: &Registry, leases: &Leases) {
        // Owned spokes: a stream of borrowed ones is not provably Send.
        let spokes: Vec<registry::Spoke> = registry
            .approved()
            .filter(|s| leases.holds(&s.id))
            .cloned()
            .collect();
        let (http, settings) = (&self.probe_http, &self.settings);
        let observed: Vec<(registry::Spoke, Observed)> = futures::stream::iter(spokes)
            .map(|spoke| async move {
                let o = probe::probe(http, &spoke, settings).await;
                (spoke, o)
            })
            .buffer_unordered(KEYCLOAK_CONCURRENCY)
            .collect()
            .await;
        let rows: Vec<(&str, i64, &Observed)> = observed
            .iter()
            .map(|(s, o)| (s.id.as_str(), s.generation, o))
            .collect();
        self.record_rows(&rows, leases).await;
    }

    /// Records `observed` for every approved spoke of the run.
    async fn record(&self, registry: &Registry, leases: &Leases, observed: &[Observed]) {
        let rows: Vec<(&str, i64, &Observed)> = registry
            .approved()
            .flat_map(|s| observed.iter().map(|o| (s.id.as_str(), s.generation, o)))
            .collect();
        self.record_rows(&rows, leases).await;
    }

    /// One statement, fenced by the spokes' leases (rows of spokes not
    /// leased are dropped); a failure is logged (the next run writes them
    /// again).
    async fn record_rows(&self, rows: &[(&str, i64, &Observed)], leases: &Leases) {
        let (rows, tokens): (Vec<(&str, i64, &Observed)>, Vec<i64>) = rows
            .iter()
            .filter_map(|r| Some((*r, leases.token(r.0)?)))
            .unzip();
        match crate::store::conditions::set_many_fenced(&self.pool, &rows, &tokens).await {
            Ok(n) if n < rows.len() as u64 => tracing::warn!(
                refused = rows.len() as u64 - n,
                "conditions refused: their spokes' leases moved on to another holder"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(conditions = rows.len(), error = %e, "cannot record the conditions")
            }
        }
    }

    /// Looks at the three sides now. Keycloak is read unless its breaker
    /// is open (then it is reported as not checked).
    pub async fn observe(&self) -> Result<Observation, SyncError> {
        let registry = registry::load(&self.pool).await?;
        let tfvars = if self.settings.tfvars.enabled {
            let t = &self.settings.tfvars;
            let (path, format) = (t.path.clone(), t.format);
            let current = tokio::task::spawn_blocking(move || tfvars::read(&path, format))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            Some(TfvarsSide {
                path: t.path.clone(),
                desired: tfvars::desired(&registry, &self.settings),
                current,
            })
        } else {
            None
        };
        let keycloak = match &self.keycloak {
            Some(kc) => Some(match self.keycloak_breaker.status().await? {
                // An open breaker means Keycloak is down: do not call it,
                // and do not take the half-open trial meant for a run.
                b if b.state == BreakerState::Open
                    && b.retry_at.is_some_and(|t| t > Utc::now()) =>
                {
                    Err(format!(
                        "circuit breaker open until {} (last error: {})",
                        b.retry_at
                            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                            .unwrap_or_default(),
                        b.last_error.unwrap_or_default()
                    ))
                }
                _ => kc.list().await.map_err(|e| e.to_string()),
            }),
            None => None,
        };
        Ok(Observation {
            registry,
            tfvars,
            keycloak,
        })
    }

    /// What a reconcile would do now (`--dry-run`).
    pub async fn plan(&self) -> Result<Plan, SyncError> {
        let obs = self.observe().await?;
        Ok(plan::plan(&obs, &self.settings))
    }

    /// The drift report, also published as `federation_drift_items`.
    pub async fn drift(&self) -> Result<DriftReport, SyncError> {
        let obs = self.observe().await?;
        let report = drift::report(&obs, &self.settings);
        for kind in report.checked_kinds() {
            self.metrics
                .drift_items
                .get_or_create(&metrics::KindLabels {
                    kind: kind.as_str(),
                })
                .set(report.counts.get(kind.as_str()).copied().unwrap_or(0) as i64);
        }
        Ok(report)
    }

    /// Marks the legacy IdP `<code>-idp` as managed (`federation drift
    /// --adopt`), under the reconcile lock so no run is half-way through
    /// it. Only the marker is written; the next reconcile does the rest.
    pub async fn adopt(&self, code: &str) -> Result<drift::Adoption, drift::AdoptError> {
        let code = code.to_ascii_uppercase();
        if !protocol::is_valid_instance_code(&code) {
            return Err(drift::AdoptError::InvalidCode(code));
        }
        let kc = self
            .keycloak
            .as_ref()
            .ok_or(drift::AdoptError::KeycloakOff)?;
        let alias = idp::alias(&code.to_ascii_lowercase());
        let mut lock = self.pool.begin().await?;
        crate::store::sync::advisory_xact_lock(&mut lock, RECONCILE_LOCK).await?;
        let actual = kc
            .get(&alias)
            .await?
            .ok_or_else(|| drift::AdoptError::NoSuchIdp(alias.clone()))?;
        if idp::is_managed(&actual) {
            return Ok(drift::Adoption::AlreadyManaged { alias });
        }
        kc.update(&idp::adopted(&actual)).await?;
        let registry = registry::load(&self.pool).await?;
        let spoke = registry
            .spokes
            .iter()
            .find(|s| s.instance_code == code)
            .map(|s| s.status.clone());
        let _ = lock.rollback().await;
        tracing::info!(alias = %alias, "adopted a legacy identity provider");
        Ok(drift::Adoption::Adopted { alias, spoke })
    }

    /// Breakers, recent runs and the post-command's last outcome.
    pub async fn status(&self, worker_enabled: bool) -> Result<status::SyncStatus, SyncError> {
        let mut breakers = Vec::new();
        for t in Target::ALL {
            let b = self.breaker(t).status().await?;
            self.metrics.set_breaker(t, b.state.gauge_value());
            breakers.push(b);
        }
        Ok(status::SyncStatus {
            worker_enabled,
            keycloak_configured: self.keycloak.is_some(),
            tfvars_path: self
                .settings
                .tfvars
                .enabled
                .then(|| self.settings.tfvars.path.display().to_string()),
            breakers,
            recent_runs: status::recent_runs(&self.pool, 20).await?,
            post_command: status::post_command(&self.pool).await?,
        })
    }

    /// Refreshes `circuit_breaker_state` from the database (at scrape time:
    /// another replica may have moved a breaker).
    pub async fn refresh_breaker_gauges(&self) -> Result<(), sqlx::Error> {
        for t in Target::ALL {
            let b = self.breaker(t).status().await?;
            self.metrics.set_breaker(t, b.state.gauge_value());
        }
        Ok(())
    }
}

/// Why the tfvars step failed: the file, or the post-command after it.
enum TfvarsFailure {
    Write(String),
    PostCommand(String),
}

fn link_code(e: &KeycloakError) -> &'static str {
    match e {
        KeycloakError::Unreachable { .. } => links::codes::KEYCLOAK_UNREACHABLE,
        KeycloakError::Auth { .. } => links::codes::KEYCLOAK_AUTH_FAILED,
        KeycloakError::Status { status, .. } if *status >= 500 || *status == 429 => {
            links::codes::KEYCLOAK_UNREACHABLE
        }
        KeycloakError::Status { status: 409, .. } => links::codes::IDP_ALIAS_TAKEN,
        _ => links::codes::KEYCLOAK_REJECTED,
    }
}

fn describe(change: &IdpChange) -> String {
    match change {
        IdpChange::Create { alias, .. } => format!("created {alias}"),
        IdpChange::Update { alias, fields, .. } => {
            format!("updated {alias} ({})", fields.join(", "))
        }
        IdpChange::Delete { alias } => format!("deleted {alias}"),
        IdpChange::Blocked { alias, .. } => format!("left {alias} alone (not managed)"),
    }
}

/// The first few errors, and how many more.
fn summarise(errors: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = errors
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > SHOWN {
        s.push_str(&format!("; and {} more", errors.len() - SHOWN));
    }
    s
}
