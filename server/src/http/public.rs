//! The congestion figures for the city's website (混雑状況): every site's queues with their
//! reception state, waiting count, estimated wait, the numbers at the counters and a three-level
//! lamp. No token and no personal data; cacheable (`ETag`, 304, `Cache-Control: max-age`), so a
//! busy city homepage or its CDN asks the server rarely; readable from a browser on the city's
//! configured origins only (CORS). Rate-limited per address like the board.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::openapi::{NotFound, TooManyRequests, Unavailable, Unprocessable};
use super::AppState;
use crate::calendar::{Calendar, History, Level};
use crate::config::PublicConfig;
use crate::core::{I18n, QueueId, ReceptionState, SiteId, SiteState, Target, TicketStatus};
use crate::projection::KpiFilter;

/// The public reads, rate-limited per address by the caller.
pub(super) fn polled() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(congestion))
        .routes(routes!(calendar))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SiteFilter {
    /// One site's id; every site when absent.
    site: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Congestion {
    #[schema(value_type = String, format = DateTime)]
    generated_at: chrono::DateTime<chrono::Utc>,
    sites: Vec<PublicSite>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PublicSite {
    id: SiteId,
    name: I18n,
    /// The seq of the site's log these figures are from (the board's at the same seq agrees).
    seq: u64,
    queues: Vec<PublicQueue>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PublicQueue {
    id: QueueId,
    name: I18n,
    state: ReceptionState,
    waiting: usize,
    estimated_wait_s: u64,
    /// Numbers at a counter of this queue now (called or being served).
    now_calling: Vec<String>,
    level: Level,
    /// When it next takes tickets (closing, closed).
    #[schema(value_type = Option<String>, format = DateTime)]
    next_open: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Until when it takes tickets in the period in progress (open, with hours).
    #[schema(value_type = Option<String>, format = DateTime)]
    last_reception: Option<chrono::DateTime<chrono::FixedOffset>>,
}

/// A site's public figures, read from its state at one seq.
fn public_site(state: &SiteState, public: &PublicConfig) -> PublicSite {
    let board = state.board();
    let calling = |queue: &QueueId| -> Vec<String> {
        state
            .counters
            .iter()
            .filter_map(|c| c.current.as_ref())
            .filter_map(|id| state.tickets.get(id))
            .filter(|t| matches!(t.status, TicketStatus::Called | TicketStatus::Serving))
            .filter(|t| match &t.step().target {
                Target::Queue(q) => q == queue,
                Target::Counter(_) => &t.queue == queue,
            })
            .map(|t| t.number.to_string())
            .collect()
    };
    PublicSite {
        id: state.config.id.clone(),
        name: state.config.name.clone(),
        seq: board.seq,
        queues: board
            .queues
            .iter()
            .filter_map(|b| {
                let q = state.config.queue(&b.id)?;
                Some(PublicQueue {
                    id: b.id.clone(),
                    name: q.name.clone(),
                    state: b.reception.state,
                    waiting: b.waiting,
                    estimated_wait_s: b.estimated_wait_s,
                    now_calling: calling(&b.id),
                    level: Level::of(b.estimated_wait_s, public.levels()),
                    next_open: b.reception.next_open,
                    last_reception: b.reception.last_reception,
                })
            })
            .collect(),
    }
}

/// Whether `If-None-Match` names `etag` (or `*`); weak and strong tags compare alike.
fn matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// Answers `value` as JSON with an `ETag` of `tagged` (the figures, not the time they were
/// read), or 304 when the caller holds it; cacheable for `max_age_s` by anyone.
pub(super) fn cacheable<T: Serialize, U: Serialize>(
    headers: &HeaderMap,
    tagged: &U,
    value: &T,
    max_age_s: u32,
) -> Result<Response, ApiError> {
    let figures = serde_json::to_vec(tagged).map_err(ApiError::unavailable)?;
    let digest = sha2::Sha256::digest(&figures);
    let etag = format!(
        "\"{}\"",
        digest[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age_s}"))
        .map_err(ApiError::unavailable)?;
    let etag_value = HeaderValue::from_str(&etag).map_err(ApiError::unavailable)?;
    let mut response = if matches(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = serde_json::to_vec(value).map_err(ApiError::unavailable)?;
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag_value);
    h.insert(header::CACHE_CONTROL, cache);
    Ok(response)
}

/// Every site's congestion now (or one site's), for the city's website: no token.
#[utoipa::path(
    get,
    path = "/api/v1/public/congestion",
    tag = "public",
    params(SiteFilter),
    responses(
        (status = 200, description = "Queues of every site (or `site`) with their state, waiting count, estimated wait, numbers at the counters and lamp; `ETag` and `Cache-Control: public, max-age`", body = Congestion),
        (status = 304, description = "Not modified: the figures are those of the `If-None-Match` tag"),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn congestion(
    State(app): State<AppState>,
    Query(filter): Query<SiteFilter>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let public = app.config().public.clone();
    let handles: Vec<_> = match &filter.site {
        Some(site) => vec![app.public_site(site)?],
        None => app.sites().collect(),
    };
    let mut sites = Vec::with_capacity(handles.len());
    for handle in handles {
        let public = public.clone();
        sites.push(
            handle
                .read(move |state| public_site(state, &public))
                .await?,
        );
    }
    let body = Congestion {
        generated_at: chrono::Utc::now(),
        sites,
    };
    cacheable(&headers, &body.sites, &body, public.max_age_s)
}

/// How long a site's forecast calendar is served before it is made again from the history.
const CALENDAR_TTL: Duration = Duration::from_secs(600);

/// `Cache-Control: max-age` of the calendar: it changes a few times a day at most.
const CALENDAR_MAX_AGE_S: u32 = 300;

/// The visits the calendar reads: the last year's.
const CALENDAR_HISTORY_DAYS: i64 = 365;

/// A site's latest calendar and when it was made; one request makes it, the others wait for it.
#[derive(Default)]
pub(super) struct CalendarCache(tokio::sync::Mutex<Option<(Instant, NaiveDate, Arc<Calendar>)>>);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct OneSite {
    /// The site's id.
    site: String,
}

/// A site's forecast calendar (混雑予想カレンダー): the expected wait by weekday × hour and for
/// each of the next 8 weeks' dates, from the site's own history of the last year.
#[utoipa::path(
    get,
    path = "/api/v1/public/congestion/calendar",
    tag = "public",
    params(OneSite),
    responses(
        (status = 200, description = "The weekly table and the dates; `ETag` and `Cache-Control: public, max-age`", body = Calendar),
        (status = 304, description = "Not modified: the figures are those of the `If-None-Match` tag"),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn calendar(
    State(app): State<AppState>,
    query: Result<Query<OneSite>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(OneSite { site }) = query.map_err(|_| {
        ApiError::invalid_query(
            "site を指定してください / the calendar is for one site: ?site=<id>",
        )
    })?;
    let handle = app.public_site(&site)?;
    let config = handle.config.clone();
    let cache = app
        .calendar_cache(&config.id)
        .ok_or_else(|| ApiError::not_found("unknown_site", "unknown site"))?;
    let now = Utc::now();
    let today = now.with_timezone(&config.timezone).date_naive();
    let mut slot = cache.0.lock().await;
    let fresh = slot
        .as_ref()
        .filter(|(made, day, _)| made.elapsed() < CALENDAR_TTL && *day == today)
        .map(|(_, _, cal)| cal.clone());
    let cal = match fresh {
        Some(cal) => cal,
        None => {
            let filter = KpiFilter {
                site: Some(config.id.to_string()),
                from: Some(now - chrono::Duration::days(CALENDAR_HISTORY_DAYS)),
                to: Some(now),
                life_event: None,
                procedure: None,
            };
            let history = app
                .store()
                .fold_visits(filter, false, History::new(config.timezone), |h, v| {
                    h.add_visit(v)
                })
                .await
                .map_err(ApiError::unavailable)?;
            let levels = app.config().public.levels();
            let cal = Arc::new(Calendar::build(&config, &history, today, now, levels));
            *slot = Some((Instant::now(), today, cal.clone()));
            cal
        }
    };
    drop(slot);
    cacheable(
        &headers,
        &(&cal.levels, &cal.weekly, &cal.dates),
        &*cal,
        CALENDAR_MAX_AGE_S,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lamp_follows_the_thresholds() {
        let levels = PublicConfig::default().levels();
        assert_eq!(Level::of(0, levels), Level::Low);
        assert_eq!(Level::of(20 * 60 - 1, levels), Level::Low);
        assert_eq!(Level::of(20 * 60, levels), Level::Medium);
        assert_eq!(Level::of(45 * 60, levels), Level::High);
    }

    #[test]
    fn if_none_match_compares_weak_and_listed_tags() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(matches(&h, "\"a\""));
        assert!(matches(&h, "\"b\""));
        assert!(!matches(&h, "\"c\""));
    }
}
