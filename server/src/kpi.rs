//! KPI figures over visit records. Pure functions: the server computes them over records read
//! from the SQLite file, tests compute them over records made by the core with virtual time.
//!
//! Japanese fiscal years run from 1 April to 31 March (FY2026 = April 2026 – March 2027); days,
//! hours and weekdays are local to the site's time zone.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Timelike};
use chrono_tz::Tz;
use serde::Serialize;

use crate::core::{Target, TicketStatus, Timestamp, VisitRecord};

/// The fiscal year a local date belongs to.
pub fn fiscal_year(date: NaiveDate) -> i32 {
    if date.month() >= 4 {
        date.year()
    } else {
        date.year() - 1
    }
}

/// A target from the configuration, for one fiscal year, site (or the city) and life event.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiTarget {
    pub fiscal_year: i32,
    /// `None`: the whole city (`site=all`).
    pub site: Option<String>,
    /// `None`: every visit.
    pub life_event: Option<String>,
    pub stay_mean_min: Option<f64>,
    /// Visits handled in the year.
    pub visits: Option<u64>,
    /// Share of the two top answers (満足, やや満足), in percent.
    pub satisfaction_pct: Option<f64>,
}

/// How the KPI groups visits; as a query value, lower case (`day`, `hour`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    Hour,
    Weekday,
    Counter,
    Queue,
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "day" => GroupBy::Day,
            "hour" => GroupBy::Hour,
            "weekday" => GroupBy::Weekday,
            "counter" => GroupBy::Counter,
            "queue" => GroupBy::Queue,
            _ => {
                return Err(format!(
                    "group_by is day, hour, weekday, counter or queue, not {s:?}"
                ))
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
    /// The configured target for the mean, in seconds, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_mean: Option<f64>,
}

impl Stats {
    /// Mean and nearest-rank percentiles.
    pub fn of(mut values: Vec<f64>) -> Stats {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let pct = |p: f64| -> Option<f64> {
            if n == 0 {
                return None;
            }
            let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
            Some(values[rank.min(n) - 1])
        };
        Stats {
            mean: (n > 0).then(|| values.iter().sum::<f64>() / n as f64),
            p50: pct(50.0),
            p90: pct(90.0),
            p95: pct(95.0),
            max: values.last().copied(),
            target_mean: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Satisfaction {
    /// Visits whose resident answered.
    pub answers: usize,
    /// Answers 4 or 5 (満足, やや満足).
    pub top_two: usize,
    /// `top_two / answers` in percent.
    pub share_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pct: Option<f64>,
}

/// Figures over a set of visits.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    /// Completed visits (outcome `done`); stay, wait, service and satisfaction are over these.
    pub visits: usize,
    pub no_show: usize,
    pub cancelled: usize,
    pub stay_s: Stats,
    pub wait_s: Stats,
    pub service_s: Stats,
    pub satisfaction: Satisfaction,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    #[serde(flatten)]
    pub figures: Figures,
    /// The fiscal year of the range's start (or of the first visit).
    pub fiscal_year: Option<i32>,
    /// The yearly visits target of that fiscal year, where configured.
    pub visits_target: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
}

/// The running figures of one set of visits: counts, and the values whose mean and percentiles
/// are asked (kept whole, since nearest-rank percentiles need them all; a few bytes a visit).
#[derive(Debug, Default)]
struct Tally {
    done: usize,
    no_show: usize,
    cancelled: usize,
    stay: Vec<f64>,
    wait: Vec<f64>,
    service: Vec<f64>,
    answers: usize,
    top_two: usize,
}

impl Tally {
    /// Counts a visit by outcome; a completed one adds its stay and satisfaction. True when
    /// completed.
    fn count(&mut self, v: &VisitRecord) -> bool {
        match v.outcome {
            TicketStatus::Done => {
                self.done += 1;
                self.stay.push(v.stay_s);
                if let Some(s) = v.satisfaction {
                    self.answers += 1;
                    if s >= 4 {
                        self.top_two += 1;
                    }
                }
                true
            }
            TicketStatus::NoShow => {
                self.no_show += 1;
                false
            }
            TicketStatus::Cancelled => {
                self.cancelled += 1;
                false
            }
            _ => false,
        }
    }

    /// A visit with wait and service summed over its steps.
    fn visit(&mut self, v: &VisitRecord) {
        if self.count(v) {
            self.wait.push(v.wait_s);
            self.service.push(v.service_s);
        }
    }

    fn figures(self) -> Figures {
        let (answers, top_two) = (self.answers, self.top_two);
        Figures {
            visits: self.done,
            no_show: self.no_show,
            cancelled: self.cancelled,
            stay_s: Stats::of(self.stay),
            wait_s: Stats::of(self.wait),
            service_s: Stats::of(self.service),
            satisfaction: Satisfaction {
                answers,
                top_two,
                share_pct: (answers > 0).then(|| 100.0 * top_two as f64 / answers as f64),
                target_pct: None,
            },
        }
    }
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The KPI as a fold over visits, one at a time in any order: the server streams records from
/// SQLite into it without holding them, tests fold records made by the core. The figures do not
/// depend on the order (values are sorted before the mean and the percentiles).
#[derive(Debug)]
pub struct Fold {
    group_by: Option<GroupBy>,
    tz: Tz,
    all: Tally,
    groups: BTreeMap<String, Tally>,
    first_arrival: Option<Timestamp>,
}

impl Fold {
    pub fn new(group_by: Option<GroupBy>, tz: Tz) -> Self {
        Self {
            group_by,
            tz,
            all: Tally::default(),
            groups: BTreeMap::new(),
            first_arrival: None,
        }
    }

    /// Whether the figures read the visits' steps (counter and queue groups).
    pub fn needs_steps(&self) -> bool {
        matches!(self.group_by, Some(GroupBy::Counter | GroupBy::Queue))
    }

    /// The earliest arrival folded so far.
    pub fn first_arrival(&self) -> Option<Timestamp> {
        self.first_arrival
    }

    fn group(&mut self, key: &str) -> &mut Tally {
        if !self.groups.contains_key(key) {
            self.groups.insert(key.to_owned(), Tally::default());
        }
        self.groups.get_mut(key).expect("inserted")
    }

    /// Adds one visit (already filtered by site, range, life event and procedure).
    pub fn add(&mut self, v: &VisitRecord) {
        self.all.visit(v);
        self.first_arrival = Some(self.first_arrival.map_or(v.arrival, |a| a.min(v.arrival)));
        let Some(g) = self.group_by else {
            return;
        };
        match g {
            GroupBy::Day | GroupBy::Hour | GroupBy::Weekday => {
                let t = v.arrival.with_timezone(&self.tz);
                let key = match g {
                    GroupBy::Day => t.date_naive().to_string(),
                    GroupBy::Hour => format!("{:02}", t.hour()),
                    // "0-mon" sorts Monday first; the report shows "mon".
                    _ => format!(
                        "{}-{}",
                        t.weekday().num_days_from_monday(),
                        WEEKDAYS[t.weekday().num_days_from_monday() as usize]
                    ),
                };
                self.group(&key).visit(v);
            }
            GroupBy::Counter | GroupBy::Queue => {
                // Per step: a visit counts in every group one of its steps went through, with
                // the waits and services of its steps there.
                let mut seen: Vec<String> = Vec::new();
                for s in &v.steps {
                    let key = match (g, &s.target) {
                        (GroupBy::Counter, _) => match &s.counter {
                            Some(c) => c.to_string(),
                            None => continue,
                        },
                        (_, Target::Queue(q)) => q.to_string(),
                        (_, Target::Counter(c)) => format!("counter:{c}"),
                    };
                    let first = !seen.contains(&key);
                    let entry = self.group(&key);
                    if first {
                        entry.count(v);
                    }
                    if v.outcome == TicketStatus::Done {
                        entry.wait.push(s.wait_s);
                        entry.service.push(s.service_s);
                    }
                    if first {
                        seen.push(key);
                    }
                }
            }
        }
    }

    /// The report: `fiscal_year` is the range's (else that of the first arrival), `target` the
    /// configured one for it.
    pub fn finish(self, fiscal_year: Option<i32>, target: Option<&KpiTarget>) -> Report {
        let tz = self.tz;
        let mut figures_all = self.all.figures();
        apply_target(&mut figures_all, target);
        let fiscal_year = fiscal_year.or_else(|| {
            self.first_arrival
                .map(|a| self::fiscal_year(a.with_timezone(&tz).date_naive()))
        });
        let groups = self.group_by.map(|g| {
            self.groups
                .into_iter()
                .map(|(key, tally)| {
                    let mut figures = tally.figures();
                    match g {
                        GroupBy::Day | GroupBy::Hour | GroupBy::Weekday => {
                            apply_target(&mut figures, target);
                            let key = key
                                .split_once('-')
                                .filter(|_| g == GroupBy::Weekday)
                                .map_or(key.clone(), |(_, d)| d.to_owned());
                            Group { key, figures }
                        }
                        // Counter and queue groups carry no targets.
                        GroupBy::Counter | GroupBy::Queue => Group { key, figures },
                    }
                })
                .collect()
        });
        Report {
            figures: figures_all,
            fiscal_year,
            visits_target: target.and_then(|t| t.visits),
            groups,
        }
    }
}

/// The KPI over `visits` (already filtered by site, range, life event and procedure).
pub fn report(
    visits: &[VisitRecord],
    group_by: Option<GroupBy>,
    tz: Tz,
    fiscal_year: Option<i32>,
    target: Option<&KpiTarget>,
) -> Report {
    let mut fold = Fold::new(group_by, tz);
    for v in visits {
        fold.add(v);
    }
    fold.finish(fiscal_year, target)
}

fn apply_target(f: &mut Figures, target: Option<&KpiTarget>) {
    if let Some(t) = target {
        f.stay_s.target_mean = t.stay_mean_min.map(|m| m * 60.0);
        f.satisfaction.target_pct = t.satisfaction_pct;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiscal_years_start_in_april() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert_eq!(fiscal_year(d(2026, 3, 31)), 2025);
        assert_eq!(fiscal_year(d(2026, 4, 1)), 2026);
        assert_eq!(fiscal_year(d(2027, 1, 15)), 2026);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = Stats::of((1..=10).map(f64::from).collect());
        assert_eq!(s.mean, Some(5.5));
        assert_eq!(s.p50, Some(5.0));
        assert_eq!(s.p90, Some(9.0));
        assert_eq!(s.p95, Some(10.0));
        assert_eq!(Stats::of(vec![]).mean, None);
    }
}
