//! The loadgen against the real server: a short run with 200 lobby sockets, 20 phones, 3
//! counters and 20 tickets a second must find nothing lost or out of order. Correctness only:
//! no timing is asserted (a debug build on a shared machine says nothing about speed).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace's root.
fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The server binary beside this test's own: `cargo test --workspace` builds it for the server's
/// tests (target/debug/deps/<test> → target/debug/madoguchi).
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join(format!("madoguchi{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built; run `cargo test --workspace` (or `cargo build -p madoguchi-server` first)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(data: &Path) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = data.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(server_binary())
            .arg("serve")
            .arg("--config")
            .arg(repo_path("config/demo.toml"))
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data")
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start madoguchi");
        let mut server = Server { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.ready() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("madoguchi exited early ({status}):\n{}", server.output());
            }
            assert!(
                Instant::now() < deadline,
                "madoguchi did not become ready:\n{}",
                server.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `GET /readyz` answers 200.
    fn ready(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /readyz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        if s.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_short_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let progress = dir.path().join("loadgen.stderr");
    let mut loadgen = Command::new(env!("CARGO_BIN_EXE_madoguchi-loadgen"))
        .args(["--server", &format!("http://{}", server.addr)])
        .args(["--sockets", "200", "--phones", "20", "--counters", "3"])
        .args([
            "--issue-rate",
            "20",
            "--duration",
            "4",
            "--baseline-seconds",
            "2",
        ])
        .args(["--server-pid", &server.child.id().to_string()])
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&progress).unwrap())
        .spawn()
        .expect("start the loadgen");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = loadgen.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = loadgen.kill();
            let _ = loadgen.wait();
            panic!(
                "the loadgen did not finish in 120 s:\n{}",
                std::fs::read_to_string(&progress).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    loadgen
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let context = || {
        format!(
            "stdout: {stdout}\nloadgen stderr:\n{}\nserver log:\n{}",
            std::fs::read_to_string(&progress).unwrap_or_default(),
            server.output()
        )
    };
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the loadgen printed no JSON ({e}); {status}\n{}", context()));
    eprintln!("{report}");
    let count = |field: &str| {
        report[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} is not a count in {report}"))
    };

    // Every field the JSON promises is there (figures may be null when not measured).
    for field in [
        "sockets",
        "issued",
        "issue_per_s",
        "issue_p50_ms",
        "issue_p99_ms",
        "call_to_screen_p50_ms",
        "call_to_screen_p99_ms",
        "baseline_p99_ms",
        "ratio_p99",
        "rss_mb",
        "baseline_rss_mb",
    ] {
        assert!(
            report.get(field).is_some(),
            "{field} missing: {}",
            context()
        );
    }
    assert_eq!(count("sockets"), 200, "{}", context());
    assert_eq!(count("phones"), 20, "{}", context());
    assert!(count("issued") > 0, "{}", context());
    assert!(count("calls") > 0, "{}", context());
    // Every phone ticket was called, and every phone showed its call.
    assert_eq!(count("phones_called"), 20, "{}", context());
    for violation in [
        "lobby_gaps",
        "lobby_out_of_order",
        "lobby_bad_messages",
        "lobby_connect_errors",
        "lobby_dropped",
        "lobby_behind",
        "screen_missing",
        "phone_missing",
        "phone_stale",
        "phone_connect_errors",
        "phone_dropped",
        "phone_bad_messages",
        "issue_errors",
        "counter_errors",
        "violations",
    ] {
        assert_eq!(count(violation), 0, "{violation}: {}", context());
    }
    // The calls reached every screen and were timed; the baseline ran on as many sockets.
    if count("lobby_resnapshots") == 0 {
        assert_eq!(
            count("call_screen_pairs"),
            count("calls") * 200,
            "{}",
            context()
        );
    }
    assert_eq!(count("baseline_sockets"), 200, "{}", context());
    assert_eq!(count("baseline_missing"), 0, "{}", context());
    assert!(report["rss_mb"].is_number(), "{}", context());
    assert!(status.success(), "exit {status}: {}", context());
}
