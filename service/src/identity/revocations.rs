//! Revocation within seconds: the federation account JWT carries every
//! revoked, unexpired hub NATS user; this worker re-signs it whenever the
//! set changes and sends it, as the system account's user (`sys.creds`), as
//! a request to `$SYS.REQ.CLAIMS.UPDATE`. nats-server answers 200, closes
//! the revoked users' connections and refuses their reconnects. The same
//! JWT is written to the authority directory, so a restarted server keeps
//! the revocations.
//!
//! The set is read from `hub_credentials` (level-triggered): a lost wake-up,
//! a failed push or a restart is repaired by the next pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::retry::Backoff;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Authority, SYSTEM_CREDS};
use crate::config::NatsSettings;
use crate::instrument::metrics;
use crate::store::credentials;

/// The subject nats-server takes account JWT updates on.
pub const CLAIMS_UPDATE: &str = "$SYS.REQ.CLAIMS.UPDATE";
/// How long one request (connect included) may take.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries per push, spaced by [`PUSH_RETRY`].
const PUSH_RETRY: Backoff =
    Backoff::new(Duration::from_millis(200), Duration::from_secs(1)).attempts(4);
/// After a failed pass, the next one comes after this (or at a wake-up).
const REPAIR: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
/// Between wake-ups, the set is read again this often: a revocation made
/// through another replica (whose push may have raced this one's) or an
/// expiry is pushed by this replica too, so every replica's last push
/// carries the whole set.
pub const RESYNC: Duration = Duration::from_secs(30);

metrics! {
    pub struct RevocationMetrics {
        /// Account JWT updates (with the hub revocations) accepted by nats-server
        pub pushed: Counter = "identity_revocation_pushes",
        /// Account JWT updates that failed after their retries (retried later)
        pub failed: Counter = "identity_revocation_push_failures",
        /// NATS users the federation account JWT revokes, as last pushed
        pub revoked_users: Gauge = "identity_revoked_nats_users",
    }
}

/// Keeps the servers' federation account in step with the revocations in
/// the database.
pub struct Revocations {
    authority: Arc<Authority>,
    db: PgPool,
    nats: NatsSettings,
    wake: Notify,
    metrics: RevocationMetrics,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// Why one push failed. Carries no secret (the JWT holds none either).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("authority: {0}")]
    Authority(#[from] super::IdentityError),
    #[error("cannot connect as the system user: {0}")]
    Connect(String),
    #[error("no answer within {PUSH_TIMEOUT:?}")]
    Timeout,
    #[error("request failed: {0}")]
    Request(String),
    #[error("nats-server refused the account update: {0}")]
    Refused(String),
}

impl Revocations {
    /// `nats` are the service's NATS settings; the push connects with the
    /// directory's `sys.creds` instead of the service's credentials.
    pub fn new(
        authority: Arc<Authority>,
        db: PgPool,
        nats: &NatsSettings,
        metrics: RevocationMetrics,
    ) -> Arc<Revocations> {
        let mut nats = nats.clone();
        nats.creds_file = Some(authority.dir().join(SYSTEM_CREDS));
        nats.client_name = format!("{}-revocations", nats.client_name);
        Arc::new(Revocations {
            authority,
            db,
            nats,
            wake: Notify::new(),
            metrics,
        })
    }

    /// The revocations changed: push them soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Pushes at start (when anything is revoked), after every wake-up and
    /// whenever the set read every [`RESYNC`] differs from the last pushed;
    /// a failed pass is repeated with backoff until it succeeds.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut pushed: Option<BTreeMap<String, i64>> = None;
        let mut repair = REPAIR.schedule();
        loop {
            let wait = match self.pass(&mut pushed).await {
                Ok(()) => {
                    repair.reset();
                    None
                }
                Err(e) => {
                    self.metrics.failed.inc();
                    tracing::warn!(error = %e, "could not push the hub revocations to NATS; retrying");
                    Some(repair.next_delay())
                }
            };
            let retry = tokio::time::sleep(wait.unwrap_or(RESYNC));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = retry => {}
            }
        }
    }

    /// One pass: read the set; if it differs from what was pushed, re-sign,
    /// write and push it.
    async fn pass(&self, pushed: &mut Option<BTreeMap<String, i64>>) -> Result<(), PushError> {
        let want: BTreeMap<String, i64> = credentials::nats_revocations(&self.db)
            .await?
            .into_iter()
            .collect();
        if pushed.as_ref() == Some(&want) || (pushed.is_none() && want.is_empty()) {
            *pushed = Some(want);
            return Ok(());
        }
        let jwt = self.authority.resign_account(&want)?;
        PUSH_RETRY
            .retry(|| self.push(&jwt), |e| !matches!(e, PushError::Refused(_)))
            .await?;
        self.metrics.pushed.inc();
        self.metrics.revoked_users.set(want.len() as i64);
        tracing::info!(
            revoked_users = want.len(),
            "federation account updated on NATS with the hub revocations"
        );
        *pushed = Some(want);
        Ok(())
    }

    /// Sends the account JWT to `$SYS.REQ.CLAIMS.UPDATE` and checks the answer.
    async fn push(&self, jwt: &str) -> Result<(), PushError> {
        let attempt = async {
            let (options, addrs) = self
                .nats
                .connect_options()
                .await
                .map_err(|e| PushError::Connect(e.to_string()))?;
            let client = options
                .connect(addrs)
                .await
                .map_err(|e| PushError::Connect(e.kind().to_string()))?;
            let answer = client
                .request(CLAIMS_UPDATE, jwt.to_owned().into())
                .await
                .map_err(|e| PushError::Request(e.kind().to_string()));
            let _ = client.drain().await;
            check_answer(&answer?.payload)
        };
        tokio::time::timeout(PUSH_TIMEOUT, attempt)
            .await
            .map_err(|_| PushError::Timeout)?
    }
}

/// nats-server answers `{"data":{"code":200,...}}` or `{"error":{...}}`.
fn check_answer(payload: &[u8]) -> Result<(), PushError> {
    let value: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|_| PushError::Refused("the answer is not JSON".into()))?;
    if value["data"]["code"].as_i64() == Some(200) {
        return Ok(());
    }
    let error = &value["error"];
    Err(PushError::Refused(format!(
        "code {}: {}",
        error["code"],
        error["description"].as_str().unwrap_or("no description")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_answer_is_read() {
        assert!(
            check_answer(br#"{"data":{"code":200,"account":"A","message":"jwt updated"}}"#).is_ok()
        );
        let refused = check_answer(br#"{"error":{"code":500,"account":"A","description":"bad"}}"#);
        assert!(matches!(refused, Err(PushError::Refused(d)) if d.contains("bad")));
        assert!(check_answer(b"nope").is_err());
    }
}
