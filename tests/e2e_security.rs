//! Hostile probes against the real `madoguchi` binary over real sockets (issue 8): made-up
//! methods, headers that never end, a descriptor limit, a live client that stops reading,
//! oversized frames, a printer token used for another agent, a flapping printer, the phone
//! channel, rate limits, an idempotency key replayed by another kiosk, and tokens checked before
//! bodies. Each test shows the server unhurt: it answers, stays small and frees what it holds.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{future, stream, SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PRINTER: &str = "demo-printer";
/// A second printer token, bound to agent-2 only.
const PRINTER_TWO: &str = "printer-two-token-0123456789abcdef";
/// What the server may hold in memory under every probe here (debug build).
const RSS_LIMIT_KB: u64 = 100 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A small xorshift generator: random enough for made-up methods and paths, seeded by the clock.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `len` characters of A–Z and 0–9, starting with a letter (a valid method token).
    fn word(&mut self, len: usize) -> String {
        const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut w = String::with_capacity(len);
        w.push(LETTERS[self.below(LETTERS.len())] as char);
        for _ in 1..len {
            w.push(CHARS[self.below(CHARS.len())] as char);
        }
        w
    }
}

/// Every series of a `/metrics` text: the metric name with its labels, without the value.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(key, _)| key).to_owned())
        .collect()
}

/// The sum of the series `name` whose labels include every one of `labels`; `None` if there is
/// no such series.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let (metric_name, rest) = key.split_once('{').unwrap_or((key, ""));
            let rest = format!(",{rest}");
            let matches = metric_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!(",{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

async fn metric_now(server: &Server, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&server.metrics().await, name, labels).unwrap_or(0.0)
}

/// The next JSON text message of a socket, skipping pings; panics after 10 s.
async fn next_json(ws: &mut Ws) -> (String, Value) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .expect("valid frame");
        match msg {
            Message::Text(text) => {
                let value = serde_json::from_str(&text).expect("messages are JSON");
                return (text.to_string(), value);
            }
            Message::Close(frame) => panic!("the socket was closed: {frame:?}"),
            _ => {}
        }
    }
}

/// A WebSocket upgrade request sent as plain HTTP, to see the answer of a refused upgrade.
async fn upgrade_status(server: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = server
        .http
        .get(server.url(path))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("upgrade request");
    let status = resp.status().as_u16();
    if status == 101 {
        return (status, Value::Null);
    }
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A WebSocket handshake by hand on a raw TCP stream; the stream is left right after the
/// server's 101 answer.
async fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("a handshake answer within 10 s")
            .expect("read the handshake answer");
        assert_eq!(n, 1, "closed during the handshake: {head:?}");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Reads until the peer closes (end of stream or a reset); returns what arrived.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status code of the first close frame among server frames (unmasked), if any.
fn close_code(bytes: &[u8]) -> Option<u16> {
    let mut i = 0;
    while i + 2 <= bytes.len() {
        let opcode = bytes[i] & 0x0f;
        let masked = bytes[i + 1] & 0x80 != 0;
        let (len, mut start) = match bytes[i + 1] & 0x7f {
            126 => {
                let b = bytes.get(i + 2..i + 4)?;
                (u16::from_be_bytes([b[0], b[1]]) as usize, i + 4)
            }
            127 => {
                let b: [u8; 8] = bytes.get(i + 2..i + 10)?.try_into().ok()?;
                (u64::from_be_bytes(b) as usize, i + 10)
            }
            n => (n as usize, i + 2),
        };
        if masked {
            start += 4;
        }
        let payload = bytes.get(start..start.checked_add(len)?)?;
        if opcode == 0x8 && payload.len() >= 2 {
            return Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
        i = start + len;
    }
    None
}

/// `/healthz` from a fresh client (no pooled connection), `None` on any failure or after `wait`.
async fn healthz(server: &Server, wait: Duration) -> Option<u16> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let reply = tokio::time::timeout(wait, client.get(server.url("/healthz")).send()).await;
    Some(reply.ok()?.ok()?.status().as_u16())
}

/// Opens up to `n` connections that send the start of a request and never finish its headers;
/// `opened` counts them as they open.
async fn open_slow_connections(addr: SocketAddr, n: usize, opened: &AtomicUsize) -> Vec<TcpStream> {
    stream::iter(0..n)
        .map(|_| async move {
            let mut s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
                .await
                .ok()?
                .ok()?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.ok()?;
            opened.fetch_add(1, Ordering::Relaxed);
            Some(s)
        })
        .buffer_unordered(100)
        .filter_map(future::ready)
        .collect()
        .await
}

/// One task per connection that reads until the server closes it; each task returns whether it
/// saw the close within `wait`.
fn watch_closing(conns: Vec<TcpStream>, wait: Duration) -> Vec<tokio::task::JoinHandle<bool>> {
    conns
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                tokio::time::timeout(wait, read_to_close(&mut s))
                    .await
                    .is_ok()
            })
        })
        .collect()
}

async fn count_closed(watchers: Vec<tokio::task::JoinHandle<bool>>) -> usize {
    future::join_all(watchers)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count()
}

/// Lets this process open a few thousand sockets.
fn raise_fd_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

fn assert_rss_below_limit(server: &Server, what: &str) {
    let rss = server.rss_kb();
    assert!(
        rss < RSS_LIMIT_KB,
        "{what}: the server holds {} MiB (limit {} MiB)",
        rss / 1024,
        RSS_LIMIT_KB / 1024
    );
}

fn printer_of<'a>(board: &'a Value, agent: &str) -> Option<&'a Value> {
    board["printers"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == agent)
}

async fn printer_socket(server: &Server, agent: &str, token: &str) -> Ws {
    let mut req = server
        .ws_url(&format!("/api/v1/printers/{agent}/jobs"))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .unwrap_or_else(|e| panic!("{agent} with its own token must connect: {e}"));
    ws
}

async fn send_status(ws: &mut Ws, state: &str) {
    let text = json!({"type": "status", "state": state}).to_string();
    ws.send(Message::Text(text.into())).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. Made-up methods and paths
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_add_no_metric_series() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let mut rng = Rng::new();
    // `{r}` is replaced by a random word; matched routes answer 405, the others 404.
    let templates = [
        "/healthz",
        "/metrics",
        // Not the board nor the phone API: they are rate limited, whatever the method.
        "/api/v1/sites/chuo/catalog",
        "/api/v1/sites/{r}/tickets",
        "/api/v1/sites/chuo/counters/{r}/{r}",
        "/api/v1/sites/{r}/live",
        "/api/v1/printers/{r}/jobs",
        "/screens/lobby/{r}",
        "/{r}",
        "/api/v1/{r}/{r}/{r}",
        "/{r}.php?id={r}",
    ];
    let request = |rng: &mut Rng, template: &str| {
        let method = Method::from_bytes(rng.word(8).as_bytes()).expect("a valid method token");
        let mut path = template.to_owned();
        while path.contains("{r}") {
            let len = 1 + rng.below(12);
            path = path.replacen("{r}", &rng.word(len).to_lowercase(), 1);
        }
        (method, path)
    };
    let mut warm_up: Vec<(Method, String)> =
        templates.iter().map(|t| request(&mut rng, t)).collect();
    for _ in 0..100 {
        let t = templates[rng.below(templates.len())];
        warm_up.push(request(&mut rng, t));
    }
    let probes: Vec<(Method, String)> = (0..10_000)
        .map(|_| {
            let t = templates[rng.below(templates.len())];
            request(&mut rng, t)
        })
        .collect();

    let send_all = |requests: Vec<(Method, String)>| {
        let server = &server;
        async move {
            let statuses: Vec<u16> = stream::iter(requests)
                .map(|(method, path)| async move {
                    let resp = server
                        .http
                        .request(method.clone(), server.url(&path))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
                    resp.status().as_u16()
                })
                .buffer_unordered(16)
                .collect()
                .await;
            statuses
        }
    };

    let statuses = send_all(warm_up).await;
    assert!(
        statuses.iter().all(|s| *s == 404 || *s == 405),
        "made-up methods get 404 or 405: {statuses:?}"
    );
    server.metrics().await; // its own series exists from now on
    let before = server.metrics().await;

    let started = Instant::now();
    let statuses = send_all(probes).await;
    let took = started.elapsed();
    let unexpected: Vec<&u16> = statuses
        .iter()
        .filter(|s| **s != 404 && **s != 405)
        .collect();
    assert!(
        unexpected.is_empty(),
        "made-up methods get 404 or 405: {unexpected:?}"
    );

    let after = server.metrics().await;
    let (old, new) = (series(&before), series(&after));
    let added: Vec<&String> = new.difference(&old).collect();
    let removed: Vec<&String> = old.difference(&new).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "10,000 made-up requests changed the series of /metrics: added {} (e.g. {:?}), removed {:?}",
        added.len(),
        added.iter().take(5).collect::<Vec<_>>(),
        removed
    );
    assert!(
        after.len() < 100 * 1024,
        "/metrics grew to {} bytes (was {})",
        after.len(),
        before.len()
    );
    assert!(
        metric(
            &after,
            "madoguchi_http_request_duration_seconds_count",
            &[("method", "other")]
        )
        .unwrap_or(0.0)
            >= 10_000.0,
        "made-up methods are counted under method=\"other\""
    );
    assert_rss_below_limit(&server, "after 10,000 made-up requests");
    eprintln!(
        "10,000 made-up requests in {:.1} s; /metrics {} → {} bytes; RSS {} KiB",
        took.as_secs_f64(),
        before.len(),
        after.len(),
        server.rss_kb()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Headers that never end
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_unfinished_headers_are_cut_off_while_health_answers() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config_with(
        dir.path(),
        "slow.toml",
        "[limits]\nheader_read_timeout_s = 2\n",
    );
    let server = Server::start_with(&dir.path().join("data"), &config).await;

    let conns = open_slow_connections(server.addr, 1000, &AtomicUsize::new(0)).await;
    assert_eq!(conns.len(), 1000, "every slow connection is accepted");
    let watchers = watch_closing(conns, Duration::from_secs(20));

    // The server answers while they hang.
    let status = eventually("/healthz to answer", Duration::from_secs(10), || async {
        healthz(&server, Duration::from_secs(5)).await
    })
    .await;
    assert_eq!(status, 200);

    let closed = count_closed(watchers).await;
    assert_eq!(
        closed, 1000,
        "every unfinished request is closed by the server within 20 s (header_read_timeout_s = 2)"
    );
    assert_eq!(healthz(&server, Duration::from_secs(10)).await, Some(200));
    assert_rss_below_limit(&server, "after 1,000 slow connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_descriptor_limit_never_stops_the_server_from_accepting() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config_with(
        dir.path(),
        "slow.toml",
        "[limits]\nheader_read_timeout_s = 2\n",
    );
    // Soft and hard limit 400: the server cannot raise it, and must keep its connections below.
    let server = Server::start_wrapped(
        &dir.path().join("data"),
        &config,
        &["bash", "-c", "ulimit -n 400; exec \"$0\" \"$@\""],
    )
    .await;

    // /healthz is asked once 450 slow connections are open, while more keep coming: those
    // beyond the server's limit wait in the backlog, and the header timeout frees places.
    let opened = AtomicUsize::new(0);
    let health = async {
        eventually("450 slow connections", Duration::from_secs(30), || {
            let n = opened.load(Ordering::Relaxed);
            async move { (n >= 450).then_some(()) }
        })
        .await;
        let started = Instant::now();
        let status = eventually("/healthz to answer", Duration::from_secs(15), || async {
            healthz(&server, Duration::from_secs(15)).await
        })
        .await;
        (status, started.elapsed())
    };
    let (conns, (status, took)) =
        tokio::join!(open_slow_connections(server.addr, 1000, &opened), health);
    assert_eq!(status, 200);
    let opened = conns.len();
    assert!(opened > 400, "only {opened} connections could be opened");
    eprintln!(
        "/healthz answered in {:.1} s with 400 descriptors and up to {opened} slow connections",
        took.as_secs_f64()
    );
    let watchers = watch_closing(conns, Duration::from_secs(30));

    let closed = count_closed(watchers).await;
    assert_eq!(
        closed, opened,
        "every slow connection is eventually accepted and closed"
    );
    assert_eq!(healthz(&server, Duration::from_secs(10)).await, Some(200));
    let log = server.output();
    assert!(
        !log.contains("Too many open files"),
        "accept failed for lack of descriptors:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A live client that stops reading
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_client_that_stops_reading_is_closed_and_the_others_miss_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config_with(
        dir.path(),
        "stall.toml",
        "[limits]\nlive_send_timeout_s = 1\n",
    );
    let server = Server::start_with(&dir.path().join("data"), &config).await;
    let path = "/api/v1/sites/chuo/live";

    // A reads everything, in its own task.
    let (mut a, _) = tokio_tungstenite::connect_async(server.ws_url(path))
        .await
        .unwrap();
    let (_, snapshot) = next_json(&mut a).await;
    assert_eq!(snapshot["type"], "snapshot");
    let seen: Arc<Mutex<Vec<(String, u64)>>> = Arc::new(Mutex::new(vec![(
        "snapshot".to_owned(),
        snapshot["seq"].as_u64().unwrap(),
    )]));
    let a_close: Arc<Mutex<Option<String>>> = Arc::default();
    let reader = {
        let (seen, a_close) = (seen.clone(), a_close.clone());
        tokio::spawn(async move {
            while let Some(msg) = a.next().await {
                match msg {
                    Ok(Message::Text(text)) => {
                        let v: Value = serde_json::from_str(&text).unwrap();
                        let kind = v["type"].as_str().unwrap_or("?").to_owned();
                        seen.lock()
                            .unwrap()
                            .push((kind, v["seq"].as_u64().unwrap_or(0)));
                    }
                    Ok(Message::Close(frame)) => {
                        *a_close.lock().unwrap() = Some(format!("close frame {frame:?}"));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        *a_close.lock().unwrap() = Some(format!("error {e}"));
                        break;
                    }
                }
            }
        })
    };

    // B never reads; a small receive buffer makes the server's sends block sooner.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut b, _) = tokio_tungstenite::client_async(server.ws_url(path), stream)
        .await
        .unwrap();
    eventually(
        "both live clients counted",
        Duration::from_secs(10),
        || async {
            (metric_now(&server, "madoguchi_live_clients", &[("site", "chuo")]).await >= 2.0)
                .then_some(())
        },
    )
    .await;

    // Counters 1–4 pause and open again and again until the server gives up on B.
    let stop = AtomicBool::new(false);
    let actions = AtomicU64::new(0);
    let churn = |counter: &'static str| {
        let (server, stop, actions) = (&server, &stop, &actions);
        async move {
            while !stop.load(Ordering::Relaxed) {
                for action in ["pause", "open"] {
                    let (status, reply) = server.counter(counter, action, None).await;
                    assert_eq!(status, 200, "{action} counter {counter}: {reply}");
                    actions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    let started = Instant::now();
    let stalled = async {
        eventually(
            "the stalled live client to be closed (madoguchi_live_closed_total{feed=\"site\",reason=\"stalled\"})",
            Duration::from_secs(60),
            || async {
                let m = server.metrics().await;
                let n = metric(
                    &m,
                    "madoguchi_live_closed_total",
                    &[("feed", "site"), ("reason", "stalled")],
                )
                .unwrap_or(0.0);
                (n >= 1.0).then_some(())
            },
        )
        .await;
        stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(churn("1"), churn("2"), churn("3"), churn("4"), stalled);
    let events = actions.load(Ordering::Relaxed);
    eprintln!(
        "B was given up after {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // B reads again: what was buffered, then the close frame, which the server keeps trying to
    // deliver for a few seconds after giving up.
    let (b_texts, b_close) = tokio::time::timeout(Duration::from_secs(15), async {
        let mut texts = 0usize;
        let mut close = None;
        while let Some(msg) = b.next().await {
            match msg {
                Ok(Message::Text(_)) => texts += 1,
                Ok(Message::Close(frame)) => close = Some(frame.map(|f| u16::from(f.code))),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (texts, close)
    })
    .await
    .expect("the stalled client's connection ends within 15 s of being given up");
    eprintln!("B read {b_texts} messages after it woke up, then {b_close:?}");
    assert_eq!(
        b_close,
        Some(Some(1013)),
        "a stalled client gets a close frame with 1013 once it reads again"
    );

    // A saw every event, one seq at a time, and is still connected.
    let last = server.board().await["seq"].as_u64().unwrap();
    eventually("A to see the last event", Duration::from_secs(15), || {
        let done = seen.lock().unwrap().last().is_some_and(|(_, s)| *s >= last);
        async move { done.then_some(()) }
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "snapshot");
    for pair in seen.windows(2) {
        let ((_, prev), (kind, seq)) = (&pair[0], &pair[1]);
        // After a burst the estimates are refreshed without an event: a snapshot of the seq
        // the client holds (docs/API.md). Anything else must be the next event.
        if (kind.as_str(), *seq) == ("snapshot", *prev) {
            continue;
        }
        assert_eq!(
            (kind.as_str(), *seq),
            ("event", prev + 1),
            "the reading client missed nothing (after seq {prev})"
        );
    }
    assert!(
        seen.len() as u64 > events / 2,
        "A saw {} messages",
        seen.len()
    );
    assert!(
        a_close.lock().unwrap().is_none(),
        "the reading client was closed: {:?}",
        a_close.lock().unwrap()
    );
    assert!(!reader.is_finished(), "the reading client is still open");
    eventually(
        "only A counted as a live client",
        Duration::from_secs(10),
        || async {
            (metric_now(&server, "madoguchi_live_clients", &[("site", "chuo")]).await == 1.0)
                .then_some(())
        },
    )
    .await;
    assert_rss_below_limit(&server, "after a stalled live client");
    reader.abort();
}

// ---------------------------------------------------------------------------------------------
// 4. Oversized frames
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_announcing_fifteen_mebibytes_are_refused_without_buffering() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let done = AtomicBool::new(false);
    let max_rss = AtomicU64::new(server.rss_kb());

    let probe = |_| {
        let addr = server.addr;
        async move {
            let mut s = raw_upgrade(addr, "/api/v1/sites/chuo/live").await;
            // A masked binary frame announcing 15 MiB, then 64 KiB of it.
            let len: u64 = 15 * 1024 * 1024;
            let mask = [0x5a, 0x17, 0xc3, 0x08];
            let mut frame = vec![0x82, 0x80 | 127];
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(&mask);
            frame.extend((0..64 * 1024).map(|i| mask[i % 4]));
            // The server may close before taking all of it: write errors are fine.
            let _ = tokio::time::timeout(Duration::from_secs(3), s.write_all(&frame)).await;
            tokio::time::timeout(Duration::from_secs(15), read_to_close(&mut s))
                .await
                .ok()
                .map(|received| close_code(&received))
        }
    };
    let sample = async {
        while !done.load(Ordering::Relaxed) {
            max_rss.fetch_max(server.rss_kb(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let probes = async {
        let results = future::join_all((0..20).map(probe)).await;
        done.store(true, Ordering::Relaxed);
        results
    };
    let (results, ()) = tokio::join!(probes, sample);

    let open = results.iter().filter(|r| r.is_none()).count();
    assert_eq!(open, 0, "{open} of 20 sockets were still open after 15 s");
    let codes: Vec<u16> = results.iter().flatten().flatten().copied().collect();
    assert!(
        codes.iter().all(|c| *c == 1009),
        "oversized frames are closed with 1009: {codes:?}"
    );
    eprintln!(
        "{} of 20 oversized senders got a 1009 close frame before the connection ended",
        codes.len()
    );
    let max_rss = max_rss.load(Ordering::Relaxed);
    assert!(
        max_rss < RSS_LIMIT_KB,
        "the server grew to {} MiB while 20 clients announced 15 MiB frames",
        max_rss / 1024
    );
    assert_rss_below_limit(&server, "after 20 oversized frames");
    eventually(
        "20 live sockets counted as too big",
        Duration::from_secs(10),
        || async {
            let n = metric_now(
                &server,
                "madoguchi_live_closed_total",
                &[("feed", "site"), ("reason", "too_big")],
            )
            .await;
            (n >= 20.0).then_some(())
        },
    )
    .await;
    assert_eq!(healthz(&server, Duration::from_secs(10)).await, Some(200));
}

// ---------------------------------------------------------------------------------------------
// 5. Printer agents: tokens bound to agents, flapping states
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_token_cannot_take_another_agent_and_flapping_is_debounced() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config_with(
        dir.path(),
        "printers.toml",
        &format!(
            "[limits]\nprinter_state_debounce_s = 2\n\n\
             [[tokens]]\nrole = \"printer\"\ntoken = \"{PRINTER_TWO}\"\nagents = [\"agent-2\"]\n\n\
             [[sites.dispensers]]\nid = \"kiosk-9\"\nprinter_agent = \"agent-2\"\n"
        ),
    );
    let server = Server::start_with(&dir.path().join("data"), &config).await;

    // The second token works for its own agent.
    let mut two = printer_socket(&server, "agent-2", PRINTER_TWO).await;
    two.close(None).await.unwrap();

    // The real agent-1.
    let mut agent = printer_socket(&server, "agent-1", PRINTER).await;
    send_status(&mut agent, "online").await;
    eventually(
        "agent-1 online on the board",
        Duration::from_secs(10),
        || async {
            let board = server.board().await;
            (printer_of(&board, "agent-1")?["state"] == "online").then_some(())
        },
    )
    .await;

    // agent-2's token trying to be agent-1: refused before the upgrade.
    let (status, reply) =
        upgrade_status(&server, "/api/v1/printers/agent-1/jobs", Some(PRINTER_TWO)).await;
    assert_eq!(status, 403, "{reply}");
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");

    // agent-1's connection is untouched: it still gets the next job.
    let ticket = server
        .issue(json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"}))
        .await;
    let (_, job) = next_json(&mut agent).await;
    assert_eq!(job["type"], "job", "{job}");
    assert_eq!(job["job"]["number"], ticket["number"], "{job}");
    assert_eq!(job["job"]["dispenser"], "kiosk-1");

    // 500 alternating reports, then a last, different one.
    let before = server.board().await["seq"].as_u64().unwrap();
    let started = Instant::now();
    for i in 0..500 {
        let state = if i % 2 == 0 {
            "paper_near_end"
        } else {
            "online"
        };
        send_status(&mut agent, state).await;
    }
    send_status(&mut agent, "paper_end").await;
    let sent_in = started.elapsed();
    eventually(
        "the last state on the board",
        Duration::from_secs(15),
        || async {
            let board = server.board().await;
            (printer_of(&board, "agent-1")?["state"] == "paper_end").then_some(())
        },
    )
    .await;
    let after = server.board().await["seq"].as_u64().unwrap();
    eprintln!(
        "501 printer reports sent in {:.2} s gave {} events",
        sent_in.as_secs_f64(),
        after - before
    );
    assert!(
        after > before && after - before <= 5,
        "501 reports from a flapping printer made {} events (seq {before} → {after})",
        after - before
    );
    let m = server.metrics().await;
    assert_eq!(
        metric(
            &m,
            "madoguchi_printer_state",
            &[("printer", "agent-1"), ("state", "paper_end")]
        ),
        Some(1.0),
        "metrics show the last state"
    );
    // The agent is still connected and served.
    let ticket = server
        .issue(json!({"procedures": ["shoumei"], "dispenser": "kiosk-2"}))
        .await;
    let (_, job) = next_json(&mut agent).await;
    assert_eq!(job["job"]["number"], ticket["number"], "{job}");
}

// ---------------------------------------------------------------------------------------------
// 6. The phone channel
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_phone_channel_speaks_only_when_its_ticket_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let certificate = || json!({"procedures": ["shoumei"]});
    let t1 = server.issue(certificate()).await;
    let t2 = server.issue(certificate()).await;
    assert_eq!(t2["queue"], "certificates");
    assert_eq!(t2["position"], 2);
    let token = t2["token"].as_str().unwrap().to_owned();

    let (mut ws, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/api/v1/tickets/{token}/live")))
            .await
            .expect("the phone channel of a known ticket opens");
    let (text, first) = next_json(&mut ws).await;
    assert_eq!(first["type"], "ticket", "{first}");
    let ticket = &first["ticket"];
    assert_eq!(ticket["number"], t2["number"]);
    assert_eq!(ticket["status"], "waiting");
    assert_eq!(ticket["position"], 2);
    assert!(
        ticket.get("token").is_none() && !text.contains(&token),
        "{text}"
    );
    let (status, phone) = server.get(&format!("/api/v1/tickets/{token}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(phone["ticket"], *ticket, "the same object as the phone API");
    eventually(
        "the phone channel counted",
        Duration::from_secs(10),
        || async {
            (metric_now(
                &server,
                "madoguchi_ticket_live_clients",
                &[("site", "chuo")],
            )
            .await
                == 1.0)
                .then_some(())
        },
    )
    .await;

    // Behind T2, and in another queue: nothing for T2.
    let t3 = server.issue(certificate()).await;
    assert_eq!(t3["position"], 3);
    let other = server.issue(json!({"procedures": ["tennyu"]})).await;
    assert_eq!(other["queue"], "onestop");
    let (status, called) = server.counter("1", "call-next", None).await;
    assert_eq!(status, 200);
    assert_eq!(called["ticket"]["number"], other["number"]);
    let (_, phone) = server.get(&format!("/api/v1/tickets/{token}"), None).await;
    assert_eq!(phone["ticket"], *ticket, "T2 did not change");
    match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
        Err(_) => {}
        Ok(msg) => panic!("T2's channel got a message though T2 did not change: {msg:?}"),
    }

    // T1 is called: T2 moves up.
    let (status, called) = server.counter("6", "call-next", None).await;
    assert_eq!(status, 200);
    assert_eq!(called["ticket"]["number"], t1["number"]);
    let (_, moved) = next_json(&mut ws).await;
    assert_eq!(moved["type"], "ticket", "{moved}");
    assert_eq!(moved["ticket"]["number"], t2["number"]);
    assert_eq!(moved["ticket"]["position"], 1, "{moved}");

    // T2 is called.
    let (status, called) = server.counter("7", "call-next", None).await;
    assert_eq!(status, 200);
    assert_eq!(called["ticket"]["number"], t2["number"]);
    let (_, now) = next_json(&mut ws).await;
    assert_eq!(now["ticket"]["status"], "called", "{now}");
    assert_eq!(now["ticket"]["counter"], "7", "{now}");

    // An unknown token is refused before the upgrade.
    let (status, reply) = upgrade_status(
        &server,
        "/api/v1/tickets/0123456789abcdef0123456789abcdef/live",
        None,
    )
    .await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(reply["error"]["code"], "ticket_not_found", "{reply}");
}

// ---------------------------------------------------------------------------------------------
// 7. Rate limits
// ---------------------------------------------------------------------------------------------

/// `n` quick GETs of `path`, 8 at a time: (status, Retry-After, body) of each.
async fn burst(
    server: &Server,
    path: &str,
    token: Option<&str>,
    n: usize,
) -> Vec<(u16, Option<String>, Value)> {
    stream::iter(0..n)
        .map(|_| async move {
            let mut req = server.http.get(server.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("?").to_owned());
            let body = resp.json().await.unwrap_or(Value::Null);
            (status, retry, body)
        })
        .buffer_unordered(8)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_reads_are_rate_limited_per_address_but_staff_and_sockets_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let ticket = server.issue(json!({"procedures": ["shoumei"]})).await;
    let token = ticket["token"].as_str().unwrap();
    let phone = format!("/api/v1/tickets/{token}");
    let board = "/api/v1/sites/chuo/board".to_owned();

    for (path, route) in [
        (&phone, "/api/v1/tickets/{token}"),
        (&board, "/api/v1/sites/{site}/board"),
    ] {
        let anonymous = burst(&server, path, None, 500).await;
        let limited: Vec<_> = anonymous.iter().filter(|r| r.0 == 429).collect();
        assert!(
            !limited.is_empty(),
            "500 quick anonymous GETs of {route} were never limited"
        );
        for (_, retry, body) in &limited {
            let seconds: u64 = retry
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("429 without a Retry-After in whole seconds: {retry:?}"));
            assert!(seconds >= 1, "Retry-After {seconds}");
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        }
        assert!(
            anonymous.iter().all(|r| r.0 == 200 || r.0 == 429),
            "{route}: {:?}",
            anonymous.iter().map(|r| r.0).collect::<BTreeSet<_>>()
        );
        let staff = burst(&server, path, Some(FLOOR), 500).await;
        let statuses: BTreeSet<u16> = staff.iter().map(|r| r.0).collect();
        assert_eq!(
            statuses,
            BTreeSet::from([200]),
            "a request with a valid token is never limited ({route})"
        );
        let counted =
            metric_now(&server, "madoguchi_rate_limited_total", &[("route", route)]).await;
        assert!(counted >= limited.len() as f64, "{route}: {counted}");
        eprintln!("{route}: {} of 500 anonymous GETs limited", limited.len());
    }

    // WebSockets are not request-limited: 200 live sockets from this address, each with its
    // snapshot, right after the bursts.
    let url = server.ws_url("/api/v1/sites/chuo/live");
    let sockets: Vec<Ws> = future::join_all((0..200).map(|_| {
        let url = url.clone();
        async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("a live socket opens");
            let (_, snapshot) = next_json(&mut ws).await;
            assert_eq!(snapshot["type"], "snapshot");
            ws
        }
    }))
    .await;
    assert_eq!(sockets.len(), 200);
    eventually(
        "200 live clients counted",
        Duration::from_secs(10),
        || async {
            let live = metric_now(&server, "madoguchi_live_clients", &[("site", "chuo")]).await;
            (live == 200.0).then_some(())
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 8. Idempotency keys are per dispenser
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_idempotency_key_of_one_kiosk_never_returns_its_ticket_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    let server = &server;
    let send = |dispenser: &'static str| async move {
        let resp = server
            .http
            .post(server.url("/api/v1/sites/chuo/tickets"))
            .bearer_auth(DISPENSER)
            .header("Idempotency-Key", "k-1")
            .json(&json!({"procedures": ["shoumei"], "dispenser": dispenser}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        (status, body["ticket"].clone())
    };
    let (status, first) = send("kiosk-1").await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = send("kiosk-2").await;
    assert_eq!(status, 201, "kiosk-2 gets a ticket of its own: {second}");
    assert_ne!(second["id"], first["id"]);
    assert_ne!(second["number"], first["number"]);
    assert!(second["token"].is_string(), "{second}");
    assert_ne!(
        second["token"], first["token"],
        "kiosk-1's phone token leaked to kiosk-2"
    );
    let (status, again) = send("kiosk-1").await;
    assert_eq!(status, 200, "kiosk-1's retry: {again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["number"], first["number"]);
    let (status, again) = send("kiosk-2").await;
    assert_eq!(status, 200, "kiosk-2's retry: {again}");
    assert_eq!(again["id"], second["id"]);
    let waiting = server.waiting_total().await;
    assert_eq!(waiting, 2);
}

// ---------------------------------------------------------------------------------------------
// 9. Tokens before bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_mutating_route_checks_the_token_before_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;
    server.issue(json!({"procedures": ["shoumei"]})).await;
    let before = server.board().await;
    let counter = |action: &str| format!("/api/v1/sites/chuo/counters/1/{action}");
    // Method, path, tokens of roles that may not use it.
    let mut routes: Vec<(Method, String, Vec<&str>)> = vec![
        (
            Method::POST,
            "/api/v1/sites/chuo/tickets".into(),
            vec![COUNTER, ANALYST, PRINTER],
        ),
        (
            Method::POST,
            "/api/v1/sites/chuo/tickets/1/cancel".into(),
            vec![DISPENSER, ANALYST, PRINTER],
        ),
        (
            Method::PUT,
            counter("profile"),
            vec![COUNTER, DISPENSER, ANALYST, PRINTER],
        ),
    ];
    for action in [
        "open",
        "pause",
        "close",
        "call-next",
        "call",
        "recall",
        "start",
        "no-show",
        "complete",
    ] {
        routes.push((
            Method::POST,
            counter(action),
            vec![DISPENSER, ANALYST, PRINTER],
        ));
    }
    let send = |method: Method, path: String, token: Option<&str>| {
        let mut req = server
            .http
            .request(method, server.url(&path))
            .header("content-type", "application/json")
            .body("{");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    for (method, path, wrong) in routes {
        for token in [None, Some("not-a-real-token")] {
            let (status, body) = send(method.clone(), path.clone(), token).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "{method} {path} with token {token:?} and a malformed body: {body}"
            );
        }
        for token in wrong {
            let (status, body) = send(method.clone(), path.clone(), Some(token)).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{method} {path} with the wrong role ({token}) and a malformed body: {body}"
            );
        }
    }
    // With the right role the same body is a bad request.
    let (status, _) = send(
        Method::POST,
        "/api/v1/sites/chuo/tickets".into(),
        Some(DISPENSER),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(Method::PUT, counter("profile"), Some(FLOOR)).await;
    assert_eq!(status, 400);
    assert_eq!(server.board().await, before, "nothing changed");
}
