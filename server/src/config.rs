//! Configuration: the city's catalog (procedures, life events), its sites with their queues,
//! counters and dispensers, and the bearer tokens of each role.
//!
//! The file is parsed into `raw` types that mirror the TOML, then validated as a whole into
//! [`Config`]; validation reports every problem at once with its field path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::core::hours::{Closure, Hours};
use crate::core::{
    CounterId, CounterState, DispenserId, LifeEventId, PrinterId, ProcedureCode, Profile,
    QuestionId, QueueId, SiteId, Strategy,
};

/// The role a bearer token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A ticket dispenser kiosk: issues tickets.
    Dispenser,
    /// Counter staff: call, start, complete, transfer.
    Counter,
    /// Floor manager: everything counter staff can do, plus counter states and profiles.
    Floor,
    /// Analyst: reads KPIs and exports.
    Analyst,
    /// Printer agent: receives print jobs.
    Printer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Dispenser => "dispenser",
            Role::Counter => "counter",
            Role::Floor => "floor",
            Role::Analyst => "analyst",
            Role::Printer => "printer",
        })
    }
}

pub use crate::core::model::{
    CounterConfig, DispenserConfig, FloorConfig, LifeEvent, LobbyConfig, NoShowAction,
    NoShowPolicy, Procedure, Question, QueueConfig, ScreensConfig, SiteConfig,
};

#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub role: Role,
    /// The device or person the token belongs to, as the audit trail records it.
    pub name: String,
    /// Sites this token may act on; `None` means every site.
    pub sites: Option<HashSet<SiteId>>,
    /// For counter tokens, the counters it may act at; `None` means every counter of its sites.
    pub counters: Option<HashSet<CounterId>>,
    /// For printer tokens, the agents it may serve: a token of one kiosk's PC cannot take over
    /// another's print jobs (they hold phone-page tokens).
    pub agents: HashSet<PrinterId>,
}

/// Limits that keep a public network from slowing or starving the server (`[limits]`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// A client must send a request's headers within this; hyper counts from the end of the
    /// previous response, so this also closes kept-alive connections left idle.
    pub header_read_timeout: Duration,
    /// Reading a request body.
    pub request_body_timeout: Duration,
    /// A handler's answer (streams and WebSockets run on after their first byte).
    pub response_timeout: Duration,
    /// TCP connections open at once, before the file-descriptor cap.
    pub max_connections: usize,
    /// Unauthenticated WebSockets (lobby feeds and phone channels) per client address.
    pub websockets_per_address: usize,
    /// A WebSocket whose send stays blocked this long is closed with 1013.
    pub live_send_timeout: Duration,
    /// Phone API and board polling: sustained requests per second per client address.
    pub public_requests_per_s: u32,
    /// ... and the burst allowed above it.
    pub public_burst: u32,
    /// At most one printer-state event per agent in this time.
    pub printer_state_debounce: Duration,
    /// Peers whose `X-Forwarded-For` names the client (reverse proxies).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The longest KPI range, in days; a missing bound makes a window of this length.
    pub kpi_max_days: u32,
    /// A CSV export whose client reads nothing for this long is dropped (its read ends).
    pub export_stall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(30),
            max_connections: 50_000,
            websockets_per_address: 20_000,
            live_send_timeout: Duration::from_secs(10),
            public_requests_per_s: 50,
            public_burst: 200,
            printer_state_debounce: Duration::from_secs(5),
            trusted_proxies: Vec::new(),
            kpi_max_days: 400,
            export_stall: Duration::from_secs(30),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub sites: Vec<Arc<SiteConfig>>,
    /// The city's targets, per fiscal year, site and life event.
    pub kpi_targets: Vec<crate::kpi::KpiTarget>,
    /// Grants by the SHA-256 digest of their token.
    pub tokens: HashMap<[u8; 32], TokenGrant>,
    /// True when a token is one of the well-known demo tokens.
    pub demo_tokens: bool,
    pub limits: Limits,
    /// Origins allowed to frame the lobby display, e.g. the city's website (`[screens]
    /// frame_ancestors`); empty: no page may be framed.
    pub frame_ancestors: Vec<String>,
    /// The public congestion page and its JSON (`[public]`).
    pub public: PublicConfig,
    /// `[[sites.webhooks]]` per site.
    pub webhooks: HashMap<SiteId, Vec<Arc<crate::hooks::WebhookConfig>>>,
    /// `[notices]`: the mail server for near-turn notices and reminders.
    pub notices: crate::notices::NoticeSettings,
}

/// `[public]`: the congestion page for the city's website.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicConfig {
    /// Origins that may read the JSON from a browser (CORS) and frame the page (the city's
    /// website); empty: the `[screens] frame_ancestors`.
    pub origins: Vec<String>,
    /// `Cache-Control: max-age` of the JSON, seconds.
    pub max_age_s: u32,
    /// The 混雑 lamp: `medium` from this estimated wait (minutes), `high` from the next.
    pub medium_wait_min: u32,
    pub high_wait_min: u32,
}

impl PublicConfig {
    /// The lamp's thresholds.
    pub fn levels(&self) -> crate::calendar::Levels {
        crate::calendar::Levels {
            medium_wait_min: self.medium_wait_min,
            high_wait_min: self.high_wait_min,
        }
    }
}

impl Default for PublicConfig {
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            max_age_s: 5,
            medium_wait_min: 20,
            high_wait_min: 45,
        }
    }
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Where in the file: a field path such as `sites[chuo].counters[3].queues`, or `line 12, column 5`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.field,
            self.reason
        )
    }
}

/// All problems found in a configuration file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Shortest token accepted, but for the well-known demo values.
pub const MIN_TOKEN_LEN: usize = 32;

/// The SHA-256 digest under which a token is configured and looked up.
pub fn sha256(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

const DEMO_TOKENS: [&str; 5] = [
    "demo-dispenser",
    "demo-counter",
    "demo-floor",
    "demo-analyst",
    "demo-printer",
];

impl Config {
    /// Reads and validates a configuration file. Environment variables named by `token_env`
    /// are read here.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                field: "(file)".into(),
                reason: format!("cannot read: {e}"),
            }])
        })?;
        Self::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Parses and validates configuration text; `env` looks up environment variables.
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let raw: raw::File = toml::from_str(text).map_err(|e| {
            let field = match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!("line {line}, column {col}")
                }
                None => "(file)".into(),
            };
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                field,
                reason: e.message().trim().to_owned(),
            }])
        })?;
        let mut v = Validator {
            file: path.to_owned(),
            errors: Vec::new(),
        };
        let config = v.file(raw, env);
        if v.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(v.errors))
        }
    }

    /// Drops every queue's reception hours (`serve --always-open`).
    pub fn ignore_hours(&mut self) {
        for site in &mut self.sites {
            let site = Arc::make_mut(site);
            for q in &mut site.queues {
                q.hours = None;
            }
        }
    }

    pub fn site(&self, id: &SiteId) -> Option<&Arc<SiteConfig>> {
        self.sites.iter().find(|s| &s.id == id)
    }

    /// A short human summary, printed by `madoguchi check-config`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for s in &self.sites {
            let open = s
                .counters
                .iter()
                .filter(|c| c.state == CounterState::Open)
                .count();
            out.push_str(&format!(
                "site {} ({} / {}): {} procedures, {} life events, {} queues, {} counters ({} open at start), {} dispensers\n",
                s.id, s.name.ja, s.name.en, s.procedures.len(), s.life_events.len(), s.queues.len(),
                s.counters.len(), open, s.dispensers.len()
            ));
            // Reception hours, once per distinct set (most sites give every queue the same).
            let mut seen: Vec<(String, Vec<&str>)> = Vec::new();
            for q in &s.queues {
                let hours = q
                    .hours
                    .as_deref()
                    .map_or_else(|| "around the clock".to_owned(), ToString::to_string);
                match seen.iter_mut().find(|(h, _)| *h == hours) {
                    Some((_, queues)) => queues.push(q.id.as_str()),
                    None => seen.push((hours, vec![q.id.as_str()])),
                }
            }
            for (hours, queues) in &seen {
                let which = if seen.len() == 1 {
                    "every queue".to_owned()
                } else {
                    queues.join(", ")
                };
                out.push_str(&format!("  reception ({which}): {hours}\n"));
            }
            for hook in self.webhooks.get(&s.id).into_iter().flatten() {
                let host = reqwest::Url::parse(&hook.url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  webhook {} → {host}: {}{}\n",
                    hook.name,
                    hook.events.join(", "),
                    if hook.handover { " (handover)" } else { "" }
                ));
            }
            if let Some(n) = &s.notices {
                let channels: Vec<&str> = n
                    .channels
                    .iter()
                    .map(|c| match c {
                        crate::core::notice::NoticeChannel::Email => "e-mail",
                        crate::core::notice::NoticeChannel::Link => "LINE/SMS link code",
                    })
                    .collect();
                out.push_str(&format!(
                    "  near-turn notices: {} places or {} min from the call, by {}\n",
                    n.places,
                    n.minutes,
                    channels.join(" or ")
                ));
            }
        }
        let mut roles: BTreeMap<String, usize> = BTreeMap::new();
        for g in self.tokens.values() {
            *roles.entry(g.role.to_string()).or_default() += 1;
        }
        let roles: Vec<String> = roles.iter().map(|(r, n)| format!("{r} ×{n}")).collect();
        out.push_str(&format!("tokens: {}\n", roles.join(", ")));
        if !self.kpi_targets.is_empty() {
            let mut years: Vec<i32> = self.kpi_targets.iter().map(|t| t.fiscal_year).collect();
            years.sort();
            years.dedup();
            let years: Vec<String> = years.iter().map(|y| format!("FY{y}")).collect();
            out.push_str(&format!(
                "KPI targets: {} ({})\n",
                self.kpi_targets.len(),
                years.join(", ")
            ));
        }
        if self.demo_tokens {
            out.push_str("warning: demo tokens are configured; set real tokens before going live (token_env = \"...\")\n");
        }
        out
    }
}

/// `"12-29/01-03"` (every year), `"2027-05-06"` or `"2027-05-06/2027-05-07"` (once).
fn parse_closure(s: &str) -> Option<Closure> {
    let (a, b) = s.split_once('/').unwrap_or((s, s));
    let (a, b) = (a.trim(), b.trim());
    let date = |t: &str| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok();
    if let (Some(from), Some(to)) = (date(a), date(b)) {
        return (from <= to).then_some(Closure::Dates { from, to });
    }
    let month_day = |t: &str| {
        let (m, d) = t.split_once('-')?;
        let (m, d): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
        // A leap year, so 02-29 is a day.
        NaiveDate::from_ymd_opt(2024, m, d).map(|_| (m, d))
    };
    Some(Closure::Yearly {
        from: month_day(a)?,
        to: month_day(b)?,
    })
}

/// `"12:00-12:45"` → (12:00, 12:45), the start before the end.
fn parse_break(s: &str) -> Option<(NaiveTime, NaiveTime)> {
    let (a, b) = s.split_once('-')?;
    let parse = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").ok();
    let (a, b) = (parse(a)?, parse(b)?);
    (a < b).then_some((a, b))
}

/// `s` as an origin for a CSP source (lowercase scheme and host, optional port), when it is one.
fn origin(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() > 253 || !host.split('.').all(label) {
        return None;
    }
    let host = host.to_ascii_lowercase();
    match port {
        None => Some(format!("{scheme}://{host}")),
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            let p: u16 = p.parse().ok().filter(|&p| p > 0)?;
            Some(format!("{scheme}://{host}:{p}"))
        }
        Some(_) => None,
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The file as written. Unknown keys are errors.
mod raw {
    use serde::Deserialize;

    use crate::core::I18n;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct File {
        pub(super) timezone: Option<String>,
        pub(super) day_reset: Option<String>,
        pub(super) public_url: Option<String>,
        #[serde(default)]
        pub(super) tokens: Vec<Token>,
        #[serde(default)]
        pub(super) procedures: Vec<Procedure>,
        #[serde(default)]
        pub(super) life_events: Vec<LifeEvent>,
        #[serde(default)]
        pub(super) sites: Vec<Site>,
        #[serde(default)]
        pub(super) kpi_targets: Vec<KpiTarget>,
        pub(super) limits: Option<Limits>,
        pub(super) screens: Option<ScreensTop>,
        pub(super) public: Option<Public>,
        /// Reception hours of every queue that sets none of its own (and whose site sets none).
        pub(super) hours: Option<Hours>,
        /// `[notices]`: how near-turn notices and reminders leave (the city's mail server).
        pub(super) notices: Option<Notices>,
    }

    /// `[notices]`.
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Notices {
        pub(super) smtp_host: Option<String>,
        pub(super) smtp_port: Option<u16>,
        /// `none` (a relay on the city's network), `starttls` or `tls`.
        pub(super) smtp_security: Option<String>,
        pub(super) smtp_username_env: Option<String>,
        pub(super) smtp_password_env: Option<String>,
        pub(super) from: Option<String>,
        /// When the day-before reminder of a booking goes out, local time (`"17:00"`).
        pub(super) reminder_time: Option<String>,
    }

    /// `[sites.notices]`: when a ticket's near-turn notice goes out.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct SiteNotices {
        pub(super) places: Option<u32>,
        pub(super) minutes: Option<u32>,
    }

    /// `[hours]`, `[sites.hours]`, `[sites.queues.hours]`: when tickets are taken.
    #[derive(Deserialize, Clone)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Hours {
        /// Periods of Monday to Friday, `"08:30-17:15"`; a day's own key wins.
        pub(super) weekdays: Option<Vec<String>>,
        pub(super) mon: Option<Vec<String>>,
        pub(super) tue: Option<Vec<String>>,
        pub(super) wed: Option<Vec<String>>,
        pub(super) thu: Option<Vec<String>>,
        pub(super) fri: Option<Vec<String>>,
        pub(super) sat: Option<Vec<String>>,
        pub(super) sun: Option<Vec<String>>,
        pub(super) last_reception_min: Option<u32>,
        /// Close reception when the forecast says the day is full (default true).
        pub(super) close_when_full: Option<bool>,
        pub(super) closing_margin_min: Option<u32>,
        /// `"closed"` (the default) or `"open"`.
        pub(super) holidays: Option<String>,
        /// `"12-29/01-03"` every year, `"2027-05-06"` or `"2027-05-06/2027-05-07"` once.
        #[serde(default)]
        pub(super) closures: Vec<String>,
        /// Dates open outside the weekly pattern.
        #[serde(default)]
        pub(super) open_days: Vec<OpenDay>,
    }

    #[derive(Deserialize, Clone)]
    #[serde(deny_unknown_fields)]
    pub(super) struct OpenDay {
        pub(super) date: String,
        pub(super) periods: Vec<String>,
    }

    /// `[public]`: the congestion page for the city's website.
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Public {
        pub(super) origins: Option<Vec<String>>,
        pub(super) max_age_s: Option<u32>,
        pub(super) medium_wait_min: Option<u32>,
        pub(super) high_wait_min: Option<u32>,
    }

    /// `[screens]`: settings of the screens of every site (not `[sites.screens]`).
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub(super) struct ScreensTop {
        pub(super) frame_ancestors: Option<Vec<String>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Limits {
        pub(super) header_read_timeout_s: Option<u64>,
        pub(super) request_body_timeout_s: Option<u64>,
        pub(super) response_timeout_s: Option<u64>,
        pub(super) max_connections: Option<usize>,
        pub(super) websockets_per_address: Option<usize>,
        pub(super) live_send_timeout_s: Option<u64>,
        pub(super) public_requests_per_s: Option<u32>,
        pub(super) public_burst: Option<u32>,
        pub(super) printer_state_debounce_s: Option<u64>,
        pub(super) trusted_proxies: Option<Vec<String>>,
        pub(super) kpi_max_days: Option<u32>,
        pub(super) export_stall_s: Option<u64>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct KpiTarget {
        pub(super) fiscal_year: i32,
        pub(super) site: Option<String>,
        pub(super) life_event: Option<String>,
        pub(super) stay_mean_min: Option<f64>,
        pub(super) visits: Option<u64>,
        pub(super) satisfaction_pct: Option<f64>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Token {
        pub(super) role: super::Role,
        pub(super) token: Option<String>,
        pub(super) token_env: Option<String>,
        pub(super) token_sha256: Option<String>,
        pub(super) name: Option<String>,
        pub(super) sites: Option<Vec<String>>,
        pub(super) counters: Option<Vec<String>>,
        pub(super) agents: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Procedure {
        pub(super) code: String,
        pub(super) name: I18n,
        pub(super) service_min: f64,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct LifeEvent {
        pub(super) id: String,
        pub(super) name: I18n,
        #[serde(default)]
        pub(super) procedures: Vec<String>,
        #[serde(default)]
        pub(super) questions: Vec<Question>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Question {
        pub(super) id: String,
        pub(super) text: I18n,
        #[serde(default)]
        pub(super) yes: Vec<String>,
        #[serde(default)]
        pub(super) no: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Site {
        pub(super) id: String,
        pub(super) name: I18n,
        pub(super) timezone: Option<String>,
        pub(super) day_reset: Option<String>,
        /// Life events offered here; all of the city's when absent.
        pub(super) life_events: Option<Vec<String>>,
        pub(super) no_show: Option<NoShow>,
        pub(super) screens: Option<Screens>,
        pub(super) hours: Option<Hours>,
        pub(super) reservations: Option<Reservations>,
        /// `[[sites.webhooks]]`: the city's systems told of this site's events.
        #[serde(default)]
        pub(super) webhooks: Vec<Webhook>,
        pub(super) notices: Option<SiteNotices>,
        #[serde(default)]
        pub(super) queues: Vec<Queue>,
        #[serde(default)]
        pub(super) counters: Vec<Counter>,
        #[serde(default)]
        pub(super) dispensers: Vec<Dispenser>,
    }

    /// `[[sites.webhooks]]`: one subscriber.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Webhook {
        pub(super) name: Option<String>,
        pub(super) url: String,
        pub(super) secret_env: String,
        pub(super) events: Vec<String>,
        pub(super) handover: Option<bool>,
        pub(super) max_attempts: Option<u32>,
        pub(super) backoff_initial_ms: Option<u64>,
        pub(super) backoff_max_s: Option<u64>,
        pub(super) timeout_s: Option<u64>,
        /// A PEM file of CA certificates to trust besides the public roots (a city's own CA).
        pub(super) ca_file: Option<String>,
    }

    /// `[sites.reservations]`: bookings (来庁予約).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Reservations {
        pub(super) queues: Vec<String>,
        pub(super) slot_min: Option<u32>,
        pub(super) booked_share: Option<f64>,
        pub(super) check_in_early_min: Option<u32>,
        pub(super) check_in_late_min: Option<u32>,
        pub(super) horizon_days: Option<u32>,
        pub(super) periods: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct NoShow {
        pub(super) min_calls: Option<u32>,
        pub(super) action: Option<super::NoShowAction>,
        pub(super) max_requeues: Option<u32>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Queue {
        pub(super) id: String,
        pub(super) name: I18n,
        #[serde(default)]
        pub(super) prefix: String,
        pub(super) range: Option<[u32; 2]>,
        pub(super) procedures: Vec<String>,
        pub(super) hours: Option<Hours>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Counter {
        pub(super) id: String,
        pub(super) name: I18n,
        pub(super) queues: Vec<String>,
        pub(super) strategy: Option<crate::core::Strategy>,
        pub(super) state: Option<crate::core::CounterState>,
        /// Planned breaks in local time, `"12:00-12:45"`; the wait estimate expects the
        /// counter not to call during them.
        #[serde(default)]
        pub(super) breaks: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Dispenser {
        pub(super) id: String,
        pub(super) printer_agent: Option<String>,
        #[serde(default)]
        pub(super) priority_button: bool,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Screens {
        pub(super) lobby: Option<Lobby>,
        pub(super) floor: Option<Floor>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Lobby {
        pub(super) voice: Option<bool>,
        pub(super) chime: Option<bool>,
        pub(super) languages: Option<Vec<String>>,
        pub(super) rotate: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Floor {
        pub(super) wait_alert_min: Option<u32>,
        pub(super) suggest_every_s: Option<u32>,
    }
}

/// What every site inherits from the top of the file.
struct City<'a> {
    timezone: Tz,
    day_reset: NaiveTime,
    procedures: &'a [Procedure],
    life_events: &'a [LifeEvent],
    public_url: &'a str,
    hours: Option<Arc<Hours>>,
}

struct Validator {
    file: PathBuf,
    errors: Vec<ConfigError>,
}

impl Validator {
    fn err(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            field: field.into(),
            reason: reason.into(),
        });
    }

    fn id<T: TryFrom<String, Error = crate::core::InvalidId>>(
        &mut self,
        field: &str,
        value: &str,
    ) -> Option<T> {
        match T::try_from(value.to_owned()) {
            Ok(id) => Some(id),
            Err(e) => {
                self.err(field, e.to_string());
                None
            }
        }
    }

    fn timezone(&mut self, field: &str, value: Option<&str>, default: Tz) -> Tz {
        match value {
            None => default,
            Some(s) => s.parse().unwrap_or_else(|_| {
                self.err(
                    field,
                    format!("unknown time zone {s:?} (use an IANA name such as \"Asia/Tokyo\")"),
                );
                default
            }),
        }
    }

    fn time(&mut self, field: &str, value: Option<&str>, default: NaiveTime) -> NaiveTime {
        match value {
            None => default,
            Some(s) => NaiveTime::parse_from_str(s, "%H:%M").unwrap_or_else(|_| {
                self.err(field, format!("{s:?} is not a time of day as HH:MM"));
                default
            }),
        }
    }

    /// Reception hours from `[hours]` (at `field`).
    fn hours(&mut self, field: &str, raw: &raw::Hours) -> Hours {
        let periods = |v: &mut Self, key: &str, list: &[String]| {
            let mut out: Vec<(NaiveTime, NaiveTime)> = Vec::new();
            for p in list {
                match parse_break(p) {
                    Some(period) => out.push(period),
                    None => v.err(
                        format!("{field}.{key}"),
                        format!("{p:?} is not a period as \"HH:MM-HH:MM\" (start before end)"),
                    ),
                }
            }
            out.sort();
            if out.windows(2).any(|w| w[0].1 > w[1].0) {
                v.err(format!("{field}.{key}"), "periods overlap");
            }
            if out.len() > crate::core::hours::MAX_PERIODS {
                v.err(
                    format!("{field}.{key}"),
                    format!("at most {} periods a day", crate::core::hours::MAX_PERIODS),
                );
            }
            out
        };
        let weekdays = periods(
            self,
            "weekdays",
            raw.weekdays.as_deref().unwrap_or_default(),
        );
        let days = [
            ("mon", &raw.mon),
            ("tue", &raw.tue),
            ("wed", &raw.wed),
            ("thu", &raw.thu),
            ("fri", &raw.fri),
            ("sat", &raw.sat),
            ("sun", &raw.sun),
        ];
        let mut week: [Vec<(NaiveTime, NaiveTime)>; 7] = Default::default();
        for (i, (key, list)) in days.iter().enumerate() {
            week[i] = match list {
                Some(list) => periods(self, key, list),
                None if i < 5 => weekdays.clone(),
                None => Vec::new(),
            };
        }
        let closed_on_holidays = match raw.holidays.as_deref() {
            None | Some("closed") => true,
            Some("open") => false,
            Some(other) => {
                self.err(
                    format!("{field}.holidays"),
                    format!("{other:?}: use \"closed\" or \"open\""),
                );
                true
            }
        };
        let mut closures = Vec::new();
        for c in &raw.closures {
            match parse_closure(c) {
                Some(closure) => closures.push(closure),
                None => self.err(
                    format!("{field}.closures"),
                    format!("{c:?}: use \"MM-DD/MM-DD\" (every year), \"YYYY-MM-DD\" or \"YYYY-MM-DD/YYYY-MM-DD\""),
                ),
            }
        }
        let mut extra = Vec::new();
        for (i, d) in raw.open_days.iter().enumerate() {
            let key = format!("open_days[{i}]");
            match NaiveDate::parse_from_str(&d.date, "%Y-%m-%d") {
                Ok(date) => {
                    let list = periods(self, &key, &d.periods);
                    extra.push((date, list));
                }
                Err(_) => self.err(
                    format!("{field}.{key}.date"),
                    format!("{:?} is not a date as YYYY-MM-DD", d.date),
                ),
            }
        }
        let last_reception_min = raw.last_reception_min.unwrap_or(0);
        if last_reception_min > 240 {
            self.err(
                format!("{field}.last_reception_min"),
                "at most 240 minutes before a period ends",
            );
        }
        let closing_margin_min = raw.closing_margin_min.unwrap_or(0);
        if closing_margin_min > 240 {
            self.err(
                format!("{field}.closing_margin_min"),
                "at most 240 minutes before a period ends",
            );
        }
        Hours {
            week,
            last_reception_min,
            closed_on_holidays,
            closures,
            extra,
            close_when_full: raw.close_when_full.unwrap_or(true),
            closing_margin_min,
        }
    }

    fn file(&mut self, raw: raw::File, env: &dyn Fn(&str) -> Option<String>) -> Config {
        let tz = self.timezone("timezone", raw.timezone.as_deref(), chrono_tz::Asia::Tokyo);
        let reset = self.time(
            "day_reset",
            raw.day_reset.as_deref(),
            NaiveTime::from_hms_opt(0, 0, 0).expect("midnight"),
        );

        let public_url = raw
            .public_url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:8080".into())
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            self.err(
                "public_url",
                "must start with http:// or https:// (the address phones open from the QR code)",
            );
        }

        // The city's catalog.
        let mut procedures: Vec<Procedure> = Vec::new();
        for (i, p) in raw.procedures.iter().enumerate() {
            let field = format!("procedures[{i}]");
            let Some(code) = self.id::<ProcedureCode>(&format!("{field}.code"), &p.code) else {
                continue;
            };
            if procedures.iter().any(|q| q.code == code) {
                self.err(
                    format!("{field}.code"),
                    format!("procedure {code} is defined twice"),
                );
            }
            if !(p.service_min > 0.0 && p.service_min <= 480.0) {
                self.err(
                    format!("procedures[{code}].service_min"),
                    "must be between 0 and 480 minutes",
                );
            }
            procedures.push(Procedure {
                code,
                name: p.name.clone(),
                service_s: (p.service_min * 60.0).round().clamp(1.0, 28_800.0) as u32,
            });
        }
        let known = |code: &ProcedureCode| procedures.iter().any(|p| &p.code == code);

        let mut life_events: Vec<LifeEvent> = Vec::new();
        for (i, l) in raw.life_events.iter().enumerate() {
            let Some(id) = self.id::<LifeEventId>(&format!("life_events[{i}].id"), &l.id) else {
                continue;
            };
            let field = format!("life_events[{id}]");
            if life_events.iter().any(|e| e.id == id) {
                self.err(&field, format!("life event {id} is defined twice"));
            }
            let procs = self.procedure_list(&format!("{field}.procedures"), &l.procedures, &known);
            let mut questions = Vec::new();
            for (j, q) in l.questions.iter().enumerate() {
                let Some(qid) = self.id::<QuestionId>(&format!("{field}.questions[{j}].id"), &q.id)
                else {
                    continue;
                };
                let qfield = format!("{field}.questions[{qid}]");
                if questions.iter().any(|x: &Question| x.id == qid) {
                    self.err(&qfield, format!("question {qid} is asked twice"));
                }
                let yes = self.procedure_list(&format!("{qfield}.yes"), &q.yes, &known);
                let no = self.procedure_list(&format!("{qfield}.no"), &q.no, &known);
                questions.push(Question {
                    id: qid,
                    text: q.text.clone(),
                    yes,
                    no,
                });
            }
            if procs.is_empty() && questions.iter().all(|q| q.yes.is_empty()) {
                self.err(&field, "expands to no procedure whatever the answers");
            }
            life_events.push(LifeEvent {
                id,
                name: l.name.clone(),
                procedures: procs,
                questions,
            });
        }

        let hours = raw.hours.as_ref().map(|h| Arc::new(self.hours("hours", h)));

        // Sites.
        let mut sites: Vec<Arc<SiteConfig>> = Vec::new();
        let mut webhooks = HashMap::new();
        let notices = self.notices(raw.notices.as_ref().unwrap_or(&Default::default()), env);
        if raw.sites.is_empty() {
            self.err("sites", "at least one site is needed");
        }
        for (i, s) in raw.sites.iter().enumerate() {
            let city = City {
                timezone: tz,
                day_reset: reset,
                procedures: &procedures,
                life_events: &life_events,
                public_url: &public_url,
                hours: hours.clone(),
            };
            if let Some(mut site) = self.site(i, s, &city) {
                if sites.iter().any(|x| x.id == site.id) {
                    self.err(
                        format!("sites[{}].id", site.id),
                        format!("site {} is defined twice", site.id),
                    );
                }
                let hooks = self.webhooks(i, &s.webhooks, env);
                // The channels residents are offered: e-mail with a mail server, the gateway's
                // link code with a subscriber of `notice.near_turn`.
                if let Some(rule) = &mut site.notices {
                    if notices.smtp.is_some() {
                        rule.channels
                            .push(crate::core::notice::NoticeChannel::Email);
                    }
                    if hooks.iter().any(|h| h.wants("notice.near_turn")) {
                        rule.channels.push(crate::core::notice::NoticeChannel::Link);
                    }
                    if rule.channels.is_empty() {
                        self.err(
                            format!("sites[{i}].notices"),
                            "no channel: configure [notices] smtp_host for e-mail, or a webhook with the event notice.near_turn for a LINE or SMS gateway",
                        );
                    }
                }
                if !hooks.is_empty() {
                    webhooks.insert(site.id.clone(), hooks);
                }
                sites.push(Arc::new(site));
            }
        }

        // Tokens: kept as SHA-256 digests only, so the running server holds no token in clear.
        let mut tokens = HashMap::new();
        let mut demo_tokens = false;
        for (i, t) in raw.tokens.iter().enumerate() {
            let field = format!("tokens[{i}]");
            let digest = match (&t.token, &t.token_env, &t.token_sha256) {
                (Some(v), None, None) => self.token_value(&field, v),
                (None, Some(var), None) => match env(var) {
                    Some(v) if !v.trim().is_empty() => self.token_value(&field, v.trim()),
                    _ => {
                        self.err(
                            format!("{field}.token_env"),
                            format!("environment variable {var} is not set"),
                        );
                        None
                    }
                },
                (None, None, Some(hex)) => {
                    let digest = parse_sha256(hex);
                    if digest.is_none() {
                        self.err(
                            format!("{field}.token_sha256"),
                            "64 hexadecimal digits, e.g. from `printf %s \"$TOKEN\" | sha256sum`",
                        );
                    }
                    digest
                }
                _ => {
                    self.err(
                        &field,
                        "give exactly one of `token`, `token_env` and `token_sha256`",
                    );
                    None
                }
            };
            let Some(digest) = digest else { continue };
            let is_demo = DEMO_TOKENS.iter().any(|d| sha256(d) == digest);
            demo_tokens |= is_demo;
            let name = match &t.name {
                Some(n) if !n.trim().is_empty() && n.len() <= 64 => n.trim().to_owned(),
                Some(_) => {
                    self.err(format!("{field}.name"), "1–64 characters");
                    continue;
                }
                None => format!("{}-{}", t.role, i + 1),
            };
            let token_sites: Option<HashSet<SiteId>> = t.sites.as_ref().map(|list| {
                list.iter()
                    .filter_map(|s| {
                        let id = self.id::<SiteId>(&format!("{field}.sites"), s)?;
                        if !sites.iter().any(|x| x.id == id) {
                            self.err(format!("{field}.sites"), format!("unknown site {id}"));
                        }
                        Some(id)
                    })
                    .collect()
            });
            let counters = match (t.role, &t.counters) {
                (Role::Counter, Some(list)) => {
                    let ids: HashSet<CounterId> = list
                        .iter()
                        .filter_map(|c| self.id::<CounterId>(&format!("{field}.counters"), c))
                        .collect();
                    for c in &ids {
                        let known = sites
                            .iter()
                            .filter(|s| token_sites.as_ref().is_none_or(|ts| ts.contains(&s.id)))
                            .any(|s| s.counter(c).is_some());
                        if !known {
                            self.err(
                                format!("{field}.counters"),
                                format!("no site of this token has counter {c}"),
                            );
                        }
                    }
                    Some(ids)
                }
                (_, Some(_)) => {
                    self.err(
                        format!("{field}.counters"),
                        "only counter tokens are bound to counters",
                    );
                    None
                }
                (_, None) => None,
            };
            let agents = match (t.role, &t.agents) {
                (Role::Printer, Some(list)) if !list.is_empty() => list
                    .iter()
                    // An agent no dispenser prints for (any more) is harmless: it gets no jobs.
                    .filter_map(|a| self.id::<PrinterId>(&format!("{field}.agents"), a))
                    .collect(),
                (Role::Printer, _) => {
                    self.err(
                        format!("{field}.agents"),
                        "a printer token must list the agents it serves, e.g. agents = [\"agent-1\"]",
                    );
                    HashSet::new()
                }
                (_, Some(_)) => {
                    self.err(
                        format!("{field}.agents"),
                        "only printer tokens serve agents",
                    );
                    HashSet::new()
                }
                (_, None) => HashSet::new(),
            };
            if tokens
                .insert(
                    digest,
                    TokenGrant {
                        role: t.role,
                        name,
                        sites: token_sites,
                        counters,
                        agents,
                    },
                )
                .is_some()
            {
                self.err(&field, "the same token is configured twice");
            }
        }
        let mut kpi_targets: Vec<crate::kpi::KpiTarget> = Vec::new();
        for (i, t) in raw.kpi_targets.iter().enumerate() {
            let f = format!("kpi_targets[{i}]");
            if !(2000..=2100).contains(&t.fiscal_year) {
                self.err(
                    format!("{f}.fiscal_year"),
                    "a fiscal year such as 2026 (April 2026 – March 2027)",
                );
            }
            if let Some(site) = &t.site {
                if !sites.iter().any(|s| s.id.as_str() == site) {
                    self.err(
                        format!("{f}.site"),
                        format!("unknown site {site} (leave it out for the whole city)"),
                    );
                }
            }
            if let Some(le) = &t.life_event {
                if !life_events.iter().any(|l| l.id.as_str() == le) {
                    self.err(
                        format!("{f}.life_event"),
                        format!("unknown life event {le}"),
                    );
                }
            }
            if t.satisfaction_pct
                .is_some_and(|p| !(0.0..=100.0).contains(&p))
            {
                self.err(
                    format!("{f}.satisfaction_pct"),
                    "a percentage from 0 to 100",
                );
            }
            if t.stay_mean_min.is_some_and(|m| m <= 0.0) {
                self.err(format!("{f}.stay_mean_min"), "minutes, more than 0");
            }
            let target = crate::kpi::KpiTarget {
                fiscal_year: t.fiscal_year,
                site: t.site.clone(),
                life_event: t.life_event.clone(),
                stay_mean_min: t.stay_mean_min,
                visits: t.visits,
                satisfaction_pct: t.satisfaction_pct,
            };
            if kpi_targets.iter().any(|k| {
                (k.fiscal_year, &k.site, &k.life_event)
                    == (target.fiscal_year, &target.site, &target.life_event)
            }) {
                self.err(
                    &f,
                    "a target for this fiscal year, site and life event is already given",
                );
            }
            kpi_targets.push(target);
        }
        let limits = self.limits(raw.limits.unwrap_or_default());
        let frame_ancestors = self.frame_ancestors(raw.screens.unwrap_or_default());
        let public = self.public(raw.public.unwrap_or_default(), &frame_ancestors);
        Config {
            sites,
            kpi_targets,
            tokens,
            demo_tokens,
            limits,
            frame_ancestors,
            public,
            webhooks,
            notices,
        }
    }

    /// `[notices]`: the SMTP server (none: e-mail notices are not offered) and the reminder time.
    fn notices(
        &mut self,
        raw: &raw::Notices,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> crate::notices::NoticeSettings {
        use crate::notices::{NoticeSettings, Smtp, SmtpSecurity};
        let reminder_time = match &raw.reminder_time {
            None => chrono::NaiveTime::from_hms_opt(17, 0, 0).expect("a time"),
            Some(t) => chrono::NaiveTime::parse_from_str(t, "%H:%M").unwrap_or_else(|_| {
                self.err(
                    "notices.reminder_time",
                    "a local time HH:MM, e.g. \"17:00\"",
                );
                chrono::NaiveTime::MIN
            }),
        };
        let secret = |v: &mut Self, field: &str, var: &Option<String>| -> Option<String> {
            let var = var.as_ref()?;
            let value = env(var);
            if value.is_none() {
                v.err(
                    format!("notices.{field}"),
                    format!("environment variable {var} is not set"),
                );
            }
            value
        };
        let smtp = match &raw.smtp_host {
            None => None,
            Some(host) => {
                let security = match raw.smtp_security.as_deref().unwrap_or("starttls") {
                    "none" => SmtpSecurity::None,
                    "starttls" => SmtpSecurity::StartTls,
                    "tls" => SmtpSecurity::Tls,
                    _ => {
                        self.err("notices.smtp_security", "one of none, starttls, tls");
                        SmtpSecurity::None
                    }
                };
                let from = raw.from.clone().unwrap_or_default();
                if from.parse::<lettre::message::Mailbox>().is_err() {
                    self.err(
                        "notices.from",
                        "the sender's address, e.g. \"中央区役所 <madoguchi@city.example.jp>\"",
                    );
                }
                Some(Smtp {
                    host: host.clone(),
                    port: raw.smtp_port.unwrap_or(match security {
                        SmtpSecurity::None => 25,
                        SmtpSecurity::StartTls => 587,
                        SmtpSecurity::Tls => 465,
                    }),
                    security,
                    username: secret(self, "smtp_username_env", &raw.smtp_username_env),
                    password: secret(self, "smtp_password_env", &raw.smtp_password_env),
                    from,
                })
            }
        };
        NoticeSettings {
            smtp,
            reminder_time,
        }
    }

    /// `[[sites.webhooks]]` of site `i`: names unique, a known kind per event, an http(s) URL,
    /// the secret from the environment.
    fn webhooks(
        &mut self,
        i: usize,
        raw: &[raw::Webhook],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Arc<crate::hooks::WebhookConfig>> {
        let mut hooks: Vec<Arc<crate::hooks::WebhookConfig>> = Vec::new();
        for (j, w) in raw.iter().enumerate() {
            let field = format!("sites[{i}].webhooks[{j}]");
            let name = w.name.clone().unwrap_or_else(|| format!("hook-{}", j + 1));
            let name_ok = !name.is_empty()
                && name.len() <= 32
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                self.err(
                    format!("{field}.name"),
                    "1 to 32 letters, digits, '-' or '_' (it names the subscriber in the API)",
                );
            }
            if hooks.iter().any(|h| h.name == name) {
                self.err(
                    format!("{field}.name"),
                    format!("{name:?} is used twice at this site"),
                );
            }
            match reqwest::Url::parse(&w.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                _ => self.err(
                    format!("{field}.url"),
                    "an http:// or https:// URL, e.g. \"https://dx.city.example.jp/madoguchi\"",
                ),
            }
            for (k, e) in w.events.iter().enumerate() {
                if !crate::hooks::KINDS.contains(&e.as_str()) {
                    self.err(
                        format!("{field}.events[{k}]"),
                        format!(
                            "unknown event {e:?}: one of {}",
                            crate::hooks::KINDS.join(", ")
                        ),
                    );
                }
            }
            if w.events.is_empty() {
                self.err(format!("{field}.events"), "name at least one event");
            }
            let secret = match env(&w.secret_env) {
                Some(s) if s.trim().len() >= 16 => s.trim().to_owned(),
                Some(_) => {
                    self.err(
                        format!("{field}.secret_env"),
                        format!(
                            "the secret in {} is shorter than 16 characters",
                            w.secret_env
                        ),
                    );
                    String::new()
                }
                None => {
                    self.err(
                        format!("{field}.secret_env"),
                        format!("environment variable {} is not set", w.secret_env),
                    );
                    String::new()
                }
            };
            let max_attempts = w.max_attempts.unwrap_or(10);
            if !(1..=100).contains(&max_attempts) {
                self.err(format!("{field}.max_attempts"), "1 to 100");
            }
            let timeout_s = w.timeout_s.unwrap_or(10);
            if !(1..=120).contains(&timeout_s) {
                self.err(format!("{field}.timeout_s"), "1 to 120 seconds");
            }
            let ca_pem = w.ca_file.as_ref().and_then(|path| {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read {path}: {e}"))
                    .and_then(|pem| match reqwest::Certificate::from_pem_bundle(&pem) {
                        Ok(certs) if !certs.is_empty() => Ok(pem),
                        _ => Err(format!("{path} holds no PEM certificate")),
                    });
                match pem {
                    Ok(pem) => Some(pem),
                    Err(reason) => {
                        self.err(format!("{field}.ca_file"), reason);
                        None
                    }
                }
            });
            let backoff_initial =
                Duration::from_millis(w.backoff_initial_ms.unwrap_or(1_000).max(1));
            let backoff_max = Duration::from_secs(w.backoff_max_s.unwrap_or(600).max(1));
            hooks.push(Arc::new(crate::hooks::WebhookConfig {
                handover: w
                    .handover
                    .unwrap_or_else(|| w.events.iter().any(|e| e == crate::hooks::VISIT_COMPLETED)),
                name,
                url: w.url.clone(),
                secret,
                secret_env: w.secret_env.clone(),
                events: w.events.clone(),
                max_attempts,
                backoff_initial,
                backoff_max: backoff_max.max(backoff_initial),
                timeout: Duration::from_secs(timeout_s),
                ca_pem,
            }));
        }
        hooks
    }

    fn public(&mut self, raw: raw::Public, frame_ancestors: &[String]) -> PublicConfig {
        let defaults = PublicConfig::default();
        let origins = match raw.origins {
            None => frame_ancestors.to_vec(),
            Some(list) => self.origins("public.origins", &list),
        };
        let max_age_s = raw.max_age_s.unwrap_or(defaults.max_age_s);
        if max_age_s > 300 {
            self.err(
                "public.max_age_s",
                "at most 300 seconds: waits change by the minute",
            );
        }
        let medium_wait_min = raw.medium_wait_min.unwrap_or(defaults.medium_wait_min);
        let high_wait_min = raw.high_wait_min.unwrap_or(defaults.high_wait_min);
        if medium_wait_min == 0 || high_wait_min <= medium_wait_min {
            self.err(
                "public",
                "need 0 < medium_wait_min < high_wait_min (minutes of estimated wait)",
            );
        }
        PublicConfig {
            origins,
            max_age_s,
            medium_wait_min,
            high_wait_min,
        }
    }

    /// `[screens] frame_ancestors`: each an origin (`https://host[:port]`, or `http://`), no path.
    fn frame_ancestors(&mut self, raw: raw::ScreensTop) -> Vec<String> {
        self.origins(
            "screens.frame_ancestors",
            &raw.frame_ancestors.unwrap_or_default(),
        )
    }

    /// A list of origins (`https://host[:port]`, or `http://`), no path.
    fn origins(&mut self, field: &str, list: &[String]) -> Vec<String> {
        let mut origins = Vec::new();
        for (i, o) in list.iter().enumerate() {
            match origin(o) {
                Some(o) => origins.push(o),
                None => self.err(
                    format!("{field}[{i}]"),
                    format!(
                        "{o:?} is not an origin: https:// or http://, a host name, an optional port, \
                         no path (e.g. \"https://www.city.example.jp\")"
                    ),
                ),
            }
        }
        origins
    }

    /// A token given in clear (in the file or the environment): the demo values anywhere, else
    /// at least [`MIN_TOKEN_LEN`] characters. Only its digest is kept.
    fn token_value(&mut self, field: &str, value: &str) -> Option<[u8; 32]> {
        if !DEMO_TOKENS.contains(&value) && value.chars().count() < MIN_TOKEN_LEN {
            // The message never repeats the token: configuration errors end up in logs.
            self.err(
                field,
                format!(
                    "a token must be at least {MIN_TOKEN_LEN} characters long (e.g. `openssl rand -hex 24`)"
                ),
            );
            return None;
        }
        Some(sha256(value))
    }

    fn limits(&mut self, raw: raw::Limits) -> Limits {
        let d = Limits::default();
        let mut secs = |key: &str, value: Option<u64>, default: Duration| match value {
            None => default,
            Some(0) => {
                self.err(format!("limits.{key}"), "seconds, at least 1");
                default
            }
            Some(s) => Duration::from_secs(s),
        };
        let header_read_timeout = secs(
            "header_read_timeout_s",
            raw.header_read_timeout_s,
            d.header_read_timeout,
        );
        let request_body_timeout = secs(
            "request_body_timeout_s",
            raw.request_body_timeout_s,
            d.request_body_timeout,
        );
        let response_timeout = secs(
            "response_timeout_s",
            raw.response_timeout_s,
            d.response_timeout,
        );
        let live_send_timeout = secs(
            "live_send_timeout_s",
            raw.live_send_timeout_s,
            d.live_send_timeout,
        );
        let export_stall = secs("export_stall_s", raw.export_stall_s, d.export_stall);
        let printer_state_debounce = match raw.printer_state_debounce_s {
            // 0 turns the debounce off (every change is recorded at once).
            Some(s) => Duration::from_secs(s),
            None => d.printer_state_debounce,
        };
        let mut count = |key: &str, value: Option<usize>, default: usize| match value {
            None => default,
            Some(0) => {
                self.err(format!("limits.{key}"), "at least 1");
                default
            }
            Some(n) => n,
        };
        let max_connections = count("max_connections", raw.max_connections, d.max_connections);
        let websockets_per_address = count(
            "websockets_per_address",
            raw.websockets_per_address,
            d.websockets_per_address,
        );
        let public_requests_per_s = count(
            "public_requests_per_s",
            raw.public_requests_per_s.map(|n| n as usize),
            d.public_requests_per_s as usize,
        ) as u32;
        let public_burst = count(
            "public_burst",
            raw.public_burst.map(|n| n as usize),
            d.public_burst as usize,
        ) as u32;
        let kpi_max_days = count(
            "kpi_max_days",
            raw.kpi_max_days.map(|n| n as usize),
            d.kpi_max_days as usize,
        ) as u32;
        let mut trusted_proxies = Vec::new();
        for (i, p) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
            let net = p
                .parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(net) => trusted_proxies.push(net),
                Err(_) => self.err(
                    format!("limits.trusted_proxies[{i}]"),
                    format!("{p:?} is neither an IP address nor a CIDR range"),
                ),
            }
        }
        Limits {
            header_read_timeout,
            request_body_timeout,
            response_timeout,
            max_connections,
            websockets_per_address,
            live_send_timeout,
            public_requests_per_s,
            public_burst,
            printer_state_debounce,
            trusted_proxies,
            kpi_max_days,
            export_stall,
        }
    }

    fn procedure_list(
        &mut self,
        field: &str,
        list: &[String],
        known: &dyn Fn(&ProcedureCode) -> bool,
    ) -> Vec<ProcedureCode> {
        let mut out: Vec<ProcedureCode> = Vec::new();
        for code in list {
            let Some(code) = self.id::<ProcedureCode>(field, code) else {
                continue;
            };
            if !known(&code) {
                self.err(field, format!("unknown procedure {code}"));
            } else if !out.contains(&code) {
                out.push(code);
            }
        }
        out
    }

    fn site(&mut self, i: usize, s: &raw::Site, city: &City<'_>) -> Option<SiteConfig> {
        let (tz, reset, procedures, life_events) = (
            city.timezone,
            city.day_reset,
            city.procedures,
            city.life_events,
        );
        let id = self.id::<SiteId>(&format!("sites[{i}].id"), &s.id)?;
        let f = format!("sites[{id}]");
        let timezone = self.timezone(&format!("{f}.timezone"), s.timezone.as_deref(), tz);
        let day_reset = self.time(&format!("{f}.day_reset"), s.day_reset.as_deref(), reset);
        let no_show = NoShowPolicy {
            min_calls: s.no_show.as_ref().and_then(|n| n.min_calls).unwrap_or(2),
            action: s
                .no_show
                .as_ref()
                .and_then(|n| n.action)
                .unwrap_or(NoShowAction::Requeue),
            max_requeues: s.no_show.as_ref().and_then(|n| n.max_requeues).unwrap_or(1),
        };
        if no_show.min_calls == 0 {
            self.err(
                format!("{f}.no_show.min_calls"),
                "must be at least 1: a ticket must be called before it is a no-show",
            );
        }

        let site_hours = match &s.hours {
            Some(h) => Some(Arc::new(self.hours(&format!("{f}.hours"), h))),
            None => city.hours.clone(),
        };
        let known = |code: &ProcedureCode| procedures.iter().any(|p| &p.code == code);
        let mut queues: Vec<QueueConfig> = Vec::new();
        if s.queues.is_empty() {
            self.err(format!("{f}.queues"), "a site needs at least one queue");
        }
        for (j, q) in s.queues.iter().enumerate() {
            let Some(qid) = self.id::<QueueId>(&format!("{f}.queues[{j}].id"), &q.id) else {
                continue;
            };
            let qf = format!("{f}.queues[{qid}]");
            if queues.iter().any(|x| x.id == qid) {
                self.err(&qf, format!("queue {qid} is defined twice"));
            }
            // Without digits in prefixes, a number's prefix is unambiguous ("A1" + "001" and
            // "A" + "1001" would both print A1001), so checking ranges per prefix is enough.
            if q.prefix.chars().count() > 3
                || q.prefix
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_numeric() || c.is_control())
            {
                self.err(
                    format!("{qf}.prefix"),
                    "a prefix is at most 3 characters, without digits or spaces",
                );
            }
            let range = match q.range {
                Some([lo, hi]) if lo >= 1 && lo <= hi && hi <= 99_999 => (lo, hi),
                Some(_) => {
                    self.err(
                        format!("{qf}.range"),
                        "must be [first, last] with 1 ≤ first ≤ last ≤ 99999",
                    );
                    (1, 999)
                }
                None => (1, 999),
            };
            for other in &queues {
                if other.prefix == q.prefix && other.range.0 <= range.1 && range.0 <= other.range.1
                {
                    self.err(
                        format!("{qf}.range"),
                        format!(
                            "numbers {}–{} with prefix {:?} overlap queue {}: numbers must be unique per site",
                            range.0, range.1, q.prefix, other.id
                        ),
                    );
                }
            }
            let procs = self.procedure_list(&format!("{qf}.procedures"), &q.procedures, &known);
            if procs.is_empty() {
                self.err(
                    format!("{qf}.procedures"),
                    "a queue must handle at least one procedure",
                );
            }
            let hours = match &q.hours {
                Some(h) => Some(Arc::new(self.hours(&format!("{qf}.hours"), h))),
                None => site_hours.clone(),
            };
            queues.push(QueueConfig {
                id: qid,
                name: q.name.clone(),
                prefix: q.prefix.clone(),
                range,
                procedures: procs,
                hours,
            });
        }
        let offered: HashSet<&ProcedureCode> =
            queues.iter().flat_map(|q| q.procedures.iter()).collect();

        let site_life_events: Vec<LifeEvent> = match &s.life_events {
            None => life_events
                .iter()
                .filter(|l| life_event_codes(l).all(|c| offered.contains(c)))
                .cloned()
                .collect(),
            Some(list) => {
                let mut out = Vec::new();
                for name in list {
                    let Some(lid) = self.id::<LifeEventId>(&format!("{f}.life_events"), name)
                    else {
                        continue;
                    };
                    match life_events.iter().find(|l| l.id == lid) {
                        None => self.err(
                            format!("{f}.life_events"),
                            format!("unknown life event {lid}"),
                        ),
                        Some(l) => {
                            for code in life_event_codes(l) {
                                if !offered.contains(code) {
                                    self.err(
                                        format!("{f}.life_events"),
                                        format!("life event {lid} may need procedure {code}, which no queue of this site handles"),
                                    );
                                }
                            }
                            out.push(l.clone());
                        }
                    }
                }
                out
            }
        };

        let mut counters: Vec<CounterConfig> = Vec::new();
        for (j, c) in s.counters.iter().enumerate() {
            let Some(cid) = self.id::<CounterId>(&format!("{f}.counters[{j}].id"), &c.id) else {
                continue;
            };
            let cf = format!("{f}.counters[{cid}]");
            if counters.iter().any(|x| x.id == cid) {
                self.err(&cf, format!("counter {cid} is defined twice"));
            }
            let mut served = Vec::new();
            for qname in &c.queues {
                let Some(qid) = self.id::<QueueId>(&format!("{cf}.queues"), qname) else {
                    continue;
                };
                if !queues.iter().any(|q| q.id == qid) {
                    self.err(format!("{cf}.queues"), format!("unknown queue {qid}"));
                } else if served.contains(&qid) {
                    self.err(
                        format!("{cf}.queues"),
                        format!("queue {qid} is listed twice"),
                    );
                } else {
                    served.push(qid);
                }
            }
            if c.queues.is_empty() {
                self.err(
                    format!("{cf}.queues"),
                    "a counter must serve at least one queue",
                );
            }
            let mut breaks = Vec::new();
            for b in &c.breaks {
                match parse_break(b) {
                    Some(range) => breaks.push(range),
                    None => self.err(
                        format!("{cf}.breaks"),
                        format!("{b:?} is not a break like \"12:00-12:45\" (start before end)"),
                    ),
                }
            }
            counters.push(CounterConfig {
                id: cid,
                name: c.name.clone(),
                state: c.state.unwrap_or(CounterState::Closed),
                breaks,
                profile: Profile {
                    queues: served,
                    strategy: c.strategy.unwrap_or(Strategy::ProfileOrder),
                },
            });
        }
        if s.counters.is_empty() {
            self.err(format!("{f}.counters"), "a site needs at least one counter");
        }
        for q in &queues {
            if !counters.iter().any(|c| c.profile.queues.contains(&q.id)) {
                self.err(
                    format!("{f}.queues[{}]", q.id),
                    "no counter serves this queue",
                );
            }
        }

        let mut dispensers: Vec<DispenserConfig> = Vec::new();
        for (j, d) in s.dispensers.iter().enumerate() {
            let Some(did) = self.id::<DispenserId>(&format!("{f}.dispensers[{j}].id"), &d.id)
            else {
                continue;
            };
            if dispensers.iter().any(|x| x.id == did) {
                self.err(
                    format!("{f}.dispensers[{did}]"),
                    format!("dispenser {did} is defined twice"),
                );
            }
            let printer_agent = d.printer_agent.as_ref().and_then(|p| {
                self.id::<PrinterId>(&format!("{f}.dispensers[{did}].printer_agent"), p)
            });
            dispensers.push(DispenserConfig {
                id: did,
                printer_agent,
                priority_button: d.priority_button,
            });
        }

        let site_procedures = procedures
            .iter()
            .filter(|p| offered.contains(&p.code))
            .cloned()
            .collect();
        let reservations = s
            .reservations
            .as_ref()
            .map(|r| self.reservations(&f, r, &queues));
        Some(SiteConfig {
            id,
            name: s.name.clone(),
            timezone,
            day_reset,
            no_show,
            procedures: site_procedures,
            life_events: site_life_events,
            queues,
            counters,
            dispensers,
            screens: self.screens(&f, s.screens.as_ref()),
            public_url: city.public_url.to_owned(),
            reservations,
            notices: s.notices.as_ref().map(|n| {
                let rule = crate::core::notice::NoticeRule {
                    places: n.places.unwrap_or(3),
                    minutes: n.minutes.unwrap_or(10),
                    channels: Vec::new(),
                };
                if rule.places == 0 && rule.minutes == 0 {
                    self.err(
                        format!("{f}.notices"),
                        "places or minutes must be more than 0",
                    );
                }
                rule
            }),
        })
    }

    /// `[sites.reservations]` of the site at `f`, whose queues are `queues`.
    fn reservations(
        &mut self,
        f: &str,
        raw: &raw::Reservations,
        queues: &[QueueConfig],
    ) -> crate::core::reserve::ReservationConfig {
        let f = format!("{f}.reservations");
        let mut listed = Vec::new();
        for q in &raw.queues {
            match queues.iter().find(|c| c.id.as_str() == q) {
                Some(c) => listed.push(c.id.clone()),
                None => self.err(format!("{f}.queues"), format!("unknown queue {q}")),
            }
        }
        if listed.is_empty() {
            self.err(
                format!("{f}.queues"),
                "list the queues that take bookings (e.g. [\"onestop\"])",
            );
        }
        let slot_min = raw.slot_min.unwrap_or(30);
        if !(5..=240).contains(&slot_min) {
            self.err(format!("{f}.slot_min"), "5 to 240 minutes");
        }
        let booked_share = raw.booked_share.unwrap_or(0.3);
        if !(0.0..=1.0).contains(&booked_share) {
            self.err(
                format!("{f}.booked_share"),
                "a share from 0 to 1 of the counters' time (e.g. 0.3: the rest is for walk-ins)",
            );
        }
        let horizon_days = raw.horizon_days.unwrap_or(28);
        if !(1..=366).contains(&horizon_days) {
            self.err(format!("{f}.horizon_days"), "1 to 366 days");
        }
        let mut periods = Vec::new();
        let default = ["09:00-12:00".to_owned(), "13:00-16:00".to_owned()];
        for p in raw.periods.as_deref().unwrap_or(&default) {
            match parse_break(p) {
                Some(period) => periods.push(period),
                None => self.err(
                    format!("{f}.periods"),
                    format!("{p:?} is not a period as \"HH:MM-HH:MM\" (start before end)"),
                ),
            }
        }
        periods.sort();
        crate::core::reserve::ReservationConfig {
            queues: listed,
            slot_min,
            booked_share,
            check_in_early_min: raw.check_in_early_min.unwrap_or(15),
            check_in_late_min: raw.check_in_late_min.unwrap_or(10),
            horizon_days,
            periods: crate::core::reserve::weekday_periods(periods),
        }
    }
}

impl Validator {
    fn screens(&mut self, f: &str, raw: Option<&raw::Screens>) -> ScreensConfig {
        let mut screens = ScreensConfig::default();
        let Some(raw) = raw else { return screens };
        if let Some(l) = &raw.lobby {
            let lobby = &mut screens.lobby;
            lobby.voice = l.voice.unwrap_or(lobby.voice);
            lobby.chime = l.chime.unwrap_or(lobby.chime);
            if let Some(langs) = &l.languages {
                for lang in langs {
                    if !["ja", "en"].contains(&lang.as_str()) {
                        self.err(
                            format!("{f}.screens.lobby.languages"),
                            format!("calls are spoken in ja or en, not {lang:?}"),
                        );
                    }
                }
                lobby.languages = langs.clone();
            }
            if let Some(rotate) = &l.rotate {
                for lang in rotate {
                    if !["zh", "ko", "vi"].contains(&lang.as_str()) {
                        self.err(
                            format!("{f}.screens.lobby.rotate"),
                            format!("labels exist for zh, ko and vi, not {lang:?}"),
                        );
                    }
                }
                lobby.rotate = rotate.clone();
            }
        }
        if let Some(fl) = &raw.floor {
            if let Some(m) = fl.wait_alert_min {
                if m == 0 {
                    self.err(
                        format!("{f}.screens.floor.wait_alert_min"),
                        "must be at least 1 minute",
                    );
                }
                screens.floor.wait_alert_min = m;
            }
            if let Some(s) = fl.suggest_every_s {
                if !(2..=3600).contains(&s) {
                    self.err(
                        format!("{f}.screens.floor.suggest_every_s"),
                        "must be 2–3600 seconds",
                    );
                }
                screens.floor.suggest_every_s = s;
            }
        }
        screens
    }
}

fn life_event_codes(l: &LifeEvent) -> impl Iterator<Item = &ProcedureCode> {
    l.procedures.iter().chain(
        l.questions
            .iter()
            .flat_map(|q| q.yes.iter().chain(q.no.iter())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(Path::new("test.toml"), text, &|_| None)
    }

    /// A site with one webhook, `extra` added to its table, the secret in the environment.
    fn with_webhook(extra: &str) -> Result<Config, ConfigErrors> {
        let text = format!(
            r#"
            [[procedures]]
            code = "a"
            name = {{ ja = "A", en = "A" }}
            service_min = 5
            [[sites]]
            id = "s"
            name = {{ ja = "S", en = "S" }}
            [[sites.queues]]
            id = "q"
            name = {{ ja = "列", en = "Queue" }}
            procedures = ["a"]
            [[sites.counters]]
            id = "1"
            name = {{ ja = "1番", en = "No. 1" }}
            queues = ["q"]
            [[sites.webhooks]]
            name = "dx"
            url = "https://dx.city.example.jp/madoguchi"
            secret_env = "DX_SECRET"
            events = ["visit.completed"]
            {extra}
            "#
        );
        Config::parse(Path::new("test.toml"), &text, &|var| {
            (var == "DX_SECRET").then(|| "0123456789abcdef0123".to_owned())
        })
    }

    #[test]
    fn a_webhook_may_trust_a_city_ca_given_as_a_pem_file() {
        let dir = tempfile::tempdir().unwrap();
        // A self-signed CA certificate (P-256), as a city's own CA would issue.
        let pem = dir.path().join("city-ca.pem");
        std::fs::write(&pem, CITY_CA).unwrap();
        let config = with_webhook(&format!("ca_file = {:?}", pem.display().to_string()))
            .unwrap_or_else(|e| panic!("{e}"));
        let hook = &config.webhooks[&"s".parse().unwrap()][0];
        assert_eq!(hook.ca_pem.as_deref(), Some(CITY_CA.as_bytes()));
        assert!(
            hook.handover,
            "visit.completed: counted as handed over by default"
        );
        // A missing file, and a file without a certificate: errors naming the field.
        let missing = with_webhook(r#"ca_file = "/nonexistent/ca.pem""#).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("sites[0].webhooks[0].ca_file: cannot read /nonexistent/ca.pem"),
            "{missing}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk =
            with_webhook(&format!("ca_file = {:?}", junk.display().to_string())).unwrap_err();
        assert!(
            junk.to_string().contains("holds no PEM certificate"),
            "{junk}"
        );
    }

    #[test]
    fn webhook_settings_are_checked() {
        let errors = with_webhook(
            r#"max_attempts = 0
            timeout_s = 500"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            errors.contains("webhooks[0].max_attempts: 1 to 100"),
            "{errors}"
        );
        assert!(
            errors.contains("webhooks[0].timeout_s: 1 to 120 seconds"),
            "{errors}"
        );
        let unset = Config::parse(Path::new("test.toml"), &with_webhook_text(), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            unset.contains("secret_env: environment variable DX_SECRET is not set"),
            "{unset}"
        );
        // The secret never shows in a configuration's debug output; check-config names the
        // subscriber, its host and its events.
        let config = with_webhook("").unwrap();
        let debug = format!("{:?}", config.webhooks);
        assert!(!debug.contains("0123456789abcdef0123"), "{debug}");
        let summary = config.summary();
        assert!(
            summary.contains("  webhook dx → dx.city.example.jp: visit.completed (handover)\n"),
            "{summary}"
        );
        assert!(!summary.contains("0123456789abcdef0123"), "{summary}");
    }

    fn with_webhook_text() -> String {
        r#"
        [[procedures]]
        code = "a"
        name = { ja = "A", en = "A" }
        service_min = 5
        [[sites]]
        id = "s"
        name = { ja = "S", en = "S" }
        [[sites.queues]]
        id = "q"
        name = { ja = "列", en = "Queue" }
        procedures = ["a"]
        [[sites.counters]]
        id = "1"
        name = { ja = "1番", en = "No. 1" }
        queues = ["q"]
        [[sites.webhooks]]
        url = "https://dx.city.example.jp/madoguchi"
        secret_env = "DX_SECRET"
        events = ["visit.completed"]
        "#
        .to_owned()
    }

    const CITY_CA: &str = concat!(
        "-----BEGIN CERTIFICATE-----\n",
        "MIIBjzCCATWgAwIBAgIUHLoiwvnFTYoo8OUPqS/zQAA/08wwCgYIKoZIzj0EAwIw\n",
        "HTEbMBkGA1UEAwwSY2l0eS1jYS5leGFtcGxlLmpwMB4XDTI2MTIwNzEyMjUyNloX\n",
        "DTM2MTIwNDEyMjUyNlowHTEbMBkGA1UEAwwSY2l0eS1jYS5leGFtcGxlLmpwMFkw\n",
        "EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+BraF1xSOYwTF1S+utPL/dHzkoCmrMcD\n",
        "W6mf7zfml3arLvPo98QRmFOKPuUbt92Z5MBWSolvm7GYqancZgUW0aNTMFEwHQYD\n",
        "VR0OBBYEFEc1Uizc1AS3TRgVikZGCw7sPJPoMB8GA1UdIwQYMBaAFEc1Uizc1AS3\n",
        "TRgVikZGCw7sPJPoMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh\n",
        "AN9Hej26MFSgmY10ZloavjujThJtQGDPVNOR1uv+TeP0AiB/6S1nKskBBMAFMqWw\n",
        "UxbS/rN45dCWVI09SULlx7JPFw==\n",
        "-----END CERTIFICATE-----\n",
    );

    #[test]
    fn demo_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.site(&"chuo".parse().unwrap()).is_some());
        assert!(config.demo_tokens);
    }

    #[test]
    fn city_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/city.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        // The city file reads every token from the environment.
        let env = |name: &str| Some(format!("{}-secret-0123456789abcdef", name.to_lowercase()));
        let config = Config::parse(&path, &text, &env).unwrap_or_else(|e| panic!("{e}"));
        assert!(!config.demo_tokens);
        assert_eq!(config.tokens.len(), 5);
        assert_eq!(config.sites.len(), 13);
        // Real reception hours: every queue has some; the ward office's Sunday mornings of the
        // moving season; the service office's lunch; the new year and holidays closed.
        let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let hours = |site: &str| {
            let site = config.sites.iter().find(|s| s.id.as_str() == site).unwrap();
            assert!(site.queues.iter().all(|q| q.hours.is_some()), "{}", site.id);
            site.queues[0].hours.clone().unwrap()
        };
        let chuo = hours("chuo");
        assert_eq!(
            chuo.periods(date("2027-03-28")).len(),
            1,
            "a Sunday opening"
        );
        assert!(chuo.periods(date("2027-03-21")).is_empty(), "a Sunday");
        assert!(chuo.periods(date("2027-01-11")).is_empty(), "成人の日");
        assert!(chuo.periods(date("2026-12-30")).is_empty(), "the new year");
        assert_eq!(chuo.periods(date("2026-12-07")).len(), 1, "a Monday");
        assert_eq!(
            hours("chuo_ekimae").periods(date("2026-12-07")).len(),
            2,
            "lunch"
        );
        assert_eq!(config.public.origins, ["https://www.city.example.jp"]);
        let summary = config.summary();
        assert!(
            summary.contains("reception (every queue): mon-fri 08:45-12:00 13:00-17:00, sat-sun closed; holidays closed; 1 closure(s); last ticket 30 min before the end; closes when full"),
            "{summary}"
        );
    }

    /// The demo catalog and site with `tokens` instead of the demo tokens.
    fn demo_with_tokens(tokens: &str) -> Result<Config, ConfigErrors> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml");
        let demo = std::fs::read_to_string(path).unwrap();
        let start = demo.find("[[tokens]]").unwrap();
        let end = demo.find("[[procedures]]").unwrap();
        let text = format!("{}{tokens}\n{}", &demo[..start], &demo[end..]);
        Config::parse(Path::new("test.toml"), &text, &|var| {
            (var == "COUNTER_TOKEN").then(|| "c".repeat(40))
        })
    }

    #[test]
    fn tokens_by_hash_with_names_and_bindings() {
        let real = "r".repeat(32);
        let config = demo_with_tokens(&format!(
            r#"
            [[tokens]]
            role = "floor"
            name = "floor-manager-1f"
            token_sha256 = "{}"
            sites = ["chuo"]

            [[tokens]]
            role = "counter"
            name = "counter-3"
            token_env = "COUNTER_TOKEN"
            counters = ["3"]

            [[tokens]]
            role = "analyst"
            token = "{real}"

            [[tokens]]
            role = "dispenser"
            token = "demo-dispenser"
            "#,
            sha256("f".repeat(40).as_str())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let floor = &config.tokens[&sha256(&"f".repeat(40))];
        assert_eq!(floor.name, "floor-manager-1f");
        assert_eq!(floor.role, Role::Floor);
        let counter = &config.tokens[&sha256(&"c".repeat(40))];
        assert_eq!(counter.name, "counter-3");
        assert!(counter
            .counters
            .as_ref()
            .unwrap()
            .contains(&"3".parse().unwrap()));
        // A name by default: the role and the entry's place.
        assert_eq!(config.tokens[&sha256(&real)].name, "analyst-3");
        // Demo values are accepted anywhere, and flagged.
        assert!(config.demo_tokens);
    }

    #[test]
    fn short_tokens_bad_hashes_and_wrong_bindings_are_refused() {
        let errors = demo_with_tokens(
            r#"
            [[tokens]]
            role = "counter"
            token = "only-twenty-characters"

            [[tokens]]
            role = "floor"
            token_sha256 = "abc"

            [[tokens]]
            role = "floor"
            token = "ffffffffffffffffffffffffffffffffffff"
            counters = ["1"]

            [[tokens]]
            role = "counter"
            token = "cccccccccccccccccccccccccccccccccccc"
            counters = ["99"]

            [[tokens]]
            role = "printer"
            token = "pppppppppppppppppppppppppppppppppppp"

            [[tokens]]
            role = "analyst"
            token = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            token_sha256 = "aaaa"
            "#,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "tokens[0]: a token must be at least 32 characters",
            "tokens[1].token_sha256: 64 hexadecimal digits",
            "tokens[2].counters: only counter tokens are bound to counters",
            "tokens[3].counters: no site of this token has counter 99",
            "tokens[4].agents: a printer token must list the agents it serves",
            "tokens[5]: give exactly one of `token`, `token_env` and `token_sha256`",
        ] {
            assert!(
                errors.contains(expected),
                "{expected} missing from\n{errors}"
            );
        }
        // No error message repeats a token.
        assert!(!errors.contains("only-twenty-characters"), "{errors}");
    }

    #[test]
    fn every_error_is_reported_with_its_field() {
        let errors = parse(
            r#"
            [[tokens]]
            role = "floor"
            token_env = "NOT_SET_ANYWHERE"
            [[procedures]]
            code = "a"
            name = { ja = "あ", en = "A" }
            service_min = 5
            [[sites]]
            id = "s"
            name = { ja = "拠点", en = "Site" }
            [[sites.queues]]
            id = "q"
            name = { ja = "列", en = "Queue" }
            procedures = ["a", "missing"]
            [[sites.counters]]
            id = "1"
            name = { ja = "1番", en = "No. 1" }
            queues = ["nope"]
            "#,
        )
        .unwrap_err();
        let text = errors.to_string();
        assert!(
            text.contains(
                "test.toml: tokens[0].token_env: environment variable NOT_SET_ANYWHERE is not set"
            ),
            "{text}"
        );
        assert!(
            text.contains("sites[s].queues[q].procedures: unknown procedure missing"),
            "{text}"
        );
        assert!(
            text.contains("sites[s].counters[1].queues: unknown queue nope"),
            "{text}"
        );
        assert!(
            text.contains("sites[s].queues[q]: no counter serves this queue"),
            "{text}"
        );
        assert_eq!(errors.0.len(), 4, "{text}");
    }

    #[test]
    fn frame_ancestors_are_origins() {
        let demo = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml"),
        )
        .unwrap();
        let with = |list: &str| parse(&format!("{demo}\n[screens]\nframe_ancestors = [{list}]\n"));
        let config = with(r#""https://www.city.example.jp", "HTTP://Intra.City.example.jp:8443""#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.frame_ancestors,
            [
                "https://www.city.example.jp",
                "http://intra.city.example.jp:8443"
            ]
        );
        assert!(parse(&demo).unwrap().frame_ancestors.is_empty());
        let bad = [
            "https://www.city.example.jp/",
            "https://www.city.example.jp/lobby",
            "www.city.example.jp",
            "ftp://www.city.example.jp",
            "https://*.city.example.jp",
            "https://www.city.example.jp:0",
            "https://www.city.example.jp:99999",
            "https://www.city.example.jp; script-src *",
            "'self'",
            "https://",
        ];
        for o in bad {
            let text = with(&format!("{o:?}")).unwrap_err().to_string();
            assert!(
                text.contains("screens.frame_ancestors[0]: ") && text.contains("is not an origin"),
                "{o}: {text}"
            );
        }
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let errors = parse("[[sites]]\nid = \"s\"\nnmae = 1\n").unwrap_err();
        let text = errors.to_string();
        assert!(text.starts_with("test.toml: line 3, column 1:"), "{text}");
        assert!(text.contains("unknown field `nmae`"), "{text}");
    }

    #[test]
    fn kpi_range_cap_and_export_stall_are_limits() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml");
        let demo = std::fs::read_to_string(&path).unwrap();
        let d = parse(&demo).unwrap().limits;
        assert_eq!((d.kpi_max_days, d.export_stall.as_secs()), (400, 30));
        let set = parse(&format!(
            "{demo}\n[limits]\nkpi_max_days = 31\nexport_stall_s = 2\n"
        ))
        .unwrap()
        .limits;
        assert_eq!((set.kpi_max_days, set.export_stall.as_secs()), (31, 2));
        let text = parse(&format!(
            "{demo}\n[limits]\nkpi_max_days = 0\nexport_stall_s = 0\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(text.contains("limits.kpi_max_days"), "{text}");
        assert!(text.contains("limits.export_stall_s"), "{text}");
    }
}
