//! Issuing tickets: the pure core alone (decide + apply, the baseline); the SQLite append path
//! alone (one event per durable transaction, fsync as configured); through a site actor one at a
//! time (each ticket its own transaction); and sixteen at once through the actor (group commit:
//! those queued behind one append share the next). Compare them as ratios.
//!
//! cargo bench -p madoguchi-server --bench issue

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use madoguchi::config::Config;
use madoguchi::core::{decide, Command, IssueCommand, PlanRequest, SiteState, TicketId};
use madoguchi::log::{EventLog, SqliteLog};
use madoguchi::metrics::Metrics;
use madoguchi::projection::ProjectionStore;

/// One site whose queue never runs out of numbers during a benchmark.
const CONFIG: &str = r#"
[[procedures]]
code = "shoumei"
name = { ja = "住民票など証明", en = "Certificates" }
service_min = 5

[[sites]]
id = "bench"
name = { ja = "計測", en = "Bench" }

[[sites.queues]]
id = "certificates"
name = { ja = "各種証明", en = "Certificates" }
range = [1, 99999]
procedures = ["shoumei"]

[[sites.counters]]
id = "1"
name = { ja = "1番窓口", en = "Counter 1" }
queues = ["certificates"]
state = "open"
"#;

fn issue(n: u64) -> Command {
    Command::Issue(IssueCommand {
        id: TicketId::try_from(format!("t{n}")).unwrap(),
        token: format!("{n:032x}"),
        plan: PlanRequest::Procedures(vec!["shoumei".parse().unwrap()]),
        priority: false,
        dispenser: None,
        lang: None,
        idempotency_key: None,
    })
}

fn bench(c: &mut Criterion) {
    let config = Config::parse(Path::new("bench.toml"), CONFIG, &|_| None).unwrap();
    let site = config.sites[0].clone();
    let mut group = c.benchmark_group("issue");
    group.throughput(Throughput::Elements(1));

    group.bench_function("core", |b| {
        let mut state = SiteState::new(site.clone());
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            if n.is_multiple_of(90_000) {
                state = SiteState::new(site.clone());
            }
            let events = decide(&state, &issue(n), Utc::now()).unwrap();
            for e in &events {
                state.apply(e);
            }
        })
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(&db).unwrap());
    let visits = ProjectionStore::open(&db).unwrap();
    let deps = madoguchi::site::SiteDeps {
        log,
        store: visits,
        printers: Default::default(),
        metrics: Metrics::new(),
        clock: Arc::new(Utc::now),
        tickets: Default::default(),
        snapshots: None,
        runtime: None,
    };
    let (handle, _task) = rt
        .block_on(madoguchi::site::start(site.clone(), deps))
        .unwrap();
    let counter = std::sync::atomic::AtomicU64::new(0);
    group.sample_size(20);
    group.bench_function("sqlite_actor", |b| {
        b.to_async(&rt).iter(|| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let handle = handle.clone();
            async move { handle.command(issue(n)).await.unwrap() }
        })
    });
    let append_db = dir.path().join("append.db");
    let append_log = SqliteLog::open(&append_db).unwrap();
    let mut append_state = SiteState::new(site.clone());
    let mut m = 0u64;
    group.bench_function("sqlite_append", |b| {
        b.iter(|| {
            m += 1;
            let events = decide(&append_state, &issue(m), Utc::now()).unwrap();
            let seq = append_state.seq;
            rt.block_on(append_log.append(&site.id, seq, &events))
                .unwrap();
            for e in &events {
                append_state.apply(e);
            }
        })
    });
    group.finish();

    let mut together = c.benchmark_group("issue_16_at_once");
    together.throughput(Throughput::Elements(16));
    together.sample_size(20);
    together.bench_function("sqlite_actor", |b| {
        b.to_async(&rt).iter(|| {
            let handle = handle.clone();
            let first = counter.fetch_add(16, std::sync::atomic::Ordering::Relaxed);
            async move {
                let issues = (first..first + 16).map(|n| {
                    let handle = handle.clone();
                    async move { handle.command(issue(n)).await.unwrap() }
                });
                futures_util::future::join_all(issues).await
            }
        })
    });
    together.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
