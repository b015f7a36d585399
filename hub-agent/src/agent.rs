//! The agent's work: connect, keep its hub registered, publish a heartbeat
//! every interval, say `offline` on the way out.

use std::time::Duration;

use anyhow::Context;
use async_nats::{Client, Event};
use chrono::Utc;
use protocol::{Heartbeat, HubStatus};
use rand::Rng;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::config::AgentSettings;
use crate::state::{self, Identity};
use common::nats::NatsSettings;
use tokio::sync::watch;

/// The whole of SIGTERM handling must fit in 2 s.
const GOODBYE_BUDGET: Duration = Duration::from_millis(1500);

pub async fn run(settings: AgentSettings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut settings = settings;
    let http = reqwest::Client::builder()
        .timeout(settings.catalog.timeout.max(settings.hub.health_timeout))
        .build()
        .context("building the HTTP client")?;
    let identity = state::obtain(&settings, &http, &shutdown).await?;
    if shutdown.is_cancelled() {
        return Ok(());
    }
    if let Some(held) = &identity {
        // The hub's own token and NATS credentials replace any shared ones.
        settings.catalog.api_key = Some(held.token.clone());
        if let Some(creds) = &held.creds {
            let nats = &mut settings.nats;
            if nats.creds_file.is_some()
                || nats.user.is_some()
                || nats.token.is_some()
                || nats.nkey_seed.is_some()
            {
                tracing::warn!("the hub's NATS credentials from the state directory replace the configured NATS authentication");
            }
            nats.creds_file = Some(creds.clone());
            nats.user = None;
            nats.password = None;
            nats.token = None;
            nats.nkey_seed = None;
        }
    }
    let hub = &settings.hub;
    let agent_id = format!(
        "{}-{}",
        hub.slug,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let subject = protocol::subjects::heartbeat_subject(&hub.slug);
    let (current, client_rx) = watch::channel(connect(&settings.nats).await?);
    if settings.catalog.url.is_some() {
        tokio::spawn(keep_registered(
            settings.clone(),
            http.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(held) = identity {
        tokio::spawn(keep_fresh(
            settings.clone(),
            http.clone(),
            held,
            current,
            shutdown.clone(),
        ));
    }
    tracing::info!(%subject, agent_id, interval_s = hub.interval.as_secs_f64(), "publishing heartbeats");

    let mut seq: u64 = 0;
    let mut last_status = None;
    loop {
        let status = match &hub.health_url {
            Some(url) => probe(&http, url, hub.health_timeout).await,
            None => HubStatus::Online,
        };
        if last_status != Some(status) {
            tracing::info!(status = %status, "reporting");
            last_status = Some(status);
        }
        seq += 1;
        let client = client_rx.borrow().clone();
        publish(
            &client,
            &subject,
            &heartbeat(&settings, &agent_id, seq, status),
        )
        .await;
        let wait = jittered(hub.interval, hub.jitter);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }

    // Say goodbye so the catalog need not wait for the stale threshold.
    seq += 1;
    let goodbye = heartbeat(&settings, &agent_id, seq, HubStatus::Offline);
    let client = client_rx.borrow().clone();
    let sent = tokio::time::timeout(GOODBYE_BUDGET, async {
        client
            .publish(subject.clone(), goodbye.to_payload().into())
            .await?;
        client.flush().await?;
        Ok::<(), anyhow::Error>(())
    })
    .await;
    match sent {
        Ok(Ok(())) => tracing::info!("offline heartbeat sent; stopping"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not send the offline heartbeat"),
        Err(_) => {
            tracing::warn!("NATS unreachable: offline heartbeat not confirmed; stopping anyway")
        }
    }
    Ok(())
}

/// A NATS client with the configured (or the hub's own) credentials.
async fn connect(nats: &NatsSettings) -> anyhow::Result<Client> {
    let (options, addrs) = nats
        .connect_options()
        .await
        .context("reading the NATS credentials file")?;
    let url = nats.display_url();
    options
        .event_callback(move |event| {
            let url = url.clone();
            async move {
                match event {
                    Event::Connected => tracing::info!(url, "connected to NATS"),
                    Event::Disconnected => {
                        tracing::warn!(url, "NATS connection lost; reconnecting")
                    }
                    other => tracing::debug!(url, event = %other, "NATS event"),
                }
            }
        })
        .connect(addrs)
        .await
        .context("setting up the NATS connection")
}

/// Refreshes the hub's credentials once two thirds of their lifetime have
/// passed, keeps them in the state directory, and moves the heartbeats to a
/// connection made with the new NATS credentials (made before the old one
/// is dropped, so at most one beat is missed).
async fn keep_fresh(
    settings: AgentSettings,
    http: reqwest::Client,
    mut held: Identity,
    current: watch::Sender<Client>,
    shutdown: CancellationToken,
) {
    let mut backoff = REGISTER_RETRY.schedule();
    let mut wait = until(held.refresh_due());
    loop {
        tracing::debug!(refresh_in_s = wait.as_secs(), expires_at = %held.expires_at, "next credential refresh");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        let fresh = match state::refresh(&settings, &http, &held).await {
            Ok(fresh) => fresh,
            Err(e) => {
                wait = backoff.next_delay();
                tracing::warn!(error = format!("{e:#}"), retry_in_s = wait.as_secs(), expires_at = %held.expires_at, "could not refresh the hub credentials");
                continue;
            }
        };
        backoff = REGISTER_RETRY.schedule();
        tracing::info!(expires_at = %fresh.expires_at, "hub credentials refreshed");
        if let Some(creds) = &fresh.creds {
            let mut nats = settings.nats.clone();
            nats.creds_file = Some(creds.clone());
            match connect(&nats).await {
                Ok(client) => {
                    let old = current.send_replace(client);
                    // Let what the old connection still buffers go out.
                    let _ = tokio::time::timeout(Duration::from_secs(2), old.drain()).await;
                    tracing::info!("reconnected to NATS with the refreshed credentials");
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "could not connect with the refreshed NATS credentials"
                ),
            }
        }
        held = fresh;
        wait = until(held.refresh_due());
    }
}

/// How long until `at` (zero if it has passed).
fn until(at: chrono::DateTime<Utc>) -> Duration {
    (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

fn heartbeat(settings: &AgentSettings, agent_id: &str, seq: u64, status: HubStatus) -> Heartbeat {
    let hub = &settings.hub;
    Heartbeat {
        project_slug: hub.slug.clone(),
        mesh_namespace: Some(protocol::mesh_namespace(&hub.slug)),
        hub_url: Some(hub.hub_url.clone()),
        status,
        timestamp: Some(Utc::now()),
        agent_id: Some(agent_id.to_owned()),
        seq: Some(seq),
        interval_s: Some(hub.interval.as_secs().max(1) as u32),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    }
}

async fn publish(client: &Client, subject: &str, hb: &Heartbeat) {
    // While disconnected the client buffers; never let a full buffer stall us.
    match tokio::time::timeout(
        Duration::from_secs(2),
        client.publish(subject.to_owned(), hb.to_payload().into()),
    )
    .await
    {
        Ok(Ok(())) => tracing::debug!(seq = hb.seq, "heartbeat published"),
        Ok(Err(e)) => tracing::warn!(error = %e, "heartbeat not published"),
        Err(_) => tracing::warn!("heartbeat not published: NATS client busy"),
    }
}

/// A failed, slow or non-2xx probe means `degraded`.
async fn probe(http: &reqwest::Client, url: &str, timeout: Duration) -> HubStatus {
    match http.get(url).timeout(timeout).send().await {
        Ok(r) if r.status().is_success() => HubStatus::Online,
        Ok(r) => {
            tracing::debug!(status = r.status().as_u16(), "health probe failed");
            HubStatus::Degraded
        }
        Err(e) => {
            tracing::debug!(error = %e, "health probe failed");
            HubStatus::Degraded
        }
    }
}

fn jittered(interval: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return interval;
    }
    let factor = rand::rng().random_range((1.0 - jitter)..=(1.0 + jitter));
    interval.mul_f64(factor)
}

/// How registration is retried (the shared policy; a refusal waits the
/// longest delay).
const REGISTER_RETRY: common::retry::Backoff =
    common::retry::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// Registers the project, then every `catalog.recheck_interval` asks the
/// catalog for it and registers it again when the answer is 404 (deleted,
/// or a database restored from before it existed). Other answers change
/// nothing: an unreachable catalog is not a missing project.
async fn keep_registered(
    settings: AgentSettings,
    http: reqwest::Client,
    shutdown: CancellationToken,
) {
    let (Some(base), Some(key)) = (&settings.catalog.url, &settings.catalog.api_key) else {
        return;
    };
    let base = base.trim_end_matches('/');
    let url = format!("{base}/api/fed/projects/{}", settings.hub.slug);
    let every = settings.catalog.recheck_interval;
    loop {
        if !register(&settings, &http, &shutdown).await || every.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
            let known = http
                .get(&url)
                .header("X-API-Key", key.expose_secret())
                .send()
                .await;
            match known {
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    tracing::warn!("the catalog no longer knows this hub; registering it again");
                    break;
                }
                Ok(r) if !r.status().is_success() => {
                    tracing::debug!(status = r.status().as_u16(), "registration check refused")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "registration check failed"),
            }
        }
    }
}

/// Registers (or updates) the project, retrying with backoff until the
/// catalog accepts it (`true`) or shutdown (`false`). Registration is
/// idempotent on the service side.
async fn register(
    settings: &AgentSettings,
    http: &reqwest::Client,
    shutdown: &CancellationToken,
) -> bool {
    let (Some(base), Some(key)) = (&settings.catalog.url, &settings.catalog.api_key) else {
        return false;
    };
    let url = format!("{}/api/fed/projects", base.trim_end_matches('/'));
    let hub = &settings.hub;
    // Only what this hub knows: the catalog keeps what an operator set.
    let mut body = serde_json::json!({
        "project_slug": hub.slug,
        "hub_url": hub.hub_url,
        "mesh_namespace": protocol::mesh_namespace(&hub.slug),
    });
    if let Some(name) = &hub.name {
        body["name"] = name.clone().into();
    }
    if let Some(tags) = &hub.tags {
        body["tags"] = tags.clone().into();
    }
    let mut backoff = REGISTER_RETRY.schedule();
    for attempt in 1u32.. {
        let mut delay = backoff.next_delay();
        let result = http
            .post(&url)
            .header("X-API-Key", key.expose_secret())
            .json(&body)
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => {
                tracing::info!(
                    status = r.status().as_u16(),
                    attempt,
                    "registered with the catalog"
                );
                return true;
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let detail = r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v["detail"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                // A refusal will not fix itself quickly: retry slowly.
                if r_is_client_error(status) {
                    delay = REGISTER_RETRY.max;
                }
                tracing::warn!(
                    status,
                    detail,
                    attempt,
                    retry_in_s = delay.as_secs(),
                    "catalog refused the registration"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, retry_in_s = delay.as_secs(), "catalog unreachable")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return false,
        }
    }
    false
}

fn r_is_client_error(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds() {
        let base = Duration::from_secs(30);
        for _ in 0..1000 {
            let d = jittered(base, 0.1);
            assert!(
                d >= Duration::from_secs(27) && d <= Duration::from_secs(33),
                "{d:?}"
            );
        }
        assert_eq!(jittered(base, 0.0), base);
    }
}
