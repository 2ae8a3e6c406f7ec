//! Integrations: the webhook subscribers' progress and dead letters for the floor board (with
//! "retry now"), and the event stream that analysts' pipelines read (NDJSON or Server-Sent
//! Events). See docs/INTEGRATIONS.md.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::openapi::{Forbidden, NotFound, Unauthorized, Unavailable, Unprocessable};
use super::AppState;
use crate::config::Role;
use crate::hooks::{DeadLetter, HookStatus};

/// Where a Server-Sent Events stream is.
struct Follow {
    /// The seq of the last event read.
    after: u64,
    ready: std::collections::VecDeque<crate::log::StoredEvent>,
    applied: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Events read from the log at once for the stream.
const STREAM_PAGE: usize = 1_000;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhooks))
        .routes(routes!(retry_dead))
        .routes(routes!(events))
}

#[derive(Debug, Serialize, ToSchema)]
struct WebhooksReply {
    /// The site's last seq.
    seq: u64,
    hooks: Vec<HookStatus>,
    /// Events a subscriber did not take after every try, oldest first.
    dead_letters: Vec<DeadLetter>,
}

/// The site's webhook subscribers with their progress, and the dead letters (floor managers,
/// analysts).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/webhooks",
    tag = "integrations",
    security(("bearer" = ["floor", "analyst"])),
    params(("site" = String, Path, description = "A site id, e.g. `chuo`")),
    responses(
        (status = 200, description = "Subscribers and dead letters", body = WebhooksReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn webhooks(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
) -> Result<Json<WebhooksReply>, ApiError> {
    let (id, handle) = app.site_for(&site, &headers, &[Role::Floor, Role::Analyst])?;
    let seq = handle.status().applied_changes().borrow().to_owned();
    let Some(hooks) = app.hooks() else {
        return Ok(Json(WebhooksReply {
            seq,
            hooks: Vec::new(),
            dead_letters: Vec::new(),
        }));
    };
    let dead_letters = hooks
        .store()
        .dead_letters(&id)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(WebhooksReply {
        seq,
        hooks: hooks.status(&id, seq).await,
        dead_letters,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
struct RetryReply {
    hook: String,
    seq: u64,
    delivered: bool,
}

/// Sends a dead letter again, once, now (floor managers: 「今すぐ再送」). 200 when the receiver
/// took it (it leaves the list); 502 `delivery_failed` with what the receiver answered (it
/// stays).
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/webhooks/{hook}/dead/{seq}/retry",
    tag = "integrations",
    security(("bearer" = ["floor"])),
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("hook" = String, Path, description = "A subscriber's name, e.g. `counter-support`"),
        ("seq" = u64, Path, description = "The dead letter's event id (seq)"),
    ),
    responses(
        (status = 200, description = "Delivered", body = RetryReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 502, description = "The receiver did not take it; it stays a dead letter", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
async fn retry_dead(
    State(app): State<AppState>,
    Path((site, hook, seq)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<RetryReply>, ApiError> {
    let (_, handle) = app.site_for(&site, &headers, &[Role::Floor])?;
    let missing = || ApiError::not_found("unknown_dead_letter", "no such dead letter");
    let seq: u64 = seq.parse().map_err(|_| missing())?;
    let hooks = app.hooks().ok_or_else(missing)?;
    match hooks.retry_dead(handle, &hook, seq).await {
        Ok(true) => Ok(Json(RetryReply {
            hook,
            seq,
            delivered: true,
        })),
        Ok(false) => Err(missing()),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "delivery_failed",
            format!("再送できませんでした / the receiver did not take it: {error}"),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Events after this seq (default 0: from the first). With Server-Sent Events a
    /// `Last-Event-ID` header takes its place.
    #[param(minimum = 0)]
    from_seq: Option<i64>,
}

/// The site's events in their public form (no phone tokens, booking codes, contacts or staff
/// names), for analysts' pipelines. `Accept: text/event-stream`: Server-Sent Events, every event
/// after `from_seq` (or `Last-Event-ID`) and then each new one as it happens, `id:` the seq.
/// Otherwise NDJSON (`application/x-ndjson`): one event per line, those logged when the request
/// came, then the response ends.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/events",
    tag = "integrations",
    security(("bearer" = ["analyst"])),
    params(("site" = String, Path, description = "A site id, e.g. `chuo`"), EventsQuery),
    responses(
        // Server-Sent Events (`Accept: text/event-stream`) are described above and in
        // docs/INTEGRATIONS.md: a stream that never ends has no place in a request/response
        // contract that generated clients (and contract fuzzers) read to the end.
        (status = 200, description = "One JSON object per line: `seq`, `kind`, `at` and the event's fields; with `Accept: text/event-stream`, Server-Sent Events", content_type = "application/x-ndjson", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
async fn events(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (id, handle) = app.site_for(&site, &headers, &[Role::Analyst])?;
    let Query(q) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let from_seq = q
        .from_seq
        .map(u64::try_from)
        .transpose()
        .map_err(|_| ApiError::invalid_query("from_seq is a seq: 0 or more"))?;
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let from = if sse { resume.or(from_seq) } else { from_seq }.unwrap_or(0);
    let log = app.log().clone();
    let copy = app.store().clone();
    let reader = move |after: u64| {
        let (log, copy, id) = (log.clone(), copy.clone(), id.clone());
        async move { crate::site::read_events(&*log, &copy, &id, after, STREAM_PAGE).await }
    };
    if !sse {
        // What is logged now, then the end.
        let until = *handle.status().applied_changes().borrow();
        let stream = futures_util::stream::unfold(Some(from), move |after| {
            let reader = reader.clone();
            async move {
                let after = after.filter(|a| *a < until)?;
                match reader(after).await {
                    Ok(page) if page.is_empty() => None,
                    Ok(page) => {
                        let mut last = after;
                        let mut chunk = Vec::new();
                        for e in page.iter().take_while(|e| e.seq <= until) {
                            last = e.seq;
                            serde_json::to_writer(
                                &mut chunk,
                                &crate::hooks::public_form(e.seq, &e.event),
                            )
                            .ok();
                            chunk.push(b'\n');
                        }
                        Some((Ok::<_, std::io::Error>(chunk), Some(last)))
                    }
                    // Cut the connection rather than end as if complete.
                    Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
                }
            }
        });
        return Ok((
            [
                (header::CONTENT_TYPE, "application/x-ndjson"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            Body::from_stream(stream),
        )
            .into_response());
    }
    // Server-Sent Events: the backlog, then each event as the site applies it, until the client
    // goes away or the server stops.
    let follow = Follow {
        after: from,
        ready: std::collections::VecDeque::new(),
        applied: handle.status().applied_changes(),
        shutdown: app.shutdown_signal(),
    };
    let stream = futures_util::stream::unfold(follow, move |mut f| {
        let reader = reader.clone();
        async move {
            loop {
                if let Some(e) = f.ready.pop_front() {
                    let data = crate::hooks::public_form(e.seq, &e.event).to_string();
                    let event = SseEvent::default().id(e.seq.to_string()).data(data);
                    return Some((Ok::<_, Infallible>(event), f));
                }
                if *f.shutdown.borrow() {
                    return None;
                }
                // Seen before reading, so an event applied meanwhile wakes the wait below.
                f.applied.borrow_and_update();
                match reader(f.after).await {
                    Ok(page) if !page.is_empty() => {
                        f.after = page.last().map_or(f.after, |e| e.seq);
                        f.ready.extend(page);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream: cannot read the log");
                        return None;
                    }
                }
                tokio::select! {
                    _ = f.applied.changed() => {}
                    _ = f.shutdown.changed() => {}
                }
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
