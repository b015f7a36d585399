//! Queries on `spoke_conditions`. A write is an upsert that moves
//! `last_transition_time` only when the status changes.

use std::collections::HashMap;

use sqlx::PgExecutor;

use crate::conditions::{Condition, ConditionStatus, ConditionType, Observed, Step};

/// Longest message kept.
pub const MAX_MESSAGE_LEN: usize = 2000;

/// Records `observed` for spoke `spoke_id` at spoke generation `generation`.
/// Nothing happens when the spoke is gone.
pub async fn set<'e>(
    db: impl PgExecutor<'e>,
    spoke_id: &str,
    generation: i64,
    observed: &Observed,
) -> Result<(), sqlx::Error> {
    set_many(db, &[(spoke_id, generation, observed)])
        .await
        .map(drop)
}

/// Records many observations in one statement: (spoke id, the spoke
/// generation observed, the condition), at most one per spoke and type.
/// Rows of spokes that are gone are skipped.
pub async fn set_many<'e>(
    db: impl PgExecutor<'e>,
    rows: &[(&str, i64, &Observed)],
) -> Result<u64, sqlx::Error> {
    upsert(db, rows, None).await
}

/// [`set_many`] for the reconciler: `tokens[i]` is the fencing token of the
/// lease `rows[i]` is written under, and a row is written only while its
/// spoke's lease still holds that token. The number of rows written.
pub async fn set_many_fenced<'e>(
    db: impl PgExecutor<'e>,
    rows: &[(&str, i64, &Observed)],
    tokens: &[i64],
) -> Result<u64, sqlx::Error> {
    debug_assert_eq!(rows.len(), tokens.len());
    upsert(db, rows, Some(tokens)).await
}

async fn upsert<'e>(
    db: impl PgExecutor<'e>,
    rows: &[(&str, i64, &Observed)],
    tokens: Option<&[i64]>,
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let generations: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.2.type_.as_str()).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.2.status.as_str()).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.2.reason).collect();
    let messages: Vec<String> = rows
        .iter()
        .map(|r| r.2.message.chars().take(MAX_MESSAGE_LEN).collect())
        .collect();
    // The lease row is share-locked: an acquisition racing this statement
    // waits for it, or this statement sees the new token and writes nothing.
    let done = sqlx::query!(
        "INSERT INTO spoke_conditions (spoke_id, type, status, reason, message, observed_generation) \
         SELECT r.spoke_id, r.type, r.status, r.reason, r.message, r.generation \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
                     $7::bigint[]) AS r (spoke_id, type, status, reason, message, generation, token) \
         JOIN spokes s ON s.id = r.spoke_id \
         WHERE NOT $8 OR EXISTS (SELECT 1 FROM spoke_leases l \
             WHERE l.spoke_id = r.spoke_id AND l.token = r.token FOR SHARE) \
         ON CONFLICT (spoke_id, type) DO UPDATE SET status = EXCLUDED.status, \
           reason = EXCLUDED.reason, message = EXCLUDED.message, \
           observed_generation = EXCLUDED.observed_generation, updated_at = now(), \
           last_transition_time = CASE WHEN spoke_conditions.status = EXCLUDED.status \
             THEN spoke_conditions.last_transition_time ELSE now() END",
        &ids as &[&str],
        &types as &[&str],
        &statuses as &[&str],
        &reasons as &[&str],
        &messages,
        &generations,
        tokens.unwrap_or_default(),
        tokens.is_some(),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A spoke's conditions, in [`ConditionType::ALL`] order.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    spoke_id: &str,
) -> Result<Vec<Condition>, sqlx::Error> {
    let ids = [spoke_id.to_owned()];
    Ok(of_spokes(db, &ids)
        .await?
        .remove(spoke_id)
        .unwrap_or_default())
}

/// The conditions of these spokes, by spoke id, each in
/// [`ConditionType::ALL`] order.
pub async fn of_spokes<'e>(
    db: impl PgExecutor<'e>,
    spoke_ids: &[String],
) -> Result<HashMap<String, Vec<Condition>>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT spoke_id, type AS "type_: ConditionType", status AS "status: ConditionStatus",
                  reason, message, last_transition_time, observed_generation
           FROM spoke_conditions WHERE spoke_id = ANY($1)"#,
        spoke_ids,
    )
    .fetch_all(db)
    .await?;
    let mut out: HashMap<String, Vec<Condition>> = HashMap::new();
    for r in rows {
        out.entry(r.spoke_id).or_default().push(Condition {
            type_: r.type_,
            status: r.status,
            reason: r.reason,
            message: r.message,
            last_transition_time: r.last_transition_time,
            observed_generation: r.observed_generation,
        });
    }
    for list in out.values_mut() {
        list.sort_by_key(|c| ConditionType::ALL.iter().position(|t| *t == c.type_));
    }
    Ok(out)
}

/// A spoke's recorded steps (every change of its conditions), oldest
/// first, at most the `limit` most recent.
pub async fn steps<'e>(
    db: impl PgExecutor<'e>,
    spoke_id: &str,
    limit: i64,
) -> Result<Vec<Step>, sqlx::Error> {
    let mut steps = sqlx::query_as!(
        Step,
        r#"SELECT id, type AS "type_: ConditionType", status AS "status: ConditionStatus",
                  reason, message, observed_generation, at
           FROM spoke_steps WHERE spoke_id = $1 ORDER BY id DESC LIMIT $2"#,
        spoke_id,
        limit,
    )
    .fetch_all(db)
    .await?;
    steps.reverse();
    Ok(steps)
}
