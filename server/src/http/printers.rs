//! The printer agents' WebSocket, `GET /api/v1/printers/{agent}/jobs` (role `printer`).
//!
//! On connect the server sends every unfinished job of the agent, oldest first, then each new one
//! as it is issued. The agent reports its printer's state and each job's end; a job stays
//! unfinished, and is sent again on the next connection, until the agent reports it done.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use madoguchi_wire::{AgentMessage, PrinterState, ServerMessage};
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{require, Scope};
use super::error::ApiError;
use super::openapi::{BadRequest, Forbidden, NotFound, Unauthorized, Unavailable, UpgradeRequired};
use super::socket::{self, End, Feed, Outbox};
use super::AppState;
use crate::config::Role;
use crate::core::{Command, PrinterId};
use crate::site::SiteHandle;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jobs))
}

/// A printer agent's job feed (WebSocket): `{"type": "job", …}` for every unfinished job, then
/// each new one; the agent sends `{"type": "status"}` and `{"type": "done"}`. A printer token
/// serves only the agents it lists.
#[utoipa::path(
    get,
    path = "/api/v1/printers/{agent}/jobs",
    tag = "printers",
    security(("bearer" = ["printer"])),
    params(("agent" = String, Path, description = "A `printer_agent` named by a dispenser, e.g. `agent-1`")),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 426, response = UpgradeRequired),
        (status = 503, response = Unavailable),
    )
)]
async fn jobs(
    State(app): State<AppState>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let grant = require(app.config(), &headers, Scope::Any, &[Role::Printer])?;
    let unknown = || {
        ApiError::not_found(
            "unknown_printer",
            format!("no dispenser is configured with printer_agent = {agent:?}"),
        )
    };
    let id: PrinterId = agent.parse().map_err(|_| unknown())?;
    // A printer token serves only its own agents: their jobs carry phone-page tokens.
    if !grant.agents.contains(&id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token does not serve printer agent {id}"),
        ));
    }
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
    let ws = socket::upgrade(ws)?;
    Ok(socket::limit(ws, 16 * 1024).on_upgrade(move |socket| serve_agent(app, id, sites, socket)))
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
        End::Replaced => tracing::info!(printer = %agent, "printer agent reconnected elsewhere"),
        End::Shutdown => {}
        _ => {
            tracing::info!(printer = %agent, "printer agent disconnected");
            set_state(&sites, &agent, PrinterState::Disconnected).await;
        }
    }
}

/// Printer states as the agent reports them, turned into at most one recorded change per
/// `every`: a flapping printer cannot flood the log and every screen. The latest state is
/// always recorded in the end.
#[derive(Debug)]
struct Debounce {
    every: Duration,
    recorded: Option<PrinterState>,
    recorded_at: Option<Instant>,
    pending: Option<PrinterState>,
}

impl Debounce {
    fn new(every: Duration) -> Self {
        Self {
            every,
            recorded: None,
            recorded_at: None,
            pending: None,
        }
    }

    /// A report from the agent: the state to record now, if any.
    fn report(&mut self, state: PrinterState, now: Instant) -> Option<PrinterState> {
        if self.recorded == Some(state) {
            self.pending = None;
            return None;
        }
        if self.recorded_at.is_some_and(|at| now < at + self.every) {
            self.pending = Some(state);
            return None;
        }
        self.recorded = Some(state);
        self.recorded_at = Some(now);
        self.pending = None;
        Some(state)
    }

    /// When a held-back state may be recorded.
    fn due(&self) -> Option<Instant> {
        self.pending?;
        self.recorded_at.map(|at| at + self.every)
    }

    /// The held-back state, now due.
    fn flush(&mut self, now: Instant) -> Option<PrinterState> {
        let state = self.pending.take()?;
        self.report(state, now)
    }
}

async fn run(app: &AppState, agent: &PrinterId, sites: &[SiteHandle], socket: WebSocket) -> End {
    let (me, mut owner) = app.printers().claim(agent);
    let mut wake = app.printers().subscribe(agent);
    let (sink, mut stream) = socket.split();
    let mut out = Outbox::new(
        sink,
        app.config().limits.live_send_timeout,
        app.shutdown_signal(),
    );
    let mut debounce = Debounce::new(app.config().limits.printer_state_debounce);
    let stopping = out.stopping();
    tokio::pin!(stopping);
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    let mut sent: HashSet<String> = HashSet::new();
    // What other instances recorded (jobs, and jobs finished through them) is projected here
    // before the first jobs go out, so a job printed through another instance is not sent.
    for site in sites {
        if site.sync().await.is_ok() {
            site.settled(Duration::from_secs(2)).await;
        }
    }
    let end = loop {
        wake.mark_unchanged();
        match app.store().pending_jobs(agent).await {
            Ok(jobs) => {
                let mut failed = None;
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
                    if let Err(end) = out.text(&text).await {
                        failed = Some(end);
                        break;
                    }
                    sent.insert(id);
                }
                if let Some(end) = failed {
                    break end;
                }
            }
            Err(e) => tracing::error!(printer = %agent, error = %e, "cannot read print jobs"),
        }
        let due = debounce.due();
        let step = tokio::select! {
            _ = wake.changed() => Ok(()),
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                if let Some(state) = debounce.flush(Instant::now()) {
                    set_state(sites, agent, state).await;
                }
                Ok(())
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<AgentMessage>(&text) {
                        Ok(AgentMessage::Status { state }) => {
                            if let Some(state) = debounce.report(state, Instant::now()) {
                                set_state(sites, agent, state).await;
                            }
                        }
                        Ok(AgentMessage::Done { job, outcome }) => {
                            sent.remove(&job);
                            finish_job(app, agent, sites, &job, outcome).await;
                        }
                        Err(e) => tracing::warn!(printer = %agent, error = %e, "unreadable message from a printer agent"),
                    }
                    Ok(())
                }
                Some(Ok(Message::Close(_))) | None => Err(End::Gone),
                Some(Err(e)) => Err(socket::read_error(&e)),
                Some(Ok(_)) => Ok(()),
            },
            _ = owner.changed() => {
                if *owner.borrow() != me { Err(End::Replaced) } else { Ok(()) }
            }
            _ = ping.tick() => out.ping().await,
            () = &mut stopping => Err(End::Shutdown),
        };
        if let Err(end) = step {
            break end;
        }
    };
    out.finish(end, app.metrics(), Feed::Printer).await;
    end
}

/// Records an agent's report of a finished job as an event in its site's log (every server
/// instance then stops sending it). A report of a job this instance does not hold as
/// unfinished — a repeat, or one another instance recorded already — changes nothing.
async fn finish_job(
    app: &AppState,
    agent: &PrinterId,
    sites: &[SiteHandle],
    job: &str,
    outcome: madoguchi_wire::JobOutcome,
) {
    let site = match app.store().unfinished_job_site(agent, job).await {
        Ok(Some(site)) => site,
        Ok(None) => {
            tracing::debug!(printer = %agent, job = %job, "duplicate or unknown job report");
            return;
        }
        Err(e) => {
            tracing::error!(printer = %agent, error = %e, "cannot look up a finished job");
            return;
        }
    };
    let Some(handle) = sites.iter().find(|s| s.config.id.as_str() == site) else {
        return;
    };
    let Ok(job_id) = job.parse::<crate::core::TicketId>() else {
        return;
    };
    let command = Command::FinishPrintJob {
        printer: agent.clone(),
        job: job_id,
        outcome,
    };
    match handle.command(command).await {
        Ok(_) => {
            app.metrics()
                .print_jobs
                .with_label_values(&[agent.as_str(), outcome_str(outcome)])
                .inc();
            if outcome != madoguchi_wire::JobOutcome::Printed {
                tracing::warn!(printer = %agent, job = %job, outcome = outcome_str(outcome), "print job not printed");
            }
        }
        Err(e) => {
            tracing::error!(printer = %agent, job = %job, error = %e, "cannot record a finished job; the agent will report it again")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flapping_printer_is_recorded_once_per_interval_and_ends_in_its_last_state() {
        let every = Duration::from_secs(5);
        let mut d = Debounce::new(every);
        let t0 = Instant::now();
        assert_eq!(
            d.report(PrinterState::Online, t0),
            Some(PrinterState::Online)
        );
        // The same state again: nothing.
        assert_eq!(d.report(PrinterState::Online, t0), None);
        // 500 flaps within the interval: nothing recorded, the last one held back.
        for i in 0..500 {
            let state = if i % 2 == 0 {
                PrinterState::PaperEnd
            } else {
                PrinterState::Online
            };
            assert_eq!(d.report(state, t0 + Duration::from_millis(i)), None);
        }
        // The last flap was back to Online, already recorded: nothing is due.
        assert_eq!(d.due(), None);
        assert_eq!(d.report(PrinterState::PaperEnd, t0), None);
        assert_eq!(d.due(), Some(t0 + every));
        assert_eq!(d.flush(t0 + every), Some(PrinterState::PaperEnd));
        assert_eq!(d.due(), None);
    }
}
