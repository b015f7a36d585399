//! Queries on `outbox`: one row per event, inserted in the transaction that
//! makes the change, so an event exists if and only if its change committed;
//! read back as an ordered log by the relay and the watch feed.
//!
//! Order is `(xid, seq)`; readers only see rows whose transaction is older
//! than every transaction of this database still running,
//! `xid < (SELECT outbox_horizon())` (see [`crate::events::log`] and
//! migrations/0004_spokes.sql). That condition is spelled out in each
//! statement: the statements are checked at compile time and must be
//! literals.

use chrono::{DateTime, Utc};
use protocol::{CloudEvent, EventKind};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// A position in the event log: after the event at `(xid, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    pub xid: i64,
    pub seq: i64,
}

impl Cursor {
    /// Before every event.
    pub const START: Cursor = Cursor { xid: 0, seq: 0 };
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub seq: i64,
    pub id: Uuid,
    /// CloudEvents type, e.g. `federation.spoke.approved`.
    pub event_type: String,
    /// NATS subject, e.g. `fed.events.spoke.approved`.
    pub subject: String,
    /// CloudEvents subject: the slug or spoke id.
    pub ce_subject: Option<String>,
    pub data: Value,
    pub occurred_at: DateTime<Utc>,
    pub xid: i64,
}

impl OutboxEvent {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            xid: self.xid,
            seq: self.seq,
        }
    }

    /// The CloudEvents 1.0 envelope, for any row, whatever wrote it.
    pub fn cloud_event(&self, source: &str) -> CloudEvent<&Value> {
        CloudEvent {
            specversion: protocol::events::SPEC_VERSION.to_owned(),
            id: self.id.to_string(),
            source: source.to_owned(),
            event_type: self.event_type.clone(),
            time: self.occurred_at,
            subject: self.ce_subject.clone(),
            datacontenttype: "application/json".to_owned(),
            data: &self.data,
        }
    }

    /// The envelope as structured-mode JSON.
    pub fn to_json(&self, source: &str) -> String {
        // Serialising a struct of strings and a JSON value cannot fail.
        serde_json::to_string(&self.cloud_event(source)).unwrap_or_default()
    }
}

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
    sqlx::query!(
        "INSERT INTO outbox (id, event_type, subject, ce_subject, data) VALUES ($1, $2, $3, $4, $5)",
        id,
        kind.type_name(),
        kind.subject(),
        subject,
        data,
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// Up to `limit` readable events after `after`, in order.
pub async fn read_after<'e>(
    db: impl PgExecutor<'e>,
    after: Cursor,
    limit: i64,
) -> Result<Vec<OutboxEvent>, sqlx::Error> {
    sqlx::query_as!(
        OutboxEvent,
        r#"SELECT seq, id, event_type, subject, ce_subject, data, occurred_at,
                  xid::text::bigint AS "xid!"
           FROM outbox
           WHERE (xid, seq) > ($1::bigint::text::xid8, $2) AND xid < (SELECT outbox_horizon())
           ORDER BY xid, seq LIMIT $3"#,
        after.xid,
        after.seq,
        limit,
    )
    .fetch_all(db)
    .await
}

/// The position after the last readable event: where "from now" starts.
pub async fn head<'e>(db: impl PgExecutor<'e>) -> Result<Cursor, sqlx::Error> {
    let row = sqlx::query_as!(
        Cursor,
        r#"SELECT xid::text::bigint AS "xid!", seq FROM outbox
           WHERE xid < (SELECT outbox_horizon())
           ORDER BY xid DESC, seq DESC LIMIT 1"#
    )
    .fetch_optional(db)
    .await?;
    Ok(row.unwrap_or(Cursor::START))
}

/// Where the event `id` is, if it is still in the outbox and readable.
pub async fn position_of<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<Cursor>, sqlx::Error> {
    sqlx::query_as!(
        Cursor,
        r#"SELECT xid::text::bigint AS "xid!", seq FROM outbox
           WHERE id = $1 AND xid < (SELECT outbox_horizon())"#,
        id,
    )
    .fetch_optional(db)
    .await
}

/// Whether committed events wait behind a transaction still running (they
/// become readable when it ends, which may send no notification).
pub async fn held_back<'e>(db: impl PgExecutor<'e>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM outbox WHERE xid >= (SELECT outbox_horizon())) AS "held!""#
    )
    .fetch_one(db)
    .await
}

/// Events not yet published, and the age of the oldest in seconds.
pub async fn pending<'e>(db: impl PgExecutor<'e>) -> Result<(i64, f64), sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "count!",
                  COALESCE(EXTRACT(EPOCH FROM now() - min(occurred_at))::float8, 0) AS "age!"
           FROM outbox WHERE published_at IS NULL"#
    )
    .fetch_one(db)
    .await?;
    Ok((row.count, row.age))
}

/// Locks up to `limit` readable unpublished events, in order, skipping rows
/// another relay holds (the caller checks [`unpublished_head`]).
pub async fn claim_unpublished(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<OutboxEvent>, sqlx::Error> {
    sqlx::query_as!(
        OutboxEvent,
        r#"SELECT seq, id, event_type, subject, ce_subject, data, occurred_at,
                  xid::text::bigint AS "xid!"
           FROM outbox WHERE published_at IS NULL AND xid < (SELECT outbox_horizon())
           ORDER BY xid, seq LIMIT $1 FOR UPDATE SKIP LOCKED"#,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// The first unpublished event, readable or not, locked or not.
pub async fn unpublished_head(conn: &mut PgConnection) -> Result<Option<Cursor>, sqlx::Error> {
    sqlx::query_as!(
        Cursor,
        r#"SELECT xid::text::bigint AS "xid!", seq FROM outbox WHERE published_at IS NULL
           ORDER BY xid, seq LIMIT 1"#
    )
    .fetch_optional(conn)
    .await
}

/// Marks the events published now.
pub async fn mark_published(conn: &mut PgConnection, seqs: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE outbox SET published_at = clock_timestamp() WHERE seq = ANY($1)",
        seqs
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes up to `limit` events published before `cutoff`; how many.
pub async fn prune_published<'e>(
    db: impl PgExecutor<'e>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox \
         WHERE published_at IS NOT NULL AND published_at < $1 LIMIT $2)",
        cutoff,
        limit,
    )
    .execute(db)
    .await?
    .rows_affected())
}
