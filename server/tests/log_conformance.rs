//! Event log conformance: one suite, run against every backend. A backend passes when appends
//! are all-or-nothing, reads return what was appended in order, a stale expected seq is refused,
//! and concurrent appenders at the same seq never both win.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use madoguchi::core::{CounterId, CounterState, Event, SiteId};
use madoguchi::log::{EventLog, LogError, SqliteLog};

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
