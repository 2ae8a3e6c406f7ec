//! Reliability on the real binary: a failed projection write loses nothing, and a site actor
//! that fails is rebuilt from the log while the server keeps serving.

mod common;

use std::time::Duration;

use common::*;
use rusqlite::Connection;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn db(server: &Server) -> Connection {
    let conn = Connection::open(server.data.join("madoguchi.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// Makes every insert of a print job fail while `fault.on = 1`, as a full disk or a bug would.
fn inject_job_write_failure(conn: &Connection) {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS fault (on_ INTEGER NOT NULL);
         DELETE FROM fault; INSERT INTO fault VALUES (1);
         CREATE TRIGGER IF NOT EXISTS fail_print_jobs BEFORE INSERT ON print_jobs
         WHEN (SELECT on_ FROM fault) = 1 BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
    )
    .unwrap();
}

fn heal(conn: &Connection) {
    conn.execute("UPDATE fault SET on_ = 0", []).unwrap();
}

fn jobs_for(conn: &Connection, ticket_ids: &[String]) -> usize {
    ticket_ids
        .iter()
        .map(|id| {
            conn.query_row("SELECT COUNT(*) FROM print_jobs WHERE id = ?1", [id], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap() as usize
        })
        .sum()
}

async fn readyz(server: &Server) -> (u16, Value) {
    server.get("/readyz", None).await
}

async fn issue_at_kiosk(server: &Server) -> String {
    let ticket = server
        .issue(json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"}))
        .await;
    ticket["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_failed_projection_write_is_retried_and_nothing_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let conn = db(&server);
    inject_job_write_failure(&conn);

    // Both tickets are in the log (201) while their print jobs cannot be written.
    let t1 = issue_at_kiosk(&server).await;
    let t2 = issue_at_kiosk(&server).await;
    // The projection writer retries on its own; meanwhile the site is ready but degraded.
    let ready = eventually("the projections to report lagging", WAIT, || async {
        let (status, ready) = readyz(&server).await;
        assert_eq!(status, 200, "the log is fine: still ready, {ready}");
        (ready["sites"]["chuo"]["projections"] == "lagging").then_some(ready)
    })
    .await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(
        ready["sites"]["chuo"]["projection_lag_events"].as_u64() >= Some(1),
        "{ready}"
    );
    // Commands go on while the write fails, and their jobs wait behind T1's.
    let (status, called) = server.counter("1", "call-next", None).await;
    assert!(matches!(status, 200 | 204), "{status} {called}");
    let t3 = issue_at_kiosk(&server).await;
    assert_eq!(jobs_for(&conn, &[t1.clone(), t2.clone(), t3.clone()]), 0);

    // The write succeeds on a retry, T1's job included: the checkpoint never skipped it.
    heal(&conn);
    eventually("the projections to catch up", WAIT, || async {
        let (_, ready) = readyz(&server).await;
        (ready["status"] == "ready").then_some(())
    })
    .await;
    assert_eq!(jobs_for(&conn, &[t1, t2, t3]), 3);
    let board = server.board().await;
    let checkpoint: i64 = conn
        .query_row(
            "SELECT seq FROM projection_checkpoints WHERE site = 'chuo'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(checkpoint as u64, board["seq"].as_u64().unwrap());
}

#[tokio::test]
async fn events_not_projected_before_a_crash_are_projected_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    let conn = db(&server);
    let t1 = issue_at_kiosk(&server).await;
    inject_job_write_failure(&conn);
    let t2 = issue_at_kiosk(&server).await;
    server.kill9();
    heal(&conn);
    drop(conn);
    let server = Server::start_at(&data, &repo_path("config/demo.toml"), server.addr).await;
    let conn = db(&server);
    assert_eq!(jobs_for(&conn, &[t1, t2]), 2);
    let (_, ready) = readyz(&server).await;
    assert_eq!(ready["status"], "ready", "{ready}");
}

#[tokio::test]
async fn a_failed_site_actor_is_rebuilt_and_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_wrapped(
        &dir.path().join("data"),
        &repo_path("config/demo.toml"),
        &["env", "MADOGUCHI_FAULT_PANIC_ON_CALL=6"],
    )
    .await;
    let first = server.issue(json!({"procedures": ["shoumei"]})).await;
    let second = server.issue(json!({"procedures": ["shoumei"]})).await;

    // The call that hits the fault fails with 503 and a hint to retry, not a hang.
    let response = server
        .http
        .post(server.url("/api/v1/sites/chuo/counters/6/call-next"))
        .bearer_auth(COUNTER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));

    let ready = eventually("the site to be rebuilt", WAIT, || async {
        let (status, ready) = readyz(&server).await;
        (status == 200
            && ready["sites"]["chuo"]["restarts"] == 1
            && ready["sites"]["chuo"]["actor"] == "running")
            .then_some(ready)
    })
    .await;
    assert_eq!(ready["status"], "ready", "{ready}");
    // Rebuilt from the log: both tickets still wait, in order, and the call now works.
    let (status, reply) = server.counter("6", "call-next", None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ticket"]["number"], first["number"]);
    let (_, view) = server
        .get(
            &format!("/api/v1/tickets/{}", second["token"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(view["ticket"]["position"], 1, "{view}");
    let metrics = server.get("/metrics", None).await.1;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("madoguchi_site_restarts_total{site=\"chuo\"} 1"),
        "{metrics}"
    );
    assert!(server.output().contains("the site actor failed"));
}

/// An event stamped a month ahead (by a clock that was wrong, then corrected) neither starts a new
/// business day nor freezes later event times at that instant.
#[tokio::test]
async fn an_event_from_a_wrong_clock_does_not_move_the_day_or_freeze_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(server.issue(json!({"procedures": ["shoumei"]})).await);
    }
    server.kill9();
    let conn = Connection::open(data.join("madoguchi.db")).unwrap();
    let seq: i64 = conn
        .query_row("SELECT MAX(seq) FROM events WHERE site = 'chuo'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let future = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let body =
        json!({"type": "counter_state_changed", "counter": "10", "state": "open", "at": future});
    conn.execute(
        "INSERT INTO events (site, seq, at, kind, body) VALUES ('chuo', ?1, ?2, 'counter_state_changed', ?3)",
        rusqlite::params![seq + 1, future, body.to_string()],
    )
    .unwrap();
    drop(conn);

    let server = Server::start_at(&data, &repo_path("config/demo.toml"), server.addr).await;
    let before = chrono::Utc::now();
    let next = server.issue(json!({"procedures": ["shoumei"]})).await;
    let issued_at: chrono::DateTime<chrono::Utc> =
        next["issued_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (issued_at - before).num_seconds().abs() < 60,
        "stamped {issued_at}, the clock says {before}"
    );
    // Same business day: the earlier tickets still wait and the numbers go on.
    for t in &waiting {
        let (_, view) = server
            .get(
                &format!("/api/v1/tickets/{}", t["token"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(view["ticket"]["status"], "waiting", "{view}");
    }
    assert_ne!(next["number"], waiting[0]["number"]);
    assert_eq!(next["position"], 4, "{next}");
}

/// SIGTERM with one live client that stopped reading: the others get 1001 at once, and the
/// server exits within its documented limit instead of waiting for the stuck send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_client_that_stopped_reading() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    // A long send limit: only shutdown can end the stuck client here.
    let config = demo_config_with(
        dir.path(),
        "slow.toml",
        "[limits]\nlive_send_timeout_s = 300\n",
    );
    let mut server = Server::start_with(&dir.path().join("data"), &config).await;
    let url = server.ws_url("/api/v1/sites/chuo/live");
    let (mut reader, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (_stuck, _) = tokio_tungstenite::client_async(&url, stream).await.unwrap();
    // The reader keeps reading; events pile up in front of the stuck client until its sends
    // block (2,000 board-sized messages are far more than the socket buffers hold).
    let read = tokio::spawn(async move {
        while let Some(Ok(message)) = reader.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    });
    for i in 0..1_000 {
        for action in ["pause", "open"] {
            let (status, _) = server.counter(&(1 + i % 4).to_string(), action, None).await;
            assert_eq!(status, 200);
        }
    }
    let started = std::time::Instant::now();
    let status = server.terminate().await;
    let took = started.elapsed();
    assert!(status.success(), "{}", server.output());
    // The stuck client gets one second to take its close frame (before: about 5 s, one site
    // actor after another waiting on its handle).
    println!("stopped in {took:?}");
    assert!(took < Duration::from_secs(4), "stopping took {took:?}");
    let code = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the reading client was told")
        .unwrap();
    assert_eq!(code, Some(1001));
}
