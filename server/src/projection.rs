//! Projections of the event log kept in the SQLite file: visit records (tables `visits` and
//! `visit_steps`, the stay-time KPI) and print jobs (table `print_jobs`).
//!
//! A checkpoint per site says how far the log has been projected, so a restart re-projects
//! exactly what the log holds beyond it; every write is idempotent.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;

use crate::core::{PrinterId, Target, TicketNumber, Timestamp, VisitRecord, VisitStep};
use madoguchi_wire::{JobOutcome, PrintJob};

/// A print job produced by a `TicketIssued` event.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub agent: PrinterId,
    pub seq: u64,
    pub job: PrintJob,
}

/// A print job an agent finished (a `PrintJobFinished` event).
#[derive(Debug, Clone)]
pub struct FinishedJob {
    pub agent: PrinterId,
    pub job: String,
    pub outcome: JobOutcome,
    pub at: Timestamp,
}

/// What a run of events gives the stored projections: the visit records they ended or changed
/// (in order; a later copy of a visit replaces an earlier one), their print jobs and the jobs
/// they finished, and the seq of the last of those events, where the checkpoint moves.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub seq: u64,
    pub visits: Vec<VisitRecord>,
    pub jobs: Vec<NewJob>,
    pub finished: Vec<FinishedJob>,
    /// The events themselves with their seqs, for an instance on a shared log (Redis): its
    /// local copy of the log's history (`events`), for analysts, the audit trail and backups.
    pub events: Vec<(u64, crate::core::Event)>,
}

impl Batch {
    /// Appends a later batch.
    pub fn join(&mut self, later: Batch) {
        self.seq = self.seq.max(later.seq);
        self.visits.extend(later.visits);
        self.jobs.extend(later.jobs);
        self.finished.extend(later.finished);
        self.events.extend(later.events);
    }

    pub fn is_empty(&self) -> bool {
        self.visits.is_empty()
            && self.jobs.is_empty()
            && self.finished.is_empty()
            && self.events.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("visit store: {0}")]
pub struct StoreError(String);

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// How a job's outcome is stored.
pub fn outcome_name(outcome: JobOutcome) -> &'static str {
    match outcome {
        JobOutcome::Printed => "printed",
        JobOutcome::Expired => "expired",
        JobOutcome::Uncertain => "uncertain",
    }
}

/// Read-only connections at once for the KPI and the CSV export. Requests beyond wait (without
/// a thread) for one to come free.
pub const READERS: usize = 4;

#[derive(Clone)]
pub struct ProjectionStore {
    /// The projection's writer. Only short statements run on it: the site actors wait for it.
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections for long reads (KPI, CSV export), so a reader never holds the
    /// writer's lock; in WAL mode readers and the writer do not block each other.
    readers: Readers,
}

#[derive(Clone)]
struct Readers {
    pool: r2d2::Pool<SqliteConnectionManager>,
    /// One permit per connection, taken before a blocking thread is: waiting is async.
    permits: Arc<Semaphore>,
}

/// Sets its flag when dropped: a read in a blocking thread stops at its next row once the
/// request that asked for it is gone (client went away, response timeout).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Rows between two looks at the cancel flag.
const CANCEL_EVERY: usize = 512;

/// One floor change with who made it (see [`ProjectionStore::audit`]).
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: u64,
    pub event: crate::core::Event,
    /// The ticket's number when its visit has ended (else the site actor knows it).
    pub number: Option<String>,
}

/// Bookings (来庁予約) of a period, for the KPI: those not cancelled, how many checked in (of
/// them past their window), and the no-shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ReservationCounts {
    pub booked: u64,
    pub checked_in: u64,
    /// Checked in past the window (served as walk-ins); counted in `checked_in` too.
    pub late: u64,
    /// The slot ended and nobody checked in.
    pub no_show: u64,
}

/// Which visits a KPI covers.
#[derive(Debug, Clone, Default)]
pub struct KpiFilter {
    /// `None` for every site.
    pub site: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub life_event: Option<String>,
    pub procedure: Option<String>,
}

impl ProjectionStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = crate::log::open_db(path).map_err(err)?;
        // The projection can always be rebuilt from the log; no need to sync every write.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // The log's table: the log itself on SQLite, a copy of the shared log on Redis.
        conn.execute_batch(crate::log::EVENTS_TABLE).map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS visits (
                ticket_id TEXT PRIMARY KEY,
                site TEXT NOT NULL,
                day TEXT NOT NULL,
                number TEXT NOT NULL,
                life_event TEXT,
                procedures TEXT NOT NULL,
                priority INTEGER NOT NULL,
                arrival TEXT NOT NULL,
                departure TEXT NOT NULL,
                arrival_ms INTEGER NOT NULL,
                outcome TEXT NOT NULL,
                cancel_reason TEXT,
                stay_s REAL NOT NULL,
                wait_s REAL NOT NULL,
                service_s REAL NOT NULL,
                steps INTEGER NOT NULL,
                satisfaction INTEGER
            );
            CREATE INDEX IF NOT EXISTS visits_site_arrival ON visits (site, arrival_ms);
            CREATE TABLE IF NOT EXISTS visit_steps (
                ticket_id TEXT NOT NULL,
                step INTEGER NOT NULL,
                queue TEXT,
                for_counter TEXT,
                counter TEXT,
                enqueued_at TEXT NOT NULL,
                called_at TEXT,
                started_at TEXT,
                ended_at TEXT,
                calls INTEGER NOT NULL,
                wait_s REAL NOT NULL,
                service_s REAL NOT NULL,
                PRIMARY KEY (ticket_id, step)
            );
            CREATE TABLE IF NOT EXISTS print_jobs (
                id TEXT PRIMARY KEY,
                agent TEXT NOT NULL,
                site TEXT NOT NULL,
                seq INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                body TEXT NOT NULL,
                outcome TEXT,
                done_at TEXT
            );
            CREATE INDEX IF NOT EXISTS print_jobs_pending ON print_jobs (agent, outcome, seq);
            CREATE TABLE IF NOT EXISTS projection_checkpoints (
                site TEXT PRIMARY KEY,
                seq INTEGER NOT NULL
            );",
        )
        .map_err(err)?;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| c.busy_timeout(std::time::Duration::from_secs(10)));
        let pool = r2d2::Pool::builder()
            .max_size(READERS as u32)
            .min_idle(Some(1))
            .build(manager)
            .map_err(err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            readers: Readers {
                pool,
                permits: Arc::new(Semaphore::new(READERS)),
            },
        })
    }

    /// Runs `f` on a read-only connection of the pool, in a blocking thread. `f` gets a flag
    /// that turns true when the caller stops waiting (its future was dropped).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &AtomicBool) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(err)?;
        let pool = self.readers.pool.clone();
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel = CancelOnDrop(cancelled.clone());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.get().map_err(err)?;
            f(&conn, &cancelled)
        })
        .await
        .map_err(err)?
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        crate::log::on_connection(&self.conn, f)
            .await
            .map_err(err)?
    }

    /// The last seq of `site` whose visits are stored.
    pub async fn checkpoint(&self, site: &str) -> Result<u64, StoreError> {
        let site = site.to_owned();
        self.with(move |conn| {
            conn.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM projection_checkpoints WHERE site = ?1",
                [site],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v as u64)
            .map_err(err)
        })
        .await
    }

    /// Stores visits (replacing earlier copies) and new print jobs (keeping any already there,
    /// with their outcome), and moves the site's checkpoint to `seq`.
    pub async fn record(
        &self,
        site: &str,
        seq: u64,
        visits: Vec<VisitRecord>,
        jobs: Vec<NewJob>,
    ) -> Result<(), StoreError> {
        let batch = Batch {
            seq,
            visits,
            jobs,
            finished: Vec::new(),
            events: Vec::new(),
        };
        self.record_batch(site, Arc::new(batch)).await
    }

    /// [`Self::record`] of a batch the caller keeps (to try again after a failure).
    pub async fn record_batch(&self, site: &str, batch: Arc<Batch>) -> Result<(), StoreError> {
        let site = site.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(err)?;
            for v in &batch.visits {
                write_visit(&tx, v).map_err(err)?;
            }
            for j in &batch.jobs {
                let body = serde_json::to_string(&j.job).map_err(err)?;
                tx.execute(
                    "INSERT OR IGNORE INTO print_jobs (id, agent, site, seq, created_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        j.job.id,
                        j.agent.as_str(),
                        site,
                        j.seq as i64,
                        j.job.issued_at.to_rfc3339(),
                        body
                    ],
                )
                .map_err(err)?;
            }
            for (seq, event) in &batch.events {
                let (at, kind, body) = crate::log::event_row(event).map_err(err)?;
                tx.execute(
                    "INSERT OR IGNORE INTO events (site, seq, at, kind, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![site, *seq as i64, at, kind, body],
                )
                .map_err(err)?;
            }
            // A job finished once stays as it ended (an agent may report it again).
            for f in &batch.finished {
                tx.execute(
                    "UPDATE print_jobs SET outcome = ?1, done_at = ?2
                     WHERE id = ?3 AND agent = ?4 AND outcome IS NULL",
                    params![
                        outcome_name(f.outcome),
                        f.at.to_rfc3339(),
                        f.job,
                        f.agent.as_str()
                    ],
                )
                .map_err(err)?;
            }
            tx.execute(
                "INSERT INTO projection_checkpoints (site, seq) VALUES (?1, ?2)
                 ON CONFLICT (site) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                params![site, batch.seq as i64],
            )
            .map_err(err)?;
            tx.commit().map_err(err)
        })
        .await
    }

    /// Bookings whose slot starts in `[from, to)` at `site` (every site for `None`), as the
    /// log tells them: booked (not cancelled), checked in (late or not) and no-shows (slot
    /// ended before `now`, never checked in). A read of the event log on a reader connection.
    pub async fn reservation_counts(
        &self,
        site: Option<String>,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<ReservationCounts, StoreError> {
        self.read(move |conn, cancelled| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT site, kind, body FROM events
                     WHERE (?1 IS NULL OR site = ?1)
                       AND kind IN ('reservation_made', 'reservation_moved',
                                    'reservation_cancelled', 'ticket_issued')
                       AND (kind != 'ticket_issued' OR json_extract(body, '$.booked') IS NOT NULL)
                     ORDER BY site, seq",
                )
                .map_err(err)?;
            #[derive(Default)]
            struct Booking {
                slot_start: Option<Timestamp>,
                slot_end: Option<Timestamp>,
                cancelled: bool,
                checked_in: Option<bool>,
            }
            let mut bookings: HashMap<(String, String), Booking> = HashMap::new();
            let mut rows = stmt.query(params![site]).map_err(err)?;
            let mut n = 0usize;
            while let Some(row) = rows.next().map_err(err)? {
                let site: String = row.get(0).map_err(err)?;
                let body: String = row.get(2).map_err(err)?;
                let event: crate::core::Event = serde_json::from_str(&body).map_err(err)?;
                use crate::core::Event::*;
                match event {
                    ReservationMade {
                        code,
                        slot_start,
                        slot_end,
                        ..
                    }
                    | ReservationMoved {
                        code,
                        slot_start,
                        slot_end,
                        ..
                    } => {
                        let b = bookings.entry((site, code)).or_default();
                        (b.slot_start, b.slot_end) = (Some(slot_start), Some(slot_end));
                    }
                    ReservationCancelled { code, .. } => {
                        bookings.entry((site, code)).or_default().cancelled = true;
                    }
                    TicketIssued {
                        booked: Some(booked),
                        ..
                    } => {
                        bookings.entry((site, booked.code)).or_default().checked_in =
                            Some(booked.late);
                    }
                    _ => {}
                }
                n += 1;
                if n.is_multiple_of(CANCEL_EVERY) && cancelled.load(Ordering::Relaxed) {
                    return Err(StoreError("the request went away".into()));
                }
            }
            let mut counts = ReservationCounts::default();
            for b in bookings.values() {
                let (Some(start), Some(end)) = (b.slot_start, b.slot_end) else {
                    continue;
                };
                if start < from || start >= to || b.cancelled {
                    continue;
                }
                counts.booked += 1;
                match b.checked_in {
                    Some(late) => {
                        counts.checked_in += 1;
                        counts.late += u64::from(late);
                    }
                    None if end <= now => counts.no_show += 1,
                    None => {}
                }
            }
            Ok(counts)
        })
        .await
    }

    /// The latest floor changes of a site made by a named token, newest first: a read of the
    /// event log itself (the operator is in the events), with each ticket's number where the
    /// visit has ended. On a reader: a long log never holds up the projection.
    pub async fn audit(&self, site: &str, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        let site = site.to_owned();
        self.read(move |conn, _| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT e.seq, e.body, v.number FROM events e
                     LEFT JOIN visits v ON v.ticket_id = json_extract(e.body, '$.ticket')
                     WHERE e.site = ?1
                       AND e.kind IN ('ticket_called', 'ticket_cancelled',
                                      'counter_state_changed', 'profile_changed',
                                      'reception_changed', 'slot_capacity_set')
                       AND json_extract(e.body, '$.by') IS NOT NULL
                     ORDER BY e.seq DESC LIMIT ?2",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![site, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })
                .map_err(err)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, body, number) = row.map_err(err)?;
                let event: crate::core::Event = serde_json::from_str(&body).map_err(err)?;
                out.push(AuditRow {
                    seq: seq as u64,
                    event,
                    number,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Jobs of `agent` not yet finished, oldest first.
    pub async fn pending_jobs(&self, agent: &PrinterId) -> Result<Vec<PrintJob>, StoreError> {
        let agent = agent.to_string();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM print_jobs WHERE agent = ?1 AND outcome IS NULL ORDER BY created_at, seq",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([agent], |r| r.get::<_, String>(0))
                .map_err(err)?;
            let mut jobs = Vec::new();
            for body in rows {
                jobs.push(serde_json::from_str(&body.map_err(err)?).map_err(err)?);
            }
            Ok(jobs)
        })
        .await
    }

    /// Up to `limit` events of `site` after `after` from this file's copy of the log (an
    /// instance on a shared log keeps one; its history where the shared log was trimmed).
    pub async fn copied_events(
        &self,
        site: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::log::StoredEvent>, StoreError> {
        let site = site.to_owned();
        self.with(move |conn| crate::log::read_rows(conn, &site, after, limit).map_err(err))
            .await
    }

    /// The site of `agent`'s job `job` if it is stored and not finished; `None` for a job this
    /// store does not know or that has ended (a report of it again is a duplicate).
    pub async fn unfinished_job_site(
        &self,
        agent: &PrinterId,
        job: &str,
    ) -> Result<Option<String>, StoreError> {
        let (agent, job) = (agent.to_string(), job.to_owned());
        self.with(move |conn| {
            conn.query_row(
                "SELECT site FROM print_jobs WHERE id = ?1 AND agent = ?2 AND outcome IS NULL",
                params![job, agent],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)
        })
        .await
    }

    /// What a completed visit's webhook says of it, from its stored record (`None` before it
    /// is stored).
    pub async fn visit_facts(
        &self,
        ticket: &str,
    ) -> Result<Option<crate::hooks::VisitFacts>, StoreError> {
        let ticket = ticket.to_owned();
        self.read(move |conn, _| {
            let sql = format!("SELECT {VISIT_COLUMNS}, steps FROM visits WHERE ticket_id = ?1");
            let mut stmt = conn.prepare(&sql).map_err(err)?;
            let mut rows = stmt.query([ticket]).map_err(err)?;
            let Some(r) = rows.next().map_err(err)? else {
                return Ok(None);
            };
            let steps = r.get::<_, i64>(15).map_err(err)? as u32;
            let v = read_visit(r).map_err(err)?;
            Ok(Some(crate::hooks::VisitFacts {
                number: v.number.to_string(),
                life_event: v.life_event.map(|l| l.to_string()),
                procedures: v.procedures.iter().map(|p| p.to_string()).collect(),
                arrival: v.arrival.to_rfc3339(),
                departure: v.departure.to_rfc3339(),
                stay_s: v.stay_s,
                wait_s: v.wait_s,
                service_s: v.service_s,
                steps,
            }))
        })
        .await
    }

    /// Folds every ended visit that matches `filter` into `acc`, one record at a time (never
    /// all of them in memory), on a read-only connection of its own, in no particular order.
    /// Steps are read only `with_steps`. Stops with an error if the caller went away.
    pub async fn fold_visits<A: Send + 'static>(
        &self,
        filter: KpiFilter,
        with_steps: bool,
        mut acc: A,
        mut add: impl FnMut(&mut A, &VisitRecord) + Send + 'static,
    ) -> Result<A, StoreError> {
        self.read(move |conn, cancelled| {
            let (clause, args) = filter.sql();
            let sql = format!("SELECT {VISIT_COLUMNS} FROM visits WHERE {clause}");
            let mut stmt = conn.prepare(&sql).map_err(err)?;
            let mut steps_stmt = conn.prepare(STEPS_OF_VISIT).map_err(err)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(args.iter()))
                .map_err(err)?;
            let mut n = 0usize;
            while let Some(r) = rows.next().map_err(err)? {
                let mut v = read_visit(r).map_err(err)?;
                if with_steps {
                    read_steps(&mut steps_stmt, &mut v)?;
                }
                add(&mut acc, &v);
                n += 1;
                if n.is_multiple_of(CANCEL_EVERY) && cancelled.load(Ordering::Relaxed) {
                    return Err(StoreError("the request went away".into()));
                }
            }
            Ok(acc)
        })
        .await
    }

    /// Calls `each` with every visit matching `filter`, by arrival, on a read-only connection of
    /// its own (so a long export never holds up the projection), off the async runtime. Stops
    /// early when `each` returns false, which ends the read transaction.
    pub async fn export_visits(
        &self,
        filter: KpiFilter,
        mut each: impl FnMut(VisitRecord) -> bool + Send + 'static,
    ) -> Result<(), StoreError> {
        self.read(move |conn, _| {
            let (clause, args) = filter.sql();
            let sql = format!(
                "SELECT {VISIT_COLUMNS} FROM visits WHERE {clause} ORDER BY arrival_ms, ticket_id"
            );
            let mut stmt = conn.prepare(&sql).map_err(err)?;
            let mut steps_stmt = conn.prepare(STEPS_OF_VISIT).map_err(err)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(args.iter()))
                .map_err(err)?;
            while let Some(r) = rows.next().map_err(err)? {
                let mut v = read_visit(r).map_err(err)?;
                read_steps(&mut steps_stmt, &mut v)?;
                if !each(v) {
                    break;
                }
            }
            Ok(())
        })
        .await
    }
}

/// The columns [`read_visit`] reads, in its order.
const VISIT_COLUMNS: &str = "ticket_id, site, day, number, life_event, procedures, priority, \
    arrival, departure, outcome, cancel_reason, satisfaction, stay_s, wait_s, service_s";

/// The steps of one visit, for [`read_step`].
const STEPS_OF_VISIT: &str = "SELECT ticket_id, queue, for_counter, counter, enqueued_at, \
    called_at, started_at, ended_at, calls, wait_s, service_s \
    FROM visit_steps WHERE ticket_id = ?1 ORDER BY step";

fn read_steps(stmt: &mut rusqlite::Statement<'_>, v: &mut VisitRecord) -> Result<(), StoreError> {
    let mut steps = stmt.query([v.ticket.as_str()]).map_err(err)?;
    while let Some(s) = steps.next().map_err(err)? {
        v.steps.push(read_step(s).map_err(err)?);
    }
    Ok(())
}

impl KpiFilter {
    /// The WHERE clause over `visits` and its arguments.
    fn sql(&self) -> (String, Vec<rusqlite::types::Value>) {
        let mut clause = String::from("visits.arrival_ms >= ?1 AND visits.arrival_ms < ?2");
        let from = self.from.map_or(i64::MIN, |t| t.timestamp_millis());
        let to = self.to.map_or(i64::MAX, |t| t.timestamp_millis());
        let mut args: Vec<rusqlite::types::Value> = vec![from.into(), to.into()];
        if let Some(site) = &self.site {
            args.push(site.clone().into());
            clause.push_str(&format!(" AND visits.site = ?{}", args.len()));
        }
        if let Some(le) = &self.life_event {
            args.push(le.clone().into());
            clause.push_str(&format!(" AND visits.life_event = ?{}", args.len()));
        }
        if let Some(p) = &self.procedure {
            args.push(p.clone().into());
            clause.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM json_each(visits.procedures) WHERE value = ?{})",
                args.len()
            ));
        }
        (clause, args)
    }
}

fn parse_time(s: Option<String>) -> rusqlite::Result<Option<Timestamp>> {
    s.map(|s| {
        chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| t.to_utc())
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
    })
    .transpose()
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> rusqlite::Result<T> {
    serde_json::from_value(value).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn read_step(r: &rusqlite::Row<'_>) -> rusqlite::Result<VisitStep> {
    let queue: Option<String> = r.get(1)?;
    let for_counter: Option<String> = r.get(2)?;
    let target = match (queue, for_counter) {
        (Some(q), _) => Target::Queue(from_json(q.into())?),
        (None, Some(c)) => Target::Counter(from_json(c.into())?),
        (None, None) => {
            return Err(rusqlite::Error::InvalidColumnType(
                1,
                "queue".into(),
                rusqlite::types::Type::Null,
            ))
        }
    };
    let counter: Option<String> = r.get(3)?;
    Ok(VisitStep {
        target,
        counter: counter.map(|c| from_json(c.into())).transpose()?,
        enqueued_at: parse_time(r.get(4)?)?.expect("NOT NULL column"),
        called_at: parse_time(r.get(5)?)?,
        started_at: parse_time(r.get(6)?)?,
        ended_at: parse_time(r.get(7)?)?,
        calls: r.get(8)?,
        wait_s: r.get(9)?,
        service_s: r.get(10)?,
    })
}

fn read_visit(r: &rusqlite::Row<'_>) -> rusqlite::Result<VisitRecord> {
    let text = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let life_event: Option<String> = r.get(4)?;
    let cancel_reason: Option<String> = r.get(10)?;
    Ok(VisitRecord {
        ticket: from_json(text(0)?.into())?,
        site: text(1)?,
        day: text(2)?.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?,
        number: TicketNumber(text(3)?),
        life_event: life_event.map(|l| from_json(l.into())).transpose()?,
        procedures: serde_json::from_str(&text(5)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
        })?,
        priority: r.get(6)?,
        arrival: parse_time(Some(text(7)?))?.expect("some"),
        departure: parse_time(Some(text(8)?))?.expect("some"),
        outcome: from_json(text(9)?.into())?,
        cancel_reason: cancel_reason.map(|c| from_json(c.into())).transpose()?,
        satisfaction: r.get(11)?,
        stay_s: r.get(12)?,
        wait_s: r.get(13)?,
        service_s: r.get(14)?,
        steps: Vec::new(),
    })
}

fn write_visit(tx: &rusqlite::Transaction<'_>, v: &VisitRecord) -> rusqlite::Result<()> {
    let procedures = serde_json::to_string(&v.procedures).expect("codes serialize");
    let cancel_reason = v
        .cancel_reason
        .map(|r| serde_json::to_value(r).expect("enum serializes"))
        .and_then(|v| v.as_str().map(str::to_owned));
    tx.execute(
        "INSERT OR REPLACE INTO visits (ticket_id, site, day, number, life_event, procedures, priority,
            arrival, departure, arrival_ms, outcome, cancel_reason, stay_s, wait_s, service_s, steps,
            satisfaction)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        params![
            v.ticket.as_str(),
            v.site,
            v.day.to_string(),
            v.number.0,
            v.life_event.as_ref().map(|l| l.as_str()),
            procedures,
            v.priority,
            v.arrival.to_rfc3339(),
            v.departure.to_rfc3339(),
            v.arrival.timestamp_millis(),
            v.outcome.as_str(),
            cancel_reason,
            v.stay_s,
            v.wait_s,
            v.service_s,
            v.steps.len() as i64,
            v.satisfaction,
        ],
    )?;
    tx.execute(
        "DELETE FROM visit_steps WHERE ticket_id = ?1",
        [v.ticket.as_str()],
    )?;
    let ts = |t: Option<Timestamp>| t.map(|t| t.to_rfc3339());
    for (i, s) in v.steps.iter().enumerate() {
        let (queue, for_counter) = match &s.target {
            Target::Queue(q) => (Some(q.as_str()), None),
            Target::Counter(c) => (None, Some(c.as_str())),
        };
        tx.execute(
            "INSERT INTO visit_steps (ticket_id, step, queue, for_counter, counter, enqueued_at,
                called_at, started_at, ended_at, calls, wait_s, service_s)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                v.ticket.as_str(),
                i as i64 + 1,
                queue,
                for_counter,
                s.counter.as_ref().map(|c| c.as_str()),
                s.enqueued_at.to_rfc3339(),
                ts(s.called_at),
                ts(s.started_at),
                ts(s.ended_at),
                s.calls,
                s.wait_s,
                s.service_s,
            ],
        )?;
    }
    Ok(())
}
