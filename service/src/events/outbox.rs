//! The outbox table: one row per event, inserted in the transaction that
//! makes the change, so an event exists if and only if its change committed.

use protocol::EventKind;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// Records an event in the caller's transaction. Returns its id, which is
/// also the CloudEvents `id` and the `Nats-Msg-Id` it is published with.
pub async fn enqueue<T: Serialize>(
    conn: &mut PgConnection,
    kind: EventKind,
    subject: Option<&str>,
    data: &T,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let data = serde_json::to_value(data).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO outbox (id, event_type, subject, ce_subject, data) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(kind.type_name())
    .bind(kind.subject())
    .bind(subject)
    .bind(data)
    .execute(conn)
    .await?;
    Ok(id)
}
