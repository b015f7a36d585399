//! Accepted heartbeats wait here, one entry per hub (the latest wins), until
//! the flusher takes them. Memory is bounded by the number of distinct hubs,
//! never by the message rate: a hub the catalog knows always has its entry
//! (so the bound is the catalog's size, however large the federation), and
//! slugs it does not know share a fixed budget of `max_unknown` entries (they
//! cost a lookup to reject, or are registered with `auto_register`, and
//! anyone able to publish could invent them without end).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use protocol::Heartbeat;
use tokio::sync::Notify;

/// The latest heartbeat of one hub, and how many messages it stands for.
#[derive(Debug, Clone)]
pub struct Pending {
    pub heartbeat: Heartbeat,
    /// The service's receive time: what liveness is judged by.
    pub received_at: DateTime<Utc>,
    /// Messages coalesced into this entry.
    pub count: u64,
}

/// What became of an offered heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// First pending heartbeat of this hub.
    Added,
    /// Replaced (or, if older, absorbed by) the hub's pending one.
    Coalesced,
    /// The map is full of other hubs: dropped.
    Dropped,
}

#[derive(Default)]
struct Map {
    /// Slug → (latest heartbeat, whether the catalog knew the hub).
    entries: HashMap<String, (Pending, bool)>,
    /// Entries of hubs the catalog did not know.
    unknown: usize,
}

pub struct HeartbeatCoalescer {
    pending: Mutex<Map>,
    max_unknown: usize,
    ready: Notify,
}

impl HeartbeatCoalescer {
    pub fn new(max_unknown: usize) -> Self {
        HeartbeatCoalescer {
            pending: Mutex::new(Map::default()),
            max_unknown,
            ready: Notify::new(),
        }
    }

    /// Keeps the newest heartbeat per hub and wakes the flusher. `known`:
    /// the catalog has this hub (its entry is always admitted).
    pub fn offer(&self, heartbeat: Heartbeat, received_at: DateTime<Utc>, known: bool) -> Offer {
        let outcome = {
            let Ok(mut guard) = self.pending.lock() else {
                return Offer::Dropped;
            };
            let map = &mut *guard;
            if let Some((p, _)) = map.entries.get_mut(&heartbeat.project_slug) {
                if received_at >= p.received_at {
                    let older = std::mem::replace(&mut p.heartbeat, heartbeat);
                    fill_omitted(&mut p.heartbeat, older);
                    p.received_at = received_at;
                } else {
                    fill_omitted(&mut p.heartbeat, heartbeat);
                }
                p.count += 1;
                Offer::Coalesced
            } else if !known && map.unknown >= self.max_unknown {
                Offer::Dropped
            } else {
                map.unknown += usize::from(!known);
                map.entries.insert(
                    heartbeat.project_slug.clone(),
                    (
                        Pending {
                            heartbeat,
                            received_at,
                            count: 1,
                        },
                        known,
                    ),
                );
                Offer::Added
            }
        };
        if outcome != Offer::Dropped {
            self.ready.notify_one();
        }
        outcome
    }

    /// Takes up to `max` hubs' heartbeats.
    pub fn take(&self, max: usize) -> Vec<Pending> {
        let Ok(mut guard) = self.pending.lock() else {
            return Vec::new();
        };
        let map = &mut *guard;
        let taken: Vec<(Pending, bool)> = if map.entries.len() <= max {
            std::mem::take(&mut map.entries).into_values().collect()
        } else {
            let keys: Vec<String> = map.entries.keys().take(max).cloned().collect();
            keys.iter().filter_map(|k| map.entries.remove(k)).collect()
        };
        let unknown = taken.iter().filter(|(_, known)| !known).count();
        map.unknown = map.unknown.saturating_sub(unknown);
        taken.into_iter().map(|(p, _)| p).collect()
    }

    /// Returns a batch that could not be written, without overwriting newer
    /// heartbeats that arrived meanwhile.
    /// They were admitted once: they come back as known.
    pub fn put_back(&self, batch: Vec<Pending>) {
        let Ok(mut guard) = self.pending.lock() else {
            return;
        };
        let map = &mut *guard;
        for p in batch {
            match map.entries.get_mut(&p.heartbeat.project_slug) {
                Some((newer, _)) => {
                    newer.count += p.count;
                    if p.received_at > newer.received_at {
                        let older = std::mem::replace(&mut newer.heartbeat, p.heartbeat);
                        fill_omitted(&mut newer.heartbeat, older);
                        newer.received_at = p.received_at;
                    } else {
                        fill_omitted(&mut newer.heartbeat, p.heartbeat);
                    }
                }
                None => {
                    map.entries
                        .insert(p.heartbeat.project_slug.clone(), (p, true));
                }
            }
        }
        drop(guard);
        self.ready.notify_one();
    }

    pub fn len(&self) -> usize {
        self.pending.lock().map(|m| m.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves when something was offered since the last take.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }
}

/// A field the newer heartbeat left out keeps the older one's value, as the
/// write does with what is stored: coalescing must not erase either.
fn fill_omitted(newer: &mut Heartbeat, older: Heartbeat) {
    fn keep<T>(new: &mut Option<T>, old: Option<T>) {
        if new.is_none() {
            *new = old;
        }
    }
    keep(&mut newer.mesh_namespace, older.mesh_namespace);
    keep(&mut newer.hub_url, older.hub_url);
    keep(&mut newer.timestamp, older.timestamp);
    keep(&mut newer.agent_id, older.agent_id);
    keep(&mut newer.seq, older.seq);
    keep(&mut newer.interval_s, older.interval_s);
    keep(&mut newer.version, older.version);
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::HubStatus;

    fn hb(slug: &str, status: HubStatus) -> Heartbeat {
        Heartbeat {
            project_slug: slug.into(),
            mesh_namespace: Some(format!("hub.{slug}")),
            hub_url: Some(format!("http://{slug}")),
            status,
            timestamp: Some(Utc::now()),
            agent_id: None,
            seq: None,
            interval_s: None,
            version: None,
        }
    }

    /// Offers an online heartbeat of `slug` received at `ms`.
    fn beat(c: &HeartbeatCoalescer, slug: &str, ms: i64, known: bool) -> Offer {
        c.offer(hb(slug, HubStatus::Online), at(ms), known)
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_latest_heartbeat_per_hub_wins_and_counts_add_up() {
        let c = HeartbeatCoalescer::new(10);
        assert_eq!(beat(&c, "a", 1, true), Offer::Added);
        assert_eq!(
            c.offer(hb("a", HubStatus::Degraded), at(2), true),
            Offer::Coalesced
        );
        // An older one (from a slower path) does not replace the newer.
        assert_eq!(
            c.offer(hb("a", HubStatus::Offline), at(0), true),
            Offer::Coalesced
        );
        assert_eq!(beat(&c, "b", 1, true), Offer::Added);
        let mut batch = c.take(10);
        batch.sort_by(|x, y| x.heartbeat.project_slug.cmp(&y.heartbeat.project_slug));
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].heartbeat.status, HubStatus::Degraded);
        assert_eq!(batch[0].received_at, at(2));
        assert_eq!(batch[0].count, 3);
        assert!(c.is_empty());
    }

    #[test]
    fn coalescing_never_erases_a_field_the_newer_heartbeat_left_out() {
        let c = HeartbeatCoalescer::new(10);
        let full = hb("a", HubStatus::Online);
        let mut bare = hb("a", HubStatus::Degraded);
        bare.agent_id = None;
        bare.timestamp = None;
        bare.hub_url = None;
        bare.version = Some("2".into());
        c.offer(full.clone(), at(1), true);
        c.offer(bare, at(2), true);
        let got = c.take(10).remove(0).heartbeat;
        assert_eq!(got.status, HubStatus::Degraded);
        assert_eq!(got.version.as_deref(), Some("2"));
        assert_eq!(got.timestamp, full.timestamp);
        assert_eq!(got.hub_url, full.hub_url);
        // An older one arriving late fills gaps (as if written first), but
        // never overrides.
        let mut late = hb("a", HubStatus::Offline);
        late.agent_id = Some("late".into());
        beat(&c, "a", 5, true);
        let mut newest = hb("a", HubStatus::Online);
        newest.agent_id = None;
        c.offer(newest, at(6), true);
        c.offer(late, at(0), true);
        let got = c.take(10).remove(0).heartbeat;
        assert_eq!(got.status, HubStatus::Online);
        assert_eq!(got.agent_id.as_deref(), Some("late"));
    }

    #[test]
    fn memory_is_bounded_by_distinct_hubs() {
        let c = HeartbeatCoalescer::new(2);
        for i in 0..1000 {
            beat(&c, "a", i, false);
            beat(&c, "b", i, false);
        }
        assert_eq!(c.len(), 2);
        assert_eq!(beat(&c, "c", 0, false), Offer::Dropped);
        // Pending hubs are still coalesced when the budget is spent.
        assert_eq!(beat(&c, "a", 5000, false), Offer::Coalesced);
        // Taking them frees the budget.
        assert_eq!(c.take(1).len(), 1);
        assert_eq!(beat(&c, "c", 0, false), Offer::Added);
    }

    #[test]
    fn a_hub_the_catalog_knows_is_never_dropped_however_many_there_are() {
        let c = HeartbeatCoalescer::new(10);
        for i in 0..250_000 {
            assert_eq!(beat(&c, &format!("h{i}"), 0, true), Offer::Added);
        }
        assert_eq!(c.len(), 250_000);
        // Unknown ones still have only their budget.
        for i in 0..10 {
            beat(&c, &format!("x{i}"), 0, false);
        }
        assert_eq!(beat(&c, "x10", 0, false), Offer::Dropped);
    }

    #[test]
    fn take_respects_the_batch_bound() {
        let c = HeartbeatCoalescer::new(100);
        for i in 0..10 {
            beat(&c, &format!("h{i}"), i, true);
        }
        assert_eq!(c.take(4).len(), 4);
        assert_eq!(c.len(), 6);
        assert_eq!(c.take(100).len(), 6);
    }

    #[test]
    fn a_failed_batch_goes_back_without_hiding_newer_heartbeats() {
        let c = HeartbeatCoalescer::new(10);
        beat(&c, "a", 1, true);
        let batch = c.take(10);
        c.offer(hb("a", HubStatus::Degraded), at(2), true);
        c.put_back(batch);
        let back = c.take(10);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].heartbeat.status, HubStatus::Degraded);
        assert_eq!(back[0].count, 2);
    }
}
