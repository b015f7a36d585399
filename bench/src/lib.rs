//! Shared by the load generators: starting the real service binary on a
//! throwaway database and a private nats-server, reading its metrics and
//! memory, and summarising latencies.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::Subject;
use bytes::Bytes;
use chrono::Utc;
use protocol::{Heartbeat, HubStatus};

pub const ADMIN_KEY: &str = "bench-admin-key-0123456789abcdef";

/// The release binary next to this one, unless `--service-bin` says otherwise.
pub fn default_service_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("federation")))
        .unwrap_or_else(|| PathBuf::from("target/release/federation"))
}

/// The option every load generator takes.
#[derive(Debug, clap::Args)]
pub struct ServiceBin {
    /// The service binary (default: `federation` beside this one).
    #[arg(long)]
    service_bin: Option<PathBuf>,
}

impl ServiceBin {
    /// The binary named by `--service-bin`, else [`default_service_bin`].
    pub fn path(&self) -> PathBuf {
        self.service_bin.clone().unwrap_or_else(default_service_bin)
    }
}

/// The service's liveness thresholds, as the environment it reads them from.
pub fn liveness_env(
    degraded_after: Duration,
    stale_threshold: Duration,
) -> Vec<(&'static str, String)> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    vec![
        ("FEDERATION__HEARTBEAT__DEGRADED_AFTER", ms(degraded_after)),
        (
            "FEDERATION__HEARTBEAT__STALE_THRESHOLD",
            ms(stale_threshold),
        ),
    ]
}

/// Hub `hub{i}`'s heartbeat number `seq`, sent by `agent`: its subject and
/// payload.
pub fn heartbeat(i: usize, seq: u64, status: HubStatus, agent: &str) -> (Subject, Bytes) {
    let slug = format!("hub{i}");
    let hb = Heartbeat {
        project_slug: slug.clone(),
        mesh_namespace: Some(protocol::mesh_namespace(&slug)),
        hub_url: Some(format!("http://{slug}:9001")),
        status,
        timestamp: Some(Utc::now()),
        agent_id: Some(agent.into()),
        seq: Some(seq),
        // None: the hubs are judged by the thresholds the bench gives the
        // service (liveness_env), not by deadlines of their own.
        interval_s: None,
        version: Some("bench".into()),
    };
    (
        Subject::from(protocol::subjects::heartbeat_subject(&slug)),
        hb.to_payload().into(),
    )
}

/// Publishes every message once, then flushes.
pub async fn publish_each(
    client: &async_nats::Client,
    messages: &[(Subject, Bytes)],
) -> anyhow::Result<()> {
    for (subject, payload) in messages {
        client.publish(subject.clone(), payload.clone()).await?;
    }
    client.flush().await?;
    Ok(())
}

/// Steady load until `stop`: every `tick`, the next `per_tick` of the first
/// `hubs` messages, round robin. Publish errors are ignored.
pub fn background_load(
    client: async_nats::Client,
    messages: Arc<Vec<(Subject, Bytes)>>,
    hubs: usize,
    (tick, per_tick): (Duration, usize),
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0usize;
        let mut next = tokio::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..per_tick {
                let (subject, payload) = &messages[i % hubs];
                let _ = client.publish(subject.clone(), payload.clone()).await;
                i += 1;
            }
            next += tick;
            tokio::time::sleep_until(next).await;
        }
    })
}

/// Asks `done` every `pause` until it says yes; after `limit`, an error
/// that says `what` did not happen.
pub async fn wait_until<F, Fut>(
    limit: Duration,
    pause: Duration,
    what: &str,
    mut done: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let t0 = std::time::Instant::now();
    while !done().await? {
        anyhow::ensure!(t0.elapsed() < limit, "{what}");
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

/// Hub `hub{i}`'s `heartbeat_seq` as the table holds it.
pub async fn stored_seq(pool: &sqlx::PgPool, i: usize) -> anyhow::Result<Option<u64>> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT heartbeat_seq FROM projects WHERE slug = $1")
        .bind(format!("hub{i}"))
        .fetch_one(pool)
        .await?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()))
}

/// Publishes one heartbeat, number `want`, and times until `seen` reports
/// it, asking every `pause` (Tokio's timer rounds that up to its 1 ms tick:
/// the resolution of the measure; asking back to back instead starves the
/// service of CPU on two cores). An error after 10 s.
pub async fn time_until_seen<F, Fut>(
    client: &async_nats::Client,
    (subject, payload): (Subject, Bytes),
    want: u64,
    pause: Duration,
    mut seen: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<u64>>>,
{
    let t0 = std::time::Instant::now();
    client.publish(subject, payload).await?;
    client.flush().await?;
    while seen().await? != Some(want) {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "heartbeat {want} never became visible"
        );
        tokio::time::sleep(pause).await;
    }
    Ok(t0.elapsed())
}

/// A metric's name, how to compare its value, and the value wanted.
pub type MetricGoal<'a> = (&'a str, fn(&f64, &f64) -> bool, f64);

/// Where `/metrics` is read: one service, or the sum over replicas.
pub trait Metrics {
    /// One sample value from `/metrics` (0 when absent).
    fn metric(&self, http: &reqwest::Client, name: &str) -> impl Future<Output = f64>;

    /// Waits until `reached(value, want)` holds for the metric `name`,
    /// asking every 50 ms; after `limit`, an error saying it did not.
    fn wait_metric(
        &self,
        http: &reqwest::Client,
        goal: MetricGoal<'_>,
        limit: Duration,
    ) -> impl Future<Output = anyhow::Result<()>> {
        wait_goal(goal, limit, move || self.metric(http, goal.0))
    }
}

/// Asks `value` every 50 ms until `goal` is reached; after `limit`, an
/// error saying it was not.
async fn wait_goal<F, Fut>(
    goal: MetricGoal<'_>,
    limit: Duration,
    mut value: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let (name, reached, want) = goal;
    let what = format!("{name} did not reach {want}");
    wait_until(limit, Duration::from_millis(50), &what, || {
        let v = value();
        async move { Ok(reached(&v.await, &want)) }
    })
    .await
}

/// A `federation serve` process.
pub struct Service {
    pub child: Child,
    pub port: u16,
    pub base: String,
}

impl Service {
    /// `federation serve` (the binary `bin` names) on `db_url` and
    /// `nats_url`, with `env` besides; returns at once.
    pub fn start(
        bin: &ServiceBin,
        db_url: &str,
        nats_url: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Service> {
        let port = testkit::free_port();
        let bin = bin.path();
        let mut cmd = testkit::clean_command(&bin);
        cmd.arg("serve")
            .env("FEDERATION_API_KEYS", ADMIN_KEY)
            .env("DATABASE_URL", db_url)
            .env("NATS_URL", nats_url)
            .env("FEDERATION_PORT", port.to_string())
            .env("FEDERATION__SERVER__HOST", "127.0.0.1")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Service {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/ready", self.base);
        testkit::wait_ok(&url, Duration::from_secs(60), "the service to be ready").await;
    }

    /// (current RSS, peak RSS) in KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn stop(mut self) {
        testkit::signal(self.child.id(), "-TERM");
        let _ = self.child.wait();
    }
}

impl Metrics for Service {
    async fn metric(&self, http: &reqwest::Client, name: &str) -> f64 {
        let Ok(r) = http.get(format!("{}/metrics", self.base)).send().await else {
            return 0.0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// A failed run must not leave the service behind.
impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// p50, p99, max of a set of durations (sorted in place).
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(0.50), at(0.99), samples[samples.len() - 1])
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Several `federation serve` processes on one database and one NATS,
/// sharing the heartbeats through the queue group; metrics and memory are
/// summed over them (what `scripts/bench cluster` compares: 1 vs 3).
pub struct Replicas(pub Vec<Service>);

impl Replicas {
    pub fn start(
        n: usize,
        bin: &ServiceBin,
        db_url: &str,
        nats_url: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Replicas> {
        anyhow::ensure!(n >= 1, "at least one replica");
        let services = (0..n)
            .map(|_| Service::start(bin, db_url, nats_url, env))
            .collect::<anyhow::Result<_>>()?;
        Ok(Replicas(services))
    }

    pub async fn wait_ready(&self) {
        for s in &self.0 {
            s.wait_ready().await;
        }
    }

    /// (current RSS, peak RSS) in KiB, summed over the replicas.
    pub fn memory_kib(&self) -> (u64, u64) {
        self.0
            .iter()
            .map(Service::memory_kib)
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    pub fn stop(self) {
        for s in self.0 {
            s.stop();
        }
    }
}

/// The sum of one sample over every replica.
impl Metrics for Replicas {
    async fn metric(&self, http: &reqwest::Client, name: &str) -> f64 {
        let mut sum = 0.0;
        for s in &self.0 {
            sum += s.metric(http, name).await;
        }
        sum
    }
}
