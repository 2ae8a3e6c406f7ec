//! What every WebSocket of the server shares: small buffers, frames no larger than a message,
//! sends with a deadline, and a close that never waits long.
//!
//! Each socket is served by its own task, so a client that stops reading delays nobody else. A
//! send blocked longer than `[limits] live_send_timeout_s` ends the socket with 1013 (try again
//! later); shutdown ends it with 1001 without waiting for a blocked send.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio::sync::watch;

use super::error::ApiError;
use crate::metrics::Metrics;

/// How long a closing socket may take to deliver its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a close at shutdown may take.
const SHUTDOWN_CLOSE: Duration = Duration::from_secs(1);
/// Read buffer per socket: clients send little, and thousands of idle sockets add up.
const READ_BUFFER: usize = 4 * 1024;

/// The upgrade of a WebSocket route, taken after the route's own checks (token, site, ticket), so
/// a request that is no upgrade gets those answers first; a refusal carries the API's error body.
pub(super) fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    ws.map_err(|rejection| {
        let status = rejection.status();
        let code = match status {
            StatusCode::UPGRADE_REQUIRED => "upgrade_required",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            _ => "bad_request",
        };
        ApiError::new(
            status,
            code,
            format!("not a WebSocket upgrade: {}", rejection.body_text()),
        )
    })
}

/// Configures an upgrade: messages and frames from the client up to `max_message` bytes, a small
/// read buffer, and no write buffering (each message goes to the kernel at once).
pub(super) fn limit(ws: WebSocketUpgrade, max_message: usize) -> WebSocketUpgrade {
    ws.max_message_size(max_message)
        .max_frame_size(max_message)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
}

/// Which feed a socket belongs to, as a metric label.
#[derive(Debug, Clone, Copy)]
pub(super) enum Feed {
    Site,
    Ticket,
    Printer,
}

impl Feed {
    fn as_str(self) -> &'static str {
        match self {
            Feed::Site => "site",
            Feed::Ticket => "ticket",
            Feed::Printer => "printer",
        }
    }
}

/// Why a socket ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The client went away or broke the protocol: nothing to send.
    Gone,
    /// The server is shutting down: 1001.
    Shutdown,
    /// A send stayed blocked too long: 1013.
    Stalled,
    /// The client sent a frame or message over the limit: 1009.
    TooBig,
    /// The server is done with this socket: 1000 with a reason.
    Done(&'static str),
    /// A newer connection took this one's place: 1008.
    Replaced,
}

/// The sending half of a WebSocket.
pub(super) struct Outbox {
    sink: SplitSink<WebSocket, Message>,
    limit: Duration,
    shutdown: watch::Receiver<bool>,
}

impl Outbox {
    pub(super) fn new(
        sink: SplitSink<WebSocket, Message>,
        limit: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            sink,
            limit,
            shutdown,
        }
    }

    /// Sends one message within the time limit; shutdown interrupts a blocked send.
    ///
    /// Most sends complete at once (the kernel takes the frame): those arm no timer and wait on
    /// nothing shared, so a call fanned out to thousands of sockets costs each little more than
    /// the write itself.
    pub(super) async fn send(&mut self, message: Message) -> Result<(), End> {
        let mut send = self.sink.send(message);
        if let Some(sent) = futures_util::FutureExt::now_or_never(&mut send) {
            return sent.map_err(|_| End::Gone);
        }
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            sent = tokio::time::timeout(self.limit, send) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(End::Gone),
                Err(_) => Err(End::Stalled),
            },
            _ = shutdown.wait_for(|stop| *stop) => Err(End::Shutdown),
        }
    }

    pub(super) async fn text(&mut self, text: &str) -> Result<(), End> {
        self.send(Message::Text(text.into())).await
    }

    /// Sends a message serialized once for every socket (no copy per socket).
    pub(super) async fn shared(&mut self, text: crate::site::LiveText) -> Result<(), End> {
        self.send(Message::Text(text)).await
    }

    pub(super) async fn ping(&mut self) -> Result<(), End> {
        self.send(Message::Ping(Vec::new().into())).await
    }

    /// Resolves when the server begins to shut down. Made once per socket and polled in its
    /// loop (pinned), so the socket waits on the shutdown signal once, not once per message.
    pub(super) fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut shutdown = self.shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        }
    }

    /// Ends the socket: a close frame fitting `end`, delivered if the client takes it soon.
    pub(super) async fn finish(mut self, end: End, metrics: &Metrics, feed: Feed) {
        let (code, reason, wait) = match end {
            End::Gone => return,
            End::Shutdown => (close_code::AWAY, "server shutting down", SHUTDOWN_CLOSE),
            End::Stalled => (
                close_code::AGAIN,
                "too slow to read; reconnect",
                CLOSE_GRACE,
            ),
            End::TooBig => (close_code::SIZE, "message too big", SHUTDOWN_CLOSE),
            End::Done(reason) => (close_code::NORMAL, reason, SHUTDOWN_CLOSE),
            End::Replaced => (
                close_code::POLICY,
                "replaced by a newer connection",
                SHUTDOWN_CLOSE,
            ),
        };
        let label = match end {
            End::Stalled => Some("stalled"),
            End::TooBig => Some("too_big"),
            _ => None,
        };
        if let Some(reason) = label {
            metrics
                .live_closed
                .with_label_values(&[feed.as_str(), reason])
                .inc();
        }
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(wait, async {
            self.sink.send(frame).await?;
            self.sink.close().await
        })
        .await;
    }
}

/// How a read error ends a socket: over the size limit, or anything else.
pub(super) fn read_error(e: &axum::Error) -> End {
    // tungstenite reports frames and messages over the limit as a capacity error.
    if e.to_string().contains("Space limit exceeded") {
        End::TooBig
    } else {
        End::Gone
    }
}
