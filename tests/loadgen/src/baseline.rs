//! The baseline: a bare tokio-tungstenite broadcast server on 127.0.0.1:0 that sends madoguchi's
//! call event as the lobby received it (its seq replaced: same size, same bytes to parse) to the
//! same number of sockets, at the feed's event rate.
//! What madoguchi adds over plain fan-out on this machine is the ratio of the two p99s.
//!
//! The loadgen starts it as a child process (its own binary with a hidden flag), so its peak
//! resident memory can be read on its own and set beside the server's. The loadgen asks for each
//! message by writing its number on the child's stdin, noting the time just before; every socket
//! notes when the message arrived.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::clock::{now_us, progress, stopped};
use crate::http::{self, ConnectError};
use crate::lobby::LiveMsg;
use crate::stats::micros;

/// The child: serves until its stdin closes. Prints its port on stdout first. Its first stdin
/// line is the message template (see [`message`]), each later one the seq of a message to send.
pub(crate) fn serve() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mut stdout = tokio::io::stdout();
        stdout.write_all(format!("{port}\n").as_bytes()).await?;
        stdout.flush().await?;
        // Like the server's live feed: the last 256 messages per subscriber.
        let (tx, _) = broadcast::channel::<Message>(256);
        let accept_tx = tx.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                // Subscribed before the handshake: a client that is connected gets every message
                // sent after.
                let mut rx = accept_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(ws) =
                        tokio_tungstenite::accept_async_with_config(stream, Some(server_config()))
                            .await
                    else {
                        return;
                    };
                    let (mut sink, mut incoming) = ws.split();
                    loop {
                        tokio::select! {
                            m = rx.recv() => match m {
                                Ok(m) => if sink.send(m).await.is_err() { break },
                                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(broadcast::error::RecvError::Closed) => break,
                            },
                            m = incoming.next() => match m {
                                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                                Some(Ok(_)) => {}
                            },
                        }
                    }
                });
            }
        });
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let template = lines.next_line().await?.unwrap_or_default();
        while let Some(line) = lines.next_line().await? {
            let Ok(seq) = line.trim().parse::<u64>() else {
                continue;
            };
            let _ = tx.send(Message::text(message(seq, &template)));
        }
        Ok(())
    })
}

/// The buffers madoguchi's sockets use (server/src/http/socket.rs): a 4 KiB read buffer and no
/// write buffering. tokio-tungstenite's defaults (128 KiB each way) would make the baseline's
/// memory mostly buffers, measuring the defaults rather than the fan-out.
fn server_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

/// The message for `seq`: `template` (a live-feed event, one line of JSON) with its top-level
/// seq replaced; a template of another shape gives a padded message of its size instead.
fn message(seq: u64, template: &str) -> String {
    const HEAD: &str = r#"{"type":"event","seq":"#;
    if let Some(rest) = template.strip_prefix(HEAD) {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            return format!("{HEAD}{seq}{}", &rest[digits..]);
        }
    }
    padded(seq, template.len())
}

/// `{"type":"event","seq":N,"pad":"xxxx"}`, exactly `size` bytes (or the shortest such message).
fn padded(seq: u64, size: usize) -> String {
    let head = format!(r#"{{"type":"event","seq":{seq},"pad":""#);
    let tail = r#""}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut m = String::with_capacity(size);
    m.push_str(&head);
    m.extend(std::iter::repeat_n('x', pad));
    m.push_str(tail);
    m
}

#[derive(Debug, Default)]
pub(crate) struct Baseline {
    pub(crate) sockets: usize,
    pub(crate) messages: usize,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    /// (message, socket) pairs that never arrived.
    pub(crate) missing: u64,
    pub(crate) rss_kb: Option<u64>,
    /// CPU seconds the baseline server used while sending.
    pub(crate) cpu_s: Option<f64>,
}

/// Runs the baseline: `n` sockets, messages of `size` bytes at `rate` a second for `seconds`.
/// Sends `template` (seq replaced) to `n` sockets at `offsets` (µs from the first send) and
/// measures each socket's receipt of the messages marked `true` (the calls of the feed).
pub(crate) async fn measure(
    n: usize,
    template: &str,
    offsets: &[(u64, bool)],
    concurrency: usize,
) -> Result<Baseline> {
    let exe = std::env::current_exe().context("the loadgen's own path")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--baseline-serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("start the baseline server")?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let port: u16 = match tokio::time::timeout(Duration::from_secs(10), stdout.next_line()).await {
        Ok(Ok(Some(line))) => line.trim().parse().context("the baseline's port")?,
        _ => bail!("the baseline server did not start"),
    };
    stdin
        .write_all(format!("{}\n", template.replace('\n', " ")).as_bytes())
        .await
        .context("write to the baseline server")?;
    let size = template.len();
    let url = format!("ws://127.0.0.1:{port}/");
    let count = offsets.len();
    let timed: Arc<Vec<bool>> = Arc::new(offsets.iter().map(|(_, t)| *t).collect());
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let received = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let settled = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sockets = JoinSet::new();
    for _ in 0..n {
        let (url, sent, received, opened, settled, gate) = (
            url.clone(),
            sent.clone(),
            received.clone(),
            opened.clone(),
            settled.clone(),
            gate.clone(),
        );
        let mut stop = stop_rx.clone();
        let timed = timed.clone();
        sockets.spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(sent.len());
            let ws = {
                let _permit = gate.acquire().await.expect("never closed");
                http::connect(&url).await
            };
            settled.fetch_add(1, Ordering::Relaxed);
            let mut ws = match ws {
                Ok(ws) => ws,
                Err(ConnectError::Limited | ConnectError::Other(_)) => return (false, latencies),
            };
            opened.fetch_add(1, Ordering::Relaxed);
            loop {
                let incoming = tokio::select! {
                    biased;
                    () = stopped(&mut stop) => {
                        let _ = ws.close(None).await;
                        break;
                    }
                    m = ws.next() => m,
                };
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let at = now_us();
                        if let Ok(LiveMsg { seq: Some(seq), .. }) =
                            serde_json::from_str::<LiveMsg>(text.as_str())
                        {
                            if let Some(s) = sent.get(seq as usize) {
                                if timed[seq as usize] {
                                    latencies.push(micros(s.load(Ordering::Relaxed), at));
                                }
                                received.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            (true, latencies)
        });
    }
    while settled.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open = opened.load(Ordering::Relaxed);
    progress!(
        "baseline: {open}/{n} sockets open on 127.0.0.1:{port}; {count} messages of {size} bytes on the feed's schedule"
    );
    let child_pid = pid.map(|p| p.to_string()).unwrap_or_default();
    let cpu_before = crate::report::cpu_s(&child_pid);
    let start = tokio::time::Instant::now();
    for (i, (at, (offset, _))) in sent.iter().zip(offsets).enumerate() {
        tokio::time::sleep_until(start + Duration::from_micros(*offset)).await;
        at.store(now_us(), Ordering::Relaxed);
        stdin
            .write_all(format!("{i}\n").as_bytes())
            .await
            .context("write to the baseline server")?;
        stdin.flush().await?;
    }
    let expected = open * count;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while received.load(Ordering::Relaxed) < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_kb = pid.and_then(|p| crate::report::vm_kb(p, "VmHWM"));
    let cpu_s = crate::report::cpu_between(cpu_before, crate::report::cpu_s(&child_pid));
    let _ = stop_tx.send(true);
    let mut all: Vec<u32> = Vec::with_capacity(expected);
    let mut result = Baseline {
        sockets: open,
        messages: count,
        rss_kb,
        cpu_s,
        ..Baseline::default()
    };
    while let Some(done) = sockets.join_next().await {
        let (_, latencies) = done.expect("a baseline socket does not panic");
        all.extend(latencies);
    }
    result.missing = expected.saturating_sub(received.load(Ordering::Relaxed)) as u64;
    result.p50_ms = crate::stats::percentile_ms(&mut all, 50.0);
    result.p99_ms = crate::stats::percentile_ms(&mut all, 99.0);
    drop(stdin);
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_template_event_gets_its_seq_replaced() {
        let template =
            r#"{"type":"event","seq":17,"event":{"kind":"ticket_called"},"board":{"seq":17}}"#;
        let m = super::message(123456, template);
        assert_eq!(
            m,
            r#"{"type":"event","seq":123456,"event":{"kind":"ticket_called"},"board":{"seq":17}}"#
        );
        // Anything else: a padded message of the template's size.
        assert_eq!(super::message(5, &"y".repeat(300)).len(), 300);
    }

    #[test]
    fn message_has_the_asked_size() {
        for size in [64, 1000, 2345] {
            let m = super::padded(42, size);
            assert_eq!(m.len(), size);
            let v: serde_json::Value = serde_json::from_str(&m).unwrap();
            assert_eq!(v["seq"], 42);
        }
    }
}
