//! Snapshots on the real binary: a server stopped with SIGTERM writes a snapshot of its site, and
//! the next start loads it and replays only what follows; after a crash (SIGKILL, no snapshot)
//! the start replays the events since that snapshot. Each time the state after the restart is
//! the state before: board, open tickets, phone tokens.

mod common;

use common::*;
use serde_json::{json, Value};

/// The server's output without colours.
fn plain(output: &str) -> String {
    let mut out = String::with_capacity(output.len());
    let mut chars = output.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @–~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The lines of `output` that say `message`.
fn lines<'a>(output: &'a str, message: &str) -> Vec<&'a str> {
    output.lines().filter(|l| l.contains(message)).collect()
}

/// The number after `name=` in a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let key = format!(" {name}=");
    let rest = &line[line.find(&key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What must survive a restart: the board (with its seq) and the open tickets.
async fn floor(server: &Server) -> (Value, Value) {
    let board = server.board().await;
    let (status, tickets) = server
        .get("/api/v1/sites/chuo/tickets", Some(COUNTER))
        .await;
    assert_eq!(status, 200, "{tickets}");
    (board, tickets)
}

fn seq(floor: &(Value, Value)) -> u64 {
    floor.0["seq"].as_u64().expect("the board's seq")
}

#[tokio::test]
async fn sigterm_takes_a_snapshot_and_the_next_start_replays_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    let mut tokens = Vec::new();
    for i in 0..12 {
        let body = if i % 3 == 0 {
            json!({"procedures": ["shoumei"]})
        } else {
            json!({"procedures": ["tennyu"], "priority": i == 4})
        };
        tokens.push(
            server.issue(body).await["token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for c in ["1", "2", "6"] {
        assert_eq!(server.counter(c, "call-next", None).await.0, 200);
    }
    server.counter("1", "start", None).await;
    server.counter("3", "pause", None).await;
    let before = floor(&server).await;
    let waiting = before.1["tickets"].as_array().unwrap().len();
    assert!(waiting >= 9, "{}", before.1);

    // SIGTERM: the site's snapshot is written before the process ends.
    assert!(server.terminate().await.success());
    let out = plain(&server.output());
    let taken = lines(&out, "snapshot taken");
    assert!(
        taken
            .iter()
            .any(|l| l.contains("why=\"shutdown\"") && field(l, "seq") == Some(seq(&before))),
        "no snapshot at shutdown:\n{out}"
    );

    // The next start loads it and replays nothing.
    let mut server = Server::start(&data).await;
    let out = plain(&server.output());
    let restored = lines(&out, "site state restored from a snapshot");
    assert_eq!(restored.len(), 1, "{out}");
    assert_eq!(
        field(restored[0], "snapshot_seq"),
        Some(seq(&before)),
        "{out}"
    );
    assert_eq!(field(restored[0], "replayed"), Some(0), "{out}");
    assert!(
        lines(&out, "rebuilt from the event log").is_empty(),
        "{out}"
    );
    let now = floor(&server).await;
    assert_eq!(
        (without_estimates(now.0), without_estimates(now.1)),
        (
            without_estimates(before.0.clone()),
            without_estimates(before.1.clone())
        ),
        "the state after the restart (estimates look ahead from when they are made)"
    );
    for token in &tokens {
        let (status, ticket) = server.get(&format!("/api/v1/tickets/{token}"), None).await;
        assert_eq!(status, 200, "phone lookup after the restart: {ticket}");
    }

    // More business, then a crash: no snapshot of it.
    server.counter("1", "complete", None).await;
    server.counter("2", "start", None).await;
    server
        .issue(json!({"procedures": ["shoumei"], "priority": true}))
        .await;
    server.counter("7", "call-next", None).await;
    let crashed = floor(&server).await;
    assert!(seq(&crashed) > seq(&before));
    server.kill9();

    // The start loads the same snapshot and replays only the events after it.
    let server = Server::start(&data).await;
    let out = plain(&server.output());
    let restored = lines(&out, "site state restored from a snapshot");
    assert_eq!(restored.len(), 1, "{out}");
    assert_eq!(
        field(restored[0], "snapshot_seq"),
        Some(seq(&before)),
        "{out}"
    );
    assert_eq!(
        field(restored[0], "replayed"),
        Some(seq(&crashed) - seq(&before)),
        "{out}"
    );
    let now = floor(&server).await;
    assert_eq!(
        (without_estimates(now.0), without_estimates(now.1)),
        (without_estimates(crashed.0), without_estimates(crashed.1)),
        "the state after the crash"
    );
}
