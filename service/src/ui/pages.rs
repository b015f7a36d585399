//! The UI's pages, as maud markup. Every status is a word beside its
//! colour and symbol; every form control has a label; no inline script or
//! style (the policy forbids both).

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use serde::Serialize;

use super::session::CSRF_FIELD;
use super::HubFilter;
use crate::catalog::{Project, ProjectStatus};
use crate::spoke::{FederationLink, Spoke, SpokeAction, SpokeStatus};
use crate::store::history::ProjectTransition;
use crate::sync::drift::DriftReport;
use crate::sync::status::SyncStatus;

/// What every signed-in page shows around its content.
pub struct Chrome {
    /// Who is signed in, e.g. `admin key sha256:1a2b3c4d`.
    pub who: String,
    pub csrf: String,
    pub admin: bool,
    /// The sweeper's self-preservation, when on.
    pub self_preservation: Option<String>,
}

/// A page as an HTML response.
pub fn html(markup: Markup) -> axum::response::Html<String> {
    axum::response::Html(markup.into_string())
}

/// The snake_case name serde gives an enum value.
fn name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn head(title: &str) -> Markup {
    html! {
        (DOCTYPE)
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Federation" }
            link rel="stylesheet" href="/ui/static/ui.css";
            script src="/ui/static/ui.js" defer {}
        }
    }
}

fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
}

/// A signed-in page: navigation, sign-out, the self-preservation banner.
fn page(title: &str, current: &str, chrome: &Chrome, body: Markup) -> Markup {
    let nav = [
        ("/ui/hubs", "Hubs"),
        ("/ui/spokes", "Spokes"),
        ("/ui/federation", "Links, drift and breakers"),
    ];
    html! {
        html lang="en" {
            (head(title))
            body data-live="/ui/events" {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "Federation control plane" }
                    nav aria-label="Sections" {
                        ul {
                            @for (href, label) in nav {
                                li {
                                    @if href == current {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span { "Signed in as " (chrome.who) @if !chrome.admin { " (read-only)" } }
                        form method="post" action="/ui/logout" {
                            (csrf(&chrome.csrf))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                @if let Some(reason) = &chrome.self_preservation {
                    div.banner role="alert" id="self-preservation" {
                        strong { "Self-preservation is on. " }
                        "Silent hubs are not being marked offline: " (reason)
                    }
                }
                div.live id="live" role="status" aria-live="polite" {}
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A standalone error page (also shown signed out).
pub fn error_page(title: &str, detail: &str) -> Markup {
    html! {
        html lang="en" {
            (head(title))
            body {
                main id="main" {
                    h1 { (title) }
                    p.error role="alert" { (detail) }
                    p { a href="/ui/hubs" { "Back to the hubs" } }
                }
            }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    html! {
        html lang="en" {
            (head("Sign in"))
            body {
                main id="main" .narrow {
                    h1 { "Sign in" }
                    p { "Sign in with an API key (admin or agent) or a hub token. The key is not stored in your browser: it is exchanged for a session cookie." }
                    @if let Some(e) = error {
                        p.error role="alert" id="login-error" { (e) }
                    }
                    form method="post" action="/ui/login" {
                        label for="api_key" { "API key" }
                        input type="password" id="api_key" name="api_key" required autocomplete="current-password" autofocus;
                        button type="submit" id="sign-in" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// A table's head: a column header a name.
fn column_heads<'a>(names: impl IntoIterator<Item = &'a str>) -> Markup {
    html! { thead { tr { @for name in names { th scope="col" { (name) } } } } }
}

fn status_badge(status: ProjectStatus) -> Markup {
    let s = status.as_str();
    let symbol = match status {
        ProjectStatus::Online => "●",
        ProjectStatus::Degraded => "▲",
        ProjectStatus::Offline => "■",
    };
    html! {
        span class={ "badge status-" (s) } data-status=(s) {
            span.symbol aria-hidden="true" { (symbol) } " " span.word { (s) }
        }
    }
}

fn spoke_badge(status: SpokeStatus) -> Markup {
    let s = status.as_str();
    html! { span class={ "badge spoke-" (s) } data-status=(s) { span.word { (s) } } }
}

/// "12s ago", with the exact time in a `<time>`.
fn ago(now: DateTime<Utc>, at: Option<DateTime<Utc>>) -> Markup {
    let Some(at) = at else {
        return html! { span.none { "never" } };
    };
    let secs = (now - at).num_seconds().max(0);
    let text = match secs {
        0..=89 => format!("{secs}s ago"),
        90..=5399 => format!("{}m ago", secs / 60),
        5400..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    };
    let exact = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    html! { time datetime=(exact) title=(exact) { (text) } }
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn maintenance_cell(p: &Project, now: DateTime<Utc>) -> Markup {
    match p.maintenance_at(now) {
        Some(m) => html! {
            span.badge.maint { "maintenance" } " until " time datetime=(m.until.to_rfc3339()) { (when(m.until)) } ": " (m.reason) " (" (m.by) ")"
        },
        None => html! { span.none { "—" } },
    }
}

pub fn hubs(
    chrome: &Chrome,
    filter: &HubFilter,
    projects: &[Project],
    now: DateTime<Utc>,
) -> Markup {
    let body = html! {
        form.filters method="get" action="/ui/hubs" role="search" aria-label="Filter hubs" {
            div {
                label for="q" { "Search (slug or name)" }
                input type="search" id="q" name="q" value=(filter.q);
            }
            div {
                label for="status" { "Status" }
                select id="status" name="status" {
                    option value="" selected[filter.status.is_empty()] { "any" }
                    @for s in ProjectStatus::ALL {
                        option value=(s.as_str()) selected[filter.status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            div {
                label for="tag" { "Tag" }
                input type="text" id="tag" name="tag" value=(filter.tag);
            }
            button type="submit" { "Filter" }
            a href="/ui/hubs" { "Clear" }
        }
        p id="hub-count" { (projects.len()) " hub" @if projects.len() != 1 { "s" } }
        table id="hubs" {
            caption.sr-only { "Hubs, their liveness and maintenance" }
            (column_heads(["Hub", "Status", "Last seen", "Interval", "Tags", "Maintenance"]))
            tbody {
                @for p in projects {
                    tr id={ "hub-" (p.slug) } data-slug=(p.slug) {
                        th scope="row" {
                            a href={ "/ui/hubs/" (p.slug) } { (p.slug) }
                            br; span.sub { (p.name) }
                        }
                        td data-field="status" { (status_badge(p.status)) }
                        td data-field="last-seen" { (ago(now, p.last_heartbeat_at)) }
                        td data-field="interval" {
                            @match p.heartbeat_interval_s { Some(s) => { (s) "s" }, None => span.none { "—" } }
                        }
                        td data-field="tags" {
                            @for t in &p.tags { span.tag { (t) } " " }
                        }
                        td data-field="maintenance" { (maintenance_cell(p, now)) }
                    }
                }
            }
        }
        @if projects.is_empty() { p { "No hub matches." } }
    };
    page("Hubs", "/ui/hubs", chrome, body)
}

pub fn hub(
    chrome: &Chrome,
    p: &Project,
    history: &[ProjectTransition],
    now: DateTime<Utc>,
) -> Markup {
    let body = html! {
        section aria-labelledby="summary-h" {
            h2 id="summary-h" { "Summary" }
            dl.facts id={ "hub-" (p.slug) } data-slug=(p.slug) {
                dt { "Name" } dd { (p.name) }
                dt { "Status" } dd data-field="status" { (status_badge(p.status)) " since " (when(p.status_changed_at)) }
                dt { "Last seen" } dd data-field="last-seen" { (ago(now, p.last_heartbeat_at)) }
                dt { "Heartbeat interval" } dd { @match p.heartbeat_interval_s { Some(s) => { (s) "s" }, None => "—" } }
                dt { "Agent" } dd { (p.agent_id.as_deref().unwrap_or("—")) " " (p.agent_version.as_deref().unwrap_or("")) }
                dt { "Hub URL" } dd { code { (p.hub_url) } }
                dt { "Mesh namespace" } dd { code { (p.mesh_namespace) } }
                dt { "Tags" } dd { @for t in &p.tags { span.tag { (t) } " " } }
                dt { "Maintenance" } dd data-field="maintenance" { (maintenance_cell(p, now)) }
            }
        }
        section aria-labelledby="history-h" {
            h2 id="history-h" { "History" }
            @if history.is_empty() {
                p { "No transitions recorded yet." }
            } @else {
                ol.timeline id="history" {
                    @for t in history {
                        li {
                            time datetime=(t.at.to_rfc3339()) { (when(t.at)) } " — "
                            (status_badge(t.from)) " → " (status_badge(t.to))
                            " · " span.cause { (name(&t.cause)) }
                            @if let Some(a) = &t.actor { " · by " code { (a) } }
                            @if let Some(d) = &t.detail { " · " (d) }
                        }
                    }
                }
                p.sub { "Newest first; the last 200. Older entries: " code { "GET /api/fed/projects/" (p.slug) "/history?before=…" } }
            }
        }
    };
    page(&format!("Hub {}", p.slug), "/ui/hubs", chrome, body)
}

fn action_form(chrome: &Chrome, s: &Spoke, action: SpokeAction) -> Markup {
    let a = action.as_str();
    let field = format!("reason-{}-{a}", s.id);
    let label = match action {
        SpokeAction::Approve => "Approve",
        SpokeAction::Suspend => "Suspend",
        SpokeAction::Reinstate => "Reinstate",
        SpokeAction::Revoke => "Revoke",
    };
    html! {
        form.action method="post" action={ "/ui/spokes/" (s.id) "/" (a) } {
            (csrf(&chrome.csrf))
            label for=(field) { "Reason to " (a) " " (s.instance_code) }
            input type="text" id=(field) name="reason" required maxlength="500";
            button type="submit" class={ "act-" (a) } { (label) }
        }
    }
}

fn spoke_rows(chrome: &Chrome, spokes: &[&Spoke]) -> Markup {
    let actions = chrome.admin.then_some("Actions");
    html! {
        table.spokes {
            (column_heads(["Spoke", "Status", "Reason", "Changed", "IdP"].into_iter().chain(actions)))
            tbody {
                @for s in spokes {
                    tr id=(s.id) data-spoke=(s.id) {
                        th scope="row" { (s.instance_code) " · " (s.name) br; code.sub { (s.id) } }
                        td data-field="status" { (spoke_badge(s.status)) }
                        td { (s.status_reason.as_deref().unwrap_or("—")) }
                        td { (when(s.status_changed_at)) }
                        td { code { (s.idp_public_url) } }
                        @if chrome.admin {
                            td.actions {
                                @for action in SpokeAction::ALL {
                                    @if action.apply(s.status).is_some() { (action_form(chrome, s, action)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn spokes(chrome: &Chrome, spokes: &[Spoke]) -> Markup {
    let pending: Vec<&Spoke> = spokes
        .iter()
        .filter(|s| s.status == SpokeStatus::Pending)
        .collect();
    let others: Vec<&Spoke> = spokes
        .iter()
        .filter(|s| s.status != SpokeStatus::Pending)
        .collect();
    let body = html! {
        @if !chrome.admin {
            p.note { "Read-only: only an admin key may approve, suspend, reinstate or revoke." }
        }
        section aria-labelledby="pending-h" {
            h2 id="pending-h" { "Awaiting approval (" (pending.len()) ")" }
            @if pending.is_empty() { p { "No spoke is waiting." } } @else { (spoke_rows(chrome, &pending)) }
        }
        section aria-labelledby="all-h" {
            h2 id="all-h" { "Other spokes (" (others.len()) ")" }
            @if others.is_empty() { p { "None." } } @else { (spoke_rows(chrome, &others)) }
        }
    };
    page("Spokes", "/ui/spokes", chrome, body)
}

pub fn federation(
    chrome: &Chrome,
    links: &[FederationLink],
    status: &SyncStatus,
    drift: &DriftReport,
) -> Markup {
    let body = html! {
        section aria-labelledby="links-h" {
            h2 id="links-h" { "Federation links (" (links.len()) ")" }
            @if links.is_empty() { p { "No links: links appear when a spoke is approved." } } @else {
                table id="links" {
                    (column_heads(["Spoke", "Direction", "Status", "Retries", "Last error", "Verified"]))
                    tbody {
                        @for l in links {
                            tr {
                                th scope="row" { code { (l.spoke_id) } }
                                td { (l.source_code) " → " (l.target_code) }
                                td { span class={ "badge link-" (name(&l.status).to_lowercase()) } { (name(&l.status)) } }
                                td { (l.retry_count) }
                                td { (l.last_error.as_deref().unwrap_or("—")) }
                                td { @match l.last_verified_at { Some(t) => (when(t)), None => "never" } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="breakers-h" {
            h2 id="breakers-h" { "Sync circuit breakers" }
            p { "Sync worker on this replica: " strong { @if status.worker_enabled { "enabled" } @else { "disabled" } } }
            table id="breakers" {
                (column_heads(["Target", "State", "Failures in a row", "Retry at", "Last error"]))
                tbody {
                    @for b in &status.breakers {
                        tr {
                            th scope="row" { (name(&b.target)) }
                            td { span class={ "badge breaker-" (name(&b.state)) } { (name(&b.state).replace('_', " ")) } }
                            td { (b.consecutive_failures) }
                            td { @match b.retry_at { Some(t) => (when(t)), None => "—" } }
                            td { (b.last_error.as_deref().unwrap_or("—")) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="drift-h" {
            h2 id="drift-h" { "Drift" }
            p id="drift-summary" {
                @if drift.clean { span class="badge drift-clean" { "clean" } " — no drift, every configured side checked" }
                @else { span class="badge drift-dirty" { "drift" } " — " (drift.items.len()) " item(s)" }
                " (checked " (when(drift.checked_at)) ", " (drift.approved_spokes) " approved spokes)"
            }
            @if !drift.items.is_empty() {
                table id="drift" {
                    (column_heads(["Kind", "Subject", "Detail"]))
                    tbody {
                        @for i in &drift.items {
                            tr { td { (name(&i.kind)) } th scope="row" { (i.subject) } td { (i.detail) } }
                        }
                    }
                }
            }
            @for u in &drift.unchecked {
                p.note { "Not checked: " (name(&u.target)) " — " (u.reason) }
            }
            p.sub { "Fix with " code { "POST /api/federation/drift" } " (admin), or let the sync worker reconcile." }
        }
    };
    page("Links, drift and breakers", "/ui/federation", chrome, body)
}
