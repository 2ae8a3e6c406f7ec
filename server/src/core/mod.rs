//! The pure queue core: no I/O and no clock. `decide` turns a command into events against the
//! current state, `SiteState::apply` folds an event into the state. Time is always passed in,
//! so the same core runs in the server, in tests with virtual time, and in a simulator.

mod decide;
pub mod estimate;
pub mod hours;
mod ids;
pub mod model;
pub mod notice;
pub mod reserve;
mod snapshot;
mod state;
mod view;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub use madoguchi_wire::{JobOutcome, PrinterState};

pub use decide::{business_day, decide, plan_for, route};
pub use estimate::{Estimates, Learner, Predictor};
pub use ids::*;
pub use snapshot::{
    config_fingerprint, SiteSnapshot, SnapshotMismatch, StateData, SNAPSHOT_FORMAT,
};
pub use state::{Counter, EstimateCache, IdMap, ReceptionCache, SiteState, Step, Ticket, WaitKey};
pub use view::{
    BoardCounter, BoardPrinter, BoardQueue, BoardTicket, BoardView, CounterView, PhoneSite,
    PhoneView, PublicEvent, QueueReception, RecentCallView, ReceptionState, TicketView,
    VisitRecord, VisitStep,
};

pub type Timestamp = DateTime<Utc>;

/// The lifecycle of a ticket's current step; the last three are terminal for the visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Waiting,
    Called,
    Serving,
    Done,
    NoShow,
    Cancelled,
}

impl TicketStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::NoShow | Self::Cancelled)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Called => "called",
            Self::Serving => "serving",
            Self::Done => "done",
            Self::NoShow => "no_show",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CounterState {
    Open,
    Paused,
    Closed,
}

/// How a counter picks the next ticket among the queues it serves (priority tickets always first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The first queue of the profile that has someone waiting.
    ProfileOrder,
    /// Whoever has waited longest across all served queues.
    LongestWait,
}

/// The queues a counter serves, in order, and how it picks among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub queues: Vec<QueueId>,
    pub strategy: Strategy,
}

/// Where a step waits: in a queue, or for one counter (a transfer to a named counter).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Queue(QueueId),
    Counter(CounterId),
}

/// How a visit was ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Staff cancelled the ticket.
    Staff,
    /// The resident cancelled from the phone page.
    Resident,
    /// The business day ended with the ticket still open.
    DayEnded,
}

/// How a queue's reception was set for the rest of a period: `closing` takes no more tickets
/// (「本日の受付は終了しました」), `open` keeps taking them within the reception hours even when
/// the forecast says the day is full (the floor manager's override).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceptionMode {
    Closing,
    Open,
}

/// Who set a queue's reception: the wait forecast (the day is full) or the floor manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceptionReason {
    Forecast,
    Floor,
}

/// How a visit plan is requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanRequest {
    LifeEvent {
        id: LifeEventId,
        answers: Vec<(QuestionId, bool)>,
    },
    Procedures(Vec<ProcedureCode>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueCommand {
    /// Generated at the edge (randomness is not the core's business).
    pub id: TicketId,
    /// Unguessable token for the phone page, generated at the edge.
    pub token: String,
    pub plan: PlanRequest,
    pub priority: bool,
    pub dispenser: Option<DispenserId>,
    pub lang: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketSelector {
    Number(TicketNumber),
    Token(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Starts a new business day if the clock has passed the reset time; no event otherwise.
    StartDay,
    Issue(IssueCommand),
    CallNext {
        counter: CounterId,
    },
    /// Calls a chosen waiting ticket out of order.
    Call {
        counter: CounterId,
        number: TicketNumber,
    },
    Recall {
        counter: CounterId,
    },
    Start {
        counter: CounterId,
    },
    NoShow {
        counter: CounterId,
    },
    Complete {
        counter: CounterId,
        transfer_to: Option<Target>,
    },
    Cancel {
        ticket: TicketSelector,
        reason: CancelReason,
    },
    SetCounterState {
        counter: CounterId,
        state: CounterState,
    },
    SetProfile {
        counter: CounterId,
        profile: Profile,
    },
    /// The resident rates a finished visit from the phone page (5 = very satisfied … 1).
    Rate {
        token: String,
        score: u8,
    },
    /// A printer agent reported its printer's state.
    SetPrinterState {
        printer: PrinterId,
        state: PrinterState,
    },
    /// A printer agent reported how a print job (a ticket's) ended.
    FinishPrintJob {
        printer: PrinterId,
        job: TicketId,
        outcome: JobOutcome,
    },
    /// Closes a queue's reception for the rest of the period, or keeps it open.
    SetReception {
        queue: QueueId,
        mode: ReceptionMode,
        reason: ReceptionReason,
    },
    /// Books the slot of the plan's queue that starts at `slot_start` under `code` (drawn at
    /// the edge).
    Reserve {
        code: String,
        plan: PlanRequest,
        slot_start: Timestamp,
    },
    /// Moves a booking to another slot of its queue.
    MoveReservation {
        code: String,
        slot_start: Timestamp,
    },
    /// A booked resident checks in at the kiosk: a ticket for the booked plan, placed in line
    /// by the rule of `reserve::check_in`. Ids and token are drawn at the edge.
    CheckIn {
        code: String,
        id: TicketId,
        token: String,
        dispenser: Option<DispenserId>,
        lang: Option<String>,
    },
    /// Puts the tickets of bookings whose slot has begun into their line (see `CheckIn`).
    ReleaseHeld,
    CancelReservation {
        code: String,
    },
    /// The floor manager sets how many bookings a slot takes.
    SetSlotCapacity {
        queue: QueueId,
        slot_start: Timestamp,
        capacity: u32,
    },
    /// A resident asks to be told when the turn is near (the address stays at the edge).
    RequestNotice {
        token: String,
        channel: notice::NoticeChannel,
        /// Drawn at the edge for the gateway channel.
        link_code: Option<String>,
    },
    WithdrawNotice {
        token: String,
    },
    /// Marks every notice due now (the site's owner sends it after each change).
    NoticeNearTurn,
}

/// Everything that happens at a site. Events are facts: `apply` never fails on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A new business day began; tickets still open from the previous day were closed.
    DayStarted {
        day: NaiveDate,
        at: Timestamp,
        expired: Vec<TicketId>,
    },
    TicketIssued {
        ticket: TicketId,
        number: TicketNumber,
        /// The numeric part of `number`, within the queue's range.
        value: u32,
        token: String,
        queue: QueueId,
        procedures: Vec<ProcedureCode>,
        life_event: Option<LifeEventId>,
        /// The resident's answers to the life event's questions (the plan came from them), for
        /// the counter-support system: staff need not ask again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        answers: Vec<(QuestionId, bool)>,
        priority: bool,
        dispenser: Option<DispenserId>,
        lang: Option<String>,
        idempotency_key: Option<String>,
        /// Sum of the typical service times of the plan, for the wait estimate.
        planned_service_s: u32,
        at: Timestamp,
        /// The booking checked in, for a booked resident.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        booked: Option<reserve::Booked>,
        /// Waits behind everyone in line until then: a booking checked in before its slot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held_until: Option<Timestamp>,
    },
    /// A booked resident's slot began: the ticket takes its booked place in line, just ahead
    /// of the waiting ticket whose place is `before` (its `order`), or at the end for `None`.
    TicketReleased {
        ticket: TicketId,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
    },
    /// Called to a counter; a second call of the same ticket to the same counter is a recall.
    TicketCalled {
        ticket: TicketId,
        counter: CounterId,
        at: Timestamp,
        /// Who called it, for a call out of order (the audit trail).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Operator>,
    },
    ServiceStarted {
        ticket: TicketId,
        counter: CounterId,
        at: Timestamp,
    },
    /// The step ended; with `transfer_to` a new step begins with the same number.
    StepCompleted {
        ticket: TicketId,
        counter: CounterId,
        transfer_to: Option<Target>,
        at: Timestamp,
    },
    NoShowMarked {
        ticket: TicketId,
        counter: CounterId,
        requeued: bool,
        at: Timestamp,
    },
    TicketCancelled {
        ticket: TicketId,
        reason: CancelReason,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Operator>,
    },
    CounterStateChanged {
        counter: CounterId,
        state: CounterState,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Operator>,
    },
    ProfileChanged {
        counter: CounterId,
        profile: Profile,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Operator>,
    },
    PrinterStateChanged {
        printer: PrinterId,
        state: PrinterState,
        at: Timestamp,
    },
    /// The resident's answer to the satisfaction question, 1 (不満) to 5 (満足).
    SatisfactionGiven {
        ticket: TicketId,
        score: u8,
        at: Timestamp,
    },
    /// A printer agent printed a ticket's job (or gave it up): in the log, so that an agent
    /// reconnecting to any server instance is never sent that job again.
    PrintJobFinished {
        printer: PrinterId,
        job: TicketId,
        outcome: JobOutcome,
        at: Timestamp,
    },
    /// A queue's reception was closed, or kept open, until `until` (the end of the reception
    /// period in progress, or the next business day for a queue without hours).
    ReceptionChanged {
        queue: QueueId,
        mode: ReceptionMode,
        reason: ReceptionReason,
        until: Timestamp,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Operator>,
    },
    /// A resident booked a slot (来庁予約). The code is the booking's only credential.
    ReservationMade {
        code: String,
        queue: QueueId,
        procedures: Vec<ProcedureCode>,
        life_event: Option<LifeEventId>,
        slot_start: Timestamp,
        slot_end: Timestamp,
        at: Timestamp,
    },
    ReservationMoved {
        code: String,
        slot_start: Timestamp,
        slot_end: Timestamp,
        at: Timestamp,
    },
    ReservationCancelled {
        code: String,
        at: Timestamp,
    },
    /// The floor manager set a slot's capacity.
    SlotCapacitySet {
        queue: QueueId,
        slot_start: Timestamp,
        capacity: u32,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Operator>,
    },
    /// A resident asked to be told when the turn is near: by e-mail (the address is kept
    /// outside the log) or through the city's gateway with `link_code`.
    NoticeRequested {
        ticket: TicketId,
        channel: notice::NoticeChannel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link_code: Option<String>,
        at: Timestamp,
    },
    NoticeWithdrawn {
        ticket: TicketId,
        at: Timestamp,
    },
    /// The ticket came within the site's notice rule: its one notice goes out now.
    NearTurnNoticed {
        ticket: TicketId,
        number: TicketNumber,
        /// For the gateway channel: the code the resident sent it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link_code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lang: Option<String>,
        /// Its place in line then (1 = next).
        place: u32,
        estimated_wait_s: u64,
        at: Timestamp,
    },
}

/// Who changed the floor: the name and role of the token that asked (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub name: String,
    pub role: String,
}

impl Command {
    /// Commands that change the floor by a person's choice, recorded in the audit trail: counter
    /// states, profiles, cancellations by staff, and calls out of order.
    pub fn is_audited(&self) -> bool {
        matches!(
            self,
            Command::Call { .. }
                | Command::SetCounterState { .. }
                | Command::SetProfile { .. }
                | Command::SetReception {
                    reason: ReceptionReason::Floor,
                    ..
                }
                | Command::SetSlotCapacity { .. }
                | Command::Cancel {
                    reason: CancelReason::Staff,
                    ..
                }
        )
    }
}

impl Event {
    /// Records who caused the event, on the kinds the audit trail keeps.
    pub fn stamp(&mut self, operator: &Operator) {
        match self {
            Event::TicketCalled { by, .. }
            | Event::TicketCancelled { by, .. }
            | Event::CounterStateChanged { by, .. }
            | Event::ProfileChanged { by, .. }
            | Event::ReceptionChanged { by, .. }
            | Event::SlotCapacitySet { by, .. } => *by = Some(operator.clone()),
            _ => {}
        }
    }

    /// Who caused the event, when the audit trail keeps it.
    pub fn operator(&self) -> Option<&Operator> {
        match self {
            Event::TicketCalled { by, .. }
            | Event::TicketCancelled { by, .. }
            | Event::CounterStateChanged { by, .. }
            | Event::ProfileChanged { by, .. }
            | Event::ReceptionChanged { by, .. }
            | Event::SlotCapacitySet { by, .. } => by.as_ref(),
            _ => None,
        }
    }

    pub fn at(&self) -> Timestamp {
        match self {
            Event::DayStarted { at, .. }
            | Event::TicketIssued { at, .. }
            | Event::TicketCalled { at, .. }
            | Event::ServiceStarted { at, .. }
            | Event::StepCompleted { at, .. }
            | Event::NoShowMarked { at, .. }
            | Event::TicketCancelled { at, .. }
            | Event::CounterStateChanged { at, .. }
            | Event::ProfileChanged { at, .. }
            | Event::PrinterStateChanged { at, .. }
            | Event::SatisfactionGiven { at, .. }
            | Event::PrintJobFinished { at, .. }
            | Event::ReceptionChanged { at, .. }
            | Event::TicketReleased { at, .. }
            | Event::ReservationMade { at, .. }
            | Event::ReservationMoved { at, .. }
            | Event::ReservationCancelled { at, .. }
            | Event::SlotCapacitySet { at, .. }
            | Event::NoticeRequested { at, .. }
            | Event::NoticeWithdrawn { at, .. }
            | Event::NearTurnNoticed { at, .. } => *at,
        }
    }

    /// The ticket this event is about, if any.
    pub fn ticket(&self) -> Option<&TicketId> {
        match self {
            Event::TicketIssued { ticket, .. }
            | Event::TicketCalled { ticket, .. }
            | Event::ServiceStarted { ticket, .. }
            | Event::StepCompleted { ticket, .. }
            | Event::NoShowMarked { ticket, .. }
            | Event::TicketCancelled { ticket, .. }
            | Event::SatisfactionGiven { ticket, .. }
            | Event::TicketReleased { ticket, .. }
            | Event::NoticeRequested { ticket, .. }
            | Event::NoticeWithdrawn { ticket, .. }
            | Event::NearTurnNoticed { ticket, .. } => Some(ticket),
            Event::DayStarted { .. }
            | Event::CounterStateChanged { .. }
            | Event::ProfileChanged { .. }
            | Event::PrinterStateChanged { .. }
            | Event::PrintJobFinished { .. }
            | Event::ReceptionChanged { .. }
            | Event::ReservationMade { .. }
            | Event::ReservationMoved { .. }
            | Event::ReservationCancelled { .. }
            | Event::SlotCapacitySet { .. } => None,
        }
    }

    /// The event's name as stored in the log and sent to screens.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::DayStarted { .. } => "day_started",
            Event::TicketIssued { .. } => "ticket_issued",
            Event::TicketCalled { .. } => "ticket_called",
            Event::ServiceStarted { .. } => "service_started",
            Event::StepCompleted { .. } => "step_completed",
            Event::NoShowMarked { .. } => "no_show_marked",
            Event::TicketCancelled { .. } => "ticket_cancelled",
            Event::CounterStateChanged { .. } => "counter_state_changed",
            Event::ProfileChanged { .. } => "profile_changed",
            Event::PrinterStateChanged { .. } => "printer_state_changed",
            Event::SatisfactionGiven { .. } => "satisfaction_given",
            Event::PrintJobFinished { .. } => "print_job_finished",
            Event::ReceptionChanged { .. } => "reception_changed",
            Event::TicketReleased { .. } => "ticket_released",
            Event::ReservationMade { .. } => "reservation_made",
            Event::ReservationMoved { .. } => "reservation_moved",
            Event::ReservationCancelled { .. } => "reservation_cancelled",
            Event::SlotCapacitySet { .. } => "slot_capacity_set",
            Event::NoticeRequested { .. } => "notice_requested",
            Event::NoticeWithdrawn { .. } => "notice_withdrawn",
            Event::NearTurnNoticed { .. } => "near_turn_noticed",
        }
    }
}

/// Why a command was refused. Each variant says what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("unknown procedure {0}")]
    UnknownProcedure(ProcedureCode),
    #[error("unknown life event {0}")]
    UnknownLifeEvent(LifeEventId),
    #[error("life event {life_event} has no question {question}")]
    UnknownQuestion {
        life_event: LifeEventId,
        question: QuestionId,
    },
    #[error("question {0} needs an answer (true or false)")]
    MissingAnswer(QuestionId),
    #[error("the visit plan is empty: name at least one procedure")]
    EmptyPlan,
    #[error("no queue of this site handles procedure {0}")]
    NoQueueFor(ProcedureCode),
    #[error("unknown queue {0}")]
    UnknownQueue(QueueId),
    #[error("unknown counter {0}")]
    UnknownCounter(CounterId),
    #[error("unknown dispenser {0}")]
    UnknownDispenser(DispenserId),
    #[error("no ticket {0} today")]
    TicketNotFound(String),
    #[error("every number of queue {0} has been used today")]
    NumbersExhausted(QueueId),
    #[error("counter {0} is not open")]
    CounterNotOpen(CounterId),
    #[error("counter {counter} is still handling ticket {number}: finish it first")]
    CounterBusy {
        counter: CounterId,
        number: TicketNumber,
    },
    #[error("counter {0} has no current ticket")]
    NoCurrentTicket(CounterId),
    #[error("ticket {number} is {actual}, not {expected}")]
    WrongStatus {
        number: TicketNumber,
        expected: &'static str,
        actual: &'static str,
    },
    #[error("nobody is waiting for counter {0}")]
    NobodyWaiting(CounterId),
    #[error("ticket {number} was called {calls} time(s); a no-show needs at least {required}")]
    TooFewCalls {
        number: TicketNumber,
        calls: u32,
        required: u32,
    },
    #[error("cannot transfer to counter {0}: no such counter")]
    UnknownTransferCounter(CounterId),
    #[error("a ticket cannot be transferred to the counter that is serving it")]
    TransferToSelf,
    #[error("a profile must list at least one queue, each once")]
    BadProfile,
    #[error("ticket {0} has already ended")]
    AlreadyEnded(TicketNumber),
    #[error("a satisfaction score is 1 (dissatisfied) to 5 (very satisfied), not {0}")]
    BadScore(u8),
    #[error("this visit has already been rated")]
    AlreadyRated,
    #[error("unknown printer agent {0}")]
    UnknownPrinter(PrinterId),
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("{}", closed_message(queue, next_open.as_ref()))]
    QueueClosed {
        queue: QueueId,
        /// When it next takes tickets, in the site's local time (none within a year).
        next_open: Option<chrono::DateTime<chrono::FixedOffset>>,
    },
    #[error("この庁舎は来庁予約を受け付けていません / this site takes no reservations")]
    NoReservations,
    #[error("この手続は予約できません / queue {0} takes no reservations: come without one")]
    NotBookable(QueueId),
    #[error("その時間帯は予約できません / there is no bookable slot of queue {queue} at {start}: pick one from the slots")]
    NoSuchSlot { queue: QueueId, start: Timestamp },
    #[error("その時間帯は満員です / the slot at {0} is fully booked: pick another")]
    SlotFull(Timestamp),
    #[error("予約番号が見つかりません / no reservation with this code")]
    ReservationNotFound,
    #[error("this reservation code is taken")]
    CodeTaken,
    #[error("a slot's capacity is 0 to 999")]
    BadCapacity,
    #[error("受付は {} からです / check-in opens at {}", from.format("%-H:%M"), from.format("%H:%M"))]
    TooEarly {
        from: chrono::DateTime<chrono::FixedOffset>,
    },
    #[error("この予約は受付済みです / this reservation has been checked in already")]
    AlreadyCheckedIn,
    #[error("この庁舎では呼出前のお知らせを行っていません / this site sends no near-turn notices")]
    NoNotices,
    #[error("お知らせは送信済みです / the notice for this ticket has been sent already")]
    NoticeSent,
}

fn closed_message(
    queue: &QueueId,
    next_open: Option<&chrono::DateTime<chrono::FixedOffset>>,
) -> String {
    match next_open {
        Some(at) => format!(
            "ただいま受付時間外です。次の受付開始は {} です。 / Queue {queue} is not taking tickets now; reception opens again at {}.",
            at.format("%-m月%-d日 %H:%M"),
            at.format("%Y-%m-%d %H:%M")
        ),
        None => format!("この窓口は受付を行っていません。 / Queue {queue} is not taking tickets."),
    }
}

/// How the edge should answer a refused command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Something named in the request path does not exist.
    NotFound,
    /// The request body is not acceptable.
    Invalid,
    /// The request is fine but the current state does not allow it.
    Conflict,
    /// Nothing to do (call-next with nobody waiting).
    Empty,
}

impl DomainError {
    pub fn class(&self) -> ErrorClass {
        use DomainError::*;
        match self {
            UnknownCounter(_) | TicketNotFound(_) | UnknownPrinter(_) | NoReservations
            | NoNotices | ReservationNotFound => ErrorClass::NotFound,
            UnknownProcedure(_)
            | UnknownLifeEvent(_)
            | UnknownQuestion { .. }
            | MissingAnswer(_)
            | EmptyPlan
            | NoQueueFor(_)
            | UnknownQueue(_)
            | UnknownDispenser(_)
            | UnknownTransferCounter(_)
            | TransferToSelf
            | BadProfile
            | IdempotencyKeyReused
            | NotBookable(_)
            | NoSuchSlot { .. }
            | BadCapacity
            | BadScore(_) => ErrorClass::Invalid,
            NumbersExhausted(_)
            | QueueClosed { .. }
            | CounterNotOpen(_)
            | CounterBusy { .. }
            | NoCurrentTicket(_)
            | WrongStatus { .. }
            | TooFewCalls { .. }
            | AlreadyEnded(_)
            | SlotFull(_)
            | TooEarly { .. }
            | AlreadyCheckedIn
            | CodeTaken
            | NoticeSent
            | AlreadyRated => ErrorClass::Conflict,
            NobodyWaiting(_) => ErrorClass::Empty,
        }
    }

    /// A stable machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        use DomainError::*;
        match self {
            UnknownProcedure(_) => "unknown_procedure",
            UnknownLifeEvent(_) => "unknown_life_event",
            UnknownQuestion { .. } => "unknown_question",
            MissingAnswer(_) => "missing_answer",
            EmptyPlan => "empty_plan",
            NoQueueFor(_) => "no_queue_for_procedure",
            UnknownQueue(_) => "unknown_queue",
            UnknownCounter(_) => "unknown_counter",
            UnknownDispenser(_) => "unknown_dispenser",
            TicketNotFound(_) => "ticket_not_found",
            NumbersExhausted(_) => "numbers_exhausted",
            CounterNotOpen(_) => "counter_not_open",
            CounterBusy { .. } => "counter_busy",
            NoCurrentTicket(_) => "no_current_ticket",
            WrongStatus { .. } => "wrong_status",
            NobodyWaiting(_) => "nobody_waiting",
            TooFewCalls { .. } => "too_few_calls",
            UnknownTransferCounter(_) => "unknown_counter",
            TransferToSelf => "transfer_to_self",
            BadProfile => "bad_profile",
            AlreadyEnded(_) => "already_ended",
            IdempotencyKeyReused => "idempotency_key_reused",
            UnknownPrinter(_) => "unknown_printer",
            BadScore(_) => "bad_score",
            AlreadyRated => "already_rated",
            QueueClosed { .. } => "queue_closed",
            NoReservations => "no_reservations",
            NotBookable(_) => "not_bookable",
            NoSuchSlot { .. } => "no_such_slot",
            SlotFull(_) => "slot_full",
            ReservationNotFound => "reservation_not_found",
            CodeTaken => "code_taken",
            BadCapacity => "bad_capacity",
            TooEarly { .. } => "too_early",
            AlreadyCheckedIn => "already_checked_in",
            NoNotices => "no_notices",
            NoticeSent => "notice_sent",
        }
    }
}
