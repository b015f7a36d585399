//! Queries on `spoke_conditions`. A write is an upsert that moves
//! `last_transition_time` only when the status changes.

use std::collections::HashMap;

use sqlx::PgExecutor;

use crate::conditions::{Condition, ConditionStatus, ConditionType, Observed};

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
    let message: String = observed.message.chars().take(MAX_MESSAGE_LEN).collect();
    sqlx::query!(
        "INSERT INTO spoke_conditions (spoke_id, type, status, reason, message, observed_generation) \
         SELECT id, $2, $3, $4, $5, $6 FROM spokes WHERE id = $1 \
         ON CONFLICT (spoke_id, type) DO UPDATE SET status = EXCLUDED.status, \
           reason = EXCLUDED.reason, message = EXCLUDED.message, \
           observed_generation = EXCLUDED.observed_generation, updated_at = now(), \
           last_transition_time = CASE WHEN spoke_conditions.status = EXCLUDED.status \
             THEN spoke_conditions.last_transition_time ELSE now() END",
        spoke_id,
        observed.type_ as _,
        observed.status as _,
        observed.reason,
        message,
        generation,
    )
    .execute(db)
    .await?;
    Ok(())
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
