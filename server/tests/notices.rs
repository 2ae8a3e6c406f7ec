//! Near-turn notices in the pure core, with virtual time: a ticket that asked is told once, when
//! it comes within the site's rule (places or minutes from its call), never after it was called;
//! withdrawing stops it; a channel the site does not offer is refused; a snapshot keeps what is
//! pending.

use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, FixedOffset, TimeZone, Utc};
use madoguchi::config::{Config, SiteConfig};
use madoguchi::core::notice::NoticeChannel;
use madoguchi::core::{
    decide, Command, DomainError, Event, IssueCommand, PlanRequest, SiteSnapshot, SiteState,
    TicketId, TicketNumber, Timestamp,
};

/// One queue, one counter open, ten-minute services; e-mail offered (a mail server is set).
fn site(rule: &str) -> Arc<SiteConfig> {
    let text = format!(
        r#"
timezone = "Asia/Tokyo"

[notices]
smtp_host = "127.0.0.1"
smtp_security = "none"
from = "madoguchi@city.example.jp"

[[procedures]]
code = "move"
name = {{ ja = "転入", en = "Moving in" }}
service_min = 10

[[sites]]
id = "ward"
name = {{ ja = "区役所", en = "Ward office" }}

[sites.notices]
{rule}

[[sites.queues]]
id = "onestop"
name = {{ ja = "ワンストップ", en = "One-stop" }}
prefix = "A"
procedures = ["move"]

[[sites.counters]]
id = "1"
name = {{ ja = "1番", en = "No. 1" }}
queues = ["onestop"]
state = "open"
"#
    );
    let config = Config::parse(Path::new("notices.toml"), &text, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    config.site(&"ward".parse().unwrap()).unwrap().clone()
}

fn at(minute: i64) -> Timestamp {
    FixedOffset::east_opt(9 * 3600)
        .unwrap()
        .with_ymd_and_hms(2027, 1, 12, 9, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
        + Duration::minutes(minute)
}

struct Site {
    state: SiteState,
    tokens: Vec<String>,
}

impl Site {
    fn new(rule: &str) -> Self {
        Self {
            state: SiteState::new(site(rule)),
            tokens: Vec::new(),
        }
    }

    fn run(&mut self, command: Command, now: Timestamp) -> Result<Vec<Event>, DomainError> {
        let events = decide(&self.state, &command, now)?;
        for e in &events {
            self.state.apply(e);
        }
        Ok(events)
    }

    /// Issues ticket number `tokens.len() + 1`.
    fn issue(&mut self, now: Timestamp) {
        let n = self.tokens.len() + 1;
        let token = format!("{n:032x}");
        self.run(
            Command::Issue(IssueCommand {
                id: TicketId::try_from(format!("t{n}")).unwrap(),
                token: token.clone(),
                plan: PlanRequest::Procedures(vec!["move".parse().unwrap()]),
                priority: false,
                dispenser: None,
                lang: Some("ja".into()),
                idempotency_key: None,
            }),
            now,
        )
        .unwrap();
        self.tokens.push(token);
    }

    fn ask(&mut self, n: usize, now: Timestamp) -> Result<Vec<Event>, DomainError> {
        let token = self.tokens[n - 1].clone();
        self.run(
            Command::RequestNotice {
                token,
                channel: NoticeChannel::Email,
                link_code: None,
            },
            now,
        )
    }

    /// What the site's owner does after every change: the notices due now, by ticket number.
    fn notices(&mut self, now: Timestamp) -> Vec<(String, u32)> {
        self.run(Command::NoticeNearTurn, now)
            .unwrap()
            .into_iter()
            .map(|e| match e {
                Event::NearTurnNoticed { number, place, .. } => (number.0, place),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn call_next(&mut self, now: Timestamp) {
        let counter = "1".parse().unwrap();
        if self.state.counters[0].current.is_some() {
            // Called tickets start before they complete; a started one just completes.
            let _ = self.run(
                Command::Start {
                    counter: "1".parse().unwrap(),
                },
                now,
            );
            self.run(
                Command::Complete {
                    counter: "1".parse().unwrap(),
                    transfer_to: None,
                },
                now,
            )
            .unwrap();
        }
        self.run(Command::CallNext { counter }, now).unwrap();
    }
}

#[test]
fn a_notice_goes_out_once_when_the_ticket_comes_within_the_places() {
    let mut site = Site::new("places = 1\nminutes = 0");
    for m in 0..3 {
        site.issue(at(m));
    }
    site.ask(3, at(3)).unwrap();
    // Third in line: not yet.
    assert!(site.notices(at(3)).is_empty());
    site.call_next(at(4));
    // Second in line: not yet.
    assert!(site.notices(at(4)).is_empty());
    site.call_next(at(14));
    // Next in line: told once, with its place.
    assert_eq!(site.notices(at(14)), vec![("A003".to_owned(), 1)]);
    assert!(site.notices(at(15)).is_empty(), "only once");
    site.call_next(at(24));
    assert!(site.notices(at(24)).is_empty(), "not after the call either");
    // Asking again after it went out is refused.
    let t = &site
        .state
        .tickets
        .values()
        .find(|t| t.number.0 == "A003")
        .unwrap();
    assert!(t.notice.as_ref().unwrap().sent);
}

#[test]
fn the_minutes_rule_counts_the_estimated_wait() {
    // Ten-minute services at one counter: third in line waits about twenty minutes.
    let mut site = Site::new("places = 1\nminutes = 25");
    for m in 0..4 {
        site.issue(at(m));
    }
    site.ask(4, at(4)).unwrap();
    site.ask(3, at(4)).unwrap();
    let told = site.notices(at(4));
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, "A003", "within 25 minutes: {told:?}");
    site.call_next(at(5));
    assert_eq!(site.notices(at(5)), vec![("A004".to_owned(), 3)]);
}

#[test]
fn a_ticket_called_first_is_never_told() {
    let mut site = Site::new("places = 1\nminutes = 0");
    for m in 0..3 {
        site.issue(at(m));
    }
    site.ask(3, at(3)).unwrap();
    // Called out of order before it came within the rule.
    site.run(
        Command::Call {
            counter: "1".parse().unwrap(),
            number: TicketNumber("A003".into()),
        },
        at(4),
    )
    .unwrap();
    assert!(site.state.notices_pending.is_empty());
    assert!(site.notices(at(4)).is_empty());
    // Sent back to the line as a no-show (or not): still never told.
    for m in 5..40 {
        site.call_next(at(m));
        assert!(site.notices(at(m)).is_empty());
        if site.state.waiting.values().all(|l| l.is_empty()) {
            break;
        }
    }
    // A called ticket cannot ask either.
    assert!(matches!(
        site.ask(3, at(41)),
        Err(DomainError::WrongStatus { .. })
    ));
}

#[test]
fn withdrawing_stops_the_notice_and_an_unoffered_channel_is_refused() {
    let mut site = Site::new("places = 1\nminutes = 0");
    for m in 0..2 {
        site.issue(at(m));
    }
    site.ask(2, at(2)).unwrap();
    let token = site.tokens[1].clone();
    let events = site
        .run(
            Command::WithdrawNotice {
                token: token.clone(),
            },
            at(3),
        )
        .unwrap();
    assert!(matches!(events[..], [Event::NoticeWithdrawn { .. }]));
    site.call_next(at(4));
    assert!(site.notices(at(4)).is_empty());
    // Withdrawing twice does nothing; the gateway channel is not offered here (no webhook).
    assert!(site
        .run(
            Command::WithdrawNotice {
                token: token.clone()
            },
            at(5)
        )
        .unwrap()
        .is_empty());
    assert_eq!(
        site.run(
            Command::RequestNotice {
                token,
                channel: NoticeChannel::Link,
                link_code: Some("ACDEFGHJ".into()),
            },
            at(5),
        ),
        Err(DomainError::NoNotices)
    );
}

#[test]
fn a_snapshot_keeps_the_pending_notices() {
    let mut site = Site::new("places = 1\nminutes = 0");
    for m in 0..3 {
        site.issue(at(m));
    }
    site.ask(3, at(3)).unwrap();
    site.ask(2, at(3)).unwrap();
    site.call_next(at(4));
    assert_eq!(site.notices(at(4)), vec![("A002".to_owned(), 1)]);
    let snapshot = SiteSnapshot::take(&site.state, Some(at(4)));
    let json = serde_json::to_string(&snapshot).unwrap();
    let restored: SiteSnapshot = serde_json::from_str(&json).unwrap();
    let state = restored.restore(site.state.config.clone()).unwrap();
    assert_eq!(state.notices_pending, site.state.notices_pending);
    assert_eq!(
        state.notices_pending.len(),
        1,
        "the third still waits for its notice"
    );
    assert_eq!(state, site.state);
    // The restored site tells the third when its turn nears, as the original does.
    let mut restored = Site {
        state,
        tokens: site.tokens.clone(),
    };
    restored.call_next(at(14));
    site.call_next(at(14));
    assert_eq!(restored.notices(at(14)), vec![("A003".to_owned(), 1)]);
    assert_eq!(site.notices(at(14)), vec![("A003".to_owned(), 1)]);
}
