//! Queries on `spokes` and `spoke_transitions`. Every change writes its
//! transition row, its link changes, its outbox event and its audit row in
//! one transaction; a refused change (a conflict) commits only its audit row.

use protocol::EventKind;
use sqlx::{PgConnection, PgExecutor, PgPool};

use super::audit::{self, Actor, AuditEntry};
use super::credentials::{self, CredentialKind};
use super::{conditions, links, outbox};
use crate::catalog::ProjectStatus;
use crate::conditions::{reasons, ConditionType, Observed, SpokeDetail};
use crate::spoke::{
    new_spoke_id, PublicIdp, Spoke, SpokeEventData, SpokeSpec, SpokeStatus, Transition,
    TransitionSpec,
};

/// The reason recorded for a registration.
pub const REGISTERED_REASON: &str = "registered";

/// What a registration did.
#[derive(Debug, Clone, PartialEq)]
pub enum Registered {
    /// A new pending spoke.
    Created(Spoke),
    /// The same registration again: the live record, unchanged, no event.
    Existing(Spoke),
    /// A live spoke of that code was registered with other attributes.
    Conflict {
        existing: Spoke,
        fields: Vec<&'static str>,
    },
}

/// Audit action of a registration.
pub const REGISTER_ACTION: &str = "spoke.register";

/// Registers a spoke as `pending`, or returns the live record of its code.
/// `actor` is audited; `key_fingerprint` names the key in the transition row.
pub async fn register(
    pool: &PgPool,
    spec: &SpokeSpec,
    actor: &Actor,
    key_fingerprint: &str,
) -> Result<Registered, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // A concurrent registration of the same code (or, vanishingly rarely, an
    // id collision) makes the insert do nothing; then look again.
    for _ in 0..5 {
        let live = sqlx::query_file_as!(
            Spoke,
            "src/store/sql/spoke_live_lock.sql",
            spec.instance_code
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = live {
            if spec.matches(&existing) {
                tx.rollback().await?;
                return Ok(Registered::Existing(existing));
            }
            let fields = spec.differences(&existing);
            let reason = format!(
                "instance_code {} is already registered ({}) with a different {}",
                existing.instance_code,
                existing.status.as_str(),
                fields.join(", ")
            );
            let target = audit::target("spoke", &existing.id);
            let entry = AuditEntry::refused(actor, REGISTER_ACTION, target, &reason);
            audit::record(&mut tx, &entry).await?;
            tx.commit().await?;
            return Ok(Registered::Conflict { existing, fields });
        }
        let inserted = sqlx::query_file_as!(
            Spoke,
            "src/store/sql/spoke_insert.sql",
            new_spoke_id(&spec.instance_code),
            spec.instance_code,
            spec.name,
            spec.endpoints.base_url,
            spec.endpoints.idp_public_url,
            spec.endpoints.idp_internal_url,
            spec.contact,
            spec.endpoints.cert_fingerprint,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(spoke) = inserted {
            init_conditions(&mut tx, &spoke).await?;
            let transition = insert_transition(
                &mut tx,
                &spoke.id,
                None,
                SpokeStatus::Pending,
                REGISTERED_REASON,
                key_fingerprint,
                key_fingerprint,
            )
            .await?;
            let data = SpokeEventData {
                spoke: spoke.clone(),
                transition,
            };
            outbox::enqueue(&mut tx, EventKind::SpokeRegistered, Some(&spoke.id), &data).await?;
            let target = audit::target("spoke", &spoke.id);
            let entry = AuditEntry::success(actor, REGISTER_ACTION, target);
            audit::record(&mut tx, &entry).await?;
            tx.commit().await?;
            return Ok(Registered::Created(spoke));
        }
    }
    Err(sqlx::Error::Protocol(
        "spoke registration kept conflicting; giving up".into(),
    ))
}

/// What a transition request did.
#[derive(Debug, Clone, PartialEq)]
pub enum TransitionOutcome {
    Done(SpokeEventData),
    /// The lifecycle does not allow it from the spoke's current state.
    NotAllowed(Spoke),
    NotFound,
}

/// Applies a lifecycle action as `actor`: the spoke's status, its
/// transition row, its links, its event and its audit row, in one
/// transaction. A refused action commits only its audit row (outcome
/// `refused`); an unknown spoke changes nothing.
pub async fn transition(
    pool: &PgPool,
    id: &str,
    spec: &TransitionSpec,
    hub_code: &str,
    actor: &Actor,
) -> Result<TransitionOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let outcome = transition_in(&mut tx, id, spec, hub_code, actor).await?;
    if matches!(outcome, TransitionOutcome::NotFound) {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(outcome)
}

/// The audit action of a lifecycle action, e.g. `spoke.approve`.
pub fn action_name(spec: &TransitionSpec) -> String {
    format!("spoke.{}", spec.action.as_str())
}

/// [`transition`] inside the caller's transaction.
pub async fn transition_in(
    conn: &mut PgConnection,
    id: &str,
    spec: &TransitionSpec,
    hub_code: &str,
    actor: &Actor,
) -> Result<TransitionOutcome, sqlx::Error> {
    let action = action_name(spec);
    // The row lock serialises concurrent transitions of one spoke: the
    // second sees the first's result and is refused if it no longer applies.
    let Some(current) = get_for_update(conn, id).await? else {
        return Ok(TransitionOutcome::NotFound);
    };
    let Some(to) = spec.action.apply(current.status) else {
        let reason = format!(
            "cannot {} a spoke that is {}",
            spec.action.as_str(),
            current.status.as_str()
        );
        let entry = AuditEntry::refused(actor, &action, audit::target("spoke", id), &reason);
        audit::record(conn, &entry).await?;
        return Ok(TransitionOutcome::NotAllowed(current));
    };
    let spoke = sqlx::query_file_as!(
        Spoke,
        "src/store/sql/spoke_set_status.sql",
        id,
        to as _,
        spec.reason,
    )
    .fetch_one(&mut *conn)
    .await?;
    let transition = insert_transition(
        conn,
        id,
        Some(current.status),
        to,
        &spec.reason,
        &spec.actor,
        &spec.key_fingerprint,
    )
    .await?;
    links::apply(conn, &spoke, spec.action.link_effect(), hub_code).await?;
    let approved = Observed::approved(to, &spec.reason);
    conditions::set(&mut *conn, id, spoke.generation, &approved).await?;
    let data = SpokeEventData { spoke, transition };
    outbox::enqueue(conn, spec.action.event(), Some(id), &data).await?;
    let entry =
        AuditEntry::success(actor, &action, audit::target("spoke", id)).with_detail(&spec.reason);
    audit::record(conn, &entry).await?;
    // A revoked spoke's credentials and open revision go with it, in this
    // transaction (a suspended spoke's stay, refused while it is suspended).
    if to == SpokeStatus::Revoked {
        super::revisions::supersede_open(conn, id, crate::revision::RevisionState::Withdrawn)
            .await?;
        let revoked = credentials::revoke_all_of(&mut *conn, CredentialKind::Spoke, id).await?;
        if revoked > 0 {
            let entry = AuditEntry::success(
                actor,
                credentials::actions::REVOKE_ALL,
                audit::target("spoke", id),
            )
            .with_detail("the spoke was revoked");
            audit::record(conn, &entry).await?;
        }
    }
    Ok(TransitionOutcome::Done(data))
}

/// A new spoke's conditions: not approved, nothing observed yet.
async fn init_conditions(conn: &mut PgConnection, spoke: &Spoke) -> Result<(), sqlx::Error> {
    for t in ConditionType::ALL {
        let observed = match t {
            ConditionType::Approved => Observed::approved(spoke.status, ""),
            ConditionType::SpokeTrustsHub => Observed::unknown(
                t,
                reasons::AWAITING_SPOKE_CONFIRMATION,
                "the spoke has not confirmed that it trusts the hub",
            ),
            _ => Observed::unknown(t, reasons::NOT_OBSERVED, "not observed yet"),
        };
        conditions::set(&mut *conn, &spoke.id, spoke.generation, &observed).await?;
    }
    Ok(())
}

async fn insert_transition(
    conn: &mut PgConnection,
    spoke_id: &str,
    from: Option<SpokeStatus>,
    to: SpokeStatus,
    reason: &str,
    actor: &str,
    key_fingerprint: &str,
) -> Result<Transition, sqlx::Error> {
    sqlx::query_as!(
        Transition,
        r#"INSERT INTO spoke_transitions (spoke_id, from_status, to_status, reason, actor, key_fingerprint)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, spoke_id, from_status AS "from_status: SpokeStatus",
                     to_status AS "to_status: SpokeStatus", reason, actor, key_fingerprint, at"#,
        spoke_id,
        from as _,
        to as _,
        reason,
        actor,
        key_fingerprint,
    )
    .fetch_one(conn)
    .await
}

/// The spoke, its row locked until the caller's transaction ends (a
/// concurrent transition waits).
pub async fn get_for_update(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<Spoke>, sqlx::Error> {
    sqlx::query_file_as!(Spoke, "src/store/sql/spoke_lock.sql", id)
        .fetch_optional(conn)
        .await
}

pub async fn get<'e>(db: impl PgExecutor<'e>, id: &str) -> Result<Option<Spoke>, sqlx::Error> {
    sqlx::query_file_as!(Spoke, "src/store/sql/spoke_get.sql", id)
        .fetch_optional(db)
        .await
}

/// Spokes, optionally only those in `status`, by instance code then age.
/// The sync worker renders the registry from `list(.., Some(Approved))`.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    status: Option<SpokeStatus>,
) -> Result<Vec<Spoke>, sqlx::Error> {
    sqlx::query_file_as!(
        Spoke,
        "src/store/sql/spoke_list.sql",
        status.map(SpokeStatus::as_str),
    )
    .fetch_all(db)
    .await
}

/// Revoked spokes with a step of their onboarding still done (one of
/// TfvarsRendered, TerraformApplied, IdpConfigured True): the reconciler
/// undoes it.
pub async fn being_withdrawn<'e>(db: impl PgExecutor<'e>) -> Result<Vec<Spoke>, sqlx::Error> {
    sqlx::query_file_as!(Spoke, "src/store/sql/spoke_being_withdrawn.sql")
        .fetch_all(db)
        .await
}

/// A spoke's transition log, oldest first; `None` if there is no such spoke.
pub async fn history(pool: &PgPool, id: &str) -> Result<Option<Vec<Transition>>, sqlx::Error> {
    if get(pool, id).await?.is_none() {
        return Ok(None);
    }
    let rows = sqlx::query_as!(
        Transition,
        r#"SELECT id, spoke_id, from_status AS "from_status: SpokeStatus",
                  to_status AS "to_status: SpokeStatus", reason, actor, key_fingerprint, at
           FROM spoke_transitions WHERE spoke_id = $1 ORDER BY id"#,
        id,
    )
    .fetch_all(pool)
    .await?;
    Ok(Some(rows))
}

/// The IdPs a login page should offer: approved spokes whose HUB_TO_SPOKE
/// link is ACTIVE and whose hub (the catalog project `lower(instance_code)`)
/// is known and not offline.
pub async fn public_idps<'e>(db: impl PgExecutor<'e>) -> Result<Vec<PublicIdp>, sqlx::Error> {
    sqlx::query_file_as!(PublicIdp, "src/store/sql/public_idps.sql")
        .fetch_all(db)
        .await
}

/// A spoke with its conditions, its onboarding summed up and its latest
/// revision, read on `conn` (a snapshot transaction gives one moment).
pub async fn detail(conn: &mut PgConnection, id: &str) -> Result<Option<SpokeDetail>, sqlx::Error> {
    let Some(spoke) = get(&mut *conn, id).await? else {
        return Ok(None);
    };
    let conditions = conditions::list(&mut *conn, id).await?;
    let retries = sqlx::query_scalar!(
        r#"SELECT coalesce(max(retry_count), 0) AS "retries!" FROM federation_links WHERE spoke_id = $1"#,
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    let revision = super::revisions::latest(&mut *conn, id).await?;
    let onboarding = crate::conditions::onboarding(spoke.status, &conditions, retries);
    Ok(Some(SpokeDetail {
        spoke,
        conditions,
        onboarding,
        revision,
    }))
}

/// Audit action of a spoke's confirmation.
pub const CONFIRM_ACTION: &str = "spoke.confirm";

/// What a confirmation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmed {
    /// `SpokeTrustsHub` is True; the spoke and its conditions now.
    Done(Box<SpokeDetail>),
    /// A revoked spoke confirms nothing.
    Revoked(Box<Spoke>),
    NotFound,
}

/// The spoke says it trusts the hub (with its own credential, `credential`
/// its fingerprint): `SpokeTrustsHub` becomes True and the SPOKE_TO_HUB link
/// is derived again, with an audit row, in one transaction.
pub async fn confirm(
    pool: &PgPool,
    id: &str,
    actor: &Actor,
    credential: &str,
) -> Result<Confirmed, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(spoke) = get_for_update(&mut tx, id).await? else {
        return Ok(Confirmed::NotFound);
    };
    if spoke.status == SpokeStatus::Revoked {
        return Ok(Confirmed::Revoked(Box::new(spoke)));
    }
    let trusted = Observed::new(
        ConditionType::SpokeTrustsHub,
        crate::conditions::ConditionStatus::True,
        reasons::CONFIRMED_BY_SPOKE,
        format!("confirmed with the spoke's credential {credential}"),
    );
    conditions::set(&mut *tx, id, spoke.generation, &trusted).await?;
    let now = conditions::list(&mut *tx, id).await?;
    // The spoke's own word, not the reconciler's: no lease to fence.
    links::derive(
        &mut tx,
        id,
        crate::spoke::LinkDirection::SpokeToHub,
        &now,
        None,
    )
    .await?;
    let entry = AuditEntry::success(actor, CONFIRM_ACTION, audit::target("spoke", id));
    audit::record(&mut tx, &entry).await?;
    let detail = detail(&mut tx, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    tx.commit().await?;
    Ok(Confirmed::Done(Box::new(detail)))
}
