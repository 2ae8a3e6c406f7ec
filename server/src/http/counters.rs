//! Counter actions (staff) and profiles (floor managers).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, RawBody};
use super::AppState;
use crate::config::Role;
use crate::core::{
    Command, CounterId, CounterState, DomainError, Profile, QueueId, Target, TicketNumber,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sites/{site}/counters/{counter}", get(view))
        .route(
            "/api/v1/sites/{site}/counters/{counter}/profile",
            put(set_profile),
        )
        .route(
            "/api/v1/sites/{site}/counters/{counter}/{action}",
            post(action),
        )
}

/// The body of `complete`: `{"transfer_to": "queue-or-counter"}` or
/// `{"transfer_to": {"queue": "..."}}` / `{"transfer_to": {"counter": "..."}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    transfer_to: Option<TransferTo>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TransferTo {
    Explicit(Target),
    Name(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    number: TicketNumber,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

fn counter_id(raw: &str) -> Result<CounterId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("unknown_counter", format!("unknown counter {raw}")))
}

async fn view(
    State(app): State<AppState>,
    Path((site, counter)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let (_, handle) = app.site_for(&site, &headers, &[Role::Counter, Role::Floor])?;
    let id = counter_id(&counter)?;
    let view = handle
        .read(move |state| state.counter_view(&id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found("unknown_counter", format!("unknown counter {counter}"))
        })?;
    Ok(Json(json!({ "counter": view })))
}

async fn action(
    State(app): State<AppState>,
    Path((site, counter, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    // The token first: a caller without one learns nothing, and its body is never read.
    let (_, handle) = app.site_for(&site, &headers, &[Role::Counter, Role::Floor])?;
    let known = [
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
    if !known.contains(&action.as_str()) {
        return Err(ApiError::not_found(
            "unknown_action",
            format!(
                "unknown counter action {action:?}; use one of {}",
                known.join(", ")
            ),
        ));
    }
    let id = counter_id(&counter)?;
    // Actions without a body take none, or an empty object.
    let empty = |body: RawBody| async move { body.optional_json::<EmptyBody>().await.map(|_| ()) };
    let command = match action.as_str() {
        "open" | "pause" | "close" => {
            empty(body).await?;
            let state = match action.as_str() {
                "open" => CounterState::Open,
                "pause" => CounterState::Paused,
                _ => CounterState::Closed,
            };
            Command::SetCounterState { counter: id, state }
        }
        "call-next" => {
            empty(body).await?;
            Command::CallNext { counter: id }
        }
        "call" => {
            let b: CallBody = body.json().await?;
            Command::Call {
                counter: id,
                number: b.number,
            }
        }
        "recall" => {
            empty(body).await?;
            Command::Recall { counter: id }
        }
        "start" => {
            empty(body).await?;
            Command::Start { counter: id }
        }
        "no-show" => {
            empty(body).await?;
            Command::NoShow { counter: id }
        }
        _ => {
            let transfer_to = match body
                .optional_json::<CompleteBody>()
                .await?
                .and_then(|b| b.transfer_to)
            {
                None => None,
                Some(TransferTo::Explicit(t)) => Some(t),
                Some(TransferTo::Name(name)) => Some(resolve_target(&handle.config, &name)?),
            };
            Command::Complete {
                counter: id,
                transfer_to,
            }
        }
    };
    match handle.command(command).await {
        Err(crate::site::SiteError::Domain(DomainError::NobodyWaiting(_))) => {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => Err(e.into()),
        Ok(applied) => Ok(Json(json!({
            "ticket": applied.ticket,
            "counter": applied.counter,
        }))
        .into_response()),
    }
}

/// A bare name in `transfer_to`: a queue id or a counter id, whichever the site has.
fn resolve_target(config: &crate::config::SiteConfig, name: &str) -> Result<Target, ApiError> {
    let queue = name
        .parse::<QueueId>()
        .ok()
        .filter(|q| config.queue(q).is_some());
    let counter = name
        .parse::<CounterId>()
        .ok()
        .filter(|c| config.counter(c).is_some());
    match (queue, counter) {
        (Some(q), None) => Ok(Target::Queue(q)),
        (None, Some(c)) => Ok(Target::Counter(c)),
        (Some(_), Some(_)) => Err(ApiError::invalid(format!(
            "{name:?} is both a queue and a counter: write {{\"queue\": \"{name}\"}} or {{\"counter\": \"{name}\"}}"
        ))),
        (None, None) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_target",
            format!("transfer_to {name:?} is neither a queue nor a counter of this site"),
        )),
    }
}

async fn set_profile(
    State(app): State<AppState>,
    Path((site, counter)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<impl IntoResponse, ApiError> {
    let (_, handle) = app.site_for(&site, &headers, &[Role::Floor])?;
    let profile: Profile = body.json().await?;
    let id = counter_id(&counter)?;
    let applied = handle
        .command(Command::SetProfile {
            counter: id,
            profile,
        })
        .await?;
    Ok(Json(json!({ "counter": applied.counter })))
}
