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

/// An office a replica can be elected to: its name (logs), the supervised worker that campaigns
/// for it (`worker_up`), and its advisory lock key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Office {
    pub name: &'static str,
    pub campaign: &'static str,
    pub key: i64,
}

/// The stale sweeper.
pub const SWEEPER: Office = Office {
    name: "sweeper",
    campaign: "sweeper_election",
    key: 0x6665_6473_7765_6570, // "fedswep"
};
/// The outbox relay.
pub const RELAY: Office = Office {
    name: "relay",
    campaign: "relay_election",
    key: 0x6665_6472_656c_6179, // "fedrelay"
};
/// The federation sync worker.
pub const SYNC: Office = Office {
    name: "sync",
    campaign: "sync_election",
    key: 0x6665_6473_796e_6321, // "fedsync!"
};

/// The lock a pass of the audit log's pruning takes (transaction-scoped,
/// not an election: see `crate::retention`).
pub const AUDIT_PRUNE_KEY: i64 = 0x6665_6461_7564_6974; // "fedaudit"
/// The lock a pass of hub history's pruning takes (see `crate::retention`).
pub const HISTORY_PRUNE_KEY: i64 = 0x6665_6468_6973_7421; // "fedhist!"

/// A replica's view of one election.
#[derive(Clone)]
pub struct Election {
    name: &'static str,
    rx: watch::Receiver<bool>,
}

/// What a replica campaigns with: which role, its lock, how to reach the
/// database, how often to check, the gauge that shows the outcome, and when
/// to stop.
pub struct Candidacy {
    pub name: &'static str,
    pub key: i64,
    pub connect: PgConnectOptions,
    pub check_every: Duration,
    /// 1 while this replica leads.
    pub gauge: Gauge,
    pub shutdown: CancellationToken,
}

impl Election {
    /// Starts campaigning until the candidacy's shutdown.
    pub fn spawn(candidacy: Candidacy) -> (Election, JoinHandle<()>) {
        let (election, campaign) = Self::prepare(candidacy);
        (election, tokio::spawn(campaign))
    }

    /// As [`Self::spawn`], with the campaign returned for the caller to run
    /// (under its supervisor).
    pub fn prepare(
        candidacy: Candidacy,
    ) -> (
        Election,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = watch::channel(false);
        let name = candidacy.name;
        (Election { name, rx }, campaign(candidacy, tx))
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

async fn campaign(candidacy: Candidacy, tx: watch::Sender<bool>) {
    let Candidacy {
        name,
        key,
        connect,
        check_every,
        gauge,
        shutdown,
    } = candidacy;
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
