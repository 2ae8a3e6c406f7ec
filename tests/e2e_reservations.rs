//! Reservations over HTTP against the real server: the slots of a day with their free places;
//! residents racing for a slot's last places (real concurrent clients: exactly as many 201s as
//! places, the rest 409 `slot_full`); reading, moving and cancelling by the code as typed; the
//! floor's capacity; a booking survives SIGKILL; the code never reaches the board.

#[path = "common/booking.rs"]
mod booking;
mod common;

use booking::bookable_weekday;
use chrono::Utc;
use common::*;
use serde_json::{json, Value};

/// The slots of the first weekday from tomorrow on that has some.
async fn next_slots(server: &Server) -> (String, Vec<Value>) {
    bookable_weekday(server, |slots| !slots.is_empty()).await
}

async fn book(server: &Server, slot: &str) -> (u16, Value) {
    server
        .post(
            "/api/v1/sites/chuo/reservations",
            None,
            Some(json!({"life_event": "moving_in",
                        "answers": {"children": true, "kokuho": true, "over_65": false, "over_75": false},
                        "slot": slot})),
        )
        .await
}

async fn set_capacity(server: &Server, slot: &str, capacity: u32) -> Value {
    let (status, reply) = server
        .send(
            reqwest::Method::PUT,
            "/api/v1/sites/chuo/queues/onestop/slot-capacity",
            Some(FLOOR),
            Some(json!({"start": slot, "capacity": capacity})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    reply
}

/// `n` residents ask for `slot` at once, each on a connection of its own.
async fn race(server: &Server, slot: &str, n: usize) -> Vec<(u16, Value)> {
    let url = server.url("/api/v1/sites/chuo/reservations");
    let body = json!({"procedures": ["tennyu"], "slot": slot});
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let resp = client.post(url).json(&body).send().await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn racing_residents_never_overbook_a_slot_and_a_booking_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    let (date, slots) = next_slots(&server).await;
    assert!(slots.len() >= 4, "{slots:?}");
    for s in &slots {
        assert_eq!(s["queue"], "onestop");
        assert_eq!(s["booked"], 0);
        assert_eq!(s["free"], s["capacity"]);
        assert!(s["capacity"].as_u64().unwrap() >= 1, "{s}");
    }
    let first = slots[0]["start"].as_str().unwrap().to_owned();
    let second = slots[1]["start"].as_str().unwrap().to_owned();

    // The last place: two residents at once, one gets it.
    set_capacity(&server, &first, 1).await;
    let results = race(&server, &first, 2).await;
    let won: Vec<_> = results.iter().filter(|(s, _)| *s == 201).collect();
    let lost: Vec<_> = results.iter().filter(|(s, _)| *s == 409).collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "{results:?}");
    assert_eq!(lost[0].1["error"]["code"], "slot_full", "{results:?}");
    // Three places, twelve residents: three bookings, nine refusals.
    set_capacity(&server, &second, 3).await;
    let results = race(&server, &second, 12).await;
    let won = results.iter().filter(|(s, _)| *s == 201).count();
    let full = results
        .iter()
        .filter(|(s, v)| *s == 409 && v["error"]["code"] == "slot_full")
        .count();
    assert_eq!((won, full), (3, 9), "{results:?}");

    // A booking by life event: the plan and the check-in window come back with the code.
    let third = slots[2]["start"].as_str().unwrap().to_owned();
    let (status, booked) = book(&server, &third).await;
    assert_eq!(status, 201, "{booked}");
    let r = &booked["reservation"];
    let code = r["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 8);
    assert!(
        code.chars()
            .all(|c| "ACDEFGHJKMNPQRTUVWXY234679".contains(c)),
        "{code}"
    );
    assert_eq!(r["queue"], "onestop");
    assert_eq!(r["life_event"], "moving_in");
    assert!(r["procedures"].as_array().unwrap().len() >= 3, "{r}");
    assert_eq!(r["slot_start"], third.as_str());
    let from = chrono::DateTime::parse_from_rfc3339(r["check_in_from"].as_str().unwrap()).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(&third).unwrap();
    assert_eq!(start - from, chrono::Duration::minutes(15));
    // Only these keys: no name, no contact.
    let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
    for k in &keys {
        assert!(
            [
                "code",
                "site",
                "queue",
                "procedures",
                "life_event",
                "slot_start",
                "slot_end",
                "check_in_from",
                "check_in_until"
            ]
            .contains(&k.as_str()),
            "{k}"
        );
    }

    // Read by the code as a resident types it; move it; the slots show the places.
    let typed = format!("{}-{}", &code[..4], &code[4..]).to_lowercase();
    let (status, read) = server
        .get(&format!("/api/v1/sites/chuo/reservations/{typed}"), None)
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["reservation"]["code"], code.as_str());
    let fourth = slots[3]["start"].as_str().unwrap().to_owned();
    let (status, moved) = server
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/sites/chuo/reservations/{code}"),
            None,
            Some(json!({"slot": fourth})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["reservation"]["slot_start"], fourth.as_str());
    let (_, day) = server
        .get(
            &format!("/api/v1/sites/chuo/reservations/slots?date={date}"),
            None,
        )
        .await;
    let booked_in = |start: &str| {
        day["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["start"] == start)
            .map(|s| (s["booked"].as_u64().unwrap(), s["free"].as_u64().unwrap()))
            .unwrap()
    };
    assert_eq!(booked_in(&first), (1, 0));
    assert_eq!(booked_in(&second), (3, 0));
    assert_eq!(booked_in(&third).0, 0);
    assert_eq!(booked_in(&fourth).0, 1);

    // The code never reaches the screens.
    let board = server.board().await.to_string();
    assert!(!board.contains(&code), "{board}");

    // SIGKILL: every booking acknowledged is there after the restart.
    server.kill9();
    let server = Server::start(&data).await;
    let (status, read) = server
        .get(&format!("/api/v1/sites/chuo/reservations/{code}"), None)
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["reservation"]["slot_start"], fourth.as_str());
    let (_, day) = server
        .get(
            &format!("/api/v1/sites/chuo/reservations/slots?date={date}"),
            None,
        )
        .await;
    let total: u64 = day["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["booked"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1 + 3 + 1, "{day}");

    // Cancelled: gone, its place free.
    let (status, cancelled) = server
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/sites/chuo/reservations/{code}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let (status, _) = server
        .get(&format!("/api/v1/sites/chuo/reservations/{code}"), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_bookings_get_clear_errors_and_only_the_floor_sets_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let (_, slots) = next_slots(&server).await;
    let slot = slots[0]["start"].as_str().unwrap().to_owned();
    // Not a slot (off the grid), a plan for a queue without bookings, a bad date.
    let off_grid =
        chrono::DateTime::parse_from_rfc3339(&slot).unwrap() + chrono::Duration::minutes(7);
    let (status, reply) = book(&server, &off_grid.to_rfc3339()).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (422, Some("no_such_slot")),
        "{reply}"
    );
    let (status, reply) = server
        .post(
            "/api/v1/sites/chuo/reservations",
            None,
            Some(json!({"procedures": ["shoumei"], "slot": slot})),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (422, Some("not_bookable")),
        "{reply}"
    );
    let (status, reply) = server
        .get("/api/v1/sites/chuo/reservations/slots?date=tomorrow", None)
        .await;
    assert_eq!(status, 422, "{reply}");
    let (status, _) = server
        .get("/api/v1/sites/chuo/reservations/ZZZZZZZZ", None)
        .await;
    assert_eq!(status, 404);
    // Capacity: a counter token is refused before the body is read; no token is 401.
    for (token, expected) in [(Some(COUNTER), 403), (None, 401)] {
        let (status, _) = server
            .send(
                reqwest::Method::PUT,
                "/api/v1/sites/chuo/queues/onestop/slot-capacity",
                token,
                Some(json!({"start": slot, "capacity": 9})),
            )
            .await;
        assert_eq!(status, expected);
    }
    let (status, reply) = server
        .send(
            reqwest::Method::PUT,
            "/api/v1/sites/chuo/queues/onestop/slot-capacity",
            Some(FLOOR),
            Some(json!({"start": slot, "capacity": 1000})),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (422, Some("bad_capacity")),
        "{reply}"
    );
    let updated = set_capacity(&server, &slot, 0).await;
    let (_, audit) = server.get("/api/v1/sites/chuo/audit", Some(FLOOR)).await;
    assert_eq!(audit["audit"][0]["action"], "slot_capacity_set", "{audit}");
    assert_eq!(audit["audit"][0]["queues"], json!(["onestop"]), "{audit}");
    assert_eq!(
        (updated["capacity"].as_u64(), updated["free"].as_u64()),
        (Some(0), Some(0))
    );
    let (status, reply) = book(&server, &slot).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (409, Some("slot_full")),
        "{reply}"
    );
}

/// The demo configuration in a zone where it is midday, open and bookable all day every day
/// (holidays too) in 5-minute slots, so a slot starts within minutes of now whatever the hour
/// and the day of the run.
fn bookable_now_config(dir: &std::path::Path) -> std::path::PathBuf {
    midday_demo_config(
        dir,
        "bookable.toml",
        "weekdays = [\"00:00-23:55\"]\nsat = [\"00:00-23:55\"]\nsun = [\"00:00-23:55\"]\n\
         holidays = \"open\"\nclose_when_full = false",
        Some(
            "queues = [\"onestop\"]\nslot_min = 5\ncheck_in_early_min = 15\n\
             check_in_late_min = 10\nhorizon_days = 2",
        ),
    )
}

async fn check_in(server: &Server, code: &str) -> (u16, Value) {
    server
        .post(
            &format!("/api/v1/sites/chuo/reservations/{code}/check-in"),
            Some(DISPENSER),
            Some(json!({"dispenser": "kiosk-1", "lang": "ja"})),
        )
        .await
}

#[tokio::test]
async fn a_booking_checks_in_at_the_kiosk_for_a_ticket_with_the_booked_plan() {
    let dir = tempfile::tempdir().unwrap();
    let config = bookable_now_config(dir.path());
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    let today = (Utc::now() + chrono::Duration::hours(midday_offset_h()))
        .date_naive()
        .to_string();
    let (status, day) = server
        .get(
            &format!("/api/v1/sites/chuo/reservations/slots?date={today}&queue=onestop"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{day}");
    let open: Vec<&Value> = day["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["free"].as_u64().unwrap() > 0)
        .collect();
    // The next slot starts within 5 minutes: check-in is open. One an hour ahead is not yet.
    let next = open[0]["start"].as_str().unwrap().to_owned();
    let later = open[12]["start"].as_str().unwrap().to_owned();
    let (status, booked) = book(&server, &next).await;
    assert_eq!(status, 201, "{booked}");
    let code = booked["reservation"]["code"].as_str().unwrap().to_owned();
    let (status, early) = book(&server, &later).await;
    assert_eq!(status, 201, "{early}");
    let early_code = early["reservation"]["code"].as_str().unwrap().to_owned();

    // The QR code of the booking is an SVG image.
    let resp = server
        .http
        .get(server.url(&format!("/api/v1/sites/chuo/reservations/{code}/qr.svg")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/svg+xml");
    assert!(resp.text().await.unwrap().contains("<svg"));

    // Check-in needs the kiosk's token; then a ticket for the booked plan.
    let (status, _) = server
        .post(
            &format!("/api/v1/sites/chuo/reservations/{code}/check-in"),
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, checked) = check_in(&server, &code.to_lowercase()).await;
    assert_eq!(status, 201, "{checked}");
    assert_eq!(checked["late"], false);
    let ticket = &checked["ticket"];
    assert_eq!(ticket["queue"], "onestop", "{checked}");
    assert_eq!(
        ticket["procedures"], booked["reservation"]["procedures"],
        "{checked}"
    );
    assert_eq!(checked["reservation"]["code"], code.as_str());
    let (_, list) = server
        .get("/api/v1/sites/chuo/tickets", Some(COUNTER))
        .await;
    assert!(
        list["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["number"] == ticket["number"]),
        "{list}"
    );
    // Once only; the booking itself is gone (checked in).
    let (status, again) = check_in(&server, &code).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("already_checked_in")),
        "{again}"
    );
    let (status, _) = server
        .get(&format!("/api/v1/sites/chuo/reservations/{code}"), None)
        .await;
    assert_eq!(status, 404);
    // An hour early: refused, with the time check-in opens.
    let (status, refused) = check_in(&server, &early_code).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("too_early")),
        "{refused}"
    );
    let from =
        chrono::DateTime::parse_from_rfc3339(refused["error"]["check_in_from"].as_str().unwrap())
            .unwrap();
    let later_start = chrono::DateTime::parse_from_rfc3339(&later).unwrap();
    assert_eq!(later_start - from, chrono::Duration::minutes(15));

    // The KPI counts today's bookings: two booked, one checked in, no no-show yet.
    let (status, kpi) = server
        .get(
            &format!("/api/v1/sites/chuo/kpi?from={today}&to={today}"),
            Some(ANALYST),
        )
        .await;
    assert_eq!(status, 200, "{kpi}");
    assert_eq!(
        kpi["reservations"],
        json!({"booked": 2, "checked_in": 1, "late": 0, "no_show": 0}),
        "{kpi}"
    );
}
