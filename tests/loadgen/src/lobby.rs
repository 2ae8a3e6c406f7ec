//! Lobby screens: sockets on `GET /api/v1/sites/{site}/live`, each checking the feed's order
//! and timing every call it shows.
//!
//! The feed's contract (docs/API.md, "Board and live feed"): a snapshot first, then one event per
//! site event with `seq` growing by exactly one; a client that falls behind gets a fresh snapshot
//! instead, and one that sees a gap asks for one with `{"type":"resync"}`. So an event whose seq
//! skips ahead is a gap (a violation), a snapshot that skips ahead is a covered gap (fine), and a
//! seq that goes back is out of order (a violation).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::clock::{now_us, stopped};
use crate::http::{self, ConnectError};
use crate::stats::micros;

/// A live-feed message; the board each one carries is skipped unread.
#[derive(Deserialize)]
pub(crate) struct LiveMsg<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(default)]
    pub(crate) seq: Option<u64>,
    #[serde(default, borrow)]
    pub(crate) event: Option<LiveEvent<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct LiveEvent<'a> {
    #[serde(borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) number: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) counter: Option<Cow<'a, str>>,
}

/// When each call was asked for: the counter loops write the moment they sent `call-next`
/// (once its answer names the ticket), the sockets read it when the call reaches them.
#[derive(Default)]
pub(crate) struct CallBook {
    sent: RwLock<HashMap<String, u64>>,
}

impl CallBook {
    pub(crate) fn key_into(buf: &mut String, counter: &str, number: &str) {
        buf.clear();
        buf.push_str(counter);
        buf.push('\0');
        buf.push_str(number);
    }

    pub(crate) fn insert(&self, counter: &str, number: &str, sent_us: u64) {
        let mut key = String::new();
        Self::key_into(&mut key, counter, number);
        self.sent
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, sent_us);
    }

    pub(crate) fn get(&self, key: &str) -> Option<u64> {
        self.sent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.sent.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// What the orchestrator watches while the sockets run.
pub(crate) struct LobbyProgress {
    /// The seq each socket holds (its latest snapshot or event).
    pub(crate) last_seq: Vec<AtomicU64>,
    /// False once a socket failed to open or was closed by the server.
    pub(crate) alive: Vec<AtomicBool>,
    /// Sockets past their first snapshot (or failed).
    pub(crate) settled: AtomicUsize,
    /// Size in bytes of a `ticket_called` event message as received (0 until one arrives).
    pub(crate) call_event_bytes: AtomicUsize,
    /// That message's text: the bare broadcast sends it (with its own seq).
    pub(crate) call_event_text: std::sync::Mutex<Option<String>>,
}

impl LobbyProgress {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            last_seq: (0..n).map(|_| AtomicU64::new(0)).collect(),
            alive: (0..n).map(|_| AtomicBool::new(false)).collect(),
            settled: AtomicUsize::new(0),
            call_event_bytes: AtomicUsize::new(0),
            call_event_text: std::sync::Mutex::new(None),
        }
    }

    /// Sockets alive and the lowest seq among them.
    pub(crate) fn lowest_alive_seq(&self) -> (usize, Option<u64>) {
        let mut alive = 0;
        let mut lowest: Option<u64> = None;
        for (seq, ok) in self.last_seq.iter().zip(&self.alive) {
            if ok.load(Ordering::Relaxed) {
                alive += 1;
                let s = seq.load(Ordering::Relaxed);
                lowest = Some(lowest.map_or(s, |l: u64| l.min(s)));
            }
        }
        (alive, lowest)
    }
}

/// The feed's order, message by message.
#[derive(Default, Debug)]
pub(crate) struct FeedCheck {
    /// The seq held: the latest snapshot's or event's.
    pub(crate) last: Option<u64>,
    /// An event whose seq skipped ahead (not covered by a snapshot).
    pub(crate) gaps: u64,
    /// A seq below the one held (a snapshot), or at or below it (an event).
    pub(crate) out_of_order: u64,
    /// The feed did not start with a snapshot, or a message could not be read.
    pub(crate) bad_messages: u64,
    /// Snapshots after the first (the server's answer to lagging or to a resync).
    pub(crate) resnapshots: u64,
    pub(crate) events: u64,
}

impl FeedCheck {
    /// Takes a snapshot at `seq`.
    pub(crate) fn snapshot(&mut self, seq: u64) {
        match self.last {
            None => self.last = Some(seq),
            Some(held) => {
                self.resnapshots += 1;
                if seq < held {
                    self.out_of_order += 1;
                } else {
                    self.last = Some(seq);
                }
            }
        }
    }

    /// Takes an event at `seq`; true when the client should ask for a fresh snapshot.
    pub(crate) fn event(&mut self, seq: u64) -> bool {
        self.events += 1;
        match self.last {
            None => {
                self.bad_messages += 1;
                self.last = Some(seq);
                true
            }
            Some(held) if seq <= held => {
                self.out_of_order += 1;
                false
            }
            Some(held) => {
                self.last = Some(seq);
                if seq > held + 1 {
                    self.gaps += 1;
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// One socket's account.
#[derive(Default, Debug)]
pub(crate) struct LobbyStats {
    pub(crate) opened: bool,
    pub(crate) limited: bool,
    pub(crate) connect_error: Option<String>,
    /// The server closed it, or it failed, before the loadgen was done with it.
    pub(crate) dropped: bool,
    pub(crate) feed: FeedCheck,
    pub(crate) calls_seen: u64,
    /// Call-to-screen latencies of the calls whose request time was known on arrival.
    pub(crate) latencies_us: Vec<u32>,
    /// Calls that arrived before their counter loop had its answer: (key, arrival).
    pub(crate) pending: Vec<(String, u64)>,
    /// Socket 0 only: when each event arrived (µs) and whether it was a call: the feed's
    /// schedule, which the bare broadcast replays, timing the same (call) messages.
    pub(crate) arrivals: Vec<(u64, bool)>,
}

/// Opens socket `index` and follows the feed until `stop` turns true.
pub(crate) async fn run_socket(
    index: usize,
    url: String,
    book: Arc<CallBook>,
    progress: Arc<LobbyProgress>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> LobbyStats {
    let mut stats = LobbyStats::default();
    let ws = {
        let _permit = gate.acquire().await.expect("the gate is never closed");
        http::connect(&url).await
    };
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            match e {
                ConnectError::Limited => stats.limited = true,
                ConnectError::Other(text) => stats.connect_error = Some(text),
            }
            progress.settled.fetch_add(1, Ordering::Relaxed);
            return stats;
        }
    };
    stats.opened = true;
    progress.alive[index].store(true, Ordering::Relaxed);
    let mut key = String::new();
    loop {
        let incoming = tokio::select! {
            biased;
            () = stopped(&mut stop) => {
                let _ = ws.close(None).await;
                break;
            }
            incoming = ws.next() => incoming,
        };
        let text = match incoming {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                stats.dropped = true;
                progress.alive[index].store(false, Ordering::Relaxed);
                if stats.feed.last.is_none() {
                    progress.settled.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            Some(Ok(_)) => continue,
        };
        let at = now_us();
        let Ok(msg) = serde_json::from_str::<LiveMsg>(text.as_str()) else {
            stats.feed.bad_messages += 1;
            continue;
        };
        let Some(seq) = msg.seq else {
            stats.feed.bad_messages += 1;
            continue;
        };
        let first = stats.feed.last.is_none();
        let resync = match msg.kind.as_ref() {
            "snapshot" => {
                stats.feed.snapshot(seq);
                false
            }
            "event" => {
                if index == 0 {
                    let call = msg
                        .event
                        .as_ref()
                        .is_some_and(|e| e.kind == "ticket_called");
                    stats.arrivals.push((at, call));
                }
                let resync = stats.feed.event(seq);
                if let Some(event) = msg.event.as_ref().filter(|e| e.kind == "ticket_called") {
                    stats.calls_seen += 1;
                    if let (Some(counter), Some(number)) = (&event.counter, &event.number) {
                        CallBook::key_into(&mut key, counter, number);
                        match book.get(&key) {
                            Some(sent) => stats.latencies_us.push(micros(sent, at)),
                            None => stats.pending.push((key.clone(), at)),
                        }
                    }
                    if progress.call_event_bytes.load(Ordering::Relaxed) == 0 {
                        progress
                            .call_event_bytes
                            .store(text.len(), Ordering::Relaxed);
                        progress
                            .call_event_text
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(|| text.to_string());
                    }
                }
                resync
            }
            _ => {
                stats.feed.bad_messages += 1;
                false
            }
        };
        if first && stats.feed.last.is_some() {
            progress.settled.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(held) = stats.feed.last {
            progress.last_seq[index].store(held, Ordering::Relaxed);
        }
        if resync
            && ws
                .send(Message::text(r#"{"type":"resync"}"#))
                .await
                .is_err()
        {
            stats.dropped = true;
            progress.alive[index].store(false, Ordering::Relaxed);
            break;
        }
    }
    stats
}

/// Resolves the calls that reached the socket before their request time was known; those that
/// the loadgen did not make are dropped.
pub(crate) fn resolve_pending(stats: &mut LobbyStats, book: &CallBook) {
    for (key, at) in std::mem::take(&mut stats.pending) {
        if let Some(sent) = book.get(&key) {
            stats.latencies_us.push(micros(sent, at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FeedCheck;

    #[test]
    fn in_order_feed_is_clean() {
        let mut f = FeedCheck::default();
        f.snapshot(10);
        for seq in 11..20 {
            assert!(!f.event(seq));
        }
        assert_eq!(
            (f.gaps, f.out_of_order, f.bad_messages, f.resnapshots),
            (0, 0, 0, 0)
        );
        assert_eq!(f.last, Some(19));
    }

    #[test]
    fn a_skipped_event_is_a_gap_a_skipping_snapshot_is_not() {
        let mut f = FeedCheck::default();
        f.snapshot(1);
        assert!(!f.event(2));
        assert!(f.event(4), "a gap asks for a resync");
        f.snapshot(9);
        assert!(!f.event(10));
        assert_eq!((f.gaps, f.resnapshots, f.out_of_order), (1, 1, 0));
    }

    #[test]
    fn going_back_is_out_of_order() {
        let mut f = FeedCheck::default();
        f.snapshot(5);
        assert!(!f.event(6));
        assert!(!f.event(6));
        assert!(!f.event(3));
        f.snapshot(4);
        assert_eq!(f.out_of_order, 3);
        assert_eq!(f.last, Some(6));
    }

    #[test]
    fn an_event_first_is_bad() {
        let mut f = FeedCheck::default();
        assert!(f.event(3));
        assert_eq!(f.bad_messages, 1);
    }
}
