//! The live feed: `GET /api/v1/sites/{site}/live` upgrades to a WebSocket that sends a snapshot,
//! then every event with the next seq. A client that sees a gap sends `{"type":"resync"}` and
//! gets a fresh snapshot; a client too slow to keep up gets one without asking.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiError;
use super::AppState;
use crate::site::SiteHandle;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/sites/{site}/live", get(live))
}

async fn live(
    State(app): State<AppState>,
    Path(site): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let handle = app.public_site(&site)?.clone();
    Ok(ws
        .max_message_size(4 * 1024)
        .on_upgrade(move |socket| feed(app, handle, socket)))
}

/// A client message; anything else is ignored.
#[derive(serde::Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
}

async fn feed(app: AppState, handle: SiteHandle, socket: WebSocket) {
    let site = handle.config.id.to_string();
    let gauge = app
        .metrics()
        .live_clients
        .with_label_values(&[site.as_str()]);
    gauge.inc();
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = app.shutdown_signal();
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    ping.tick().await;
    'session: loop {
        let Ok((snapshot, mut events)) = handle.subscribe().await else {
            break;
        };
        if sink
            .send(Message::Text(snapshot.as_ref().into()))
            .await
            .is_err()
        {
            break;
        }
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(text) => {
                        if sink.send(Message::Text(text.as_ref().into())).await.is_err() {
                            break 'session;
                        }
                    }
                    // Fell behind: start over from a fresh snapshot.
                    Err(RecvError::Lagged(_)) => continue 'session,
                    Err(RecvError::Closed) => break 'session,
                },
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if serde_json::from_str::<ClientMessage>(&text).is_ok_and(|m| m.kind == "resync") {
                            continue 'session;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break 'session,
                    Some(Ok(_)) => {}
                },
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break 'session;
                    }
                }
                _ = shutdown.changed() => {
                    let _ = sink.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                        code: axum::extract::ws::close_code::AWAY,
                        reason: "server shutting down".into(),
                    }))).await;
                    break 'session;
                }
            }
        }
    }
    gauge.dec();
}
