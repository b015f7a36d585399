//! Writing a batch of heartbeats with the one statement of
//! [`crate::store::liveness::write_heartbeats`], and the isolation of a batch
//! the database refuses.
//!
//! Arrays in, one round trip: lock the known hubs in id order (so the
//! sweeper and other replicas never deadlock with us), apply each heartbeat
//! monotonically (`last_heartbeat_at = GREATEST(old, new)`; status and
//! diagnostics only from a heartbeat at least as new as the stored one, and a
//! diagnostic the heartbeat left out keeps its stored value), record every
//! status change with its time in `project_transitions` and the outbox,
//! optionally register unknown hubs, and return every row written so the
//! catalog view shows it at once.

use sqlx::PgPool;

use super::coalescer::Pending;
use crate::catalog::{Project, ProjectStatus};
use crate::store::liveness::{self, HeartbeatColumns, Written};

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
    let mut columns = HeartbeatColumns::default();
    for p in batch {
        let hb = &p.heartbeat;
        columns.slugs.push(hb.project_slug.as_str());
        columns.received_at.push(p.received_at);
        columns.reported.push(hb.status.as_str());
        columns.hub_timestamps.push(hb.timestamp);
        columns.agent_ids.push(hb.agent_id.as_deref());
        // Validation bounds both; no saturation ever happens here.
        columns
            .seqs
            .push(hb.seq.and_then(|s| i64::try_from(s).ok()));
        columns
            .intervals
            .push(hb.interval_s.and_then(|i| i32::try_from(i).ok()));
        columns.versions.push(hb.version.as_deref());
        columns.hub_urls.push(hb.hub_url.as_deref());
    }
    let rows = liveness::write_heartbeats(pool, &columns, auto_register).await?;

    let mut out = BatchOutcome::default();
    let mut written = std::collections::HashSet::with_capacity(rows.len());
    for (how, project) in rows {
        match how {
            Written::Registered => out.registered.push(project.slug.clone()),
            Written::Updated { old_status } if old_status != project.status => {
                out.transitions.push(project.status)
            }
            Written::Updated { .. } => {}
        }
        written.insert(project.slug.clone());
        out.rows.push(project);
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
