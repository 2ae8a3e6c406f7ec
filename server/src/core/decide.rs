//! Commands in, events out. Nothing here mutates state or reads a clock.

use chrono::{NaiveDate, TimeZone};

use super::hours::Reception;
use super::model::{NoShowAction, SiteConfig};
use super::{
    CancelReason, Command, CounterId, CounterState, DomainError, Event, IssueCommand, PlanRequest,
    ProcedureCode, QueueId, ReceptionMode, ReceptionReason, ReceptionState, SiteState, Target,
    Ticket, TicketId, TicketNumber, TicketSelector, TicketStatus, Timestamp,
};

/// The business day `now` belongs to: local date, where a day starts at the reset time.
pub fn business_day(config: &SiteConfig, now: Timestamp) -> NaiveDate {
    let local = now.with_timezone(&config.timezone).naive_local();
    (local
        - config
            .day_reset
            .signed_duration_since(chrono::NaiveTime::MIN))
    .date()
}

/// The instant a business day begins.
fn day_start(config: &SiteConfig, day: NaiveDate, fallback: Timestamp) -> Timestamp {
    config
        .timezone
        .from_local_datetime(&day.and_time(config.day_reset))
        .earliest()
        .map_or(fallback, |t| t.to_utc())
}

/// Decides what a command does at `now`. An error leaves the state as it was.
pub fn decide(
    state: &SiteState,
    command: &Command,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let today = business_day(&state.config, now);
    // A business day never goes back: a clock behind the latest day stays in that day.
    if state.day.is_some_and(|day| today <= day) {
        return decide_today(state, command, now);
    }
    // The first command of a new business day closes what is left of the previous one.
    let mut expired: Vec<&Ticket> = state
        .tickets
        .values()
        .filter(|t| !t.status.is_terminal())
        .collect();
    expired.sort_by_key(|t| (t.issued_at, t.number.clone()));
    // Tickets left open depart when their own business day ended, even if no command reached
    // the site for days (a server down over a weekend).
    let ended = state
        .day
        .and_then(|d| d.succ_opt())
        .map_or(today, |next| next.min(today));
    let start = Event::DayStarted {
        day: today,
        at: day_start(&state.config, ended, now).min(now),
        expired: expired.into_iter().map(|t| t.id.clone()).collect(),
    };
    let mut next = state.clone();
    next.apply(&start);
    let mut events = vec![start];
    events.extend(decide_today(&next, command, now)?);
    Ok(events)
}

fn decide_today(
    state: &SiteState,
    command: &Command,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let at = now;
    match command {
        Command::StartDay => Ok(vec![]),
        Command::Issue(issue) => issue_ticket(state, issue, at, false).map(|e| vec![e]),
        Command::CheckIn { .. } => super::reserve::check_in(state, command, at),
        Command::ReleaseHeld => Ok(super::reserve::release_held(state, at)),
        Command::CallNext { counter } => {
            let c = free_open_counter(state, counter)?;
            let ticket =
                pick_next(state, c).ok_or_else(|| DomainError::NobodyWaiting(c.clone()))?;
            Ok(vec![Event::TicketCalled {
                ticket,
                counter: c.clone(),
                at,
                by: None,
            }])
        }
        Command::Call { counter, number } => {
            let c = free_open_counter(state, counter)?;
            let t = state
                .ticket_by_number(number)
                .ok_or_else(|| DomainError::TicketNotFound(number.to_string()))?;
            expect_status(t, TicketStatus::Waiting)?;
            Ok(vec![Event::TicketCalled {
                ticket: t.id.clone(),
                counter: c.clone(),
                at,
                by: None,
            }])
        }
        Command::Recall { counter } => {
            let t = current(state, counter)?;
            expect_status(t, TicketStatus::Called)?;
            Ok(vec![Event::TicketCalled {
                ticket: t.id.clone(),
                counter: counter.clone(),
                at,
                by: None,
            }])
        }
        Command::Start { counter } => {
            let t = current(state, counter)?;
            expect_status(t, TicketStatus::Called)?;
            Ok(vec![Event::ServiceStarted {
                ticket: t.id.clone(),
                counter: counter.clone(),
                at,
            }])
        }
        Command::NoShow { counter } => {
            let t = current(state, counter)?;
            expect_status(t, TicketStatus::Called)?;
            let policy = &state.config.no_show;
            let step = t.step();
            // Calls since the ticket was last put back in line count, not earlier ones.
            let calls = step.calls - step.calls_before_requeue;
            if calls < policy.min_calls {
                return Err(DomainError::TooFewCalls {
                    number: t.number.clone(),
                    calls,
                    required: policy.min_calls,
                });
            }
            let requeued =
                policy.action == NoShowAction::Requeue && step.requeues < policy.max_requeues;
            Ok(vec![Event::NoShowMarked {
                ticket: t.id.clone(),
                counter: counter.clone(),
                requeued,
                at,
            }])
        }
        Command::Complete {
            counter,
            transfer_to,
        } => {
            let t = current(state, counter)?;
            expect_status(t, TicketStatus::Serving)?;
            match transfer_to {
                Some(Target::Queue(q)) if state.config.queue(q).is_none() => {
                    return Err(DomainError::UnknownQueue(q.clone()))
                }
                Some(Target::Counter(c)) if state.counter(c).is_none() => {
                    return Err(DomainError::UnknownTransferCounter(c.clone()))
                }
                Some(Target::Counter(c)) if c == counter => {
                    return Err(DomainError::TransferToSelf)
                }
                _ => {}
            }
            Ok(vec![Event::StepCompleted {
                ticket: t.id.clone(),
                counter: counter.clone(),
                transfer_to: transfer_to.clone(),
                at,
            }])
        }
        Command::Cancel { ticket, reason } => {
            let t = match ticket {
                TicketSelector::Number(n) => state
                    .ticket_by_number(n)
                    .ok_or_else(|| DomainError::TicketNotFound(n.to_string()))?,
                TicketSelector::Token(token) => state
                    .ticket_by_token(token)
                    .ok_or_else(|| DomainError::TicketNotFound("(token)".into()))?,
            };
            if t.status.is_terminal() {
                return Err(DomainError::AlreadyEnded(t.number.clone()));
            }
            if *reason == CancelReason::Resident && t.status != TicketStatus::Waiting {
                return Err(DomainError::WrongStatus {
                    number: t.number.clone(),
                    expected: TicketStatus::Waiting.as_str(),
                    actual: t.status.as_str(),
                });
            }
            Ok(vec![Event::TicketCancelled {
                ticket: t.id.clone(),
                reason: *reason,
                at,
                by: None,
            }])
        }
        Command::SetCounterState {
            counter,
            state: wanted,
        } => {
            let c = state
                .counter(counter)
                .ok_or_else(|| DomainError::UnknownCounter(counter.clone()))?;
            if c.state == *wanted {
                return Ok(vec![]);
            }
            if *wanted == CounterState::Closed {
                if let Some(id) = &c.current {
                    return Err(DomainError::CounterBusy {
                        counter: counter.clone(),
                        number: state.tickets[id].number.clone(),
                    });
                }
            }
            Ok(vec![Event::CounterStateChanged {
                counter: counter.clone(),
                state: *wanted,
                at,
                by: None,
            }])
        }
        Command::Rate { token, score } => {
            if !(1..=5).contains(score) {
                return Err(DomainError::BadScore(*score));
            }
            let t = state
                .ticket_by_token(token)
                .ok_or_else(|| DomainError::TicketNotFound("(token)".into()))?;
            if t.status != TicketStatus::Done {
                return Err(DomainError::WrongStatus {
                    number: t.number.clone(),
                    expected: TicketStatus::Done.as_str(),
                    actual: t.status.as_str(),
                });
            }
            if t.satisfaction.is_some() {
                return Err(DomainError::AlreadyRated);
            }
            Ok(vec![Event::SatisfactionGiven {
                ticket: t.id.clone(),
                score: *score,
                at,
            }])
        }
        Command::SetPrinterState {
            printer,
            state: wanted,
        } => {
            let (current, _) = state
                .printers
                .get(printer)
                .ok_or_else(|| DomainError::UnknownPrinter(printer.clone()))?;
            if current == wanted {
                return Ok(vec![]);
            }
            Ok(vec![Event::PrinterStateChanged {
                printer: printer.clone(),
                state: *wanted,
                at,
            }])
        }
        // A report of a job the log does not hold (of another day, or made up) is recorded
        // too: the projection ignores what it has no job for, and a report never fails.
        Command::FinishPrintJob {
            printer,
            job,
            outcome,
        } => {
            if !state.printers.contains_key(printer) {
                return Err(DomainError::UnknownPrinter(printer.clone()));
            }
            Ok(vec![Event::PrintJobFinished {
                printer: printer.clone(),
                job: job.clone(),
                outcome: *outcome,
                at,
            }])
        }
        Command::SetReception {
            queue,
            mode,
            reason,
        } => set_reception(state, queue, *mode, *reason, at),
        Command::Reserve {
            code,
            plan,
            slot_start,
        } => super::reserve::reserve(state, code, plan, *slot_start, at),
        Command::MoveReservation { code, slot_start } => {
            super::reserve::move_reservation(state, code, *slot_start, at)
        }
        Command::CancelReservation { code } => super::reserve::cancel_reservation(state, code, at),
        Command::SetSlotCapacity {
            queue,
            slot_start,
            capacity,
        } => super::reserve::set_slot_capacity(state, queue, *slot_start, *capacity, at),
        Command::RequestNotice {
            token,
            channel,
            link_code,
        } => super::notice::request(state, token, *channel, link_code.clone(), at),
        Command::WithdrawNotice { token } => super::notice::withdraw(state, token, at),
        Command::NoticeNearTurn => Ok(super::notice::near_turn(state, at)),
        Command::SetProfile { counter, profile } => {
            let c = state
                .counter(counter)
                .ok_or_else(|| DomainError::UnknownCounter(counter.clone()))?;
            if profile.queues.is_empty() {
                return Err(DomainError::BadProfile);
            }
            for (i, q) in profile.queues.iter().enumerate() {
                if state.config.queue(q).is_none() {
                    return Err(DomainError::UnknownQueue(q.clone()));
                }
                if profile.queues[..i].contains(q) {
                    return Err(DomainError::BadProfile);
                }
            }
            if &c.profile == profile {
                return Ok(vec![]);
            }
            Ok(vec![Event::ProfileChanged {
                counter: counter.clone(),
                profile: profile.clone(),
                at,
                by: None,
            }])
        }
    }
}

fn expect_status(t: &Ticket, expected: TicketStatus) -> Result<(), DomainError> {
    if t.status == expected {
        Ok(())
    } else if t.status.is_terminal() {
        Err(DomainError::AlreadyEnded(t.number.clone()))
    } else {
        Err(DomainError::WrongStatus {
            number: t.number.clone(),
            expected: expected.as_str(),
            actual: t.status.as_str(),
        })
    }
}

fn free_open_counter<'a>(
    state: &'a SiteState,
    id: &CounterId,
) -> Result<&'a CounterId, DomainError> {
    let c = state
        .counter(id)
        .ok_or_else(|| DomainError::UnknownCounter(id.clone()))?;
    if c.state != CounterState::Open {
        return Err(DomainError::CounterNotOpen(id.clone()));
    }
    if let Some(t) = &c.current {
        return Err(DomainError::CounterBusy {
            counter: id.clone(),
            number: state.tickets[t].number.clone(),
        });
    }
    Ok(&c.id)
}

fn current<'a>(state: &'a SiteState, id: &CounterId) -> Result<&'a Ticket, DomainError> {
    let c = state
        .counter(id)
        .ok_or_else(|| DomainError::UnknownCounter(id.clone()))?;
    c.current
        .as_ref()
        .map(|t| &state.tickets[t])
        .ok_or_else(|| DomainError::NoCurrentTicket(id.clone()))
}

/// The ticket a counter calls next: tickets transferred to this very counter first, then
/// priority tickets of the served queues, then by the counter's strategy.
fn pick_next(state: &SiteState, counter: &CounterId) -> Option<TicketId> {
    let c = state.counter(counter)?;
    if let Some(k) = state
        .waiting
        .get(&Target::Counter(counter.clone()))
        .and_then(|line| line.get_min())
    {
        return Some(k.ticket.clone());
    }
    let heads: Vec<_> = c
        .profile
        .queues
        .iter()
        .filter_map(|q| {
            state
                .waiting
                .get(&Target::Queue(q.clone()))
                .and_then(|line| line.get_min())
        })
        .collect();
    let best = heads
        .iter()
        .filter(|k| k.rank == 0)
        .min_by_key(|k| k.order)
        .or_else(|| match c.profile.strategy {
            super::Strategy::ProfileOrder => heads.first(),
            super::Strategy::LongestWait => heads.iter().min_by_key(|k| k.order),
        })?;
    Some(best.ticket.clone())
}

/// Expands a request into the visit plan: the procedures, in order, without repeats.
pub fn plan_for(
    config: &SiteConfig,
    request: &PlanRequest,
) -> Result<Vec<ProcedureCode>, DomainError> {
    let mut plan: Vec<ProcedureCode> = Vec::new();
    let mut add = |code: &ProcedureCode| {
        if !plan.contains(code) {
            plan.push(code.clone());
        }
    };
    match request {
        PlanRequest::LifeEvent { id, answers } => {
            let event = config
                .life_event(id)
                .ok_or_else(|| DomainError::UnknownLifeEvent(id.clone()))?;
            for (q, _) in answers {
                if !event.questions.iter().any(|x| &x.id == q) {
                    return Err(DomainError::UnknownQuestion {
                        life_event: id.clone(),
                        question: q.clone(),
                    });
                }
            }
            event.procedures.iter().for_each(&mut add);
            for question in &event.questions {
                let answer = answers
                    .iter()
                    .find(|(q, _)| q == &question.id)
                    .map(|(_, a)| *a)
                    .ok_or_else(|| DomainError::MissingAnswer(question.id.clone()))?;
                let codes = if answer { &question.yes } else { &question.no };
                codes.iter().for_each(&mut add);
            }
        }
        PlanRequest::Procedures(codes) => {
            for code in codes {
                if config.procedure(code).is_none() {
                    return Err(DomainError::UnknownProcedure(code.clone()));
                }
                add(code);
            }
        }
    }
    if plan.is_empty() {
        return Err(DomainError::EmptyPlan);
    }
    Ok(plan)
}

/// The queue a plan waits in: the first queue that handles every procedure of the plan, else the
/// first one that handles its first procedure (staff then transfer for the rest).
pub fn route<'a>(
    config: &'a SiteConfig,
    plan: &[ProcedureCode],
) -> Result<&'a QueueId, DomainError> {
    if let Some(q) = config
        .queues
        .iter()
        .find(|q| plan.iter().all(|p| q.procedures.contains(p)))
    {
        return Ok(&q.id);
    }
    let first = plan.first().ok_or(DomainError::EmptyPlan)?;
    config
        .queues
        .iter()
        .find(|q| q.procedures.contains(first))
        .map(|q| &q.id)
        .ok_or_else(|| DomainError::NoQueueFor(first.clone()))
}

/// Closes a queue's reception for the rest of the period in progress (the forecast says the day
/// is full, or the floor manager says so), or keeps it open (the floor manager's override).
/// Nothing changes when that mode is already in force.
fn set_reception(
    state: &SiteState,
    queue: &QueueId,
    mode: ReceptionMode,
    reason: ReceptionReason,
    at: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let config = &state.config;
    let q = config
        .queue(queue)
        .ok_or_else(|| DomainError::UnknownQueue(queue.clone()))?;
    if state.reception_mode(queue, at) == Some(mode) {
        return Ok(vec![]);
    }
    // Keeping a queue open overrides a closing, never its hours; outside them there is nothing
    // to close.
    if let Some(Reception::Closed { next_open }) = config.reception(q, at) {
        return match mode {
            ReceptionMode::Open => Err(DomainError::QueueClosed {
                queue: queue.clone(),
                next_open: next_open.map(|t| config.instant(t)),
            }),
            ReceptionMode::Closing => Ok(vec![]),
        };
    }
    let until = match config.reception(q, at) {
        Some(Reception::Open { closes, .. }) => config.instant(closes).to_utc(),
        // No hours, or outside them: until the next business day begins.
        _ => {
            let next = business_day(config, at)
                .succ_opt()
                .expect("a date before the end of time");
            day_start(config, next, at + chrono::Duration::days(1))
        }
    };
    Ok(vec![Event::ReceptionChanged {
        queue: queue.clone(),
        mode,
        reason,
        until,
        at,
        by: None,
    }])
}

/// A ticket for `issue` at `at`. `booked`: a booking checked in within its window, taken
/// whatever the queue's reception (its slot lies within the hours; the resident may come a few
/// minutes before the office opens, or after the day was closed for walk-ins).
pub(super) fn issue_ticket(
    state: &SiteState,
    issue: &IssueCommand,
    at: Timestamp,
    booked: bool,
) -> Result<Event, DomainError> {
    let config = &state.config;
    if let Some(d) = &issue.dispenser {
        if config.dispenser(d).is_none() {
            return Err(DomainError::UnknownDispenser(d.clone()));
        }
    }
    let procedures = plan_for(config, &issue.plan)?;
    let queue_id = route(config, &procedures)?;
    let queue = config
        .queue(queue_id)
        .expect("route returns a configured queue");
    let reception = state.queue_reception(queue, at);
    if reception.state != ReceptionState::Open && !booked {
        return Err(DomainError::QueueClosed {
            queue: queue_id.clone(),
            next_open: reception.next_open,
        });
    }
    let value = state
        .next_value
        .get(queue_id)
        .copied()
        .unwrap_or(queue.range.0)
        .max(queue.range.0);
    if value > queue.range.1 {
        return Err(DomainError::NumbersExhausted(queue_id.clone()));
    }
    let planned_service_s = procedures
        .iter()
        .filter_map(|p| config.procedure(p))
        .map(|p| p.service_s)
        .sum();
    let (life_event, answers) = match &issue.plan {
        PlanRequest::LifeEvent { id, answers } => (Some(id.clone()), answers.clone()),
        PlanRequest::Procedures(_) => (None, Vec::new()),
    };
    Ok(Event::TicketIssued {
        ticket: issue.id.clone(),
        number: TicketNumber::format(&queue.prefix, value),
        value,
        token: issue.token.clone(),
        queue: queue_id.clone(),
        procedures,
        life_event,
        answers,
        priority: issue.priority,
        dispenser: issue.dispenser.clone(),
        lang: issue.lang.clone(),
        idempotency_key: issue.idempotency_key.clone(),
        planned_service_s,
        at,
        booked: None,
        held_until: None,
    })
}
