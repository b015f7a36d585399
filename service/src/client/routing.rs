//! `federation routing ...`: tenant routing's nodes, rules and tenant map,
//! and resolution, over `/api/fed/routing/...`.

use std::io::BufRead;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::render::{self, fields, s, table};
use super::{Api, ClientError, Format};

const ROUTING: [&str; 3] = ["api", "fed", "routing"];

fn path<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    let mut p = ROUTING.to_vec();
    p.extend_from_slice(rest);
    p
}

#[derive(Debug, Subcommand)]
pub enum RoutingCommand {
    /// Federation nodes (databases served by hubs): list, set, delete.
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Routing rules (tenant, region → node, weight): list, set, delete.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// The tenant map (a tenant's primary node): list, set, delete.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Which node a tenant's request goes to, and why.
    Resolve {
        tenant: String,
        #[arg(long)]
        region: Option<String>,
        /// A session key: the same key gets the same node among weighted rules.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Every node, with its effective status (admin key).
    List,
    /// Create or replace a node (admin key).
    Set(NodeSetArgs),
    /// Delete a node no rule or tenant routes to (admin key).
    Delete { node_id: String },
}

#[derive(Debug, Args)]
pub struct NodeSetArgs {
    pub node_id: String,
    #[arg(long)]
    pub region: String,
    /// The hub (project slug) whose liveness the node follows.
    #[arg(long)]
    pub hub: Option<String>,
    /// Higher first when falling back by priority.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i64,
    /// Keep the node out of resolution.
    #[arg(long)]
    pub disabled: bool,
    /// Read the node's database URL from the first line of standard input
    /// (never from the command line, which other users can see). Without
    /// it the stored URL is kept.
    #[arg(long)]
    pub database_url_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Every rule, or one tenant's (admin key).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Create or replace the rule for TENANT in REGION to NODE (admin key).
    Set {
        tenant: String,
        region: String,
        node_id: String,
        /// Share among rules of equal standing; 0: a standby only.
        #[arg(long, default_value_t = 100)]
        weight: i64,
        /// Chosen before non-primary rules.
        #[arg(long)]
        primary: bool,
    },
    /// Delete a rule by its id (admin key).
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// The tenant map (admin key).
    List,
    /// Set TENANT's primary node (admin key).
    Set {
        tenant: String,
        node_id: String,
        #[arg(long)]
        region: String,
    },
    /// Remove TENANT from the map (admin key).
    Delete { tenant: String },
}

pub async fn run(api: &Api, out: Format, cmd: RoutingCommand) -> Result<(), ClientError> {
    match cmd {
        RoutingCommand::Nodes(NodesCommand::List) => {
            let nodes = api.list(&path(&["nodes"]), &[]).await?;
            print_list(
                out,
                nodes,
                &["NODE", "REGION", "HUB", "STATUS", "PRIORITY", "DATABASE"],
                |n| {
                    vec![
                        s(n, "node_id").to_owned(),
                        s(n, "region").to_owned(),
                        render::or(n, "hub", "-").to_owned(),
                        s(n, "effective_status").to_owned(),
                        n["priority"].to_string(),
                        render::or(n, "database_host", "(gateway default)").to_owned(),
                    ]
                },
            )
        }
        RoutingCommand::Nodes(NodesCommand::Set(args)) => {
            let mut body = json!({
                "region": args.region,
                "hub": args.hub,
                "priority": args.priority,
                "status": if args.disabled { "disabled" } else { "active" },
            });
            if args.database_url_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(ClientError::Output)?;
                body["database_url"] = json!(line.trim());
            }
            let node = api
                .send_json(Method::PUT, &path(&["nodes", &args.node_id]), &body)
                .await?;
            done(out, &node, || {
                format!(
                    "node {} set ({})\n",
                    s(&node, "node_id"),
                    s(&node, "effective_status")
                )
            })
        }
        RoutingCommand::Nodes(NodesCommand::Delete { node_id }) => {
            api.delete(&path(&["nodes", &node_id])).await?;
            render::out(&format!("node {node_id} deleted\n"))
        }
        RoutingCommand::Rules(RulesCommand::List { tenant }) => {
            let query: Vec<(&str, &str)> = tenant.iter().map(|t| ("tenant", t.as_str())).collect();
            let rules = api.list(&path(&["rules"]), &query).await?;
            print_list(
                out,
                rules,
                &["ID", "TENANT", "REGION", "NODE", "PRIMARY", "WEIGHT"],
                |r| {
                    vec![
                        s(r, "id").to_owned(),
                        s(r, "tenant_id").to_owned(),
                        s(r, "region").to_owned(),
                        s(r, "node_id").to_owned(),
                        r["is_primary"].to_string(),
                        r["weight"].to_string(),
                    ]
                },
            )
        }
        RoutingCommand::Rules(RulesCommand::Set {
            tenant,
            region,
            node_id,
            weight,
            primary,
        }) => {
            let body = json!({"tenant_id": tenant, "region": region, "node_id": node_id, "weight": weight, "is_primary": primary});
            let rule = api
                .send_json(Method::POST, &path(&["rules"]), &body)
                .await?;
            done(out, &rule, || format!("rule {} set\n", s(&rule, "id")))
        }
        RoutingCommand::Rules(RulesCommand::Delete { id }) => {
            api.delete(&path(&["rules", &id])).await?;
            render::out(&format!("rule {id} deleted\n"))
        }
        RoutingCommand::Tenants(TenantsCommand::List) => {
            let tenants = api.list(&path(&["tenants"]), &[]).await?;
            print_list(out, tenants, &["TENANT", "PRIMARY NODE", "REGION"], |t| {
                vec![
                    s(t, "tenant_id").to_owned(),
                    s(t, "primary_node_id").to_owned(),
                    s(t, "primary_region").to_owned(),
                ]
            })
        }
        RoutingCommand::Tenants(TenantsCommand::Set {
            tenant,
            node_id,
            region,
        }) => {
            let body = json!({"primary_node_id": node_id, "primary_region": region});
            let m = api
                .send_json(Method::PUT, &path(&["tenants", &tenant]), &body)
                .await?;
            done(out, &m, || {
                format!(
                    "tenant {} → node {}\n",
                    s(&m, "tenant_id"),
                    s(&m, "primary_node_id")
                )
            })
        }
        RoutingCommand::Tenants(TenantsCommand::Delete { tenant }) => {
            api.delete(&path(&["tenants", &tenant])).await?;
            render::out(&format!("tenant {tenant} removed from the map\n"))
        }
        RoutingCommand::Resolve {
            tenant,
            region,
            key,
        } => {
            let mut query = vec![("tenant", tenant.as_str())];
            query.extend(region.iter().map(|r| ("region", r.as_str())));
            query.extend(key.iter().map(|k| ("key", k.as_str())));
            let r = api.get(&path(&["resolve"]), &query).await?;
            done(out, &r, || {
                fields(&[
                    ("tenant", s(&r, "tenant").to_owned()),
                    ("region", render::or(&r, "region", "-").to_owned()),
                    (
                        "node",
                        format!("{} ({})", s(&r, "node_id"), s(&r, "node_region")),
                    ),
                    ("reason", s(&r, "reason").to_owned()),
                ])
            })
        }
    }
}

fn done(out: Format, doc: &Value, text: impl FnOnce() -> String) -> Result<(), ClientError> {
    match out {
        Format::Table => render::out(&text()),
        _ => render::print_document(out, doc),
    }
}

fn print_list(
    out: Format,
    items: Vec<Value>,
    header: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> Result<(), ClientError> {
    if out != Format::Table {
        return render::print_document(out, &Value::Array(items));
    }
    let mut t = table(header);
    for item in &items {
        t.add_row(row(item));
    }
    render::print_table(t)
}
