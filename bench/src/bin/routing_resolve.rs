//! Tenant routing resolutions per second (issue 11): in-process with the
//! `routing` library (what a gateway does per request), and through the
//! service's `GET /api/fed/routing/resolve` over HTTP.
//!
//! Both resolve the same tables: `--tenants` tenants, each with three
//! weighted rules over `--nodes` nodes in one region and a primary for one
//! tenant in four; keys vary per request, so the weighted choice runs.
//! The service runs on a throwaway database with NATS off.
//!
//! Run it with `scripts/bench routing`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{Service, ADMIN_KEY};
use clap::Parser;
use routing::{Node, NodeStatus, Rule, Snapshot, Table, TenantEntry};

#[derive(Debug, Parser)]
#[command(
    name = "routing-resolve",
    about = "Measure tenant resolutions per second"
)]
struct Args {
    #[arg(long, default_value_t = 1_000)]
    tenants: usize,
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Concurrent HTTP clients against the service.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[command(flatten)]
    service: bench::ServiceBin,
}

fn node_id(i: usize) -> String {
    format!("node-{i}")
}

fn snapshot(args: &Args) -> Snapshot {
    let nodes = (0..args.nodes)
        .map(|i| Node {
            node_id: node_id(i),
            region: "eu".into(),
            priority: 0,
            hub: None,
            status: NodeStatus::Online,
        })
        .collect();
    let rules = (0..args.tenants)
        .flat_map(|t| {
            (0..3).map(move |k| Rule {
                tenant_id: format!("tenant-{t}"),
                region: "eu".into(),
                node_id: node_id((t + k) % args.nodes),
                is_primary: false,
                weight: 100 * (k as u32 + 1),
            })
        })
        .collect();
    let tenants = (0..args.tenants)
        .step_by(4)
        .map(|t| TenantEntry {
            tenant_id: format!("tenant-{t}"),
            primary_node_id: node_id(t % args.nodes),
            primary_region: "eu".into(),
            metadata: serde_json::json!({}),
        })
        .collect();
    Snapshot {
        version: 1,
        nodes,
        rules,
        tenants,
    }
}

fn library(args: &Args) -> f64 {
    let table = Table::new(snapshot(args));
    let tenants: Vec<String> = (0..args.tenants).map(|t| format!("tenant-{t}")).collect();
    let keys: Vec<String> = (0..4096).map(|k| format!("session-{k}")).collect();
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let (mut n, mut sink) = (0u64, 0usize);
    let t0 = Instant::now();
    while Instant::now() < deadline {
        for i in 0..1024 {
            let i = n as usize + i;
            let region = i.is_multiple_of(2).then_some("eu");
            let d = table.resolve(
                &tenants[i % tenants.len()],
                region,
                Some(&keys[i % keys.len()]),
            );
            sink = sink.wrapping_add(d.node.node_id.len());
        }
        n += 1024;
    }
    std::hint::black_box(sink);
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Inserts `rows` (a JSON array of objects) into `table` in one statement:
/// the `columns` (`name type, ...`), from the fields of the same names.
async fn insert_rows(
    pool: &sqlx::PgPool,
    table: &str,
    columns: &str,
    rows: serde_json::Value,
) -> anyhow::Result<()> {
    let names: Vec<&str> = columns
        .split(',')
        .filter_map(|c| c.split_whitespace().next())
        .collect();
    let names = names.join(", ");
    let sql = format!(
        "INSERT INTO {table} ({names}) SELECT {names} FROM jsonb_to_recordset($1) AS r({columns})"
    );
    sqlx::query(&sql).bind(rows).execute(pool).await?;
    Ok(())
}

async fn service(args: &Args) -> anyhow::Result<f64> {
    let db = testkit::TestDb::create().await;
    let pool = sqlx::PgPool::connect(&db.url).await?;
    let snap = snapshot(args);
    let tables = [
        ("federation_nodes", "node_id text, region text"),
        (
            "federation_routing",
            "tenant_id text, region text, node_id text, weight int",
        ),
        (
            "tenant_federation_map",
            "tenant_id text, primary_node_id text, primary_region text",
        ),
    ];
    let rows = [
        serde_json::to_value(&snap.nodes)?,
        serde_json::to_value(&snap.rules)?,
        serde_json::to_value(&snap.tenants)?,
    ];
    for ((table, columns), rows) in tables.into_iter().zip(rows) {
        insert_rows(&pool, table, columns, rows).await?;
    }
    let svc = Service::start(
        &args.service,
        &db.url,
        "nats://127.0.0.1:1",
        &[("FEDERATION__NATS__ENABLED", "false".into())],
    )?;
    svc.wait_ready().await;
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let t0 = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let (count, base, tenants) = (count.clone(), svc.base.clone(), args.tenants);
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut i = w;
                while Instant::now() < deadline {
                    let url = format!(
                        "{base}/api/fed/routing/resolve?tenant=tenant-{}&key=session-{i}",
                        i % tenants
                    );
                    let ok = http
                        .get(url)
                        .header("x-api-key", ADMIN_KEY)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    i += STRIDE;
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let rate = count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    svc.stop();
    Ok(rate)
}

/// Steps between one client's keys (a prime: the keys spread).
const STRIDE: usize = 7919;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let lib = library(&args);
    println!(
        "library (routing::Table::resolve, one thread): {:.0} resolutions/s ({} tenants, {} nodes)",
        lib, args.tenants, args.nodes
    );
    let http = service(&args).await?;
    println!(
        "service (GET /api/fed/routing/resolve, {} HTTP clients): {:.0} resolutions/s",
        args.concurrency, http
    );
    Ok(())
}
