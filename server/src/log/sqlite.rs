//! The embedded backend: one SQLite file in WAL mode. A whole office runs on it with no other
//! service, and analysts can open the file with any SQL tool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{EventLog, LogError, StoredEvent};
use crate::core::{Event, SiteId};

/// The embedded event log. Reads share one connection; appends go to one writer thread for the
/// whole file, which commits the appends of every site that are waiting together, in one
/// transaction and one fsync (cross-site group commit): sites never wait in line for each
/// other's fsync, and the file keeps one writer.
#[derive(Clone)]
pub struct SqliteLog {
    reader: Arc<Mutex<Connection>>,
    writer: mpsc::UnboundedSender<Append>,
    path: PathBuf,
}

/// One site's append, waiting for the writer.
struct Append {
    site: String,
    expected_seq: u64,
    /// (at, kind, body) of each event, serialized by the caller.
    rows: Vec<(String, &'static str, String)>,
    reply: oneshot::Sender<Result<u64, LogError>>,
}

/// Appends the writer commits together, at most (a bound on one transaction's size).
const WRITER_MAX: usize = 256;

/// The table of the event log (also the local copy an instance on Redis keeps of the shared
/// log, for analysts, the audit trail and backups).
pub(crate) const EVENTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS events (
    site TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (site, seq)
) WITHOUT ROWID;";

/// An event as a row of `events`: (at, kind, JSON body).
pub(crate) fn event_row(event: &Event) -> Result<(String, &'static str, String), LogError> {
    let body = serde_json::to_string(event).map_err(unavailable)?;
    Ok((event.at().to_rfc3339(), event.kind(), body))
}

/// Up to `limit` events of `site` after `after` from the `events` table of `conn`, in order:
/// the log itself, or an instance's copy of a shared log.
pub(crate) fn read_rows(
    conn: &Connection,
    site: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, LogError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, body FROM events WHERE site = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(
            params![site, after.min(i64::MAX as u64) as i64, limit as i64],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)),
        )
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, body) = row.map_err(unavailable)?;
        let event = serde_json::from_str(&body).map_err(|e| LogError::Corrupt {
            site: site.to_owned(),
            seq,
            reason: e.to_string(),
        })?;
        out.push(StoredEvent { seq, event });
    }
    Ok(out)
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
        conn.execute_batch(EVENTS_TABLE).map_err(unavailable)?;
        let writer_conn = open_db(path).map_err(unavailable)?;
        let (writer, appends) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("madoguchi-log-writer".into())
            .spawn(move || write_loop(writer_conn, appends))
            .map_err(unavailable)?;
        Ok(Self {
            reader: Arc::new(Mutex::new(conn)),
            writer,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the reading connection off the async runtime.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        on_connection(&self.reader, f).await.map_err(unavailable)?
    }
}

/// Runs `f` on a connection shared behind a mutex, in a blocking thread (SQLite calls block):
/// what every SQLite store of the server does for each statement it runs. Fails only if the
/// thread did (a panic in `f`).
pub(crate) async fn on_connection<R: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> R + Send + 'static,
) -> Result<R, tokio::task::JoinError> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    })
    .await
}

/// The writer thread: takes every append waiting, commits them in one transaction, answers each.
/// Ends when the last handle to the log is dropped.
fn write_loop(mut conn: Connection, mut appends: mpsc::UnboundedReceiver<Append>) {
    while let Some(first) = appends.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < WRITER_MAX {
            match appends.try_recv() {
                Ok(append) => batch.push(append),
                Err(_) => break,
            }
        }
        let results = commit_all(&mut conn, &batch);
        for (append, result) in batch.into_iter().zip(results) {
            let _ = append.reply.send(result);
        }
    }
}

/// One transaction for all of `batch`. Each append is checked against its site's last seq
/// before any of its rows is written, under the write lock, so a conflict writes nothing and the
/// others commit; any other failure (the disk) undoes the whole transaction and fails every
/// append in it. No savepoints: they cost a statement each, per append.
fn commit_all(conn: &mut Connection, batch: &[Append]) -> Vec<Result<u64, LogError>> {
    let all_fail = |e: LogError| batch.iter().map(|_| Err(e.clone())).collect();
    // IMMEDIATE takes the write lock first, so the seq checks and the inserts are one step even
    // against another process on the same file.
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return all_fail(unavailable(e)),
    };
    let mut results = Vec::with_capacity(batch.len());
    for append in batch {
        match insert(&tx, append) {
            Err(e @ LogError::Conflict { .. }) => results.push(Err(e)),
            Err(e) => {
                // Rows of this append may be half written: nothing of the batch commits.
                drop(tx);
                return all_fail(e);
            }
            Ok(seq) => results.push(Ok(seq)),
        }
    }
    if let Err(e) = tx.commit() {
        let e = unavailable(e);
        // Nothing was written: what would have been appended fails; a conflict stays one.
        return results
            .into_iter()
            .map(|r| match r {
                Ok(_) => Err(e.clone()),
                other => other,
            })
            .collect();
    }
    results
}

/// Inserts one append's rows after checking the site's log is at its expected seq; on a
/// conflict nothing is written.
fn insert(conn: &Connection, append: &Append) -> Result<u64, LogError> {
    let expected_seq = append.expected_seq;
    let actual = last_seq(conn, &append.site).map_err(unavailable)?;
    if actual != expected_seq {
        return Err(LogError::Conflict {
            expected: expected_seq,
            actual,
        });
    }
    let mut seq = expected_seq;
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO events (site, seq, at, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(unavailable)?;
    for (at, kind, body) in &append.rows {
        seq += 1;
        stmt.execute(params![append.site, seq as i64, at, kind, body])
            .map_err(unavailable)?;
    }
    Ok(seq)
}

fn last_seq(conn: &Connection, site: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events WHERE site = ?1")?
        .query_row([site], |r| r.get::<_, i64>(0))
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
        let rows = events
            .iter()
            .map(event_row)
            .collect::<Result<_, LogError>>()?;
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Append {
                site: site.to_string(),
                expected_seq,
                rows,
                reply,
            })
            .map_err(|_| unavailable("the log writer has stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("the log writer has stopped"))?
    }

    async fn read(
        &self,
        site: &SiteId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, LogError> {
        let site = site.to_string();
        self.with(move |conn| read_rows(conn, &site, after, limit))
            .await
    }

    async fn last_seq(&self, site: &SiteId) -> Result<u64, LogError> {
        let site = site.to_string();
        self.with(move |conn| last_seq(conn, &site).map_err(unavailable))
            .await
    }

    async fn ping(&self) -> Result<(), LogError> {
        if self.writer.is_closed() {
            return Err(unavailable("the log writer has stopped"));
        }
        self.with(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .optional()
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
    }
}
