//! One leader among replicas, by PostgreSQL advisory lock.
//!
//! Each elected role (stale sweeper, outbox relay, sync worker) runs an
//! [`Election`]: a task holding a dedicated connection that tries
//! `pg_try_advisory_lock(key)` until it wins, then checks its connection
//! every `check_every` (`workers.leader_check_interval`, one setting for
//! every election). The lock lives as long as the session: if the leader
//! dies or its connection drops, PostgreSQL releases it and a standby wins
//! at its next try (a leader that lost its session waits three checks before
//! campaigning again, so it does not race the standbys back into the lock). Work done under the lock must be idempotent, since a
//! leader that lost its connection learns it within one check.

use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Advisory lock keys, one per elected role.
pub mod keys {
    /// The stale sweeper.
    pub const SWEEPER: i64 = 0x6665_6473_7765_6570; // "fedswep"
    /// The outbox relay.
    pub const RELAY: i64 = 0x6665_6472_656c_6179; // "fedrelay"
    /// The federation sync worker.
    pub const SYNC: i64 = 0x6665_6473_796e_6321; // "fedsync!"
    /// A pass of the audit log's pruning (a transaction-scoped lock, not an
    /// election: see `crate::audit`).
    pub const AUDIT_PRUNE: i64 = 0x6665_6461_7564_6974; // "fedaudit"
}

/// A replica's view of one election.
#[derive(Clone)]
pub struct Election {
    name: &'static str,
    rx: watch::Receiver<bool>,
}

impl Election {
    /// Starts campaigning for `key` until `shutdown`.
    pub fn spawn(
        name: &'static str,
        key: i64,
        connect: PgConnectOptions,
        check_every: Duration,
        gauge: Gauge,
        shutdown: CancellationToken,
    ) -> (Election, JoinHandle<()>) {
        let (election, campaign) = Self::prepare(name, key, connect, check_every, gauge, shutdown);
        (election, tokio::spawn(campaign))
    }

    /// As [`Self::spawn`], with the campaign returned for the caller to run
    /// (under its supervisor).
    pub fn prepare(
        name: &'static str,
        key: i64,
        connect: PgConnectOptions,
        check_every: Duration,
        gauge: Gauge,
        shutdown: CancellationToken,
    ) -> (
        Election,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = watch::channel(false);
        let campaign = campaign(name, key, connect, check_every, gauge, tx, shutdown);
        (Election { name, rx }, campaign)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether this replica leads right now.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until this replica leads; `false` if the election ended.
    pub async fn wait_until_leader(&mut self) -> bool {
        self.rx.wait_for(|leading| *leading).await.is_ok()
    }

    /// Waits until this replica stops leading; `false` if the election ended.
    pub async fn wait_until_follower(&mut self) -> bool {
        self.rx.wait_for(|leading| !*leading).await.is_ok()
    }

    /// The underlying channel, for `select!` loops.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}

async fn campaign(
    name: &'static str,
    key: i64,
    connect: PgConnectOptions,
    check_every: Duration,
    gauge: Gauge,
    tx: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let set = |leading: bool| {
        gauge.set(i64::from(leading));
        tx.send_replace(leading);
    };
    loop {
        let mut conn = tokio::select! {
            c = PgConnection::connect_with(&connect) => match c {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(role = name, error = %e, "election: cannot connect; retrying");
                    if sleep_or_stop(check_every, &shutdown).await { break; }
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Try for the lock until won, the connection fails, or shutdown.
        // Lock calls and liveness probes touch no table: they stay runtime
        // statements, unlike every query in `store` (checked at build time).
        let won = loop {
            match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut conn)
                .await
            {
                Ok(true) => break true,
                Ok(false) => {
                    if sleep_or_stop(check_every, &shutdown).await {
                        break false;
                    }
                }
                Err(e) => {
                    tracing::debug!(role = name, error = %e, "election: lock attempt failed; reconnecting");
                    break false;
                }
            }
        };
        if won {
            tracing::info!(role = name, "elected leader");
            set(true);
            // Hold it: prove the session is alive every check.
            loop {
                if sleep_or_stop(check_every, &shutdown).await {
                    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(key)
                        .execute(&mut conn)
                        .await;
                    break;
                }
                if let Err(e) = sqlx::query("SELECT 1").execute(&mut conn).await {
                    tracing::warn!(role = name, error = %e, "leader lost its database session; stepping down");
                    break;
                }
            }
            set(false);
            let _ = conn.close().await;
            // A replica whose session just died is the suspect one: let the
            // standbys (which try every check) win before campaigning again,
            // instead of racing them back into the lock it lost.
            if sleep_or_stop(check_every * 3, &shutdown).await {
                break;
            }
            continue;
        }
        let _ = conn.close().await;
        if shutdown.is_cancelled() {
            break;
        }
    }
    set(false);
    tracing::debug!(role = name, "election ended");
}

/// Sleeps; `true` if shutdown came first.
async fn sleep_or_stop(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}
