//! The project list, serialised, kept for at most `catalog.list_cache_ttl`.
//!
//! A list of ten thousand projects is ~5 MB of JSON: reading and encoding it
//! for every request costs ~100 ms. Heartbeats change it continuously, so a
//! cache trades exactness for a bounded age instead: an entry older than the
//! TTL is still served while one request refreshes it in the background
//! (stale-while-revalidate), and one much older than that is rebuilt before
//! answering. Writes through this replica's API bump a generation, so they
//! are visible on the next request here (read-your-writes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// At most this many filter combinations are kept (tags are free text).
const MAX_ENTRIES: usize = 64;
/// Past `ttl × STALE_FACTOR`, an entry is rebuilt before answering.
const STALE_FACTOR: u32 = 10;

pub type ListKey = (Option<&'static str>, Option<String>);

struct Entry {
    body: Bytes,
    built: Instant,
    generation: u64,
}

pub struct ListCache {
    ttl: Duration,
    generation: AtomicU64,
    entries: Mutex<HashMap<ListKey, Entry>>,
    /// One rebuild at a time (they all read the same table).
    rebuilding: tokio::sync::Mutex<()>,
    /// A background refresh is under way.
    refreshing: AtomicBool,
}

/// Whether the caller must build the body now, may serve this one, or may
/// serve it and should refresh it.
pub enum Lookup {
    Fresh(Bytes),
    Stale(Bytes),
    Missing,
}

impl ListCache {
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(ListCache {
            ttl,
            generation: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
            rebuilding: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
        })
    }

    /// Something changed through this replica: no entry built before may be served.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn lookup(&self, key: &ListKey) -> Lookup {
        if self.ttl.is_zero() {
            return Lookup::Missing;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Ok(entries) = self.entries.lock() else {
            return Lookup::Missing;
        };
        match entries.get(key) {
            Some(e) if e.generation == generation => {
                let age = e.built.elapsed();
                if age < self.ttl {
                    Lookup::Fresh(e.body.clone())
                } else if age < self.ttl * STALE_FACTOR {
                    Lookup::Stale(e.body.clone())
                } else {
                    Lookup::Missing
                }
            }
            _ => Lookup::Missing,
        }
    }

    /// Builds and stores the body for `key` with `build`, unless another
    /// task just did.
    pub async fn rebuild<F, Fut, E>(&self, key: ListKey, build: F) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>>,
    {
        let _one_at_a_time = self.rebuilding.lock().await;
        if let Lookup::Fresh(body) = self.lookup(&key) {
            return Ok(body);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let built = Instant::now();
        let body = build().await?;
        if !self.ttl.is_zero() {
            if let Ok(mut entries) = self.entries.lock() {
                if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
                    if let Some(oldest) = entries
                        .iter()
                        .min_by_key(|(_, e)| e.built)
                        .map(|(k, _)| k.clone())
                    {
                        entries.remove(&oldest);
                    }
                }
                entries.insert(
                    key,
                    Entry {
                        body: body.clone(),
                        built,
                        generation,
                    },
                );
            }
        }
        Ok(body)
    }

    /// The body for `key`: cached if fresh; cached and refreshed in the
    /// background if stale; built now if missing, too old, or invalidated.
    pub async fn get<F, Fut, E>(self: &Arc<Self>, key: ListKey, build: F) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send + 'static,
    {
        match self.lookup(&key) {
            Lookup::Fresh(body) => Ok(body),
            Lookup::Stale(body) => {
                if self
                    .refreshing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let this = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = this.rebuild(key, build).await {
                            tracing::warn!(error = %e, "refreshing the project list failed; serving the previous one");
                        }
                        this.refreshing.store(false, Ordering::Release);
                    });
                }
                Ok(body)
            }
            Lookup::Missing => self.rebuild(key, build).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ListKey {
        (None, None)
    }

    async fn build(cache: &ListCache, body: &'static str) -> Bytes {
        cache
            .rebuild(key(), || async {
                Ok::<_, ()>(Bytes::from_static(body.as_bytes()))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn fresh_then_stale_then_rebuilt() {
        let cache = ListCache::new(Duration::from_millis(50));
        assert!(matches!(cache.lookup(&key()), Lookup::Missing));
        build(&cache, "a").await;
        assert!(matches!(cache.lookup(&key()), Lookup::Fresh(b) if b == "a"));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(cache.lookup(&key()), Lookup::Stale(b) if b == "a"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(matches!(cache.lookup(&key()), Lookup::Missing));
    }

    #[tokio::test]
    async fn a_local_write_hides_every_earlier_entry() {
        let cache = ListCache::new(Duration::from_secs(3600));
        build(&cache, "before").await;
        cache.invalidate();
        assert!(matches!(cache.lookup(&key()), Lookup::Missing));
        build(&cache, "after").await;
        assert!(matches!(cache.lookup(&key()), Lookup::Fresh(b) if b == "after"));
    }

    #[tokio::test]
    async fn a_zero_ttl_caches_nothing_and_entries_are_bounded() {
        let off = ListCache::new(Duration::ZERO);
        build(&off, "x").await;
        assert!(matches!(off.lookup(&key()), Lookup::Missing));

        let cache = ListCache::new(Duration::from_secs(60));
        for i in 0..(MAX_ENTRIES + 10) {
            cache
                .rebuild((None, Some(format!("tag{i}"))), || async {
                    Ok::<_, ()>(Bytes::new())
                })
                .await
                .unwrap();
        }
        assert_eq!(cache.entries.lock().unwrap().len(), MAX_ENTRIES);
    }
}
