//! Group commit on the real binary: commands queued while an append is in flight are decided in
//! order and appended together; every 201 is durable (SIGKILL right after a burst loses none),
//! numbers stay unique, and the log holds the decisions in their order.

mod common;

use std::collections::BTreeSet;

use common::*;
use rusqlite::Connection;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_issues_is_durable_unique_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    let server_ref = &server;
    let burst = futures_util::future::join_all((0..64).map(|i| async move {
        let body = if i % 4 == 0 {
            json!({"procedures": ["shoumei"]})
        } else {
            json!({"procedures": ["tennyu"]})
        };
        server_ref
            .post("/api/v1/sites/chuo/tickets", Some(DISPENSER), Some(body))
            .await
    }))
    .await;
    let acknowledged: Vec<Value> = burst
        .into_iter()
        .map(|(status, reply)| {
            assert_eq!(status, 201, "{reply}");
            reply["ticket"].clone()
        })
        .collect();
    let metrics = server.metrics().await;
    let sum: f64 = metrics
        .lines()
        .find(|l| l.starts_with("madoguchi_group_commit_commands_sum{site=\"chuo\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("the group commit histogram");
    assert!(
        sum >= 64.0,
        "every command went through a group append: {sum}"
    );
    server.kill9();

    // Every acknowledged ticket is in the log after the kill, under its number.
    let conn = Connection::open(data.join("madoguchi.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT json_extract(body, '$.ticket'), json_extract(body, '$.number'),
                    json_extract(body, '$.queue'), json_extract(body, '$.value')
             FROM events WHERE site = 'chuo' AND kind = 'ticket_issued' ORDER BY seq",
        )
        .unwrap();
    let logged: Vec<(String, String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for t in &acknowledged {
        let id = t["id"].as_str().unwrap();
        let row = logged
            .iter()
            .find(|(ticket, ..)| ticket == id)
            .unwrap_or_else(|| panic!("acknowledged ticket {id} lost"));
        assert_eq!(row.1, t["number"].as_str().unwrap());
    }
    let numbers: BTreeSet<&String> = logged.iter().map(|(_, n, ..)| n).collect();
    assert_eq!(numbers.len(), logged.len(), "numbers are unique");
    // Decided in order: within a queue, the log's order is the numbers' order.
    for queue in ["onestop", "certificates"] {
        let values: Vec<i64> = logged
            .iter()
            .filter(|(_, _, q, _)| q == queue)
            .map(|(.., v)| *v)
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "{queue}: {values:?}"
        );
    }

    // And the restarted server serves them.
    let server = Server::start(&data).await;
    let (status, list) = server
        .get("/api/v1/sites/chuo/tickets", Some(COUNTER))
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["tickets"].as_array().unwrap().len(), 64, "{list}");
}
