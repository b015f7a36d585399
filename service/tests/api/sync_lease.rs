//! Per-spoke leases with fencing tokens (issue 12): only the holder acts on
//! a spoke, and a holder cut off past its lease has its late writes refused
//! by the token, in real PostgreSQL.

use std::time::Duration;

use service::conditions::{reasons, ConditionType, Observed};
use service::store;
use service::sync::lease::Leases;
use service::sync::links;
use sqlx::Connection;
use testkit::eventually;
use testkit::oidc::OidcStub;

use crate::helpers::*;
use crate::synckit::*;

const TTL: Duration = Duration::from_secs(60);

/// Ends the spoke's lease as if its holder had died `TTL` ago (time passing,
/// without waiting for it).
async fn expire(app: &TestApp, spoke_id: &str) {
    sqlx::query(
        "UPDATE spoke_leases SET expires_at = now() - interval '1 second' WHERE spoke_id = $1",
    )
    .bind(spoke_id)
    .execute(&app.pool)
    .await
    .unwrap();
}

fn reachable(reason: &'static str) -> Observed {
    Observed::is_true(ConditionType::IdpReachable, reason)
}

#[tokio::test]
async fn a_stale_holders_late_writes_are_refused_by_the_fencing_token() {
    let env = sync_env("").await;
    let app = &env.app;
    let oidc = OidcStub::start().await;
    let fra = approved_at(app, &oidc, "FRA").await;
    confirm(app, &fra).await;
    reconcile(app).await;
    assert!(links_all(app, &fra, "ACTIVE").await);
    let ids = vec![fra.clone()];

    // A takes the lease; B, another holder, gets nothing while it is live.
    let a = Leases::acquire(&app.pool, "holder-a", None, &ids, TTL)
        .await
        .unwrap();
    let token_a = a.token(&fra).expect("A holds FRA");
    let b = Leases::acquire(&app.pool, "holder-b", None, &ids, TTL)
        .await
        .unwrap();
    assert!(b.is_empty(), "only one holder at a time");
    // A pause shorter than the lease: A's write still lands.
    let row = [(fra.as_str(), 1, &reachable(reasons::DISCOVERED))];
    let n = store::conditions::set_many_fenced(&app.pool, &row, &[token_a])
        .await
        .unwrap();
    assert_eq!(n, 1);

    // A is cut off past its lease; B takes over with a newer token and
    // records what it sees: the IdP is down, the link fails.
    expire(app, &fra).await;
    let b = Leases::acquire(&app.pool, "holder-b", None, &ids, TTL)
        .await
        .unwrap();
    let token_b = b.token(&fra).expect("B holds FRA now");
    assert_eq!(token_b, token_a + 1, "one more at each acquisition");
    let down = Observed::is_false(
        ConditionType::IdpReachable,
        reasons::DISCOVERY_UNREACHABLE,
        "down",
    );
    let n = store::conditions::set_many_fenced(&app.pool, &[(fra.as_str(), 1, &down)], &[token_b])
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(links::derive(&app.pool, &ids, &b).await.unwrap(), 2);
    assert_links_failed(app, &fra, "DISCOVERY_UNREACHABLE").await;

    // A wakes up and writes what it saw before: refused, conditions and
    // links keep B's newer state.
    let late = store::conditions::set_many_fenced(&app.pool, &row, &[token_a])
        .await
        .unwrap();
    assert_eq!(late, 0, "the stale token is refused");
    assert_eq!(
        conditions(app, &fra).await["IdpReachable"],
        ("False".to_owned(), "DISCOVERY_UNREACHABLE".to_owned())
    );
    let before = links(app, &fra).await;
    assert_eq!(links::derive(&app.pool, &ids, &a).await.unwrap(), 0);
    assert_eq!(
        links(app, &fra).await,
        before,
        "A's links write was refused"
    );

    // B releases at the end of its run: the next holder gets the spoke at
    // once, with a newer token still.
    b.release(&app.pool).await.unwrap();
    let c = Leases::acquire(&app.pool, "holder-c", None, &ids, TTL)
        .await
        .unwrap();
    assert_eq!(c.token(&fra), Some(token_b + 1));
}

#[tokio::test]
async fn a_run_leaves_a_spoke_leased_elsewhere_alone_until_the_lease_expires() {
    let env = sync_env("").await;
    let app = &env.app;
    let fra = approved(app, "FRA").await;
    let gbr = approved(app, "GBR").await;
    // Another holder is busy with GBR.
    let other = Leases::acquire(
        &app.pool,
        "elsewhere",
        None,
        std::slice::from_ref(&gbr),
        TTL,
    )
    .await
    .unwrap();
    assert!(other.holds(&gbr));

    reconcile(app).await;
    assert!(env.stub.idp(REALM, "fra-idp").is_some());
    assert!(env.stub.idp(REALM, "gbr-idp").is_none(), "GBR is not ours");
    assert_eq!(
        conditions(app, &gbr).await["IdpConfigured"].0,
        "Unknown",
        "nothing recorded for GBR"
    );
    // The run released FRA's lease; GBR's is still the other holder's.
    let held: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT spoke_id, holder, expires_at > now() FROM spoke_leases ORDER BY spoke_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut want = vec![
        (fra.clone(), held[0].1.clone(), false),
        (gbr.clone(), "elsewhere".to_owned(), true),
    ];
    want.sort();
    assert_eq!(held, want);

    // Its holder died: once the lease expires, the next run takes GBR on.
    expire(app, &gbr).await;
    reconcile(app).await;
    assert!(env.stub.idp(REALM, "gbr-idp").is_some());
    assert_eq!(conditions(app, &gbr).await["IdpConfigured"].0, "True");
}

#[tokio::test]
async fn a_holder_whose_session_is_gone_loses_its_lease_before_it_expires() {
    let env = sync_env("").await;
    let app = &env.app;
    let fra = approved(app, "FRA").await;
    let ids = vec![fra.clone()];
    // The holder's run lives on its own session.
    let mut session = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut session)
        .await
        .unwrap();
    let dead = Leases::acquire(&app.pool, "crashed", Some(pid), &ids, TTL)
        .await
        .unwrap();
    assert!(dead.holds(&fra));
    // While the session lives (a pause), nobody else gets the spoke.
    let other = Leases::acquire(&app.pool, "next", None, &ids, TTL)
        .await
        .unwrap();
    assert!(other.is_empty());
    // The process dies: its session ends, the lease can be taken over at
    // once, with a newer token.
    session.close().await.unwrap();
    let next = eventually(Duration::from_secs(10), "the lease taken over", || async {
        let l = Leases::acquire(&app.pool, "next", None, &ids, TTL)
            .await
            .unwrap();
        l.token(&fra)
    })
    .await;
    assert_eq!(Some(next), dead.token(&fra).map(|t| t + 1));
}
