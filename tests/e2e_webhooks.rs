//! Outgoing webhooks and the event stream against the real binary: a receiver of the test's own
//! (a real HTTP server on 127.0.0.1) checks every signature independently with HMAC-SHA256,
//! records what it was sent and can be told to fail. What is due is read back from the server's
//! own event stream (NDJSON), so every check compares two independent views of one log:
//!
//! - every event is signed, sent once, in seq order, with the data the contract names, and the
//!   KPI's `handed_over` counts the completed visits that reached the subscriber;
//! - a receiver that fails for a while gets every event again, still in order, one at a time;
//! - after SIGKILL mid-stream nothing is lost or reordered (dedupe by id: at most the event in
//!   flight comes twice);
//! - an event that keeps failing becomes a dead letter, the rest goes on, and "retry now" sends
//!   it again (200 delivered, 502 while the receiver still fails, 404 for no such letter);
//! - two instances on one Redis: one delivers, exactly once; when it dies the other takes over;
//!   a backlog that takes longer than the lease is still delivered once;
//! - the event stream (NDJSON and Server-Sent Events) lists every event in order, without
//!   credentials, and SSE resumes after `Last-Event-ID` with no gap and no duplicate;
//! - a booking checked in at the kiosk shows its code neither in the webhooks nor in the stream.

#[path = "common/booking.rs"]
mod booking;
mod common;
#[path = "common/redis.rs"]
mod test_redis;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use booking::{bookable_weekday, free_starts};
use chrono::{DateTime, Utc};
use common::*;
use futures_util::SinkExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use test_redis::{prefix, TestRedis};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The environment variable the configuration names; every test sets the same value, and the
/// server processes inherit it.
const SECRET_ENV: &str = "MADOGUCHI_TEST_WEBHOOK_SECRET";
const SECRET: &str = "e2e-webhook-secret-0123456789abcdef";

/// Every kind a subscriber may ask for.
const ALL_KINDS: &str = r#"["ticket.issued", "ticket.called", "ticket.transferred",
  "visit.completed", "satisfaction.given", "printer.needs_staff", "reservation.made",
  "reservation.changed", "reservation.cancelled"]"#;

fn use_secret() {
    static SET: Once = Once::new();
    SET.call_once(|| std::env::set_var(SECRET_ENV, SECRET));
}

/// The `[[sites.webhooks]]` lines of one subscriber `dx` of every kind at `receiver`.
fn hook_lines(receiver: &Receiver, max_attempts: u32) -> String {
    use_secret();
    format!(
        r#"
[[sites.webhooks]]
name = "dx"
url = "http://{addr}/hook"
secret_env = "{SECRET_ENV}"
events = {ALL_KINDS}
max_attempts = {max_attempts}
backoff_initial_ms = 50
backoff_max_s = 1
timeout_s = 2
handover = true
"#,
        addr = receiver.addr
    )
}

/// The demo configuration with that subscriber at its only site.
fn hook_config(dir: &Path, receiver: &Receiver, max_attempts: u32) -> PathBuf {
    demo_config_with(dir, "webhooks.toml", &hook_lines(receiver, max_attempts))
}

// ---------------------------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------------------------

/// One request the receiver answered.
#[derive(Clone, Debug)]
struct Delivery {
    /// `Madoguchi-Event-Id`.
    id: u64,
    /// `Madoguchi-Event`.
    kind: String,
    /// `Madoguchi-Delivery-Attempt`.
    attempt: u32,
    /// What the receiver answered.
    status: u16,
    /// `Madoguchi-Signature` and the raw body it signs.
    signature: String,
    raw: Bytes,
    body: Value,
}

#[derive(Default)]
struct Inbox {
    deliveries: Mutex<Vec<Delivery>>,
    /// What was wrong with a request (a bad signature, headers that disagree with the body).
    problems: Mutex<Vec<String>>,
    /// Answer 500 to this many more requests.
    fail_next: AtomicU32,
    /// Answer 500 while set.
    failing: AtomicBool,
    /// Take this long to answer.
    delay_ms: AtomicU64,
}

/// A webhook receiver on 127.0.0.1 (POST /hook), on the test's runtime.
struct Receiver {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inbox = Arc::new(Inbox::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inbox.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, inbox, task }
    }

    fn fail_next(&self, requests: u32) {
        self.inbox.fail_next.store(requests, SeqCst);
    }

    fn set_failing(&self, failing: bool) {
        self.inbox.failing.store(failing, SeqCst);
    }

    fn set_delay(&self, ms: u64) {
        self.inbox.delay_ms.store(ms, SeqCst);
    }

    /// Every request so far, in the order they were answered.
    fn deliveries(&self) -> Vec<Delivery> {
        self.inbox.deliveries.lock().unwrap().clone()
    }

    /// The requests answered 2xx, in order.
    fn accepted(&self) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| (200..300).contains(&d.status))
            .collect()
    }

    fn accepted_ids(&self) -> BTreeSet<u64> {
        self.accepted().iter().map(|d| d.id).collect()
    }

    fn assert_no_problems(&self) {
        let problems = self.inbox.problems.lock().unwrap().clone();
        assert!(problems.is_empty(), "the receiver saw: {problems:#?}");
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The receiver's one route: checks the request on its own (signature, headers against the
/// body), records it and answers 200, or 500 when told to fail.
async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, raw: Bytes) -> StatusCode {
    let fail = inbox.failing.load(SeqCst)
        || inbox
            .fail_next
            .fetch_update(SeqCst, SeqCst, |k| k.checked_sub(1))
            .is_ok();
    let delay = inbox.delay_ms.load(SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let id: u64 = header("madoguchi-event-id").parse().unwrap_or(0);
    let kind = header("madoguchi-event");
    let attempt: u32 = header("madoguchi-delivery-attempt").parse().unwrap_or(0);
    let signature = header("madoguchi-signature");
    let mut problems = Vec::new();
    if !signature_valid(SECRET, &signature, &raw) {
        problems.push(format!("the signature {signature:?} does not verify"));
    }
    match signature_part(&signature, "t").and_then(|t| t.parse::<i64>().ok()) {
        Some(t) if (Utc::now().timestamp() - t).abs() <= 300 => {}
        other => problems.push(format!("signature time {other:?} is not now")),
    }
    if id == 0 || body["id"] != json!(id) {
        problems.push(format!(
            "Madoguchi-Event-Id {id} but body id {}",
            body["id"]
        ));
    }
    if kind.is_empty() || body["type"] != json!(kind) {
        problems.push(format!(
            "Madoguchi-Event {kind:?} but body type {}",
            body["type"]
        ));
    }
    if header("madoguchi-site") != "chuo" || body["site"] != "chuo" {
        problems.push(format!(
            "Madoguchi-Site {:?}, body site {}",
            header("madoguchi-site"),
            body["site"]
        ));
    }
    if attempt == 0 {
        problems.push("no Madoguchi-Delivery-Attempt".into());
    }
    if !header("content-type").starts_with("application/json") {
        problems.push(format!("content type {:?}", header("content-type")));
    }
    if DateTime::parse_from_rfc3339(body["at"].as_str().unwrap_or("")).is_err() {
        problems.push(format!("at {} is not RFC 3339", body["at"]));
    }
    if !body["data"].is_object() {
        problems.push("no data object".into());
    }
    if !problems.is_empty() {
        let mut all = inbox.problems.lock().unwrap();
        all.extend(problems.into_iter().map(|p| format!("event {id}: {p}")));
    }
    let status = if fail { 500 } else { 200 };
    inbox.deliveries.lock().unwrap().push(Delivery {
        id,
        kind,
        attempt,
        status,
        signature,
        raw,
        body,
    });
    StatusCode::from_u16(status).unwrap()
}

/// `name=value` of a `Madoguchi-Signature` header.
fn signature_part<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(',')
        .find_map(|p| p.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Whether `header` (`t=<t>,v1=<hex>`) is the HMAC-SHA256 of `"<t>.<body>"` with `secret`,
/// computed here independently of the server's code (and compared in constant time).
fn signature_valid(secret: &str, header: &str, body: &[u8]) -> bool {
    let (Some(t), Some(v1)) = (signature_part(header, "t"), signature_part(header, "v1")) else {
        return false;
    };
    let Some(mac_bytes) = hex_decode(v1) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&mac_bytes).is_ok()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The ids accepted, each where it was accepted first.
fn first_seen(accepted: &[Delivery]) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    accepted
        .iter()
        .filter(|d| seen.insert(d.id))
        .map(|d| d.id)
        .collect()
}

fn assert_increasing(ids: &[u64], what: &str) {
    for pair in ids.windows(2) {
        assert!(pair[0] < pair[1], "{what} out of order: {ids:?}");
    }
}

/// Ids accepted more than once, with how often.
fn duplicates(accepted: &[Delivery]) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for d in accepted {
        *counts.entry(d.id).or_insert(0) += 1;
    }
    counts.retain(|_, n| *n > 1);
    counts
}

// ---------------------------------------------------------------------------------------------
// The server's side
// ---------------------------------------------------------------------------------------------

/// GET /api/v1/sites/chuo/webhooks with the floor's token.
async fn hooks_status(server: &Server) -> Value {
    let (status, reply) = server.get("/api/v1/sites/chuo/webhooks", Some(FLOOR)).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

/// The NDJSON event stream after `from_seq`: the raw text and its lines parsed.
async fn ndjson(server: &Server, query: &str, accept: Option<&str>) -> (String, Vec<Value>) {
    let mut req = server
        .http
        .get(server.url(&format!("/api/v1/sites/chuo/events{query}")))
        .bearer_auth(ANALYST);
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/x-ndjson"),
        "{content_type}"
    );
    // The body ends by itself: `text` returns only once the server closed it.
    let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("the NDJSON body ends")
        .unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (text, lines)
}

/// The webhook type a logged event (in its public form) is sent as, if any.
fn webhook_type(event: &Value) -> Option<&'static str> {
    Some(match event["kind"].as_str()? {
        "ticket_issued" => "ticket.issued",
        "ticket_called" => "ticket.called",
        "step_completed" if event["transfer_to"].is_null() => "visit.completed",
        "step_completed" => "ticket.transferred",
        "satisfaction_given" => "satisfaction.given",
        "printer_state_changed"
            if [
                "paper_near_end",
                "paper_end",
                "cover_open",
                "offline",
                "unreachable",
                "disconnected",
            ]
            .contains(&event["state"].as_str()?) =>
        {
            "printer.needs_staff"
        }
        "reservation_made" => "reservation.made",
        "reservation_moved" => "reservation.changed",
        "reservation_cancelled" => "reservation.cancelled",
        _ => return None,
    })
}

/// What the log says is due to a subscriber of every kind: seq → webhook type.
async fn due(server: &Server) -> BTreeMap<u64, &'static str> {
    let (_, events) = ndjson(server, "?from_seq=0", None).await;
    events
        .iter()
        .filter_map(|e| Some((e["seq"].as_u64().unwrap(), webhook_type(e)?)))
        .collect()
}

/// Waits until the receiver accepted every event due and the subscriber's checkpoint reached
/// the end of the log (so what follows a delivery, like the handover record, is done too).
/// Returns what was due.
async fn all_delivered(
    server: &Server,
    receiver: &Receiver,
    timeout: Duration,
) -> BTreeMap<u64, &'static str> {
    eventually("every event due delivered", timeout, || async {
        let due = due(server).await;
        let taken = receiver.accepted_ids();
        let status = hooks_status(server).await;
        let caught_up = status["hooks"][0]["delivered_seq"] == status["seq"]
            && status["hooks"][0]["behind"] == 0;
        (caught_up && due.keys().all(|s| taken.contains(s))).then_some(due)
    })
    .await
}

/// The ids and types the receiver accepted match what was due exactly: nothing missing,
/// nothing extra, each with its type.
fn assert_matches_due(receiver: &Receiver, due: &BTreeMap<u64, &'static str>) {
    let accepted: BTreeMap<u64, String> = receiver
        .accepted()
        .into_iter()
        .map(|d| (d.id, d.kind))
        .collect();
    let due: BTreeMap<u64, String> = due.iter().map(|(s, t)| (*s, t.to_string())).collect();
    assert_eq!(accepted, due, "accepted (left) against the log (right)");
}

/// The seq of the `kind` event (public form) about `ticket`, the first after `after`.
async fn seq_of(server: &Server, kind: &str, ticket: &Value, after: u64) -> u64 {
    let (_, events) = ndjson(server, &format!("?from_seq={after}"), None).await;
    events
        .iter()
        .find(|e| e["kind"] == kind && e["ticket"] == ticket["id"])
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or_else(|| panic!("no {kind} of {ticket} in {events:?}"))
}

/// Calls the next ticket at `counter`, serves it and completes the step with `complete`
/// (`{}` ends the visit, `{"transfer_to": …}` sends it on). Returns the ticket called.
async fn serve(server: &Server, counter: &str, complete: Value) -> Value {
    let (status, called) = server.counter(counter, "call-next", Some(json!({}))).await;
    assert_eq!(status, 200, "{called}");
    let (status, reply) = server.counter(counter, "start", Some(json!({}))).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = server.counter(counter, "complete", Some(complete)).await;
    assert_eq!(status, 200, "{reply}");
    called["ticket"].clone()
}

async fn kpi(server: &Server) -> Value {
    let (status, kpi) = server.get("/api/v1/sites/chuo/kpi", Some(ANALYST)).await;
    assert_eq!(status, 200, "{kpi}");
    kpi
}

/// The free slots' starts of the first weekday from tomorrow on with at least two.
async fn next_slots(server: &Server) -> Vec<String> {
    let (_, slots) = bookable_weekday(server, |slots| free_starts(slots).len() >= 2).await;
    free_starts(&slots)
}

fn instant(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}")))
        .unwrap_or_else(|e| panic!("{e}: {value}"))
        .with_timezone(&Utc)
}

// ---------------------------------------------------------------------------------------------
// 1. Signed, in order, with their data; handovers in the KPI
// ---------------------------------------------------------------------------------------------

/// A morning at the counters: three tickets (one by the kiosk's priority button, in English),
/// a transfer to the welfare desk, three visits completed, a satisfaction score, a booking
/// made, moved and cancelled, and a printer out of paper whose agent then goes away. Each becomes one signed webhook, sent once, in seq order, with the
/// data the contract names; the KPI counts the completed visits handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_signed_and_delivered_once_in_order_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let config = hook_config(dir.path(), &receiver, 4);
    let server = Server::start_with(&dir.path().join("data"), &config).await;

    // The floor board lists the subscriber: where it is sent (no path: it may hold a key),
    // never the secret. Analysts read it too; a kiosk may not.
    let status = eventually("the deliverer runs", Duration::from_secs(10), || async {
        let status = hooks_status(&server).await;
        (status["hooks"][0]["active"] == true).then_some(status)
    })
    .await;
    let hook = &status["hooks"][0];
    assert_eq!(hook["name"], "dx", "{status}");
    assert_eq!(
        hook["endpoint"],
        format!("http://{}", receiver.addr),
        "{status}"
    );
    assert_eq!(hook["events"].as_array().unwrap().len(), 9, "{status}");
    assert!(!status.to_string().contains(SECRET), "{status}");
    assert!(!status.to_string().contains("/hook"), "{status}");
    assert_eq!(status["dead_letters"], json!([]), "{status}");
    let (code, _) = server
        .get("/api/v1/sites/chuo/webhooks", Some(ANALYST))
        .await;
    assert_eq!(code, 200);
    let (code, _) = server
        .get("/api/v1/sites/chuo/webhooks", Some(DISPENSER))
        .await;
    assert_eq!(code, 403);

    let plain = server.issue(json!({"procedures": ["tennyu"]})).await;
    let kiosk = server
        .issue(
            json!({"procedures": ["kaigo_hoken"], "dispenser": "kiosk-1", "lang": "en",
                      "priority": true}),
        )
        .await;
    let third = server.issue(json!({"procedures": ["tenkyo"]})).await;
    let tickets = [&plain, &kiosk, &third];
    let by_number = |number: &Value| {
        *tickets
            .iter()
            .find(|t| t["number"] == *number)
            .unwrap_or_else(|| panic!("no ticket {number}"))
    };

    // Counter 1 serves a ticket and sends it on to the welfare desk, where counter 8 (welfare
    // first) finishes it: a transfer, then a completed visit of two steps.
    let moved = by_number(&serve(&server, "1", json!({"transfer_to": "welfare"})).await["number"]);
    let finished = by_number(&serve(&server, "8", json!({})).await["number"]);
    assert_eq!(moved["id"], finished["id"]);
    let second = by_number(&serve(&server, "2", json!({})).await["number"]);
    let last = by_number(&serve(&server, "3", json!({})).await["number"]);
    let (code, reply) = server
        .post(
            &format!(
                "/api/v1/tickets/{}/satisfaction",
                second["token"].as_str().unwrap()
            ),
            None,
            Some(json!({"score": 4})),
        )
        .await;
    assert_eq!(code, 200, "{reply}");

    // A booking made, moved and cancelled.
    let slots = next_slots(&server).await;
    let (code, booked) = server
        .post(
            "/api/v1/sites/chuo/reservations",
            None,
            Some(json!({"procedures": ["tennyu"], "slot": slots[0]})),
        )
        .await;
    assert_eq!(code, 201, "{booked}");
    let booking = booked["reservation"]["code"].as_str().unwrap().to_owned();
    let (code, reply) = server
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/sites/chuo/reservations/{booking}"),
            None,
            Some(json!({"slot": slots[1]})),
        )
        .await;
    assert_eq!(code, 200, "{reply}");
    let (code, reply) = server
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/sites/chuo/reservations/{booking}"),
            None,
            None,
        )
        .await;
    assert_eq!(code, 200, "{reply}");

    // The kiosk's printer agent reports the paper out, then goes away: the printer needs staff,
    // twice.
    let mut req = server
        .ws_url("/api/v1/printers/agent-1/jobs")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer demo-printer".parse().unwrap());
    let (mut agent, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let status = json!({"type": "status", "state": "paper_end"}).to_string();
    agent.send(Message::Text(status.into())).await.unwrap();
    eventually("paper out delivered", Duration::from_secs(10), || async {
        receiver
            .accepted()
            .into_iter()
            .find(|d| d.kind == "printer.needs_staff")
    })
    .await;
    agent.close(None).await.unwrap();
    drop(agent);
    // Waited for in the log, so that what is due below is all there is.
    eventually(
        "the agent's leaving logged",
        Duration::from_secs(10),
        || async {
            let (_, events) = ndjson(&server, "?from_seq=0", None).await;
            events
                .iter()
                .any(|e| e["kind"] == "printer_state_changed" && e["state"] == "disconnected")
                .then_some(())
        },
    )
    .await;

    let due = all_delivered(&server, &receiver, Duration::from_secs(20)).await;
    receiver.assert_no_problems();
    assert_matches_due(&receiver, &due);

    // Every request was taken at the first try: each event once, in strictly increasing ids.
    let deliveries = receiver.deliveries();
    assert!(
        deliveries.iter().all(|d| d.status == 200 && d.attempt == 1),
        "{deliveries:#?}"
    );
    let ids: Vec<u64> = deliveries.iter().map(|d| d.id).collect();
    assert_increasing(&ids, "deliveries");

    // The signatures verify with the secret only, and only for the body as sent.
    for d in &deliveries {
        assert!(signature_valid(SECRET, &d.signature, &d.raw), "{d:?}");
        assert!(
            !signature_valid("not-the-secret-0123456789", &d.signature, &d.raw),
            "{d:?}"
        );
        let mut tampered = d.raw.to_vec();
        let at = tampered.len() / 2;
        tampered[at] ^= 1;
        assert!(!signature_valid(SECRET, &d.signature, &tampered), "{d:?}");
        // The phone's token and the booking code never leave the server.
        let raw = String::from_utf8_lossy(&d.raw);
        for t in tickets {
            assert!(!raw.contains(t["token"].as_str().unwrap()), "{raw}");
        }
        assert!(!raw.contains(&booking), "{raw}");
    }

    let of = |kind: &str| -> Vec<Value> {
        deliveries
            .iter()
            .filter(|d| d.kind == kind)
            .map(|d| d.body["data"].clone())
            .collect()
    };

    // ticket.issued: in the order issued, with the plan and where it came from.
    let issued = of("ticket.issued");
    assert_eq!(issued.len(), 3, "{issued:?}");
    for (data, ticket) in issued.iter().zip(tickets) {
        assert_eq!(data["ticket"], ticket["id"], "{data}");
        assert_eq!(data["number"], ticket["number"], "{data}");
        assert_eq!(data["queue"], "onestop", "{data}");
        assert_eq!(data["procedures"], ticket["procedures"], "{data}");
        assert_eq!(data["life_event"], Value::Null, "{data}");
        assert_eq!(data["booked"], false, "{data}");
    }
    assert_eq!(
        (&issued[0]["priority"], &issued[0]["dispenser"]),
        (&json!(false), &Value::Null)
    );
    assert_eq!(
        (
            &issued[1]["priority"],
            &issued[1]["dispenser"],
            &issued[1]["lang"]
        ),
        (&json!(true), &json!("kiosk-1"), &json!("en")),
        "{}",
        issued[1]
    );

    // ticket.called: four calls (the transferred ticket twice), each naming its counter.
    let called = of("ticket.called");
    let calls: Vec<(Value, Value)> = called
        .iter()
        .map(|d| (d["ticket"].clone(), d["counter"].clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (moved["id"].clone(), json!("1")),
            (moved["id"].clone(), json!("8")),
            (second["id"].clone(), json!("2")),
            (last["id"].clone(), json!("3")),
        ]
    );

    // ticket.transferred: from counter 1 to the welfare queue.
    let transferred = of("ticket.transferred");
    assert_eq!(
        transferred,
        vec![json!({"ticket": moved["id"], "counter": "1", "to": {"queue": "welfare"}})]
    );

    // visit.completed: the stored visit record (number, plan, times, steps).
    let completed = of("visit.completed");
    assert_eq!(completed.len(), 3, "{completed:?}");
    for (data, (ticket, counter, steps)) in
        completed
            .iter()
            .zip([(finished, "8", 2), (second, "2", 1), (last, "3", 1)])
    {
        assert_eq!(data["ticket"], ticket["id"], "{data}");
        assert_eq!(data["counter"], counter, "{data}");
        assert_eq!(data["number"], ticket["number"], "{data}");
        assert_eq!(data["procedures"], ticket["procedures"], "{data}");
        assert_eq!(data["life_event"], Value::Null, "{data}");
        assert_eq!(data["steps"], steps, "{data}");
        let (stay, wait, service) = (
            data["stay_s"].as_f64().unwrap_or(-1.0),
            data["wait_s"].as_f64().unwrap_or(-1.0),
            data["service_s"].as_f64().unwrap_or(-1.0),
        );
        assert!(stay >= 0.0 && wait >= 0.0 && service >= 0.0, "{data}");
        assert!(stay + 0.001 >= service, "{data}");
        assert!(
            instant(&data["arrival"]) <= instant(&data["departure"]),
            "{data}"
        );
    }

    // satisfaction.given: the score of that visit.
    assert_eq!(
        of("satisfaction.given"),
        vec![json!({"ticket": second["id"], "score": 4})]
    );

    // reservation.*: one booking named by a 16-hex digest, never by its code.
    let made = of("reservation.made");
    let changed = of("reservation.changed");
    let cancelled = of("reservation.cancelled");
    assert_eq!((made.len(), changed.len(), cancelled.len()), (1, 1, 1));
    let reference = made[0]["reservation"].as_str().unwrap().to_owned();
    assert_eq!(reference.len(), 16, "{reference}");
    assert!(
        reference.chars().all(|c| c.is_ascii_hexdigit()),
        "{reference}"
    );
    assert_ne!(reference, booking);
    assert_eq!(changed[0]["reservation"], reference.as_str());
    assert_eq!(cancelled[0]["reservation"], reference.as_str());
    assert_eq!(made[0]["queue"], "onestop");
    assert_eq!(made[0]["procedures"], json!(["tennyu"]));
    assert_eq!(instant(&made[0]["slot_start"]), instant(&json!(slots[0])));
    assert_eq!(
        instant(&changed[0]["slot_start"]),
        instant(&json!(slots[1]))
    );

    // printer.needs_staff: the printer and its state.
    assert_eq!(
        of("printer.needs_staff"),
        vec![
            json!({"printer": "agent-1", "state": "paper_end"}),
            json!({"printer": "agent-1", "state": "disconnected"}),
        ]
    );

    // The KPI counts the completed visits that reached the handover subscriber: all three.
    let kpi = kpi(&server).await;
    assert_eq!(kpi["visits"], 3, "{kpi}");
    assert_eq!(kpi["handed_over"], completed.len(), "{kpi}");

    let status = hooks_status(&server).await;
    let hook = &status["hooks"][0];
    assert_eq!(hook["delivered_seq"], status["seq"], "{status}");
    assert_eq!(hook["behind"], 0, "{status}");
    assert!(hook.get("retrying").is_none(), "{status}");
    assert_eq!(status["dead_letters"], json!([]), "{status}");
}

// ---------------------------------------------------------------------------------------------
// 2. Retries
// ---------------------------------------------------------------------------------------------

/// Every request's id never goes back (one event at a time, in order), and each event's tries
/// are numbered 1, 2, … with only the last one taken.
fn assert_one_at_a_time(deliveries: &[Delivery]) {
    let ids: Vec<u64> = deliveries.iter().map(|d| d.id).collect();
    assert!(
        ids.windows(2).all(|p| p[0] <= p[1]),
        "a later event was sent before an earlier one was taken: {ids:?}"
    );
    let mut by_id: BTreeMap<u64, Vec<(u32, u16)>> = BTreeMap::new();
    for d in deliveries {
        by_id.entry(d.id).or_default().push((d.attempt, d.status));
    }
    for (id, tries) in &by_id {
        let attempts: Vec<u32> = tries.iter().map(|t| t.0).collect();
        let expected: Vec<u32> = (1..=tries.len() as u32).collect();
        assert_eq!(attempts, expected, "event {id}: {tries:?}");
        let (last, before) = tries.split_last().unwrap();
        assert_eq!(last.1, 200, "event {id}: {tries:?}");
        assert!(before.iter().all(|t| t.1 == 500), "event {id}: {tries:?}");
    }
}

/// A receiver that answers 500 to the first two requests, then 200: the first event is taken
/// at its third try, and nothing overtakes it. Then a receiver down for a while: the floor
/// board shows the event being retried (with the error), the events behind it wait, and when
/// the receiver is back every event arrives, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_every_event_again_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.fail_next(2);
    let config = hook_config(dir.path(), &receiver, 8);
    let server = Server::start_with(&dir.path().join("data"), &config).await;

    let first = server.issue(json!({"procedures": ["tennyu"]})).await;
    let first_seq = seq_of(&server, "ticket_issued", &first, 0).await;
    for _ in 0..3 {
        server.issue(json!({"procedures": ["shoumei"]})).await;
    }
    serve(&server, "1", json!({})).await;

    let due = all_delivered(&server, &receiver, Duration::from_secs(20)).await;
    receiver.assert_no_problems();
    assert_matches_due(&receiver, &due);
    let deliveries = receiver.deliveries();
    assert_one_at_a_time(&deliveries);
    let tries: Vec<(u32, u16)> = deliveries
        .iter()
        .filter(|d| d.id == first_seq)
        .map(|d| (d.attempt, d.status))
        .collect();
    assert_eq!(tries, vec![(1, 500), (2, 500), (3, 200)]);
    assert!(duplicates(&receiver.accepted()).is_empty());

    // Down for a while: the event in flight is retried; the next one waits behind it.
    receiver.set_failing(true);
    let stuck = server.issue(json!({"procedures": ["tennyu"]})).await;
    let stuck_seq = seq_of(&server, "ticket_issued", &stuck, first_seq).await;
    let behind = server.issue(json!({"procedures": ["tenkyo"]})).await;
    let retrying = eventually(
        "the board shows the event being retried",
        Duration::from_secs(10),
        || async {
            let status = hooks_status(&server).await;
            let retrying = status["hooks"][0].get("retrying")?.clone();
            (retrying["attempts"].as_u64()? >= 2).then_some((retrying, status))
        },
    )
    .await;
    let (retrying, status) = retrying;
    assert_eq!(retrying["seq"], stuck_seq, "{status}");
    assert!(
        retrying["error"].as_str().unwrap().contains("500"),
        "{status}"
    );
    assert!(
        status["hooks"][0]["behind"].as_u64().unwrap() >= 2,
        "{status}"
    );
    assert_eq!(status["dead_letters"], json!([]), "{status}");
    assert!(
        receiver.deliveries().iter().all(|d| d.id <= stuck_seq),
        "an event was sent ahead of the one being retried"
    );

    receiver.set_failing(false);
    let due = all_delivered(&server, &receiver, Duration::from_secs(20)).await;
    receiver.assert_no_problems();
    assert_matches_due(&receiver, &due);
    let deliveries = receiver.deliveries();
    assert_one_at_a_time(&deliveries);
    assert!(duplicates(&receiver.accepted()).is_empty());
    let taken = deliveries
        .iter()
        .find(|d| d.id == stuck_seq && d.status == 200)
        .unwrap();
    assert!(taken.attempt >= 3, "{taken:?}");
    assert_eq!(taken.body["data"]["ticket"], stuck["id"]);
    let behind_seq = seq_of(&server, "ticket_issued", &behind, stuck_seq).await;
    assert!(due.contains_key(&behind_seq));
    let status = hooks_status(&server).await;
    assert!(status["hooks"][0].get("retrying").is_none(), "{status}");
    assert_eq!(status["dead_letters"], json!([]), "{status}");
}

// ---------------------------------------------------------------------------------------------
// 3. SIGKILL mid-stream
// ---------------------------------------------------------------------------------------------

/// A slow receiver (25 ms a request) and a burst of tickets; the server is killed (SIGKILL)
/// while delivering and started again on the same data. After dedupe by id every event is
/// delivered exactly once, the ids first seen are in order, and at most the one event in flight
/// came twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_every_event_arrives_once_after_dedupe_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start().await;
    receiver.set_delay(25);
    let config = hook_config(dir.path(), &receiver, 10);
    let mut server = Server::start_with(&data, &config).await;
    // A burst at once, so the log runs well ahead of the deliverer.
    const BURST: usize = 100;
    let burst = (0..BURST).map(|_| server.issue(json!({"procedures": ["shoumei"]})));
    futures_util::future::join_all(burst).await;
    eventually("some deliveries", Duration::from_secs(20), || async {
        (receiver.accepted().len() >= 10).then_some(())
    })
    .await;
    server.kill9();
    let at_kill = receiver.accepted_ids().len();
    assert!(
        at_kill < BURST,
        "every event was delivered before the kill: nothing was in flight"
    );

    let server = Server::start_at(&data, &config, server.addr).await;
    for _ in 0..10 {
        server.issue(json!({"procedures": ["shoumei"]})).await;
    }
    let due = all_delivered(&server, &receiver, Duration::from_secs(30)).await;
    receiver.assert_no_problems();
    assert_eq!(due.len(), BURST + 10, "{due:?}");
    let accepted = receiver.accepted();
    let firsts = first_seen(&accepted);
    assert_increasing(&firsts, "ids first accepted");
    assert_eq!(
        firsts.iter().copied().collect::<BTreeSet<u64>>(),
        due.keys().copied().collect::<BTreeSet<u64>>(),
        "lost or extra events"
    );
    let twice = duplicates(&accepted);
    assert!(
        twice.len() <= 1 && twice.values().all(|n| *n == 2),
        "more than the event in flight came again: {twice:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Dead letters and "retry now"
// ---------------------------------------------------------------------------------------------

async fn retry(server: &Server, token: Option<&str>, hook: &str, seq: &str) -> (u16, Value) {
    server
        .post(
            &format!("/api/v1/sites/chuo/webhooks/{hook}/dead/{seq}/retry"),
            token,
            None,
        )
        .await
}

/// A receiver that always fails: each event is tried `max_attempts` (4) times, becomes a dead
/// letter, and delivery goes on with the next. "Retry now" answers 502 while the receiver still
/// fails (the letter stays) and 404 for no such letter; once the receiver is back it delivers
/// (200, the letter leaves the list, the receiver has the event, a completed visit counts as
/// handed over), and new events flow again at the first try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_keeps_failing_becomes_a_dead_letter_and_is_sent_again_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.set_failing(true);
    let config = hook_config(dir.path(), &receiver, 4);
    let server = Server::start_with(&dir.path().join("data"), &config).await;

    let ticket = server.issue(json!({"procedures": ["tennyu"]})).await;
    let issued = seq_of(&server, "ticket_issued", &ticket, 0).await;
    let status = eventually("a dead letter", Duration::from_secs(15), || async {
        let status = hooks_status(&server).await;
        (!status["dead_letters"].as_array()?.is_empty()).then_some(status)
    })
    .await;
    let letter = &status["dead_letters"][0];
    assert_eq!(letter["hook"], "dx", "{status}");
    assert_eq!(letter["seq"], issued, "{status}");
    assert_eq!(letter["kind"], "ticket.issued", "{status}");
    assert_eq!(letter["attempts"], 4, "{status}");
    assert!(
        letter["error"].as_str().unwrap().contains("500"),
        "{status}"
    );
    instant(&letter["failed_at"]);
    let tries: Vec<(u32, u16)> = receiver
        .deliveries()
        .iter()
        .filter(|d| d.id == issued)
        .map(|d| (d.attempt, d.status))
        .collect();
    assert_eq!(tries, vec![(1, 500), (2, 500), (3, 500), (4, 500)]);

    // The next events are still tried (and given up): the call and the completed visit.
    serve(&server, "1", json!({})).await;
    let called = seq_of(&server, "ticket_called", &ticket, issued).await;
    let completed = seq_of(&server, "step_completed", &ticket, called).await;
    let status = eventually("three dead letters", Duration::from_secs(20), || async {
        let status = hooks_status(&server).await;
        let caught_up = status["hooks"][0]["delivered_seq"] == status["seq"];
        (caught_up && status["dead_letters"].as_array()?.len() == 3).then_some(status)
    })
    .await;
    let letters: Vec<(Value, Value, Value)> = status["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["seq"].clone(), l["kind"].clone(), l["attempts"].clone()))
        .collect();
    assert_eq!(
        letters,
        vec![
            (json!(issued), json!("ticket.issued"), json!(4)),
            (json!(called), json!("ticket.called"), json!(4)),
            (json!(completed), json!("visit.completed"), json!(4)),
        ]
    );
    assert_eq!(
        receiver
            .deliveries()
            .iter()
            .filter(|d| d.id == called)
            .count(),
        4
    );
    assert!(receiver.accepted().is_empty());
    // Not handed over yet.
    let before = kpi(&server).await;
    assert_eq!(
        (&before["visits"], &before["handed_over"]),
        (&json!(1), &json!(0)),
        "{before}"
    );

    // Retry now while the receiver still fails: 502, and the letter stays.
    let (code, reply) = retry(&server, Some(FLOOR), "dx", &issued.to_string()).await;
    assert_eq!(code, 502, "{reply}");
    assert_eq!(reply["error"]["code"], "delivery_failed", "{reply}");
    let status = hooks_status(&server).await;
    assert_eq!(
        status["dead_letters"].as_array().unwrap().len(),
        3,
        "{status}"
    );
    // No such letter, no such subscriber, not a seq: 404. Only the floor may retry.
    for (hook, seq) in [
        ("dx", (completed + 1000).to_string()),
        ("dx", "0".to_owned()),
        ("nope", issued.to_string()),
        ("dx", "abc".to_owned()),
    ] {
        let (code, reply) = retry(&server, Some(FLOOR), hook, &seq).await;
        assert_eq!(code, 404, "{hook} {seq}: {reply}");
        assert_eq!(reply["error"]["code"], "unknown_dead_letter", "{reply}");
    }
    let (code, _) = retry(&server, Some(ANALYST), "dx", &issued.to_string()).await;
    assert_eq!(code, 403);
    let (code, _) = retry(&server, None, "dx", &issued.to_string()).await;
    assert_eq!(code, 401);

    // The receiver is back: each retry delivers, and the list empties.
    receiver.set_failing(false);
    for seq in [issued, called, completed] {
        let (code, reply) = retry(&server, Some(FLOOR), "dx", &seq.to_string()).await;
        assert_eq!(code, 200, "{reply}");
        assert_eq!(
            reply,
            json!({"hook": "dx", "seq": seq, "delivered": true}),
            "{reply}"
        );
        assert!(receiver.accepted_ids().contains(&seq));
    }
    let status = hooks_status(&server).await;
    assert_eq!(status["dead_letters"], json!([]), "{status}");
    let accepted = receiver.accepted();
    assert_eq!(
        accepted.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![issued, called, completed]
    );
    let visit = &accepted[2].body["data"];
    assert_eq!(visit["number"], ticket["number"], "{visit}");
    assert!(visit["stay_s"].as_f64().unwrap() >= 0.0, "{visit}");
    // The completed visit sent on retry is handed over.
    let after = kpi(&server).await;
    assert_eq!(after["handed_over"], 1, "{after}");
    // Sent: it is no dead letter any more.
    let (code, _) = retry(&server, Some(FLOOR), "dx", &issued.to_string()).await;
    assert_eq!(code, 404);

    // New events go out again at the first try.
    let next = server.issue(json!({"procedures": ["tennyu"]})).await;
    let next_seq = seq_of(&server, "ticket_issued", &next, completed).await;
    let taken = eventually("the next event", Duration::from_secs(10), || async {
        receiver.accepted().into_iter().find(|d| d.id == next_seq)
    })
    .await;
    assert_eq!(taken.attempt, 1, "{taken:?}");
    receiver.assert_no_problems();
}

// ---------------------------------------------------------------------------------------------
// 5. Two instances on one Redis
// ---------------------------------------------------------------------------------------------

/// Two instances on one Redis with the same subscriber: tickets issued on both are delivered
/// exactly once (one instance holds the site's lease and says so: `active`). When that one is
/// killed, the other takes over once the lease runs out (10 s) and delivers what follows; no
/// event is lost, at most the one in flight comes twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_redis_deliver_once_and_the_survivor_takes_over() {
    let Some(redis) = TestRedis::get("e2e_webhooks two instances") else {
        return;
    };
    let prefix = prefix("webhooks");
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.set_delay(5);
    let config = hook_config(dir.path(), &receiver, 10);
    let mut a = Server::start_on_redis(dir.path(), "a", &config, &redis.url, &prefix, &[]).await;
    let mut b = Server::start_on_redis(dir.path(), "b", &config, &redis.url, &prefix, &[]).await;

    for _ in 0..10 {
        a.issue(json!({"procedures": ["tennyu"]})).await;
        b.issue(json!({"procedures": ["shoumei"]})).await;
    }
    serve(&b, "1", json!({})).await;
    let due = all_delivered(&a, &receiver, Duration::from_secs(30)).await;
    assert_eq!(due.len(), 20 + 2, "{due:?}");
    receiver.assert_no_problems();
    assert_matches_due(&receiver, &due);
    let accepted = receiver.accepted();
    assert!(duplicates(&accepted).is_empty(), "{accepted:#?}");
    assert_increasing(
        &accepted.iter().map(|d| d.id).collect::<Vec<_>>(),
        "deliveries",
    );

    // One instance delivers, and only that one says so.
    let a_active = eventually("one active instance", Duration::from_secs(10), || async {
        let (sa, sb) = (hooks_status(&a).await, hooks_status(&b).await);
        let (ra, rb) = (&sa["hooks"][0]["active"], &sb["hooks"][0]["active"]);
        match (ra.as_bool()?, rb.as_bool()?) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    })
    .await;
    let (dead, survivor) = if a_active { (&mut a, &b) } else { (&mut b, &a) };
    dead.kill9();

    for _ in 0..10 {
        survivor.issue(json!({"procedures": ["tennyu"]})).await;
    }
    serve(survivor, "2", json!({})).await;
    let due = all_delivered(survivor, &receiver, Duration::from_secs(40)).await;
    assert_eq!(due.len(), 20 + 2 + 10 + 2, "{due:?}");
    receiver.assert_no_problems();
    let accepted = receiver.accepted();
    let firsts = first_seen(&accepted);
    assert_increasing(&firsts, "ids first accepted");
    assert_eq!(
        firsts.iter().copied().collect::<BTreeSet<u64>>(),
        due.keys().copied().collect::<BTreeSet<u64>>(),
        "lost or extra events"
    );
    let twice = duplicates(&accepted);
    assert!(
        twice.len() <= 1 && twice.values().all(|n| *n == 2),
        "more than the event in flight came again: {twice:?}"
    );
    let status = hooks_status(survivor).await;
    assert_eq!(status["hooks"][0]["active"], true, "{status}");
    // Both completed visits were handed over, whichever instance delivered them.
    let kpi = kpi(survivor).await;
    assert_eq!(kpi["handed_over"], 2, "{kpi}");
}

/// Two healthy instances on one Redis and a backlog that takes longer to deliver than the
/// site's lease lasts (10 s): 140 tickets at once to a receiver that takes 100 ms a request.
/// Nobody dies, so every event must be delivered exactly once, in order: the instance
/// delivering has to keep its lease while it works through the backlog rather than lose it
/// mid-way (and send again what it delivered but could no longer record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_longer_than_the_lease_is_delivered_once_on_redis() {
    let Some(redis) = TestRedis::get("e2e_webhooks backlog") else {
        return;
    };
    let prefix = prefix("webhooks-backlog");
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.set_delay(100);
    let config = hook_config(dir.path(), &receiver, 10);
    let a = Server::start_on_redis(dir.path(), "a", &config, &redis.url, &prefix, &[]).await;
    let _b = Server::start_on_redis(dir.path(), "b", &config, &redis.url, &prefix, &[]).await;
    const BURST: usize = 140;
    let burst = (0..BURST).map(|_| a.issue(json!({"procedures": ["shoumei"]})));
    futures_util::future::join_all(burst).await;
    let due = all_delivered(&a, &receiver, Duration::from_secs(45)).await;
    assert_eq!(due.len(), BURST, "{due:?}");
    receiver.assert_no_problems();
    let accepted = receiver.accepted();
    assert!(
        duplicates(&accepted).is_empty(),
        "sent twice though no instance stopped: {:?}",
        duplicates(&accepted)
    );
    assert_matches_due(&receiver, &due);
    assert_increasing(
        &accepted.iter().map(|d| d.id).collect::<Vec<_>>(),
        "deliveries",
    );
}

// ---------------------------------------------------------------------------------------------
// 6. The event stream
// ---------------------------------------------------------------------------------------------

/// Fields the public form never has, at any depth.
const PRIVATE: &[&str] = &["token", "code", "idempotency_key", "by", "link_code"];

fn private_keys(value: &Value, path: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if PRIVATE.contains(&k.as_str()) {
                    found.push(format!("{path}.{k}"));
                }
                private_keys(v, &format!("{path}.{k}"), found);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| private_keys(v, &format!("{path}[]"), found)),
        _ => {}
    }
}

/// A Server-Sent Events connection to the event stream, read as it comes.
struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Sse {
    async fn open(server: &Server, query: &str, last_event_id: Option<u64>) -> Sse {
        let mut req = server
            .http
            .get(server.url(&format!("/api/v1/sites/chuo/events{query}")))
            .bearer_auth(ANALYST)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Sse {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next event's `id` and `data` (keep-alive comments skipped); panics after 10 s.
    async fn next(&mut self) -> (u64, Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
                let frame = String::from_utf8(frame).unwrap();
                let mut id = None;
                let mut data = Vec::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<u64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if let (Some(id), false) = (id, data.is_empty()) {
                    return (id, serde_json::from_str(&data.join("\n")).unwrap());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream goes on");
            self.buf.extend_from_slice(&chunk);
        }
    }
}

/// The analysts' stream. NDJSON lists every event logged so far, in order (seq 1, 2, …), then
/// ends; each line has `seq`, `kind` and `at`, and no credential (phone tokens, idempotency keys,
/// booking codes) or staff name at any depth. Server-Sent Events give the same lines live; a
/// client that drops and comes back with `Last-Event-ID` gets the rest with no gap and no
/// duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_lists_every_event_in_order_without_credentials_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let mut tickets = Vec::new();
    tickets.push(server.issue(json!({"procedures": ["tennyu"]})).await);
    // A kiosk's press with an idempotency key.
    let resp = server
        .http
        .post(server.url("/api/v1/sites/chuo/tickets"))
        .bearer_auth(DISPENSER)
        .header("idempotency-key", "press-8f3a2c61e0")
        .json(&json!({"procedures": ["tenkyo"], "dispenser": "kiosk-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    tickets.push(resp.json::<Value>().await.unwrap()["ticket"].clone());
    tickets.push(server.issue(json!({"procedures": ["shoumei"]})).await);
    // A call out of order (with who called, for the audit trail), and a whole visit.
    let (code, reply) = server
        .counter("6", "call", Some(json!({"number": tickets[2]["number"]})))
        .await;
    assert_eq!(code, 200, "{reply}");
    serve(&server, "1", json!({})).await;
    let slots = next_slots(&server).await;
    let (code, booked) = server
        .post(
            "/api/v1/sites/chuo/reservations",
            None,
            Some(json!({"procedures": ["tennyu"], "slot": slots[0]})),
        )
        .await;
    assert_eq!(code, 201, "{booked}");
    let booking = booked["reservation"]["code"].as_str().unwrap().to_owned();

    let last = hooks_status(&server).await["seq"].as_u64().unwrap();
    assert!(last >= 8, "{last}");
    let (raw, events) = ndjson(&server, "?from_seq=0", Some("application/x-ndjson")).await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "{raw}");
    for e in &events {
        assert!(e["kind"].is_string(), "{e}");
        instant(&e["at"]);
        let mut found = Vec::new();
        private_keys(e, "", &mut found);
        assert!(found.is_empty(), "{found:?} in {e}");
    }
    for t in &tickets {
        assert!(!raw.contains(t["token"].as_str().unwrap()), "{raw}");
    }
    assert!(!raw.contains("press-8f3a2c61e0"), "{raw}");
    assert!(!raw.contains(&booking), "{raw}");
    let kinds: BTreeSet<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in [
        "ticket_issued",
        "ticket_called",
        "service_started",
        "step_completed",
        "reservation_made",
    ] {
        assert!(kinds.contains(kind), "{kind} missing: {kinds:?}");
    }
    let made = events
        .iter()
        .find(|e| e["kind"] == "reservation_made")
        .unwrap();
    assert_eq!(made["reservation"].as_str().unwrap().len(), 16, "{made}");
    let issued: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "ticket_issued")
        .collect();
    assert_eq!(issued.len(), 3);
    for (e, t) in issued.iter().zip(&tickets) {
        assert_eq!(e["ticket"], t["id"], "{e}");
        assert_eq!(e["number"], t["number"], "{e}");
    }

    // Without an Accept header: the same NDJSON. After a seq: only what follows.
    let (plain, _) = ndjson(&server, "?from_seq=0", None).await;
    assert_eq!(plain, raw);
    let (_, tail) = ndjson(&server, &format!("?from_seq={}", last - 2), None).await;
    assert_eq!(tail, events[events.len() - 2..].to_vec());
    let (nothing, _) = ndjson(&server, &format!("?from_seq={last}"), None).await;
    assert_eq!(nothing, "");
    // Analysts only; a bad query is refused.
    let (code, _) = server.get("/api/v1/sites/chuo/events", Some(COUNTER)).await;
    assert_eq!(code, 403);
    let (code, _) = server.get("/api/v1/sites/chuo/events", None).await;
    assert_eq!(code, 401);
    let (code, _) = server
        .get("/api/v1/sites/chuo/events?from_seq=x", Some(ANALYST))
        .await;
    assert_eq!(code, 422);

    // Server-Sent Events: the same lines with `id:` the seq, from the start.
    let mut sse = Sse::open(&server, "?from_seq=0", None).await;
    for expected in &events[..3] {
        let (id, data) = sse.next().await;
        assert_eq!(json!(id), expected["seq"]);
        assert_eq!(&data, expected);
    }
    drop(sse);
    // Events while away; back with Last-Event-ID (it takes the place of `from_seq`): the rest,
    // no gap, no duplicate, then live.
    server.issue(json!({"procedures": ["tennyu"]})).await;
    server.issue(json!({"procedures": ["tennyu"]})).await;
    let now = hooks_status(&server).await["seq"].as_u64().unwrap();
    assert_eq!(now, last + 2);
    let mut sse = Sse::open(&server, "?from_seq=0", Some(3)).await;
    let mut ids = Vec::new();
    while ids.last() != Some(&now) {
        let (id, data) = sse.next().await;
        assert_eq!(data["seq"], id, "{data}");
        if let Some(e) = events.iter().find(|e| e["seq"] == id) {
            assert_eq!(&data, e);
        }
        ids.push(id);
    }
    assert_eq!(ids, (4..=now).collect::<Vec<_>>());
    let live = server.issue(json!({"procedures": ["shoumei"]})).await;
    let (id, data) = sse.next().await;
    assert_eq!(id, now + 1);
    assert_eq!(
        (&data["kind"], &data["ticket"]),
        (&json!("ticket_issued"), &live["id"])
    );
    assert!(data.get("token").is_none(), "{data}");
}

// ---------------------------------------------------------------------------------------------
// 7. A booked resident's ticket in the stream and the webhooks
// ---------------------------------------------------------------------------------------------

/// The demo configuration in a zone where it is midday, bookable all day in 5-minute slots (so
/// a slot starts within minutes of now), with the subscriber.
fn bookable_now_config(dir: &Path, receiver: &Receiver) -> PathBuf {
    let path = midday_demo_config(
        dir,
        "bookable.toml",
        "weekdays = [\"00:00-23:55\"]\nsat = [\"00:00-23:55\"]\nsun = [\"00:00-23:55\"]\n\
         holidays = \"open\"\nclose_when_full = false",
        Some(
            "queues = [\"onestop\"]\nslot_min = 5\ncheck_in_early_min = 15\n\
             check_in_late_min = 10\nhorizon_days = 2",
        ),
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&hook_lines(receiver, 4));
    std::fs::write(&path, text).unwrap();
    path
}

/// A booking checked in at the kiosk: its ticket's `ticket.issued` says `booked: true`, and
/// neither the webhook nor the event stream (NDJSON or SSE) carries the booking code, the
/// booking's only credential — not even inside the issued ticket's booking details.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_in_booking_never_shows_its_code_in_the_stream_or_the_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let config = bookable_now_config(dir.path(), &receiver);
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    let today = (Utc::now() + chrono::Duration::hours(midday_offset_h()))
        .date_naive()
        .to_string();
    let (code, day) = server
        .get(
            &format!("/api/v1/sites/chuo/reservations/slots?date={today}&queue=onestop"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{day}");
    let next = day["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["free"].as_u64().unwrap() > 0)
        .expect("a slot starting soon")["start"]
        .clone();
    let (code, booked) = server
        .post(
            "/api/v1/sites/chuo/reservations",
            None,
            Some(json!({"procedures": ["tennyu"], "slot": next})),
        )
        .await;
    assert_eq!(code, 201, "{booked}");
    let booking = booked["reservation"]["code"].as_str().unwrap().to_owned();
    let (code, checked) = server
        .post(
            &format!("/api/v1/sites/chuo/reservations/{booking}/check-in"),
            Some(DISPENSER),
            Some(json!({"dispenser": "kiosk-1", "lang": "ja"})),
        )
        .await;
    assert_eq!(code, 201, "{checked}");
    let ticket = checked["ticket"].clone();

    // The webhook: booked, without the code.
    let due = all_delivered(&server, &receiver, Duration::from_secs(20)).await;
    receiver.assert_no_problems();
    assert_matches_due(&receiver, &due);
    let issued = receiver
        .accepted()
        .into_iter()
        .find(|d| d.kind == "ticket.issued")
        .expect("ticket.issued");
    assert_eq!(issued.body["data"]["ticket"], ticket["id"]);
    assert_eq!(issued.body["data"]["booked"], true, "{}", issued.body);
    for d in receiver.accepted() {
        let raw = String::from_utf8_lossy(&d.raw).into_owned();
        assert!(!raw.contains(&booking), "{raw}");
    }

    // The event stream: the issued ticket's line has no code at any depth.
    let (raw, events) = ndjson(&server, "?from_seq=0", None).await;
    let line = events
        .iter()
        .find(|e| e["kind"] == "ticket_issued")
        .expect("ticket_issued");
    let mut found = Vec::new();
    private_keys(line, "", &mut found);
    assert!(found.is_empty(), "{found:?} in {line}");
    assert!(
        !raw.contains(&booking),
        "the booking code {booking} is in the event stream:\n{raw}"
    );
    let mut sse = Sse::open(&server, "?from_seq=0", None).await;
    let last = events.last().unwrap()["seq"].as_u64().unwrap();
    loop {
        let (id, data) = sse.next().await;
        assert!(!data.to_string().contains(&booking), "{data}");
        if id == last {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A receiver behind HTTPS with a certificate of the city's own CA
// ---------------------------------------------------------------------------------------------

// A test CA and a certificate for 127.0.0.1 it signed (P-256, valid for a century), as a city's
// internal CA would issue to its counter-support system.
const TEST_CA: &str = concat!(
    "-----BEGIN CERTIFICATE-----\n",
    "MIIBlDCCATugAwIBAgIUWrBolEUrNAp5UBvW2BY2WSDu1t4wCgYIKoZIzj0EAwIw\n",
    "FzEVMBMGA1UEAwwMVGVzdCBDaXR5IENBMCAXDTI2MTIwNzEyMjgyM1oYDzIxMjYx\n",
    "MTEzMTIyODIzWjAXMRUwEwYDVQQDDAxUZXN0IENpdHkgQ0EwWTATBgcqhkjOPQIB\n",
    "BggqhkjOPQMBBwNCAARybA8LDLe1x5zH2zRfD51VGT+o+XluoBhQlqvnRcpxC5Jy\n",
    "zuF0zrBuQ+4DHLXfAIPv82C6krR0Zz54yUBsiPhIo2MwYTAdBgNVHQ4EFgQUqCb1\n",
    "HmA5/tnceRNZSq3vaJKA+74wHwYDVR0jBBgwFoAUqCb1HmA5/tnceRNZSq3vaJKA\n",
    "+74wDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwCgYIKoZIzj0EAwID\n",
    "RwAwRAIgCsHLeiPtJdbsZVN0t47WosjHpLjVPGw7bmUrH4512iACIAaF5nXywZf7\n",
    "zgp21zMykAhonfJTZVa+gaGvItbF9h4R\n",
    "-----END CERTIFICATE-----\n",
);
const TEST_LEAF: &str = concat!(
    "-----BEGIN CERTIFICATE-----\n",
    "MIIBtzCCAV2gAwIBAgIUErsSyYvS4amodRGdjIcgS/LTNh0wCgYIKoZIzj0EAwIw\n",
    "FzEVMBMGA1UEAwwMVGVzdCBDaXR5IENBMCAXDTI2MTIwNzEyMjgyM1oYDzIxMjYx\n",
    "MTEzMTIyODIzWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggq\n",
    "hkjOPQMBBwNCAAQJoflDAHYmZ73vQPIImElBujdyajcriWkkhzHEhMb8BSuHBYCf\n",
    "C8Dn6ppwA/Fhiphen/er91D2H0Vggl10g82so4GHMIGEMA8GA1UdEQQIMAaHBH8A\n",
    "AAEwDAYDVR0TAQH/BAIwADATBgNVHSUEDDAKBggrBgEFBQcDATAOBgNVHQ8BAf8E\n",
    "BAMCB4AwHQYDVR0OBBYEFD7ojKva2RinysdoTpsW9PiV8NgHMB8GA1UdIwQYMBaA\n",
    "FKgm9R5gOf7Z3HkTWUqt72iSgPu+MAoGCCqGSM49BAMCA0gAMEUCIDbHuqL+IBiq\n",
    "M5Wq9zowEdYcpMwTNvMILJK5ukN1yvKEAiEA39myr5x0Muh2tyaD7KszUxsKHOQB\n",
    "NnEiuArL7Bu1Fac=\n",
    "-----END CERTIFICATE-----\n",
);
const TEST_LEAF_KEY: &str = concat!(
    "-----BEGIN PRIVATE KEY-----\n",
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8qpGwNobgpeJ2NAC\n",
    "5JrmpaFxXF/abF0MSFY/Ft6N6tehRANCAAQJoflDAHYmZ73vQPIImElBujdyajcr\n",
    "iWkkhzHEhMb8BSuHBYCfC8Dn6ppwA/Fhiphen/er91D2H0Vggl10g82s\n",
    "-----END PRIVATE KEY-----\n",
);

/// Python's HTTPS server with that certificate: it writes each request's event id to a file, one
/// per line, and answers 200.
struct HttpsReceiver {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl HttpsReceiver {
    fn start(dir: &Path) -> HttpsReceiver {
        std::fs::write(dir.join("leaf.pem"), TEST_LEAF).unwrap();
        std::fs::write(dir.join("leaf.key"), TEST_LEAF_KEY).unwrap();
        let log = dir.join("https-received.txt");
        let script = dir.join("https_receiver.py");
        std::fs::write(
            &script,
            r#"
import http.server, ssl, sys
log = open(sys.argv[3], "a")
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        log.write(self.headers["Madoguchi-Event-Id"] + "\n")
        log.flush()
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#,
        )
        .unwrap();
        let mut child = std::process::Command::new("python3")
            .arg(&script)
            .arg(dir.join("leaf.pem"))
            .arg(dir.join("leaf.key"))
            .arg(&log)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the HTTPS receiver");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().expect("the receiver prints its port");
        HttpsReceiver { child, port, log }
    }

    fn received(&self) -> Vec<u64> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }
}

impl Drop for HttpsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ca_file`: a receiver whose certificate comes from the city's own CA is reached over HTTPS;
/// the same receiver without it is refused by the certificate check, and the floor sees why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_with_a_certificate_of_the_citys_own_ca_is_reached_with_ca_file() {
    use_secret();
    let dir = tempfile::tempdir().unwrap();
    let receiver = HttpsReceiver::start(dir.path());
    let ca = dir.path().join("city-ca.pem");
    std::fs::write(&ca, TEST_CA).unwrap();
    let extra = format!(
        r#"
[[sites.webhooks]]
name = "with-ca"
url = "https://127.0.0.1:{port}/hook"
secret_env = "{SECRET_ENV}"
events = ["ticket.issued"]
ca_file = {ca:?}

[[sites.webhooks]]
name = "without-ca"
url = "https://127.0.0.1:{port}/hook"
secret_env = "{SECRET_ENV}"
events = ["ticket.issued"]
max_attempts = 2
backoff_initial_ms = 50
"#,
        port = receiver.port,
        ca = ca.display().to_string(),
    );
    let config = demo_config_with(dir.path(), "tls.toml", &extra);
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    server.issue(json!({"procedures": ["tennyu"]})).await;
    let seq = seq_of_last(&server).await;
    let dead = eventually(
        "the subscriber without the CA gives up",
        Duration::from_secs(30),
        || async {
            let status = hooks_status(&server).await;
            let dead = status["dead_letters"].as_array().unwrap().clone();
            (!dead.is_empty()).then_some(dead)
        },
    )
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["hook"], "without-ca");
    let error = dead[0]["error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("certificate"),
        "the reason is shown: {error}"
    );
    // The subscriber with the CA delivered the same event, once.
    eventually("delivered over HTTPS", Duration::from_secs(30), || async {
        (receiver.received().contains(&seq)).then_some(())
    })
    .await;
    let received = receiver.received();
    assert_eq!(
        received.iter().filter(|id| **id == seq).count(),
        1,
        "{received:?}"
    );
    let status = hooks_status(&server).await;
    let with_ca = status["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "with-ca")
        .unwrap()
        .clone();
    assert_eq!(with_ca["delivered_seq"].as_u64(), Some(seq), "{with_ca}");
}

/// The seq of the demo site's last event.
async fn seq_of_last(server: &Server) -> u64 {
    hooks_status(server).await["seq"].as_u64().unwrap()
}
