//! The gateways' snapshot in NATS KV (`routing.kv_bucket`, key
//! [`::routing::KV_KEY`]): nodes without URLs and with their effective
//! status, rules, the tenant map and the routing tables' version. Put
//! whenever it differs from what this replica last put: after a change of
//! the routing tables, or of a node hub's liveness in the catalog view.
//! Every replica publishes; they read the same database, so they put the
//! same snapshot, and one that lags puts the newer one as soon as it
//! catches up.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, kv, stream};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{Liveness, RoutingView};
use crate::catalog_view::CatalogView;
use crate::config::RoutingSettings;

/// How long a failed put waits before the next try.
const RETRY: Duration = Duration::from_secs(1);

pub struct SnapshotPublisher {
    pub view: Arc<RoutingView>,
    pub catalog: Arc<CatalogView>,
    pub pool: PgPool,
    pub client: async_nats::Client,
    pub settings: RoutingSettings,
}

impl SnapshotPublisher {
    pub async fn run(self, shutdown: CancellationToken) {
        let js = jetstream::new(self.client.clone());
        let mut routing_changes = self.view.subscribe();
        let mut catalog_changes = self.catalog.subscribe();
        let mut store: Option<kv::Store> = None;
        let mut last: Option<Vec<u8>> = None;
        let republish = if self.settings.republish_interval.is_zero() {
            Duration::from_secs(86_400)
        } else {
            self.settings.republish_interval
        };
        let mut next_republish = tokio::time::Instant::now() + republish;
        let mut failing = false;
        loop {
            if self.view.is_loaded() {
                match self.step(&js, &mut store, &mut last).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!(bucket = %self.settings.kv_bucket, "routing snapshot published again");
                    }
                    Ok(()) => {}
                    Err(e) => {
                        if !failing {
                            failing = true;
                            tracing::warn!(error = format!("{e:#}"), bucket = %self.settings.kv_bucket, "routing snapshot: publish failed; retrying every second");
                        }
                        store = None;
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY) => continue,
                            _ = shutdown.cancelled() => return,
                        }
                    }
                }
            }
            tokio::select! {
                _ = routing_changes.changed() => {}
                _ = catalog_changes.changed() => {}
                _ = tokio::time::sleep_until(next_republish) => {
                    last = None;
                    next_republish = tokio::time::Instant::now() + republish;
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Builds the snapshot and puts it if it changed.
    async fn step(
        &self,
        js: &jetstream::Context,
        store: &mut Option<kv::Store>,
        last: &mut Option<Vec<u8>>,
    ) -> anyhow::Result<()> {
        let held = self.view.current();
        let snapshot = Liveness::of(&self.catalog, &self.pool, &held)
            .await?
            .snapshot(&held);
        let bytes = serde_json::to_vec(&snapshot)?;
        if last.as_ref() == Some(&bytes) {
            return Ok(());
        }
        let kv = match store {
            Some(kv) => kv,
            None => store.insert(self.bucket(js).await?),
        };
        kv.put(::routing::KV_KEY, bytes.clone().into()).await?;
        tracing::debug!(version = snapshot.version, "routing snapshot published");
        *last = Some(bytes);
        Ok(())
    }

    /// The bucket, created if missing. Its stream is created here, as a KV
    /// bucket's stream is, rather than by `create_key_value`, whose request
    /// nats-server 2.9 answers in a form async-nats 0.51 cannot read.
    async fn bucket(&self, js: &jetstream::Context) -> anyhow::Result<kv::Store> {
        let name = &self.settings.kv_bucket;
        if let Ok(kv) = js.get_key_value(name).await {
            return Ok(kv);
        }
        js.get_or_create_stream(stream::Config {
            name: format!("KV_{name}"),
            description: Some("tenant routing snapshot for gateways (no database URLs)".into()),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 5,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            num_replicas: self.settings.kv_replicas,
            ..Default::default()
        })
        .await
        .context("creating the bucket's stream")?;
        js.get_key_value(name).await.context("opening the bucket")
    }
}
