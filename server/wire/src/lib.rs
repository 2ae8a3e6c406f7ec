//! Wire types shared by the madoguchi server and its printer agent, defined once.
//!
//! The printer protocol runs over the WebSocket `GET /api/v1/printers/{agent}/jobs` (role
//! `printer`). The server sends [`ServerMessage`]s, the agent answers with [`AgentMessage`]s, all
//! as JSON text frames.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A text in Japanese and English; Japanese is shown first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct I18n {
    pub ja: String,
    pub en: String,
}

/// What a printer reports, as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PrinterState {
    /// Ready to print.
    Online,
    /// Prints, but the roll will run out soon.
    PaperNearEnd,
    /// Out of paper: jobs wait.
    PaperEnd,
    /// Cover open: jobs wait.
    CoverOpen,
    /// The printer says it is offline: jobs wait.
    Offline,
    /// The agent cannot reach the printer (no connection, no answer).
    Unreachable,
    /// The agent is not connected to the server (set by the server).
    Disconnected,
    /// Nothing heard yet since the server started.
    Unknown,
}

impl PrinterState {
    /// Whether a job can be printed now.
    pub fn can_print(self) -> bool {
        matches!(self, Self::Online | Self::PaperNearEnd)
    }

    /// Whether a resident at the dispenser should be told to ask staff.
    pub fn needs_staff(self) -> bool {
        !matches!(self, Self::Online | Self::PaperNearEnd | Self::Unknown)
    }

    pub const ALL: [PrinterState; 8] = [
        Self::Online,
        Self::PaperNearEnd,
        Self::PaperEnd,
        Self::CoverOpen,
        Self::Offline,
        Self::Unreachable,
        Self::Disconnected,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::PaperNearEnd => "paper_near_end",
            Self::PaperEnd => "paper_end",
            Self::CoverOpen => "cover_open",
            Self::Offline => "offline",
            Self::Unreachable => "unreachable",
            Self::Disconnected => "disconnected",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for PrinterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a ticket shows, so the agent never needs a second lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrintJob {
    /// The job id; the same as the ticket id, so a re-sent job is recognisable.
    pub id: String,
    pub site: String,
    pub site_name: I18n,
    pub dispenser: String,
    pub number: String,
    pub queue_name: I18n,
    /// What the resident came for (the visit plan), in plan order.
    pub procedures: Vec<I18n>,
    pub life_event: Option<I18n>,
    pub priority: bool,
    /// Tickets ahead in line when issued.
    pub ahead: usize,
    pub estimated_wait_s: u64,
    pub issued_at: DateTime<Utc>,
    /// The local time of issue as printed ("2026-11-24 10:05").
    pub issued_local: String,
    /// The phone page, encoded in the QR code.
    pub url: String,
    /// The resident's language choice at the kiosk (`ja`, `en`, …).
    pub lang: Option<String>,
}

/// Server → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// A job to print. Sent again after a reconnect until acknowledged.
    Job {
        job: PrintJob,
        /// Server time when sent, so the agent can judge the job's age without trusting clocks.
        sent_at: DateTime<Utc>,
    },
}

/// How a job ended at the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// The printer took the bytes and reported no error afterwards.
    Printed,
    /// Older than the configured age when it could have been printed: not printed.
    Expired,
    /// The agent stopped while printing it; it is not printed again, in case it did print.
    Uncertain,
}

/// Agent → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The printer's state: sent on connect, on every change, and now and then while idle.
    Status { state: PrinterState },
    /// A job is finished and must not be sent again.
    Done { job: String, outcome: JobOutcome },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_a_stable_json_shape() {
        let m = AgentMessage::Done {
            job: "j1".into(),
            outcome: JobOutcome::Printed,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"done","job":"j1","outcome":"printed"}"#
        );
        let s = AgentMessage::Status {
            state: PrinterState::PaperEnd,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"type":"status","state":"paper_end"}"#
        );
        for state in PrinterState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
    }
}
