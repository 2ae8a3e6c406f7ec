//! Crash harness: kiosks issue and counters call, start and complete at a steady rate against the
//! real server, with the real printer agent and a virtual printer in the loop, while the server is
//! killed with SIGKILL at random moments and started again. Afterwards nothing acknowledged is
//! lost: every ticket whose request got a 2xx exists, numbers are unique, no step is lost or
//! doubled, stays are never negative, the database is intact, every acknowledged ticket printed
//! exactly once, and live sockets resynced after each restart.
//!
//! `MADOGUCHI_CRASH_KILLS` sets the number of kills (default 10; e.g. 200 for a nightly run:
//! `MADOGUCHI_CRASH_KILLS=200 cargo test -p madoguchi-printer-agent --test e2e_crash`).

#[path = "common/agent.rs"]
mod agent;
mod common;
#[path = "common/vprinter.rs"]
mod vprinter;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::Agent;
use common::*;
use futures_util::StreamExt;
use rand::Rng;
use serde_json::{json, Value};
use vprinter::VirtualPrinter;

const WAIT: Duration = Duration::from_secs(60);

/// What the clients were told: only 2xx answers count.
#[derive(Default)]
struct Acknowledged {
    /// Idempotency key → (number, token) of tickets issued at kiosk-1.
    issued: BTreeMap<String, (String, String)>,
    /// Numbers whose completion was acknowledged.
    completed: BTreeSet<String>,
}

/// One kiosk pressing the button again and again; a press that got no answer is retried with
/// the same `Idempotency-Key`, as the kiosk page does.
async fn kiosk(base: String, ack: Arc<Mutex<Acknowledged>>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut n = 0;
    let mut key = format!("crash-{n}");
    while !stop.load(Ordering::Relaxed) {
        let reply = http
            .post(format!("{base}/api/v1/sites/chuo/tickets"))
            .bearer_auth(DISPENSER)
            .header("Idempotency-Key", &key)
            .json(&json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"}))
            .send()
            .await;
        match reply {
            Ok(r) if r.status().is_success() => {
                let body: Value = r.json().await.unwrap();
                let t = &body["ticket"];
                ack.lock().unwrap().issued.insert(
                    key.clone(),
                    (
                        t["number"].as_str().unwrap().to_owned(),
                        t["token"].as_str().unwrap().to_owned(),
                    ),
                );
                n += 1;
                key = format!("crash-{n}");
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            Ok(r) => panic!("issue refused: {} {:?}", r.status(), r.text().await),
            // The server is down: press again with the same key.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A counter calling, starting and completing whoever is next.
async fn counter(
    base: String,
    id: &'static str,
    ack: Arc<Mutex<Acknowledged>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let act = |action: &str| {
        http.post(format!("{base}/api/v1/sites/chuo/counters/{id}/{action}"))
            .bearer_auth(COUNTER)
            .send()
    };
    while !stop.load(Ordering::Relaxed) {
        // Where the counter stands decides the next action, so a lost answer is harmless.
        let state = http
            .get(format!("{base}/api/v1/sites/chuo/counters/{id}"))
            .bearer_auth(COUNTER)
            .send()
            .await;
        let Ok(state) = state else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(state) = state.json::<Value>().await else {
            continue;
        };
        let current = &state["counter"]["ticket"];
        let action = match current["status"].as_str() {
            None => "call-next",
            Some("called") => "start",
            Some(_) => "complete",
        };
        if let Ok(r) = act(action).await {
            if action == "complete" && r.status().is_success() {
                let number = current["number"].as_str().unwrap_or_default().to_owned();
                ack.lock().unwrap().completed.insert(number);
            }
            if r.status() == 204 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_across_random_kills() {
    let kills: usize = std::env::var("MADOGUCHI_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = repo_path("config/demo.toml");
    let printer = VirtualPrinter::start().await;
    let mut server = Server::start(&data).await;
    let addr = server.addr;
    let base = server.url("");
    let _agent = Agent::start(&server, &printer, &dir.path().join("agent"), &[]);

    let ack = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = vec![tokio::spawn(kiosk(base.clone(), ack.clone(), stop.clone()))];
    for id in ["6", "7"] {
        clients.push(tokio::spawn(counter(
            base.clone(),
            id,
            ack.clone(),
            stop.clone(),
        )));
    }

    let mut last_seq = 0;
    for round in 0..kills {
        // A live screen: after each restart it gets a snapshot at least as new as before.
        let (mut live, _) =
            tokio_tungstenite::connect_async(server.ws_url("/api/v1/sites/chuo/live"))
                .await
                .unwrap();
        let first = live.next().await.unwrap().unwrap();
        let snapshot: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
        assert_eq!(snapshot["type"], "snapshot");
        let seq = snapshot["seq"].as_u64().unwrap();
        assert!(
            seq >= last_seq,
            "round {round}: snapshot {seq} older than {last_seq}"
        );
        last_seq = seq;
        let wait = rand::rng().random_range(150..700);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill9();
        drop(live);
        server = Server::start_at(&data, &config, addr).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let ack = std::mem::take(&mut *ack.lock().unwrap());
    let issued: Vec<&(String, String)> = ack.issued.values().collect();
    assert!(
        issued.len() >= kills,
        "the harness issued too little to mean anything: {}",
        issued.len()
    );
    // Numbers are unique among acknowledged tickets, and each one exists.
    let numbers: BTreeSet<&String> = issued.iter().map(|(n, _)| n).collect();
    assert_eq!(numbers.len(), issued.len(), "a number was given twice");
    for (number, token) in &issued {
        // With a token: this many lookups from one address would be rate-limited without one.
        let (status, view) = server
            .get(&format!("/api/v1/tickets/{token}"), Some(FLOOR))
            .await;
        assert_eq!(status, 200, "acknowledged ticket {number} is gone: {view}");
        assert_eq!(view["ticket"]["number"], number.as_str());
    }
    // Every acknowledged completion is a visit with exactly one step, never a negative time.
    let db = rusqlite::Connection::open(data.join("madoguchi.db")).unwrap();
    for number in &ack.completed {
        let (outcome, stay, steps): (String, f64, i64) = db
            .query_row(
                "SELECT outcome, stay_s, (SELECT COUNT(*) FROM visit_steps s WHERE s.ticket_id = v.ticket_id)
                 FROM visits v WHERE number = ?1",
                [number],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap_or_else(|e| panic!("completed visit {number} missing: {e}"));
        assert_eq!(outcome, "done", "{number}");
        assert_eq!(steps, 1, "{number}: steps lost or doubled");
        assert!(stay >= 0.0, "{number}: stay {stay}");
    }
    let negative: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM visits WHERE stay_s < 0 OR wait_s < 0 OR service_s < 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(negative, 0);
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    // Every acknowledged ticket printed exactly once (others, issued as the server died, may
    // print too, but once).
    eventually("every acknowledged ticket printed", WAIT, || async {
        let printed: BTreeSet<String> = printer
            .cut_tickets()
            .iter()
            .map(|t| t.big[0].clone())
            .collect();
        numbers
            .iter()
            .all(|n| printed.contains(n.as_str()))
            .then_some(())
    })
    .await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in printer.cut_tickets() {
        *counts.entry(t.big[0].clone()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "printed more than once: {twice:?}");
    println!(
        "crash harness: {kills} kills survived, {} acknowledged tickets and {} completions checked, {} tickets printed",
        issued.len(),
        ack.completed.len(),
        counts.len()
    );
}
