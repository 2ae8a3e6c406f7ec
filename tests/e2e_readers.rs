//! Readers never block writers, on the real binary: KPI queries over a large store while a kiosk
//! issues tickets, the KPI range cap, and a CSV export whose client stops reading.
//!
//! The large store is written straight into the SQLite file before the server starts (the
//! schema comes from the server's own code), so 300,000 visits take seconds, not a day of
//! traffic.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Duration as Days, Utc};
use common::*;
use rusqlite::{params, Connection};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What [`large_store`] wrote, for the figures to check.
struct Written {
    /// Visits with outcome `done`.
    done: u64,
}

/// Writes `n` ended visits of the demo site `chuo` (one or two steps each) into the data
/// directory's database, all within the last 300 days.
fn large_store(data: &Path, n: usize) -> Written {
    std::fs::create_dir_all(data).unwrap();
    let db = data.join(madoguchi::server::DB_FILE);
    // The schema as the server makes it.
    drop(madoguchi::log::SqliteLog::open(&db).unwrap());
    drop(madoguchi::projection::ProjectionStore::open(&db).unwrap());
    let mut conn = Connection::open(&db).unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    let tx = conn.transaction().unwrap();
    let mut done = 0;
    {
        let mut visit = tx
            .prepare(
                "INSERT INTO visits (ticket_id, site, day, number, life_event, procedures,
                    priority, arrival, departure, arrival_ms, outcome, cancel_reason, stay_s,
                    wait_s, service_s, steps, satisfaction)
                 VALUES (?1, 'chuo', ?2, ?3, ?4, '[\"tennyu\"]', 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                    ?12, ?13, ?14)",
            )
            .unwrap();
        let mut step = tx
            .prepare(
                "INSERT INTO visit_steps (ticket_id, step, queue, for_counter, counter,
                    enqueued_at, called_at, started_at, ended_at, calls, wait_s, service_s)
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?5, ?5, ?6, 1, ?7, ?8)",
            )
            .unwrap();
        let base = Utc::now() - Days::days(1);
        let life_events = [Some("moving_in"), Some("moving_out"), Some("birth"), None];
        for i in 0..n {
            let id = format!("synthetic-{i:07}");
            let arrival = base - Days::seconds(i as i64 * 86);
            let wait = 60.0 + (i * 7 % 3600) as f64;
            let service = 120.0 + (i * 13 % 1200) as f64;
            let stay = wait + service + 30.0;
            let departure = arrival + Days::milliseconds((stay * 1000.0) as i64);
            let (outcome, reason) = match i % 20 {
                0 => ("no_show", None),
                1 => ("cancelled", Some("staff")),
                _ => ("done", None),
            };
            if outcome == "done" {
                done += 1;
            }
            let satisfaction = (outcome == "done" && i % 3 == 0).then_some(i % 5 + 1);
            let steps = if i % 10 == 0 { 2 } else { 1 };
            let (a, d) = (arrival.to_rfc3339(), departure.to_rfc3339());
            visit
                .execute(params![
                    id,
                    arrival.date_naive().to_string(),
                    (i % 499 + 1).to_string(),
                    life_events[i % 4],
                    a,
                    d,
                    arrival.timestamp_millis(),
                    outcome,
                    reason,
                    stay,
                    wait,
                    service,
                    steps,
                    satisfaction,
                ])
                .unwrap();
            for s in 1..=steps {
                let (queue, counter) = if s == 1 {
                    ("onestop", (i % 9 + 1).to_string())
                } else {
                    ("welfare", "8".to_owned())
                };
                let share = f64::from(steps);
                step.execute(params![
                    id,
                    s,
                    queue,
                    counter,
                    a,
                    d,
                    wait / share,
                    service / share
                ])
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    Written { done }
}

/// The demo configuration with `limits` appended to a `[limits]` table.
fn config_with_limits(dir: &Path, limits: &str) -> std::path::PathBuf {
    demo_config_with(dir, "readers.toml", &format!("[limits]\n{limits}\n"))
}

fn issue_body() -> Value {
    // kiosk-1 prints: the ticket also becomes a print job, written by the projection.
    json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"})
}

#[tokio::test]
async fn a_kiosk_is_served_while_four_all_time_kpis_run_on_300000_visits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let t0 = Instant::now();
    let written = large_store(&data, 300_000);
    eprintln!("300,000 visits written in {:?}", t0.elapsed());
    // A debug build reads slowly: give the KPI time to answer.
    let config = config_with_limits(dir.path(), "response_timeout_s = 300");
    let server = Arc::new(Server::start_with(&data, &config).await);
    let rss_at_start = server.rss_kb();

    // Four analysts at once, no bounds: every visit in the default window (the last 400 days).
    let queries = [
        "/api/v1/sites/chuo/kpi",
        "/api/v1/sites/all/kpi",
        "/api/v1/sites/chuo/kpi?group_by=day",
        "/api/v1/sites/chuo/kpi?group_by=counter",
    ];
    let started = Instant::now();
    let kpis: Vec<_> = queries
        .iter()
        .map(|q| {
            let server = server.clone();
            let q = q.to_string();
            tokio::spawn(async move {
                let (status, body) = server.get(&q, Some(ANALYST)).await;
                (q, status, body, started.elapsed())
            })
        })
        .collect();
    // The server's memory while they run.
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (server, running) = (server.clone(), running.clone());
        tokio::spawn(async move {
            let mut max = 0;
            while running.load(Ordering::Relaxed) {
                max = max.max(server.rss_kb());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            max
        })
    };
    // Until all four are being answered (the KPI route has its own in-flight gauge).
    eventually(
        "the four KPI queries under way",
        Duration::from_secs(30),
        || async {
            let metrics = server.metrics().await;
            metrics
                .lines()
                .any(|l| {
                    l.starts_with(
                        "madoguchi_http_requests_in_flight{route=\"/api/v1/sites/{site}/kpi\"}",
                    ) && l.ends_with(" 4")
                })
                .then_some(())
        },
    )
    .await;

    let issue_started = Instant::now();
    let ticket = server.issue(issue_body()).await;
    let issue_took = issue_started.elapsed();
    let board = server.board().await;
    let board_took = issue_started.elapsed() - issue_took;
    assert!(ticket["number"].is_string(), "{ticket}");
    assert!(board["queues"].is_array(), "{board}");
    // Ordering, not time: the ticket and the board were answered while every KPI still ran.
    let unfinished = kpis.iter().filter(|k| !k.is_finished()).count();
    assert_eq!(
        unfinished,
        kpis.len(),
        "a KPI answered before the kiosk was served (issue {issue_took:?}, board {board_took:?})"
    );

    for k in kpis {
        let (q, status, body, took) = k.await.unwrap();
        assert_eq!(status, 200, "{q}: {body}");
        eprintln!("{q}: {took:?}");
        if !q.contains("group_by") {
            assert_eq!(body["visits"], written.done, "{q}");
        }
        if q.ends_with("group_by=counter") {
            let per_counter: u64 = body["groups"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|g| g["key"] != "8")
                .map(|g| g["visits"].as_u64().unwrap())
                .sum();
            // Counters 1–7 and 9 serve only first steps; counter 8 also every second step.
            assert!(per_counter > 0 && per_counter < written.done, "{body}");
        }
    }
    running.store(false, Ordering::Relaxed);
    let max_rss = sampler.await.unwrap();
    eprintln!(
        "issue {issue_took:?}, board {board_took:?} during the KPIs; RSS {} MiB at start, {} MiB at most",
        rss_at_start / 1024,
        max_rss / 1024
    );
    assert!(
        max_rss < 400 * 1024,
        "the server took {} MiB while the KPIs ran",
        max_rss / 1024
    );
}

#[tokio::test]
async fn a_kpi_range_longer_than_the_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let (status, body) = server
        .get(
            "/api/v1/sites/chuo/kpi?from=2020-01-01&to=2026-12-01",
            Some(ANALYST),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "range_too_large", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("400"), "{message}");
    let (status, body) = server.get("/api/v1/sites/all/kpi", Some(ANALYST)).await;
    assert_eq!(status, 200, "{body}");
    // No bounds: the last 400 days, ending with today.
    let (status, body) = server.get("/api/v1/sites/chuo/kpi", Some(ANALYST)).await;
    assert_eq!(status, 200, "{body}");
    let instant = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .to_utc()
    };
    let (from, to) = (instant(&body["from"]), instant(&body["to"]));
    assert_eq!(to - from, Days::days(400), "{body}");
    assert!(
        to > Utc::now() && to - Utc::now() <= Days::days(1),
        "{body}"
    );
    // One bound: a window of the cap from it.
    let (status, body) = server
        .get("/api/v1/sites/chuo/kpi?from=2020-01-01", Some(ANALYST))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["visits"], 0, "{body}");
}

#[tokio::test]
async fn a_csv_export_whose_client_stops_reading_is_dropped_and_the_wal_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // More rows than the socket buffers hold.
    large_store(&data, 50_000);
    let config = config_with_limits(dir.path(), "export_stall_s = 1");
    let server = Server::start_with(&data, &config).await;
    server.issue(issue_body()).await;

    // A client that asks for the export, reads the first bytes and then nothing, with the
    // connection left open.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /api/v1/sites/chuo/visits.csv HTTP/1.1\r\nHost: {}\r\n\
                 Authorization: Bearer {ANALYST}\r\n\r\n",
                server.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 1024];
    let n = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Writes while the export's read transaction is open.
    for _ in 0..3 {
        server.issue(issue_body()).await;
    }

    let dropped = eventually(
        "the stalled export to be dropped",
        Duration::from_secs(60),
        || async {
            let text = server.metrics().await;
            text.lines()
                .find_map(|l| l.strip_prefix("madoguchi_exports_dropped_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&n| n >= 1)
        },
    )
    .await;
    assert_eq!(dropped, 1);
    assert!(
        server
            .output()
            .contains("CSV export dropped: its client stopped reading"),
        "{}",
        server.output()
    );

    // The read transaction has ended: a full checkpoint goes through and empties the WAL.
    let db = data.join(madoguchi::server::DB_FILE);
    let probe = Connection::open(&db).unwrap();
    let (busy, log, checkpointed) = eventually(
        "a checkpoint with no reader in the way",
        Duration::from_secs(10),
        || {
            let r = probe
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .unwrap();
            async move { (r.0 == 0).then_some(r) }
        },
    )
    .await;
    assert_eq!(busy, 0);
    assert_eq!(
        log, checkpointed,
        "every frame of the WAL is in the database"
    );
    let wal = std::fs::metadata(db.with_extension("db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL is truncated");

    // The server still serves, and the stalled client's connection is no longer fed.
    server.issue(issue_body()).await;
    drop(stream);
}
