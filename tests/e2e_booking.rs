//! The booking page (来庁予約, /book/{site}) and the kiosk's check-in, in headless Chromium against
//! the real server: a resident books by clicks on a phone, in Japanese and in English, to a code
//! whose booking the API holds with the plan and slot clicked; a slot filled while the resident
//! confirms sends them back to the day's slots; a plan whose queue takes no bookings is sent to
//! come without one; a booking is found by its code as typed, moved and cancelled (the API then
//! answers 404); at the kiosk, a booking's code typed and keyed in gives a number of the booked
//! plan, one too early says from when, an unknown one asks to check it. Screenshots go to
//! target/screenshots/.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::time::Duration;

use browser::Browser;
use chrono::DateTime;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// A JavaScript string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The local time written in an RFC 3339 string as the pages show it: "9:05".
fn hm(t: &Value) -> String {
    DateTime::parse_from_rfc3339(t.as_str().unwrap())
        .unwrap()
        .format("%-H:%M")
        .to_string()
}

/// The same instant, whatever the offset it is written with.
fn same_instant(a: &Value, b: &str) -> bool {
    DateTime::parse_from_rfc3339(a.as_str().unwrap()).unwrap()
        == DateTime::parse_from_rfc3339(b).unwrap()
}

/// Answers the booking page's questions in order, each once its question is shown.
async fn answer(b: &Browser, answers: &[(&str, bool)]) {
    for (id, yes) in answers {
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
        b.click(if *yes {
            "[data-answer=\"yes\"]"
        } else {
            "[data-answer=\"no\"]"
        })
        .await;
    }
}

/// The procedures listed as the plan on the page.
async fn shown_plan(b: &Browser) -> Value {
    b.exec("return [...document.querySelectorAll('#plan li')].map((li) => li.dataset.procedure)")
        .await
}

/// The calendar, once filled in: the date of its `nth` open day from tomorrow on (from 0).
async fn open_day(b: &Browser, nth: usize) -> String {
    b.wait(
        "the calendar, filled in",
        "document.body.dataset.step === 'days'
           && document.querySelectorAll('[data-date]').length === 28
           && !document.querySelector('[data-date][data-day-state=\"loading\"]')
           && document.querySelector('[data-date][data-day-state=\"open\"]')",
        WAIT,
    )
    .await;
    // Weekends take no bookings in the demo: marked so, and not to be chosen.
    let weekend = b
        .exec(
            "return [...document.querySelectorAll('[data-weekday=\"0\"], [data-weekday=\"6\"]')]
               .map((d) => [d.dataset.dayState, d.disabled])",
        )
        .await;
    for day in weekend.as_array().unwrap() {
        assert_eq!(day, &json!(["closed", true]), "{weekend}");
    }
    let open = b
        .exec("return [...document.querySelectorAll('[data-date][data-day-state=\"open\"]')].map((d) => d.dataset.date)")
        .await;
    // Today may have a single slot left: days from tomorrow on have them all.
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive()
        .to_string();
    let open: Vec<&str> = open
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .filter(|d| *d != today)
        .collect();
    assert!(open.len() > nth, "open days: {open:?}");
    open[nth].to_owned()
}

/// The free slots the page lists for the chosen day, as their starts.
async fn free_slots(b: &Browser) -> Vec<String> {
    b.wait(
        "the day's slots",
        "document.body.dataset.step === 'slots' && document.querySelector('[data-slot]:not([disabled])')",
        WAIT,
    )
    .await;
    let v = b
        .exec("return [...document.querySelectorAll('[data-slot]:not([disabled])')].map((s) => s.dataset.slot)")
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn slot_css(start: &str) -> String {
    format!("[data-slot=\"{start}\"]")
}

/// The booking shown on the page once made: its code, checked against the API.
async fn booked_code(b: &Browser) -> String {
    let code = b
        .wait(
            "the booking code",
            "document.body.dataset.step === 'done' && document.getElementById('code')?.dataset.code",
            WAIT,
        )
        .await;
    let code = code.as_str().unwrap().to_owned();
    assert_eq!(code.len(), 8, "{code}");
    assert!(
        code.chars()
            .all(|c| "ACDEFGHJKMNPQRTUVWXY234679".contains(c)),
        "{code}"
    );
    assert_eq!(
        b.text("#code").await,
        format!("{}-{}", &code[..4], &code[4..]),
        "grouped 4-4"
    );
    code
}

async fn reservation(server: &Server, code: &str) -> (u16, Value) {
    server
        .get(&format!("/api/v1/sites/chuo/reservations/{code}"), None)
        .await
}

/// Waits for the QR code when the server has it; without it the page shows none.
async fn qr_shown_if_served(server: &Server, b: &Browser, code: &str) {
    let status = server
        .http
        .get(server.url(&format!("/api/v1/sites/chuo/reservations/{code}/qr.svg")))
        .send()
        .await
        .unwrap()
        .status();
    if status.is_success() {
        b.wait(
            "the QR code",
            "!document.getElementById('qr-box').hidden && document.getElementById('qr').naturalWidth > 0",
            WAIT,
        )
        .await;
    } else {
        assert!(
            b.exec("return document.getElementById('qr-box').hidden")
                .await
                .as_bool()
                .unwrap(),
            "no QR code without the server's ({status})"
        );
    }
}

const MOVING_IN: [(&str, bool); 4] = [
    ("children", true),
    ("kokuho", true),
    ("over_65", false),
    ("over_75", false),
];
const MOVING_IN_PLAN: [&str; 6] = [
    "tennyu",
    "jidou_teate",
    "kodomo_iryou",
    "tennyugaku",
    "kokumin_kenkou_hoken",
    "kokumin_nenkin",
];

#[tokio::test]
async fn residents_book_view_move_and_cancel_on_a_phone_in_japanese_and_english() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    // The page is served like the others: the strict policy, not framed; an unknown site's is not found.
    let page = server.url("/book/chuo");
    let served = server.http.get(&page).send().await.unwrap();
    assert_eq!(served.status(), 200);
    let csp = served.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let unknown = server
        .http
        .get(server.url("/book/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let b = Browser::start(390, 844).await;
    b.record_csp().await;

    // Certificates only wait in a queue that takes no bookings: come without one.
    b.goto(&page).await;
    b.wait(
        "the life events",
        "document.body.dataset.step === 'events' && document.querySelector('[data-life-event]')",
        WAIT,
    )
    .await;
    assert_eq!(b.exec("return document.documentElement.lang").await, "ja");
    b.click("[data-life-event=\"certificates\"]").await;
    let refused = b
        .wait(
            "the plan, not bookable",
            "document.getElementById('not-bookable')?.textContent",
            WAIT,
        )
        .await;
    assert!(
        refused.as_str().unwrap().contains("予約なしで"),
        "{refused}"
    );
    assert!(
        b.exec("return !document.getElementById('to-days')")
            .await
            .as_bool()
            .unwrap(),
        "nothing to book"
    );
    b.click("[data-go=\"restart\"]").await;

    // Moving in, in Japanese: the questions, the plan, a day, a slot.
    b.click("[data-life-event=\"moving_in\"]").await;
    answer(&b, &MOVING_IN).await;
    b.wait(
        "the plan, bookable",
        "document.body.dataset.step === 'plan' && document.getElementById('to-days')",
        WAIT,
    )
    .await;
    assert_eq!(shown_plan(&b).await, json!(MOVING_IN_PLAN));
    let text = b.exec("return document.body.innerText").await;
    for words in ["ご案内する手続き", "住民異動届（転入）", "児童手当"] {
        assert!(text.as_str().unwrap().contains(words), "{words:?}: {text}");
    }
    b.screenshot("book-plan").await;
    b.click("#to-days").await;
    let day = open_day(&b, 0).await;
    b.screenshot("book-days").await;
    b.click(&format!("[data-date=\"{day}\"]")).await;
    let slots = free_slots(&b).await;
    assert!(slots.len() >= 2, "{slots:?}");
    b.screenshot("book-slots").await;

    // The slot fills while the resident confirms: back to the day's slots, told why.
    let taken = slots[0].clone();
    b.click(&slot_css(&taken)).await;
    b.wait(
        "the confirmation",
        "document.body.dataset.step === 'confirm' && document.getElementById('book')",
        WAIT,
    )
    .await;
    let (status, reply) = server
        .send(
            reqwest::Method::PUT,
            "/api/v1/sites/chuo/queues/onestop/slot-capacity",
            Some(FLOOR),
            Some(json!({"start": taken, "capacity": 0})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    b.click("#book").await;
    b.wait(
        "the slots again, with the reason",
        "document.body.dataset.step === 'slots'
           && document.getElementById('notice')?.textContent.includes('満員')",
        WAIT,
    )
    .await;
    assert_eq!(
        b.exec(&format!(
            "return document.querySelector({}).disabled",
            js(&slot_css(&taken))
        ))
        .await,
        true,
        "the filled slot cannot be chosen"
    );
    let chosen = slots[1].clone();
    b.click(&slot_css(&chosen)).await;
    b.click("#book").await;
    let code = booked_code(&b).await;
    let (status, booked) = reservation(&server, &code).await;
    assert_eq!(status, 200, "{booked}");
    let r = &booked["reservation"];
    assert_eq!(r["life_event"], "moving_in", "{r}");
    assert_eq!(r["queue"], "onestop", "{r}");
    assert_eq!(r["procedures"], json!(MOVING_IN_PLAN), "{r}");
    assert!(same_instant(&r["slot_start"], &chosen), "{r} vs {chosen}");
    assert!(r["slot_start"].as_str().unwrap().starts_with(&day), "{r}");
    let check_in = b.text("#check-in").await;
    assert!(
        check_in.contains(&format!(
            "受付機で予約番号を入力してください。{}〜{}",
            hm(&r["check_in_from"]),
            hm(&r["check_in_until"])
        )),
        "{check_in} / {r}"
    );
    assert!(b.text("#when").await.contains(&hm(&r["slot_start"])), "{r}");
    assert!(
        b.text("#privacy").await.contains("個人情報は不要"),
        "no name asked"
    );
    qr_shown_if_served(&server, &b, &code).await;
    b.screenshot("book-done").await;
    b.assert_strict("the booking page (ja)").await;

    // In English through the page's own button: the birth of a child, on another day.
    b.goto(&page).await;
    b.click("#lang").await;
    b.wait(
        "the English page",
        "document.documentElement.lang === 'en' && location.search === '?lang=en'
           && document.querySelector('[data-life-event=\"birth\"]')?.textContent.includes('Birth of a child')",
        WAIT,
    )
    .await;
    b.click("[data-life-event=\"birth\"]").await;
    answer(
        &b,
        &[
            ("kokuho", true),
            ("nursery", false),
            ("single_parent", false),
        ],
    )
    .await;
    b.wait(
        "the plan, bookable",
        "document.body.dataset.step === 'plan' && document.getElementById('to-days')",
        WAIT,
    )
    .await;
    let birth_plan = json!([
        "shussei",
        "jidou_teate",
        "kodomo_iryou",
        "kokumin_kenkou_hoken"
    ]);
    assert_eq!(shown_plan(&b).await, birth_plan);
    b.click("#to-days").await;
    let day_en = open_day(&b, 1).await;
    b.click(&format!("[data-date=\"{day_en}\"]")).await;
    let slots_en = free_slots(&b).await;
    let chosen_en = slots_en.last().unwrap().clone();
    b.click(&slot_css(&chosen_en)).await;
    b.wait(
        "the confirmation",
        "document.getElementById('book')?.textContent.includes('Book this visit')",
        WAIT,
    )
    .await;
    b.click("#book").await;
    let code_en = booked_code(&b).await;
    assert_ne!(code_en, code);
    let (status, booked_en) = reservation(&server, &code_en).await;
    assert_eq!(status, 200, "{booked_en}");
    let r_en = &booked_en["reservation"];
    assert_eq!(r_en["life_event"], "birth", "{r_en}");
    assert_eq!(r_en["procedures"], birth_plan, "{r_en}");
    assert!(same_instant(&r_en["slot_start"], &chosen_en), "{r_en}");
    let check_in = b.text("#check-in").await;
    assert!(
        check_in.contains(&format!(
            "Check in at the kiosk from {} to {}",
            hm(&r_en["check_in_from"]),
            hm(&r_en["check_in_until"])
        )),
        "{check_in}"
    );
    assert!(
        b.text("#privacy")
            .await
            .contains("No name or contact details are needed"),
        "no name asked"
    );
    b.screenshot("book-done-en").await;
    b.assert_strict("the booking page (en)").await;

    // The first booking, by its code as a resident may type it: shown, moved, cancelled.
    b.goto(&page).await;
    b.click("#manage-start").await;
    b.wait(
        "the code form",
        "document.body.dataset.step === 'lookup' && document.getElementById('lookup-code')",
        WAIT,
    )
    .await;
    b.type_into(
        "#lookup-code",
        &format!("{} {}", code[..4].to_lowercase(), &code[4..]),
    )
    .await;
    b.click("#lookup-submit").await;
    b.wait(
        "the booking",
        &format!(
            "document.body.dataset.step === 'manage' && document.getElementById('code')?.dataset.code === {}",
            js(&code)
        ),
        WAIT,
    )
    .await;
    assert_eq!(shown_plan(&b).await, json!(MOVING_IN_PLAN));
    b.click("#change").await;
    let new_day = open_day(&b, 2).await;
    b.click(&format!("[data-date=\"{new_day}\"]")).await;
    let new_slot = free_slots(&b).await[0].clone();
    b.click(&slot_css(&new_slot)).await;
    b.click("#move-confirm").await;
    b.wait(
        "the booking moved",
        &format!(
            "document.body.dataset.step === 'done' && document.getElementById('code')?.dataset.code === {}",
            js(&code)
        ),
        WAIT,
    )
    .await;
    let (_, moved) = reservation(&server, &code).await;
    assert!(
        same_instant(&moved["reservation"]["slot_start"], &new_slot),
        "{moved} vs {new_slot}"
    );
    b.click("#manage-this").await;
    b.click("#cancel").await;
    b.wait(
        "the question",
        "document.body.dataset.step === 'cancel' && document.getElementById('cancel-yes')",
        WAIT,
    )
    .await;
    // Asked first: "keep it" keeps it.
    b.click("#cancel-no").await;
    b.wait(
        "the booking again",
        "document.body.dataset.step === 'manage'",
        WAIT,
    )
    .await;
    assert_eq!(reservation(&server, &code).await.0, 200);
    b.click("#cancel").await;
    b.click("#cancel-yes").await;
    b.wait(
        "cancelled",
        "document.body.dataset.step === 'cancelled'",
        WAIT,
    )
    .await;
    let (status, gone) = reservation(&server, &code).await;
    assert_eq!(status, 404, "{gone}");
    // The page says so for a code that is gone.
    b.click("[data-go=\"restart\"]").await;
    b.click("#manage-start").await;
    b.wait(
        "the code form",
        "document.getElementById('lookup-code')",
        WAIT,
    )
    .await;
    b.type_into("#lookup-code", &code).await;
    b.click("#lookup-submit").await;
    b.wait(
        "not found",
        "document.getElementById('notice')?.textContent.includes('この予約番号の予約はありません')",
        WAIT,
    )
    .await;
    assert_eq!(
        reservation(&server, &code_en).await.0,
        200,
        "the other stays"
    );
    b.assert_strict("the booking page (manage)").await;
}

/// The demo configuration in a zone where it is midday, with 5-minute slots that may be checked
/// in at from 15 minutes before: the next slot can be checked in at now. Every queue takes
/// tickets 06:00–18:00 every day, holidays too (slots tile those hours), so this holds whatever
/// the day.
fn check_in_now_config(dir: &std::path::Path) -> std::path::PathBuf {
    midday_demo_config(
        dir,
        "check-in.toml",
        "weekdays = [\"06:00-18:00\"]\nsat = [\"06:00-18:00\"]\nsun = [\"06:00-18:00\"]\n\
         last_reception_min = 15\nholidays = \"open\"",
        Some(
            "queues = [\"onestop\"]\nslot_min = 5\ncheck_in_early_min = 15\n\
             periods = [\"00:00-23:55\"]",
        ),
    )
}

/// Books the first slot of today starting at least `min_ahead` minutes from now, by API.
async fn book_ahead(server: &Server, min_ahead: i64) -> Value {
    let (status, reply) = server
        .get("/api/v1/sites/chuo/reservations/slots?queue=onestop", None)
        .await;
    assert_eq!(status, 200, "{reply}");
    let after = chrono::Utc::now() + chrono::Duration::minutes(min_ahead);
    let slot = reply["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["free"].as_u64().unwrap() > 0
                && DateTime::parse_from_rfc3339(s["start"].as_str().unwrap()).unwrap() > after
        })
        .unwrap_or_else(|| panic!("a free slot from {after} on: {reply}"))
        .clone();
    let (status, booked) = server
        .post(
            "/api/v1/sites/chuo/reservations",
            None,
            Some(json!({"life_event": "moving_in",
                        "answers": {"children": true, "kokuho": true, "over_65": false, "over_75": false},
                        "slot": slot["start"]})),
        )
        .await;
    assert_eq!(status, 201, "{booked}");
    booked["reservation"].clone()
}

#[tokio::test]
async fn a_booking_is_checked_in_at_the_kiosk_by_its_code() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = check_in_now_config(dir.path());
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    let now = book_ahead(&server, 0).await;
    let code = now["code"].as_str().unwrap().to_owned();
    let from = DateTime::parse_from_rfc3339(now["check_in_from"].as_str().unwrap()).unwrap();
    assert!(from <= chrono::Utc::now(), "check-in is open: {now}");

    let kiosk = Browser::start(1080, 1920).await;
    kiosk.record_csp().await;
    let url = server.url("/screens/kiosk/chuo?dispenser=kiosk-1");
    kiosk.open_with_token(&url, "dispenser", DISPENSER).await;
    kiosk
        .wait(
            "the start screen with check-in",
            "document.body.dataset.step === 'events' && document.getElementById('checkin-start')",
            WAIT,
        )
        .await;
    assert!(
        kiosk.text("#checkin-start").await.contains("予約の方"),
        "the button says who it is for"
    );
    kiosk.click("#checkin-start").await;
    kiosk
        .wait(
            "the code entry",
            "document.body.dataset.step === 'checkin' && document.getElementById('checkin-code')",
            WAIT,
        )
        .await;
    // Half typed (lower case, a hyphen: as a keyboard or a scanner gives it), half on the keys.
    kiosk
        .type_into("#checkin-code", &format!("{}-", code[..4].to_lowercase()))
        .await;
    assert_eq!(
        kiosk
            .exec("return document.getElementById('checkin-code').value")
            .await,
        code[..4],
        "normalized as typed"
    );
    for c in code[4..].chars() {
        kiosk.click(&format!("[data-key=\"{c}\"]")).await;
    }
    assert_eq!(
        kiosk
            .exec("return document.getElementById('checkin-code').value")
            .await,
        format!("{}-{}", &code[..4], &code[4..]),
        "grouped 4-4"
    );
    kiosk.screenshot("kiosk-check-in-code").await;
    kiosk.click("#checkin").await;
    let number = kiosk
        .wait(
            "the ticket",
            "document.body.dataset.step === 'ticket' && document.getElementById('ticket-number')?.textContent.trim()",
            WAIT,
        )
        .await;
    let number = number.as_str().unwrap().to_owned();
    let n: u32 = number
        .parse()
        .unwrap_or_else(|_| panic!("a one-stop number is plain: {number}"));
    assert!((1..=499).contains(&n), "{number}");
    assert!(
        kiosk
            .text("#ticket-reservation")
            .await
            .contains("ご予約の方 / Reservation"),
        "the reservation line"
    );
    assert_eq!(
        kiosk
            .exec("return [...document.querySelectorAll('#ticket-plan li')].map((li) => li.dataset.procedure)")
            .await,
        json!(MOVING_IN_PLAN),
        "the booked plan"
    );
    kiosk.screenshot("kiosk-check-in").await;
    let (status, list) = server
        .get("/api/v1/sites/chuo/tickets", Some(COUNTER))
        .await;
    assert_eq!(status, 200, "{list}");
    let ticket = list["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["number"] == number.as_str())
        .unwrap_or_else(|| panic!("ticket {number} in {list}"));
    assert_eq!(ticket["queue"], "onestop", "{ticket}");
    assert_eq!(ticket["procedures"], json!(MOVING_IN_PLAN), "{ticket}");

    // Too early: the kiosk says from when.
    let later = book_ahead(&server, 30).await;
    kiosk.goto(&url).await;
    kiosk.click("#checkin-start").await;
    kiosk
        .wait(
            "the code entry",
            "document.getElementById('checkin-code')",
            WAIT,
        )
        .await;
    kiosk
        .type_into("#checkin-code", later["code"].as_str().unwrap())
        .await;
    kiosk.click("#checkin").await;
    let early = kiosk
        .wait(
            "the too-early notice",
            "document.body.dataset.step === 'early' && document.getElementById('early-text')?.textContent",
            WAIT,
        )
        .await;
    let from = hm(&later["check_in_from"]);
    assert!(
        early
            .as_str()
            .unwrap()
            .contains(&format!("{from}から受付できます")),
        "{early} / {later}"
    );
    kiosk.screenshot("kiosk-check-in-early").await;

    // An unknown code: asked to check it, the code kept to correct.
    kiosk.click("[data-go=\"back\"]").await;
    kiosk
        .wait(
            "the code entry",
            "document.body.dataset.step === 'checkin'",
            WAIT,
        )
        .await;
    kiosk.click("#key-clear").await;
    kiosk.type_into("#checkin-code", "AAAA-AAAA").await;
    kiosk.click("#checkin").await;
    kiosk
        .wait(
            "not found",
            "document.body.dataset.step === 'checkin'
               && document.getElementById('checkin-error')?.textContent.includes('見つかりません')
               && document.getElementById('checkin-code').value === 'AAAA-AAAA'",
            WAIT,
        )
        .await;
    kiosk.assert_strict("the kiosk").await;
}
