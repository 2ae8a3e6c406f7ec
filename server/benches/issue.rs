//! Issuing tickets: the pure core alone (the baseline), and through a site actor that appends
//! each ticket to the SQLite event log as one durable transaction. Compare the two as a ratio.
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
            if n % 90_000 == 0 {
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
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
