//! An example gateway: each request runs on its tenant's database.
//!
//! ```sh
//! NATS_URL=nats://127.0.0.1:4222 \
//! DEFAULT_DATABASE_URL=postgres://postgres@127.0.0.1/app \
//! NODE_DATABASE_URLS="node-a=postgres://postgres@127.0.0.1/app_a,node-b=postgres://postgres@127.0.0.1/app_b" \
//! cargo run -p routing --features gateway --example gateway
//! curl -H 'X-Tenant-ID: acme' http://127.0.0.1:8080/whoami
//! curl http://127.0.0.1:8080/tenants/acme/whoami
//! ```
//!
//! Node URLs are the gateway's own settings; the control plane's snapshot
//! names nodes only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Extension;
use axum::routing::get;
use axum::Router;
use routing::gateway::{TenantDb, TenantRouter, TenantRoutingLayer};
use secrecy::SecretString;

/// `node=url,node=url`.
pub fn parse_node_urls(text: &str) -> HashMap<String, SecretString> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(node, url)| {
            (
                node.trim().to_owned(),
                SecretString::from(url.trim().to_owned()),
            )
        })
        .collect()
}

/// The gateway's routes, every one behind the routing layer.
pub fn app(router: Arc<TenantRouter>) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/tenants/{tenant_id}/whoami", get(whoami))
        .layer(TenantRoutingLayer::new(router))
}

/// Which database answered: proof of where the request ran.
async fn whoami(Extension(db): Extension<TenantDb>) -> axum::Json<serde_json::Value> {
    let database: Result<String, _> = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&db.pool)
        .await;
    axum::Json(serde_json::json!({
        "tenant": db.tenant,
        "node_id": db.node_id,
        "reason": db.reason,
        "database": database.ok(),
    }))
}

#[allow(dead_code)] // also compiled into the service's tests, which call `app`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let default_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .connect_lazy(&env("DEFAULT_DATABASE_URL"))?;
    let mut registry = prometheus_client::registry::Registry::default();
    let router = TenantRouter::new(
        parse_node_urls(&env("NODE_DATABASE_URLS")),
        default_pool,
        &mut registry,
    );
    let client = async_nats::connect(env("NATS_URL")).await?;
    tokio::spawn(
        router
            .clone()
            .follow(client, routing::KV_BUCKET, Duration::from_secs(5)),
    );
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    axum::serve(listener, app(router)).await?;
    Ok(())
}
