//! Measures the federation sync on this machine, against a real PostgreSQL
//! and the in-repo Keycloak Admin API stub:
//!
//! 1. tfvars rendering (HCL and JSON) for N approved spokes;
//! 2. full reconcile runs with N approved spokes: the first (N identity
//!    providers created, the file written, 2N links ACTIVE), a second with
//!    nothing to change, and one after a tenth of the spokes were suspended.
//!
//! Run: `cargo bench -p service --bench sync` (BENCH_SPOKES=1000 by default).
//! Prints a Markdown table; nothing is asserted.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use service::config::{SyncSettings, TfvarsFormat};
use service::sync::registry::{Registry, Spoke};
use service::sync::{tfvars, SyncEngine, Trigger};
use sqlx::PgPool;
use testkit::keycloak::{KeycloakStub, StubConfig};
use testkit::TestDb;

fn code(i: usize) -> String {
    let b = |n: usize| char::from(b'A' + (n % 26) as u8);
    format!("{}{}{}", b(i / 676), b(i / 26), b(i))
}

fn registry(n: usize) -> Registry {
    Registry {
        spokes: (0..n)
            .map(|i| {
                let c = code(i);
                let l = c.to_lowercase();
                Spoke {
                    id: format!("spoke-{l}-{i:08x}"),
                    instance_code: c.clone(),
                    name: format!("{c} Instance"),
                    idp_public_url: format!("https://idp.{l}.example/realms/{l}"),
                    idp_internal_url: Some(format!("http://keycloak-{l}:8080/realms/{l}")),
                    status: "approved".into(),
                    generation: 1,
                    hub_status: Some("online".into()),
                }
            })
            .collect(),
        revoked: Vec::new(),
    }
}

fn time_render(n: usize, format: TfvarsFormat) -> (f64, usize) {
    let reg = registry(n);
    let settings = SyncSettings::default();
    let rounds = 20;
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        let partners = tfvars::desired(&reg, &settings);
        bytes = tfvars::render(&partners, format).unwrap().len();
    }
    (
        start.elapsed().as_secs_f64() * 1000.0 / rounds as f64,
        bytes,
    )
}

async fn seed(pool: &PgPool, n: usize) {
    sqlx::query(
        "INSERT INTO spokes (id, instance_code, name, base_url, idp_public_url, idp_internal_url, status) \
         SELECT 'spoke-' || lower(c) || '-' || lpad(to_hex(i), 8, '0'), c, c || ' Instance', \
                'https://' || lower(c) || '.example', \
                'https://idp.' || lower(c) || '.example/realms/' || lower(c), \
                'http://keycloak-' || lower(c) || ':8080/realms/' || lower(c), 'approved' \
         FROM (SELECT i, chr(65 + i / 676) || chr(65 + (i / 26) % 26) || chr(65 + i % 26) AS c \
               FROM generate_series(0, $1 - 1) i) s",
    )
    .bind(n as i32)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO federation_links (spoke_id, direction, source_code, target_code) \
         SELECT id, d, CASE d WHEN 'HUB_TO_SPOKE' THEN 'USA' ELSE instance_code END, \
                CASE d WHEN 'HUB_TO_SPOKE' THEN instance_code ELSE 'USA' END \
         FROM spokes, unnest(ARRAY['HUB_TO_SPOKE', 'SPOKE_TO_HUB']) d",
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn timed_run(engine: &SyncEngine) -> (f64, usize, usize, String) {
    let start = Instant::now();
    let r = engine.reconcile(Trigger::Manual).await.unwrap();
    (
        start.elapsed().as_secs_f64() * 1000.0,
        r.tfvars.changes,
        r.keycloak.changes,
        format!(
            "{}/{}",
            r.tfvars.result.as_str(),
            r.keycloak.result.as_str()
        ),
    )
}

fn main() {
    let n: usize = std::env::var("BENCH_SPOKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    println!(
        "\n### tfvars rendering ({n} and {} approved spokes)\n",
        n * 10
    );
    println!("| spokes | format | render (ms) | file size (KiB) |");
    println!("|---:|---|---:|---:|");
    for size in [n, n * 10] {
        for (name, format) in [("hcl", TfvarsFormat::Hcl), ("json", TfvarsFormat::Json)] {
            let (ms, bytes) = time_render(size, format);
            println!(
                "| {size} | {name} | {ms:.1} | {:.0} |",
                bytes as f64 / 1024.0
            );
        }
    }

    rt.block_on(async {
        let db = TestDb::create().await;
        let pool = PgPool::connect(&db.url).await.unwrap();
        service::store::migrate(&pool).await.unwrap();
        seed(&pool, n).await;
        let stub = KeycloakStub::start(StubConfig::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = SyncSettings::default();
        settings.tfvars.path = dir.path().join("hub.auto.tfvars");
        settings.keycloak.base_url = Some(stub.url().parse().unwrap());
        settings.keycloak.client_secret = Some(stub.config().client_secret.clone().into());
        settings.keycloak.request_timeout = Duration::from_secs(30);
        let metrics = service::metrics::Metrics::new();
        let engine = SyncEngine::new(pool.clone(), settings, metrics.sync.clone()).unwrap();

        println!("\n### Reconcile runs, {n} approved spokes, Keycloak stub in process\n");
        println!("| run | time (ms) | file writes | IdP writes | result (tfvars/keycloak) |");
        println!("|---|---:|---:|---:|---|");
        let (ms, f, k, r) = timed_run(&engine).await;
        println!("| first: create every IdP, write the file, probe every IdP, derive the links | {ms:.0} | {f} | {k} | {r} |");
        let (ms, f, k, r) = timed_run(&engine).await;
        println!("| second: nothing to change | {ms:.0} | {f} | {k} | {r} |");
        sqlx::query("UPDATE spokes SET status = 'suspended' WHERE ctid IN (SELECT ctid FROM spokes ORDER BY id LIMIT $1)")
            .bind((n / 10) as i64)
            .execute(&pool)
            .await
            .unwrap();
        let (ms, f, k, r) = timed_run(&engine).await;
        println!("| after suspending {}: disable their IdPs, rewrite the file | {ms:.0} | {f} | {k} | {r} |", n / 10);
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM spokes WHERE status = 'approved'")
            .fetch_all(&pool)
            .await
            .unwrap();
        let start = Instant::now();
        let leases = service::sync::lease::Leases::acquire(&pool, "bench", None, &ids, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let updated = service::sync::links::derive(&pool, &ids, &leases).await.unwrap();
        println!(
            "| of which: links of {} approved spokes derived from their conditions ({updated} row updates) | {:.0} | | | |",
            ids.len(),
            start.elapsed().as_secs_f64() * 1000.0
        );
        let idps = stub.idps("hub").len();
        println!("\n({idps} identity providers in the stub at the end.)");
        pool.close().await;
    });
}
