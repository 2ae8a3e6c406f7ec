//! End-to-end test of the KPI figures of the real `madoguchi` binary: a small day driven over
//! HTTP (15 tickets, one transfer, one no-show, one cancellation, ratings, two tickets left
//! waiting), then the CSV export, the KPI endpoint and `/metrics` checked against what the test
//! did and against each other.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Timelike, Utc};
use common::*;
use serde_json::{json, Value};

/// What the test did with one ticket.
#[derive(Debug, Clone)]
struct Issued {
    label: &'static str,
    number: String,
    token: String,
    id: String,
    issued_at: DateTime<Utc>,
    life_event: Option<&'static str>,
}

fn jst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).unwrap()
}

/// Business days start at 03:00 in Tokyo (demo config).
fn business_day(t: DateTime<Utc>) -> NaiveDate {
    (t.with_timezone(&jst()) - Duration::hours(3)).date_naive()
}

/// April to March.
fn fiscal_year(d: NaiveDate) -> i32 {
    if d.month() >= 4 {
        d.year()
    } else {
        d.year() - 1
    }
}

/// The `[[kpi_targets]]` of config/demo.toml.
fn moving_in_target_min(fy: i32) -> Option<f64> {
    match fy {
        2025 => Some(119.0),
        2026 => Some(99.0),
        2027 => Some(79.0),
        _ => None,
    }
}

fn city_targets(fy: i32) -> Option<(u64, f64)> {
    match fy {
        2025 => Some((10_200, 79.0)),
        2026 => Some((62_600, 82.0)),
        2027 => Some((76_300, 85.0)),
        _ => None,
    }
}

fn life_event(id: &str, answers: Value) -> Value {
    json!({"life_event": id, "answers": answers, "dispenser": "kiosk-1", "lang": "ja"})
}

const CSV_HEADER: [&str; 35] = [
    "ticket_id",
    "site",
    "site_name",
    "business_day",
    "fiscal_year",
    "number",
    "life_event",
    "life_event_name",
    "procedures",
    "procedure_names",
    "priority",
    "arrival",
    "departure",
    "outcome",
    "cancel_reason",
    "stay_s",
    "wait_s",
    "service_s",
    "steps",
    "satisfaction",
    "step1_queue",
    "step1_counter",
    "step1_wait_s",
    "step1_calls",
    "step1_service_s",
    "step2_queue",
    "step2_counter",
    "step2_wait_s",
    "step2_calls",
    "step2_service_s",
    "step3_queue",
    "step3_counter",
    "step3_wait_s",
    "step3_calls",
    "step3_service_s",
];

/// Nearest rank: the ⌈p·n/100⌉-th smallest value.
fn nearest_rank(sorted: &[f64], p: usize) -> f64 {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

async fn action(server: &Server, counter: &str, action: &str, body: Option<Value>) -> Value {
    let (status, reply) = server.counter(counter, action, body).await;
    assert_eq!(status, 200, "counter {counter} {action}: {reply}");
    reply
}

/// Calls a ticket by number, starts and completes its step (optionally with a transfer).
async fn serve(server: &Server, counter: &str, number: &str, transfer_to: Option<&str>) {
    let called = action(server, counter, "call", Some(json!({"number": number}))).await;
    assert_eq!(called["ticket"]["number"], number, "{called}");
    action(server, counter, "start", None).await;
    let body = transfer_to.map(|t| json!({"transfer_to": t}));
    action(server, counter, "complete", body).await;
}

async fn kpi(server: &Server, query: &str) -> Value {
    let (status, body) = server
        .get(&format!("/api/v1/sites/chuo/kpi{query}"), Some(ANALYST))
        .await;
    assert_eq!(status, 200, "kpi{query}: {body}");
    body
}

fn groups(report: &Value) -> BTreeMap<String, (u64, u64, u64)> {
    report["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no groups: {report}"))
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_owned(),
                (
                    g["visits"].as_u64().unwrap(),
                    g["no_show"].as_u64().unwrap(),
                    g["cancelled"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn close(a: &Value, b: f64, tolerance: f64, what: &str) {
    let a = a
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {a}"));
    assert!(
        (a - b).abs() <= tolerance,
        "{what}: {a} vs {b} (±{tolerance})"
    );
}

#[tokio::test]
async fn a_small_day_over_http_gives_consistent_csv_kpi_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;

    // --- Issue 15 tickets -------------------------------------------------------------------
    let no = json!({"children": false, "kokuho": false, "over_65": false, "over_75": false});
    let plans: Vec<(&'static str, Option<&'static str>, Value)> = vec![
        (
            "moving_in_kids",
            Some("moving_in"),
            life_event(
                "moving_in",
                json!({"children": true, "kokuho": true, "over_65": false, "over_75": false}),
            ),
        ),
        (
            "moving_in",
            Some("moving_in"),
            life_event("moving_in", no.clone()),
        ),
        (
            "moving_out",
            Some("moving_out"),
            life_event(
                "moving_out",
                json!({"kokuho": true, "children": false, "over_65": false, "over_75": false}),
            ),
        ),
        (
            "birth",
            Some("birth"),
            life_event(
                "birth",
                json!({"kokuho": false, "nursery": true, "single_parent": false}),
            ),
        ),
        (
            "marriage",
            Some("marriage"),
            life_event(
                "marriage",
                json!({"name_change": true, "moving_within": false, "kokuho": false, "pension": false}),
            ),
        ),
        (
            "divorce",
            Some("divorce"),
            life_event(
                "divorce",
                json!({"children": false, "dependant": true, "moving_within": false, "name_change": false}),
            ),
        ),
        (
            "moving_within",
            Some("moving_within"),
            life_event(
                "moving_within",
                json!({"mynumber_card": true, "children": false, "kokuho": false, "kei_car": false}),
            ),
        ),
        (
            "death",
            Some("death"),
            life_event(
                "death",
                json!({"head_of_household": false, "pension": true, "over_65": false, "over_75": true}),
            ),
        ),
        (
            "certificates",
            Some("certificates"),
            life_event("certificates", json!({})),
        ),
        ("shoumei", None, json!({"procedures": ["shoumei"]})),
        ("kaigo", None, json!({"procedures": ["kaigo_hoken"]})),
        (
            "moving_in_priority",
            Some("moving_in"),
            json!({"life_event": "moving_in", "answers": no.clone(), "priority": true, "dispenser": "kiosk-1"}),
        ),
        (
            "moving_in_waiting",
            Some("moving_in"),
            life_event("moving_in", no.clone()),
        ),
        ("tennyu_waiting", None, json!({"procedures": ["tennyu"]})),
        (
            "moving_out_cancelled",
            Some("moving_out"),
            life_event(
                "moving_out",
                json!({"kokuho": false, "children": false, "over_65": false, "over_75": false}),
            ),
        ),
    ];
    let mut t: HashMap<&'static str, Issued> = HashMap::new();
    for (label, le, body) in plans {
        let ticket = server.issue(body).await;
        let issued = Issued {
            label,
            number: ticket["number"].as_str().unwrap().to_owned(),
            token: ticket["token"].as_str().unwrap().to_owned(),
            id: ticket["id"].as_str().unwrap().to_owned(),
            issued_at: ticket["issued_at"].as_str().unwrap().parse().unwrap(),
            life_event: le,
        };
        assert_eq!(
            ticket["life_event"],
            le.map_or(Value::Null, Value::from),
            "{ticket}"
        );
        t.insert(label, issued);
    }
    let n = |label: &str| t[label].number.clone();
    // Routing as configured: certificates → C…, bereavement → K…, everything else → onestop.
    assert_eq!(n("certificates"), "C001");
    assert_eq!(n("shoumei"), "C002");
    assert_eq!(n("death"), "K001");
    assert_eq!(n("moving_in_kids"), "1");
    assert_eq!(n("moving_out_cancelled"), "12");

    // --- Serve -------------------------------------------------------------------------------
    // The priority ticket is called first, ahead of eight earlier onestop tickets.
    let called = action(&server, "2", "call-next", None).await;
    assert_eq!(
        called["ticket"]["number"],
        n("moving_in_priority"),
        "{called}"
    );
    action(&server, "2", "start", None).await;
    action(&server, "2", "complete", None).await;
    // The transfer: onestop at counter 1, then the welfare queue, served by counter 8 (whose
    // profile lists welfare first).
    serve(&server, "1", &n("moving_in_kids"), Some("welfare")).await;
    let called = action(&server, "8", "call-next", None).await;
    assert_eq!(called["ticket"]["number"], n("moving_in_kids"), "{called}");
    assert_eq!(called["ticket"]["queue"], "welfare");
    action(&server, "8", "start", None).await;
    action(&server, "8", "complete", None).await;
    serve(&server, "3", &n("moving_in"), None).await;
    serve(&server, "4", &n("moving_out"), None).await;
    serve(&server, "1", &n("birth"), None).await;
    serve(&server, "2", &n("marriage"), None).await;
    // The no-show: the demo config needs two calls, then puts the ticket back in line once; the
    // second no-show (after two more calls) ends the visit.
    let divorce = n("divorce");
    for round in 0..2 {
        action(&server, "3", "call", Some(json!({"number": divorce}))).await;
        if round == 0 {
            let (status, reply) = server.counter("3", "no-show", None).await;
            assert_eq!(status, 409, "one call is not enough: {reply}");
            assert_eq!(reply["error"]["code"], "too_few_calls");
        }
        action(&server, "3", "recall", None).await;
        let reply = action(&server, "3", "no-show", None).await;
        let expected = if round == 0 { "waiting" } else { "no_show" };
        assert_eq!(reply["ticket"]["status"], expected, "{reply}");
    }
    serve(&server, "4", &n("moving_within"), None).await;
    let called = action(&server, "9", "call-next", None).await;
    assert_eq!(called["ticket"]["number"], "K001", "{called}");
    action(&server, "9", "start", None).await;
    action(&server, "9", "complete", None).await;
    let called = action(&server, "6", "call-next", None).await;
    assert_eq!(called["ticket"]["number"], "C001", "{called}");
    action(&server, "6", "start", None).await;
    action(&server, "6", "complete", None).await;
    serve(&server, "7", &n("shoumei"), None).await;
    serve(&server, "5", &n("kaigo"), None).await;
    let (status, reply) = server
        .post(
            &format!(
                "/api/v1/sites/chuo/tickets/{}/cancel",
                n("moving_out_cancelled")
            ),
            Some(COUNTER),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ticket"]["status"], "cancelled");

    // --- Ratings -------------------------------------------------------------------------------
    let rate = |label: &str, score: u8| {
        let path = format!("/api/v1/tickets/{}/satisfaction", t[label].token);
        let server = &server;
        async move {
            server
                .post(&path, None, Some(json!({"score": score})))
                .await
        }
    };
    let ratings: [(&str, u8); 3] = [("moving_in_kids", 5), ("moving_in", 3), ("certificates", 4)];
    for (label, score) in ratings {
        let (status, reply) = rate(label, score).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["ticket"]["satisfaction"], score);
    }
    let (status, reply) = rate("moving_in_kids", 1).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["error"]["code"], "already_rated");
    let (status, reply) = rate("moving_in_waiting", 5).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["error"]["code"], "wrong_status");

    let done: BTreeSet<&str> = [
        "moving_in_kids",
        "moving_in",
        "moving_out",
        "birth",
        "marriage",
        "moving_within",
        "death",
        "certificates",
        "shoumei",
        "kaigo",
        "moving_in_priority",
    ]
    .into();
    let ended: BTreeSet<&str> = done
        .iter()
        .copied()
        .chain(["divorce", "moving_out_cancelled"])
        .collect();
    assert_eq!(t.len(), 15);
    assert_eq!(ended.len(), 13, "two tickets stay waiting");

    // --- CSV -----------------------------------------------------------------------------------
    let resp = server
        .http
        .get(server.url("/api/v1/sites/chuo/visits.csv"))
        .bearer_auth(ANALYST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/csv; charset=utf-8",
        "{:?}",
        resp.headers()
    );
    let bytes = resp.bytes().await.unwrap();
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBF"),
        "UTF-8 BOM first: {:?}",
        &bytes[..bytes.len().min(8)]
    );
    let text = std::str::from_utf8(&bytes[3..]).expect("UTF-8");
    assert!(text.ends_with("\r\n"), "CRLF at the end");
    assert_eq!(
        text.matches('\n').count(),
        text.matches("\r\n").count(),
        "every line ends with CRLF"
    );
    assert_eq!(text.matches("\r\n").count(), 1 + ended.len(), "{text}");
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, CSV_HEADER);
    let rows: Vec<HashMap<String, String>> = reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), ended.len());
    let by_number: HashMap<&str, &HashMap<String, String>> =
        rows.iter().map(|r| (r["number"].as_str(), r)).collect();
    let ended_numbers: BTreeSet<String> = ended.iter().map(|l| n(l)).collect();
    assert_eq!(
        by_number
            .keys()
            .map(|k| k.to_string())
            .collect::<BTreeSet<_>>(),
        ended_numbers,
        "one row per ended visit, none for waiting tickets"
    );
    let row = |label: &str| by_number[t[label].number.as_str()];
    // A run across the 03:00 day reset would close the waiting tickets: say so plainly.
    let days: BTreeSet<&str> = rows.iter().map(|r| r["business_day"].as_str()).collect();
    assert_eq!(
        days.len(),
        1,
        "the test ran across the 03:00 (Tokyo) day reset; run it again"
    );
    for label in &ended {
        let r = row(label);
        let i = &t[label];
        assert_eq!(r["ticket_id"], i.id);
        assert_eq!(r["site"], "chuo");
        assert_eq!(r["site_name"], "中央区役所");
        assert_eq!(r["life_event"], i.life_event.unwrap_or(""), "{label}");
        let local = i.issued_at.with_timezone(&jst());
        assert_eq!(
            r["arrival"],
            local.format("%Y-%m-%d %H:%M:%S").to_string(),
            "{label}"
        );
        assert_eq!(
            r["business_day"],
            business_day(i.issued_at).to_string(),
            "{label}"
        );
        assert_eq!(
            r["fiscal_year"],
            fiscal_year(local.date_naive()).to_string(),
            "{label}"
        );
        let expected_outcome = match *label {
            "divorce" => "no_show",
            "moving_out_cancelled" => "cancelled",
            _ => "done",
        };
        assert_eq!(r["outcome"], expected_outcome, "{label}");
        assert_eq!(
            r["priority"],
            if *label == "moving_in_priority" {
                "1"
            } else {
                "0"
            }
        );
        let stay: f64 = r["stay_s"].parse().unwrap();
        assert!((0.0..60.0).contains(&stay), "{label}: stay {stay}");
    }
    let kids = row("moving_in_kids");
    assert_eq!(kids["life_event_name"], "市外からの転入");
    assert_eq!(
        kids["procedures"],
        "tennyu jidou_teate kodomo_iryou tennyugaku kokumin_kenkou_hoken kokumin_nenkin"
    );
    assert_eq!(
        kids["procedure_names"],
        "住民異動届（転入）、児童手当、こども医療費助成、小・中学校の転入学・転校、\
         国民健康保険（加入・脱退・変更）、国民年金の届出"
    );
    assert_eq!(kids["steps"], "2");
    assert_eq!(kids["step1_queue"], "onestop");
    assert_eq!(kids["step1_counter"], "1");
    assert_eq!(kids["step1_calls"], "1");
    assert_eq!(kids["step2_queue"], "welfare");
    assert_eq!(kids["step2_counter"], "8");
    assert_eq!(kids["step3_queue"], "");
    assert_eq!(kids["satisfaction"], "5");
    assert_eq!(row("moving_in")["procedure_names"], "住民異動届（転入）");
    assert_eq!(row("moving_in")["satisfaction"], "3");
    assert_eq!(row("moving_out")["life_event_name"], "市外への転出");
    assert_eq!(
        row("death")["life_event_name"],
        "おくやみ（ご家族が亡くなられたとき）"
    );
    assert_eq!(row("death")["step1_queue"], "okuyami");
    assert_eq!(
        row("shoumei")["procedure_names"],
        "各種証明書（住民票の写し・印鑑登録証明書など）"
    );
    assert_eq!(row("shoumei")["life_event_name"], "");
    assert_eq!(row("shoumei")["step1_queue"], "certificates");
    assert_eq!(row("kaigo")["procedure_names"], "介護保険・要介護認定");
    assert_eq!(row("kaigo")["step1_queue"], "onestop");
    assert_eq!(row("certificates")["life_event_name"], "証明書のみ");
    assert_eq!(row("certificates")["satisfaction"], "4");
    let no_show = row("divorce");
    assert_eq!(no_show["step1_calls"], "4", "two calls, requeued, two more");
    assert_eq!(no_show["step1_counter"], "3");
    assert_eq!(no_show["service_s"], "0");
    let cancelled = row("moving_out_cancelled");
    assert_eq!(cancelled["cancel_reason"], "staff");
    assert_eq!(cancelled["step1_counter"], "");
    assert_eq!(cancelled["step1_calls"], "0");
    assert_eq!(cancelled["satisfaction"], "");

    // --- KPI -----------------------------------------------------------------------------------
    let report = kpi(&server, "").await;
    assert_eq!(report["site"], "chuo");
    assert_eq!(report["timezone"], "Asia/Tokyo");
    assert_eq!(report["visits"], done.len());
    assert_eq!(report["no_show"], 1);
    assert_eq!(report["cancelled"], 1);
    let first_arrival = ended.iter().map(|l| t[*l].issued_at).min().unwrap();
    let fy = fiscal_year(first_arrival.with_timezone(&jst()).date_naive());
    assert_eq!(report["fiscal_year"], fy, "{report}");
    // No chuo target without a life event filter.
    assert!(report["stay_s"].get("target_mean").is_none(), "{report}");
    assert_eq!(report["visits_target"], Value::Null);
    // Stay figures from the CSV's whole seconds, within the rounding.
    let mut stays: Vec<f64> = rows
        .iter()
        .filter(|r| r["outcome"] == "done")
        .map(|r| r["stay_s"].parse().unwrap())
        .collect();
    stays.sort_by(f64::total_cmp);
    assert_eq!(stays.len(), done.len());
    let mean = stays.iter().sum::<f64>() / stays.len() as f64;
    close(&report["stay_s"]["mean"], mean, 1.0, "stay mean");
    close(
        &report["stay_s"]["p50"],
        nearest_rank(&stays, 50),
        1.0,
        "p50",
    );
    close(
        &report["stay_s"]["p90"],
        nearest_rank(&stays, 90),
        1.0,
        "p90",
    );
    close(
        &report["stay_s"]["p95"],
        nearest_rank(&stays, 95),
        1.0,
        "p95",
    );
    close(&report["stay_s"]["max"], *stays.last().unwrap(), 1.0, "max");
    // Ordering facts that hold exactly.
    let s = &report["stay_s"];
    for (lo, hi) in [("p50", "p90"), ("p90", "p95"), ("p95", "max")] {
        assert!(s[lo].as_f64() <= s[hi].as_f64(), "{lo} ≤ {hi}: {s}");
    }
    // Satisfaction: 5, 3 and 4 → two of three in the top two.
    let sat = &report["satisfaction"];
    assert_eq!(sat["answers"], 3, "{sat}");
    assert_eq!(sat["top_two"], 2, "{sat}");
    close(&sat["share_pct"], 200.0 / 3.0, 1e-9, "share_pct");

    // By hour: the local hours of arrival, with the visits of each.
    let hour = |l: &str| format!("{:02}", t[l].issued_at.with_timezone(&jst()).hour());
    let mut want: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for l in &ended {
        let g = want.entry(hour(l)).or_default();
        match *l {
            "divorce" => g.1 += 1,
            "moving_out_cancelled" => g.2 += 1,
            _ => g.0 += 1,
        }
    }
    let by_hour = kpi(&server, "?group_by=hour").await;
    assert_eq!(groups(&by_hour), want, "{by_hour}");
    assert_eq!(by_hour["group_by"], "hour");
    // By queue (per step: the transferred visit counts in onestop and in welfare).
    let by_queue = kpi(&server, "?group_by=queue").await;
    let want: BTreeMap<String, (u64, u64, u64)> = [
        ("certificates".to_owned(), (2, 0, 0)),
        ("okuyami".to_owned(), (1, 0, 0)),
        ("onestop".to_owned(), (8, 1, 1)),
        ("welfare".to_owned(), (1, 0, 0)),
    ]
    .into();
    assert_eq!(groups(&by_queue), want, "{by_queue}");
    // By counter: the counter that called each step.
    let by_counter = kpi(&server, "?group_by=counter").await;
    let want: BTreeMap<String, (u64, u64, u64)> = [
        ("1", (2, 0, 0)),
        ("2", (2, 0, 0)),
        ("3", (1, 1, 0)),
        ("4", (2, 0, 0)),
        ("5", (1, 0, 0)),
        ("6", (1, 0, 0)),
        ("7", (1, 0, 0)),
        ("8", (1, 0, 0)),
        ("9", (1, 0, 0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(groups(&by_counter), want, "{by_counter}");

    // Moving in only: the three completed ones, with the chuo target of the fiscal year.
    let moving_in = kpi(&server, "?life_event=moving_in").await;
    assert_eq!(moving_in["life_event"], "moving_in");
    assert_eq!(moving_in["visits"], 3, "{moving_in}");
    assert_eq!(moving_in["no_show"], 0);
    assert_eq!(moving_in["cancelled"], 0);
    assert_eq!(moving_in["satisfaction"]["answers"], 2, "{moving_in}");
    match moving_in_target_min(fy) {
        Some(min) => assert_eq!(moving_in["stay_s"]["target_mean"], min * 60.0),
        None => assert!(moving_in["stay_s"].get("target_mean").is_none()),
    }
    let mut mi: Vec<f64> = ["moving_in_kids", "moving_in", "moving_in_priority"]
        .iter()
        .map(|l| row(l)["stay_s"].parse::<f64>().unwrap())
        .collect();
    mi.sort_by(f64::total_cmp);
    close(&moving_in["stay_s"]["max"], mi[2], 1.0, "moving_in max");
    let procedure = kpi(&server, "?procedure=shoumei").await;
    assert_eq!(
        procedure["visits"], 2,
        "certificates and shoumei: {procedure}"
    );

    // Refusals.
    let (status, body) = server
        .get("/api/v1/sites/chuo/kpi?group_by=year", Some(ANALYST))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    let (status, body) = server
        .get("/api/v1/sites/chuo/kpi?colour=red", Some(ANALYST))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    let (status, body) = server.get("/api/v1/sites/chuo/kpi", Some(COUNTER)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, _) = server
        .get("/api/v1/sites/chuo/visits.csv", Some(COUNTER))
        .await;
    assert_eq!(status, 403);
    let (status, _) = server.get("/api/v1/sites/chuo/kpi", None).await;
    assert_eq!(status, 401);

    // The whole city: the same visits, with the city-wide targets.
    let (status, city) = server.get("/api/v1/sites/all/kpi", Some(ANALYST)).await;
    assert_eq!(status, 200, "{city}");
    assert_eq!(city["site"], "all");
    assert_eq!(city["visits"], done.len());
    assert_eq!(city["no_show"], 1);
    assert_eq!(city["cancelled"], 1);
    assert_eq!(city["stay_s"], report["stay_s"]);
    match city_targets(fy) {
        Some((visits, pct)) => {
            assert_eq!(city["visits_target"], visits, "{city}");
            assert_eq!(city["satisfaction"]["target_pct"], pct, "{city}");
        }
        None => assert_eq!(city["visits_target"], Value::Null),
    }

    // --- Metrics -------------------------------------------------------------------------------
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sum_of = |metric: &str, filter: &dyn Fn(&prometheus_parse::Sample) -> bool| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && filter(s))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than == f64::INFINITY)
                    .map_or(0.0, |b| b.count),
                prometheus_parse::Value::Summary(_) => panic!("no summaries expected"),
            })
            .sum()
    };
    let any = &|_: &prometheus_parse::Sample| true;
    // The stay histogram: one observation per completed visit, ratings not counted again.
    assert_eq!(
        sum_of("madoguchi_stay_seconds", any),
        done.len() as f64,
        "+Inf buckets"
    );
    assert_eq!(
        sum_of("madoguchi_stay_seconds_count", any),
        done.len() as f64
    );
    // Wait and service: one observation per step of a completed visit, by the step's queue
    // (the transferred visit has two steps: onestop, then welfare).
    let steps = done.len() as f64 + 1.0;
    assert_eq!(sum_of("madoguchi_wait_seconds_count", any), steps);
    assert_eq!(sum_of("madoguchi_service_seconds_count", any), steps);
    for (q, stay_count, step_count) in [
        ("onestop", 8.0, 8.0),
        ("welfare", 0.0, 1.0),
        ("certificates", 2.0, 2.0),
        ("okuyami", 1.0, 1.0),
    ] {
        let in_q = |s: &prometheus_parse::Sample| s.labels.get("queue") == Some(q);
        assert_eq!(
            sum_of("madoguchi_stay_seconds_count", &in_q),
            stay_count,
            "stay by first queue {q}"
        );
        assert_eq!(
            sum_of("madoguchi_wait_seconds_count", &in_q),
            step_count,
            "waits in {q}"
        );
        assert_eq!(
            sum_of("madoguchi_service_seconds_count", &in_q),
            step_count,
            "services in {q}"
        );
    }
    // Its sum is the KPI's mean times the visits (both exact, only summed in another order).
    let stay_sum = sum_of("madoguchi_stay_seconds_sum", any);
    let kpi_sum = report["stay_s"]["mean"].as_f64().unwrap() * done.len() as f64;
    assert!(
        (stay_sum - kpi_sum).abs() <= 1e-6 * kpi_sum.max(1.0),
        "{stay_sum} vs {kpi_sum}"
    );
    let moving_in_le =
        |s: &prometheus_parse::Sample| s.labels.get("life_event") == Some("moving_in");
    assert_eq!(sum_of("madoguchi_stay_seconds_count", &moving_in_le), 3.0);
    let no_life_event = |s: &prometheus_parse::Sample| s.labels.get("life_event") == Some("none");
    assert_eq!(sum_of("madoguchi_stay_seconds_count", &no_life_event), 2.0);
    assert_eq!(sum_of("madoguchi_tickets_issued_total", any), 15.0);
    let in_queue =
        |q: &'static str| move |s: &prometheus_parse::Sample| s.labels.get("queue") == Some(q);
    assert_eq!(
        sum_of("madoguchi_tickets_issued_total", &in_queue("onestop")),
        12.0
    );
    assert_eq!(
        sum_of("madoguchi_tickets_issued_total", &in_queue("certificates")),
        2.0
    );
    assert_eq!(
        sum_of("madoguchi_tickets_issued_total", &in_queue("okuyami")),
        1.0
    );
    let outcome =
        |o: &'static str| move |s: &prometheus_parse::Sample| s.labels.get("outcome") == Some(o);
    assert_eq!(
        sum_of("madoguchi_visits_ended_total", &outcome("done")),
        done.len() as f64
    );
    assert_eq!(
        sum_of("madoguchi_visits_ended_total", &outcome("no_show")),
        1.0
    );
    assert_eq!(
        sum_of("madoguchi_visits_ended_total", &outcome("cancelled")),
        1.0
    );
    assert_eq!(
        sum_of("madoguchi_waiting_tickets", &in_queue("onestop")),
        2.0
    );
    // Every family has help text.
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // Families without any sample yet (live clients, printers…) are not exposed.
    for f in [
        "madoguchi_tickets_issued_total",
        "madoguchi_calls_total",
        "madoguchi_visits_ended_total",
        "madoguchi_waiting_tickets",
        "madoguchi_counters_open",
        "madoguchi_stay_seconds",
        "madoguchi_wait_seconds",
        "madoguchi_service_seconds",
        "madoguchi_http_request_duration_seconds",
    ] {
        assert!(families.contains(&f), "no family {f}: {families:?}");
    }
    for f in &families {
        let help = scrape.docs.get(*f).map(|d| d.trim());
        assert!(
            help.is_some_and(|h| !h.is_empty()),
            "metric family {f} has no HELP"
        );
    }
    for s in &scrape.samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| s.metric.strip_suffix(suffix))
            .filter(|f| families.contains(f))
            .unwrap_or(s.metric.as_str());
        assert!(
            families.contains(&family),
            "{} has no TYPE/HELP family",
            s.metric
        );
    }
    // No ticket number, token or id in any label. Plain onestop numbers ("1", "2", …) look like
    // counter ids, so a `counter` label may be one of the configured counters 1–10.
    let allowed_labels = [
        "site",
        "queue",
        "counter",
        "outcome",
        "life_event",
        "method",
        "route",
        "status",
        "printer",
        "state",
    ];
    let counters: Vec<String> = (1..=10).map(|c| c.to_string()).collect();
    for s in &scrape.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                allowed_labels.contains(&k.as_str()),
                "{}: unexpected label {k}={v}",
                s.metric
            );
            for i in t.values() {
                assert!(
                    !v.contains(&i.token) && !v.contains(&i.id),
                    "{}: label {k}={v} holds the token or id of ticket {}",
                    s.metric,
                    i.label
                );
                let counter_id = k == "counter" && counters.contains(v);
                assert!(
                    *v != i.number || counter_id,
                    "{}: label {k}={v} is the number of ticket {}",
                    s.metric,
                    i.label
                );
            }
        }
    }
    for i in t.values() {
        assert!(
            !text.contains(&i.token) && !text.contains(&i.id),
            "the token or id of ticket {} is in /metrics",
            i.label
        );
    }
}
