//! Reservations (来庁予約) in the pure core, with virtual time: the slots of a day follow the
//! reception hours, a slot takes its capacity and no more, moving and cancelling free a place,
//! the floor's capacity wins, a past booking is gone at the next day's start, and a snapshot
//! keeps what is booked.

use std::path::Path;
use std::sync::Arc;

use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
use madoguchi::config::{Config, SiteConfig};
use madoguchi::core::{
    decide, Command, DomainError, Event, PlanRequest, QueueId, SiteSnapshot, SiteState, Timestamp,
};

const SITE: &str = r#"
timezone = "Asia/Tokyo"
day_reset = "03:00"

[[procedures]]
code = "move"
name = { ja = "転入", en = "Moving in" }
service_min = 10

[[procedures]]
code = "cert"
name = { ja = "証明", en = "Certificate" }
service_min = 5

[[sites]]
id = "ward"
name = { ja = "区役所", en = "Ward office" }

[sites.reservations]
queues = ["onestop"]
slot_min = 30
booked_share = 0.5
horizon_days = 14

[[sites.queues]]
id = "onestop"
name = { ja = "ワンストップ", en = "One-stop" }
prefix = "A"
procedures = ["move"]

[sites.queues.hours]
weekdays = ["08:30-12:00", "13:00-17:15"]
last_reception_min = 15

[[sites.queues]]
id = "certs"
name = { ja = "証明", en = "Certificates" }
prefix = "C"
procedures = ["cert"]

[[sites.counters]]
id = "1"
name = { ja = "1番", en = "No. 1" }
queues = ["onestop", "certs"]
state = "open"

[[sites.counters]]
id = "2"
name = { ja = "2番", en = "No. 2" }
queues = ["onestop"]
state = "open"
"#;

fn config() -> Arc<SiteConfig> {
    let config = Config::parse(Path::new("reservations.toml"), SITE, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    config.site(&"ward".parse().unwrap()).unwrap().clone()
}

fn jst(y: i32, m: u32, d: u32, h: u32, mi: u32) -> Timestamp {
    FixedOffset::east_opt(9 * 3600)
        .unwrap()
        .with_ymd_and_hms(y, m, d, h, mi, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

struct Site {
    state: SiteState,
}

impl Site {
    fn run(&mut self, command: Command, at: Timestamp) -> Result<Vec<Event>, DomainError> {
        let events = decide(&self.state, &command, at)?;
        for e in &events {
            self.state.apply(e);
        }
        Ok(events)
    }

    fn reserve(&mut self, code: &str, slot: Timestamp, at: Timestamp) -> Result<(), DomainError> {
        self.run(
            Command::Reserve {
                code: code.to_owned(),
                plan: PlanRequest::Procedures(vec!["move".parse().unwrap()]),
                slot_start: slot,
            },
            at,
        )
        .map(|_| ())
    }
}

#[test]
fn slots_tile_the_reception_periods_of_a_bookable_queue() {
    let config = config();
    let onestop = config.queue(&"onestop".parse().unwrap()).unwrap();
    // Tuesday 2027-01-12: 08:30–12:00 (last 11:45) and 13:00–17:15 (last 17:00), 30 minutes.
    let slots = config.slots(onestop, date(2027, 1, 12));
    assert_eq!(slots.len(), 6 + 8, "{slots:?}");
    assert_eq!(slots[0].start, jst(2027, 1, 12, 8, 30));
    assert_eq!(slots[5].end, jst(2027, 1, 12, 11, 30));
    assert_eq!(slots[6].start, jst(2027, 1, 12, 13, 0));
    assert_eq!(slots[13].end, jst(2027, 1, 12, 17, 0));
    // None on a Sunday or a holiday (成人の日), none for a queue that takes no bookings.
    assert!(config.slots(onestop, date(2027, 1, 10)).is_empty());
    assert!(config.slots(onestop, date(2027, 1, 11)).is_empty());
    let certs = config.queue(&"certs".parse().unwrap()).unwrap();
    assert!(config.slots(certs, date(2027, 1, 12)).is_empty());
    // Half of two counters' 30 minutes over a 10-minute service: 3 a slot.
    assert_eq!(config.slot_capacity(onestop), 3);
}

#[test]
fn a_slot_takes_its_capacity_and_moving_or_cancelling_frees_a_place() {
    let mut site = Site {
        state: SiteState::new(config()),
    };
    let now = jst(2027, 1, 11, 20, 0);
    let slot = jst(2027, 1, 12, 9, 0);
    for code in ["AAAAAAAA", "CCCCCCCC", "DDDDDDDD"] {
        site.reserve(code, slot, now).unwrap();
    }
    let onestop: QueueId = "onestop".parse().unwrap();
    assert_eq!(site.state.slot_booked(&onestop, slot), 3);
    assert_eq!(
        site.reserve("EEEEEEEE", slot, now),
        Err(DomainError::SlotFull(slot))
    );
    // The same code again, a code of the wrong shape: refused.
    assert_eq!(
        site.reserve("AAAAAAAA", jst(2027, 1, 12, 9, 30), now),
        Err(DomainError::CodeTaken)
    );
    assert_eq!(
        site.reserve("aaaa0000", jst(2027, 1, 12, 9, 30), now),
        Err(DomainError::CodeTaken)
    );
    // Not a slot, past, beyond the horizon, a queue without bookings.
    for (start, what) in [
        (jst(2027, 1, 12, 9, 10), "not on the slot grid"),
        (jst(2027, 1, 12, 12, 0), "over lunch"),
        (jst(2027, 1, 11, 19, 30), "past"),
        (jst(2027, 1, 26, 9, 0), "beyond 14 days"),
    ] {
        assert!(
            matches!(
                site.reserve("FFFFFFFF", start, now),
                Err(DomainError::NoSuchSlot { .. })
            ),
            "{what}"
        );
    }
    assert_eq!(
        site.run(
            Command::Reserve {
                code: "FFFFFFFF".into(),
                plan: PlanRequest::Procedures(vec!["cert".parse().unwrap()]),
                slot_start: slot,
            },
            now
        ),
        Err(DomainError::NotBookable("certs".parse().unwrap()))
    );
    // Moving one frees its place; the code is found however it is typed.
    site.run(
        Command::MoveReservation {
            code: "cccc-cccc".into(),
            slot_start: jst(2027, 1, 12, 13, 0),
        },
        now,
    )
    .unwrap();
    assert_eq!(site.state.slot_booked(&onestop, slot), 2);
    site.reserve("EEEEEEEE", slot, now).unwrap();
    // Cancelling frees one; an unknown code is not found.
    site.run(
        Command::CancelReservation {
            code: "AAAAAAAA".into(),
        },
        now,
    )
    .unwrap();
    assert_eq!(site.state.slot_booked(&onestop, slot), 2);
    assert_eq!(
        site.run(
            Command::CancelReservation {
                code: "AAAAAAAA".into()
            },
            now
        ),
        Err(DomainError::ReservationNotFound)
    );
    // The floor gives the slot a fourth place, then none.
    site.run(
        Command::SetSlotCapacity {
            queue: onestop.clone(),
            slot_start: slot,
            capacity: 4,
        },
        now,
    )
    .unwrap();
    site.reserve("GGGGGGGG", slot, now).unwrap();
    site.reserve("HHHHHHHH", slot, now).unwrap();
    assert_eq!(
        site.reserve("JJJJJJJJ", slot, now),
        Err(DomainError::SlotFull(slot))
    );

    // A snapshot keeps the bookings and the counts.
    let restored = SiteSnapshot::take(&site.state, Some(now))
        .restore(site.state.config.clone())
        .unwrap();
    assert_eq!(restored, site.state);
    assert_eq!(restored.slot_booked(&onestop, slot), 4);

    // The next days: the booking of the 12th is gone once its slot has ended.
    site.run(Command::StartDay, jst(2027, 1, 12, 8, 0)).unwrap();
    assert!(site.state.reservation("EEEEEEEE").is_some());
    site.run(Command::StartDay, jst(2027, 1, 13, 8, 0)).unwrap();
    assert!(site.state.reservation("EEEEEEEE").is_none());
    assert_eq!(site.state.slot_booked(&onestop, slot), 0);
    assert!(site.state.reservations.is_empty());
}

/// The number of the ticket a call-next at counter 2 calls, serving it to the end.
fn serve_next(site: &mut Site, at: Timestamp) -> String {
    let counter: madoguchi::core::CounterId = "2".parse().unwrap();
    let events = site
        .run(
            Command::CallNext {
                counter: counter.clone(),
            },
            at,
        )
        .unwrap();
    let Some(Event::TicketCalled { ticket, .. }) = events.last() else {
        panic!("a call: {events:?}")
    };
    let number = site.state.tickets[ticket].number.to_string();
    site.run(
        Command::Start {
            counter: counter.clone(),
        },
        at,
    )
    .unwrap();
    site.run(
        Command::Complete {
            counter,
            transfer_to: None,
        },
        at,
    )
    .unwrap();
    number
}

fn walk_in(site: &mut Site, n: u32, at: Timestamp) -> String {
    let events = site
        .run(
            Command::Issue(madoguchi::core::IssueCommand {
                id: format!("w{n}").try_into().unwrap(),
                token: format!("{n:032x}"),
                plan: PlanRequest::Procedures(vec!["move".parse().unwrap()]),
                priority: false,
                dispenser: None,
                lang: None,
                idempotency_key: None,
            }),
            at,
        )
        .unwrap();
    match events.last() {
        Some(Event::TicketIssued { number, .. }) => number.to_string(),
        other => panic!("an issue: {other:?}"),
    }
}

fn check_in(site: &mut Site, code: &str, n: u32, at: Timestamp) -> Result<String, DomainError> {
    let events = site.run(
        Command::CheckIn {
            code: code.to_owned(),
            id: format!("b{n}").try_into().unwrap(),
            token: format!("{:032x}", 1000 + n),
            dispenser: None,
            lang: None,
        },
        at,
    )?;
    match events.last() {
        Some(Event::TicketIssued { number, .. }) => Ok(number.to_string()),
        other => panic!("a ticket: {other:?}"),
    }
}

#[test]
fn a_booking_checked_in_on_time_takes_the_place_of_its_booked_time_among_walk_ins() {
    let mut site = Site {
        state: SiteState::new(config()),
    };
    let slot = jst(2027, 1, 12, 10, 0);
    let the_day_before = jst(2027, 1, 11, 20, 0);
    site.reserve("AAAAAAAA", slot, the_day_before).unwrap();
    site.reserve("CCCCCCCC", slot, the_day_before).unwrap();
    site.reserve("DDDDDDDD", slot, the_day_before).unwrap();

    // Too early: before 09:45 (15 minutes ahead), refused with the time it opens.
    match check_in(&mut site, "AAAAAAAA", 1, jst(2027, 1, 12, 9, 40)) {
        Err(DomainError::TooEarly { from }) => {
            assert_eq!(from.to_utc(), jst(2027, 1, 12, 9, 45))
        }
        other => panic!("too early: {other:?}"),
    }
    // 09:30 a walk-in; 09:46 the booked resident checks in; 09:50 another walk-in.
    let w1 = walk_in(&mut site, 1, jst(2027, 1, 12, 9, 30));
    let booked = check_in(&mut site, "aaaa-aaaa", 1, jst(2027, 1, 12, 9, 46)).unwrap();
    assert_eq!(
        check_in(&mut site, "AAAAAAAA", 9, jst(2027, 1, 12, 9, 47)),
        Err(DomainError::AlreadyCheckedIn)
    );
    let w2 = walk_in(&mut site, 2, jst(2027, 1, 12, 9, 50));
    assert_eq!(site.state.next_release(), Some(slot));
    // 10:00 the slot begins: the ticket takes its place as if it arrived then.
    let released = site.run(Command::ReleaseHeld, slot).unwrap();
    assert!(matches!(
        released.as_slice(),
        [Event::TicketReleased { .. }]
    ));
    assert_eq!(site.state.next_release(), None);
    let w3 = walk_in(&mut site, 3, jst(2027, 1, 12, 10, 1));
    // Late within the window (10:05): in line at once, behind those who came before.
    let late_ok = check_in(&mut site, "CCCCCCCC", 2, jst(2027, 1, 12, 10, 5)).unwrap();
    let w4 = walk_in(&mut site, 4, jst(2027, 1, 12, 10, 6));
    // Past the window (10:11): a walk-in's ticket, marked late.
    let late = check_in(&mut site, "DDDDDDDD", 3, jst(2027, 1, 12, 10, 11)).unwrap();
    let late_ticket = site
        .state
        .tickets
        .values()
        .find(|t| t.number.to_string() == late)
        .unwrap();
    assert!(late_ticket.booked.as_ref().unwrap().late);
    assert_eq!(late_ticket.procedures, ["move".parse().unwrap()]);

    let order: Vec<String> = (0..7)
        .map(|i| serve_next(&mut site, jst(2027, 1, 12, 10, 20 + i)))
        .collect();
    assert_eq!(order, [w1, w2, booked, w3, late_ok, w4, late]);
    // Checked-in bookings are no longer bookings; their codes stay used for the day.
    assert!(site.state.reservations.is_empty());
    assert_eq!(site.state.checked_in.len(), 3);
}

#[test]
fn a_held_booking_is_called_early_when_nobody_else_waits_and_passes_a_closing() {
    let mut site = Site {
        state: SiteState::new(config()),
    };
    let slot = jst(2027, 1, 12, 15, 0);
    site.reserve("AAAAAAAA", slot, jst(2027, 1, 11, 20, 0))
        .unwrap();
    // The floor closes the queue for walk-ins; a booking checked in on time is still taken.
    site.run(
        Command::SetReception {
            queue: "onestop".parse().unwrap(),
            mode: madoguchi::core::ReceptionMode::Closing,
            reason: madoguchi::core::ReceptionReason::Floor,
        },
        jst(2027, 1, 12, 14, 40),
    )
    .unwrap();
    let booked = check_in(&mut site, "AAAAAAAA", 1, jst(2027, 1, 12, 14, 50)).unwrap();
    // Held until 15:00, but nobody else waits: the counter calls it now.
    assert_eq!(serve_next(&mut site, jst(2027, 1, 12, 14, 51)), booked);
    // Nothing left to put in line at 15:00.
    assert_eq!(site.state.next_release(), None);
    assert!(site.run(Command::ReleaseHeld, slot).unwrap().is_empty());
    // A snapshot of a state with a held ticket restores the same state.
    site.reserve(
        "CCCCCCCC",
        jst(2027, 1, 12, 16, 0),
        jst(2027, 1, 12, 14, 52),
    )
    .unwrap();
    check_in(&mut site, "CCCCCCCC", 2, jst(2027, 1, 12, 15, 50)).unwrap();
    let restored = SiteSnapshot::take(&site.state, None)
        .restore(site.state.config.clone())
        .unwrap();
    assert_eq!(restored, site.state);
    assert_eq!(restored.next_release(), Some(jst(2027, 1, 12, 16, 0)));
}

#[tokio::test]
async fn the_kpi_counts_bookings_check_ins_late_ones_and_no_shows_from_the_log() {
    use madoguchi::log::{EventLog, SqliteLog};
    use madoguchi::projection::{ProjectionStore, ReservationCounts};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("madoguchi.db");
    let log = SqliteLog::open(&db).unwrap();
    let store = ProjectionStore::open(&db).unwrap();
    let mut site = Site {
        state: SiteState::new(config()),
    };
    let mut events = Vec::new();
    let mut run = |site: &mut Site, command: Command, at: Timestamp| {
        events.extend(site.run(command, at).unwrap());
    };
    let before = jst(2027, 1, 11, 20, 0);
    let reserve = |code: &str, slot: Timestamp| Command::Reserve {
        code: code.into(),
        plan: PlanRequest::Procedures(vec!["move".parse().unwrap()]),
        slot_start: slot,
    };
    // Five bookings on the 12th: one checked in on time, one late, one cancelled, one moved
    // to the 13th, one nobody came for.
    for (code, h) in [
        ("AAAAAAAA", 9),
        ("CCCCCCCC", 10),
        ("DDDDDDDD", 11),
        ("EEEEEEEE", 13),
        ("FFFFFFFF", 14),
    ] {
        run(&mut site, reserve(code, jst(2027, 1, 12, h, 0)), before);
    }
    run(
        &mut site,
        Command::CancelReservation {
            code: "DDDDDDDD".into(),
        },
        before,
    );
    run(
        &mut site,
        Command::MoveReservation {
            code: "EEEEEEEE".into(),
            slot_start: jst(2027, 1, 13, 9, 0),
        },
        before,
    );
    for (code, n, at) in [
        ("AAAAAAAA", 1, jst(2027, 1, 12, 8, 50)),
        ("CCCCCCCC", 2, jst(2027, 1, 12, 10, 30)),
    ] {
        run(
            &mut site,
            Command::CheckIn {
                code: code.into(),
                id: format!("b{n}").try_into().unwrap(),
                token: format!("{n:032x}"),
                dispenser: None,
                lang: None,
            },
            at,
        );
    }
    log.append(&site.state.config.id, 0, &events).await.unwrap();
    let counts = store
        .reservation_counts(
            Some("ward".into()),
            jst(2027, 1, 12, 0, 0),
            jst(2027, 1, 13, 0, 0),
            jst(2027, 1, 12, 18, 0),
        )
        .await
        .unwrap();
    assert_eq!(
        counts,
        ReservationCounts {
            booked: 3,
            checked_in: 2,
            late: 1,
            no_show: 1,
        }
    );
    // The 13th: the moved one, not yet due.
    let next = store
        .reservation_counts(
            None,
            jst(2027, 1, 13, 0, 0),
            jst(2027, 1, 14, 0, 0),
            jst(2027, 1, 12, 18, 0),
        )
        .await
        .unwrap();
    assert_eq!((next.booked, next.no_show), (1, 0));
}

#[test]
fn the_forecast_counts_bookings_still_to_come() {
    use madoguchi::core::estimate::what_if;
    use madoguchi::core::{Learner, Target};
    let mut site = Site {
        state: SiteState::new(config()),
    };
    let now = jst(2027, 1, 12, 9, 50);
    let slot = jst(2027, 1, 12, 10, 0);
    let without = site.state.clone();
    for code in ["AAAAAAAA", "CCCCCCCC", "DDDDDDDD"] {
        site.reserve(code, slot, jst(2027, 1, 11, 20, 0)).unwrap();
    }
    let onestop = Target::Queue("onestop".parse().unwrap());
    // Someone joining at 10:00 and at 10:10, and the line then.
    let at = |state: &SiteState, t: f64| {
        let lines = what_if(
            state,
            &Learner::new(&state.config),
            now,
            1200.0,
            600.0,
            &Default::default(),
            5,
        );
        let (_, points) = lines.into_iter().find(|(l, _)| *l == onestop).unwrap();
        let p = points.iter().find(|p| (p.at_s - t).abs() < 1.0).unwrap();
        (p.waiting, p.wait_s)
    };
    let (line_booked, wait_booked) = at(&site.state, 600.0);
    let (line_free, wait_free) = at(&without, 600.0);
    assert!(
        line_booked - line_free >= 2.5,
        "three booked residents join at 10:00: {line_free} → {line_booked}"
    );
    // Two counters, ten minutes each: a walk-in at 10:00 waits for the third booking's turn.
    assert!(
        wait_booked > wait_free + 300.0,
        "someone at 10:00 waits behind the bookings: {wait_free} s → {wait_booked} s"
    );
}

#[test]
fn behind_a_long_line_a_booking_is_placed_to_be_called_at_its_booked_time() {
    let mut site = Site {
        state: SiteState::new(config()),
    };
    let slot = jst(2027, 1, 12, 10, 0);
    site.reserve("AAAAAAAA", slot, jst(2027, 1, 11, 20, 0))
        .unwrap();
    // One counter on the one-stop line, ten minutes a visit; six walk-ins from 09:00 to 09:50.
    site.run(
        Command::SetCounterState {
            counter: "1".parse().unwrap(),
            state: madoguchi::core::CounterState::Closed,
        },
        jst(2027, 1, 12, 8, 55),
    )
    .unwrap();
    let walk_ins: Vec<String> = (0..6)
        .map(|i| walk_in(&mut site, i, jst(2027, 1, 12, 9, 10 * i)))
        .collect();
    let booked = check_in(&mut site, "AAAAAAAA", 1, jst(2027, 1, 12, 9, 55)).unwrap();
    // 10:00: the last walk-in's wait is 50 minutes (five visits ahead of it), so those who came
    // from 09:10 on would be called after 10:00: the booking goes ahead of them.
    let released = site.run(Command::ReleaseHeld, slot).unwrap();
    assert!(
        matches!(
            released.as_slice(),
            [Event::TicketReleased {
                before: Some(_),
                ..
            }]
        ),
        "{released:?}"
    );
    let order: Vec<String> = (0..7)
        .map(|i| serve_next(&mut site, jst(2027, 1, 12, 10, i)))
        .collect();
    let mut expected = vec![walk_ins[0].clone(), booked];
    expected.extend(walk_ins[1..].iter().cloned());
    assert_eq!(order, expected);
}

#[test]
fn a_booking_checks_in_before_the_office_opens() {
    let mut site = Site {
        state: SiteState::new(config()),
    };
    site.reserve("AAAAAAAA", jst(2027, 1, 12, 8, 30), jst(2027, 1, 11, 20, 0))
        .unwrap();
    // 08:20: reception opens at 08:30; a walk-in is refused, the booking is taken and held.
    assert!(matches!(
        site.run(
            Command::Issue(madoguchi::core::IssueCommand {
                id: "w1".to_owned().try_into().unwrap(),
                token: format!("{:032x}", 1),
                plan: PlanRequest::Procedures(vec!["move".parse().unwrap()]),
                priority: false,
                dispenser: None,
                lang: None,
                idempotency_key: None,
            }),
            jst(2027, 1, 12, 8, 20),
        ),
        Err(DomainError::QueueClosed { .. })
    ));
    check_in(&mut site, "AAAAAAAA", 1, jst(2027, 1, 12, 8, 20)).unwrap();
    assert_eq!(site.state.next_release(), Some(jst(2027, 1, 12, 8, 30)));
}
