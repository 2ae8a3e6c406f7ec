//! The forecast calendar for residents (混雑予想カレンダー): the expected wait by weekday × hour,
//! and by date for the next [`HORIZON_DAYS`] days with the moving season (引越しシーズン)
//! marked, computed from the site's own history of visits. Pure: the history is streamed into a
//! [`History`] (constant memory, whatever its length), then [`Calendar::build`] reads it with the
//! site's configuration, today's date and the time, all passed in.
//!
//! How the figures are made:
//! - **Weekly** ([`WeekdayRow`]): the mean wait of the visits that arrived in each local weekday
//!   × hour, from the history outside the moving season, so the table shows an ordinary week. A
//!   cell with visits in the season only gets their mean divided by the season factor. A row
//!   lists the hours that had visits, and the hours a queue's reception is open on that weekday
//!   by its weekly periods (from a period's start to its last reception); nothing else.
//! - **Season factor** ([`History::season_factor`]): how much longer waits are in the season, as
//!   the waits of the season's visits over what the same weekday × hour waits out of the season
//!   (so a season that happens to be busier on Mondays is not counted twice); 1 when the history
//!   has no visits in the season, or none in their weekday × hour out of it.
//! - **Dates** ([`DateCell`]): a date is open when any queue takes tickets on it (its periods
//!   are not empty: not a weekend without periods, a holiday the queue closes on, or a closure;
//!   a queue without hours takes tickets every day). Its expected wait is the mean of its
//!   weekday's cells over the hours the date's reception is open (every hour for a queue without
//!   hours), times the season factor in the season. A date opened outside the weekly pattern (a
//!   Sunday in the season) whose weekday has no history takes the cells of every weekday pooled
//!   over the same hours instead. A closed date has no expected wait and no level.
//! - **Levels** ([`Level`]): low below the medium threshold, medium from it to the high one,
//!   high from there, like the 混雑 lamp of the live congestion page.

use chrono::{DateTime, Datelike, Days, Duration, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::hours::Hours;
use crate::core::model::SiteConfig;
use crate::core::{TicketStatus, VisitRecord};

/// Dates the calendar covers, today included: eight weeks.
pub const HORIZON_DAYS: u64 = 56;

/// First day of the moving season (引越しシーズン), month and day, inclusive.
pub const SEASON_FROM: (u32, u32) = (3, 15);

/// Last day of the moving season, month and day, inclusive.
pub const SEASON_TO: (u32, u32) = (4, 15);

/// Whether `date` (local) falls in the moving season.
pub fn in_season(date: NaiveDate) -> bool {
    let md = (date.month(), date.day());
    SEASON_FROM <= md && md <= SEASON_TO
}

/// The forecast calendar of one site: the JSON of the public calendar page.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Calendar {
    pub site: String,
    #[schema(value_type = String, format = DateTime)]
    pub generated_at: DateTime<Utc>,
    /// The thresholds the levels follow.
    pub levels: Levels,
    /// An ordinary week (outside the moving season), Monday first, all seven days.
    pub weekly: Vec<WeekdayRow>,
    /// The next [`HORIZON_DAYS`] days, today first.
    pub dates: Vec<DateCell>,
}

/// The level thresholds, in minutes of expected wait (the `[public]` ones of the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Levels {
    /// `medium` from this wait.
    pub medium_wait_min: u32,
    /// `high` from this wait.
    pub high_wait_min: u32,
}

/// How busy a cell is expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Low,
    Medium,
    High,
}

impl Level {
    /// The level of an expected wait of `wait_s` seconds.
    pub fn of(wait_s: u64, levels: Levels) -> Level {
        if wait_s >= u64::from(levels.high_wait_min) * 60 {
            Level::High
        } else if wait_s >= u64::from(levels.medium_wait_min) * 60 {
            Level::Medium
        } else {
            Level::Low
        }
    }
}

/// A day of the week as the calendar names it (`mon` … `sun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DayOfWeek {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl From<Weekday> for DayOfWeek {
    fn from(day: Weekday) -> Self {
        match day {
            Weekday::Mon => DayOfWeek::Mon,
            Weekday::Tue => DayOfWeek::Tue,
            Weekday::Wed => DayOfWeek::Wed,
            Weekday::Thu => DayOfWeek::Thu,
            Weekday::Fri => DayOfWeek::Fri,
            Weekday::Sat => DayOfWeek::Sat,
            Weekday::Sun => DayOfWeek::Sun,
        }
    }
}

/// One weekday of the ordinary week.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WeekdayRow {
    pub weekday: DayOfWeek,
    /// The hours with visits in the history or open by the weekly periods, in order.
    pub hours: Vec<HourCell>,
}

/// One local hour of a weekday: visits that arrived from `hour:00` to `hour:59`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HourCell {
    pub hour: u32,
    /// Mean wait until the first call, seconds; none without history.
    pub expected_wait_s: Option<u64>,
    pub level: Option<Level>,
}

/// One date of the coming weeks.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DateCell {
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    pub weekday: DayOfWeek,
    /// Whether the site takes tickets on that date.
    pub open: bool,
    /// Seconds; none on a closed date, or without history for it.
    pub expected_wait_s: Option<u64>,
    pub level: Option<Level>,
    /// In the moving season (the expected wait includes the season factor).
    pub season: bool,
}

/// A running mean.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Mean {
    sum: f64,
    n: u64,
}

impl Mean {
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.n += 1;
    }
    fn get(self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// Per local weekday (Monday first) × hour.
type Grid<T> = [[T; 24]; 7];

/// A site's history of visits, folded as it streams by: a running mean per local weekday × hour,
/// in and out of the moving season. Constant memory (2 × 7 × 24 means); one time-zone
/// conversion per visit.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    timezone: Tz,
    ordinary: Grid<Mean>,
    season: Grid<Mean>,
}

impl History {
    /// An empty history of a site in `timezone` (its [`SiteConfig::timezone`]).
    pub fn new(timezone: Tz) -> History {
        History {
            timezone,
            ordinary: [[Mean::default(); 24]; 7],
            season: [[Mean::default(); 24]; 7],
        }
    }

    /// Adds one finished visit: its arrival (ticket issued) and its wait until it was called.
    /// A wait that is negative or not a number is ignored.
    pub fn add(&mut self, arrival: DateTime<Utc>, wait_s: f64) {
        if !(wait_s.is_finite() && wait_s >= 0.0) {
            return;
        }
        let local = arrival.with_timezone(&self.timezone);
        let grid = if in_season(local.date_naive()) {
            &mut self.season
        } else {
            &mut self.ordinary
        };
        grid[local.weekday().num_days_from_monday() as usize][local.hour() as usize].add(wait_s);
    }

    /// Adds a visit record if the visit was done (served); no-shows and cancelled visits never
    /// waited for a call to the end, so their wait is not one a resident can expect.
    pub fn add_visit(&mut self, visit: &VisitRecord) {
        if visit.outcome == TicketStatus::Done {
            self.add(visit.arrival, visit.wait_s);
        }
    }

    /// Visits added, in and out of the season.
    pub fn visits(&self) -> u64 {
        let count = |g: &Grid<Mean>| g.iter().flatten().map(|m| m.n).sum::<u64>();
        count(&self.ordinary) + count(&self.season)
    }

    /// How much longer waits are in the moving season: the waits of the season's visits over
    /// the ordinary means of their weekday × hour. 1 without such visits.
    pub fn season_factor(&self) -> f64 {
        let (mut waited, mut ordinary) = (0.0, 0.0);
        for (s, o) in self
            .season
            .iter()
            .flatten()
            .zip(self.ordinary.iter().flatten())
        {
            if let (true, Some(mean)) = (s.n > 0, o.get()) {
                waited += s.sum;
                ordinary += s.n as f64 * mean;
            }
        }
        if ordinary > 0.0 {
            waited / ordinary
        } else {
            1.0
        }
    }

    /// The ordinary week: the mean out of the season, else the season's divided by `factor`.
    fn profile(&self, factor: f64) -> Grid<Option<f64>> {
        let mut grid = [[None; 24]; 7];
        for (d, row) in grid.iter_mut().enumerate() {
            for (h, cell) in row.iter_mut().enumerate() {
                *cell = self.ordinary[d][h].get().or_else(|| {
                    self.season[d][h]
                        .get()
                        .filter(|_| factor > 0.0)
                        .map(|m| m / factor)
                });
            }
        }
        grid
    }

    /// The hours (a bit per hour) with any visit on weekday `d`.
    fn hours_with_visits(&self, d: usize) -> u32 {
        (0..24)
            .filter(|&h| self.ordinary[d][h].n + self.season[d][h].n > 0)
            .fold(0, |mask, h| mask | 1 << h)
    }
}

impl Extend<(DateTime<Utc>, f64)> for History {
    fn extend<I: IntoIterator<Item = (DateTime<Utc>, f64)>>(&mut self, visits: I) {
        for (arrival, wait_s) in visits {
            self.add(arrival, wait_s);
        }
    }
}

/// Every hour of a day, a bit per hour.
const ALL_HOURS: u32 = (1 << 24) - 1;

/// The hours (a bit per hour) in which reception is open in `periods` of `hours`: from each
/// period's start to its last reception (`last_reception_min` before its end).
fn reception_hours(hours: &Hours, periods: &[(NaiveTime, NaiveTime)]) -> u32 {
    let mut mask = 0;
    for &(start, end) in periods {
        // As `Hours::at`: a period too short for its last reception takes no tickets.
        let last = end - Duration::minutes(i64::from(hours.last_reception_min));
        let last = if last < start || last > end {
            start
        } else {
            last
        };
        let (from, to) = (
            start.num_seconds_from_midnight(),
            last.num_seconds_from_midnight(),
        );
        for h in 0..24u32 {
            if h * 3600 < to && (h + 1) * 3600 > from {
                mask |= 1 << h;
            }
        }
    }
    mask
}

/// The mean of `row` over the hours of `mask` that have a value.
fn mean_over(row: &[Option<f64>; 24], mask: u32) -> Option<f64> {
    let mut mean = Mean::default();
    for (h, cell) in row.iter().enumerate() {
        if mask & (1 << h) != 0 {
            if let Some(v) = cell {
                mean.add(*v);
            }
        }
    }
    mean.get()
}

impl Calendar {
    /// The calendar of `config`'s site from its `history`, for the [`HORIZON_DAYS`] days from
    /// `today` (the site's local date). Cheap: the history is already folded.
    pub fn build(
        config: &SiteConfig,
        history: &History,
        today: NaiveDate,
        generated_at: DateTime<Utc>,
        levels: Levels,
    ) -> Calendar {
        let factor = history.season_factor();
        let profile = history.profile(factor);
        let level = |wait: Option<u64>| wait.map(|w| Level::of(w, levels));

        let weekly = (0..7)
            .map(|d| {
                let open = config
                    .queues
                    .iter()
                    .filter_map(|q| q.hours.as_deref())
                    .fold(0, |mask, h| mask | reception_hours(h, &h.week[d]));
                let listed = open | history.hours_with_visits(d);
                WeekdayRow {
                    weekday: weekday(d).into(),
                    hours: (0..24u32)
                        .filter(|h| listed & (1 << h) != 0)
                        .map(|hour| {
                            let wait = profile[d][hour as usize].map(round);
                            HourCell {
                                hour,
                                expected_wait_s: wait,
                                level: level(wait),
                            }
                        })
                        .collect(),
                }
            })
            .collect();

        // Every weekday pooled, for dates open outside the weekly pattern.
        let pooled: [Option<f64>; 24] = std::array::from_fn(|h| {
            let mut mean = Mean::default();
            for row in &profile {
                if let Some(v) = row[h] {
                    mean.add(v);
                }
            }
            mean.get()
        });

        let dates = (0..HORIZON_DAYS)
            .filter_map(|i| today.checked_add_days(Days::new(i)))
            .map(|date| {
                let (mut open, mut configured, mut any_hour) = (false, 0, false);
                for q in &config.queues {
                    match q.hours.as_deref() {
                        None => (open, any_hour) = (true, true),
                        Some(h) => {
                            let periods = h.periods(date);
                            open |= !periods.is_empty();
                            configured |= reception_hours(h, periods);
                        }
                    }
                }
                let season = in_season(date);
                let expected = open
                    .then(|| {
                        let d = date.weekday().num_days_from_monday() as usize;
                        let hours = if any_hour { ALL_HOURS } else { configured };
                        mean_over(&profile[d], hours).or_else(|| mean_over(&pooled, configured))
                    })
                    .flatten()
                    .map(|w| round(if season { w * factor } else { w }));
                DateCell {
                    date,
                    weekday: date.weekday().into(),
                    open,
                    expected_wait_s: expected,
                    level: level(expected),
                    season,
                }
            })
            .collect();

        Calendar {
            site: config.id.to_string(),
            generated_at,
            levels,
            weekly,
            dates,
        }
    }
}

/// The calendar of `config`'s site from `visits`, each a finished (done) visit's arrival and
/// wait until its call in seconds: [`History`] and [`Calendar::build`] in one call.
pub fn calendar(
    config: &SiteConfig,
    today: NaiveDate,
    generated_at: DateTime<Utc>,
    levels: Levels,
    visits: impl IntoIterator<Item = (DateTime<Utc>, f64)>,
) -> Calendar {
    let mut history = History::new(config.timezone);
    history.extend(visits);
    Calendar::build(config, &history, today, generated_at, levels)
}

/// The weekday of index `d`, Monday first.
fn weekday(d: usize) -> Weekday {
    Weekday::try_from(d as u8).expect("a weekday index below 7")
}

/// Whole seconds.
fn round(wait_s: f64) -> u64 {
    wait_s.round().max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::config::Config;
    use crate::core::hours::Closure;

    const LEVELS: Levels = Levels {
        medium_wait_min: 20,
        high_wait_min: 45,
    };

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }
    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    /// A city hall's week: 08:30–17:15 on weekdays, last reception 17:00, closed on holidays
    /// and over the new year.
    fn office_hours() -> Hours {
        let day = vec![(t(8, 30), t(17, 15))];
        Hours {
            week: [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
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
            extra: vec![],
            close_when_full: false,
            closing_margin_min: 0,
        }
    }

    /// The demo site with `hours` on every queue.
    fn site(hours: Option<Hours>) -> SiteConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::parse(&path, &text, &|_| None).unwrap();
        let mut site = (*config.sites[0]).clone();
        let hours = hours.map(Arc::new);
        for q in &mut site.queues {
            q.hours = hours.clone();
        }
        site
    }

    /// A visit arriving at local `hh:mm` on `day` at the site.
    fn at(config: &SiteConfig, day: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
        config
            .timezone
            .from_local_datetime(&day.and_time(t(h, m)))
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Weekday visits at 08:40, 09:10 … 16:40 (hours 8 to 16) on every weekday from `from` for
    /// `days` days, waiting `wait(weekday, hour)`.
    fn visits(
        config: &SiteConfig,
        from: NaiveDate,
        days: u64,
        wait: impl Fn(Weekday, u32) -> f64,
    ) -> Vec<(DateTime<Utc>, f64)> {
        let mut out = Vec::new();
        for day in from.iter_days().take(days as usize) {
            if matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                continue;
            }
            for h in 8..17 {
                for m in [10, 40] {
                    if (h, m) != (8, 10) {
                        out.push((at(config, day, h, m), wait(day.weekday(), h)));
                    }
                }
            }
        }
        out
    }

    /// Mondays at 10 are busiest, Thursday afternoons quiet, everything else ordinary.
    fn weekly_pattern(day: Weekday, hour: u32) -> f64 {
        match (day, hour) {
            (Weekday::Mon, 10) => 3000.0,
            (Weekday::Thu, 14..=16) => 240.0,
            (_, 9..=11) => 1500.0,
            _ => 900.0,
        }
    }

    fn cell(calendar: &Calendar, day: DayOfWeek, hour: u32) -> &HourCell {
        calendar
            .weekly
            .iter()
            .find(|r| r.weekday == day)
            .unwrap()
            .hours
            .iter()
            .find(|c| c.hour == hour)
            .unwrap()
    }

    fn on(calendar: &Calendar, day: NaiveDate) -> &DateCell {
        calendar.dates.iter().find(|c| c.date == day).unwrap()
    }

    #[test]
    fn the_weekly_table_shows_the_busy_and_the_quiet_hours() {
        let config = site(Some(office_hours()));
        let history = visits(&config, date(2026, 5, 11), 42, weekly_pattern);
        let now = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let cal = calendar(&config, date(2026, 7, 1), now, LEVELS, history);

        let days: Vec<_> = cal.weekly.iter().map(|r| r.weekday).collect();
        use DayOfWeek::*;
        assert_eq!(days, [Mon, Tue, Wed, Thu, Fri, Sat, Sun]);
        // Reception 08:30–17:00: hours 8 to 16; no periods and no visits at the weekend.
        let hours: Vec<u32> = cal.weekly[0].hours.iter().map(|c| c.hour).collect();
        assert_eq!(hours, (8..17).collect::<Vec<_>>());
        assert!(cal.weekly[5].hours.is_empty() && cal.weekly[6].hours.is_empty());

        let max = cal
            .weekly
            .iter()
            .flat_map(|r| r.hours.iter().map(move |c| (r.weekday, c)))
            .max_by_key(|(_, c)| c.expected_wait_s)
            .unwrap();
        assert_eq!((max.0, max.1.hour), (Mon, 10));
        assert_eq!(max.1.expected_wait_s, Some(3000));
        assert_eq!(max.1.level, Some(Level::High));
        let thursday_morning = cell(&cal, Thu, 10).expected_wait_s.unwrap();
        for hour in 14..=16 {
            let quiet = cell(&cal, Thu, hour);
            assert_eq!(quiet.expected_wait_s, Some(240));
            assert!(quiet.expected_wait_s.unwrap() < thursday_morning);
            assert_eq!(quiet.level, Some(Level::Low));
        }
        assert_eq!(cell(&cal, Tue, 9).level, Some(Level::Medium));
        // No visits at 8:00–8:30 on the first hour still counts the 8:40 ones.
        assert_eq!(cell(&cal, Wed, 8).expected_wait_s, Some(900));
    }

    #[test]
    fn the_season_doubles_the_expected_wait() {
        let config = site(Some(office_hours()));
        // A year of history: waits twice as long from March 15 to April 15.
        let history = visits(&config, date(2026, 1, 5), 365, |day, hour| {
            weekly_pattern(day, hour)
        })
        .into_iter()
        .map(|(arrival, wait)| {
            let local = arrival.with_timezone(&config.timezone).date_naive();
            (arrival, if in_season(local) { wait * 2.0 } else { wait })
        });
        let mut folded = History::new(config.timezone);
        folded.extend(history);
        assert!((folded.season_factor() - 2.0).abs() < 1e-9);

        let now = Utc.with_ymd_and_hms(2027, 3, 20, 0, 0, 0).unwrap();
        let cal = Calendar::build(&config, &folded, date(2027, 3, 20), now, LEVELS);
        assert_eq!(cal.dates.len(), 56);
        assert_eq!(cal.dates[0].date, date(2027, 3, 20));
        assert_eq!(cal.dates[55].date, date(2027, 5, 14));

        let march = on(&cal, date(2027, 3, 29)); // a Monday in the season
        let may = on(&cal, date(2027, 5, 10)); // a Monday after it
        assert!(march.season && !may.season);
        assert!(march.open && may.open);
        let ratio = march.expected_wait_s.unwrap() as f64 / may.expected_wait_s.unwrap() as f64;
        assert!((ratio - 2.0).abs() < 0.01, "{ratio}");
        // The weekly table is an ordinary week: the season is left out of it.
        assert_eq!(cell(&cal, DayOfWeek::Mon, 10).expected_wait_s, Some(3000));
        // Bounds: April 15 is the last day of the season.
        assert!(on(&cal, date(2027, 4, 15)).season);
        assert!(!on(&cal, date(2027, 4, 16)).season);
    }

    #[test]
    fn the_season_factor_is_one_without_season_history() {
        let config = site(Some(office_hours()));
        let mut history = History::new(config.timezone);
        history.extend(visits(&config, date(2026, 5, 11), 14, weekly_pattern));
        assert_eq!(history.season_factor(), 1.0);
        assert_eq!(History::new(config.timezone).season_factor(), 1.0);
    }

    #[test]
    fn closed_dates_have_no_forecast() {
        let config = site(Some(office_hours()));
        let history = visits(&config, date(2026, 5, 11), 42, weekly_pattern);
        let now = Utc.with_ymd_and_hms(2027, 4, 20, 0, 0, 0).unwrap();
        let cal = calendar(&config, date(2027, 4, 20), now, LEVELS, history);

        let sunday = on(&cal, date(2027, 4, 25));
        assert_eq!(sunday.weekday, DayOfWeek::Sun);
        // 憲法記念日, a Monday, with the queues closed on holidays; and 昭和の日, a Thursday.
        let holidays = [date(2027, 5, 3), date(2027, 4, 29)];
        for cell in std::iter::once(sunday).chain(holidays.iter().map(|d| on(&cal, *d))) {
            assert!(!cell.open, "{}", cell.date);
            assert_eq!((cell.expected_wait_s, cell.level), (None, None));
        }
        let monday = on(&cal, date(2027, 4, 26));
        assert!(monday.open && monday.expected_wait_s.is_some());

        // The same holidays open when the queues do not close on them.
        let mut hours = office_hours();
        hours.closed_on_holidays = false;
        let config = site(Some(hours));
        let history = visits(&config, date(2026, 5, 11), 42, weekly_pattern);
        let cal = calendar(&config, date(2027, 4, 20), now, LEVELS, history);
        assert!(on(&cal, date(2027, 5, 3)).open);
        assert!(!on(&cal, date(2027, 4, 25)).open);
    }

    #[test]
    fn a_sunday_opening_borrows_the_weekdays() {
        let mut hours = office_hours();
        // 休日開庁: a Sunday morning in the season.
        hours
            .extra
            .push((date(2027, 3, 28), vec![(t(9, 0), t(12, 0))]));
        let config = site(Some(hours));
        let history = visits(&config, date(2026, 5, 11), 42, |_, h| {
            if h < 12 {
                1200.0
            } else {
                600.0
            }
        });
        let now = Utc.with_ymd_and_hms(2027, 3, 20, 0, 0, 0).unwrap();
        let cal = calendar(&config, date(2027, 3, 20), now, LEVELS, history);
        let sunday = on(&cal, date(2027, 3, 28));
        assert!(sunday.open && sunday.season);
        // The morning hours of every weekday (no season history: factor 1).
        assert_eq!(sunday.expected_wait_s, Some(1200));
        assert_eq!(sunday.level, Some(Level::Medium));
        // The weekly table lists no Sunday hours: the opening is not in the weekly pattern.
        assert!(cal.weekly[6].hours.is_empty());
    }

    #[test]
    fn queues_without_hours_are_open_every_day() {
        let config = site(None);
        let history = visits(&config, date(2026, 5, 11), 14, weekly_pattern);
        let now = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let cal = calendar(&config, date(2026, 7, 1), now, LEVELS, history);
        assert!(cal.dates.iter().all(|c| c.open));
        // Hours listed from the history alone.
        let hours: Vec<u32> = cal.weekly[1].hours.iter().map(|c| c.hour).collect();
        assert_eq!(hours, (8..17).collect::<Vec<_>>());
        // A weekday without history has no forecast, even open.
        let saturday = on(&cal, date(2026, 7, 4));
        assert!(saturday.open);
        assert_eq!(saturday.expected_wait_s, None);
        assert!(on(&cal, date(2026, 7, 6)).expected_wait_s.is_some());
    }

    #[test]
    fn season_only_hours_are_deflated_by_the_factor() {
        let config = site(Some(office_hours()));
        let mut history = History::new(config.timezone);
        // Ordinary Mondays at 10, season Mondays at 10 twice as long, and a season-only hour.
        for day in [date(2026, 5, 11), date(2026, 5, 18)] {
            history.add(at(&config, day, 10, 0), 600.0);
        }
        history.add(at(&config, date(2026, 3, 16), 10, 0), 1200.0);
        history.add(at(&config, date(2026, 3, 16), 18, 0), 1000.0);
        assert_eq!(history.visits(), 4);
        assert!((history.season_factor() - 2.0).abs() < 1e-9);
        let now = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let cal = Calendar::build(&config, &history, date(2026, 7, 1), now, LEVELS);
        assert_eq!(cell(&cal, DayOfWeek::Mon, 10).expected_wait_s, Some(600));
        assert_eq!(cell(&cal, DayOfWeek::Mon, 18).expected_wait_s, Some(500));
    }

    #[test]
    fn only_done_visits_with_a_wait_count() {
        let config = site(None);
        let mut history = History::new(config.timezone);
        history.add(at(&config, date(2026, 5, 11), 10, 0), f64::NAN);
        history.add(at(&config, date(2026, 5, 11), 10, 0), -1.0);
        assert_eq!(history.visits(), 0);
        let day = date(2026, 5, 11);
        let mut visit = VisitRecord {
            ticket: "t1".parse().unwrap(),
            site: config.id.to_string(),
            day,
            number: crate::core::TicketNumber("A001".into()),
            life_event: None,
            procedures: vec![],
            priority: false,
            arrival: at(&config, day, 10, 0),
            departure: at(&config, day, 10, 30),
            outcome: TicketStatus::Cancelled,
            cancel_reason: None,
            satisfaction: None,
            stay_s: 1800.0,
            wait_s: 1800.0,
            service_s: 0.0,
            steps: vec![],
        };
        history.add_visit(&visit);
        visit.outcome = TicketStatus::NoShow;
        history.add_visit(&visit);
        assert_eq!(history.visits(), 0);
        visit.outcome = TicketStatus::Done;
        history.add_visit(&visit);
        assert_eq!(history.visits(), 1);
    }

    #[test]
    fn levels_follow_the_thresholds() {
        assert_eq!(Level::of(0, LEVELS), Level::Low);
        assert_eq!(Level::of(20 * 60 - 1, LEVELS), Level::Low);
        assert_eq!(Level::of(20 * 60, LEVELS), Level::Medium);
        assert_eq!(Level::of(45 * 60 - 1, LEVELS), Level::Medium);
        assert_eq!(Level::of(45 * 60, LEVELS), Level::High);
    }

    #[test]
    fn the_json_has_the_documented_shape() {
        let config = site(Some(office_hours()));
        let history = visits(&config, date(2026, 5, 11), 14, weekly_pattern);
        let now = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let cal = calendar(&config, date(2026, 7, 4), now, LEVELS, history);
        let json = serde_json::to_value(&cal).unwrap();
        assert_eq!(json["site"], config.id.to_string());
        assert_eq!(json["generated_at"], "2026-07-01T00:00:00Z");
        assert_eq!(
            json["levels"],
            serde_json::json!({"medium_wait_min": 20, "high_wait_min": 45})
        );
        assert_eq!(json["weekly"][0]["weekday"], "mon");
        assert_eq!(
            json["weekly"][0]["hours"][2],
            serde_json::json!({"hour": 10, "expected_wait_s": 3000, "level": "high"})
        );
        assert_eq!(
            json["dates"][0],
            serde_json::json!({"date": "2026-07-04", "weekday": "sat", "open": false,
                "expected_wait_s": null, "level": null, "season": false})
        );
        assert_eq!(json["dates"][2]["weekday"], "mon");
        assert_eq!(json["dates"][2]["level"], "medium");
    }
}
