//! `madoguchi backup` and `madoguchi verify` on the real binary: a backup taken while the server
//! runs and keeps issuing verifies clean, restores into a fresh data directory where a server
//! starts at the backup's last seq, and a tampered copy fails `verify` with the ticket named.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn moving_in(children: bool) -> Value {
    json!({
        "life_event": "moving_in",
        "answers": {"children": children, "kokuho": true, "over_65": false, "over_75": false},
        "dispenser": "kiosk-1",
        "lang": "ja"
    })
}

/// Runs `madoguchi ARGS` off the async runtime (the server's clients keep going meanwhile).
async fn madoguchi(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args(&args)
            .output()
            .expect("run madoguchi")
    })
    .await
    .unwrap()
}

fn args(list: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<String> {
    list.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn verify_db(db: &Path) -> Output {
    let config = repo_path("config/demo.toml");
    madoguchi(args(&[&"verify", &"--db", &db, &"--config", &config])).await
}

async fn action(server: &Server, counter: &str, name: &str, body: Option<Value>) -> Value {
    let (status, reply) = server.counter(counter, name, body).await;
    assert_eq!(status, 200, "{counter} {name}: {reply}");
    reply
}

fn last_seq(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT MAX(seq) FROM events WHERE site = 'chuo'", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_then_verify_restore_and_detect_tampering() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data).await;
    let config = repo_path("config/demo.toml");

    // A transfer, a plain visit, a no-show, and one left waiting; all printed at kiosk-1.
    let t1 = server.issue(moving_in(true)).await;
    let t2 = server.issue(moving_in(false)).await;
    let t3 = server.issue(moving_in(false)).await;
    let _waiting = server.issue(moving_in(true)).await;
    let called = action(&server, "1", "call-next", None).await;
    assert_eq!(called["ticket"]["number"], t1["number"], "{called}");
    action(&server, "1", "start", None).await;
    action(
        &server,
        "1",
        "complete",
        Some(json!({"transfer_to": "welfare"})),
    )
    .await;
    let called = action(&server, "8", "call-next", None).await;
    assert_eq!(called["ticket"]["number"], t1["number"], "{called}");
    action(&server, "8", "start", None).await;
    action(&server, "8", "complete", None).await;
    let called = action(&server, "2", "call-next", None).await;
    assert_eq!(called["ticket"]["number"], t2["number"], "{called}");
    action(&server, "2", "start", None).await;
    action(&server, "2", "complete", None).await;
    // The demo's no-show: two calls, back in line once, two more calls, then the visit ends.
    for round in 0..2 {
        action(&server, "3", "call", Some(json!({"number": t3["number"]}))).await;
        action(&server, "3", "recall", None).await;
        let reply = action(&server, "3", "no-show", None).await;
        let expected = if round == 0 { "waiting" } else { "no_show" };
        assert_eq!(reply["ticket"]["status"], expected, "{reply}");
    }

    // Residents keep taking tickets while the backup runs.
    let issued = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let issuer = {
        let (http, url) = (
            server.http.clone(),
            server.url("/api/v1/sites/chuo/tickets"),
        );
        let (issued, stop) = (issued.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut body = moving_in(false);
                body["dispenser"] = json!("kiosk-2");
                let resp = http
                    .post(&url)
                    .bearer_auth(DISPENSER)
                    .json(&body)
                    .send()
                    .await
                    .expect("issue");
                assert_eq!(resp.status(), 201);
                issued.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let issued_now = || issued.load(Ordering::Relaxed);
    eventually(
        "tickets issued in the background",
        Duration::from_secs(10),
        || {
            let n = issued_now();
            async move { (n >= 3).then_some(()) }
        },
    )
    .await;

    let backup = dir.path().join("backup.db");
    let out = madoguchi(args(&[&"backup", &backup, &"--data", &data])).await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("backup written"), "{}", show(&out));
    assert!(stdout(&out).contains("events"), "{}", show(&out));
    assert!(stdout(&out).contains("3 visits"), "{}", show(&out));
    assert!(backup.is_file());
    assert!(
        !dir.path().join("backup.db-wal").exists(),
        "the backup is one self-contained file"
    );

    // An existing file is kept unless --force.
    let size = std::fs::metadata(&backup).unwrap().len();
    let out = madoguchi(args(&[&"backup", &backup, &"--data", &data])).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("--force"), "{}", show(&out));
    assert!(stderr(&out).contains("既にあります"), "{}", show(&out));
    assert_eq!(std::fs::metadata(&backup).unwrap().len(), size);
    let out = madoguchi(args(&[&"backup", &backup, &"--data", &data, &"--force"])).await;
    assert!(out.status.success(), "{}", show(&out));
    let after = issued_now();
    eventually(
        "more tickets after the backup",
        Duration::from_secs(10),
        || {
            let n = issued_now();
            async move { (n >= after + 2).then_some(()) }
        },
    )
    .await;

    // The backup, and the live file under the running server, verify clean.
    let out = verify_db(&backup).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("3 visits checked"), "{}", show(&out));
    assert!(stdout(&out).contains("一致 / OK"), "{}", show(&out));
    let out = madoguchi(args(&[&"verify", &"--data", &data, &"--config", &config])).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    stop.store(true, Ordering::Relaxed);
    issuer.await.unwrap();
    let backup_seq = last_seq(&backup);
    assert!(
        server.board().await["seq"].as_u64().unwrap() > backup_seq,
        "the server kept going after the backup"
    );

    // Restore into a fresh data directory: verify it, start a server on it.
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(&backup, restored.join("madoguchi.db")).unwrap();
    let out = madoguchi(args(&[
        &"verify",
        &"--data",
        &restored,
        &"--config",
        &config,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let mut second = Server::start(&restored).await;
    assert_eq!(second.board().await["seq"].as_u64(), Some(backup_seq));
    for (ticket, status) in [(&t1, "done"), (&t2, "done"), (&t3, "no_show")] {
        let token = ticket["token"].as_str().unwrap();
        let (code, view) = second.get(&format!("/api/v1/tickets/{token}"), None).await;
        assert_eq!(code, 200, "{view}");
        assert_eq!(view["ticket"]["status"], status, "{view}");
    }
    // Numbering goes on from the backup.
    let issued_in_backup: i64 = rusqlite::Connection::open(&backup)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE site = 'chuo' AND kind = 'ticket_issued'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let next = second.issue(moving_in(false)).await;
    assert_eq!(
        next["number"].as_str().unwrap().parse::<i64>().unwrap(),
        issued_in_backup + 1,
        "{next}"
    );
    assert_eq!(second.board().await["seq"].as_u64(), Some(backup_seq + 1));
    assert!(second.terminate().await.success());
    let out = madoguchi(args(&[
        &"verify",
        &"--data",
        &restored,
        &"--config",
        &config,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // A tampered copy: one stay time moved by a minute, one print job gone.
    let tampered = dir.path().join("tampered.db");
    std::fs::copy(&backup, &tampered).unwrap();
    let (stay_number, job_number) = {
        let conn = rusqlite::Connection::open(&tampered).unwrap();
        let stay: String = conn
            .query_row(
                "UPDATE visits SET stay_s = stay_s + 60
                 WHERE rowid = (SELECT MIN(rowid) FROM visits) RETURNING number",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let job: String = conn
            .query_row(
                "DELETE FROM print_jobs WHERE id = (SELECT id FROM print_jobs ORDER BY seq LIMIT 1)
                 RETURNING json_extract(body, '$.number')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (stay, job)
    };
    let out = verify_db(&tampered).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    let stay_line = text
        .lines()
        .find(|l| l.contains("stay_s"))
        .unwrap_or_else(|| panic!("no stay_s mismatch:\n{}", show(&out)));
    assert!(
        stay_line.contains(&format!("番号 {stay_number} ")),
        "{stay_line}"
    );
    let job_line = text
        .lines()
        .find(|l| l.contains("print job missing"))
        .unwrap_or_else(|| panic!("no missing print job:\n{}", show(&out)));
    assert!(
        job_line.contains(&format!("番号 {job_number} ")),
        "{job_line}"
    );
    assert!(text.contains("2 mismatch"), "{}", show(&out));

    // Errors: exit 2, said in both languages.
    let out = verify_db(&dir.path().join("nothing.db")).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("データベースがありません / no database"),
        "{}",
        show(&out)
    );
    let bad = demo_config_with(dir.path(), "bad.toml", "nonsense = 1\n");
    let out = madoguchi(args(&[&"verify", &"--db", &backup, &"--config", &bad])).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = madoguchi(args(&[
        &"backup",
        &dir.path().join("other.db"),
        &"--data",
        &dir.path().join("empty"),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(!dir.path().join("other.db").exists());

    drop(server);
    eprintln!("e2e_maintenance took {:?}", started.elapsed());
}
