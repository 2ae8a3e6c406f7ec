//! Reservations (来庁予約): bookable slots per queue and day, booking, moving and cancelling by
//! a short code. Pure, like the rest of the core: the code is drawn at the edge, the time is
//! passed in, and whether a slot has room is decided against the state the log built, so two
//! requests racing for a slot's last place are decided one after the other: one gets it, the
//! other `SlotFull`.
//!
//! A slot is a queue's `slot_min` minutes from a start time. Slots tile the queue's reception
//! periods of the day (from a period's start to its last reception), or, for a queue without
//! reception hours, the `[sites.reservations] periods` on weekdays that are not holidays. Its
//! capacity is the share of the counters' time set aside for bookings (`booked_share`) over the
//! queue's mean service: `booked_share × counters serving the queue × slot length ÷ mean
//! service`, at least one, unless the floor manager set another figure for that slot.

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

use super::hours::Hours;
use super::model::{QueueConfig, SiteConfig};
use super::{LifeEventId, ProcedureCode, QueueId, Timestamp};

/// Characters of a reservation code: no 0/O, 1/I/L, 8/B, 5/S look-alikes.
pub const CODE_ALPHABET: &[u8] = b"ACDEFGHJKMNPQRTUVWXY234679";
/// Characters in a reservation code: 26^8 ≈ 2 × 10^11 codes.
pub const CODE_LEN: usize = 8;

/// Whether `code` has the shape of a reservation code (upper case, from the alphabet).
pub fn valid_code(code: &str) -> bool {
    code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))
}

/// A new code: [`CODE_LEN`] characters of [`CODE_ALPHABET`] drawn from `rng` (the OS's random
/// source at the edge; the simulator's seeded one).
pub fn draw_code(rng: &mut impl rand::Rng) -> String {
    (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

/// A code as a resident may type it: upper-cased, spaces and hyphens dropped.
pub fn normalize_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// The `[sites.reservations]` table: which queues take bookings and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ReservationConfig {
    /// Queues that take bookings.
    pub queues: Vec<QueueId>,
    pub slot_min: u32,
    /// Share of the counters' time that bookings may take (the rest is for walk-ins).
    pub booked_share: f64,
    /// How early before its slot and how late after its start a booking is checked in.
    pub check_in_early_min: u32,
    pub check_in_late_min: u32,
    /// How many days ahead slots can be booked (today included).
    pub horizon_days: u32,
    /// The bookable periods of a queue without reception hours (weekdays, not holidays).
    pub periods: Hours,
}

/// One slot of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// The booking behind a ticket: its code, its slot's start, and whether the resident came
/// past the check-in window (then the ticket is a walk-in's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booked {
    pub code: String,
    pub slot_start: Timestamp,
    pub late: bool,
}

/// A booking, as the log made it. No name, no contact: the plan, the slot and the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub code: String,
    pub queue: QueueId,
    pub procedures: Vec<ProcedureCode>,
    pub life_event: Option<LifeEventId>,
    pub slot_start: Timestamp,
    pub slot_end: Timestamp,
    pub made_at: Timestamp,
}

impl SiteConfig {
    /// Whether `queue` takes bookings here.
    pub fn bookable(&self, queue: &QueueId) -> bool {
        self.reservations
            .as_ref()
            .is_some_and(|r| r.queues.contains(queue))
    }

    /// The slots of `queue` on local `date` (none when it takes no bookings).
    pub fn slots(&self, queue: &QueueConfig, date: NaiveDate) -> Vec<Slot> {
        let Some(r) = self
            .reservations
            .as_ref()
            .filter(|r| r.queues.contains(&queue.id))
        else {
            return Vec::new();
        };
        let (hours, periods) = match queue.hours.as_deref() {
            Some(h) => (h, h.periods(date)),
            None => (&r.periods, r.periods.periods(date)),
        };
        let step = Duration::minutes(i64::from(r.slot_min.max(1)));
        let mut out = Vec::new();
        for &(start, end) in periods {
            let last = hours.last_reception(start, end);
            let mut t = date.and_time(start);
            while t + step <= date.and_time(last) {
                out.push(Slot {
                    start: self.utc(t),
                    end: self.utc(t + step),
                });
                t += step;
            }
        }
        out
    }

    /// The slot of `queue` that starts at `start`, if there is one.
    pub fn slot_at(&self, queue: &QueueConfig, start: Timestamp) -> Option<Slot> {
        let date = start.with_timezone(&self.timezone).date_naive();
        self.slots(queue, date)
            .into_iter()
            .find(|s| s.start == start)
    }

    /// How many bookings a slot of `queue` takes by the configuration.
    pub fn slot_capacity(&self, queue: &QueueConfig) -> u32 {
        let Some(r) = self.reservations.as_ref() else {
            return 0;
        };
        let counters = self
            .counters
            .iter()
            .filter(|c| c.profile.queues.contains(&queue.id))
            .count() as f64;
        let services: Vec<f64> = queue
            .procedures
            .iter()
            .filter_map(|p| self.procedure(p))
            .map(|p| f64::from(p.service_s.max(60)))
            .collect();
        let mean = if services.is_empty() {
            600.0
        } else {
            services.iter().sum::<f64>() / services.len() as f64
        };
        let slots = r.booked_share * counters * f64::from(r.slot_min) * 60.0 / mean;
        if r.booked_share <= 0.0 {
            0
        } else {
            (slots.floor() as u32).max(1)
        }
    }

    /// The last local date whose slots can be booked at `at`: `horizon_days` from today, today
    /// included (`None` without reservations).
    pub fn last_bookable_day(&self, at: Timestamp) -> Option<NaiveDate> {
        let days = self.reservations.as_ref()?.horizon_days.max(1);
        self.local_date(at)
            .checked_add_days(chrono::Days::new(u64::from(days) - 1))
    }

    /// The site's local date at `at`.
    pub fn local_date(&self, at: Timestamp) -> NaiveDate {
        at.with_timezone(&self.timezone).date_naive()
    }

    /// A local time of this site as an instant.
    fn utc(&self, local: NaiveDateTime) -> Timestamp {
        self.instant(local).to_utc()
    }
}

/// A period list on weekdays that are not holidays, as [`ReservationConfig::periods`] holds it.
pub fn weekday_periods(periods: Vec<(NaiveTime, NaiveTime)>) -> Hours {
    let mut week: [Vec<(NaiveTime, NaiveTime)>; 7] = Default::default();
    for day in week.iter_mut().take(5) {
        *day = periods.clone();
    }
    Hours {
        week,
        last_reception_min: 0,
        closed_on_holidays: true,
        closures: Vec::new(),
        extra: Vec::new(),
        close_when_full: false,
        closing_margin_min: 0,
    }
}

impl super::SiteState {
    /// How many bookings the slot of `queue` at `start` takes: the floor's figure, else the
    /// configuration's.
    pub fn slot_capacity(&self, queue: &QueueConfig, start: Timestamp) -> u32 {
        self.slot_capacity
            .get(&(queue.id.clone(), start))
            .copied()
            .unwrap_or_else(|| self.config.slot_capacity(queue))
    }

    /// Bookings in the slot of `queue` at `start`.
    pub fn slot_booked(&self, queue: &QueueId, start: Timestamp) -> u32 {
        self.booked
            .get(&(queue.clone(), start))
            .copied()
            .unwrap_or(0)
    }

    /// A booking by its code, as typed.
    pub fn reservation(&self, code: &str) -> Option<&Reservation> {
        self.reservations.get(&normalize_code(code))
    }
}

/// A slot that can be booked at `at`: one of the queue's, in the future, within the horizon.
fn bookable_slot(
    state: &super::SiteState,
    queue: &QueueConfig,
    start: Timestamp,
    at: Timestamp,
) -> Result<Slot, super::DomainError> {
    let config = &state.config;
    let no_slot = || super::DomainError::NoSuchSlot {
        queue: queue.id.clone(),
        start,
    };
    if config.reservations.is_none() {
        return Err(super::DomainError::NoReservations);
    }
    let slot = config.slot_at(queue, start).ok_or_else(no_slot)?;
    let last_day = config.last_bookable_day(at).ok_or_else(no_slot)?;
    if slot.start <= at || config.local_date(slot.start) > last_day {
        return Err(no_slot());
    }
    Ok(slot)
}

/// Refuses a slot without room (`SlotFull`).
fn has_room(
    state: &super::SiteState,
    queue: &QueueConfig,
    slot: Slot,
) -> Result<(), super::DomainError> {
    if state.slot_booked(&queue.id, slot.start) >= state.slot_capacity(queue, slot.start) {
        return Err(super::DomainError::SlotFull(slot.start));
    }
    Ok(())
}

pub(super) fn reserve(
    state: &super::SiteState,
    code: &str,
    plan: &super::PlanRequest,
    slot_start: Timestamp,
    at: Timestamp,
) -> Result<Vec<super::Event>, super::DomainError> {
    let config = &state.config;
    if config.reservations.is_none() {
        return Err(super::DomainError::NoReservations);
    }
    let procedures = super::plan_for(config, plan)?;
    let queue_id = super::route(config, &procedures)?;
    let queue = config
        .queue(queue_id)
        .ok_or_else(|| super::DomainError::UnknownQueue(queue_id.clone()))?;
    if !config.bookable(&queue.id) {
        return Err(super::DomainError::NotBookable(queue.id.clone()));
    }
    let slot = bookable_slot(state, queue, slot_start, at)?;
    has_room(state, queue, slot)?;
    if !valid_code(code) || state.reservations.contains_key(code) {
        return Err(super::DomainError::CodeTaken);
    }
    let life_event = match plan {
        super::PlanRequest::LifeEvent { id, .. } => Some(id.clone()),
        super::PlanRequest::Procedures(_) => None,
    };
    Ok(vec![super::Event::ReservationMade {
        code: code.to_owned(),
        queue: queue.id.clone(),
        procedures,
        life_event,
        slot_start: slot.start,
        slot_end: slot.end,
        at,
    }])
}

pub(super) fn move_reservation(
    state: &super::SiteState,
    code: &str,
    slot_start: Timestamp,
    at: Timestamp,
) -> Result<Vec<super::Event>, super::DomainError> {
    let r = state
        .reservation(code)
        .ok_or(super::DomainError::ReservationNotFound)?;
    if r.slot_start == slot_start {
        return Ok(vec![]);
    }
    let queue = state
        .config
        .queue(&r.queue)
        .ok_or_else(|| super::DomainError::UnknownQueue(r.queue.clone()))?;
    let slot = bookable_slot(state, queue, slot_start, at)?;
    has_room(state, queue, slot)?;
    Ok(vec![super::Event::ReservationMoved {
        code: r.code.clone(),
        slot_start: slot.start,
        slot_end: slot.end,
        at,
    }])
}

pub(super) fn cancel_reservation(
    state: &super::SiteState,
    code: &str,
    at: Timestamp,
) -> Result<Vec<super::Event>, super::DomainError> {
    let r = state
        .reservation(code)
        .ok_or(super::DomainError::ReservationNotFound)?;
    Ok(vec![super::Event::ReservationCancelled {
        code: r.code.clone(),
        at,
    }])
}

/// Most bookings a slot can be set to take.
pub const MAX_SLOT_CAPACITY: u32 = 999;

pub(super) fn set_slot_capacity(
    state: &super::SiteState,
    queue: &QueueId,
    slot_start: Timestamp,
    capacity: u32,
    at: Timestamp,
) -> Result<Vec<super::Event>, super::DomainError> {
    let config = &state.config;
    let q = config
        .queue(queue)
        .ok_or_else(|| super::DomainError::UnknownQueue(queue.clone()))?;
    if !config.bookable(queue) {
        return Err(super::DomainError::NotBookable(queue.clone()));
    }
    if capacity > MAX_SLOT_CAPACITY {
        return Err(super::DomainError::BadCapacity);
    }
    let slot = config
        .slot_at(q, slot_start)
        .ok_or_else(|| super::DomainError::NoSuchSlot {
            queue: queue.clone(),
            start: slot_start,
        })?;
    if state.slot_capacity(q, slot.start) == capacity {
        return Ok(vec![]);
    }
    Ok(vec![super::Event::SlotCapacitySet {
        queue: queue.clone(),
        slot_start: slot.start,
        capacity,
        at,
        by: None,
    }])
}

/// Checks a booking in (the rule in docs/ARCHITECTURE.md, Reservations):
/// - before `check_in_early_min` ahead of its slot: refused, `TooEarly`;
/// - before its slot begins: a ticket held behind everyone in line until the slot's start, then
///   placed where it is called at its booked time ([`release_held`]); called earlier only when
///   nobody else waits;
/// - from the slot's start to `check_in_late_min` after it: in line at once, at the end;
/// - later: a walk-in's ticket, at the end of the line (`late`), refused like any walk-in's
///   when the queue is not taking tickets.
///
/// The ticket carries the booked plan. Within its window a booking is taken whatever the queue's
/// reception: its slot lies within the hours (a resident may come before the office opens, or
/// after the day was closed for walk-ins).
pub(super) fn check_in(
    state: &super::SiteState,
    command: &super::Command,
    at: Timestamp,
) -> Result<Vec<super::Event>, super::DomainError> {
    let super::Command::CheckIn {
        code,
        id,
        token,
        dispenser,
        lang,
    } = command
    else {
        unreachable!("check_in takes a CheckIn command")
    };
    let config = &state.config;
    let rc = config
        .reservations
        .as_ref()
        .ok_or(super::DomainError::NoReservations)?;
    let code = normalize_code(code);
    if state.checked_in.contains_key(&code) {
        return Err(super::DomainError::AlreadyCheckedIn);
    }
    let r = state
        .reservations
        .get(&code)
        .ok_or(super::DomainError::ReservationNotFound)?;
    let from = r.slot_start - Duration::minutes(i64::from(rc.check_in_early_min));
    let until = r.slot_start + Duration::minutes(i64::from(rc.check_in_late_min));
    if at < from {
        return Err(super::DomainError::TooEarly {
            from: from.with_timezone(&config.timezone).fixed_offset(),
        });
    }
    let late = at > until;
    let issue = super::IssueCommand {
        id: id.clone(),
        token: token.clone(),
        plan: super::PlanRequest::Procedures(r.procedures.clone()),
        priority: false,
        dispenser: dispenser.clone(),
        lang: lang.clone(),
        idempotency_key: None,
    };
    let mut event = super::decide::issue_ticket(state, &issue, at, !late)?;
    if let super::Event::TicketIssued {
        life_event,
        booked,
        held_until,
        ..
    } = &mut event
    {
        life_event.clone_from(&r.life_event);
        *booked = Some(Booked {
            code: code.clone(),
            slot_start: r.slot_start,
            late,
        });
        *held_until = (at < r.slot_start).then_some(r.slot_start);
    }
    Ok(vec![event])
}

/// The tickets of bookings whose slot has begun by `at`, into their booked place in line: the
/// place that has them called at their slot's start, ahead of every walk-in who came later
/// than that start less the line's wait now (they would be called after it), behind those who
/// came earlier.
pub(super) fn release_held(state: &super::SiteState, at: Timestamp) -> Vec<super::Event> {
    state
        .held
        .iter()
        .take_while(|(until, _)| *until <= at)
        .map(|(until, ticket)| super::Event::TicketReleased {
            ticket: ticket.clone(),
            at,
            before: booked_place(state, ticket, *until),
        })
        .collect()
}

/// The order of the first walk-in the ticket goes ahead of, if any (see [`release_held`]).
fn booked_place(
    state: &super::SiteState,
    ticket: &super::TicketId,
    slot: Timestamp,
) -> Option<u64> {
    let t = state.tickets.get(ticket)?;
    let target = t.step().target.clone();
    let queue = match &target {
        super::Target::Queue(q) => q,
        super::Target::Counter(_) => return None,
    };
    let wait = i64::try_from(state.new_ticket_wait(queue)).unwrap_or(i64::MAX / 2);
    let since = slot - Duration::seconds(wait);
    state
        .waiting
        .get(&target)?
        .iter()
        .filter(|k| k.rank == 1 && &k.ticket != ticket)
        .find(|k| {
            state
                .tickets
                .get(&k.ticket)
                .is_some_and(|w| w.step().enqueued_at >= since)
        })
        .map(|k| k.order)
}
