//! Leader election by advisory lock, against a real PostgreSQL.

use std::str::FromStr;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use service::leader::{Candidacy, Election};
use sqlx::postgres::PgConnectOptions;
use testkit::{eventually, TestDb};
use tokio_util::sync::CancellationToken;

const KEY: i64 = 42;
const CHECK: Duration = Duration::from_millis(100);

fn candidate(db: &TestDb, stop: &CancellationToken) -> (Election, Gauge) {
    let gauge = Gauge::default();
    let (e, _) = Election::spawn(Candidacy {
        name: "test",
        key: KEY,
        connect: PgConnectOptions::from_str(&db.url).unwrap(),
        check_every: CHECK,
        gauge: gauge.clone(),
        shutdown: stop.clone(),
    });
    (e, gauge)
}

async fn leaders(cands: &[&Election]) -> usize {
    cands.iter().filter(|c| c.is_leader()).count()
}

#[tokio::test]
async fn exactly_one_leads_and_a_standby_takes_over_when_it_dies() {
    let db = TestDb::create().await;
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let (a, gauge_a) = candidate(&db, &stop_a);
    let (b, gauge_b) = candidate(&db, &stop_b);
    eventually(Duration::from_secs(10), "a leader", || async {
        (leaders(&[&a, &b]).await == 1).then_some(())
    })
    .await;
    // Stays exactly one over several checks.
    for _ in 0..5 {
        tokio::time::sleep(CHECK).await;
        assert_eq!(leaders(&[&a, &b]).await, 1);
    }
    assert_eq!(gauge_a.get() + gauge_b.get(), 1);

    // Kill the leader's database session: the standby wins, the old leader
    // notices and steps down.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let leader_was_a = a.is_leader();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = $1",
    )
    .bind(KEY as i32)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(killed, 1);
    eventually(
        Duration::from_secs(10),
        "the standby to take over",
        || async {
            let now_a = a.is_leader();
            (now_a != leader_was_a && leaders(&[&a, &b]).await == 1).then_some(())
        },
    )
    .await;

    // A leader that shuts down releases at once.
    let (stop_leader, standby) = if a.is_leader() {
        (&stop_a, &b)
    } else {
        (&stop_b, &a)
    };
    stop_leader.cancel();
    eventually(
        Duration::from_secs(10),
        "the other to take over after shutdown",
        || async { standby.is_leader().then_some(()) },
    )
    .await;
    stop_a.cancel();
    stop_b.cancel();
}
