//! The floor board's what-if panel and suggestions in headless Chromium against the real server:
//! a what-if tried on the board shows the one-stop line's longest wait lower with a closed counter
//! opened for it, and nothing live changes until Apply; the server's suggestion for an overloaded
//! line appears unasked, a what-if of exactly its change confirms it, one click applies it, and the
//! notice goes once the server no longer suggests it.
//!
//! Without Chromium these tests skip, unless `CI` is set (see common/browser.rs).

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use browser::Browser;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Sets an input or a select as a user would leave it (with its `input` and `change` events).
async fn set_value(b: &Browser, css: &str, value: &str) {
    let (sel, v) = (
        serde_json::to_string(css).unwrap(),
        serde_json::to_string(value).unwrap(),
    );
    b.exec(&format!(
        "const e = document.querySelector({sel}); e.value = {v};
         e.dispatchEvent(new Event('input', {{bubbles: true}}));
         e.dispatchEvent(new Event('change', {{bubbles: true}})); return true;"
    ))
    .await;
}

/// config/demo.toml with the floor board's alert at 5 minutes and suggestions every 2 s (the
/// table exists in the demo file, so it is changed in place rather than appended).
fn suggesting_config(dir: &Path) -> PathBuf {
    let demo = std::fs::read_to_string(repo_path("config/demo.toml")).unwrap();
    let floor = "[sites.screens.floor]\nwait_alert_min = 30\n";
    assert!(demo.contains(floor), "config/demo.toml has no {floor:?}");
    let config = demo.replace(
        floor,
        "[sites.screens.floor]\nwait_alert_min = 5\nsuggest_every_s = 2\n",
    );
    let path = dir.join("suggesting.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The one-stop line long: counters 2, 3 and 4 closed, 30 residents moving in.
async fn overload_onestop(server: &Server) {
    for c in ["2", "3", "4"] {
        let (status, reply) = server.counter(c, "close", None).await;
        assert_eq!(status, 200, "{reply}");
    }
    for _ in 0..30 {
        server.issue(json!({"procedures": ["tennyu"]})).await;
    }
}

async fn counter(server: &Server, id: &str) -> Value {
    let (status, reply) = server
        .get(&format!("/api/v1/sites/chuo/counters/{id}"), Some(FLOOR))
        .await;
    assert_eq!(status, 200, "{reply}");
    reply["counter"].clone()
}

fn summary_row(reply: &Value, queue: &str) -> (f64, f64) {
    let row = reply["summary"]
        .as_array()
        .unwrap_or_else(|| panic!("no summary: {reply}"))
        .iter()
        .find(|r| r["queue"] == queue)
        .unwrap_or_else(|| panic!("no {queue} in {reply}"));
    (
        row["longest_wait_s_baseline"].as_f64().unwrap(),
        row["longest_wait_s_with"].as_f64().unwrap(),
    )
}

async fn suggestions(server: &Server) -> (u16, Value) {
    server
        .get("/api/v1/sites/chuo/suggestions", Some(FLOOR))
        .await
}

fn suggestion_for<'a>(list: &'a Value, queue: &str) -> Option<&'a Value> {
    list["suggestions"]
        .as_array()?
        .iter()
        .find(|s| s["queue"] == queue)
}

#[tokio::test]
async fn the_what_if_panel_forecasts_a_counter_opened_and_changes_nothing_until_applied() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    overload_onestop(&server).await;
    let before = server.board().await;

    let floor = Browser::start(1600, 1000).await;
    floor
        .open_with_token(&server.url("/screens/floor/chuo"), "floor", FLOOR)
        .await;
    floor
        .wait(
            "the what-if panel",
            "document.querySelector('#wi-add option[value=\"10\"]')",
            WAIT,
        )
        .await;
    assert_eq!(
        floor
            .exec("return document.querySelector('#wi-horizon').value")
            .await,
        json!("180"),
        "the horizon starts at 180 minutes"
    );

    // A request the API refuses shows the API's own message.
    set_value(&floor, "#wi-horizon", "5").await;
    floor.click("#wi-run").await;
    let error = floor
        .wait(
            "the API's error in the panel",
            "document.querySelector('#wi-error')?.textContent.trim()",
            WAIT,
        )
        .await;
    let error = error.as_str().unwrap();
    assert!(
        error.contains("horizon_min") && error.contains("outside"),
        "{error}"
    );
    set_value(&floor, "#wi-horizon", "180").await;

    // Counter 10 (closed, welfare only): open it and give it the one-stop line too.
    set_value(&floor, "#wi-add", "10").await;
    floor.click("#wi-add-btn").await;
    floor
        .click("[data-wi-counter=\"10\"] [data-wi-state=\"open\"]")
        .await;
    floor
        .click("[data-wi-counter=\"10\"] input[data-wi-queue=\"onestop\"]")
        .await;
    floor.click("#wi-run").await;
    let read = floor
        .wait(
            "the forecast for the one-stop line",
            "(() => {
               if (document.querySelector('#whatif').dataset.busy) return null;
               const f = document.querySelector('#wi-results [data-wi-queue=\"onestop\"]');
               if (!f) return null;
               const lines = [...f.querySelectorAll('svg polyline')].map((p) => p.getAttribute('points').trim().split(/\\s+/).length);
               return {base: Number(f.querySelector('.wi-base').textContent), with: Number(f.querySelector('.wi-with').textContent),
                       lines, queues: document.querySelectorAll('#wi-results [data-wi-queue]').length,
                       // (not `error`: the WebDriver client takes a value with one for its own)
                       shown_error: document.querySelector('#wi-error').textContent.trim()};
             })()",
            WAIT,
        )
        .await;
    let (base, with) = (
        read["base"].as_f64().unwrap(),
        read["with"].as_f64().unwrap(),
    );
    assert!(base > 0.0, "a long line forecasts a wait: {read}");
    assert!(
        with < base,
        "counter 10 open for the one-stop line: {with} min vs {base} min as is"
    );
    assert_eq!(read["shown_error"], "", "the earlier error is gone: {read}");
    assert_eq!(read["queues"], 4, "every queue of the site: {read}");
    assert_eq!(
        read["lines"],
        json!([19, 19]),
        "both forecasts, every 10 minutes over 3 hours: {read}"
    );
    floor.screenshot("floor-what-if").await;

    // Nothing live changed: the same seq, counter 10 still closed and welfare only.
    let after = server.board().await;
    assert_eq!(after["seq"], before["seq"], "a what-if changes nothing");
    let c10 = counter(&server, "10").await;
    assert_eq!(c10["state"], "closed", "{c10}");
    assert_eq!(c10["profile"]["queues"], json!(["welfare"]), "{c10}");
    assert_eq!(
        floor
            .exec("return document.querySelector('article[data-counter=\"10\"]').dataset.state")
            .await,
        json!("closed")
    );

    // Apply makes the change for real, through the usual endpoints.
    floor.click("#wi-apply").await;
    let c10 = eventually("counter 10 changed on the server", WAIT, || async {
        let c = counter(&server, "10").await;
        (c["state"] == "open").then_some(c)
    })
    .await;
    assert_eq!(
        c10["profile"]["queues"],
        json!(["welfare", "onestop"]),
        "{c10}"
    );
    assert_eq!(
        server.board().await["seq"].as_u64().unwrap(),
        before["seq"].as_u64().unwrap() + 2,
        "a profile change and a state change"
    );
    floor
        .wait(
            "the board to show it and the panel to empty",
            "document.querySelector('article[data-counter=\"10\"]').dataset.state === 'open'
               && !document.querySelector('#wi-changes [data-wi-counter]')
               && document.querySelector('#wi-results').classList.contains('stale')",
            WAIT,
        )
        .await;
    floor.assert_no_csp_violations("floor board").await;
}

#[tokio::test]
async fn a_suggestion_shows_unasked_is_confirmed_by_a_what_if_and_goes_once_applied() {
    if !browser::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = suggesting_config(dir.path());
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    overload_onestop(&server).await;
    // The server computes its suggestions every 2 s: wait for one for the one-stop line.
    let first = eventually("a suggestion for the one-stop line", WAIT, || async {
        let (status, list) = suggestions(&server).await;
        assert!(
            status == 200 || status == 404,
            "GET suggestions: {status} {list}"
        );
        suggestion_for(&list, "onestop").cloned()
    })
    .await;

    // The board shows it without being asked.
    let floor = Browser::start(1600, 1000).await;
    floor
        .open_with_token(&server.url("/screens/floor/chuo"), "floor", FLOOR)
        .await;
    let shown = floor
        .wait(
            "the suggestion notice",
            "(() => { const n = document.querySelector('#suggestions .suggestion[data-queue=\"onestop\"]');
                      return n && {counter: n.dataset.counter, kind: n.dataset.kind,
                                   text: n.querySelector('.suggestion-text').textContent}; })()",
            WAIT,
        )
        .await;
    let id = shown["counter"].as_str().unwrap().to_owned();
    let (status, list) = suggestions(&server).await;
    assert_eq!(status, 200, "{list}");
    let now = suggestion_for(&list, "onestop").cloned();
    // The suggestion the board shows is the server's (as read before or after the page loaded).
    let s = [Some(first), now]
        .into_iter()
        .flatten()
        .find(|s| s["counter"] == id.as_str() && s["kind"] == shown["kind"])
        .unwrap_or_else(|| panic!("the board shows {shown}, the server says {list}"));
    let text = shown["text"].as_str().unwrap();
    for lang in ["ja", "en"] {
        let t = s["text"][lang].as_str().unwrap();
        assert!(!t.is_empty() && text.contains(t), "{text:?} lacks {t:?}");
    }
    floor.screenshot("floor-suggestion").await;

    // A what-if of exactly that change confirms it.
    let board = server.board().await;
    let mut change = json!({"id": id, "state": s["state"]});
    if s["profile"].is_object() {
        change["profile"] = s["profile"].clone();
    }
    let (status, forecast) = server
        .post(
            "/api/v1/sites/chuo/what-if",
            Some(FLOOR),
            Some(json!({"counters": [change]})),
        )
        .await;
    assert_eq!(status, 200, "{forecast}");
    let (base, with) = summary_row(&forecast, "onestop");
    assert!(
        with < base,
        "the suggested change ({change}): {with} s vs {base} s as is"
    );
    assert_eq!(forecast["seq"], board["seq"]);

    // One click applies it.
    let notice = format!("#suggestions .suggestion[data-queue=\"onestop\"][data-counter=\"{id}\"]");
    floor.click(&format!("{notice} [data-suggest-apply]")).await;
    let applied = eventually("the suggested change on the server", WAIT, || async {
        let c = counter(&server, &id).await;
        (c["state"] == "open").then_some(c)
    })
    .await;
    if s["kind"] == "add_queue" {
        assert_eq!(applied["profile"], s["profile"], "{applied}");
    }
    let queues = applied["profile"]["queues"].as_array().unwrap();
    assert!(queues.contains(&json!("onestop")), "{applied}");

    // The server stops suggesting it, and the notice goes.
    floor
        .wait(
            "the notice to go",
            &format!(
                "!document.querySelector({})",
                serde_json::to_string(&notice).unwrap()
            ),
            WAIT,
        )
        .await;
    let (_, list) = suggestions(&server).await;
    assert!(
        !list["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["queue"] == "onestop" && x["counter"] == id.as_str()),
        "still suggested: {list}"
    );
    floor.assert_no_csp_violations("floor board").await;
}
