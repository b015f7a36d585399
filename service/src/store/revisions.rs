//! Queries on `spoke_revisions` (update in place). Every change writes its
//! revision row, its outbox event (`spoke.revision`) and its audit row in
//! one transaction, under the spoke's row lock, so a revision and a
//! lifecycle action of one spoke never interleave.

use protocol::EventKind;
use sqlx::{PgConnection, PgExecutor, PgPool};

use super::audit::{self, Actor, AuditEntry};
use super::{conditions, outbox, spokes};
use crate::conditions::{reasons, ConditionStatus, ConditionType, Observed};
use crate::revision::{Revision, RevisionEventData, RevisionState};
use crate::spoke::{Endpoints, Spoke, SpokeStatus};

/// Audit actions.
pub mod actions {
    pub const PROPOSE: &str = "spoke.revision.propose";
    pub const APPROVE: &str = "spoke.revision.approve";
    pub const REJECT: &str = "spoke.revision.reject";
    pub const ROLL_OUT: &str = "spoke.revision.rollout";
}

/// What a proposal did.
#[derive(Debug, Clone, PartialEq)]
pub enum Proposed {
    /// A new pending revision (an open one it replaces is superseded).
    Created(Revision),
    /// The endpoints are the live ones: nothing to roll out (an open
    /// revision is superseded).
    Unchanged(Spoke),
    /// A revoked spoke changes nothing.
    Revoked(Spoke),
    NotFound,
}

/// A spoke asks for new endpoints, as `actor`.
pub async fn propose(
    pool: &PgPool,
    id: &str,
    wanted: &Endpoints,
    actor: &Actor,
) -> Result<Proposed, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(spoke) = spokes::get_for_update(&mut tx, id).await? else {
        return Ok(Proposed::NotFound);
    };
    let target = audit::target("spoke", id);
    if spoke.status == SpokeStatus::Revoked {
        let entry = AuditEntry::refused(actor, actions::PROPOSE, target, "the spoke is revoked");
        audit::record(&mut tx, &entry).await?;
        tx.commit().await?;
        return Ok(Proposed::Revoked(spoke));
    }
    if supersede_open(&mut tx, id, RevisionState::Superseded).await? > 0 {
        // An approved one may have been rolling out: it no longer is.
        let rolling = conditions::list(&mut *tx, id).await?.into_iter().any(|c| {
            c.type_ == ConditionType::Approved && c.reason == reasons::REVISION_ROLLING_OUT
        });
        if rolling {
            let back = Observed::approved(spoke.status, "the revision rolling out was superseded");
            conditions::set(&mut *tx, id, spoke.generation, &back).await?;
        }
    }
    let changes = wanted.differences(&Endpoints::of(&spoke));
    if changes.is_empty() {
        let entry = AuditEntry::success(actor, actions::PROPOSE, target)
            .with_detail("the live endpoints: nothing to change");
        audit::record(&mut tx, &entry).await?;
        tx.commit().await?;
        return Ok(Proposed::Unchanged(spoke));
    }
    let rev_id = sqlx::query_scalar!(
        "INSERT INTO spoke_revisions (spoke_id, base_url, idp_public_url, idp_internal_url, \
           cert_fingerprint, base_generation, proposed_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        id,
        wanted.base_url,
        wanted.idp_public_url,
        wanted.idp_internal_url,
        wanted.cert_fingerprint,
        spoke.generation,
        actor.as_str(),
    )
    .fetch_one(&mut *tx)
    .await?;
    let revision = get(&mut *tx, rev_id).await?;
    announce(&mut tx, &revision, &spoke).await?;
    let detail = changes.join(", ");
    let entry = AuditEntry::success(actor, actions::PROPOSE, target).with_detail(&detail);
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(Proposed::Created(revision))
}

/// What an admin's decision did.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    /// The revision as decided, and the spoke now (with the new endpoints
    /// when the revision was applied at once).
    Done(Box<Revision>, Spoke),
    /// No revision of the spoke waits for a decision.
    NothingPending(Spoke),
    NotFound,
}

/// An admin approves (`approve`) or rejects the spoke's pending revision,
/// giving `reason` (`decided_by`: the operator's name or the key's
/// fingerprint; `actor` is audited). An approved spoke's revision is rolled out by the
/// reconciler, which verifies the new IdP first; a pending or suspended
/// spoke has nothing live, so its revision applies at once.
pub async fn decide(
    pool: &PgPool,
    id: &str,
    approve: bool,
    reason: &str,
    decided_by: &str,
    actor: &Actor,
) -> Result<Decided, sqlx::Error> {
    let action = if approve {
        actions::APPROVE
    } else {
        actions::REJECT
    };
    let mut tx = pool.begin().await?;
    let Some(spoke) = spokes::get_for_update(&mut tx, id).await? else {
        return Ok(Decided::NotFound);
    };
    let target = audit::target("spoke", id);
    let pending = sqlx::query_scalar!(
        "SELECT id FROM spoke_revisions WHERE spoke_id = $1 AND state = 'pending' FOR UPDATE",
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(rev_id) = pending else {
        let entry = AuditEntry::refused(actor, action, target, "no revision waits for a decision");
        audit::record(&mut tx, &entry).await?;
        tx.commit().await?;
        return Ok(Decided::NothingPending(spoke));
    };
    let state = match (approve, spoke.status) {
        (false, _) => RevisionState::Rejected,
        (true, SpokeStatus::Approved) => RevisionState::Approved,
        (true, _) => RevisionState::RolledOut,
    };
    sqlx::query!(
        "UPDATE spoke_revisions SET state = $2, decided_by = $3, decision_reason = $4, \
           decided_at = now() WHERE id = $1",
        rev_id,
        state as _,
        decided_by,
        reason,
    )
    .execute(&mut *tx)
    .await?;
    let entry = AuditEntry::success(actor, action, target).with_detail(reason);
    audit::record(&mut tx, &entry).await?;
    if state == RevisionState::Approved {
        let message = format!(
            "revision {rev_id} approved by {decided_by}: it rolls out once its new identity provider answers"
        );
        let rolling = Observed::new(
            ConditionType::Approved,
            ConditionStatus::True,
            reasons::REVISION_ROLLING_OUT,
            message,
        );
        conditions::set(&mut *tx, id, spoke.generation, &rolling).await?;
    }
    let (revision, spoke) = if state == RevisionState::RolledOut {
        roll_out(&mut tx, rev_id, actor).await?
    } else {
        let revision = get(&mut *tx, rev_id).await?;
        announce(&mut tx, &revision, &spoke).await?;
        (revision, spoke)
    };
    tx.commit().await?;
    Ok(Decided::Done(Box::new(revision), spoke))
}

/// Rolls an approved revision in, for the reconciler that verified its
/// IdP, fenced by the spoke's lease `token`: `None` (and nothing written)
/// when the lease moved on or the revision is no longer approved.
pub async fn roll_out_fenced(
    pool: &PgPool,
    rev_id: i64,
    spoke_id: &str,
    token: i64,
) -> Result<Option<(Revision, Spoke)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !holds_lease(&mut tx, spoke_id, token).await? {
        return Ok(None);
    }
    let _lock = spokes::get_for_update(&mut tx, spoke_id).await?;
    let state = sqlx::query_scalar!(
        r#"SELECT state AS "state: RevisionState" FROM spoke_revisions WHERE id = $1 FOR UPDATE"#,
        rev_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if state != Some(RevisionState::Approved) {
        return Ok(None);
    }
    let done = roll_out(&mut tx, rev_id, &Actor::system("sync")).await?;
    tx.commit().await?;
    Ok(Some(done))
}

/// Records that an approved revision's new IdP could not be verified (its
/// rollout is held, the previous configuration stays live), fenced by the
/// lease `token`. Whether it was written.
pub async fn hold_fenced(
    pool: &PgPool,
    rev_id: i64,
    spoke_id: &str,
    token: i64,
    code: &str,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE spoke_revisions r SET rollout_attempts = r.rollout_attempts + 1, \
           last_error_code = $3, last_error = left($4, 2000) \
         WHERE r.id = $1 AND r.state = 'approved' AND EXISTS (SELECT 1 FROM spoke_leases l \
           WHERE l.spoke_id = $2 AND l.token = $5 FOR SHARE)",
        rev_id,
        spoke_id,
        code,
        error,
        token,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends the spoke's open revision, if any, in `state` (superseded by a
/// newer one, withdrawn with the spoke).
pub async fn supersede_open(
    conn: &mut PgConnection,
    spoke_id: &str,
    state: RevisionState,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE spoke_revisions SET state = $2, decided_at = coalesce(decided_at, now()) \
         WHERE spoke_id = $1 AND state IN ('pending', 'approved')",
        spoke_id,
        state as _,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The revisions of these spokes, newest first, only those in `state`
/// when given.
pub async fn of_spokes<'e>(
    db: impl PgExecutor<'e>,
    spoke_ids: &[String],
    state: Option<RevisionState>,
) -> Result<Vec<Revision>, sqlx::Error> {
    select(db, None, Some(spoke_ids), state).await
}

/// The spoke's latest revision, whatever its state.
pub async fn latest<'e>(
    db: impl PgExecutor<'e>,
    spoke_id: &str,
) -> Result<Option<Revision>, sqlx::Error> {
    let ids = [spoke_id.to_owned()];
    Ok(of_spokes(db, &ids, None).await?.into_iter().next())
}

async fn get<'e>(db: impl PgExecutor<'e>, rev_id: i64) -> Result<Revision, sqlx::Error> {
    select(db, Some(rev_id), None, None)
        .await?
        .pop()
        .ok_or(sqlx::Error::RowNotFound)
}

/// Revisions by id, by spoke, by state (each filter when given), newest
/// first.
async fn select<'e>(
    db: impl PgExecutor<'e>,
    rev_id: Option<i64>,
    spoke_ids: Option<&[String]>,
    state: Option<RevisionState>,
) -> Result<Vec<Revision>, sqlx::Error> {
    sqlx::query_as!(
        Revision,
        r#"SELECT id, spoke_id, base_url, idp_public_url, idp_internal_url, cert_fingerprint,
                  state AS "state: RevisionState", base_generation, proposed_by, proposed_at,
                  decided_by, decision_reason, decided_at, rollout_attempts, last_error_code,
                  last_error, rolled_out_at
           FROM spoke_revisions
           WHERE ($1::bigint IS NULL OR id = $1) AND ($2::text[] IS NULL OR spoke_id = ANY($2))
             AND ($3::text IS NULL OR state = $3)
           ORDER BY id DESC"#,
        rev_id,
        spoke_ids,
        state.map(RevisionState::as_str),
    )
    .fetch_all(db)
    .await
}

/// The revision's endpoints become the spoke's, one generation on; the
/// revision is rolled out and `Approved` says so at the new generation.
async fn roll_out(
    conn: &mut PgConnection,
    rev_id: i64,
    actor: &Actor,
) -> Result<(Revision, Spoke), sqlx::Error> {
    sqlx::query!(
        "UPDATE spoke_revisions SET state = 'rolled_out', rolled_out_at = now(), \
           last_error_code = NULL, last_error = NULL WHERE id = $1",
        rev_id,
    )
    .execute(&mut *conn)
    .await?;
    let revision = get(&mut *conn, rev_id).await?;
    let before = spokes::get(&mut *conn, &revision.spoke_id).await?;
    let spoke = sqlx::query_file_as!(
        Spoke,
        "src/store/sql/spoke_set_endpoints.sql",
        revision.spoke_id,
        revision.base_url,
        revision.idp_public_url,
        revision.idp_internal_url,
        revision.cert_fingerprint,
    )
    .fetch_one(&mut *conn)
    .await?;
    let message = format!(
        "revision {} rolled out as generation {}",
        revision.id, spoke.generation
    );
    // A spoke not approved keeps saying why (pending, suspended).
    let approved = if spoke.status == SpokeStatus::Approved {
        Observed::new(
            ConditionType::Approved,
            ConditionStatus::True,
            reasons::REVISION_ROLLED_OUT,
            message,
        )
    } else {
        Observed::approved(spoke.status, &message)
    };
    conditions::set(&mut *conn, &spoke.id, spoke.generation, &approved).await?;
    announce(conn, &revision, before.as_ref().unwrap_or(&spoke)).await?;
    let detail = format!("revision {} → generation {}", revision.id, spoke.generation);
    let entry = AuditEntry::success(actor, actions::ROLL_OUT, audit::target("spoke", &spoke.id))
        .with_detail(&detail);
    audit::record(conn, &entry).await?;
    Ok((revision, spoke))
}

/// The `spoke.revision` event: the revision and what it changes against
/// `spoke` (the configuration it replaces).
async fn announce(
    conn: &mut PgConnection,
    revision: &Revision,
    spoke: &Spoke,
) -> Result<(), sqlx::Error> {
    let changes = revision
        .endpoints()
        .differences(&Endpoints::of(spoke))
        .into_iter()
        .map(str::to_owned)
        .collect();
    let data = RevisionEventData {
        revision: revision.clone(),
        changes,
    };
    outbox::enqueue(conn, EventKind::SpokeRevision, Some(&spoke.id), &data).await?;
    Ok(())
}

async fn holds_lease(
    conn: &mut PgConnection,
    spoke_id: &str,
    token: i64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar!(
        r#"SELECT true AS "held!" FROM spoke_leases WHERE spoke_id = $1 AND token = $2 FOR SHARE"#,
        spoke_id,
        token
    )
    .fetch_optional(conn)
    .await?
    .is_some())
}
