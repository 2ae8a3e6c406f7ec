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
