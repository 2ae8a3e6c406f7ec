//! Reception hours and the public congestion figures over HTTP against the real server: issuing
//! for a closed queue is refused with 409 `queue_closed` and the next opening; a queue whose
//! forecast runs past its closing time closes by itself until the floor keeps it open; the public
//! JSON agrees with the board at the same seq, is cacheable (ETag, 304), carries no personal data
//! and is readable cross-origin from the configured origins only; the forecast calendar from a
//! generated history shows that history's busiest weekday and hour.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, FixedOffset, NaiveTime, Timelike, Utc};
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// The city's website in the tests' `[public]` table.
const CITY: &str = "https://www.city.example.jp";

/// Local time now in that zone.
fn local_now() -> DateTime<FixedOffset> {
    Utc::now().with_timezone(&FixedOffset::east_opt((midday_offset_h() * 3600) as i32).unwrap())
}

/// The demo configuration in the midday zone with `hours` (TOML lines of an `[hours]` table)
/// for every queue, every day of the week, holidays included.
fn config_with_hours(dir: &std::path::Path, hours: &str) -> std::path::PathBuf {
    midday_demo_config(
        dir,
        "hours.toml",
        &format!("holidays = \"open\"\n{hours}"),
        None,
    )
}

/// The same periods on every day of the week.
fn every_day(periods: &str) -> String {
    format!("weekdays = {periods}\nsat = {periods}\nsun = {periods}\n")
}

fn board_queue(board: &Value, queue: &str) -> Value {
    board["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == queue)
        .cloned()
        .unwrap_or_else(|| panic!("{queue} on the board: {board}"))
}

async fn issue_certificate(server: &Server) -> (u16, Value) {
    server
        .post(
            "/api/v1/sites/chuo/tickets",
            Some(DISPENSER),
            Some(json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"})),
        )
        .await
}

#[tokio::test]
async fn issuing_outside_reception_hours_is_refused_with_the_next_opening() {
    let dir = tempfile::tempdir().unwrap();
    // Open 06:00–08:00 only; it is midday.
    let config = config_with_hours(dir.path(), &every_day("[\"06:00-08:00\"]"));
    let server = Server::start_with(&dir.path().join("data"), &config).await;

    let (status, refused) = issue_certificate(&server).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "queue_closed", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("受付"), "Japanese first: {message}");
    let next_open = DateTime::parse_from_rfc3339(refused["error"]["next_open"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("next_open is RFC 3339: {e}: {refused}"));
    let now = local_now();
    let tomorrow_six = now
        .date_naive()
        .succ_opt()
        .unwrap()
        .and_time(NaiveTime::from_hms_opt(6, 0, 0).unwrap());
    assert_eq!(
        next_open.naive_local(),
        tomorrow_six,
        "tomorrow at 06:00: {refused}"
    );
    assert_eq!(next_open.offset(), now.offset(), "in the site's zone");

    // The board, the public figures and the list agree: closed, nothing issued.
    let board = server.board().await;
    for q in ["certificates", "okuyami", "onestop", "welfare"] {
        let entry = board_queue(&board, q);
        assert_eq!(entry["state"], "closed", "{entry}");
        assert_eq!(entry["next_open"], refused["error"]["next_open"], "{entry}");
    }
    let (status, public) = server.get("/api/v1/public/congestion", None).await;
    assert_eq!(status, 200, "{public}");
    let certificates = &public["sites"][0]["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == "certificates")
        .cloned()
        .unwrap();
    assert_eq!(certificates["state"], "closed", "{public}");
    let (_, list) = server
        .get("/api/v1/sites/chuo/tickets", Some(COUNTER))
        .await;
    assert_eq!(list["tickets"], json!([]));

    // The floor cannot open a queue outside its hours: keeping it open is for a closing.
    let (status, reply) = server.reception(Some(FLOOR), "certificates", "open").await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["error"]["code"], "queue_closed", "{reply}");
    // Closing it outside its hours changes nothing: closed, and nothing in the audit trail.
    let (status, reply) = server
        .reception(Some(FLOOR), "certificates", "closing")
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reception"]["state"], "closed", "{reply}");
    let (_, audit) = server.get("/api/v1/sites/chuo/audit", Some(FLOOR)).await;
    assert_eq!(audit["audit"], json!([]), "{audit}");
}

#[tokio::test]
async fn a_queue_whose_forecast_runs_past_closing_closes_until_the_floor_keeps_it_open() {
    let dir = tempfile::tempdir().unwrap();
    // Reception closes 30 minutes from now; a full line closes it earlier.
    let closes = local_now() + chrono::Duration::minutes(30);
    assert!(closes.hour() >= 6, "midday zone: {closes}");
    let hours = format!(
        "{}last_reception_min = 0\nclose_when_full = true\nclosing_margin_min = 0\n",
        every_day(&format!(
            "[\"06:00-{:02}:{:02}\"]",
            closes.hour(),
            closes.minute()
        ))
    );
    let config = config_with_hours(dir.path(), &hours);
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    assert_eq!(
        board_queue(&server.board().await, "certificates")["state"],
        "open"
    );

    // Three counters serve certificates at 5 minutes each: some twenty residents fill the
    // half hour. Issue until the queue closes.
    let mut issued = 0;
    let refused = loop {
        let (status, reply) = issue_certificate(&server).await;
        match status {
            201 => issued += 1,
            409 => break reply,
            other => panic!("{other}: {reply}"),
        }
        // One issue at a time: each gets a forecast of its own, so the closing check runs.
        assert!(issued < 200, "the queue never closed");
    };
    assert_eq!(refused["error"]["code"], "queue_closed", "{refused}");
    assert!(issued >= 5, "a few fit before closing time: {issued}");
    let entry = board_queue(&server.board().await, "certificates");
    assert_eq!(entry["state"], "closing", "{entry}");
    assert!(entry["next_open"].is_string(), "{entry}");
    // Another queue of the site still takes tickets.
    assert_eq!(
        board_queue(&server.board().await, "welfare")["state"],
        "open"
    );
    // The forecast's newcomer would have finished past closing time.
    assert!(
        entry["estimated_wait_s"].as_u64().unwrap() + 300 > 20 * 60,
        "{entry}"
    );

    // The floor keeps it open: tickets again, and the forecast does not close it again today.
    let (status, reply) = server.reception(Some(FLOOR), "certificates", "open").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reception"]["state"], "open", "{reply}");
    for _ in 0..3 {
        let (status, reply) = issue_certificate(&server).await;
        assert_eq!(status, 201, "kept open: {reply}");
    }
    // Both changes are in the floor's audit trail or the log: the closing by forecast and the
    // override by the floor manager.
    let (status, audit) = server.get("/api/v1/sites/chuo/audit", Some(FLOOR)).await;
    assert_eq!(status, 200, "{audit}");
    let kinds: Vec<&str> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(kinds.contains(&"reception_kept_open"), "{audit}");
    // A counter token may not change reception; no token at all is 401.
    let (status, _) = server
        .reception(Some(COUNTER), "certificates", "closing")
        .await;
    assert_eq!(status, 403);
    let (status, _) = server.reception(None, "certificates", "closing").await;
    assert_eq!(status, 401);
}

/// Every key anywhere in `value`.
fn keys(value: &Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

async fn public_get(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = server.http.get(server.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, h, resp.text().await.unwrap())
}

#[tokio::test]
async fn the_public_figures_are_the_boards_cacheable_and_for_the_citys_origins_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config_with(
        dir.path(),
        "public.toml",
        &format!("[public]\norigins = [\"{CITY}\"]\nmax_age_s = 7\n"),
    );
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    for _ in 0..4 {
        server
            .issue(json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"}))
            .await;
    }
    server
        .issue(json!({"procedures": ["tennyu"], "dispenser": "kiosk-1"}))
        .await;
    let (status, called) = server.counter("6", "call-next", None).await;
    assert_eq!(status, 200, "{called}");
    let number = called["ticket"]["number"].as_str().unwrap().to_owned();

    // The same figures as the board at the same seq.
    let (public, etag) = eventually("the public figures at the board's seq", WAIT, || async {
        let (status, headers, body) = public_get(&server, "/api/v1/public/congestion", &[]).await;
        assert_eq!(status, 200, "{body}");
        let public: Value = serde_json::from_str(&body).unwrap();
        let board = server.board().await;
        let site = public["sites"][0].clone();
        (site["seq"] == board["seq"]).then(|| {
            for q in board["queues"].as_array().unwrap() {
                let p = site["queues"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["id"] == q["id"])
                    .unwrap();
                assert_eq!(p["waiting"], q["waiting"], "{p} vs {q}");
                assert_eq!(p["state"], q["state"], "{p} vs {q}");
                assert!(
                    p["estimated_wait_s"]
                        .as_u64()
                        .unwrap()
                        .abs_diff(q["estimated_wait_s"].as_u64().unwrap())
                        <= 1,
                    "{p} vs {q}"
                );
            }
            let etag = headers["etag"].to_str().unwrap().to_owned();
            let cache = headers["cache-control"].to_str().unwrap();
            assert!(cache.contains("max-age=7"), "{cache}");
            assert!(cache.contains("public"), "{cache}");
            (public, etag)
        })
    })
    .await;
    let site = &public["sites"][0];
    assert_eq!(site["id"], "chuo");
    assert!(site["name"]["ja"].is_string() && site["name"]["en"].is_string());
    assert!(public["generated_at"].is_string());
    let certificates = site["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == "certificates")
        .unwrap();
    assert_eq!(
        certificates["now_calling"],
        json!([number]),
        "{certificates}"
    );
    assert_eq!(certificates["waiting"], 3);
    assert_eq!(certificates["state"], "open");
    assert!(["low", "medium", "high"].contains(&certificates["level"].as_str().unwrap()));
    // No personal data, no tokens: only these keys anywhere.
    let mut found = std::collections::BTreeSet::new();
    keys(&public, &mut found);
    let allowed = [
        "generated_at",
        "sites",
        "id",
        "name",
        "ja",
        "en",
        "seq",
        "queues",
        "state",
        "waiting",
        "estimated_wait_s",
        "now_calling",
        "level",
        "next_open",
        "last_reception",
    ];
    for k in &found {
        assert!(
            allowed.contains(&k.as_str()),
            "unexpected key {k}: {public}"
        );
    }

    // The tag held: 304 without a body. Something changes: 200 and a new tag.
    let (status, headers, body) = public_get(
        &server,
        "/api/v1/public/congestion",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(status, 304, "{body}");
    assert!(body.is_empty());
    assert_eq!(headers["etag"].to_str().unwrap(), etag);
    server
        .issue(json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"}))
        .await;
    let (status, headers, _) = public_get(
        &server,
        "/api/v1/public/congestion",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(status, 200);
    assert_ne!(headers["etag"].to_str().unwrap(), etag);

    // One site; an unknown one is 404.
    let (status, _, body) = public_get(&server, "/api/v1/public/congestion?site=chuo", &[]).await;
    assert_eq!(status, 200);
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["sites"].as_array().unwrap().len(), 1);
    let (status, _, _) = public_get(&server, "/api/v1/public/congestion?site=nowhere", &[]).await;
    assert_eq!(status, 404);

    // CORS: the city's website may read it from a browser; another origin may not.
    let (_, headers, _) =
        public_get(&server, "/api/v1/public/congestion", &[("origin", CITY)]).await;
    assert_eq!(headers["access-control-allow-origin"], CITY);
    let (_, headers, _) = public_get(
        &server,
        "/api/v1/public/congestion",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "{headers:?}"
    );
    let preflight = server
        .http
        .request(
            reqwest::Method::OPTIONS,
            server.url("/api/v1/public/congestion"),
        )
        .header("origin", CITY)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], CITY);
    // The board and the staff APIs are not opened to the city's website.
    let (_, headers, _) =
        public_get(&server, "/api/v1/sites/chuo/board", &[("origin", CITY)]).await;
    assert!(headers.get("access-control-allow-origin").is_none());

    // The page: no token, framed by the city's website only.
    for path in ["/public/congestion", "/public/congestion/chuo"] {
        let (status, headers, body) = public_get(&server, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("<html"), "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        let ancestors = csp
            .split(';')
            .find(|d| d.trim().starts_with("frame-ancestors"))
            .unwrap_or_else(|| panic!("{path}: {csp}"));
        assert!(ancestors.contains(CITY), "{path}: {csp}");
        assert!(!ancestors.contains('*'), "{path}: {csp}");
    }
    let (status, _, _) = public_get(&server, "/public/congestion/nowhere", &[]).await;
    assert_eq!(status, 404);
}

/// A visit's local arrival (`YYYY-MM-DD HH:MM:SS`) as (weekday from Monday, hour).
fn weekday_hour(local: &str) -> (usize, u32) {
    let t = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").unwrap();
    (t.weekday().num_days_from_monday() as usize, t.hour())
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[tokio::test]
async fn the_calendar_shows_the_busiest_weekday_and_hour_of_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = repo_path("config/demo.toml");
    let out = std::process::Command::new(binary())
        .args(["generate", "--days", "25", "--visitors-per-day", "300"])
        .arg("--data")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start_with(&data, &config).await;

    // The history, independently: the analysts' CSV, mean wait of served visits per weekday ×
    // hour of arrival.
    let from = (Utc::now() - chrono::Duration::days(60))
        .date_naive()
        .to_string();
    let resp = server
        .http
        .get(server.url(&format!("/api/v1/sites/chuo/visits.csv?from={from}")))
        .bearer_auth(ANALYST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (arrival, outcome, wait) = (col("arrival"), col("outcome"), col("wait_s"));
    let mut cells: BTreeMap<(usize, u32), (f64, u32)> = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        if &row[outcome] != "done" {
            continue;
        }
        let cell = cells.entry(weekday_hour(&row[arrival])).or_default();
        cell.0 += row[wait].parse::<f64>().unwrap();
        cell.1 += 1;
    }
    assert!(cells.len() > 20, "a history over weekdays and hours");
    let mean = |c: &(f64, u32)| c.0 / f64::from(c.1);
    let busiest_cell = cells
        .iter()
        .max_by(|a, b| mean(a.1).total_cmp(&mean(b.1)))
        .map(|(k, _)| *k)
        .unwrap();
    // A weekday's figure: the mean of its hours (as the calendar's dates take it).
    let mut by_day: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for ((d, _), c) in &cells {
        by_day.entry(*d).or_default().push(mean(c));
    }
    let day_mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let busiest_day = by_day
        .iter()
        .max_by(|a, b| day_mean(a.1).total_cmp(&day_mean(b.1)))
        .map(|(d, _)| *d)
        .unwrap();

    // The calendar, no token.
    let (status, headers, body) =
        public_get(&server, "/api/v1/public/congestion/calendar?site=chuo", &[]).await;
    assert_eq!(status, 200, "{body}");
    let calendar: Value = serde_json::from_str(&body).unwrap();
    assert!(headers.contains_key("etag"));
    let weekly = calendar["weekly"].as_array().unwrap();
    let mut shown: BTreeMap<(usize, u32), u64> = BTreeMap::new();
    for row in weekly {
        let d = WEEKDAYS.iter().position(|w| row["weekday"] == *w).unwrap();
        for h in row["hours"].as_array().unwrap() {
            if let Some(w) = h["expected_wait_s"].as_u64() {
                shown.insert((d, h["hour"].as_u64().unwrap() as u32), w);
            }
        }
    }
    // Every cell is the history's mean (the CSV rounds each wait to the second).
    for (k, c) in &cells {
        let w = shown
            .get(k)
            .unwrap_or_else(|| panic!("cell {k:?} missing: {calendar}"));
        assert!(
            (*w as f64 - mean(c)).abs() <= 1.0,
            "cell {k:?}: {w} vs {}",
            mean(c)
        );
    }
    let shown_busiest = shown
        .iter()
        .max_by_key(|(_, w)| **w)
        .map(|(k, _)| *k)
        .unwrap();
    assert!(
        shown_busiest == busiest_cell
            || (mean(&cells[&shown_busiest]) - mean(&cells[&busiest_cell])).abs() <= 1.0,
        "busiest hour: calendar {shown_busiest:?}, history {busiest_cell:?}"
    );
    // The busiest weekday of the coming dates is the history's.
    let dates = calendar["dates"].as_array().unwrap();
    assert_eq!(dates.len(), 56);
    let busiest_date = dates
        .iter()
        .filter(|d| d["open"] == true && d["season"] == false)
        .max_by_key(|d| d["expected_wait_s"].as_u64().unwrap_or(0))
        .unwrap();
    assert_eq!(
        busiest_date["weekday"], WEEKDAYS[busiest_day],
        "busiest weekday: {calendar}"
    );
    // The generated history is busiest on Mondays (the generator's weekday load).
    assert_eq!(busiest_day, 0, "{by_day:?}");

    // Cached: the same tag gives 304.
    let etag = headers["etag"].to_str().unwrap();
    let (status, _, _) = public_get(
        &server,
        "/api/v1/public/congestion/calendar?site=chuo",
        &[("if-none-match", etag)],
    )
    .await;
    assert_eq!(status, 304);
    let (status, _, _) = public_get(&server, "/api/v1/public/congestion/calendar", &[]).await;
    assert_eq!(status, 422);
}
