//! Operations: health, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::Unavailable;
use super::AppState;
use crate::site::LogState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// `ok` (healthz); `ready`, `degraded` or `unavailable` (readyz).
    status: &'static str,
    /// Why the server is not fully ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// Each site's actor and projections (readyz).
    #[serde(skip_serializing_if = "Option::is_none")]
    sites: Option<std::collections::BTreeMap<String, SiteHealth>>,
    /// Wall clock minus the server's time while a clock jump is being ignored (readyz; 0 when
    /// they agree).
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_skew_s: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct SiteHealth {
    /// `running` or `restarting` (rebuilding from the log after a failure).
    actor: &'static str,
    /// Times the actor was rebuilt since the server started.
    restarts: u64,
    /// `current`, or `lagging` while a failed projection write is retried.
    projections: &'static str,
    /// Failed projection writes since the projections were last current.
    projection_retries: u64,
    /// Events appended whose visit records and print jobs are not written yet (usually 0; a few
    /// for a moment under load).
    projection_lag_events: u64,
    /// `available`; `unavailable` while a shared log cannot be reached; `behind` when it holds
    /// fewer events than this instance applied (Redis lost acknowledged writes).
    log: &'static str,
}

/// 200 while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Health))
)]
async fn healthz() -> impl IntoResponse {
    Json(Health {
        status: "ok",
        reason: None,
        sites: None,
        clock_skew_s: None,
    })
}

/// 200 when the event log answers (`degraded` while a site restarts or a projection lags), 503
/// when it does not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "`{\"status\": \"ready\" | \"degraded\", \"sites\": {…}}`", body = Health),
        (status = 503, description = "`{\"status\": \"unavailable\", \"reason\"}`", body = Health),
    )
)]
async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let sites: std::collections::BTreeMap<String, SiteHealth> = app
        .sites()
        .map(|h| {
            let s = h.status();
            let retries = s.projection_retries();
            (
                h.config.id.to_string(),
                SiteHealth {
                    actor: if s.restarting() {
                        "restarting"
                    } else {
                        "running"
                    },
                    restarts: s.restarts(),
                    projections: if retries > 0 { "lagging" } else { "current" },
                    projection_retries: retries,
                    projection_lag_events: s.projection_lag(),
                    log: match s.log() {
                        LogState::Available => "available",
                        LogState::Unavailable => "unavailable",
                        LogState::Behind => "behind",
                    },
                },
            )
        })
        .collect();
    let skew = app.metrics().clock_skew.get();
    let degraded = skew != 0
        || sites
            .values()
            .any(|s| s.actor != "running" || s.projections != "current");
    let behind = sites.values().any(|s| s.log == "behind");
    match app.log().ping().await {
        Ok(()) if behind => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                reason: Some("the shared event log holds fewer events than this instance applied (Redis lost acknowledged writes)"),
                sites: Some(sites),
                clock_skew_s: Some(skew),
            }),
        ),
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: if degraded { "degraded" } else { "ready" },
                reason: degraded
                    .then_some("a site is restarting, its projections lag, or the clock jumped"),
                sites: Some(sites),
                clock_skew_s: Some(skew),
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: event log unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                    reason: Some("event log unavailable"),
                    sites: Some(sites),
                    clock_skew_s: Some(skew),
                }),
            )
        }
    }
}

/// Prometheus metrics in the text exposition format (see docs/API.md for the series).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 503, response = Unavailable),
    )
)]
async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics().render(),
    )
}
