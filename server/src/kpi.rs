//! KPI figures over visit records. Pure functions: the server computes them over records read
//! from the SQLite file, tests compute them over records made by the core with virtual time.
//!
//! Japanese fiscal years run from 1 April to 31 March (FY2026 = April 2026 – March 2027); days,
//! hours and weekdays are local to the site's time zone.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Timelike};
use chrono_tz::Tz;
use serde::Serialize;

use crate::core::{Target, TicketStatus, VisitRecord};

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

fn figures(visits: &[&VisitRecord], wait: Vec<f64>, service: Vec<f64>) -> Figures {
    let done: Vec<&&VisitRecord> = visits
        .iter()
        .filter(|v| v.outcome == TicketStatus::Done)
        .collect();
    let answers: Vec<u8> = done.iter().filter_map(|v| v.satisfaction).collect();
    let top_two = answers.iter().filter(|&&s| s >= 4).count();
    Figures {
        visits: done.len(),
        no_show: visits
            .iter()
            .filter(|v| v.outcome == TicketStatus::NoShow)
            .count(),
        cancelled: visits
            .iter()
            .filter(|v| v.outcome == TicketStatus::Cancelled)
            .count(),
        stay_s: Stats::of(done.iter().map(|v| v.stay_s).collect()),
        wait_s: Stats::of(wait),
        service_s: Stats::of(service),
        satisfaction: Satisfaction {
            answers: answers.len(),
            top_two,
            share_pct: (!answers.is_empty()).then(|| 100.0 * top_two as f64 / answers.len() as f64),
            target_pct: None,
        },
    }
}

/// Figures per visit: wait and service summed over the visit's steps.
fn visit_figures(visits: &[&VisitRecord]) -> Figures {
    let done = visits.iter().filter(|v| v.outcome == TicketStatus::Done);
    let wait = done.clone().map(|v| v.wait_s).collect();
    let service = done.map(|v| v.service_s).collect();
    figures(visits, wait, service)
}

/// The visits through one counter or queue, and the waits and services of their steps there.
type StepGroup<'a> = (Vec<&'a VisitRecord>, Vec<f64>, Vec<f64>);

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The KPI over `visits` (already filtered by site, range, life event and procedure).
pub fn report(
    visits: &[VisitRecord],
    group_by: Option<GroupBy>,
    tz: Tz,
    fiscal_year: Option<i32>,
    target: Option<&KpiTarget>,
) -> Report {
    let all: Vec<&VisitRecord> = visits.iter().collect();
    let mut figures_all = visit_figures(&all);
    apply_target(&mut figures_all, target);
    let fiscal_year = fiscal_year.or_else(|| {
        visits
            .iter()
            .map(|v| v.arrival)
            .min()
            .map(|a| self::fiscal_year(a.with_timezone(&tz).date_naive()))
    });
    let groups = group_by.map(|g| {
        let local = |v: &VisitRecord| v.arrival.with_timezone(&tz);
        match g {
            GroupBy::Day | GroupBy::Hour | GroupBy::Weekday => {
                let mut by: BTreeMap<String, Vec<&VisitRecord>> = BTreeMap::new();
                for v in visits {
                    let t = local(v);
                    let key = match g {
                        GroupBy::Day => t.date_naive().to_string(),
                        GroupBy::Hour => format!("{:02}", t.hour()),
                        _ => format!(
                            "{}-{}",
                            t.weekday().num_days_from_monday(),
                            WEEKDAYS[t.weekday().num_days_from_monday() as usize]
                        ),
                    };
                    by.entry(key).or_default().push(v);
                }
                by.into_iter()
                    .map(|(key, vs)| {
                        let mut f = visit_figures(&vs);
                        apply_target(&mut f, target);
                        // "0-mon" sorts Monday first; show "mon".
                        let key = key
                            .split_once('-')
                            .filter(|_| g == GroupBy::Weekday)
                            .map_or(key.clone(), |(_, d)| d.to_owned());
                        Group { key, figures: f }
                    })
                    .collect()
            }
            GroupBy::Counter | GroupBy::Queue => {
                // Per step: a visit counts in every group one of its steps went through.
                let mut by: BTreeMap<String, StepGroup<'_>> = BTreeMap::new();
                for v in visits {
                    let mut seen = Vec::new();
                    for s in &v.steps {
                        let key = match (g, &s.target) {
                            (GroupBy::Counter, _) => match &s.counter {
                                Some(c) => c.to_string(),
                                None => continue,
                            },
                            (_, Target::Queue(q)) => q.to_string(),
                            (_, Target::Counter(c)) => format!("counter:{c}"),
                        };
                        let entry = by.entry(key.clone()).or_default();
                        if v.outcome == TicketStatus::Done {
                            entry.1.push(s.wait_s);
                            entry.2.push(s.service_s);
                        }
                        if !seen.contains(&key) {
                            entry.0.push(v);
                            seen.push(key);
                        }
                    }
                }
                by.into_iter()
                    .map(|(key, (vs, wait, service))| Group {
                        key,
                        figures: figures(&vs, wait, service),
                    })
                    .collect()
            }
        }
    });
    Report {
        figures: figures_all,
        fiscal_year,
        visits_target: target.and_then(|t| t.visits),
        groups,
    }
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
