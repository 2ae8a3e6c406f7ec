//! "Your turn is near" (まもなく順番です): a resident who opted in on the phone page is told once,
//! when the ticket is `places` places or `minutes` minutes from its call, never after it was
//! called. Pure like the rest of the core: the log holds that a ticket asked (and by which
//! channel, never the address) and that its notice is due; the address lives in a side table at
//! the edge (`crate::notices`) and the senders act on the `NearTurnNoticed` event.

use serde::{Deserialize, Serialize};

use super::{DomainError, Event, SiteState, TicketId, TicketStatus, Timestamp};

/// `[sites.notices]`: when a notice goes out, and how residents may ask for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoticeRule {
    /// At most this many places from the call (1 = next).
    pub places: u32,
    /// Or at most this many minutes of estimated wait.
    pub minutes: u32,
    /// The channels offered (e-mail with a mail server, the gateway's link code with a
    /// subscriber of `notice.near_turn`).
    pub channels: Vec<NoticeChannel>,
}

/// How the resident is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeChannel {
    /// An e-mail through the city's mail server (the address in the side table).
    Email,
    /// The city's LINE or SMS gateway: the resident sent it a link code, and it gets the
    /// `notice.near_turn` webhook with that code.
    Link,
}

/// A ticket's notice: asked for, and whether it went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub channel: NoticeChannel,
    /// For [`NoticeChannel::Link`]: the code the resident sends to the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_code: Option<String>,
    pub sent: bool,
}

/// A ticket's notice is asked for (again: the channel changes; after it went out: refused).
pub fn request(
    state: &SiteState,
    token: &str,
    channel: NoticeChannel,
    link_code: Option<String>,
    at: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let t = state
        .ticket_by_token(token)
        .ok_or_else(|| DomainError::TicketNotFound("(token)".into()))?;
    if !state
        .config
        .notices
        .as_ref()
        .is_some_and(|n| n.channels.contains(&channel))
    {
        return Err(DomainError::NoNotices);
    }
    // A ticket called once (and sent back to the line) is never told: refuse rather than
    // promise a notice that would not come.
    let called = t.steps.iter().any(|s| s.called_at.is_some());
    if t.status != TicketStatus::Waiting || called {
        return Err(DomainError::WrongStatus {
            number: t.number.clone(),
            expected: TicketStatus::Waiting.as_str(),
            actual: if called {
                TicketStatus::Called.as_str()
            } else {
                t.status.as_str()
            },
        });
    }
    if t.notice.as_ref().is_some_and(|n| n.sent) {
        return Err(DomainError::NoticeSent);
    }
    Ok(vec![Event::NoticeRequested {
        ticket: t.id.clone(),
        channel,
        link_code: link_code.filter(|_| channel == NoticeChannel::Link),
        at,
    }])
}

/// The resident no longer wants the notice (nothing if none was asked).
pub fn withdraw(state: &SiteState, token: &str, at: Timestamp) -> Result<Vec<Event>, DomainError> {
    let t = state
        .ticket_by_token(token)
        .ok_or_else(|| DomainError::TicketNotFound("(token)".into()))?;
    Ok(match &t.notice {
        Some(n) if !n.sent => vec![Event::NoticeWithdrawn {
            ticket: t.id.clone(),
            at,
        }],
        _ => vec![],
    })
}

impl SiteState {
    /// The notices due at `now`: tickets that asked, still waiting (not called, not held
    /// behind the line for a later slot), within the rule's places or minutes, each with its
    /// place and estimated wait. Only tickets that asked are looked at.
    pub fn due_notices(&self) -> Vec<(TicketId, usize, u64)> {
        let Some(rule) = &self.config.notices else {
            return Vec::new();
        };
        self.notices_pending
            .iter()
            .filter_map(|id| {
                let t = self.tickets.get(id)?;
                t.notice.as_ref()?;
                if t.held_until.is_some() {
                    return None;
                }
                let (place, wait_s) = self.position(t)?;
                let due = place <= rule.places as usize || wait_s <= u64::from(rule.minutes) * 60;
                due.then(|| (id.clone(), place, wait_s))
            })
            .collect()
    }
}

/// `NearTurnNoticed` for every notice due now.
pub fn near_turn(state: &SiteState, at: Timestamp) -> Vec<Event> {
    state
        .due_notices()
        .into_iter()
        .map(|(ticket, place, wait_s)| {
            let t = &state.tickets[&ticket];
            Event::NearTurnNoticed {
                number: t.number.clone(),
                link_code: t.notice.as_ref().and_then(|n| n.link_code.clone()),
                lang: t.lang.clone(),
                ticket,
                place: place as u32,
                estimated_wait_s: wait_s,
                at,
            }
        })
        .collect()
}
