//! The agent: a WebSocket client of the server and a worker that owns the printer.
//!
//! The WebSocket task reconnects with backoff and forwards jobs to the worker; the worker prints
//! them one at a time, in order, and hands reports back. Reports made while the server is out of
//! reach wait in a channel and go out after the next connect; the server re-sends jobs it has no
//! report for, and the journal makes sure those are not printed twice.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use madoguchi_wire::{AgentMessage, JobOutcome, PrintJob, PrinterState, ServerMessage};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::journal::{Entry, Journal};
use crate::printer::Link;
use crate::ticket::{render, Width};

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server's base URL (`http://host:8080` or `ws://host:8080`).
    pub server: String,
    pub agent: String,
    pub token: String,
    pub width: Width,
    pub state_dir: PathBuf,
    /// Jobs older than this when they could be printed are reported, not printed.
    pub max_job_age: Duration,
    /// How often the printer is asked for its state while idle or waiting.
    pub status_interval: Duration,
}

/// A job as received, with when it arrived.
struct Received {
    job: PrintJob,
    /// The job's age when the server sent it, by the server's clock.
    age_at_send: Duration,
    received: Instant,
}

impl Received {
    fn age(&self) -> Duration {
        self.age_at_send + self.received.elapsed()
    }
}

/// Runs until `shutdown` changes to true.
pub async fn run(
    settings: Settings,
    link: Link,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let journal = Journal::open(&settings.state_dir)?;
    tracing::info!(journal = %journal.path().display(), printer = %link.describe(), agent = %settings.agent, "printer agent starting");
    let (jobs_tx, jobs_rx) = mpsc::unbounded_channel::<Received>();
    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel::<AgentMessage>();
    let (state_tx, mut state_rx) = watch::channel(PrinterState::Unknown);
    let worker = tokio::spawn(worker(
        settings.clone(),
        link,
        journal,
        jobs_rx,
        reports_tx,
        state_tx,
        shutdown.clone(),
    ));

    let url = jobs_url(&settings.server, &settings.agent)?;
    let mut backoff = Duration::from_millis(250);
    'connect: loop {
        if *shutdown.borrow() {
            break;
        }
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", settings.token)
                .parse()
                .context("the token is not a valid header value")?,
        );
        let socket = tokio::select! {
            r = tokio_tungstenite::connect_async(request) => r,
            _ = shutdown.changed() => break,
        };
        let (socket, _) = match socket {
            Ok(s) => s,
            Err(e) => {
                let fatal = matches!(&e, tokio_tungstenite::tungstenite::Error::Http(r)
                    if r.status() == 401 || r.status() == 403 || r.status() == 404);
                if fatal {
                    tracing::error!(error = %e, "the server refused this agent (check --agent and --token); retrying slowly");
                    backoff = Duration::from_secs(30);
                } else {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot reach the server");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        tracing::info!("connected to the server");
        backoff = Duration::from_millis(250);
        let (mut sink, mut stream) = socket.split();
        let hello = AgentMessage::Status {
            state: *state_rx.borrow_and_update(),
        };
        if sink.send(text(&hello)).await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
                        Ok(ServerMessage::Job { job, sent_at }) => {
                            let age_at_send = (sent_at - job.issued_at).to_std().unwrap_or_default();
                            let _ = jobs_tx.send(Received { job, age_at_send, received: Instant::now() });
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable message from the server"),
                    },
                    Some(Ok(Message::Close(frame))) => {
                        tracing::info!(?frame, "the server closed the connection");
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "connection to the server lost");
                        break;
                    }
                    None => break,
                },
                report = reports_rx.recv() => {
                    let Some(report) = report else { break 'connect };
                    if sink.send(text(&report)).await.is_err() {
                        // Not delivered: the server re-sends the job and the journal answers it.
                        break;
                    }
                }
                changed = state_rx.changed() => {
                    if changed.is_err() { break 'connect; }
                    let state = *state_rx.borrow_and_update();
                    if sink.send(text(&AgentMessage::Status { state })).await.is_err() {
                        break;
                    }
                }
                _ = shutdown.changed() => {
                    let _ = sink.send(Message::Close(None)).await;
                    break 'connect;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(jobs_tx);
    // The worker finishes the ticket it is printing, then stops.
    let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
    tracing::info!("printer agent stopped");
    Ok(())
}

fn text(message: &AgentMessage) -> Message {
    Message::Text(
        serde_json::to_string(message)
            .expect("agent messages serialize")
            .into(),
    )
}

/// `http://host:port` or `ws://host:port` → `ws://host:port/api/v1/printers/{agent}/jobs`.
pub fn jobs_url(server: &str, agent: &str) -> anyhow::Result<String> {
    let base = server.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_owned()
    } else {
        anyhow::bail!(
            "--server must start with http://, https://, ws:// or wss://, not {server:?}"
        );
    };
    Ok(format!("{base}/api/v1/printers/{agent}/jobs"))
}

/// Owns the printer: prints queued jobs in order, watches the printer's state.
async fn worker(
    settings: Settings,
    mut link: Link,
    mut journal: Journal,
    mut jobs: mpsc::UnboundedReceiver<Received>,
    reports: mpsc::UnboundedSender<AgentMessage>,
    state: watch::Sender<PrinterState>,
    shutdown: watch::Receiver<bool>,
) {
    let mut queue: VecDeque<Received> = VecDeque::new();
    let mut queued: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(settings.status_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Take in everything that has arrived.
        loop {
            match jobs.try_recv() {
                Ok(r) => admit(r, &mut journal, &mut queue, &mut queued, &reports),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    if queue.is_empty() {
                        return;
                    }
                    break;
                }
            }
        }
        if *shutdown.borrow() && queue.is_empty() {
            return;
        }
        let Some(next) = queue.front() else {
            // Idle: watch the printer and wait for work.
            tokio::select! {
                r = jobs.recv() => match r {
                    Some(r) => admit(r, &mut journal, &mut queue, &mut queued, &reports),
                    None => return,
                },
                _ = tick.tick() => {
                    let s = link.status().await;
                    state.send_if_modified(|old| std::mem::replace(old, s) != s);
                }
            }
            continue;
        };
        let id = next.job.id.clone();
        // Too old: the resident has gone; say so instead of printing.
        if next.age() > settings.max_job_age {
            tracing::warn!(job = %id, number = %next.job.number, age = ?next.age(), "job too old; not printed");
            if let Err(e) = journal.done(&id, JobOutcome::Expired) {
                tracing::error!(error = %e, "cannot write the journal");
            }
            report(&reports, &id, JobOutcome::Expired);
            queue.pop_front();
            queued.remove(&id);
            continue;
        }
        // Print only to a printer that says it can.
        let s = link.status().await;
        state.send_if_modified(|old| std::mem::replace(old, s) != s);
        if !s.can_print() {
            if *shutdown.borrow() {
                return;
            }
            tokio::time::sleep(settings.status_interval.min(Duration::from_millis(500))).await;
            continue;
        }
        let bytes = render(&next.job, settings.width);
        if let Err(e) = journal.printing(&id) {
            tracing::error!(error = %e, "cannot write the journal; not printing");
            tokio::time::sleep(settings.status_interval).await;
            continue;
        }
        if let Err(e) = link.send(&bytes).await {
            tracing::warn!(job = %id, error = %e, "the printer did not take the job; retrying");
            journal.abandon(&id);
            state.send_if_modified(|old| {
                std::mem::replace(old, PrinterState::Unreachable) != PrinterState::Unreachable
            });
            tokio::time::sleep(settings.status_interval.min(Duration::from_millis(500))).await;
            continue;
        }
        // The printer has the bytes. Acknowledge once it reports no error: a printer that ran
        // out of paper mid-ticket keeps the rest in its buffer and finishes when reloaded.
        loop {
            let s = link.status().await;
            state.send_if_modified(|old| std::mem::replace(old, s) != s);
            if s.can_print() {
                break;
            }
            if *shutdown.borrow() {
                // Left as `printing` in the journal: reported uncertain after the restart.
                return;
            }
            tokio::time::sleep(settings.status_interval.min(Duration::from_millis(500))).await;
        }
        if let Err(e) = journal.done(&id, JobOutcome::Printed) {
            tracing::error!(error = %e, "cannot write the journal");
        }
        tracing::info!(job = %id, number = %next.job.number, "printed");
        report(&reports, &id, JobOutcome::Printed);
        queue.pop_front();
        queued.remove(&id);
    }
}

fn report(reports: &mpsc::UnboundedSender<AgentMessage>, job: &str, outcome: JobOutcome) {
    let _ = reports.send(AgentMessage::Done {
        job: job.to_owned(),
        outcome,
    });
}

/// Queues a new job, or answers a repeat from the journal without printing it again.
fn admit(
    r: Received,
    journal: &mut Journal,
    queue: &mut VecDeque<Received>,
    queued: &mut HashSet<String>,
    reports: &mpsc::UnboundedSender<AgentMessage>,
) {
    let id = r.job.id.clone();
    match journal.get(&id) {
        Some(Entry::Done(outcome)) => report(reports, &id, outcome),
        Some(Entry::Printing) => {
            tracing::warn!(job = %id, number = %r.job.number, "job was being printed when the agent stopped; not printing it again");
            if let Err(e) = journal.done(&id, JobOutcome::Uncertain) {
                tracing::error!(error = %e, "cannot write the journal");
            }
            report(reports, &id, JobOutcome::Uncertain);
        }
        None => {
            if queued.insert(id) {
                queue.push_back(r);
            }
        }
    }
}
