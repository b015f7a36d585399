//! Scale figures of the parts whose cost grows with the number of hubs,
//! measured in process on a throwaway database of the shared PostgreSQL:
//! the sweep (nothing due, and 10 % of the hubs fallen silent at once), one
//! flusher batch statement, the catalog view's memory per hub and the cost
//! of applying changes to it, and one page of the list with filters.
//!
//!   scripts/bench scale [-- --hubs 100000,1000000]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{ms, percentiles};
use chrono::Utc;
use clap::Parser;
use protocol::Heartbeat;
use service::catalog::Project;
use service::catalog_view::CatalogView;
use service::config::HeartbeatSettings;
use service::ingest::coalescer::Pending;
use service::ingest::write::apply_batch;
use service::listing::Listing;
use service::store::projects::ProjectFilter;
use service::sweeper::StaleSweeper;
use testkit::TestDb;

#[derive(Parser)]
struct Args {
    /// Registered hubs, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    hubs: Vec<usize>,
    /// Hubs in one flusher batch.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Repetitions of each timed step (the median and worst are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn timed<F, Fut, T>(runs: usize, mut step: F) -> anyhow::Result<(Duration, Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut samples = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(step().await?);
        samples.push(t.elapsed());
    }
    let (p50, _, max) = percentiles(&mut samples);
    Ok((p50, max, last.expect("at least one run")))
}

async fn one(n: usize, args: &Args) -> anyhow::Result<()> {
    let db = TestDb::create().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url)
        .await?;
    let t = Instant::now();
    sqlx::query(
        "INSERT INTO projects (slug, name, hub_url, mesh_namespace, tags, status, last_heartbeat_at, heartbeat_interval_s)
         SELECT 'hub' || i, 'Hub number ' || i, 'http://hub' || i || '.example:9001', 'hub.hub' || i,
                ARRAY['region-' || (i % 10), CASE WHEN i % 2 = 0 THEN 'production' ELSE 'staging' END],
                'online', now(), CASE WHEN i % 3 = 0 THEN 30 END
         FROM generate_series(1, $1) AS i",
    )
    .bind(n as i64)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE projects").execute(&pool).await?;
    println!("\n{n} hubs (inserted in {})", ms(t.elapsed()));

    // The catalog view: memory per hub, load time, applying changes.
    let before = rss_kib();
    let view = CatalogView::new(true);
    let t = Instant::now();
    view.reload(&pool).await?;
    let load = t.elapsed();
    let after = rss_kib();
    println!(
        "  view: loaded in {}, RSS +{} MiB = {} bytes per hub",
        ms(load),
        (after.saturating_sub(before)) / 1024,
        (after.saturating_sub(before)) * 1024 / n as u64
    );
    let changed: Vec<String> = (1..=args.batch.min(n)).map(|i| format!("hub{i}")).collect();
    let rows = service::store::projects::list_by_slugs(&pool, &changed).await?;
    let (p50, max, _) = timed(args.runs, || {
        let rows: Vec<Project> = rows.clone();
        let view = view.clone();
        async move {
            view.apply(rows);
            Ok(())
        }
    })
    .await?;
    println!(
        "  view: applying {} changed rows p50 {} max {} ({:.2} µs per row)",
        rows.len(),
        ms(p50),
        ms(max),
        p50.as_secs_f64() * 1e6 / rows.len() as f64
    );

    // One page of the list, as GET /api/fed/projects?limit=100 answers it
    // from the view: unfiltered, and with two tags and a search.
    for (what, filter) in [
        ("limit=100", ProjectFilter::default()),
        (
            "limit=100&tag=production&tag=region-4&q=99",
            ProjectFilter {
                tags: vec!["production".into(), "region-4".into()],
                q: Some("99".into()),
                ..Default::default()
            },
        ),
    ] {
        let mut problems = Vec::new();
        let listing = Listing::check::<Project>(Some("slug"), None, Some(100), &mut problems)
            .expect("a valid listing");
        let (p50, max, total) = timed(args.runs, || {
            let view = view.clone();
            let (filter, listing) = (filter.clone(), listing.clone());
            async move {
                let page = view.page(&filter, &listing).expect("the view is loaded");
                Ok(page.total)
            }
        })
        .await?;
        println!(
            "  list page ({what}): p50 {} max {} ({total} matching)",
            ms(p50),
            ms(max)
        );
    }

    // One flusher batch statement: `batch` hubs' heartbeats.
    let now = Utc::now();
    let batch: Vec<Pending> = (1..=args.batch.min(n))
        .map(|i| {
            let slug = format!("hub{i}");
            let payload = serde_json::json!({"project_slug": slug, "seq": 7, "interval_s": 30});
            let heartbeat = Heartbeat::parse(
                &format!("hub.presence.{slug}"),
                payload.to_string().as_bytes(),
                4096,
            )
            .expect("a valid heartbeat");
            Pending {
                heartbeat,
                received_at: now,
                count: 1,
            }
        })
        .collect();
    let (p50, max, _) = timed(args.runs, || {
        let (pool, batch) = (pool.clone(), &batch);
        async move {
            apply_batch(&pool, batch, false).await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "  flusher: one statement of {} heartbeats p50 {} max {}",
        batch.len(),
        ms(p50),
        ms(max)
    );

    // The sweep: nothing due (the usual case), then 10 % silent at once.
    // Thresholds far above the time this run takes (inserting a million
    // hubs and loading the view take a minute), so that nothing is due
    // until the silent tenth is made so.
    let settings = HeartbeatSettings {
        degraded_after: Duration::from_secs(30 * 60),
        stale_threshold: Duration::from_secs(60 * 60),
        ..HeartbeatSettings::default()
    };
    // Every hub beat just now (hubs that said an interval have deadlines of
    // their own, under a minute): a bulk refresh of this throwaway
    // database, without the change notifications nobody listens to.
    for statement in [
        "ALTER TABLE projects DISABLE TRIGGER projects_updated",
        "UPDATE projects SET last_heartbeat_at = now()",
        "ALTER TABLE projects ENABLE TRIGGER projects_updated",
        "VACUUM ANALYZE projects",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    let sweeper = StaleSweeper::new(pool.clone(), Arc::clone(&view), &settings);
    let sight = Some(now - chrono::Duration::days(1));
    let (p50, max, _) = timed(args.runs, || {
        let sweeper = &sweeper;
        async move {
            let out = sweeper.sweep_once(Utc::now(), sight).await?;
            anyhow::ensure!(
                out.offline.is_empty() && out.degraded.is_empty(),
                "something was due"
            );
            Ok(())
        }
    })
    .await?;
    println!("  sweep, nothing due: p50 {} max {}", ms(p50), ms(max));
    let silent = n / 10;
    sqlx::query(
        "UPDATE projects SET last_heartbeat_at = now() - interval '3 hours' WHERE id IN (SELECT id FROM projects ORDER BY id LIMIT $1)",
    )
    .bind(silent as i64)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE projects").execute(&pool).await?;
    let t = Instant::now();
    let out = sweeper.sweep_once(Utc::now(), sight).await?;
    let took = t.elapsed();
    println!(
        "  sweep, {silent} hubs (10 %) silent at once: {} marked offline, {} degraded, in {}",
        out.offline.len(),
        out.degraded.len(),
        ms(took)
    );
    anyhow::ensure!(
        out.offline.len() + out.degraded.len() == silent,
        "expected {silent} hubs marked"
    );
    pool.close().await;
    drop(db);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for &n in &args.hubs {
        one(n, &args).await?;
    }
    Ok(())
}
