//! A real Redis for the tests: `REDIS_URL` when set, else a `redis-server` started on a free port
//! for the test (nothing on disk unless asked, stopped when dropped). Without either, a test skips
//! unless `CI` is set: under CI every test runs, and `.ci/run` installs redis-server.
//!
//! Every test takes its own key prefix ([`prefix`]), so tests can share one Redis.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis for one test.
pub struct TestRedis {
    pub url: String,
    /// The server this test started (`None` with `REDIS_URL`).
    server: Option<Child>,
    dir: Option<tempfile::TempDir>,
    port: u16,
    aof: bool,
}

/// A key prefix no other test (or run) uses.
pub fn prefix(test: &str) -> String {
    format!(
        "madoguchi-test:{test}:{}:{}:",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

fn redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestRedis {
    /// `REDIS_URL`, or a server of its own; `None` (skip) only when neither exists outside CI.
    pub fn get(test: &str) -> Option<TestRedis> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Some(TestRedis {
                url,
                server: None,
                dir: None,
                port: 0,
                aof: false,
            });
        }
        Self::own(test, false)
    }

    /// A server of its own (never `REDIS_URL`), with AOF (`appendfsync always`) when `aof`: for
    /// tests that stop and restart Redis.
    pub fn own(test: &str, aof: bool) -> Option<TestRedis> {
        if redis_server().is_none() {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: redis-server is not installed (CI must install it: apt-get install redis-server)");
            }
            eprintln!("{test}: skipped, no redis-server on PATH and no REDIS_URL");
            return None;
        }
        let mut redis = TestRedis {
            url: String::new(),
            server: None,
            dir: Some(tempfile::tempdir().unwrap()),
            port: free_port(),
            aof,
        };
        redis.url = format!("redis://127.0.0.1:{}/0", redis.port);
        redis.start();
        Some(redis)
    }

    /// Starts (or restarts) the server this test owns and waits until it answers.
    pub fn start(&mut self) {
        let dir = self
            .dir
            .as_ref()
            .expect("only a server of the test's own")
            .path();
        let mut cmd = Command::new(redis_server().expect("redis-server"));
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(dir)
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no");
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// Kills the server this test owns (SIGKILL: whatever AOF has is what survives).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
