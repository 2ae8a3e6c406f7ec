//! A whole day of visits at 中央区役所 (demo configuration), driven through the pure core with
//! virtual time from a hand-written schedule, then the KPI computed by `kpi::report` compared
//! with figures this test works out from the SCHEDULE (never from the visit records).
//!
//! The schedule: business day 2026-03-31 (Tuesday) has three late visits, one at 23:50 and one
//! at 00:10 on 1 April (after midnight but before the 03:00 day reset, so still business day
//! 31 March; fiscal year 2026 by its local date). Business day 2026-04-01 (Wednesday) is a full
//! day at counters 1–9: life events and plain procedures, transfers to the welfare queue and to
//! a named counter, no-shows after two calls (requeued once, as the demo config says), a visit
//! that misses its first round and is served on its second, a recall, staff and resident
//! cancellations (waiting, called, and after a transfer), a ticket left open that the next day
//! closes, priority tickets called ahead of earlier ones, and satisfaction ratings. Its last
//! visit arrives at 00:30 on 2 April (2026-04-01T15:30:00Z).
//!
//! A second part drives the same schedule through the real site actor and HTTP router in
//! process, with a virtual clock, to check the KPI endpoint and the CSV export at the fiscal
//! year boundary.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{Duration, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use madoguchi::config::{Config, SiteConfig};
use madoguchi::core::{
    decide, CancelReason, Command, Event, IssueCommand, PlanRequest, SiteState, Target, TicketId,
    TicketNumber, TicketSelector, TicketStatus, Timestamp, VisitRecord,
};
use madoguchi::kpi::{self, Figures, GroupBy, KpiTarget, Stats};

// ---------------------------------------------------------------------------------------------
// Configuration and time
// ---------------------------------------------------------------------------------------------

fn config() -> Config {
    Config::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/demo.toml"
    )))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn chuo(config: &Config) -> Arc<SiteConfig> {
    config.site(&"chuo".parse().unwrap()).unwrap().clone()
}

const TOKYO: chrono_tz::Tz = chrono_tz::Asia::Tokyo;

/// Japan has no summer time: local = UTC + 9 h, worked out here without the tz database.
fn jst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).unwrap()
}

/// A local (Tokyo) time of the schedule: `"HH:MM[:SS]"` on the main day 2026-04-01, or a full
/// `"YYYY-MM-DD HH:MM[:SS]"`.
fn local(s: &str) -> NaiveDateTime {
    let full = if s.len() <= 8 {
        format!("2026-04-01 {s}")
    } else {
        s.to_owned()
    };
    NaiveDateTime::parse_from_str(&full, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(&full, "%Y-%m-%d %H:%M"))
        .unwrap_or_else(|e| panic!("bad schedule time {s:?}: {e}"))
}

fn at(s: &str) -> Timestamp {
    jst().from_local_datetime(&local(s)).unwrap().to_utc()
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// The business day of a local time: days start at 03:00 (demo `day_reset`).
fn business_day_of(t: NaiveDateTime) -> NaiveDate {
    (t - Duration::hours(3)).date()
}

/// Weekdays of the schedule's dates, by hand.
fn weekday_of(d: NaiveDate) -> &'static str {
    match d.to_string().as_str() {
        "2026-03-31" => "tue",
        "2026-04-01" => "wed",
        "2026-04-02" => "thu",
        other => panic!("no weekday written down for {other}"),
    }
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

// ---------------------------------------------------------------------------------------------
// The schedule
// ---------------------------------------------------------------------------------------------

/// What a resident asks for at the kiosk, with the queue the demo routing sends it to (worked
/// out by hand from config/demo.toml: the first queue that handles the whole plan).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    /// 市外からの転入, no question answered yes: tennyu.
    MovingIn,
    /// 市外からの転入 with children and kokuho: 6 procedures.
    MovingInKids,
    MovingOut,
    MovingWithin,
    Birth,
    Marriage,
    Divorce,
    /// おくやみ: every procedure is at the bereavement desk (K…).
    Death,
    /// 証明書のみ (life event): shoumei, certificates queue (C…).
    Certificates,
    /// Plain procedure shoumei: certificates queue (C…), no life event.
    Shoumei,
    /// Plain procedure kaigo_hoken: the welfare queue handles it, but onestop comes first.
    Kaigo,
}

impl Plan {
    fn life_event(self) -> Option<&'static str> {
        Some(match self {
            Plan::MovingIn | Plan::MovingInKids => "moving_in",
            Plan::MovingOut => "moving_out",
            Plan::MovingWithin => "moving_within",
            Plan::Birth => "birth",
            Plan::Marriage => "marriage",
            Plan::Divorce => "divorce",
            Plan::Death => "death",
            Plan::Certificates => "certificates",
            Plan::Shoumei | Plan::Kaigo => return None,
        })
    }

    fn queue(self) -> &'static str {
        match self {
            Plan::Death => "okuyami",
            Plan::Certificates | Plan::Shoumei => "certificates",
            _ => "onestop",
        }
    }

    fn request(self) -> PlanRequest {
        let answers: &[(&str, bool)] = match self {
            Plan::MovingIn => &[
                ("children", false),
                ("kokuho", false),
                ("over_65", false),
                ("over_75", false),
            ],
            Plan::MovingInKids => &[
                ("children", true),
                ("kokuho", true),
                ("over_65", false),
                ("over_75", false),
            ],
            Plan::MovingOut => &[
                ("kokuho", true),
                ("children", false),
                ("over_65", false),
                ("over_75", false),
            ],
            Plan::MovingWithin => &[
                ("mynumber_card", true),
                ("children", false),
                ("kokuho", false),
                ("kei_car", true),
            ],
            Plan::Birth => &[
                ("kokuho", false),
                ("nursery", true),
                ("single_parent", false),
            ],
            Plan::Marriage => &[
                ("name_change", true),
                ("moving_within", true),
                ("kokuho", false),
                ("pension", false),
            ],
            Plan::Divorce => &[
                ("children", true),
                ("dependant", true),
                ("moving_within", false),
                ("name_change", false),
            ],
            Plan::Death => &[
                ("head_of_household", false),
                ("pension", true),
                ("over_65", true),
                ("over_75", true),
            ],
            Plan::Certificates => &[],
            Plan::Shoumei => return PlanRequest::Procedures(vec!["shoumei".parse().unwrap()]),
            Plan::Kaigo => return PlanRequest::Procedures(vec!["kaigo_hoken".parse().unwrap()]),
        };
        PlanRequest::LifeEvent {
            id: self.life_event().unwrap().parse().unwrap(),
            answers: answers
                .iter()
                .map(|(q, a)| (q.parse().unwrap(), *a))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
enum End {
    /// Service started and the step completed, then (maybe) a transfer.
    Served {
        start: &'static str,
        end: &'static str,
        then: Option<Target>,
    },
    /// The final no-show (the visit ends).
    NoShow(&'static str),
    Cancelled(&'static str, CancelReason),
    /// Never called: the next business day closes it.
    Expires,
}

#[derive(Debug, Clone)]
struct StepPlan {
    counter: Option<&'static str>,
    /// A first round at the same counter that ended in a no-show, so the ticket went back to
    /// the end of its line: call, recall, no-show.
    missed: Option<[&'static str; 3]>,
    /// The call (then recalls); the last one is the one answered when the step is served.
    calls: Vec<&'static str>,
    /// Call with call-next (and check it picks this visit) instead of by number.
    call_next: bool,
    end: End,
}

#[derive(Debug, Clone)]
struct VisitPlan {
    name: &'static str,
    arrive: &'static str,
    plan: Plan,
    priority: bool,
    steps: Vec<StepPlan>,
    rating: Option<(u8, &'static str)>,
}

fn visit(name: &'static str, arrive: &'static str, plan: Plan) -> VisitPlan {
    VisitPlan {
        name,
        arrive,
        plan,
        priority: false,
        steps: Vec::new(),
        rating: None,
    }
}

fn queue(q: &str) -> Target {
    Target::Queue(q.parse().unwrap())
}

fn to_counter(c: &str) -> Target {
    Target::Counter(c.parse().unwrap())
}

impl VisitPlan {
    fn priority(mut self) -> Self {
        self.priority = true;
        self
    }

    fn step(mut self, step: StepPlan) -> Self {
        self.steps.push(step);
        self
    }

    fn last(&mut self) -> &mut StepPlan {
        self.steps.last_mut().expect("a step first")
    }

    fn served(
        self,
        counter: &'static str,
        call: &'static str,
        start: &'static str,
        end: &'static str,
    ) -> Self {
        self.step(StepPlan {
            counter: Some(counter),
            missed: None,
            calls: vec![call],
            call_next: false,
            end: End::Served {
                start,
                end,
                then: None,
            },
        })
    }

    fn served_next(
        self,
        counter: &'static str,
        call: &'static str,
        start: &'static str,
        end: &'static str,
    ) -> Self {
        let mut v = self.served(counter, call, start, end);
        v.last().call_next = true;
        v
    }

    fn recall(mut self, at: &'static str) -> Self {
        self.last().calls.push(at);
        self
    }

    fn missed(mut self, round: [&'static str; 3]) -> Self {
        self.last().missed = Some(round);
        self
    }

    fn transfer(mut self, target: Target) -> Self {
        match &mut self.last().end {
            End::Served { then, .. } => *then = Some(target),
            other => panic!("only a served step transfers, not {other:?}"),
        }
        self
    }

    /// Two rounds of call and recall, each ending with a no-show: requeued, then ended.
    fn no_show(
        self,
        counter: &'static str,
        first: [&'static str; 3],
        second: [&'static str; 3],
    ) -> Self {
        self.step(StepPlan {
            counter: Some(counter),
            missed: Some(first),
            calls: vec![second[0], second[1]],
            call_next: false,
            end: End::NoShow(second[2]),
        })
    }

    fn cancelled_waiting(self, at: &'static str, reason: CancelReason) -> Self {
        self.step(StepPlan {
            counter: None,
            missed: None,
            calls: vec![],
            call_next: false,
            end: End::Cancelled(at, reason),
        })
    }

    fn cancelled_called(self, counter: &'static str, call: &'static str, at: &'static str) -> Self {
        self.step(StepPlan {
            counter: Some(counter),
            missed: None,
            calls: vec![call],
            call_next: false,
            end: End::Cancelled(at, CancelReason::Staff),
        })
    }

    fn expires(self) -> Self {
        self.step(StepPlan {
            counter: None,
            missed: None,
            calls: vec![],
            call_next: false,
            end: End::Expires,
        })
    }

    fn rated(mut self, score: u8, at: &'static str) -> Self {
        self.rating = Some((score, at));
        self
    }
}

/// The day. Counter lanes are sequential (a counter finishes before its next call); the
/// comments say which counter handles what.
fn schedule() -> Vec<VisitPlan> {
    use CancelReason::{Resident, Staff};
    use Plan::*;
    vec![
        // --- Business day 2026-03-31 (Tuesday), late evening: fiscal year 2025, then 2026 ---
        visit("E0", "2026-03-31 22:30", Shoumei).served(
            "6",
            "2026-03-31 22:31",
            "2026-03-31 22:32",
            "2026-03-31 22:35",
        ),
        visit("E1", "2026-03-31 23:50", MovingIn)
            .served(
                "1",
                "2026-03-31 23:52",
                "2026-03-31 23:53",
                "2026-04-01 00:20",
            )
            .rated(4, "2026-04-01 00:21"),
        // 00:10 on 1 April: business day 31 March, calendar day 1 April, fiscal year 2026.
        visit("E2", "2026-04-01 00:10", MovingIn).served(
            "2",
            "2026-04-01 00:12",
            "2026-04-01 00:13",
            "2026-04-01 00:40:30",
        ),
        // --- Business day 2026-04-01 (Wednesday) ---
        // Counter 1.
        visit("V01", "08:30", MovingInKids)
            .served("1", "08:32", "08:33:10", "09:21")
            .transfer(queue("welfare"))
            .served("8", "09:30", "09:31", "09:55:30")
            .rated(5, "09:58"),
        visit("V02", "08:34", MovingIn)
            .served("1", "09:22", "09:23", "09:48")
            .rated(4, "09:49"),
        visit("V03", "08:50", MovingOut).served("1", "09:50", "09:51:30", "10:05"),
        visit("V04", "09:10", Birth)
            .served("1", "10:06", "10:09", "10:40")
            .recall("10:08")
            .rated(2, "10:41"),
        visit("V05", "09:40", MovingWithin).served("1", "10:41", "10:42", "11:02"),
        visit("V06", "10:15", MovingInKids)
            .served("1", "11:03", "11:04", "11:58")
            .transfer(to_counter("9"))
            .served("9", "12:05", "12:06", "12:30"),
        visit("V07", "11:20", Marriage)
            .served("1", "12:00", "12:01", "12:25")
            .rated(5, "12:26"),
        visit("V08", "11:50", MovingIn).served("1", "12:26", "12:27", "13:05"),
        visit("V09", "12:40", Divorce)
            .served("1", "13:06", "13:07", "13:50")
            .transfer(queue("welfare"))
            .served("8", "14:00", "14:01", "14:40")
            .rated(1, "14:42"),
        visit("V10", "13:30", MovingInKids).served("1", "13:51", "13:52", "14:55"),
        visit("V11", "14:20", MovingOut).served("1", "14:56", "14:57", "15:10"),
        visit("V12", "15:00", MovingIn)
            .served("1", "15:11", "15:12", "15:45")
            .rated(4, "15:46"),
        visit("V13", "15:40", Birth).served("1", "15:46", "15:47", "16:20"),
        // Counter 2.
        visit("V14", "08:36", MovingIn)
            .served("2", "08:40", "08:41", "09:05")
            .rated(5, "09:06"),
        visit("V15", "08:45", Kaigo).served("2", "09:06", "09:07", "09:25"),
        // Priority: call-next at 09:26 picks it ahead of everyone who came earlier.
        visit("V16", "08:55", MovingInKids)
            .priority()
            .served_next("2", "09:26", "09:27", "10:20")
            .rated(5, "10:21"),
        visit("V17", "09:05", MovingWithin).served("2", "10:21", "10:22", "10:40"),
        visit("V18", "09:30", Marriage).served("2", "10:41", "10:42", "11:10"),
        visit("V19", "10:00", MovingIn).served("2", "11:11", "11:12", "11:40"),
        visit("V20", "10:30", Divorce).no_show(
            "2",
            ["11:41", "11:43", "11:45"],
            ["12:10", "12:12", "12:14"],
        ),
        visit("V21", "10:45", MovingOut).served("2", "11:46", "11:47", "12:09"),
        visit("V22", "11:30", MovingIn).served("2", "12:15", "12:16", "12:50"),
        visit("V23", "12:10", Birth)
            .served("2", "12:51", "12:52", "13:30")
            .rated(3, "13:31"),
        // Missed the first round (requeued), served on the second.
        visit("V24", "13:00", MovingInKids)
            .served("2", "14:10", "14:11", "15:05")
            .missed(["13:31", "13:33", "13:35"]),
        visit("V25", "13:20", MovingWithin).served("2", "13:36", "13:37", "14:05"),
        visit("V26", "14:30", MovingIn).served("2", "15:06", "15:07", "15:40"),
        visit("V27", "15:20", MovingOut).served("2", "15:41", "15:42", "16:00"),
        // Counter 3.
        visit("V28", "08:40", Marriage).served("3", "08:45", "08:46", "09:10"),
        visit("V29", "09:00", MovingIn)
            .served("3", "09:11", "09:12", "09:50")
            .rated(5, "09:51"),
        visit("V30", "09:20", MovingInKids).served("3", "09:51", "09:52", "10:50"),
        visit("V31", "09:50", Divorce).cancelled_waiting("10:30", Staff),
        visit("V32", "10:10", MovingWithin).served("3", "10:51", "10:52", "11:15"),
        // Transferred to welfare, then cancelled while waiting there.
        visit("V33", "10:40", Birth)
            .served("3", "11:16", "11:17", "11:55")
            .transfer(queue("welfare"))
            .cancelled_waiting("12:20", Staff),
        visit("V34", "11:10", MovingIn).served("3", "11:56", "11:57", "12:35"),
        visit("V35", "12:00", MovingOut).cancelled_waiting("12:30", Resident),
        visit("V36", "12:30", MovingInKids)
            .served("3", "12:36", "12:37", "13:40")
            .rated(4, "13:41"),
        // Called, then staff cancel (the resident had left).
        visit("V37", "13:15", Marriage).cancelled_called("3", "13:41", "13:44"),
        visit("V38", "13:45", MovingIn).served("3", "13:50", "13:51", "14:30"),
        visit("V39", "14:45", MovingWithin).served("3", "14:50", "14:51", "15:15"),
        visit("V40", "15:30", MovingIn)
            .priority()
            .served_next("3", "15:35", "15:36", "16:10")
            .rated(5, "16:11"),
        // Counter 4.
        visit("V41", "08:31", MovingOut).served("4", "08:33", "08:34", "08:50"),
        visit("V42", "08:48", MovingIn)
            .served("4", "08:51", "08:52", "09:30")
            .rated(4, "09:31"),
        visit("V43", "09:15", Birth).served("4", "09:31", "09:32", "10:10"),
        visit("V44", "09:45", MovingInKids)
            .served("4", "10:11", "10:12", "11:20")
            .transfer(queue("welfare"))
            .served("8", "11:30", "11:31", "12:00"),
        visit("V45", "10:50", MovingWithin).served("4", "11:21", "11:22", "11:45"),
        visit("V46", "11:40", MovingIn)
            .served("4", "11:46", "11:47", "12:20")
            .rated(2, "12:21"),
        visit("V47", "12:20", Marriage).served("4", "12:21", "12:22", "12:55"),
        visit("V48", "13:10", MovingInKids).served("4", "13:15", "13:16", "14:20"),
        visit("V49", "14:10", MovingOut).no_show(
            "4",
            ["14:21", "14:23", "14:25"],
            ["14:50", "14:52", "14:54"],
        ),
        visit("V50", "14:15", MovingIn).served("4", "14:26", "14:27", "14:49"),
        visit("V51", "15:10", Birth).served("4", "15:11", "15:12", "15:50"),
        visit("V52", "16:30", MovingIn)
            .served("4", "16:35", "16:36", "17:05")
            .rated(5, "17:06"),
        // Counter 5.
        visit("V53", "16:40", MovingWithin).served("5", "16:45", "16:46", "17:00"),
        // Never called: closed when business day 2026-04-02 begins (03:00).
        visit("V54", "17:10", MovingIn).expires(),
        // Counters 6 and 7: certificates.
        visit("V55", "08:32", Certificates)
            .served("6", "08:35", "08:36", "08:41")
            .rated(5, "08:42"),
        visit("V56", "09:02", Shoumei).served("6", "09:05", "09:06", "09:10"),
        visit("V57", "10:35", Certificates).served("6", "10:36", "10:37", "10:44"),
        visit("V58", "13:55", Shoumei)
            .served("6", "14:00", "14:02", "14:06")
            .rated(3, "14:07"),
        visit("V59", "16:05", Certificates).served("7", "16:08", "16:09", "16:15"),
        // Counter 9: the bereavement desk (and counter 8: welfare).
        visit("V60", "09:35", Death)
            .served("9", "09:40", "09:42", "10:35")
            .transfer(queue("welfare"))
            .served("8", "10:40", "10:41", "11:05")
            .rated(4, "11:10"),
        visit("V61", "13:20", Death).served("9", "13:25", "13:26", "14:15"),
        // 00:30 on 2 April = 2026-04-01T15:30:00Z: still business day 1 April.
        visit("V62", "2026-04-02 00:30", MovingIn).served(
            "5",
            "2026-04-02 00:35",
            "2026-04-02 00:36",
            "2026-04-02 01:00",
        ),
    ]
}

/// A command at the end that begins business day 2026-04-02 and so closes V54.
const NEXT_MORNING: &str = "2026-04-02 08:00";

// ---------------------------------------------------------------------------------------------
// What the schedule says each visit must be (worked out from the schedule only)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct ExpStep {
    /// Queue id, or `counter:N` for a step sent to a named counter.
    key: String,
    counter: Option<String>,
    calls: u32,
    wait: i64,
    service: i64,
}

#[derive(Debug, Clone)]
struct Expect {
    name: &'static str,
    life_event: Option<&'static str>,
    priority: bool,
    arrival_local: NaiveDateTime,
    arrival: Timestamp,
    departure: Timestamp,
    outcome: TicketStatus,
    cancel_reason: Option<CancelReason>,
    satisfaction: Option<u8>,
    stay: i64,
    wait: i64,
    service: i64,
    steps: Vec<ExpStep>,
}

fn secs(from: &str, to: &str) -> i64 {
    (local(to) - local(from)).num_seconds()
}

fn expect(v: &VisitPlan) -> Expect {
    let arrival_local = local(v.arrive);
    // When the business day of the arrival ends: 03:00 the next local day.
    let day_end = business_day_of(arrival_local)
        .succ_opt()
        .unwrap()
        .and_hms_opt(3, 0, 0)
        .unwrap();
    let day_end = day_end.format("%Y-%m-%d %H:%M:%S").to_string();
    let mut steps = Vec::new();
    let mut enqueued = v.arrive.to_owned();
    let mut target = queue(v.plan.queue());
    let mut outcome = TicketStatus::Done;
    let mut cancel_reason = None;
    for s in &v.steps {
        let key = match &target {
            Target::Queue(q) => q.to_string(),
            Target::Counter(c) => format!("counter:{c}"),
        };
        let calls = s.calls.len() as u32 + if s.missed.is_some() { 2 } else { 0 };
        let (ended, wait, service) = match &s.end {
            End::Served { start, end, then } => {
                let answered = s.calls.last().expect("a served step was called");
                if let Some(t) = then {
                    target = t.clone();
                }
                (end.to_string(), secs(&enqueued, answered), secs(start, end))
            }
            End::NoShow(t) => {
                outcome = TicketStatus::NoShow;
                (t.to_string(), secs(&enqueued, t), 0)
            }
            End::Cancelled(t, reason) => {
                outcome = TicketStatus::Cancelled;
                cancel_reason = Some(*reason);
                (t.to_string(), secs(&enqueued, t), 0)
            }
            End::Expires => {
                outcome = TicketStatus::Cancelled;
                cancel_reason = Some(CancelReason::DayEnded);
                (day_end.clone(), secs(&enqueued, &day_end), 0)
            }
        };
        steps.push(ExpStep {
            key,
            counter: s.counter.map(str::to_owned),
            calls,
            wait,
            service,
        });
        enqueued = ended;
    }
    Expect {
        name: v.name,
        life_event: v.plan.life_event(),
        priority: v.priority,
        arrival_local,
        arrival: at(v.arrive),
        departure: at(&enqueued),
        outcome,
        cancel_reason,
        satisfaction: v.rating.map(|(s, _)| s),
        stay: secs(v.arrive, &enqueued),
        wait: steps.iter().map(|s| s.wait).sum(),
        service: steps.iter().map(|s| s.service).sum(),
        steps,
    }
}

// ---------------------------------------------------------------------------------------------
// Expected figures, computed the way the documentation describes them
// ---------------------------------------------------------------------------------------------

/// Mean and nearest-rank percentiles, in integer arithmetic: rank = ⌈p·n/100⌉ (at least 1).
fn stats(mut values: Vec<i64>) -> Stats {
    values.sort_unstable();
    let n = values.len() as i64;
    let pct = |p: i64| -> Option<f64> {
        if n == 0 {
            return None;
        }
        let rank = ((p * n + 99) / 100).max(1);
        Some(values[(rank - 1) as usize] as f64)
    };
    Stats {
        mean: (n > 0).then(|| values.iter().sum::<i64>() as f64 / n as f64),
        p50: pct(50),
        p90: pct(90),
        p95: pct(95),
        max: values.last().map(|&v| v as f64),
        target_mean: None,
    }
}

fn is_done(e: &Expect) -> bool {
    e.outcome == TicketStatus::Done
}

/// Figures over visits, with the given per-visit or per-step waits and services.
fn figures_with(vs: &[&Expect], wait: Vec<i64>, service: Vec<i64>) -> Figures {
    let done: Vec<&&Expect> = vs.iter().filter(|e| is_done(e)).collect();
    let answers: Vec<u8> = done.iter().filter_map(|e| e.satisfaction).collect();
    let top_two = answers.iter().filter(|&&s| s == 4 || s == 5).count();
    Figures {
        visits: done.len(),
        no_show: vs
            .iter()
            .filter(|e| e.outcome == TicketStatus::NoShow)
            .count(),
        cancelled: vs
            .iter()
            .filter(|e| e.outcome == TicketStatus::Cancelled)
            .count(),
        stay_s: stats(done.iter().map(|e| e.stay).collect()),
        wait_s: stats(wait),
        service_s: stats(service),
        satisfaction: kpi::Satisfaction {
            answers: answers.len(),
            top_two,
            share_pct: (!answers.is_empty()).then(|| top_two as f64 * 100.0 / answers.len() as f64),
            target_pct: None,
        },
    }
}

fn visit_figures(vs: &[&Expect], target: Option<&KpiTarget>) -> Figures {
    let done = || vs.iter().filter(|e| is_done(e));
    let mut f = figures_with(
        vs,
        done().map(|e| e.wait).collect(),
        done().map(|e| e.service).collect(),
    );
    if let Some(t) = target {
        f.stay_s.target_mean = t.stay_mean_min.map(|m| m * 60.0);
        f.satisfaction.target_pct = t.satisfaction_pct;
    }
    f
}

/// Groups keyed by something of the arrival, in the order the API lists them.
fn time_groups(
    vs: &[Expect],
    key: impl Fn(&Expect) -> String,
    order: impl Fn(&str) -> String,
    target: Option<&KpiTarget>,
) -> Vec<(String, Figures)> {
    let mut by: BTreeMap<String, (String, Vec<&Expect>)> = BTreeMap::new();
    for e in vs {
        let k = key(e);
        by.entry(order(&k))
            .or_insert_with(|| (k, Vec::new()))
            .1
            .push(e);
    }
    by.into_values()
        .map(|(k, es)| (k, visit_figures(&es, target)))
        .collect()
}

/// Per-step groups: a visit counts once in every group one of its steps went through; waits and
/// services are those of its steps there (completed visits only).
fn step_groups(vs: &[Expect], key: impl Fn(&ExpStep) -> Option<String>) -> Vec<(String, Figures)> {
    type Acc<'a> = (Vec<&'a Expect>, Vec<i64>, Vec<i64>);
    let mut by: BTreeMap<String, Acc<'_>> = BTreeMap::new();
    for e in vs {
        for s in &e.steps {
            let Some(k) = key(s) else { continue };
            let g = by.entry(k).or_default();
            if is_done(e) {
                g.1.push(s.wait);
                g.2.push(s.service);
            }
            if !g.0.iter().any(|x| x.name == e.name) {
                g.0.push(e);
            }
        }
    }
    by.into_iter()
        .map(|(k, (es, w, s))| (k, figures_with(&es, w, s)))
        .collect()
}

fn expected_groups(
    vs: &[Expect],
    g: GroupBy,
    target: Option<&KpiTarget>,
) -> Vec<(String, Figures)> {
    match g {
        GroupBy::Day => time_groups(
            vs,
            |e| e.arrival_local.date().to_string(),
            str::to_owned,
            target,
        ),
        GroupBy::Hour => time_groups(
            vs,
            |e| format!("{:02}", e.arrival_local.hour()),
            str::to_owned,
            target,
        ),
        GroupBy::Weekday => time_groups(
            vs,
            |e| weekday_of(e.arrival_local.date()).to_owned(),
            |k| format!("{}", WEEKDAYS.iter().position(|w| *w == k).unwrap()),
            target,
        ),
        GroupBy::Counter => step_groups(vs, |s| s.counter.clone()),
        GroupBy::Queue => step_groups(vs, |s| Some(s.key.clone())),
    }
}

// ---------------------------------------------------------------------------------------------
// Comparisons with readable failures
// ---------------------------------------------------------------------------------------------

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        _ => false,
    }
}

fn check_stats(what: &str, actual: &Stats, expected: &Stats) {
    for (field, a, e) in [
        ("mean", actual.mean, expected.mean),
        ("p50", actual.p50, expected.p50),
        ("p90", actual.p90, expected.p90),
        ("p95", actual.p95, expected.p95),
        ("max", actual.max, expected.max),
        ("target_mean", actual.target_mean, expected.target_mean),
    ] {
        assert!(
            close(a, e),
            "{what}.{field}: got {a:?}, expected {e:?}\n  got {actual:?}\n  expected {expected:?}"
        );
    }
}

fn check_figures(what: &str, actual: &Figures, expected: &Figures) {
    assert_eq!(actual.visits, expected.visits, "{what}: visits");
    assert_eq!(actual.no_show, expected.no_show, "{what}: no_show");
    assert_eq!(actual.cancelled, expected.cancelled, "{what}: cancelled");
    check_stats(&format!("{what}: stay_s"), &actual.stay_s, &expected.stay_s);
    check_stats(&format!("{what}: wait_s"), &actual.wait_s, &expected.wait_s);
    check_stats(
        &format!("{what}: service_s"),
        &actual.service_s,
        &expected.service_s,
    );
    let (a, e) = (&actual.satisfaction, &expected.satisfaction);
    assert_eq!(a.answers, e.answers, "{what}: satisfaction.answers");
    assert_eq!(a.top_two, e.top_two, "{what}: satisfaction.top_two");
    assert!(
        close(a.share_pct, e.share_pct),
        "{what}: satisfaction.share_pct {:?} vs {:?}",
        a.share_pct,
        e.share_pct
    );
    assert_eq!(
        a.target_pct, e.target_pct,
        "{what}: satisfaction.target_pct"
    );
}

fn check_groups(what: &str, actual: &Option<Vec<kpi::Group>>, expected: &[(String, Figures)]) {
    let actual = actual
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no groups"));
    let keys: Vec<&str> = actual.iter().map(|g| g.key.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, want, "{what}: group keys");
    for (g, (k, f)) in actual.iter().zip(expected) {
        check_figures(&format!("{what} [{k}]"), &g.figures, f);
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the schedule
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Act {
    Issue(usize),
    Call {
        visit: usize,
        counter: &'static str,
        next: bool,
    },
    Recall(&'static str),
    Start(&'static str),
    NoShow(&'static str),
    Complete(&'static str, Option<Target>),
    Cancel(usize, CancelReason),
    Rate(usize, u8),
    StartDay,
}

/// Every action of the schedule, in time order (ties in the order written).
fn timeline(visits: &[VisitPlan]) -> Vec<(Timestamp, Act)> {
    let mut acts: Vec<(Timestamp, usize, Act)> = Vec::new();
    let mut push = |t: &str, a: Act| {
        let n = acts.len();
        acts.push((at(t), n, a));
    };
    for (i, v) in visits.iter().enumerate() {
        push(v.arrive, Act::Issue(i));
        for s in &v.steps {
            let counter = s.counter.unwrap_or("");
            if let Some([call, recall, no_show]) = s.missed {
                push(
                    call,
                    Act::Call {
                        visit: i,
                        counter,
                        next: false,
                    },
                );
                push(recall, Act::Recall(counter));
                push(no_show, Act::NoShow(counter));
            }
            for (k, call) in s.calls.iter().enumerate() {
                if k == 0 {
                    push(
                        call,
                        Act::Call {
                            visit: i,
                            counter,
                            next: s.call_next,
                        },
                    );
                } else {
                    push(call, Act::Recall(counter));
                }
            }
            match &s.end {
                End::Served { start, end, then } => {
                    push(start, Act::Start(counter));
                    push(end, Act::Complete(counter, then.clone()));
                }
                End::NoShow(t) => push(t, Act::NoShow(counter)),
                End::Cancelled(t, reason) => push(t, Act::Cancel(i, *reason)),
                End::Expires => {}
            }
        }
        if let Some((score, t)) = v.rating {
            push(t, Act::Rate(i, score));
        }
    }
    push(NEXT_MORNING, Act::StartDay);
    acts.sort_by_key(|(t, n, _)| (*t, *n));
    acts.into_iter().map(|(t, _, a)| (t, a)).collect()
}

fn ticket_id(v: &VisitPlan) -> TicketId {
    TicketId::try_from(v.name.to_owned()).unwrap()
}

fn token(v: &VisitPlan) -> String {
    format!("tok-{}-0123456789abcdef", v.name)
}

fn command(visits: &[VisitPlan], numbers: &HashMap<usize, TicketNumber>, act: &Act) -> Command {
    let counter = |c: &str| c.parse().unwrap();
    match act {
        Act::Issue(i) => Command::Issue(IssueCommand {
            id: ticket_id(&visits[*i]),
            token: token(&visits[*i]),
            plan: visits[*i].plan.request(),
            priority: visits[*i].priority,
            dispenser: Some("kiosk-1".parse().unwrap()),
            lang: Some("ja".into()),
            idempotency_key: None,
        }),
        Act::Call {
            counter: c,
            next: true,
            ..
        } => Command::CallNext {
            counter: counter(c),
        },
        Act::Call {
            visit, counter: c, ..
        } => Command::Call {
            counter: counter(c),
            number: numbers[visit].clone(),
        },
        Act::Recall(c) => Command::Recall {
            counter: counter(c),
        },
        Act::Start(c) => Command::Start {
            counter: counter(c),
        },
        Act::NoShow(c) => Command::NoShow {
            counter: counter(c),
        },
        Act::Complete(c, then) => Command::Complete {
            counter: counter(c),
            transfer_to: then.clone(),
        },
        Act::Cancel(i, reason) => Command::Cancel {
            ticket: match reason {
                CancelReason::Resident => TicketSelector::Token(token(&visits[*i])),
                _ => TicketSelector::Number(numbers[i].clone()),
            },
            reason: *reason,
        },
        Act::Rate(i, score) => Command::Rate {
            token: token(&visits[*i]),
            score: *score,
        },
        Act::StartDay => Command::StartDay,
    }
}

/// The pure core with virtual time, keeping the latest visit record of every ticket.
struct Sim {
    state: SiteState,
    records: BTreeMap<TicketId, VisitRecord>,
    numbers: HashMap<usize, TicketNumber>,
    /// How many records each ticket produced (ended once, plus once per rating).
    emitted: HashMap<TicketId, usize>,
}

impl Sim {
    fn run(config: Arc<SiteConfig>, visits: &[VisitPlan]) -> Sim {
        let mut sim = Sim {
            state: SiteState::new(config.clone()),
            records: BTreeMap::new(),
            numbers: HashMap::new(),
            emitted: HashMap::new(),
        };
        for (t, act) in timeline(visits) {
            let cmd = command(visits, &sim.numbers, &act);
            let events = decide(&sim.state, &cmd, t).unwrap_or_else(|e| {
                panic!(
                    "at {} (Tokyo) {act:?}: {cmd:?} refused: {e}",
                    t.with_timezone(&jst())
                )
            });
            for event in &events {
                match (event, &act) {
                    (Event::TicketIssued { number, .. }, Act::Issue(i)) => {
                        sim.numbers.insert(*i, number.clone());
                    }
                    (
                        Event::TicketCalled { ticket, .. },
                        Act::Call {
                            visit, next: true, ..
                        },
                    ) => assert_eq!(
                        ticket,
                        &ticket_id(&visits[*visit]),
                        "call-next should pick the priority ticket {}",
                        visits[*visit].name
                    ),
                    _ => {}
                }
                for ticket in sim.state.apply(event) {
                    let record = VisitRecord::from_ticket(&config, &ticket)
                        .expect("apply hands over ended visits only");
                    *sim.emitted.entry(record.ticket.clone()).or_default() += 1;
                    sim.records.insert(record.ticket.clone(), record);
                }
            }
        }
        sim
    }
}

fn check_record(e: &Expect, r: &VisitRecord) {
    let w = e.name;
    assert_eq!(r.ticket.as_str(), w);
    assert_eq!(r.site, "chuo", "{w}");
    assert_eq!(r.outcome, e.outcome, "{w}: outcome");
    assert_eq!(r.cancel_reason, e.cancel_reason, "{w}: cancel_reason");
    assert_eq!(r.arrival, e.arrival, "{w}: arrival");
    assert_eq!(r.departure, e.departure, "{w}: departure");
    assert_eq!(r.day, business_day_of(e.arrival_local), "{w}: business day");
    assert_eq!(
        r.life_event.as_ref().map(|l| l.as_str()),
        e.life_event,
        "{w}: life event"
    );
    assert_eq!(r.priority, e.priority, "{w}: priority");
    assert_eq!(r.satisfaction, e.satisfaction, "{w}: satisfaction");
    assert_eq!(r.stay_s, e.stay as f64, "{w}: stay");
    assert_eq!(r.wait_s, e.wait as f64, "{w}: wait");
    assert_eq!(r.service_s, e.service as f64, "{w}: service");
    assert_eq!(r.steps.len(), e.steps.len(), "{w}: steps");
    for (i, (rs, es)) in r.steps.iter().zip(&e.steps).enumerate() {
        let key = match &rs.target {
            Target::Queue(q) => q.to_string(),
            Target::Counter(c) => format!("counter:{c}"),
        };
        assert_eq!(key, es.key, "{w} step {i}: target");
        assert_eq!(
            rs.counter.as_ref().map(|c| c.to_string()),
            es.counter,
            "{w} step {i}: counter"
        );
        assert_eq!(rs.calls, es.calls, "{w} step {i}: calls");
        assert_eq!(rs.wait_s, es.wait as f64, "{w} step {i}: wait");
        assert_eq!(rs.service_s, es.service as f64, "{w} step {i}: service");
    }
}

fn target<'a>(
    config: &'a Config,
    fy: i32,
    site: Option<&str>,
    life_event: Option<&str>,
) -> &'a KpiTarget {
    config
        .kpi_targets
        .iter()
        .find(|t| {
            t.fiscal_year == fy
                && t.site.as_deref() == site
                && t.life_event.as_deref() == life_event
        })
        .unwrap_or_else(|| panic!("demo.toml has no target for FY{fy} {site:?} {life_event:?}"))
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn the_schedule_is_what_it_claims() {
    let visits = schedule();
    assert!((40..=80).contains(&visits.len()), "{}", visits.len());
    let expected: Vec<Expect> = visits.iter().map(expect).collect();
    let count = |o: TicketStatus| expected.iter().filter(|e| e.outcome == o).count();
    // Written down by hand from the schedule above.
    assert_eq!(visits.len(), 65);
    assert_eq!(count(TicketStatus::Done), 58);
    assert_eq!(count(TicketStatus::NoShow), 2);
    assert_eq!(count(TicketStatus::Cancelled), 5);
    assert_eq!(expected.iter().filter(|e| e.steps.len() == 2).count(), 6);
    assert_eq!(visits.iter().filter(|v| v.rating.is_some()).count(), 19);
    assert_eq!(visits.iter().filter(|v| v.priority).count(), 2);
    // The time edges.
    assert_eq!(
        at("2026-04-02 00:30"),
        Utc.with_ymd_and_hms(2026, 4, 1, 15, 30, 0).unwrap()
    );
    assert_eq!(
        at("2026-04-01 00:10"),
        Utc.with_ymd_and_hms(2026, 3, 31, 15, 10, 0).unwrap()
    );
    // V01: 08:30 arrival, 08:32 call, 08:33:10–09:21 at counter 1, 09:21–09:30 waiting for
    // welfare, 09:31–09:55:30 at counter 8.
    let v01 = &expected[3];
    assert_eq!(v01.name, "V01");
    assert_eq!(v01.stay, 85 * 60 + 30);
    assert_eq!(v01.wait, 2 * 60 + 9 * 60);
    assert_eq!(v01.service, 47 * 60 + 50 + 24 * 60 + 30);
    // V24 missed its first call round: its wait runs from arrival to the answered call.
    let v24 = expected.iter().find(|e| e.name == "V24").unwrap();
    assert_eq!(v24.wait, 70 * 60);
    assert_eq!(v24.steps[0].calls, 3);
}

#[test]
fn a_whole_day_through_the_core_gives_the_kpi_of_its_schedule() {
    let config = config();
    let site = chuo(&config);
    let visits = schedule();
    let sim = Sim::run(site.clone(), &visits);
    let expected: Vec<Expect> = visits.iter().map(expect).collect();

    // Every visit ended exactly as scheduled; nothing is left open.
    assert!(
        sim.state.tickets.values().all(|t| t.status.is_terminal()),
        "open tickets left"
    );
    assert_eq!(sim.records.len(), visits.len());
    for e in &expected {
        let r = sim
            .records
            .get(&TicketId::try_from(e.name.to_owned()).unwrap())
            .unwrap_or_else(|| panic!("no record for {}", e.name));
        check_record(e, r);
        // A rating hands the record over once more; nothing else does.
        let times = sim.emitted[&r.ticket];
        assert_eq!(
            times,
            1 + usize::from(e.satisfaction.is_some()),
            "{}",
            e.name
        );
    }
    // Numbers as the demo queues give them.
    let number = |name: &str| {
        let i = visits.iter().position(|v| v.name == name).unwrap();
        sim.numbers[&i].0.clone()
    };
    assert_eq!(number("E0"), "C001");
    assert_eq!(number("E1"), "1");
    assert_eq!(number("V01"), "1", "numbers restart with the business day");
    assert_eq!(number("V55"), "C001");
    assert_eq!(number("V60"), "K001");

    // The whole data set, and every grouping.
    let records: Vec<VisitRecord> = sim.records.values().cloned().collect();
    let all: Vec<&Expect> = expected.iter().collect();
    let report = kpi::report(&records, None, TOKYO, None, None);
    check_figures("all", &report.figures, &visit_figures(&all, None));
    assert_eq!(report.figures.visits, 58);
    assert_eq!(report.figures.no_show, 2);
    assert_eq!(report.figures.cancelled, 5);
    assert_eq!(report.figures.satisfaction.answers, 19);
    assert_eq!(report.figures.satisfaction.top_two, 14);
    // The first visit (22:30 on 31 March) is in fiscal year 2025.
    assert_eq!(report.fiscal_year, Some(2025));
    assert_eq!(report.visits_target, None);
    assert!(report.groups.is_none());
    for g in [
        GroupBy::Day,
        GroupBy::Hour,
        GroupBy::Weekday,
        GroupBy::Counter,
        GroupBy::Queue,
    ] {
        let r = kpi::report(&records, Some(g), TOKYO, None, None);
        check_figures(&format!("{g:?}"), &r.figures, &report.figures);
        check_groups(
            &format!("group_by {g:?}"),
            &r.groups,
            &expected_groups(&expected, g, None),
        );
    }

    // Fiscal year 2026, moving in from outside the city, with the chuo target: what the API
    // does for `?from=2026-04-01&life_event=moving_in`.
    let fy2026_start = at("2026-04-01 00:00");
    let t2026 = target(&config, 2026, Some("chuo"), Some("moving_in"));
    assert_eq!(t2026.stay_mean_min, Some(99.0));
    let slice: Vec<VisitRecord> = records
        .iter()
        .filter(|r| {
            r.arrival >= fy2026_start
                && r.life_event.as_ref().map(|l| l.as_str()) == Some("moving_in")
        })
        .cloned()
        .collect();
    let exp_slice: Vec<Expect> = expected
        .iter()
        .filter(|e| e.arrival >= fy2026_start && e.life_event == Some("moving_in"))
        .cloned()
        .collect();
    assert!(
        exp_slice.iter().any(|e| e.name == "E2"),
        "the 00:10 visit on 1 April counts in fiscal year 2026"
    );
    assert!(!exp_slice.iter().any(|e| e.name == "E1"));
    let r = kpi::report(&slice, Some(GroupBy::Hour), TOKYO, Some(2026), Some(t2026));
    assert_eq!(r.fiscal_year, Some(2026));
    assert_eq!(r.figures.stay_s.target_mean, Some(99.0 * 60.0));
    assert_eq!(r.figures.satisfaction.target_pct, None);
    assert_eq!(r.visits_target, None);
    let refs: Vec<&Expect> = exp_slice.iter().collect();
    check_figures(
        "FY2026 moving_in",
        &r.figures,
        &visit_figures(&refs, Some(t2026)),
    );
    check_groups(
        "FY2026 moving_in by hour",
        &r.groups,
        &expected_groups(&exp_slice, GroupBy::Hour, Some(t2026)),
    );
    // Without `from`, the fiscal year is that of the first visit: the 00:10 one, whose local
    // date is 1 April (its business day is still 31 March).
    let derived = kpi::report(&slice, None, TOKYO, None, Some(t2026));
    assert_eq!(derived.fiscal_year, Some(2026));
    assert_eq!(slice[0].ticket.as_str(), "E2");
    assert_eq!(slice[0].day, date("2026-03-31"));

    // Fiscal year 2025 moving_in: only the 23:50 visit, with the FY2025 target (119 min).
    let t2025 = target(&config, 2025, Some("chuo"), Some("moving_in"));
    let slice: Vec<VisitRecord> = records
        .iter()
        .filter(|r| {
            r.arrival < fy2026_start
                && r.life_event.as_ref().map(|l| l.as_str()) == Some("moving_in")
        })
        .cloned()
        .collect();
    let e1 = expected.iter().find(|e| e.name == "E1").unwrap();
    let r = kpi::report(&slice, None, TOKYO, None, Some(t2025));
    assert_eq!(r.fiscal_year, Some(2025));
    assert_eq!(r.figures.stay_s.target_mean, Some(119.0 * 60.0));
    check_figures(
        "FY2025 moving_in",
        &r.figures,
        &visit_figures(&[e1], Some(t2025)),
    );

    // City-wide targets (no site, no life event): visits and satisfaction of FY2026.
    let city = target(&config, 2026, None, None);
    let slice: Vec<VisitRecord> = records
        .iter()
        .filter(|r| r.arrival >= fy2026_start)
        .cloned()
        .collect();
    let exp_slice: Vec<&Expect> = expected
        .iter()
        .filter(|e| e.arrival >= fy2026_start)
        .collect();
    let r = kpi::report(&slice, None, TOKYO, Some(2026), Some(city));
    assert_eq!(r.visits_target, Some(62_600));
    assert_eq!(r.figures.satisfaction.target_pct, Some(82.0));
    assert_eq!(r.figures.stay_s.target_mean, None);
    check_figures(
        "FY2026 city",
        &r.figures,
        &visit_figures(&exp_slice, Some(city)),
    );
}

#[test]
fn midnight_visits_group_by_their_local_calendar_date_and_hour() {
    let config = config();
    let visits = schedule();
    let sim = Sim::run(chuo(&config), &visits);
    let record = |name: &str| sim.records[&TicketId::try_from(name.to_owned()).unwrap()].clone();
    let (e1, e2, v62) = (record("E1"), record("E2"), record("V62"));

    // 23:50 on 31 March: fiscal year 2025. 00:10 on 1 April: fiscal year 2026, though both are
    // in business day 31 March (numbers restart at 03:00).
    let local_date = |r: &VisitRecord| r.arrival.with_timezone(&TOKYO).date_naive();
    assert_eq!(local_date(&e1), date("2026-03-31"));
    assert_eq!(local_date(&e2), date("2026-04-01"));
    assert_eq!(kpi::fiscal_year(local_date(&e1)), 2025);
    assert_eq!(kpi::fiscal_year(local_date(&e2)), 2026);
    assert_eq!(e1.day, date("2026-03-31"));
    assert_eq!(e2.day, date("2026-03-31"));
    assert_eq!(kpi::fiscal_year(date("2027-03-31")), 2026);
    assert_eq!(kpi::fiscal_year(date("2027-04-01")), 2027);

    // 2026-04-01T15:30:00Z is 00:30 on 2 April in Tokyo: day 2026-04-02, hour "00", Thursday;
    // its business day is still 1 April.
    assert_eq!(
        v62.arrival,
        Utc.with_ymd_and_hms(2026, 4, 1, 15, 30, 0).unwrap()
    );
    assert_eq!(v62.day, date("2026-04-01"));
    let key_of = |g: GroupBy, r: &VisitRecord| -> String {
        let report = kpi::report(std::slice::from_ref(r), Some(g), TOKYO, None, None);
        let groups = report.groups.unwrap();
        assert_eq!(groups.len(), 1);
        groups[0].key.clone()
    };
    assert_eq!(key_of(GroupBy::Day, &v62), "2026-04-02");
    assert_eq!(key_of(GroupBy::Hour, &v62), "00");
    assert_eq!(key_of(GroupBy::Weekday, &v62), "thu");
    // group_by=day is the local calendar date of arrival, not the business day.
    assert_eq!(key_of(GroupBy::Day, &e2), "2026-04-01");
    assert_eq!(key_of(GroupBy::Hour, &e2), "00");
    assert_eq!(key_of(GroupBy::Weekday, &e2), "wed");
    assert_eq!(key_of(GroupBy::Day, &e1), "2026-03-31");
    assert_eq!(key_of(GroupBy::Hour, &e1), "23");
    assert_eq!(key_of(GroupBy::Weekday, &e1), "tue");
    // The fiscal year a report derives is that of the first visit's local date.
    assert_eq!(
        kpi::report(&[e2.clone(), v62.clone()], None, TOKYO, None, None).fiscal_year,
        Some(2026)
    );
    assert_eq!(
        kpi::report(&[e1, e2], None, TOKYO, None, None).fiscal_year,
        Some(2025)
    );
}

#[test]
fn ratings_are_refused_unless_the_visit_is_done_and_unrated() {
    let config = config();
    let visits = schedule();
    // Stop just before the next morning: the day's tickets are still known.
    let mut sim = Sim {
        state: SiteState::new(chuo(&config)),
        records: BTreeMap::new(),
        numbers: HashMap::new(),
        emitted: HashMap::new(),
    };
    let mut last = at("08:00");
    for (t, act) in timeline(&visits) {
        if matches!(act, Act::StartDay) {
            break;
        }
        let cmd = command(&visits, &sim.numbers, &act);
        for event in decide(&sim.state, &cmd, t).unwrap() {
            if let Event::TicketIssued { number, .. } = &event {
                if let Act::Issue(i) = act {
                    sim.numbers.insert(i, number.clone());
                }
            }
            sim.state.apply(&event);
        }
        last = t;
    }
    let rate = |name: &str, score: u8| {
        let v = visits.iter().find(|v| v.name == name).unwrap();
        decide(
            &sim.state,
            &Command::Rate {
                token: token(v),
                score,
            },
            last,
        )
    };
    use madoguchi::core::DomainError;
    assert!(matches!(
        rate("V20", 5),
        Err(DomainError::WrongStatus { .. })
    ));
    assert!(matches!(
        rate("V31", 5),
        Err(DomainError::WrongStatus { .. })
    ));
    assert!(matches!(
        rate("V54", 5),
        Err(DomainError::WrongStatus { .. })
    ));
    assert_eq!(rate("V01", 4), Err(DomainError::AlreadyRated));
    assert_eq!(rate("V03", 0), Err(DomainError::BadScore(0)));
    assert!(rate("V03", 4).is_ok());
}

// ---------------------------------------------------------------------------------------------
// The same day through the site actor and the HTTP router, in process, with a virtual clock
// ---------------------------------------------------------------------------------------------

mod http {
    use super::*;
    use axum::body::Body;
    use axum::http::{header, Request};
    use madoguchi::http::{router, AppState};
    use madoguchi::log::{EventLog, SqliteLog};
    use madoguchi::metrics::Metrics;
    use madoguchi::printers::PrinterHub;
    use madoguchi::projection::ProjectionStore;
    use madoguchi::site::{self, SiteDeps};
    use serde_json::Value;
    use tower::ServiceExt;

    pub(super) struct Served {
        pub(super) app: axum::Router,
        _dir: tempfile::TempDir,
    }

    impl Served {
        pub(super) async fn get(&self, path: &str) -> (u16, Vec<u8>) {
            let request = Request::get(path)
                .header(header::AUTHORIZATION, "Bearer demo-analyst")
                .body(Body::empty())
                .unwrap();
            let response = self.app.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, body.to_vec())
        }

        pub(super) async fn json(&self, path: &str) -> Value {
            let (status, body) = self.get(path).await;
            let value: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status, 200, "{path}: {value}");
            value
        }
    }

    /// Runs the schedule through a real site actor (event log and visit store in a temporary
    /// SQLite file) whose clock is the schedule's.
    pub(super) async fn serve_the_day() -> Served {
        let config = config();
        let visits = schedule();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("madoguchi.db");
        let now = Arc::new(AtomicI64::new(at("2026-03-31 22:00").timestamp_millis()));
        let clock_now = now.clone();
        let clock: site::Clock = Arc::new(move || {
            Utc.timestamp_millis_opt(clock_now.load(Ordering::SeqCst))
                .unwrap()
        });
        let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(&db).unwrap());
        let deps = SiteDeps {
            log,
            store: ProjectionStore::open(&db).unwrap(),
            printers: PrinterHub::default(),
            metrics: Metrics::new(),
            clock,
            tickets: Default::default(),
            snapshots: None,
            runtime: None,
        };
        let (handle, _task) = site::start(chuo(&config), deps.clone()).await.unwrap();
        let mut numbers = HashMap::new();
        for (t, act) in timeline(&visits) {
            now.store(t.timestamp_millis(), Ordering::SeqCst);
            let cmd = command(&visits, &numbers, &act);
            let applied = handle
                .command(cmd.clone())
                .await
                .unwrap_or_else(|e| panic!("{act:?}: {cmd:?} refused: {e}"));
            match act {
                Act::Issue(i) => {
                    numbers.insert(i, applied.ticket.unwrap().number);
                }
                Act::Call {
                    visit, next: true, ..
                } => assert_eq!(applied.ticket.unwrap().id, ticket_id(&visits[visit])),
                _ => {}
            }
        }
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let state = AppState::new(config, vec![handle], deps, stop_rx);
        Served {
            app: router(state),
            _dir: dir,
        }
    }

    pub(super) fn csv_rows(body: &[u8]) -> Vec<HashMap<String, String>> {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").expect("a BOM");
        let mut reader = csv::Reader::from_reader(body);
        let headers = reader.headers().unwrap().clone();
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                headers
                    .iter()
                    .zip(r.iter())
                    .map(|(h, v)| (h.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect()
    }
}

fn count_where(expected: &[Expect], f: impl Fn(&Expect) -> bool) -> usize {
    expected.iter().filter(|e| is_done(e) && f(e)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kpi_endpoint_puts_the_0010_visit_in_fiscal_year_2026() {
    let served = http::serve_the_day().await;
    let expected: Vec<Expect> = schedule().iter().map(expect).collect();
    let fy2026_start = at("2026-04-01 00:00");
    let moving_in = |e: &Expect| e.life_event == Some("moving_in");

    let r = served
        .json("/api/v1/sites/chuo/kpi?from=2026-04-01&life_event=moving_in")
        .await;
    assert_eq!(r["fiscal_year"], 2026, "{r}");
    assert_eq!(r["stay_s"]["target_mean"], 99.0 * 60.0, "{r}");
    assert_eq!(
        r["visits"],
        count_where(&expected, |e| moving_in(e) && e.arrival >= fy2026_start),
        "{r}"
    );
    let exp: Vec<&Expect> = expected
        .iter()
        .filter(|e| moving_in(e) && e.arrival >= fy2026_start)
        .collect();
    let f = visit_figures(&exp, None);
    assert_eq!(r["stay_s"]["mean"].as_f64(), f.stay_s.mean, "{r}");
    assert_eq!(r["stay_s"]["p90"].as_f64(), f.stay_s.p90, "{r}");

    let r = served
        .json("/api/v1/sites/chuo/kpi?to=2026-03-31&life_event=moving_in")
        .await;
    assert_eq!(r["fiscal_year"], 2025, "{r}");
    assert_eq!(r["stay_s"]["target_mean"], 119.0 * 60.0, "{r}");
    assert_eq!(r["visits"], 1, "only the 23:50 visit: {r}");

    let r = served.json("/api/v1/sites/chuo/kpi?group_by=day").await;
    let groups: Vec<(String, u64)> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_owned(),
                g["visits"].as_u64().unwrap(),
            )
        })
        .collect();
    let on = |d: &str| count_where(&expected, |e| e.arrival_local.date() == date(d)) as u64;
    assert_eq!(
        groups,
        [
            ("2026-03-31".to_owned(), on("2026-03-31")),
            ("2026-04-01".to_owned(), on("2026-04-01")),
            ("2026-04-02".to_owned(), on("2026-04-02")),
        ],
        "{r}"
    );
    assert_eq!(on("2026-03-31"), 2);
    assert_eq!(on("2026-04-02"), 1);
}

/// The CSV's `fiscal_year` column must agree with the KPI endpoint, which counts a visit in the
/// fiscal year of its local arrival date: the 00:10 visit on 1 April 2026 is in FY2026 even
/// though its business day (numbers restart at 03:00) is 31 March.
#[tokio::test(flavor = "multi_thread")]
async fn csv_fiscal_year_is_that_of_the_local_arrival_date() {
    let served = http::serve_the_day().await;
    let (status, body) = served.get("/api/v1/sites/chuo/visits.csv").await;
    assert_eq!(status, 200);
    let rows = http::csv_rows(&body);
    assert_eq!(rows.len(), schedule().len());
    let row = |id: &str| rows.iter().find(|r| r["ticket_id"] == id).unwrap();
    let e1 = row("E1");
    assert_eq!(e1["arrival"], "2026-03-31 23:50:00");
    assert_eq!(e1["business_day"], "2026-03-31");
    assert_eq!(e1["fiscal_year"], "2025");
    let v62 = row("V62");
    assert_eq!(v62["arrival"], "2026-04-02 00:30:00");
    assert_eq!(v62["business_day"], "2026-04-01");
    assert_eq!(v62["fiscal_year"], "2026");
    let e2 = row("E2");
    assert_eq!(e2["arrival"], "2026-04-01 00:10:00");
    assert_eq!(e2["business_day"], "2026-03-31");
    // The FY2026 KPI (`from=2026-04-01`) counts E2; so must the CSV's FY2026 rows.
    let kpi = served
        .json("/api/v1/sites/chuo/kpi?from=2026-04-01&to=2027-03-31")
        .await;
    let fy2026_done = rows
        .iter()
        .filter(|r| r["fiscal_year"] == "2026" && r["outcome"] == "done")
        .count();
    assert_eq!(
        e2["fiscal_year"], "2026",
        "the 00:10 visit of 1 April 2026 is in FY2026 (KPI endpoint: fiscal_year {}, {} visits; \
         CSV rows with fiscal_year 2026: {fy2026_done})",
        kpi["fiscal_year"], kpi["visits"]
    );
    assert_eq!(kpi["visits"], fy2026_done);
}
