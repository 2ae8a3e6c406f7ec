//! Scenarios for the day simulator (`config/scenarios/*.toml`): who arrives when, what they ask
//! for, how long service takes, and how the counters are staffed through the day.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveTime;
use serde::Deserialize;

/// How long one procedure takes at the counter.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceShape {
    /// Lognormal around the configured `service_min`, with the scenario's spread.
    Lognormal,
    /// Exponential with the configured mean (the textbook M/M/s check).
    Exponential,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// The site of the configuration the scenario runs (its queues, counters, procedures).
    pub site: String,
    /// Office hours, local: arrivals from `opens` to `last_arrival`; counters call until
    /// `closes` (and finish whom they called).
    #[serde(with = "hhmm")]
    pub opens: NaiveTime,
    #[serde(with = "hhmm")]
    pub last_arrival: NaiveTime,
    #[serde(with = "hhmm")]
    pub closes: NaiveTime,
    /// Mean arrivals per day before `season` (rescaled by `--arrivals-per-day`).
    pub arrivals_per_day: f64,
    /// Multiplier on arrivals (March/April moving season: about 1.5–2).
    #[serde(default = "one")]
    pub season: f64,
    /// Relative arrival rates, one per half hour from `opens` (the last one repeats).
    pub arrival_profile: Vec<f64>,
    /// Share of residents who come for a life event (the rest ask for one procedure).
    #[serde(default)]
    pub life_event_share: f64,
    /// Life events by weight; empty means all of the site's, equally.
    #[serde(default)]
    pub life_events: BTreeMap<String, f64>,
    /// Single procedures by weight; empty means those the site's queues handle, equally.
    #[serde(default)]
    pub procedures: BTreeMap<String, f64>,
    /// Chance of "yes" to each question of a life event.
    #[serde(default = "third")]
    pub yes_share: f64,
    #[serde(default)]
    pub priority_share: f64,
    /// Share of residents not there at their first call.
    #[serde(default)]
    pub no_show_share: f64,
    /// Share of finished first steps handed on to another queue.
    #[serde(default)]
    pub transfer_share: f64,
    #[serde(default)]
    pub service: Service,
    #[serde(default)]
    pub staffing: Staffing,
    /// Arrivals in the first minutes of the day not counted in the statistics (a warm-up).
    #[serde(default)]
    pub warmup_min: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub shape: ServiceShape,
    /// Factor on every `service_min` of the configuration.
    pub scale: f64,
    /// sd of the logarithm of a procedure's service (lognormal).
    pub spread: f64,
    /// Per-procedure spreads.
    #[serde(default)]
    pub spreads: BTreeMap<String, f64>,
    /// From the call to the resident reaching the counter, seconds (uniform).
    pub walk_s: (f64, f64),
    /// From the end of one resident to the next call, seconds (uniform).
    pub gap_s: (f64, f64),
}

impl Default for Service {
    fn default() -> Self {
        Service {
            shape: ServiceShape::Lognormal,
            scale: 1.0,
            spread: 0.45,
            spreads: BTreeMap::new(),
            walk_s: (15.0, 60.0),
            gap_s: (10.0, 60.0),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staffing {
    /// Counters that work (by id); empty means those open in the configuration.
    #[serde(default)]
    pub counters: Vec<String>,
    /// Break shifts, local `"HH:MM-HH:MM"`: the counters take turns, counter i the shift
    /// i mod n; with three shifts about a third are away at once (the lunch dip).
    #[serde(default)]
    pub breaks: Vec<String>,
    /// Counters (by id) that take no break.
    #[serde(default)]
    pub no_break: Vec<String>,
}

fn one() -> f64 {
    1.0
}
fn third() -> f64 {
    0.3
}

mod hhmm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let s = String::deserialize(d)?;
        NaiveTime::parse_from_str(&s, "%H:%M")
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a time like \"08:30\"")))
    }
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the scenario {}: {e}", path.display()))?;
        let scenario: Scenario = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("scenario {}: {e}", path.display()))?;
        scenario.check()?;
        Ok(scenario)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.opens < self.last_arrival && self.last_arrival <= self.closes,
            "opens < last_arrival <= closes"
        );
        anyhow::ensure!(
            !self.arrival_profile.is_empty() && self.arrival_profile.iter().all(|w| *w >= 0.0),
            "arrival_profile needs at least one rate, none negative"
        );
        anyhow::ensure!(
            self.arrivals_per_day > 0.0,
            "arrivals_per_day must be positive"
        );
        for (name, share) in [
            ("life_event_share", self.life_event_share),
            ("yes_share", self.yes_share),
            ("priority_share", self.priority_share),
            ("no_show_share", self.no_show_share),
            ("transfer_share", self.transfer_share),
        ] {
            anyhow::ensure!((0.0..=1.0).contains(&share), "{name} must be within 0–1");
        }
        for b in &self.staffing.breaks {
            anyhow::ensure!(
                parse_range(b).is_some(),
                "staffing.breaks: {b:?} is not like \"12:00-12:45\""
            );
        }
        Ok(())
    }

    /// The arrival rate (per second) at `s` seconds after opening: the profile scaled so that a
    /// day brings `arrivals_per_day × season` on average.
    pub fn rate(&self, s: f64) -> f64 {
        let span = self.span_s();
        if !(0.0..span).contains(&s) {
            return 0.0;
        }
        let slot = |i: usize| self.arrival_profile[i.min(self.arrival_profile.len() - 1)];
        let slots = (span / 1800.0).ceil() as usize;
        let total: f64 = (0..slots)
            .map(|i| slot(i) * (span - i as f64 * 1800.0).min(1800.0))
            .sum();
        if total <= 0.0 {
            return 0.0;
        }
        self.arrivals_per_day * self.season * slot((s / 1800.0) as usize) / total
    }

    /// Seconds from opening to the last arrival.
    pub fn span_s(&self) -> f64 {
        (self.last_arrival - self.opens).num_seconds() as f64
    }
}

pub(crate) fn parse_range(s: &str) -> Option<(NaiveTime, NaiveTime)> {
    let (a, b) = s.split_once('-')?;
    let parse = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").ok();
    let (a, b) = (parse(a)?, parse(b)?);
    (a < b).then_some((a, b))
}
