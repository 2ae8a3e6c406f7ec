//! Reception hours: when a queue takes new tickets. Opening periods per weekday (up to four a
//! day), Japanese national holidays (computed by rule, see [`holiday`]), configured closures,
//! and a last-reception time before each period ends. Pure: every function takes the local time
//! it is asked about.
//!
//! A period is the time the office serves (`08:30-17:15`); tickets are taken from its start to
//! `last_reception_min` before its end (17:00 with 15), so the last resident is still served
//! within the period.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Weekday};

/// Opening periods a day may have, at most.
pub const MAX_PERIODS: usize = 4;

/// How far ahead [`Hours::next_open`] looks for an opening (a year and a bit: a queue closed
/// longer than that is closed for good).
const LOOKAHEAD_DAYS: i64 = 400;

/// A closure: a recurring range of days of the year (`12-29` to `01-03`, across the new year),
/// or a range of dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closure {
    /// Month and day, inclusive at both ends; `from` after `to` wraps over the new year.
    Yearly { from: (u32, u32), to: (u32, u32) },
    /// Inclusive dates.
    Dates { from: NaiveDate, to: NaiveDate },
}

impl Closure {
    pub fn covers(&self, date: NaiveDate) -> bool {
        match *self {
            Closure::Dates { from, to } => from <= date && date <= to,
            Closure::Yearly { from, to } => {
                let md = (date.month(), date.day());
                if from <= to {
                    from <= md && md <= to
                } else {
                    md >= from || md <= to
                }
            }
        }
    }
}

/// When a queue (or a whole site) takes tickets. Times are local to the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    /// Opening periods per weekday, Monday first; each `(start, end)`, sorted, not overlapping.
    pub week: [Vec<(NaiveTime, NaiveTime)>; 7],
    /// Tickets are taken until this many minutes before a period ends.
    pub last_reception_min: u32,
    /// Closed on Japanese national holidays (祝日, 振替休日, 国民の休日).
    pub closed_on_holidays: bool,
    pub closures: Vec<Closure>,
    /// Dates open outside the weekly pattern (休日開庁: a Sunday in the moving season), with
    /// their periods; they win over holidays and the weekday's periods, not over closures.
    pub extra: Vec<(NaiveDate, Vec<(NaiveTime, NaiveTime)>)>,
    /// Close reception for the rest of a period when the forecast says a ticket issued now
    /// would not be served before it ends (less `closing_margin_min`).
    pub close_when_full: bool,
    pub closing_margin_min: u32,
}

impl std::fmt::Display for Hours {
    /// One line for `check-config`: the week by runs of days with the same periods, then the
    /// holidays, closures, extra dates and the last reception, e.g.
    /// `mon-fri 08:30-17:15, sat-sun closed; holidays closed; 1 closure; last ticket 15 min before the end`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let periods = |p: &[(NaiveTime, NaiveTime)]| {
            if p.is_empty() {
                return "closed".to_owned();
            }
            p.iter()
                .map(|(a, b)| format!("{}-{}", a.format("%H:%M"), b.format("%H:%M")))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut runs: Vec<String> = Vec::new();
        let mut d = 0;
        while d < 7 {
            let mut e = d;
            while e + 1 < 7 && self.week[e + 1] == self.week[d] {
                e += 1;
            }
            let days = if e == d {
                DAYS[d].to_owned()
            } else {
                format!("{}-{}", DAYS[d], DAYS[e])
            };
            runs.push(format!("{days} {}", periods(&self.week[d])));
            d = e + 1;
        }
        write!(f, "{}", runs.join(", "))?;
        let holidays = if self.closed_on_holidays {
            "closed"
        } else {
            "open"
        };
        write!(f, "; holidays {holidays}")?;
        if !self.closures.is_empty() {
            write!(f, "; {} closure(s)", self.closures.len())?;
        }
        if !self.extra.is_empty() {
            write!(f, "; {} extra open date(s)", self.extra.len())?;
        }
        if self.last_reception_min > 0 {
            write!(
                f,
                "; last ticket {} min before the end",
                self.last_reception_min
            )?;
        }
        if self.close_when_full {
            write!(f, "; closes when full")?;
        }
        Ok(())
    }
}

/// Whether a queue takes tickets at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reception {
    /// Taking tickets until `last` (the last-reception time); the period ends at `closes`.
    Open {
        last: NaiveDateTime,
        closes: NaiveDateTime,
    },
    /// Not taking tickets; the next reception starts at `next_open` (none within a year).
    Closed { next_open: Option<NaiveDateTime> },
}

impl Hours {
    /// The periods of `date`: none on a closure, a holiday (when closed on them) or a weekday
    /// without periods.
    pub fn periods(&self, date: NaiveDate) -> &[(NaiveTime, NaiveTime)] {
        if self.closures.iter().any(|c| c.covers(date)) {
            return &[];
        }
        if let Some((_, periods)) = self.extra.iter().find(|(d, _)| *d == date) {
            return periods;
        }
        if self.closed_on_holidays && holiday(date).is_some() {
            return &[];
        }
        &self.week[date.weekday().num_days_from_monday() as usize]
    }

    /// The end of reception in a period ending at `end` (never before its start).
    pub fn last_reception(&self, start: NaiveTime, end: NaiveTime) -> NaiveTime {
        let last = end - Duration::minutes(i64::from(self.last_reception_min));
        if last < start || last > end {
            start
        } else {
            last
        }
    }

    /// Whether tickets are taken at `local`, and until when, or when they next are.
    pub fn at(&self, local: NaiveDateTime) -> Reception {
        let (date, time) = (local.date(), local.time());
        for &(start, end) in self.periods(date) {
            let last = self.last_reception(start, end);
            if start <= time && time < last {
                return Reception::Open {
                    last: date.and_time(last),
                    closes: date.and_time(end),
                };
            }
        }
        Reception::Closed {
            next_open: self.next_open(local),
        }
    }

    /// The first start of reception after `local` (today's later periods included).
    pub fn next_open(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        (0..LOOKAHEAD_DAYS).find_map(|i| {
            let date = local.date() + Duration::days(i);
            self.periods(date)
                .iter()
                .filter(|&&(start, end)| self.last_reception(start, end) > start)
                .map(|&(start, _)| date.and_time(start))
                .find(|&start| start > local)
        })
    }
}

/// The Japanese national holiday on `date`, by the rules of the 国民の祝日に関する法律 as they
/// stand since 2020 (fixed days, Happy Monday days, the equinoxes by the usual approximation
/// for 1980–2099, 振替休日 and 国民の休日). The law can change and the equinox days are
/// announced a year ahead: a day the rules miss can be added as a closure.
pub fn holiday(date: NaiveDate) -> Option<&'static str> {
    if let Some(name) = named_holiday(date) {
        return Some(name);
    }
    // 振替休日: a holiday on a Sunday moves to the next day that is not one.
    let mut back = date.pred_opt()?;
    while named_holiday(back).is_some() {
        if back.weekday() == Weekday::Sun {
            return Some("振替休日");
        }
        back = back.pred_opt()?;
    }
    // 国民の休日: a day between two holidays.
    let (prev, next) = (date.pred_opt()?, date.succ_opt()?);
    if date.weekday() != Weekday::Sun
        && named_holiday(prev).is_some()
        && named_holiday(next).is_some()
    {
        return Some("国民の休日");
    }
    None
}

/// The named holidays (祝日) alone, without the days they make holidays.
fn named_holiday(date: NaiveDate) -> Option<&'static str> {
    let (y, m, d) = (date.year(), date.month(), date.day());
    let monday = |n: u32| date.weekday() == Weekday::Mon && (d - 1) / 7 + 1 == n;
    let equinox = |base: f64| {
        let n = f64::from(y - 1980);
        (base + 0.242194 * n - (n / 4.0).floor()).floor() as u32
    };
    match m {
        1 if d == 1 => Some("元日"),
        1 if monday(2) => Some("成人の日"),
        2 if d == 11 => Some("建国記念の日"),
        2 if d == 23 && y >= 2020 => Some("天皇誕生日"),
        3 if (1980..=2099).contains(&y) && d == equinox(20.8431) => Some("春分の日"),
        4 if d == 29 => Some("昭和の日"),
        5 if d == 3 => Some("憲法記念日"),
        5 if d == 4 => Some("みどりの日"),
        5 if d == 5 => Some("こどもの日"),
        7 if monday(3) => Some("海の日"),
        8 if d == 11 => Some("山の日"),
        9 if monday(3) => Some("敬老の日"),
        9 if (1980..=2099).contains(&y) && d == equinox(23.2488) => Some("秋分の日"),
        10 if monday(2) => Some("スポーツの日"),
        11 if d == 3 => Some("文化の日"),
        11 if d == 23 => Some("勤労感謝の日"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }
    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        date(y, mo, d).and_time(t(h, mi))
    }

    /// The Cabinet Office's lists for 2026 and 2027 (内閣府「国民の祝日について」).
    #[test]
    fn holidays_match_the_cabinet_office_lists() {
        let listed = [
            (2026, 1, 1),
            (2026, 1, 12),
            (2026, 2, 11),
            (2026, 2, 23),
            (2026, 3, 20),
            (2026, 4, 29),
            (2026, 5, 3),
            (2026, 5, 4),
            (2026, 5, 5),
            (2026, 5, 6),
            (2026, 7, 20),
            (2026, 8, 11),
            (2026, 9, 21),
            (2026, 9, 22),
            (2026, 9, 23),
            (2026, 10, 12),
            (2026, 11, 3),
            (2026, 11, 23),
            (2027, 1, 1),
            (2027, 1, 11),
            (2027, 2, 11),
            (2027, 2, 23),
            (2027, 3, 21),
            (2027, 3, 22),
            (2027, 4, 29),
            (2027, 5, 3),
            (2027, 5, 4),
            (2027, 5, 5),
            (2027, 7, 19),
            (2027, 8, 11),
            (2027, 9, 20),
            (2027, 9, 23),
            (2027, 10, 11),
            (2027, 11, 3),
            (2027, 11, 23),
        ];
        for year in [2026, 2027] {
            let mut day = date(year, 1, 1);
            while day.year() == year {
                let expected = listed.contains(&(day.year(), day.month(), day.day()));
                assert_eq!(
                    holiday(day).is_some(),
                    expected,
                    "{day}: {:?}",
                    holiday(day)
                );
                day = day.succ_opt().unwrap();
            }
        }
        assert_eq!(holiday(date(2026, 5, 6)), Some("振替休日"));
        assert_eq!(holiday(date(2026, 9, 22)), Some("国民の休日"));
        assert_eq!(holiday(date(2027, 3, 22)), Some("振替休日"));
    }

    fn ward_office() -> Hours {
        let day = vec![(t(8, 30), t(17, 15))];
        Hours {
            week: [
                day.clone(),
                day.clone(),
                day.clone(),
                // Thursdays open late (木曜延長窓口).
                vec![(t(8, 30), t(12, 0)), (t(13, 0), t(19, 0))],
                day,
                vec![],
                vec![],
            ],
            last_reception_min: 15,
            closed_on_holidays: true,
            closures: vec![Closure::Yearly {
                from: (12, 29),
                to: (1, 3),
            }],
            extra: vec![(date(2027, 3, 28), vec![(t(9, 0), t(12, 0))])],
            close_when_full: true,
            closing_margin_min: 0,
        }
    }

    #[test]
    fn a_weekday_opens_at_the_start_and_stops_at_the_last_reception() {
        let h = ward_office();
        // Wednesday 2026-12-02.
        assert_eq!(
            h.at(at(2026, 12, 2, 8, 29)),
            Reception::Closed {
                next_open: Some(at(2026, 12, 2, 8, 30))
            }
        );
        assert_eq!(
            h.at(at(2026, 12, 2, 8, 30)),
            Reception::Open {
                last: at(2026, 12, 2, 17, 0),
                closes: at(2026, 12, 2, 17, 15)
            }
        );
        assert!(matches!(
            h.at(at(2026, 12, 2, 16, 59)),
            Reception::Open { .. }
        ));
        // At the last reception: closed, next opening Thursday morning.
        assert_eq!(
            h.at(at(2026, 12, 2, 17, 0)),
            Reception::Closed {
                next_open: Some(at(2026, 12, 3, 8, 30))
            }
        );
    }

    #[test]
    fn a_lunch_gap_and_the_late_thursday() {
        let h = ward_office();
        // Thursday 2026-12-03: closed 11:45–13:00, open until 18:45.
        assert_eq!(
            h.at(at(2026, 12, 3, 11, 50)),
            Reception::Closed {
                next_open: Some(at(2026, 12, 3, 13, 0))
            }
        );
        assert_eq!(
            h.at(at(2026, 12, 3, 18, 30)),
            Reception::Open {
                last: at(2026, 12, 3, 18, 45),
                closes: at(2026, 12, 3, 19, 0)
            }
        );
    }

    #[test]
    fn weekends_holidays_and_the_new_year_closure_are_skipped() {
        let h = ward_office();
        // Friday 2026-12-25 after hours: the office reopens on 2027-01-04 (weekend, then the
        // 12/29–1/3 closure, which covers 1/1, a holiday, too).
        assert_eq!(
            h.at(at(2026, 12, 25, 18, 0)),
            Reception::Closed {
                next_open: Some(at(2026, 12, 28, 8, 30))
            }
        );
        assert_eq!(
            h.at(at(2026, 12, 28, 17, 30)),
            Reception::Closed {
                next_open: Some(at(2027, 1, 4, 8, 30))
            }
        );
        // Friday 2027-01-08, then Monday 2027-01-11 is 成人の日: Tuesday.
        assert_eq!(
            h.at(at(2027, 1, 8, 17, 0)),
            Reception::Closed {
                next_open: Some(at(2027, 1, 12, 8, 30))
            }
        );
        // Golden Week 2026: 4/29 (Wed) closed, 5/2–5/6 closed (weekend, holidays, 振替休日).
        assert!(matches!(
            h.at(at(2026, 4, 29, 10, 0)),
            Reception::Closed { .. }
        ));
        assert_eq!(
            h.at(at(2026, 5, 1, 17, 0)),
            Reception::Closed {
                next_open: Some(at(2026, 5, 7, 8, 30))
            }
        );
    }

    #[test]
    fn an_extra_opening_day_in_the_moving_season() {
        let h = ward_office();
        // Sunday 2027-03-28 opens 09:00–12:00 (last reception 11:45).
        assert_eq!(
            h.at(at(2027, 3, 27, 12, 0)),
            Reception::Closed {
                next_open: Some(at(2027, 3, 28, 9, 0))
            }
        );
        assert!(matches!(
            h.at(at(2027, 3, 28, 11, 44)),
            Reception::Open { .. }
        ));
        assert_eq!(
            h.at(at(2027, 3, 28, 11, 45)),
            Reception::Closed {
                next_open: Some(at(2027, 3, 29, 8, 30))
            }
        );
    }

    #[test]
    fn dated_closures_and_a_queue_never_open() {
        let mut h = ward_office();
        h.closures.push(Closure::Dates {
            from: date(2026, 12, 7),
            to: date(2026, 12, 8),
        });
        assert_eq!(
            h.at(at(2026, 12, 4, 17, 5)),
            Reception::Closed {
                next_open: Some(at(2026, 12, 9, 8, 30))
            }
        );
        let never = Hours {
            week: Default::default(),
            last_reception_min: 0,
            closed_on_holidays: true,
            closures: vec![],
            extra: vec![],
            close_when_full: false,
            closing_margin_min: 0,
        };
        assert_eq!(
            never.at(at(2026, 12, 4, 10, 0)),
            Reception::Closed { next_open: None }
        );
    }
}
