//! The event log: an append-only sequence of events per site, guarded by the expected last seq
//! so that two writers can never both append after the same event.
//!
//! One trait, several backends, one conformance suite (`tests/log_conformance.rs`). Beside the
//! log, a [`SnapshotStore`] keeps recent snapshots of each site's state (`snapshot.rs`).

mod redis;
mod snapshot;
mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::redis::{redacted, RedisLog, RedisSnapshots, DEFAULT_PREFIX as DEFAULT_REDIS_PREFIX};
pub use snapshot::{SnapshotStore, SqliteSnapshots, KEEP_SNAPSHOTS};
pub use sqlite::SqliteLog;
pub(crate) use sqlite::{event_row, on_connection, open_db, read_rows, EVENTS_TABLE};

use crate::core::{Event, SiteId};

/// The format of the events this version writes. It goes up with a change to `Event` that an
/// older version would read wrongly; during a rolling upgrade the older instances refuse events
/// of a newer format ([`LogError::NewerFormat`]) instead of misreading them.
/// 2: reception (`reception_changed`) and reservations (`reservation_*`, `slot_capacity_set`,
/// `ticket_released`, and a booked ticket's `booked` and `held_until`, which a version 1
/// instance would drop and so misplace the ticket in its line).
/// 3: near-turn notices (`notice_requested`, `notice_withdrawn`, `near_turn_noticed`).
pub const EVENT_FORMAT: u32 = 3;

/// An event with its position in its site's log (1 for the first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: u64,
    pub event: Event,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// Another writer appended first; read what it wrote, decide again and retry.
    #[error("another writer appended first: expected seq {expected}, the log is at {actual}")]
    Conflict { expected: u64, actual: u64 },
    /// The log cannot be read or written right now.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// A stored event was written by a newer version of madoguchi, in a format this one does
    /// not know.
    #[error(
        "event {seq} of site {site} is in event format {format}, newer than this version knows ({EVENT_FORMAT}): upgrade this instance"
    )]
    NewerFormat { site: String, seq: u64, format: u32 },
    /// A stored event cannot be decoded (written by a newer version, or damaged).
    #[error("cannot decode event {seq} of site {site}: {reason}")]
    Corrupt {
        site: String,
        seq: u64,
        reason: String,
    },
}

/// What a follower of a shared log knows: the site's last seq, and whether it can reach the
/// backend now (a seq learned before it went away stays).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Followed {
    pub seq: u64,
    pub connected: bool,
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` after `expected_seq`, all or nothing, and returns the new last seq.
    /// Fails with [`LogError::Conflict`] if the site's log is not at `expected_seq`.
    async fn append(
        &self,
        site: &SiteId,
        expected_seq: u64,
        events: &[Event],
    ) -> Result<u64, LogError>;

    /// Up to `limit` events with seq greater than `after`, in order.
    async fn read(
        &self,
        site: &SiteId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, LogError>;

    /// The seq of the site's last event, 0 if none.
    async fn last_seq(&self, site: &SiteId) -> Result<u64, LogError>;

    /// Whether the backend answers; used by `/readyz`.
    async fn ping(&self) -> Result<(), LogError>;

    /// Follows what other writers append to the site's log: a receiver of the site's last seq
    /// as the backend learns it, which changes when the log grows (by anyone's append; the site
    /// actor reads what it has not applied) and when the backend goes away or comes back. `None`
    /// when no other process appends to this log (the embedded SQLite file has one server).
    fn follow(&self, _site: &SiteId) -> Option<tokio::sync::watch::Receiver<Followed>> {
        None
    }

    /// Several server instances append to this log (it is followed, and each instance keeps a
    /// copy of it beside its projections).
    fn shared(&self) -> bool {
        false
    }
}
