//! Booking helpers for the end-to-end tests of the demo's reservations (needs chrono and
//! chrono-tz: not part of `common`, which the printer agent's tests share).

#![allow(dead_code, unreachable_pub)]

use serde_json::Value;

use crate::common::Server;

/// The demo's one-stop booking slots (as `GET …/reservations/slots` lists them) of the first
/// weekday from tomorrow on, in the demo's zone, for which `enough` holds, with that date.
pub async fn bookable_weekday(
    server: &Server,
    enough: impl Fn(&[Value]) -> bool,
) -> (String, Vec<Value>) {
    use chrono::Datelike;
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive();
    for days in 1..=14 {
        let date = today + chrono::Duration::days(days);
        if matches!(date.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun) {
            continue;
        }
        let (status, reply) = server
            .get(
                &format!("/api/v1/sites/chuo/reservations/slots?date={date}&queue=onestop"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        let slots = reply["slots"].as_array().unwrap().clone();
        if enough(&slots) {
            return (date.to_string(), slots);
        }
    }
    panic!("no bookable weekday within two weeks");
}

/// The starts of the slots with a free place.
pub fn free_starts(slots: &[Value]) -> Vec<String> {
    slots
        .iter()
        .filter(|s| s["free"].as_u64().unwrap_or(0) > 0)
        .map(|s| s["start"].as_str().unwrap().to_owned())
        .collect()
}
