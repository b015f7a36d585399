//! `federation sync` and `federation drift`.

use std::fmt::Write as _;

use anyhow::Context;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::drift::DriftReport;
use super::plan::{IdpChange, Plan};
use super::{RunReport, SyncEngine, SyncSettings, Trigger};
use crate::config::{Settings, TfvarsFormat};
use crate::store;

/// The database pool of `federation sync` and `drift`, once the database
/// answers and its schema is current (migrated here when
/// `database.migrate_on_start`, else refused while migrations are pending).
pub async fn ready_pool(settings: &Settings, cancel: &CancellationToken) -> anyhow::Result<PgPool> {
    let options = store::connect_options(&settings.database).context("database.url")?;
    let pool = store::lazy_pool(&settings.database, options);
    store::wait_until_reachable(&pool, settings.database.startup_timeout, cancel).await?;
    if settings.database.migrate_on_start {
        store::migrate(&pool).await.context("applying migrations")?;
    } else if store::pending_migrations(&pool).await? > 0 {
        anyhow::bail!("the database schema is not up to date: run `federation migrate` first");
    }
    Ok(pool)
}

async fn engine(settings: &Settings, cancel: &CancellationToken) -> anyhow::Result<SyncEngine> {
    let pool = ready_pool(settings, cancel).await?;
    let metrics = super::metrics::SyncMetrics::new(&mut Registry::default());
    SyncEngine::new(pool, settings.sync.clone(), metrics).context("setting up the Keycloak client")
}

/// `federation sync --once`. `Ok(false)`: a target failed. (Without
/// `--once`, the worker runs from the service's components:
/// `app::run_sync`.)
pub async fn sync_once(settings: Settings) -> anyhow::Result<bool> {
    let cancel = CancellationToken::new();
    tokio::spawn(common::signal::cancel_on_signal(cancel.clone()));
    let engine = engine(&settings, &cancel).await?;
    let report = engine.reconcile(Trigger::Manual).await?;
    print!("{}", run_text(&report));
    Ok(!report.failed())
}

/// `federation drift`. `Ok(false)`: drift found, or a side not checked.
pub async fn drift(
    settings: Settings,
    json: bool,
    fix: bool,
    dry_run: bool,
    adopt: Option<String>,
) -> anyhow::Result<bool> {
    let cancel = CancellationToken::new();
    tokio::spawn(common::signal::cancel_on_signal(cancel.clone()));
    let engine = engine(&settings, &cancel).await?;
    let adoption = match adopt {
        Some(code) => Some(engine.adopt(&code).await.context("adopting")?),
        None => None,
    };
    if let (Some(a), false) = (&adoption, json) {
        print!("{}", a.text());
    }
    if dry_run {
        let plan = engine.plan().await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", plan_text(&plan));
        }
        return Ok(plan.is_empty());
    }
    let run = if fix {
        Some(engine.reconcile(Trigger::Manual).await?)
    } else {
        None
    };
    let report = engine.drift().await?;
    if json {
        let value = match (&adoption, &run) {
            (None, None) => serde_json::to_value(&report)?,
            (adopted, run) => {
                serde_json::json!({"adopted": adopted, "run": run, "drift": report})
            }
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        if let Some(run) = &run {
            print!("{}", run_text(run));
        }
        print!("{}", drift_text(&report));
    }
    Ok(report.clean)
}

pub fn run_text(r: &RunReport) -> String {
    let mut out = format!(
        "sync run ({}): {} approved spoke(s)\n",
        r.trigger.as_str(),
        r.approved_spokes
    );
    for (name, t) in [("tfvars", &r.tfvars), ("keycloak", &r.keycloak)] {
        let (result, changes) = (t.result.as_str(), t.changes);
        let error = t.error.as_deref().map(|e| format!(": {e}"));
        let error = error.unwrap_or_default();
        let _ = writeln!(out, "  {name:<9} {result} ({changes} change(s)){error}");
        for a in &t.actions {
            let _ = writeln!(out, "    {a}");
        }
    }
    out
}

pub fn drift_text(r: &DriftReport) -> String {
    let mut out = String::new();
    if r.clean {
        let _ = writeln!(
            out,
            "no drift: {} approved spoke(s); registry, Keycloak, tfvars and hub liveness agree",
            r.approved_spokes
        );
        return out;
    }
    let _ = writeln!(
        out,
        "drift: {} item(s), {} approved spoke(s)",
        r.items.len(),
        r.approved_spokes
    );
    for i in &r.items {
        let (kind, subject, detail) = (i.kind.as_str(), &i.subject, &i.detail);
        let _ = writeln!(out, "  {kind:<32} {subject:<12} {detail}");
    }
    for u in &r.unchecked {
        let _ = writeln!(out, "  not checked: {}: {}", u.target.as_str(), u.reason);
    }
    out
}

pub fn plan_text(p: &Plan) -> String {
    let mut out = String::new();
    if p.is_empty() {
        out.push_str("nothing to do: the targets match the registry\n");
    }
    if let Some(t) = &p.tfvars {
        if t.write {
            let _ = writeln!(
                out,
                "tfvars: write {} ({} partners; added [{}], removed [{}], changed [{}])",
                t.path,
                t.partners,
                t.added.join(", "),
                t.removed.join(", "),
                t.changed.join(", ")
            );
        }
    }
    if let Some(k) = &p.keycloak {
        if let Some(e) = &k.error {
            let _ = writeln!(out, "keycloak: cannot plan: {e}");
        }
        for c in &k.changes {
            let line = match c {
                IdpChange::Create { alias, spoke_id } => format!("create {alias} for {spoke_id}"),
                IdpChange::Update { alias, fields, .. } => {
                    format!("update {alias}: {}", fields.join(", "))
                }
                IdpChange::Delete { alias } => format!("delete {alias}"),
                IdpChange::Blocked { alias, .. } => {
                    format!("blocked: {alias} exists and is not managed by this service")
                }
            };
            let _ = writeln!(out, "keycloak ({}): {line}", k.realm);
        }
    }
    out
}

/// The `sync` lines of `check-config`; secrets never shown.
pub fn summary(s: &SyncSettings) -> String {
    let mut out = format!(
        "  sync:             {} (consumer {}, resync every {})\n",
        if s.enabled { "worker on" } else { "worker off" },
        s.consumer,
        humantime::format_duration(s.resync_interval)
    );
    if s.tfvars.enabled {
        let _ = writeln!(
            out,
            "  sync tfvars:      {} ({}){}",
            s.tfvars.path.display(),
            match s.tfvars.format {
                TfvarsFormat::Hcl => "hcl",
                TfvarsFormat::Json => "json",
            },
            if s.tfvars.post_command.is_empty() {
                String::new()
            } else {
                format!(", then: {}", s.tfvars.post_command.join(" "))
            }
        );
    } else {
        out += "  sync tfvars:      off\n";
    }
    match &s.keycloak.base_url {
        Some(url) => {
            let _ = writeln!(
                out,
                "  sync keycloak:    {} realm {} (login: {} as {})",
                url.as_str().trim_end_matches('/'),
                s.keycloak.realm,
                if s.keycloak.username.is_some() {
                    "password grant"
                } else {
                    "client credentials"
                },
                s.keycloak
                    .username
                    .as_deref()
                    .unwrap_or(&s.keycloak.client_id)
            );
        }
        None => out += "  sync keycloak:    off (sync.keycloak.base_url unset)\n",
    }
    out
}
