//! Near-turn notices against the real server: a resident opts in on the phone page by e-mail (a
//! real SMTP server, Python's aiosmtpd, receives it) or with a link code for the city's LINE or
//! SMS gateway (a real HTTP receiver checks the signed webhook); the notice goes out once, when
//! the ticket becomes next in line, never for a ticket called before its turn came near, and not
//! after it was withdrawn. The address is then in no file of the data directory, nor in the log,
//! the event stream, the metrics or the visits CSV. A booking's reminder: when it goes out, and
//! its address leaves with the cancelled booking.

#[path = "common/booking.rs"]
mod booking;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use booking::{bookable_weekday, free_starts};
use chrono::TimeZone;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(30);
const SECRET_ENV: &str = "MADOGUCHI_TEST_NOTICE_SECRET";
const SECRET: &str = "notice-gateway-secret-0123456789";

/// The site's rule: a notice when the ticket is next in line (and the wait no help).
const RULE: &str = "[sites.notices]\nplaces = 1\nminutes = 0\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `[notices]` with the mail server on `port` (plain SMTP on the loopback).
fn smtp_toml(port: u16) -> String {
    format!(
        "[notices]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_security = \"none\"\n\
         from = \"中央区役所 <madoguchi@city.example.jp>\"\nreminder_time = \"17:00\"\n"
    )
}

/// The gateway's subscriber of `notice.near_turn`.
fn gateway_toml(url: &str) -> String {
    format!(
        "[[sites.webhooks]]\nname = \"line\"\nurl = \"{url}\"\nsecret_env = \"{SECRET_ENV}\"\n\
         events = [\"notice.near_turn\"]\n"
    )
}

// --- the mail server ------------------------------------------------------------------------

/// Keeps every message it takes as one JSON file (written whole, then renamed) in the inbox.
const SMTP_SINK: &str = r#"
import email, email.policy, json, os, sys, threading
from aiosmtpd.controller import Controller

port, inbox = int(sys.argv[1]), sys.argv[2]
count = [0]

class Keep:
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        count[0] += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "body": body.get_content() if body is not None else "",
        }
        path = os.path.join(inbox, "%06d.json" % count[0])
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.replace(path + ".tmp", path)
        return "250 Message accepted for delivery"

controller = Controller(Keep(), hostname="127.0.0.1", port=port)
controller.start()
print("listening on", port, flush=True)
threading.Event().wait()
"#;

/// A real SMTP server (aiosmtpd) on a free port of the loopback, killed on drop.
struct MailSink {
    child: Child,
    port: u16,
    inbox: PathBuf,
}

impl MailSink {
    /// `None` (the test is skipped) when aiosmtpd is missing outside CI; under CI it must run.
    async fn start(dir: &Path) -> Option<MailSink> {
        let present = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            assert!(
                std::env::var_os("CI").is_none(),
                "Python's aiosmtpd is needed for the e-mail notices' tests (.ci/run installs it)"
            );
            eprintln!(
                "skipped: Python's aiosmtpd is not installed (python3 -m pip install aiosmtpd); \
                 CI installs it and runs this test"
            );
            return None;
        }
        let script = dir.join("smtp_sink.py");
        std::fs::write(&script, SMTP_SINK).unwrap();
        let inbox = dir.join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        let log_path = dir.join("smtp_sink.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let port = free_port();
        let child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&inbox)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start python3");
        let mut sink = MailSink { child, port, inbox };
        eventually("the SMTP server to listen", WAIT, || {
            if let Some(status) = sink.child.try_wait().unwrap() {
                panic!(
                    "the SMTP server exited ({status}):\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            async move { up.then_some(()) }
        })
        .await;
        Some(sink)
    }

    /// Every message taken so far, in order.
    fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.inbox)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// The messages to `address`.
    fn to(&self, address: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| {
                m["rcpt_tos"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|a| a == address))
            })
            .collect()
    }

    /// Waits for the first message to `address`.
    async fn first_to(&self, address: &str) -> Value {
        eventually(&format!("an e-mail to {address}"), WAIT, || {
            let got = self.to(address).into_iter().next();
            async move { got }
        })
        .await
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- the gateway ----------------------------------------------------------------------------

/// What the gateway received: headers and body of each POST.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

impl Received {
    fn all(&self) -> Vec<(HeaderMap, Bytes)> {
        self.0.lock().unwrap().clone()
    }
}

async fn receive(State(got): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    got.0.lock().unwrap().push((headers, body));
    StatusCode::OK
}

/// A real HTTP receiver on a free port of the loopback: the city's LINE or SMS gateway.
async fn gateway() -> (String, Received) {
    let got = Received::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Madoguchi-Signature: t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` holds for `body`.
fn signed(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers
        .get("madoguchi-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes()) == v1
}

/// The `notice.near_turn` payloads received, with their signatures checked.
fn near_turn_payloads(got: &Received) -> Vec<Value> {
    got.all()
        .iter()
        .map(|(headers, body)| {
            assert!(
                signed(headers, body),
                "a bad signature: {headers:?} {}",
                String::from_utf8_lossy(body)
            );
            let mut tampered = body.to_vec();
            tampered.push(b' ');
            assert!(
                !signed(headers, &tampered),
                "the check must notice a change"
            );
            assert_eq!(headers["madoguchi-event"], "notice.near_turn");
            serde_json::from_slice::<Value>(body).unwrap()
        })
        .collect()
}

// --- the site -------------------------------------------------------------------------------

/// Only counter 1 stays open: estimated waits are then long enough that only the places count.
async fn only_counter_1(server: &Server) {
    for n in 2..=9 {
        let (status, reply) = server
            .counter(&n.to_string(), "close", Some(json!({})))
            .await;
        assert_eq!(status, 200, "closing counter {n}: {reply}");
    }
}

struct Issued {
    number: String,
    token: String,
}

async fn issue(server: &Server) -> Issued {
    let t = server.issue(json!({"procedures": ["tennyu"]})).await;
    Issued {
        number: t["number"].as_str().unwrap().to_owned(),
        token: t["token"].as_str().unwrap().to_owned(),
    }
}

async fn issue_numbered(server: &Server, number: &str) -> Issued {
    let t = issue(server).await;
    assert_eq!(t.number, number);
    t
}

async fn notice(server: &Server, token: &str, body: Value) -> (u16, Value) {
    server
        .post(&format!("/api/v1/tickets/{token}/notice"), None, Some(body))
        .await
}

async fn email_notice(server: &Server, token: &str, address: &str) -> Value {
    let (status, reply) =
        notice(server, token, json!({"channel": "email", "email": address})).await;
    assert_eq!(status, 200, "{reply}");
    reply["ticket"].clone()
}

async fn withdraw(server: &Server, token: &str) -> (u16, Value) {
    server
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/tickets/{token}/notice"),
            None,
            None,
        )
        .await
}

/// The ticket as its phone page shows it.
async fn phone(server: &Server, token: &str) -> Value {
    let (status, reply) = server.get(&format!("/api/v1/tickets/{token}"), None).await;
    assert_eq!(status, 200, "{reply}");
    reply["ticket"].clone()
}

async fn at_counter_1(server: &Server, action: &str, body: Value) -> Value {
    let (status, reply) = server.counter("1", action, Some(body)).await;
    assert_eq!(status, 200, "{action}: {reply}");
    reply
}

/// Counter 1 calls the next ticket; its number.
async fn call_next(server: &Server) -> String {
    let reply = at_counter_1(server, "call-next", json!({})).await;
    reply["ticket"]["number"].as_str().unwrap().to_owned()
}

/// Counter 1 serves its called ticket to the end of the visit.
async fn serve(server: &Server) {
    at_counter_1(server, "start", json!({})).await;
    at_counter_1(server, "complete", json!({})).await;
}

async fn text(server: &Server, path: &str, token: &str) -> String {
    let resp = server
        .http
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.text().await.unwrap()
}

/// The site's event stream from the start (NDJSON, what is logged now).
async fn events_text(server: &Server) -> String {
    text(server, "/api/v1/sites/chuo/events?from_seq=0", ANALYST).await
}

/// `near_turn_noticed` events of ticket `number` in the stream.
fn noticed(events: &str, number: &str) -> usize {
    events
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "near_turn_noticed" && e["number"] == number)
        .count()
}

/// Files under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

fn only_in_contacts(files: &[PathBuf]) -> bool {
    !files.is_empty()
        && files.iter().all(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("contacts.db"))
        })
}

/// Waits until no file of the data directory holds `address`.
async fn gone_from_files(data: &Path, address: &str) {
    eventually(
        &format!("{address} to leave every file of the data directory"),
        WAIT,
        || {
            let left = files_holding(data, address);
            async move { left.is_empty().then_some(()) }
        },
    )
    .await;
}

/// The address is in none of what the server shows or prints: log, events, metrics, CSV.
async fn nowhere_outside(server: &Server, address: &str) {
    let shown = [
        ("the log", server.output()),
        ("the event stream", events_text(server).await),
        ("the metrics", server.metrics().await),
        (
            "the visits CSV",
            text(server, "/api/v1/sites/chuo/visits.csv", ANALYST).await,
        ),
    ];
    for (what, text) in shown {
        assert!(!text.contains(address), "{address} in {what}:\n{text}");
    }
}

// --- the tests ------------------------------------------------------------------------------

#[tokio::test]
async fn an_email_goes_out_once_when_the_ticket_becomes_next_and_the_address_is_then_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mail) = MailSink::start(dir.path()).await else {
        return;
    };
    let config = demo_config_with(
        dir.path(),
        "notices.toml",
        &format!("{}\n{RULE}", smtp_toml(mail.port)),
    );
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &config).await;
    only_counter_1(&server).await;
    issue_numbered(&server, "1").await;
    issue_numbered(&server, "2").await;
    let third = issue_numbered(&server, "3").await;

    let address = "resident.no3@e2e-notices.example.jp";
    let ticket = email_notice(&server, &third.token, address).await;
    assert_eq!(ticket["number"], "3");
    assert_eq!(ticket["position"], 3, "{ticket}");
    assert_eq!(
        ticket["notices"],
        json!({"places": 1, "minutes": 0, "channels": ["email"]})
    );
    assert_eq!(ticket["notice"], json!({"channel": "email", "sent": false}));
    // The address is kept in the side table only: never in the event log's file.
    let holding = files_holding(&data, address);
    assert!(only_in_contacts(&holding), "{holding:?}");

    // The first is called: the third is second in line, no notice.
    assert_eq!(call_next(&server).await, "1");
    let view = phone(&server, &third.token).await;
    assert_eq!(view["position"], 2, "{view}");
    assert_eq!(view["notice"]["sent"], false, "{view}");
    assert_eq!(noticed(&events_text(&server).await, "3"), 0);
    serve(&server).await;

    // The second is called: the third is next, one e-mail.
    assert_eq!(call_next(&server).await, "2");
    let sent = mail.first_to(address).await;
    let subject = sent["subject"].as_str().unwrap();
    assert!(subject.contains("Your turn is near (No. 3)"), "{sent}");
    assert!(subject.contains("まもなく順番です"), "{sent}");
    assert!(subject.contains("中央区役所"), "{sent}");
    assert!(sent["from"]
        .as_str()
        .unwrap()
        .contains("madoguchi@city.example.jp"));
    assert!(
        sent["body"].as_str().unwrap().contains("受付番号 3 番"),
        "{sent}"
    );
    let view = phone(&server, &third.token).await;
    assert_eq!(view["position"], 1, "{view}");
    assert_eq!(view["notice"]["sent"], true, "{view}");
    assert_eq!(noticed(&events_text(&server).await, "3"), 1);
    // Sent: the address is deleted, and asking again is refused (and keeps nothing).
    gone_from_files(&data, address).await;
    let again = "resident.no3.again@e2e-notices.example.jp";
    let (status, reply) = notice(
        &server,
        &third.token,
        json!({"channel": "email", "email": again}),
    )
    .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (409, Some("notice_sent")),
        "{reply}"
    );
    assert!(files_holding(&data, again).is_empty());

    // The rest of the visits: no second e-mail.
    serve(&server).await;
    assert_eq!(call_next(&server).await, "3");
    let (status, reply) = notice(
        &server,
        &third.token,
        json!({"channel": "email", "email": again}),
    )
    .await;
    assert_eq!(status, 409, "called: {reply}");
    serve(&server).await;
    // A fourth ticket asks while next in line: told at once. The notifier follows the log in
    // order, so once its e-mail is here every event before it was handled.
    let fourth = issue_numbered(&server, "4").await;
    let other = "resident.no4@e2e-notices.example.jp";
    email_notice(&server, &fourth.token, other).await;
    let sent = mail.first_to(other).await;
    assert!(
        sent["subject"]
            .as_str()
            .unwrap()
            .contains("Your turn is near (No. 4)"),
        "{sent}"
    );
    assert_eq!(mail.to(address).len(), 1, "{:?}", mail.messages());
    assert_eq!(mail.messages().len(), 2, "{:?}", mail.messages());
    let events = events_text(&server).await;
    assert_eq!((noticed(&events, "3"), noticed(&events, "4")), (1, 1));

    // After the visits: the addresses are in no file and nowhere the server shows them.
    eventually("the three visits in the CSV", WAIT, || async {
        let csv = text(&server, "/api/v1/sites/chuo/visits.csv", ANALYST).await;
        (csv.lines().filter(|l| !l.trim().is_empty()).count() > 3).then_some(())
    })
    .await;
    assert!(
        server.output().contains("near-turn notice sent by e-mail"),
        "the log is read:\n{}",
        server.output()
    );
    for a in [address, again, other] {
        gone_from_files(&data, a).await;
        nowhere_outside(&server, a).await;
    }
}

#[tokio::test]
async fn a_ticket_next_when_it_asks_is_told_at_once_and_one_called_before_its_turn_never() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mail) = MailSink::start(dir.path()).await else {
        return;
    };
    let config = demo_config_with(
        dir.path(),
        "notices.toml",
        &format!("{}\n{RULE}", smtp_toml(mail.port)),
    );
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &config).await;
    only_counter_1(&server).await;
    let first = issue_numbered(&server, "1").await;
    issue_numbered(&server, "2").await;
    let third = issue_numbered(&server, "3").await;

    // Next in line when it asks: the notice goes out right after.
    let a1 = "resident.no1@e2e-notices.example.jp";
    email_notice(&server, &first.token, a1).await;
    let sent = mail.first_to(a1).await;
    assert!(
        sent["subject"]
            .as_str()
            .unwrap()
            .contains("Your turn is near (No. 1)"),
        "{sent}"
    );
    assert_eq!(phone(&server, &first.token).await["notice"]["sent"], true);

    // The third asks while third in line, and is called out of order before its turn came near.
    let a3 = "resident.no3@e2e-notices.example.jp";
    email_notice(&server, &third.token, a3).await;
    let reply = at_counter_1(&server, "call", json!({"number": "3"})).await;
    assert_eq!(reply["ticket"]["number"], "3", "{reply}");
    // Not there: after the second call a no-show puts it back at the end of the line.
    at_counter_1(&server, "recall", json!({})).await;
    at_counter_1(&server, "no-show", json!({})).await;
    let view = phone(&server, &third.token).await;
    assert_eq!(
        (&view["status"], &view["position"]),
        (&json!("waiting"), &json!(3)),
        "{view}"
    );
    assert_eq!(view["notice"]["sent"], false, "{view}");
    // Asking again does not make it due either (whether the answer is 200 or 409).
    let (status, reply) = notice(
        &server,
        &third.token,
        json!({"channel": "email", "email": a3}),
    )
    .await;
    assert!(matches!(status, 200 | 409), "{status} {reply}");

    // It comes to the head of the line: no notice, ever.
    assert_eq!(call_next(&server).await, "1");
    serve(&server).await;
    assert_eq!(call_next(&server).await, "2");
    let view = phone(&server, &third.token).await;
    assert_eq!(view["position"], 1, "{view}");
    assert_eq!(view["notice"]["sent"], false, "{view}");
    assert_eq!(noticed(&events_text(&server).await, "3"), 0);
    serve(&server).await;
    assert_eq!(call_next(&server).await, "3");
    serve(&server).await;
    // A fourth ticket asks while next: once its e-mail is here, the notifier handled all before.
    let fourth = issue_numbered(&server, "4").await;
    let a4 = "resident.no4@e2e-notices.example.jp";
    email_notice(&server, &fourth.token, a4).await;
    mail.first_to(a4).await;
    assert!(mail.to(a3).is_empty(), "{:?}", mail.messages());
    assert_eq!(mail.messages().len(), 2, "{:?}", mail.messages());
    assert_eq!(noticed(&events_text(&server).await, "3"), 0);
    // Its visit ended: its address, never used, is deleted all the same.
    gone_from_files(&data, a3).await;
    nowhere_outside(&server, a3).await;
}

#[tokio::test]
async fn a_link_code_goes_to_the_gateway_once_signed_when_the_ticket_becomes_next() {
    std::env::set_var(SECRET_ENV, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let (url, got) = gateway().await;
    let config = demo_config_with(
        dir.path(),
        "link.toml",
        &format!("{RULE}\n{}", gateway_toml(&url)),
    );
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    only_counter_1(&server).await;
    issue_numbered(&server, "1").await;
    let second = issue_numbered(&server, "2").await;

    // No mail server: e-mail is not offered.
    let (status, reply) = notice(
        &server,
        &second.token,
        json!({"channel": "email", "email": "resident@e2e-notices.example.jp"}),
    )
    .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("no_notices")),
        "{reply}"
    );
    let (status, reply) = notice(
        &server,
        &second.token,
        json!({"channel": "link", "email": "resident@e2e-notices.example.jp"}),
    )
    .await;
    assert_eq!(status, 422, "{reply}");

    let (status, reply) = notice(&server, &second.token, json!({"channel": "link"})).await;
    assert_eq!(status, 200, "{reply}");
    let ticket = &reply["ticket"];
    assert_eq!(ticket["position"], 2, "{ticket}");
    assert_eq!(ticket["notices"]["channels"], json!(["link"]), "{ticket}");
    assert_eq!(ticket["notice"]["channel"], "link", "{ticket}");
    assert_eq!(ticket["notice"]["sent"], false, "{ticket}");
    let code = ticket["notice"]["link_code"]
        .as_str()
        .expect("a link code")
        .to_owned();
    assert!(code.len() >= 6, "{code}");
    assert_eq!(
        phone(&server, &second.token).await["notice"]["link_code"],
        code.as_str()
    );
    assert_eq!(noticed(&events_text(&server).await, "2"), 0);

    // The first is called: the second is next, the gateway is told.
    assert_eq!(call_next(&server).await, "1");
    eventually("the gateway's notice", WAIT, || {
        let n = got.all().len();
        async move { (n > 0).then_some(()) }
    })
    .await;
    let payloads = near_turn_payloads(&got);
    let p = &payloads[0];
    assert_eq!(p["type"], "notice.near_turn", "{p}");
    assert_eq!(p["site"], "chuo", "{p}");
    let d = &p["data"];
    assert_eq!(d["link_code"], code.as_str(), "{p}");
    assert_eq!(d["number"], "2", "{p}");
    assert_eq!(d["place"], 1, "{p}");
    assert!(d["ticket"].is_string(), "{p}");
    assert!(d.get("lang").is_some(), "{p}");
    assert!(d["estimated_wait_s"].is_u64(), "{p}");
    assert!(
        d["message"]["ja"]
            .as_str()
            .unwrap()
            .contains("受付番号 2 番"),
        "{p}"
    );
    assert!(
        d["message"]["en"].as_str().unwrap().contains("Ticket 2"),
        "{p}"
    );
    assert_eq!(phone(&server, &second.token).await["notice"]["sent"], true);

    // The rest of its visit: nothing more. A third ticket asks while next: once its notice is
    // here, every event before it was delivered (in order).
    serve(&server).await;
    assert_eq!(call_next(&server).await, "2");
    serve(&server).await;
    let third = issue_numbered(&server, "3").await;
    let (status, reply) = notice(&server, &third.token, json!({"channel": "link"})).await;
    assert_eq!(status, 200, "{reply}");
    let third_code = reply["ticket"]["notice"]["link_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(third_code, code);
    eventually("the third ticket's notice", WAIT, || {
        let n = got.all().len();
        async move { (n > 1).then_some(()) }
    })
    .await;
    let payloads = near_turn_payloads(&got);
    let codes: Vec<&str> = payloads
        .iter()
        .map(|p| p["data"]["link_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, [code.as_str(), third_code.as_str()], "{payloads:?}");
    let events = events_text(&server).await;
    assert_eq!((noticed(&events, "2"), noticed(&events, "3")), (1, 1));
}

#[tokio::test]
async fn a_withdrawn_notice_deletes_the_address_at_once_and_never_goes_out() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mail) = MailSink::start(dir.path()).await else {
        return;
    };
    let config = demo_config_with(
        dir.path(),
        "notices.toml",
        &format!("{}\n{RULE}", smtp_toml(mail.port)),
    );
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &config).await;
    only_counter_1(&server).await;
    issue_numbered(&server, "1").await;
    issue_numbered(&server, "2").await;
    let third = issue_numbered(&server, "3").await;

    let address = "resident.withdrawn@e2e-notices.example.jp";
    email_notice(&server, &third.token, address).await;
    let holding = files_holding(&data, address);
    assert!(only_in_contacts(&holding), "{holding:?}");
    let (status, reply) = withdraw(&server, &third.token).await;
    assert_eq!(status, 204, "{reply}");
    // Deleted before the answer: no file holds it any more.
    let holding = files_holding(&data, address);
    assert!(holding.is_empty(), "{holding:?}");
    assert_eq!(phone(&server, &third.token).await["notice"], Value::Null);
    // Withdrawing again changes nothing.
    let (status, reply) = withdraw(&server, &third.token).await;
    assert_eq!(status, 204, "{reply}");
    let (status, reply) = withdraw(&server, "0123456789abcdef0123456789abcdef").await;
    assert_eq!(status, 404, "{reply}");

    // It becomes next: no notice.
    assert_eq!(call_next(&server).await, "1");
    serve(&server).await;
    assert_eq!(call_next(&server).await, "2");
    let view = phone(&server, &third.token).await;
    assert_eq!(
        (&view["position"], &view["notice"]),
        (&json!(1), &Value::Null),
        "{view}"
    );
    assert_eq!(noticed(&events_text(&server).await, "3"), 0);
    // A fourth asks, second in line; the third is called, the fourth is next and told. Once its
    // e-mail is here, the notifier handled every event before it.
    let fourth = issue_numbered(&server, "4").await;
    let other = "resident.no4@e2e-notices.example.jp";
    let ticket = email_notice(&server, &fourth.token, other).await;
    assert_eq!(ticket["position"], 2, "{ticket}");
    serve(&server).await;
    assert_eq!(call_next(&server).await, "3");
    let sent = mail.first_to(other).await;
    assert!(
        sent["subject"]
            .as_str()
            .unwrap()
            .contains("Your turn is near (No. 4)"),
        "{sent}"
    );
    assert!(mail.to(address).is_empty(), "{:?}", mail.messages());
    assert_eq!(mail.messages().len(), 1, "{:?}", mail.messages());
    nowhere_outside(&server, address).await;
}

#[tokio::test]
async fn bad_requests_for_a_notice_get_clear_errors_and_keep_no_address() {
    let dir = tempfile::tempdir().unwrap();
    // A mail server that is never reached: nothing here gets as far as sending.
    let config = demo_config_with(
        dir.path(),
        "notices.toml",
        &format!("{}\n{RULE}", smtp_toml(free_port())),
    );
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &config).await;
    only_counter_1(&server).await;
    issue_numbered(&server, "1").await;
    let second = issue_numbered(&server, "2").await;

    let long = format!("{}@e2e-notices.example.jp", "a".repeat(250));
    for bad in [
        json!({"channel": "email"}),
        json!({"channel": "email", "email": ""}),
        json!({"channel": "email", "email": "not-an-address"}),
        json!({"channel": "email", "email": "resident@"}),
        json!({"channel": "email", "email": "住民 <resident@e2e-notices.example.jp>"}),
        json!({"channel": "email", "email": long}),
    ] {
        let (status, reply) = notice(&server, &second.token, bad.clone()).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (422, Some("invalid_body")),
            "{bad}: {reply}"
        );
    }
    // An unknown phone token.
    let (status, reply) = notice(
        &server,
        "0123456789abcdef0123456789abcdef",
        json!({"channel": "email", "email": "resident@e2e-notices.example.jp"}),
    )
    .await;
    assert_eq!(status, 404, "{reply}");
    // The gateway's channel is not offered without a subscriber of notice.near_turn.
    let (status, reply) = notice(&server, &second.token, json!({"channel": "link"})).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("no_notices")),
        "{reply}"
    );
    assert_eq!(phone(&server, &second.token).await["notice"], Value::Null);

    // A ticket no longer waiting: 409, and the address given is not kept.
    let reply = at_counter_1(&server, "call", json!({"number": "2"})).await;
    assert_eq!(reply["ticket"]["number"], "2");
    let address = "resident.called@e2e-notices.example.jp";
    let (status, reply) = notice(
        &server,
        &second.token,
        json!({"channel": "email", "email": address}),
    )
    .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (409, Some("wrong_status")),
        "{reply}"
    );
    assert!(files_holding(&data, address).is_empty());
    let (status, reply) = notice(&server, &second.token, json!({"channel": "link"})).await;
    assert_eq!(status, 404, "{reply}");

    // A site without [sites.notices] (the plain demo): no channel is offered.
    let plain = Server::start(&dir.path().join("plain")).await;
    let t = issue_numbered(&plain, "1").await;
    assert_eq!(phone(&plain, &t.token).await["notices"], Value::Null);
    for body in [
        json!({"channel": "email", "email": "resident@e2e-notices.example.jp"}),
        json!({"channel": "link"}),
    ] {
        let (status, reply) = notice(&plain, &t.token, body.clone()).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (404, Some("no_notices")),
            "{body}: {reply}"
        );
    }
    assert!(files_holding(&dir.path().join("plain"), "resident@e2e-notices.example.jp").is_empty());
}

/// The first bookable slot of a weekday from tomorrow on (the demo books 09:00–12:00 and
/// 13:00–16:00 on weekdays, Tokyo time).
async fn next_slot(server: &Server) -> String {
    let (_, slots) = bookable_weekday(server, |slots| !free_starts(slots).is_empty()).await;
    free_starts(&slots).remove(0)
}

async fn reminder(server: &Server, code: &str, email: &str) -> (u16, Value) {
    server
        .post(
            &format!("/api/v1/sites/chuo/reservations/{code}/reminder"),
            None,
            Some(json!({"email": email})),
        )
        .await
}

#[tokio::test]
async fn a_booking_reminder_is_set_for_the_day_before_and_its_address_leaves_with_the_booking() {
    let dir = tempfile::tempdir().unwrap();
    // The reminder is not sent within the test (it goes out the day before the slot).
    let config = demo_config_with(dir.path(), "notices.toml", &smtp_toml(free_port()));
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &config).await;
    let slot = next_slot(&server).await;
    let (status, booked) = server
        .post(
            "/api/v1/sites/chuo/reservations",
            None,
            Some(json!({"procedures": ["tennyu"], "slot": slot})),
        )
        .await;
    assert_eq!(status, 201, "{booked}");
    let code = booked["reservation"]["code"].as_str().unwrap().to_owned();

    let address = "resident.booked@e2e-notices.example.jp";
    let (status, reply) = reminder(&server, &code, address).await;
    assert_eq!(status, 200, "{reply}");
    // The day before the slot, at the reminder time (17:00 Tokyo).
    let remind_at = chrono::DateTime::parse_from_rfc3339(reply["remind_at"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("{reply}: {e}"));
    let tokyo = chrono_tz::Asia::Tokyo;
    let slot_day = chrono::DateTime::parse_from_rfc3339(&slot)
        .unwrap()
        .with_timezone(&tokyo)
        .date_naive();
    let expected = tokyo
        .from_local_datetime(&slot_day.pred_opt().unwrap().and_hms_opt(17, 0, 0).unwrap())
        .unwrap();
    assert_eq!(remind_at, expected, "{reply} for the slot {slot}");
    assert_eq!(remind_at.offset().local_minus_utc(), 9 * 3600, "{reply}");
    let holding = files_holding(&data, address);
    assert!(only_in_contacts(&holding), "{holding:?}");

    let (status, reply) = reminder(&server, "ACDEFGHJ", address).await;
    assert_eq!(status, 404, "{reply}");
    let (status, reply) = reminder(&server, &code, "not-an-address").await;
    assert_eq!(status, 422, "{reply}");

    // Cancelled: the address is deleted.
    let (status, reply) = server
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/sites/chuo/reservations/{code}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    gone_from_files(&data, address).await;
    for (what, text) in [
        ("the log", server.output()),
        ("the event stream", events_text(&server).await),
    ] {
        assert!(!text.contains(address), "{address} in {what}:\n{text}");
    }
}
