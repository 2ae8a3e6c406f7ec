//! The deliverers: one task per site and subscriber reads the site's log after the subscriber's
//! checkpoint and posts what it asked for, in order, one event at a time.
//!
//! An event is tried until the receiver answers 2xx, with exponential backoff and jitter, at most
//! `max_attempts` times; then it becomes a dead letter and delivery goes on with the next event
//! (so one poisoned event cannot hold up the rest of the day). The checkpoint moves after each
//! event is delivered or given up, so a restart (or SIGKILL) sends at most the event in flight
//! again: receivers dedupe on `Madoguchi-Event-Id`. With several instances on Redis, a site's
//! deliverers run only on the instance holding the site's lease; the checkpoint moves only while
//! it holds it, and another instance takes over when a holder stops renewing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;

use super::store::{DeadLetter as Dead, DeliveryStore};
use super::{kind_of, payload, sign, WebhookConfig, VISIT_COMPLETED};
use crate::core::{Event, SiteId};
use crate::log::{EventLog, StoredEvent};
use crate::projection::ProjectionStore;
use crate::site::SiteHandle;

pub use super::store::DeadLetter;

/// How long a site's lease lasts unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a holder renews it, and how often the others look whether it is free.
const LEASE_EVERY: Duration = Duration::from_secs(2);
/// Events read from the log at once.
const PAGE: usize = 200;
/// After the delivery store or the log failed.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// How long a completed visit's webhook waits for its record to be stored.
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// What the floor board shows of one subscriber.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HookStatus {
    pub name: String,
    /// Where it is sent: scheme, host and port only (a path or query may hold a key).
    pub endpoint: String,
    pub events: Vec<String>,
    /// The seq delivered (or given up) up to.
    pub delivered_seq: u64,
    /// Events of the log after it (of any kind; those not asked for are skipped at once).
    pub behind: u64,
    /// This instance delivers for the site now (with several instances, one does).
    pub active: bool,
    /// The last failed try, while the event in flight is being retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrying: Option<Retrying>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Retrying {
    pub seq: u64,
    pub attempts: u32,
    pub error: String,
}

/// The integrations of every site: their deliverers and what the API asks of them.
#[derive(Clone)]
pub struct Hooks(Arc<Inner>);

struct Inner {
    store: DeliveryStore,
    log: Arc<dyn EventLog>,
    visits: ProjectionStore,
    metrics: crate::metrics::Metrics,
    /// The HTTP client of each subscriber (by site and name): one with the subscriber's own CA
    /// where it has `ca_file`, else the shared one.
    clients: HashMap<(SiteId, String), reqwest::Client>,
    /// Names this instance in the lease.
    holder: String,
    hooks: HashMap<SiteId, Vec<Arc<WebhookConfig>>>,
    /// Per site: whether this instance holds the lease.
    active: Mutex<HashMap<SiteId, bool>>,
    /// Per site and subscriber: the event being retried.
    retrying: Mutex<HashMap<(SiteId, String), Retrying>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// How one event's delivery ended.
enum Outcome {
    Delivered,
    Dead {
        attempts: u32,
        error: String,
    },
    /// The lease went to another instance meanwhile: it delivers from the checkpoint.
    LostLease,
}

impl Hooks {
    pub fn new(
        store: DeliveryStore,
        log: Arc<dyn EventLog>,
        visits: ProjectionStore,
        metrics: crate::metrics::Metrics,
        server_name: &str,
        hooks: HashMap<SiteId, Vec<Arc<WebhookConfig>>>,
    ) -> Self {
        let builder = || {
            reqwest::Client::builder()
                // A redirect is an answer of the receiver's, not a delivery.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("madoguchi/", env!("CARGO_PKG_VERSION")))
        };
        let shared = builder().build().expect("the HTTP client builds");
        let mut clients = HashMap::new();
        for (site, list) in &hooks {
            for hook in list {
                // The configuration checked the file: it holds at least one certificate.
                let client = hook
                    .ca_pem
                    .as_ref()
                    .and_then(|pem| reqwest::Certificate::from_pem_bundle(pem).ok())
                    .and_then(|certs| {
                        certs
                            .into_iter()
                            .fold(builder(), |b, c| b.add_root_certificate(c))
                            .build()
                            .ok()
                    })
                    .unwrap_or_else(|| shared.clone());
                clients.insert((site.clone(), hook.name.clone()), client);
            }
        }
        Self(Arc::new(Inner {
            store,
            log,
            visits,
            metrics,
            clients,
            holder: format!("{server_name}/{}", uuid::Uuid::new_v4()),
            hooks,
            active: Mutex::default(),
            retrying: Mutex::default(),
            tasks: Mutex::default(),
        }))
    }

    pub fn store(&self) -> &DeliveryStore {
        &self.0.store
    }

    /// Whether any site has subscribers.
    pub fn any(&self) -> bool {
        self.0.hooks.values().any(|h| !h.is_empty())
    }

    pub fn of(&self, site: &SiteId) -> &[Arc<WebhookConfig>] {
        self.0.hooks.get(site).map_or(&[], |h| h.as_slice())
    }

    /// Starts a deliverer per subscriber of each site, before the server takes requests. A
    /// subscriber new to the store starts from the end of the log as it is now: it is sent what
    /// happens from now on, not the site's history.
    pub async fn start(&self, sites: &[SiteHandle]) -> Result<(), super::store::StoreError> {
        for site in sites {
            let seq = *site.status().applied_changes().borrow();
            for hook in self.of(&site.config.id) {
                self.0
                    .store
                    .start_at(&site.config.id, &hook.name, seq)
                    .await?;
            }
        }
        let mut tasks = self.0.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for site in sites {
            for hook in self.of(&site.config.id) {
                let inner = self.0.clone();
                let (site, hook) = (site.clone(), hook.clone());
                tasks.push(tokio::spawn(async move { inner.run(site, hook).await }));
            }
        }
        Ok(())
    }

    /// Stops the deliverers (they hold site handles: the sites stop once they are gone) and
    /// gives the leases up, so another instance takes over at once.
    pub async fn stop(&self) {
        let tasks = std::mem::take(&mut *self.0.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        tasks.iter().for_each(|t| t.abort());
        futures_util::future::join_all(tasks).await;
        for site in self.0.hooks.keys() {
            let _ = self.0.store.release(site, &self.0.holder).await;
        }
    }

    /// Each subscriber of `site` with its progress, and the site's last seq.
    pub async fn status(&self, site: &SiteId, last_seq: u64) -> Vec<HookStatus> {
        let active = self
            .0
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
            .copied()
            .unwrap_or(false);
        let mut out = Vec::new();
        for hook in self.of(site) {
            let delivered_seq = self.0.store.checkpoint(site, &hook.name).await.unwrap_or(0);
            let retrying = self
                .0
                .retrying
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(site.clone(), hook.name.clone()))
                .cloned();
            out.push(HookStatus {
                name: hook.name.clone(),
                endpoint: endpoint(&hook.url),
                events: hook.events.clone(),
                delivered_seq,
                behind: last_seq.saturating_sub(delivered_seq),
                active,
                retrying,
            });
        }
        out
    }

    /// Sends a dead letter again, once, now (the floor's "retry now"). `Ok(false)`: there is no
    /// such dead letter; `Err`: the receiver did not take it (it stays a dead letter).
    pub async fn retry_dead(
        &self,
        site: &SiteHandle,
        hook: &str,
        seq: u64,
    ) -> Result<bool, String> {
        let id = &site.config.id;
        let Some(hook) = self.of(id).iter().find(|h| h.name == hook).cloned() else {
            return Ok(false);
        };
        let dead = self
            .0
            .store
            .dead_letters(id)
            .await
            .map_err(|e| e.to_string())?;
        let Some(mut letter) = dead
            .into_iter()
            .find(|d| d.hook == hook.name && d.seq == seq)
        else {
            return Ok(false);
        };
        let event = crate::site::read_events(&*self.0.log, &self.0.visits, id, seq - 1, 1)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .filter(|e| e.seq == seq)
            .ok_or_else(|| format!("event {seq} is no longer in the log"))?;
        let body = self
            .0
            .body(site, &event)
            .await
            .ok_or("not a webhook event")?;
        letter.attempts += 1;
        match self.0.send(id, &hook, &event, &body, letter.attempts).await {
            Ok(()) => {
                self.0.delivered(id, &hook, &event).await;
                self.0
                    .store
                    .remove_dead(id, &hook.name, seq)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(site = %id, hook = %hook.name, seq, "dead letter delivered on retry");
                Ok(true)
            }
            Err(error) => {
                letter.error = error.clone();
                let _ = self.0.store.add_dead(id, &letter).await;
                Err(error)
            }
        }
    }
}

/// A request's error with its causes (a certificate the client does not trust, a refused
/// connection…), without the URL (its path or query may hold a key).
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// `scheme://host[:port]` of a URL, for the floor board.
fn endpoint(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            match u.port() {
                Some(p) => format!("{}://{host}:{p}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        Err(_) => String::new(),
    }
}

impl Inner {
    fn set_active(&self, site: &SiteId, active: bool) {
        let mut map = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let was = map.insert(site.clone(), active);
        if was != Some(active) && self.store.shared() {
            if active {
                tracing::info!(site = %site, "this instance delivers the site's webhooks now");
            } else if was == Some(true) {
                tracing::info!(site = %site, "another instance delivers the site's webhooks now");
            }
        }
    }

    fn set_retrying(&self, site: &SiteId, hook: &str, now: Option<Retrying>) {
        let mut map = self.retrying.lock().unwrap_or_else(|p| p.into_inner());
        let key = (site.clone(), hook.to_owned());
        match now {
            Some(r) => map.insert(key, r),
            None => map.remove(&key),
        };
    }

    /// Holds (or renews) the site's lease; false while another instance holds it.
    async fn hold(&self, site: &SiteId) -> bool {
        let held = match self.store.lease(site, &self.holder, LEASE_TTL).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(site = %site, error = %e, "cannot reach the delivery store");
                false
            }
        };
        self.set_active(site, held);
        held
    }

    async fn run(self: Arc<Self>, site: SiteHandle, hook: Arc<WebhookConfig>) {
        let id = site.config.id.clone();
        let mut applied = site.status().applied_changes();
        loop {
            if !self.hold(&id).await {
                tokio::time::sleep(LEASE_EVERY).await;
                continue;
            }
            let from = match self.store.checkpoint(&id, &hook.name).await {
                Ok(seq) => seq,
                Err(e) => {
                    tracing::warn!(site = %id, hook = %hook.name, error = %e, "cannot read the delivery checkpoint");
                    tokio::time::sleep(STORE_RETRY).await;
                    continue;
                }
            };
            let page = match crate::site::read_events(&*self.log, &self.visits, &id, from, PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(site = %id, hook = %hook.name, error = %e, "cannot read the event log");
                    tokio::time::sleep(STORE_RETRY).await;
                    continue;
                }
            };
            if page.is_empty() {
                // Nothing new: wait for the site to apply more (or renew the lease meanwhile).
                let _ = tokio::time::timeout(LEASE_EVERY, applied.changed()).await;
                continue;
            }
            self.deliver_page(&site, &hook, page).await;
        }
    }

    /// Delivers one page of events in order; returns early if the lease is lost.
    async fn deliver_page(&self, site: &SiteHandle, hook: &WebhookConfig, page: Vec<StoredEvent>) {
        let id = &site.config.id;
        let mut skipped = None;
        let mut held = std::time::Instant::now();
        for event in &page {
            let wanted = kind_of(&event.event).is_some_and(|k| hook.wants(k));
            if !wanted {
                skipped = Some(event.seq);
                continue;
            }
            // A long page must not outlive the lease: renew it as the events go.
            if held.elapsed() >= LEASE_EVERY {
                if !self.hold(id).await {
                    return;
                }
                held = std::time::Instant::now();
            }
            let Some(body) = self.body(site, event).await else {
                skipped = Some(event.seq);
                continue;
            };
            match self.try_until_done(site, hook, event, &body).await {
                Outcome::Delivered => self.delivered(id, hook, event).await,
                Outcome::Dead { attempts, error } => {
                    let letter = Dead {
                        hook: hook.name.clone(),
                        seq: event.seq,
                        kind: kind_of(&event.event).unwrap_or_default().to_owned(),
                        attempts,
                        error: error.clone(),
                        failed_at: chrono::Utc::now().to_rfc3339(),
                    };
                    tracing::warn!(site = %id, hook = %hook.name, seq = event.seq, attempts, error = %error, "webhook given up: a dead letter on the floor board");
                    self.metrics
                        .webhook_deliveries
                        .with_label_values(&[id.as_str(), hook.name.as_str(), "dead"])
                        .inc();
                    while let Err(e) = self.store.add_dead(id, &letter).await {
                        tracing::warn!(site = %id, error = %e, "cannot store a dead letter; trying again");
                        tokio::time::sleep(STORE_RETRY).await;
                    }
                }
                Outcome::LostLease => return,
            }
            if !self.advance(id, hook, event.seq).await {
                return;
            }
            skipped = None;
        }
        if let Some(seq) = skipped {
            self.advance(id, hook, seq).await;
        }
    }

    /// Moves the checkpoint; false if the lease was lost (or the store is away: the page is
    /// read again from the checkpoint).
    async fn advance(&self, site: &SiteId, hook: &WebhookConfig, seq: u64) -> bool {
        match self
            .store
            .advance(site, &hook.name, seq, &self.holder)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                self.set_active(site, false);
                false
            }
            Err(e) => {
                tracing::warn!(site = %site, hook = %hook.name, error = %e, "cannot move the delivery checkpoint");
                tokio::time::sleep(STORE_RETRY).await;
                false
            }
        }
    }

    /// After a completed visit reached a handover subscriber: the KPI counts it.
    async fn delivered(&self, site: &SiteId, hook: &WebhookConfig, event: &StoredEvent) {
        if !(hook.handover && kind_of(&event.event) == Some(VISIT_COMPLETED)) {
            return;
        }
        let Some(ticket) = event.event.ticket() else {
            return;
        };
        let at = event.event.at().timestamp_millis();
        if let Err(e) = self.store.handed_over(site, ticket.as_str(), at).await {
            tracing::warn!(site = %site, error = %e, "cannot record a handover");
        }
    }

    /// The webhook body of a logged event; a completed visit waits for its stored record.
    async fn body(&self, site: &SiteHandle, event: &StoredEvent) -> Option<Vec<u8>> {
        let id = &site.config.id;
        let mut facts = None;
        if let Event::StepCompleted {
            ticket,
            transfer_to: None,
            ..
        } = &event.event
        {
            let mut projected = site.status().projected_changes();
            let _ =
                tokio::time::timeout(RECORD_WAIT, projected.wait_for(|p| *p >= event.seq)).await;
            facts = self
                .visits
                .visit_facts(ticket.as_str())
                .await
                .ok()
                .flatten();
        }
        let value = payload(id, event.seq, &event.event, facts.as_ref())?;
        serde_json::to_vec(&value).ok()
    }

    /// Tries one event until it is delivered, given up, or the lease is lost.
    async fn try_until_done(
        &self,
        site: &SiteHandle,
        hook: &WebhookConfig,
        event: &StoredEvent,
        body: &[u8],
    ) -> Outcome {
        let id = &site.config.id;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The lease is renewed while the request is in flight (a receiver may take up to
            // `timeout_s`, longer than the lease lasts).
            let send = self.send(id, hook, event, body, attempt);
            tokio::pin!(send);
            let sent = loop {
                tokio::select! {
                    sent = &mut send => break sent,
                    _ = tokio::time::sleep(LEASE_EVERY) => {
                        self.hold(id).await;
                    }
                }
            };
            let error = match sent {
                Ok(()) => {
                    self.set_retrying(id, &hook.name, None);
                    return Outcome::Delivered;
                }
                Err(error) => error,
            };
            if attempt >= hook.max_attempts {
                self.set_retrying(id, &hook.name, None);
                return Outcome::Dead {
                    attempts: attempt,
                    error,
                };
            }
            tracing::debug!(site = %id, hook = %hook.name, seq = event.seq, attempt, error = %error, "webhook failed; retrying");
            self.set_retrying(
                id,
                &hook.name,
                Some(Retrying {
                    seq: event.seq,
                    attempts: attempt,
                    error,
                }),
            );
            // Sleep in steps short enough to keep the lease.
            let mut left = hook.backoff(attempt, rand::random::<f64>());
            while !left.is_zero() {
                let step = left.min(LEASE_EVERY);
                tokio::time::sleep(step).await;
                left -= step;
                if !self.hold(id).await {
                    self.set_retrying(id, &hook.name, None);
                    return Outcome::LostLease;
                }
            }
        }
    }

    /// One POST; `Err` says what went wrong (a status, or the connection's error without the URL).
    async fn send(
        &self,
        site: &SiteId,
        hook: &WebhookConfig,
        event: &StoredEvent,
        body: &[u8],
        attempt: u32,
    ) -> Result<(), String> {
        let t = chrono::Utc::now().timestamp();
        let kind = kind_of(&event.event).unwrap_or_default();
        let Some(client) = self.clients.get(&(site.clone(), hook.name.clone())) else {
            return Err("no client for this subscriber".into());
        };
        let sent = client
            .post(&hook.url)
            .timeout(hook.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Madoguchi-Event-Id", event.seq)
            .header("Madoguchi-Event", kind)
            .header("Madoguchi-Site", site.as_str())
            .header("Madoguchi-Delivery-Attempt", attempt)
            .header("Madoguchi-Signature", sign(&hook.secret, t, body))
            .body(body.to_vec())
            .send()
            .await;
        let result = match sent {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
            Err(e) => Err(error_chain(e)),
        };
        let outcome = if result.is_ok() {
            "delivered"
        } else {
            "failed"
        };
        self.metrics
            .webhook_deliveries
            .with_label_values(&[site.as_str(), hook.name.as_str(), outcome])
            .inc();
        result
    }
}
