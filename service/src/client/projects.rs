//! `federation projects ...` and `federation maintenance ...`.

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};

use super::api::member_path;
use super::render::{self, ago, fields, s, short_time, table, time};
use super::{Api, ClientError, Format, MaintenanceCommand, ProjectsCommand};

const PROJECTS: [&str; 3] = ["api", "fed", "projects"];

fn project_path<'a>(slug: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    member_path(&PROJECTS, slug, rest)
}

pub async fn run(api: &Api, out: Format, cmd: ProjectsCommand) -> Result<(), ClientError> {
    match cmd {
        ProjectsCommand::List(args) => {
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(status) = &args.status {
                query.push(("status", status));
            }
            for tag in &args.tags {
                query.push(("tag", tag));
            }
            let projects = api.list(&PROJECTS, &query).await?;
            match out {
                Format::Table => print_list(&projects),
                _ => render::print_document(out, &Value::Array(projects)),
            }
        }
        ProjectsCommand::Get { slug } => {
            let project = api.get(&project_path(&slug, &[]), &[]).await?;
            match out {
                Format::Table => render::out(&describe(&project)),
                _ => render::print_document(out, &project),
            }
        }
        ProjectsCommand::Delete { slug } => {
            api.delete(&project_path(&slug, &[])).await?;
            match out {
                Format::Table => render::out(&format!("project {slug} deleted\n")),
                // Nothing to print: the server answers 204 with no body.
                _ => Ok(()),
            }
        }
        ProjectsCommand::History(args) => {
            let limit = args.limit.map(|l| l.to_string());
            let before = args.before.map(|b| b.to_string());
            let mut query = Vec::new();
            if let Some(limit) = &limit {
                query.push(("limit", limit.as_str()));
            }
            if let Some(before) = &before {
                query.push(("before", before.as_str()));
            }
            let page = api
                .get(&project_path(&args.slug, &["history"]), &query)
                .await?;
            match out {
                Format::Table => print_history(&args.slug, &page),
                _ => render::print_document(out, &page),
            }
        }
    }
}

pub async fn maintenance(
    api: &Api,
    out: Format,
    cmd: MaintenanceCommand,
) -> Result<(), ClientError> {
    match cmd {
        MaintenanceCommand::Start(args) => {
            let mut body = json!({"reason": args.reason});
            if let Some(d) = args.duration {
                body["duration"] = json!(d);
            }
            if let Some(u) = args.until {
                body["until"] = json!(u);
            }
            let path = project_path(&args.slug, &["maintenance"]);
            let project = api.send_json(Method::PUT, &path, &body).await?;
            match out {
                Format::Table => {
                    let window = &project["maintenance"];
                    render::out(&format!(
                        "{} in maintenance until {} ({} left): {}\n",
                        args.slug,
                        short_time(time(window, "until")),
                        render::time_left(window, Utc::now()),
                        s(window, "reason"),
                    ))
                }
                _ => render::print_document(out, &project),
            }
        }
        MaintenanceCommand::Stop { slug } => {
            api.delete(&project_path(&slug, &["maintenance"])).await?;
            match out {
                Format::Table => render::out(&format!("{slug} is out of maintenance\n")),
                _ => Ok(()),
            }
        }
    }
}

fn print_list(projects: &[Value]) -> Result<(), ClientError> {
    let now = Utc::now();
    let mut t = table(&["slug", "name", "status", "last seen", "tags", "maintenance"]);
    for p in projects {
        t.add_row(vec![
            s(p, "slug").to_owned(),
            render::clip(s(p, "name"), 40),
            s(p, "status").to_owned(),
            ago(time(p, "last_heartbeat_at"), now, "never"),
            render::list(p, "tags"),
            render::maintenance(p, now),
        ]);
    }
    if projects.is_empty() {
        return render::out("no projects\n");
    }
    render::print_table(t)
}

/// One project, field by field.
fn describe(p: &Value) -> String {
    let now = Utc::now();
    let agent = match (s(p, "agent_id"), s(p, "agent_version")) {
        ("", "") => "-".to_owned(),
        (id, "") => id.to_owned(),
        (id, version) => format!("{id} ({version})"),
    };
    let interval = p
        .get("heartbeat_interval_s")
        .and_then(Value::as_i64)
        .map(|i| format!("{i}s"))
        .unwrap_or_else(|| "-".into());
    let window = &p["maintenance"];
    let maintenance = if window.is_null() {
        "none".to_owned()
    } else {
        format!(
            "until {} ({} left), by {}: {}",
            short_time(time(window, "until")),
            render::time_left(window, now),
            s(window, "by"),
            s(window, "reason")
        )
    };
    fields(&[
        ("slug", s(p, "slug").to_owned()),
        ("name", s(p, "name").to_owned()),
        ("status", render::status_since(p, now)),
        ("last seen", ago(time(p, "last_heartbeat_at"), now, "never")),
        ("hub url", s(p, "hub_url").to_owned()),
        ("mesh namespace", s(p, "mesh_namespace").to_owned()),
        ("tags", render::list(p, "tags")),
        ("allow fanout", render::list(p, "allow_fanout")),
        ("agent", agent),
        ("interval", interval),
        ("maintenance", maintenance),
        ("created", short_time(time(p, "created_at"))),
        ("updated", short_time(time(p, "updated_at"))),
    ])
}

fn print_history(slug: &str, page: &Value) -> Result<(), ClientError> {
    let entries = page
        .get("transitions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if entries.is_empty() {
        return render::out(&format!("no history for {slug}\n"));
    }
    let mut t = table(&["id", "at", "from", "to", "cause", "actor", "detail"]);
    for e in &entries {
        t.add_row(vec![
            e.get("id").map(Value::to_string).unwrap_or_default(),
            short_time(time(e, "at")),
            s(e, "from").to_owned(),
            s(e, "to").to_owned(),
            s(e, "cause").to_owned(),
            render::or(e, "actor", "-").to_owned(),
            render::clip(render::or(e, "detail", ""), 60),
        ]);
    }
    render::print_table(t)?;
    if let Some(before) = page.get("next_before").and_then(Value::as_i64) {
        render::out(&format!(
            "older entries: federation projects history {slug} --before {before}\n"
        ))?;
    }
    Ok(())
}
