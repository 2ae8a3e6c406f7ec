//! The printer agents' WebSocket, `GET /api/v1/printers/{agent}/jobs` (role `printer`).
//!
//! On connect the server sends every unfinished job of the agent, oldest first, then each new one
//! as it is issued. The agent reports its printer's state and each job's end; a job stays
//! unfinished, and is sent again on the next connection, until the agent reports it done.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use madoguchi_wire::{AgentMessage, PrinterState, ServerMessage};

use super::auth::{require, Scope};
use super::error::ApiError;
use super::AppState;
use crate::config::Role;
use crate::core::{Command, PrinterId};
use crate::site::SiteHandle;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/printers/{agent}/jobs", get(jobs))
}

async fn jobs(
    State(app): State<AppState>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    require(app.config(), &headers, Scope::Any, &[Role::Printer])?;
    let unknown = || {
        ApiError::not_found(
            "unknown_printer",
            format!("no dispenser is configured with printer_agent = {agent:?}"),
        )
    };
    let id: PrinterId = agent.parse().map_err(|_| unknown())?;
    let sites: Vec<SiteHandle> = app
        .sites()
        .filter(|h| {
            h.config
                .dispensers
                .iter()
                .any(|d| d.printer_agent.as_ref() == Some(&id))
        })
        .cloned()
        .collect();
    if sites.is_empty() {
        return Err(unknown());
    }
    Ok(ws
        .max_message_size(16 * 1024)
        .on_upgrade(move |socket| serve_agent(app, id, sites, socket)))
}

/// How a connection ended.
enum End {
    /// The agent went away: its printer is now out of reach.
    Gone,
    /// A newer connection of the same agent took over.
    Replaced,
    /// The server is shutting down.
    Shutdown,
}

async fn set_state(sites: &[SiteHandle], agent: &PrinterId, state: PrinterState) {
    for site in sites {
        let command = Command::SetPrinterState {
            printer: agent.clone(),
            state,
        };
        if let Err(e) = site.command(command).await {
            tracing::warn!(site = %site.config.id, printer = %agent, error = %e, "could not record the printer state");
        }
    }
}

async fn serve_agent(app: AppState, agent: PrinterId, sites: Vec<SiteHandle>, socket: WebSocket) {
    tracing::info!(printer = %agent, "printer agent connected");
    let end = run(&app, &agent, &sites, socket).await;
    match end {
        End::Gone => {
            tracing::info!(printer = %agent, "printer agent disconnected");
            set_state(&sites, &agent, PrinterState::Disconnected).await;
        }
        End::Replaced => tracing::info!(printer = %agent, "printer agent reconnected elsewhere"),
        End::Shutdown => {}
    }
}

async fn run(app: &AppState, agent: &PrinterId, sites: &[SiteHandle], socket: WebSocket) -> End {
    let (me, mut owner) = app.printers().claim(agent);
    let mut wake = app.printers().subscribe(agent);
    let mut shutdown = app.shutdown_signal();
    let (mut sink, mut stream) = socket.split();
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    let mut sent: HashSet<String> = HashSet::new();
    loop {
        wake.mark_unchanged();
        match app.store().pending_jobs(agent).await {
            Ok(jobs) => {
                for job in jobs {
                    if sent.contains(&job.id) {
                        continue;
                    }
                    let id = job.id.clone();
                    let message = ServerMessage::Job {
                        job,
                        sent_at: chrono::Utc::now(),
                    };
                    let text = serde_json::to_string(&message).expect("jobs serialize");
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return End::Gone;
                    }
                    sent.insert(id);
                }
            }
            Err(e) => tracing::error!(printer = %agent, error = %e, "cannot read print jobs"),
        }
        tokio::select! {
            _ = wake.changed() => {}
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<AgentMessage>(&text) {
                    Ok(AgentMessage::Status { state }) => set_state(sites, agent, state).await,
                    Ok(AgentMessage::Done { job, outcome }) => {
                        sent.remove(&job);
                        match app.store().finish_job(agent, &job, outcome, chrono::Utc::now()).await {
                            Ok(true) => {
                                app.metrics()
                                    .print_jobs
                                    .with_label_values(&[agent.as_str(), outcome_str(outcome)])
                                    .inc();
                                if outcome != madoguchi_wire::JobOutcome::Printed {
                                    tracing::warn!(printer = %agent, job = %job, outcome = outcome_str(outcome), "print job not printed");
                                }
                            }
                            Ok(false) => tracing::debug!(printer = %agent, job = %job, "duplicate or unknown job report"),
                            Err(e) => tracing::error!(printer = %agent, error = %e, "cannot record a finished job"),
                        }
                    }
                    Err(e) => tracing::warn!(printer = %agent, error = %e, "unreadable message from a printer agent"),
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::Gone,
                Some(Ok(_)) => {}
            },
            _ = owner.changed() => {
                if *owner.borrow() != me {
                    let _ = sink.send(Message::Close(Some(CloseFrame {
                        code: axum::extract::ws::close_code::POLICY,
                        reason: "replaced by a newer connection of this agent".into(),
                    }))).await;
                    return End::Replaced;
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return End::Gone;
                }
            }
            _ = shutdown.changed() => {
                let _ = sink.send(Message::Close(Some(CloseFrame {
                    code: axum::extract::ws::close_code::AWAY,
                    reason: "server shutting down".into(),
                }))).await;
                return End::Shutdown;
            }
        }
    }
}

fn outcome_str(outcome: madoguchi_wire::JobOutcome) -> &'static str {
    match outcome {
        madoguchi_wire::JobOutcome::Printed => "printed",
        madoguchi_wire::JobOutcome::Expired => "expired",
        madoguchi_wire::JobOutcome::Uncertain => "uncertain",
    }
}
