//! "Your turn is near" e-mails and the day-before reminders of bookings.
//!
//! The resident's e-mail address never enters the event log, snapshots, the event stream,
//! backups, logs, metrics or screens: it lives in a side table of its own file (`contacts.db` in
//! the data directory, `secure_delete` on) keyed by ticket id or by a digest of the booking code,
//! and is deleted when the notice went out or the visit ended, after which the WAL is
//! checkpointed and truncated so no copy stays in the files. The log holds only that a ticket
//! asked (`NoticeRequested`, with the channel) and that its notice is due (`NearTurnNoticed`,
//! decided by the core); a notifier per site follows the log and sends what this instance holds
//! an address for. (With several instances, the one that took the address sends the e-mail.)

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveTime, TimeZone};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rusqlite::{params, Connection, OptionalExtension};

use crate::core::{Event, SiteId};
use crate::log::EventLog;
use crate::projection::ProjectionStore;
use crate::site::SiteHandle;

/// The side table's file in the data directory.
pub const CONTACTS_FILE: &str = "contacts.db";
/// Tries of one e-mail before it is given up (logged without the address).
const MAIL_ATTEMPTS: u32 = 4;
/// How often the reminders are looked for.
const REMINDER_EVERY: Duration = Duration::from_secs(30);
const PAGE: usize = 500;
/// How often a notifier with nothing to do stores how far it passed over the log.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

/// How the mail server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    None,
    StartTls,
    Tls,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
}

impl std::fmt::Debug for Smtp {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// `[notices]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeSettings {
    /// The city's mail server; `None`: e-mail notices are not offered.
    pub smtp: Option<Smtp>,
    /// When the day-before reminders go out, local time.
    pub reminder_time: NaiveTime,
}

impl Default for NoticeSettings {
    fn default() -> Self {
        Self {
            smtp: None,
            reminder_time: NaiveTime::from_hms_opt(17, 0, 0).expect("a time"),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("contacts: {0}")]
pub struct ContactError(String);

fn err(e: impl std::fmt::Display) -> ContactError {
    ContactError(e.to_string())
}

/// The side table of addresses.
#[derive(Clone)]
pub struct Contacts {
    conn: Arc<Mutex<Connection>>,
    /// Rows in the table, every site's: while there are none, the notifiers need not read the
    /// log (nothing in it can concern an address).
    rows: Arc<std::sync::atomic::AtomicUsize>,
}

/// A booking's reminder to send.
#[derive(Debug, Clone)]
pub struct Reminder {
    pub key: String,
    pub email: String,
    pub lang: Option<String>,
    pub slot_start_ms: i64,
}

impl Contacts {
    pub fn open(path: &Path) -> Result<Self, ContactError> {
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        // Deleted rows are overwritten with zeros, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS contacts (
                kind TEXT NOT NULL,          -- 'ticket' or 'reservation'
                key TEXT NOT NULL,           -- ticket id, or the booking code's digest
                site TEXT NOT NULL,
                email TEXT NOT NULL,
                lang TEXT,
                slot_start_ms INTEGER,
                reminded INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (kind, key)
            );
            CREATE TABLE IF NOT EXISTS notice_checkpoints (
                site TEXT PRIMARY KEY,
                seq INTEGER NOT NULL
            );",
        )
        .map_err(err)?;
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get(0))
            .map_err(err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            rows: Arc::new((rows as usize).into()),
        })
    }

    /// Whether any address is kept (at any site).
    pub fn any(&self) -> bool {
        self.rows.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// Counts the rows again after a change.
    fn recount(conn: &Connection, rows: &std::sync::atomic::AtomicUsize) -> rusqlite::Result<()> {
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get(0))?;
        rows.store(n as usize, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ContactError> {
        crate::log::on_connection(&self.conn, |c| f(c).map_err(err))
            .await
            .map_err(err)?
    }

    /// Keeps `email` for a ticket's notice (or a booking's reminder, with its slot).
    pub async fn put(
        &self,
        kind: &'static str,
        key: &str,
        site: &SiteId,
        email: &str,
        lang: Option<&str>,
        slot_start_ms: Option<i64>,
    ) -> Result<(), ContactError> {
        let (key, site, email, lang) = (
            key.to_owned(),
            site.to_string(),
            email.to_owned(),
            lang.map(str::to_owned),
        );
        let rows = self.rows.clone();
        self.with(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO contacts (kind, key, site, email, lang, slot_start_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![kind, key, site, email, lang, slot_start_ms],
            )?;
            Self::recount(c, &rows)
        })
        .await
    }

    pub async fn email(
        &self,
        kind: &'static str,
        key: &str,
    ) -> Result<Option<(String, Option<String>)>, ContactError> {
        let key = key.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT email, lang FROM contacts WHERE kind = ?1 AND key = ?2",
                params![kind, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .await
    }

    /// Deletes the addresses of these keys; then the WAL is checkpointed and truncated, so no
    /// copy of them stays in the files. Returns how many were deleted.
    pub async fn forget(&self, keys: Vec<(&'static str, String)>) -> Result<usize, ContactError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let rows = self.rows.clone();
        self.with(move |c| {
            let mut n = 0;
            for (kind, key) in &keys {
                n += c.execute(
                    "DELETE FROM contacts WHERE kind = ?1 AND key = ?2",
                    params![kind, key],
                )?;
            }
            if n > 0 {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Self::recount(c, &rows)?;
            }
            Ok(n)
        })
        .await
    }

    async fn move_slot(&self, key: String, slot_start_ms: i64) -> Result<(), ContactError> {
        self.with(move |c| {
            c.execute(
                "UPDATE contacts SET slot_start_ms = ?2, reminded = 0 WHERE kind = 'reservation' AND key = ?1",
                params![key, slot_start_ms],
            )
        })
        .await
        .map(|_| ())
    }

    /// Bookings of `site` with a slot from `from_ms` to `to_ms` not yet reminded.
    async fn reminders(
        &self,
        site: &SiteId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Reminder>, ContactError> {
        let site = site.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT key, email, lang, slot_start_ms FROM contacts
                 WHERE kind = 'reservation' AND site = ?1 AND reminded = 0
                   AND slot_start_ms >= ?2 AND slot_start_ms < ?3",
            )?;
            let rows = stmt.query_map(params![site, from_ms, to_ms], |r| {
                Ok(Reminder {
                    key: r.get(0)?,
                    email: r.get(1)?,
                    lang: r.get(2)?,
                    slot_start_ms: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn reminded(&self, key: String) -> Result<(), ContactError> {
        self.with(move |c| {
            c.execute(
                "UPDATE contacts SET reminded = 1 WHERE kind = 'reservation' AND key = ?1",
                [key],
            )
        })
        .await
        .map(|_| ())
    }

    /// Bookings of `site` whose slot began before `before_ms`: past, forgotten.
    async fn past_reservations(
        &self,
        site: &SiteId,
        before_ms: i64,
    ) -> Result<Vec<String>, ContactError> {
        let site = site.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT key FROM contacts WHERE kind = 'reservation' AND site = ?1 AND slot_start_ms < ?2",
            )?;
            let rows = stmt.query_map(params![site, before_ms], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn checkpoint(&self, site: &SiteId) -> Result<Option<u64>, ContactError> {
        let site = site.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT seq FROM notice_checkpoints WHERE site = ?1",
                [site],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|s| s.map(|s| s as u64))
        })
        .await
    }

    async fn set_checkpoint(&self, site: &SiteId, seq: u64) -> Result<(), ContactError> {
        let site = site.to_string();
        self.with(move |c| {
            c.execute(
                "INSERT INTO notice_checkpoints (site, seq) VALUES (?1, ?2)
                 ON CONFLICT (site) DO UPDATE SET seq = excluded.seq",
                params![site, seq as i64],
            )
        })
        .await
        .map(|_| ())
    }
}

/// Sends the e-mails.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(smtp: &Smtp) -> anyhow::Result<Self> {
        let builder = match smtp.security {
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            }
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?,
        };
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(15)));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from: smtp.from.parse()?,
        })
    }

    async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("bad address: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Tries a few times with backoff; the error never names the address.
    async fn send_retrying(&self, to: &str, subject: &str, body: &str) -> Result<(), String> {
        let mut pause = Duration::from_millis(500);
        let mut last = String::new();
        for attempt in 1..=MAIL_ATTEMPTS {
            match self.send(to, subject, body.to_owned()).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if attempt < MAIL_ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        Err(last)
    }
}

/// The near-turn e-mail: subject and body, Japanese first with English after.
pub fn near_turn_mail(site_name: &str, number: &str, place: u32, wait_s: u64) -> (String, String) {
    let minutes = wait_s.div_ceil(60);
    let subject = format!("【{site_name}】まもなく順番です / Your turn is near (No. {number})");
    let body = format!(
        "受付番号 {number} 番の方\n\nまもなく順番です。あと {place} 番目、約 {minutes} 分でお呼びします。\n\
         窓口付近にお戻りください。\n\n\
         Ticket {number}\n\nYour turn is near: you are number {place} in line, about {minutes} min \
         from your call. Please come back to the counters.\n\n\
         ※このメールは送信専用です。 / This address does not take replies.\n"
    );
    (subject, body)
}

/// The day-before reminder of a booking.
pub fn reminder_mail(site_name: &str, slot: &str) -> (String, String) {
    let subject = format!("【{site_name}】明日のご来庁予約 / Your booking tomorrow");
    let body = format!(
        "明日 {slot} からのご来庁予約があります。予約番号と本人確認書類をお持ちください。\n\
         変更・取消は予約のページからできます。\n\n\
         You have a booking tomorrow from {slot}. Please bring your booking code and your ID.\n\
         You can move or cancel it on the booking page.\n\n\
         ※このメールは送信専用です。 / This address does not take replies.\n"
    );
    (subject, body)
}

/// The notifiers of every site.
#[derive(Clone)]
pub struct Notices {
    pub contacts: Contacts,
    pub mailer: Option<Mailer>,
    pub settings: NoticeSettings,
    metrics: crate::metrics::Metrics,
}

impl Notices {
    pub fn open(
        data_dir: &Path,
        settings: NoticeSettings,
        metrics: crate::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        let contacts = Contacts::open(&data_dir.join(CONTACTS_FILE))?;
        let mailer = settings.smtp.as_ref().map(Mailer::new).transpose()?;
        Ok(Self {
            contacts,
            mailer,
            settings,
            metrics,
        })
    }

    /// Sends one e-mail (with retries) and counts how it went.
    async fn mail(&self, site: &SiteId, to: &str, subject: &str, body: &str) -> Result<(), String> {
        let mailer = self.mailer.as_ref().ok_or("no mail server is configured")?;
        let result = mailer.send_retrying(to, subject, body).await;
        let outcome = if result.is_ok() { "sent" } else { "failed" };
        self.metrics
            .notice_emails
            .with_label_values(&[site.as_str(), outcome])
            .inc();
        result
    }

    /// Starts a notifier per site that sends notices (those with `[sites.notices]`) or takes
    /// bookings (for the reminders).
    /// Stop them by aborting the tasks (they hold site handles: the sites stop once they are
    /// gone).
    pub fn start(
        &self,
        sites: &[SiteHandle],
        log: Arc<dyn EventLog>,
        copy: ProjectionStore,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for site in sites {
            let wanted = site.config.notices.is_some() || site.config.reservations.is_some();
            if wanted {
                let me = self.clone();
                let (site, log, copy) = (site.clone(), log.clone(), copy.clone());
                tasks.push(tokio::spawn(async move { me.run(site, log, copy).await }));
            }
        }
        tasks
    }

    async fn run(self, site: SiteHandle, log: Arc<dyn EventLog>, copy: ProjectionStore) {
        let id = site.config.id.clone();
        let mut applied = site.status().applied_changes();
        // A new data directory starts from now: no address is older than it.
        let mut after = match self.contacts.checkpoint(&id).await {
            Ok(Some(seq)) => seq,
            _ => *applied.borrow(),
        };
        let mut reminders = tokio::time::interval(REMINDER_EVERY);
        let mut stored = std::time::Instant::now();
        loop {
            let seq = *applied.borrow_and_update();
            // No address kept anywhere: nothing in the log can concern one, so pass over it
            // without reading (the seq was read before looking: an address stored since then
            // comes before the events that concern it). The checkpoint follows now and then.
            if !self.contacts.any() {
                after = after.max(seq);
                if stored.elapsed() >= CHECKPOINT_EVERY {
                    let _ = self.contacts.set_checkpoint(&id, after).await;
                    stored = std::time::Instant::now();
                }
                tokio::select! {
                    _ = applied.changed() => {}
                    _ = reminders.tick() => self.remind(&site).await,
                }
                continue;
            }
            match crate::site::read_events(&*log, &copy, &id, after, PAGE).await {
                Ok(page) if !page.is_empty() => {
                    let last = page.last().map_or(after, |e| e.seq);
                    self.handle(&site, page.into_iter().map(|e| e.event).collect())
                        .await;
                    after = last;
                    if let Err(e) = self.contacts.set_checkpoint(&id, after).await {
                        tracing::warn!(site = %id, error = %e, "cannot store the notices' checkpoint");
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(site = %id, error = %e, "notices: cannot read the event log")
                }
            }
            tokio::select! {
                _ = applied.changed() => {}
                _ = reminders.tick() => self.remind(&site).await,
            }
        }
    }

    /// Sends the notices due in these events and forgets the addresses no longer needed.
    async fn handle(&self, site: &SiteHandle, events: Vec<Event>) {
        let id = &site.config.id;
        let mut forget: Vec<(&'static str, String)> = Vec::new();
        for event in events {
            match event {
                Event::NearTurnNoticed {
                    ticket,
                    number,
                    place,
                    estimated_wait_s,
                    link_code: None,
                    ..
                } => {
                    let Ok(Some((email, _lang))) =
                        self.contacts.email("ticket", ticket.as_str()).await
                    else {
                        continue;
                    };
                    let (subject, body) =
                        near_turn_mail(&site.config.name.ja, &number.0, place, estimated_wait_s);
                    match self.mail(id, &email, &subject, &body).await {
                        Ok(()) => {
                            tracing::info!(site = %id, number = %number, "near-turn notice sent by e-mail")
                        }
                        Err(e) => {
                            tracing::warn!(site = %id, number = %number, error = %e, "near-turn e-mail given up")
                        }
                    }
                    // One notice per ticket: the address is not needed any more.
                    forget.push(("ticket", ticket.to_string()));
                }
                Event::NoticeWithdrawn { ticket, .. }
                | Event::StepCompleted {
                    ticket,
                    transfer_to: None,
                    ..
                }
                | Event::TicketCancelled { ticket, .. }
                | Event::NoShowMarked {
                    ticket,
                    requeued: false,
                    ..
                } => forget.push(("ticket", ticket.to_string())),
                Event::DayStarted { expired, .. } => {
                    forget.extend(expired.into_iter().map(|t| ("ticket", t.to_string())))
                }
                Event::TicketIssued {
                    booked: Some(b), ..
                } => forget.push(("reservation", crate::hooks::reservation_ref(&b.code))),
                Event::ReservationCancelled { code, .. } => {
                    forget.push(("reservation", crate::hooks::reservation_ref(&code)))
                }
                Event::ReservationMoved {
                    code, slot_start, ..
                } => {
                    let key = crate::hooks::reservation_ref(&code);
                    let _ = self
                        .contacts
                        .move_slot(key, slot_start.timestamp_millis())
                        .await;
                }
                _ => {}
            }
        }
        if let Err(e) = self.contacts.forget(forget).await {
            tracing::warn!(site = %id, error = %e, "cannot delete contacts");
        }
    }

    /// From the reminder time on, the bookings of tomorrow get their reminder; past ones are
    /// forgotten.
    async fn remind(&self, site: &SiteHandle) {
        if !self.contacts.any() {
            return;
        }
        let config = &site.config;
        let tz = config.timezone;
        let now = chrono::Utc::now().with_timezone(&tz);
        let day_start = |d: chrono::NaiveDate| {
            tz.from_local_datetime(&d.and_time(NaiveTime::MIN))
                .earliest()
                .map(|t| t.timestamp_millis())
        };
        let today = now.date_naive();
        if let Some(start) = day_start(today) {
            if let Ok(past) = self.contacts.past_reservations(&config.id, start).await {
                let _ = self
                    .contacts
                    .forget(past.into_iter().map(|k| ("reservation", k)).collect())
                    .await;
            }
        }
        if self.mailer.is_none() || now.time() < self.settings.reminder_time {
            return;
        }
        let tomorrow = today.succ_opt().unwrap_or(today);
        let (Some(from), Some(to)) = (day_start(tomorrow), tomorrow.succ_opt().and_then(day_start))
        else {
            return;
        };
        let Ok(due) = self.contacts.reminders(&config.id, from, to).await else {
            return;
        };
        for r in due {
            let slot = chrono::DateTime::from_timestamp_millis(r.slot_start_ms)
                .map(|t| t.with_timezone(&tz).format("%-m月%-d日 %H:%M").to_string())
                .unwrap_or_default();
            let (subject, body) = reminder_mail(&config.name.ja, &slot);
            match self.mail(&config.id, &r.email, &subject, &body).await {
                Ok(()) => {
                    tracing::info!(site = %config.id, "booking reminder sent by e-mail");
                    let _ = self.contacts.reminded(r.key).await;
                }
                Err(e) => {
                    tracing::warn!(site = %config.id, error = %e, "booking reminder given up")
                }
            }
        }
    }
}
