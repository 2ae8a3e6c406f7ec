//! The writer of one site's stored projections (visit records and print jobs): a task of its own
//! beside the site actor. The actor folds each appended event into what it gives the projection
//! and hands the batch over without waiting, so a command answers once its events are in the log.
//!
//! Batches are written in order, each with the seq it brings the projection up to. A failed write
//! keeps its batch and is tried again with backoff (100 ms doubling to 10 s); batches that arrive
//! meanwhile join it, so nothing newer is written before it and the checkpoint only ever passes
//! what was written. The seq written so far is published, for readers that want to see their own
//! writes ([`crate::site::SiteHandle::settled`]) and for snapshots, which only stand for a seq the
//! projection has passed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::core::{PrinterId, SiteId};
use crate::printers::PrinterHub;
use crate::projection::{Batch, ProjectionStore};
use crate::site::SiteStatus;

/// The first wait after a failed write; it doubles up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(100);
const MAX_WAIT: Duration = Duration::from_secs(10);
/// Tries left for what is still unwritten once the actor has stopped: the checkpoint stays
/// behind it, so the next start projects it.
const TRIES_AFTER_STOP: u32 = 3;

/// The sending side, owned by the site actor. Dropping it lets the task write what it holds and
/// end (see [`Projector::finish`]).
pub struct Projector {
    tx: mpsc::UnboundedSender<Batch>,
    task: tokio::task::JoinHandle<()>,
}

impl Projector {
    /// Starts the writer of `site`, whose projection is written up to the status's `projected`.
    pub fn start(
        site: SiteId,
        store: ProjectionStore,
        printers: PrinterHub,
        status: Arc<SiteStatus>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(site, store, printers, status, rx));
        Self { tx, task }
    }

    /// Queues a batch; never waits. Empty batches move the checkpoint (used before a snapshot).
    pub fn send(&self, batch: Batch) {
        // The task ends only after this sender is dropped.
        let _ = self.tx.send(batch);
    }

    /// Lets the writer finish what it holds, waiting at most `limit`.
    pub async fn finish(self, limit: Duration) {
        let Projector { tx, mut task } = self;
        drop(tx);
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}

async fn run(
    site: SiteId,
    store: ProjectionStore,
    printers: PrinterHub,
    status: Arc<SiteStatus>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
) {
    let mut pending: Option<Batch> = None;
    let mut wait = FIRST_WAIT;
    let mut failures = 0u32;
    loop {
        let mut batch = match pending.take() {
            Some(batch) => batch,
            None => match rx.recv().await {
                Some(batch) => batch,
                None => return,
            },
        };
        while let Ok(next) = rx.try_recv() {
            batch.join(next);
        }
        let batch = Arc::new(batch);
        match store.record_batch(site.as_str(), batch.clone()).await {
            Ok(()) => {
                let agents: std::collections::BTreeSet<&PrinterId> =
                    batch.jobs.iter().map(|j| &j.agent).collect();
                agents.into_iter().for_each(|a| printers.notify(a));
                status.projected.send_replace(batch.seq);
                if failures > 0 {
                    tracing::info!(site = %site, seq = batch.seq, failures, "projections caught up");
                    failures = 0;
                    wait = FIRST_WAIT;
                    status.projection_retries.store(0, Relaxed);
                }
            }
            Err(e) => {
                failures += 1;
                status.projection_retries.store(failures as u64, Relaxed);
                pending = Some(Arc::try_unwrap(batch).unwrap_or_else(|b| (*b).clone()));
                if rx.is_closed() && failures >= TRIES_AFTER_STOP {
                    tracing::error!(site = %site, error = %e, "could not store projections before stopping; the next start projects them from the log");
                    return;
                }
                tracing::error!(site = %site, error = %e, retry_in_ms = wait.as_millis() as u64, "could not store projections; will retry");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_WAIT);
            }
        }
    }
}
