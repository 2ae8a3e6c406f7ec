//! `madoguchi bench-estimates`: every predictor on the same simulated days (common random
//! numbers: one simulated path, every predictor asked at every issue), scored against the wait
//! each resident then had (issue → first call), plus the stationary M/M/s sanity check.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime};
use serde::Serialize;

use super::{weekdays, Observer, Scenario, ServiceShape, Sim};
use crate::core::estimate::{predict, Predictor};
use crate::core::model::{
    CounterConfig, NoShowAction, NoShowPolicy, Procedure, QueueConfig, ScreensConfig, SiteConfig,
};
use crate::core::{
    CounterId, CounterState, I18n, Learner, ProcedureCode, Profile, QueueId, SiteId, SiteState,
    Strategy, TicketId, Timestamp,
};

#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: PathBuf,
    pub config: PathBuf,
    pub days: u32,
    pub seed: u64,
    pub arrivals_per_day: Option<f64>,
}

/// Error statistics of one predictor, in seconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Score {
    pub n: usize,
    pub mae_s: f64,
    pub p90_abs_s: f64,
    pub rmse_s: f64,
    /// Mean squared error over the squared mean wait.
    pub rase: f64,
    /// Mean of estimate − actual (positive: estimates too long).
    pub bias_s: f64,
    /// Share of estimates within ±5 minutes.
    pub within_5min: f64,
    /// Share of residents called more than 10 minutes later than estimated.
    pub under_10min: f64,
}

impl Score {
    pub fn of(pairs: &[(f64, f64)]) -> Score {
        let n = pairs.len().max(1) as f64;
        let mut abs: Vec<f64> = pairs.iter().map(|(p, a)| (p - a).abs()).collect();
        abs.sort_by(f64::total_cmp);
        let mse = pairs.iter().map(|(p, a)| (p - a) * (p - a)).sum::<f64>() / n;
        let mean_wait = pairs.iter().map(|(_, a)| a).sum::<f64>() / n;
        Score {
            n: pairs.len(),
            mae_s: abs.iter().sum::<f64>() / n,
            p90_abs_s: abs
                .get(((abs.len() as f64 * 0.9) as usize).min(abs.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0),
            rmse_s: mse.sqrt(),
            rase: if mean_wait > 0.0 {
                mse / (mean_wait * mean_wait)
            } else {
                0.0
            },
            bias_s: pairs.iter().map(|(p, a)| p - a).sum::<f64>() / n,
            within_5min: pairs.iter().filter(|(p, a)| (p - a).abs() <= 300.0).count() as f64 / n,
            under_10min: pairs.iter().filter(|(p, a)| a - p > 600.0).count() as f64 / n,
        }
    }
}

/// Days of the M/M/s check in `bench-estimates`: enough for its RASE to land within a few
/// per cent of 1 − ρ (about 160,000 customers who waited).
pub const MMS_DAYS: u32 = 300;

#[derive(Debug, Clone, Serialize)]
pub struct MmsCheck {
    pub rho: f64,
    pub servers: usize,
    /// QL's RASE over the customers who found every server busy (theory: 1 − ρ).
    pub rase_ql: f64,
    pub customers: usize,
    /// Per simulated day: the sum of squared errors, the sum of waits and the customers, for
    /// the spread of the estimate (a jackknife over days).
    #[serde(skip)]
    pub per_day: Vec<(f64, f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub days: u32,
    pub residents: usize,
    /// Mean and 90th percentile of the actual waits.
    pub mean_wait_s: f64,
    pub p90_wait_s: f64,
    pub predictors: BTreeMap<&'static str, Score>,
    pub mms_check: MmsCheck,
    /// The what-if forecast of each queue's longest wait over the next hour against what then
    /// happened.
    pub what_if_check: WhatIfCheck,
}

/// Collects every predictor's estimate at each issue, and the actual wait at the first call.
struct Collect<'p> {
    predictors: &'p [Predictor],
    pending: HashMap<TicketId, Vec<f64>>,
    /// (estimates per predictor, actual wait)
    scored: Vec<(Vec<f64>, f64)>,
    /// Only tickets that found every counter serving their line busy (the M/M/s check).
    only_busy: bool,
    seed: u64,
}

impl Observer for Collect<'_> {
    fn issued(&mut self, state: &SiteState, learner: &Learner, ticket: &TicketId, now: Timestamp) {
        if self.only_busy
            && state
                .counters
                .iter()
                .any(|c| c.state == CounterState::Open && c.current.is_none())
        {
            return;
        }
        self.seed = self
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let estimates = self
            .predictors
            .iter()
            .map(|p| predict(*p, state, learner, ticket, now, self.seed).unwrap_or(0.0))
            .collect();
        self.pending.insert(ticket.clone(), estimates);
    }

    fn first_call(&mut self, ticket: &TicketId, wait_s: f64, counted: bool) {
        if let Some(estimates) = self.pending.remove(ticket) {
            if counted {
                self.scored.push((estimates, wait_s));
            }
        }
    }
}

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 4, 1).expect("a valid date")
}

/// Runs every predictor over `days` simulated days of `scenario` at `site`.
pub fn score(
    site: &SiteConfig,
    scenario: Scenario,
    days: u32,
    seed: u64,
    progress: &mut dyn FnMut(u32),
) -> anyhow::Result<(BTreeMap<&'static str, Score>, Vec<f64>)> {
    let mut sim = Sim::new(site, scenario, seed)?;
    let mut collect = Collect {
        predictors: &Predictor::ALL,
        pending: HashMap::new(),
        scored: Vec::new(),
        only_busy: false,
        seed,
    };
    for (i, day) in weekdays(first_day(), days).into_iter().enumerate() {
        sim.day(day, &mut collect);
        collect.pending.clear();
        progress(i as u32 + 1);
    }
    let mut scores = BTreeMap::new();
    for (k, p) in Predictor::ALL.iter().enumerate() {
        let pairs: Vec<(f64, f64)> = collect.scored.iter().map(|(e, a)| (e[k], *a)).collect();
        scores.insert(p.name(), Score::of(&pairs));
    }
    Ok((scores, collect.scored.iter().map(|(_, a)| *a).collect()))
}

/// A site of one queue and `servers` identical counters, for the M/M/s check.
pub fn mms_site(servers: usize, service_s: u32) -> SiteConfig {
    let q = QueueId::try_from("q".to_owned()).expect("a valid id");
    let p = ProcedureCode::try_from("p".to_owned()).expect("a valid code");
    let name = || I18n {
        ja: "検証".into(),
        en: "check".into(),
    };
    SiteConfig {
        id: SiteId::try_from("mms".to_owned()).expect("a valid id"),
        name: name(),
        timezone: chrono_tz::UTC,
        day_reset: NaiveTime::from_hms_opt(0, 0, 0).expect("midnight"),
        no_show: NoShowPolicy {
            min_calls: 1,
            action: NoShowAction::Cancel,
            max_requeues: 0,
        },
        procedures: vec![Procedure {
            code: p.clone(),
            name: name(),
            service_s,
        }],
        life_events: Vec::new(),
        queues: vec![QueueConfig {
            id: q.clone(),
            name: name(),
            prefix: String::new(),
            range: (1, 9999),
            procedures: vec![p],
            hours: None,
        }],
        counters: (1..=servers)
            .map(|i| CounterConfig {
                id: CounterId::try_from(i.to_string()).expect("a valid id"),
                name: name(),
                state: CounterState::Open,
                profile: Profile {
                    queues: vec![q.clone()],
                    strategy: Strategy::ProfileOrder,
                },
                breaks: Vec::new(),
            })
            .collect(),
        dispensers: Vec::new(),
        screens: ScreensConfig::default(),
        public_url: "http://localhost".into(),
        reservations: None,
        notices: None,
    }
}

/// The stationary M/M/s scenario: Poisson arrivals at rate ρ·s·μ all day, exponential service,
/// no walk, no gap, no no-shows. Each day starts empty: the first six hours are a warm-up (the
/// queue at ρ = 0.9 relaxes over hours), and the days are many, since customers of one day are
/// far from independent.
pub fn mms_scenario(servers: usize, service_s: u32, rho: f64) -> Scenario {
    let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).expect("a valid time");
    // Arrivals 01:00–22:00; the counters go on until the line is empty, so nobody who waited
    // is left out of the statistics for want of a call.
    let span_s = 21.0 * 3600.0;
    Scenario {
        name: "M/M/s".into(),
        site: "mms".into(),
        opens: t(1, 0),
        last_arrival: t(22, 0),
        closes: t(23, 59),
        arrivals_per_day: rho * servers as f64 / f64::from(service_s) * span_s,
        season: 1.0,
        arrival_profile: vec![1.0],
        life_event_share: 0.0,
        life_events: BTreeMap::new(),
        procedures: BTreeMap::new(),
        yes_share: 0.0,
        priority_share: 0.0,
        no_show_share: 0.0,
        transfer_share: 0.0,
        service: super::scenario::Service {
            shape: ServiceShape::Exponential,
            scale: 1.0,
            spread: 0.0,
            spreads: BTreeMap::new(),
            walk_s: (0.0, 0.0),
            gap_s: (0.0, 0.0),
        },
        staffing: Default::default(),
        warmup_min: 360,
    }
}

/// QL's RASE on the stationary M/M/s queue over `days` days, for customers who found every
/// server busy; theory says 1 − ρ.
pub fn mms_check(servers: usize, rho: f64, days: u32, seed: u64) -> anyhow::Result<MmsCheck> {
    let service_s = 600;
    let site = mms_site(servers, service_s);
    let mut sim = Sim::new(&site, mms_scenario(servers, service_s, rho), seed)?;
    let mut collect = Collect {
        predictors: &[Predictor::Ql],
        pending: HashMap::new(),
        scored: Vec::new(),
        only_busy: true,
        seed,
    };
    let mut per_day = Vec::new();
    for day in weekdays(first_day(), days) {
        let before = collect.scored.len();
        sim.day(day, &mut collect);
        collect.pending.clear();
        let day = &collect.scored[before..];
        per_day.push((
            day.iter().map(|(e, a)| (e[0] - a) * (e[0] - a)).sum(),
            day.iter().map(|(_, a)| a).sum(),
            day.len() as f64,
        ));
    }
    let pairs: Vec<(f64, f64)> = collect.scored.iter().map(|(e, a)| (e[0], *a)).collect();
    Ok(MmsCheck {
        rho,
        servers,
        rase_ql: Score::of(&pairs).rase,
        customers: pairs.len(),
        per_day,
    })
}

pub fn run(options: &Options, progress: &mut dyn FnMut(&str, u32, u32)) -> anyhow::Result<Report> {
    let config = crate::config::Config::load(&options.config).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(run `madoguchi check-config {}`)",
            options.config.display()
        )
    })?;
    let mut scenario = Scenario::load(&options.scenario)?;
    if let Some(n) = options.arrivals_per_day {
        anyhow::ensure!(n > 0.0, "--arrivals-per-day must be positive");
        scenario.arrivals_per_day = n / scenario.season;
    }
    let site: Arc<SiteConfig> = config
        .sites
        .iter()
        .find(|s| s.id.as_str() == scenario.site)
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the scenario's site {} is not in {}",
                scenario.site,
                options.config.display()
            )
        })?;
    let name = scenario.name.clone();
    let days = options.days;
    let what_if_check = what_if_check(&site, scenario.clone(), days, options.seed)?;
    let (predictors, mut waits) = score(&site, scenario, days, options.seed, &mut |d| {
        progress("scenario", d, days)
    })?;
    let mms_days = MMS_DAYS;
    progress("M/M/s", 0, mms_days);
    let mms_check = mms_check(10, 0.9, mms_days, options.seed)?;
    progress("M/M/s", mms_days, mms_days);
    waits.sort_by(f64::total_cmp);
    Ok(Report {
        scenario: name,
        days,
        residents: waits.len(),
        mean_wait_s: waits.iter().sum::<f64>() / waits.len().max(1) as f64,
        p90_wait_s: waits.get(waits.len() * 9 / 10).copied().unwrap_or(0.0),
        predictors,
        mms_check,
        what_if_check,
    })
}

/// The report as a table for people.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{}: {} days, {} residents; wait (issue → first call) mean {:.0} s, p90 {:.0} s\n\n{:<11} {:>8} {:>9} {:>8} {:>6} {:>8} {:>8} {:>9}\n",
        report.scenario, report.days, report.residents, report.mean_wait_s, report.p90_wait_s, "predictor", "MAE s", "p90|e| s", "RMSE s", "RASE", "bias s", "±5 min", "late>10m"
    );
    for p in Predictor::ALL {
        if let Some(s) = report.predictors.get(p.name()) {
            out.push_str(&format!(
                "{:<11} {:>8.0} {:>9.0} {:>8.0} {:>6.3} {:>8.0} {:>7.1}% {:>8.1}%\n",
                p.name(),
                s.mae_s,
                s.p90_abs_s,
                s.rmse_s,
                s.rase,
                s.bias_s,
                s.within_5min * 100.0,
                s.under_10min * 100.0
            ));
        }
    }
    let m = &report.mms_check;
    out.push_str(&format!(
        "\nM/M/s check (s={}, ρ={}): RASE of ql over {} customers who waited = {:.3} (theory 1−ρ = {:.3})\n",
        m.servers,
        m.rho,
        m.customers,
        m.rase_ql,
        1.0 - m.rho
    ));
    let w = &report.what_if_check;
    out.push_str(&format!(
        "What-if: the longest wait of the next hour, forecast at each full hour ({} forecasts): MAE {:.0} s, bias {:+.0} s (persistence: MAE {:.0} s)\n",
        w.forecasts, w.mae_s, w.bias_s, w.persistence_mae_s
    ));
    out
}

impl MmsCheck {
    /// The standard error of `rase_ql`: a jackknife over the days.
    pub fn standard_error(&self) -> f64 {
        let n = self.per_day.len() as f64;
        let (se, sw, sc) = self
            .per_day
            .iter()
            .fold((0.0, 0.0, 0.0), |(a, b, c), (x, y, z)| {
                (a + x, b + y, c + z)
            });
        let without: Vec<f64> = self
            .per_day
            .iter()
            .map(|(e, w, c)| {
                let (se, sw, sc) = (se - e, sw - w, sc - c);
                (se / sc) / ((sw / sc) * (sw / sc))
            })
            .collect();
        let mean = without.iter().sum::<f64>() / n;
        ((n - 1.0) / n * without.iter().map(|r| (r - mean).powi(2)).sum::<f64>()).sqrt()
    }
}

/// How well the what-if forecast of a queue's longest wait over the next hour matched what then
/// happened (the longest wait of those who joined it within that hour), at each full hour of
/// the simulated days; against persistence (the longest wait of those called in the past hour).
#[derive(Debug, Clone, Serialize)]
pub struct WhatIfCheck {
    pub forecasts: usize,
    pub mae_s: f64,
    pub bias_s: f64,
    pub persistence_mae_s: f64,
}

/// Checks the what-if forecast over `days` simulated days of `scenario` at `site`.
pub fn what_if_check(
    site: &SiteConfig,
    scenario: Scenario,
    days: u32,
    seed: u64,
) -> anyhow::Result<WhatIfCheck> {
    use crate::core::estimate::what_if;
    use crate::core::Target;

    /// A forecast made at `at` for `target`: the predicted longest wait, and persistence's.
    struct Made {
        at: Timestamp,
        target: Target,
        predicted: f64,
        persistence: f64,
    }
    #[derive(Default)]
    struct Watch {
        next_hour: Option<Timestamp>,
        made: Vec<Made>,
        /// Per ticket: its line, issue time, wait once called.
        tickets: HashMap<TicketId, (Target, Timestamp, Option<f64>)>,
    }
    impl Observer for Watch {
        fn issued(
            &mut self,
            state: &SiteState,
            learner: &Learner,
            ticket: &TicketId,
            now: Timestamp,
        ) {
            if let Some(t) = state.tickets.get(ticket) {
                self.tickets
                    .insert(ticket.clone(), (t.step().target.clone(), now, None));
            }
            let due = self.next_hour.is_none_or(|h| now >= h);
            if !due {
                return;
            }
            let hour = now
                - chrono::Duration::seconds(i64::from(
                    chrono::Timelike::num_seconds_from_midnight(&now) % 3600,
                ));
            self.next_hour = Some(hour + chrono::Duration::hours(1));
            let forecast = what_if(
                state,
                learner,
                now,
                3600.0,
                600.0,
                &HashMap::new(),
                state.seq,
            );
            for (target, points) in forecast {
                let predicted = points.iter().map(|p| p.wait_s).fold(0.0, f64::max);
                let persistence = self
                    .tickets
                    .values()
                    .filter(|(t, issued, wait)| {
                        *t == target
                            && wait.is_some_and(|w| {
                                *issued + chrono::Duration::milliseconds((w * 1000.0) as i64)
                                    >= now - chrono::Duration::hours(1)
                            })
                    })
                    .filter_map(|(_, _, w)| *w)
                    .fold(0.0, f64::max);
                self.made.push(Made {
                    at: now,
                    target,
                    predicted,
                    persistence,
                });
            }
        }
        fn first_call(&mut self, ticket: &TicketId, wait_s: f64, _counted: bool) {
            if let Some(t) = self.tickets.get_mut(ticket) {
                t.2 = Some(wait_s);
            }
        }
    }
    let mut sim = Sim::new(site, scenario, seed)?;
    let mut errors = Vec::new();
    for day in weekdays(first_day(), days) {
        let mut watch = Watch::default();
        sim.day(day, &mut watch);
        for m in &watch.made {
            let end = m.at + chrono::Duration::hours(1);
            let joined: Vec<f64> = watch
                .tickets
                .values()
                .filter(|(t, issued, _)| *t == m.target && *issued >= m.at && *issued < end)
                .filter_map(|(_, _, w)| *w)
                .collect();
            if joined.is_empty() {
                continue;
            }
            let actual = joined.iter().copied().fold(0.0, f64::max);
            errors.push((m.predicted - actual, m.persistence - actual));
        }
    }
    let n = errors.len().max(1) as f64;
    Ok(WhatIfCheck {
        forecasts: errors.len(),
        mae_s: errors.iter().map(|(e, _)| e.abs()).sum::<f64>() / n,
        bias_s: errors.iter().map(|(e, _)| e).sum::<f64>() / n,
        persistence_mae_s: errors.iter().map(|(_, p)| p.abs()).sum::<f64>() / n,
    })
}
