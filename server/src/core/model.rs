//! The validated model of a site: what the core needs to know about it, as plain data. It is
//! built from the TOML configuration by `crate::config` (which reads files and the environment),
//! or in code by scenarios and tests; the core never reads anything itself.

use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{
    CounterId, CounterState, DispenserId, I18n, LifeEventId, PrinterId, ProcedureCode, Profile,
    QuestionId, QueueId, SiteId,
};

/// What happens to a ticket marked as a no-show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoShowAction {
    /// Put the ticket back at the end of its queue (up to `max_requeues` times), then cancel.
    Requeue,
    /// End the visit as a no-show.
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoShowPolicy {
    /// A ticket may be marked no-show only after it was called this many times.
    pub min_calls: u32,
    pub action: NoShowAction,
    pub max_requeues: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procedure {
    pub code: ProcedureCode,
    pub name: I18n,
    /// Typical service time, used by the wait estimate.
    pub service_s: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: QuestionId,
    pub text: I18n,
    /// Procedures added to the visit plan when the answer is yes.
    pub yes: Vec<ProcedureCode>,
    /// Procedures added when the answer is no.
    pub no: Vec<ProcedureCode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifeEvent {
    pub id: LifeEventId,
    pub name: I18n,
    /// Procedures every visit for this life event includes.
    pub procedures: Vec<ProcedureCode>,
    pub questions: Vec<Question>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub id: QueueId,
    pub name: I18n,
    /// Printed before the number ("A" → "A012"); empty for plain numbers.
    pub prefix: String,
    /// Inclusive number range of this queue.
    pub range: (u32, u32),
    /// Procedures this queue handles; a visit plan goes to the first queue that covers all of it.
    pub procedures: Vec<ProcedureCode>,
    /// When it takes tickets (its own, or its site's or the city's); `None`: at any hour.
    pub hours: Option<std::sync::Arc<super::hours::Hours>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterConfig {
    pub id: CounterId,
    pub name: I18n,
    pub state: CounterState,
    pub profile: Profile,
    /// Planned breaks (local start and end): the wait estimate expects no calls during them.
    pub breaks: Vec<(NaiveTime, NaiveTime)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispenserConfig {
    pub id: DispenserId,
    /// The printer agent that prints this dispenser's tickets.
    pub printer_agent: Option<PrinterId>,
    /// Whether the kiosk shows the 優先 (priority) button; staff enable it per dispenser.
    pub priority_button: bool,
}

/// How the screens of a site behave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScreensConfig {
    pub lobby: LobbyConfig,
    pub floor: FloorConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LobbyConfig {
    /// Speak each call (Web Speech API).
    pub voice: bool,
    /// Play a chime before each call.
    pub chime: bool,
    /// Languages the call is spoken in, in order (`ja`, `en`).
    pub languages: Vec<String>,
    /// Extra label languages shown in rotation (`zh`, `ko`, `vi`).
    pub rotate: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FloorConfig {
    /// The floor board raises an alert when someone has waited longer than this.
    pub wait_alert_min: u32,
    /// How often the floor board's suggestion is recomputed (seconds).
    pub suggest_every_s: u32,
}

impl Default for ScreensConfig {
    fn default() -> Self {
        Self {
            lobby: LobbyConfig {
                voice: true,
                chime: true,
                languages: vec!["ja".into(), "en".into()],
                rotate: vec!["zh".into(), "ko".into(), "vi".into()],
            },
            floor: FloorConfig {
                wait_alert_min: 30,
                suggest_every_s: 120,
            },
        }
    }
}

/// Everything the core needs to know about one site.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    pub id: SiteId,
    pub name: I18n,
    pub timezone: Tz,
    /// Local time at which ticket numbers start again.
    pub day_reset: NaiveTime,
    pub no_show: NoShowPolicy,
    pub procedures: Vec<Procedure>,
    pub life_events: Vec<LifeEvent>,
    pub queues: Vec<QueueConfig>,
    pub counters: Vec<CounterConfig>,
    pub dispensers: Vec<DispenserConfig>,
    pub screens: ScreensConfig,
    /// Where residents reach the server from their phones; the QR code on a ticket points here.
    pub public_url: String,
    /// Bookings (来庁予約): `None` when the site takes none.
    pub reservations: Option<super::reserve::ReservationConfig>,
    /// Near-turn notices (`[sites.notices]`): `None` when the site sends none.
    pub notices: Option<super::notice::NoticeRule>,
}

impl SiteConfig {
    pub fn procedure(&self, code: &ProcedureCode) -> Option<&Procedure> {
        self.procedures.iter().find(|p| &p.code == code)
    }
    pub fn life_event(&self, id: &LifeEventId) -> Option<&LifeEvent> {
        self.life_events.iter().find(|l| &l.id == id)
    }
    pub fn queue(&self, id: &QueueId) -> Option<&QueueConfig> {
        self.queues.iter().find(|q| &q.id == id)
    }
    /// Whether `queue` takes tickets at `at` (`None`: it has no reception hours, so always).
    pub fn reception(
        &self,
        queue: &QueueConfig,
        at: super::Timestamp,
    ) -> Option<super::hours::Reception> {
        let hours = queue.hours.as_ref()?;
        Some(hours.at(at.with_timezone(&self.timezone).naive_local()))
    }
    /// A local time of this site as an instant with the site's offset (the earlier one where a
    /// clock change makes it ambiguous; a time that does not exist moves an hour on).
    pub fn instant(&self, local: chrono::NaiveDateTime) -> chrono::DateTime<chrono::FixedOffset> {
        use chrono::{Offset, TimeZone};
        let tz = self.timezone;
        tz.from_local_datetime(&local)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map_or_else(
                || local.and_utc().fixed_offset(),
                |t| t.with_timezone(&t.offset().fix()),
            )
    }
    pub fn counter(&self, id: &CounterId) -> Option<&CounterConfig> {
        self.counters.iter().find(|c| &c.id == id)
    }
    pub fn dispenser(&self, id: &DispenserId) -> Option<&DispenserConfig> {
        self.dispensers.iter().find(|d| &d.id == id)
    }
}
