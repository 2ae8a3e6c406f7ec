//! Maintenance commands of the `madoguchi` binary: `backup` (a consistent copy of the SQLite file
//! while the server runs) and `verify` (the projections checked against a replay of the event log).
//!
//! Both work on the file alone, beside a running server: `backup` reads it with SQLite's online
//! backup API, `verify` reads it on a read-only connection inside one read transaction, so either
//! sees one consistent state of the file and neither holds up the server's writes (WAL mode).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::config::{Config, SiteConfig};
use crate::core::{business_day, Event, SiteState, VisitRecord};
use crate::printers::job_for;
use crate::projection::NewJob;

/// Pages copied per step of a backup (4 MiB with SQLite's default 4 KiB pages).
pub const PAGES_PER_STEP: i32 = 1024;
/// The pause between two steps, in which the server's writes go ahead.
pub const STEP_PAUSE: Duration = Duration::from_millis(5);
/// After this many restarts (the server wrote between two steps) the rest of the copy is one step.
pub const MAX_RESTARTS: u32 = 3;
/// A backup that cannot take its read lock for this long gives up.
const BUSY_LIMIT: Duration = Duration::from_secs(60);
/// Mismatch lines printed per site by `verify`; the rest are counted.
pub const MAX_LINES: usize = 20;
/// Stay, wait and service times may differ by this much (seconds): the records keep milliseconds.
const TOLERANCE_S: f64 = 0.001 + 1e-9;
/// The tables of a madoguchi database.
const TABLES: [&str; 5] = [
    "events",
    "visits",
    "visit_steps",
    "print_jobs",
    "projection_checkpoints",
];

/// Why a maintenance command could not do its job (exit code 2). Japanese first, English beside.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("データベースがありません / no database at {}", .0.display())]
    NoDatabase(PathBuf),
    #[error("{} は既にあります（上書きするには --force）/ {} already exists (use --force to overwrite it)", .0.display(), .0.display())]
    Exists(PathBuf),
    #[error("バックアップ先がデータベースそのものです / the backup file is the database itself: {}", .0.display())]
    SameFile(PathBuf),
    #[error("madoguchi のデータベースではありません / not a madoguchi database: {} (no table {missing})", .path.display())]
    NotMadoguchi { path: PathBuf, missing: String },
    #[error("サイト {0} はイベントログにありますが設定にありません / site {0} is in the event log but not in the configuration (use --config)")]
    UnknownSite(String),
    #[error("{ja} / {en}: {}: {source}", .path.display())]
    Sqlite {
        ja: &'static str,
        en: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{ja} / {en}: {}: {source}", .path.display())]
    Io {
        ja: &'static str,
        en: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("データベースが {}秒間ロックされたままです / the database stayed locked for {} s: {}", BUSY_LIMIT.as_secs(), BUSY_LIMIT.as_secs(), .0.display())]
    Busy(PathBuf),
}

type Result<T, E = MaintenanceError> = std::result::Result<T, E>;

fn sql(
    ja: &'static str,
    en: &'static str,
    path: &Path,
) -> impl FnOnce(rusqlite::Error) -> MaintenanceError {
    let path = path.to_owned();
    move |source| MaintenanceError::Sqlite {
        ja,
        en,
        path,
        source,
    }
}

fn io(
    ja: &'static str,
    en: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> MaintenanceError {
    let path = path.to_owned();
    move |source| MaintenanceError::Io {
        ja,
        en,
        path,
        source,
    }
}

fn read_error(path: &Path) -> impl FnOnce(rusqlite::Error) -> MaintenanceError {
    sql("データベースを読めません", "cannot read the database", path)
}

/// Opens an existing database without writing to it.
fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(MaintenanceError::NoDatabase(path.to_owned()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(
        "データベースを開けません",
        "cannot open the database",
        path,
    ))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(read_error(path))?;
    Ok(conn)
}

/// Fails unless the file holds every table of a madoguchi database.
fn check_tables(conn: &Connection, path: &Path) -> Result<()> {
    for table in TABLES {
        let found: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(read_error(path))?;
        if found == 0 {
            return Err(MaintenanceError::NotMadoguchi {
                path: path.to_owned(),
                missing: table.to_owned(),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// backup

/// What a backup copied.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub path: PathBuf,
    pub bytes: u64,
    pub pages: i64,
    pub steps: u32,
    /// How often the copy started again because the server wrote between two steps.
    pub restarts: u32,
    pub sites: Vec<SiteCounts>,
    pub visits: u64,
    pub print_jobs: u64,
    pub elapsed: Duration,
}

/// One site's share of a backup.
#[derive(Debug, Clone)]
pub struct SiteCounts {
    pub site: String,
    pub events: u64,
    pub last_seq: u64,
    pub visits: u64,
}

impl BackupSummary {
    pub fn events(&self) -> u64 {
        self.sites.iter().map(|s| s.events).sum()
    }
}

impl fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "バックアップを作成しました / backup written: {}",
            self.path.display()
        )?;
        writeln!(
            f,
            "  {} events, {} visits, {} print jobs, {} bytes ({} pages in {} steps, {} restarts, {:.1} s)",
            self.events(),
            self.visits,
            self.print_jobs,
            self.bytes,
            self.pages,
            self.steps,
            self.restarts,
            self.elapsed.as_secs_f64()
        )?;
        for s in &self.sites {
            writeln!(
                f,
                "  site {}: {} events (last seq {}), {} visits",
                s.site, s.events, s.last_seq, s.visits
            )?;
        }
        Ok(())
    }
}

/// Removes a half-written file unless disarmed.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(&path);
            let mut journal = path.into_os_string();
            journal.push("-journal");
            let _ = std::fs::remove_file(journal);
        }
    }
}

/// Copies the database at `source` into `dest` with SQLite's online backup API, while a server
/// may be writing to it: [`PAGES_PER_STEP`] pages at a time with a short pause between steps, so
/// the server's writes go ahead. If the server writes during the copy SQLite starts it again;
/// after [`MAX_RESTARTS`] restarts the rest is copied in one step, which in WAL mode holds only a
/// read snapshot and still never blocks a write.
///
/// The copy is written beside `dest` and renamed into place when complete, so `dest` is never a
/// half backup; it is one self-contained file (rollback journal mode, no `-wal`). An existing
/// `dest` is refused unless `force`.
pub fn backup(source: &Path, dest: &Path, force: bool) -> Result<BackupSummary> {
    let started = Instant::now();
    if dest.is_dir() {
        return Err(MaintenanceError::Io {
            ja: "バックアップ先はフォルダです",
            en: "the backup target is a directory",
            path: dest.to_owned(),
            source: std::io::ErrorKind::IsADirectory.into(),
        });
    }
    let folder = dest.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(folder) = folder.filter(|f| !f.is_dir()) {
        return Err(MaintenanceError::Io {
            ja: "バックアップ先のフォルダがありません",
            en: "the backup's folder does not exist",
            path: folder.to_owned(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    if dest.exists() {
        if !force {
            return Err(MaintenanceError::Exists(dest.to_owned()));
        }
        if let (Ok(a), Ok(b)) = (source.canonicalize(), dest.canonicalize()) {
            if a == b {
                return Err(MaintenanceError::SameFile(dest.to_owned()));
            }
        }
    }
    let src = open_read_only(source)?;
    check_tables(&src, source)?;

    let mut partial_name = dest
        .file_name()
        .ok_or_else(|| MaintenanceError::Io {
            ja: "バックアップ先がファイル名ではありません",
            en: "the backup target is not a file name",
            path: dest.to_owned(),
            source: std::io::ErrorKind::InvalidInput.into(),
        })?
        .to_owned();
    partial_name.push(format!(".partial-{}", std::process::id()));
    let partial = dest.with_file_name(partial_name);
    let mut guard = Partial(Some(partial.clone()));
    let _ = std::fs::remove_file(&partial);

    let write_error = || {
        sql(
            "バックアップを書けません",
            "cannot write the backup",
            &partial,
        )
    };
    let mut dst = Connection::open(&partial).map_err(write_error())?;
    // The file is synced once, whole, before it is renamed into place: no need for SQLite's own
    // syncs on the way (a copy cut short is removed anyway).
    dst.pragma_update(None, "synchronous", "OFF")
        .map_err(write_error())?;
    let (pages, steps, restarts) = {
        let copy = Backup::new(&src, &mut dst).map_err(write_error())?;
        let mut steps = 0u32;
        let mut restarts = 0u32;
        let mut done_before = 0i64;
        let mut busy_since: Option<Instant> = None;
        loop {
            let pages = if restarts >= MAX_RESTARTS {
                -1
            } else {
                PAGES_PER_STEP
            };
            let result = copy.step(pages).map_err(sql(
                "バックアップに失敗しました",
                "the backup failed",
                source,
            ))?;
            steps += 1;
            let progress = copy.progress();
            match result {
                StepResult::Done => break (i64::from(progress.pagecount), steps, restarts),
                StepResult::Busy | StepResult::Locked => {
                    let since = *busy_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > BUSY_LIMIT {
                        return Err(MaintenanceError::Busy(source.to_owned()));
                    }
                }
                _ => {
                    busy_since = None;
                    let done = i64::from(progress.pagecount) - i64::from(progress.remaining);
                    // No headway: the server wrote since the last step and the copy began again.
                    if done <= done_before {
                        restarts += 1;
                    }
                    done_before = done;
                }
            }
            std::thread::sleep(STEP_PAUSE);
        }
    };
    // One file to keep and copy: no `-wal` beside it. The server sets WAL again when it opens it.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(write_error())?;
    let (sites, visits, print_jobs) = counts(&dst).map_err(write_error())?;
    dst.close().map_err(|(_, e)| write_error()(e))?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io(
            "バックアップを書けません",
            "cannot write the backup",
            &partial,
        ))?;
    if !force && dest.exists() {
        return Err(MaintenanceError::Exists(dest.to_owned()));
    }
    std::fs::rename(&partial, dest).map_err(io(
        "バックアップを置けません",
        "cannot move the backup into place",
        dest,
    ))?;
    guard.0 = None;
    // The rename survives a power cut only once the directory is synced.
    let _ = std::fs::File::open(folder.unwrap_or(Path::new("."))).and_then(|d| d.sync_all());
    let bytes = std::fs::metadata(dest)
        .map_err(io(
            "バックアップを読めません",
            "cannot read the backup",
            dest,
        ))?
        .len();
    Ok(BackupSummary {
        path: dest.to_owned(),
        bytes,
        pages,
        steps,
        restarts,
        sites,
        visits,
        print_jobs,
        elapsed: started.elapsed(),
    })
}

fn counts(conn: &Connection) -> rusqlite::Result<(Vec<SiteCounts>, u64, u64)> {
    let mut visits_by_site: HashMap<String, u64> = HashMap::new();
    {
        let mut stmt = conn.prepare("SELECT site, COUNT(*) FROM visits GROUP BY site")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (site, n) = row?;
            visits_by_site.insert(site, n as u64);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT site, COUNT(*), COALESCE(MAX(seq), 0) FROM events GROUP BY site ORDER BY site",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut sites = Vec::new();
    for row in rows {
        let (site, events, last_seq) = row?;
        sites.push(SiteCounts {
            visits: visits_by_site.get(&site).copied().unwrap_or(0),
            site,
            events: events as u64,
            last_seq: last_seq as u64,
        });
    }
    let visits = conn.query_row("SELECT COUNT(*) FROM visits", [], |r| r.get::<_, i64>(0))? as u64;
    let jobs = conn.query_row("SELECT COUNT(*) FROM print_jobs", [], |r| {
        r.get::<_, i64>(0)
    })? as u64;
    Ok((sites, visits, jobs))
}

// ---------------------------------------------------------------------------------------------
// verify

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub path: PathBuf,
    /// What `PRAGMA integrity_check` said when it was not `ok`.
    pub integrity: Vec<String>,
    pub sites: Vec<SiteReport>,
    /// Rows that belong to no configured site, steps without their visit.
    pub other: Vec<String>,
}

/// One site's checks.
#[derive(Debug, Clone, Default)]
pub struct SiteReport {
    pub site: String,
    pub name: String,
    pub events: u64,
    pub last_seq: u64,
    /// How far the projections say they have written.
    pub checkpoint: u64,
    pub visits_checked: usize,
    pub jobs_checked: usize,
    /// Visits and print jobs of events after the checkpoint: not written yet (the server writes
    /// them at its next start, or as soon as its projection catches up). Not a mismatch.
    pub pending_visits: usize,
    pub pending_jobs: usize,
    /// False when the log could not be replayed to its end (a gap, an undecodable event).
    pub replayed: bool,
    pub mismatches: Vec<String>,
}

impl VerifyReport {
    pub fn mismatches(&self) -> usize {
        self.integrity.len()
            + self.other.len()
            + self.sites.iter().map(|s| s.mismatches.len()).sum::<usize>()
    }

    pub fn ok(&self) -> bool {
        self.mismatches() == 0
    }
}

fn capped(f: &mut fmt::Formatter<'_>, lines: &[String]) -> fmt::Result {
    for line in lines.iter().take(MAX_LINES) {
        writeln!(f, "    不一致 / mismatch: {line}")?;
    }
    if lines.len() > MAX_LINES {
        writeln!(
            f,
            "    … ほか {} 件 / and {} more",
            lines.len() - MAX_LINES,
            lines.len() - MAX_LINES
        )?;
    }
    Ok(())
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "madoguchi verify: {}", self.path.display())?;
        if self.integrity.is_empty() {
            writeln!(f, "  integrity_check: ok")?;
        } else {
            writeln!(f, "  integrity_check:")?;
            capped(f, &self.integrity)?;
        }
        for s in &self.sites {
            writeln!(
                f,
                "  site {} ({}): {} events, seq 1–{}{}, checkpoint {}; {} visits checked, {} print jobs checked",
                s.site,
                s.name,
                s.events,
                s.last_seq,
                if s.replayed { " replayed" } else { " NOT replayed to the end" },
                s.checkpoint,
                s.visits_checked,
                s.jobs_checked,
            )?;
            if s.pending_visits + s.pending_jobs > 0 {
                writeln!(
                    f,
                    "    未反映 / not projected yet: {} visits, {} print jobs of events after seq {} (written when the server catches up or starts)",
                    s.pending_visits, s.pending_jobs, s.checkpoint
                )?;
            }
            capped(f, &s.mismatches)?;
        }
        if !self.other.is_empty() {
            writeln!(f, "  other rows:")?;
            capped(f, &self.other)?;
        }
        if self.ok() {
            writeln!(f, "一致 / OK: every projection matches the event log")
        } else {
            writeln!(
                f,
                "不一致 {} 件 / {} mismatch(es): the projections do not match the event log",
                self.mismatches(),
                self.mismatches()
            )
        }
    }
}

/// A ticket as the replay knows it: for the labels of mismatches.
#[derive(Clone)]
struct Known {
    seq: u64,
    label: String,
}

fn label(number: &str, day: impl fmt::Display) -> String {
    format!("番号 {number} ({day})")
}

fn differs(a: f64, b: f64) -> bool {
    (a - b).abs() > TOLERANCE_S
}

/// Replays every site's event log through the core and checks the projections against it.
///
/// Per site, the visit records and print jobs the replay produces up to the projection
/// checkpoint must be exactly the rows of `visits` and `print_jobs` (outcome, stay, wait and
/// service seconds within 1 ms, number, satisfaction, steps; one print job per ticket issued at
/// a dispenser with a printer agent, with its agent and seq); seq numbers run from 1 without a
/// gap; the checkpoint is not ahead of the log. Also `PRAGMA integrity_check`. Events after the
/// checkpoint are counted as not projected yet: the server writes them when it catches up.
///
/// Reads in one transaction on a read-only connection, so it sees one state of a file a server
/// is writing to.
pub fn verify(path: &Path, config: &Config) -> Result<VerifyReport> {
    let conn = open_read_only(path)?;
    // One read transaction: every query below sees the same state of the file.
    conn.execute_batch("BEGIN").map_err(read_error(path))?;
    check_tables(&conn, path)?;
    let mut integrity = Vec::new();
    {
        let mut stmt = conn
            .prepare("PRAGMA integrity_check")
            .map_err(read_error(path))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(read_error(path))?;
        for row in rows {
            let line = row.map_err(read_error(path))?;
            if line != "ok" {
                integrity.push(line);
            }
        }
    }
    let configured: HashSet<&str> = config.sites.iter().map(|s| s.id.as_str()).collect();
    let logged: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT DISTINCT site FROM events ORDER BY site")
            .map_err(read_error(path))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(read_error(path))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(read_error(path))?
    };
    if let Some(unknown) = logged.iter().find(|s| !configured.contains(s.as_str())) {
        return Err(MaintenanceError::UnknownSite(unknown.clone()));
    }
    let mut sites = Vec::new();
    for site in &config.sites {
        sites.push(verify_site(&conn, site).map_err(read_error(path))?);
    }
    let other = other_rows(&conn, &configured).map_err(read_error(path))?;
    conn.execute_batch("COMMIT").map_err(read_error(path))?;
    Ok(VerifyReport {
        path: path.to_owned(),
        integrity,
        sites,
        other,
    })
}

fn verify_site(
    conn: &Connection,
    config: &std::sync::Arc<SiteConfig>,
) -> rusqlite::Result<SiteReport> {
    let site = config.id.as_str();
    let mut report = SiteReport {
        site: site.to_owned(),
        name: config.name.ja.clone(),
        replayed: true,
        ..SiteReport::default()
    };
    let (events, last_seq) = conn.query_row(
        "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM events WHERE site = ?1",
        [site],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )?;
    report.events = events;
    report.last_seq = last_seq;
    report.checkpoint = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM projection_checkpoints WHERE site = ?1",
        [site],
        |r| r.get::<_, i64>(0),
    )? as u64;
    // (seq, what) so the lines come out in the order of the log.
    let mut mismatches: Vec<(u64, String)> = Vec::new();
    if report.checkpoint > last_seq {
        mismatches.push((
            0,
            format!(
                "チェックポイントがログより先 / the projection checkpoint {} is ahead of the log (last seq {})",
                report.checkpoint, last_seq
            ),
        ));
    }

    // The replay: the same fold as the site actor (`site.rs`, `Actor::fold` and `catch_up`).
    let mut state = SiteState::new(config.clone());
    let mut expected: HashMap<String, VisitRecord> = HashMap::new();
    let mut expected_jobs: BTreeMap<String, NewJob> = BTreeMap::new();
    let mut pending_visits: HashSet<String> = HashSet::new();
    let mut pending_jobs: HashSet<String> = HashSet::new();
    let mut known: HashMap<String, Known> = HashMap::new();
    {
        let mut stmt = conn.prepare("SELECT seq, body FROM events WHERE site = ?1 ORDER BY seq")?;
        let mut rows = stmt.query([site])?;
        while let Some(row) = rows.next()? {
            let seq = row.get::<_, i64>(0)? as u64;
            let body: String = row.get(1)?;
            if seq != state.seq + 1 {
                mismatches.push((
                    seq,
                    format!(
                        "seq が連続していません / seq gap: expected {}, found {seq}; the replay stops here",
                        state.seq + 1
                    ),
                ));
                report.replayed = false;
                break;
            }
            let event: Event = match serde_json::from_str(&body) {
                Ok(e) => e,
                Err(e) => {
                    mismatches.push((
                        seq,
                        format!("イベントを読めません / event {seq} cannot be decoded: {e}; the replay stops here"),
                    ));
                    report.replayed = false;
                    break;
                }
            };
            let applied =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.apply(&event)));
            let changed = match applied {
                Ok(changed) => changed,
                Err(_) => {
                    mismatches.push((
                        seq,
                        format!("イベントを適用できません / event {seq} ({}) cannot be applied to the state before it; the replay stops here", event.kind()),
                    ));
                    report.replayed = false;
                    break;
                }
            };
            if let Event::TicketIssued {
                ticket, number, at, ..
            } = &event
            {
                known.insert(
                    ticket.as_str().to_owned(),
                    Known {
                        seq,
                        label: label(&number.0, business_day(config, *at)),
                    },
                );
            }
            let records = changed
                .iter()
                .filter_map(|t| VisitRecord::from_ticket(config, t));
            let job = job_for(&state, &event);
            if seq <= report.checkpoint {
                for record in records {
                    expected.insert(record.ticket.as_str().to_owned(), record);
                }
                if let Some(job) = job {
                    expected_jobs.insert(job.job.id.clone(), job);
                }
            } else {
                pending_visits.extend(records.map(|r| r.ticket.as_str().to_owned()));
                pending_jobs.extend(job.map(|j| j.job.id));
            }
        }
    }
    report.pending_visits = pending_visits.len();
    report.pending_jobs = pending_jobs.len();
    if !report.replayed {
        mismatches.push((
            u64::MAX,
            "ログを最後まで再生できないため投影は照合していません / projections not checked: the log could not be replayed to its end".into(),
        ));
        report.mismatches = sorted(mismatches);
        return Ok(report);
    }
    let known_of = |id: &str| known.get(id).cloned();

    // Visits.
    let mut steps: HashMap<String, i64> = HashMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT s.ticket_id, COUNT(*) FROM visit_steps s JOIN visits v ON v.ticket_id = s.ticket_id
             WHERE v.site = ?1 GROUP BY s.ticket_id",
        )?;
        let rows = stmt.query_map([site], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (id, n) = row?;
            steps.insert(id, n);
        }
    }
    {
        let mut stmt = conn.prepare(
            "SELECT ticket_id, number, day, outcome, stay_s, wait_s, service_s, satisfaction, steps
             FROM visits WHERE site = ?1 ORDER BY arrival_ms, ticket_id",
        )?;
        let mut rows = stmt.query([site])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let number: String = r.get(1)?;
            let day: String = r.get(2)?;
            let outcome: String = r.get(3)?;
            let stay: f64 = r.get(4)?;
            let wait: f64 = r.get(5)?;
            let service: f64 = r.get(6)?;
            let satisfaction: Option<i64> = r.get(7)?;
            let step_count: i64 = r.get(8)?;
            let (seq, name) = known_of(&id)
                .map(|k| (k.seq, k.label))
                .unwrap_or_else(|| (0, label(&number, &day)));
            let Some(v) = expected.remove(&id) else {
                let why = if pending_visits.contains(&id) {
                    "ended after the checkpoint but already stored"
                } else {
                    "no such ended visit in the event log"
                };
                mismatches.push((
                    seq,
                    format!("{name}: visits にだけある訪問 / visit in visits only: {why}"),
                ));
                continue;
            };
            report.visits_checked += 1;
            let mut diffs = Vec::new();
            if outcome != v.outcome.as_str() {
                diffs.push(format!("outcome {outcome} (log: {})", v.outcome.as_str()));
            }
            for (what, stored, replayed) in [
                ("stay_s", stay, v.stay_s),
                ("wait_s", wait, v.wait_s),
                ("service_s", service, v.service_s),
            ] {
                if differs(stored, replayed) {
                    diffs.push(format!("{what} {stored:.3} (log: {replayed:.3})"));
                }
            }
            if number != v.number.0 {
                diffs.push(format!("number {number} (log: {})", v.number.0));
            }
            let rated = v.satisfaction.map(i64::from);
            if satisfaction != rated {
                diffs.push(format!(
                    "satisfaction {} (log: {})",
                    satisfaction.map_or("none".into(), |s| s.to_string()),
                    rated.map_or("none".into(), |s| s.to_string())
                ));
            }
            let stored_steps = steps.get(&id).copied().unwrap_or(0);
            if step_count != v.steps.len() as i64 || stored_steps != v.steps.len() as i64 {
                diffs.push(format!(
                    "steps {step_count} with {stored_steps} rows of visit_steps (log: {})",
                    v.steps.len()
                ));
            }
            if !diffs.is_empty() {
                mismatches.push((
                    seq,
                    format!(
                        "{name}: 訪問記録が違います / visit differs: {}",
                        diffs.join(", ")
                    ),
                ));
            }
        }
    }
    for (id, v) in &expected {
        let (seq, name) = known_of(id)
            .map(|k| (k.seq, k.label))
            .unwrap_or_else(|| (0, label(&v.number.0, v.day)));
        mismatches.push((
            seq,
            format!(
                "{name}: 訪問記録がありません / visit missing from visits ({}, stay {:.3} s)",
                v.outcome.as_str(),
                v.stay_s
            ),
        ));
    }

    // Print jobs.
    {
        let mut stmt = conn
            .prepare("SELECT id, agent, seq, body FROM print_jobs WHERE site = ?1 ORDER BY seq")?;
        let mut rows = stmt.query([site])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let agent: String = r.get(1)?;
            let seq: u64 = r.get::<_, i64>(2)? as u64;
            let body: String = r.get(3)?;
            let number = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|b| b.get("number").and_then(|n| n.as_str()).map(str::to_owned));
            let name = known_of(&id)
                .map_or_else(|| label(number.as_deref().unwrap_or("?"), "?"), |k| k.label);
            let Some(job) = expected_jobs.remove(&id) else {
                let why = if pending_jobs.contains(&id) {
                    "issued after the checkpoint but already stored"
                } else {
                    "no such ticket issued at a dispenser with a printer in the event log"
                };
                mismatches.push((seq, format!("{name}: print_jobs にだけある印刷ジョブ / print job in print_jobs only: {why}")));
                continue;
            };
            report.jobs_checked += 1;
            let mut diffs = Vec::new();
            if agent != job.agent.as_str() {
                diffs.push(format!("agent {agent} (log: {})", job.agent.as_str()));
            }
            if seq != job.seq {
                diffs.push(format!("seq {seq} (log: {})", job.seq));
            }
            if number.as_deref() != Some(job.job.number.as_str()) {
                diffs.push(format!(
                    "number {} (log: {})",
                    number.as_deref().unwrap_or("?"),
                    job.job.number
                ));
            }
            if !diffs.is_empty() {
                mismatches.push((
                    job.seq,
                    format!(
                        "{name}: 印刷ジョブが違います / print job differs: {}",
                        diffs.join(", ")
                    ),
                ));
            }
        }
    }
    for (id, job) in &expected_jobs {
        let name = known_of(id).map_or_else(|| label(&job.job.number, "?"), |k| k.label);
        mismatches.push((
            job.seq,
            format!(
                "{name}: 印刷ジョブがありません / print job missing from print_jobs (agent {}, seq {})",
                job.agent.as_str(),
                job.seq
            ),
        ));
    }
    report.mismatches = sorted(mismatches);
    Ok(report)
}

fn sorted(mut lines: Vec<(u64, String)>) -> Vec<String> {
    lines.sort_by_key(|(seq, _)| *seq);
    lines.into_iter().map(|(_, line)| line).collect()
}

/// Projection rows of sites the configuration does not have, and steps without their visit.
fn other_rows(conn: &Connection, configured: &HashSet<&str>) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    for (table, what) in [
        ("visits", "visits"),
        ("print_jobs", "print jobs"),
        ("projection_checkpoints", "checkpoints"),
    ] {
        let mut stmt = conn.prepare(&format!(
            "SELECT site, COUNT(*) FROM {table} GROUP BY site ORDER BY site"
        ))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (site, n) = row?;
            if !configured.contains(site.as_str()) {
                out.push(format!(
                    "設定にないサイト / site {site} not in the configuration: {n} {what}"
                ));
            }
        }
    }
    let orphans: i64 = conn.query_row(
        "SELECT COUNT(*) FROM visit_steps WHERE ticket_id NOT IN (SELECT ticket_id FROM visits)",
        [],
        |r| r.get(0),
    )?;
    if orphans > 0 {
        out.push(format!(
            "訪問のない手順 / {orphans} rows of visit_steps without their visit"
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// the commands

fn print(text: impl fmt::Display) {
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = write!(std::io::stdout().lock(), "{text}");
}

/// `madoguchi backup FILE [--data DIR] [--force]`: 0 when written, 2 when not.
pub fn backup_command(data: &Path, file: &Path, force: bool) -> ExitCode {
    let source = data.join(crate::server::DB_FILE);
    match backup(&source, file, force) {
        Ok(summary) => {
            print(summary);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("madoguchi backup: {e}");
            eprintln!("バックアップは作成されていません / no backup was written");
            ExitCode::from(2)
        }
    }
}

/// `madoguchi verify [--data DIR | --db FILE] [--config FILE]`: 0 when everything matches, 1 on
/// a mismatch, 2 when the check could not run.
pub fn verify_command(db: &Path, config_path: &Path) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "設定ファイルを読めません / cannot load the configuration {} (run `madoguchi check-config {}`)",
                config_path.display(),
                config_path.display()
            );
            return ExitCode::from(2);
        }
    };
    match verify(db, &config) {
        Ok(report) => {
            print(&report);
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("madoguchi verify: {e}");
            if matches!(e, MaintenanceError::UnknownSite(_)) {
                eprintln!("  (configuration / 設定: {})", config_path.display());
            }
            ExitCode::from(2)
        }
    }
}
