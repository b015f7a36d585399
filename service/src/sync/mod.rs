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
//! A run starts by rolling in approved revisions whose new IdP answers
//! ([`rollout`]). A withdrawn (suspended, revoked) spoke's steps are
//! undone in reverse order: its IdP first, then its tfvars entry (which
//! waits for that), then the post-command.
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
pub mod rollout;
pub mod status;
pub mod tfvars;
pub mod timeouts;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet};
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
pub(crate) const KEYCLOAK_CONCURRENCY: usize = 8;

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
    /// Lower-case codes of withdrawn spokes whose undo in this target
    /// failed (the next target keeps their steps: reverse order).
    #[serde(skip)]
    pub undo_failed: BTreeSet<String>,
}

impl TargetReport {
    fn new(started_at: DateTime<Utc>) -> Self {
        TargetReport {
            transient: false,
            undo_failed: BTreeSet::new(),
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
    /// The adaptive timeouts of IdP probe requests and of the post-command.
    probe_timeout: timeouts::StepTimeout,
    post_command_timeout: timeouts::StepTimeout,
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
        let adaptive = &settings.adaptive_timeout;
        let probe_timeout = timeouts::StepTimeout::new(adaptive, timeout);
        let command_limit = settings.tfvars.post_command_timeout;
        let post_command_timeout =
            timeouts::StepTimeout::with_max(adaptive, command_limit, command_limit);
        let engine = SyncEngine {
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
            probe_timeout,
            post_command_timeout,
        };
        engine.publish_step_timeouts();
        Ok(engine)
    }

    /// `sync_step_timeout_seconds` for every step, as they stand.
    fn publish_step_timeouts(&self) {
        use timeouts::Step;
        for (step, t) in [
            (Step::KeycloakRequest, &*self.keycloak_timeout),
            (Step::IdpProbe, &self.probe_timeout),
            (Step::PostCommand, &self.post_command_timeout),
        ] {
            self.metrics.set_step_timeout(step, t.current());
        }
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
        let ids: Vec<String> = registry.all().map(|s| s.id.clone()).collect();
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
        // Approved revisions whose new IdP answers roll in first, so this
        // very run renders and configures them.
        let registry = if self.roll_out_revisions(&registry, &leases).await {
            registry::load(&self.pool).await?
        } else {
            registry
        };
        // Side by side, except that a withdrawn spoke's tfvars entry waits
        // for Keycloak's undo of its IdP (reverse order).
        let (undo_tx, undo_rx) = tokio::sync::oneshot::channel();
        let keycloak_then_tell = async {
            let report = self.keycloak_target(&registry, &leases).await;
            let _ = undo_tx.send(report.undo_failed.clone());
            report
        };
        let (tfvars, keycloak, ()) = tokio::join!(
            self.timed(
                Target::Tfvars,
                trigger,
                self.tfvars_target(&registry, &leases, undo_rx)
            ),
            self.timed(Target::Keycloak, trigger, keycloak_then_tell),
            self.probe_idps(&registry, &leases),
        );
        let approved_ids: Vec<String> = registry.approved().map(|s| s.id.clone()).collect();
        if let Err(e) = links::derive(&self.pool, &approved_ids, &leases).await {
            tracing::warn!(error = %e, "cannot derive the links from the conditions");
        }
        if let Err(e) = leases.release(&self.pool).await {
            tracing::warn!(error = %e, "cannot release the spoke leases (they expire)");
        }
        self.publish_step_timeouts();
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

    async fn tfvars_target(
        &self,
        registry: &Registry,
        leases: &Leases,
        undo_failed: tokio::sync::oneshot::Receiver<BTreeSet<String>>,
    ) -> TargetReport {
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
            let every = registry.approved().chain(registry.withdrawn());
            self.record_for(every, leases, &observed).await;
            return report;
        }
        if !self.admit(Target::Tfvars, &mut report).await {
            return report;
        }
        let mut partners = tfvars::desired(registry, &self.settings);
        let kept = self.keep_undone(&mut partners, registry, undo_failed).await;
        let outcome = self.write_tfvars(&partners, &mut report).await;
        let (observed, withdrawal) = match &outcome {
            Ok(command) => {
                let (reason, undone) = if *command {
                    (reasons::APPLIED, "the post-command applied its withdrawal")
                } else {
                    (
                        reasons::NO_POST_COMMAND,
                        "no post-command to apply its withdrawal",
                    )
                };
                (
                    vec![
                        Observed::is_true(rendered, reasons::RENDERED),
                        Observed::is_true(applied, reason),
                    ],
                    vec![
                        Observed::is_false(
                            rendered,
                            reasons::WITHDRAWN,
                            "out of the tfvars file, or rendered disabled",
                        ),
                        Observed::is_false(applied, reasons::WITHDRAWN, undone),
                    ],
                )
            }
            Err(TfvarsFailure::Write(e)) => {
                let failed = Observed::is_false(rendered, reasons::TFVARS_WRITE_FAILED, e);
                (vec![failed.clone()], vec![failed])
            }
            Err(TfvarsFailure::PostCommand(e)) => {
                let failed = Observed::is_false(applied, reasons::POST_COMMAND_FAILED, e);
                (
                    vec![
                        Observed::is_true(rendered, reasons::RENDERED),
                        failed.clone(),
                    ],
                    vec![
                        Observed::is_false(rendered, reasons::WITHDRAWN, "out of the tfvars file"),
                        failed,
                    ],
                )
            }
        };
        self.record(registry, leases, &observed).await;
        // Withdrawn spokes: undone here only once their IdP is (reverse
        // order); until then their entry stays as it was.
        let is_kept = |s: &&registry::Spoke| kept.contains(&s.code_lower());
        let gone = registry.withdrawn().filter(|s| !is_kept(s));
        self.record_for(gone, leases, &withdrawal).await;
        let keep = Observed::new(
            rendered,
            crate::conditions::ConditionStatus::True,
            reasons::KEPT_UNTIL_IDP_UNDONE,
            "kept in the file as it was until its identity provider is disabled or deleted",
        );
        let held = registry.withdrawn().filter(is_kept);
        self.record_for(held, leases, std::slice::from_ref(&keep))
            .await;
        let failed = outcome.is_err();
        if let Err(TfvarsFailure::Write(e) | TfvarsFailure::PostCommand(e)) = outcome {
            report.result = RunResult::Failure;
            report.error = Some(e);
            report.transient = true;
        }
        self.settle(Target::Tfvars, &mut report, failed).await;
        report
    }

    /// Keeps in `partners`, as the file has them now, the entries of the
    /// withdrawn spokes this write would change whose IdP Keycloak could
    /// not undo (it says which through `undo_failed`, awaited only when
    /// there is such an entry: otherwise the file never waits for
    /// Keycloak); the codes kept. A live spoke's entry is never replaced.
    async fn keep_undone(
        &self,
        partners: &mut BTreeMap<String, tfvars::Partner>,
        registry: &Registry,
        undo_failed: tokio::sync::oneshot::Receiver<BTreeSet<String>>,
    ) -> BTreeSet<String> {
        let live: BTreeSet<String> = registry.approved().map(|s| s.code_lower()).collect();
        let withdrawn: BTreeSet<String> = registry
            .withdrawn()
            .map(|s| s.code_lower())
            .filter(|c| !live.contains(c))
            .collect();
        if withdrawn.is_empty() {
            return BTreeSet::new();
        }
        let t = &self.settings.tfvars;
        let (path, format) = (t.path.clone(), t.format);
        let current = match tokio::task::spawn_blocking(move || tfvars::read(&path, format)).await {
            Ok(Ok(Some(current))) => current,
            _ => return BTreeSet::new(),
        };
        let changing: BTreeMap<String, tfvars::Partner> = withdrawn
            .into_iter()
            .filter_map(|code| {
                let entry = serde_json::from_value(current.get(&code)?.clone()).ok()?;
                (partners.get(&code) != Some(&entry)).then_some((code, entry))
            })
            .collect();
        if changing.is_empty() {
            return BTreeSet::new();
        }
        let failed = undo_failed
            .await
            .unwrap_or_else(|_| changing.keys().cloned().collect());
        let mut kept = BTreeSet::new();
        for (code, entry) in changing {
            if failed.contains(&code) {
                partners.insert(code.clone(), entry);
                kept.insert(code);
            }
        }
        kept
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
        let clock = Instant::now();
        let outcome = tfvars::run_post_command(
            &t.post_command,
            &path,
            partners.len(),
            self.post_command_timeout.current(),
        )
        .await;
        if outcome.succeeded() {
            self.post_command_timeout.record_success(clock.elapsed());
        }
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
            let every = registry.approved().chain(registry.withdrawn());
            self.record_for(every, leases, std::slice::from_ref(&off))
                .await;
            return report;
        };
        if !self.admit(Target::Keycloak, &mut report).await {
            let msg = report.error.clone().unwrap_or_default();
            let open = Observed::is_false(configured, links::codes::CIRCUIT_OPEN, msg);
            self.record_not_done(registry, leases, &open, &mut report)
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
                self.record_not_done(registry, leases, &down, &mut report)
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

        // Failures by alias, and so by the spoke of that code (a revoked
        // spoke's IdP is an orphan's delete).
        let mut failed: BTreeMap<String, (&'static str, String)> = BTreeMap::new();
        let mut errors = Vec::new();
        let mut target_down = false;
        for (action, result) in &results {
            let what = describe(&action.change);
            let alias = action.change.alias().to_owned();
            match (result, &action.change) {
                (Ok(()), IdpChange::Blocked { alias, .. }) => {
                    let msg = format!(
                        "identity provider {alias} exists and is not managed by this service; left alone"
                    );
                    errors.push(msg.clone());
                    failed.insert(alias.clone(), (links::codes::IDP_ALIAS_TAKEN, msg));
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
                    failed.insert(alias, (link_code(e), msg));
                }
            }
        }
        report.actions.sort();
        if !errors.is_empty() {
            report.result = RunResult::Failure;
            report.error = Some(summarise(&errors));
        }
        let failure = |s: &registry::Spoke| failed.get(&idp::alias(&s.code_lower())).cloned();
        // IdpConfigured: approved spokes whose IdP is in place are True;
        // withdrawn ones whose IdP is disabled or deleted are False with
        // the undo's reason (an unmanaged IdP of that alias is not ours to
        // undo).
        let mut observed: Vec<(&str, i64, Observed)> = registry
            .approved()
            .map(|spoke| {
                let o = match failure(spoke) {
                    Some((code, msg)) => Observed::is_false(configured, code, msg),
                    None => Observed::is_true(configured, reasons::IN_SYNC),
                };
                (spoke.id.as_str(), spoke.generation, o)
            })
            .collect();
        for spoke in registry.withdrawn() {
            if !leases.holds(&spoke.id) {
                // Another holder's: not known to be undone by this run.
                report.undo_failed.insert(spoke.code_lower());
                continue;
            }
            let o = match failure(spoke) {
                Some((code, msg)) if code != links::codes::IDP_ALIAS_TAKEN => {
                    report.undo_failed.insert(spoke.code_lower());
                    Observed::is_false(configured, code, msg)
                }
                _ if spoke.is_suspended() => Observed::is_false(
                    configured,
                    reasons::IDP_DISABLED,
                    "the spoke is suspended: its identity provider is disabled",
                ),
                _ => Observed::is_false(
                    configured,
                    reasons::IDP_REMOVED,
                    "the spoke is revoked: its identity provider is deleted",
                ),
            };
            observed.push((spoke.id.as_str(), spoke.generation, o));
        }
        let rows: Vec<(&str, i64, &Observed)> =
            observed.iter().map(|(id, g, o)| (*id, *g, o)).collect();
        self.record_rows(&rows, leases).await;
        self.settle(Target::Keycloak, &mut report, target_down)
            .await;
        report
    }

    /// Keycloak could not be worked on: `observed` for every approved and
    /// withdrawn spoke, and no withdrawn spoke's IdP is undone.
    async fn record_not_done(
        &self,
        registry: &Registry,
        leases: &Leases,
        observed: &Observed,
        report: &mut TargetReport,
    ) {
        report
            .undo_failed
            .extend(registry.withdrawn().map(|s| s.code_lower()));
        let every = registry.approved().chain(registry.withdrawn());
        self.record_for(every, leases, std::slice::from_ref(observed))
            .await;
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
        let (http, settings, timeout) = (&self.probe_http, &self.settings, &self.probe_timeout);
        let observed: Vec<(registry::Spoke, Observed)> = futures::stream::iter(spokes)
            .map(|spoke| async move {
                let o = probe::probe(http, &spoke, settings, timeout).await;
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
        let withdrawn = Observed::unknown(
            ConditionType::IdpReachable,
            reasons::WITHDRAWN,
            "not probed: the spoke is suspended or revoked",
        );
        self.record_for(
            registry.withdrawn(),
            leases,
            std::slice::from_ref(&withdrawn),
        )
        .await;
    }

    /// Records `observed` for every approved spoke of the run.
    async fn record(&self, registry: &Registry, leases: &Leases, observed: &[Observed]) {
        self.record_for(registry.approved(), leases, observed).await;
    }

    /// Records `observed` for each of `spokes`.
    async fn record_for<'a>(
        &self,
        spokes: impl Iterator<Item = &'a registry::Spoke>,
        leases: &Leases,
        observed: &[Observed],
    ) {
        let rows: Vec<(&str, i64, &Observed)> = spokes
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
