//! Property fuzzing of the real `madoguchi` binary (issue "Security II"): arbitrary bytes and
//! arbitrary JSON at every mutating route, each with a token of a role that may use it, and
//! arbitrary text and binary frames at the live socket. Whatever arrives, the server answers
//! below 500, stays up without a panic in its log, and a refused request (4xx) changes nothing:
//! the board's `seq` is the same before and after it.
//!
//! The generators aim mostly at invalid input (random bytes, invalid UTF-8, wrong types, unknown
//! keys, huge numbers, nesting deeper than the parser allows, bodies over 64 KiB); a few inputs
//! are valid and may change the state, which is allowed and counted. Each property runs a fixed
//! number of cases against one server and prints what it ran.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;

/// Cases of the HTTP property.
const HTTP_CASES: u32 = 400;
/// Cases of the live-socket property (each a short run of frames on a new socket).
const LIVE_CASES: u32 = 100;
/// The server's cap on request bodies.
const BODY_LIMIT: usize = 64 * 1024;
/// The live feed's cap on client messages and frames.
const LIVE_MESSAGE_LIMIT: usize = 4 * 1024;

/// Writes past the test harness's capture, so CI's log shows how many cases ran.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        // Every case talks to one live server whose state moves on: shrinking replays cases
        // against a different state, so keep it short; the failure message carries the input.
        max_shrink_iters: 32,
        failure_persistence: None,
        ..Config::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Server health
// ---------------------------------------------------------------------------------------------

/// The process is still running (not exited, not a zombie) and its log shows no panic.
fn assert_alive(server: &Server) -> Result<(), TestCaseError> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap_or_default();
    // /proc/PID/stat: "pid (comm) S ...": the state follows the closing parenthesis.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    prop_assert!(
        matches!(state, Some(s) if s != 'Z' && s != 'X'),
        "the server process is gone (state {state:?}); its log:\n{}",
        server.output()
    );
    let log = server.output();
    prop_assert!(
        !log.contains("panicked"),
        "the server's log shows a panic:\n{log}"
    );
    Ok(())
}

/// The board's `seq` (with a token: token holders are never rate-limited).
async fn seq(server: &Server) -> u64 {
    let board = server.board().await;
    board["seq"].as_u64().expect("the board has a seq")
}

/// Numbers restart at 03:00 in Tokyo (18:00 UTC) with a `day_started` event: a refused request
/// that straddles it may see `seq` move for that reason alone.
fn near_day_reset() -> bool {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 86_400;
    (18 * 3600 - 60..=18 * 3600 + 60).contains(&secs)
}

// ---------------------------------------------------------------------------------------------
// JSON that need not be valid
// ---------------------------------------------------------------------------------------------

/// A JSON-like value rendered to text by hand, so it can hold what `serde_json::Value` cannot:
/// numbers beyond any integer or float type, lone surrogates, raw control characters.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    /// Number text as written.
    Num(String),
    Str(String),
    /// Inner text of a string literal, written as is (may be an invalid escape).
    RawStr(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn render(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            J::RawStr(s) => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    v.render(out);
                }
                out.push('}');
            }
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        self.render(&mut s);
        s
    }

    fn from_value(v: &Value) -> J {
        match v {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => J::Num(n.to_string()),
            Value::String(s) => J::Str(s.clone()),
            Value::Array(a) => J::Arr(a.iter().map(J::from_value).collect()),
            Value::Object(o) => J::Obj(
                o.iter()
                    .map(|(k, v)| (k.clone(), J::from_value(v)))
                    .collect(),
            ),
        }
    }
}

/// Every field name any route knows, and some near misses.
const KEYS: &[&str] = &[
    "life_event",
    "answers",
    "procedures",
    "priority",
    "lang",
    "dispenser",
    "number",
    "transfer_to",
    "queue",
    "counter",
    "queues",
    "strategy",
    "score",
    "type",
    "children",
    "kokuho",
    "over_65",
    "over_75",
    "Life_Event",
    "life_event ",
    "",
    "__proto__",
    "constructor",
];

/// Ids of the demo configuration, and near misses.
const WORDS: &[&str] = &[
    "moving_in",
    "moving_out",
    "death",
    "certificates",
    "shoumei",
    "tennyu",
    "onestop",
    "welfare",
    "okuyami",
    "kiosk-1",
    "kiosk-2",
    "kiosk-9",
    "agent-1",
    "1",
    "8",
    "10",
    "99",
    "C001",
    "K001",
    "500",
    "ja",
    "en",
    "xx",
    "profile_order",
    "longest_wait",
    "resync",
    "",
    " ",
    "null",
    "中央",
    "\u{0}",
    "\u{feff}",
    "\u{202e}evil",
    "../../etc/passwd",
    "'; DROP TABLE events; --",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "3",
    "5",
    "6",
    "255",
    "256",
    "65535",
    "4294967296",
    "1.5",
    "1e2",
    "1E+2",
    "-1e-7",
    "1e400",
    "-1e400",
    "1e-400",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890123456789012345678901234567890",
    "0.000000000000000000000000000000000000000000000000000001",
];

/// Inner texts of string literals, escapes included, many of them invalid.
const RAW_STRINGS: &[&str] = &[
    "\\ud800",
    "\\udfff\\ud800",
    "\\u0000",
    "\\x41",
    "\\",
    "\\u12",
    "\t\n",
    "\u{7f}",
    "\\uD83D\\uDE00",
];

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(NUMBERS).prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:e}")),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(16).collect()),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        2 => "\\PC{0,24}",
        1 => any::<String>().prop_map(|s| s.chars().take(32).collect()),
        1 => (1usize..3000).prop_map(|n| "x".repeat(n)),
    ]
}

fn leaf() -> impl Strategy<Value = J> {
    prop_oneof![
        1 => Just(J::Null),
        1 => any::<bool>().prop_map(J::Bool),
        3 => number().prop_map(J::Num),
        4 => string().prop_map(J::Str),
        1 => prop::sample::select(RAW_STRINGS).prop_map(|s| J::RawStr(s.to_owned())),
    ]
}

/// Arbitrary JSON: objects with known and unknown keys, arrays, every kind of leaf.
fn json() -> impl Strategy<Value = J> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
            prop::collection::vec((key(), inner), 0..6).prop_map(J::Obj),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// A request body and what kind of input it is.
#[derive(Clone)]
struct Body {
    kind: &'static str,
    bytes: Vec<u8>,
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(&self.bytes);
        let preview: String = text.chars().take(600).collect();
        write!(
            f,
            "{} ({} bytes): {:?}{}",
            self.kind,
            self.bytes.len(),
            preview,
            if text.chars().count() > 600 {
                "…"
            } else {
                ""
            }
        )
    }
}

fn body(kind: &'static str, bytes: impl Into<Vec<u8>>) -> Body {
    Body {
        kind,
        bytes: bytes.into(),
    }
}

/// What a route accepts, to mutate into what it does not.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Issue,
    NoBody,
    Call,
    Complete,
    Profile,
    Rate,
}

fn valid_examples(shape: Shape) -> Vec<Value> {
    match shape {
        Shape::Issue => vec![
            json!({"life_event": "moving_in", "dispenser": "kiosk-1",
                   "answers": {"children": true, "kokuho": false, "over_65": false, "over_75": false}}),
            json!({"procedures": ["shoumei"], "lang": "en", "priority": true}),
            json!({"life_event": "certificates"}),
        ],
        Shape::NoBody => vec![json!({})],
        Shape::Call => vec![json!({"number": "C001"}), json!({"number": "1"})],
        Shape::Complete => vec![
            json!({"transfer_to": "welfare"}),
            json!({"transfer_to": {"queue": "welfare"}}),
            json!({"transfer_to": {"counter": "8"}}),
            json!({}),
        ],
        Shape::Profile => vec![
            json!({"queues": ["onestop"], "strategy": "profile_order"}),
            json!({"queues": ["certificates", "onestop"], "strategy": "longest_wait"}),
        ],
        Shape::Rate => vec![json!({"score": 4})],
    }
}

/// One change that (nearly always) makes a valid body invalid.
#[derive(Clone, Debug)]
enum Mutation {
    AddKey(String, J),
    Replace(usize, J),
    Drop(usize),
    WrapInArray,
    Truncate(usize),
    Duplicate(usize),
}

fn mutate(value: &Value, mutation: &Mutation) -> Vec<u8> {
    let J::Obj(mut fields) = J::from_value(value) else {
        unreachable!("examples are objects")
    };
    let n = fields.len().max(1);
    match mutation {
        Mutation::AddKey(k, v) => fields.push((k.clone(), v.clone())),
        Mutation::Replace(i, v) if !fields.is_empty() => fields[i % n].1 = v.clone(),
        Mutation::Drop(i) if !fields.is_empty() => {
            fields.remove(i % n);
        }
        Mutation::Duplicate(i) if !fields.is_empty() => {
            let f = fields[i % n].clone();
            fields.push(f);
        }
        Mutation::WrapInArray => return J::Arr(vec![J::Obj(fields)]).text().into_bytes(),
        Mutation::Truncate(at) => {
            let text = J::Obj(fields).text();
            let cut = (at % text.len().max(1)).max(1);
            return text.as_bytes()[..cut].to_vec();
        }
        // Nothing to replace, drop or duplicate in `{}`: add a key instead.
        _ => fields.push(("unexpected".into(), J::Null)),
    }
    J::Obj(fields).text().into_bytes()
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (key(), json()).prop_map(|(k, v)| Mutation::AddKey(k, v)),
        4 => (any::<usize>(), json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<usize>().prop_map(Mutation::Drop),
        1 => Just(Mutation::WrapInArray),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => any::<usize>().prop_map(Mutation::Duplicate),
    ]
}

/// Up to `max` bytes that are never UTF-8 (random high bytes can happen to be: C2 80 is U+0080).
fn invalid_utf8(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(128u8..=255, 1..max).prop_map(|mut bytes| {
        if std::str::from_utf8(&bytes).is_ok() {
            bytes.push(0xff);
        }
        bytes
    })
}

/// Nesting deeper than the JSON parser's limit (128), well within the body cap.
fn deep() -> impl Strategy<Value = Body> {
    (0u8..4, 100usize..12_000).prop_map(|(style, depth)| match style {
        0 => body(
            "deep array",
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        ),
        1 => body(
            "deep object",
            format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)),
        ),
        2 => body(
            "deep transfer_to",
            format!(
                r#"{{"transfer_to":{{"queue":{}"welfare"{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        ),
        // Unclosed: the parser must give up on depth or on the end, not on the stack.
        _ => body("deep unclosed", "[{\"a\":".repeat(depth / 2)),
    })
}

fn body_for(shape: Shape) -> impl Strategy<Value = Body> {
    let examples = valid_examples(shape);
    let near_valid = (prop::sample::select(examples.clone()), mutation())
        .prop_map(|(example, m)| body("mutated valid body", mutate(&example, &m)));
    let valid = prop::sample::select(examples)
        .prop_map(|example| body("valid body", serde_json::to_vec(&example).unwrap()));
    prop_oneof![
        2 => prop_oneof![
            Just(body("empty", Vec::new())),
            Just(body("whitespace", " \r\n\t")),
        ],
        2 => valid,
        18 => prop::collection::vec(any::<u8>(), 1..400).prop_map(|b| body("random bytes", b)),
        8 => (json(), invalid_utf8(8), any::<usize>()).prop_map(
            |(j, bad, at)| {
                // Bytes that are not UTF-8 spliced into JSON text (often inside a string).
                let mut text = j.text().into_bytes();
                let at = at % (text.len() + 1);
                text.splice(at..at, bad);
                body("invalid UTF-8 in JSON", text)
            }
        ),
        6 => invalid_utf8(16).prop_map(|bad| {
            let mut text = br#"{"number":""#.to_vec();
            text.extend(bad);
            text.extend(br#""}"#);
            body("invalid UTF-8 in a string", text)
        }),
        30 => json().prop_map(|j| body("arbitrary JSON", j.text())),
        20 => near_valid,
        7 => deep(),
        3 => (1usize..2048, any::<u8>())
            .prop_map(|(extra, b)| body("over 64 KiB", vec![b; BODY_LIMIT + extra])),
        2 => (0usize..2048).prop_map(|pad| {
            // Valid JSON just under the cap: a long string in an unknown field.
            let filler = "x".repeat(BODY_LIMIT - 64 - pad);
            body("just under 64 KiB", format!(r#"{{"filler":"{filler}"}}"#))
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// A path segment: one the server knows (resolved when the case runs) or made up.
#[derive(Clone, Debug)]
enum Seg {
    Known(usize),
    Raw(String),
}

#[derive(Clone, Debug)]
enum Route {
    Issue {
        token: &'static str,
    },
    Counter {
        counter: Seg,
        action: &'static str,
        token: &'static str,
    },
    Profile {
        counter: Seg,
    },
    StaffCancel {
        number: Seg,
        token: &'static str,
    },
    PhoneCancel {
        token: Seg,
    },
    Rate {
        token: Seg,
    },
}

const ACTIONS: &[&str] = &[
    "open",
    "pause",
    "close",
    "call-next",
    "call",
    "recall",
    "start",
    "no-show",
    "complete",
];

impl Route {
    fn shape(&self) -> Shape {
        match self {
            Route::Issue { .. } => Shape::Issue,
            Route::Counter { action, .. } => match *action {
                "call" => Shape::Call,
                "complete" => Shape::Complete,
                _ => Shape::NoBody,
            },
            Route::Profile { .. } => Shape::Profile,
            Route::StaffCancel { .. } | Route::PhoneCancel { .. } => Shape::NoBody,
            Route::Rate { .. } => Shape::Rate,
        }
    }

    /// A label that does not depend on the made-up parts, for the tally.
    fn label(&self) -> String {
        match self {
            Route::Issue { .. } => "POST tickets".into(),
            Route::Counter { action, .. } => format!("POST counters/*/{action}"),
            Route::Profile { .. } => "PUT counters/*/profile".into(),
            Route::StaffCancel { .. } => "POST tickets/*/cancel".into(),
            Route::PhoneCancel { .. } => "POST /api/v1/tickets/*/cancel".into(),
            Route::Rate { .. } => "POST /api/v1/tickets/*/satisfaction".into(),
        }
    }
}

fn seg(known: impl Strategy<Value = usize>) -> impl Strategy<Value = Seg> {
    prop_oneof![
        6 => known.prop_map(Seg::Known),
        1 => prop_oneof![
            Just("0".to_owned()),
            Just("11".to_owned()),
            Just("01".to_owned()),
            Just("C000".to_owned()),
            "[CK]?[0-9]{1,5}",
            "[0-9a-f]{32}",
            // Not "." or "..": the client would resolve them away and hit another route.
            "\\PC{1,20}".prop_filter("a dot segment", |s| s != "." && s != ".."),
        ]
        .prop_map(Seg::Raw),
    ]
}

fn route() -> impl Strategy<Value = Route> {
    let staff = prop::sample::select(&[COUNTER, FLOOR][..]);
    let counter = || seg(0usize..10);
    prop_oneof![
        6 => prop::sample::select(&[DISPENSER, FLOOR][..]).prop_map(|token| Route::Issue { token }),
        14 => (counter(), prop::sample::select(ACTIONS), staff.clone())
            .prop_map(|(counter, action, token)| Route::Counter { counter, action, token }),
        3 => counter().prop_map(|counter| Route::Profile { counter }),
        3 => (seg(any::<usize>()), staff)
            .prop_map(|(number, token)| Route::StaffCancel { number, token }),
        2 => seg(any::<usize>()).prop_map(|token| Route::PhoneCancel { token }),
        3 => seg(any::<usize>()).prop_map(|token| Route::Rate { token }),
    ]
}

/// Percent-encodes everything but unreserved characters.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
struct HttpCase {
    route: Route,
    content_type: Option<&'static str>,
    idempotency_key: Option<Vec<u8>>,
    body: Body,
}

fn http_case() -> impl Strategy<Value = HttpCase> {
    let content_type = prop::option::weighted(
        0.8,
        prop::sample::select(
            &[
                "application/json",
                "application/json; charset=utf-8",
                "application/json; charset=utf-16",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/octet-stream",
                "*/*",
            ][..],
        ),
    );
    let idempotency_key = prop::option::weighted(
        0.3,
        prop_oneof![
            "[ -~]{1,40}".prop_map(String::into_bytes),
            Just(Vec::new()),
            (129usize..300).prop_map(|n| vec![b'k'; n]),
            // obs-text: a valid header value that is not visible ASCII.
            prop::collection::vec(128u8..=255, 1..20),
        ],
    );
    route().prop_flat_map(move |route| {
        let shape = route.shape();
        (
            Just(route),
            content_type.clone(),
            idempotency_key.clone(),
            body_for(shape),
        )
            .prop_map(|(route, content_type, idempotency_key, body)| HttpCase {
                route,
                content_type,
                idempotency_key,
                body,
            })
    })
}

/// Tickets issued for the fuzz run to find: numbers for staff routes, phone tokens for the
/// residents' routes. Extended with every ticket a valid fuzz input issues.
#[derive(Default)]
struct Known {
    numbers: Vec<String>,
    tokens: Vec<String>,
}

struct Tally {
    cases: u32,
    by_status: BTreeMap<u16, u32>,
    by_route: BTreeMap<String, (u32, u32)>,
    seq_checked: u32,
}

impl HttpCase {
    fn path(&self, known: &Known) -> String {
        let counters = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];
        let resolve = |s: &Seg, list: &[String]| match s {
            Seg::Known(i) if !list.is_empty() => encode(&list[i % list.len()]),
            Seg::Known(_) => "none".to_owned(),
            Seg::Raw(raw) => encode(raw),
        };
        let counter = |s: &Seg| match s {
            Seg::Known(i) => counters[i % counters.len()].to_owned(),
            Seg::Raw(raw) => encode(raw),
        };
        match &self.route {
            Route::Issue { .. } => "/api/v1/sites/chuo/tickets".into(),
            Route::Counter {
                counter: c, action, ..
            } => format!("/api/v1/sites/chuo/counters/{}/{action}", counter(c)),
            Route::Profile { counter: c } => {
                format!("/api/v1/sites/chuo/counters/{}/profile", counter(c))
            }
            Route::StaffCancel { number, .. } => format!(
                "/api/v1/sites/chuo/tickets/{}/cancel",
                resolve(number, &known.numbers)
            ),
            Route::PhoneCancel { token } => {
                format!("/api/v1/tickets/{}/cancel", resolve(token, &known.tokens))
            }
            Route::Rate { token } => format!(
                "/api/v1/tickets/{}/satisfaction",
                resolve(token, &known.tokens)
            ),
        }
    }

    fn token(&self) -> Option<&'static str> {
        match &self.route {
            Route::Issue { token }
            | Route::Counter { token, .. }
            | Route::StaffCancel { token, .. } => Some(token),
            Route::Profile { .. } => Some(FLOOR),
            Route::PhoneCancel { .. } | Route::Rate { .. } => None,
        }
    }
}

/// A few tickets in every state the routes care about: waiting, called, serving, done.
async fn seed(server: &Server, known: &mut Known) {
    let plans = [
        json!({"life_event": "moving_in", "dispenser": "kiosk-1",
               "answers": {"children": true, "kokuho": false, "over_65": true, "over_75": false}}),
        json!({"procedures": ["shoumei"]}),
        json!({"life_event": "death",
               "answers": {"head_of_household": false, "pension": true, "over_65": true, "over_75": false}}),
        json!({"procedures": ["tennyu"], "priority": true}),
        json!({"procedures": ["tenkyo"]}),
        json!({"procedures": ["shoumei"], "lang": "en"}),
    ];
    for plan in plans {
        let ticket = server.issue(plan).await;
        known
            .numbers
            .push(ticket["number"].as_str().unwrap().to_owned());
        known
            .tokens
            .push(ticket["token"].as_str().unwrap().to_owned());
    }
    // Counter 1: called; counter 2: serving; counter 3: one visit done (its token can rate).
    for (counter, actions) in [
        ("1", &["call-next"][..]),
        ("2", &["call-next", "start"][..]),
        ("3", &["call-next", "start", "complete"][..]),
    ] {
        for action in actions {
            let (status, reply) = server.counter(counter, action, None).await;
            assert_eq!(status, 200, "{counter}/{action}: {reply}");
        }
    }
}

async fn run_http_case(
    server: &Server,
    client: &reqwest::Client,
    known: &Mutex<Known>,
    tally: &Mutex<Tally>,
    case: &HttpCase,
) -> Result<(), TestCaseError> {
    let path = case.path(&known.lock().unwrap());
    let method = match case.route {
        Route::Profile { .. } => reqwest::Method::PUT,
        _ => reqwest::Method::POST,
    };
    let before = seq(server).await;
    let mut request = client
        .request(method.clone(), server.url(&path))
        .body(case.body.bytes.clone());
    if let Some(token) = case.token() {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(key) = &case.idempotency_key {
        let value = reqwest::header::HeaderValue::from_bytes(key).expect("a valid header value");
        request = request.header("idempotency-key", value);
    }
    let response = request.send().await;
    assert_alive(server)?;
    let response = match response {
        Ok(r) => r,
        // The server may refuse a body over the cap and close before it has all arrived: the
        // client sees the connection end (tallied as status 0).
        Err(_) if case.body.bytes.len() > BODY_LIMIT => {
            let after = seq(server).await;
            prop_assert_eq!(before, after, "a body over the cap changed the state");
            tally_case(tally, case, 0);
            return Ok(());
        }
        Err(e) => return Err(TestCaseError::fail(format!("{method} {path}: {e}"))),
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    prop_assert!(
        status < 500,
        "{} {} answered {}: {}",
        method,
        path,
        status,
        text
    );
    let after = seq(server).await;
    if (400..500).contains(&status) {
        // A refused request carries the documented error shape and changes nothing.
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        prop_assert!(
            error["error"]["code"].is_string(),
            "{} {} answered {} without an error code: {:?}",
            method,
            path,
            status,
            text
        );
        if !near_day_reset() {
            prop_assert_eq!(
                before,
                after,
                "{} {} was refused with {} ({}) but seq moved",
                method,
                path,
                status,
                text
            );
            tally.lock().unwrap().seq_checked += 1;
        }
    } else if status == 201 {
        // A ticket issued by a valid input: its number and token join the known ones.
        let reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let mut known = known.lock().unwrap();
        if let (Some(n), Some(t)) = (
            reply["ticket"]["number"].as_str(),
            reply["ticket"]["token"].as_str(),
        ) {
            known.numbers.push(n.to_owned());
            known.tokens.push(t.to_owned());
        }
    }
    tally_case(tally, case, status);
    Ok(())
}

fn tally_case(tally: &Mutex<Tally>, case: &HttpCase, status: u16) {
    let mut tally = tally.lock().unwrap();
    tally.cases += 1;
    *tally.by_status.entry(status).or_default() += 1;
    let entry = tally.by_route.entry(case.route.label()).or_default();
    entry.0 += 1;
    if (200..300).contains(&status) {
        entry.1 += 1;
    }
}

#[test]
fn arbitrary_bodies_at_every_mutating_route_are_refused_without_harm() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let server = rt.block_on(Server::start(&dir.path().join("data")));
    let known = Mutex::new(Known::default());
    rt.block_on(seed(&server, &mut known.lock().unwrap()));
    let tally = Mutex::new(Tally {
        cases: 0,
        by_status: BTreeMap::new(),
        by_route: BTreeMap::new(),
        seq_checked: 0,
    });
    // Each fuzz request on a connection of its own. A request refused before its body is read
    // (a token checked first, a body over the cap) ends its connection after the answer, without
    // `Connection: close`: a pooled client could reuse it for the next request and see it reset.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let result = runner(HTTP_CASES).run(&http_case(), |case| {
        rt.block_on(run_http_case(&server, &client, &known, &tally, &case))
    });
    let tally = tally.into_inner().unwrap();
    let ok: u32 = tally
        .by_status
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    report(&format!(
        "e2e_fuzz http: {} cases in {:.1} s: {} accepted (2xx), {} refused (4xx, seq unchanged in {}); statuses (0: closed mid-body) {:?}",
        tally.cases,
        started.elapsed().as_secs_f64(),
        ok,
        tally.cases - ok,
        tally.seq_checked,
        tally.by_status
    ));
    for (route, (n, accepted)) in &tally.by_route {
        report(&format!("  {route}: {n} cases, {accepted} accepted"));
    }
    if let Err(e) = result {
        panic!("{e}\nserver log:\n{}", server.output());
    }
    assert!(tally.cases >= HTTP_CASES, "ran {} cases", tally.cases);
    assert!(
        ok * 4 < tally.cases,
        "most inputs should be invalid: {ok} of {} were accepted",
        tally.cases
    );
    assert!(
        rt.block_on(server.http.get(server.url("/readyz")).send())
            .is_ok_and(|r| r.status() == 200),
        "the server is ready after the run"
    );
}

// ---------------------------------------------------------------------------------------------
// The live socket
// ---------------------------------------------------------------------------------------------

/// One frame a client may send to `/api/v1/sites/{site}/live`.
#[derive(Clone)]
enum ClientFrame {
    Text(String),
    Binary(Vec<u8>),
    /// A text frame whose payload is not UTF-8.
    BadText(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A message in two fragments (text, then a continuation).
    Fragmented(String, String),
    /// A continuation frame with nothing to continue.
    StrayContinuation(Vec<u8>),
    /// A data frame with a reserved opcode (3–7).
    Reserved(u8, Vec<u8>),
    /// A text frame with reserved bits set (no extension was negotiated).
    Rsv(u8, String),
    /// A close frame with any payload: none, a code, a code and a reason, one byte.
    Close(Vec<u8>),
}

impl fmt::Debug for ClientFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            let p: String = s.chars().take(80).collect();
            format!("{} bytes {:?}", b.len(), p)
        };
        match self {
            ClientFrame::Text(t) => write!(f, "Text({})", short(t.as_bytes())),
            ClientFrame::Binary(b) => write!(f, "Binary({})", short(b)),
            ClientFrame::BadText(b) => write!(f, "BadText({})", short(b)),
            ClientFrame::Ping(b) => write!(f, "Ping({})", short(b)),
            ClientFrame::Pong(b) => write!(f, "Pong({})", short(b)),
            ClientFrame::Fragmented(a, b) => {
                write!(
                    f,
                    "Fragmented({}, {})",
                    short(a.as_bytes()),
                    short(b.as_bytes())
                )
            }
            ClientFrame::StrayContinuation(b) => write!(f, "StrayContinuation({})", short(b)),
            ClientFrame::Reserved(op, b) => write!(f, "Reserved({op}, {})", short(b)),
            ClientFrame::Rsv(bits, t) => write!(f, "Rsv({bits:#05b}, {})", short(t.as_bytes())),
            ClientFrame::Close(b) => write!(f, "Close({b:?})"),
        }
    }
}

/// How the server must take a frame.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    /// Read and ignored (or answered): the socket stays open.
    Kept,
    /// Over 4 KiB: closed with 1009.
    TooBig,
    /// A protocol error or a close: the socket ends.
    Ends,
}

impl ClientFrame {
    fn fate(&self) -> Fate {
        match self {
            ClientFrame::Text(t) if t.len() > LIVE_MESSAGE_LIMIT => Fate::TooBig,
            ClientFrame::Binary(b) if b.len() > LIVE_MESSAGE_LIMIT => Fate::TooBig,
            ClientFrame::Fragmented(a, b) if a.len() + b.len() > LIVE_MESSAGE_LIMIT => Fate::TooBig,
            ClientFrame::Text(_)
            | ClientFrame::Binary(_)
            | ClientFrame::Ping(_)
            | ClientFrame::Pong(_)
            | ClientFrame::Fragmented(..) => Fate::Kept,
            ClientFrame::BadText(_)
            | ClientFrame::StrayContinuation(_)
            | ClientFrame::Reserved(..)
            | ClientFrame::Rsv(..)
            | ClientFrame::Close(_) => Fate::Ends,
        }
    }

    fn message(&self) -> Vec<Message> {
        // Raw frames, written as given (the client masks them).
        let raw = |bytes: &[u8], opcode, is_final, rsv: u8| {
            let header = FrameHeader {
                is_final,
                rsv1: rsv & 1 != 0,
                rsv2: rsv & 2 != 0,
                rsv3: rsv & 4 != 0,
                opcode,
                mask: None,
            };
            Message::Frame(Frame::from_payload(header, bytes.to_vec().into()))
        };
        match self {
            ClientFrame::Text(t) => vec![Message::Text(t.clone().into())],
            ClientFrame::Binary(b) => vec![Message::Binary(b.clone().into())],
            ClientFrame::BadText(b) => vec![raw(b, OpCode::Data(Data::Text), true, 0)],
            ClientFrame::Ping(b) => vec![Message::Ping(b.clone().into())],
            ClientFrame::Pong(b) => vec![Message::Pong(b.clone().into())],
            ClientFrame::Fragmented(a, b) => vec![
                raw(a.as_bytes(), OpCode::Data(Data::Text), false, 0),
                raw(b.as_bytes(), OpCode::Data(Data::Continue), true, 0),
            ],
            ClientFrame::StrayContinuation(b) => {
                vec![raw(b, OpCode::Data(Data::Continue), true, 0)]
            }
            ClientFrame::Reserved(op, b) => {
                vec![raw(b, OpCode::Data(Data::Reserved(*op)), true, 0)]
            }
            ClientFrame::Rsv(bits, t) => {
                vec![raw(t.as_bytes(), OpCode::Data(Data::Text), true, *bits)]
            }
            ClientFrame::Close(b) => vec![raw(b, OpCode::Control(Control::Close), true, 0)],
        }
    }
}

fn client_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => json().prop_map(|j| j.text()),
        2 => prop::sample::select(
            &[
                r#"{"type":"resync"}"#,
                r#"{"type":"RESYNC"}"#,
                r#"{"type":null}"#,
                r#"{"type":"snapshot","seq":18446744073709551616}"#,
                r#"{"type":"resync","extra":[[[[[[[[]]]]]]]]}"#,
                "",
                "null",
            ][..],
        )
        .prop_map(str::to_owned),
        2 => "\\PC{0,200}",
        1 => (0usize..4).prop_map(|d| format!("{}{}", "[".repeat(100 * d + 200), "]".repeat(100 * d + 200))),
        1 => (LIVE_MESSAGE_LIMIT + 1..LIVE_MESSAGE_LIMIT * 3).prop_map(|n| "r".repeat(n)),
    ]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    let bytes = |max: usize| prop::collection::vec(any::<u8>(), 0..max);
    prop_oneof![
        10 => client_text().prop_map(ClientFrame::Text),
        5 => prop_oneof![
            8 => bytes(300),
            1 => (LIVE_MESSAGE_LIMIT + 1..LIVE_MESSAGE_LIMIT * 2).prop_map(|n| vec![0xa5; n]),
        ]
        .prop_map(ClientFrame::Binary),
        2 => invalid_utf8(40).prop_map(ClientFrame::BadText),
        2 => bytes(126).prop_map(ClientFrame::Ping),
        1 => bytes(126).prop_map(ClientFrame::Pong),
        2 => (client_text(), "\\PC{0,40}").prop_map(|(a, b)| ClientFrame::Fragmented(a, b)),
        1 => bytes(40).prop_map(ClientFrame::StrayContinuation),
        1 => (3u8..8, bytes(40)).prop_map(|(op, b)| ClientFrame::Reserved(op, b)),
        1 => (1u8..8, client_text()).prop_map(|(bits, t)| ClientFrame::Rsv(bits, t)),
        1 => prop_oneof![
            Just(Vec::new()),
            Just(vec![0x03]),
            prop_oneof![Just(1000u16), Just(1001), Just(1005), Just(4000), Just(0), any::<u16>()]
                .prop_map(|c| c.to_be_bytes().to_vec()),
            (any::<u16>(), bytes(123)).prop_map(|(c, reason)| {
                let mut b = c.to_be_bytes().to_vec();
                b.extend(reason);
                b
            }),
        ]
        .prop_map(ClientFrame::Close),
    ]
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message from the server, skipping pings; `Err` with the close code (if any)
/// when the socket ends.
async fn next_text(ws: &mut Ws) -> Result<String, Option<u16>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Err(_) => panic!("the live socket neither answered nor closed in 10 s"),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => return Err(frame.map(|f| f.code.into())),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return Err(None),
        }
    }
}

async fn run_live_case(
    server: &Server,
    frames: &[ClientFrame],
    fates: &Mutex<BTreeMap<String, u32>>,
) -> Result<(), TestCaseError> {
    let before = seq(server).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/sites/chuo/live"))
        .await
        .expect("the live socket opens");
    let first = next_text(&mut ws).await;
    let snapshot: Value = serde_json::from_str(first.as_deref().unwrap_or("null")).unwrap();
    prop_assert_eq!(&snapshot["type"], "snapshot");
    let fate = frames
        .iter()
        .map(ClientFrame::fate)
        .find(|f| *f != Fate::Kept)
        .unwrap_or(Fate::Kept);
    for frame in frames {
        for message in frame.message() {
            // Once the server has ended the socket, later sends may fail: that is expected.
            if ws.send(message).await.is_err() {
                prop_assert!(fate != Fate::Kept, "sending {:?} failed", frame);
            }
        }
    }
    match fate {
        Fate::Kept => {
            // Still served: a resync brings a fresh snapshot (events in between are fine).
            ws.send(Message::Text(r#"{"type":"resync"}"#.into()))
                .await
                .expect("the socket is still open");
            loop {
                let text = next_text(&mut ws).await;
                prop_assert!(text.is_ok(), "the socket was closed: {:?}", text);
                let m: Value = serde_json::from_str(&text.unwrap()).unwrap();
                if m["type"] == "snapshot" {
                    break;
                }
            }
            let _ = ws.close(None).await;
        }
        Fate::TooBig | Fate::Ends => {
            // The server ends the socket (1009 for a message over the cap).
            let end = loop {
                match next_text(&mut ws).await {
                    Ok(_) => continue,
                    Err(code) => break code,
                }
            };
            if fate == Fate::TooBig {
                prop_assert!(
                    end.is_none() || end == Some(1009),
                    "a message over 4 KiB closed the socket with {:?}",
                    end
                );
            }
        }
    }
    *fates
        .lock()
        .unwrap()
        .entry(format!("{fate:?}"))
        .or_default() += 1;
    assert_alive(server)?;
    if !near_day_reset() {
        let after = seq(server).await;
        prop_assert_eq!(before, after, "frames on the live socket changed the state");
    }
    Ok(())
}

#[test]
fn arbitrary_frames_on_the_live_socket_are_harmless() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let server = rt.block_on(Server::start(&dir.path().join("data")));
    let fates = Mutex::new(BTreeMap::new());
    let frames = AtomicCount::default();
    let started = Instant::now();
    let result = runner(LIVE_CASES).run(
        &prop::collection::vec(client_frame(), 1..8),
        |case: Vec<ClientFrame>| {
            frames.add(case.len());
            rt.block_on(run_live_case(&server, &case, &fates))
        },
    );
    let fates = fates.into_inner().unwrap();
    let cases: u32 = fates.values().sum();
    report(&format!(
        "e2e_fuzz live: {cases} cases ({} frames) in {:.1} s; sockets kept {}, closed for size {}, ended {}",
        frames.get(),
        started.elapsed().as_secs_f64(),
        fates.get("Kept").unwrap_or(&0),
        fates.get("TooBig").unwrap_or(&0),
        fates.get("Ends").unwrap_or(&0),
    ));
    if let Err(e) = result {
        panic!("{e}\nserver log:\n{}", server.output());
    }
    assert!(cases >= LIVE_CASES, "ran {cases} cases");
}

#[derive(Default)]
struct AtomicCount(std::sync::atomic::AtomicUsize);

impl AtomicCount {
    fn add(&self, n: usize) {
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
