//! Residents' phones: one socket on `GET /api/v1/tickets/{token}/live` per ticket.
//!
//! The channel sends the ticket's view at once and again whenever it changes (docs/API.md, "The
//! phone channel"). Each phone keeps the latest view, whether it ever showed the ticket called
//! (status `called` or `serving` with its counter), and when that first arrived.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::clock::{now_us, stopped};
use crate::http::{self, ConnectError};

/// A phone's ticket as issued.
#[derive(Debug, Clone)]
pub(crate) struct PhoneTicket {
    pub(crate) token: String,
    pub(crate) number: String,
}

/// What a phone has shown so far; shared so the orchestrator can compare it with the server.
#[derive(Default, Debug)]
pub(crate) struct PhoneView {
    /// The channel opened (a phone that could not connect is counted once, as such).
    pub(crate) opened: bool,
    /// The latest `ticket` object received.
    pub(crate) latest: Option<Value>,
    /// The counter the ticket was first shown called to, and when that message arrived.
    pub(crate) called: Option<(String, u64)>,
    pub(crate) messages: u64,
}

#[derive(Default, Debug)]
pub(crate) struct PhoneStats {
    pub(crate) opened: bool,
    pub(crate) limited: bool,
    pub(crate) connect_error: Option<String>,
    /// Closed by the server or failed before the loadgen was done.
    pub(crate) dropped: bool,
    /// Messages that were not a `ticket` (or `gone`) message, or a ticket that was not its own.
    pub(crate) bad_messages: u64,
    pub(crate) gone: bool,
}

pub(crate) async fn run_phone(
    url: String,
    ticket: PhoneTicket,
    view: Arc<Mutex<PhoneView>>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> PhoneStats {
    let mut stats = PhoneStats::default();
    let ws = {
        let _permit = gate.acquire().await.expect("the gate is never closed");
        http::connect(&url).await
    };
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(ConnectError::Limited) => {
            stats.limited = true;
            return stats;
        }
        Err(ConnectError::Other(text)) => {
            stats.connect_error = Some(text);
            return stats;
        }
    };
    stats.opened = true;
    view.lock().unwrap_or_else(|p| p.into_inner()).opened = true;
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
                stats.dropped = !stats.gone;
                break;
            }
            Some(Ok(_)) => continue,
        };
        let at = now_us();
        let Ok(mut msg) = serde_json::from_str::<Value>(text.as_str()) else {
            stats.bad_messages += 1;
            continue;
        };
        match msg["type"].as_str() {
            Some("ticket") => {
                let shown = msg["ticket"].take();
                if shown["number"].as_str() != Some(ticket.number.as_str()) {
                    stats.bad_messages += 1;
                    continue;
                }
                let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
                v.messages += 1;
                let status = shown["status"].as_str().unwrap_or("");
                if v.called.is_none() && matches!(status, "called" | "serving") {
                    if let Some(counter) = shown["counter"].as_str() {
                        v.called = Some((counter.to_owned(), at));
                    }
                }
                v.latest = Some(shown);
            }
            Some("gone") => stats.gone = true,
            _ => stats.bad_messages += 1,
        }
    }
    stats
}
