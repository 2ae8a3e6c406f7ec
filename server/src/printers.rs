//! Print jobs: made from `TicketIssued` events for dispensers that have a printer agent, stored
//! by the projection, and handed to the agent's WebSocket (see `http::printers`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use madoguchi_wire::{I18n, PrintJob};
use tokio::sync::watch;

use crate::core::{Event, PrinterId, SiteState};
use crate::projection::{FinishedJob, NewJob};

/// The print job an event finished, if it is a `PrintJobFinished`.
pub fn finished_for(event: &Event) -> Option<FinishedJob> {
    let Event::PrintJobFinished {
        printer,
        job,
        outcome,
        at,
    } = event
    else {
        return None;
    };
    Some(FinishedJob {
        agent: printer.clone(),
        job: job.to_string(),
        outcome: *outcome,
        at: *at,
    })
}

/// The print job for an event, given the state just after it, if the event issued a ticket at a
/// dispenser with a printer.
pub fn job_for(state: &SiteState, event: &Event) -> Option<NewJob> {
    let Event::TicketIssued {
        ticket,
        dispenser: Some(dispenser),
        ..
    } = event
    else {
        return None;
    };
    let config = &state.config;
    let agent = config.dispenser(dispenser)?.printer_agent.clone()?;
    let t = state.tickets.get(ticket)?;
    let (position, estimate) = state.position(t).unwrap_or((1, 0));
    let name_of = |code: &crate::core::ProcedureCode| {
        config.procedure(code).map_or_else(
            || I18n {
                ja: code.to_string(),
                en: code.to_string(),
            },
            |p| p.name.clone(),
        )
    };
    let job = PrintJob {
        id: t.id.to_string(),
        site: config.id.to_string(),
        site_name: config.name.clone(),
        dispenser: dispenser.to_string(),
        number: t.number.to_string(),
        queue_name: config.queue(&t.queue).map(|q| q.name.clone())?,
        procedures: t.procedures.iter().map(name_of).collect(),
        life_event: t
            .life_event
            .as_ref()
            .and_then(|l| config.life_event(l))
            .map(|l| l.name.clone()),
        priority: t.priority,
        ahead: position - 1,
        estimated_wait_s: estimate,
        issued_at: t.issued_at,
        issued_local: t
            .issued_at
            .with_timezone(&config.timezone)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        url: format!("{}/t/{}", config.public_url, t.token),
        lang: t.lang.clone(),
    };
    Some(NewJob {
        agent,
        seq: state.seq,
        job,
    })
}

/// Wakes an agent's connection when it has new jobs: one counter per agent that only grows.
#[derive(Clone, Default)]
pub struct PrinterHub {
    agents: Arc<Mutex<HashMap<PrinterId, watch::Sender<u64>>>>,
    owners: Arc<Mutex<HashMap<PrinterId, watch::Sender<u64>>>>,
}

impl PrinterHub {
    fn sender(&self, agent: &PrinterId) -> watch::Sender<u64> {
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(agent.clone())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    /// Tells the agent's connection, if any, that jobs are waiting.
    pub fn notify(&self, agent: &PrinterId) {
        self.sender(agent).send_modify(|n| *n += 1);
    }

    pub fn subscribe(&self, agent: &PrinterId) -> watch::Receiver<u64> {
        self.sender(agent).subscribe()
    }

    /// Makes a new connection the agent's only one: returns its number and a receiver that
    /// changes when a newer connection takes over.
    pub fn claim(&self, agent: &PrinterId) -> (u64, watch::Receiver<u64>) {
        let sender = self
            .owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(agent.clone())
            .or_insert_with(|| watch::channel(0).0)
            .clone();
        let mut mine = 0;
        sender.send_modify(|n| {
            *n += 1;
            mine = *n;
        });
        let mut rx = sender.subscribe();
        rx.mark_unchanged();
        (mine, rx)
    }
}
