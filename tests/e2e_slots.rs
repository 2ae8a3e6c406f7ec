//! Booking slots (予約枠) on the staff screens, in headless Chromium against the real server: the
//! floor board opens its slots panel on the first day with a slot to come, the floor manager sets
//! a slot's capacity by the panel (the API then has it; a capacity out of range is refused on the
//! row) and sees the slot full once a resident books it; a site that takes no bookings shows no
//! panel. The KPI page shows the bookings of the period chosen with its own controls: none in the
//! default period (up to today), two once it reaches the booked day. Screenshots go to
//! target/screenshots/.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::time::Duration;

use browser::Browser;
use chrono::{DateTime, NaiveDate};
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// A JavaScript string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Today at the demo site (Asia/Tokyo).
fn site_today() -> NaiveDate {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive()
}

/// A day's slots of every bookable queue, by the API (with a token: never rate-limited).
async fn slots(server: &Server, date: NaiveDate) -> Vec<Value> {
    let (status, reply) = server
        .get(
            &format!("/api/v1/sites/chuo/reservations/slots?date={date}"),
            Some(FLOOR),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    reply["slots"].as_array().unwrap().clone()
}

fn starts_after_now(slot: &Value) -> bool {
    DateTime::parse_from_rfc3339(slot["start"].as_str().unwrap()).unwrap() > chrono::Utc::now()
}

/// The first day from `from` on with a slot still to come, and its slots.
async fn first_day_with_slots(server: &Server, from: NaiveDate) -> (NaiveDate, Vec<Value>) {
    for date in from.iter_days().take(35) {
        let day = slots(server, date).await;
        if day.iter().any(starts_after_now) {
            return (date, day);
        }
    }
    panic!("no day with slots in the 35 days from {from}");
}

/// The floor panel's row of a slot.
fn row(start: &str) -> String {
    format!("#slots-list tr[data-slot-start=\"{start}\"]")
}

/// A slot's figures by the API: (capacity, booked, free).
async fn slot_figures(server: &Server, date: NaiveDate, start: &str) -> (u64, u64, u64) {
    let day = slots(server, date).await;
    let s = day
        .iter()
        .find(|s| s["start"] == start)
        .unwrap_or_else(|| panic!("slot {start} in {day:?}"));
    let n = |k: &str| s[k].as_u64().unwrap();
    (n("capacity"), n("booked"), n("free"))
}

/// Waits until the floor panel shows `date`'s slots, read.
async fn panel_shows(b: &Browser, date: NaiveDate, rows: usize) {
    b.wait(
        &format!("the slots panel on {date} with {rows} rows"),
        &format!(
            "(() => {{ const p = document.getElementById('slots');
                 return p && !p.hidden && p.dataset.state === 'ready' && p.dataset.date === {}
                   && document.querySelectorAll('#slots-list tr[data-slot-start]').length === {rows}; }})()",
            js(&date.to_string())
        ),
        WAIT,
    )
    .await;
}

/// Enters `value` as the new capacity of a slot's row and presses its button, as a user
/// would (an `input` event, then a click), in one step: the panel redraws its rows when the live
/// feed or its timer brings news, so a row found in one command may be gone by the next.
async fn set_capacity(b: &Browser, start: &str, value: &str) {
    let (input, button) = (
        format!("{} input[data-slot-input]", row(start)),
        format!("{} [data-slot-set]", row(start)),
    );
    b.wait(
        "the row's input and button",
        &format!(
            "(() => {{ const i = document.querySelector({}), s = document.querySelector({});
                 return i && s && !i.disabled && !s.disabled; }})()",
            js(&input),
            js(&button)
        ),
        WAIT,
    )
    .await;
    b.exec(&format!(
        "const i = document.querySelector({}); i.focus(); i.value = {};
         i.dispatchEvent(new Event('input', {{bubbles: true}}));
         document.querySelector({}).click(); return true;",
        js(&input),
        js(value),
        js(&button)
    ))
    .await;
}

#[tokio::test]
async fn the_floor_sets_a_slots_capacity_and_sees_it_fill() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let today = site_today();
    // The day to work on: tomorrow or later, where every slot is still to come.
    let (day, day_slots) = first_day_with_slots(&server, today.succ_opt().unwrap()).await;
    assert!(day_slots.len() >= 3, "{day_slots:?}");
    let first_before = first_day_with_slots(&server, today).await.0;

    let b = Browser::start(1600, 1000).await;
    b.record_csp().await;
    b.open_with_token(&server.url("/screens/floor/chuo"), "floor", FLOOR)
        .await;
    // It opens on the first day with a slot to come: today while one is left, else the next
    // weekday with slots.
    let shown = b
        .wait(
            "the booking slots panel",
            "(() => { const p = document.getElementById('slots');
                return p && !p.hidden && p.dataset.state === 'ready' && p.dataset.date; })()",
            WAIT,
        )
        .await;
    let shown: NaiveDate = shown.as_str().unwrap().parse().unwrap();
    let first_after = first_day_with_slots(&server, today).await.0;
    assert!(
        shown == first_before || shown == first_after,
        "opened on {shown}, expected {first_before} (or {first_after})"
    );
    panel_shows(&b, shown, slots(&server, shown).await.len()).await;
    assert!(
        b.text("#slots h2").await.contains("予約枠"),
        "the panel's title"
    );

    // The next day by the panel's ▶ (a weekend says it has no slots), then the day by the date picker.
    b.click("#slots-next").await;
    let next = shown.succ_opt().unwrap();
    let next_slots = slots(&server, next).await;
    panel_shows(&b, next, next_slots.len()).await;
    if next_slots.is_empty() {
        assert!(
            b.text("#slots-list").await.contains("予約枠がありません"),
            "a day without slots says so"
        );
    }
    b.exec(&format!(
        "const i = document.getElementById('slots-date'); i.value = {};
         i.dispatchEvent(new Event('change', {{bubbles: true}})); return true;",
        js(&day.to_string())
    ))
    .await;
    panel_shows(&b, day, day_slots.len()).await;
    let start = day_slots[0]["start"].as_str().unwrap().to_owned();
    let (capacity, booked, free) = slot_figures(&server, day, &start).await;
    assert_eq!((booked, free), (0, capacity), "a fresh slot");
    let text = b.text(&row(&start)).await;
    let time = DateTime::parse_from_rfc3339(&start)
        .unwrap()
        .format("%-H:%M")
        .to_string();
    assert!(
        text.contains(&format!("{time}–"))
            && text.contains(&format!("予約 0 / 定員 {capacity}（空き {capacity}）")),
        "{text}"
    );

    // The capacity set to 1 on the row: shown at once, and the API has it.
    set_capacity(&b, &start, "1").await;
    b.wait(
        "the slot with capacity 1",
        &format!(
            "(() => {{ const r = document.querySelector({});
                 return r && r.dataset.capacity === '1' && r.dataset.free === '1' && r.dataset.state === 'open'; }})()",
            js(&row(&start))
        ),
        WAIT,
    )
    .await;
    assert!(
        b.text("#slots-note").await.contains("定員を 1 にしました"),
        "the note says so"
    );
    assert_eq!(slot_figures(&server, day, &start).await, (1, 0, 1));
    // In the floor's audit trail, by its name.
    b.wait(
        "the change in the audit trail",
        "[...document.querySelectorAll('#audit tr[data-audit=\"slot_capacity_set\"]')]
           .some((r) => r.textContent.includes('予約枠の定員変更') && r.textContent.includes('demo-floor'))",
        WAIT,
    )
    .await;

    // A capacity out of range is refused on its row, and changes nothing.
    let other = day_slots[1]["start"].as_str().unwrap().to_owned();
    set_capacity(&b, &other, "1000").await;
    let error = b
        .wait(
            "the refusal on the row",
            &format!(
                "document.querySelector({})?.classList.contains('has-error')
                   && document.getElementById('slots-error')?.textContent",
                js(&row(&other))
            ),
            WAIT,
        )
        .await;
    assert!(error.as_str().unwrap().contains("bad_capacity"), "{error}");
    assert_eq!(
        slot_figures(&server, day, &other).await.0,
        capacity,
        "unchanged"
    );

    // A resident books the slot: the panel marks it full.
    let (status, reply) = server
        .post(
            "/api/v1/sites/chuo/reservations",
            None,
            Some(json!({"procedures": ["tennyu"], "slot": start})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    b.wait(
        "the slot full",
        &format!(
            "(() => {{ const r = document.querySelector({});
                 return r && r.dataset.state === 'full' && r.dataset.booked === '1' && r.dataset.free === '0'
                   && r.textContent.includes('満員'); }})()",
            js(&row(&start))
        ),
        WAIT,
    )
    .await;
    assert_eq!(slot_figures(&server, day, &start).await, (1, 1, 0));
    // The rest of the floor board is as before.
    assert!(
        b.exec("return document.querySelectorAll('#counters article[data-counter]').length > 0 && !!document.getElementById('whatif')")
            .await
            .as_bool()
            .unwrap()
    );
    b.exec("document.getElementById('slots').scrollIntoView({block: 'start'}); return true;")
        .await;
    b.screenshot("floor-slots").await;
    b.assert_strict("the floor board's slots").await;
}

/// The demo configuration without its `[sites.reservations]` table: a site that takes no bookings.
fn no_bookings_config(dir: &std::path::Path) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(repo_path("config/demo.toml")).unwrap();
    let (head, rest) = demo
        .split_once("[sites.reservations]\n")
        .expect("the demo's [sites.reservations]");
    let (_, tail) = rest
        .split_once("\n\n")
        .expect("a blank line after [sites.reservations]");
    let path = dir.join("no-bookings.toml");
    std::fs::write(&path, format!("{head}{tail}")).unwrap();
    path
}

#[tokio::test]
async fn a_site_without_bookings_shows_no_slots_panel() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = no_bookings_config(dir.path());
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    let (status, reply) = server
        .get("/api/v1/sites/chuo/reservations/slots", None)
        .await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(reply["error"]["code"], "no_reservations", "{reply}");

    let b = Browser::start(1600, 1000).await;
    b.record_csp().await;
    b.open_with_token(&server.url("/screens/floor/chuo"), "floor", FLOOR)
        .await;
    b.wait(
        "the board, the slots panel given up",
        "document.querySelector('#counters article[data-counter]')
           && document.getElementById('slots')?.dataset.state === 'off'",
        WAIT,
    )
    .await;
    assert_eq!(
        b.exec("const p = document.getElementById('slots'); return p.hidden && p.offsetParent === null")
            .await,
        json!(true),
        "hidden"
    );
    b.assert_strict("the floor board without bookings").await;
}

#[tokio::test]
async fn the_kpi_page_shows_the_bookings_of_the_period() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let today = site_today();
    let (day, day_slots) = first_day_with_slots(&server, today.succ_opt().unwrap()).await;
    for slot in &day_slots[..2] {
        let (status, reply) = server
            .post(
                "/api/v1/sites/chuo/reservations",
                None,
                Some(json!({"procedures": ["tennyu"], "slot": slot["start"]})),
            )
            .await;
        assert_eq!(status, 201, "{reply}");
    }
    let path = format!("/api/v1/sites/chuo/kpi?from={today}&to={day}");
    let counts = eventually("the bookings in the KPI", WAIT, || async {
        let (status, kpi) = server.get(&path, Some(ANALYST)).await;
        assert_eq!(status, 200, "{kpi}");
        (kpi["reservations"]["booked"] == 2).then(|| kpi["reservations"].clone())
    })
    .await;
    assert_eq!(
        counts,
        json!({"booked": 2, "checked_in": 0, "late": 0, "no_show": 0})
    );

    let page = Browser::start(1440, 900).await;
    page.record_csp().await;
    page.goto(&server.url("/screens/kpi/chuo#token=demo-analyst"))
        .await;
    page.wait("the KPI page", "document.body.dataset.loaded === '1'", WAIT)
        .await;
    // The default period ends today: the bookings lie after it, so none are shown.
    assert_eq!(
        page.exec("return document.getElementById('to').value")
            .await,
        json!(today.to_string())
    );
    page.wait(
        "no bookings in the default period",
        "!document.getElementById('reservations').hidden
           && !document.getElementById('res-none').hidden && document.getElementById('res-figs').hidden",
        WAIT,
    )
    .await;
    assert!(page.text("#res-h").await.contains("来庁予約"));

    // The period's end moved to the booked day with the page's own date field.
    page.exec(&format!(
        "const i = document.getElementById('to'); i.value = {};
         i.dispatchEvent(new Event('change', {{bubbles: true}})); return true;",
        js(&day.to_string())
    ))
    .await;
    page.wait(
        "two bookings",
        &format!(
            "new URLSearchParams(location.search).get('to') === {}
               && document.body.dataset.loading === '0'
               && document.getElementById('res-figs').hidden === false
               && document.getElementById('res-booked').textContent.trim() === '2'",
            js(&day.to_string())
        ),
        WAIT,
    )
    .await;
    let figures = page
        .exec(
            "return ['res-checked-in', 'res-late', 'res-no-show', 'res-rate', 'res-upcoming']
               .map((id) => document.getElementById(id).textContent.trim())",
        )
        .await;
    assert_eq!(figures, json!(["0", "0", "0", "—", "2"]));
    assert!(page
        .exec("return document.getElementById('res-none').hidden")
        .await
        .as_bool()
        .unwrap());
    page.exec(
        "document.getElementById('reservations').scrollIntoView({block: 'center'}); return true;",
    )
    .await;
    page.screenshot("kpi-reservations").await;
    page.assert_strict("the KPI page's reservations").await;
}
