//! The wait estimate on the real binary: the issue reply, the phone page, the board the lobby
//! shows and the printed ticket carry the same estimate for the same ticket at the same seq,
//! and it takes service already under way into account.

mod common;

use std::time::Duration;

use common::*;
use rusqlite::Connection;
use serde_json::{json, Value};

fn job_estimate(server: &Server, ticket: &str) -> Option<u64> {
    let conn = Connection::open(server.data.join("madoguchi.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let body: Option<String> = conn
        .query_row("SELECT body FROM print_jobs WHERE id = ?1", [ticket], |r| {
            r.get(0)
        })
        .ok();
    let job: Value = serde_json::from_str(&body?).ok()?;
    job["estimated_wait_s"].as_u64()
}

fn queue<'a>(board: &'a Value, id: &str) -> &'a Value {
    board["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn every_view_shows_one_estimate_for_a_ticket_at_one_seq() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    // Someone at each of the counters serving the one-stop line, and a few waiting.
    for _ in 0..12 {
        server.issue(json!({"procedures": ["tennyu"]})).await;
    }
    for c in ["1", "2", "3", "4"] {
        let (status, called) = server.counter(c, "call-next", None).await;
        assert_eq!(status, 200, "{called}");
        let (status, started) = server.counter(c, "start", None).await;
        assert_eq!(status, 200, "{started}");
    }

    let (status, reply) = server
        .post(
            "/api/v1/sites/chuo/tickets",
            Some(DISPENSER),
            Some(json!({"procedures": ["tennyu"], "dispenser": "kiosk-1"})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    let ticket = &reply["ticket"];
    let estimate = ticket["estimated_wait_s"].as_u64().unwrap();
    assert!(
        estimate > 0,
        "eight ahead, more than the free counters: {ticket}"
    );

    let board = server.board().await;
    let token = ticket["token"].as_str().unwrap();
    let (status, phone) = server.get(&format!("/api/v1/tickets/{token}"), None).await;
    assert_eq!(status, 200);
    let again = server.board().await;
    assert_eq!(board["seq"], again["seq"], "nothing happened in between");

    assert_eq!(phone["ticket"]["estimated_wait_s"], estimate, "{phone}");
    assert_eq!(
        queue(&board, "onestop")["estimated_wait_s"],
        estimate,
        "the lobby's line estimate is that of its latest ticket: {board}"
    );
    let id = ticket["id"].as_str().unwrap().to_owned();
    let printed = eventually("the print job", Duration::from_secs(10), || {
        let server = &server;
        let id = id.clone();
        async move { job_estimate(server, &id) }
    })
    .await;
    assert_eq!(printed, estimate, "the printed ticket");

    // After a call the estimate moves, and every view moves with it.
    let (status, _) = server.counter("5", "call-next", None).await;
    assert_eq!(status, 200);
    let board = server.board().await;
    let (_, phone) = server.get(&format!("/api/v1/tickets/{token}"), None).await;
    assert_eq!(
        queue(&board, "onestop")["estimated_wait_s"],
        phone["ticket"]["estimated_wait_s"],
        "{board} {phone}"
    );
    assert_eq!(
        phone["ticket"]["position"],
        ticket["position"].as_u64().unwrap() - 1
    );
}

#[tokio::test]
async fn the_estimate_counts_counters_that_are_free_now() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    // Four waiting for the one-stop line while the nine counters serving it stand free: the
    // first of them is called at once, so the estimate is far below four services.
    let mut last = Value::Null;
    for _ in 0..4 {
        last = server.issue(json!({"procedures": ["tennyu"]})).await;
    }
    let naive = 3 * 20 * 60 / 9;
    let estimate = last["estimated_wait_s"].as_u64().unwrap();
    assert!(
        estimate < naive,
        "free counters call at once: {estimate} s (the planned service of those ahead over the counters: {naive} s)"
    );
}
