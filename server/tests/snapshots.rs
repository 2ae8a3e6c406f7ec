//! Snapshots beside the event log: the store's contract (every backend must pass
//! `store_conformance`), and site actors that start from a snapshot and replay only what follows
//! it, or replay everything when the snapshot does not fit (configuration changed, projections
//! behind it, damaged). The property that a snapshot plus the rest equals a full replay is in
//! `core_props.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use madoguchi::config::{Config, SiteConfig};
use madoguchi::core::{
    Command, CounterId, CounterState, IssueCommand, PlanRequest, SiteId, SiteSnapshot, SiteState,
    Target, TicketId, TicketStatus,
};
use madoguchi::log::{EventLog, SnapshotStore, SqliteLog, SqliteSnapshots, KEEP_SNAPSHOTS};
use madoguchi::metrics::Metrics;
use madoguchi::projection::ProjectionStore;
use madoguchi::site::{self, SiteDeps, SiteHandle, TicketIndex};

fn demo_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml");
    std::fs::read_to_string(path).unwrap()
}

fn parse(text: &str) -> Config {
    Config::parse(Path::new("demo.toml"), text, &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

fn chuo(config: &Config) -> Arc<SiteConfig> {
    config.site(&"chuo".parse().unwrap()).unwrap().clone()
}

/// The demo site with counter 10 open instead of closed: a change the state depends on.
fn counter_10_open() -> Arc<SiteConfig> {
    let text = demo_text();
    let closed = "queues = [\"welfare\"]\nstate = \"closed\"";
    assert!(text.contains(closed), "demo.toml changed: update this test");
    chuo(&parse(
        &text.replace(closed, "queues = [\"welfare\"]\nstate = \"open\""),
    ))
}

fn demo() -> Arc<SiteConfig> {
    chuo(&parse(&demo_text()))
}

struct Data {
    db: PathBuf,
    _dir: tempfile::TempDir,
}

impl Data {
    fn new() -> Data {
        let dir = tempfile::tempdir().unwrap();
        Data {
            db: dir.path().join("madoguchi.db"),
            _dir: dir,
        }
    }

    fn deps(&self, snapshots: bool) -> SiteDeps {
        SiteDeps {
            log: Arc::new(SqliteLog::open(&self.db).unwrap()),
            store: ProjectionStore::open(&self.db).unwrap(),
            printers: Default::default(),
            metrics: Metrics::new(),
            clock: Arc::new(chrono::Utc::now),
            tickets: TicketIndex::default(),
            snapshots: snapshots.then(|| {
                Arc::new(SqliteSnapshots::open(&self.db).unwrap()) as Arc<dyn SnapshotStore>
            }),
            runtime: None,
        }
    }

    fn sql(&self, sql: &str) {
        rusqlite::Connection::open(&self.db)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }

    fn snapshot_seqs(&self) -> Vec<u64> {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        let mut stmt = conn
            .prepare("SELECT seq FROM snapshots ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|s| s.unwrap() as u64)
            .collect()
    }
}

/// A running site actor.
struct Running {
    handle: SiteHandle,
    task: tokio::task::JoinHandle<()>,
    tickets: TicketIndex,
}

async fn start(config: &Arc<SiteConfig>, deps: SiteDeps) -> Running {
    let tickets = deps.tickets.clone();
    let (handle, task) = site::start(config.clone(), deps).await.unwrap();
    Running {
        handle,
        task,
        tickets,
    }
}

impl Running {
    async fn state(&self) -> SiteState {
        self.handle.read(|s| s.clone()).await.unwrap()
    }

    /// Drops the handle: the actor ends as on shutdown (taking its snapshot).
    async fn stop(self) {
        drop(self.handle);
        self.task.await.unwrap();
    }

    /// Ends the actor where it stands, as a crash would: no snapshot.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn ok(&self, command: Command) {
        self.handle
            .command(command.clone())
            .await
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    }

    async fn issue(&self, procedure: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let token = format!("token-{id}");
        self.ok(Command::Issue(IssueCommand {
            id: TicketId::try_from(id).unwrap(),
            token: token.clone(),
            plan: PlanRequest::Procedures(vec![procedure.parse().unwrap()]),
            priority: false,
            dispenser: None,
            lang: None,
            idempotency_key: None,
        }))
        .await;
        token
    }

    /// Tickets, calls, a transfer, finished visits, a counter paused or opened again. Can be
    /// called again on the same site.
    async fn some_business(&self, tickets: usize) -> Vec<String> {
        let mut tokens = Vec::new();
        for i in 0..tickets {
            let procedure = if i % 3 == 0 { "shoumei" } else { "tennyu" };
            tokens.push(self.issue(procedure).await);
        }
        let welfare = Target::Queue("welfare".parse().unwrap());
        for (c, transfer) in [("1", Some(welfare)), ("2", None), ("6", None)] {
            self.free(c).await;
            self.ok(Command::CallNext {
                counter: counter(c),
            })
            .await;
            self.ok(Command::Start {
                counter: counter(c),
            })
            .await;
            self.ok(Command::Complete {
                counter: counter(c),
                transfer_to: transfer,
            })
            .await;
            // And one more called, left at the counter.
            self.ok(Command::CallNext {
                counter: counter(c),
            })
            .await;
        }
        self.free("8").await;
        self.ok(Command::CallNext {
            counter: counter("8"),
        })
        .await;
        let three = self
            .handle
            .read(|s| s.counter(&counter("3")).unwrap().state)
            .await
            .unwrap();
        let state = if three == CounterState::Open {
            CounterState::Paused
        } else {
            CounterState::Open
        };
        self.ok(Command::SetCounterState {
            counter: counter("3"),
            state,
        })
        .await;
        tokens
    }

    /// Finishes whatever counter `c` holds.
    async fn free(&self, c: &str) {
        let id = counter(c);
        let status = self
            .handle
            .read(move |s| {
                let current = s.counter(&id).unwrap().current.clone()?;
                Some(s.tickets[&current].status)
            })
            .await
            .unwrap();
        if status == Some(TicketStatus::Called) {
            self.ok(Command::Start {
                counter: counter(c),
            })
            .await;
        }
        if status.is_some() {
            self.ok(Command::Complete {
                counter: counter(c),
                transfer_to: None,
            })
            .await;
        }
    }
}

fn counter(c: &str) -> CounterId {
    c.parse().unwrap()
}

/// The state a full replay of the log gives under `config`, with no snapshot store at all.
async fn full_replay(config: &Arc<SiteConfig>, data: &Data) -> SiteState {
    let running = start(config, data.deps(false)).await;
    let state = running.state().await;
    assert_eq!(running.handle.status().snapshot_seq(), 0);
    running.stop().await;
    state
}

// ---------------------------------------------------------------------------------------------
// The store's contract
// ---------------------------------------------------------------------------------------------

/// What every snapshot store must do.
async fn store_conformance(store: &dyn SnapshotStore) {
    let site: SiteId = "chuo".parse().unwrap();
    let other: SiteId = "kita".parse().unwrap();
    let state = SiteState::new(demo());
    let at = |seq: u64| {
        let mut s = SiteSnapshot::take(&state, Some(chrono::Utc::now()));
        s.seq = seq;
        s
    };
    assert_eq!(store.load_latest(&site, u64::MAX).await.unwrap(), None);
    let first = at(10);
    store.save(&site, first.clone()).await.unwrap();
    assert_eq!(
        store.load_latest(&site, u64::MAX).await.unwrap(),
        Some(first.clone()),
        "a snapshot comes back as it was saved"
    );
    assert_eq!(store.load_latest(&site, 9).await.unwrap(), None, "max_seq");
    assert_eq!(
        store.load_latest(&other, u64::MAX).await.unwrap(),
        None,
        "per site"
    );
    // Saving the same seq again replaces it.
    store.save(&site, at(10)).await.unwrap();
    for seq in [20, 30, 40] {
        store.save(&site, at(seq)).await.unwrap();
    }
    store.save(&other, at(5)).await.unwrap();
    let seq = |s: Option<SiteSnapshot>| s.map(|s| s.seq);
    assert_eq!(
        seq(store.load_latest(&site, u64::MAX).await.unwrap()),
        Some(40)
    );
    assert_eq!(seq(store.load_latest(&site, 39).await.unwrap()), Some(30));
    assert_eq!(seq(store.load_latest(&site, 20).await.unwrap()), Some(20));
    assert_eq!(KEEP_SNAPSHOTS, 3);
    assert_eq!(
        seq(store.load_latest(&site, 15).await.unwrap()),
        None,
        "only the newest {KEEP_SNAPSHOTS} are kept"
    );
    assert_eq!(
        seq(store.load_latest(&other, u64::MAX).await.unwrap()),
        Some(5)
    );
    // Another format is not this version's to read.
    let mut newer = at(50);
    newer.format += 1;
    store.save(&site, newer).await.unwrap();
    assert_eq!(
        seq(store.load_latest(&site, u64::MAX).await.unwrap()),
        Some(40)
    );
}

#[tokio::test]
async fn sqlite_snapshot_store_conformance() {
    let data = Data::new();
    store_conformance(&SqliteSnapshots::open(&data.db).unwrap()).await;
}

#[path = "../../tests/common/redis.rs"]
mod test_redis;

/// The same contract for the snapshots kept in Redis (`REDIS_URL` or a `redis-server` of the
/// test's own), under a key prefix of the test's own.
#[tokio::test]
async fn redis_snapshot_store_conformance() {
    let Some(redis) = test_redis::TestRedis::get("redis_snapshot_store_conformance") else {
        return;
    };
    let log = madoguchi::log::RedisLog::connect(&redis.url, &test_redis::prefix("snapshots"))
        .await
        .unwrap();
    store_conformance(&log.snapshots(std::time::Duration::from_secs(3600))).await;
}

// ---------------------------------------------------------------------------------------------
// Site actors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stopped_site_starts_from_its_snapshot_and_replays_only_the_rest() {
    let data = Data::new();
    let config = demo();
    let first = start(&config, data.deps(true)).await;
    assert_eq!(
        first.handle.status().snapshot_seq(),
        0,
        "nothing to start from"
    );
    let tokens = first.some_business(12).await;
    let stopped = first.state().await;
    first.stop().await;
    assert_eq!(
        data.snapshot_seqs(),
        vec![stopped.seq],
        "a snapshot at shutdown"
    );

    // Started from the snapshot: nothing to replay, the same state, the phone tokens known.
    let second = start(&config, data.deps(true)).await;
    assert_eq!(second.handle.status().snapshot_seq(), stopped.seq);
    assert_eq!(second.handle.status().replayed(), 0);
    assert!(second.state().await == stopped, "restored state differs");
    for token in &tokens {
        assert_eq!(second.tickets.site_of(token), Some(config.id.clone()));
    }
    // More business, then a crash: no snapshot of it.
    second.some_business(5).await;
    let crashed = second.state().await;
    second.crash().await;
    assert_eq!(data.snapshot_seqs(), vec![stopped.seq]);

    // Started from the same snapshot, replaying what followed it.
    let third = start(&config, data.deps(true)).await;
    assert_eq!(third.handle.status().snapshot_seq(), stopped.seq);
    assert_eq!(third.handle.status().replayed(), crashed.seq - stopped.seq);
    assert!(third.state().await == crashed, "snapshot + rest differs");
    third.stop().await;
    assert_eq!(data.snapshot_seqs(), vec![stopped.seq, crashed.seq]);

    assert!(
        full_replay(&config, &data).await == crashed,
        "full replay differs"
    );
}

#[tokio::test]
async fn a_changed_configuration_means_a_full_replay() {
    let data = Data::new();
    let before = demo();
    let running = start(&before, data.deps(true)).await;
    running.some_business(8).await;
    let seq = running.state().await.seq;
    running.stop().await;
    assert_eq!(data.snapshot_seqs(), vec![seq]);

    // Counter 10 now starts open: the snapshot (taken with it closed) does not fit.
    let after = counter_10_open();
    let running = start(&after, data.deps(true)).await;
    assert_eq!(running.handle.status().snapshot_seq(), 0, "full replay");
    assert_eq!(running.handle.status().replayed(), seq);
    let state = running.state().await;
    assert_eq!(
        state.counter(&"10".parse().unwrap()).unwrap().state,
        CounterState::Open
    );
    running.stop().await;
    assert!(full_replay(&after, &data).await == state);

    // The snapshot taken at that stop fits the new configuration.
    let running = start(&after, data.deps(true)).await;
    assert_eq!(running.handle.status().snapshot_seq(), seq);
    assert!(running.state().await == state);
    running.stop().await;
    // And the old configuration no longer fits it.
    let running = start(&before, data.deps(true)).await;
    assert_eq!(running.handle.status().snapshot_seq(), 0);
    running.stop().await;
}

#[tokio::test]
async fn a_snapshot_ahead_of_the_projections_is_not_used() {
    let data = Data::new();
    let config = demo();
    let running = start(&config, data.deps(true)).await;
    running.some_business(8).await;
    let state = running.state().await;
    running.stop().await;
    assert_eq!(data.snapshot_seqs(), vec![state.seq]);
    // The visit records of the last 12 events are not written, as if that write had failed:
    // the snapshot is ahead of the checkpoint.
    let checkpoint = state.seq - 12;
    data.sql(&format!(
        "UPDATE projection_checkpoints SET seq = {checkpoint} WHERE site = 'chuo'; DELETE FROM visits;"
    ));
    let running = start(&config, data.deps(true)).await;
    assert_eq!(running.handle.status().snapshot_seq(), 0, "full replay");
    assert!(running.state().await == state);
    running.stop().await;

    // The replay wrote the visits those events ended, and moved the checkpoint.
    let log = SqliteLog::open(&data.db).unwrap();
    let mut replay = SiteState::new(config.clone());
    let mut expected = BTreeSet::new();
    for e in log.read(&config.id, 0, 100_000).await.unwrap() {
        let ended = replay.apply(&e.event);
        if e.seq > checkpoint {
            expected.extend(ended.iter().map(|t| t.id.to_string()));
        }
    }
    assert!(
        !expected.is_empty(),
        "the test needs visits ended after the checkpoint"
    );
    let conn = rusqlite::Connection::open(&data.db).unwrap();
    let written: BTreeSet<String> = conn
        .prepare("SELECT ticket_id FROM visits")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(written, expected);
    let moved: i64 = conn
        .query_row(
            "SELECT seq FROM projection_checkpoints WHERE site = 'chuo'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(moved as u64, state.seq);
}

#[tokio::test]
async fn a_damaged_snapshot_means_a_full_replay() {
    let data = Data::new();
    let config = demo();
    let running = start(&config, data.deps(true)).await;
    running.some_business(6).await;
    let state = running.state().await;
    running.stop().await;
    data.sql("UPDATE snapshots SET body = '{\"format\": 1, \"seq\": '");
    let running = start(&config, data.deps(true)).await;
    assert_eq!(running.handle.status().snapshot_seq(), 0);
    assert!(running.state().await == state);
    running.stop().await;
}

#[tokio::test]
async fn a_snapshot_of_another_log_is_not_used() {
    let data = Data::new();
    let config = demo();
    let running = start(&config, data.deps(true)).await;
    running.some_business(6).await;
    let state = running.state().await;
    running.stop().await;
    // The snapshot's last event is not the log's (another file's snapshot, a restored log).
    data.sql("UPDATE snapshots SET body = json_set(body, '$.last_at', '2020-01-01T00:00:00Z');");
    let running = start(&config, data.deps(true)).await;
    assert_eq!(running.handle.status().snapshot_seq(), 0);
    assert!(running.state().await == state);
    running.stop().await;
}

/// The generator writes a log the server replays; a long replay is followed by a snapshot, so
/// the next start replays nothing.
#[tokio::test]
async fn a_generated_log_is_replayed_once_then_started_from_a_snapshot() {
    let data = Data::new();
    let config = parse(&demo_text());
    let log = SqliteLog::open(&data.db).unwrap();
    let store = ProjectionStore::open(&data.db).unwrap();
    let options = madoguchi::generate::Options {
        days: 6,
        visitors_per_day: 400,
        seed: 7,
    };
    let report = madoguchi::generate::generate(&config, &log, &store, &options, chrono::Utc::now())
        .await
        .unwrap();
    let site = chuo(&config);
    assert_eq!(log.last_seq(&site.id).await.unwrap(), report.events);
    assert_eq!(store.checkpoint("chuo").await.unwrap(), report.events);
    assert!(report.events > site::SNAPSHOT_EVERY, "{report:?}");
    // 400 on a mean day; Thursday, the quietest, has 320.
    assert!(report.tickets >= 6 * 310, "{report:?}");
    // Generating again into the same log is refused.
    assert!(
        madoguchi::generate::generate(&config, &log, &store, &options, chrono::Utc::now())
            .await
            .is_err()
    );

    let running = start(&site, data.deps(true)).await;
    assert_eq!(running.handle.status().snapshot_seq(), 0);
    assert_eq!(running.handle.status().replayed(), report.events);
    // Today begins now (the generated days end yesterday), whether or not the actor's tick has
    // come yet.
    running.ok(Command::StartDay).await;
    let state = running.state().await;
    // The snapshot after the replay is written in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while data.snapshot_seqs().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot after a long replay"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A crash: the snapshot after the replay is all there is.
    running.crash().await;
    let running = start(&site, data.deps(true)).await;
    assert!(running.handle.status().snapshot_seq() >= report.events);
    assert!(running.state().await == state);
    running.stop().await;
}
