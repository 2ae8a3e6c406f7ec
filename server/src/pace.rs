//! How often a site's actor reruns the wait forecast (see docs/ARCHITECTURE.md, Wait estimates).
//!
//! A command alone gets a fresh forecast of its own seq. While commands queue up, a forecast runs
//! only once [`SPACING`] times the last one's duration, and [`GAP`] at least, have passed: so it
//! takes at most about a tenth of a busy actor's time. Over every site of the process, forecasts
//! also share a budget of [`BUDGET_SHARE`] of one core (a token bucket): past it, appends keep the
//! latest forecast until it refills.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const SPACING: u32 = 10;
const GAP: Duration = Duration::from_millis(200);
/// The share of one core the forecasts of all sites may take together, and the most they may
/// take at once (seconds of forecast time).
const BUDGET_SHARE: f64 = 0.10;
const BUDGET_BURST: f64 = 0.10;

/// Forecast time the process may still spend, and when it was last topped up.
static BUDGET: Mutex<Option<(Instant, f64)>> = Mutex::new(None);

/// Whether the budget has time left now (after topping it up).
fn budget_left() -> bool {
    let mut budget = BUDGET.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let (last, left) = budget.get_or_insert((now, BUDGET_BURST));
    *left = (*left + now.duration_since(*last).as_secs_f64() * BUDGET_SHARE).min(BUDGET_BURST);
    *last = now;
    *left > 0.0
}

/// Takes a forecast's time from the budget (it may go below zero: the next ones wait).
fn spend(took: Duration) {
    let mut budget = BUDGET.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, left)) = budget.as_mut() {
        *left -= took.as_secs_f64();
    }
}

/// One site's forecast pace.
#[derive(Debug, Default)]
pub struct ForecastPace {
    /// When the latest forecast started and how long it took.
    last: Option<(Instant, Duration)>,
    /// The budget was spent when a deferred forecast was due: not before this.
    not_before: Option<Instant>,
}

impl ForecastPace {
    /// Whether an append gets a fresh forecast now; `busy` when commands queue up.
    pub fn due(&self, busy: bool) -> bool {
        (!busy || Instant::now() >= self.next()) && budget_left()
    }

    /// When a forecast an append skipped may be made.
    pub fn next(&self) -> Instant {
        let spaced = match self.last {
            Some((at, took)) => at + (took * SPACING).max(GAP),
            None => Instant::now(),
        };
        self.not_before.map_or(spaced, |t| t.max(spaced))
    }

    /// Whether the skipped forecast may be made now; if the budget is spent, it waits one
    /// [`GAP`] more.
    pub fn deferred_may_run(&mut self) -> bool {
        if budget_left() {
            return true;
        }
        self.not_before = Some(Instant::now() + GAP);
        false
    }

    /// Runs `forecast`, timing it for the spacing and the budget.
    pub fn run<T>(&mut self, forecast: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = forecast();
        let took = started.elapsed();
        spend(took);
        self.last = Some((started, took));
        self.not_before = None;
        result
    }
}
