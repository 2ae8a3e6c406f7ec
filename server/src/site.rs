//! One actor task per site owns that site's state. Commands reach it through a channel, so a
//! site's events have one order and no locks are needed; readers get answers computed on the
//! actor, and live subscribers get a snapshot and every later event without a gap.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::SiteConfig;
use crate::core::{
    decide, plan_for, BoardView, Command, CounterId, CounterView, DomainError, Event, Operator,
    PhoneView, PublicEvent, SiteId, SiteSnapshot, SiteState, TicketView, Timestamp, VisitRecord,
};
use crate::log::{EventLog, Followed, LogError, SnapshotStore};
use crate::metrics::Metrics;
use crate::printers::{finished_for, job_for, PrinterHub};
use crate::projection::{Batch, NewJob, ProjectionStore};
use crate::projector::Projector;

/// How many live messages a slow subscriber may fall behind before it must resync.
const LIVE_BUFFER: usize = 256;
/// Pages read from the log when rebuilding state.
const READ_PAGE: usize = 2_000;
/// Tries of one command when other writers keep appending first (after the second, with a
/// random pause: see `commands`).
const MAX_ATTEMPTS: usize = 16;
/// Commands decided together and appended in one transaction, at most.
const GROUP_MAX: usize = 64;
/// Events between two snapshots of a site's state. A site also takes one when it stops, and
/// after a start that replayed this many events.
pub const SNAPSHOT_EVERY: u64 = 10_000;
/// How long a stopping site waits for its projection writer and its last snapshot, each.
const STOP_LIMIT: Duration = Duration::from_secs(5);
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
    #[error("the site is shutting down")]
    Stopped,
    /// The site's actor failed and is being rebuilt from the log: retry in a moment.
    #[error("the site is restarting")]
    Restarting,
}

impl From<LogError> for SiteError {
    fn from(e: LogError) -> Self {
        SiteError::Unavailable(e.to_string())
    }
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub seq: u64,
    /// The ticket the command was about, after it.
    pub ticket: Option<TicketView>,
    /// The counter the command was about, after it.
    pub counter: Option<CounterView>,
    /// True when an `Idempotency-Key` matched an earlier issue: nothing new happened.
    pub replayed: bool,
}

/// A message of the live feed, serialized once and shared by every subscriber.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveMessage<'a> {
    Snapshot {
        seq: u64,
        board: &'a BoardView,
    },
    Event {
        seq: u64,
        event: &'a PublicEvent,
        board: &'a BoardView,
    },
}

/// A serialized live message: made once per event and shared by every socket that sends it
/// (cloning is a reference count, not a copy).
pub type LiveText = axum::extract::ws::Utf8Bytes;

/// A message of a phone's own channel (`/api/v1/tickets/{token}/live`).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PhoneMessage<'a> {
    /// The ticket as the phone page shows it, sent when it changes.
    Ticket { ticket: &'a PhoneView },
    /// The ticket is no longer known: its business day ended.
    Gone,
}

/// A phone channel's current message, serialized once for every phone following the ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneText {
    pub text: LiveText,
    /// The ticket is gone: this is the last message.
    pub gone: bool,
}

/// Which site holds each phone token of the current business day, so a phone's lookup asks one
/// site actor instead of all of them. The site actors keep it as they fold events.
#[derive(Clone, Default)]
pub struct TicketIndex(Arc<RwLock<HashMap<String, SiteId>>>);

impl TicketIndex {
    pub fn site_of(&self, token: &str) -> Option<SiteId> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    fn insert(&self, token: &str, site: &SiteId) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_owned(), site.clone());
    }

    fn insert_all<'a>(&self, tokens: impl Iterator<Item = &'a String>, site: &SiteId) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        for t in tokens {
            map.insert(t.clone(), site.clone());
        }
    }

    fn remove<'a>(&self, tokens: impl Iterator<Item = &'a String>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        for t in tokens {
            map.remove(t);
        }
    }
}

type Query = Box<dyn FnOnce(&SiteState) + Send>;

enum Request {
    Command {
        command: Command,
        by: Option<Operator>,
        reply: oneshot::Sender<Result<Applied, SiteError>>,
    },
    Query(Query),
    Subscribe {
        reply: oneshot::Sender<(LiveText, broadcast::Receiver<LiveText>)>,
    },
    Watch {
        token: String,
        reply: oneshot::Sender<Option<watch::Receiver<PhoneText>>>,
    },
    Model {
        reply: oneshot::Sender<SiteModel>,
    },
    /// Catch up with what other instances appended, then answer with the seq reached.
    Sync {
        reply: oneshot::Sender<Result<u64, SiteError>>,
    },
}

/// A copy of a site's state and what it has learned, for forecasts run off the actor.
pub struct SiteModel {
    pub state: SiteState,
    pub learner: crate::core::Learner,
    pub now: Timestamp,
}

/// Whether a site's event log can be written, as its screens (the `status` live message) and
/// `/readyz` report it. Always `Available` on the embedded log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogState {
    Available,
    /// The shared log cannot be reached; commands get 503 until it is back.
    Unavailable,
    /// The shared log holds fewer events than this instance applied: Redis lost acknowledged
    /// writes (restarted without its AOF). Commands get 503; see docs/DEPLOY.md.
    Behind,
}

/// How a site's actor is doing, for `/readyz`: shared by the supervisor, the actor and the
/// handles.
#[derive(Debug)]
pub struct SiteStatus {
    restarting: std::sync::atomic::AtomicBool,
    restarts: std::sync::atomic::AtomicU64,
    /// Failed writes of the stored projections since they were last current.
    pub(crate) projection_retries: std::sync::atomic::AtomicU64,
    /// The seq of the latest batch handed to the projection writer.
    sent: std::sync::atomic::AtomicU64,
    /// The seq the stored projections are written up to (set by the projection writer).
    pub(crate) projected: watch::Sender<u64>,
    /// The seq of the snapshot the latest (re)build started from, 0 for a full replay.
    snapshot_seq: std::sync::atomic::AtomicU64,
    /// Events the latest (re)build replayed from the log.
    replayed: std::sync::atomic::AtomicU64,
    /// Commands sent to the actor and not yet taken: more than 0 while commands queue up.
    queued: std::sync::atomic::AtomicUsize,
    /// Whether the log can be written (set by the actor as its follower reports).
    log: watch::Sender<LogState>,
    /// The seq of the last event applied (this instance's own or followed), for the webhook
    /// deliverers and the event stream.
    applied: watch::Sender<u64>,
}

impl Default for SiteStatus {
    fn default() -> Self {
        Self {
            restarting: Default::default(),
            restarts: Default::default(),
            projection_retries: Default::default(),
            sent: Default::default(),
            projected: watch::channel(0).0,
            snapshot_seq: Default::default(),
            replayed: Default::default(),
            queued: Default::default(),
            log: watch::channel(LogState::Available).0,
            applied: watch::channel(0).0,
        }
    }
}

impl SiteStatus {
    pub fn restarting(&self) -> bool {
        self.restarting.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn restarts(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Failed writes of the stored projections since they were last current.
    pub fn projection_retries(&self) -> u64 {
        self.projection_retries
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Events handed to the projection writer and not yet written.
    pub fn projection_lag(&self) -> u64 {
        self.sent
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(*self.projected.borrow())
    }
    /// The seq of the snapshot the latest (re)build started from, 0 for a full replay.
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot_seq.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Events the latest (re)build replayed from the log.
    pub fn replayed(&self) -> u64 {
        self.replayed.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Whether the site's log can be written now.
    pub fn log(&self) -> LogState {
        *self.log.borrow()
    }
    /// Follows [`Self::log`] (for the screens' `status` message).
    pub fn log_changes(&self) -> watch::Receiver<LogState> {
        self.log.subscribe()
    }
    /// Follows the seq of the last event the site applied.
    pub fn applied_changes(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }
    /// Follows the seq the stored projections (visit records) are written up to.
    pub fn projected_changes(&self) -> watch::Receiver<u64> {
        self.projected.subscribe()
    }
}

/// A cheap handle to a site actor.
#[derive(Clone)]
pub struct SiteHandle {
    pub config: Arc<SiteConfig>,
    tx: mpsc::Sender<Request>,
    status: Arc<SiteStatus>,
}

impl SiteHandle {
    pub async fn command(&self, command: Command) -> Result<Applied, SiteError> {
        self.command_as(command, None).await
    }

    /// A command on behalf of a token: floor changes carry its name and role into the log.
    pub async fn command_as(
        &self,
        command: Command,
        by: Option<Operator>,
    ) -> Result<Applied, SiteError> {
        self.ready()?;
        let (reply, rx) = oneshot::channel();
        use std::sync::atomic::Ordering::Relaxed;
        self.status.queued.fetch_add(1, Relaxed);
        if self
            .tx
            .send(Request::Command { command, by, reply })
            .await
            .is_err()
        {
            self.status.queued.fetch_sub(1, Relaxed);
            return Err(SiteError::Stopped);
        }
        rx.await.map_err(|_| SiteError::Stopped)?
    }

    pub fn status(&self) -> &SiteStatus {
        &self.status
    }

    /// Waits (at most `limit`) until the stored projections hold every event appended before
    /// the call, so a reader sees the visits its own commands ended. False if they still lag.
    pub async fn settled(&self, limit: Duration) -> bool {
        let target = self.status.sent.load(std::sync::atomic::Ordering::Relaxed);
        let mut projected = self.status.projected.subscribe();
        tokio::time::timeout(limit, projected.wait_for(|p| *p >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Refuses at once while the actor is being rebuilt.
    fn ready(&self) -> Result<(), SiteError> {
        if self.status.restarting() {
            return Err(SiteError::Restarting);
        }
        Ok(())
    }

    /// Runs `f` on the actor against the current state.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SiteState) -> T + Send + 'static,
    ) -> Result<T, SiteError> {
        self.ready()?;
        let (reply, rx) = oneshot::channel();
        let query: Query = Box::new(move |state| {
            let _ = reply.send(f(state));
        });
        self.tx
            .send(Request::Query(query))
            .await
            .map_err(|_| SiteError::Stopped)?;
        rx.await.map_err(|_| SiteError::Stopped)
    }

    /// A receiver of one ticket's phone messages: it holds the current one and changes only when
    /// that ticket's view changes. `None` for an unknown token.
    pub async fn watch(
        &self,
        token: String,
    ) -> Result<Option<watch::Receiver<PhoneText>>, SiteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Watch { token, reply })
            .await
            .map_err(|_| SiteError::Stopped)?;
        rx.await.map_err(|_| SiteError::Stopped)
    }

    /// A copy of the state and the learned service times, for a forecast (what-if) run off the
    /// actor.
    pub async fn model(&self) -> Result<SiteModel, SiteError> {
        self.ready()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Model { reply })
            .await
            .map_err(|_| SiteError::Stopped)?;
        rx.await.map_err(|_| SiteError::Stopped)
    }

    /// Brings the site up to the shared log's last seq (a no-op when only this instance
    /// writes it) and returns the seq reached; the projections follow (see [`Self::settled`]).
    pub async fn sync(&self) -> Result<u64, SiteError> {
        self.ready()?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Sync { reply })
            .await
            .map_err(|_| SiteError::Stopped)?;
        rx.await.map_err(|_| SiteError::Stopped)?
    }

    /// A snapshot message and a receiver of every later message, with nothing in between.
    pub async fn subscribe(&self) -> Result<(LiveText, broadcast::Receiver<LiveText>), SiteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Subscribe { reply })
            .await
            .map_err(|_| SiteError::Stopped)?;
        rx.await.map_err(|_| SiteError::Stopped)
    }
}

struct Actor {
    state: SiteState,
    log: Arc<dyn EventLog>,
    visits: ProjectionStore,
    printers: PrinterHub,
    metrics: Metrics,
    live: broadcast::Sender<LiveText>,
    clock: Clock,
    /// The time of the latest event, so event times never go backwards if the wall clock does.
    last_at: Option<Timestamp>,
    tickets: TicketIndex,
    /// Phone channels by ticket token.
    watchers: HashMap<String, watch::Sender<PhoneText>>,
    /// Service times learned from this site's events (for the wait estimates).
    learner: crate::core::Learner,
    /// The writer of the stored projections (visit records, print jobs); `None` until the state
    /// is rebuilt and once the actor has stopped.
    projector: Option<Projector>,
    status: Arc<SiteStatus>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    /// The seq of the latest snapshot taken or started from.
    snapshot_seq: u64,
    /// The snapshot being written, if any.
    snapshot_task: Option<tokio::task::JoinHandle<()>>,
    /// How often the wait forecast runs.
    pace: crate::pace::ForecastPace,
    /// Commands in the batch being decided and applied (set by `commands`).
    batch_len: usize,
    /// The estimates or the reception changed since the full queues were last looked for.
    closing_check_due: bool,
    /// Other instances append to this site's log too (it is followed).
    shared: bool,
}

/// What every site actor shares.
#[derive(Clone)]
pub struct SiteDeps {
    pub log: Arc<dyn EventLog>,
    pub store: ProjectionStore,
    pub printers: PrinterHub,
    pub metrics: Metrics,
    pub clock: Clock,
    pub tickets: TicketIndex,
    /// Where snapshots of the sites' states are kept; without one every start replays the
    /// whole log.
    pub snapshots: Option<Arc<dyn SnapshotStore>>,
    /// The runtime the site actors (and their projection writers and snapshots) run on; `None`:
    /// the caller's. The server gives them one of their own (see [`SitesRuntime`]).
    pub runtime: Option<tokio::runtime::Handle>,
}

/// A runtime for the site actors alone, beside the one serving HTTP and the sockets.
///
/// A call fans out to thousands of sockets, each a task on the serving runtime; an actor on that
/// runtime would wait behind all of them each time it wakes (a command arrives, its append is
/// durable), so the next call would reach the screens a fan-out or two late. On a runtime of
/// their own, woken actors run at once; the operating system shares the cores between the two.
pub struct SitesRuntime(Option<tokio::runtime::Runtime>);

impl SitesRuntime {
    /// As many worker threads as the machine has cores.
    pub fn new() -> std::io::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("madoguchi-sites")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime lives until dropped")
            .handle()
            .clone()
    }
}

impl Drop for SitesRuntime {
    /// Stops without waiting (it may be dropped on another runtime, where blocking is not
    /// allowed); the server has waited for the actors by then.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Up to `limit` events of `site` after `after`: from the log, or, where a shared log was
/// trimmed past them, from this instance's copy of it (a data directory seeded from a peer's
/// backup holds the history the stream no longer has). For the actor, the webhook deliverers
/// and the event stream alike.
pub async fn read_events(
    log: &dyn EventLog,
    copy: &ProjectionStore,
    site: &SiteId,
    after: u64,
    limit: usize,
) -> Result<Vec<crate::log::StoredEvent>, SiteError> {
    let page = log.read(site, after, limit).await?;
    if !log.shared() || page.first().is_none_or(|e| e.seq == after + 1) {
        return Ok(page);
    }
    let copy = copy
        .copied_events(site.as_str(), after, limit)
        .await
        .map_err(|e| SiteError::Unavailable(e.to_string()))?;
    if copy.first().is_some_and(|e| e.seq == after + 1) {
        return Ok(copy);
    }
    Err(SiteError::Unavailable(format!(
        "the shared log of site {site} begins at seq {} and this instance's data ends at {after}: start it from a snapshot, or seed its data directory from a peer's backup (docs/DEPLOY.md)",
        page.first().map_or(0, |e| e.seq)
    )))
}

/// Rebuilds a site's state from the log, brings its visit records up to date, and starts its
/// actor under a supervisor. The actor stops when every handle is dropped; if it panics, the
/// supervisor rebuilds it from the log and starts it again.
pub async fn start(
    config: Arc<SiteConfig>,
    deps: SiteDeps,
) -> Result<(SiteHandle, tokio::task::JoinHandle<()>), SiteError> {
    let status = Arc::new(SiteStatus::default());
    let runtime = deps
        .runtime
        .clone()
        .unwrap_or_else(tokio::runtime::Handle::current);
    // Rebuilt on the actor's runtime, so its projection writer runs there too.
    let rebuild = Actor::rebuild(config.clone(), deps.clone(), status.clone());
    let actor = runtime
        .spawn(rebuild)
        .await
        .map_err(|e| SiteError::Unavailable(format!("the site's rebuild failed: {e}")))??;
    let (tx, rx) = mpsc::channel(1024);
    let task = runtime.spawn(supervise(actor, config.clone(), deps, status.clone(), rx));
    Ok((SiteHandle { config, tx, status }, task))
}

/// Runs the actor; after a panic, rebuilds it from the log (with backoff while that fails) and
/// runs it again. Requests during the rebuild are refused with [`SiteError::Restarting`]; those
/// already queued are served by the new actor.
async fn supervise(
    mut actor: Actor,
    config: Arc<SiteConfig>,
    deps: SiteDeps,
    status: Arc<SiteStatus>,
    mut rx: mpsc::Receiver<Request>,
) {
    use futures_util::FutureExt;
    use std::sync::atomic::Ordering;
    loop {
        let run = std::panic::AssertUnwindSafe(actor.run(&mut rx))
            .catch_unwind()
            .await;
        let Err(panic) = run else {
            // Every handle is gone: the server is stopping.
            actor.stop().await;
            return;
        };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        status.restarting.store(true, Ordering::Relaxed);
        status.restarts.fetch_add(1, Ordering::Relaxed);
        deps.metrics
            .site_restarts
            .with_label_values(&[config.id.as_str()])
            .inc();
        tracing::error!(site = %config.id, panic = %what, "the site actor failed; rebuilding it from the event log");
        let mut wait = Duration::from_millis(100);
        actor = loop {
            match Actor::rebuild(config.clone(), deps.clone(), status.clone()).await {
                Ok(actor) => break actor,
                Err(e) => {
                    tracing::error!(site = %config.id, error = %e, "cannot rebuild the site; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        };
        status.restarting.store(false, Ordering::Relaxed);
        tracing::info!(site = %config.id, seq = actor.state.seq, "site actor restarted");
    }
}

impl Actor {
    /// The site's state from the log, its projections brought up to date.
    async fn rebuild(
        config: Arc<SiteConfig>,
        deps: SiteDeps,
        status: Arc<SiteStatus>,
    ) -> Result<Actor, SiteError> {
        let SiteDeps {
            log,
            store: visits,
            printers,
            metrics,
            clock,
            tickets,
            snapshots,
            runtime: _,
        } = deps;
        let mut actor = Actor {
            state: SiteState::new(config.clone()),
            log,
            visits,
            printers,
            metrics,
            live: broadcast::channel(LIVE_BUFFER).0,
            clock,
            last_at: None,
            tickets,
            watchers: HashMap::new(),
            projector: None,
            learner: crate::core::Learner::new(&config),
            status,
            snapshots,
            snapshot_seq: 0,
            snapshot_task: None,
            pace: Default::default(),
            batch_len: 0,
            closing_check_due: true,
            shared: false,
        };
        actor.shared = actor.log.shared();
        let started = std::time::Instant::now();
        let checkpoint = actor
            .visits
            .checkpoint(config.id.as_str())
            .await
            .map_err(|e| SiteError::Unavailable(e.to_string()))?;
        let from = actor.restore(checkpoint).await;
        actor.catch_up(checkpoint, false).await?;
        {
            use std::sync::atomic::Ordering::Relaxed;
            let seq = actor.state.seq.max(checkpoint);
            actor.status.sent.store(seq, Relaxed);
            actor.status.projected.send_replace(seq);
            actor.status.applied.send_replace(actor.state.seq);
            actor.status.projection_retries.store(0, Relaxed);
        }
        if let Some(at) = actor.last_at {
            actor.refresh_estimates(at);
        }
        let now = actor.now();
        actor.state.refresh_reception(now);
        actor.projector = Some(Projector::start(
            config.id.clone(),
            actor.visits.clone(),
            actor.printers.clone(),
            actor.status.clone(),
        ));
        actor.metrics.observe_site(&actor.state);
        let replayed = actor.state.seq - from;
        {
            use std::sync::atomic::Ordering::Relaxed;
            actor.status.snapshot_seq.store(from, Relaxed);
            actor.status.replayed.store(replayed, Relaxed);
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if from > 0 {
            tracing::info!(site = %config.id, snapshot_seq = from, replayed, seq = actor.state.seq, elapsed_ms, "site state restored from a snapshot and the events after it");
        } else {
            tracing::info!(site = %config.id, replayed, seq = actor.state.seq, elapsed_ms, "site state rebuilt from the event log");
        }
        // After a long replay, so that the next start need not do it again.
        actor.maybe_snapshot("after replay");
        Ok(actor)
    }

    /// Starts from the newest snapshot that stands for a replay up to a seq whose visit records
    /// and print jobs are written (the checkpoint): the events after it are replayed, and those
    /// after the checkpoint projected, as after a full replay. Returns the snapshot's seq, or 0
    /// (the state left empty: a full replay) when there is none that fits.
    async fn restore(&mut self, checkpoint: u64) -> u64 {
        let Some(store) = self.snapshots.clone() else {
            return 0;
        };
        let site = self.state.config.id.clone();
        // A shared log trimmed past this instance's checkpoint (a new instance, or one down for
        // longer than the retention): the events in between are only in a snapshot now. Start
        // from the newest one; this instance's visit records lack those events (seed it from a
        // peer's backup for the whole history, docs/DEPLOY.md).
        let trimmed = self.shared
            && match self.log.read(&site, checkpoint, 1).await {
                Ok(page) => page.first().is_some_and(|e| e.seq > checkpoint + 1),
                Err(_) => false,
            };
        let max_seq = if trimmed { u64::MAX } else { checkpoint };
        let snapshot = match store.load_latest(&site, max_seq).await {
            Ok(Some(snapshot)) if snapshot.seq > 0 => snapshot,
            Ok(_) => {
                tracing::info!(site = %site, "no snapshot; replaying the whole event log");
                return 0;
            }
            Err(e) => {
                tracing::warn!(site = %site, error = %e, "cannot read the snapshot; replaying the whole event log");
                return 0;
            }
        };
        let seq = snapshot.seq;
        // The snapshot must belong to this log: its last event is there, at the same time.
        match self.read_events(seq - 1, 1).await {
            Ok(page)
                if page
                    .first()
                    .is_some_and(|e| e.seq == seq && Some(e.event.at()) == snapshot.last_at) => {}
            Ok(_) => {
                tracing::warn!(site = %site, snapshot_seq = seq, "the snapshot does not match the event log; replaying the whole log");
                return 0;
            }
            Err(e) => {
                tracing::warn!(site = %site, error = %e, "cannot check the snapshot against the event log; replaying the whole log");
                return 0;
            }
        }
        let last_at = snapshot.last_at;
        match snapshot.restore(self.state.config.clone()) {
            Ok(state) => {
                if trimmed {
                    tracing::warn!(site = %site, checkpoint, snapshot_seq = seq, "the shared log no longer holds the events after this instance's data: starting from the shared snapshot; this instance's visit records lack the events up to it (seed from a peer's backup for the whole history)");
                }
                self.state = state;
                self.last_at = last_at;
                self.snapshot_seq = seq;
                self.tickets.insert_all(self.state.by_token.keys(), &site);
                seq
            }
            Err(why) => {
                tracing::info!(site = %site, snapshot_seq = seq, reason = %why, "the snapshot does not fit; replaying the whole event log");
                0
            }
        }
    }

    /// Takes a snapshot when [`SNAPSHOT_EVERY`] events have passed since the latest one, every
    /// event is projected and the previous snapshot is written.
    fn maybe_snapshot(&mut self, why: &'static str) {
        if self.state.seq < self.snapshot_seq + SNAPSHOT_EVERY
            || self.status.projection_retries() > 0
            || self
                .snapshot_task
                .as_ref()
                .is_some_and(|t| !t.is_finished())
        {
            return;
        }
        self.snapshot_task = self.snapshot(why);
    }

    /// Snapshots the state as it is now and writes it in a task of its own once the stored
    /// projections hold every event so far: the projection writer first moves its checkpoint to
    /// the snapshot's seq (events that end no visit leave it behind, and a start uses only
    /// snapshots the checkpoint has passed). The state is copied here; it is serialized off the
    /// runtime. No snapshot while a projection write is failing.
    fn snapshot(&mut self, why: &'static str) -> Option<tokio::task::JoinHandle<()>> {
        let store = self.snapshots.clone()?;
        let projector = self.projector.as_ref()?;
        let seq = self.state.seq;
        let site = self.state.config.id.clone();
        if seq == 0 || seq == self.snapshot_seq {
            return None;
        }
        if self.status.projection_retries() > 0 {
            tracing::warn!(site = %site, seq, why, "projections are behind the log; no snapshot");
            return None;
        }
        let snapshot = SiteSnapshot::take(&self.state, self.last_at);
        self.snapshot_seq = seq;
        projector.send(Batch {
            seq,
            ..Batch::default()
        });
        let mut projected = self.status.projected.subscribe();
        Some(tokio::spawn(async move {
            let started = std::time::Instant::now();
            if projected.wait_for(|p| *p >= seq).await.is_err() {
                return;
            }
            match store.save(&site, snapshot).await {
                Ok(()) => {
                    tracing::info!(site = %site, seq, why, elapsed_ms = started.elapsed().as_millis() as u64, "snapshot taken");
                }
                Err(e) => {
                    tracing::warn!(site = %site, seq, why, error = %e, "cannot save the snapshot");
                }
            }
        }))
    }

    /// The last acts of a stopping actor: a snapshot of the final state, and the projection
    /// writer's queue written, each within [`STOP_LIMIT`].
    async fn stop(&mut self) {
        let earlier = self.snapshot_task.take();
        let last = self.snapshot("shutdown");
        if let Some(projector) = self.projector.take() {
            projector.finish(STOP_LIMIT).await;
        }
        for task in [earlier, last].into_iter().flatten() {
            let mut task = task;
            if tokio::time::timeout(STOP_LIMIT, &mut task).await.is_err() {
                tracing::warn!(site = %self.state.config.id, "the snapshot did not finish in time; the next start replays more");
                task.abort();
            }
        }
    }

    async fn run(&mut self, rx: &mut mpsc::Receiver<Request>) {
        // Starts a new business day at the reset time even when nobody issues a ticket.
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // What other server instances append to this site's log (a shared backend only).
        let mut follow = self.log.follow(&self.state.config.id);
        loop {
            let now = self.now();
            // A reception period opens or ends, or a booking's slot begins.
            let next_change = [
                self.state.next_reception_change(now),
                self.state.next_release(),
            ]
            .into_iter()
            .flatten()
            .min();
            let reception_change_due = next_change.is_some();
            // A second past the change, so the clock reads the new side of it.
            let reception_change = tokio::time::Instant::now()
                + next_change
                    .and_then(|t| (t - now).to_std().ok())
                    .unwrap_or_default()
                + Duration::from_secs(1);
            tokio::select! {
                // Another instance appended: apply its events as if they were ours (state, live
                // feed, phones, projections), in seq order.
                followed = log_grew(&mut follow) => {
                    self.log_state(followed).await;
                    if followed.connected && followed.seq > self.state.seq {
                        let from = self.state.seq;
                        if let Err(e) = self.catch_up(from, true).await {
                            tracing::warn!(site = %self.state.config.id, error = %e, "cannot read what other instances appended; trying again when the log grows");
                        }
                    }
                }
                request = rx.recv() => match request {
                    None => break,
                    Some(Request::Command { command, by, reply }) => {
                        // Group commit: the commands queued behind this one go in the same append.
                        let mut batch = vec![(command, by)];
                        let mut replies = vec![reply];
                        let mut next = None;
                        while batch.len() < GROUP_MAX {
                            match rx.try_recv() {
                                Ok(Request::Command { command, by, reply }) => {
                                    batch.push((command, by));
                                    replies.push(reply);
                                }
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        self.status
                            .queued
                            .fetch_sub(batch.len(), std::sync::atomic::Ordering::Relaxed);
                        #[cfg(debug_assertions)]
                        batch.iter().for_each(|(c, _)| fault::panic_if_asked(c));
                        let results = self.commands(&batch).await;
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(result);
                        }
                        if let Some(request) = next {
                            self.other(request).await;
                        }
                        self.close_full_queues().await;
                        self.notice_near_turns().await;
                    }
                    Some(request) => self.other(request).await,
                },
                _ = tick.tick() => {
                    if let Err(e) = self.command(Command::StartDay, None).await {
                        tracing::warn!(site = %self.state.config.id, error = %e, "could not start the business day");
                    }
                }
                // The last appends of a burst kept an earlier forecast: make it now, and show
                // it (the lobby gets a snapshot of the same seq with the new estimates).
                _ = tokio::time::sleep_until(self.pace.next()), if self.estimates_stale() => {
                    if !self.pace.deferred_may_run() {
                        continue;
                    }
                    let now = self.now();
                    self.refresh_estimates(now);
                    self.send_snapshot();
                    self.tell_watchers();
                    self.closing_check_due = true;
                    self.close_full_queues().await;
                    self.notice_near_turns().await;
                }
                // A reception period opens or ends, or a closing runs out: the board shows it.
                // A booking's slot began: its ticket takes its place in line.
                _ = tokio::time::sleep_until(reception_change), if reception_change_due => {
                    let now = self.now();
                    if self.state.refresh_reception(now) {
                        self.send_snapshot();
                    }
                    if self.state.next_release().is_some_and(|t| t <= now)
                        && self.status.log() == LogState::Available
                    {
                        for result in self.commands(&[(Command::ReleaseHeld, None)]).await {
                            if let Err(e) = result {
                                tracing::warn!(site = %self.state.config.id, error = %e, "could not put held tickets in line");
                            }
                        }
                    }
                    self.closing_check_due = true;
                    self.close_full_queues().await;
                    self.notice_near_turns().await;
                }
            }
            self.maybe_snapshot("periodic");
        }
    }

    /// Sends the lobby and boards a snapshot of the current state (estimates or reception changed
    /// without an event).
    fn send_snapshot(&self) {
        if self.live.receiver_count() > 0 {
            let board = self.state.board();
            let _ = self.live.send(live_text(&LiveMessage::Snapshot {
                seq: self.state.seq,
                board: &board,
            }));
        }
    }

    /// Marks the near-turn notices now due (`NearTurnNoticed`, one per ticket): the notifier
    /// and the webhook deliverers send them. Only tickets that asked are looked at.
    async fn notice_near_turns(&mut self) {
        if self.state.notices_pending.is_empty()
            || self.status.log() != LogState::Available
            || self.state.due_notices().is_empty()
        {
            return;
        }
        for result in self.commands(&[(Command::NoticeNearTurn, None)]).await {
            if let Err(e) = result {
                tracing::warn!(site = %self.state.config.id, error = %e, "could not mark the near-turn notices");
            }
        }
    }

    /// Closes the reception of the queues the forecast says are full (see
    /// `SiteState::full_queues`): one `ReceptionChanged` event each, in the log.
    async fn close_full_queues(&mut self) {
        if !std::mem::take(&mut self.closing_check_due) || self.status.log() != LogState::Available
        {
            return;
        }
        let now = self.now();
        let full = self.state.full_queues(now);
        if full.is_empty() {
            return;
        }
        let batch: Vec<_> = full
            .into_iter()
            .map(|queue| {
                (
                    Command::SetReception {
                        queue,
                        mode: crate::core::ReceptionMode::Closing,
                        reason: crate::core::ReceptionReason::Forecast,
                    },
                    None,
                )
            })
            .collect();
        for result in self.commands(&batch).await {
            if let Err(e) = result {
                tracing::warn!(site = %self.state.config.id, error = %e, "could not close a full queue's reception");
            }
        }
    }

    /// Up to `limit` events after `after`: from the log, or, where a shared log was trimmed
    /// past them, from this instance's copy of it (a data directory seeded from a peer's
    /// backup holds the history the stream no longer has).
    async fn read_events(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::log::StoredEvent>, SiteError> {
        read_events(
            &*self.log,
            &self.visits,
            &self.state.config.id,
            after,
            limit,
        )
        .await
    }

    /// Applies what other instances appended up to the log's last seq, now.
    async fn sync(&mut self) -> Result<u64, SiteError> {
        if self.shared {
            let last = self.log.last_seq(&self.state.config.id).await?;
            if last > self.state.seq {
                let from = self.state.seq;
                self.catch_up(from, true).await?;
            }
        }
        Ok(self.state.seq)
    }

    /// A request other than a command: answered from the current state (a sync first catches
    /// up with the shared log).
    async fn other(&mut self, request: Request) {
        match request {
            Request::Command { .. } => unreachable!("commands are batched by the run loop"),
            Request::Sync { reply } => {
                let _ = reply.send(self.sync().await);
            }
            Request::Query(f) => f(&self.state),
            Request::Subscribe { reply } => {
                let board = self.state.board();
                let text = live_text(&LiveMessage::Snapshot {
                    seq: self.state.seq,
                    board: &board,
                });
                let _ = reply.send((text, self.live.subscribe()));
            }
            Request::Watch { token, reply } => {
                let _ = reply.send(self.watch(token));
            }
            Request::Model { reply } => {
                let _ = reply.send(SiteModel {
                    state: self.state.clone(),
                    learner: self.learner.clone(),
                    now: self.now(),
                });
            }
        }
    }

    /// The time for the next events: the clock, never before the latest event by a small step
    /// back (an adjustment), but following the clock when the latest event lies far ahead of it
    /// (stamped by a clock that was wrong, and since corrected), so times never freeze.
    fn now(&self) -> Timestamp {
        let now = (self.clock)();
        match self.last_at {
            Some(last) if now < last => {
                let behind = last - now;
                if behind <= chrono::Duration::from_std(crate::clock::TOLERANCE).unwrap_or_default()
                {
                    last
                } else {
                    tracing::warn!(site = %self.state.config.id, behind_s = behind.num_seconds(), "the latest event lies ahead of the clock; following the clock");
                    now
                }
            }
            _ => now,
        }
    }

    /// One command alone (the day's start on the timer).
    async fn command(
        &mut self,
        command: Command,
        by: Option<&Operator>,
    ) -> Result<Applied, SiteError> {
        let mut results = self.commands(&[(command, by.cloned())]).await;
        results.pop().expect("one result per command")
    }

    /// Decides `batch` in order, each against the state the earlier ones leave, and appends all
    /// their events in one transaction (one fsync): group commit. A command whose decision fails
    /// gets its error and the others go on. Results come back in order, after the batch is
    /// durable. On a conflict (another instance appended first) the actor catches up and the
    /// whole batch is decided again.
    async fn commands(
        &mut self,
        batch: &[(Command, Option<Operator>)],
    ) -> Vec<Result<Applied, SiteError>> {
        enum Decided {
            Failed(DomainError),
            /// A retried issue (same `Idempotency-Key`): the ticket it gave.
            Replayed(crate::core::TicketId),
            /// Events appended; the ticket they are about, if any.
            Appended(Option<crate::core::TicketId>),
        }
        let site = self.state.config.id.clone();
        self.batch_len = batch.len();
        // This instance is ahead of a shared log that lost events: appending would number
        // tickets again.
        if self.status.log() == LogState::Behind {
            return unavailable_all(batch.len(), BEHIND);
        }
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 1 {
                // Instances racing for the same site: a random pause, growing with the tries,
                // lets one of them land its batch instead of both catching up and colliding
                // again.
                let pause = rand::random_range(0..=500 * attempt as u64);
                tokio::time::sleep(Duration::from_micros(pause)).await;
            }
            let now = self.now();
            let mut scratch: Option<SiteState> = None;
            let mut events: Vec<Event> = Vec::new();
            let mut decided = Vec::with_capacity(batch.len());
            for (i, (command, by)) in batch.iter().enumerate() {
                let state = scratch.as_ref().unwrap_or(&self.state);
                match decide_one(state, command, by.as_ref(), now) {
                    Err(e) => decided.push(Decided::Failed(e)),
                    Ok(Ok(ticket)) => decided.push(Decided::Replayed(ticket)),
                    Ok(Err(new)) => {
                        let subject = new.iter().rev().find_map(Event::ticket).cloned();
                        if i + 1 < batch.len() && !new.is_empty() {
                            let s = scratch.get_or_insert_with(|| self.state.clone());
                            new.iter().for_each(|e| {
                                s.apply(e);
                            });
                        }
                        events.extend(new);
                        decided.push(Decided::Appended(subject));
                    }
                }
            }
            if events.is_empty() && self.shared {
                // Nothing to append, so no conflict tells whether another instance has moved
                // the site on (a ticket issued there a moment ago, which a call-next here must
                // see): ask the log, and decide again on what it holds.
                match self.log.last_seq(&site).await {
                    Ok(last) if last > self.state.seq => {
                        let seq = self.state.seq;
                        if let Err(e) = self.catch_up(seq, true).await {
                            return unavailable_all(batch.len(), e);
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return unavailable_all(batch.len(), e);
                    }
                }
            }
            if !events.is_empty() {
                match self.log.append(&site, self.state.seq, &events).await {
                    Ok(_) => {
                        self.metrics
                            .group_commit
                            .with_label_values(&[site.as_str()])
                            .observe(batch.len() as f64);
                        self.apply_live(&events, true).await;
                    }
                    Err(LogError::Conflict { .. }) => {
                        // Another server instance appended first: catch up and decide again.
                        self.metrics
                            .log_conflicts
                            .with_label_values(&[site.as_str()])
                            .inc();
                        let seq = self.state.seq;
                        if let Err(e) = self.catch_up(seq, true).await {
                            return unavailable_all(batch.len(), e);
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(site = %site, error = %e, "event log append failed");
                        return unavailable_all(batch.len(), e);
                    }
                }
            }
            return batch
                .iter()
                .zip(decided)
                .map(|((command, _), d)| match d {
                    Decided::Failed(e) => Err(e.into()),
                    Decided::Replayed(ticket) => Ok(Applied {
                        seq: self.state.seq,
                        ticket: self
                            .state
                            .tickets
                            .get(&ticket)
                            .map(|t| self.state.ticket_view(t, true)),
                        counter: None,
                        replayed: true,
                    }),
                    Decided::Appended(subject) => Ok(self.applied(command, subject)),
                })
                .collect();
        }
        unavailable_all(batch.len(), "other writers kept appending first; try again")
    }

    fn applied(&self, command: &Command, ticket: Option<crate::core::TicketId>) -> Applied {
        let issuing = matches!(command, Command::Issue(_));
        let counter = match command {
            Command::CallNext { counter }
            | Command::Call { counter, .. }
            | Command::Recall { counter }
            | Command::Start { counter }
            | Command::NoShow { counter }
            | Command::Complete { counter, .. }
            | Command::SetCounterState { counter, .. }
            | Command::SetProfile { counter, .. } => Some(counter),
            _ => None,
        };
        Applied {
            seq: self.state.seq,
            ticket: ticket
                .and_then(|id| self.state.tickets.get(&id))
                .map(|t| self.state.ticket_view(t, issuing)),
            counter: counter.and_then(|c: &CounterId| self.state.counter_view(c)),
            replayed: false,
        }
    }

    /// Applies one event to the state and returns the visit records it ended or changed (print
    /// jobs are made by the caller, with the estimates of the seq it stops at).
    fn fold(&mut self, event: &Event) -> Vec<VisitRecord> {
        if let Event::DayStarted { .. } = event {
            self.tickets.remove(self.state.by_token.keys());
        }
        self.learner.observe(&self.state, event);
        let changed = self.state.apply(event);
        if let Event::TicketIssued { token, .. } = event {
            self.tickets.insert(token, &self.state.config.id);
        }
        let at = event.at();
        // The latest event's time (see `now`: a far-ahead outlier is not kept as a floor).
        self.last_at = Some(at);
        changed
            .iter()
            .filter_map(|t| VisitRecord::from_ticket(&self.state.config, t))
            .collect()
    }

    /// Runs the wait predictor on the current state (see `core::estimate`): a bounded amount of
    /// work per event, seeded by the day, so one seq always shows one set of estimates.
    ///
    /// The runs share their random numbers through the day, and an estimate moves only when it
    /// moves by more than the noise of the runs (see `core::estimate::settle`): a phone is told
    /// about its ticket when something changed for it, not after every event at the site.
    fn refresh_estimates(&mut self, at: Timestamp) {
        let seed = self
            .state
            .day
            .map_or(0, |d| chrono::Datelike::num_days_from_ce(&d) as u64);
        let (state, learner) = (&self.state, &self.learner);
        let fresh = self
            .pace
            .run(|| crate::core::estimate::forecast(state, learner, at, seed));
        self.state.estimates.0 = Arc::new(crate::core::estimate::settle(
            &self.state.estimates.0,
            fresh,
        ));
    }

    /// Whether the append being applied gets a fresh forecast (see `crate::pace`): busy when
    /// several commands were decided together or more wait. The appends in between keep the
    /// latest forecast, and the tickets they issue get an interim estimate from it
    /// (`SiteState::position`); the run loop makes the forecast the last of them missed.
    fn forecast_due(&self) -> bool {
        let busy = self.batch_len > 1
            || self
                .status
                .queued
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0;
        self.pace.due(busy)
    }

    /// The estimates shown are from before the latest append.
    fn estimates_stale(&self) -> bool {
        self.state.estimates.0.seq < self.state.seq
    }

    /// Stores visit records and print jobs up to the current seq, then wakes the printer agents
    /// (while rebuilding, before the projection writer starts).
    async fn project(&self, batch: Batch) -> Result<(), crate::projection::StoreError> {
        let agents: Vec<_> = batch.jobs.iter().map(|j| j.agent.clone()).collect();
        self.visits
            .record_batch(self.state.config.id.as_str(), Arc::new(batch))
            .await?;
        agents.iter().for_each(|a| self.printers.notify(a));
        Ok(())
    }

    /// Applies events just appended: state, live feed, metrics, visit records, print jobs. The
    /// wait estimates are recomputed once, for the last of them: every view of that seq (replies,
    /// board, phone, printed tickets) shows them.
    ///
    /// `own`: this instance appended them (else another instance did, and this one follows):
    /// only its own events count in its metrics' counters.
    async fn apply_live(&mut self, events: &[Event], own: bool) {
        let site = self.state.config.id.to_string();
        let mut records = Vec::new();
        let mut issued = Vec::new();
        let mut finished = Vec::new();
        let mut copied = Vec::new();
        let live = self.live.receiver_count() > 0;
        for (i, event) in events.iter().enumerate() {
            let changed = self.fold(event);
            if self.shared {
                copied.push((self.state.seq, event.clone()));
            }
            match event {
                Event::TicketIssued { queue, .. } => {
                    if own {
                        self.metrics
                            .tickets_issued
                            .with_label_values(&[site.as_str(), queue.as_str()])
                            .inc();
                    }
                    issued.push((event, self.state.seq));
                }
                Event::TicketCalled { counter, .. } if own => self
                    .metrics
                    .calls
                    .with_label_values(&[site.as_str(), counter.as_str()])
                    .inc(),
                Event::PrinterStateChanged { printer, state, .. } => {
                    self.metrics
                        .observe_printer(&site, printer.as_str(), *state)
                }
                Event::PrintJobFinished { .. } => finished.extend(finished_for(event)),
                _ => {}
            }
            // A rating changes a record already counted when the visit ended.
            if own && !matches!(event, Event::SatisfactionGiven { .. }) {
                changed.iter().for_each(|v| self.metrics.observe_visit(v));
            }
            records.extend(changed);
            if i + 1 == events.len() {
                if self.forecast_due() {
                    self.refresh_estimates(event.at());
                    // A fresh forecast: is a queue's day full now?
                    self.closing_check_due = true;
                }
                let now = self.now();
                if self.state.refresh_reception(now) {
                    self.closing_check_due = true;
                }
            }
            if live {
                let board = self.state.board();
                let public = self.state.public_event(event);
                let _ = self.live.send(live_text(&LiveMessage::Event {
                    seq: self.state.seq,
                    event: &public,
                    board: &board,
                }));
            }
        }
        // Print jobs with the estimates of this seq, each under its own event's seq.
        let jobs: Vec<NewJob> = issued
            .into_iter()
            .filter_map(|(e, seq)| {
                job_for(&self.state, e).map(|mut job| {
                    job.seq = seq;
                    job
                })
            })
            .collect();
        self.metrics.observe_site(&self.state);
        self.tell_watchers();
        self.status.applied.send_replace(self.state.seq);
        let batch = Batch {
            seq: self.state.seq,
            visits: records,
            jobs,
            finished,
            events: copied,
        };
        if !batch.is_empty() {
            if let Some(projector) = &self.projector {
                self.status
                    .sent
                    .store(batch.seq, std::sync::atomic::Ordering::Relaxed);
                projector.send(batch);
            }
        }
    }

    /// Tells the screens and `/readyz` whether the shared log can be written. Coming back, the
    /// log must hold at least what this instance applied: if Redis lost acknowledged events
    /// (restarted without its AOF), this instance refuses commands rather than number tickets
    /// again.
    async fn log_state(&mut self, followed: Followed) {
        let site = &self.state.config.id;
        let was = self.status.log();
        let now = if !followed.connected {
            LogState::Unavailable
        } else if was == LogState::Available || followed.seq >= self.state.seq {
            LogState::Available
        } else {
            // The follower's seq may predate this instance's own latest append: ask the log.
            let mut now = LogState::Unavailable;
            for _ in 0..10 {
                match self.log.last_seq(site).await {
                    Ok(last) if last < self.state.seq => now = LogState::Behind,
                    Ok(_) => now = LogState::Available,
                    // The log's own connection may take a moment longer to come back.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
                break;
            }
            now
        };
        if now == was {
            return;
        }
        match now {
            LogState::Available => tracing::info!(site = %site, "the shared event log is back"),
            LogState::Unavailable => {
                tracing::warn!(site = %site, "the shared event log cannot be reached; commands get 503 until it is back")
            }
            LogState::Behind => tracing::error!(site = %site, seq = self.state.seq, "{BEHIND}"),
        }
        self.status.log.send_replace(now);
    }

    /// Applies every logged event after the current state. Visits ended after `checkpoint` are
    /// stored; with `live`, subscribers see the events too (another instance wrote them).
    async fn catch_up(&mut self, checkpoint: u64, live: bool) -> Result<(), SiteError> {
        let site = self.state.config.id.clone();
        loop {
            let page = self.read_events(self.state.seq, READ_PAGE).await?;
            if page.is_empty() {
                return Ok(());
            }
            let mut batch = Batch::default();
            for (want, stored) in (self.state.seq + 1..).zip(&page) {
                if stored.seq != want {
                    return Err(LogError::Corrupt {
                        site: site.to_string(),
                        seq: stored.seq,
                        reason: format!("expected seq {want}"),
                    }
                    .into());
                }
                if live {
                    continue;
                }
                let changed = self.fold(&stored.event);
                if stored.seq > checkpoint {
                    batch.visits.extend(changed);
                    batch.jobs.extend(job_for(&self.state, &stored.event));
                    batch.finished.extend(finished_for(&stored.event));
                    if self.shared {
                        batch.events.push((stored.seq, stored.event.clone()));
                    }
                }
            }
            if live {
                // Applied together, as a batch of our own would be (one forecast, paced).
                let events: Vec<Event> = page.into_iter().map(|stored| stored.event).collect();
                self.batch_len = events.len();
                self.apply_live(&events, false).await;
                continue;
            }
            if self.state.seq > checkpoint {
                batch.seq = self.state.seq;
                self.project(batch)
                    .await
                    .map_err(|e| SiteError::Unavailable(e.to_string()))?;
            }
        }
    }
}

impl Actor {
    fn phone_text(&self, token: &str) -> PhoneText {
        let view = self.state.phone_view(token);
        let message = match &view {
            Some(view) => PhoneMessage::Ticket { ticket: view },
            None => PhoneMessage::Gone,
        };
        PhoneText {
            text: serde_json::to_string(&message)
                .expect("phone messages serialize")
                .into(),
            gone: view.is_none(),
        }
    }

    fn watch(&mut self, token: String) -> Option<watch::Receiver<PhoneText>> {
        self.state.ticket_by_token(&token)?;
        if let Some(tx) = self.watchers.get(&token) {
            return Some(tx.subscribe());
        }
        let (tx, rx) = watch::channel(self.phone_text(&token));
        self.watchers.insert(token, tx);
        Some(rx)
    }

    /// Sends each followed ticket's view to its phones if it changed; forgets channels nobody
    /// follows any more.
    fn tell_watchers(&mut self) {
        if self.watchers.is_empty() {
            return;
        }
        let mut watchers = std::mem::take(&mut self.watchers);
        watchers.retain(|token, tx| {
            if tx.receiver_count() == 0 {
                return false;
            }
            let text = self.phone_text(token);
            tx.send_if_modified(|current| {
                if *current == text {
                    return false;
                }
                *current = text;
                true
            });
            true
        });
        self.watchers = watchers;
    }
}

/// One command's decision against `state`: its events (stamped with the operator where the
/// command is audited), or, for an issue retried with the same `Idempotency-Key`, the ticket it
/// gave (`Ok(Ok(ticket))`).
fn decide_one(
    state: &SiteState,
    command: &Command,
    by: Option<&Operator>,
    now: Timestamp,
) -> Result<Result<crate::core::TicketId, Vec<Event>>, DomainError> {
    if let Command::Issue(issue) = command {
        let earlier = issue
            .idempotency_key
            .as_ref()
            .and_then(|k| state.idempotency.get(&(issue.dispenser.clone(), k.clone())))
            .and_then(|id| state.tickets.get(id));
        if let Some(t) = earlier {
            // A retry must ask for the same thing; anything else is a client bug.
            let plan = plan_for(&state.config, &issue.plan)?;
            if plan != t.procedures || issue.priority != t.priority || issue.lang != t.lang {
                return Err(DomainError::IdempotencyKeyReused);
            }
            return Ok(Ok(t.id.clone()));
        }
    }
    let mut events = decide(state, command, now)?;
    if let Some(operator) = by.filter(|_| command.is_audited()) {
        events.iter_mut().for_each(|e| e.stamp(operator));
    }
    Ok(Err(events))
}

/// What the follower of a shared log learned; never resolves without a follower (or once it is
/// gone).
async fn log_grew(follow: &mut Option<watch::Receiver<Followed>>) -> Followed {
    if let Some(rx) = follow {
        if rx.changed().await.is_ok() {
            return *rx.borrow_and_update();
        }
        // The follower ended: nothing more to wait for.
        *follow = None;
    }
    std::future::pending().await
}

/// Why a site refuses commands while its instance is ahead of the shared log.
const BEHIND: &str = "the shared event log holds fewer events than this instance applied (Redis lost acknowledged writes): commands are refused; restore Redis from its AOF, or restart this instance once the log is right (docs/DEPLOY.md)";

/// The same unavailability for every command of a batch.
fn unavailable_all(commands: usize, e: impl std::fmt::Display) -> Vec<Result<Applied, SiteError>> {
    let message = e.to_string();
    (0..commands)
        .map(|_| Err(SiteError::Unavailable(message.clone())))
        .collect()
}

fn live_text(message: &LiveMessage<'_>) -> LiveText {
    serde_json::to_string(message)
        .expect("live messages serialize")
        .into()
}

/// Fault injection for tests, in debug builds only: `MADOGUCHI_FAULT_PANIC_ON_CALL=<counter>` makes
/// the first call-next at that counter panic inside the site actor.
#[cfg(debug_assertions)]
mod fault {
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::core::Command;

    static DONE: AtomicBool = AtomicBool::new(false);

    pub(super) fn panic_if_asked(command: &Command) {
        let Command::CallNext { counter } = command else {
            return;
        };
        let asked = std::env::var("MADOGUCHI_FAULT_PANIC_ON_CALL").ok();
        if asked.as_deref() == Some(counter.as_str()) && !DONE.swap(true, Ordering::SeqCst) {
            panic!("fault injected: call-next at counter {counter}");
        }
    }
}
