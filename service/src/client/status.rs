//! `federation status`: the federation on one screen, from five REST reads
//! made at once:
//!
//! | what | from |
//! |---|---|
//! | hubs by status, in maintenance | `GET /api/fed/projects` (every page) |
//! | spokes awaiting approval | `GET /api/federation/spokes?status=pending` |
//! | drift | `GET /api/federation/drift` |
//! | circuit breakers | `GET /api/federation/sync/status` |
//! | readiness, self-preservation | `GET /ready` (its `warnings`) |

use chrono::Utc;
use serde_json::{json, Map, Value};

use super::render::{self, ago, fields, s, time};
use super::{Api, ClientError, Format};

/// How `/ready` names self-preservation among its warnings.
const SELF_PRESERVATION: &str = "self-preservation: ";
const STATUSES: [&str; 3] = ["online", "degraded", "offline"];

pub async fn run(api: &Api, out: Format) -> Result<(), ClientError> {
    let (projects, pending, drift, sync, ready) = tokio::join!(
        api.list(&["api", "fed", "projects"], &[]),
        api.list(&["api", "federation", "spokes"], &[("status", "pending")]),
        api.get(&["api", "federation", "drift"], &[]),
        api.get(&["api", "federation", "sync", "status"], &[]),
        api.get_any(&["ready"]),
    );
    let (projects, pending, drift, sync, (_, ready)) = (projects?, pending?, drift?, sync?, ready?);
    let doc = summary(&api.server(), &projects, pending, drift, &sync, ready);
    match out {
        Format::Table => render::out(&screen(&doc)),
        _ => render::print_document(out, &doc),
    }
}

/// The status document (`-o json`): the answers, counted and picked.
fn summary(
    server: &str,
    projects: &[Value],
    pending: Vec<Value>,
    drift: Value,
    sync: &Value,
    ready: Value,
) -> Value {
    let mut by_status = Map::new();
    for status in STATUSES {
        let n = projects.iter().filter(|p| s(p, "status") == status).count();
        by_status.insert(status.into(), json!(n));
    }
    let not_online: Vec<Value> = projects
        .iter()
        .filter(|p| s(p, "status") != "online")
        .map(|p| json!({"slug": p["slug"], "status": p["status"], "last_heartbeat_at": p["last_heartbeat_at"]}))
        .collect();
    let in_maintenance: Vec<Value> = projects
        .iter()
        .filter(|p| p.get("maintenance").is_some_and(|m| !m.is_null()))
        .map(|p| json!({"slug": p["slug"], "status": p["status"], "maintenance": p["maintenance"]}))
        .collect();
    let reasons: Vec<Value> = ready
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|w| w.strip_prefix(SELF_PRESERVATION))
        .map(|w| json!(w))
        .collect();
    json!({
        "server": server,
        "ready": ready,
        "hubs": {"total": projects.len(), "by_status": by_status, "not_online": not_online},
        "in_maintenance": in_maintenance,
        "spokes_awaiting_approval": pending,
        "drift": drift,
        "breakers": sync.get("breakers").cloned().unwrap_or(json!([])),
        "self_preservation": {"on": !reasons.is_empty(), "reasons": reasons},
    })
}

/// The status document for people.
fn screen(doc: &Value) -> String {
    let now = Utc::now();
    let count = |v: &Value| v.as_array().map_or(0, Vec::len);
    let hubs = &doc["hubs"];
    let by = &hubs["by_status"];
    let mut hub_line = format!(
        "{} total: {}",
        hubs["total"],
        STATUSES
            .iter()
            .map(|st| format!("{} {st}", by[*st]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let silent: Vec<String> = hubs["not_online"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{} {} (last seen {})",
                s(p, "slug"),
                s(p, "status"),
                ago(time(p, "last_heartbeat_at"), now, "never")
            )
        })
        .collect();
    if !silent.is_empty() {
        hub_line += &format!("; {}", silent.join(", "));
    }
    let maintenance: Vec<String> = doc["in_maintenance"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{} ({})", s(p, "slug"), render::maintenance(p, now)))
        .collect();
    let pending: Vec<String> = doc["spokes_awaiting_approval"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|sp| {
            format!(
                "{} {} (registered {})",
                s(sp, "instance_code"),
                s(sp, "id"),
                ago(time(sp, "created_at"), now, "-")
            )
        })
        .collect();
    let ready = &doc["ready"];
    let readiness = match s(ready, "status") {
        "ready" => "ready".to_owned(),
        other => format!(
            "{} ({})",
            if other.is_empty() { "not ready" } else { other },
            render::list(ready, "reasons")
        ),
    };
    let sp = &doc["self_preservation"];
    let self_preservation = if sp["on"].as_bool() == Some(true) {
        format!("ON: {}", render::list(sp, "reasons"))
    } else {
        "off".to_owned()
    };
    fields(&[
        ("server", format!("{} ({readiness})", s(doc, "server"))),
        ("hubs", hub_line),
        (
            "in maintenance",
            with_count(count(&doc["in_maintenance"]), &maintenance),
        ),
        (
            "awaiting approval",
            with_count(count(&doc["spokes_awaiting_approval"]), &pending),
        ),
        ("drift", drift_line(&doc["drift"])),
        ("breakers", breakers_line(&doc["breakers"], now)),
        ("self-preservation", self_preservation),
    ])
}

fn with_count(n: usize, items: &[String]) -> String {
    if n == 0 {
        "none".into()
    } else {
        format!("{n}: {}", items.join(", "))
    }
}

fn drift_line(drift: &Value) -> String {
    let mut line = if drift["clean"].as_bool() == Some(true) {
        "clean".to_owned()
    } else {
        let items = drift["items"].as_array().map_or(0, Vec::len);
        let kinds: Vec<String> = drift["counts"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if kinds.is_empty() {
            format!("{items} item(s)")
        } else {
            format!("{items} item(s): {}", kinds.join(", "))
        }
    };
    let unchecked: Vec<String> = drift["unchecked"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| format!("{} ({})", s(u, "target"), render::clip(s(u, "reason"), 60)))
        .collect();
    if !unchecked.is_empty() {
        line += &format!("; not checked: {}", unchecked.join(", "));
    }
    line
}

fn breakers_line(breakers: &Value, now: chrono::DateTime<Utc>) -> String {
    let list: Vec<String> = breakers
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let state = s(b, "state");
            let mut text = format!("{} {}", s(b, "target"), state.replace('_', "-"));
            if state != "closed" {
                let retry = time(b, "retry_at")
                    .map(|at| {
                        format!(
                            ", retry in {}",
                            render::span((at - now).num_seconds().max(0))
                        )
                    })
                    .unwrap_or_default();
                text += &format!(
                    " ({} failures{retry}: {})",
                    b["consecutive_failures"],
                    render::clip(render::or(b, "last_error", "-"), 60)
                );
            }
            text
        })
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}
