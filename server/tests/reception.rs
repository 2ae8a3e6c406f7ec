//! Reception hours in the pure core, with virtual time: which issues are taken across weekday,
//! lunch gap, holiday, closure and day-reset edges; the floor manager closing and overriding; a
//! full afternoon closing a queue by the forecast.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use madoguchi::config::{Config, SiteConfig};
use madoguchi::core::{
    decide, Command, DomainError, Event, IssueCommand, PlanRequest, QueueId, ReceptionMode,
    ReceptionReason, ReceptionState, SiteState, TicketId, Timestamp,
};

const SITE: &str = r#"
timezone = "Asia/Tokyo"
day_reset = "03:00"

[hours]
weekdays = ["08:30-12:00", "13:00-17:15"]
last_reception_min = 15
closures = ["12-29/01-03"]

[[procedures]]
code = "long"
name = { ja = "長い手続", en = "Long procedure" }
service_min = 60

[[procedures]]
code = "short"
name = { ja = "短い手続", en = "Short procedure" }
service_min = 5

[[sites]]
id = "ward"
name = { ja = "区役所", en = "Ward office" }

[[sites.queues]]
id = "onestop"
name = { ja = "ワンストップ", en = "One-stop" }
prefix = "A"
range = [1, 999]
procedures = ["long"]

# Certificates keep the whole day, without a lunch gap, and do not close when full.
[[sites.queues]]
id = "certs"
name = { ja = "証明", en = "Certificates" }
prefix = "C"
range = [1, 999]
procedures = ["short"]

[sites.queues.hours]
weekdays = ["08:30-17:15"]
last_reception_min = 15
closures = ["12-29/01-03"]
close_when_full = false

[[sites.counters]]
id = "1"
name = { ja = "1番", en = "No. 1" }
queues = ["onestop"]
state = "open"

[[sites.counters]]
id = "2"
name = { ja = "2番", en = "No. 2" }
queues = ["certs"]
state = "open"
"#;

fn config() -> Arc<SiteConfig> {
    let config = Config::parse(Path::new("reception.toml"), SITE, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    config.site(&"ward".parse().unwrap()).unwrap().clone()
}

/// A local time in Tokyo.
fn jst(y: i32, m: u32, d: u32, h: u32, mi: u32) -> Timestamp {
    FixedOffset::east_opt(9 * 3600)
        .unwrap()
        .with_ymd_and_hms(y, m, d, h, mi, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn jst_offset(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<FixedOffset> {
    FixedOffset::east_opt(9 * 3600)
        .unwrap()
        .with_ymd_and_hms(y, m, d, h, mi, 0)
        .unwrap()
}

struct Site {
    state: SiteState,
    n: u32,
}

impl Site {
    fn new() -> Self {
        Self {
            state: SiteState::new(config()),
            n: 0,
        }
    }

    fn run(&mut self, command: Command, at: Timestamp) -> Result<Vec<Event>, DomainError> {
        let events = decide(&self.state, &command, at)?;
        for e in &events {
            self.state.apply(e);
        }
        Ok(events)
    }

    fn issue(&mut self, procedure: &str, at: Timestamp) -> Result<Vec<Event>, DomainError> {
        self.n += 1;
        let command = Command::Issue(IssueCommand {
            id: TicketId::try_from(format!("t{}", self.n)).unwrap(),
            token: format!("{:032x}", self.n),
            plan: PlanRequest::Procedures(vec![procedure.parse().unwrap()]),
            priority: false,
            dispenser: None,
            lang: None,
            idempotency_key: None,
        });
        self.run(command, at)
    }

    /// Asserts an issue at `at` is refused as closed, reopening at `next_open`.
    fn closed(&mut self, procedure: &str, at: Timestamp, next_open: DateTime<FixedOffset>) {
        match self.issue(procedure, at) {
            Err(DomainError::QueueClosed {
                next_open: Some(n), ..
            }) => assert_eq!(n, next_open, "next opening after {at}"),
            other => panic!("an issue at {at} should be refused as closed, got {other:?}"),
        }
    }

    fn open(&mut self, procedure: &str, at: Timestamp) {
        let events = self
            .issue(procedure, at)
            .unwrap_or_else(|e| panic!("an issue at {at} should be taken: {e}"));
        assert!(matches!(events.last(), Some(Event::TicketIssued { .. })));
    }
}

#[test]
fn issues_follow_the_hours_across_weekday_lunch_holiday_closure_and_day_reset_edges() {
    let mut site = Site::new();
    // Monday 2027-01-11 is 成人の日: closed all day; next opening Tuesday 08:30.
    site.closed(
        "long",
        jst(2027, 1, 11, 10, 0),
        jst_offset(2027, 1, 12, 8, 30),
    );
    // Tuesday 02:59 is still Monday's business day (reset 03:00), 03:01 Tuesday's: both closed,
    // both open at 08:30.
    site.closed(
        "long",
        jst(2027, 1, 12, 2, 59),
        jst_offset(2027, 1, 12, 8, 30),
    );
    site.closed(
        "long",
        jst(2027, 1, 12, 3, 1),
        jst_offset(2027, 1, 12, 8, 30),
    );
    site.open("long", jst(2027, 1, 12, 8, 30));
    // The lunch gap: reception ends 11:45 for the one-stop queue, certificates go on.
    site.open("long", jst(2027, 1, 12, 11, 44));
    site.closed(
        "long",
        jst(2027, 1, 12, 11, 45),
        jst_offset(2027, 1, 12, 13, 0),
    );
    site.open("short", jst(2027, 1, 12, 12, 30));
    site.open("long", jst(2027, 1, 12, 13, 0));
    // The last reception at 17:00; Friday evening reopens on Monday.
    site.closed(
        "short",
        jst(2027, 1, 12, 17, 0),
        jst_offset(2027, 1, 13, 8, 30),
    );
    site.closed(
        "long",
        jst(2027, 1, 15, 17, 5),
        jst_offset(2027, 1, 18, 8, 30),
    );
    // The year-end closure 12/29–1/3, across the new year (and 1/1, a holiday, inside it).
    site.closed(
        "long",
        jst(2027, 12, 28, 17, 0),
        jst_offset(2028, 1, 4, 8, 30),
    );
    site.closed(
        "short",
        jst(2027, 12, 31, 10, 0),
        jst_offset(2028, 1, 4, 8, 30),
    );
}

#[test]
fn the_floor_closes_reception_for_the_rest_of_the_period_and_can_keep_it_open() {
    let mut site = Site::new();
    let onestop: QueueId = "onestop".parse().unwrap();
    let at = jst(2027, 1, 12, 9, 0);
    site.open("long", at);
    let close = Command::SetReception {
        queue: onestop.clone(),
        mode: ReceptionMode::Closing,
        reason: ReceptionReason::Floor,
    };
    let events = site.run(close.clone(), at).unwrap();
    match events.as_slice() {
        [Event::ReceptionChanged {
            mode: ReceptionMode::Closing,
            until,
            ..
        }] => assert_eq!(*until, jst(2027, 1, 12, 12, 0), "until the period ends"),
        other => panic!("expected one ReceptionChanged, got {other:?}"),
    }
    // Closing twice changes nothing.
    assert_eq!(site.run(close, at).unwrap(), vec![]);
    let queue = site.state.config.queue(&onestop).unwrap().clone();
    let reception = site.state.queue_reception(&queue, at);
    assert_eq!(reception.state, ReceptionState::Closing);
    assert_eq!(reception.next_open, Some(jst_offset(2027, 1, 12, 13, 0)));
    site.closed(
        "long",
        jst(2027, 1, 12, 9, 30),
        jst_offset(2027, 1, 12, 13, 0),
    );
    // The afternoon period opens again by itself.
    site.open("long", jst(2027, 1, 12, 13, 0));
    // Closed again, then kept open by the floor manager.
    let at = jst(2027, 1, 12, 14, 0);
    site.run(
        Command::SetReception {
            queue: onestop.clone(),
            mode: ReceptionMode::Closing,
            reason: ReceptionReason::Floor,
        },
        at,
    )
    .unwrap();
    site.closed("long", at, jst_offset(2027, 1, 13, 8, 30));
    site.run(
        Command::SetReception {
            queue: onestop.clone(),
            mode: ReceptionMode::Open,
            reason: ReceptionReason::Floor,
        },
        at,
    )
    .unwrap();
    site.open("long", jst(2027, 1, 12, 14, 1));
    // An unknown queue is refused.
    assert!(matches!(
        site.run(
            Command::SetReception {
                queue: "nope".parse().unwrap(),
                mode: ReceptionMode::Closing,
                reason: ReceptionReason::Floor,
            },
            at,
        ),
        Err(DomainError::UnknownQueue(_))
    ));
}

#[test]
fn a_full_afternoon_closes_the_queue_and_the_override_keeps_it_open() {
    let mut site = Site::new();
    let onestop: QueueId = "onestop".parse().unwrap();
    // 15:00, one counter, an hour per visit, the period ends 17:15: a first ticket is served
    // 15:00–16:00, a second 16:00–17:00, a third would end at 18:00.
    let at = jst(2027, 1, 12, 15, 0);
    assert!(site.state.full_queues(at).is_empty());
    site.open("long", at);
    assert!(site.state.full_queues(at).is_empty());
    site.open("long", at);
    assert_eq!(site.state.full_queues(at), vec![onestop.clone()]);
    // Certificates never close when full (close_when_full = false), however long the line.
    for _ in 0..200 {
        site.open("short", at);
    }
    assert_eq!(site.state.full_queues(at), vec![onestop.clone()]);
    // The actor turns the finding into an event; the kiosk's next issue is refused.
    site.run(
        Command::SetReception {
            queue: onestop.clone(),
            mode: ReceptionMode::Closing,
            reason: ReceptionReason::Forecast,
        },
        at,
    )
    .unwrap();
    assert!(site.state.full_queues(at).is_empty(), "closed already");
    site.closed("long", at, jst_offset(2027, 1, 13, 8, 30));
    // The floor manager keeps it open: the forecast no longer closes it this period.
    site.run(
        Command::SetReception {
            queue: onestop.clone(),
            mode: ReceptionMode::Open,
            reason: ReceptionReason::Floor,
        },
        at,
    )
    .unwrap();
    assert!(site.state.full_queues(at).is_empty());
    site.open("long", at);
    // The next day starts fresh: nothing is closed, the hours apply.
    let tomorrow = jst(2027, 1, 13, 9, 0);
    site.open("long", tomorrow);
    assert!(
        site.state.reception.is_empty(),
        "a new day forgets closings"
    );
}

#[test]
fn the_board_shows_each_queues_reception_after_a_refresh() {
    let mut site = Site::new();
    let at = jst(2027, 1, 12, 12, 30);
    assert!(site.state.refresh_reception(at));
    let board = site.state.board();
    let state = |id: &str| {
        board
            .queues
            .iter()
            .find(|q| q.id.as_str() == id)
            .map(|q| q.reception.clone())
            .unwrap()
    };
    assert_eq!(state("onestop").state, ReceptionState::Closed);
    assert_eq!(
        state("onestop").next_open,
        Some(jst_offset(2027, 1, 12, 13, 0))
    );
    assert_eq!(state("certs").state, ReceptionState::Open);
    assert_eq!(
        state("certs").last_reception,
        Some(jst_offset(2027, 1, 12, 17, 0))
    );
    // Nothing changed: no refresh needed; the next change is the one-stop queue opening.
    assert!(!site.state.refresh_reception(at));
    assert_eq!(
        site.state.next_reception_change(at),
        Some(jst(2027, 1, 12, 13, 0))
    );
    // The JSON carries the fields flat on each queue.
    let json = serde_json::to_value(&board).unwrap();
    assert_eq!(json["queues"][0]["state"], "closed");
    assert_eq!(json["queues"][0]["next_open"], "2027-01-12T13:00:00+09:00");
}

/// The site without reception hours (`serve --always-open`), with the same events applied.
fn always_open(state: &SiteState, events: &[Event]) -> SiteState {
    let mut config = Config::parse(Path::new("reception.toml"), SITE, &|_| None).unwrap();
    config.ignore_hours();
    let mut open = SiteState::new(config.site(&"ward".parse().unwrap()).unwrap().clone());
    for e in events {
        open.apply(e);
    }
    assert_eq!(open.seq, state.seq);
    open
}

#[test]
fn the_forecast_calls_nobody_in_the_lunch_gap_and_lets_nobody_join_outside_hours() {
    use madoguchi::core::estimate::{forecast, what_if};
    use madoguchi::core::{Learner, Target};
    let mut site = Site::new();
    // 11:30: two hour-long visits for the one counter; reception pauses 11:45–13:00 and the
    // counters with it (12:00–13:00). The first is served from now, the second after lunch.
    let at = jst(2027, 1, 12, 11, 30);
    let mut events = Vec::new();
    events.extend(site.issue("long", at).unwrap());
    events.extend(site.issue("long", at).unwrap());
    let second = TicketId::try_from("t2".to_owned()).unwrap();
    let learner = Learner::new(&site.state.config);
    let with_hours = forecast(&site.state, &learner, at, 7).tickets[&second];
    let open = always_open(&site.state, &events);
    let without = forecast(&open, &Learner::new(&open.config), at, 7).tickets[&second];
    // After lunch: 13:00 is 90 minutes away (a first visit ending before 13:00 in most runs).
    assert!(
        (90 * 60..=95 * 60).contains(&with_hours),
        "the second is called when the counters call again at 13:00: {with_hours} s"
    );
    assert!(
        without < 75 * 60,
        "without hours it is called when the first visit ends: {without} s"
    );

    // What-if at 11:40 with a resident a minute joining: they join until 11:45, then nobody
    // until 13:00, so the line at 12:30 is as it was at 11:45; without hours it keeps growing.
    let at = jst(2027, 1, 12, 11, 40);
    let onestop = Target::Queue("onestop".parse().unwrap());
    let extra = std::collections::HashMap::from([(onestop.clone(), 1.0 / 60.0)]);
    let waiting_at = |state: &SiteState, t: f64| {
        let lines = what_if(
            state,
            &Learner::new(&state.config),
            at,
            3600.0,
            600.0,
            &extra,
            3,
        );
        let (_, points) = lines.into_iter().find(|(l, _)| *l == onestop).unwrap();
        points
            .iter()
            .find(|p| (p.at_s - t).abs() < 1.0)
            .map(|p| p.waiting)
            .unwrap()
    };
    let (before, lunch) = (
        waiting_at(&site.state, 0.0),
        waiting_at(&site.state, 3000.0),
    );
    assert!(
        lunch - before < 12.0,
        "about five join until 11:45, nobody during lunch: {before} → {lunch}"
    );
    let (open_before, open_lunch) = (waiting_at(&open, 0.0), waiting_at(&open, 3000.0));
    assert!(
        open_lunch - open_before > 30.0,
        "about fifty join in 50 minutes without hours: {open_before} → {open_lunch}"
    );
}
