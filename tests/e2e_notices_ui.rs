//! Residents' notices in headless Chromium against the real server, with a mail server and a
//! LINE/SMS gateway configured (neither listens: sending fails later and is only logged). On the
//! phone page a waiting ticket offers 「順番が近づいたらお知らせ」: an invalid address shows the
//! server's error and registers nothing; an address typed and 「メールで受け取る」 registers an
//! e-mail notice (the API says so) that 「取りやめる」 takes back; 「LINE・SMSで受け取る」 shows
//! the API's link code, and once the ticket is next the page says the notice went out. On the
//! booking page's done step the day-before e-mail shows when it goes out, in the site's local
//! time, as the API gives it; where the city sends no e-mail the offer goes away. Screenshots go
//! to target/screenshots/.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use browser::Browser;
use chrono::{DateTime, Datelike};
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
/// The environment variable the gateway webhook's signing secret is read from (the server
/// inherits it).
const SECRET_ENV: &str = "MADOGUCHI_UI_NOTICE_SECRET";

/// Notices at the demo site: e-mail through a mail server nobody runs, and the gateway's link
/// code through a webhook nobody takes; told when next in line.
const NOTICES: &str = r#"
[notices]
smtp_host = "127.0.0.1"
smtp_port = 9
smtp_security = "none"
from = "中央区役所 <madoguchi@city.example.jp>"

[sites.notices]
places = 1
minutes = 0

[[sites.webhooks]]
name = "line"
url = "http://127.0.0.1:9/hook"
secret_env = "MADOGUCHI_UI_NOTICE_SECRET"
events = ["notice.near_turn"]
"#;

fn notices_config(dir: &Path) -> PathBuf {
    std::env::set_var(SECRET_ENV, "ui-notice-secret-0123456789");
    demo_config_with(dir, "notices.toml", NOTICES)
}

/// A JavaScript string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

async fn ticket(server: &Server, token: &str) -> Value {
    let (status, reply) = server.get(&format!("/api/v1/tickets/{token}"), None).await;
    assert_eq!(status, 200, "{reply}");
    reply["ticket"].clone()
}

/// Replaces what a field holds, as a resident would by clearing it and typing.
async fn retype(b: &Browser, css: &str, text: &str) {
    b.exec(&format!(
        "const e = document.querySelector({}); e.value = ''; e.dispatchEvent(new Event('input', {{bubbles: true}})); return true;",
        js(css)
    ))
    .await;
    b.type_into(css, text).await;
}

/// Scrolls `css` to the top of the viewport (for a screenshot of it).
async fn scroll_to(b: &Browser, css: &str) {
    b.exec(&format!(
        "document.querySelector({}).scrollIntoView({{block: 'start'}}); return true;",
        js(css)
    ))
    .await;
}

/// The notice box in state `state` (`offer`, `asked`, `sent`), visible.
async fn notice_box(b: &Browser, state: &str) {
    b.wait(
        &format!("the notice box, {state}"),
        &format!(
            "(() => {{ const box = document.getElementById('notice-box');
                 return box && !box.hidden && box.offsetParent !== null && box.dataset.state === {}; }})()",
            js(state)
        ),
        WAIT,
    )
    .await;
}

#[tokio::test]
async fn a_waiting_ticket_asks_for_its_near_turn_notice_by_email_or_by_link_on_the_phone() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = notices_config(dir.path());
    let server = Server::start_with(&dir.path().join("data"), &config).await;

    // One counter calls the one-stop line, so a ticket behind another is neither next nor
    // called at once: its notice waits.
    for id in 2..=9 {
        let (status, reply) = server.counter(&id.to_string(), "close", None).await;
        assert_eq!(status, 200, "close counter {id}: {reply}");
    }
    let first = server.issue(json!({"procedures": ["tennyu"]})).await;
    let mine = server.issue(json!({"procedures": ["tennyu"]})).await;
    let other = server.issue(json!({"procedures": ["tennyu"]})).await;
    let token = mine["token"].as_str().unwrap().to_owned();
    let view = ticket(&server, &token).await;
    assert_eq!(view["position"], 2, "{view}");
    assert_eq!(
        view["notices"],
        json!({"places": 1, "minutes": 0, "channels": ["email", "link"]}),
        "{view}"
    );
    assert!(view.get("notice").is_none(), "{view}");

    let b = Browser::start(390, 844).await;
    b.record_csp().await;
    b.goto(&server.url(&format!("/t/{token}"))).await;
    notice_box(&b, "offer").await;
    let text = b.text("#notice-box").await;
    for words in [
        "順番が近づいたらお知らせ",
        "Tell me when my turn is near",
        "あと 1 番目で1回だけお知らせします",
        "Once, when you are 1 place from your call",
        "メールで受け取る",
        "LINE・SMSで受け取る",
        "メールアドレスはお知らせ後・ご用件終了時に削除します",
        "Your address is deleted after the notice or when your visit ends",
    ] {
        assert!(text.contains(words), "{words:?} in {text}");
    }
    assert_eq!(
        b.exec("return document.getElementById('notice-email').type")
            .await,
        "email"
    );

    // An address the mail server would not take: the server's words, nothing registered.
    b.type_into("#notice-email", "hanako@@example").await;
    b.click("#notice-email-submit").await;
    b.wait(
        "the invalid address refused",
        "document.getElementById('notice-error')?.textContent.includes('メールアドレスを確認してください')",
        WAIT,
    )
    .await;
    assert_eq!(
        b.exec("return document.getElementById('notice-email').value")
            .await,
        "hanako@@example",
        "the address stays to be corrected"
    );
    assert!(
        ticket(&server, &token).await.get("notice").is_none(),
        "nothing registered"
    );

    // A valid one: registered by e-mail, as the API says.
    retype(&b, "#notice-email", "hanako@example.jp").await;
    b.wait(
        "the error gone while the address is corrected",
        "!document.getElementById('notice-error')",
        WAIT,
    )
    .await;
    scroll_to(&b, "#notice-box").await;
    b.screenshot("phone-notice").await;
    b.click("#notice-email-submit").await;
    notice_box(&b, "asked").await;
    assert_eq!(
        b.exec("return document.getElementById('notice-box').dataset.channel")
            .await,
        "email"
    );
    let state = b.text("#notice-state").await;
    assert!(
        state.contains("お知らせを受け付けました") && state.contains("You will be told"),
        "{state}"
    );
    assert!(
        b.exec("return !document.getElementById('notice-error')")
            .await
            .as_bool()
            .unwrap(),
        "the error is gone"
    );
    let view = ticket(&server, &token).await;
    assert_eq!(view["notice"]["channel"], "email", "{view}");
    assert_eq!(view["notice"]["sent"], false, "{view}");
    assert!(view["notice"].get("link_code").is_none(), "{view}");
    // The address is never shown back to the page.
    assert!(
        !b.exec("return document.body.innerText")
            .await
            .as_str()
            .unwrap()
            .contains("hanako@example.jp"),
        "the address is not on the page"
    );
    scroll_to(&b, "#notice-box").await;
    b.screenshot("phone-notice-email").await;

    // Taken back: the offer again, and the API has no notice.
    b.click("#notice-withdraw").await;
    notice_box(&b, "offer").await;
    eventually("the notice withdrawn", WAIT, || async {
        ticket(&server, &token)
            .await
            .get("notice")
            .is_none()
            .then_some(())
    })
    .await;
    b.assert_strict("the phone page, e-mail notice").await;

    // Another ticket, through the gateway: the code the API holds, large, with what to do.
    let token = other["token"].as_str().unwrap().to_owned();
    b.goto(&server.url(&format!("/t/{token}"))).await;
    notice_box(&b, "offer").await;
    b.click("#notice-link").await;
    notice_box(&b, "asked").await;
    let shown = b
        .wait(
            "the link code",
            "document.getElementById('notice-code')?.dataset.linkCode",
            WAIT,
        )
        .await;
    let view = ticket(&server, &token).await;
    assert_eq!(view["notice"]["channel"], "link", "{view}");
    let code = view["notice"]["link_code"].as_str().unwrap().to_owned();
    assert_eq!(shown, code.as_str(), "{view}");
    assert_eq!(b.text("#notice-code").await, code);
    let send = b.text("#notice-send").await;
    assert!(
        send.contains("この番号を市の LINE 公式アカウント または SMS に送ってください")
            && send.contains("Send this code to the city's LINE account or SMS number"),
        "{send}"
    );
    scroll_to(&b, "#notice-box").await;
    b.screenshot("phone-notice-link").await;

    // The line moves until this ticket is next: the notice goes out, and the page says so.
    let (status, called) = server.counter("1", "call-next", None).await;
    assert_eq!(status, 200, "{called}");
    assert_eq!(called["ticket"]["number"], first["number"], "{called}");
    server.counter("1", "start", None).await;
    server.counter("1", "complete", None).await;
    let (status, called) = server.counter("1", "call-next", None).await;
    assert_eq!(status, 200, "{called}");
    assert_eq!(called["ticket"]["number"], mine["number"], "{called}");
    notice_box(&b, "sent").await;
    let state = b.text("#notice-state").await;
    assert!(
        state.contains("お知らせしました") && state.contains("Notice sent"),
        "{state}"
    );
    assert_eq!(b.text("#notice-code").await, code, "the code stays shown");
    assert!(
        b.exec("return !document.getElementById('notice-withdraw')")
            .await
            .as_bool()
            .unwrap(),
        "nothing to take back once sent"
    );
    let view = ticket(&server, &token).await;
    assert_eq!(view["notice"]["sent"], true, "{view}");
    b.assert_strict("the phone page, link notice").await;
}

/// A phone books the first free slot of the second open day from tomorrow on (its reminder,
/// the day before, is then still to come), by clicks; returns the booking code shown.
async fn book_by_clicks(b: &Browser, page: &str) -> String {
    b.goto(page).await;
    b.click("[data-life-event=\"moving_in\"]").await;
    for (id, yes) in [
        ("children", true),
        ("kokuho", true),
        ("over_65", false),
        ("over_75", false),
    ] {
        b.wait(
            &format!("question {id}"),
            &format!(
                "document.body.dataset.step === 'questions'
                   && document.getElementById('step-title')?.dataset.question === {}",
                js(id)
            ),
            WAIT,
        )
        .await;
        b.click(if yes {
            "[data-answer=\"yes\"]"
        } else {
            "[data-answer=\"no\"]"
        })
        .await;
    }
    b.click("#to-days").await;
    b.wait(
        "the calendar, filled in",
        "document.body.dataset.step === 'days'
           && document.querySelectorAll('[data-date]').length === 28
           && !document.querySelector('[data-date][data-day-state=\"loading\"]')
           && document.querySelector('[data-date][data-day-state=\"open\"]')",
        WAIT,
    )
    .await;
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive()
        .to_string();
    let open = b
        .exec("return [...document.querySelectorAll('[data-date][data-day-state=\"open\"]')].map((d) => d.dataset.date)")
        .await;
    let open: Vec<&str> = open
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .filter(|d| *d != today)
        .collect();
    assert!(open.len() >= 2, "open days: {open:?}");
    b.click(&format!("[data-date=\"{}\"]", open[1])).await;
    b.click("[data-slot]:not([disabled])").await;
    b.click("#book").await;
    let code = b
        .wait(
            "the booking code",
            "document.body.dataset.step === 'done' && document.getElementById('code')?.dataset.code",
            WAIT,
        )
        .await;
    code.as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_booking_sets_its_day_before_reminder_on_the_done_step() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = notices_config(dir.path());
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    let b = Browser::start(390, 844).await;
    b.record_csp().await;

    let code = book_by_clicks(&b, &server.url("/book/chuo")).await;
    b.wait(
        "the reminder offer",
        "document.getElementById('remind')?.dataset.state === 'idle'",
        WAIT,
    )
    .await;
    let text = b.text("#remind").await;
    for words in [
        "前日にメールでお知らせ",
        "Remind me the day before by e-mail",
        "任意",
    ] {
        assert!(text.contains(words), "{words:?} in {text}");
    }

    // An invalid address: the server's words under the field.
    b.type_into("#remind-email", "taro@").await;
    b.click("#remind-submit").await;
    b.wait(
        "the invalid address refused",
        "document.getElementById('remind-error')?.textContent.includes('メールアドレスを確認してください')",
        WAIT,
    )
    .await;

    // A valid one: when it goes out, in the site's local time, as the API has it.
    retype(&b, "#remind-email", "taro@example.jp").await;
    b.wait(
        "the error gone while the address is corrected",
        "!document.getElementById('remind-error')",
        WAIT,
    )
    .await;
    b.click("#remind-submit").await;
    let shown_at = b
        .wait(
            "the reminder's time",
            "document.getElementById('remind')?.dataset.state === 'set'
               && document.getElementById('remind-at')?.dataset.remindAt",
            WAIT,
        )
        .await;
    let (status, reply) = server
        .post(
            &format!("/api/v1/sites/chuo/reservations/{code}/reminder"),
            None,
            Some(json!({"email": "taro@example.jp", "lang": "ja"})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let remind_at = DateTime::parse_from_rfc3339(reply["remind_at"].as_str().unwrap()).unwrap();
    let shown = DateTime::parse_from_rfc3339(shown_at.as_str().unwrap()).unwrap();
    assert_eq!(shown, remind_at, "the page shows the API's time");
    assert!(remind_at > chrono::Utc::now(), "still to come: {remind_at}");
    // The day before the slot, in the site's zone.
    let (status, booked) = server
        .get(&format!("/api/v1/sites/chuo/reservations/{code}"), None)
        .await;
    assert_eq!(status, 200, "{booked}");
    let slot = DateTime::parse_from_rfc3339(booked["reservation"]["slot_start"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Tokyo);
    // Written in the site's time (Asia/Tokyo): its wall clock is what the page shows.
    assert_eq!(
        remind_at.offset().local_minus_utc(),
        9 * 3600,
        "{remind_at}"
    );
    assert_eq!(
        remind_at.date_naive().succ_opt().unwrap(),
        slot.date_naive(),
        "the day before: {remind_at} / {slot}"
    );
    let text = b.text("#remind-at").await;
    let day = format!("{}月{}日", remind_at.month(), remind_at.day());
    let time = remind_at.format("%-H:%M").to_string();
    assert!(
        text.contains(&day) && text.contains(&format!("{time} にお送りします")),
        "{text} vs {remind_at}"
    );
    assert!(
        text.contains(&format!(
            "We will send it at {}",
            remind_at.format("%a, %b %-d, %-H:%M")
        )),
        "{text} vs {remind_at}"
    );
    scroll_to(&b, "#remind").await;
    b.screenshot("book-reminder").await;
    b.assert_strict("the booking page, reminder").await;

    // Where the city sends no e-mail, the offer goes away once the server says so.
    let plain = Server::start(&dir.path().join("plain")).await;
    let code = book_by_clicks(&b, &plain.url("/book/chuo")).await;
    b.type_into("#remind-email", "taro@example.jp").await;
    b.click("#remind-submit").await;
    b.wait(
        "the offer gone",
        "document.body.dataset.step === 'done' && document.getElementById('code') && !document.getElementById('remind')",
        WAIT,
    )
    .await;
    let (status, reply) = plain
        .post(
            &format!("/api/v1/sites/chuo/reservations/{code}/reminder"),
            None,
            Some(json!({"email": "taro@example.jp"})),
        )
        .await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(reply["error"]["code"], "no_notices", "{reply}");
    b.assert_strict("the booking page, no e-mail").await;
}
