//! Snapshots of the sites' states beside the event log, so a start replays only what follows the
//! newest one. A snapshot is a cache of a replay: losing one costs a longer start, never a fact.
//!
//! One trait, a backend per log backend (SQLite here: the `snapshots` table of the same file).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::LogError;
use crate::core::{SiteId, SiteSnapshot, SNAPSHOT_FORMAT};

/// Snapshots kept per site: the newest few, in case the newest is ahead of the projections.
pub const KEEP_SNAPSHOTS: usize = 3;

#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// Stores a snapshot of `site` (replacing one at the same seq) and forgets all but the
    /// newest [`KEEP_SNAPSHOTS`].
    async fn save(&self, site: &SiteId, snapshot: SiteSnapshot) -> Result<(), LogError>;

    /// The newest snapshot of `site` in this version's format ([`SNAPSHOT_FORMAT`]) with seq at
    /// most `max_seq`, if any. Fails with [`LogError::Corrupt`] if it cannot be decoded.
    async fn load_latest(
        &self,
        site: &SiteId,
        max_seq: u64,
    ) -> Result<Option<SiteSnapshot>, LogError>;
}

/// Snapshots in the `snapshots` table of the SQLite file, on a connection of their own so a
/// snapshot being written never holds up the log's writer in this process.
#[derive(Clone)]
pub struct SqliteSnapshots {
    conn: Arc<Mutex<Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

impl SqliteSnapshots {
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let conn = super::open_db(path).map_err(unavailable)?;
        // A snapshot lost to a power cut is rebuilt from the log: no need to sync each one.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(unavailable)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS snapshots (
                site TEXT NOT NULL,
                seq INTEGER NOT NULL,
                format INTEGER NOT NULL,
                config_fingerprint TEXT NOT NULL,
                taken_at TEXT NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (site, seq)
            );",
        )
        .map_err(unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        super::on_connection(&self.conn, f)
            .await
            .map_err(unavailable)?
    }
}

#[async_trait]
impl SnapshotStore for SqliteSnapshots {
    async fn save(&self, site: &SiteId, snapshot: SiteSnapshot) -> Result<(), LogError> {
        let site = site.to_string();
        self.with(move |conn| {
            // Serialized here, off the async runtime. The body is the whole snapshot; the
            // columns beside it are for choosing one.
            let body = serde_json::to_string(&snapshot).map_err(unavailable)?;
            let tx = conn.transaction().map_err(unavailable)?;
            tx.execute(
                "INSERT OR REPLACE INTO snapshots (site, seq, format, config_fingerprint, taken_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    site,
                    snapshot.seq as i64,
                    snapshot.format,
                    snapshot.config_fingerprint,
                    chrono::Utc::now().to_rfc3339(),
                    body
                ],
            )
            .map_err(unavailable)?;
            tx.execute(
                "DELETE FROM snapshots WHERE site = ?1 AND seq NOT IN
                 (SELECT seq FROM snapshots WHERE site = ?1 ORDER BY seq DESC LIMIT ?2)",
                params![site, KEEP_SNAPSHOTS as i64],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn load_latest(
        &self,
        site: &SiteId,
        max_seq: u64,
    ) -> Result<Option<SiteSnapshot>, LogError> {
        let site = site.to_string();
        self.with(move |conn| {
            let row = conn
                .query_row(
                    "SELECT seq, body FROM snapshots
                     WHERE site = ?1 AND format = ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT 1",
                    params![site, SNAPSHOT_FORMAT, max_seq.min(i64::MAX as u64) as i64],
                    |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let Some((seq, body)) = row else {
                return Ok(None);
            };
            let snapshot: SiteSnapshot =
                serde_json::from_str(&body).map_err(|e| LogError::Corrupt {
                    site: site.clone(),
                    seq,
                    reason: format!("snapshot: {e}"),
                })?;
            if snapshot.seq != seq || snapshot.format != SNAPSHOT_FORMAT {
                return Err(LogError::Corrupt {
                    site,
                    seq,
                    reason: format!(
                        "snapshot row says seq {seq}, its body seq {} format {}",
                        snapshot.seq, snapshot.format
                    ),
                });
            }
            Ok(Some(snapshot))
        })
        .await
    }
}
