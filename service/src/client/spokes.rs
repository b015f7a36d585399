//! `federation spokes ...`: a spoke named by its instance code (the live
//! spoke of that code) or by its id.

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};

use super::api::member_path;
use super::render::{self, ago, fields, s, short_time, table, time};
use super::{Api, ClientError, Format, SpokesCommand, TransitionArgs};

const SPOKES: [&str; 3] = ["api", "federation", "spokes"];

fn spoke_path<'a>(id: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    member_path(&SPOKES, id, rest)
}

/// Whether `arg` is an instance code (three letters, any case) rather than
/// a spoke id.
fn is_code(arg: &str) -> bool {
    arg.len() == 3 && arg.bytes().all(|b| b.is_ascii_alphabetic())
}

/// The id of the spoke `arg` names: an id as given, or the live (not
/// revoked) spoke of an instance code.
pub async fn resolve(api: &Api, arg: &str) -> Result<String, ClientError> {
    if !is_code(arg) {
        return Ok(arg.to_owned());
    }
    let code = arg.to_ascii_uppercase();
    let spokes = api.list(&SPOKES, &[]).await?;
    let of_code: Vec<&Value> = spokes
        .iter()
        .filter(|sp| s(sp, "instance_code") == code)
        .collect();
    let live: Vec<&str> = of_code
        .iter()
        .filter(|sp| s(sp, "status") != "revoked")
        .map(|sp| s(sp, "id"))
        .collect();
    match live.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] if of_code.is_empty() => Err(ClientError::NotFound(format!(
            "no spoke has instance code {code}"
        ))),
        [] => Err(ClientError::NotFound(format!(
            "no live spoke has instance code {code}; revoked: {} (name one by its id)",
            of_code
                .iter()
                .map(|sp| s(sp, "id"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        many => Err(ClientError::Usage(format!(
            "several live spokes have instance code {code}: {}; name one by its id",
            many.join(", ")
        ))),
    }
}

pub async fn run(api: &Api, out: Format, cmd: SpokesCommand) -> Result<(), ClientError> {
    match cmd {
        SpokesCommand::List { status } => {
            let query: Vec<(&str, &str)> =
                status.iter().map(|st| ("status", st.as_str())).collect();
            let spokes = api.list(&SPOKES, &query).await?;
            match out {
                Format::Table => print_list(&spokes),
                _ => render::print_document(out, &Value::Array(spokes)),
            }
        }
        SpokesCommand::Get { spoke } => {
            let id = resolve(api, &spoke).await?;
            let spoke = api.get(&spoke_path(&id, &[]), &[]).await?;
            show(out, &spoke)
        }
        SpokesCommand::History { spoke } => log(api, out, &spoke, "history", print_history).await,
        SpokesCommand::Steps { spoke } => log(api, out, &spoke, "steps", print_steps).await,
        SpokesCommand::Retry { spoke } => {
            let id = resolve(api, &spoke).await?;
            let path = spoke_path(&id, &["retry"]);
            let spoke = api.send_json(Method::POST, &path, &json!({})).await?;
            show(out, &spoke)
        }
        SpokesCommand::ApproveRevision(args) => decide(api, out, "approve", args).await,
        SpokesCommand::RejectRevision(args) => decide(api, out, "reject", args).await,
        SpokesCommand::Approve(args) => transition(api, out, "approve", args).await,
        SpokesCommand::Suspend(args) => transition(api, out, "suspend", args).await,
        SpokesCommand::Reinstate(args) => transition(api, out, "reinstate", args).await,
        SpokesCommand::Revoke(args) => transition(api, out, "revoke", args).await,
    }
}

/// One of a spoke's logs (`history`, `steps`), as a table or a document.
async fn log(
    api: &Api,
    out: Format,
    spoke: &str,
    which: &str,
    table: fn(&Value) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    let id = resolve(api, spoke).await?;
    let entries = api.get(&spoke_path(&id, &[which]), &[]).await?;
    match out {
        Format::Table => table(&entries),
        _ => render::print_document(out, &entries),
    }
}

/// A spoke's detail: its fields, where its onboarding stands, its latest
/// revision and its conditions.
fn show(out: Format, spoke: &Value) -> Result<(), ClientError> {
    match out {
        Format::Table => {
            render::out(&describe(spoke))?;
            print_conditions(spoke)
        }
        _ => render::print_document(out, spoke),
    }
}

/// POSTs to the spoke `args` names, at `tail`, its reason and operator.
async fn post_reasoned(
    api: &Api,
    args: TransitionArgs,
    tail: &[&str],
) -> Result<Value, ClientError> {
    let id = resolve(api, &args.spoke).await?;
    let mut body = json!({"reason": args.reason});
    if let Some(operator) = args.operator {
        body["operator"] = json!(operator);
    }
    api.send_json(Method::POST, &spoke_path(&id, tail), &body)
        .await
}

/// An admin's decision on the spoke's pending revision.
async fn decide(
    api: &Api,
    out: Format,
    decision: &str,
    args: TransitionArgs,
) -> Result<(), ClientError> {
    let spoke = post_reasoned(api, args, &["revision", decision]).await?;
    show(out, &spoke)
}

async fn transition(
    api: &Api,
    out: Format,
    action: &str,
    args: TransitionArgs,
) -> Result<(), ClientError> {
    let done = post_reasoned(api, args, &[action]).await?;
    match out {
        Format::Table => {
            let t = &done["transition"];
            render::out(&format!(
                "spoke {} ({}): {} → {}\n",
                s(&done, "instance_code"),
                s(&done, "id"),
                render::or(t, "from_status", "-"),
                s(t, "to_status"),
            ))
        }
        _ => render::print_document(out, &done),
    }
}

fn print_list(spokes: &[Value]) -> Result<(), ClientError> {
    if spokes.is_empty() {
        return render::out("no spokes\n");
    }
    let now = Utc::now();
    let mut t = table(&["code", "id", "name", "status", "since", "reason"]);
    for sp in spokes {
        t.add_row(vec![
            s(sp, "instance_code").to_owned(),
            s(sp, "id").to_owned(),
            render::clip(s(sp, "name"), 40),
            s(sp, "status").to_owned(),
            ago(time(sp, "status_changed_at"), now, "-"),
            render::clip(render::or(sp, "status_reason", ""), 50),
        ]);
    }
    render::print_table(t)
}

fn describe(sp: &Value) -> String {
    let now = Utc::now();
    fields(&[
        ("id", s(sp, "id").to_owned()),
        ("instance code", s(sp, "instance_code").to_owned()),
        ("name", s(sp, "name").to_owned()),
        ("status", render::status_since(sp, now)),
        ("reason", render::or(sp, "status_reason", "-").to_owned()),
        ("base url", s(sp, "base_url").to_owned()),
        ("idp public url", s(sp, "idp_public_url").to_owned()),
        (
            "idp internal url",
            render::or(sp, "idp_internal_url", "-").to_owned(),
        ),
        ("contact", render::or(sp, "contact", "-").to_owned()),
        (
            "cert fingerprint",
            render::or(sp, "cert_fingerprint", "-").to_owned(),
        ),
        ("generation", sp["generation"].to_string()),
        ("onboarding", onboarding(&sp["onboarding"])),
        ("revision", revision(&sp["revision"])),
        ("registered", short_time(time(sp, "created_at"))),
        ("updated", short_time(time(sp, "updated_at"))),
    ])
}

/// `failed at IdpReachable (DISCOVERY_UNREACHABLE, 3 retries)`.
fn onboarding(o: &Value) -> String {
    let state = render::or(o, "state", "-").replace('_', " ");
    match o["step"].as_str() {
        Some(step) => format!(
            "{state} at {step} ({}, {})",
            render::or(o, "reason", "-"),
            counted(&o["retries"], "retry", "retries")
        ),
        None => state,
    }
}

/// `3 approved: held, DISCOVERY_UNREACHABLE after 2 attempts`.
fn revision(r: &Value) -> String {
    if r.is_null() {
        return "-".into();
    }
    let mut line = format!("{} {}", r["id"], s(r, "state"));
    if s(r, "state") == "approved" && r["rollout_attempts"].as_i64().unwrap_or(0) > 0 {
        line.push_str(&format!(
            ": held, {} after {}",
            render::or(r, "last_error_code", "-"),
            counted(&r["rollout_attempts"], "attempt", "attempts")
        ));
    }
    line
}

/// `1 retry`, `3 retries`.
fn counted(n: &Value, one: &str, many: &str) -> String {
    match n.as_i64().unwrap_or(0) {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// The spoke's conditions, one a line, as `kubectl describe` shows them.
fn print_conditions(sp: &Value) -> Result<(), ClientError> {
    let Some(conditions) = sp["conditions"].as_array() else {
        return Ok(());
    };
    let now = Utc::now();
    let mut t = table(&[
        "condition",
        "status",
        "reason",
        "since",
        "generation",
        "message",
    ]);
    for c in conditions {
        t.add_row(vec![
            s(c, "type").to_owned(),
            s(c, "status").to_owned(),
            s(c, "reason").to_owned(),
            ago(time(c, "last_transition_time"), now, "-"),
            c["observed_generation"].to_string(),
            render::clip(s(c, "message"), 80),
        ]);
    }
    render::out("\n")?;
    render::print_table(t)
}

fn print_steps(steps: &Value) -> Result<(), ClientError> {
    let mut t = table(&[
        "at",
        "condition",
        "status",
        "reason",
        "generation",
        "message",
    ]);
    for e in steps.as_array().into_iter().flatten() {
        t.add_row(vec![
            short_time(time(e, "at")),
            s(e, "type").to_owned(),
            s(e, "status").to_owned(),
            s(e, "reason").to_owned(),
            e["observed_generation"].to_string(),
            render::clip(s(e, "message"), 60),
        ]);
    }
    render::print_table(t)
}

fn print_history(history: &Value) -> Result<(), ClientError> {
    let mut t = table(&["at", "from", "to", "actor", "reason"]);
    for e in history.as_array().into_iter().flatten() {
        t.add_row(vec![
            short_time(time(e, "at")),
            render::or(e, "from_status", "-").to_owned(),
            s(e, "to_status").to_owned(),
            s(e, "actor").to_owned(),
            render::clip(s(e, "reason"), 60),
        ]);
    }
    render::print_table(t)
}

#[cfg(test)]
mod tests {
    use super::is_code;

    #[test]
    fn codes_are_three_letters_ids_are_not() {
        assert!(is_code("FRA") && is_code("fra"));
        assert!(!is_code("spoke-fra-ee18ad42") && !is_code("FR") && !is_code("F1A"));
    }
}
