//! The OpenAPI document of the API, generated from the handlers and served at
//! `GET /api/openapi.json`.
//!
//! Every API route is registered through utoipa-axum's [`OpenApiRouter`] with `routes!`, which
//! adds the axum route and its documented operation (from the handler's `#[utoipa::path]`) in one
//! step: the router and the document cannot disagree. Only the screens (HTML pages and assets,
//! not part of the API) are plain axum routes; a test below keeps it so.
//!
//! Operations that need a token declare `security(("bearer" = [roles]))`: the scopes are exactly
//! the roles the handler accepts. Errors are the shared responses defined here, all with the body
//! `{"error": {"code", "message"}}` ([`ErrorBody`]).

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ErrorBody, ErrorDetail};
use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "madoguchi API",
        description = "Queue ticketing for a city's ward offices. The reference with the \
                       semantics is docs/API.md; this document is generated from the server's code. \
                       Bearer tokens carry one role each; an operation's security scopes are the \
                       roles it accepts. Every error answers {\"error\": {\"code\", \"message\"}}."
    ),
    modifiers(&Bearer),
    components(
        schemas(ErrorBody, ErrorDetail),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            RequestTimeout,
            Conflict,
            PayloadTooLarge,
            Unprocessable,
            UpgradeRequired,
            TooManyRequests,
            Unavailable
        )
    ),
    tags(
        (name = "sites", description = "Public reads: sites, catalog, board"),
        (name = "tickets", description = "Issuing, listing and cancelling tickets; the resident's phone page"),
        (name = "counters", description = "Counter actions and profiles"),
        (name = "live", description = "Live feeds (WebSocket)"),
        (name = "kpi", description = "Stay-time KPI and the visits as CSV (analyst)"),
        (name = "printers", description = "The printer agents' job feed (WebSocket, printer)"),
        (name = "integrations", description = "Webhook deliveries and dead letters (floor); the event stream (analyst)"),
        (name = "floor", description = "The floor manager's say over reception (floor)"),
        (name = "public", description = "Congestion figures and the forecast calendar for the city's website (no token, cacheable)"),
        (name = "operations", description = "Health, readiness, metrics and this document")
    )
)]
pub(super) struct ApiDoc;

/// The bearer scheme; its scopes are roles.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from the configuration's [[tokens]]. Each token has one role \
                         (dispenser, counter, floor, analyst, printer); an operation's scopes list \
                         the roles it accepts. No token or an unknown one: 401; another role: 403.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Defines a reusable error response (`#/components/responses/<name>`) with the error body and
/// optional headers.
macro_rules! error_response {
    ($name:ident, $description:literal $(, $header:literal = $kind:ident : $header_description:literal)*) => {
        #[doc = $description]
        pub(super) struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                #[allow(unused_mut)]
                let mut response = ResponseBuilder::new().description($description).content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                );
                $(
                    response = response.header(
                        $header,
                        HeaderBuilder::new()
                            .schema(ObjectBuilder::new().schema_type(Type::$kind))
                            .description(Some($header_description))
                            .build(),
                    );
                )*
                (stringify!($name), response.build().into())
            }
        }
    };
}

error_response!(
    BadRequest,
    "Malformed JSON, a missing body, a bad header (`bad_request`); on a WebSocket route, a \
     request that is not a WebSocket upgrade."
);
error_response!(
    Unauthorized,
    "No bearer token, or an unknown one (`unauthorized`).",
    "WWW-Authenticate" = String: "`Bearer`"
);
error_response!(
    Forbidden,
    "The token's role may not do this, or the token is limited to other sites, counters or \
     printer agents (`forbidden`)."
);
error_response!(
    NotFound,
    "Unknown site, counter, ticket, action or printer agent (`unknown_site`, `unknown_counter`, \
     `ticket_not_found`, `unknown_action`, `unknown_printer`)."
);
error_response!(
    RequestTimeout,
    "The request body did not arrive within `[limits] request_body_timeout_s` (`request_timeout`)."
);
error_response!(
    Conflict,
    "The request is valid but the current state forbids it (`counter_busy`, `counter_not_open`, \
     `no_current_ticket`, `wrong_status`, `too_few_calls`, `already_ended`, `already_rated`, \
     `numbers_exhausted`…)."
);
error_response!(
    PayloadTooLarge,
    "The body is larger than 64 KiB (`body_too_large`)."
);
error_response!(
    Unprocessable,
    "Well-formed JSON or query that is not acceptable (`invalid_body`, `invalid_query`, \
     `idempotency_key_reused`, `unknown_procedure`, `unknown_life_event`, `missing_answer`, \
     `unknown_queue`, `unknown_target`, `bad_score`…)."
);
error_response!(
    UpgradeRequired,
    "The connection cannot be upgraded to a WebSocket (`upgrade_required`)."
);
error_response!(
    TooManyRequests,
    "Too many requests without a token, or too many live sockets, from one address \
     (`rate_limited`, `too_many_sockets`).",
    "Retry-After" = Integer: "Seconds to wait before trying again"
);
error_response!(
    Unavailable,
    "The event log is unavailable (the disk, or Redis with several instances), the site is \
     restarting, or the answer took longer than `[limits] response_timeout_s` (`unavailable`, \
     `timeout`); retry. An issue retried with the same `Idempotency-Key` never gives two tickets.",
    "Retry-After" = Integer: "Seconds to wait before trying again (when the log or the site is the cause)"
);

/// This document.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(document))
}

/// This OpenAPI document (OpenAPI 3.1), generated from the server's code.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json"),
        (status = 503, response = Unavailable),
    )
)]
async fn document() -> impl IntoResponse {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| {
        super::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], text.as_str())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::super::{router, AppState};
    use crate::config::Config;
    use crate::log::{EventLog, SqliteLog};
    use crate::metrics::Metrics;
    use crate::printers::PrinterHub;
    use crate::projection::ProjectionStore;
    use crate::site::{self, SiteDeps};

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn document() -> Value {
        serde_json::to_value(super::super::openapi()).unwrap()
    }

    /// Every (method, path, operation) of the document.
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    ops.push((method.to_owned(), path.clone(), op.clone()));
                }
            }
        }
        ops
    }

    /// A path with demo values in place of its parameters.
    fn concrete(path: &str) -> String {
        path.replace("{site}", "chuo")
            .replace("{counter}", "1")
            .replace("{action}", "open")
            .replace("{number}", "1")
            .replace("{token}", "0123456789abcdef0123456789abcdef")
            .replace("{agent}", "agent-1")
    }

    /// The source files of the crate, each without its tests.
    fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = match text.find("#[cfg(test)]") {
                    Some(i) => text[..i].to_owned(),
                    None => text,
                };
                out.push((path, code));
            }
        }
    }

    /// No route can be added beside the document: outside the screens (HTML, not API), every route
    /// is registered with `OpenApiRouter::routes(routes!(…))`, which documents it.
    #[test]
    fn every_api_route_is_registered_through_the_documented_router() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let screens = src.join("http").join("screens.rs");
        let http_mod = src.join("http").join("mod.rs");
        let mut handlers = 0;
        for (path, code) in &files {
            for plain in [
                ".route(",
                ".route_service(",
                ".nest(",
                ".nest_service(",
                ".fallback_service(",
            ] {
                if *path != screens {
                    assert!(
                        !code.contains(plain),
                        "{} registers a route with `{plain}`, outside the OpenAPI document: use \
                         OpenApiRouter::routes(routes!(handler)) with #[utoipa::path] on the handler",
                        path.display()
                    );
                }
            }
            let plain_routers = code.matches("Router::new()").count()
                - code.matches("OpenApiRouter::new()").count();
            let allowed = if *path == screens || *path == http_mod {
                1
            } else {
                0
            };
            assert!(
                plain_routers <= allowed,
                "{} builds a plain axum Router: API routes belong in an OpenApiRouter",
                path.display()
            );
            // Handlers named in `routes!(a, b)`.
            for (i, _) in code.match_indices("routes!(") {
                let rest = &code[i + "routes!(".len()..];
                let args = &rest[..rest.find(')').unwrap()];
                handlers += args.split(',').filter(|a| !a.trim().is_empty()).count();
            }
        }
        // One operation per handler: none was lost to a clash of paths and methods.
        assert_eq!(
            handlers,
            operations(&document()).len(),
            "handlers registered with routes! vs operations in the document"
        );
    }

    fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        doc.pointer(pointer)
    }

    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_whole_and_every_operation_complete() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        // Every reference resolves.
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in &all {
            assert!(resolve(&doc, r).is_some(), "dangling $ref {r}");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let roles = BTreeSet::from(["dispenser", "counter", "floor", "analyst", "printer"]);
        let mut ids = BTreeSet::new();
        let ops = operations(&doc);
        for (method, path, op) in &ops {
            let name = format!("{} {path}", method.to_uppercase());
            assert!(
                ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                "{name}: operationId not unique"
            );
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{name}: no tag"
            );
            // Path parameters: exactly those of the template.
            let template: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_owned)
                .collect();
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(template, declared, "{name}: path parameters");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || s.as_str() == "101"),
                "{name}: no success response"
            );
            // Every error has the error body (readiness answers 503 with its own status body).
            for (status, response) in responses {
                if status.starts_with('4') || (status.starts_with('5') && path != "/readyz") {
                    let response = match response.get("$ref") {
                        Some(r) => resolve(&doc, r.as_str().unwrap()).unwrap(),
                        None => response,
                    };
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{name}: {status} without the error body"
                    );
                }
            }
            // Secured operations: bearer with known roles as scopes, and 401 and 403 answers;
            // public ones neither.
            match op.get("security") {
                Some(security) => {
                    let security = security.as_array().unwrap();
                    assert_eq!(security.len(), 1, "{name}: one security requirement");
                    let scopes = security[0]["bearer"].as_array().expect("bearer scopes");
                    assert!(!scopes.is_empty(), "{name}: no role");
                    for scope in scopes {
                        assert!(
                            roles.contains(scope.as_str().unwrap()),
                            "{name}: unknown role {scope}"
                        );
                    }
                    assert!(responses.contains_key("401") && responses.contains_key("403"));
                }
                None => assert!(
                    !responses.contains_key("401") && !responses.contains_key("403"),
                    "{name}: a public operation with 401/403"
                ),
            }
        }
        assert!(doc.get("security").is_none(), "no global security");
    }

    /// The counter actions and KPI groupings the document lists are those the handlers accept.
    #[test]
    fn documented_enums_are_the_accepted_values() {
        let doc = document();
        let op = &doc["paths"]["/api/v1/sites/{site}/counters/{counter}/{action}"]["post"];
        let action = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "action")
            .unwrap();
        let listed: Vec<&str> = action["schema"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(listed, super::super::counters::ACTIONS);
        assert_eq!(op["requestBody"]["required"], false);
        let kpi = &doc["paths"]["/api/v1/sites/{site}/kpi"]["get"];
        let group_by = kpi["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "group_by")
            .unwrap();
        let values = group_by["schema"]["enum"].as_array().unwrap();
        assert_eq!(values.len(), 5);
        for v in values {
            v.as_str()
                .unwrap()
                .parse::<crate::kpi::GroupBy>()
                .unwrap_or_else(|e| panic!("group_by {v}: {e}"));
        }
    }

    async fn demo_state(dir: &Path) -> AppState {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml");
        let config = Config::load(&path).unwrap();
        let db = dir.join("madoguchi.db");
        let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(&db).unwrap());
        let deps = SiteDeps {
            log,
            store: ProjectionStore::open(&db).unwrap(),
            printers: PrinterHub::default(),
            metrics: Metrics::new(),
            clock: Arc::new(chrono::Utc::now),
            tickets: Default::default(),
            snapshots: None,
            runtime: None,
        };
        let mut handles = Vec::new();
        for site_config in &config.sites {
            let (handle, _task) = site::start(site_config.clone(), deps.clone())
                .await
                .unwrap();
            handles.push(handle);
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        std::mem::forget(stop_tx);
        AppState::new(config, handles, deps, stop_rx)
    }

    /// Whether a response is the router's own "no such endpoint" (the fallback, or a path served
    /// with another method).
    async fn unrouted(response: axum::response::Response) -> bool {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::NOT_FOUND && code.as_deref() == Some("not_found"))
    }

    /// The router serves every documented operation: none falls through to "no such endpoint".
    #[tokio::test]
    async fn every_documented_operation_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(demo_state(dir.path()).await);
        let doc = document();
        let mut seen = BTreeMap::new();
        for (method, path, _) in operations(&doc) {
            let request = Request::builder()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                .uri(concrete(&path))
                .header("authorization", "Bearer demo-floor")
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            assert!(
                !unrouted(response).await,
                "{method} {path} is documented but not served ({status})"
            );
            seen.insert(format!("{method} {path}"), status.as_u16());
        }
        assert!(seen.len() >= 20, "{seen:?}");
        // And the check does see the fallback.
        let request = Request::builder()
            .uri("/api/v1/no-such-thing")
            .body(Body::empty())
            .unwrap();
        assert!(unrouted(app.clone().oneshot(request).await.unwrap()).await);
    }
}
