//! Integrations: outgoing webhooks to the city's systems (the counter-support SaaS, a LINE or
//! SMS gateway), and the public form of the event log that analysts' pipelines read.
//!
//! A webhook subscriber is a projection of a site's log with a checkpoint of its own
//! ([`store::DeliveryStore`]): its deliverer ([`deliver`]) reads the events after the checkpoint,
//! turns those the subscriber asked for into payloads ([`payload`]), signs them ([`sign`]) and
//! posts them in order, retrying with backoff; one that keeps failing becomes a dead letter the
//! floor can send again. The log's seq is the event id receivers dedupe on. See
//! docs/INTEGRATIONS.md.

pub mod deliver;
pub mod store;

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::core::{Event, SiteId, Target};

pub use deliver::{DeadLetter, HookStatus, Hooks};
pub use store::DeliveryStore;

/// The kinds of webhook a subscriber may ask for (`events = [...]`).
pub const KINDS: &[&str] = &[
    "ticket.issued",
    "ticket.called",
    "ticket.transferred",
    "visit.completed",
    "satisfaction.given",
    "printer.needs_staff",
    "reservation.made",
    "reservation.changed",
    "reservation.cancelled",
    "notice.near_turn",
];

/// The kind a completed visit is sent as; with `handover`, delivering it counts the visit as
/// handed over to the counter-support system (the KPI's `handed_over`).
pub const VISIT_COMPLETED: &str = "visit.completed";

/// One `[[sites.webhooks]]` subscriber.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Names the subscriber in the API, the floor board and the delivery checkpoint.
    pub name: String,
    pub url: String,
    /// The signing secret, read from the environment variable `secret_env` at start.
    pub secret: String,
    pub secret_env: String,
    /// The kinds sent (a subset of [`KINDS`]).
    pub events: Vec<String>,
    /// Completed visits delivered here count as handed over (the KPI's `handed_over`).
    pub handover: bool,
    /// Tries of one event before it becomes a dead letter.
    pub max_attempts: u32,
    /// The pause after the first failed try; it doubles up to `backoff_max` (with jitter).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// One request may take this long.
    pub timeout: Duration,
    /// CA certificates (PEM) trusted besides the public roots, from `ca_file`.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for WebhookConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret_env", &self.secret_env)
            .field("events", &self.events)
            .field("handover", &self.handover)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    pub fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == kind)
    }

    /// The pause before try `attempt + 1` after `attempt` failed ones: exponential, capped, with
    /// jitter (50–100 % of the step, by `jitter` in 0..1), so receivers coming back are not hit
    /// by every sender at once.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .backoff_initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.backoff_max);
        // Half fixed, half random: never shorter than half the step.
        cap.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// `Madoguchi-Signature` for `body` sent at unix time `t`: `t=<t>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>" with the secret>` (the scheme Stripe uses; the time bounds replays).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("t={t},v1={}", hex(&digest))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The key of [`reservation_ref`]: the deployment's own, kept beside the log (see
/// [`DeliveryStore::reference_key`]) and set once at start; a random one for the process
/// until then (tests of the library).
static REFERENCE_KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();

/// Sets the key of [`reservation_ref`] (at start, before any event is delivered). False if a
/// different one was already in use.
pub fn set_reference_key(key: [u8; 32]) -> bool {
    *REFERENCE_KEY.get_or_init(|| key) == key
}

/// A booking as receivers and analysts see it: 16 hex digits of an HMAC of its code under the
/// deployment's secret key. Stable, so a booking's made, changed and cancelled events can be
/// joined; keyed, so nobody can try the 26^8 codes against it (the code is the resident's only
/// credential and stays with the resident).
pub fn reservation_ref(code: &str) -> String {
    let key = REFERENCE_KEY.get_or_init(rand::random);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(code.as_bytes());
    hex(&mac.finalize().into_bytes()[..8])
}

/// What a webhook body says of a completed visit, read from the stored visit record.
#[derive(Debug, Clone, Serialize)]
pub struct VisitFacts {
    pub number: String,
    pub life_event: Option<String>,
    pub procedures: Vec<String>,
    pub arrival: String,
    pub departure: String,
    pub stay_s: f64,
    pub wait_s: f64,
    pub service_s: f64,
    pub steps: u32,
}

/// The webhook kind of an event, if it has one.
pub fn kind_of(event: &Event) -> Option<&'static str> {
    Some(match event {
        Event::TicketIssued { .. } => "ticket.issued",
        Event::TicketCalled { .. } => "ticket.called",
        Event::StepCompleted {
            transfer_to: Some(_),
            ..
        } => "ticket.transferred",
        Event::StepCompleted {
            transfer_to: None, ..
        } => VISIT_COMPLETED,
        Event::SatisfactionGiven { .. } => "satisfaction.given",
        Event::PrinterStateChanged { state, .. } if needs_staff(*state) => "printer.needs_staff",
        Event::ReservationMade { .. } => "reservation.made",
        Event::ReservationMoved { .. } => "reservation.changed",
        Event::ReservationCancelled { .. } => "reservation.cancelled",
        // For the city's LINE or SMS gateway: the resident sent it the link code. (E-mail
        // notices leave by SMTP, see `crate::notices`.)
        Event::NearTurnNoticed {
            link_code: Some(_), ..
        } => "notice.near_turn",
        _ => return None,
    })
}

fn needs_staff(state: crate::core::PrinterState) -> bool {
    use crate::core::PrinterState::*;
    matches!(
        state,
        PaperNearEnd | PaperEnd | CoverOpen | Offline | Unreachable | Disconnected
    )
}

fn target(t: &Target) -> Value {
    match t {
        Target::Queue(q) => json!({ "queue": q }),
        Target::Counter(c) => json!({ "counter": c }),
    }
}

/// The body of the webhook for event `seq` of `site`: `{id, site, type, at, data}`. `visit` is
/// the stored record of a completed visit (stay, wait, service). `None` for an event without a
/// webhook kind.
pub fn payload(
    site: &SiteId,
    seq: u64,
    event: &Event,
    visit: Option<&VisitFacts>,
) -> Option<Value> {
    let kind = kind_of(event)?;
    let data = match event {
        Event::TicketIssued {
            ticket,
            number,
            queue,
            procedures,
            life_event,
            answers,
            priority,
            dispenser,
            lang,
            booked,
            ..
        } => json!({
            "ticket": ticket,
            "number": number,
            "queue": queue,
            "procedures": procedures,
            "life_event": life_event,
            "answers": answers.iter().map(|(q, a)| (q.to_string(), Value::Bool(*a))).collect::<serde_json::Map<_, _>>(),
            "priority": priority,
            "dispenser": dispenser,
            "lang": lang,
            "booked": booked.is_some(),
        }),
        Event::TicketCalled {
            ticket, counter, ..
        } => {
            json!({ "ticket": ticket, "counter": counter })
        }
        Event::StepCompleted {
            ticket,
            counter,
            transfer_to: Some(to),
            ..
        } => json!({ "ticket": ticket, "counter": counter, "to": target(to) }),
        Event::StepCompleted {
            ticket, counter, ..
        } => {
            let mut data = json!({ "ticket": ticket, "counter": counter });
            if let (Some(visit), Some(map)) = (visit, data.as_object_mut()) {
                if let Ok(Value::Object(facts)) = serde_json::to_value(visit) {
                    map.extend(facts);
                }
            }
            data
        }
        Event::SatisfactionGiven { ticket, score, .. } => {
            json!({ "ticket": ticket, "score": score })
        }
        Event::PrinterStateChanged { printer, state, .. } => {
            json!({ "printer": printer, "state": state })
        }
        Event::ReservationMade {
            code,
            queue,
            procedures,
            life_event,
            slot_start,
            slot_end,
            ..
        } => json!({
            "reservation": reservation_ref(code),
            "queue": queue,
            "procedures": procedures,
            "life_event": life_event,
            "slot_start": slot_start,
            "slot_end": slot_end,
        }),
        Event::ReservationMoved {
            code,
            slot_start,
            slot_end,
            ..
        } => json!({
            "reservation": reservation_ref(code),
            "slot_start": slot_start,
            "slot_end": slot_end,
        }),
        Event::ReservationCancelled { code, .. } => json!({ "reservation": reservation_ref(code) }),
        Event::NearTurnNoticed {
            ticket,
            number,
            link_code: Some(link_code),
            lang,
            place,
            estimated_wait_s,
            ..
        } => {
            let minutes = estimated_wait_s.div_ceil(60);
            json!({
                "ticket": ticket,
                "number": number,
                "link_code": link_code,
                "lang": lang,
                "place": place,
                "estimated_wait_s": estimated_wait_s,
                "message": {
                    "ja": format!("受付番号 {number} 番の方、まもなく順番です（あと {place} 番目、約 {minutes} 分）。窓口付近にお戻りください。"),
                    "en": format!("Ticket {number}: your turn is near ({place} in line, about {minutes} min). Please come back to the counters."),
                },
            })
        }
        _ => return None,
    };
    Some(json!({
        "id": seq,
        "site": site,
        "type": kind,
        "at": event.at(),
        "data": data,
    }))
}

/// Fields of a logged event that the public form leaves out: credentials (phone tokens,
/// booking codes, idempotency keys, gateway link codes), who on the staff acted, and a
/// resident's answers about their household.
const PRIVATE_FIELDS: &[&str] = &[
    "token",
    "idempotency_key",
    "code",
    "by",
    "link_code",
    "answers",
];

/// The public form of logged event `seq` for the event stream: the event as logged, with
/// `seq` and `kind`, without credentials or staff names; a booking is named by
/// [`reservation_ref`].
pub fn public_form(seq: u64, event: &Event) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    strip_private(&mut value);
    if let Value::Object(map) = &mut value {
        let kind = map.remove("type");
        map.insert("seq".into(), json!(seq));
        if let Some(kind) = kind {
            map.insert("kind".into(), kind);
        }
    }
    value
}

/// Removes [`PRIVATE_FIELDS`] at every depth (a checked-in ticket's `booked` holds the booking's
/// code); a booking code becomes its `reservation` digest.
fn strip_private(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(code)) = map.get("code") {
                let reference = reservation_ref(code);
                map.insert("reservation".into(), Value::String(reference));
            }
            for field in PRIVATE_FIELDS {
                map.remove(*field);
            }
            map.values_mut().for_each(strip_private);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_private),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_the_hmac_of_time_and_body() {
        // Computed independently, with Python's hmac:
        // hmac.new(b"whsec", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        let s = sign("whsec", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            s,
            "t=1700000000,v1=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"
        );
        assert_ne!(s, sign("other", 1_700_000_000, br#"{"a":1}"#));
        assert_ne!(s, sign("whsec", 1_700_000_001, br#"{"a":1}"#));
    }

    /// A checked-in booking's ticket, issued for a life event with answers.
    fn issued() -> Event {
        let at = chrono::Utc::now();
        Event::TicketIssued {
            ticket: "t1".to_owned().try_into().unwrap(),
            number: crate::core::TicketNumber("A001".into()),
            value: 1,
            token: "0123456789abcdef0123456789abcdef".into(),
            queue: "onestop".parse().unwrap(),
            procedures: vec!["tennyu".parse().unwrap()],
            life_event: Some("moving_in".parse().unwrap()),
            answers: vec![("children".parse().unwrap(), true)],
            priority: false,
            dispenser: None,
            lang: Some("ja".into()),
            idempotency_key: Some("press-1".into()),
            planned_service_s: 600,
            at,
            booked: Some(crate::core::reserve::Booked {
                code: "ACDEFGHJ".into(),
                slot_start: at,
                late: false,
            }),
            held_until: None,
        }
    }

    #[test]
    fn the_counter_support_system_gets_the_answers_and_the_stream_no_credential() {
        let site: SiteId = "chuo".parse().unwrap();
        let hook = payload(&site, 7, &issued(), None).unwrap();
        assert_eq!(hook["type"], "ticket.issued");
        assert_eq!(hook["id"], 7);
        assert_eq!(hook["data"]["answers"], json!({"children": true}));
        assert_eq!(hook["data"]["booked"], true);
        let text = hook.to_string();
        for secret in ["0123456789abcdef0123456789abcdef", "ACDEFGHJ", "press-1"] {
            assert!(!text.contains(secret), "{text}");
        }
        let public = public_form(7, &issued());
        assert_eq!(public["kind"], "ticket_issued");
        assert_eq!(public["seq"], 7);
        assert_eq!(public["booked"]["reservation"], reservation_ref("ACDEFGHJ"));
        let text = public.to_string();
        for private in [
            "0123456789abcdef0123456789abcdef",
            "ACDEFGHJ",
            "press-1",
            "answers",
            "children",
        ] {
            assert!(!text.contains(private), "{text}");
        }
    }

    #[test]
    fn a_booking_reference_is_stable_and_keyed() {
        assert_eq!(reservation_ref("ACDEFGHJ"), reservation_ref("ACDEFGHJ"));
        assert_ne!(reservation_ref("ACDEFGHJ"), reservation_ref("ACDEFGHK"));
        assert_eq!(reservation_ref("ACDEFGHJ").len(), 16);
        // Not the plain digest of the code: without the key nobody can try the codes against it.
        use sha2::Digest;
        let plain = hex(&Sha256::digest(b"ACDEFGHJ")[..8]);
        assert_ne!(reservation_ref("ACDEFGHJ"), plain);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let hook = WebhookConfig {
            name: "h".into(),
            url: "http://x".into(),
            secret: "s".into(),
            secret_env: "S".into(),
            events: vec![],
            handover: false,
            max_attempts: 5,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            ca_pem: None,
        };
        assert_eq!(hook.backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(hook.backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(hook.backoff(3, 0.0), Duration::from_secs(2));
        assert_eq!(hook.backoff(30, 1.0), Duration::from_secs(60));
        assert!(hook.backoff(2, 0.5) > hook.backoff(2, 0.0));
    }
}
