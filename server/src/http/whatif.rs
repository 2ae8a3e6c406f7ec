//! What-if for floor managers: the site's lines over the next hours from the live state, as it
//! stands and with changes (counters opened or given other queues, more residents arriving),
//! side by side. The forecast runs on a copy of the state off the site actor; nothing live
//! changes.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::error::RawBody;
use super::openapi::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, RequestTimeout, Unauthorized, Unavailable,
    Unprocessable,
};
use super::AppState;
use crate::config::Role;
use crate::core::estimate::{what_if, ForecastPoint};
use crate::core::{CounterId, CounterState, Profile, QueueId, SiteState, Target, Timestamp};

/// The longest forecast, minutes.
pub(super) const MAX_HORIZON_MIN: u32 = 480;
const DEFAULT_HORIZON_MIN: u32 = 180;

pub(super) fn router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(forecast))
        .routes(routes!(suggestions));
    // The body may be left out altogether: the day as it stands.
    if let Some(body) = router
        .get_openapi_mut()
        .paths
        .paths
        .get_mut("/api/v1/sites/{site}/what-if")
        .and_then(|item| item.post.as_mut())
        .and_then(|op| op.request_body.as_mut())
    {
        body.required = Some(utoipa::openapi::Required::False);
    }
    router
}

/// A change to one counter; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CounterChange {
    pub(super) id: String,
    pub(super) state: Option<CounterState>,
    pub(super) profile: Option<Profile>,
}

/// What to try; `{}` forecasts the day as it stands.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WhatIfRequest {
    #[serde(default)]
    pub(super) counters: Vec<CounterChange>,
    /// More residents per hour joining a queue, by queue id.
    #[serde(default)]
    pub(super) extra_arrivals_per_hour: BTreeMap<String, f64>,
    /// Minutes ahead (10–480, default 180).
    pub(super) horizon_min: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Point {
    #[schema(value_type = String, format = DateTime)]
    pub(super) at: Timestamp,
    /// Residents waiting then (mean over the runs).
    pub(super) waiting: f64,
    /// How long someone joining then would wait to be called, seconds (median over the runs).
    pub(super) wait_s: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct QueueForecast {
    pub(super) id: QueueId,
    pub(super) points: Vec<Point>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Forecast {
    pub(super) queues: Vec<QueueForecast>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SummaryRow {
    pub(super) queue: QueueId,
    /// The longest wait of someone joining within the horizon, as things stand and with the
    /// changes, seconds.
    pub(super) longest_wait_s_baseline: f64,
    pub(super) longest_wait_s_with: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WhatIfReply {
    #[schema(value_type = String, format = DateTime)]
    pub(super) at: Timestamp,
    /// The seq of the state forecast from (unchanged by the what-if).
    pub(super) seq: u64,
    pub(super) baseline: Forecast,
    pub(super) with_changes: Forecast,
    pub(super) summary: Vec<SummaryRow>,
}

/// Forecasts the site's lines over the next hours as they stand and with the changes asked
/// (floor managers). Changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/what-if",
    tag = "counters",
    security(("bearer" = ["floor"])),
    params(("site" = String, Path, description = "A site id, e.g. `chuo`")),
    request_body = WhatIfRequest,
    responses(
        (status = 200, description = "Both forecasts and the longest waits", body = WhatIfReply),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
async fn forecast(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<impl IntoResponse, ApiError> {
    let (_, handle, _) = app.granted_site(&site, &headers, &[Role::Floor])?;
    let request: WhatIfRequest = body.optional_json().await?.unwrap_or_default();
    let model = handle.model().await?;
    let (changed, extra, horizon_min) = changes(&model.state, &request)?;
    let reply = tokio::task::spawn_blocking(move || {
        let horizon_s = f64::from(horizon_min) * 60.0;
        let step_s = if horizon_min <= 60 { 300.0 } else { 600.0 };
        let seed = model.state.seq;
        let none = HashMap::new();
        let base = what_if(
            &model.state,
            &model.learner,
            model.now,
            horizon_s,
            step_s,
            &none,
            seed,
        );
        let with = what_if(
            &changed,
            &model.learner,
            model.now,
            horizon_s,
            step_s,
            &extra,
            seed,
        );
        reply(model.now, model.state.seq, base, with)
    })
    .await
    .map_err(ApiError::unavailable)?;
    Ok(Json(reply))
}

/// The state with the changes applied, the extra arrivals per second by line, and the horizon;
/// 422 naming the field for anything that does not fit the site.
fn changes(
    state: &SiteState,
    request: &WhatIfRequest,
) -> Result<(SiteState, HashMap<Target, f64>, u32), ApiError> {
    let horizon = request.horizon_min.unwrap_or(DEFAULT_HORIZON_MIN);
    if !(10..=MAX_HORIZON_MIN).contains(&horizon) {
        return Err(ApiError::invalid(format!(
            "horizon_min: {horizon} is outside 10–{MAX_HORIZON_MIN}"
        )));
    }
    let mut changed = state.clone();
    for (i, c) in request.counters.iter().enumerate() {
        let field = format!("counters[{i}]");
        let id = CounterId::try_from(c.id.clone())
            .ok()
            .filter(|id| state.counter(id).is_some())
            .ok_or_else(|| ApiError::invalid(format!("{field}.id: unknown counter {:?}", c.id)))?;
        let counter = changed
            .counters
            .iter_mut()
            .find(|x| x.id == id)
            .expect("checked above");
        if let Some(s) = c.state {
            counter.state = s;
        }
        if let Some(profile) = &c.profile {
            if profile.queues.is_empty() {
                return Err(ApiError::invalid(format!(
                    "{field}.profile.queues: a counter serves at least one queue"
                )));
            }
            for (j, q) in profile.queues.iter().enumerate() {
                if state.config.queue(q).is_none() {
                    return Err(ApiError::invalid(format!(
                        "{field}.profile.queues[{j}]: unknown queue {q}"
                    )));
                }
                if profile.queues[..j].contains(q) {
                    return Err(ApiError::invalid(format!(
                        "{field}.profile.queues[{j}]: queue {q} is listed twice"
                    )));
                }
            }
            counter.profile = profile.clone();
        }
    }
    let mut extra = HashMap::new();
    for (q, per_hour) in &request.extra_arrivals_per_hour {
        let field = format!("extra_arrivals_per_hour.{q}");
        let id = QueueId::try_from(q.clone())
            .ok()
            .filter(|id| state.config.queue(id).is_some())
            .ok_or_else(|| ApiError::invalid(format!("{field}: unknown queue")))?;
        if !(0.0..=1000.0).contains(per_hour) {
            return Err(ApiError::invalid(format!(
                "{field}: {per_hour} is outside 0–1000 per hour"
            )));
        }
        extra.insert(Target::Queue(id), per_hour / 3600.0);
    }
    Ok((changed, extra, horizon))
}

fn reply(
    now: Timestamp,
    seq: u64,
    base: Vec<(Target, Vec<ForecastPoint>)>,
    with: Vec<(Target, Vec<ForecastPoint>)>,
) -> WhatIfReply {
    let forecast = |lines: &[(Target, Vec<ForecastPoint>)]| Forecast {
        queues: lines
            .iter()
            .filter_map(|(t, points)| match t {
                Target::Queue(q) => Some(QueueForecast {
                    id: q.clone(),
                    points: points
                        .iter()
                        .map(|p| Point {
                            at: now + chrono::Duration::milliseconds((p.at_s * 1000.0) as i64),
                            waiting: (p.waiting * 10.0).round() / 10.0,
                            wait_s: p.wait_s,
                        })
                        .collect(),
                }),
                Target::Counter(_) => None,
            })
            .collect(),
    };
    let longest = |points: &[ForecastPoint]| points.iter().map(|p| p.wait_s).fold(0.0, f64::max);
    let summary = base
        .iter()
        .zip(&with)
        .filter_map(|((t, b), (_, w))| match t {
            Target::Queue(q) => Some(SummaryRow {
                queue: q.clone(),
                longest_wait_s_baseline: longest(b),
                longest_wait_s_with: longest(w),
            }),
            Target::Counter(_) => None,
        })
        .collect();
    WhatIfReply {
        at: now,
        seq,
        baseline: forecast(&base),
        with_changes: forecast(&with),
        summary,
    }
}

/// The floor board's suggestions: for each queue heading past the floor alert threshold, the one
/// change that cuts its longest forecast wait most (floor managers). Recomputed in the background
/// every `suggest_every_s`.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/suggestions",
    tag = "counters",
    security(("bearer" = ["floor"])),
    params(("site" = String, Path, description = "A site id, e.g. `chuo`")),
    responses(
        (status = 200, description = "The latest suggestions", body = crate::suggest::Suggestions),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn suggestions(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let (id, _, _) = app.granted_site(&site, &headers, &[Role::Floor])?;
    let latest = app
        .suggestions(&id)
        .map(|b| b.read().unwrap_or_else(|p| p.into_inner()).clone())
        .unwrap_or_default();
    Ok(Json(latest))
}
