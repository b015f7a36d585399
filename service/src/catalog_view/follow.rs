//! Keeps the view current with changes made by other writers: listens on
//! `catalog_changes`, re-reads the slugs each notification names, and
//! reloads everything after a lost connection and every `resync_interval`.
//!
//! Two tasks, so that listening never waits on a query: the receiver only
//! collects slugs (a set, bounded by the catalog's size), the refresher
//! re-reads whatever accumulated while its previous query ran.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::CatalogView;

/// The channel migration 0007's trigger notifies.
pub const CHANNEL: &str = "catalog_changes";
/// Most slugs one re-read asks for.
const REFRESH_BATCH: usize = 5000;
/// Beyond this many pending slugs a full reload is cheaper.
const MAX_PENDING: usize = 200_000;

/// The `application_name` of this replica's direct writers (the flusher
/// and the sweeper): their notifications are skipped here, since they
/// applied their rows to the view themselves.
pub fn direct_writer_name() -> String {
    format!(
        "federation-direct-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Connects and listens. Done before the first load, so no change
/// committed after that load can be missed.
pub async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[derive(Default)]
struct Pending {
    slugs: Mutex<HashSet<String>>,
    reload: AtomicBool,
    wake: Notify,
}

impl Pending {
    fn add<'a>(&self, slugs: impl Iterator<Item = &'a str>) {
        if let Ok(mut set) = self.slugs.lock() {
            set.extend(slugs.filter(|s| !s.is_empty()).map(str::to_owned));
            if set.len() > MAX_PENDING {
                set.clear();
                self.reload.store(true, Ordering::Release);
            }
        }
        self.wake.notify_one();
    }

    fn request_reload(&self) {
        self.reload.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn take(&self, max: usize) -> Vec<String> {
        let Ok(mut set) = self.slugs.lock() else {
            return Vec::new();
        };
        if set.len() <= max {
            return set.drain().collect();
        }
        let some: Vec<String> = set.iter().take(max).cloned().collect();
        for s in &some {
            set.remove(s);
        }
        some
    }

    fn put_back(&self, slugs: Vec<String>) {
        if let Ok(mut set) = self.slugs.lock() {
            set.extend(slugs);
        }
    }

    fn is_empty(&self) -> bool {
        self.slugs.lock().map(|s| s.is_empty()).unwrap_or(true)
    }
}

/// Follows changes until `shutdown`. `listener` comes from [`listen`].
pub async fn run(
    view: Arc<CatalogView>,
    pool: PgPool,
    listener: PgListener,
    own_writer: String,
    resync_interval: Duration,
    shutdown: CancellationToken,
) {
    if !view.enabled() {
        return;
    }
    view.set_following(true);
    let pending = Arc::new(Pending::default());
    let receiver = tokio::spawn(receive(
        view.clone(),
        pool.clone(),
        listener,
        own_writer,
        pending.clone(),
        shutdown.clone(),
    ));
    refresh(view, pool, pending, resync_interval, shutdown).await;
    let _ = receiver.await;
}

async fn receive(
    view: Arc<CatalogView>,
    pool: PgPool,
    mut listener: PgListener,
    own_writer: String,
    pending: Arc<Pending>,
    shutdown: CancellationToken,
) {
    let retry = common::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let received = tokio::select! {
            r = listener.try_recv() => r,
            _ = shutdown.cancelled() => break,
        };
        match received {
            Ok(Some(n)) => {
                let (writer, slugs) = n.payload().split_once('\n').unwrap_or(("", ""));
                if writer != own_writer {
                    pending.add(slugs.split(','));
                }
            }
            Ok(None) => {
                // Lost and already reconnected: what was said meanwhile is gone.
                tracing::warn!("catalog change notifications interrupted; reloading the view");
                pending.request_reload();
            }
            Err(e) => {
                view.set_following(false);
                tracing::warn!(error = %e, "lost the catalog change notifications; the view may lag until they are back");
                // Reconnect explicitly, so we know when we are listening again.
                let mut backoff = retry.schedule();
                listener = loop {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    match listen(&pool).await {
                        Ok(l) => break l,
                        Err(e) => {
                            tracing::debug!(error = %e, "catalog change notifications: still cannot listen")
                        }
                    }
                };
                view.set_following(true);
                tracing::info!("catalog change notifications back; reloading the view");
                pending.request_reload();
            }
        }
    }
    let _ = listener.unlisten_all().await;
}

async fn refresh(
    view: Arc<CatalogView>,
    pool: PgPool,
    pending: Arc<Pending>,
    resync_interval: Duration,
    shutdown: CancellationToken,
) {
    let resync = if resync_interval.is_zero() {
        Duration::MAX
    } else {
        resync_interval
    };
    let mut next_resync = tokio::time::Instant::now() + resync.min(Duration::from_secs(86_400));
    let mut failing = false;
    loop {
        tokio::select! {
            _ = pending.wake.notified() => {}
            _ = tokio::time::sleep_until(next_resync) => pending.request_reload(),
            _ = shutdown.cancelled() => break,
        }
        loop {
            let result = if pending.reload.swap(false, Ordering::AcqRel) {
                // Slugs already pending are covered by the reload.
                let _ = pending.take(usize::MAX);
                next_resync = tokio::time::Instant::now() + resync.min(Duration::from_secs(86_400));
                view.reload(&pool).await.map(|_| ()).inspect_err(|_| {
                    pending.reload.store(true, Ordering::Release);
                })
            } else {
                let slugs = pending.take(REFRESH_BATCH);
                if slugs.is_empty() {
                    break;
                }
                match view.refresh(&pool, &slugs).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        pending.put_back(slugs);
                        Err(e)
                    }
                }
            };
            match result {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("catalog view refreshing again");
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(error = %e, "catalog view refresh failed; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
            if pending.is_empty() && !pending.reload.load(Ordering::Acquire) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_slugs_are_a_bounded_set() {
        let p = Pending::default();
        p.add(["a", "b", "a", ""].into_iter());
        let mut got = p.take(10);
        got.sort();
        assert_eq!(got, ["a", "b"]);
        assert!(p.is_empty());
        p.add(["x", "y", "z"].into_iter());
        assert_eq!(p.take(2).len(), 2);
        assert_eq!(p.take(2).len(), 1);
        let many: Vec<String> = (0..=MAX_PENDING).map(|i| format!("h{i}")).collect();
        p.add(many.iter().map(String::as_str));
        assert!(p.is_empty(), "too many: a reload instead");
        assert!(p.reload.load(Ordering::Acquire));
    }

    #[test]
    fn writer_names_fit_application_name() {
        let n = direct_writer_name();
        assert!(n.len() < 64 && !n.contains('\n'), "{n}");
        assert_ne!(n, direct_writer_name());
    }
}
