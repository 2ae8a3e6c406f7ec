//! Wait estimates: how long until a waiting ticket is first called.
//!
//! A [`Learner`] folds the site's own events into service-time statistics (the configuration's
//! `service_min` is the prior); the predictors turn a state and those statistics into an
//! estimate. `Madoguchi` is the one the server shows: a Monte-Carlo run of the site forward from
//! the current state, with the core's calling rules, the counters' break schedule, service
//! already under way conditioned on its elapsed time, and learned service times; the estimate is
//! the median over the runs (the median minimizes the mean absolute error). The classical ones
//! (`naive`, `ql`, `les`, `hol`, `ql_staffed`) are kept as baselines for `bench-estimates`.
//!
//! No I/O and no clock: `now` is passed in, and the runs draw from a seeded generator, so the same
//! state and seed give the same estimates.

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveTime, TimeZone};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::model::SiteConfig;
use super::{
    CounterId, CounterState, Event, ProcedureCode, SiteState, Strategy, Target, TicketId,
    TicketStatus, Timestamp,
};

/// Observations a learned mean is worth against its prior.
const PRIOR_WEIGHT: f64 = 8.0;
/// The spread of service times (sd of their logarithm) before anything is learned.
const PRIOR_SIGMA: f64 = 0.45;
/// Seconds between the end of one resident and the next call, before anything is learned.
const PRIOR_GAP_S: f64 = 30.0;
/// The shortest service a plan is assumed to take.
const MIN_SERVICE_S: f64 = 1.0;
/// Forward runs at most, and the work (runs × tickets in line) the server spends per event.
const MAX_RUNS: usize = 41;
const MIN_RUNS: usize = 9;
const WORK_PER_EVENT: usize = 12_000;
/// How far ahead a forward run looks (a day).
const HORIZON_S: f64 = 86_400.0;

/// The predictors `bench-estimates` compares; `Madoguchi` is the one the server shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Predictor {
    /// Planned service of the tickets ahead over the open counters serving the line.
    Naive,
    /// Queue length: (people ahead + 1) over the completion rate of the counters serving the
    /// line, a counter serving k lines counting 1/k.
    Ql,
    /// Last to enter service: the wait of the ticket most recently called from the line.
    Les,
    /// Head of line: how long the first ticket in the line has waited so far.
    Hol,
    /// Queue length with the break schedule and the learned means of each plan ahead.
    QlStaffed,
    /// Monte-Carlo run of the site forward from the current state.
    Madoguchi,
}

impl Predictor {
    pub const ALL: [Predictor; 6] = [
        Predictor::Naive,
        Predictor::Ql,
        Predictor::Les,
        Predictor::Hol,
        Predictor::QlStaffed,
        Predictor::Madoguchi,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Predictor::Naive => "naive",
            Predictor::Ql => "ql",
            Predictor::Les => "les",
            Predictor::Hol => "hol",
            Predictor::QlStaffed => "ql_staffed",
            Predictor::Madoguchi => "madoguchi",
        }
    }
}

/// Count, sum and sum of squares of samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Moments {
    n: f64,
    sum: f64,
    sq: f64,
}

impl Moments {
    fn add(&mut self, x: f64) {
        self.n += 1.0;
        self.sum += x;
        self.sq += x * x;
    }
    fn mean(&self) -> Option<f64> {
        (self.n > 0.0).then(|| self.sum / self.n)
    }
    fn var(&self) -> Option<f64> {
        (self.n > 1.0).then(|| ((self.sq - self.sum * self.sum / self.n) / (self.n - 1.0)).max(0.0))
    }
}

/// Service-time statistics learned from a site's own events, the configuration as the prior.
///
/// A counter is taken from the call to the end of the step (the walk, the service, the paperwork:
/// what holds the counter), per visit plan; the time from one end to the next call while someone
/// waits; how often a call ends in a no-show, and after how long.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Learner {
    /// Counter time per plan (its procedures joined by `+`), in seconds.
    plans: HashMap<String, Moments>,
    /// Observed counter time over the plan's prior mean, across plans.
    ratio: Moments,
    /// ln(observed / expected), for the spread.
    log_ratio: Moments,
    gap: Moments,
    calls: f64,
    no_shows: Moments,
    /// When each counter last finished someone.
    last_end: HashMap<CounterId, Timestamp>,
    /// Counter time of every visit step, in seconds.
    all: Moments,
    /// The wait of the ticket most recently called from each line (for `les`).
    pub last_entered: HashMap<Target, f64>,
    /// The prior of the gap between residents (0: [`PRIOR_GAP_S`]).
    prior_gap: f64,
    /// Who joins each line: the recent rate and the share with priority.
    joins: HashMap<Target, Joins>,
    /// Counter time of the steps of each line.
    line_time: HashMap<Target, Moments>,
}

/// Arrivals to a line: an exponentially weighted rate (time constant [`RATE_WINDOW_S`]) and
/// counts for the priority share.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Joins {
    /// Per second, as of `at`.
    rate: f64,
    at: Timestamp,
    n: f64,
    priority: f64,
}

/// How far back the arrival rate looks (its time constant).
const RATE_WINDOW_S: f64 = 1800.0;

impl Joins {
    fn add(&mut self, at: Timestamp, priority: bool) {
        self.rate = self.rate_at(at) + 1.0 / RATE_WINDOW_S;
        self.at = self.at.max(at);
        self.n += 1.0;
        self.priority += f64::from(u8::from(priority));
    }
    fn rate_at(&self, now: Timestamp) -> f64 {
        let dt = secs(self.at, now).max(0.0);
        self.rate * (-dt / RATE_WINDOW_S).exp()
    }
}

fn plan_key(plan: &[ProcedureCode]) -> String {
    let mut key = String::new();
    for (i, p) in plan.iter().enumerate() {
        if i > 0 {
            key.push('+');
        }
        key.push_str(p.as_str());
    }
    key
}

fn secs(from: Timestamp, to: Timestamp) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

impl Learner {
    /// A learner for a site: the gap prior follows its catalog (a tenth of the mean service,
    /// at most [`PRIOR_GAP_S`]), so a catalog of quick procedures is not swamped by it.
    pub fn new(config: &SiteConfig) -> Learner {
        let mean = config
            .procedures
            .iter()
            .map(|p| f64::from(p.service_s))
            .sum::<f64>()
            / config.procedures.len().max(1) as f64;
        Learner {
            prior_gap: (mean / 10.0).clamp(0.1, PRIOR_GAP_S),
            ..Learner::default()
        }
    }

    /// Folds one event in, given the state before it is applied.
    pub fn observe(&mut self, before: &SiteState, event: &Event) {
        match event {
            Event::DayStarted { .. } => {
                self.last_end.clear();
                self.joins.values_mut().for_each(|j| j.rate = 0.0);
            }
            Event::TicketIssued {
                queue,
                priority,
                at,
                ..
            } => self.join(Target::Queue(queue.clone()), *at, *priority),
            Event::TicketCalled {
                ticket,
                counter,
                at,
                ..
            } => {
                let Some(t) = before.tickets.get(ticket) else {
                    return;
                };
                if t.status != TicketStatus::Waiting {
                    return; // a recall
                }
                self.calls += 1.0;
                self.last_entered.insert(
                    t.step().target.clone(),
                    secs(t.step().enqueued_at, *at).max(0.0),
                );
                if let Some(end) = self.last_end.get(counter) {
                    // A handover only if this resident was already waiting when the counter
                    // became free; otherwise the counter stood idle.
                    if t.step().enqueued_at <= *end {
                        let gap = secs(*end, *at);
                        if (0.0..600.0).contains(&gap) {
                            self.gap.add(gap);
                        }
                    }
                }
            }
            Event::StepCompleted {
                ticket,
                counter,
                at,
                transfer_to,
                ..
            } => {
                let Some(t) = before.tickets.get(ticket) else {
                    return;
                };
                if let Some(target) = transfer_to {
                    self.join(target.clone(), *at, t.priority);
                }
                if let Some(called) = t.step().called_at {
                    let took = secs(called, *at);
                    if took > 0.0 {
                        let prior = prior_s(&before.config, &t.procedures);
                        let expected = self.plan_mean(&before.config, &t.procedures);
                        self.plans
                            .entry(plan_key(&t.procedures))
                            .or_default()
                            .add(took);
                        self.all.add(took);
                        self.line_time
                            .entry(t.step().target.clone())
                            .or_default()
                            .add(took);
                        self.ratio.add(took / prior);
                        self.log_ratio.add((took / expected).ln());
                    }
                }
                self.last_end.insert(counter.clone(), *at);
            }
            Event::NoShowMarked {
                ticket,
                counter,
                at,
                ..
            } => {
                if let Some(called) = before.tickets.get(ticket).and_then(|t| t.step().called_at) {
                    self.no_shows.add(secs(called, *at).max(0.0));
                }
                self.last_end.insert(counter.clone(), *at);
            }
            _ => {}
        }
    }

    fn join(&mut self, target: Target, at: Timestamp, priority: bool) {
        self.joins
            .entry(target)
            .or_insert(Joins {
                rate: 0.0,
                at,
                n: 0.0,
                priority: 0.0,
            })
            .add(at, priority);
    }

    /// The recent rate (per second) at which residents join `target` at `now`, and the share of
    /// them with priority.
    pub fn arrivals(&self, target: &Target, now: Timestamp) -> (f64, f64) {
        self.joins
            .get(target)
            .map_or((0.0, 0.0), |j| (j.rate_at(now), j.priority / j.n.max(1.0)))
    }

    /// Mean counter time of a step in `target`'s line.
    pub fn line_mean(&self, config: &SiteConfig, target: &Target) -> f64 {
        let prior = self.mean_all(config);
        match self.line_time.get(target) {
            Some(m) => (m.sum + PRIOR_WEIGHT * prior) / (m.n + PRIOR_WEIGHT),
            None => prior,
        }
    }

    /// Learned counter time over configured service time, across plans (1 before any visit).
    fn global_ratio(&self) -> f64 {
        (self.ratio.sum + PRIOR_WEIGHT) / (self.ratio.n + PRIOR_WEIGHT)
    }

    /// Mean counter time of a plan: its own observations, shrunk towards the configured service
    /// time scaled by what the site has learned across plans.
    pub fn plan_mean(&self, config: &SiteConfig, plan: &[ProcedureCode]) -> f64 {
        let prior = prior_s(config, plan) * self.global_ratio();
        match self.plans.get(&plan_key(plan)) {
            Some(m) => (m.sum + PRIOR_WEIGHT * prior) / (m.n + PRIOR_WEIGHT),
            None => prior,
        }
    }

    /// Mean counter time of a visit step, whatever its plan (the configured catalog's mean
    /// service before anything is learned).
    pub fn mean_all(&self, config: &SiteConfig) -> f64 {
        let prior = if config.procedures.is_empty() {
            MIN_SERVICE_S
        } else {
            config
                .procedures
                .iter()
                .map(|p| f64::from(p.service_s))
                .sum::<f64>()
                / config.procedures.len() as f64
        };
        (self.all.sum + PRIOR_WEIGHT * prior.max(MIN_SERVICE_S)) / (self.all.n + PRIOR_WEIGHT)
    }

    /// The sd of the logarithm of counter time around its plan's mean.
    pub fn sigma(&self) -> f64 {
        let n = self.log_ratio.n;
        let learned = self.log_ratio.var().unwrap_or(PRIOR_SIGMA * PRIOR_SIGMA);
        ((n * learned + PRIOR_WEIGHT * PRIOR_SIGMA * PRIOR_SIGMA) / (n + PRIOR_WEIGHT))
            .sqrt()
            .clamp(0.05, 1.5)
    }

    /// Seconds from one resident's end to the next call: learned, the prior being
    /// [`PRIOR_GAP_S`] (a tenth of the mean service for a catalog of quick procedures).
    pub fn gap_mean(&self) -> f64 {
        let prior = if self.prior_gap > 0.0 {
            self.prior_gap
        } else {
            PRIOR_GAP_S
        };
        (self.gap.sum + PRIOR_WEIGHT * prior) / (self.gap.n + PRIOR_WEIGHT)
    }

    /// Share of first calls that end in a no-show, and the counter time one takes.
    pub fn no_show(&self) -> (f64, f64) {
        let p = self.no_shows.n / (self.calls + PRIOR_WEIGHT * 10.0);
        (p.clamp(0.0, 0.5), self.no_shows.mean().unwrap_or(120.0))
    }
}

/// The configured service time of a plan (at least [`MIN_SERVICE_S`]).
fn prior_s(config: &SiteConfig, plan: &[ProcedureCode]) -> f64 {
    let s: f64 = plan
        .iter()
        .filter_map(|c| config.procedure(c))
        .map(|p| f64::from(p.service_s))
        .sum();
    s.max(MIN_SERVICE_S)
}

/// The estimates the screens show at one seq: per waiting ticket, and per line for someone
/// joining it now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimates {
    pub seq: u64,
    /// FxHash: the views look tickets up here for every ticket ahead they walk.
    pub tickets: rustc_hash::FxHashMap<TicketId, u64>,
    pub lines: BTreeMap<Target, u64>,
}

/// Whether a counter works at `t` seconds from now, by its state now and its breaks.
struct Availability {
    /// Intervals (seconds from now) when the counter does not call.
    off: Vec<(f64, f64)>,
}

impl Availability {
    fn of(state: &SiteState, counter: &super::Counter, now: Timestamp) -> Availability {
        let config = &state.config;
        let breaks = config
            .counter(&counter.id)
            .map(|c| c.breaks.as_slice())
            .unwrap_or_default();
        let tz = config.timezone;
        let local = now.with_timezone(&tz);
        let mut off: Vec<(f64, f64)> = Vec::new();
        for day in [
            local.date_naive(),
            local.date_naive().succ_opt().unwrap_or(local.date_naive()),
        ] {
            for (from, to) in breaks {
                let at = |t: &NaiveTime| {
                    tz.from_local_datetime(&day.and_time(*t))
                        .earliest()
                        .map(|d| secs(now, d.with_timezone(&chrono::Utc)))
                };
                if let (Some(a), Some(b)) = (at(from), at(to)) {
                    if b > 0.0 {
                        off.push((a, b));
                    }
                }
            }
        }
        match counter.state {
            CounterState::Open => {}
            CounterState::Closed => off = vec![(f64::NEG_INFINITY, f64::INFINITY)],
            CounterState::Paused => {
                // Paused for a scheduled break: back when it ends; otherwise back in a while.
                let until = off
                    .iter()
                    .find(|(a, b)| *a <= 0.0 && *b > 0.0)
                    .map_or(PAUSE_S, |(_, b)| *b);
                off.push((f64::NEG_INFINITY, until));
            }
        }
        off.sort_by(|a, b| a.0.total_cmp(&b.0));
        Availability { off }
    }

    /// The first moment at or after `t` when the counter works.
    fn next_open(&self, mut t: f64) -> f64 {
        for (a, b) in &self.off {
            if *a <= t && t < *b {
                t = *b;
            }
        }
        t
    }

    /// Seconds of work between 0 and `t`.
    fn open_between(&self, t: f64) -> f64 {
        let closed: f64 = self
            .off
            .iter()
            .map(|(a, b)| (b.min(t) - a.max(0.0)).max(0.0))
            .sum();
        (t - closed).max(0.0)
    }
}

/// How long a counter paused outside its breaks is expected to stay paused.
const PAUSE_S: f64 = 600.0;

/// One waiting entry of a line in a forward run.
#[derive(Debug, Clone, Copy)]
struct Entry {
    rank: u8,
    order: u64,
    mean: f64,
    /// Index into the tickets followed, or `None` for a ticket only in the way.
    follow: Option<usize>,
}

struct Line {
    target: Target,
    entries: Vec<Entry>,
    /// Someone joining at a given time (seconds from now), followed but taking no counter time:
    /// the followed index of each, by time. The first at 0 is the phantom for "joining now".
    joins: Vec<(f64, usize)>,
    /// Residents joining from now on, per second (the recent rate), the share of them with
    /// priority, and their mean counter time: they take counters that would call this line first.
    rate: f64,
    priority: f64,
    mean: f64,
    /// The queue's reception hours over the run, if it has any.
    hours: Option<LineHours>,
    /// Bookings still to check in, each joining at its slot's start (seconds from now, sorted):
    /// residents known to come, besides the rate.
    booked: Vec<f64>,
}

/// A queue's reception hours as a forward run sees them, in seconds from now: when residents
/// may join (from a period's start to its last reception, not while the queue is closing), and
/// when its counters do not call from it (before the day's first period and between periods:
/// the office is closed; after the last period they finish whoever holds a ticket).
#[derive(Debug, Clone, Default, PartialEq)]
struct LineHours {
    joining: Vec<(f64, f64)>,
    no_calls: Vec<(f64, f64)>,
}

impl LineHours {
    /// The hours of `queue` from `now` to the run's horizon; `None` for a queue without hours.
    fn of(state: &SiteState, queue: &super::QueueId, now: Timestamp) -> Option<LineHours> {
        let config = &state.config;
        let hours = config.queue(queue)?.hours.as_deref()?;
        let at = |local: chrono::NaiveDateTime| secs(now, config.instant(local).to_utc());
        let today = now.with_timezone(&config.timezone).date_naive();
        let mut lh = LineHours::default();
        let horizon = HORIZON_S;
        for date in today.iter_days().take(2) {
            let midnight = date.and_time(NaiveTime::MIN);
            let periods = hours.periods(date);
            let mut closed_from = at(midnight);
            for &(start, end) in periods {
                lh.no_calls.push((closed_from, at(date.and_time(start))));
                lh.joining.push((
                    at(date.and_time(start)),
                    at(date.and_time(hours.last_reception(start, end))),
                ));
                closed_from = at(date.and_time(end));
            }
            if periods.is_empty() {
                lh.no_calls
                    .push((closed_from, at(midnight + chrono::Duration::days(1))));
            }
        }
        // A queue closing (or kept open) now: nobody joins until that ends.
        if let Some((super::ReceptionMode::Closing, until)) = state.reception.get(queue) {
            let until = secs(now, *until);
            for w in &mut lh.joining {
                w.0 = w.0.max(until);
            }
        }
        let keep = |w: &(f64, f64)| w.1 > 0.0 && w.0 < horizon && w.0 < w.1;
        lh.joining.retain(keep);
        lh.no_calls.retain(keep);
        Some(lh)
    }

    /// Seconds between `from` and `to` when residents may join.
    fn joining_between(&self, from: f64, to: f64) -> f64 {
        self.joining
            .iter()
            .map(|(a, b)| (b.min(to) - a.max(from)).max(0.0))
            .sum()
    }

    /// When counters may call from the line again, if they may not at `t`.
    fn calls_resume(&self, t: f64) -> Option<f64> {
        self.no_calls
            .iter()
            .find(|(a, b)| *a <= t && t < *b)
            .map(|(_, b)| *b)
    }
}

/// A line during one run: how far it has been called, and who has joined since.
#[derive(Debug, Clone)]
struct LineRun {
    next: usize,
    joined_priority: u32,
    /// Residents without priority who joined so far, and how many of them were called.
    joined: u32,
    joined_called: u32,
    /// Arrivals are counted up to this time.
    until: f64,
    /// The next of the line's followed joins still to come.
    next_join: usize,
    /// The next of the line's bookings still to come.
    next_booked: usize,
    /// Followed joins in line: (followed index, when, how many joined before them).
    in_line: std::collections::VecDeque<(usize, f64, u32)>,
}

impl LineRun {
    fn waiting(&self, line: &Line) -> u32 {
        (line.entries.len() - self.next) as u32 + self.joined_priority + self.joined
            - self.joined_called
    }
}

/// Sort keys of those who join during a run: behind everyone there now (and the phantom), a
/// priority arrival before every other non-priority ticket.
const JOINED_PRIORITY: (u8, u64) = (0, u64::MAX - 1);
const PHANTOM: (u8, u64) = (1, u64::MAX - 2);
const JOINED: (u8, u64) = (1, u64::MAX - 1);

/// What a followed entry of a forward run stands for.
#[derive(Debug, Clone)]
enum Followed {
    Ticket(TicketId),
    /// Someone joining this line now.
    Phantom(Target),
    /// Someone joining a line at one of the what-if's points.
    Later,
}

struct Runner {
    lines: Vec<Line>,
    ids: Vec<Followed>,
    counters: Vec<RunCounter>,
    sigma: f64,
    gap: f64,
    no_show: (f64, f64),
    followed: usize,
}

struct RunCounter {
    /// Its own line (transfers to this counter), then its profile's lines.
    own: Option<usize>,
    serves: Vec<usize>,
    strategy: Strategy,
    availability: Availability,
    /// Seconds from now when the counter is next free; its residual service is drawn per run.
    busy: Option<(f64, f64)>,
}

/// The waits the Monte-Carlo runs give: per followed entry, the time from its joining (now for
/// those in line) to its call; and the sum over runs of each line's waiting count at each point.
struct RunResult {
    samples: Vec<Vec<f64>>,
    waiting: Vec<Vec<f64>>,
}

impl Runner {
    /// A run of `state` from `now` following every waiting ticket (or only `only`), and with
    /// `phantoms` someone joining each queue now.
    fn new(
        state: &SiteState,
        learner: &Learner,
        now: Timestamp,
        only: Option<&TicketId>,
        phantoms: bool,
    ) -> Self {
        Self::with_points(state, learner, now, only, phantoms, &[], &HashMap::new())
    }

    /// As [`Self::new`], and someone joining each queue at each of `points` (seconds from now),
    /// with `extra` residents per second joining the lines named.
    fn with_points(
        state: &SiteState,
        learner: &Learner,
        now: Timestamp,
        only: Option<&TicketId>,
        phantoms: bool,
        points: &[f64],
        extra: &HashMap<Target, f64>,
    ) -> Self {
        let mut lines = Vec::new();
        let mut line_of = HashMap::new();
        let mut ids = Vec::new();
        // Plans repeat: each one's mean is worked out once per run of the forecast.
        let mut means: HashMap<&[ProcedureCode], f64> = HashMap::new();
        let mut targets: Vec<Target> = state.waiting.keys().cloned().collect();
        for q in &state.config.queues {
            let t = Target::Queue(q.id.clone());
            if !state.waiting.contains_key(&t) {
                targets.push(t);
            }
        }
        for target in targets {
            let entries: Vec<Entry> = state
                .waiting
                .get(&target)
                .into_iter()
                .flatten()
                .map(|k| {
                    let t = &state.tickets[&k.ticket];
                    let follow = only.is_none_or(|o| *o == k.ticket).then(|| {
                        ids.push(Followed::Ticket(k.ticket.clone()));
                        ids.len() - 1
                    });
                    Entry {
                        rank: k.rank,
                        order: k.order,
                        mean: *means
                            .entry(t.procedures.as_slice())
                            .or_insert_with(|| learner.plan_mean(&state.config, &t.procedures)),
                        follow,
                    }
                })
                .collect();
            let mut joins = Vec::new();
            if matches!(target, Target::Queue(_)) {
                if phantoms {
                    ids.push(Followed::Phantom(target.clone()));
                    joins.push((0.0, ids.len() - 1));
                }
                for at in points {
                    ids.push(Followed::Later);
                    joins.push((*at, ids.len() - 1));
                }
            }
            let (rate, priority) = learner.arrivals(&target, now);
            let rate = rate + extra.get(&target).copied().unwrap_or(0.0);
            let mean = learner.line_mean(&state.config, &target);
            let hours = match &target {
                Target::Queue(q) => LineHours::of(state, q, now),
                Target::Counter(_) => None,
            };
            let booked = match &target {
                Target::Queue(q) => booked_arrivals(state, q, now),
                Target::Counter(_) => Vec::new(),
            };
            line_of.insert(target.clone(), lines.len());
            lines.push(Line {
                target: target.clone(),
                entries,
                joins,
                rate,
                priority,
                mean,
                hours,
                booked,
            });
        }
        let counters = state
            .counters
            .iter()
            .map(|c| {
                let busy = c.current.as_ref().and_then(|id| {
                    let t = state.tickets.get(id)?;
                    let called = t.step().called_at?;
                    Some((
                        secs(called, now).max(0.0),
                        learner.plan_mean(&state.config, &t.procedures),
                    ))
                });
                RunCounter {
                    own: line_of.get(&Target::Counter(c.id.clone())).copied(),
                    serves: c
                        .profile
                        .queues
                        .iter()
                        .filter_map(|q| line_of.get(&Target::Queue(q.clone())).copied())
                        .collect(),
                    strategy: c.profile.strategy,
                    availability: Availability::of(state, c, now),
                    busy,
                }
            })
            .collect();
        Runner {
            followed: ids.len(),
            ids,
            lines,
            counters,
            sigma: learner.sigma(),
            gap: learner.gap_mean(),
            no_show: learner.no_show(),
        }
    }

    /// A counter time drawn around `mean` (lognormal with the learned spread).
    fn draw(&self, rng: &mut SmallRng, mean: f64) -> f64 {
        let s = self.sigma;
        let mu = mean.ln() - s * s / 2.0;
        (mu + s * normal(rng)).exp()
    }

    /// The rest of a service that has run `elapsed` seconds: drawn from the lognormal given that
    /// it has lasted that long.
    fn residual(&self, rng: &mut SmallRng, elapsed: f64, mean: f64) -> f64 {
        let s = self.sigma;
        let mu = mean.ln() - s * s / 2.0;
        let floor = if elapsed > 0.0 {
            phi((elapsed.ln() - mu) / s)
        } else {
            0.0
        };
        let u = floor + (1.0 - floor) * rng.random::<f64>();
        let total = (mu + s * phi_inv(u.clamp(1e-12, 1.0 - 1e-12))).exp();
        (total - elapsed).max(1.0)
    }

    /// Runs the site forward `runs` times; `samples[f]` gets the wait of followed entry `f` in
    /// each run ([`HORIZON_S`] if not called within it), and `waiting[k][l]` the sum over runs of
    /// line `l`'s waiting count at `points[k]`.
    fn run(&self, runs: usize, seed: u64, points: &[f64]) -> RunResult {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut samples = vec![Vec::with_capacity(runs); self.followed];
        let mut waiting = vec![vec![0.0; self.lines.len()]; points.len()];
        let mut free = vec![0.0f64; self.counters.len()];
        let mut lines: Vec<LineRun> = Vec::with_capacity(self.lines.len());
        let mut recorded = vec![false; self.followed];
        for _ in 0..runs {
            lines.clear();
            for _ in &self.lines {
                lines.push(LineRun {
                    next: 0,
                    joined_priority: 0,
                    joined: 0,
                    joined_called: 0,
                    until: 0.0,
                    next_join: 0,
                    next_booked: 0,
                    in_line: Default::default(),
                });
            }
            for (l, run) in lines.iter_mut().enumerate() {
                self.arrive(&mut rng, l, run, 0.0);
            }
            recorded.iter_mut().for_each(|r| *r = false);
            for (i, c) in self.counters.iter().enumerate() {
                let start = match c.busy {
                    Some((elapsed, mean)) => self.residual(&mut rng, elapsed, mean) + self.gap,
                    None => rng.random::<f64>() * self.gap,
                };
                free[i] = c.availability.next_open(start);
            }
            let mut left = self.followed;
            let mut point = 0;
            loop {
                let next = free
                    .iter()
                    .copied()
                    .enumerate()
                    .filter(|(_, t)| *t <= HORIZON_S)
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                // The lines as they stand at each point passed.
                while point < points.len() && next.is_none_or(|(_, t)| points[point] <= t) {
                    for (l, run) in lines.iter_mut().enumerate() {
                        self.arrive(&mut rng, l, run, points[point]);
                        waiting[point][l] += f64::from(run.waiting(&self.lines[l]));
                    }
                    point += 1;
                }
                let Some((i, t)) = next.filter(|_| left > 0) else {
                    break;
                };
                let c = &self.counters[i];
                for &l in c.own.iter().chain(&c.serves) {
                    self.arrive(&mut rng, l, &mut lines[l], t);
                }
                let Some((l, key)) = self.pick(i, &lines, t) else {
                    // Nobody for this counter: it looks again when someone joins its lines.
                    let next = c
                        .own
                        .iter()
                        .chain(&c.serves)
                        .map(|&l| {
                            let line = &self.lines[l];
                            let join = line
                                .joins
                                .get(lines[l].next_join)
                                .map_or(f64::INFINITY, |j| j.0);
                            let resume = line
                                .hours
                                .as_ref()
                                .and_then(|h| h.calls_resume(t))
                                .filter(|_| lines[l].waiting(line) > 0)
                                .unwrap_or(f64::INFINITY);
                            (t + exponential(&mut rng, line.rate)).min(join).min(resume)
                        })
                        .fold(f64::INFINITY, f64::min);
                    free[i] = c.availability.next_open(next);
                    continue;
                };
                let line = &self.lines[l];
                let run = &mut lines[l];
                let mean = if key == PHANTOM {
                    // Someone followed who joined at `at` is called at t. It holds nobody up:
                    // it is only followed, and the counter calls again at once.
                    let (f, at, _) = run.in_line.pop_front().expect("a join in line");
                    samples[f].push(t - at);
                    recorded[f] = true;
                    left -= 1;
                    continue;
                } else if key == JOINED_PRIORITY {
                    run.joined_priority -= 1;
                    line.mean
                } else if key == JOINED {
                    run.joined_called += 1;
                    line.mean
                } else {
                    let e = line.entries[run.next];
                    run.next += 1;
                    if let Some(f) = e.follow {
                        samples[f].push(t);
                        recorded[f] = true;
                        left -= 1;
                    }
                    e.mean
                };
                let took = if rng.random::<f64>() < self.no_show.0 {
                    self.no_show.1
                } else {
                    self.draw(&mut rng, mean)
                };
                let after = t + took + self.gap * (0.5 + rng.random::<f64>());
                free[i] = c.availability.next_open(after);
            }
            for (f, done) in recorded.iter().enumerate() {
                if !done {
                    samples[f].push(HORIZON_S);
                }
            }
        }
        RunResult { samples, waiting }
    }

    /// Lets residents join line `l` up to time `t`, the followed joins among them in order.
    /// Those who join are only counted (a Poisson number per interval, priority and not apart),
    /// so a busy line costs the same as a quiet one.
    fn arrive(&self, rng: &mut SmallRng, l: usize, run: &mut LineRun, t: f64) {
        let line = &self.lines[l];
        while let Some(&(at, f)) = line.joins.get(run.next_join).filter(|j| j.0 <= t) {
            count_arrivals(rng, line, run, at);
            run.in_line.push_back((f, at, run.joined));
            run.next_join += 1;
        }
        count_arrivals(rng, line, run, t);
    }

    /// The line counter `i` calls from next, and the key of whom it calls, by the core's rules:
    /// its own line first, then the priority ticket longest in line, then by its strategy.
    fn pick(&self, i: usize, lines: &[LineRun], t: f64) -> Option<(usize, (u8, u64))> {
        let c = &self.counters[i];
        let head = |l: usize| -> Option<(u8, u64)> {
            if let Some(h) = &self.lines[l].hours {
                if h.calls_resume(t).is_some() {
                    return None;
                }
            }
            let run = &lines[l];
            if let Some(e) = self.lines[l].entries.get(run.next) {
                if e.rank == 0 || run.joined_priority == 0 {
                    return Some((e.rank, e.order));
                }
            }
            if run.joined_priority > 0 {
                return Some(JOINED_PRIORITY);
            }
            if run
                .in_line
                .front()
                .is_some_and(|(_, _, before)| *before == run.joined_called)
            {
                return Some(PHANTOM);
            }
            (run.joined > run.joined_called).then_some(JOINED)
        };
        if let Some(own) = c.own {
            if let Some(h) = head(own) {
                return Some((own, h));
            }
        }
        // One pass over the profile's lines, without allocating (this runs at every step): the
        // priority head waiting longest, the first line with someone, the longest-waiting head.
        let mut priority: Option<(usize, (u8, u64))> = None;
        let mut first: Option<(usize, (u8, u64))> = None;
        let mut oldest: Option<(usize, (u8, u64))> = None;
        for &l in &c.serves {
            let Some(h) = head(l) else { continue };
            if h.0 == 0 && priority.is_none_or(|(_, p)| h.1 < p.1) {
                priority = Some((l, h));
            }
            first = first.or(Some((l, h)));
            if oldest.is_none_or(|(_, o)| h.1 < o.1) {
                oldest = Some((l, h));
            }
        }
        priority.or(match c.strategy {
            Strategy::ProfileOrder => first,
            Strategy::LongestWait => oldest,
        })
    }
}

/// Counts the residents joining `line` from `run.until` to `to`.
fn count_arrivals(rng: &mut SmallRng, line: &Line, run: &mut LineRun, to: f64) {
    if to <= run.until {
        return;
    }
    let open = match &line.hours {
        None => to - run.until,
        Some(h) => h.joining_between(run.until, to),
    };
    let mean = line.rate * open;
    run.until = to;
    while line.booked.get(run.next_booked).is_some_and(|b| *b <= to) {
        run.joined += 1;
        run.next_booked += 1;
    }
    if mean > 0.0 {
        run.joined_priority += poisson(rng, mean * line.priority);
        run.joined += poisson(rng, mean * (1.0 - line.priority));
    }
}

/// When today's bookings of `queue` still to check in join its line, in seconds from `now`:
/// at their slot's start (now for one whose slot began but whose check-in window is open).
fn booked_arrivals(state: &SiteState, queue: &super::QueueId, now: Timestamp) -> Vec<f64> {
    let Some(r) = state.config.reservations.as_ref() else {
        return Vec::new();
    };
    let late = chrono::Duration::minutes(i64::from(r.check_in_late_min));
    let until = now + chrono::Duration::seconds(HORIZON_S as i64);
    // The per-slot counts, in start order: only the run's day, whatever is booked further on.
    state
        .booked
        .range((queue.clone(), now - late)..=(queue.clone(), until))
        .flat_map(|((_, start), n)| std::iter::repeat_n(secs(now, *start).max(0.0), *n as usize))
        .collect()
}

/// A Poisson draw of mean `mean` (0 for none).
fn poisson(rng: &mut SmallRng, mean: f64) -> u32 {
    match rand_distr::Poisson::new(mean) {
        Ok(d) if mean > 0.0 => rng.sample::<f64, _>(d).min(f64::from(u32::MAX / 2)) as u32,
        _ => 0,
    }
}

/// Seconds to the next event of a Poisson process of `rate` per second (never for 0).
fn exponential(rng: &mut SmallRng, rate: f64) -> f64 {
    if rate <= 0.0 {
        return f64::INFINITY;
    }
    -(1.0 - rng.random::<f64>()).ln() / rate
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The madoguchi estimates of every waiting ticket and every queue (for someone joining it now)
/// at `now`: the median of forward runs, as many as keep the work per call bounded.
pub fn forecast(state: &SiteState, learner: &Learner, now: Timestamp, seed: u64) -> Estimates {
    let runner = Runner::new(state, learner, now, None, true);
    let waiting: usize = runner.lines.iter().map(|l| l.entries.len()).sum();
    let runs = (WORK_PER_EVENT / waiting.max(1)).clamp(MIN_RUNS, MAX_RUNS) | 1;
    let RunResult { mut samples, .. } = runner.run(runs, seed, &[]);
    let mut estimates = Estimates {
        seq: state.seq,
        ..Estimates::default()
    };
    for (id, samples) in runner.ids.iter().zip(samples.iter_mut()) {
        let wait = median(samples).round() as u64;
        match id {
            Followed::Ticket(t) => {
                estimates.tickets.insert(t.clone(), wait);
            }
            Followed::Phantom(target) => {
                estimates.lines.insert(target.clone(), wait);
            }
            Followed::Later => {}
        }
    }
    estimates
}

/// Keeps an earlier estimate where the fresh one differs from it by less than a minute or 10 %
/// (the spread of the runs' medians), so shown estimates do not flicker from event to event.
pub fn settle(earlier: &Estimates, mut fresh: Estimates) -> Estimates {
    fn keep(old: Option<&u64>, new: &mut u64) {
        if let Some(&old) = old {
            let band = (old / 10).max(60);
            if new.abs_diff(old) < band {
                *new = old;
            }
        }
    }
    for (id, wait) in fresh.tickets.iter_mut() {
        keep(earlier.tickets.get(id), wait);
    }
    for (target, wait) in fresh.lines.iter_mut() {
        keep(earlier.lines.get(target), wait);
    }
    fresh
}

/// One moment of a forecast line: how many wait, and how long someone joining then waits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastPoint {
    /// Seconds from now.
    pub at_s: f64,
    /// Mean over the runs.
    pub waiting: f64,
    /// Median over the runs, from joining to the first call.
    pub wait_s: f64,
}

/// Runs of a what-if forecast: enough for a stable median, few enough for a quick answer.
pub const WHAT_IF_RUNS: usize = 31;

/// The site's lines over the next `horizon_s` seconds from `state` at `now`, at points every
/// `step_s`: the forecast of a what-if (`state` may carry changed counters; `extra` adds
/// residents per second to the lines named). Queue lines only, in configuration order.
pub fn what_if(
    state: &SiteState,
    learner: &Learner,
    now: Timestamp,
    horizon_s: f64,
    step_s: f64,
    extra: &HashMap<Target, f64>,
    seed: u64,
) -> Vec<(Target, Vec<ForecastPoint>)> {
    let points: Vec<f64> = (0..)
        .map(|k| k as f64 * step_s)
        .take_while(|t| *t <= horizon_s + 1e-9)
        .collect();
    let runner = Runner::with_points(state, learner, now, Some(&NOBODY), false, &points, extra);
    let RunResult {
        mut samples,
        waiting,
    } = runner.run(WHAT_IF_RUNS, seed, &points);
    let mut out = Vec::new();
    for q in &state.config.queues {
        let target = Target::Queue(q.id.clone());
        let Some(l) = runner.lines.iter().position(|l| l.target == target) else {
            continue;
        };
        let line = &runner.lines[l];
        let forecast = line
            .joins
            .iter()
            .enumerate()
            .map(|(k, (at, f))| ForecastPoint {
                at_s: *at,
                waiting: waiting[k][l] / WHAT_IF_RUNS as f64,
                wait_s: median(&mut samples[*f]).round(),
            })
            .collect();
        out.push((target, forecast));
    }
    out
}

/// A ticket id no ticket has: what-if runs follow no ticket in line.
static NOBODY: std::sync::LazyLock<TicketId> = std::sync::LazyLock::new(|| {
    TicketId::try_from("00000000-0000-0000-0000-000000000000".to_owned()).expect("a valid id")
});

/// One predictor's estimate, in seconds from `now`, of when waiting ticket `ticket` is first
/// called. `None` if it is not waiting.
pub fn predict(
    predictor: Predictor,
    state: &SiteState,
    learner: &Learner,
    ticket: &TicketId,
    now: Timestamp,
    seed: u64,
) -> Option<f64> {
    let t = state.tickets.get(ticket)?;
    if t.status != TicketStatus::Waiting {
        return None;
    }
    let target = &t.step().target;
    let key = t.wait_key();
    let line = state.waiting.get(target)?;
    let ahead = || line.range(..key.clone()).map(|k| &state.tickets[&k.ticket]);
    let estimate = match predictor {
        Predictor::Naive => state.naive_wait(target, ahead()) as f64,
        Predictor::Ql => {
            let n = ahead().count() as f64 + 1.0;
            n * learner.mean_all(&state.config) / shares(state, target, |_| true)
        }
        Predictor::Les => learner.last_entered.get(target).copied().unwrap_or(0.0),
        Predictor::Hol => line
            .get_min()
            .filter(|k| k.ticket != *ticket)
            .map_or(0.0, |k| {
                secs(state.tickets[&k.ticket].step().enqueued_at, now).max(0.0)
            }),
        Predictor::QlStaffed => {
            let work: f64 = ahead()
                .map(|a| learner.plan_mean(&state.config, &a.procedures))
                .sum::<f64>()
                + learner.mean_all(&state.config);
            staffed_time(state, target, now, work)
        }
        Predictor::Madoguchi => {
            let runner = Runner::new(state, learner, now, Some(ticket), false);
            let RunResult { mut samples, .. } = runner.run(MAX_RUNS, seed, &[]);
            median(&mut samples[0])
        }
    };
    Some(estimate.clamp(0.0, HORIZON_S))
}

/// The counters serving a line, a counter serving k queues counting 1/k, among those `open`.
fn shares(state: &SiteState, target: &Target, open: impl Fn(&super::Counter) -> bool) -> f64 {
    let share = |c: &super::Counter| match target {
        Target::Counter(id) => f64::from(u8::from(&c.id == id)),
        Target::Queue(q) if c.profile.queues.contains(q) => 1.0 / c.profile.queues.len() as f64,
        Target::Queue(_) => 0.0,
    };
    let open_shares: f64 = state
        .counters
        .iter()
        .filter(|c| c.state == CounterState::Open && open(c))
        .map(share)
        .sum();
    open_shares.max(1e-3)
}

/// The time the counters serving `target`, by their shares and break schedule, take for `work`
/// seconds of counter time.
fn staffed_time(state: &SiteState, target: &Target, now: Timestamp, work: f64) -> f64 {
    let counters: Vec<(f64, Availability)> = state
        .counters
        .iter()
        .filter_map(|c| {
            let share = match target {
                Target::Counter(id) => f64::from(u8::from(&c.id == id)),
                Target::Queue(q) if c.profile.queues.contains(q) => {
                    1.0 / c.profile.queues.len() as f64
                }
                Target::Queue(_) => 0.0,
            };
            (share > 0.0).then(|| (share, Availability::of(state, c, now)))
        })
        .collect();
    let capacity = |t: f64| -> f64 {
        counters
            .iter()
            .map(|(share, a)| share * a.open_between(t))
            .sum()
    };
    if capacity(HORIZON_S) < work {
        return HORIZON_S;
    }
    let (mut lo, mut hi) = (0.0, HORIZON_S);
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        if capacity(mid) < work {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// A standard normal draw.
fn normal(rng: &mut SmallRng) -> f64 {
    rng.sample(rand_distr::StandardNormal)
}

/// The standard normal distribution function (via erfc, Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7).
fn phi(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        1.0 - r / 2.0
    } else {
        r / 2.0
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9).
fn phi_inv(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.024_25;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -phi_inv(1.0 - p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_functions_invert_each_other() {
        for p in [1e-6, 0.01, 0.1, 0.3, 0.5, 0.77, 0.99, 0.999_99] {
            let x = phi_inv(p);
            assert!(
                (phi(x) - p).abs() < 1e-6 * p.max(1e-3) * 10.0,
                "{p} → {x} → {}",
                phi(x)
            );
        }
        assert!((phi(1.959_964) - 0.975).abs() < 1e-6);
    }

    #[test]
    fn a_residual_is_drawn_from_the_tail() {
        let learner = Learner::default();
        let runner = Runner {
            lines: Vec::new(),
            ids: Vec::new(),
            counters: Vec::new(),
            sigma: 0.5,
            gap: learner.gap_mean(),
            no_show: learner.no_show(),
            followed: 0,
        };
        let mut rng = SmallRng::seed_from_u64(7);
        let fresh: f64 = (0..4000)
            .map(|_| runner.residual(&mut rng, 0.0, 600.0))
            .sum::<f64>()
            / 4000.0;
        assert!(
            (fresh - 600.0).abs() < 30.0,
            "mean of a fresh service {fresh}"
        );
        // Past the mean, the rest is still positive and shorter than a whole service again.
        let late: f64 = (0..4000)
            .map(|_| runner.residual(&mut rng, 900.0, 600.0))
            .sum::<f64>()
            / 4000.0;
        assert!(late > 0.0 && late < 600.0, "rest after 900 s: {late}");
    }
}
