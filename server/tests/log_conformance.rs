//! Event log conformance: one suite, run against every backend. A backend passes when appends
//! are all-or-nothing, reads return what was appended in order, a stale expected seq is refused,
//! and concurrent appenders at the same seq never both win.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use madoguchi::core::{CounterId, CounterState, Event, SiteId};
use madoguchi::log::{EventLog, LogError, SqliteLog};

#[path = "../../tests/common/redis.rs"]
mod test_redis;

fn site(name: &str) -> SiteId {
    name.parse().unwrap()
}

/// Distinct, recognisable events: counter `n` opened at second `n`.
fn events(from: u32, count: u32) -> Vec<Event> {
    (from..from + count)
        .map(|n| Event::CounterStateChanged {
            counter: CounterId::try_from(format!("c{n}")).unwrap(),
            state: CounterState::Open,
            at: Utc.timestamp_opt(1_700_000_000 + i64::from(n), 0).unwrap(),
            by: None,
        })
        .collect()
}

/// The suite. `open` returns a new handle on one shared store each time it is called, so two
/// handles behave like two server instances.
mod suite {
    use super::*;

    pub(super) async fn append_and_read(log: &dyn EventLog) {
        let a = site("site-a");
        assert_eq!(log.last_seq(&a).await.unwrap(), 0);
        assert_eq!(log.append(&a, 0, &events(1, 3)).await.unwrap(), 3);
        assert_eq!(log.append(&a, 3, &events(4, 2)).await.unwrap(), 5);
        let all = log.read(&a, 0, 100).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(
            all.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
            events(1, 5)
        );
        let page = log.read(&a, 2, 2).await.unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
        assert!(log.read(&a, 5, 10).await.unwrap().is_empty());
        assert_eq!(log.last_seq(&a).await.unwrap(), 5);
        // Sites are independent.
        let b = site("site-b");
        assert_eq!(log.last_seq(&b).await.unwrap(), 0);
        assert_eq!(log.append(&b, 0, &events(100, 1)).await.unwrap(), 1);
        assert_eq!(log.last_seq(&a).await.unwrap(), 5);
        // An empty append at the right seq changes nothing.
        assert_eq!(log.append(&a, 5, &[]).await.unwrap(), 5);
        log.ping().await.unwrap();
    }

    pub(super) async fn stale_expected_seq_conflicts(log: &dyn EventLog) {
        let s = site("stale");
        log.append(&s, 0, &events(1, 2)).await.unwrap();
        for expected in [0, 1, 3, 10] {
            match log.append(&s, expected, &events(50, 3)).await {
                Err(LogError::Conflict {
                    expected: e,
                    actual,
                }) => {
                    assert_eq!(e, expected);
                    assert_eq!(actual, 2);
                }
                other => panic!("expected a conflict at {expected}, got {other:?}"),
            }
        }
        // Nothing of the refused appends was written.
        let all = log.read(&s, 0, 100).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all.into_iter().map(|e| e.event).collect::<Vec<_>>(),
            events(1, 2)
        );
    }

    /// Several writers, each on its own handle, race to append at the same seq, round after
    /// round. Exactly one wins each round and the log stays gapless.
    pub(super) async fn concurrent_appenders_never_both_win(handles: Vec<Arc<dyn EventLog>>) {
        let s = site("race");
        const ROUNDS: u32 = 25;
        for round in 0..ROUNDS {
            let expected = u64::from(round);
            let mut tasks = Vec::new();
            for (i, log) in handles.iter().enumerate() {
                let log = log.clone();
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let batch = events(round * 100 + i as u32, 1);
                    (i, log.append(&s, expected, &batch).await)
                }));
            }
            let mut winners = Vec::new();
            for t in tasks {
                let (i, result) = t.await.unwrap();
                match result {
                    Ok(seq) => {
                        assert_eq!(seq, expected + 1);
                        winners.push(i);
                    }
                    Err(LogError::Conflict { .. }) => {}
                    Err(e) => panic!("round {round}: writer {i} failed: {e}"),
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
            // The stored event is the winner's.
            let stored = handles[0].read(&s, expected, 1).await.unwrap();
            assert_eq!(
                stored[0].event,
                events(round * 100 + winners[0] as u32, 1)[0]
            );
        }
        let all = handles[0].read(&s, 0, 1000).await.unwrap();
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=u64::from(ROUNDS)).collect::<Vec<_>>());
    }

    /// Many sites appending at once through one handle, two writers racing per site each round:
    /// one append per site and round wins, and each site's log holds exactly its winners' events
    /// (a backend that commits several sites' appends together must keep them apart).
    pub(super) async fn many_sites_append_at_once(log: Arc<dyn EventLog>) {
        const SITES: u32 = 40;
        const ROUNDS: u32 = 10;
        let mut won: Vec<Vec<Event>> = vec![Vec::new(); SITES as usize];
        for round in 0..ROUNDS {
            let mut tasks = Vec::new();
            for n in 0..SITES {
                for racer in 0..2u32 {
                    let log = log.clone();
                    let s = site(&format!("many-{n}"));
                    let batch = events(n * 10_000 + round * 10 + racer, 1 + racer);
                    tasks.push(tokio::spawn(async move {
                        let result = log.append(&s, won_seq(round), &batch).await;
                        (n, batch, result)
                    }));
                }
            }
            let mut winners = vec![0; SITES as usize];
            for t in tasks {
                let (n, batch, result) = t.await.unwrap();
                match result {
                    Ok(_) => {
                        winners[n as usize] += 1;
                        won[n as usize].extend(batch);
                    }
                    Err(LogError::Conflict { .. }) => {}
                    Err(e) => panic!("round {round}: site {n} failed: {e}"),
                }
            }
            assert!(
                winners.iter().all(|w| *w == 1),
                "round {round}: {winners:?}"
            );
            // Every site is at the same seq again before the next round.
            for n in 0..SITES {
                let s = site(&format!("many-{n}"));
                let last = log.last_seq(&s).await.unwrap();
                let want = won[n as usize].len() as u64;
                assert_eq!(last, want, "site {n} after round {round}");
                // Pad to a common seq so the next round's racers expect the same one.
                if last < won_seq(round + 1) {
                    let pad = events(n * 10_000 + 5_000 + round, 1);
                    log.append(&s, last, &pad).await.unwrap();
                    won[n as usize].extend(pad);
                }
            }
        }
        for n in 0..SITES {
            let s = site(&format!("many-{n}"));
            let all = log.read(&s, 0, 1_000).await.unwrap();
            assert_eq!(
                all.iter().map(|e| e.seq).collect::<Vec<_>>(),
                (1..=all.len() as u64).collect::<Vec<_>>()
            );
            assert_eq!(
                all.into_iter().map(|e| e.event).collect::<Vec<_>>(),
                won[n as usize],
                "site {n}"
            );
        }
    }

    /// The seq every site is at when `round` starts: each round adds two events (one winner's
    /// one or two, padded to two).
    fn won_seq(round: u32) -> u64 {
        u64::from(round) * 2
    }

    pub(super) async fn large_reads_page_in_order(log: &dyn EventLog) {
        let s = site("bulk");
        let mut seq = 0;
        for chunk in 0..20 {
            seq = log.append(&s, seq, &events(chunk * 50, 50)).await.unwrap();
        }
        assert_eq!(seq, 1000);
        let mut after = 0;
        let mut seen = 0;
        loop {
            let page = log.read(&s, after, 128).await.unwrap();
            if page.is_empty() {
                break;
            }
            for e in &page {
                assert_eq!(e.seq, after + 1);
                after = e.seq;
                seen += 1;
            }
        }
        assert_eq!(seen, 1000);
    }
}

mod sqlite {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> Arc<dyn EventLog> {
        Arc::new(SqliteLog::open(&dir.path().join("log.db")).unwrap())
    }

    #[tokio::test]
    async fn append_and_read() {
        let dir = tempfile::tempdir().unwrap();
        suite::append_and_read(open(&dir).as_ref()).await;
    }

    #[tokio::test]
    async fn stale_expected_seq_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        suite::stale_expected_seq_conflicts(open(&dir).as_ref()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_sites_append_at_once() {
        let dir = tempfile::tempdir().unwrap();
        suite::many_sites_append_at_once(open(&dir)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appenders_never_both_win() {
        let dir = tempfile::tempdir().unwrap();
        // Four connections to one file, as four server processes would have.
        let handles = (0..4).map(|_| open(&dir)).collect();
        suite::concurrent_appenders_never_both_win(handles).await;
    }

    #[tokio::test]
    async fn large_reads_page_in_order() {
        let dir = tempfile::tempdir().unwrap();
        suite::large_reads_page_in_order(open(&dir).as_ref()).await;
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = site("reopen");
        open(&dir).append(&s, 0, &events(1, 3)).await.unwrap();
        let again = open(&dir);
        assert_eq!(again.last_seq(&s).await.unwrap(), 3);
        assert_eq!(again.read(&s, 0, 10).await.unwrap().len(), 3);
    }
}

/// The same suite against a real Redis (`REDIS_URL`, or a `redis-server` the test starts), each
/// test under a key prefix of its own; several handles are several connections, as several
/// server instances would have.
mod redis {
    use super::*;
    use madoguchi::log::RedisLog;

    use super::test_redis::{prefix, TestRedis};

    async fn open(redis: &TestRedis, prefix: &str) -> Arc<dyn EventLog> {
        Arc::new(RedisLog::connect(&redis.url, prefix).await.unwrap())
    }

    #[tokio::test]
    async fn append_and_read() {
        let Some(redis) = TestRedis::get("append_and_read") else {
            return;
        };
        let log = open(&redis, &prefix("append_and_read")).await;
        suite::append_and_read(log.as_ref()).await;
    }

    #[tokio::test]
    async fn stale_expected_seq_conflicts() {
        let Some(redis) = TestRedis::get("stale_expected_seq_conflicts") else {
            return;
        };
        let log = open(&redis, &prefix("stale")).await;
        suite::stale_expected_seq_conflicts(log.as_ref()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_sites_append_at_once() {
        let Some(redis) = TestRedis::get("many_sites_append_at_once") else {
            return;
        };
        let log = open(&redis, &prefix("many")).await;
        suite::many_sites_append_at_once(log).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appenders_never_both_win() {
        let Some(redis) = TestRedis::get("concurrent_appenders_never_both_win") else {
            return;
        };
        let prefix = prefix("race");
        let mut handles = Vec::new();
        for _ in 0..4 {
            handles.push(open(&redis, &prefix).await);
        }
        suite::concurrent_appenders_never_both_win(handles).await;
    }

    #[tokio::test]
    async fn large_reads_page_in_order() {
        let Some(redis) = TestRedis::get("large_reads_page_in_order") else {
            return;
        };
        let log = open(&redis, &prefix("bulk")).await;
        suite::large_reads_page_in_order(log.as_ref()).await;
    }

    /// Key prefixes keep deployments apart on one Redis.
    #[tokio::test]
    async fn prefixes_keep_deployments_apart() {
        let Some(redis) = TestRedis::get("prefixes_keep_deployments_apart") else {
            return;
        };
        let (a, b) = (
            open(&redis, &prefix("apart-a")).await,
            open(&redis, &prefix("apart-b")).await,
        );
        let s = site("chuo");
        a.append(&s, 0, &events(1, 3)).await.unwrap();
        assert_eq!(b.last_seq(&s).await.unwrap(), 0);
        assert!(b.read(&s, 0, 10).await.unwrap().is_empty());
        assert_eq!(b.append(&s, 0, &events(7, 1)).await.unwrap(), 1);
        assert_eq!(a.last_seq(&s).await.unwrap(), 3);
    }

    /// A follower hears of another handle's appends (and of its own), never of a seq that is
    /// not in the log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn followers_hear_other_writers() {
        let Some(redis) = TestRedis::get("followers_hear_other_writers") else {
            return;
        };
        let prefix = prefix("follow");
        let (writer, reader) = (open(&redis, &prefix).await, open(&redis, &prefix).await);
        let s = site("follow");
        let mut follow = reader.follow(&s).expect("a shared log can be followed");
        let mut seq = 0;
        for round in 0..20u32 {
            seq = writer.append(&s, seq, &events(round * 3, 3)).await.unwrap();
            let heard = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                follow.wait_for(|last| last.seq >= seq),
            )
            .await
            .expect("the follower hears the append")
            .map(|last| *last)
            .unwrap();
            assert_eq!(heard.seq, seq, "round {round}");
            assert!(heard.connected, "round {round}");
            assert_eq!(reader.read(&s, seq - 3, 10).await.unwrap().len(), 3);
        }
    }

    /// Events of a newer format than this version knows are refused, not misread.
    #[tokio::test]
    async fn newer_event_format_is_refused() {
        let Some(redis) = TestRedis::get("newer_event_format_is_refused") else {
            return;
        };
        let prefix = prefix("format");
        let log = open(&redis, &prefix).await;
        let s = site("format");
        log.append(&s, 0, &events(1, 1)).await.unwrap();
        // A newer version's event, written as it would write it.
        let client = ::redis::Client::open(redis.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let newer = madoguchi::log::EVENT_FORMAT + 1;
        let _: () = ::redis::cmd("XADD")
            .arg(format!("{prefix}{{format}}:events"))
            .arg("2-0")
            .arg("v")
            .arg(newer)
            .arg("e")
            .arg(r#"{"kind":"from_the_future"}"#)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = ::redis::cmd("SET")
            .arg(format!("{prefix}{{format}}:seq"))
            .arg(2)
            .query_async(&mut conn)
            .await
            .unwrap();
        match log.read(&s, 0, 10).await {
            Err(LogError::NewerFormat { seq, format, .. }) => {
                assert_eq!((seq, format), (2, newer));
            }
            other => panic!("expected the newer format to be refused, got {other:?}"),
        }
        assert_eq!(log.read(&s, 0, 1).await.unwrap().len(), 1);
    }
}
