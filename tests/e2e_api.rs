//! End-to-end tests of the real `madoguchi` binary over real sockets: a whole visit with a
//! transfer while a live socket watches, a SIGKILL and restart, bad input, graceful shutdown.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> (String, Value) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a live message within 10 s")
            .expect("socket open")
            .expect("valid frame");
        if let Message::Text(text) = msg {
            let value = serde_json::from_str(&text).expect("live messages are JSON");
            return (text.to_string(), value);
        }
    }
}

fn moving_in(children: bool) -> Value {
    json!({
        "life_event": "moving_in",
        "answers": {"children": children, "kokuho": true, "over_65": false, "over_75": false},
        "dispenser": "kiosk-1",
        "lang": "ja"
    })
}

#[tokio::test]
async fn a_visit_with_a_transfer_seen_live_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/sites/chuo/live"))
        .await
        .unwrap();
    let (_, snapshot) = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    let first_seq = snapshot["seq"].as_u64().unwrap();
    assert!(snapshot["board"]["queues"].is_array());

    // Issue: the reply carries everything the dispenser shows.
    let ticket = server.issue(moving_in(true)).await;
    for field in [
        "id",
        "number",
        "token",
        "queue",
        "procedures",
        "issued_at",
        "position",
        "estimated_wait_s",
    ] {
        assert!(
            ticket.get(field).is_some(),
            "issue reply lacks {field}: {ticket}"
        );
    }
    assert_eq!(ticket["queue"], "onestop");
    assert_eq!(ticket["position"], 1);
    let procedures: Vec<&str> = ticket["procedures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        procedures.contains(&"tennyu")
            && procedures.contains(&"jidou_teate")
            && procedures.contains(&"kodomo_iryou"),
        "{procedures:?}"
    );
    let number = ticket["number"].as_str().unwrap().to_owned();
    let token = ticket["token"].as_str().unwrap().to_owned();

    let (status, phone) = server.get(&format!("/api/v1/tickets/{token}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(phone["ticket"]["status"], "waiting");
    assert_eq!(phone["ticket"]["position"], 1);

    // Counter 1 serves onestop: call, start, transfer to the welfare specialists.
    let (status, called) = server.counter("1", "call-next", None).await;
    assert_eq!(status, 200, "{called}");
    assert_eq!(called["ticket"]["number"], number.as_str());
    assert_eq!(called["ticket"]["status"], "called");
    assert_eq!(called["ticket"]["counter"], "1");

    let (_, phone) = server.get(&format!("/api/v1/tickets/{token}"), None).await;
    assert_eq!(phone["ticket"]["status"], "called");
    assert_eq!(phone["ticket"]["counter"], "1");
    assert!(phone["ticket"].get("token").is_none());

    let (status, started) = server.counter("1", "start", None).await;
    assert_eq!(status, 200);
    assert_eq!(started["ticket"]["status"], "serving");
    let (status, moved) = server
        .counter("1", "complete", Some(json!({"transfer_to": "welfare"})))
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        moved["ticket"]["number"],
        number.as_str(),
        "a transfer keeps the number"
    );
    assert_eq!(moved["ticket"]["status"], "waiting");
    assert_eq!(moved["ticket"]["queue"], "welfare");
    assert_eq!(
        moved["ticket"]["issued_at"], ticket["issued_at"],
        "a transfer keeps the arrival"
    );

    // Counter 1 serves only onestop: nobody for it now.
    let (status, _) = server.counter("1", "call-next", None).await;
    assert_eq!(status, 204);

    // Counter 8 serves welfare first.
    let (status, called) = server.counter("8", "call-next", None).await;
    assert_eq!(status, 200);
    assert_eq!(called["ticket"]["number"], number.as_str());
    server.counter("8", "start", None).await;
    let (status, done) = server.counter("8", "complete", None).await;
    assert_eq!(status, 200);
    assert_eq!(done["ticket"]["status"], "done");

    // The live socket saw every change, one seq at a time, without a token.
    let expected = [
        "ticket_issued",
        "ticket_called",
        "service_started",
        "step_completed",
        "ticket_called",
        "service_started",
        "step_completed",
    ];
    let mut kinds = Vec::new();
    let mut seq = first_seq;
    while kinds.len() < expected.len() {
        let (text, msg) = next_json(&mut ws).await;
        assert_eq!(msg["type"], "event", "{msg}");
        assert_eq!(
            msg["seq"].as_u64().unwrap(),
            seq + 1,
            "seq must grow by one"
        );
        seq += 1;
        assert_eq!(msg["board"]["seq"].as_u64().unwrap(), seq);
        assert!(!text.contains(&token), "a token reached the live feed");
        assert_eq!(msg["event"]["number"], number.as_str());
        kinds.push(msg["event"]["kind"].as_str().unwrap().to_owned());
    }
    assert_eq!(kinds, expected);
    let board = server.board().await;
    assert_eq!(board["seq"].as_u64().unwrap(), seq);
    assert_eq!(board["recent_calls"][0]["number"], number.as_str());
    assert_eq!(board["recent_calls"][0]["counter"], "8");

    // A resync request gets a fresh snapshot at the current seq.
    ws.send(Message::Text(r#"{"type":"resync"}"#.into()))
        .await
        .unwrap();
    let (_, fresh) = next_json(&mut ws).await;
    assert_eq!(fresh["type"], "snapshot");
    assert_eq!(fresh["seq"].as_u64().unwrap(), seq);

    // The visit is on record with its two steps.
    let (status, kpi) = server.get("/api/v1/sites/chuo/kpi", Some(ANALYST)).await;
    assert_eq!(status, 200, "{kpi}");
    assert_eq!(kpi["visits"], 1);
    let stay = kpi["stay_s"]["mean"].as_f64().unwrap();
    let service = kpi["service_s"]["mean"].as_f64().unwrap();
    let wait = kpi["wait_s"]["mean"].as_f64().unwrap();
    assert!(stay > 0.0 && stay >= service + wait - 0.01, "{kpi}");
    let db = server.data.join("madoguchi.db");
    assert_eq!(
        sqlite_count(&db, "SELECT COUNT(*) FROM visits WHERE outcome = 'done'"),
        1
    );
    assert_eq!(
        sqlite_count(&db, "SELECT COUNT(*) FROM visit_steps"),
        2,
        "two steps recorded"
    );
}

/// Counts rows straight from the SQLite file, as an analyst's SQL tool would.
fn sqlite_count(path: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn sigkill_after_50_tickets_loses_nothing_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    let mut numbers = BTreeSet::new();
    let mut onestop = Vec::new();
    for i in 0..50 {
        let body = if i % 3 == 0 {
            json!({"procedures": ["shoumei"]})
        } else {
            moving_in(i % 2 == 0)
        };
        let t = server.issue(body).await;
        let n = t["number"].as_str().unwrap().to_owned();
        if t["queue"] == "onestop" {
            onestop.push(n.parse::<u32>().unwrap());
        }
        assert!(numbers.insert(n), "numbers are unique");
    }
    // Some state beyond issuing: counter 2 is serving, counter 3 paused.
    let (_, serving) = server.counter("2", "call-next", None).await;
    server.counter("2", "start", None).await;
    server.counter("3", "pause", None).await;
    let before = server.board().await;

    server.kill9();
    let server = Server::start(&data).await;

    let after = server.board().await;
    // Estimates look ahead from the moment they are made: time has passed since.
    assert!(after["queues"][0]["estimated_wait_s"].is_u64(), "{after}");
    assert_eq!(
        without_estimates(after.clone()),
        without_estimates(before),
        "the board is rebuilt exactly"
    );
    let (status, list) = server
        .get("/api/v1/sites/chuo/tickets", Some(COUNTER))
        .await;
    assert_eq!(status, 200);
    let listed: BTreeSet<String> = list["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["number"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, numbers, "every ticket survived");
    let counter2 = after["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "2")
        .unwrap();
    assert_eq!(counter2["ticket"]["number"], serving["ticket"]["number"]);
    assert_eq!(counter2["ticket"]["status"], "serving");

    // Numbering continues after the highest number of the queue.
    let next = server.issue(moving_in(false)).await;
    let next_number: u32 = next["number"].as_str().unwrap().parse().unwrap();
    assert_eq!(next_number, onestop.iter().max().unwrap() + 1);
    assert!(!numbers.contains(next["number"].as_str().unwrap()));
}

/// What, method, path, token, body, expected status.
type Case = (
    &'static str,
    Method,
    String,
    Option<&'static str>,
    Option<Value>,
    u16,
);

#[tokio::test]
async fn bad_input_gets_the_right_status_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    server.issue(json!({"procedures": ["shoumei"]})).await;
    let before = server.board().await;
    let tickets = |s: &'static str| format!("/api/v1/sites/{s}/tickets");
    let huge = json!({"procedures": ["shoumei"], "lang": "x".repeat(70 * 1024)});

    let cases: Vec<Case> = vec![
        (
            "unknown site",
            Method::POST,
            tickets("nowhere"),
            Some(DISPENSER),
            Some(json!({"procedures": ["shoumei"]})),
            404,
        ),
        (
            "unknown procedure",
            Method::POST,
            tickets("chuo"),
            Some(DISPENSER),
            Some(json!({"procedures": ["teleport"]})),
            422,
        ),
        (
            "unknown field",
            Method::POST,
            tickets("chuo"),
            Some(DISPENSER),
            Some(json!({"procedures": ["shoumei"], "name": "山田太郎"})),
            422,
        ),
        (
            "oversized body",
            Method::POST,
            tickets("chuo"),
            Some(DISPENSER),
            Some(huge),
            413,
        ),
        (
            "missing token",
            Method::POST,
            tickets("chuo"),
            None,
            Some(json!({"procedures": ["shoumei"]})),
            401,
        ),
        (
            "unknown token",
            Method::POST,
            tickets("chuo"),
            Some("not-a-real-token"),
            Some(json!({"procedures": ["shoumei"]})),
            401,
        ),
        (
            "wrong role to issue",
            Method::POST,
            tickets("chuo"),
            Some(COUNTER),
            Some(json!({"procedures": ["shoumei"]})),
            403,
        ),
        (
            "wrong role to call",
            Method::POST,
            "/api/v1/sites/chuo/counters/1/call-next".into(),
            Some(DISPENSER),
            None,
            403,
        ),
        (
            "analyst cannot call",
            Method::POST,
            "/api/v1/sites/chuo/counters/1/call-next".into(),
            Some(ANALYST),
            None,
            403,
        ),
        (
            "counter cannot rebalance",
            Method::PUT,
            "/api/v1/sites/chuo/counters/1/profile".into(),
            Some(COUNTER),
            Some(json!({"queues": ["welfare"], "strategy": "profile_order"})),
            403,
        ),
        (
            "unknown life event",
            Method::POST,
            tickets("chuo"),
            Some(DISPENSER),
            Some(json!({"life_event": "time_travel", "answers": {}})),
            422,
        ),
        (
            "missing answer",
            Method::POST,
            tickets("chuo"),
            Some(DISPENSER),
            Some(json!({"life_event": "moving_in", "answers": {"children": true}})),
            422,
        ),
        (
            "both plan kinds",
            Method::POST,
            tickets("chuo"),
            Some(DISPENSER),
            Some(json!({"life_event": "moving_in", "procedures": ["shoumei"]})),
            422,
        ),
        (
            "empty plan",
            Method::POST,
            tickets("chuo"),
            Some(DISPENSER),
            Some(json!({"procedures": []})),
            422,
        ),
        (
            "unknown dispenser",
            Method::POST,
            tickets("chuo"),
            Some(DISPENSER),
            Some(json!({"procedures": ["shoumei"], "dispenser": "kiosk-99"})),
            422,
        ),
        (
            "unknown counter",
            Method::POST,
            "/api/v1/sites/chuo/counters/99/call-next".into(),
            Some(COUNTER),
            None,
            404,
        ),
        (
            "unknown action",
            Method::POST,
            "/api/v1/sites/chuo/counters/1/teleport".into(),
            Some(COUNTER),
            None,
            404,
        ),
        (
            "closed counter calls",
            Method::POST,
            "/api/v1/sites/chuo/counters/10/call-next".into(),
            Some(COUNTER),
            None,
            409,
        ),
        (
            "start with nobody called",
            Method::POST,
            "/api/v1/sites/chuo/counters/1/start".into(),
            Some(COUNTER),
            None,
            409,
        ),
        (
            "transfer to nowhere",
            Method::POST,
            "/api/v1/sites/chuo/counters/1/complete".into(),
            Some(COUNTER),
            Some(json!({"transfer_to": "nowhere"})),
            422,
        ),
        (
            "profile with unknown queue",
            Method::PUT,
            "/api/v1/sites/chuo/counters/1/profile".into(),
            Some(FLOOR),
            Some(json!({"queues": ["nowhere"], "strategy": "profile_order"})),
            422,
        ),
        (
            "profile with unknown field",
            Method::PUT,
            "/api/v1/sites/chuo/counters/1/profile".into(),
            Some(FLOOR),
            Some(json!({"queues": ["onestop"], "strategy": "profile_order", "x": 1})),
            422,
        ),
        (
            "call a ticket that does not exist",
            Method::POST,
            "/api/v1/sites/chuo/counters/1/call".into(),
            Some(COUNTER),
            Some(json!({"number": "999"})),
            404,
        ),
        (
            "kpi needs the analyst",
            Method::GET,
            "/api/v1/sites/chuo/kpi".into(),
            Some(COUNTER),
            None,
            403,
        ),
        (
            "kpi with a bad date",
            Method::GET,
            "/api/v1/sites/chuo/kpi?from=yesterday".into(),
            Some(ANALYST),
            None,
            422,
        ),
        (
            "phone page for an unknown token",
            Method::GET,
            "/api/v1/tickets/0123456789abcdef".into(),
            None,
            None,
            404,
        ),
    ];
    for (what, method, path, token, body, expected) in cases {
        let (status, reply) = server.send(method, &path, token, body).await;
        assert_eq!(status, expected, "{what}: {reply}");
        let error = &reply["error"];
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{what}: error shape {reply}"
        );
    }

    // Malformed JSON is a 400.
    let resp = server
        .http
        .post(server.url("/api/v1/sites/chuo/tickets"))
        .bearer_auth(DISPENSER)
        .header("content-type", "application/json")
        .body("{\"procedures\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Nothing changed: same board, same seq, one ticket.
    assert_eq!(server.board().await, before);
    let (_, list) = server.get("/api/v1/sites/chuo/tickets", Some(FLOOR)).await;
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn idempotency_key_returns_the_same_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let send = || {
        server
            .http
            .post(server.url("/api/v1/sites/chuo/tickets"))
            .bearer_auth(DISPENSER)
            .header("Idempotency-Key", "kiosk-1-press-0001")
            .json(&json!({"procedures": ["shoumei"]}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["ticket"]["id"], second["ticket"]["id"]);
    assert_eq!(first["ticket"]["number"], second["ticket"]["number"]);
    // The same key for a different request is refused.
    let other = server
        .http
        .post(server.url("/api/v1/sites/chuo/tickets"))
        .bearer_auth(DISPENSER)
        .header("Idempotency-Key", "kiosk-1-press-0001")
        .json(&json!({"procedures": ["tennyu"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 422);
    let waiting = server.waiting_total().await;
    assert_eq!(waiting, 1);
}

#[tokio::test]
async fn floor_manager_rebalances_and_closes_counters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let (status, reply) = server
        .send(
            Method::PUT,
            "/api/v1/sites/chuo/counters/1/profile",
            Some(FLOOR),
            Some(json!({"queues": ["certificates", "onestop"], "strategy": "longest_wait"})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["counter"]["profile"]["queues"],
        json!(["certificates", "onestop"])
    );
    let (_, catalog) = server.get("/api/v1/sites/chuo/catalog", None).await;
    let c1 = catalog["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "1")
        .unwrap()
        .clone();
    assert_eq!(c1["profile"]["strategy"], "longest_wait");
    for key in [
        "site",
        "procedures",
        "life_events",
        "queues",
        "counters",
        "dispensers",
    ] {
        assert!(catalog.get(key).is_some(), "catalog lacks {key}");
    }
    assert_eq!(catalog["site"]["name"]["ja"], "中央区役所");

    // Now counter 1 calls a certificates ticket.
    let t = server.issue(json!({"procedures": ["shoumei"]})).await;
    let (_, called) = server.counter("1", "call-next", None).await;
    assert_eq!(called["ticket"]["number"], t["number"]);
    // It cannot close while someone is at it; after completing, it can.
    let (status, _) = server
        .post("/api/v1/sites/chuo/counters/1/close", Some(FLOOR), None)
        .await;
    assert_eq!(status, 409);
    server.counter("1", "start", None).await;
    server.counter("1", "complete", None).await;
    let (status, closed) = server
        .post("/api/v1/sites/chuo/counters/1/close", Some(FLOOR), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(closed["counter"]["state"], "closed");
    let board = server.board().await;
    let c1 = board["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "1")
        .unwrap()
        .clone();
    assert_eq!(c1["state"], "closed");
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_closes_live_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data")).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/sites/chuo/live"))
        .await
        .unwrap();
    let (_, snapshot) = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    let status = server.terminate().await;
    assert!(
        status.success(),
        "exit status {status}: {}",
        server.output()
    );
    // The socket ends (a close frame or the end of the stream), it does not hang.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the live socket stayed open after shutdown");
    assert!(server.output().contains("stopped"), "{}", server.output());
}

#[test]
fn check_config_lists_every_error_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"
[[procedures]]
code = "shoumei"
name = { ja = "証明", en = "Certificates" }
service_min = 5

[[sites]]
id = "s1"
name = { ja = "拠点", en = "Site" }

[[sites.queues]]
id = "q"
name = { ja = "列", en = "Queue" }
procedures = ["shoumei", "nonexistent"]

[[sites.counters]]
id = "1"
name = { ja = "1番", en = "1" }
queues = ["q", "ghost"]
"#,
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = bad.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{file}: sites[s1].queues[q].procedures: unknown procedure nonexistent"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}: sites[s1].counters[1].queues: unknown queue ghost"
        )),
        "{stderr}"
    );

    let out = std::process::Command::new(binary())
        .arg("check-config")
        .arg(repo_path("config/demo.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("site chuo (中央区役所"), "{stdout}");
}

#[tokio::test]
async fn the_resident_rates_a_finished_visit_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let ticket = server.issue(json!({"procedures": ["shoumei"]})).await;
    let token = ticket["token"].as_str().unwrap();
    let path = format!("/api/v1/tickets/{token}/satisfaction");
    let rate = |score: i64| server.post(&path, None, Some(json!({"score": score})));
    let (status, reply) = rate(5).await;
    assert_eq!(status, 409, "not before the visit is done: {reply}");
    server.counter("6", "call-next", None).await;
    server.counter("6", "start", None).await;
    server.counter("6", "complete", None).await;
    let (status, reply) = rate(9).await;
    assert_eq!(status, 422, "{reply}");
    let (status, reply) = rate(4).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ticket"]["satisfaction"], 4);
    let (status, _) = rate(5).await;
    assert_eq!(status, 409, "only once");
    // The visit record is written by the projection writer just after the reply.
    let db = server.data.join("madoguchi.db");
    let stored = eventually(
        "the rating in the visit record",
        Duration::from_secs(10),
        || {
            let db = db.clone();
            async move {
                let conn = rusqlite::Connection::open(&db).unwrap();
                conn.query_row(
                    "SELECT satisfaction FROM visits WHERE outcome = 'done'",
                    [],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .unwrap()
            }
        },
    )
    .await;
    assert_eq!(stored, 4);
}

/// `/metrics` passes Prometheus's own linter (`promtool check metrics`).
#[tokio::test]
async fn metrics_pass_promtool() {
    let promtool = std::path::Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but promtool is missing"
        );
        eprintln!("skipping: promtool is not installed (apt-get install prometheus)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    server
        .issue(json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"}))
        .await;
    server.counter("6", "call-next", None).await;
    server.counter("6", "start", None).await;
    server.counter("6", "complete", None).await;
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("madoguchi_stay_seconds_count"), "{text}");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_token_limited_to_one_site_cannot_read_the_city() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = std::fs::read_to_string(repo_path("config/demo.toml")).unwrap();
    config.push_str(
        "\n[[tokens]]\nrole = \"analyst\"\ntoken = \"chuo-only-analyst-0123456789abcdef\"\nsites = [\"chuo\"]\n",
    );
    let path = dir.path().join("limited.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::start_with(&dir.path().join("data"), &path).await;
    let token = Some("chuo-only-analyst-0123456789abcdef");
    let (status, _) = server.get("/api/v1/sites/chuo/kpi", token).await;
    assert_eq!(status, 200);
    let (status, reply) = server.get("/api/v1/sites/all/kpi", token).await;
    assert_eq!(status, 403, "{reply}");
    let (status, _) = server.get("/api/v1/sites/all/visits.csv", token).await;
    assert_eq!(status, 403);
    let (status, _) = server.get("/api/v1/sites/all/kpi", Some(ANALYST)).await;
    assert_eq!(status, 200);
}

/// A token given as its SHA-256 works like the token itself; a counter token bound to counter 3
/// acts there and nowhere else.
#[tokio::test]
async fn hashed_and_counter_bound_tokens() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let token = "counter-three-token-0123456789abcdef";
    let digest: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = demo_config_with(
        dir.path(),
        "bound.toml",
        &format!(
            "[[tokens]]\nrole = \"counter\"\nname = \"counter-3\"\ntoken_sha256 = \"{digest}\"\ncounters = [\"3\"]\n"
        ),
    );
    let server = Server::start_with(&dir.path().join("data"), &path).await;
    let (status, reply) = server
        .post("/api/v1/sites/chuo/counters/3/open", Some(token), None)
        .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = server
        .post("/api/v1/sites/chuo/counters/1/pause", Some(token), None)
        .await;
    assert_eq!(status, 403, "{reply}");
    assert_eq!(reply["error"]["code"], "forbidden");
    let (status, _) = server
        .get("/api/v1/sites/chuo/counters/1", Some(token))
        .await;
    assert_eq!(status, 403);
    // The digest itself is not a token.
    let (status, _) = server
        .post("/api/v1/sites/chuo/counters/3/pause", Some(&digest), None)
        .await;
    assert_eq!(status, 401);
    // The token never reaches the log.
    assert!(!server.output().contains(token));
}

/// Floor changes carry the name and role of the token that made them: the floor board's audit
/// trail and the analyst's CSV show them; the public board and live feed never do.
#[tokio::test]
async fn the_audit_trail_names_who_changed_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let counter3 = "counter-three-token-0123456789abcdef";
    let path = demo_config_with(
        dir.path(),
        "audit.toml",
        &format!(
            "[[tokens]]\nrole = \"counter\"\nname = \"窓口3 端末\"\ntoken = \"{counter3}\"\ncounters = [\"3\"]\n"
        ),
    );
    let server = Server::start_with(&dir.path().join("data"), &path).await;
    let (mut live, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/sites/chuo/live"))
        .await
        .unwrap();
    let (status, _) = server
        .post("/api/v1/sites/chuo/counters/2/pause", Some(FLOOR), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .send(
            Method::PUT,
            "/api/v1/sites/chuo/counters/2/profile",
            Some(FLOOR),
            Some(json!({"queues": ["certificates"], "strategy": "longest_wait"})),
        )
        .await;
    assert_eq!(status, 200);
    let first = server.issue(json!({"procedures": ["shoumei"]})).await;
    let second = server.issue(json!({"procedures": ["shoumei"]})).await;
    let number = second["number"].as_str().unwrap().to_owned();
    // Counter 3 takes a break, comes back and calls the second ticket out of order; the first is
    // cancelled by staff.
    for action in ["pause", "open"] {
        let (status, _) = server
            .post(
                &format!("/api/v1/sites/chuo/counters/3/{action}"),
                Some(counter3),
                None,
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, reply) = server
        .post(
            "/api/v1/sites/chuo/counters/3/call",
            Some(counter3),
            Some(json!({"number": number})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let first_number = first["number"].as_str().unwrap().to_owned();
    let (status, _) = server
        .post(
            &format!("/api/v1/sites/chuo/tickets/{first_number}/cancel"),
            Some(counter3),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // Calls in order are routine, not audited.
    let (status, _) = server.counter("1", "call-next", None).await;
    assert!(status == 200 || status == 204);

    let (status, reply) = server
        .get("/api/v1/sites/chuo/audit?limit=10", Some(FLOOR))
        .await;
    assert_eq!(status, 200, "{reply}");
    let got: Vec<(String, String, String, String)> = reply["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (s("operator"), s("role"), s("action"), s("number"))
        })
        .collect();
    let who = |n: &str, r: &str, a: &str, num: &str| {
        (n.to_owned(), r.to_owned(), a.to_owned(), num.to_owned())
    };
    assert_eq!(
        got,
        vec![
            who("窓口3 端末", "counter", "ticket_cancelled", &first_number),
            who("窓口3 端末", "counter", "called_out_of_order", &number),
            who("窓口3 端末", "counter", "counter_opened", ""),
            who("窓口3 端末", "counter", "counter_paused", ""),
            who("demo-floor", "floor", "profile_changed", ""),
            who("demo-floor", "floor", "counter_paused", ""),
        ]
    );
    // The analyst's CSV has the same rows; counter staff may not read the trail.
    let response = server
        .http
        .get(server.url("/api/v1/sites/chuo/audit.csv"))
        .bearer_auth(ANALYST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let csv = response.text().await.unwrap();
    assert_eq!(csv.lines().count(), 7, "{csv}");
    assert!(
        csv.contains("窓口3 端末,counter,called_out_of_order,3,"),
        "{csv}"
    );
    let (status, _) = server.get("/api/v1/sites/chuo/audit", Some(COUNTER)).await;
    assert_eq!(status, 403);
    // Names never reach the public board or the live feed.
    let (_, board) = server.get("/api/v1/sites/chuo/board", None).await;
    assert!(!board.to_string().contains("demo-floor"));
    let seq = board["seq"].as_u64().unwrap();
    loop {
        let (text, message) = next_json(&mut live).await;
        assert!(
            !text.contains("窓口3") && !text.contains("demo-floor"),
            "{text}"
        );
        if message["seq"].as_u64() == Some(seq) {
            break;
        }
    }
}

/// Events are facts: a counter and a printer removed from the configuration between two starts
/// must not stop the server from rebuilding its state.
#[tokio::test]
async fn a_restart_with_a_counter_and_a_printer_removed_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    let (status, _) = server
        .post("/api/v1/sites/chuo/counters/10/open", Some(FLOOR), None)
        .await;
    assert_eq!(status, 200);
    server
        .issue(json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"}))
        .await;
    server.kill9();

    let demo = std::fs::read_to_string(repo_path("config/demo.toml")).unwrap();
    let counter10 = "[[sites.counters]]\nid = \"10\"\nname = { ja = \"10番窓口\", en = \"Counter 10\" }\nqueues = [\"welfare\"]\nstate = \"closed\"\n";
    assert!(
        demo.contains(counter10),
        "the demo configuration changed; update this test"
    );
    let smaller = demo
        .replace(counter10, "")
        .replace("printer_agent = \"agent-1\"\n", "");
    let path = dir.path().join("smaller.toml");
    std::fs::write(&path, smaller).unwrap();
    let server = Server::start_with(&data, &path).await;
    let board = server.board().await;
    assert!(board["counters"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["id"] != "10"));
    assert_eq!(board["printers"], json!([]));
    let waiting: u64 = board["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["waiting"].as_u64().unwrap())
        .sum();
    assert_eq!(waiting, 1, "the ticket survived");
}

/// A refused request with a body closes its connection and says so, since the body may be
/// left unread; a 405 answers in the API's error shape with `Allow`.
#[tokio::test]
async fn refused_bodies_close_the_connection_and_405_has_the_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let response = server
        .http
        .post(server.url("/api/v1/tickets/no-such-token/satisfaction"))
        .body(vec![b'x'; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["connection"], "close");
    let response = server
        .http
        .delete(server.url("/api/v1/sites/chuo/board"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}
