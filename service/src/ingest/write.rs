//! The one statement that writes a batch of heartbeats, and the isolation
//! of a batch the database refuses.
//!
//! Arrays in, one round trip: lock the known hubs in id order (so the
//! sweeper and other replicas never deadlock with us), apply each heartbeat
//! monotonically (`last_heartbeat_at = GREATEST(old, new)`; status and
//! diagnostics only from a heartbeat at least as new as the stored one, and a
//! diagnostic the heartbeat left out keeps its stored value), record every
//! status change with its time in `project_transitions` and the outbox,
//! optionally register unknown hubs, and return every row written so the
//! catalog view shows it at once.

use chrono::{DateTime, Utc};
use protocol::EventKind;
use sqlx::PgPool;

use super::coalescer::Pending;
use crate::catalog::{Project, ProjectStatus};

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
        hub_timestamp = CASE WHEN l.fresher THEN COALESCE(l.hub_ts, p.hub_timestamp) ELSE p.hub_timestamp END,
        agent_id = CASE WHEN l.fresher THEN COALESCE(l.agent_id, p.agent_id) ELSE p.agent_id END,
        agent_version = CASE WHEN l.fresher THEN COALESCE(l.version, p.agent_version) ELSE p.agent_version END,
        heartbeat_seq = CASE WHEN l.fresher THEN COALESCE(l.seq, p.heartbeat_seq) ELSE p.heartbeat_seq END,
        heartbeat_interval_s = CASE WHEN l.fresher THEN COALESCE(l.interval_s, p.heartbeat_interval_s)
                                    ELSE p.heartbeat_interval_s END,
        revision = p.revision + 1
    FROM locked l
    WHERE p.id = l.id
    RETURNING p.*, l.old_status, l.received_at
),
registered AS (
    INSERT INTO projects (slug, name, hub_url, mesh_namespace, status, status_changed_at,
                          last_heartbeat_at, hub_timestamp, agent_id, agent_version,
                          heartbeat_seq, heartbeat_interval_s)
    SELECT i.slug, i.slug, i.hub_url, 'hub.' || i.slug, i.reported, i.received_at,
           i.received_at, i.hub_ts, i.agent_id, i.version, i.seq, i.interval_s
    FROM input i
    WHERE $10 AND i.hub_url IS NOT NULL AND NOT EXISTS (SELECT 1 FROM locked l WHERE l.slug = i.slug)
    ON CONFLICT (slug) DO NOTHING
    RETURNING *
),
changed AS (
    SELECT * FROM upd WHERE status <> old_status
),
history AS (
    INSERT INTO project_transitions (project_id, from_status, to_status, cause, at)
    SELECT id, old_status, status, 'heartbeat', received_at FROM changed
),
events AS (
    INSERT INTO outbox (id, event_type, subject, ce_subject, data)
    SELECT gen_random_uuid(), $11, $12, slug,
           jsonb_build_object('slug', slug, 'from', old_status, 'to', status, 'cause', 'heartbeat',
                              'at', received_at, 'last_heartbeat_at', last_heartbeat_at)
    FROM changed
    UNION ALL
    SELECT gen_random_uuid(), $13, $14, slug, to_jsonb(registered) - 'revision'
    FROM registered
)
SELECT 'updated' AS kind, old_status,
       id, slug, name, hub_url, mesh_namespace, tags, allow_fanout, status, status_changed_at,
       last_heartbeat_at, hub_timestamp, agent_id, agent_version, heartbeat_seq,
       heartbeat_interval_s, created_at, updated_at, revision
FROM upd
UNION ALL
SELECT 'registered', NULL,
       id, slug, name, hub_url, mesh_namespace, tags, allow_fanout, status, status_changed_at,
       last_heartbeat_at, hub_timestamp, agent_id, agent_version, heartbeat_seq,
       heartbeat_interval_s, created_at, updated_at, revision
FROM registered
"#;

#[derive(sqlx::FromRow)]
struct WrittenRow {
    kind: String,
    old_status: Option<ProjectStatus>,
    #[sqlx(flatten)]
    project: Project,
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    /// Messages the written hubs' heartbeats stood for.
    pub messages: u64,
    /// Slugs with no project, and how many messages each stood for.
    pub unknown: Vec<(String, u64)>,
    /// Status changes, by new status.
    pub transitions: Vec<ProjectStatus>,
    /// Projects created from heartbeats (auto-registration).
    pub registered: Vec<String>,
    /// Every project row as the statement left it, for the catalog view.
    pub rows: Vec<Project>,
}

impl BatchOutcome {
    /// Hubs written (known or registered).
    pub fn hubs(&self) -> usize {
        self.rows.len()
    }

    fn absorb(&mut self, other: BatchOutcome) {
        self.messages += other.messages;
        self.unknown.extend(other.unknown);
        self.transitions.extend(other.transitions);
        self.registered.extend(other.registered);
        self.rows.extend(other.rows);
    }
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
    let mut hub_ts: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
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
        // Validation bounds both; no saturation ever happens here.
        seqs.push(hb.seq.and_then(|s| i64::try_from(s).ok()));
        intervals.push(hb.interval_s.and_then(|i| i32::try_from(i).ok()));
        versions.push(hb.version.as_deref());
        urls.push(hb.hub_url.as_deref());
    }
    let rows: Vec<WrittenRow> = sqlx::query_as(STATEMENT)
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
    let mut written = std::collections::HashSet::with_capacity(rows.len());
    for row in rows {
        match (row.kind.as_str(), row.old_status) {
            ("registered", _) => out.registered.push(row.project.slug.clone()),
            (_, Some(old)) if old != row.project.status => out.transitions.push(row.project.status),
            _ => {}
        }
        written.insert(row.project.slug.clone());
        out.rows.push(row.project);
    }
    for p in batch {
        if written.contains(&p.heartbeat.project_slug) {
            out.messages += p.count;
        } else {
            out.unknown
                .push((p.heartbeat.project_slug.clone(), p.count));
        }
    }
    Ok(out)
}

/// What writing a batch with isolation did.
#[derive(Debug, Default)]
pub struct Isolated {
    /// Everything written, merged.
    pub outcome: BatchOutcome,
    /// Heartbeats the database refused on their own, with its reason.
    pub refused: Vec<(Pending, String)>,
    /// Heartbeats not written because the database failed for another
    /// reason (unreachable, overloaded...): they go back to the coalescer.
    pub unwritten: Vec<Pending>,
    /// That other reason.
    pub error: Option<sqlx::Error>,
}

/// Writes `batch`; when the database refuses it for a reason in the data
/// (not its own state), splits it in halves until the culprits stand alone,
/// so one bad heartbeat never keeps the others out. Stops at the first
/// failure that is not about the data.
pub async fn apply_isolating(pool: &PgPool, batch: Vec<Pending>, auto_register: bool) -> Isolated {
    let mut done = Isolated::default();
    let mut parts = vec![batch];
    while let Some(mut part) = parts.pop() {
        match apply_batch(pool, &part, auto_register).await {
            Ok(outcome) => done.outcome.absorb(outcome),
            Err(e) if is_data_error(&e) => {
                if part.len() == 1 {
                    let culprit = part.remove(0);
                    done.refused.push((culprit, e.to_string()));
                } else {
                    let second = part.split_off(part.len() / 2);
                    parts.push(second);
                    parts.push(part);
                }
            }
            Err(e) => {
                done.unwritten.extend(part);
                done.unwritten.extend(parts.drain(..).flatten());
                done.error = Some(e);
                break;
            }
        }
    }
    done
}

/// Whether the database refused the statement because of values in it
/// (SQLSTATE class 22 data exception, 23 integrity constraint violation,
/// 54 program limit exceeded), or the driver could not encode a value.
/// Anything else is about the database's state, and retrying may help.
pub fn is_data_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54")),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}
