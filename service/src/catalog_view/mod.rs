//! An in-memory view of the catalog, kept current by push, for the read
//! routes.
//!
//! A read that goes to PostgreSQL costs a round trip and ~80 µs of database
//! CPU: on two cores that caps `GET /api/fed/projects/{slug}` near 15k/s and
//! makes a list of ten thousand projects take ~100 ms. So each replica keeps
//! every project in memory, and every writer pushes what it changed:
//!
//! - this replica's own writers (the heartbeat flusher, the sweeper, the API)
//!   apply the rows their statements returned, right after commit;
//! - every statement that changes `projects` (whoever runs it) notifies the
//!   changed slugs on PostgreSQL channel `catalog_changes`, in commit order
//!   (migration 0007); [`follow`] re-reads those rows for this replica,
//!   skipping the notifications of its own direct writers;
//! - when that listening connection is lost, it reconnects and reloads the
//!   whole catalog, as it does every `catalog.resync_interval` as a backstop.
//!
//! Copies of a project may arrive out of order (a direct apply and a re-read
//! racing), so each carries `(id, revision)`: `revision` grows with every
//! update of the row, a re-created project has a larger `id`, and a copy
//! older than the one held is ignored. Deletions leave a tombstone of the
//! deleted id, so a late copy of the deleted row cannot bring it back.
//!
//! Until the first load the view is not used (reads go to the database).
//! Once loaded it answers even while the database is unreachable: nothing can
//! change the catalog then, so it is as fresh as the database would be.
//! `catalog.view: false` turns it off: every read goes to the database.

pub mod follow;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use sqlx::PgPool;

use crate::catalog::{Project, ProjectStatus};
use crate::listing::{Listed, Listing, SortValue};
use crate::store::projects::{self, ProjectFilter};

/// How long a deleted project's id is remembered against late copies.
const TOMBSTONE_TTL: Duration = Duration::from_secs(600);

/// One project, and its JSON once someone asked for it.
struct Entry {
    project: Project,
    json: OnceLock<Bytes>,
    /// When this copy entered the view: a re-read that began earlier and
    /// did not find the project cannot remove it.
    applied: Instant,
}

impl Entry {
    fn new(project: Project, applied: Instant) -> Arc<Entry> {
        Arc::new(Entry {
            project,
            json: OnceLock::new(),
            applied,
        })
    }

    fn version(&self) -> (i64, i64) {
        (self.project.id, self.project.revision)
    }

    fn json(&self) -> &Bytes {
        // Serialising strings, numbers and dates cannot fail.
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.project).unwrap_or_default()))
    }
}

impl Listed for Entry {
    const SORTS: &'static [&'static str] = Project::SORTS;
    fn sort_value(&self, field: &str) -> SortValue<'_> {
        self.project.sort_value(field)
    }
    fn unique(&self) -> &str {
        self.project.unique()
    }
}

/// One page of a list, as the route serves it.
pub struct PageBody {
    /// The JSON array.
    pub body: Bytes,
    pub total: usize,
    pub next: Option<String>,
}

/// A JSON array of already serialised items.
pub fn json_array<'a>(items: impl Iterator<Item = &'a [u8]>) -> Bytes {
    let mut out = Vec::new();
    out.push(b'[');
    for (i, json) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(json);
    }
    out.push(b']');
    Bytes::from(out)
}

#[derive(Default)]
struct State {
    /// By slug, so lists come out ordered.
    projects: BTreeMap<String, Arc<Entry>>,
    /// Deleted ids by slug, and when.
    tombstones: HashMap<String, (i64, Instant)>,
}

impl State {
    fn apply(&mut self, p: Project, at: Instant) -> bool {
        if let Some((id, _)) = self.tombstones.get(&p.slug) {
            if p.id <= *id {
                return false;
            }
            self.tombstones.remove(&p.slug);
        }
        if let Some(held) = self.projects.get(&p.slug) {
            // Equal versions replace: an out-of-band edit (psql) does not
            // bump the revision, and a re-read is never older than a copy
            // that entered the view before it began.
            if held.version() > (p.id, p.revision) {
                return false;
            }
        }
        self.projects.insert(p.slug.clone(), Entry::new(p, at));
        true
    }

    fn remove(&mut self, slug: &str, now: Instant) -> bool {
        match self.projects.remove(slug) {
            Some(e) => {
                self.tombstones.insert(slug.to_owned(), (e.project.id, now));
                true
            }
            None => false,
        }
    }

    fn prune_tombstones(&mut self, now: Instant) {
        if self.tombstones.len() > 1024 {
            self.tombstones
                .retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_TTL);
        }
    }
}

pub struct CatalogView {
    enabled: bool,
    state: RwLock<State>,
    loaded: AtomicBool,
    /// Whether [`follow`] is connected and listening right now.
    following: AtomicBool,
    /// Bumped after every change the view takes in (tenant routing
    /// republishes its snapshot when a node's hub changes).
    changes: tokio::sync::watch::Sender<u64>,
}

impl CatalogView {
    pub fn new(enabled: bool) -> Arc<Self> {
        Arc::new(CatalogView {
            enabled,
            state: RwLock::new(State::default()),
            loaded: AtomicBool::new(false),
            following: AtomicBool::new(false),
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Whether reads may be served from memory.
    pub fn usable(&self) -> bool {
        self.enabled && self.loaded.load(Ordering::Acquire)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// False while changes made elsewhere may be missed (the listening
    /// connection is down); `/ready` warns.
    pub fn is_following(&self) -> bool {
        self.following.load(Ordering::Acquire)
    }

    fn set_following(&self, on: bool) {
        self.following.store(on, Ordering::Release);
    }

    /// `f` of the project (`None`: not in the catalog), if the view is usable.
    pub fn with_project<R>(&self, slug: &str, f: impl FnOnce(Option<&Project>) -> R) -> Option<R> {
        if !self.usable() {
            return None;
        }
        let s = self.state.read().ok()?;
        Some(f(s.projects.get(slug).map(|e| &e.project)))
    }

    /// Wakes after each change the view takes in.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A project's JSON, if the view is usable and has it.
    pub fn get(&self, slug: &str) -> Option<Bytes> {
        if !self.usable() {
            return None;
        }
        let s = self.state.read().ok()?;
        s.projects.get(slug).map(|e| e.json().clone())
    }

    /// Whether the view holds `slug` (false when it is not usable).
    pub fn contains(&self, slug: &str) -> bool {
        self.usable()
            && self
                .state
                .read()
                .is_ok_and(|s| s.projects.contains_key(slug))
    }

    /// One page of the matching projects, if the view is usable. Filters
    /// and order run over the whole view (kept in slug order).
    pub fn page(&self, filter: &ProjectFilter, listing: &Listing) -> Option<PageBody> {
        if !self.usable() {
            return None;
        }
        let s = self.state.read().ok()?;
        let matching: Vec<&Entry> = s
            .projects
            .values()
            .filter(|e| filter.matches(&e.project))
            .map(|e| &**e)
            .collect();
        let page = listing.page(matching, true);
        Some(PageBody {
            body: json_array(page.items.iter().map(|e| &e.json()[..])),
            total: page.total,
            next: page.next,
        })
    }

    /// Number of projects per status, if the view is usable.
    pub fn counts(&self) -> Option<[(ProjectStatus, i64); 3]> {
        if !self.usable() {
            return None;
        }
        let s = self.state.read().ok()?;
        let mut counts = ProjectStatus::ALL.map(|st| (st, 0i64));
        for e in s.projects.values() {
            if let Some(c) = counts.iter_mut().find(|(st, _)| *st == e.project.status) {
                c.1 += 1;
            }
        }
        Some(counts)
    }

    /// Rows a statement of this replica returned after it committed, or
    /// rows read from the database at `read_at` or later. Older copies than
    /// the view holds are ignored.
    pub fn apply(&self, rows: impl IntoIterator<Item = Project>) {
        self.apply_read_at(rows, Instant::now());
    }

    fn apply_read_at(&self, rows: impl IntoIterator<Item = Project>, at: Instant) {
        if !self.enabled {
            return;
        }
        if let Ok(mut s) = self.state.write() {
            for p in rows {
                s.apply(p, at);
            }
        }
        self.changed();
    }

    /// A project deleted by this replica (it committed).
    pub fn remove(&self, slug: &str) {
        if !self.enabled {
            return;
        }
        if let Ok(mut s) = self.state.write() {
            let now = Instant::now();
            s.remove(slug, now);
            s.prune_tombstones(now);
        }
        self.changed();
    }

    /// After a re-read that began at `read_at` found `found` of `asked`:
    /// applies what it found, and removes what it did not find unless a copy
    /// entered the view after the read began.
    fn reconcile(&self, asked: &[String], found: Vec<Project>, read_at: Instant) {
        if !self.enabled {
            return;
        }
        let Ok(mut s) = self.state.write() else {
            return;
        };
        let present: std::collections::HashSet<String> =
            found.iter().map(|p| p.slug.clone()).collect();
        for p in found {
            s.apply(p, read_at);
        }
        let now = Instant::now();
        for slug in asked {
            if present.contains(slug) {
                continue;
            }
            if s.projects.get(slug).is_some_and(|e| e.applied < read_at) {
                s.remove(slug, now);
            }
        }
        s.prune_tombstones(now);
        drop(s);
        self.changed();
    }

    /// Reads every project and brings the view to it. Copies that entered
    /// the view while it read stay.
    pub async fn reload(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        if !self.enabled {
            return Ok(0);
        }
        let read_at = Instant::now();
        let rows = projects::list(pool, &ProjectFilter::default()).await?;
        let n = rows.len();
        let asked: Vec<String> = match self.state.read() {
            Ok(s) => s.projects.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        self.reconcile(&asked, rows, read_at);
        self.loaded.store(true, Ordering::Release);
        self.changed();
        Ok(n)
    }

    /// Re-reads the named projects.
    pub async fn refresh(&self, pool: &PgPool, slugs: &[String]) -> Result<(), sqlx::Error> {
        let read_at = Instant::now();
        let rows = projects::list_by_slugs(pool, slugs).await?;
        self.reconcile(slugs, rows, read_at);
        Ok(())
    }

    /// How many projects the view holds.
    pub fn len(&self) -> usize {
        self.state.read().map(|s| s.projects.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn project(id: i64, slug: &str, status: ProjectStatus, tag: &str) -> Project {
        Project {
            id,
            slug: slug.into(),
            name: slug.into(),
            hub_url: format!("http://{slug}"),
            mesh_namespace: format!("hub.{slug}"),
            tags: vec![tag.into()],
            allow_fanout: vec![],
            status,
            status_changed_at: Utc::now(),
            last_heartbeat_at: None,
            hub_timestamp: None,
            agent_id: None,
            agent_version: None,
            heartbeat_seq: None,
            heartbeat_interval_s: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            revision: 1,
            maintenance: None,
        }
    }

    fn loaded() -> Arc<CatalogView> {
        let view = CatalogView::new(true);
        view.loaded.store(true, Ordering::Release);
        view
    }

    fn list(view: &CatalogView, status: Option<ProjectStatus>, tag: Option<&str>) -> Option<Bytes> {
        let filter = ProjectFilter {
            status,
            tags: tag.into_iter().map(str::to_owned).collect(),
            q: None,
        };
        let listing = Listing::check::<Project>(None, None, None, &mut Vec::new()).unwrap();
        view.page(&filter, &listing).map(|p| p.body)
    }

    fn status_of(view: &CatalogView, slug: &str) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&view.get(slug)?).ok()?;
        Some(v["status"].as_str()?.to_owned())
    }

    #[test]
    fn lists_are_ordered_filtered_json_arrays() {
        let view = loaded();
        view.apply([
            project(1, "beta", ProjectStatus::Online, "eu"),
            project(2, "alpha", ProjectStatus::Offline, "eu"),
            project(3, "gamma", ProjectStatus::Online, "us"),
        ]);
        let all: serde_json::Value =
            serde_json::from_slice(&list(&view, None, None).unwrap()).unwrap();
        let slugs: Vec<_> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["slug"].as_str().unwrap())
            .collect();
        assert_eq!(slugs, ["alpha", "beta", "gamma"]);
        let eu_online: serde_json::Value =
            serde_json::from_slice(&list(&view, Some(ProjectStatus::Online), Some("eu")).unwrap())
                .unwrap();
        assert_eq!(eu_online.as_array().unwrap().len(), 1);
        assert_eq!(&list(&view, None, Some("nowhere")).unwrap()[..], b"[]");
        assert_eq!(
            view.counts().unwrap(),
            [
                (ProjectStatus::Online, 2),
                (ProjectStatus::Degraded, 0),
                (ProjectStatus::Offline, 1)
            ]
        );
        view.remove("beta");
        assert!(view.get("beta").is_none());
        assert!(view.get("alpha").is_some());
        // The revision is not served.
        assert!(!String::from_utf8_lossy(&view.get("alpha").unwrap()).contains("revision"));
    }

    #[test]
    fn an_older_copy_never_replaces_a_newer_one() {
        let view = loaded();
        let mut p = project(1, "alpha", ProjectStatus::Online, "eu");
        p.revision = 5;
        view.apply([p.clone()]);
        let mut stale = p.clone();
        stale.revision = 4;
        stale.status = ProjectStatus::Offline;
        view.apply([stale]);
        assert_eq!(status_of(&view, "alpha").as_deref(), Some("online"));
        // Equal revisions replace (an edit that bypassed the service).
        let mut edited = p.clone();
        edited.status = ProjectStatus::Degraded;
        view.apply([edited]);
        assert_eq!(status_of(&view, "alpha").as_deref(), Some("degraded"));
        // A re-created project (larger id) replaces whatever revision.
        let mut again = project(9, "alpha", ProjectStatus::Offline, "eu");
        again.revision = 1;
        view.apply([again]);
        assert_eq!(status_of(&view, "alpha").as_deref(), Some("offline"));
    }

    #[test]
    fn a_late_copy_of_a_deleted_project_does_not_bring_it_back() {
        let view = loaded();
        let p = project(3, "alpha", ProjectStatus::Online, "eu");
        view.apply([p.clone()]);
        view.remove("alpha");
        view.apply([p]);
        assert!(view.get("alpha").is_none());
        // A new project under the same slug does come in.
        view.apply([project(4, "alpha", ProjectStatus::Online, "eu")]);
        assert!(view.get("alpha").is_some());
    }

    #[test]
    fn a_re_read_removes_only_what_was_there_before_it_began() {
        let view = loaded();
        view.apply([project(1, "old", ProjectStatus::Online, "eu")]);
        let read_at = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        // Created locally while the re-read ran.
        view.apply([project(2, "new", ProjectStatus::Online, "eu")]);
        view.reconcile(&["old".into(), "new".into()], Vec::new(), read_at);
        assert!(view.get("old").is_none(), "deleted elsewhere");
        assert!(view.get("new").is_some(), "applied after the read began");
    }

    #[test]
    fn an_unloaded_or_disabled_view_is_not_used() {
        let view = CatalogView::new(true);
        view.apply([project(1, "alpha", ProjectStatus::Online, "eu")]);
        assert!(view.get("alpha").is_none(), "never loaded");
        assert!(list(&view, None, None).is_none());
        view.loaded.store(true, Ordering::Release);
        assert!(view.get("alpha").is_some());

        let off = CatalogView::new(false);
        off.loaded.store(true, Ordering::Release);
        off.apply([project(1, "alpha", ProjectStatus::Online, "eu")]);
        assert!(off.get("alpha").is_none());
    }
}
