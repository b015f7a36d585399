//! The one statement that writes a batch of heartbeats.
//!
//! Arrays in, one round trip: lock the known hubs in id order (so the
//! sweeper and other replicas never deadlock with us), apply each heartbeat
//! monotonically (`last_heartbeat_at = GREATEST(old, new)`; status and
//! diagnostics only from a heartbeat at least as new as the stored one),
//! record every status change with its time in `project_transitions` and the
//! outbox, optionally register unknown hubs, and report what was unknown.

use chrono::{DateTime, Utc};
use protocol::EventKind;
use sqlx::PgPool;

use super::coalescer::Pending;

const STATEMENT: &str = r#"
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::timestamptz[],
                         $5::text[], $6::bigint[], $7::int[], $8::text[], $9::text[])
        AS i(slug, received_at, reported, hub_ts, agent_id, seq, interval_s, version, hub_url)
),
locked AS (
    SELECT p.id, p.status AS old_status, i.*,
           (p.last_heartbeat_at IS NULL OR i.received_at >= p.last_heartbeat_at) AS fresher
    FROM projects p JOIN input i ON i.slug = p.slug
    ORDER BY p.id
    FOR UPDATE OF p
),
upd AS (
    UPDATE projects p SET
        last_heartbeat_at = GREATEST(p.last_heartbeat_at, l.received_at),
        status = CASE WHEN l.fresher THEN l.reported ELSE p.status END,
        status_changed_at = CASE WHEN l.fresher AND l.reported <> p.status
                                 THEN l.received_at ELSE p.status_changed_at END,
        hub_timestamp = CASE WHEN l.fresher THEN l.hub_ts ELSE p.hub_timestamp END,
        agent_id = CASE WHEN l.fresher THEN l.agent_id ELSE p.agent_id END,
        agent_version = CASE WHEN l.fresher THEN l.version ELSE p.agent_version END,
        heartbeat_seq = CASE WHEN l.fresher THEN l.seq ELSE p.heartbeat_seq END,
        heartbeat_interval_s = CASE WHEN l.fresher THEN l.interval_s ELSE p.heartbeat_interval_s END
    FROM locked l
    WHERE p.id = l.id
    RETURNING p.id, p.slug, l.old_status, p.status AS new_status, l.received_at, p.last_heartbeat_at
),
registered AS (
    INSERT INTO projects (slug, name, hub_url, mesh_namespace, status, status_changed_at,
                          last_heartbeat_at, hub_timestamp, agent_id, agent_version,
                          heartbeat_seq, heartbeat_interval_s)
    SELECT i.slug, i.slug, i.hub_url, 'hub.' || i.slug, i.reported, i.received_at,
           i.received_at, i.hub_ts, i.agent_id, i.version, i.seq, i.interval_s
    FROM input i
    WHERE $10 AND NOT EXISTS (SELECT 1 FROM locked l WHERE l.slug = i.slug)
    ON CONFLICT (slug) DO NOTHING
    RETURNING *
),
changed AS (
    SELECT * FROM upd WHERE new_status <> old_status
),
history AS (
    INSERT INTO project_transitions (project_id, from_status, to_status, cause, at)
    SELECT id, old_status, new_status, 'heartbeat', received_at FROM changed
),
events AS (
    INSERT INTO outbox (id, event_type, subject, ce_subject, data)
    SELECT gen_random_uuid(), $11, $12, slug,
           jsonb_build_object('slug', slug, 'from', old_status, 'to', new_status, 'cause', 'heartbeat',
                              'at', received_at, 'last_heartbeat_at', last_heartbeat_at)
    FROM changed
    UNION ALL
    SELECT gen_random_uuid(), $13, $14, slug, to_jsonb(registered)
    FROM registered
)
SELECT 'unknown' AS kind, i.slug, NULL::text AS to_status
FROM input i
WHERE NOT EXISTS (SELECT 1 FROM upd u WHERE u.slug = i.slug)
  AND NOT EXISTS (SELECT 1 FROM registered r WHERE r.slug = i.slug)
UNION ALL SELECT 'transition', slug, new_status FROM changed
UNION ALL SELECT 'registered', slug, status FROM registered
"#;

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Hubs written (known or registered).
    pub hubs: usize,
    /// Messages those hubs' heartbeats stood for.
    pub messages: u64,
    /// Slugs with no project, and how many messages each stood for.
    pub unknown: Vec<(String, u64)>,
    /// Status changes, by new status.
    pub transitions: Vec<String>,
    /// Projects created from heartbeats (auto-registration).
    pub registered: Vec<String>,
}

/// Writes `batch` in one statement.
pub async fn apply_batch(
    pool: &PgPool,
    batch: &[Pending],
    auto_register: bool,
) -> Result<BatchOutcome, sqlx::Error> {
    let n = batch.len();
    let mut slugs = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut reported = Vec::with_capacity(n);
    let mut hub_ts: Vec<DateTime<Utc>> = Vec::with_capacity(n);
    let mut agent_ids = Vec::with_capacity(n);
    let mut seqs = Vec::with_capacity(n);
    let mut intervals = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut urls = Vec::with_capacity(n);
    for p in batch {
        let hb = &p.heartbeat;
        slugs.push(hb.project_slug.as_str());
        received.push(p.received_at);
        reported.push(hb.status.as_str());
        hub_ts.push(hb.timestamp);
        agent_ids.push(hb.agent_id.as_deref());
        seqs.push(hb.seq.map(|s| i64::try_from(s).unwrap_or(i64::MAX)));
        intervals.push(hb.interval_s.map(|i| i32::try_from(i).unwrap_or(i32::MAX)));
        versions.push(hb.version.as_deref());
        urls.push(hb.hub_url.as_str());
    }
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(STATEMENT)
        .bind(&slugs)
        .bind(&received)
        .bind(&reported)
        .bind(&hub_ts)
        .bind(&agent_ids)
        .bind(&seqs)
        .bind(&intervals)
        .bind(&versions)
        .bind(&urls)
        .bind(auto_register)
        .bind(EventKind::ProjectStatusChanged.type_name())
        .bind(EventKind::ProjectStatusChanged.subject())
        .bind(EventKind::ProjectRegistered.type_name())
        .bind(EventKind::ProjectRegistered.subject())
        .fetch_all(pool)
        .await?;

    let mut out = BatchOutcome::default();
    let mut unknown = std::collections::HashSet::new();
    for (kind, slug, to) in rows {
        match kind.as_str() {
            "unknown" => {
                unknown.insert(slug);
            }
            "transition" => out.transitions.push(to.unwrap_or_default()),
            "registered" => out.registered.push(slug),
            _ => {}
        }
    }
    for p in batch {
        if unknown.contains(&p.heartbeat.project_slug) {
            out.unknown
                .push((p.heartbeat.project_slug.clone(), p.count));
        } else {
            out.hubs += 1;
            out.messages += p.count;
        }
    }
    Ok(out)
}
