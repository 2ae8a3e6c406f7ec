//! The state of one site and how events change it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::model::SiteConfig;
use super::{
    CancelReason, CounterId, CounterState, DispenserId, Event, LifeEventId, PrinterId,
    PrinterState, ProcedureCode, Profile, QueueId, Target, TicketId, TicketNumber, TicketStatus,
    Timestamp,
};

/// A persistent map keyed by what the server makes itself (ticket ids, numbers, tokens): hashed
/// with FxHash, several times faster than SipHash on these short keys. Keys a client chooses (the
/// idempotency keys) keep the randomly seeded hasher.
pub type IdMap<K, V> = imbl::GenericHashMap<
    K,
    V,
    std::hash::BuildHasherDefault<rustc_hash::FxHasher>,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// How many recent calls the board remembers.
const RECENT_CALLS: usize = 10;

/// One step of a visit: a wait in a queue (or for a counter), a call, a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub target: Target,
    /// When this step's wait began.
    pub enqueued_at: Timestamp,
    /// Place in line: the seq of the event that put the ticket (back) into the line.
    pub order: u64,
    pub calls: u32,
    /// `calls` when the ticket was last put back in line after a no-show.
    pub calls_before_requeue: u32,
    pub requeues: u32,
    /// The latest call.
    pub called_at: Option<Timestamp>,
    pub counter: Option<CounterId>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// Placed just ahead of the tickets of the same `order`: a booking that took its booked
    /// place in line (see `reserve::release_held`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ahead: bool,
}

impl Step {
    /// A step that begins waiting for `target` at `at`, placed in line by `order`.
    fn waiting(target: Target, at: Timestamp, order: u64) -> Step {
        Step {
            target,
            enqueued_at: at,
            order,
            calls: 0,
            calls_before_requeue: 0,
            requeues: 0,
            called_at: None,
            counter: None,
            started_at: None,
            ended_at: None,
            ahead: false,
        }
    }
}

/// One resident's visit, under one number from arrival to departure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: TicketId,
    pub number: TicketNumber,
    pub token: String,
    /// The queue the ticket was first routed to.
    pub queue: QueueId,
    pub procedures: Vec<ProcedureCode>,
    pub life_event: Option<LifeEventId>,
    pub priority: bool,
    pub dispenser: Option<DispenserId>,
    pub lang: Option<String>,
    pub planned_service_s: u32,
    pub issued_at: Timestamp,
    pub status: TicketStatus,
    pub steps: Vec<Step>,
    pub departed_at: Option<Timestamp>,
    pub cancel_reason: Option<CancelReason>,
    /// The resident's satisfaction answer after the visit, 1–5.
    pub satisfaction: Option<u8>,
    /// The booking this visit was checked in for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booked: Option<super::reserve::Booked>,
    /// Held behind everyone in line until its slot begins (a booking checked in early).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<Timestamp>,
    /// The near-turn notice the resident asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<super::notice::Notice>,
}

impl Ticket {
    pub fn step(&self) -> &Step {
        self.steps.last().expect("a ticket always has a step")
    }
    fn step_mut(&mut self) -> &mut Step {
        self.steps.last_mut().expect("a ticket always has a step")
    }
    pub fn wait_key(&self) -> WaitKey {
        WaitKey {
            rank: if self.held_until.is_some() {
                HELD_RANK
            } else {
                u8::from(!self.priority)
            },
            order: self.step().order,
            sub: u8::from(!self.step().ahead),
            ticket: self.id.clone(),
        }
    }
}

/// The rank of a booked ticket held until its slot: behind everyone else in its line.
pub(super) const HELD_RANK: u8 = 2;

/// Sort key of a waiting ticket within its line: priority first, then arrival in line, then
/// bookings checked in before their slot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WaitKey {
    /// 0 for priority tickets, 1 otherwise, [`HELD_RANK`] for a booking held until its slot.
    pub rank: u8,
    pub order: u64,
    /// 0 for a booking placed ahead of the tickets of its `order`, 1 otherwise.
    #[serde(default = "behind")]
    pub sub: u8,
    pub ticket: TicketId,
}

/// The `sub` of every key before bookings (snapshots taken before them have none).
fn behind() -> u8 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub id: CounterId,
    pub state: CounterState,
    pub profile: Profile,
    /// The ticket called to or served at this counter.
    pub current: Option<TicketId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentCall {
    pub number: TicketNumber,
    pub counter: CounterId,
    pub at: Timestamp,
}

/// Everything the core knows about one site: the current business day's tickets, the counters,
/// and the lines. Rebuilt from the event log on start.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteState {
    pub config: Arc<SiteConfig>,
    /// The seq of the last applied event (0 before the first).
    pub seq: u64,
    pub day: Option<NaiveDate>,
    /// The next number value per queue, for the current day.
    pub next_value: BTreeMap<QueueId, u32>,
    /// The current day's tickets, open or ended.
    pub tickets: IdMap<TicketId, Ticket>,
    pub by_number: IdMap<TicketNumber, TicketId>,
    pub by_token: IdMap<String, TicketId>,
    /// Tickets by `Idempotency-Key`, scoped to the dispenser that sent it: another kiosk reusing
    /// a key gets a ticket of its own, never this one.
    pub idempotency: imbl::HashMap<(Option<DispenserId>, String), TicketId>,
    /// Waiting tickets per line, best first.
    pub waiting: BTreeMap<Target, imbl::OrdSet<WaitKey>>,
    pub counters: Vec<Counter>,
    pub recent_calls: VecDeque<RecentCall>,
    /// The printers of this site's dispensers, with their last reported state and since when.
    pub printers: BTreeMap<PrinterId, (PrinterState, Option<Timestamp>)>,
    /// The wait estimates the views show, computed for one seq by the site's owner (see
    /// `core::estimate`); views fall back to the naive estimate when they are for another seq.
    pub estimates: EstimateCache,
    /// Queues whose reception was closed or kept open (`ReceptionChanged`), until when.
    pub reception: BTreeMap<QueueId, (super::ReceptionMode, Timestamp)>,
    /// Each queue's reception as of the owner's last look at the clock (see
    /// [`SiteState::refresh_reception`]): what the board shows.
    pub reception_now: ReceptionCache,
    /// Bookings still to come, by code (kept across days; those whose slot ended go at the
    /// start of a day).
    pub reservations: imbl::OrdMap<String, super::reserve::Reservation>,
    /// Bookings per slot (queue, start).
    pub booked: imbl::OrdMap<(QueueId, Timestamp), u32>,
    /// Slot capacities the floor manager set (queue, start).
    pub slot_capacity: BTreeMap<(QueueId, Timestamp), u32>,
    /// Today's bookings checked in, by code: their tickets.
    pub checked_in: imbl::OrdMap<String, TicketId>,
    /// Tickets held until their slot begins, by that time (derived from the tickets).
    pub held: imbl::OrdSet<(Timestamp, TicketId)>,
    /// Tickets whose notice is asked and not yet due, never called (derived from the tickets).
    pub notices_pending: imbl::OrdSet<TicketId>,
}

/// The reception of each queue at one moment: derived from the hours, the clock and the log, so
/// two states are equal whatever it holds.
#[derive(Debug, Clone, Default)]
pub struct ReceptionCache(pub Arc<BTreeMap<QueueId, super::QueueReception>>);

impl PartialEq for ReceptionCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The estimates a state's views show: derived from the state and the time they were made, so
/// two states are equal whatever estimates they hold.
#[derive(Debug, Clone, Default)]
pub struct EstimateCache(pub Arc<super::Estimates>);

impl PartialEq for EstimateCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl SiteState {
    pub fn new(config: Arc<SiteConfig>) -> Self {
        let counters = config
            .counters
            .iter()
            .map(|c| Counter {
                id: c.id.clone(),
                state: c.state,
                profile: c.profile.clone(),
                current: None,
            })
            .collect();
        let printers = config
            .dispensers
            .iter()
            .filter_map(|d| d.printer_agent.clone())
            .map(|p| (p, (PrinterState::Unknown, None)))
            .collect();
        Self {
            printers,
            config,
            seq: 0,
            day: None,
            next_value: BTreeMap::new(),
            tickets: Default::default(),
            by_number: Default::default(),
            by_token: Default::default(),
            idempotency: Default::default(),
            waiting: BTreeMap::new(),
            counters,
            recent_calls: VecDeque::new(),
            estimates: Default::default(),
            reception: BTreeMap::new(),
            reception_now: Default::default(),
            reservations: Default::default(),
            booked: Default::default(),
            slot_capacity: BTreeMap::new(),
            checked_in: Default::default(),
            held: Default::default(),
            notices_pending: Default::default(),
        }
    }

    /// When the next held ticket is due in its line.
    pub fn next_release(&self) -> Option<Timestamp> {
        self.held.iter().next().map(|(at, _)| *at)
    }

    /// Counts a booking in (`1`) or out of (`-1`) its slot.
    fn count_booking(&mut self, queue: &QueueId, start: Timestamp, delta: i32) {
        let key = (queue.clone(), start);
        let n = self.booked.get(&key).copied().unwrap_or(0);
        let n = n.saturating_add_signed(delta);
        if n == 0 {
            self.booked.remove(&key);
        } else {
            self.booked.insert(key, n);
        }
    }

    /// The reception mode set for `queue` and still in force at `at`.
    pub fn reception_mode(&self, queue: &QueueId, at: Timestamp) -> Option<super::ReceptionMode> {
        self.reception
            .get(queue)
            .filter(|(_, until)| at < *until)
            .map(|(mode, _)| *mode)
    }

    pub fn counter(&self, id: &CounterId) -> Option<&Counter> {
        self.counters.iter().find(|c| &c.id == id)
    }

    /// A counter by id. `None` for a counter the configuration no longer has: its past events
    /// are facts, but there is no counter left to show them on.
    fn counter_mut(&mut self, id: &CounterId) -> Option<&mut Counter> {
        self.counters.iter_mut().find(|c| &c.id == id)
    }

    pub fn ticket_by_number(&self, number: &TicketNumber) -> Option<&Ticket> {
        self.by_number
            .get(number)
            .and_then(|id| self.tickets.get(id))
    }

    pub fn ticket_by_token(&self, token: &str) -> Option<&Ticket> {
        self.by_token.get(token).and_then(|id| self.tickets.get(id))
    }

    fn ticket_mut(&mut self, id: &TicketId) -> &mut Ticket {
        self.tickets
            .get_mut(id)
            .expect("events name only issued tickets")
    }

    /// Takes a ticket out of its line; a held one is held no more.
    fn unqueue(&mut self, id: &TicketId) {
        let t = &self.tickets[id];
        if t.status == TicketStatus::Waiting {
            let target = t.step().target.clone();
            let key = t.wait_key();
            if let Some(line) = self.waiting.get_mut(&target) {
                line.remove(&key);
                if line.is_empty() {
                    self.waiting.remove(&target);
                }
            }
        }
        if let Some(until) = t.held_until {
            self.held.remove(&(until, id.clone()));
            self.ticket_mut(id).held_until = None;
        }
    }

    fn enqueue(&mut self, id: &TicketId) {
        let t = &self.tickets[id];
        let target = t.step().target.clone();
        let key = t.wait_key();
        self.waiting.entry(target).or_default().insert(key);
    }

    fn release_counter(&mut self, id: &TicketId) {
        for c in &mut self.counters {
            if c.current.as_ref() == Some(id) {
                c.current = None;
            }
        }
    }

    /// Ends a visit. Returns the ended ticket for the visit projection.
    fn end(&mut self, id: &TicketId, status: TicketStatus, at: Timestamp) -> Ticket {
        self.unqueue(id);
        self.release_counter(id);
        let t = self.ticket_mut(id);
        t.status = status;
        let step = t.step_mut();
        step.ended_at = Some(at);
        t.departed_at = Some(at);
        t.clone()
    }

    /// Applies one event and returns the tickets whose visit record it changed: visits it ended,
    /// and a finished visit that was rated.
    pub fn apply(&mut self, event: &Event) -> Vec<Ticket> {
        self.seq += 1;
        let seq = self.seq;
        let mut ended = Vec::new();
        match event {
            Event::DayStarted { day, at, expired } => {
                for id in expired {
                    if self.tickets.contains_key(id) {
                        let mut t = self.end(id, TicketStatus::Cancelled, *at);
                        t.cancel_reason = Some(CancelReason::DayEnded);
                        ended.push(t);
                    }
                }
                self.day = Some(*day);
                self.checked_in.clear();
                self.held.clear();
                self.notices_pending.clear();
                self.next_value.clear();
                self.tickets.clear();
                self.by_number.clear();
                self.by_token.clear();
                self.idempotency.clear();
                self.waiting.clear();
                self.recent_calls.clear();
                self.reception.clear();
                for c in &mut self.counters {
                    c.current = None;
                }
                // Bookings whose slot has ended are past (no-shows; a check-in ends a booking).
                let past: Vec<String> = self
                    .reservations
                    .values()
                    .filter(|r| r.slot_end <= *at)
                    .map(|r| r.code.clone())
                    .collect();
                for code in past {
                    if let Some(r) = self.reservations.remove(&code) {
                        self.count_booking(&r.queue, r.slot_start, -1);
                    }
                }
                self.slot_capacity.retain(|(_, start), _| start > at);
            }
            Event::TicketIssued {
                ticket,
                number,
                value,
                token,
                queue,
                procedures,
                life_event,
                // Only for the counter-support system (webhooks); the plan is in `procedures`.
                answers: _,
                priority,
                dispenser,
                lang,
                idempotency_key,
                planned_service_s,
                at,
                booked,
                held_until,
            } => {
                self.tickets.insert(
                    ticket.clone(),
                    Ticket {
                        id: ticket.clone(),
                        number: number.clone(),
                        token: token.clone(),
                        queue: queue.clone(),
                        procedures: procedures.clone(),
                        life_event: life_event.clone(),
                        priority: *priority,
                        dispenser: dispenser.clone(),
                        lang: lang.clone(),
                        planned_service_s: *planned_service_s,
                        issued_at: *at,
                        status: TicketStatus::Waiting,
                        steps: vec![Step::waiting(Target::Queue(queue.clone()), *at, seq)],
                        departed_at: None,
                        cancel_reason: None,
                        satisfaction: None,
                        booked: booked.clone(),
                        held_until: *held_until,
                        notice: None,
                    },
                );
                self.enqueue(ticket);
                if let Some(until) = held_until {
                    self.held.insert((*until, ticket.clone()));
                }
                if let Some(b) = booked {
                    if let Some(r) = self.reservations.remove(&b.code) {
                        self.count_booking(&r.queue, r.slot_start, -1);
                    }
                    self.checked_in.insert(b.code.clone(), ticket.clone());
                }
                let next = self.next_value.entry(queue.clone()).or_insert(0);
                *next = (*next).max(value + 1);
                self.by_number.insert(number.clone(), ticket.clone());
                self.by_token.insert(token.clone(), ticket.clone());
                if let Some(key) = idempotency_key {
                    self.idempotency
                        .insert((dispenser.clone(), key.clone()), ticket.clone());
                }
            }
            Event::TicketCalled {
                ticket,
                counter,
                at,
                ..
            } => {
                self.unqueue(ticket);
                let t = self.ticket_mut(ticket);
                t.status = TicketStatus::Called;
                let step = t.step_mut();
                step.calls += 1;
                step.called_at = Some(*at);
                step.counter = Some(counter.clone());
                let number = t.number.clone();
                if let Some(c) = self.counter_mut(counter) {
                    c.current = Some(ticket.clone());
                }
                self.recent_calls.push_front(RecentCall {
                    number,
                    counter: counter.clone(),
                    at: *at,
                });
                self.recent_calls.truncate(RECENT_CALLS);
            }
            Event::ServiceStarted { ticket, at, .. } => {
                let t = self.ticket_mut(ticket);
                t.status = TicketStatus::Serving;
                t.step_mut().started_at = Some(*at);
            }
            Event::StepCompleted {
                ticket,
                transfer_to,
                at,
                ..
            } => match transfer_to {
                None => ended.push(self.end(ticket, TicketStatus::Done, *at)),
                Some(target) => {
                    self.release_counter(ticket);
                    let t = self.ticket_mut(ticket);
                    t.step_mut().ended_at = Some(*at);
                    t.steps.push(Step::waiting(target.clone(), *at, seq));
                    t.status = TicketStatus::Waiting;
                    self.enqueue(ticket);
                }
            },
            Event::NoShowMarked {
                ticket,
                requeued,
                at,
                ..
            } => {
                if *requeued {
                    self.release_counter(ticket);
                    let t = self.ticket_mut(ticket);
                    let step = t.step_mut();
                    step.requeues += 1;
                    step.calls_before_requeue = step.calls;
                    step.order = seq;
                    step.ahead = false;
                    step.counter = None;
                    t.status = TicketStatus::Waiting;
                    self.enqueue(ticket);
                } else {
                    ended.push(self.end(ticket, TicketStatus::NoShow, *at));
                }
            }
            Event::TicketCancelled {
                ticket, reason, at, ..
            } => {
                let mut t = self.end(ticket, TicketStatus::Cancelled, *at);
                t.cancel_reason = Some(*reason);
                self.ticket_mut(ticket).cancel_reason = Some(*reason);
                ended.push(t);
            }
            Event::CounterStateChanged { counter, state, .. } => {
                if let Some(c) = self.counter_mut(counter) {
                    c.state = *state;
                }
            }
            Event::ProfileChanged {
                counter, profile, ..
            } => {
                if let Some(c) = self.counter_mut(counter) {
                    c.profile = profile.clone();
                }
            }
            Event::SatisfactionGiven { ticket, score, .. } => {
                let t = self.ticket_mut(ticket);
                t.satisfaction = Some(*score);
                // The visit record changes: hand it to the projection again.
                ended.push(t.clone());
            }
            Event::PrinterStateChanged { printer, state, at } => {
                // Only printers the configuration still names are shown.
                if let Some(p) = self.printers.get_mut(printer) {
                    *p = (*state, Some(*at));
                }
            }
            // The print jobs are a projection of their own (`printers::finished_for`).
            Event::PrintJobFinished { .. } => {}
            Event::ReceptionChanged {
                queue, mode, until, ..
            } => {
                self.reception.insert(queue.clone(), (*mode, *until));
            }
            Event::TicketReleased { ticket, before, .. } => {
                let held = self
                    .tickets
                    .get(ticket)
                    .is_some_and(|t| t.status == TicketStatus::Waiting && t.held_until.is_some());
                if held {
                    self.unqueue(ticket);
                    // Its booked place (ahead of `before`), else from now; its wait still
                    // counts from the check-in.
                    let step = self.ticket_mut(ticket).step_mut();
                    step.order = before.unwrap_or(seq);
                    step.ahead = before.is_some();
                    self.enqueue(ticket);
                }
            }
            Event::ReservationMade {
                code,
                queue,
                procedures,
                life_event,
                slot_start,
                slot_end,
                at,
            } => {
                self.count_booking(queue, *slot_start, 1);
                self.reservations.insert(
                    code.clone(),
                    super::reserve::Reservation {
                        code: code.clone(),
                        queue: queue.clone(),
                        procedures: procedures.clone(),
                        life_event: life_event.clone(),
                        slot_start: *slot_start,
                        slot_end: *slot_end,
                        made_at: *at,
                    },
                );
            }
            Event::ReservationMoved {
                code,
                slot_start,
                slot_end,
                ..
            } => {
                if let Some(mut r) = self.reservations.get(code).cloned() {
                    self.count_booking(&r.queue, r.slot_start, -1);
                    self.count_booking(&r.queue, *slot_start, 1);
                    (r.slot_start, r.slot_end) = (*slot_start, *slot_end);
                    self.reservations.insert(code.clone(), r);
                }
            }
            Event::ReservationCancelled { code, .. } => {
                if let Some(r) = self.reservations.remove(code) {
                    self.count_booking(&r.queue, r.slot_start, -1);
                }
            }
            Event::SlotCapacitySet {
                queue,
                slot_start,
                capacity,
                ..
            } => {
                self.slot_capacity
                    .insert((queue.clone(), *slot_start), *capacity);
            }
            Event::NoticeRequested {
                ticket,
                channel,
                link_code,
                ..
            } => {
                self.ticket_mut(ticket).notice = Some(super::notice::Notice {
                    channel: *channel,
                    link_code: link_code.clone(),
                    sent: false,
                });
                if self.tickets[ticket]
                    .steps
                    .iter()
                    .all(|s| s.called_at.is_none())
                {
                    self.notices_pending.insert(ticket.clone());
                }
            }
            Event::NoticeWithdrawn { ticket, .. } => {
                self.ticket_mut(ticket).notice = None;
                self.notices_pending.remove(ticket);
            }
            Event::NearTurnNoticed { ticket, .. } => {
                if let Some(n) = &mut self.ticket_mut(ticket).notice {
                    n.sent = true;
                }
                self.notices_pending.remove(ticket);
            }
        }
        // A ticket called (or ended) before its notice was due never gets one.
        if !self.notices_pending.is_empty() {
            if let Some(id) = event.ticket() {
                if self
                    .tickets
                    .get(id)
                    .is_none_or(|t| t.status != TicketStatus::Waiting)
                {
                    self.notices_pending.remove(id);
                }
            }
        }
        ended
    }
}
