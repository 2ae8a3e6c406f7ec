//! The embedded backend: one SQLite file in WAL mode. A whole office runs on it with no other
//! service, and analysts can open the file with any SQL tool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{EventLog, LogError, StoredEvent};
use crate::core::{Event, SiteId};

#[derive(Clone)]
pub struct SqliteLog {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

/// Opens a connection with the settings every madoguchi connection uses.
pub(crate) fn open_db(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: an acknowledged command survives a power cut, not only a crash of the process.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

impl SqliteLog {
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let conn = open_db(path).map_err(unavailable)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                site TEXT NOT NULL,
                seq INTEGER NOT NULL,
                at TEXT NOT NULL,
                kind TEXT NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (site, seq)
            ) WITHOUT ROWID;",
        )
        .map_err(unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection off the async runtime.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(unavailable)?
    }
}

fn last_seq(conn: &Connection, site: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE site = ?1",
        [site],
        |r| r.get::<_, i64>(0),
    )
    .map(|v| v as u64)
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(
        &self,
        site: &SiteId,
        expected_seq: u64,
        events: &[Event],
    ) -> Result<u64, LogError> {
        let site = site.to_string();
        let rows: Vec<(String, &'static str, String)> = events
            .iter()
            .map(|e| {
                let body = serde_json::to_string(e).map_err(unavailable)?;
                Ok((e.at().to_rfc3339(), e.kind(), body))
            })
            .collect::<Result<_, LogError>>()?;
        self.with(move |conn| {
            // IMMEDIATE takes the write lock first, so the seq check and the insert are one step
            // even against another process on the same file.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let actual = last_seq(&tx, &site).map_err(unavailable)?;
            if actual != expected_seq {
                return Err(LogError::Conflict {
                    expected: expected_seq,
                    actual,
                });
            }
            let mut seq = expected_seq;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO events (site, seq, at, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(unavailable)?;
                for (at, kind, body) in &rows {
                    seq += 1;
                    insert
                        .execute(params![site, seq as i64, at, kind, body])
                        .map_err(|e| match e.sqlite_error_code() {
                            Some(rusqlite::ErrorCode::ConstraintViolation) => LogError::Conflict {
                                expected: expected_seq,
                                actual: seq,
                            },
                            _ => unavailable(e),
                        })?;
                }
            }
            tx.commit().map_err(unavailable)?;
            Ok(seq)
        })
        .await
    }

    async fn read(
        &self,
        site: &SiteId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, LogError> {
        let site = site.to_string();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, body FROM events WHERE site = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![site, after as i64, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
                })
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, body) = row.map_err(unavailable)?;
                let event = serde_json::from_str(&body).map_err(|e| LogError::Corrupt {
                    site: site.clone(),
                    seq,
                    reason: e.to_string(),
                })?;
                out.push(StoredEvent { seq, event });
            }
            Ok(out)
        })
        .await
    }

    async fn last_seq(&self, site: &SiteId) -> Result<u64, LogError> {
        let site = site.to_string();
        self.with(move |conn| last_seq(conn, &site).map_err(unavailable))
            .await
    }

    async fn ping(&self) -> Result<(), LogError> {
        self.with(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .optional()
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
    }
}
