//! The spoke registry: registration, lifecycle, transition log, links,
//! public IdPs, and the outbox written in the same transaction.

use serde_json::{json, Value};
use service::spoke::{LinkDirection, LinkStatus};
use service::store::links::{self, LinkUpdate};

use crate::fedkit::*;
use crate::helpers::*;

#[tokio::test]
async fn a_registration_lands_pending_and_registering_again_returns_it() {
    let app = spawn_app().await;
    let res = post_registration(&app, AGENT_KEY, &spoke_body("FRA")).await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let spoke: Value = res.json().await.unwrap();
    let id = spoke["id"].as_str().unwrap();
    assert!(
        id.len() == 18 && id.starts_with("spoke-fra-"),
        "{id} is not spoke-fra-<8 hex>"
    );
    assert!(id[10..]
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(location, format!("/api/federation/spokes/{id}"));
    assert_eq!(spoke["status"], "pending");
    assert_eq!(spoke["instance_code"], "FRA");
    assert_eq!(spoke["cert_fingerprint"], "ab".repeat(32));

    // Again, same attributes (with an admin key this time): the same record, nothing written.
    let res = post_registration(&app, ADMIN_KEY, &spoke_body("FRA")).await;
    assert_eq!(res.status(), 200);
    let again: Value = res.json().await.unwrap();
    assert_eq!(again, spoke);
    assert_eq!(app.outbox_types().await, ["federation.spoke.registered"]);

    // Blank optional fields are the same as none.
    let mut blank = spoke_body("DEU");
    blank["cert_fingerprint"] = json!("");
    blank["contact"] = json!(" ");
    let res = post_registration(&app, AGENT_KEY, &blank).await;
    assert_eq!(res.status(), 201);
    let deu: Value = res.json().await.unwrap();
    assert_eq!(deu["cert_fingerprint"], Value::Null);
    assert_eq!(deu["contact"], Value::Null);

    // The same spoke, with its conditions (not approved, nothing observed).
    let mut got: Value = app.get_value(&location, Some(AGENT_KEY)).await;
    let conditions = got.as_object_mut().unwrap().remove("conditions").unwrap();
    let onboarding = got.as_object_mut().unwrap().remove("onboarding").unwrap();
    let revision = got.as_object_mut().unwrap().remove("revision").unwrap();
    assert_eq!(got, spoke);
    assert_eq!(onboarding["state"], "awaiting_approval", "{onboarding}");
    assert_eq!(revision, Value::Null);
    assert_eq!(conditions.as_array().unwrap().len(), 6, "{conditions}");
    assert_eq!(conditions[0]["reason"], "AWAITING_APPROVAL", "{conditions}");
    let history: Value = app
        .get_value(&format!("{location}/history"), Some(AGENT_KEY))
        .await;
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["from_status"], Value::Null);
    assert_eq!(history[0]["to_status"], "pending");
    assert_eq!(history[0]["actor"], service::auth::fingerprint(AGENT_KEY));
}

#[tokio::test]
async fn nothing_in_a_registration_can_approve_it_and_bad_input_writes_nothing() {
    let app = spawn_app().await;
    let with = |field: &str, value: Value| {
        let mut b = spoke_body("FRA");
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = spoke_body("FRA");
        b.as_object_mut().unwrap().remove(field);
        b
    };
    // (field, value, what the message says): one wrong field at a time.
    let wrong: [(&str, Value, &str); 12] = [
        ("status", json!("approved"), "is not a known field"),
        ("id", json!("spoke-fra-00000000"), "is not a known field"),
        ("instance_code", json!("fra"), "upper-case"),
        ("instance_code", json!("FR"), "upper-case"),
        ("instance_code", json!("XKX"), "not an assigned"),
        ("instance_code", json!("USA"), "hub's own code"),
        ("base_url", json!("ftp://fra"), "http(s) URL"),
        ("idp_public_url", json!("https://u:p@idp"), "no credentials"),
        ("idp_internal_url", json!("not a url"), "http(s) URL"),
        ("cert_fingerprint", json!("abc"), "SHA-256"),
        ("name", json!("   "), "not blank"),
        ("name", json!(42), "must be a string, not a number"),
    ];
    let mut cases: Vec<(Value, Vec<&str>, &str)> = wrong
        .into_iter()
        .map(|(field, value, words)| (with(field, value), vec![field], words))
        .collect();
    cases.push((
        without("idp_public_url"),
        vec!["idp_public_url"],
        "is required",
    ));
    cases.push((
        json!({"instance_code": "fra", "name": "", "base_url": "x", "idp_public_url": "y"}),
        vec!["base_url", "idp_public_url", "instance_code", "name"],
        "",
    ));
    for (body, fields, words) in cases {
        let res = post_registration(&app, AGENT_KEY, &body).await;
        let problem = assert_problem(res, 422).await;
        let got = error_fields(&problem);
        assert_eq!(got, fields, "{body}: {problem}");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(words),
            "{body}: {problem}"
        );
    }
    app.assert_counts(
        &[("spokes", 0), ("spoke_transitions", 0), ("outbox", 0)],
        "",
    )
    .await;
}

#[tokio::test]
async fn a_live_code_registered_with_other_attributes_is_a_conflict() {
    let app = spawn_app().await;
    let first = register(&app, "FRA").await;
    let mut other = spoke_body("FRA");
    other["base_url"] = json!("https://elsewhere.example");
    let problem = assert_problem(post_registration(&app, AGENT_KEY, &other).await, 409).await;
    assert_eq!(problem["current"]["id"], first["id"]);
    let detail = detail_of(&problem);
    assert!(
        detail.contains("instance_code FRA") && detail.contains("base_url"),
        "{detail}"
    );
    app.assert_counts(&[("spokes", 1), ("outbox", 1)], "").await;
}

#[tokio::test]
async fn a_revoked_spoke_registers_again_as_a_fresh_pending_record() {
    let (app, old) = app_with_spoke("DEU", "revoked").await;
    let fresh = register(&app, "DEU").await;
    assert_ne!(fresh["id"], old.as_str());
    assert_eq!(fresh["status"], "pending");
    // And that one is now the live record.
    let res = post_registration(&app, AGENT_KEY, &spoke_body("DEU")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["id"], fresh["id"]);
    let all: Value = app
        .get_value("/api/federation/spokes", Some(AGENT_KEY))
        .await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let revoked: Value = app
        .get_value("/api/federation/spokes?status=revoked", Some(AGENT_KEY))
        .await;
    assert_eq!(revoked.as_array().unwrap().len(), 1);
    assert_eq!(revoked[0]["id"], old.as_str());
    let bad = app
        .get("/api/federation/spokes?status=gone", Some(AGENT_KEY))
        .await;
    assert_problem(bad, 422).await;
}

/// Every (state, action) pair: allowed ones change the state, write one
/// transition, one event and the link effect; forbidden ones are 409 with
/// the current state and write nothing.
#[tokio::test]
async fn lifecycle_table_of_every_allowed_and_forbidden_transition() {
    let app = spawn_app().await;
    // (from, action, Some(to) if allowed, links after)
    let table: [(&str, &str, Option<&str>, Option<&str>); 16] = [
        ("pending", "approve", Some("approved"), Some("CREATING")),
        ("pending", "suspend", None, None),
        ("pending", "reinstate", None, None),
        ("pending", "revoke", Some("revoked"), None),
        ("approved", "approve", None, Some("CREATING")),
        ("approved", "suspend", Some("suspended"), Some("DISABLED")),
        ("approved", "reinstate", None, Some("CREATING")),
        ("approved", "revoke", Some("revoked"), Some("DISABLED")),
        ("suspended", "approve", None, Some("DISABLED")),
        ("suspended", "suspend", None, Some("DISABLED")),
        ("suspended", "reinstate", Some("approved"), Some("CREATING")),
        ("suspended", "revoke", Some("revoked"), Some("DISABLED")),
        ("revoked", "approve", None, None),
        ("revoked", "suspend", None, None),
        ("revoked", "reinstate", None, None),
        ("revoked", "revoke", None, None),
    ];
    let codes = [
        "FRA", "DEU", "GBR", "NLD", "BEL", "ITA", "ESP", "POL", "NOR", "DNK", "CAN", "PRT", "CZE",
        "EST", "LVA", "LTU",
    ];
    for ((from, action, to, links_after), code) in table.into_iter().zip(codes) {
        let id = spoke_in(&app, code, from).await;
        let events_before = app.count("outbox").await;
        let transitions_before = app.count("spoke_transitions").await;
        let res = act(&app, &id, action).await;
        let case = format!("{from} --{action}-->");
        match to {
            Some(to) => {
                assert_eq!(res.status(), 200, "{case}");
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["status"], to, "{case}");
                assert_eq!(body["status_reason"], format!("test {action}"), "{case}");
                assert_eq!(body["transition"]["from_status"], from, "{case}");
                assert_eq!(body["transition"]["to_status"], to, "{case}");
                assert_eq!(body["transition"]["actor"], "alice", "{case}");
                assert_eq!(
                    body["transition"]["key_fingerprint"],
                    service::auth::fingerprint(ADMIN_KEY),
                    "{case}"
                );
                app.assert_counts(
                    &[
                        ("outbox", events_before + 1),
                        ("spoke_transitions", transitions_before + 1),
                    ],
                    &case,
                )
                .await;
                let kind = match action {
                    "approve" => "approved",
                    "suspend" => "suspended",
                    "reinstate" => "reinstated",
                    _ => "revoked",
                };
                let last: (String, Option<String>) = sqlx::query_as(
                    "SELECT event_type, ce_subject FROM outbox ORDER BY xid DESC, seq DESC LIMIT 1",
                )
                .fetch_one(&app.pool)
                .await
                .unwrap();
                assert_eq!(last.0, format!("federation.spoke.{kind}"), "{case}");
                assert_eq!(last.1.as_deref(), Some(id.as_str()), "{case}");
            }
            None => {
                let problem = assert_problem(res, 409).await;
                assert_eq!(problem["current"]["status"], from, "{case}: {problem}");
                assert_eq!(problem["current"]["id"], id.as_str(), "{case}");
                assert!(
                    detail_of(&problem).contains(&format!("it is {from}")),
                    "{case}: {problem}"
                );
                app.assert_counts(
                    &[
                        ("outbox", events_before),
                        ("spoke_transitions", transitions_before),
                    ],
                    &case,
                )
                .await;
            }
        }
        let links: Value = app
            .get_value(
                &format!("/api/federation/links?spoke_id={id}"),
                Some(AGENT_KEY),
            )
            .await;
        let statuses = strings(&links, "status");
        match links_after {
            Some(s) => assert_eq!(statuses, [s, s], "{case} links"),
            None => assert!(statuses.is_empty(), "{case} links: {statuses:?}"),
        }
        let spoke: Value = app
            .get_value(&format!("/api/federation/spokes/{id}"), Some(AGENT_KEY))
            .await;
        assert_eq!(spoke["status"], to.unwrap_or(from), "{case}");
    }
}

#[tokio::test]
async fn approval_creates_both_directed_links_and_the_log_keeps_every_step() {
    let (app, id) = app_with_spoke("FRA", "approved").await;
    let links: Value = app
        .get_value("/api/federation/links", Some(AGENT_KEY))
        .await;
    let pairs: Vec<(String, String, String)> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["spoke_id"], id.as_str());
            assert_eq!(l["retry_count"], 0);
            assert_eq!(l["last_error"], Value::Null);
            assert_eq!(l["last_verified_at"], Value::Null);
            (
                l["direction"].as_str().unwrap().to_owned(),
                l["source_code"].as_str().unwrap().to_owned(),
                l["target_code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            (
                "HUB_TO_SPOKE".to_owned(),
                "USA".to_owned(),
                "FRA".to_owned()
            ),
            (
                "SPOKE_TO_HUB".to_owned(),
                "FRA".to_owned(),
                "USA".to_owned()
            ),
        ]
    );
    act_ok(&app, &id, "suspend").await;
    act_ok(&app, &id, "reinstate").await;
    act_ok(&app, &id, "revoke").await;
    let history: Value = app
        .get_value(
            &format!("/api/federation/spokes/{id}/history"),
            Some(AGENT_KEY),
        )
        .await;
    let steps: Vec<(Value, Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["from_status"].clone(), t["to_status"].clone()))
        .collect();
    assert_eq!(
        steps,
        [
            (Value::Null, json!("pending")),
            (json!("pending"), json!("approved")),
            (json!("approved"), json!("suspended")),
            (json!("suspended"), json!("approved")),
            (json!("approved"), json!("revoked")),
        ]
    );
    assert_eq!(
        app.outbox_types().await,
        [
            "federation.spoke.registered",
            "federation.spoke.approved",
            "federation.spoke.suspended",
            "federation.spoke.reinstated",
            "federation.spoke.revoked",
        ]
    );
    let disabled: Value = app
        .get_value("/api/federation/links?status=DISABLED", Some(AGENT_KEY))
        .await;
    assert_eq!(disabled.as_array().unwrap().len(), 2);
    assert_problem(
        app.get("/api/federation/links?spoke_id=FRA", Some(AGENT_KEY))
            .await,
        422,
    )
    .await;
}

/// Of many simultaneous identical transitions exactly one wins.
#[tokio::test]
async fn concurrent_transitions_on_one_spoke_serialize() {
    let app = spawn_app().await;
    for (action, start) in [("approve", "pending"), ("revoke", "suspended")] {
        let code = if action == "approve" { "FRA" } else { "DEU" };
        let id = spoke_in(&app, code, start).await;
        let events_before = app.count("outbox").await;
        let n = 40;
        let requests = (0..n).map(|_| {
            let (client, url) = (
                app.client.clone(),
                app.url(&format!("/api/federation/spokes/{id}/{action}")),
            );
            async move {
                client
                    .post(url)
                    .header("X-API-Key", ADMIN_KEY)
                    .json(&json!({"reason": "race"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        });
        let statuses = futures::future::join_all(requests).await;
        let ok = statuses.iter().filter(|s| **s == 200).count();
        let conflict = statuses.iter().filter(|s| **s == 409).count();
        assert_eq!((ok, conflict), (1, n - 1), "{action}: {statuses:?}");
        assert_eq!(app.count("outbox").await, events_before + 1, "{action}");
        let transitions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM spoke_transitions WHERE spoke_id = $1 AND reason = 'race'",
        )
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(transitions, 1, "{action}");
    }
}

/// The same race below the HTTP layer, with as many database sessions as
/// contenders, so every one of them really is in flight at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_sessions_racing_to_approve_one_spoke_make_one_approval() {
    use service::spoke::{SpokeAction, TransitionRequest};
    use service::store::audit::Actor;
    use service::store::spokes::{self, TransitionOutcome};
    let (app, id) = app_with_spoke("FRA", "pending").await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(50)
        .min_connections(50)
        .connect(&app.db.url)
        .await
        .unwrap();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let racers = (0..50).map(|i| {
        let (pool, id, barrier) = (pool.clone(), id.clone(), barrier.clone());
        tokio::spawn(async move {
            let spec = TransitionRequest {
                reason: format!("racer {i}"),
                operator: None,
            }
            .into_spec(SpokeAction::Approve, "sha256:test")
            .unwrap();
            barrier.wait().await;
            spokes::transition(&pool, &id, &spec, "USA", &Actor::key("sha256:test"))
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<TransitionOutcome> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let done = outcomes
        .iter()
        .filter(|o| matches!(o, TransitionOutcome::Done(_)))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, TransitionOutcome::NotAllowed(s) if s.status == service::spoke::SpokeStatus::Approved))
        .count();
    assert_eq!((done, refused), (1, 49));
    app.assert_counts(
        &[
            ("outbox", 2),
            ("spoke_transitions", 2),
            ("federation_links", 2),
            // The registration, the approval, and 49 refusals.
            ("audit_log", 51),
        ],
        "",
    )
    .await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_code_make_one_spoke() {
    let app = spawn_app().await;
    let requests = (0..20).map(|_| {
        let (client, url) = (app.client.clone(), app.url("/api/federation/register"));
        async move {
            let res = client
                .post(url)
                .header("X-API-Key", AGENT_KEY)
                .json(&spoke_body("NLD"))
                .send()
                .await
                .unwrap();
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap()["id"].clone(),
            )
        }
    });
    let results = futures::future::join_all(requests).await;
    assert_eq!(
        results.iter().filter(|r| r.0 == 201).count(),
        1,
        "{results:?}"
    );
    assert!(results.iter().all(|r| r.0 == 201 || r.0 == 200));
    assert!(results.iter().all(|r| r.1 == results[0].1));
    app.assert_counts(&[("spokes", 1), ("outbox", 1)], "").await;
}

#[tokio::test]
async fn transitions_need_an_admin_key_and_a_reason() {
    let (app, id) = app_with_spoke("FRA", "pending").await;
    let path = format!("/api/federation/spokes/{id}/approve");
    let problem = assert_problem(
        app.post_json(&path, Some(AGENT_KEY), &json!({"reason": "x"}))
            .await,
        403,
    )
    .await;
    assert!(detail_of(&problem).contains("admin"));
    for (body, field) in [
        (json!({}), "reason"),
        (json!({"reason": "  "}), "reason"),
        (json!({"reason": 1}), "reason"),
        (json!({"reason": "ok", "status": "approved"}), "status"),
        (json!({"reason": "ok", "operator": "a\u{7}b"}), "operator"),
        (json!({"reason": "a\u{0}b"}), "reason"),
    ] {
        let problem = assert_problem(app.post_json(&path, Some(ADMIN_KEY), &body).await, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    for missing in ["spoke-fra-00000000", "nope"] {
        assert_problem(
            app.post_json(
                &format!("/api/federation/spokes/{missing}/approve"),
                Some(ADMIN_KEY),
                &json!({"reason": "x"}),
            )
            .await,
            404,
        )
        .await;
        for tail in ["", "/history"] {
            let path = format!("/api/federation/spokes/{missing}{tail}");
            assert_problem(app.get(&path, Some(AGENT_KEY)).await, 404).await;
        }
    }
    let spoke: Value = app
        .get_value(&format!("/api/federation/spokes/{id}"), Some(AGENT_KEY))
        .await;
    assert_eq!(spoke["status"], "pending");
    app.assert_counts(&[("outbox", 1), ("spoke_transitions", 1)], "")
        .await;
}

/// The event is the transaction's last write: if it fails, the state change
/// before it is rolled back; if an earlier write fails, no event exists.
#[tokio::test]
async fn a_failed_transaction_emits_nothing_and_changes_nothing() {
    let (app, id) = app_with_spoke("FRA", "pending").await;
    app.sql(
        "CREATE FUNCTION fail_now() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'injected failure'; END; $$",
    )
    .await;
    for table in ["outbox", "federation_links", "spoke_transitions"] {
        app.sql(&format!(
            "CREATE TRIGGER fail_now BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION fail_now()"
        )).await;
        let res = act(&app, &id, "approve").await;
        assert_problem(res, 500).await;
        let status: String = sqlx::query_scalar("SELECT status FROM spokes WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(status, "pending", "failure in {table}");
        app.assert_counts(
            &[
                ("outbox", 1),
                ("spoke_transitions", 1),
                ("federation_links", 0),
            ],
            &format!("failure in {table}"),
        )
        .await;
        // A registration fails as a whole too.
        let res = post_registration(&app, AGENT_KEY, &spoke_body("DEU")).await;
        if table != "federation_links" {
            assert_problem(res, 500).await;
            assert_eq!(app.count("spokes").await, 1, "failure in {table}");
        } else {
            // Registration writes no link: it succeeds. Undo it for the next round.
            assert_eq!(res.status(), 201);
            app.sql("DELETE FROM outbox WHERE event_type = 'federation.spoke.registered' AND ce_subject LIKE 'spoke-deu-%'").await;
            app.sql("DELETE FROM spokes WHERE instance_code = 'DEU'")
                .await;
        }
        app.sql(&format!("DROP TRIGGER fail_now ON {table}")).await;
    }
    // With the database healthy again the same request goes through.
    act_ok(&app, &id, "approve").await;
    app.assert_counts(&[("outbox", 2), ("federation_links", 2)], "")
        .await;
}

#[tokio::test]
async fn public_idps_are_approved_spokes_with_an_active_link_whose_hub_is_live() {
    let app = spawn_app().await;
    // Approved, HUB_TO_SPOKE ACTIVE (as the sync sets it), hub online: shown.
    let fra = spoke_in(&app, "FRA", "approved").await;
    // Approved, ACTIVE, hub degraded: shown.
    let nld = spoke_in(&app, "NLD", "approved").await;
    // Approved, ACTIVE, hub offline: hidden. No hub project: hidden.
    let deu = spoke_in(&app, "DEU", "approved").await;
    let gbr = spoke_in(&app, "GBR", "approved").await;
    // Approved, hub online, but the link not ACTIVE (IdP not verified): hidden.
    spoke_in(&app, "ESP", "approved").await;
    for id in [&fra, &nld, &deu, &gbr] {
        links::update_status(
            &app.pool,
            id,
            LinkDirection::HubToSpoke,
            &LinkUpdate::Active,
            None,
        )
        .await
        .unwrap()
        .expect("the link");
    }
    // Live hubs, but pending / suspended spokes: hidden.
    spoke_in(&app, "BEL", "pending").await;
    spoke_in(&app, "ITA", "suspended").await;
    app.create_projects(&["fra", "nld", "deu", "esp", "bel", "ita"])
        .await;
    app.sql(
        "UPDATE projects SET status = CASE slug WHEN 'nld' THEN 'degraded' WHEN 'deu' THEN 'offline' ELSE 'online' END",
    ).await;
    let idps = app.get_ok("/api/idps/public", None).await;
    let codes = strings(&idps, "instance_code");
    assert_eq!(codes, ["FRA", "NLD"]);
    assert_eq!(idps[0]["alias"], "fra-idp");
    assert_eq!(idps[0]["spoke_id"], fra.as_str());
    assert_eq!(idps[0]["idp_url"], "https://idp.fra.example:8453");
    assert_eq!(idps[0]["hub_status"], "online");
    assert_eq!(idps[1]["hub_status"], "degraded");

    // Suspending FRA hides it at once.
    act_ok(&app, &fra, "suspend").await;
    let idps: Value = app.get_value("/api/idps/public", None).await;
    assert_eq!(idps.as_array().unwrap().len(), 1);
}

/// The store functions the sync worker drives links with.
#[tokio::test]
async fn the_sync_worker_moves_links_and_cannot_revive_a_disabled_one() {
    let (app, id) = app_with_spoke("FRA", "approved").await;
    let failed = LinkUpdate::Failed {
        code: "KC_UNREACHABLE".into(),
        message: "connection refused".into(),
    };
    // The hub-to-spoke link after `update`, which must find it.
    let hub_to_spoke = |update: LinkUpdate| {
        let (pool, id) = (app.pool.clone(), id.clone());
        async move {
            links::update_status(&pool, &id, LinkDirection::HubToSpoke, &update, None)
                .await
                .unwrap()
                .expect("the link")
        }
    };
    for expected in [1, 2] {
        let link = hub_to_spoke(failed.clone()).await;
        assert_eq!(link.status, LinkStatus::Failed);
        assert_eq!(link.retry_count, expected);
        assert_eq!(link.last_error_code.as_deref(), Some("KC_UNREACHABLE"));
    }
    let link = hub_to_spoke(LinkUpdate::Creating).await;
    assert_eq!((link.status, link.retry_count), (LinkStatus::Creating, 2));
    let link = hub_to_spoke(LinkUpdate::Active).await;
    assert_eq!(link.status, LinkStatus::Active);
    assert_eq!(link.retry_count, 0);
    assert_eq!(link.last_error, None);
    assert_eq!(link.last_error_code, None);
    assert!(link.last_verified_at.is_some());

    let api: Value = app
        .get_value("/api/federation/links?status=ACTIVE", Some(AGENT_KEY))
        .await;
    assert_eq!(api.as_array().unwrap().len(), 1);
    assert_eq!(api[0]["direction"], "HUB_TO_SPOKE");

    act_ok(&app, &id, "suspend").await;
    for direction in LinkDirection::ALL {
        let r = links::update_status(&app.pool, &id, direction, &LinkUpdate::Active, None)
            .await
            .unwrap();
        assert!(r.is_none(), "a DISABLED link was revived");
    }
    let listed = links::list(&app.pool, &Default::default()).await.unwrap();
    assert!(listed.iter().all(|l| l.status == LinkStatus::Disabled));
    let approved =
        service::store::spokes::list(&app.pool, Some(service::spoke::SpokeStatus::Suspended))
            .await
            .unwrap();
    assert_eq!(approved.len(), 1);
}
