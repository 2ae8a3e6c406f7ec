//! What-if on the real binary: a forecast with a counter opened is lower for the queue it
//! serves, and asking changes nothing live.

mod common;

use common::*;
use serde_json::{json, Value};

async fn what_if(server: &Server, body: Value) -> (u16, Value) {
    server
        .post("/api/v1/sites/chuo/what-if", Some(FLOOR), Some(body))
        .await
}

fn summary<'a>(reply: &'a Value, queue: &str) -> &'a Value {
    reply["summary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["queue"] == queue)
        .unwrap()
}

#[tokio::test]
async fn opening_a_counter_lowers_the_forecast_and_nothing_live_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    // The one-stop line long, with only counter 1 of its four own counters open.
    for c in ["2", "3", "4"] {
        let (status, reply) = server.counter(c, "close", None).await;
        assert_eq!(status, 200, "{reply}");
    }
    for _ in 0..30 {
        server.issue(json!({"procedures": ["tennyu"]})).await;
    }
    let before = server.board().await;

    let (status, reply) = what_if(
        &server,
        json!({"counters": [{"id": "2", "state": "open"}, {"id": "3", "state": "open"}], "horizon_min": 120}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["seq"], before["seq"]);
    let onestop = summary(&reply, "onestop");
    let (base, with) = (
        onestop["longest_wait_s_baseline"].as_f64().unwrap(),
        onestop["longest_wait_s_with"].as_f64().unwrap(),
    );
    assert!(base > 0.0, "{reply}");
    assert!(with < base, "two more counters: {with} s vs {base} s");
    let points = |forecast: &str| {
        reply[forecast]["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["id"] == "onestop")
            .unwrap()["points"]
            .as_array()
            .unwrap()
            .clone()
    };
    let (base_points, with_points) = (points("baseline"), points("with_changes"));
    assert_eq!(
        base_points.len(),
        13,
        "every 10 minutes over two hours, now included"
    );
    assert!(
        base_points[0]["waiting"].as_f64().unwrap() >= 25.0,
        "{}",
        base_points[0]
    );
    // Someone joining now: six counters call from the line as things stand, eight with the two.
    let now = |p: &[Value]| p[0]["wait_s"].as_f64().unwrap();
    assert!(
        now(&with_points) < 0.85 * now(&base_points),
        "joining now: {} s with the change vs {} s",
        now(&with_points),
        now(&base_points)
    );

    // Nothing live changed: same board, same seq, the counters still closed.
    assert_eq!(server.board().await, before);
    // `{}` forecasts the day as it stands: both forecasts alike.
    let (status, same) = what_if(&server, json!({})).await;
    assert_eq!(status, 200, "{same}");
    let row = summary(&same, "onestop");
    assert_eq!(row["longest_wait_s_baseline"], row["longest_wait_s_with"]);
}

#[tokio::test]
async fn a_bad_what_if_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    for (body, field) in [
        (
            json!({"counters": [{"id": "99", "state": "open"}]}),
            "counters[0].id",
        ),
        (
            json!({"counters": [{"id": "1", "profile": {"queues": ["nope"], "strategy": "profile_order"}}]}),
            "counters[0].profile.queues[0]",
        ),
        (
            json!({"extra_arrivals_per_hour": {"nope": 3}}),
            "extra_arrivals_per_hour.nope",
        ),
        (
            json!({"extra_arrivals_per_hour": {"onestop": -1}}),
            "extra_arrivals_per_hour.onestop",
        ),
        (json!({"horizon_min": 2000}), "horizon_min"),
        (json!({"surprise": 1}), "surprise"),
    ] {
        let (status, reply) = what_if(&server, body.clone()).await;
        assert_eq!(status, 422, "{body} → {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
    let (status, _) = server
        .post("/api/v1/sites/chuo/what-if", Some(COUNTER), Some(json!({})))
        .await;
    assert_eq!(status, 403, "floor managers only");
}
