//! The live feeds, WebSockets that need no token:
//! - `GET /api/v1/sites/{site}/live` (lobby screens, boards): a snapshot, then every event with
//!   the next seq. A client that sees a gap sends `{"type":"resync"}` and gets a fresh snapshot; a
//!   client too slow to keep up gets one without asking.
//! - `GET /api/v1/tickets/{token}/live` (the phone page): the resident's own ticket, sent again
//!   only when it changes.
//!
//! Each client address may hold `[limits] websockets_per_address` of them at once.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::openapi::{BadRequest, NotFound, TooManyRequests, Unavailable, UpgradeRequired};
use super::socket::{self, End, Feed, Outbox};
use super::{AppState, Peer};
use crate::net::SocketGuard;
use crate::site::{LogState, PhoneText, SiteHandle};

/// Largest message a live client may send (it only ever sends `{"type":"resync"}`).
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
const PING_EVERY: Duration = Duration::from_secs(20);

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ticket_live))
}

/// A place for one more socket from the client's address.
fn place(
    app: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<SocketGuard, ApiError> {
    let ip = app.client_ip(peer, headers);
    app.public_limits()
        .socket(ip)
        .ok_or_else(ApiError::too_many_sockets)
}

/// The site's live feed (WebSocket): a snapshot `{"type": "snapshot", "seq", "board"}`, then
/// `{"type": "event", "seq", "event", "board"}` for every change; send `{"type": "resync"}` for a
/// fresh snapshot. Public; sockets per client address are limited.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/live",
    tag = "live",
    params(("site" = String, Path, description = "A site id, e.g. `chuo`")),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open"),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 426, response = UpgradeRequired),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn live(
    State(app): State<AppState>,
    Path(site): Path<String>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let handle = app.public_site(&site)?.clone();
    let ws = socket::upgrade(ws)?;
    let guard = place(&app, peer, &headers)?;
    Ok(
        socket::limit(ws, MAX_CLIENT_MESSAGE).on_upgrade(move |socket| async move {
            feed(&app, handle, socket).await;
            drop(guard);
        }),
    )
}

/// A client message; anything else is ignored.
#[derive(serde::Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
}

async fn feed(app: &AppState, handle: SiteHandle, socket: WebSocket) {
    let site = handle.config.id.to_string();
    let gauge = app
        .metrics()
        .live_clients
        .with_label_values(&[site.as_str()]);
    gauge.inc();
    let (sink, mut stream) = socket.split();
    let mut out = Outbox::new(
        sink,
        app.config().limits.live_send_timeout,
        app.shutdown_signal(),
    );
    let stopping = out.stopping();
    tokio::pin!(stopping);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut log = handle.status().log_changes();
    let end = 'session: loop {
        let Ok((snapshot, mut events)) = handle.subscribe().await else {
            break End::Shutdown;
        };
        if let Err(end) = out.shared(snapshot).await {
            break end;
        }
        // A screen joining while the log is away learns it at once.
        let state = *log.borrow_and_update();
        if state != LogState::Available {
            if let Err(end) = out.shared(log_status(state)).await {
                break end;
            }
        }
        loop {
            let sent = tokio::select! {
                changed = log.changed() => match changed {
                    Ok(()) => {
                        let state = *log.borrow_and_update();
                        out.shared(log_status(state)).await
                    }
                    Err(_) => Err(End::Shutdown),
                },
                event = events.recv() => match event {
                    Ok(text) => out.shared(text).await,
                    // Fell behind its queue: start over from a fresh snapshot.
                    Err(RecvError::Lagged(_)) => continue 'session,
                    Err(RecvError::Closed) => Err(End::Shutdown),
                },
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if serde_json::from_str::<ClientMessage>(&text).is_ok_and(|m| m.kind == "resync") {
                            continue 'session;
                        }
                        Ok(())
                    }
                    Some(Ok(Message::Close(_))) | None => Err(End::Gone),
                    Some(Err(e)) => Err(socket::read_error(&e)),
                    Some(Ok(_)) => Ok(()),
                },
                _ = ping.tick() => out.ping().await,
                () = &mut stopping => Err(End::Shutdown),
            };
            if let Err(end) = sent {
                break 'session end;
            }
        }
    };
    out.finish(end, app.metrics(), Feed::Site).await;
    gauge.dec();
}

/// The phone channel (WebSocket): `{"type": "ticket", "ticket"}` at once and whenever the ticket's
/// view changes, `{"type": "gone"}` when its day has ended. Public; sockets per client address
/// are limited.
#[utoipa::path(
    get,
    path = "/api/v1/tickets/{token}/live",
    tag = "live",
    params(("token" = String, Path, description = "The phone page's token (32 hex digits)")),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open"),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 426, response = UpgradeRequired),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn ticket_live(
    State(app): State<AppState>,
    Path(token): Path<String>,
    Peer(peer): Peer,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let handle = app
        .site_of_token(&token)
        .await
        .ok_or_else(ApiError::unknown_phone_ticket)?
        .clone();
    let ws = socket::upgrade(ws)?;
    let guard = place(&app, peer, &headers)?;
    let updates = handle
        .watch(token)
        .await?
        .ok_or_else(ApiError::unknown_phone_ticket)?;
    Ok(
        socket::limit(ws, MAX_CLIENT_MESSAGE).on_upgrade(move |socket| async move {
            let site = handle.config.id.to_string();
            let gauge = app
                .metrics()
                .ticket_live_clients
                .with_label_values(&[site.as_str()]);
            gauge.inc();
            let log = handle.status().log_changes();
            follow_ticket(&app, updates, log, socket).await;
            gauge.dec();
            drop(guard);
        }),
    )
}

/// Sends the ticket's view now and whenever it changes; ends when the ticket is gone.
async fn follow_ticket(
    app: &AppState,
    mut updates: tokio::sync::watch::Receiver<PhoneText>,
    mut log: tokio::sync::watch::Receiver<LogState>,
    socket: WebSocket,
) {
    let (sink, mut stream) = socket.split();
    let mut out = Outbox::new(
        sink,
        app.config().limits.live_send_timeout,
        app.shutdown_signal(),
    );
    let stopping = out.stopping();
    tokio::pin!(stopping);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut changed = true;
    // Sent after the first view only when the log is away, then on every change.
    let mut log_changed = *log.borrow_and_update() != LogState::Available;
    let end = loop {
        if changed {
            let message = updates.borrow_and_update().clone();
            if let Err(end) = out.shared(message.text.clone()).await {
                break end;
            }
            if message.gone {
                break End::Done("the ticket's day has ended");
            }
        }
        changed = false;
        if std::mem::take(&mut log_changed) {
            let state = *log.borrow_and_update();
            if let Err(end) = out.shared(log_status(state)).await {
                break end;
            }
        }
        let step = tokio::select! {
            update = log.changed() => match update {
                Ok(()) => { log_changed = true; Ok(()) }
                Err(_) => Err(End::Shutdown),
            },
            update = updates.changed() => match update {
                Ok(()) => { changed = true; Ok(()) }
                Err(_) => Err(End::Shutdown),
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | None => Err(End::Gone),
                Some(Err(e)) => Err(socket::read_error(&e)),
                Some(Ok(_)) => Ok(()),
            },
            _ = ping.tick() => out.ping().await,
            () = &mut stopping => Err(End::Shutdown),
        };
        if let Err(end) = step {
            break end;
        }
    };
    out.finish(end, app.metrics(), Feed::Ticket).await;
}

/// `{"type": "status", "log": "available" | "unavailable" | "behind"}`: whether the site's event
/// log can be written. While it is not, the screens keep what they show with the reconnecting
/// mark (nothing changes until it is back).
fn log_status(log: LogState) -> axum::extract::ws::Utf8Bytes {
    serde_json::json!({"type": "status", "log": log})
        .to_string()
        .into()
}
