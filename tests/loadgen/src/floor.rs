//! `--sqlite-floor`: how many durable commits a second this disk gives a plain SQLite loop —
//! WAL, `synchronous=FULL`, one row per transaction — the ceiling for a design that commits
//! each command on its own.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::clock::progress;

/// The printed result, in this order.
#[derive(Serialize)]
struct Floor {
    sqlite_commits_per_s: f64,
    commits: u64,
    seconds: f64,
    dir: String,
}

pub(crate) fn run(dir: &Path, seconds: f64, json_only: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("loadgen-sqlite-floor-{}.db", std::process::id()));
    let result = measure(&path, seconds);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let (commits, elapsed) = result?;
    let rate = commits as f64 / elapsed;
    let out = Floor {
        sqlite_commits_per_s: (rate * 10.0).round() / 10.0,
        commits,
        seconds: (elapsed * 1000.0).round() / 1000.0,
        dir: dir.display().to_string(),
    };
    if !json_only {
        progress!(
            "{commits} commits in {elapsed:.2} s on {}: {rate:.1} per second",
            dir.display()
        );
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

fn measure(path: &Path, seconds: f64) -> Result<(u64, f64)> {
    let mut conn =
        rusqlite::Connection::open(path).with_context(|| format!("open {}", path.display()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "journal_mode is {mode}, not WAL"
    );
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE events (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, body TEXT NOT NULL);",
    )?;
    // About the size of one of the server's event rows.
    let body = format!(r#"{{"type":"ticket_issued","pad":"{}"}}"#, "x".repeat(300));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds.max(0.1));
    let mut commits = 0u64;
    while Instant::now() < until {
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO events (at, body) VALUES (?1, ?2)",
            rusqlite::params![commits as i64, body],
        )?;
        tx.commit()?;
        commits += 1;
    }
    Ok((commits, start.elapsed().as_secs_f64()))
}
