//! Integrations on the staff screens, in headless Chromium against the real server and a webhook
//! receiver run by the test: the floor board's 「外部連携」 panel lists the site's subscriber and
//! the event it did not take (a dead letter, with its id, kind, tries, last error and local
//! time); 「今すぐ再送」 while the receiver still fails shows its answer under the row and keeps
//! it; once the receiver takes events it sends the event, the row goes away and the API has no
//! dead letter left. An event between two tries shows as 「再送中」 on its subscriber. The KPI
//! page shows a completed visit handed over to the counter-support system (窓口DX連携) and its
//! share of the completed visits. A site without subscribers shows no panel on the floor board
//! and says so on the KPI page. Screenshots go to target/screenshots/.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use browser::Browser;
use chrono::DateTime;
use common::*;
use serde_json::{json, Value};

/// The floor board reads the integrations every 10 s: a dead letter shows within that.
const WAIT: Duration = Duration::from_secs(30);
/// The environment variable the webhook's signing secret is read from (the server inherits it).
const SECRET_ENV: &str = "MADOGUCHI_UI_WEBHOOK_SECRET";

/// A JavaScript string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    id: u64,
    kind: String,
    attempt: u32,
    /// The status it answered.
    answered: u16,
    body: Value,
}

/// A webhook receiver on 127.0.0.1: answers `status` to every POST /hook and keeps what came.
struct Receiver {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Delivery>>>,
}

#[derive(Clone)]
struct Shared {
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Delivery>>>,
}

async fn hook(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let answered = s.status.load(Ordering::SeqCst);
    s.got.lock().unwrap().push(Delivery {
        id: header("madoguchi-event-id").parse().unwrap_or(0),
        kind: header("madoguchi-event"),
        attempt: header("madoguchi-delivery-attempt").parse().unwrap_or(0),
        answered,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    StatusCode::from_u16(answered).unwrap()
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        let shared = Shared {
            status: Arc::new(AtomicU16::new(status)),
            got: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            addr,
            status: shared.status,
            got: shared.got,
        }
    }

    /// Answers `status` from now on.
    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn got(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }
}

/// The demo configuration with one subscriber at site chuo, `dx`, posting to the receiver: two
/// tries 50 ms apart, then a dead letter.
fn config_with_hook(dir: &std::path::Path, receiver: &Receiver) -> std::path::PathBuf {
    config_with_retries(dir, receiver, 2, 50)
}

/// The same subscriber with `max_attempts` tries, the first pause `backoff_ms` long.
fn config_with_retries(
    dir: &std::path::Path,
    receiver: &Receiver,
    max_attempts: u32,
    backoff_ms: u64,
) -> std::path::PathBuf {
    // At least 16 characters; the server started below inherits it.
    std::env::set_var(SECRET_ENV, "ui-test-secret-0123456789");
    demo_config_with(
        dir,
        "hooks.toml",
        &format!(
            "[[sites.webhooks]]
name = \"dx\"
url = \"http://{}/hook\"
secret_env = \"{SECRET_ENV}\"
events = [\"ticket.issued\", \"visit.completed\"]
max_attempts = {max_attempts}
backoff_initial_ms = {backoff_ms}
backoff_max_s = {}
",
            receiver.addr,
            backoff_ms.div_ceil(1000).max(1)
        ),
    )
}

/// The site's subscribers and dead letters, by the API (the floor's token).
async fn webhooks(server: &Server) -> Value {
    let (status, reply) = server.get("/api/v1/sites/chuo/webhooks", Some(FLOOR)).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

/// The floor panel's row of a dead letter.
fn row(hook: &str, seq: u64) -> String {
    format!("#dead-list tr[data-dead-hook=\"{hook}\"][data-dead-seq=\"{seq}\"]")
}

#[tokio::test]
async fn the_floor_sends_a_dead_letter_again() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(500).await;
    let config = config_with_hook(dir.path(), &receiver);
    let server = Server::start_with(&dir.path().join("data"), &config).await;

    // A ticket the receiver refuses twice: a dead letter.
    let ticket = server.issue(json!({"procedures": ["tennyu"]})).await;
    let dead = eventually("the ticket's dead letter", WAIT, || async {
        let reply = webhooks(&server).await;
        let dead = reply["dead_letters"].as_array().unwrap().clone();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = &dead[0];
    assert_eq!(letter["hook"], "dx");
    assert_eq!(letter["kind"], "ticket.issued");
    assert_eq!(letter["attempts"], 2);
    assert_eq!(letter["error"], "HTTP 500");
    let seq = letter["seq"].as_u64().unwrap();
    let tries = receiver.got();
    assert_eq!(
        tries.iter().map(|d| (d.id, d.attempt)).collect::<Vec<_>>(),
        vec![(seq, 1), (seq, 2)],
        "{tries:?}"
    );
    assert!(tries
        .iter()
        .all(|d| d.kind == "ticket.issued" && d.answered == 500));
    assert_eq!(tries[0].body["data"]["ticket"], ticket["id"], "{tries:?}");
    assert_eq!(
        tries[0].body["data"]["number"], ticket["number"],
        "{tries:?}"
    );
    // When it was given up, in the site's time (Asia/Tokyo), as the panel shows it.
    let failed_at = DateTime::parse_from_rfc3339(letter["failed_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%H:%M")
        .to_string();

    let b = Browser::start(1600, 1000).await;
    b.record_csp().await;
    b.open_with_token(&server.url("/screens/floor/chuo"), "floor", FLOOR)
        .await;
    let row = row("dx", seq);
    b.wait(
        "the dead letter on the floor board",
        &format!(
            "(() => {{ const p = document.getElementById('integrations'), r = document.querySelector({});
                 return p && !p.hidden && p.dataset.state === 'ready' && r && r.dataset.kind === 'ticket.issued'; }})()",
            js(&row)
        ),
        WAIT,
    )
    .await;
    assert!(
        b.text("#integrations h2").await.contains("外部連携"),
        "the panel's title"
    );
    // The subscriber: its name, where it posts (no path), what it takes and how far it has sent.
    let hook = b.text("#hooks-list li[data-hook=\"dx\"]").await;
    assert!(
        hook.contains(&format!("http://{}", receiver.addr)) && !hook.contains("/hook"),
        "{hook}"
    );
    for part in ["発券", "ticket issued", "来庁完了", "未送信"] {
        assert!(hook.contains(part), "{part:?} in {hook:?}");
    }
    // The dead letter: event id, kind, tries, last error, local time, and its button.
    let text = b.text(&row).await;
    for part in [
        format!("#{seq}"),
        "発券".to_owned(),
        "ticket.issued".to_owned(),
        "dx".to_owned(),
        "2 回".to_owned(),
        "HTTP 500".to_owned(),
        failed_at,
        "今すぐ再送".to_owned(),
        "Retry now".to_owned(),
    ] {
        assert!(text.contains(&part), "{part:?} in {text:?}");
    }

    // Sent again while the receiver still fails: its answer under the row, and the row stays.
    b.click(&format!("{row} button[data-dead-retry]")).await;
    let error = b
        .wait(
            "the failed retry's error under the row",
            &format!(
                "(() => {{ const r = document.querySelector({}), m = r && r.nextElementSibling;
                   return r && r.classList.contains('has-error') && r.textContent.includes('3 回')
                     && m && m.matches('tr.dead-msg') && m.textContent; }})()",
                js(&row)
            ),
            WAIT,
        )
        .await;
    let error = error.as_str().unwrap();
    assert!(
        error.contains("再送できませんでした")
            && error.contains("HTTP 500")
            && error.contains("delivery_failed"),
        "{error}"
    );
    let reply = webhooks(&server).await;
    assert_eq!(
        reply["dead_letters"].as_array().unwrap().len(),
        1,
        "{reply}"
    );
    assert_eq!(reply["dead_letters"][0]["attempts"], 3, "{reply}");
    assert_eq!(receiver.got().len(), 3);
    b.exec(
        "document.getElementById('integrations').scrollIntoView({block: 'start'}); return true;",
    )
    .await;
    let shot = b.screenshot("floor-integrations").await;
    eprintln!("screenshot: {}", shot.display());

    // The receiver takes events again: 「今すぐ再送」 sends it, and the row goes away.
    receiver.answer(200);
    b.click(&format!("{row} button[data-dead-retry]")).await;
    b.wait(
        "the dead letter gone from the floor board",
        &format!(
            "(() => {{ const p = document.getElementById('integrations');
                 return !document.querySelector({}) && p.dataset.dead === '0'
                   && !document.querySelector('#dead-list tr.dead-msg')
                   && document.getElementById('dead-list').textContent.includes('ありません'); }})()",
            js(&row)
        ),
        WAIT,
    )
    .await;
    assert!(
        b.text("#hooks-note").await.contains(&format!("#{seq}")),
        "the note says which event was sent"
    );
    let got = receiver.got();
    let last = got.last().unwrap();
    assert_eq!(
        (last.id, last.kind.as_str(), last.attempt, last.answered),
        (seq, "ticket.issued", 4, 200),
        "{got:?}"
    );
    assert_eq!(last.body["id"], seq);
    let reply = webhooks(&server).await;
    assert_eq!(reply["dead_letters"], json!([]), "{reply}");
    assert_eq!(reply["hooks"][0]["name"], "dx", "{reply}");
    b.assert_strict("the floor board's integrations").await;
}

#[tokio::test]
async fn the_floor_shows_an_event_being_retried() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(503).await;
    // A minute between the first two tries: the event stays "being retried" meanwhile.
    let config = config_with_retries(dir.path(), &receiver, 5, 60_000);
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    server.issue(json!({"procedures": ["tennyu"]})).await;
    let retrying = eventually("the event being retried", WAIT, || async {
        let reply = webhooks(&server).await;
        let r = reply["hooks"][0]["retrying"].clone();
        r.is_object().then_some(r)
    })
    .await;
    assert_eq!(retrying["attempts"], 1, "{retrying}");
    assert_eq!(retrying["error"], "HTTP 503", "{retrying}");
    let seq = retrying["seq"].as_u64().unwrap();

    let b = Browser::start(1600, 1000).await;
    b.record_csp().await;
    b.open_with_token(&server.url("/screens/floor/chuo"), "floor", FLOOR)
        .await;
    let line = b
        .wait(
            "the retrying line",
            &format!(
                "(() => {{ const h = document.querySelector('#hooks-list li[data-hook=\"dx\"]');
                     return h && h.dataset.retrying === '{seq}' && h.querySelector('.hook-retrying').textContent; }})()"
            ),
            WAIT,
        )
        .await;
    let line = line.as_str().unwrap();
    for part in [
        "再送中".to_owned(),
        format!("#{seq}"),
        "失敗 1 回".to_owned(),
        "HTTP 503".to_owned(),
        "Retrying".to_owned(),
    ] {
        assert!(line.contains(&part), "{part:?} in {line:?}");
    }
    // Not given up yet: no dead letter.
    assert!(b.text("#dead-list").await.contains("ありません"));
    b.assert_strict("the floor board's retrying line").await;
}

#[tokio::test]
async fn the_kpi_page_shows_the_visits_handed_over() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(200).await;
    let config = config_with_hook(dir.path(), &receiver);
    let server = Server::start_with(&dir.path().join("data"), &config).await;

    // One visit, served and completed at counter 1.
    let ticket = server.issue(json!({"procedures": ["tennyu"]})).await;
    for (action, body) in [
        ("open", None),
        ("call-next", None),
        ("start", None),
        ("complete", Some(json!({}))),
    ] {
        let (status, reply) = server.counter("1", action, body).await;
        assert_eq!(status, 200, "{action}: {reply}");
        if action == "call-next" {
            assert_eq!(reply["ticket"]["number"], ticket["number"], "{reply}");
        }
    }
    let kpi = eventually("the visit handed over in the KPI", WAIT, || async {
        let (status, kpi) = server.get("/api/v1/sites/chuo/kpi", Some(ANALYST)).await;
        assert_eq!(status, 200, "{kpi}");
        (kpi["handed_over"] == 1).then_some(kpi)
    })
    .await;
    assert_eq!(kpi["visits"], 1, "{kpi}");
    let completed: Vec<Delivery> = receiver
        .got()
        .into_iter()
        .filter(|d| d.kind == "visit.completed")
        .collect();
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0].answered, 200);
    assert_eq!(completed[0].body["data"]["ticket"], ticket["id"]);

    let page = Browser::start(1440, 900).await;
    page.record_csp().await;
    // Every life event (the page starts on the one with a stay-time target otherwise).
    page.goto(&server.url("/screens/kpi/chuo?life_event=#token=demo-analyst"))
        .await;
    page.wait("the KPI page", "document.body.dataset.loaded === '1'", WAIT)
        .await;
    page.wait(
        "the visit handed over",
        "(() => { const p = document.getElementById('handover');
            return !p.hidden && p.dataset.handedOver === '1' && p.dataset.visits === '1'; })()",
        WAIT,
    )
    .await;
    assert!(page.text("#handover-h").await.contains("窓口DX連携"));
    let figures = page
        .exec(
            "return ['handover-value', 'handover-visits', 'handover-share', 'handover-missing', 'handover-fy']
               .map((id) => document.getElementById(id).textContent.trim())",
        )
        .await;
    assert_eq!(figures, json!(["1", "1", "100.0%", "0", "1"]));
    assert_eq!(
        page.exec("return document.getElementById('handover-none').hidden && !document.getElementById('handover-figs').hidden")
            .await,
        json!(true),
        "a site with a subscriber: the figures, no note"
    );
    page.exec(
        "document.getElementById('handover').scrollIntoView({block: 'center'}); return true;",
    )
    .await;
    page.screenshot("kpi-handover").await;
    page.assert_strict("the KPI page's handovers").await;
}

#[tokio::test]
async fn a_site_without_subscribers_shows_no_integrations() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let reply = webhooks(&server).await;
    assert_eq!(reply["hooks"], json!([]), "{reply}");

    let b = Browser::start(1600, 1000).await;
    b.record_csp().await;
    b.open_with_token(&server.url("/screens/floor/chuo"), "floor", FLOOR)
        .await;
    b.wait(
        "the board, the integrations panel read",
        "document.querySelector('#counters article[data-counter]')
           && document.getElementById('integrations')?.dataset.state === 'off'",
        WAIT,
    )
    .await;
    assert_eq!(
        b.exec("const p = document.getElementById('integrations'); return p.hidden && p.offsetParent === null")
            .await,
        json!(true),
        "hidden"
    );
    b.assert_strict("the floor board without subscribers").await;

    // The KPI page says no counter-support system is connected, instead of "0 handed over".
    b.goto(&server.url("/screens/kpi/chuo?life_event=#token=demo-analyst"))
        .await;
    b.wait(
        "the KPI page's handovers",
        "document.body.dataset.loaded === '1' && !document.getElementById('handover').hidden
           && document.getElementById('handover').dataset.handedOver === '0'",
        WAIT,
    )
    .await;
    assert_eq!(
        b.exec("return !document.getElementById('handover-none').hidden && document.getElementById('handover-figs').hidden")
            .await,
        json!(true),
        "the note, no figures"
    );
    assert!(b
        .text("#handover-none")
        .await
        .contains("連携が設定されていません"));
    b.assert_strict("the KPI page without subscribers").await;
}
