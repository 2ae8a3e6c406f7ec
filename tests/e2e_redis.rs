//! Several server instances on one Redis (`serve --store redis://…`): the real binaries, a real
//! `redis-server` (or `REDIS_URL`), real sockets. Every instance follows the shared log: a ticket
//! issued on one is called on another, numbers stay unique and gapless across instances, and a
//! lobby socket on one sees every event made on the other, in order, even when the other dies.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/redis.rs"]
mod test_redis;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use test_redis::{prefix, TestRedis};
use tokio_tungstenite::tungstenite::Message;

/// An instance of the demo configuration on the shared Redis, with its own data directory.
async fn instance(dir: &tempfile::TempDir, name: &str, redis: &TestRedis, prefix: &str) -> Server {
    instance_with(
        dir,
        name,
        redis,
        prefix,
        &repo_path("config/demo.toml"),
        &[],
    )
    .await
}

async fn instance_with(
    dir: &tempfile::TempDir,
    name: &str,
    redis: &TestRedis,
    prefix: &str,
    config: &std::path::Path,
    more: &[&str],
) -> Server {
    Server::start_on_redis(dir.path(), name, config, &redis.url, prefix, more).await
}

/// The sum of a counter's series on an instance, each of which must carry its `server` label.
async fn counter_sum(server: &Server, name: &str, label: &str) -> f64 {
    let text = server.metrics().await;
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(|l| {
            assert!(l.contains(&format!("server=\"{label}\"")), "{l}");
            l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
        })
        .sum()
}

/// The seq of the demo site's last event, read from Redis itself.
async fn last_seq(redis: &TestRedis, prefix: &str) -> u64 {
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let seq: Option<u64> = redis::cmd("GET")
        .arg(format!("{prefix}{{chuo}}:seq"))
        .query_async(&mut conn)
        .await
        .unwrap();
    seq.unwrap_or(0)
}

/// A lobby socket's messages as (type, seq), collected by a task of its own; a `status` message
/// is kept as `status:<log>` with the seq of the message before it.
struct Lobby {
    seen: Arc<Mutex<Vec<(String, u64)>>>,
}

impl Lobby {
    async fn open(server: &Server) -> Lobby {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(server.ws_url("/api/v1/sites/chuo/live"))
                .await
                .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        // The snapshot first, so the socket is subscribed before the test goes on.
        let first = loop {
            if let Some(Ok(Message::Text(text))) = ws.next().await {
                break serde_json::from_str::<Value>(&text).unwrap();
            }
        };
        assert_eq!(first["type"], "snapshot");
        seen.lock()
            .unwrap()
            .push(("snapshot".into(), first["seq"].as_u64().unwrap()));
        let into = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    let mut seen = into.lock().unwrap();
                    let entry = match v["type"].as_str().unwrap() {
                        "status" => (
                            format!("status:{}", v["log"].as_str().unwrap()),
                            seen.last().map_or(0, |(_, s)| *s),
                        ),
                        kind => (kind.to_owned(), v["seq"].as_u64().unwrap()),
                    };
                    seen.push(entry);
                }
            }
        });
        Lobby { seen }
    }

    /// The `status` messages so far, in order (`available`, `unavailable`, …).
    fn statuses(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(kind, _)| kind.strip_prefix("status:").map(str::to_owned))
            .collect()
    }

    /// Waits until the socket has had a `status` message saying `log`.
    async fn hears_status(&self, log: &str) {
        eventually(
            &format!("the lobby socket hears the log is {log}"),
            Duration::from_secs(20),
            || async { self.statuses().iter().any(|s| s == log).then_some(()) },
        )
        .await;
    }

    /// Waits until the socket has had an event of `seq`, then checks that it saw every seq from
    /// its snapshot on, once and in order (a snapshot may repeat the seq it follows: new
    /// estimates, nothing else).
    async fn saw_every_seq_to(&self, seq: u64) {
        eventually(
            "the lobby socket reaches the last seq",
            Duration::from_secs(20),
            || {
                let seen = self.seen.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .last()
                        .filter(|(_, s)| *s >= seq)
                        .map(|_| ())
                }
            },
        )
        .await;
        let seen = self.seen.lock().unwrap().clone();
        let mut at = seen[0].1;
        for (kind, s) in &seen[1..] {
            match kind.as_str() {
                "event" => {
                    assert_eq!(*s, at + 1, "an event out of order or missed: {seen:?}");
                    at = *s;
                }
                "snapshot" => assert_eq!(*s, at, "a snapshot of another seq: {seen:?}"),
                status if status.starts_with("status:") => {}
                other => panic!("unexpected live message {other}"),
            }
        }
        assert_eq!(at, seq);
    }
}

/// The waiting counts a lobby screen shows, queue by queue.
async fn waiting_counts(screen: &browser::Browser) -> Value {
    screen
        .exec(
            "return [...document.querySelectorAll('#queues .waiting')].map((e) => e.textContent);",
        )
        .await
}

fn certificate() -> Value {
    json!({"procedures": ["shoumei"]})
}

fn number_value(ticket: &Value) -> u32 {
    let number = ticket["number"].as_str().unwrap();
    assert!(number.starts_with('C'), "{ticket}");
    number[1..].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_the_sites() {
    let Some(redis) = TestRedis::get("two_instances_share_the_sites") else {
        return;
    };
    let prefix = prefix("two_instances");
    let dir = tempfile::tempdir().unwrap();
    let a = instance(&dir, "a", &redis, &prefix).await;
    let b = instance(&dir, "b", &redis, &prefix).await;
    let lobby_b = Lobby::open(&b).await;

    // Issued on A, its phone page opened on B at once (the QR code scanned, the balancer
    // choosing B), called on B, completed on A.
    let first = a.issue(certificate()).await;
    let token = first["token"].as_str().unwrap();
    let (status, view) = b.get(&format!("/api/v1/tickets/{token}"), None).await;
    assert_eq!(
        status, 200,
        "B knows a ticket A issued a moment ago: {view}"
    );
    let (status, called) = b.counter("6", "call-next", None).await;
    assert_eq!(status, 200, "{called}");
    assert_eq!(called["ticket"]["id"], first["id"], "{called}");
    let (status, started) = b.counter("6", "start", None).await;
    assert_eq!(status, 200, "{started}");
    let (status, done) = a.counter("6", "complete", None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["ticket"]["id"], first["id"], "{done}");
    assert_eq!(done["ticket"]["status"], "done", "{done}");

    // 500 tickets at once through both instances: 500 distinct numbers, no gaps.
    let servers = [&a, &b];
    let replies: Vec<(u16, Value)> = futures_util::stream::iter(0..500)
        .map(|i| {
            servers[i % 2].post(
                "/api/v1/sites/chuo/tickets",
                Some(DISPENSER),
                Some(certificate()),
            )
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut numbers: Vec<u32> = replies
        .iter()
        .map(|(status, reply)| {
            assert_eq!(*status, 201, "{reply}");
            number_value(&reply["ticket"])
        })
        .collect();
    numbers.push(number_value(&first));
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=501).collect::<Vec<_>>());

    // The lobby on B saw every event, whichever instance made it, in order.
    let last = last_seq(&redis, &prefix).await;
    assert!(last >= 504, "{last}");
    lobby_b.saw_every_seq_to(last).await;
    // And both boards agree.
    eventually("both boards agree", Duration::from_secs(10), || async {
        let (ba, bb) = (a.board().await, b.board().await);
        (without_estimates(ba.clone()) == without_estimates(bb)).then_some(())
    })
    .await;
    assert_eq!(a.waiting_total().await, 500);
    // Each instance keeps a copy of the whole log beside its projections (analysts, audit,
    // backups): every seq, the same events as Redis holds.
    for server in [&a, &b] {
        eventually(
            "the local copy of the log",
            Duration::from_secs(10),
            || async {
                let conn = rusqlite::Connection::open(server.data.join("madoguchi.db")).unwrap();
                let (n, max): (i64, i64) = conn
                    .query_row(
                        "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM events WHERE site = 'chuo'",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .unwrap();
                (n as u64 == last && max as u64 == last).then_some(())
            },
        )
        .await;
    }
    // Each instance counts what it did: A issued the first ticket and every other one of the
    // 500, B the rest; B made the call.
    assert_eq!(
        counter_sum(&a, "madoguchi_tickets_issued_total", "a").await,
        251.0
    );
    assert_eq!(
        counter_sum(&b, "madoguchi_tickets_issued_total", "b").await,
        250.0
    );
    assert_eq!(counter_sum(&a, "madoguchi_calls_total", "a").await, 0.0);
    assert_eq!(counter_sum(&b, "madoguchi_calls_total", "b").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_the_other_serves_on() {
    let Some(redis) = TestRedis::get("an_instance_killed_the_other_serves_on") else {
        return;
    };
    let prefix = prefix("killed");
    let dir = tempfile::tempdir().unwrap();
    let mut a = instance(&dir, "a", &redis, &prefix).await;
    let b = instance(&dir, "b", &redis, &prefix).await;
    let lobby_b = Lobby::open(&b).await;
    let mut issued = Vec::new();
    for _ in 0..20 {
        issued.push(number_value(&a.issue(certificate()).await));
    }
    a.kill9();
    for _ in 0..20 {
        issued.push(number_value(&b.issue(certificate()).await));
    }
    let (status, called) = b.counter("6", "call-next", None).await;
    assert_eq!(status, 200, "{called}");
    assert_eq!(number_value(&called["ticket"]), 1, "the first issued on A");
    issued.sort_unstable();
    assert_eq!(issued, (1..=40).collect::<Vec<_>>());
    lobby_b
        .saw_every_seq_to(last_seq(&redis, &prefix).await)
        .await;
}

/// Every `TicketIssued` in the site's stream: (ticket id, idempotency key).
async fn issued_in_log(redis: &TestRedis, prefix: &str) -> Vec<(String, Option<String>)> {
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let rows: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}{{chuo}}:events"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    rows.into_iter()
        .filter_map(|(_, fields)| {
            let body = fields
                .chunks(2)
                .find(|f| f[0] == "e")
                .map(|f| f[1].clone())?;
            let event: Value = serde_json::from_str(&body).unwrap();
            (event["type"] == "ticket_issued").then(|| {
                (
                    event["ticket"].as_str().unwrap().to_owned(),
                    event["idempotency_key"].as_str().map(str::to_owned),
                )
            })
        })
        .collect()
}

/// Redis killed (SIGKILL) and restarted with its AOF (`appendfsync always`) while two instances
/// issue: requests meanwhile answer 503 with `Retry-After`, `/readyz` fails, and both instances
/// resume by themselves once Redis is back. Every acknowledged ticket is in the log exactly once,
/// retries with the same `Idempotency-Key` included, and the lobby on B saw every seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_loses_nothing_acknowledged() {
    let Some(mut redis) = TestRedis::own("redis_restarted_loses_nothing_acknowledged", true) else {
        return;
    };
    let prefix = prefix("restart");
    let dir = tempfile::tempdir().unwrap();
    let a = instance(&dir, "a", &redis, &prefix).await;
    let b = instance(&dir, "b", &redis, &prefix).await;
    let lobby_b = Lobby::open(&b).await;
    // A lobby screen in a real browser on B: live, then the reconnecting mark while Redis is
    // away, live again after.
    let screen = if browser::available() {
        let screen = browser::Browser::start(1280, 720).await;
        screen.goto(&b.url("/screens/lobby/chuo")).await;
        screen
            .wait(
                "the lobby to go live",
                "document.body.dataset.live === '1'",
                Duration::from_secs(20),
            )
            .await;
        Some(screen)
    } else {
        None
    };

    /// Issues with `key` at the server `base` until acknowledged, as a kiosk retries: every 503
    /// says when to retry and is counted in `refused`. Returns the ticket.
    async fn issue_until_acknowledged(
        http: reqwest::Client,
        base: String,
        key: String,
        refused: Arc<std::sync::atomic::AtomicU32>,
    ) -> Value {
        loop {
            let reply = http
                .post(format!("{base}/api/v1/sites/chuo/tickets"))
                .bearer_auth(DISPENSER)
                .header("Idempotency-Key", &key)
                .json(&certificate())
                .send()
                .await
                .unwrap();
            let status = reply.status().as_u16();
            let retry_after = reply.headers().get("retry-after").cloned();
            let body: Value = reply.json().await.unwrap();
            match status {
                201 | 200 => return body["ticket"].clone(),
                503 => {
                    assert!(retry_after.is_some(), "a 503 says when to retry: {body}");
                    assert_eq!(body["error"]["code"], "unavailable", "{body}");
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("issue {key}: {other} {body}"),
            }
        }
    }
    let refused = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let issue = |server: &Server, key: String| {
        issue_until_acknowledged(server.http.clone(), server.url(""), key, refused.clone())
    };

    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let server = if i % 2 == 0 { &a } else { &b };
        acknowledged.push(issue(server, format!("before-{i}")).await);
    }
    // A resident's phone channel on B, for a ticket issued on A.
    let phone = {
        let token = acknowledged[0]["token"].as_str().unwrap();
        let (mut ws, _) =
            tokio_tungstenite::connect_async(b.ws_url(&format!("/api/v1/tickets/{token}/live")))
                .await
                .unwrap();
        let heard = Arc::new(Mutex::new(Vec::<String>::new()));
        let into = heard.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    let kind = v["type"].as_str().unwrap();
                    into.lock().unwrap().push(match kind {
                        "status" => format!("status:{}", v["log"].as_str().unwrap()),
                        other => other.to_owned(),
                    });
                }
            }
        });
        heard
    };
    let shown = match &screen {
        Some(screen) => waiting_counts(screen).await,
        None => Value::Null,
    };
    redis.kill();
    // The screens on B hear that the log is away; the browser's lobby keeps its board with the
    // reconnecting mark.
    lobby_b.hears_status("unavailable").await;
    if let Some(screen) = &screen {
        screen
            .wait(
                "the reconnecting mark",
                "document.body.dataset.live === '0'",
                Duration::from_secs(20),
            )
            .await;
        assert!(
            screen.text("#conn").await.contains("再接続中"),
            "the mark says it reconnects"
        );
        assert_eq!(waiting_counts(screen).await, shown, "the board is kept");
    }
    // While Redis is away: not ready, and a kiosk's issue is refused with a time to retry.
    for server in [&a, &b] {
        eventually(
            "/readyz fails without Redis",
            Duration::from_secs(10),
            || async {
                let r = server.http.get(server.url("/readyz")).send().await.unwrap();
                (r.status() == 503).then_some(())
            },
        )
        .await;
    }
    // A kiosk keeps retrying across the outage with one key; Redis comes back once it has been
    // refused a few times.
    let before = refused.load(std::sync::atomic::Ordering::Relaxed);
    let during = tokio::spawn(issue(&a, "during-0".to_owned()));
    eventually(
        "the kiosk refused during the outage",
        Duration::from_secs(10),
        || {
            let n = refused.load(std::sync::atomic::Ordering::Relaxed);
            async move { (n >= before + 3).then_some(()) }
        },
    )
    .await;
    redis.start();
    let ticket = during.await.unwrap();
    acknowledged.push(ticket);
    lobby_b.hears_status("available").await;
    // The phone heard the same, after its ticket.
    eventually(
        "the phone channel hears the log away and back",
        Duration::from_secs(20),
        || async {
            let heard = phone.lock().unwrap().clone();
            let away = heard.iter().position(|h| h == "status:unavailable");
            let back = heard.iter().rposition(|h| h == "status:available");
            (heard.first().map(String::as_str) == Some("ticket")
                && away.zip(back).is_some_and(|(away, back)| away < back))
            .then_some(())
        },
    )
    .await;
    if let Some(screen) = &screen {
        screen
            .wait(
                "the lobby live again",
                "document.body.dataset.live === '1'",
                Duration::from_secs(20),
            )
            .await;
    }
    // Both instances resume without a restart.
    for i in 0..20 {
        let server = if i % 2 == 0 { &b } else { &a };
        acknowledged.push(issue(server, format!("after-{i}")).await);
    }
    for server in [&a, &b] {
        let r = server.http.get(server.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["sites"]["chuo"]["log"], "available", "{body}");
    }

    // Every acknowledged ticket is in the log, once; no key issued twice.
    let logged = issued_in_log(&redis, &prefix).await;
    let ids: std::collections::HashSet<&str> = logged.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), logged.len(), "a ticket logged twice");
    for ticket in &acknowledged {
        assert!(
            ids.contains(ticket["id"].as_str().unwrap()),
            "lost: {ticket}"
        );
    }
    let keys: Vec<&str> = logged.iter().filter_map(|(_, k)| k.as_deref()).collect();
    let distinct: std::collections::HashSet<&str> = keys.iter().copied().collect();
    assert_eq!(keys.len(), distinct.len(), "a key issued twice: {keys:?}");
    assert_eq!(logged.len(), 41);
    let mut numbers: Vec<u32> = acknowledged.iter().map(number_value).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=41).collect::<Vec<_>>());
    lobby_b
        .saw_every_seq_to(last_seq(&redis, &prefix).await)
        .await;
}

/// Redis restarted without its AOF comes back empty: the instance, which applied more than the
/// log now holds, says so on `/readyz` (503, the site's log `behind`) and refuses commands with
/// 503 rather than number tickets again from 1; the board stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_ahead_of_a_redis_that_lost_events_refuses_commands() {
    let Some(mut redis) = TestRedis::own("an_instance_ahead_of_a_redis", false) else {
        return;
    };
    let prefix = prefix("behind");
    let dir = tempfile::tempdir().unwrap();
    let a = instance(&dir, "a", &redis, &prefix).await;
    for _ in 0..5 {
        a.issue(certificate()).await;
    }
    let lobby = Lobby::open(&a).await;
    redis.kill();
    lobby.hears_status("unavailable").await;
    redis.start();
    lobby.hears_status("behind").await;
    let ready = a.http.get(a.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["sites"]["chuo"]["log"], "behind", "{body}");
    let refused = a
        .http
        .post(a.url("/api/v1/sites/chuo/tickets"))
        .bearer_auth(DISPENSER)
        .json(&certificate())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unavailable", "{error}");
    assert_eq!(last_seq(&redis, &prefix).await, 0, "nothing was appended");
    // The board stays readable (200) and still holds the five tickets.
    assert_eq!(a.waiting_total().await, 5);
}

/// `--public-only` (the internet-facing side) on the shared log: residents' pages, the phone
/// channel, the board and the lobby work and see the internal instance's events; every other
/// operation of the OpenAPI document, and the staff screens, answer 404 even with a valid token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_public_only_instance_serves_residents_and_nothing_else() {
    let Some(redis) = TestRedis::get("a_public_only_instance") else {
        return;
    };
    let prefix = prefix("public_only");
    let dir = tempfile::tempdir().unwrap();
    let inside = instance(&dir, "inside", &redis, &prefix).await;
    let demo = repo_path("config/demo.toml");
    let public = instance_with(&dir, "public", &redis, &prefix, &demo, &["--public-only"]).await;
    let lobby = Lobby::open(&public).await;

    // A ticket issued inside, followed and cancelled by its resident on the public side.
    let ticket = inside.issue(certificate()).await;
    let token = ticket["token"].as_str().unwrap();
    let view = eventually(
        "the phone view on the public side",
        Duration::from_secs(10),
        || async {
            let (status, view) = public.get(&format!("/api/v1/tickets/{token}"), None).await;
            (status == 200).then_some(view)
        },
    )
    .await;
    assert_eq!(view["ticket"]["number"], ticket["number"], "{view}");
    let (status, page) = public.get(&format!("/t/{token}"), None).await;
    assert_eq!(status, 200, "{page}");
    let (status, _) = public.get("/screens/lobby/chuo", None).await;
    assert_eq!(status, 200);
    let (status, board) = public.get("/api/v1/sites/chuo/board", None).await;
    assert_eq!(status, 200, "{board}");
    let (status, reply) = public
        .post(&format!("/api/v1/tickets/{token}/cancel"), None, None)
        .await;
    assert_eq!(status, 200, "{reply}");
    eventually(
        "the cancel seen inside",
        Duration::from_secs(10),
        || async {
            let (_, t) = inside.get(&format!("/api/v1/tickets/{token}"), None).await;
            (t["ticket"]["status"] == "cancelled").then_some(())
        },
    )
    .await;
    lobby
        .saw_every_seq_to(last_seq(&redis, &prefix).await)
        .await;

    // Everything else is absent on the public side, whatever the token.
    let (status, doc) = inside.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    let mut refused = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{site}", "chuo")
            .replace("{token}", token)
            .replace("{counter}", "6")
            .replace("{action}", "call-next")
            .replace("{number}", ticket["number"].as_str().unwrap())
            .replace("{agent}", "agent-1");
        // The server's own list; the residents' routes above are checked to work.
        let public_route = madoguchi::http::PUBLIC_ROUTES.contains(&path.as_str());
        for method in ops.as_object().unwrap().keys() {
            if public_route {
                continue;
            }
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            for token in [
                None,
                Some(FLOOR),
                Some(COUNTER),
                Some(DISPENSER),
                Some(ANALYST),
            ] {
                let (status, body) = public
                    .send(method.clone(), &concrete, token, Some(json!({})))
                    .await;
                assert_eq!(
                    status, 404,
                    "{method} {concrete} on the public side: {body}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 50, "{refused}");
    for page in [
        "/",
        "/screens/kiosk/chuo",
        "/screens/counter/chuo",
        "/screens/floor/chuo",
        "/screens/kpi/chuo",
        "/metrics",
    ] {
        let (status, _) = public.get(page, Some(FLOOR)).await;
        assert_eq!(status, 404, "{page} on the public side");
    }
}

/// The first entry left in the site's stream (its seq), and the stream's length.
async fn stream_head(redis: &TestRedis, prefix: &str) -> (u64, u64) {
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}{{chuo}}:events");
    let first: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let seq = first
        .first()
        .map(|(id, _)| id.split('-').next().unwrap().parse().unwrap())
        .unwrap_or(0);
    (seq, len)
}

/// Snapshots in Redis bound the streams: with no retention, the snapshot A writes when it stops
/// trims the stream behind it. A third instance started late on an empty data directory starts
/// from that snapshot and the trimmed stream, and shows the same board as the one that ran on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_instance_starts_from_the_shared_snapshot_and_the_trimmed_stream() {
    let Some(redis) = TestRedis::get("a_late_instance") else {
        return;
    };
    let prefix = prefix("late");
    let dir = tempfile::tempdir().unwrap();
    let demo = repo_path("config/demo.toml");
    let start = |name: &'static str| {
        let (dir, redis, prefix, demo) = (&dir, &redis, &prefix, &demo);
        async move {
            instance_with(
                dir,
                name,
                redis,
                prefix,
                demo,
                &["--redis-retention-s", "0"],
            )
            .await
        }
    };
    let mut a = start("a").await;
    let b = start("b").await;
    for i in 0..30 {
        let server = if i % 2 == 0 { &a } else { &b };
        server.issue(certificate()).await;
    }
    let (status, _) = b.counter("6", "call-next", None).await;
    assert_eq!(status, 200);
    let at_stop = last_seq(&redis, &prefix).await;
    // A stops: its shutdown snapshot goes to Redis and the stream is trimmed behind it.
    assert!(a.terminate().await.success());
    let (head, len) = stream_head(&redis, &prefix).await;
    assert_eq!(head, at_stop, "trimmed up to the snapshot's own event");
    assert_eq!(len, 1);
    // Life goes on at B.
    for _ in 0..5 {
        b.issue(certificate()).await;
    }
    let (status, _) = b.counter("7", "call-next", None).await;
    assert_eq!(status, 200);

    // C starts late, on nothing of its own.
    let c = start("c").await;
    assert!(
        c.output().contains("starting from the shared snapshot"),
        "{}",
        c.output()
    );
    eventually("C shows B's board", Duration::from_secs(10), || async {
        let (bb, cb) = (b.board().await, c.board().await);
        (without_estimates(bb) == without_estimates(cb)).then_some(())
    })
    .await;
    assert_eq!(c.waiting_total().await, 33);
    // And it serves: the next number follows on from B's.
    let next = number_value(&c.issue(certificate()).await);
    assert_eq!(next, 36);
}

/// Where the stream was trimmed and no snapshot fits (a counter was added, so every snapshot is
/// of another configuration), an instance replays the history from its own copy of the log and
/// the rest from the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_replays_from_its_own_copy_where_the_stream_was_trimmed() {
    let Some(redis) = TestRedis::get("replays_from_its_own_copy") else {
        return;
    };
    let prefix = prefix("own_copy");
    let dir = tempfile::tempdir().unwrap();
    let start = |config: std::path::PathBuf| {
        let (dir, redis, prefix) = (&dir, &redis, &prefix);
        async move {
            instance_with(
                dir,
                "b",
                redis,
                prefix,
                &config,
                &["--redis-retention-s", "0"],
            )
            .await
        }
    };
    let mut b = start(repo_path("config/demo.toml")).await;
    for _ in 0..20 {
        b.issue(certificate()).await;
    }
    let last = last_seq(&redis, &prefix).await;
    assert!(b.terminate().await.success());
    let (head, _) = stream_head(&redis, &prefix).await;
    assert_eq!(head, last, "the stream is trimmed to the shutdown snapshot");

    let changed = demo_config_with(
        dir.path(),
        "more-counters.toml",
        "[[sites.counters]]\nid = \"11\"\nname = { ja = \"11番窓口\", en = \"Counter 11\" }\nqueues = [\"certificates\"]\n",
    );
    let b = start(changed).await;
    assert_eq!(b.waiting_total().await, 20);
    assert_eq!(number_value(&b.issue(certificate()).await), 21);
    let catalog = b.get("/api/v1/sites/chuo/catalog", None).await.1;
    assert!(
        catalog["counters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "11"),
        "{catalog}"
    );
}
