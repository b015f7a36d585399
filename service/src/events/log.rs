//! The outbox read as an ordered log, shared by the relay and the watch
//! stream so both deliver the same events in the same order.
//!
//! Order is `(xid, seq)`: the id of the transaction that wrote the row, then
//! the row's sequence number. Readers only see rows whose transaction is
//! older than every transaction of this database still running (`xid <
//! outbox_horizon()`, as of the reading statement's snapshot). Every row that becomes readable later
//! belongs to a transaction with `xid >= that horizon`, so it sorts after
//! everything already read: a `(xid, seq)` cursor never skips an event that
//! committed late. See docs/decisions.md, "Event order".

use chrono::{DateTime, Utc};
use protocol::CloudEvent;
use serde_json::Value;
use sqlx::PgExecutor;
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

/// Only rows of transactions older than every transaction of this database
/// still running (`outbox_horizon()`, see migrations/0004_spokes.sql),
/// evaluated once per statement.
pub const READABLE: &str = "xid < (SELECT outbox_horizon())";

const COLUMNS: &str =
    "seq, id, event_type, subject, ce_subject, data, occurred_at, xid::text::bigint AS xid";

/// One outbox row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
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

/// Up to `limit` readable events after `after`, in order.
pub async fn read_after<'e>(
    db: impl PgExecutor<'e>,
    after: Cursor,
    limit: i64,
) -> Result<Vec<OutboxEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM outbox \
         WHERE (xid, seq) > ($1::bigint::text::xid8, $2) AND {READABLE} \
         ORDER BY xid, seq LIMIT $3"
    ))
    .bind(after.xid)
    .bind(after.seq)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The position after the last readable event: where "from now" starts.
pub async fn head<'e>(db: impl PgExecutor<'e>) -> Result<Cursor, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT xid::text::bigint, seq FROM outbox WHERE {READABLE} \
         ORDER BY xid DESC, seq DESC LIMIT 1"
    ))
    .fetch_optional(db)
    .await?;
    Ok(row.map_or(Cursor::START, |(xid, seq)| Cursor { xid, seq }))
}

/// Where the event `id` is, if it is still in the outbox and readable.
pub async fn position_of<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<Cursor>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT xid::text::bigint, seq FROM outbox WHERE id = $1 AND {READABLE}"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(xid, seq)| Cursor { xid, seq }))
}

/// Whether committed events wait behind a transaction still running (they
/// become readable when it ends, which may send no notification).
pub async fn held_back<'e>(db: impl PgExecutor<'e>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE xid >= (SELECT outbox_horizon()))",
    )
    .fetch_one(db)
    .await
}

/// Events not yet published, and the age of the oldest in seconds.
pub async fn pending<'e>(db: impl PgExecutor<'e>) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(occurred_at))::float8, 0) \
         FROM outbox WHERE published_at IS NULL",
    )
    .fetch_one(db)
    .await
}

/// How long to wait before looking again while committed events are held
/// back: about 10 ms at first (a short transaction is about to end), doubling
/// up to `max` (a long one is running), back to the start after progress
/// ([`common::retry::Schedule::reset`]).
pub fn held_back_delay(max: std::time::Duration) -> common::retry::Schedule {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(10);
    common::retry::Backoff::new(FIRST, max.max(FIRST)).schedule()
}
