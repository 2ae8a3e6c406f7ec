//! Read models computed from the state: the live board, ticket views, the public event feed
//! (numbers only, never a token) and visit records for the stay-time KPI.

use serde::{Deserialize, Serialize};

use super::model::SiteConfig;
use super::state::WaitKey;
use super::{
    CancelReason, CounterId, CounterState, Event, LifeEventId, PrinterId, PrinterState,
    ProcedureCode, QueueId, SiteState, Target, Ticket, TicketId, TicketNumber, TicketStatus,
    Timestamp,
};

/// What the phone page shows: the resident's own ticket, without ids or tokens.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PhoneView {
    pub site: PhoneSite,
    pub number: TicketNumber,
    pub status: TicketStatus,
    pub queue: QueueId,
    pub procedures: Vec<ProcedureCode>,
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: Timestamp,
    pub position: Option<usize>,
    pub estimated_wait_s: Option<u64>,
    pub counter: Option<CounterId>,
    /// Calls of the current step: a recall changes it, so the phone alerts again.
    pub calls: u32,
    /// The resident's answer to the satisfaction question, once given.
    pub satisfaction: Option<u8>,
    /// The near-turn notice this site offers (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notices: Option<super::notice::NoticeRule>,
    /// The notice the resident asked for: its channel, the link code to send to the gateway,
    /// and whether it went out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<PhoneNotice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PhoneNotice {
    pub channel: super::notice::NoticeChannel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_code: Option<String>,
    pub sent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PhoneSite {
    pub id: super::SiteId,
    pub name: super::I18n,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BoardView {
    pub seq: u64,
    pub queues: Vec<BoardQueue>,
    pub counters: Vec<BoardCounter>,
    pub recent_calls: Vec<RecentCallView>,
    pub printers: Vec<BoardPrinter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BoardPrinter {
    pub id: PrinterId,
    pub state: PrinterState,
    /// When the state last changed.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BoardQueue {
    pub id: QueueId,
    pub waiting: usize,
    /// Estimated wait for a ticket issued now.
    pub estimated_wait_s: u64,
    /// When the longest wait at the head of this queue's line began: the earlier of the first
    /// priority ticket's and the first other ticket's (a ticket put back after a no-show keeps
    /// its first wait's start, but counts only once it is at the head again).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub oldest_since: Option<Timestamp>,
    /// Whether it takes tickets now, and when it next does.
    #[serde(flatten)]
    pub reception: QueueReception,
}

/// Whether a queue takes tickets: `open`; `closing` (the day is full, or the floor closed it:
/// 「本日の受付は終了しました」); `closed` (outside its reception hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceptionState {
    Open,
    Closing,
    Closed,
}

/// A queue's reception at one moment. Times carry the site's UTC offset; a time not set is left
/// out (the board goes to every lobby socket with every event: a queue without hours adds only
/// its `state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueueReception {
    pub state: ReceptionState,
    /// When it next takes tickets (closing, closed; none within a year).
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_open: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// The last-reception time of the period in progress (open, with hours).
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reception: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// When the period in progress ends: the counters serve until then (open, with hours).
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes: Option<chrono::DateTime<chrono::FixedOffset>>,
}

impl QueueReception {
    fn open() -> Self {
        Self {
            state: ReceptionState::Open,
            next_open: None,
            last_reception: None,
            closes: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BoardCounter {
    pub id: CounterId,
    pub state: CounterState,
    pub profile: super::Profile,
    pub ticket: Option<BoardTicket>,
    /// Tickets transferred to this counter by name, waiting for it.
    pub waiting: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BoardTicket {
    pub number: TicketNumber,
    pub status: TicketStatus,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecentCallView {
    pub number: TicketNumber,
    pub counter: CounterId,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// A ticket as staff and the resident see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TicketView {
    pub id: TicketId,
    pub number: TicketNumber,
    /// Only in the reply to the dispenser that issued the ticket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub status: TicketStatus,
    /// The queue of the current step (for a step sent to a named counter, the first queue).
    pub queue: QueueId,
    /// Where the current step waits or is served.
    pub target: Target,
    pub procedures: Vec<ProcedureCode>,
    pub life_event: Option<LifeEventId>,
    pub priority: bool,
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: Timestamp,
    /// Place in line, 1 for next; absent unless waiting.
    pub position: Option<usize>,
    pub estimated_wait_s: Option<u64>,
    pub counter: Option<CounterId>,
    pub calls: u32,
    pub steps: usize,
}

/// An event as screens may see it: numbers, counters and queues, never tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicEvent {
    pub kind: &'static str,
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<TicketNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<CounterId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_to: Option<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requeued: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<CounterState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub printer: Option<PrinterId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub printer_state: Option<PrinterState>,
}

/// One finished visit, as stored in the `visits` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisitRecord {
    pub ticket: TicketId,
    pub site: String,
    /// Business day (local).
    pub day: chrono::NaiveDate,
    pub number: TicketNumber,
    pub life_event: Option<LifeEventId>,
    pub procedures: Vec<ProcedureCode>,
    pub priority: bool,
    pub arrival: Timestamp,
    pub departure: Timestamp,
    /// `done`, `no_show` or `cancelled`.
    pub outcome: TicketStatus,
    pub cancel_reason: Option<CancelReason>,
    /// 1 (不満) to 5 (満足), when the resident answered.
    pub satisfaction: Option<u8>,
    pub stay_s: f64,
    pub wait_s: f64,
    pub service_s: f64,
    pub steps: Vec<VisitStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisitStep {
    pub target: Target,
    pub counter: Option<CounterId>,
    pub enqueued_at: Timestamp,
    pub called_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub calls: u32,
    pub wait_s: f64,
    pub service_s: f64,
}

fn secs(from: Timestamp, to: Timestamp) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

impl VisitRecord {
    /// The record of an ended visit; `None` while the visit is still open.
    pub fn from_ticket(config: &SiteConfig, t: &Ticket) -> Option<VisitRecord> {
        let departure = t.departed_at?;
        let steps: Vec<VisitStep> = t
            .steps
            .iter()
            .map(|s| {
                let end = s.ended_at.unwrap_or(departure);
                // Wait: until the call that was answered, or until the step ended unanswered.
                let wait_until = match (s.started_at, s.called_at) {
                    (Some(_), Some(called)) => called,
                    _ => end,
                };
                VisitStep {
                    target: s.target.clone(),
                    counter: s.counter.clone(),
                    enqueued_at: s.enqueued_at,
                    called_at: s.called_at,
                    started_at: s.started_at,
                    ended_at: s.ended_at,
                    calls: s.calls,
                    wait_s: secs(s.enqueued_at, wait_until),
                    service_s: s.started_at.map_or(0.0, |st| secs(st, end)),
                }
            })
            .collect();
        Some(VisitRecord {
            ticket: t.id.clone(),
            site: config.id.to_string(),
            day: super::business_day(config, t.issued_at),
            number: t.number.clone(),
            life_event: t.life_event.clone(),
            procedures: t.procedures.clone(),
            priority: t.priority,
            arrival: t.issued_at,
            departure,
            outcome: t.status,
            cancel_reason: t.cancel_reason,
            satisfaction: t.satisfaction,
            stay_s: secs(t.issued_at, departure),
            wait_s: steps.iter().map(|s| s.wait_s).sum(),
            service_s: steps.iter().map(|s| s.service_s).sum(),
            steps,
        })
    }
}

impl SiteState {
    /// Open counters that serve a line.
    fn servers(&self, target: &Target) -> u64 {
        match target {
            Target::Counter(_) => 1,
            Target::Queue(q) => self
                .counters
                .iter()
                .filter(|c| c.state == CounterState::Open && c.profile.queues.contains(q))
                .count()
                .max(1) as u64,
        }
    }

    /// The planned service of the tickets ahead, shared among the open counters serving the
    /// line: the `naive` baseline; it ignores service under way, shared counters and breaks.
    pub fn naive_wait<'t>(&self, target: &Target, ahead: impl Iterator<Item = &'t Ticket>) -> u64 {
        ahead.map(|t| u64::from(t.planned_service_s)).sum::<u64>() / self.servers(target)
    }

    /// The estimates computed by the site's owner, if any: for this seq, or for an earlier one
    /// (between the events of one append, or while a burst of commands defers the forecast; see
    /// `site::Actor::refresh_estimates`). Tickets issued since get [`Self::wait_in_line`]'s interim.
    fn current_estimates(&self) -> Option<&super::Estimates> {
        (self.estimates.0.seq > 0 && self.estimates.0.seq <= self.seq).then_some(&self.estimates.0)
    }

    /// The estimated wait of the ticket at `key` in `line`: the latest forecast's, or for a
    /// ticket it has not seen (issued since), an interim one: the forecast of the nearest ticket
    /// ahead that it saw (or of someone joining the line then), plus the planned service from
    /// there on shared among the open counters serving the line. Without any forecast, the naive
    /// estimate.
    fn wait_in_line(&self, target: &Target, line: &imbl::OrdSet<WaitKey>, key: &WaitKey) -> u64 {
        let estimates = self.current_estimates();
        if let Some(e) = estimates.and_then(|e| e.tickets.get(&key.ticket)) {
            return *e;
        }
        // Back from the ticket to the nearest one the forecast saw, adding up planned service;
        // with none, the walk covers the whole line ahead: the naive estimate.
        let mut planned = 0;
        let mut anchor = None;
        for k in line.range(..key).rev() {
            planned += u64::from(self.tickets[&k.ticket].planned_service_s);
            anchor = estimates.and_then(|e| e.tickets.get(&k.ticket)).copied();
            if anchor.is_some() {
                break;
            }
        }
        let anchor = anchor.or_else(|| estimates.and_then(|e| e.lines.get(target)).copied());
        anchor.unwrap_or(0) + planned / self.servers(target)
    }

    /// Place in line (1 = next) and estimated wait of a waiting ticket.
    pub fn position(&self, t: &Ticket) -> Option<(usize, u64)> {
        if t.status != TicketStatus::Waiting {
            return None;
        }
        let target = &t.step().target;
        let key = t.wait_key();
        let line = self.waiting.get(target)?;
        // Most tickets join at the end of their line: then no walk is needed to count.
        let ahead = if line.get_max() == Some(&key) {
            line.len() - 1
        } else {
            line.range(..&key).count()
        };
        Some((ahead + 1, self.wait_in_line(target, line, &key)))
    }

    /// The resident's own ticket as the phone page shows it, without ids or tokens.
    pub fn phone_view(&self, token: &str) -> Option<PhoneView> {
        let t = self.ticket_by_token(token)?;
        let v = self.ticket_view(t, false);
        Some(PhoneView {
            site: PhoneSite {
                id: self.config.id.clone(),
                name: self.config.name.clone(),
            },
            number: v.number,
            status: v.status,
            queue: v.queue,
            procedures: t.procedures.clone(),
            issued_at: v.issued_at,
            position: v.position,
            estimated_wait_s: v.estimated_wait_s,
            counter: v.counter,
            calls: v.calls,
            satisfaction: t.satisfaction,
            notices: self.config.notices.clone(),
            notice: t.notice.as_ref().map(|n| PhoneNotice {
                channel: n.channel,
                link_code: n.link_code.clone(),
                sent: n.sent,
            }),
        })
    }

    pub fn ticket_view(&self, t: &Ticket, with_token: bool) -> TicketView {
        let place = self.position(t);
        let step = t.step();
        TicketView {
            id: t.id.clone(),
            number: t.number.clone(),
            token: with_token.then(|| t.token.clone()),
            status: t.status,
            queue: match &step.target {
                Target::Queue(q) => q.clone(),
                Target::Counter(_) => t.queue.clone(),
            },
            target: step.target.clone(),
            procedures: t.procedures.clone(),
            life_event: t.life_event.clone(),
            priority: t.priority,
            issued_at: t.issued_at,
            position: place.map(|p| p.0),
            estimated_wait_s: place.map(|p| p.1),
            counter: match t.status {
                TicketStatus::Called | TicketStatus::Serving => step.counter.clone(),
                _ => None,
            },
            calls: step.calls,
            steps: t.steps.len(),
        }
    }

    /// The wait a ticket issued now into `queue` would have: the estimate of the latest ticket
    /// in the line (so the lobby and that ticket agree), or for someone joining an empty line.
    pub fn new_ticket_wait(&self, queue: &QueueId) -> u64 {
        let target = Target::Queue(queue.clone());
        let line = self.waiting.get(&target);
        match line.and_then(|l| l.iter().rev().find(|k| k.rank == 1).map(|k| (l, k))) {
            Some((line, last)) => self.wait_in_line(&target, line, last),
            None => self
                .current_estimates()
                .and_then(|e| e.lines.get(&target).copied())
                .unwrap_or_else(|| {
                    let tickets = line.into_iter().flatten().map(|k| &self.tickets[&k.ticket]);
                    self.naive_wait(&target, tickets)
                }),
        }
    }

    pub fn board(&self) -> BoardView {
        let queues = self
            .config
            .queues
            .iter()
            .map(|q| {
                let target = Target::Queue(q.id.clone());
                let line = self.waiting.get(&target);
                BoardQueue {
                    id: q.id.clone(),
                    waiting: line.map_or(0, |l| l.len()),
                    estimated_wait_s: self.new_ticket_wait(&q.id),
                    reception: self
                        .reception_now
                        .0
                        .get(&q.id)
                        .cloned()
                        .unwrap_or_else(QueueReception::open),
                    // The heads of the two ranks (priority, others): a line is ordered by rank,
                    // then by when the ticket (re)joined it.
                    oldest_since: line
                        .into_iter()
                        .flat_map(|l| {
                            let others = l.iter().find(|k| k.rank == 1);
                            l.get_min().into_iter().chain(others)
                        })
                        .map(|k| self.tickets[&k.ticket].step().enqueued_at)
                        .min(),
                }
            })
            .collect();
        let counters = self
            .counters
            .iter()
            .map(|c| BoardCounter {
                id: c.id.clone(),
                state: c.state,
                profile: c.profile.clone(),
                ticket: c
                    .current
                    .as_ref()
                    .map(|id| self.board_ticket(&self.tickets[id])),
                waiting: self
                    .waiting
                    .get(&Target::Counter(c.id.clone()))
                    .map_or(0, |l| l.len()),
            })
            .collect();
        BoardView {
            seq: self.seq,
            queues,
            counters,
            recent_calls: self
                .recent_calls
                .iter()
                .map(|c| RecentCallView {
                    number: c.number.clone(),
                    counter: c.counter.clone(),
                    at: c.at,
                })
                .collect(),
            printers: self
                .printers
                .iter()
                .map(|(id, (state, since))| BoardPrinter {
                    id: id.clone(),
                    state: *state,
                    since: *since,
                })
                .collect(),
        }
    }

    /// The public form of an event, given the state after it was applied.
    pub fn public_event(&self, event: &Event) -> PublicEvent {
        let mut p = PublicEvent {
            kind: event.kind(),
            at: event.at(),
            number: None,
            counter: None,
            queue: None,
            transfer_to: None,
            requeued: None,
            state: None,
            printer: None,
            printer_state: None,
        };
        // A resident's rating stays private: screens see only that one was given.
        if let Some(t) = event
            .ticket()
            .filter(|_| !matches!(event, Event::SatisfactionGiven { .. }))
            .and_then(|id| self.tickets.get(id))
        {
            p.number = Some(t.number.clone());
        }
        match event {
            Event::DayStarted { .. } => {}
            Event::TicketIssued { queue, .. } => p.queue = Some(queue.clone()),
            Event::TicketCalled { counter, .. } | Event::ServiceStarted { counter, .. } => {
                p.counter = Some(counter.clone())
            }
            Event::StepCompleted {
                counter,
                transfer_to,
                ..
            } => {
                p.counter = Some(counter.clone());
                p.transfer_to = transfer_to.clone();
            }
            Event::NoShowMarked {
                counter, requeued, ..
            } => {
                p.counter = Some(counter.clone());
                p.requeued = Some(*requeued);
            }
            Event::TicketCancelled { .. } => {}
            Event::CounterStateChanged { counter, state, .. } => {
                p.counter = Some(counter.clone());
                p.state = Some(*state);
            }
            Event::ProfileChanged { counter, .. } => p.counter = Some(counter.clone()),
            Event::PrinterStateChanged { printer, state, .. } => {
                p.printer = Some(printer.clone());
                p.printer_state = Some(*state);
            }
            Event::SatisfactionGiven { .. } => {}
            Event::PrintJobFinished { printer, .. } => p.printer = Some(printer.clone()),
            Event::ReceptionChanged { queue, .. } => p.queue = Some(queue.clone()),
            // A booking's code is its only credential: screens see the queue, never the code.
            Event::ReservationMade { queue, .. } | Event::SlotCapacitySet { queue, .. } => {
                p.queue = Some(queue.clone())
            }
            Event::ReservationMoved { .. } | Event::ReservationCancelled { .. } => {}
            Event::TicketReleased { .. } => {}
            // Screens see that a ticket asked or was told, never how.
            Event::NoticeRequested { .. }
            | Event::NoticeWithdrawn { .. }
            | Event::NearTurnNoticed { .. } => {}
        }
        p
    }
}

/// A counter with its profile, as the catalog and counter actions show it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CounterView {
    pub id: CounterId,
    pub name: crate::core::I18n,
    pub state: CounterState,
    pub profile: super::Profile,
    pub ticket: Option<BoardTicket>,
}

impl SiteState {
    /// `queue`'s reception at `at`: its hours, and what the forecast or the floor set.
    pub fn queue_reception(
        &self,
        queue: &super::model::QueueConfig,
        at: Timestamp,
    ) -> QueueReception {
        use super::hours::Reception;
        let config = &self.config;
        let mode = self.reception_mode(&queue.id, at);
        match config.reception(queue, at) {
            None if mode == Some(super::ReceptionMode::Closing) => QueueReception {
                state: ReceptionState::Closing,
                next_open: self
                    .reception
                    .get(&queue.id)
                    .map(|(_, until)| until.with_timezone(&config.timezone).fixed_offset()),
                last_reception: None,
                closes: None,
            },
            None => QueueReception::open(),
            Some(Reception::Closed { next_open }) => QueueReception {
                state: ReceptionState::Closed,
                next_open: next_open.map(|l| config.instant(l)),
                last_reception: None,
                closes: None,
            },
            Some(Reception::Open { closes, .. }) if mode == Some(super::ReceptionMode::Closing) => {
                let hours = queue.hours.as_ref().expect("a reception comes from hours");
                QueueReception {
                    state: ReceptionState::Closing,
                    next_open: hours.next_open(closes).map(|l| config.instant(l)),
                    last_reception: None,
                    closes: Some(config.instant(closes)),
                }
            }
            Some(Reception::Open { last, closes }) => QueueReception {
                state: ReceptionState::Open,
                next_open: None,
                last_reception: Some(config.instant(last)),
                closes: Some(config.instant(closes)),
            },
        }
    }

    /// Recomputes every queue's reception at `at` for the board; true when one changed.
    pub fn refresh_reception(&mut self, at: Timestamp) -> bool {
        let now: std::collections::BTreeMap<_, _> = self
            .config
            .queues
            .iter()
            .map(|q| (q.id.clone(), self.queue_reception(q, at)))
            .collect();
        let changed = *self.reception_now.0 != now;
        if changed {
            self.reception_now = super::state::ReceptionCache(std::sync::Arc::new(now));
        }
        changed
    }

    /// The next moment after `at` when a queue's reception may change by the clock alone (a
    /// period opens, reception ends, a closing or an override runs out).
    pub fn next_reception_change(&self, at: Timestamp) -> Option<Timestamp> {
        let from_hours = self.reception_now.0.values().flat_map(|r| {
            [r.next_open, r.last_reception, r.closes]
                .into_iter()
                .flatten()
                .map(|t| t.to_utc())
        });
        let from_log = self.reception.values().map(|(_, until)| *until);
        from_hours.chain(from_log).filter(|t| *t > at).min()
    }

    /// Queues the forecast says are full: open by their hours and `close_when_full`, not kept
    /// open by the floor, and a ticket issued now would still be served (its wait plus the
    /// queue's shortest procedure) when the period ends, less the margin. A newcomer's wait is
    /// the latest waiting ticket's estimate plus that ticket's planned service shared by the
    /// open counters serving the queue (the estimate of an empty line when nobody waits).
    pub fn full_queues(&self, at: Timestamp) -> Vec<QueueId> {
        self.config
            .queues
            .iter()
            .filter(|q| {
                let Some(hours) = q.hours.as_ref().filter(|h| h.close_when_full) else {
                    return false;
                };
                if self.reception_mode(&q.id, at).is_some() {
                    return false;
                }
                let Some(super::hours::Reception::Open { closes, .. }) =
                    self.config.reception(q, at)
                else {
                    return false;
                };
                let shortest = q
                    .procedures
                    .iter()
                    .filter_map(|p| self.config.procedure(p))
                    .map(|p| u64::from(p.service_s))
                    .min()
                    .unwrap_or(0);
                let done =
                    at + chrono::Duration::seconds((self.newcomer_wait(&q.id) + shortest) as i64);
                let limit = self.config.instant(closes).to_utc()
                    - chrono::Duration::minutes(i64::from(hours.closing_margin_min));
                done > limit
            })
            .map(|q| q.id.clone())
            .collect()
    }

    /// The wait of a ticket that would join `queue` now, behind everyone waiting (see
    /// [`SiteState::full_queues`]).
    fn newcomer_wait(&self, queue: &QueueId) -> u64 {
        let wait = self.new_ticket_wait(queue);
        let Some(last) = self
            .waiting
            .get(&Target::Queue(queue.clone()))
            .and_then(|l| l.iter().next_back())
            .and_then(|k| self.tickets.get(&k.ticket))
        else {
            return wait;
        };
        let serving = self
            .counters
            .iter()
            .filter(|c| c.state == CounterState::Open && c.profile.queues.contains(queue))
            .count()
            .max(1) as u64;
        wait + u64::from(last.planned_service_s) / serving
    }

    /// A counter's ticket: since the call, or since service began.
    fn board_ticket(&self, t: &Ticket) -> BoardTicket {
        BoardTicket {
            number: t.number.clone(),
            status: t.status,
            since: match t.status {
                TicketStatus::Serving => t.step().started_at,
                _ => t.step().called_at,
            },
        }
    }

    pub fn counter_view(&self, id: &CounterId) -> Option<CounterView> {
        let c = self.counter(id)?;
        let name = self.config.counter(id)?.name.clone();
        Some(CounterView {
            id: c.id.clone(),
            name,
            state: c.state,
            profile: c.profile.clone(),
            ticket: c
                .current
                .as_ref()
                .map(|t| self.board_ticket(&self.tickets[t])),
        })
    }
}
