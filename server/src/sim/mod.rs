//! The day simulator: the real core driven through business days with virtual time (no clock,
//! no sleeping, no server). Residents arrive as a time-varying Poisson process over the office
//! hours of a [`Scenario`]; they ask for life events or single procedures; counters call, serve
//! (lognormal or exponential service per procedure), hand some on to another queue, meet some
//! no-shows, and take breaks in shifts. Every event goes through `decide` and `apply`, so what
//! the simulator reports is what the core records.
//!
//! `bench-estimates` runs the predictors on it; tests use it for the stationary M/M/s check.

pub mod bench;
pub mod scenario;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::core::model::SiteConfig;
use crate::core::{
    decide, plan_for, route, Command, CounterState, DomainError, Event, IssueCommand, Learner,
    LifeEventId, PlanRequest, ProcedureCode, QueueId, SiteState, Target, TicketId, TicketStatus,
    Timestamp, VisitRecord,
};
pub use scenario::{Scenario, ServiceShape};

/// What the simulator tells its observer.
pub trait Observer {
    /// A ticket was just issued (the state includes it) at `now`.
    fn issued(
        &mut self,
        _state: &SiteState,
        _learner: &Learner,
        _ticket: &TicketId,
        _now: Timestamp,
    ) {
    }
    /// A ticket was called for the first time, `wait_s` after it was issued; `counted` is false
    /// for arrivals in the scenario's warm-up.
    fn first_call(&mut self, _ticket: &TicketId, _wait_s: f64, _counted: bool) {}
}

impl Observer for () {}

/// One visit as the simulator saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimVisit {
    pub ticket: TicketId,
    pub arrived: Timestamp,
    pub departed: Timestamp,
}

/// What a simulated day gave.
#[derive(Debug, Clone, Default)]
pub struct DayReport {
    pub arrivals: u64,
    pub refused: u64,
    pub events: u64,
    /// Visits that ended, by the simulator's own clock.
    pub visits: Vec<SimVisit>,
    /// The visit records the core produced for the same visits.
    pub records: Vec<VisitRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    StartDay,
    Arrive,
    /// A resident who could not book arrives with this plan (index into `Sim::planned`).
    ArrivePlanned(usize),
    /// A booked resident checks in at the kiosk.
    CheckIn(String),
    /// A booked slot begins: held tickets take their place in line.
    Release,
    /// Counter (index into the state's counters) looks for its next resident.
    Idle(usize),
    /// The called resident reaches the counter, or does not.
    Reach(usize),
    Finish(usize),
    BreakStart(usize),
    BreakEnd(usize),
}

/// A site under a scenario, simulated day after day (the learner keeps what it learned).
pub struct Sim {
    pub config: Arc<SiteConfig>,
    pub scenario: Scenario,
    pub state: SiteState,
    pub learner: Learner,
    rng: StdRng,
    now: Timestamp,
    agenda: BinaryHeap<Reverse<(Timestamp, u64, Action)>>,
    tie: u64,
    working: Vec<usize>,
    absent: HashSet<TicketId>,
    procedures: Vec<(ProcedureCode, f64)>,
    life_events: Vec<(LifeEventId, f64)>,
    /// Issue time and whether counted, of tickets not yet called.
    uncalled: HashMap<TicketId, (Timestamp, bool)>,
    arrived: HashMap<TicketId, Timestamp>,
    /// When the current day's warm-up ends.
    warm: Timestamp,
    report: DayReport,
    serial: u64,
    /// Share of the residents who come for moving in (転入) that book a slot the day before
    /// (the rest walk in). 0 by default.
    pub booked_share: f64,
    /// Tickets of booked residents (checked in), for the report.
    pub booked_tickets: HashSet<TicketId>,
    planned: Vec<PlanRequest>,
}

impl Sim {
    /// A simulator of `site` under `scenario`; the scenario's break shifts become the counters'
    /// planned breaks in the site model (what the floor manager would configure).
    pub fn new(site: &SiteConfig, scenario: Scenario, seed: u64) -> anyhow::Result<Sim> {
        let mut config = site.clone();
        let working: Vec<usize> = if scenario.staffing.counters.is_empty() {
            (0..config.counters.len())
                .filter(|&i| config.counters[i].state == CounterState::Open)
                .collect()
        } else {
            scenario
                .staffing
                .counters
                .iter()
                .map(|id| {
                    config
                        .counters
                        .iter()
                        .position(|c| c.id.as_str() == id)
                        .ok_or_else(|| anyhow::anyhow!("staffing: no counter {id} at {}", site.id))
                })
                .collect::<Result<_, _>>()?
        };
        anyhow::ensure!(!working.is_empty(), "the scenario staffs no counter");
        let shifts: Vec<(NaiveTime, NaiveTime)> = scenario
            .staffing
            .breaks
            .iter()
            .filter_map(|b| scenario::parse_range(b))
            .collect();
        let mut k = 0;
        for &i in &working {
            let c = &mut config.counters[i];
            c.state = CounterState::Open;
            c.breaks.clear();
            if !shifts.is_empty()
                && !scenario
                    .staffing
                    .no_break
                    .iter()
                    .any(|n| n == c.id.as_str())
            {
                c.breaks.push(shifts[k % shifts.len()]);
                k += 1;
            }
        }
        for (i, c) in config.counters.iter_mut().enumerate() {
            if !working.contains(&i) {
                c.state = CounterState::Closed;
            }
        }
        let config = Arc::new(config);
        let routes = |plan: &[ProcedureCode]| route(&config, plan).is_ok();
        let procedures: Vec<(ProcedureCode, f64)> = if scenario.procedures.is_empty() {
            config
                .procedures
                .iter()
                .filter(|p| routes(std::slice::from_ref(&p.code)))
                .map(|p| (p.code.clone(), 1.0))
                .collect()
        } else {
            scenario
                .procedures
                .iter()
                .map(|(code, w)| {
                    let p = config
                        .procedures
                        .iter()
                        .find(|p| p.code.as_str() == code)
                        .ok_or_else(|| anyhow::anyhow!("procedures: no procedure {code}"))?;
                    anyhow::ensure!(
                        routes(std::slice::from_ref(&p.code)),
                        "procedures: no queue handles {code}"
                    );
                    Ok((p.code.clone(), *w))
                })
                .collect::<anyhow::Result<_>>()?
        };
        let life_events: Vec<(LifeEventId, f64)> = if scenario.life_events.is_empty() {
            config
                .life_events
                .iter()
                .map(|l| (l.id.clone(), 1.0))
                .collect()
        } else {
            scenario
                .life_events
                .iter()
                .map(|(id, w)| {
                    let l = config
                        .life_events
                        .iter()
                        .find(|l| l.id.as_str() == id)
                        .ok_or_else(|| anyhow::anyhow!("life_events: no life event {id}"))?;
                    Ok((l.id.clone(), *w))
                })
                .collect::<anyhow::Result<_>>()?
        };
        anyhow::ensure!(
            !procedures.is_empty() || !life_events.is_empty(),
            "nothing to ask for: no procedure routes and no life event"
        );
        let state = SiteState::new(config.clone());
        Ok(Sim {
            learner: Learner::new(&config),
            rng: StdRng::seed_from_u64(seed),
            now: Timestamp::MIN_UTC,
            agenda: BinaryHeap::new(),
            tie: 0,
            working,
            absent: HashSet::new(),
            procedures,
            life_events,
            uncalled: HashMap::new(),
            arrived: HashMap::new(),
            warm: Timestamp::MIN_UTC,
            report: DayReport::default(),
            serial: 0,
            booked_share: 0.0,
            booked_tickets: HashSet::new(),
            planned: Vec::new(),
            state,
            scenario,
            config,
        })
    }

    fn at(&self, day: NaiveDate, t: NaiveTime) -> Timestamp {
        self.config
            .timezone
            .from_local_datetime(&day.and_time(t))
            .earliest()
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&day.and_time(t)))
    }

    fn schedule(&mut self, at: Timestamp, action: Action) {
        self.tie += 1;
        self.agenda.push(Reverse((at, self.tie, action)));
    }

    fn after(&mut self, seconds: f64, action: Action) {
        let at = self.now + chrono::Duration::milliseconds((seconds.max(0.0) * 1000.0) as i64);
        self.schedule(at, action);
    }

    fn uniform(&mut self, (a, b): (f64, f64)) -> f64 {
        if b > a {
            self.rng.random_range(a..b)
        } else {
            a
        }
    }

    /// Decides and applies a command now; the learner sees each event first.
    fn run(&mut self, command: Command, observer: &mut dyn Observer) -> Result<(), DomainError> {
        let events = decide(&self.state, &command, self.now)?;
        for event in events {
            self.learner.observe(&self.state, &event);
            if let Event::TicketCalled { ticket, .. } = &event {
                if let Some((issued, counted)) = self.uncalled.remove(ticket) {
                    let wait = (self.now - issued).num_milliseconds() as f64 / 1000.0;
                    observer.first_call(ticket, wait, counted);
                }
            }
            let ended = self.state.apply(&event);
            self.report.events += 1;
            for t in ended {
                if let Some(record) = VisitRecord::from_ticket(&self.config, &t) {
                    if let Some(arrived) = self.arrived.remove(&t.id) {
                        self.report.visits.push(SimVisit {
                            ticket: t.id.clone(),
                            arrived,
                            departed: self.now,
                        });
                    }
                    self.report.records.push(record);
                }
            }
        }
        Ok(())
    }

    /// Simulates one business day and returns what it gave.
    pub fn day(&mut self, day: NaiveDate, observer: &mut dyn Observer) -> DayReport {
        self.report = DayReport::default();
        let reset = self.at(day, self.config.day_reset);
        let opens = self.at(day, self.scenario.opens);
        self.warm = opens + chrono::Duration::minutes(i64::from(self.scenario.warmup_min));
        self.schedule(
            reset.max(opens - chrono::Duration::minutes(30)),
            Action::StartDay,
        );
        // Arrivals: a Poisson process with the profile's rate, by thinning.
        let mut arrivals = Vec::new();
        let span = self.scenario.span_s();
        let peak = (0..(span / 60.0) as usize)
            .map(|m| self.scenario.rate(m as f64 * 60.0))
            .fold(0.0, f64::max);
        if peak > 0.0 {
            let mut s = 0.0;
            loop {
                s += -(1.0 - self.rng.random::<f64>()).ln() / peak;
                if s >= span {
                    break;
                }
                if self.rng.random::<f64>() * peak < self.scenario.rate(s) {
                    arrivals.push(opens + chrono::Duration::milliseconds((s * 1000.0) as i64));
                }
            }
        }
        self.book(day, arrivals);
        for i in self.working.clone() {
            let start = opens + chrono::Duration::seconds(self.rng.random_range(0..60));
            self.schedule(start, Action::Idle(i));
            for (from, to) in self.config.counters[i].breaks.clone() {
                self.schedule(self.at(day, from), Action::BreakStart(i));
                self.schedule(self.at(day, to), Action::BreakEnd(i));
            }
        }
        let closes = self.at(day, self.scenario.closes);
        let stop = closes + chrono::Duration::hours(3);
        while let Some(Reverse((at, _, action))) = self.agenda.pop() {
            if at > stop {
                break;
            }
            self.now = self.now.max(at);
            self.act(action, closes, observer);
        }
        self.agenda.clear();
        self.absent.clear();
        self.uncalled.clear();
        self.arrived.clear();
        std::mem::take(&mut self.report)
    }

    fn counter_busy(&self, i: usize) -> bool {
        self.state.counters[i].current.is_some()
    }

    fn act(&mut self, action: Action, closes: Timestamp, observer: &mut dyn Observer) {
        let counter = |s: &Self, i: usize| s.state.counters[i].id.clone();
        match action {
            Action::StartDay => {
                let _ = self.run(Command::StartDay, observer);
            }
            Action::Arrive => {
                self.report.arrivals += 1;
                let Some(plan) = self.plan() else { return };
                self.arrive(plan, observer)
            }
            Action::ArrivePlanned(k) => {
                self.report.arrivals += 1;
                let plan = self.planned[k].clone();
                self.arrive(plan, observer)
            }
            Action::CheckIn(code) => {
                self.report.arrivals += 1;
                let id = self.next_ticket_id();
                let command = Command::CheckIn {
                    code,
                    id: id.clone(),
                    token: format!("sim-{}", self.serial),
                    dispenser: None,
                    lang: None,
                };
                match self.run(command, observer) {
                    Ok(()) => {
                        self.booked_tickets.insert(id.clone());
                        self.joined(id, observer);
                    }
                    Err(_) => self.report.refused += 1,
                }
            }
            Action::Release => {
                let _ = self.run(Command::ReleaseHeld, observer);
                self.wake();
            }
            Action::Idle(i) => {
                let c = &self.state.counters[i];
                if c.state != CounterState::Open || c.current.is_some() || self.now > closes {
                    return;
                }
                match self.run(
                    Command::CallNext {
                        counter: counter(self, i),
                    },
                    observer,
                ) {
                    Ok(()) => {
                        let walk = self.uniform(self.scenario.service.walk_s);
                        self.after(walk, Action::Reach(i));
                    }
                    // Nobody waiting: the counter is woken when someone joins a line; it also
                    // looks again now and then.
                    Err(_) => {
                        let later = 60.0 + self.rng.random::<f64>() * 60.0;
                        self.after(later, Action::Idle(i));
                    }
                }
            }
            Action::Reach(i) => {
                let Some(id) = self.state.counters[i].current.clone() else {
                    return self.after(1.0, Action::Idle(i));
                };
                let Some(t) = self.state.tickets.get(&id) else {
                    return;
                };
                if t.status != TicketStatus::Called {
                    return self.after(1.0, Action::Idle(i));
                }
                let first = t.step().calls == 1 && t.step().requeues == 0 && t.steps.len() == 1;
                let plan = t.procedures.clone();
                if first && self.rng.random_bool(self.scenario.no_show_share) {
                    self.absent.insert(id.clone());
                }
                if !self.absent.contains(&id) {
                    let _ = self.run(
                        Command::Start {
                            counter: counter(self, i),
                        },
                        observer,
                    );
                    let s = self.draw_service(&plan);
                    return self.after(s, Action::Finish(i));
                }
                // Not there: call again, then mark a no-show.
                match self.run(
                    Command::NoShow {
                        counter: counter(self, i),
                    },
                    observer,
                ) {
                    Ok(()) => {
                        if self.rng.random_bool(0.5) {
                            self.absent.remove(&id);
                        }
                        self.wake();
                        let gap = self.uniform(self.scenario.service.gap_s);
                        self.after(gap, Action::Idle(i));
                    }
                    Err(_) => {
                        let _ = self.run(
                            Command::Recall {
                                counter: counter(self, i),
                            },
                            observer,
                        );
                        self.after(60.0, Action::Reach(i));
                    }
                }
            }
            Action::Finish(i) => {
                let Some(id) = self.state.counters[i].current.clone() else {
                    return self.after(1.0, Action::Idle(i));
                };
                let t = &self.state.tickets[&id];
                let transfer =
                    if t.steps.len() == 1 && self.rng.random_bool(self.scenario.transfer_share) {
                        transfer_target(&self.config, t, &mut self.rng)
                    } else {
                        None
                    };
                let transferred = transfer.is_some();
                let _ = self.run(
                    Command::Complete {
                        counter: counter(self, i),
                        transfer_to: transfer,
                    },
                    observer,
                );
                if transferred {
                    self.wake();
                }
                let gap = self.uniform(self.scenario.service.gap_s);
                self.after(gap, Action::Idle(i));
            }
            Action::BreakStart(i) => {
                if self.counter_busy(i) {
                    return self.after(30.0, Action::BreakStart(i));
                }
                let _ = self.run(
                    Command::SetCounterState {
                        counter: counter(self, i),
                        state: CounterState::Paused,
                    },
                    observer,
                );
            }
            Action::BreakEnd(i) => {
                if self.state.counters[i].state == CounterState::Paused {
                    let _ = self.run(
                        Command::SetCounterState {
                            counter: counter(self, i),
                            state: CounterState::Open,
                        },
                        observer,
                    );
                }
                let soon = self.rng.random::<f64>() * 20.0;
                self.after(soon, Action::Idle(i));
            }
        }
    }

    /// Service of a plan: one draw per procedure around its `service_min` × the scenario's scale.
    fn draw_service(&mut self, plan: &[ProcedureCode]) -> f64 {
        let service = self.scenario.service.clone();
        plan.iter()
            .filter_map(|c| {
                self.config
                    .procedure(c)
                    .map(|p| (c, f64::from(p.service_s)))
            })
            .map(|(code, mean)| {
                let mean = mean * service.scale;
                match service.shape {
                    ServiceShape::Exponential => -mean * (1.0 - self.rng.random::<f64>()).ln(),
                    ServiceShape::Lognormal => {
                        let s = service
                            .spreads
                            .get(code.as_str())
                            .copied()
                            .unwrap_or(service.spread);
                        let z = {
                            let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
                            let u2: f64 = self.rng.random();
                            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
                        };
                        (mean.ln() - s * s / 2.0 + s * z).exp()
                    }
                }
            })
            .sum::<f64>()
            .max(1.0)
    }

    fn pick<T: Clone>(&mut self, weighted: &[(T, f64)]) -> Option<T> {
        let total: f64 = weighted.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = self.rng.random::<f64>() * total;
        for (v, w) in weighted {
            x -= w;
            if x <= 0.0 {
                return Some(v.clone());
            }
        }
        weighted.last().map(|(v, _)| v.clone())
    }

    fn plan(&mut self) -> Option<PlanRequest> {
        let life = !self.life_events.is_empty()
            && (self.procedures.is_empty() || self.rng.random_bool(self.scenario.life_event_share));
        if life {
            let events = self.life_events.clone();
            let id = self.pick(&events)?;
            let event = self.config.life_event(&id)?.clone();
            let answers = event
                .questions
                .iter()
                .map(|q| (q.id.clone(), self.rng.random_bool(self.scenario.yes_share)))
                .collect();
            return Some(PlanRequest::LifeEvent { id, answers });
        }
        let procedures = self.procedures.clone();
        Some(PlanRequest::Procedures(vec![self.pick(&procedures)?]))
    }

    /// Free counters notice at once someone joining a line.
    fn wake(&mut self) {
        for i in self.working.clone() {
            let c = &self.state.counters[i];
            if c.state == CounterState::Open && c.current.is_none() {
                self.schedule(self.now, Action::Idle(i));
            }
        }
    }

    /// The day's arrivals: a share of those who come for moving in booked the slot nearest
    /// their time with a free place the evening before, and come 0–10 minutes before it; the
    /// others (and bookers who found no place) walk in.
    fn book(&mut self, day: NaiveDate, arrivals: Vec<Timestamp>) {
        let moving_in = self
            .life_events
            .iter()
            .find(|(id, _)| id.as_str() == "moving_in")
            .map(|(id, w)| (id.clone(), *w));
        let total: f64 = self.life_events.iter().map(|(_, w)| w).sum();
        let onestop = self
            .config
            .queues
            .iter()
            .find(|q| self.config.bookable(&q.id))
            .cloned();
        let (Some((id, weight)), Some(queue)) = (moving_in, onestop) else {
            arrivals
                .into_iter()
                .for_each(|t| self.schedule(t, Action::Arrive));
            return;
        };
        let p = if self.booked_share > 0.0 && total > 0.0 {
            self.scenario.life_event_share * weight / total * self.booked_share
        } else {
            0.0
        };
        let evening = self.at(day, self.scenario.opens) - chrono::Duration::hours(12);
        let slots = self.config.slots(&queue, day);
        for t in arrivals {
            if p <= 0.0 || !self.rng.random_bool(p.min(1.0)) {
                self.schedule(t, Action::Arrive);
                continue;
            }
            let event = self.config.life_event(&id).cloned();
            let answers = event
                .iter()
                .flat_map(|e| e.questions.iter())
                .map(|q| (q.id.clone(), self.rng.random_bool(self.scenario.yes_share)))
                .collect();
            let plan = PlanRequest::LifeEvent {
                id: id.clone(),
                answers,
            };
            let mut by_nearness: Vec<_> = slots.iter().collect();
            by_nearness.sort_by_key(|s| (s.start - t).num_seconds().abs());
            let code = crate::core::reserve::draw_code(&mut self.rng);
            let booked = by_nearness.into_iter().find_map(|slot| {
                let command = Command::Reserve {
                    code: code.clone(),
                    plan: plan.clone(),
                    slot_start: slot.start,
                };
                let events = decide(&self.state, &command, evening).ok()?;
                Some((slot.start, events))
            });
            match booked {
                Some((start, events)) => {
                    for event in events {
                        self.learner.observe(&self.state, &event);
                        self.state.apply(&event);
                    }
                    let early = self.rng.random_range(0..600);
                    self.schedule(
                        start - chrono::Duration::seconds(early),
                        Action::CheckIn(code),
                    );
                    self.schedule(start, Action::Release);
                }
                None => {
                    self.planned.push(plan);
                    self.schedule(t, Action::ArrivePlanned(self.planned.len() - 1));
                }
            }
        }
    }

    fn next_ticket_id(&mut self) -> TicketId {
        self.serial += 1;
        let bytes: [u8; 16] = self.rng.random();
        TicketId::try_from(
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .to_string(),
        )
        .expect("a UUID is a valid id")
    }

    /// A ticket just issued: waiting for its first call.
    fn joined(&mut self, id: TicketId, observer: &mut dyn Observer) {
        let counted = self.now >= self.warm;
        self.uncalled.insert(id.clone(), (self.now, counted));
        self.arrived.insert(id.clone(), self.now);
        observer.issued(&self.state, &self.learner, &id, self.now);
        self.wake();
    }

    fn arrive(&mut self, plan: PlanRequest, observer: &mut dyn Observer) {
        if plan_for(&self.config, &plan)
            .and_then(|p| route(&self.config, &p))
            .is_err()
        {
            self.report.refused += 1;
            return;
        }
        let id = self.next_ticket_id();
        let command = Command::Issue(IssueCommand {
            id: id.clone(),
            token: format!("sim-{}", self.serial),
            plan,
            priority: self.rng.random_bool(self.scenario.priority_share),
            dispenser: None,
            lang: None,
            idempotency_key: None,
        });
        match self.run(command, observer) {
            Ok(()) => self.joined(id, observer),
            Err(_) => self.report.refused += 1,
        }
    }
}

/// Another queue for a finished first step, picked at random among those that handle one of
/// its procedures; `None` if there is none (shared with `madoguchi generate`).
pub(crate) fn transfer_target(
    config: &SiteConfig,
    ticket: &crate::core::Ticket,
    rng: &mut StdRng,
) -> Option<Target> {
    let here = match &ticket.step().target {
        Target::Queue(q) => Some(q),
        Target::Counter(_) => None,
    };
    let elsewhere: Vec<&QueueId> = config
        .queues
        .iter()
        .filter(|q| Some(&q.id) != here)
        .filter(|q| ticket.procedures.iter().any(|p| q.procedures.contains(p)))
        .map(|q| &q.id)
        .collect();
    (!elsewhere.is_empty())
        .then(|| Target::Queue(elsewhere[rng.random_range(0..elsewhere.len())].clone()))
}

/// Consecutive weekdays from `first`.
pub fn weekdays(first: NaiveDate, n: u32) -> Vec<NaiveDate> {
    use chrono::Datelike;
    let mut days = Vec::new();
    let mut d = first;
    while days.len() < n as usize {
        if !matches!(d.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun) {
            days.push(d);
        }
        d = d.succ_opt().expect("a date before the year 262143");
    }
    days
}
