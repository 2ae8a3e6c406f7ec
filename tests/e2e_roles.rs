//! The role matrix, generated from the running server's own OpenAPI document
//! (`GET /api/openapi.json`): every documented operation × {no token, an unknown token, the demo
//! token of each of the five roles}. An operation that declares `security(("bearer" = [roles]))`
//! must answer 401 without a token or with an unknown one, 403 to a role not in its scopes, and
//! neither 401 nor 403 to a role in them (any other status is fine: 2xx, 404, 409, 422…). A public
//! operation never answers 401 or 403. WebSocket routes get a real upgrade request.
//!
//! A new route is documented by construction (the router and the document are built together),
//! so it joins this matrix without anyone writing a line here.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const PRINTER: &str = "demo-printer";
const WRONG: &str = "not-a-configured-token-0123456789abcdef";

/// Who asks: a column of the matrix. `role` is the role of the token, if it has one.
struct Principal {
    name: &'static str,
    token: Option<&'static str>,
    role: Option<&'static str>,
}

const PRINCIPALS: [Principal; 7] = [
    Principal {
        name: "none",
        token: None,
        role: None,
    },
    Principal {
        name: "wrong",
        token: Some(WRONG),
        role: None,
    },
    Principal {
        name: "dispenser",
        token: Some(DISPENSER),
        role: Some("dispenser"),
    },
    Principal {
        name: "counter",
        token: Some(COUNTER),
        role: Some("counter"),
    },
    Principal {
        name: "floor",
        token: Some(FLOOR),
        role: Some("floor"),
    },
    Principal {
        name: "analyst",
        token: Some(ANALYST),
        role: Some("analyst"),
    },
    Principal {
        name: "printer",
        token: Some(PRINTER),
        role: Some("printer"),
    },
];

/// A documented operation, as far as the matrix needs it.
struct Operation {
    method: Method,
    /// The path template, e.g. `/api/v1/sites/{site}/tickets/{number}`.
    template: String,
    /// The concrete path, with demo values.
    path: String,
    /// `None` for a public operation, else the roles it accepts.
    scopes: Option<BTreeSet<String>>,
    /// A WebSocket route (documented with a 101 answer).
    websocket: bool,
    /// The body to send, when the operation takes one.
    body: Option<Value>,
}

/// The demo value of a path parameter; an enum parameter takes its first value.
fn demo_value(name: &str, schema: &Value, number: &str, token: &str) -> String {
    if let Some(first) = schema["enum"].get(0).and_then(Value::as_str) {
        return first.to_owned();
    }
    match name {
        "site" => "chuo".to_owned(),
        "counter" => "1".to_owned(),
        "number" => number.to_owned(),
        "token" => token.to_owned(),
        "agent" => "agent-1".to_owned(),
        "queue" => "certificates".to_owned(),
        "code" => "AAAAAAAA".to_owned(),
        // A webhook subscriber and a dead letter's event id (the demo has none: 404 after the
        // role check).
        "hook" => "counter-support".to_owned(),
        "seq" => "1".to_owned(),
        other => {
            panic!("no demo value for the path parameter {other:?}: add one to tests/e2e_roles.rs")
        }
    }
}

/// A minimal valid body for the request schemas the API has; `{}` for any other (the matrix
/// looks only at 401/403, which come before the body is read).
fn demo_body(schema: &Value) -> Value {
    let name = schema["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or("");
    match name {
        "IssueBody" => json!({"procedures": ["shoumei"]}),
        "Profile" => json!({"queues": ["certificates", "onestop"], "strategy": "profile_order"}),
        "RateBody" => json!({"score": 5}),
        // Kept open: it is open already, so nothing changes for the operations after it.
        "ReceptionBody" => json!({"mode": "open"}),
        _ => json!({}),
    }
}

fn operations(doc: &Value, number: &str, token: &str) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if !matches!(
                method,
                Method::GET | Method::POST | Method::PUT | Method::DELETE | Method::PATCH
            ) {
                continue;
            }
            let parameters = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in &parameters {
                assert!(
                    p["in"] == "path" || p["in"] == "query" || p["required"] != true,
                    "{method} {template}: required parameter {} has no demo value",
                    p["name"]
                );
            }
            let mut path = template.clone();
            for p in parameters.iter().filter(|p| p["in"] == "path") {
                let name = p["name"].as_str().unwrap();
                path = path.replace(
                    &format!("{{{name}}}"),
                    &demo_value(name, &p["schema"], number, token),
                );
            }
            // Required query parameters take their demo values too (`?site=chuo`).
            let query: Vec<String> = parameters
                .iter()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| {
                    let name = p["name"].as_str().unwrap();
                    format!("{name}={}", demo_value(name, &p["schema"], number, token))
                })
                .collect();
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let scopes = op.get("security").map(|security| {
                security
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|requirement| requirement["bearer"].as_array().unwrap())
                    .map(|role| role.as_str().unwrap().to_owned())
                    .collect()
            });
            let body = op
                .get("requestBody")
                .map(|b| demo_body(&b["content"]["application/json"]["schema"]));
            ops.push(Operation {
                method,
                template: template.clone(),
                path,
                scopes,
                websocket: op["responses"].get("101").is_some(),
                body,
            });
        }
    }
    ops
}

/// The status of a WebSocket upgrade: 101 when it opened (closed again at once), else the
/// status the server refused it with.
async fn upgrade_status(server: &Server, path: &str, token: Option<&str>) -> u16 {
    let mut request = server.ws_url(path).into_client_request().unwrap();
    if let Some(t) = token {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut ws, response)) => {
            let _ = ws.close(None).await;
            response.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("GET {path} (WebSocket): {e}"),
    }
}

async fn status(server: &Server, op: &Operation, token: Option<&str>) -> u16 {
    if op.websocket {
        return upgrade_status(server, &op.path, token).await;
    }
    server
        .send(op.method.clone(), &op.path, token, op.body.clone())
        .await
        .0
}

/// What the operation's security says a principal gets, as a check of the status.
fn verdict(op: &Operation, who: &Principal, status: u16) -> Result<(), String> {
    let denied = status == 401 || status == 403;
    match (&op.scopes, who.role) {
        (None, _) if denied => Err(format!("public, yet {status}")),
        (None, _) => Ok(()),
        (Some(_), None) if status != 401 => Err(format!("expected 401, got {status}")),
        (Some(scopes), Some(role)) if !scopes.contains(role) && status != 403 => Err(format!(
            "role {role} not in {scopes:?}: expected 403, got {status}"
        )),
        (Some(scopes), Some(role)) if scopes.contains(role) && denied => {
            Err(format!("role {role} is in {scopes:?}, yet {status}"))
        }
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_answers_each_principal_as_its_security_declares() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data")).await;

    let (code, doc) = server.get("/api/openapi.json", None).await;
    assert_eq!(code, 200, "{doc}");
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_object(),
        "the bearer scheme"
    );

    // A ticket of today: its number for the staff routes, its token for the resident's.
    let ticket = server.issue(json!({"procedures": ["shoumei"]})).await;
    let number = ticket["number"].as_str().unwrap().to_owned();
    let token = ticket["token"].as_str().unwrap().to_owned();

    let ops = operations(&doc, &number, &token);
    assert!(ops.len() >= 20, "{} operations", ops.len());
    assert!(ops.iter().any(|o| o.scopes.is_none()), "public operations");
    assert!(ops.iter().any(|o| o.websocket), "WebSocket operations");

    let mut table = String::new();
    let _ = write!(table, "{:<7} {:<52}", "method", "path");
    for who in &PRINCIPALS {
        let _ = write!(table, " {:>9}", who.name);
    }
    table.push('\n');
    let mut failures = Vec::new();
    let mut cells = 0;
    for op in &ops {
        let _ = write!(table, "{:<7} {:<52}", op.method.as_str(), op.template);
        for who in &PRINCIPALS {
            let got = status(&server, op, who.token).await;
            cells += 1;
            let _ = write!(table, " {got:>9}");
            if let Err(why) = verdict(op, who, got) {
                failures.push(format!(
                    "{} {} as {}: {why}",
                    op.method, op.template, who.name
                ));
            }
        }
        let scopes = match &op.scopes {
            None => "public".to_owned(),
            Some(s) => s.iter().cloned().collect::<Vec<_>>().join(","),
        };
        let _ = writeln!(table, "  [{scopes}]");
    }
    println!("{table}");
    println!(
        "role matrix: {} operations × {} principals = {cells} requests, {} public operations, {} WebSocket",
        ops.len(),
        PRINCIPALS.len(),
        ops.iter().filter(|o| o.scopes.is_none()).count(),
        ops.iter().filter(|o| o.websocket).count(),
    );
    assert_eq!(cells, ops.len() * PRINCIPALS.len());
    assert!(
        failures.is_empty(),
        "{} of {cells} cells disagree with the document:\n{}\n\n{table}",
        failures.len(),
        failures.join("\n")
    );
}
