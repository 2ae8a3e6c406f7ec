//! The public congestion page and reception closing, in headless Chromium against the real
//! server: the page for the demo site shows the board's figures at the same seq, in Japanese and
//! in English, with its forecast calendar; a queue the floor manager closes is closed at the kiosk
//! (its life event and issue button disabled, then a full-screen notice when no queue takes
//! tickets), the issue API refuses it with 409 `queue_closed`, and the kiosk offers it again once
//! the floor keeps it open. Screenshots go to target/screenshots/.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::time::{Duration, Instant};

use browser::Browser;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// A wait as the screens show it: 「まもなく」 below 3 minutes, else to the nearest 5 minutes.
fn wait_text(seconds: u64, lang: &str) -> String {
    if seconds < 180 {
        return if lang == "ja" {
            "まもなく"
        } else {
            "shortly"
        }
        .to_owned();
    }
    let m = ((seconds as f64 / 300.0).round() as u64 * 5).max(5);
    if lang == "ja" {
        format!("約{m}分")
    } else {
        format!("about {m} min")
    }
}

/// What the public page shows: the seq of its figures and, per queue, (id, waiting, estimated
/// wait in seconds, the wait as written).
async fn page_figures(b: &Browser) -> Value {
    b.exec(
        "const s = document.querySelector('.pc-queues[data-site=\"chuo\"]');
         if (!s) return null;
         return {seq: Number(s.dataset.seq), queues: [...s.querySelectorAll('[data-queue]')].map((q) => ({
           id: q.dataset.queue,
           waiting: Number(q.querySelector('.waiting').dataset.waiting),
           shown: Number(q.querySelector('.waiting .pc-n').textContent),
           wait_s: Number(q.querySelector('.wait').dataset.waitS),
           wait_text: q.querySelector('.wait').textContent.trim(),
         }))};",
    )
    .await
}

/// Reloads the public page until it shows the board's seq, then checks every queue's waiting
/// count and estimated wait against the board at that seq (estimates are refreshed after a burst
/// without a new seq: both are read again until they agree).
async fn page_matches_board(server: &Server, b: &Browser, url: &str, lang: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        b.goto(url).await;
        b.wait(
            "the figures",
            "document.querySelector('.pc-queues[data-site=\"chuo\"]')",
            WAIT,
        )
        .await;
        let shown = page_figures(b).await;
        let board = server.board().await;
        let same_seq = shown["seq"] == board["seq"];
        let agree = same_seq
            && board["queues"].as_array().unwrap().iter().all(|q| {
                let Some(p) = shown["queues"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["id"] == q["id"])
                else {
                    return false;
                };
                let s = q["estimated_wait_s"].as_u64().unwrap();
                p["waiting"] == q["waiting"]
                    && p["shown"] == q["waiting"]
                    && p["wait_s"].as_u64() == Some(s)
                    && p["wait_text"] == wait_text(s, lang).as_str()
            });
        if agree {
            return board;
        }
        assert!(
            Instant::now() < deadline,
            "the public page ({lang}) never showed the board's figures:\npage  {shown}\nboard {board}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_public_page_shows_the_boards_figures_in_japanese_and_english() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Five weeks of history for the forecast calendar.
    let data = dir.path().join("data");
    let generated = std::process::Command::new(binary())
        .args(["generate", "--days", "25", "--visitors-per-day", "300"])
        .arg("--data")
        .arg(&data)
        .arg("--config")
        .arg(repo_path("config/demo.toml"))
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let server = Server::start(&data).await;
    for _ in 0..3 {
        server.issue(json!({"procedures": ["shoumei"]})).await;
    }
    for children in [true, false, true, false] {
        server
            .issue(json!({"life_event": "moving_in", "answers": {
                "children": children, "kokuho": true, "over_65": false, "over_75": false}}))
            .await;
    }
    // Counter 6 serves certificates first: C001 is called.
    let (status, called) = server.counter("6", "call-next", None).await;
    assert_eq!(status, 200, "{called}");
    let calling = called["ticket"]["number"].as_str().unwrap().to_owned();

    // The public JSON agrees with the board at its seq (no token needed).
    let (status, public) = server
        .get("/api/v1/public/congestion?site=chuo", None)
        .await;
    assert_eq!(status, 200, "{public}");
    let site = &public["sites"][0];
    assert_eq!(site["id"], "chuo");
    let certificates = site["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == "certificates")
        .unwrap();
    assert_eq!(certificates["now_calling"], json!([calling]));

    let b = Browser::start(390, 844).await;
    b.record_csp().await;
    let ja = server.url("/public/congestion/chuo");
    let board = page_matches_board(&server, &b, &ja, "ja").await;
    assert_eq!(b.exec("return document.documentElement.lang").await, "ja");
    let text = b.exec("return document.body.innerText").await;
    let text = text.as_str().unwrap();
    for words in [
        "中央区役所の混雑状況",
        "待ち人数",
        "待ち時間の目安",
        "呼出中",
        "空いています",
        "更新 ",
    ] {
        assert!(text.contains(words), "{words:?} on the page:\n{text}");
    }
    let waiting: u64 = board["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["waiting"].as_u64().unwrap())
        .sum();
    assert_eq!(waiting, 6, "two certificates and four moves wait: {board}");
    assert_eq!(
        b.text("[data-queue=\"certificates\"] .calling").await,
        calling,
        "the number at the counter"
    );
    // Colour and words: every lamp says its level.
    let lamps = b
        .exec("return [...document.querySelectorAll('.pc-lamp')].map((l) => [l.dataset.level, l.textContent.trim()])")
        .await;
    for lamp in lamps.as_array().unwrap() {
        let expected = match lamp[0].as_str().unwrap() {
            "low" => "空いています",
            "medium" => "やや混雑",
            "high" => "混雑",
            other => panic!("an open queue without a level: {other} {lamps}"),
        };
        assert!(lamp[1].as_str().unwrap().contains(expected), "{lamps}");
    }
    b.screenshot("public-congestion-ja").await;

    // The forecast calendar: a weekday × hour table and the next 8 weeks, with headers.
    b.wait(
        "the forecast calendar",
        "document.querySelector('#forecast')?.dataset.ready === '1'",
        WAIT,
    )
    .await;
    let calendar = b
        .exec(
            "return {
               weekdays: document.querySelectorAll('#weekly thead th').length,
               rows: document.querySelectorAll('#weekly tbody th[scope=row]').length,
               days: document.querySelectorAll('#dates td[data-date]').length,
               caption: !!document.querySelector('#weekly caption') && !!document.querySelector('#dates caption'),
             };",
        )
        .await;
    assert_eq!(
        calendar["weekdays"], 8,
        "an hour column and 7 days: {calendar}"
    );
    assert!(calendar["rows"].as_u64().unwrap() > 0, "{calendar}");
    assert_eq!(calendar["days"], 56, "8 weeks of dates: {calendar}");
    assert_eq!(calendar["caption"], true);
    b.exec("document.getElementById('forecast').scrollIntoView(); return true;")
        .await;
    b.screenshot("public-calendar").await;
    b.assert_strict("the public page (ja)").await;

    // English through the page's own link, with the same figures.
    b.goto(&ja).await;
    b.click("#lang-link").await;
    b.wait(
        "the English page",
        "location.search === '?lang=en' && document.documentElement.lang === 'en'
         && document.querySelector('.pc-queues[data-site=\"chuo\"]')",
        WAIT,
    )
    .await;
    page_matches_board(
        &server,
        &b,
        &server.url("/public/congestion/chuo?lang=en"),
        "en",
    )
    .await;
    let text = b.exec("return document.body.innerText").await;
    let text = text.as_str().unwrap();
    for words in [
        "Chuo Ward Office",
        "Waiting",
        "Estimated wait",
        "Now calling",
        "Not busy",
        "Updated ",
    ] {
        assert!(
            text.contains(words),
            "{words:?} on the English page:\n{text}"
        );
    }
    assert_eq!(b.text("#lang-link").await, "日本語");
    b.screenshot("public-congestion-en").await;

    // Every site: a list with a lamp per queue and a link to each site's page.
    b.goto(&server.url("/public/congestion")).await;
    b.wait(
        "the list of sites",
        "document.querySelectorAll('[data-site=\"chuo\"] .pc-lamp').length === 4",
        WAIT,
    )
    .await;
    assert_eq!(
        b.exec("return document.querySelector('h2 a')?.getAttribute('href')")
            .await,
        "/public/congestion/chuo"
    );
    b.assert_strict("the public pages").await;
}

/// The demo configuration in a zone where it is midday, every queue taking tickets 06:00–18:00
/// every day (holidays too), so that the wall clock is well inside a period whatever the day.
fn open_now_config(dir: &std::path::Path) -> std::path::PathBuf {
    midday_demo_config(
        dir,
        "hours.toml",
        "weekdays = [\"06:00-18:00\"]\nsat = [\"06:00-18:00\"]\nsun = [\"06:00-18:00\"]\n\
         last_reception_min = 15\nholidays = \"open\"",
        None,
    )
}

/// A queue's entry on the board.
async fn board_queue(server: &Server, queue: &str) -> Value {
    server.board().await["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == queue)
        .cloned()
        .unwrap()
}

async fn set_reception(server: &Server, queue: &str, mode: &str) -> Value {
    let (status, reply) = server.reception(Some(FLOOR), queue, mode).await;
    assert_eq!(status, 200, "{queue} {mode}: {reply}");
    assert_eq!(reply["queue"], queue);
    reply["reception"].clone()
}

const QUEUES: [&str; 4] = ["certificates", "okuyami", "onestop", "welfare"];

#[tokio::test]
async fn a_queue_the_floor_closes_is_closed_at_the_kiosk_until_it_is_kept_open() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = open_now_config(dir.path());
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    for q in QUEUES {
        let entry = board_queue(&server, q).await;
        assert_eq!(entry["state"], "open", "{entry}");
        assert!(entry["last_reception"].is_string(), "{entry}");
    }

    let kiosk = Browser::start(1080, 1920).await;
    kiosk.record_csp().await;
    kiosk
        .open_with_token(
            &server.url("/screens/kiosk/chuo?dispenser=kiosk-1"),
            "dispenser",
            DISPENSER,
        )
        .await;
    let floor = Browser::start(1600, 1000).await;
    floor.record_csp().await;
    floor
        .open_with_token(&server.url("/screens/floor/chuo"), "floor", FLOOR)
        .await;
    floor
        .wait(
            "the queues with their reception",
            "document.querySelector('#queues [data-queue=\"certificates\"][data-reception=\"open\"]')",
            WAIT,
        )
        .await;

    // The resident is at the confirmation of "certificates only" when the floor closes it.
    kiosk
        .click("[data-life-event=\"certificates\"][data-reception=\"open\"]")
        .await;
    kiosk
        .wait(
            "the confirmation",
            "document.body.dataset.step === 'confirm' && !document.querySelector('#reception-notice')",
            WAIT,
        )
        .await;
    floor
        .click("#queues [data-queue=\"certificates\"] [data-reception-mode=\"closing\"]")
        .await;
    let closed = eventually("certificates closing on the board", WAIT, || async {
        let q = board_queue(&server, "certificates").await;
        (q["state"] == "closing").then_some(q)
    })
    .await;
    assert!(closed["next_open"].is_string(), "{closed}");
    floor
        .wait(
            "the floor board to show it",
            "document.querySelector('#queues [data-queue=\"certificates\"][data-reception=\"closing\"]')
               ?.textContent.includes('本日の受付は終了しました')",
            WAIT,
        )
        .await;
    kiosk
        .wait(
            "the issue button disabled, with the notice",
            "document.querySelector('#issue').disabled
               && document.querySelector('#reception-notice')?.textContent.includes('本日の受付は終了しました')",
            WAIT,
        )
        .await;

    // Nothing is issued for it: the API refuses with the next opening.
    let (status, refused) = server
        .post(
            "/api/v1/sites/chuo/tickets",
            Some(DISPENSER),
            Some(json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"})),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "queue_closed", "{refused}");
    assert_eq!(
        refused["error"]["next_open"], closed["next_open"],
        "{refused}"
    );
    let (_, list) = server
        .get("/api/v1/sites/chuo/tickets", Some(COUNTER))
        .await;
    assert_eq!(list["tickets"], json!([]), "no ticket was issued");

    // Back at the start: that life event is disabled with the notice, the others are offered.
    kiosk.click("[data-go=\"restart\"]").await;
    kiosk
        .wait(
            "certificates disabled on the start screen",
            "(() => { const c = document.querySelector('[data-life-event=\"certificates\"]');
                      const m = document.querySelector('[data-life-event=\"moving_in\"]');
                      return document.body.dataset.step === 'events' && c.disabled
                        && c.dataset.reception === 'closing' && c.textContent.includes('本日の受付は終了しました')
                        && m.dataset.reception === 'open' && !m.disabled; })()",
            WAIT,
        )
        .await;
    kiosk.screenshot("kiosk-closing-one").await;

    // Every queue closed: a full-screen notice, no button to issue.
    for q in ["okuyami", "onestop", "welfare"] {
        let r = set_reception(&server, q, "closing").await;
        assert_eq!(r["state"], "closing", "{r}");
    }
    kiosk
        .wait(
            "the full-screen notice",
            "document.body.dataset.step === 'closed'
               && document.querySelector('#closed-notice')?.textContent.includes('本日の受付は終了しました')
               && document.querySelector('#closed-notice').textContent.includes('次の受付')",
            WAIT,
        )
        .await;
    assert_eq!(
        kiosk
            .exec("return document.querySelectorAll('#screen button').length")
            .await,
        0,
        "no button on the closed screen"
    );
    kiosk.screenshot("kiosk-closing").await;

    // The floor keeps them open again: the kiosk offers them again and issues.
    floor
        .click("#queues [data-queue=\"certificates\"] [data-reception-mode=\"open\"]")
        .await;
    for q in ["okuyami", "onestop", "welfare"] {
        let r = set_reception(&server, q, "open").await;
        assert_eq!(r["state"], "open", "{r}");
    }
    eventually("certificates open on the board", WAIT, || async {
        (board_queue(&server, "certificates").await["state"] == "open").then_some(())
    })
    .await;
    floor
        .wait(
            "the floor board to show it open",
            "document.querySelector('#queues [data-queue=\"certificates\"][data-reception=\"open\"]')",
            WAIT,
        )
        .await;
    kiosk
        .click("[data-life-event=\"certificates\"][data-reception=\"open\"]")
        .await;
    kiosk
        .wait(
            "the confirmation, open",
            "document.body.dataset.step === 'confirm' && !document.querySelector('#reception-notice')",
            WAIT,
        )
        .await;
    kiosk.click("#issue").await;
    let number = kiosk
        .wait(
            "the ticket number",
            "document.querySelector('#ticket-number')?.textContent.trim()",
            WAIT,
        )
        .await;
    assert!(
        number.as_str().unwrap().starts_with('C'),
        "a certificates number: {number}"
    );
    // The floor's changes are in its audit trail.
    floor
        .wait(
            "the audit trail",
            "[...document.querySelectorAll('#audit [data-audit]')].some((r) => r.dataset.audit === 'reception_closed')",
            WAIT,
        )
        .await;
    kiosk.assert_strict("the kiosk").await;
    floor.assert_strict("the floor board").await;
}
