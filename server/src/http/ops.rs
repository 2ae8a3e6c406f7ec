//! Operations and analysis: health, readiness, Prometheus metrics, the stay-time KPI, and the
//! CSV export, whose issue has not landed yet, answering 501.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::json;

use super::auth::require;
use super::error::ApiError;
use super::AppState;
use crate::config::Role;
use crate::core::{LifeEventId, ProcedureCode, SiteId};
use crate::projection::KpiFilter;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/sites/{site}/kpi", get(kpi))
        .route("/api/v1/sites/{site}/visits.csv", get(visits_csv))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    match app.log().ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: event log unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "reason": "event log unavailable"})),
            )
        }
    }
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics().render(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KpiQuery {
    from: Option<String>,
    to: Option<String>,
    life_event: Option<LifeEventId>,
    procedure: Option<ProcedureCode>,
}

/// `YYYY-MM-DD` (a local calendar day; `to` includes its whole day) or an RFC 3339 instant.
fn parse_bound(name: &str, value: &str, tz: Tz, end: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.to_utc());
    }
    let day = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
            format!("{name} must be a date (YYYY-MM-DD) or an RFC 3339 time, not {value:?}"),
        )
    })?;
    let day = if end {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    tz.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map(|t| t.to_utc())
        .ok_or_else(|| ApiError::invalid(format!("{name}: no such local time")))
}

async fn kpi(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
    query: Result<Query<KpiQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (site_filter, tz) = if site == "all" {
        require(app.config(), &headers, None, &[Role::Analyst])?;
        let tz = app
            .sites()
            .next()
            .map_or(chrono_tz::Asia::Tokyo, |h| h.config.timezone);
        (None, tz)
    } else {
        let (id, handle) = app.site_for(&site, &headers, &[Role::Analyst])?;
        (Some(id), handle.config.timezone)
    };
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
            e.body_text(),
        )
    })?;
    let from = q
        .from
        .as_deref()
        .map(|v| parse_bound("from", v, tz, false))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|v| parse_bound("to", v, tz, true))
            .transpose()?;
    let filter = KpiFilter {
        site: site_filter.as_ref().map(SiteId::to_string),
        from,
        to,
        life_event: q.life_event.as_ref().map(ToString::to_string),
        procedure: q.procedure.as_ref().map(ToString::to_string),
    };
    let kpi = app
        .store()
        .kpi(filter)
        .await
        .map_err(ApiError::unavailable)?;
    let mut body = serde_json::to_value(&kpi).map_err(ApiError::unavailable)?;
    body["site"] = json!(site);
    body["from"] = json!(from);
    body["to"] = json!(to);
    body["life_event"] = json!(q.life_event);
    body["procedure"] = json!(q.procedure);
    Ok(Json(body))
}

fn not_yet(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        format!("{what} is not available in this version"),
    )
}

async fn visits_csv(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    if site != "all" {
        app.site_for(&site, &headers, &[Role::Analyst])?;
    } else {
        require(app.config(), &headers, None, &[Role::Analyst])?;
    }
    Err(not_yet("the CSV export"))
}
