//! `madoguchi generate`: a realistic event log without a server. The core is driven over
//! simulated business days with virtual time (no clock, no sleeping): residents arrive through
//! the day, open counters call, serve and complete them, hand some on to another queue, mark a
//! few no-show, pause for lunch; some residents give up waiting, some rate their visit. The
//! events go to the data directory's event log in batches (one transaction each), with their
//! visit records and print jobs, so the file is what a server would have written: `serve` starts
//! on it, `verify` passes, the KPI pages have data.
//!
//! It exists to measure start-up on a big log (README, Performance) and to try the KPI on a year.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{Config, SiteConfig};
use crate::core::{
    decide, plan_for, route, CancelReason, Command, CounterId, CounterState, DispenserId,
    DomainError, Event, IssueCommand, PlanRequest, ProcedureCode, QueueId, SiteState, TicketId,
    TicketSelector, TicketStatus, Timestamp, VisitRecord,
};
use crate::log::{EventLog, SqliteLog};
use crate::printers::job_for;
use crate::projection::{NewJob, ProjectionStore};

/// Events per append (one transaction).
pub const BATCH: usize = 10_000;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Business days (weekdays), the last one before today.
    pub days: u32,
    /// Residents arriving per site on a mean day (Mondays and the moving season more,
    /// Thursdays fewer).
    pub visitors_per_day: u32,
    /// Seed of the random choices: the same seed and configuration give the same log.
    pub seed: u64,
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub events: u64,
    /// Tickets issued.
    pub tickets: u64,
    /// Visit records written (a rated visit's record is written again).
    pub visit_records: u64,
    /// Arrivals the core refused (a queue's numbers ran out for the day).
    pub refused_arrivals: u64,
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
    pub elapsed: Duration,
}

/// `madoguchi generate`: prints what it wrote and how long it took.
pub fn generate_command(config_path: &Path, data: &Path, options: Options) -> ExitCode {
    match generate_files(config_path, data, &options) {
        Ok(report) => {
            let secs = report.elapsed.as_secs_f64();
            println!(
                "{} events ({} tickets, {} arrivals refused) over {} business days ({} to {}) written to {} in {:.1} s ({:.0} events/s)",
                report.events,
                report.tickets,
                report.refused_arrivals,
                options.days,
                report.first_day.map(|d| d.to_string()).unwrap_or_default(),
                report.last_day.map(|d| d.to_string()).unwrap_or_default(),
                data.join(crate::server::DB_FILE).display(),
                secs,
                report.events as f64 / secs.max(1e-9),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("madoguchi generate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn generate_files(config_path: &Path, data: &Path, options: &Options) -> anyhow::Result<Report> {
    let config = Config::load(config_path).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(run `madoguchi check-config {}` for details)",
            config_path.display()
        )
    })?;
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create the data directory {}", data.display()))?;
    let db = data.join(crate::server::DB_FILE);
    let log = SqliteLog::open(&db)
        .with_context(|| format!("cannot open the event log {}", db.display()))?;
    let store = ProjectionStore::open(&db)
        .with_context(|| format!("cannot open the visit records in {}", db.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let today = Utc::now();
    runtime.block_on(generate(&config, &log, &store, options, today))
}

/// Simulates `options.days` business days ending before `today` at every site of `config` and
/// appends the events to `log`, their visit records and print jobs to `store`. Every site's log
/// must be empty.
pub async fn generate(
    config: &Config,
    log: &dyn EventLog,
    store: &ProjectionStore,
    options: &Options,
    today: Timestamp,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report::default();
    for site in &config.sites {
        let last = log.last_seq(&site.id).await?;
        anyhow::ensure!(
            last == 0,
            "the event log of site {} already holds {last} events: generate into a new data directory",
            site.id
        );
        let days = business_days(site, today, options.days);
        report.first_day = report.first_day.or(days.first().copied());
        report.last_day = report.last_day.or(days.last().copied());
        let seed = options.seed ^ u64::from(fnv(site.id.as_str()));
        let mut sim = Sim::new(site.clone(), seed, options.visitors_per_day);
        for day in days {
            sim.day(day);
            while sim.pending.len() >= BATCH {
                sim.flush(log, store, BATCH).await?;
            }
        }
        let rest = sim.pending.len();
        sim.flush(log, store, rest).await?;
        report.events += sim.written;
        report.tickets += sim.tickets;
        report.visit_records += sim.visits_written;
        report.refused_arrivals += sim.refused_arrivals;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A small, stable hash, so each site gets its own random sequence from one seed.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    })
}

/// The `n` business days before `today`'s local date at the site, oldest first: weekdays that
/// are not national holidays, on which some queue takes tickets by its reception hours.
fn business_days(site: &SiteConfig, today: Timestamp, n: u32) -> Vec<NaiveDate> {
    let mut day = today.with_timezone(&site.timezone).date_naive();
    let mut days = Vec::new();
    let open = |day: NaiveDate| {
        site.queues
            .iter()
            .any(|q| q.hours.as_ref().is_none_or(|h| !h.periods(day).is_empty()))
    };
    while days.len() < n as usize {
        day = day.pred_opt().expect("a date after year 1");
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
            && crate::core::hours::holiday(day).is_none()
            && open(day)
        {
            days.push(day);
        }
    }
    days.reverse();
    days
}

/// Arrivals on each weekday, Monday first, relative to the mean day: Monday is the busiest,
/// Thursday the quietest (as the cities publishing congestion calendars report).
const WEEKDAY_LOAD: [f64; 5] = [1.3, 1.0, 1.0, 0.8, 0.9];

/// Arrivals in the moving season (引越しシーズン), relative to an ordinary day.
const SEASON_LOAD: f64 = 1.4;

/// Residents arriving on `day` when `mean` arrive on an ordinary mean day.
fn arrivals_on(day: NaiveDate, mean: u32) -> u32 {
    let weekday = WEEKDAY_LOAD
        .get(day.weekday().num_days_from_monday() as usize)
        .copied()
        .unwrap_or(1.0);
    let season = if crate::calendar::in_season(day) {
        SEASON_LOAD
    } else {
        1.0
    };
    (f64::from(mean) * weekday * season).round() as u32
}

/// Office hours (local).
const OPEN: (u32, u32) = (8, 30);
/// No arrivals after this.
const LAST_ARRIVAL: (u32, u32) = (17, 0);
/// Counters call nobody new after this.
const CLOSE: (u32, u32) = (17, 15);
/// Whatever is still going on is dropped at this time; open tickets end with the next day.
const HARD_STOP: (u32, u32) = (19, 0);
/// Relative arrival rates per half hour from 08:30 to 17:00: a morning peak, a lunch dip, a
/// smaller afternoon peak.
const ARRIVALS: [f64; 17] = [
    1.4, 1.6, 1.5, 1.4, 1.3, 1.2, 1.0, 0.8, 0.7, 0.8, 1.0, 1.1, 1.1, 1.0, 0.9, 0.8, 0.6,
];
/// Share of a counter's open hours (lunch aside) spent on residents, at most: service times are
/// scaled down when the plans asked for would need more.
const UTILIZATION: f64 = 0.75;
/// Counter time per visit besides the service: the call, the walk, the paperwork after.
const OVERHEAD_S: f64 = 150.0;
/// A counter's lunch break.
const LUNCH_MIN: i64 = 45;
/// Share of residents who come for a life event rather than a single procedure.
const LIFE_EVENTS: f64 = 0.3;

/// What happens next in the simulated office.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    StartDay,
    Arrive,
    /// The counter (by index) looks for its next resident.
    Idle(usize),
    /// The called resident reaches the counter, or does not.
    Reach(usize),
    /// The counter finishes its resident.
    Finish(usize),
    Lunch(usize),
    Resume(usize),
    /// A waiting resident gives up.
    Leave(String),
    Rate(String, u8),
}

struct Sim {
    config: Arc<SiteConfig>,
    state: SiteState,
    rng: StdRng,
    now: Timestamp,
    visitors_per_day: u32,
    /// Counters that open in the morning (open in the configuration).
    counters: Vec<CounterId>,
    /// Plans residents ask for: single procedures that route, with their weights, and life
    /// events. A queue's procedures share a weight that follows the counters calling from it
    /// first (the office is staffed for its demand); within a queue, quick procedures
    /// (certificates) are the common ones.
    procedures: Vec<(ProcedureCode, f64)>,
    life_events: Vec<crate::core::LifeEventId>,
    /// A dispenser without a printer agent, if the site has one: generated tickets are never
    /// printed.
    dispenser: Option<DispenserId>,
    /// Factor on the plans' typical service times, so the counters can keep up.
    service_scale: f64,
    agenda: BinaryHeap<Reverse<(Timestamp, u64, Action)>>,
    tie: u64,
    /// Tickets whose resident does not come when called.
    absent: HashSet<TicketId>,
    pending: Vec<Event>,
    /// Visit records not written yet, with the seq of the event that made each.
    pending_visits: Vec<(u64, VisitRecord)>,
    pending_jobs: Vec<NewJob>,
    /// The seq of the last event written.
    written: u64,
    visits_written: u64,
    tickets: u64,
    refused_arrivals: u64,
}

impl Sim {
    fn new(config: Arc<SiteConfig>, seed: u64, visitors_per_day: u32) -> Sim {
        let state = SiteState::new(config.clone());
        let counters = state
            .counters
            .iter()
            .filter(|c| c.state == CounterState::Open)
            .map(|c| c.id.clone())
            .collect();
        let routed: Vec<(&QueueId, &crate::config::Procedure)> = config
            .procedures
            .iter()
            .filter_map(|p| Some((route(&config, std::slice::from_ref(&p.code)).ok()?, p)))
            .collect();
        let staff = |q: &QueueId| {
            let first = state
                .counters
                .iter()
                .filter(|c| c.profile.queues.first() == Some(q))
                .count();
            // A queue no counter calls first still gets a little demand.
            first.max(1) as f64
        };
        let procedures = routed
            .iter()
            .map(|(q, p)| {
                let quick = 1.0 / f64::from(p.service_s.max(60));
                let queue_total: f64 = routed
                    .iter()
                    .filter(|(other, _)| other == q)
                    .map(|(_, p)| 1.0 / f64::from(p.service_s.max(60)))
                    .sum();
                (p.code.clone(), staff(q) * quick / queue_total)
            })
            .collect();
        let life_events = config
            .life_events
            .iter()
            .filter(|l| {
                let plan = PlanRequest::LifeEvent {
                    id: l.id.clone(),
                    answers: l.questions.iter().map(|q| (q.id.clone(), false)).collect(),
                };
                plan_for(&config, &plan).is_ok_and(|p| route(&config, &p).is_ok())
            })
            .map(|l| l.id.clone())
            .collect();
        let dispenser = config
            .dispensers
            .iter()
            .find(|d| d.printer_agent.is_none())
            .map(|d| d.id.clone());
        let mut sim = Sim {
            state,
            rng: StdRng::seed_from_u64(seed),
            now: Timestamp::MIN_UTC,
            visitors_per_day,
            counters,
            procedures,
            life_events,
            dispenser,
            service_scale: 1.0,
            agenda: BinaryHeap::new(),
            tie: 0,
            absent: HashSet::new(),
            pending: Vec::new(),
            pending_visits: Vec::new(),
            pending_jobs: Vec::new(),
            written: 0,
            visits_written: 0,
            tickets: 0,
            refused_arrivals: 0,
            config,
        };
        sim.service_scale = sim.scale();
        sim
    }

    /// The factor on typical service times that keeps the counters at [`UTILIZATION`] or below.
    fn scale(&mut self) -> f64 {
        let samples = 500;
        let mut total = 0.0;
        for _ in 0..samples {
            let plan = self.plan();
            total += plan_for(&self.config, &plan)
                .map(|p| self.planned_s(&p))
                .unwrap_or(0.0);
        }
        let planned = total / f64::from(samples);
        let open_min = i64::from((CLOSE.0 * 60 + CLOSE.1) - (OPEN.0 * 60 + OPEN.1)) - LUNCH_MIN;
        let capacity = self.counters.len() as f64 * open_min as f64 * 60.0 * UTILIZATION;
        let per_visit = capacity / f64::from(self.visitors_per_day.max(1));
        if planned <= 0.0 || per_visit >= planned + OVERHEAD_S {
            1.0
        } else {
            ((per_visit - OVERHEAD_S) / planned).clamp(0.05, 1.0)
        }
    }

    fn planned_s(&self, plan: &[ProcedureCode]) -> f64 {
        plan.iter()
            .filter_map(|c| self.config.procedure(c))
            .map(|p| f64::from(p.service_s))
            .sum()
    }

    fn at(&self, day: NaiveDate, (h, m): (u32, u32)) -> Timestamp {
        let local = day.and_time(NaiveTime::from_hms_opt(h, m, 0).expect("a valid time"));
        self.config
            .timezone
            .from_local_datetime(&local)
            .earliest()
            .unwrap_or_else(|| {
                Utc.from_utc_datetime(&local)
                    .with_timezone(&self.config.timezone)
            })
            .with_timezone(&Utc)
    }

    fn schedule(&mut self, at: Timestamp, action: Action) {
        self.tie += 1;
        self.agenda.push(Reverse((at, self.tie, action)));
    }

    fn after(&mut self, seconds: std::ops::Range<i64>, action: Action) {
        let s = self.rng.random_range(seconds);
        self.schedule(self.now + chrono::Duration::seconds(s), action);
    }

    /// Decides and applies a command at the current time; keeps the events for the log.
    fn run(&mut self, command: Command) -> Result<(), DomainError> {
        let events = decide(&self.state, &command, self.now)?;
        for event in events {
            let ended = self.state.apply(&event);
            let seq = self.state.seq;
            self.pending_visits.extend(
                ended
                    .iter()
                    .filter_map(|t| VisitRecord::from_ticket(&self.config, t))
                    .map(|v| (seq, v)),
            );
            self.pending_jobs.extend(job_for(&self.state, &event));
            self.pending.push(event);
        }
        Ok(())
    }

    /// Appends the first `n` pending events, then the visit records and print jobs of the events
    /// written, with the projection's checkpoint.
    async fn flush(
        &mut self,
        log: &dyn EventLog,
        store: &ProjectionStore,
        n: usize,
    ) -> anyhow::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let batch: Vec<Event> = self.pending.drain(..n).collect();
        let site = self.config.id.clone();
        self.written = log.append(&site, self.written, &batch).await?;
        let written = self.written;
        let visits: Vec<VisitRecord> = {
            let later = self
                .pending_visits
                .partition_point(|(seq, _)| *seq <= written);
            self.pending_visits.drain(..later).map(|(_, v)| v).collect()
        };
        let jobs: Vec<NewJob> = {
            let later = self.pending_jobs.partition_point(|j| j.seq <= written);
            self.pending_jobs.drain(..later).collect()
        };
        self.visits_written += visits.len() as u64;
        store
            .record(site.as_str(), written, visits, jobs)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn counter(&self, i: usize) -> Option<&crate::core::Counter> {
        self.state.counter(&self.counters[i])
    }

    fn plan(&mut self) -> PlanRequest {
        if !self.life_events.is_empty()
            && (self.procedures.is_empty() || self.rng.random_bool(LIFE_EVENTS))
        {
            let id = self.life_events[self.rng.random_range(0..self.life_events.len())].clone();
            let event = self
                .config
                .life_event(&id)
                .expect("a configured life event");
            let answers = event
                .questions
                .iter()
                .map(|q| (q.id.clone(), self.rng.random_bool(0.3)))
                .collect();
            return PlanRequest::LifeEvent { id, answers };
        }
        let total: f64 = self.procedures.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.random::<f64>() * total;
        let code = self
            .procedures
            .iter()
            .find(|(_, w)| {
                pick -= w;
                pick <= 0.0
            })
            .or(self.procedures.last())
            .map(|(c, _)| c.clone());
        PlanRequest::Procedures(code.into_iter().collect())
    }

    /// One business day, from the day's start to the evening.
    fn day(&mut self, day: NaiveDate) {
        let reset = self.at(
            day,
            (self.config.day_reset.hour(), self.config.day_reset.minute()),
        );
        self.schedule(reset + chrono::Duration::seconds(30), Action::StartDay);
        let open = self.at(day, OPEN);
        let half_hours = ARRIVALS.len();
        let total: f64 = ARRIVALS.iter().sum();
        for _ in 0..arrivals_on(day, self.visitors_per_day) {
            let mut pick = self.rng.random::<f64>() * total;
            let slot = ARRIVALS
                .iter()
                .position(|w| {
                    pick -= w;
                    pick <= 0.0
                })
                .unwrap_or(half_hours - 1);
            let ms = self.rng.random_range(0..30 * 60 * 1000);
            let at = open
                + chrono::Duration::minutes(30 * slot as i64)
                + chrono::Duration::milliseconds(ms);
            self.schedule(at, Action::Arrive);
        }
        for i in 0..self.counters.len() {
            let start = open + chrono::Duration::seconds(self.rng.random_range(0..120));
            self.schedule(start, Action::Idle(i));
            // Half the counters eat at 12:00, the other half at 12:45.
            let lunch = if i % 2 == 0 { (12, 0) } else { (12, 45) };
            self.schedule(self.at(day, lunch), Action::Lunch(i));
        }
        let last_arrival = self.at(day, LAST_ARRIVAL);
        let close = self.at(day, CLOSE);
        let stop = self.at(day, HARD_STOP);
        while let Some(Reverse((at, _, action))) = self.agenda.pop() {
            if at > stop {
                break;
            }
            self.now = self.now.max(at);
            self.act(action, last_arrival.max(close));
        }
        self.agenda.clear();
        self.absent.clear();
    }

    fn act(&mut self, action: Action, close: Timestamp) {
        match action {
            Action::StartDay => {
                let _ = self.run(Command::StartDay);
            }
            Action::Arrive => self.arrive(),
            Action::Idle(i) => {
                let Some(c) = self.counter(i) else { return };
                if c.state != CounterState::Open || c.current.is_some() {
                    // Paused for lunch (resuming calls again), or busy (finishing calls again).
                    return;
                }
                let counter = c.id.clone();
                match self.run(Command::CallNext { counter }) {
                    Ok(()) => self.after(15..60, Action::Reach(i)),
                    Err(_) if self.now < close => self.after(20..60, Action::Idle(i)),
                    Err(_) => {}
                }
            }
            Action::Reach(i) => {
                let Some(c) = self.counter(i) else { return };
                let counter = c.id.clone();
                let Some(ticket) = c.current.clone().and_then(|t| self.state.tickets.get(&t))
                else {
                    return self.after(5..20, Action::Idle(i));
                };
                if ticket.status != TicketStatus::Called {
                    return self.after(5..20, Action::Idle(i));
                }
                let id = ticket.id.clone();
                let planned = self.planned_s(&ticket.procedures);
                let first_call = ticket.step().calls == 1 && ticket.step().requeues == 0;
                if first_call && self.rng.random_bool(0.04) {
                    self.absent.insert(id.clone());
                }
                if !self.absent.contains(&id) {
                    let _ = self.run(Command::Start { counter });
                    let factor = self.rng.random_range(0.5..1.5);
                    let s = (planned * self.service_scale * factor).max(60.0) as i64;
                    return self.after(s..s + 60, Action::Finish(i));
                }
                match self.run(Command::NoShow {
                    counter: counter.clone(),
                }) {
                    Ok(()) => {
                        // Half of those put back in line turn up for the next call.
                        if self.rng.random_bool(0.5) {
                            self.absent.remove(&id);
                        }
                        self.after(10..40, Action::Idle(i));
                    }
                    Err(_) => {
                        let _ = self.run(Command::Recall { counter });
                        self.after(60..120, Action::Reach(i));
                    }
                }
            }
            Action::Finish(i) => {
                let Some(c) = self.counter(i) else { return };
                let counter = c.id.clone();
                let Some(ticket) = c.current.clone().and_then(|t| self.state.tickets.get(&t))
                else {
                    return self.after(5..20, Action::Idle(i));
                };
                let token = ticket.token.clone();
                let transfer = if ticket.steps.len() == 1 && self.rng.random_bool(0.12) {
                    crate::sim::transfer_target(&self.config, ticket, &mut self.rng)
                } else {
                    None
                };
                let done = transfer.is_none();
                let _ = self.run(Command::Complete {
                    counter,
                    transfer_to: transfer,
                });
                if done && self.rng.random_bool(0.25) {
                    let score = match self.rng.random_range(0..100) {
                        0..5 => 1,
                        5..12 => 2,
                        12..30 => 3,
                        30..65 => 4,
                        _ => 5,
                    };
                    self.after(60..600, Action::Rate(token, score));
                }
                self.after(10..90, Action::Idle(i));
            }
            Action::Lunch(i) => {
                let Some(c) = self.counter(i) else { return };
                if c.current.is_some() {
                    return self.after(60..61, Action::Lunch(i));
                }
                let counter = c.id.clone();
                if self
                    .run(Command::SetCounterState {
                        counter,
                        state: CounterState::Paused,
                    })
                    .is_ok()
                {
                    self.after(LUNCH_MIN * 60..LUNCH_MIN * 60 + 1, Action::Resume(i));
                }
            }
            Action::Resume(i) => {
                let Some(c) = self.counter(i) else { return };
                let counter = c.id.clone();
                let _ = self.run(Command::SetCounterState {
                    counter,
                    state: CounterState::Open,
                });
                self.after(0..30, Action::Idle(i));
            }
            Action::Leave(token) => {
                let _ = self.run(Command::Cancel {
                    ticket: TicketSelector::Token(token),
                    reason: CancelReason::Resident,
                });
            }
            Action::Rate(token, score) => {
                let _ = self.run(Command::Rate { token, score });
            }
        }
    }

    fn arrive(&mut self) {
        let plan = self.plan();
        let mut bytes: [u8; 16] = self.rng.random();
        let id = uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string();
        bytes = self.rng.random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let command = Command::Issue(IssueCommand {
            id: TicketId::try_from(id).expect("a UUID is a valid id"),
            token: token.clone(),
            plan,
            priority: self.rng.random_bool(0.05),
            dispenser: self.dispenser.clone(),
            lang: self.rng.random_bool(0.1).then(|| "en".to_owned()),
            idempotency_key: None,
        });
        match self.run(command) {
            Ok(()) => {
                self.tickets += 1;
                if self.rng.random_bool(0.02) {
                    self.after(5 * 60..40 * 60, Action::Leave(token));
                }
            }
            Err(_) => self.refused_arrivals += 1,
        }
    }
}
