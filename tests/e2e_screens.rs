//! The screens in headless Chromium against the real server: kiosk → lobby → counter console →
//! phone, the phone page on its own ticket channel (live, across a restart, polling when
//! WebSockets fail, waiting out a 429), a server restart under the lobby, the floor board, role
//! checks, and how long a call takes to reach the lobby. Screenshots go to target/screenshots/.
//!
//! Every page runs under the strict Content-Security-Policy (scripts only from /assets/, no inline
//! script or handler): each test ends by checking that the browser reported no violation, and
//! the headers themselves are checked over plain HTTP (no browser needed), as is framing: only
//! the lobby display, and only by the origins of `[screens] frame_ancestors`.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use browser::Browser;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

async fn lobby(server: &Server) -> Browser {
    let b = Browser::start(1920, 1080).await;
    b.goto(&server.url("/screens/lobby/chuo")).await;
    b.wait(
        "the lobby to go live",
        "document.body.dataset.live === '1'",
        WAIT,
    )
    .await;
    b
}

/// A phone for the ticket `t`, showing it.
async fn phone(server: &Server, b: &Browser, t: &Value) {
    b.goto(&server.url(&format!("/t/{}", t["token"].as_str().unwrap())))
        .await;
    b.wait(
        "the phone page",
        "document.body.dataset.status === 'waiting'",
        WAIT,
    )
    .await;
}

/// When the phone page started each of its reads of `GET /api/v1/tickets/{token}` (ms since the
/// page loaded), answered or refused, in order.
async fn ticket_reads(b: &Browser, t: &Value) -> Vec<f64> {
    let path = format!("/api/v1/tickets/{}", t["token"].as_str().unwrap());
    let starts = b
        .exec(&format!(
            "return performance.getEntriesByType('resource')
               .filter(e => new URL(e.name).pathname === {}).map(e => e.startTime)",
            serde_json::to_string(&path).unwrap()
        ))
        .await;
    let mut starts: Vec<f64> = serde_json::from_value(starts).unwrap();
    starts.sort_by(f64::total_cmp);
    starts
}

/// `name{site="chuo"}` in /metrics (0 when the series is not there yet).
async fn chuo_gauge(server: &Server, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    server
        .metrics()
        .await
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains("site=\"chuo\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Panics when any of these browsers reported a Content-Security-Policy violation since its
/// console was last read (at the start: every page it opened).
async fn no_csp_violations(browsers: &[(&str, &Browser)]) {
    for (what, b) in browsers {
        b.assert_no_csp_violations(what).await;
    }
}

fn waiting_js(queue: &str) -> String {
    format!(
        "Number(document.querySelector('[data-queue=\"{queue}\"] .waiting')?.textContent.trim())"
    )
}

#[tokio::test]
async fn a_ticket_from_the_kiosk_is_called_on_the_lobby_and_the_phone() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let lobby = lobby(&server).await;
    let before = lobby
        .exec(&format!("return {}", waiting_js("onestop")))
        .await;
    assert_eq!(before, json!(0));

    // The kiosk: a life event, its questions, the visit plan, the number.
    let kiosk = Browser::start(1080, 1920).await;
    kiosk
        .open_with_token(
            &server.url("/screens/kiosk/chuo?dispenser=kiosk-1"),
            "dispenser",
            DISPENSER,
        )
        .await;
    kiosk.screenshot("kiosk-start").await;
    kiosk.click("[data-life-event=\"moving_in\"]").await;
    for _ in 0..4 {
        kiosk
            .wait(
                "a question or the confirmation",
                "['questions','confirm'].includes(document.body.dataset.step)",
                WAIT,
            )
            .await;
        if kiosk.exec("return document.body.dataset.step").await == "confirm" {
            break;
        }
        kiosk.click("[data-answer=\"yes\"]").await;
    }
    kiosk
        .wait(
            "the confirmation",
            "document.body.dataset.step === 'confirm'",
            WAIT,
        )
        .await;
    let plan = kiosk.exec("return document.body.innerText").await;
    assert!(
        plan.as_str().unwrap().contains("児童手当"),
        "the visit plan lists the procedures: {plan}"
    );
    kiosk.screenshot("kiosk-confirm").await;
    kiosk.click("#issue").await;
    let number = kiosk
        .wait(
            "the ticket number",
            "document.querySelector('#ticket-number')?.textContent.trim()",
            WAIT,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    kiosk.screenshot("kiosk-ticket").await;
    let (_, list) = server
        .get("/api/v1/sites/chuo/tickets", Some(COUNTER))
        .await;
    assert_eq!(
        list["tickets"].as_array().unwrap().len(),
        1,
        "one press, one ticket"
    );

    // The lobby sees the waiting count change.
    lobby
        .wait(
            "the waiting count to rise",
            &format!("{} === 1", waiting_js("onestop")),
            WAIT,
        )
        .await;

    // The counter console calls it.
    let console = Browser::start(1366, 768).await;
    console
        .open_with_token(
            &server.url("/screens/counter/chuo?counter=1"),
            "counter",
            COUNTER,
        )
        .await;
    console.click("[data-action=\"call-next\"]").await;
    console
        .wait(
            "the console to show the called number",
            &format!(
                "document.querySelector('#current-number')?.textContent.trim() === '{number}'"
            ),
            WAIT,
        )
        .await;
    assert_eq!(console.text("#current-status").await, "called");
    let console_text = console.exec("return document.body.innerText").await;
    assert!(
        console_text.as_str().unwrap().contains("児童手当"),
        "the console shows the visit plan"
    );
    console.screenshot("counter-console").await;

    // The lobby shows the number with its counter and queues the announcement.
    lobby
        .wait(
            "the call on the lobby",
            &format!("document.querySelector('[data-number=\"{number}\"][data-counter=\"1\"]')"),
            WAIT,
        )
        .await;
    let spoken = lobby
        .wait(
            "the announcement",
            "(window.madoguchiSpoken || []).length >= 2 && window.madoguchiSpoken",
            WAIT,
        )
        .await;
    let spoken: Vec<String> = serde_json::from_value(spoken).unwrap();
    assert!(
        spoken.contains(&format!("受付番号 {number}番の方、1番窓口へお越しください")),
        "{spoken:?}"
    );
    assert!(
        spoken
            .iter()
            .any(|s| s.contains(&format!("Number {number}")) && s.contains("counter 1")),
        "{spoken:?}"
    );
    lobby.screenshot("lobby-landscape").await;

    // The phone page of another ticket follows it live and turns to "called".
    let t2 = server
        .issue(json!({"procedures": ["shoumei"], "dispenser": "kiosk-2"}))
        .await;
    let phone = Browser::start(360, 740).await;
    phone
        .goto(&server.url(&format!("/t/{}", t2["token"].as_str().unwrap())))
        .await;
    phone
        .wait(
            "the phone page",
            "document.body.dataset.status === 'waiting'",
            WAIT,
        )
        .await;
    phone.screenshot("phone-waiting").await;
    let (status, _) = server.counter("6", "call-next", None).await;
    assert_eq!(status, 200);
    phone
        .wait(
            "the phone to show the call",
            "document.body.dataset.status === 'called'",
            WAIT,
        )
        .await;
    let text = phone.exec("return document.body.innerText").await;
    assert!(text
        .as_str()
        .unwrap()
        .contains(t2["number"].as_str().unwrap()));
    phone.screenshot("phone-called").await;

    // Lobby and phone show numbers only, and no token.
    let html = lobby
        .exec("return document.documentElement.outerHTML")
        .await;
    assert!(!html
        .as_str()
        .unwrap()
        .contains(t2["token"].as_str().unwrap()));

    // After the visit, one tap answers the satisfaction question.
    server.counter("6", "start", None).await;
    server.counter("6", "complete", None).await;
    phone
        .wait(
            "the satisfaction question",
            "document.querySelector('[data-score=\"5\"]')",
            WAIT,
        )
        .await;
    phone.screenshot("phone-done").await;
    phone.click("[data-score=\"5\"]").await;
    let (_, t) = server
        .get(
            &format!("/api/v1/tickets/{}", t2["token"].as_str().unwrap()),
            None,
        )
        .await;
    let rated = eventually("the rating to be stored", WAIT, || async {
        let (_, t) = server
            .get(
                &format!("/api/v1/tickets/{}", t2["token"].as_str().unwrap()),
                None,
            )
            .await;
        t["ticket"]["satisfaction"].as_u64()
    })
    .await;
    assert_eq!(rated, 5, "{t}");

    // The lobby in portrait.
    let portrait = Browser::start(1080, 1920).await;
    portrait.goto(&server.url("/screens/lobby/chuo")).await;
    portrait
        .wait("live", "document.body.dataset.live === '1'", WAIT)
        .await;
    portrait.screenshot("lobby-portrait").await;
    no_csp_violations(&[
        ("lobby", &lobby),
        ("kiosk", &kiosk),
        ("counter console", &console),
        ("phone", &phone),
        ("lobby, portrait", &portrait),
    ])
    .await;
}

#[tokio::test]
async fn the_phone_page_follows_its_ticket_on_the_ticket_channel() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    let first = server.issue(json!({"procedures": ["shoumei"]})).await;
    let t = server.issue(json!({"procedures": ["shoumei"]})).await;
    let number = t["number"].as_str().unwrap().to_owned();

    let b = Browser::start(360, 740).await;
    phone(&server, &b, &t).await;
    b.wait("the channel", "document.body.dataset.live === 'live'", WAIT)
        .await;
    assert_eq!(
        b.exec("return document.querySelector('[data-position]').dataset.position")
            .await,
        json!("2")
    );
    assert!(b.text("main").await.contains("あと1人"));
    // One phone channel at the server, and the page is not on the site's live feed.
    eventually("the phone channel at the server", WAIT, || async {
        (chuo_gauge(&server, "madoguchi_ticket_live_clients").await == 1.0).then_some(())
    })
    .await;
    assert_eq!(chuo_gauge(&server, "madoguchi_live_clients").await, 0.0);

    // The ticket ahead is called: this one is next.
    let (status, called) = server.counter("6", "call-next", None).await;
    assert_eq!(status, 200, "{called}");
    assert_eq!(called["ticket"]["number"], first["number"]);
    b.wait(
        "position 1",
        "document.querySelector('[data-position=\"1\"]')",
        WAIT,
    )
    .await;
    let text = b.text("main").await;
    assert!(
        text.contains("次にお呼びします") && text.contains("You are next"),
        "{text}"
    );
    b.screenshot("phone-next").await;

    // This one is called at counter 7: the call notice.
    let (status, called) = server.counter("7", "call-next", None).await;
    assert_eq!(status, 200, "{called}");
    assert_eq!(called["ticket"]["number"], json!(number));
    b.wait(
        "the call notice",
        "document.body.dataset.status === 'called' && !document.getElementById('overlay').hidden",
        WAIT,
    )
    .await;
    assert_eq!(b.text("#overlay .onum").await, number);
    assert_eq!(
        b.exec("return document.querySelector('#overlay .octr').dataset.counter")
            .await,
        json!("7")
    );
    assert!(b.text("#overlay .octr").await.contains("7番窓口"));
    // All of it came over the channel: the page read the ticket once, when it opened.
    assert_eq!(
        ticket_reads(&b, &t).await.len(),
        1,
        "no reads but the first"
    );

    // The server dies and comes back: the page says it is reconnecting, then follows again.
    let addr = server.addr;
    server.kill9();
    b.wait(
        "the reconnecting mark",
        "document.body.dataset.live === 'down' && document.querySelector('#conn.show')",
        WAIT,
    )
    .await;
    let server = Server::start_at(&data, &repo_path("config/demo.toml"), addr).await;
    b.wait(
        "the channel again",
        "document.body.dataset.live === 'live' && !document.querySelector('#conn.show')",
        WAIT,
    )
    .await;
    server.counter("7", "start", None).await;
    server.counter("7", "complete", None).await;
    b.wait(
        "the satisfaction question",
        "document.body.dataset.status === 'done' && document.querySelector('[data-score=\"4\"]')",
        WAIT,
    )
    .await;
    // A finished ticket needs no channel.
    eventually("the channel to close", WAIT, || async {
        (chuo_gauge(&server, "madoguchi_ticket_live_clients").await == 0.0).then_some(())
    })
    .await;
    no_csp_violations(&[("phone", &b)]).await;
}

#[tokio::test]
async fn the_phone_page_reads_its_ticket_when_websockets_fail() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    server.issue(json!({"procedures": ["shoumei"]})).await;
    let t = server.issue(json!({"procedures": ["shoumei"]})).await;

    // A network that lets no WebSocket through: every one fails as a dropped connection does.
    let b = Browser::start(360, 740).await;
    b.before_each_page(
        "window.WebSocket = class {
           static CONNECTING = 0; static OPEN = 1; static CLOSING = 2; static CLOSED = 3;
           constructor(url) {
             this.url = url; this.readyState = 0;
             setTimeout(() => {
               this.readyState = 3;
               this.onerror?.(new Event('error'));
               this.onclose?.({ code: 1006, reason: '', wasClean: false });
             }, 20);
           }
           send() {}
           close() {}
         };",
    )
    .await;
    phone(&server, &b, &t).await;
    // A few attempts (about 0.5 + 1 + 2 s) before the page falls back to reading the ticket.
    b.wait(
        "polling",
        "document.body.dataset.live === 'poll'",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        b.exec("return !!document.querySelector('#conn.show')")
            .await,
        json!(false),
        "reads work: no reconnecting mark"
    );

    server.counter("6", "call-next", None).await;
    server.counter("7", "call-next", None).await;
    // Reads every 20 s (up to a fifth more).
    b.wait(
        "the call notice",
        "document.body.dataset.status === 'called' && !document.getElementById('overlay').hidden",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        b.exec("return document.querySelector('#overlay .octr').dataset.counter")
            .await,
        json!("7")
    );
    // The first read, one after each of two failed attempts, then one per poll.
    let reads = ticket_reads(&b, &t).await;
    assert!(reads.len() <= 6, "{reads:?}");
    for pair in reads[3..].windows(2) {
        assert!(pair[1] - pair[0] >= 19_900.0, "polls 20 s apart: {reads:?}");
    }
    no_csp_violations(&[("phone", &b)]).await;
}

#[tokio::test]
async fn the_phone_page_waits_out_a_429() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config_with(
        dir.path(),
        "limited.toml",
        "[limits]\npublic_requests_per_s = 1\npublic_burst = 1\n",
    );
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    let t = server.issue(json!({"procedures": ["shoumei"]})).await;
    let b = Browser::start(360, 740).await;

    // Another client at the same address takes every request the limit allows, for 4 s.
    let board = server.url("/api/v1/sites/chuo/board");
    let mut empty = false;
    for _ in 0..5 {
        empty = server.http.get(&board).send().await.unwrap().status() == 429;
        if empty {
            break;
        }
    }
    assert!(empty, "the limit applies to the board");
    let until = Instant::now() + Duration::from_secs(4);
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let (http, board) = (server.http.clone(), board.clone());
            tokio::spawn(async move {
                let mut retry_after = Vec::new();
                while Instant::now() < until {
                    let r = http.get(&board).send().await.unwrap();
                    if r.status() == 429 {
                        let s = r.headers()["retry-after"].to_str().unwrap();
                        retry_after.push(s.parse::<u64>().unwrap());
                    }
                }
                retry_after
            })
        })
        .collect();

    b.goto(&server.url(&format!("/t/{}", t["token"].as_str().unwrap())))
        .await;
    b.wait(
        "the busy notice",
        "document.body.dataset.busy === '1' && document.querySelector('main').textContent.includes('混み合っています')",
        WAIT,
    )
    .await;
    assert!(b.text("main").await.contains("Busy, retrying shortly"));
    b.screenshot("phone-busy").await;
    let mut retry_after = Vec::new();
    for h in hammers {
        retry_after.extend(h.await.unwrap());
    }
    let shortest = *retry_after.iter().min().expect("429s with Retry-After");
    assert!(shortest >= 1, "{retry_after:?}");

    // Once the other client stops, the page gets through.
    b.wait(
        "the ticket",
        "document.body.dataset.status === 'waiting' && document.body.dataset.busy === ''",
        WAIT,
    )
    .await;
    let reads = ticket_reads(&b, &t).await;
    assert!(reads.len() >= 2, "at least one refused read: {reads:?}");
    for pair in reads.windows(2) {
        assert!(
            pair[1] - pair[0] >= shortest as f64 * 1000.0,
            "no read before Retry-After ({shortest} s) has passed: {reads:?}"
        );
    }
    no_csp_violations(&[("phone", &b)]).await;
}

#[tokio::test]
async fn the_lobby_reconnects_after_a_server_restart() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    server.issue(json!({"procedures": ["shoumei"]})).await;
    let lobby = lobby(&server).await;
    lobby
        .wait(
            "one waiting",
            &format!("{} === 1", waiting_js("certificates")),
            WAIT,
        )
        .await;

    let addr = server.addr;
    server.kill9();
    lobby
        .wait(
            "the lobby to notice",
            "document.body.dataset.live === '0'",
            WAIT,
        )
        .await;
    assert!(
        lobby
            .exec("return !!document.querySelector('.conn-lost.show')")
            .await
            == json!(true),
        "a reconnecting mark"
    );
    // The last state stays on screen.
    assert_eq!(
        lobby
            .exec(&format!("return {}", waiting_js("certificates")))
            .await,
        json!(1)
    );
    lobby.screenshot("lobby-reconnecting").await;

    let server = Server::start_at(&data, &repo_path("config/demo.toml"), addr).await;
    server.issue(json!({"procedures": ["shoumei"]})).await;
    let (_, called) = server.counter("6", "call-next", None).await;
    let number = called["ticket"]["number"].as_str().unwrap().to_owned();
    lobby
        .wait(
            "the lobby to be live again",
            "document.body.dataset.live === '1'",
            WAIT,
        )
        .await;
    lobby
        .wait(
            "the call after the restart",
            &format!("document.querySelector('[data-number=\"{number}\"]')"),
            WAIT,
        )
        .await;
    lobby
        .wait(
            "the right waiting count",
            &format!("{} === 1", waiting_js("certificates")),
            WAIT,
        )
        .await;
    no_csp_violations(&[("lobby", &lobby)]).await;
}

#[tokio::test]
async fn the_floor_board_closes_a_counter_and_changes_a_profile() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    for _ in 0..3 {
        server
            .issue(json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"}))
            .await;
    }
    server.counter("6", "call-next", None).await;
    let floor = Browser::start(1600, 1000).await;
    floor
        .open_with_token(&server.url("/screens/floor/chuo"), "floor", FLOOR)
        .await;
    floor
        .wait(
            "the counters",
            "document.querySelector('[data-counter=\"5\"]')",
            WAIT,
        )
        .await;

    floor
        .click("[data-counter=\"5\"] [data-action=\"close\"]")
        .await;
    eventually("counter 5 closed on the server", WAIT, || async {
        let board = server.board().await;
        board["counters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "5" && c["state"] == "closed")
            .then_some(())
    })
    .await;
    floor
        .wait(
            "the board to show it",
            "document.querySelector('[data-counter=\"5\"] [data-state=\"closed\"]')",
            WAIT,
        )
        .await;

    floor
        .click("[data-counter=\"2\"] [data-action=\"edit-profile\"]")
        .await;
    floor
        .wait(
            "the profile editor",
            "document.querySelector('#profile-editor')",
            WAIT,
        )
        .await;
    floor.exec(
        "const c = document.querySelector('#profile-editor input[data-queue=\"certificates\"]'); if (!c.checked) c.click();
         const s = document.querySelector('#strategy'); s.value = 'longest_wait'; s.dispatchEvent(new Event('change', {bubbles: true})); return true;",
    )
    .await;
    floor.click("#save-profile").await;
    let profile = eventually("the new profile on the server", WAIT, || async {
        let (_, catalog) = server.get("/api/v1/sites/chuo/catalog", None).await;
        let c2 = catalog["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "2")
            .cloned()
            .unwrap();
        let queues = c2["profile"]["queues"].clone();
        (queues
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q == "certificates")
            && c2["profile"]["strategy"] == "longest_wait")
            .then_some(c2["profile"].clone())
    })
    .await;
    assert!(
        profile["queues"]
            .as_array()
            .unwrap()
            .contains(&json!("onestop")),
        "{profile}"
    );
    // Both changes are in the board's audit trail, under the token's name.
    floor
        .wait(
            "the audit trail",
            "(() => { const rows = [...document.querySelectorAll('#audit [data-audit]')];
                      return rows.length >= 2 && rows[0].dataset.audit === 'profile_changed'
                        && rows[1].dataset.audit === 'counter_closed'
                        && rows.every((r) => r.textContent.includes('demo-floor')); })()",
            WAIT,
        )
        .await;
    floor.screenshot("floor-board").await;
    no_csp_violations(&[("floor board", &floor)]).await;
}

#[tokio::test]
async fn consoles_without_the_right_role_refuse_to_act() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    server.issue(json!({"procedures": ["shoumei"]})).await;
    let before = server.board().await;

    // A dispenser token on the counter console: the call is refused and nothing changes.
    let console = Browser::start(1366, 768).await;
    console
        .open_with_token(
            &server.url("/screens/counter/chuo?counter=6"),
            "counter",
            DISPENSER,
        )
        .await;
    console.click("[data-action=\"call-next\"]").await;
    console
        .wait(
            "a refusal",
            "document.querySelector('#message[data-kind=\"error\"]')?.textContent.trim()",
            WAIT,
        )
        .await;
    // A counter token on the floor board cannot rebalance (profiles are the floor manager's).
    let floor = Browser::start(1600, 1000).await;
    floor
        .open_with_token(&server.url("/screens/floor/chuo"), "floor", COUNTER)
        .await;
    floor
        .click("[data-counter=\"3\"] [data-action=\"edit-profile\"]")
        .await;
    floor
        .wait(
            "the profile editor",
            "document.querySelector('#profile-editor')",
            WAIT,
        )
        .await;
    floor
        .exec("document.querySelector('#profile-editor input[data-queue=\"certificates\"]').click(); return true;")
        .await;
    floor.click("#save-profile").await;
    floor
        .wait(
            "a refusal",
            "document.querySelector('#message')?.textContent.trim()",
            WAIT,
        )
        .await;
    assert_eq!(server.board().await, before, "nothing changed");

    // Without a token the consoles ask for one and show no action.
    let fresh = Browser::start(1366, 768).await;
    fresh
        .goto(&server.url("/screens/counter/chuo?counter=6"))
        .await;
    fresh
        .wait("the token prompt", "document.querySelector('#token')", WAIT)
        .await;
    no_csp_violations(&[
        ("counter console", &console),
        ("floor board", &floor),
        ("counter console without a token", &fresh),
    ])
    .await;
}

#[tokio::test]
async fn a_call_reaches_the_lobby_quickly() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let lobby = lobby(&server).await;
    let mut delays = Vec::new();
    for _ in 0..20 {
        let t = server.issue(json!({"procedures": ["shoumei"]})).await;
        let number = t["number"].as_str().unwrap().to_owned();
        let sent = now_ms();
        let (status, _) = server.counter("6", "call-next", None).await;
        assert_eq!(status, 200);
        let shown: Value = lobby
            .wait(
                "the call on the lobby",
                &format!("(window.madoguchiCalls || []).find(c => c.number === '{number}')"),
                WAIT,
            )
            .await;
        delays.push(shown["at"].as_f64().unwrap() - sent);
        server.counter("6", "start", None).await;
        server.counter("6", "complete", None).await;
    }
    delays.sort_by(f64::total_cmp);
    eprintln!(
        "call-next request → number rendered on the lobby page, 20 calls: median {:.1} ms, max {:.1} ms",
        delays[10], delays[19]
    );
    no_csp_violations(&[("lobby", &lobby)]).await;
}

#[tokio::test]
async fn the_kpi_page_shows_the_stay_time_against_the_target() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    // Visits of a real morning take hours; write three finished moving-in visits of 60, 90 and
    // 120 minutes (and one certificates visit) straight into the records, as the projection would.
    let db = rusqlite::Connection::open(server.data.join("madoguchi.db")).unwrap();
    let now = chrono::Utc::now();
    for (i, (minutes, life_event, satisfaction)) in [
        (60.0, Some("moving_in"), Some(5)),
        (90.0, Some("moving_in"), Some(4)),
        (120.0, Some("moving_in"), Some(2)),
        (15.0, None, None),
    ]
    .into_iter()
    .enumerate()
    {
        let arrival = now - chrono::Duration::minutes(180);
        let departure = arrival + chrono::Duration::seconds((minutes * 60.0) as i64);
        db.execute(
            "INSERT INTO visits (ticket_id, site, day, number, life_event, procedures, priority,
                arrival, departure, arrival_ms, outcome, stay_s, wait_s, service_s, steps, satisfaction)
             VALUES (?1, 'chuo', ?2, ?3, ?4, '[\"tennyu\"]', 0, ?5, ?6, ?7, 'done', ?8, ?9, ?10, 1, ?11)",
            rusqlite::params![
                format!("seeded-{i}"),
                arrival.date_naive().to_string(),
                format!("{}", 100 + i),
                life_event,
                arrival.to_rfc3339(),
                departure.to_rfc3339(),
                arrival.timestamp_millis(),
                minutes * 60.0,
                minutes * 20.0,
                minutes * 40.0,
                satisfaction,
            ],
        )
        .unwrap();
    }
    let (_, kpi) = server
        .get("/api/v1/sites/chuo/kpi?life_event=moving_in", Some(ANALYST))
        .await;
    assert_eq!(kpi["visits"], 3, "{kpi}");
    assert_eq!(kpi["stay_s"]["mean"], 5400.0);

    let page = Browser::start(1440, 900).await;
    page.goto(&server.url("/screens/kpi/chuo#token=demo-analyst"))
        .await;
    page.wait("the KPI page", "document.body.dataset.loaded === '1'", WAIT)
        .await;
    // The page opens on the life event that has a stay target (moving in at 中央区役所).
    let number = |t: String| -> f64 {
        t.chars()
            .filter(|c| c.is_ascii_digit() || *c == '.')
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {t:?}"))
    };
    page.wait(
        "the mean stay",
        "document.querySelector('#stay-mean')?.textContent.trim() === '90.0'",
        WAIT,
    )
    .await;
    assert_eq!(
        number(page.text("#stay-target").await),
        99.0,
        "the FY target beside it"
    );
    for chart in [
        "chart-trend",
        "chart-distribution",
        "chart-hours",
        "chart-usage",
        "chart-satisfaction",
    ] {
        let present = page
            .exec(&format!("return !!document.querySelector('svg#{chart}')"))
            .await;
        assert_eq!(present, json!(true), "{chart}");
    }
    page.screenshot("kpi-page").await;
    no_csp_violations(&[("KPI page", &page)]).await;
}

// ---------------------------------------------------------------------------------------------
// The Content-Security-Policy and framing
// ---------------------------------------------------------------------------------------------

/// The origin a city's website has in these tests (`[screens] frame_ancestors`).
const CITY_SITE: &str = "https://www.city.example.jp";

/// A screen response: its status, type, body and security headers (the policy by directive).
struct Answer {
    path: String,
    status: u16,
    content_type: String,
    body: String,
    csp: BTreeMap<String, Vec<String>>,
    frame_options: Option<String>,
    nosniff: bool,
    referrer: Option<String>,
}

async fn answer(server: &Server, path: &str) -> Answer {
    let r = server.http.get(server.url(path)).send().await.unwrap();
    let h = r.headers().clone();
    let header = |name: &str| h.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        h.get_all("content-security-policy").iter().count(),
        1,
        "{path}: one Content-Security-Policy"
    );
    let csp = header("content-security-policy")
        .unwrap()
        .split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace();
            let name = words.next()?.to_ascii_lowercase();
            Some((name, words.map(str::to_owned).collect()))
        })
        .collect();
    Answer {
        path: path.to_owned(),
        status: r.status().as_u16(),
        content_type: header("content-type").unwrap_or_default(),
        frame_options: header("x-frame-options"),
        nosniff: header("x-content-type-options").as_deref() == Some("nosniff"),
        referrer: header("referrer-policy"),
        csp,
        body: r.text().await.unwrap(),
    }
}

impl Answer {
    fn directive(&self, name: &str) -> Vec<String> {
        self.csp
            .get(name)
            .unwrap_or_else(|| panic!("{}: no {name} in {:?}", self.path, self.csp))
            .clone()
    }

    /// What every screen response carries; `ancestors`: the origins that may frame it (none:
    /// `frame-ancestors 'none'` and `X-Frame-Options: DENY`).
    fn assert_strict(&self, server: &Server, ancestors: &[&str]) {
        let path = &self.path;
        assert_eq!(
            self.directive("script-src"),
            ["'self'"],
            "{path}: scripts only from this server, none inline"
        );
        assert_eq!(self.directive("default-src"), ["'self'"], "{path}");
        assert_eq!(self.directive("object-src"), ["'none'"], "{path}");
        assert_eq!(self.directive("base-uri"), ["'none'"], "{path}");
        assert_eq!(self.directive("form-action"), ["'self'"], "{path}");
        for (name, sources) in &self.csp {
            assert!(
                !name.starts_with("script-src-"),
                "{path}: no {name} beside script-src"
            );
            for s in sources {
                assert!(
                    ![
                        "'unsafe-eval'",
                        "*",
                        "ws:",
                        "wss:",
                        "http:",
                        "https:",
                        "data:"
                    ]
                    .contains(&s.as_str())
                        || (s == "data:" && (name == "img-src" || name == "media-src")),
                    "{path}: {name} allows {s}"
                );
                assert!(
                    s != "'unsafe-inline'" || name == "style-src",
                    "{path}: {name} allows {s}"
                );
            }
        }
        // This server only, its WebSockets named for browsers whose 'self' does not cover them.
        let host = server.addr.to_string();
        assert_eq!(
            self.directive("connect-src"),
            [
                "'self'".to_owned(),
                format!("ws://{host}"),
                format!("wss://{host}")
            ],
            "{path}"
        );
        if ancestors.is_empty() {
            assert_eq!(self.directive("frame-ancestors"), ["'none'"], "{path}");
            assert_eq!(self.frame_options.as_deref(), Some("DENY"), "{path}");
        } else {
            assert_eq!(self.directive("frame-ancestors"), ancestors, "{path}");
            assert_eq!(
                self.frame_options, None,
                "{path}: X-Frame-Options would forbid framing"
            );
        }
        assert!(self.nosniff, "{path}: X-Content-Type-Options: nosniff");
        assert_eq!(self.referrer.as_deref(), Some("no-referrer"), "{path}");
    }
}

/// Inline scripts and inline event handlers (`onclick="…"`) in a page: none may be left.
fn inline_code(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        let name = tag
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if name == "script" && !tag.contains(" src=\"/assets/") {
            found.push(format!("<{tag}>"));
        }
        for attr in tag.split_whitespace().skip(1) {
            let attr_name = attr.split('=').next().unwrap_or("").to_ascii_lowercase();
            if attr.contains('=') && attr_name.len() > 2 && attr_name.starts_with("on") {
                found.push(format!("<{name} {attr}…>"));
            }
        }
    }
    found
}

#[tokio::test]
async fn every_screen_response_carries_the_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let t = server.issue(json!({"procedures": ["shoumei"]})).await;
    let phone = format!("/t/{}", t["token"].as_str().unwrap());
    let pages = [
        "/",
        "/screens/lobby/chuo",
        "/screens/kiosk/chuo?dispenser=kiosk-1",
        "/screens/counter/chuo?counter=1",
        "/screens/floor/chuo",
        "/screens/kpi/chuo",
        "/screens/kpi/all",
        &phone,
    ];
    let mut scripts = Vec::new();
    for path in pages {
        let a = answer(&server, path).await;
        assert_eq!(a.status, 200, "{path}");
        assert!(
            a.content_type.starts_with("text/html"),
            "{path}: {}",
            a.content_type
        );
        a.assert_strict(&server, &[]);
        assert_eq!(
            inline_code(&a.body),
            Vec::<String>::new(),
            "{path}: inline code"
        );
        for part in a.body.split("<script type=\"module\" src=\"").skip(1) {
            scripts.push(part.split('"').next().unwrap().to_owned());
        }
    }
    // Each page loads its own module (which loads common.js).
    assert_eq!(
        scripts.len(),
        pages.len(),
        "one module per page: {scripts:?}"
    );
    for missing in [
        "/screens/lobby/nowhere",
        "/screens/counter/nowhere",
        "/assets/nothing.js",
    ] {
        let a = answer(&server, missing).await;
        assert_eq!(a.status, 404, "{missing}");
        a.assert_strict(&server, &[]);
    }
    // Every file under /assets/, the pages' modules among them.
    let mut assets: Vec<String> = std::fs::read_dir(repo_path("display/assets"))
        .unwrap()
        .map(|e| format!("/assets/{}", e.unwrap().file_name().to_str().unwrap()))
        .collect();
    assets.sort();
    for s in &scripts {
        assert!(assets.contains(s), "{s} is not a file in display/assets");
    }
    for path in &assets {
        let a = answer(&server, path).await;
        assert_eq!(a.status, 200, "{path}");
        a.assert_strict(&server, &[]);
        if path.ends_with(".js") {
            assert!(
                a.content_type.starts_with("text/javascript"),
                "{path}: a module needs a JavaScript type under nosniff: {}",
                a.content_type
            );
        }
    }

    // A city that embeds the lobby display in its website: only that page, only that origin.
    let config = demo_config_with(
        dir.path(),
        "embedded.toml",
        &format!("[screens]\nframe_ancestors = [\"{CITY_SITE}\"]\n"),
    );
    let embedded = Server::start_with(&dir.path().join("data-embedded"), &config).await;
    answer(&embedded, "/screens/lobby/chuo")
        .await
        .assert_strict(&embedded, &[CITY_SITE]);
    let t = embedded.issue(json!({"procedures": ["shoumei"]})).await;
    let phone = format!("/t/{}", t["token"].as_str().unwrap());
    for path in [
        "/",
        "/screens/lobby/nowhere",
        "/screens/kiosk/chuo?dispenser=kiosk-1",
        "/screens/counter/chuo",
        "/screens/floor/chuo",
        "/screens/kpi/all",
        &phone,
        "/assets/lobby.js",
        "/assets/common.js",
    ] {
        answer(&embedded, path).await.assert_strict(&embedded, &[]);
    }
}

#[tokio::test]
async fn every_screen_runs_under_the_strict_policy() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let t = server.issue(json!({"procedures": ["shoumei"]})).await;
    let b = Browser::start(1280, 900).await;
    // Every page records what its policy refused, before any of its own scripts runs.
    b.before_each_page(
        "window.cspViolations = [];
         addEventListener('securitypolicyviolation',
           (e) => window.cspViolations.push(`${e.effectiveDirective} ${e.blockedURI}`), true);",
    )
    .await;
    let phone = format!("/t/{}", t["token"].as_str().unwrap());
    let live = "document.getElementById('conn')?.textContent.includes('live')";
    let pages = [
        (
            "/".to_owned(),
            format!("{live} && document.querySelectorAll('#queues tr').length > 0"),
        ),
        (
            "/screens/lobby/chuo".to_owned(),
            "document.body.dataset.live === '1'".to_owned(),
        ),
        (
            "/screens/kiosk/chuo?dispenser=kiosk-1#token=demo-dispenser".to_owned(),
            "document.body.dataset.step === 'events' && location.hash === ''".to_owned(),
        ),
        (
            "/screens/counter/chuo?counter=1#token=demo-counter".to_owned(),
            format!("{live} && document.querySelector('#current-number') && location.hash === ''"),
        ),
        (
            "/screens/floor/chuo#token=demo-floor".to_owned(),
            format!("{live} && document.querySelector('[data-counter=\"5\"]')"),
        ),
        (
            "/screens/kpi/chuo#token=demo-analyst".to_owned(),
            "document.body.dataset.loaded === '1'".to_owned(),
        ),
        (
            phone.clone(),
            "document.body.dataset.status === 'waiting' && document.body.dataset.live === 'live'"
                .to_owned(),
        ),
        (
            "/screens/counter/nowhere".to_owned(),
            "document.body.innerText.includes('Unknown site')".to_owned(),
        ),
    ];
    for (path, ready) in &pages {
        b.goto(&server.url(path)).await;
        b.wait(&format!("{path} to be ready"), ready, WAIT).await;
        assert_eq!(
            b.exec("return window.cspViolations").await,
            json!([]),
            "{path}: refused by the Content-Security-Policy"
        );
    }
    b.assert_no_csp_violations("the screens").await;

    // The check works: what the policy refuses does not run, and is reported.
    b.goto(&server.url("/screens/lobby/chuo")).await;
    b.wait("the lobby", "document.body.dataset.live === '1'", WAIT)
        .await;
    let ran = b
        .exec(
            "const s = document.createElement('script');
             s.textContent = 'window.inlineRan = true;';
             document.body.append(s);
             document.body.insertAdjacentHTML('beforeend',
               '<button id=\"inline-handler\" onclick=\"window.handlerRan = true\">x</button>');
             document.getElementById('inline-handler').click();
             return [window.inlineRan === true, window.handlerRan === true];",
        )
        .await;
    assert_eq!(
        ran,
        json!([false, false]),
        "inline script and handler are refused"
    );
    b.wait(
        "both refusals reported to the page",
        "window.cspViolations.length >= 2 && window.cspViolations",
        WAIT,
    )
    .await;
    let reported = b.csp_violations().await.join("\n");
    assert!(
        reported.contains("inline script") && reported.contains("inline event handler"),
        "both refusals on the console: {reported}"
    );
}

/// A page at `addr` (another origin than the server's) that frames `frames`: (id, url).
async fn city_website(listener: tokio::net::TcpListener, frames: Vec<(&'static str, String)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body: String = frames
        .iter()
        .map(|(id, url)| {
            format!("<iframe id=\"{id}\" src=\"{url}\" width=\"640\" height=\"480\" allow=\"autoplay\"></iframe>")
        })
        .collect();
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>City of Example</title><h1>Example City</h1>{body}"
    );
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let page = page.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 8192];
            let mut read = 0;
            while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") && read < buf.len() {
                match s.read(&mut buf[read..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => read += n,
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
        });
    }
}

#[tokio::test]
async fn only_the_configured_site_may_frame_the_lobby_and_nothing_else() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let website = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", website.local_addr().unwrap());
    let config = demo_config_with(
        dir.path(),
        "embedded.toml",
        &format!("[screens]\nframe_ancestors = [\"{origin}\"]\n"),
    );
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    let kiosk = server.url("/screens/kiosk/chuo?dispenser=kiosk-1");
    tokio::spawn(city_website(
        website,
        vec![
            ("lobby", server.url("/screens/lobby/chuo")),
            ("kiosk", kiosk.clone()),
        ],
    ));

    let b = Browser::start(1400, 600).await;
    b.goto(&format!("{origin}/")).await;
    // The lobby runs in the city's page, live.
    b.enter_frame("#lobby").await;
    b.wait(
        "the framed lobby to go live",
        "document.body.dataset.live === '1'",
        WAIT,
    )
    .await;
    b.leave_frame().await;
    b.screenshot("lobby-framed").await;
    // The kiosk may not be framed by anyone: the browser refuses it, and says why.
    let mut refusals = Vec::new();
    let deadline = Instant::now() + WAIT;
    while refusals.is_empty() {
        assert!(Instant::now() < deadline, "no refusal to frame the kiosk");
        refusals = b.csp_violations().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // "Framing 'http://127.0.0.1:…/' violates the following Content Security Policy directive:
    // "frame-ancestors 'none'". The request has been blocked."
    let text = refusals.join("\n");
    let server_origin = server.url("/");
    assert!(
        refusals
            .iter()
            .all(|m| m.contains(&format!("Framing '{server_origin}'"))
                && m.contains("frame-ancestors 'none'")),
        "only the kiosk is refused: {text}"
    );
    b.enter_frame("#kiosk").await;
    assert_eq!(
        b.exec("return document.body?.dataset?.step ?? null").await,
        Value::Null,
        "no kiosk in the frame"
    );
    b.leave_frame().await;
    b.assert_no_csp_violations("the city's page").await;
}
