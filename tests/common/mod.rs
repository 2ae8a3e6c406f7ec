//! Helpers for end-to-end tests: start the real `madoguchi` binary on a free port with its own
//! data directory, wait until it is ready, talk to it over real sockets, kill it.

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const DISPENSER: &str = "demo-dispenser";
pub const COUNTER: &str = "demo-counter";
pub const FLOOR: &str = "demo-floor";
pub const ANALYST: &str = "demo-analyst";

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The server binary. Tests of other packages find it beside their own binaries: `cargo test
/// --workspace` builds it for the server's integration tests.
pub fn binary() -> PathBuf {
    built_binary("madoguchi", option_env!("CARGO_BIN_EXE_madoguchi"))
}

/// The printer agent binary.
pub fn agent_binary() -> PathBuf {
    built_binary(
        "madoguchi-printer-agent",
        option_env!("CARGO_BIN_EXE_madoguchi-printer-agent"),
    )
}

fn built_binary(name: &str, from_cargo: Option<&str>) -> PathBuf {
    let path = from_cargo.map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/debug/deps/<test> → target/debug/<name>
        exe.parent()
            .and_then(Path::parent)
            .expect("target directory")
            .join(name)
    });
    assert!(
        path.exists(),
        "{} is not built; run the tests with `cargo test --workspace`",
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

/// Writes config/demo.toml followed by `extra` (TOML text: more `[[tokens]]`, a `[limits]`
/// table…) to `dir/name` and returns that path.
pub fn demo_config_with(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let mut config = std::fs::read_to_string(repo_path("config/demo.toml")).unwrap();
    config.push('\n');
    config.push_str(extra);
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap();
    path
}

/// Hours from UTC of a time zone where it is now around midday.
pub fn midday_offset_h() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    12 - ((secs / 3600) % 24) as i64
}

/// That zone's IANA name ("Etc/GMT-N" is UTC+N), for a configuration whose hours must hold
/// whatever the hour of the run.
pub fn midday_zone() -> String {
    match midday_offset_h() {
        0 => "Etc/GMT".to_owned(),
        n if n > 0 => format!("Etc/GMT-{n}"),
        n => format!("Etc/GMT+{}", -n),
    }
}

/// config/demo.toml with its site in a time zone where it is now around midday
/// ([`midday_zone`]), `hours` (the lines of a city-wide `[hours]` table) and, given
/// `reservations`, these lines in place of the demo's `[sites.reservations]` table; written to
/// `dir/name`. Tests of reception hours and bookings use it so that their hours hold whatever the
/// hour and the day of the run.
pub fn midday_demo_config(
    dir: &Path,
    name: &str,
    hours: &str,
    reservations: Option<&str>,
) -> PathBuf {
    let demo = std::fs::read_to_string(repo_path("config/demo.toml")).unwrap();
    assert!(demo.contains("timezone = \"Asia/Tokyo\""));
    let mut config = demo.replace(
        "timezone = \"Asia/Tokyo\"",
        &format!("timezone = \"{}\"", midday_zone()),
    );
    if let Some(lines) = reservations {
        let (head, rest) = config
            .split_once("[sites.reservations]\n")
            .expect("the demo's [sites.reservations]");
        let (_, tail) = rest
            .split_once("\n\n")
            .expect("a blank line after [sites.reservations]");
        config = format!("{head}[sites.reservations]\n{lines}\n\n{tail}");
    }
    config.push_str(&format!("\n[hours]\n{hours}\n"));
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap();
    path
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub http: reqwest::Client,
    log: PathBuf,
}

impl Server {
    /// Starts the binary with the demo configuration on `data` and waits until `/readyz` is 200.
    pub async fn start(data: &Path) -> Server {
        Self::start_with(data, &repo_path("config/demo.toml")).await
    }

    pub async fn start_with(data: &Path, config: &Path) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_at(data, config, addr).await
    }

    /// Starts on a given address (to restart a server where its clients expect it).
    pub async fn start_at(data: &Path, config: &Path, addr: SocketAddr) -> Server {
        Self::spawn(data, config, addr, Command::new(binary())).await
    }

    /// Starts with more arguments after the usual ones (e.g. `--store redis://…`).
    pub async fn start_args(data: &Path, config: &Path, args: &[&str]) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new(binary());
        command.args(["serve"]).args(args);
        Self::spawn_serve(data, config, addr, command).await
    }

    /// An instance on a shared Redis store (`--store URL --redis-prefix PREFIX`), named `name`
    /// (`--server-name`), with its own data directory `dir/name` and more arguments after.
    pub async fn start_on_redis(
        dir: &Path,
        name: &str,
        config: &Path,
        url: &str,
        prefix: &str,
        more: &[&str],
    ) -> Server {
        let mut args = vec![
            "--store",
            url,
            "--redis-prefix",
            prefix,
            "--server-name",
            name,
        ];
        args.extend_from_slice(more);
        Self::start_args(&dir.join(name), config, &args).await
    }

    /// Print jobs in this server's own file by outcome (`pending` while not finished).
    pub fn job_outcomes(&self) -> std::collections::BTreeMap<String, usize> {
        let conn = rusqlite::Connection::open(self.data.join("madoguchi.db")).unwrap();
        let mut stmt = conn
            .prepare("SELECT COALESCE(outcome, 'pending'), COUNT(*) FROM print_jobs GROUP BY 1")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Starts the binary through a wrapper: `wrapper` is a program and its arguments, run with
    /// the binary's path and arguments after them; it must `exec` them (so the process id stays
    /// the server's). E.g. `["bash", "-c", "ulimit -n 400; exec \"$0\" \"$@\""]`.
    pub async fn start_wrapped(data: &Path, config: &Path, wrapper: &[&str]) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (program, args) = wrapper.split_first().expect("a wrapper program");
        let mut command = Command::new(program);
        command.args(args).arg(binary());
        Self::spawn(data, config, addr, command).await
    }

    async fn spawn(data: &Path, config: &Path, addr: SocketAddr, mut command: Command) -> Server {
        command.arg("serve");
        Self::spawn_serve(data, config, addr, command).await
    }

    /// Spawns `command` (the binary and `serve` with any arguments already given) on `data`.
    async fn spawn_serve(
        data: &Path,
        config: &Path,
        addr: SocketAddr,
        mut command: Command,
    ) -> Server {
        let log = data.with_extension(format!("{}.log", addr.port()));
        let out = std::fs::File::create(&log).unwrap();
        let child = command
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data")
            .arg(data)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start madoguchi");
        let mut server = Server {
            child: Some(child),
            addr,
            data: data.to_owned(),
            http: reqwest::Client::new(),
            log,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("madoguchi exited early ({status}):\n{}", self.output());
            }
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "madoguchi did not become ready:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server's resident memory in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status of the server");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        eventually("the server to exit", Duration::from_secs(20), || {
            let exited = child.try_wait().unwrap();
            async move { exited }
        })
        .await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, token, body).await
    }

    /// Issues a ticket at the demo site and returns it.
    pub async fn issue(&self, body: Value) -> Value {
        let (status, reply) = self
            .post("/api/v1/sites/chuo/tickets", Some(DISPENSER), Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
        reply["ticket"].clone()
    }

    /// A counter action at the demo site.
    pub async fn counter(&self, counter: &str, action: &str, body: Option<Value>) -> (u16, Value) {
        self.post(
            &format!("/api/v1/sites/chuo/counters/{counter}/{action}"),
            Some(COUNTER),
            body,
        )
        .await
    }

    /// Closes (`"closing"`) a queue's reception at the demo site, or keeps it open (`"open"`),
    /// with `token`.
    pub async fn reception(&self, token: Option<&str>, queue: &str, mode: &str) -> (u16, Value) {
        self.send(
            reqwest::Method::PUT,
            &format!("/api/v1/sites/chuo/queues/{queue}/reception"),
            token,
            Some(serde_json::json!({ "mode": mode })),
        )
        .await
    }

    /// Tickets waiting in every queue of the demo site.
    pub async fn waiting_total(&self) -> u64 {
        self.board().await["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["waiting"].as_u64().unwrap())
            .sum()
    }

    pub async fn board(&self) -> Value {
        // With a token: tests poll it fast, and token holders are never rate-limited.
        let (status, board) = self.get("/api/v1/sites/chuo/board", Some(FLOOR)).await;
        assert_eq!(status, 200);
        board
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `value` without its `estimated_wait_s` fields: estimates look ahead from the moment they are
/// made, so a view rebuilt later (after a restart) differs in them alone.
pub fn without_estimates(mut value: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("estimated_wait_s");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}
