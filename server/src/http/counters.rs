//! Counter actions (staff) and profiles (floor managers).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, RawBody};
use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, RequestTimeout, Unauthorized,
    Unavailable, Unprocessable,
};
use super::AppState;
use crate::config::Role;
use crate::core::{
    Command, CounterId, CounterState, CounterView, DomainError, Profile, QueueId, Target,
    TicketNumber, TicketView,
};

pub(super) fn router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(view))
        .routes(routes!(set_profile))
        .routes(routes!(action));
    // An action's body may be left out altogether (which `#[utoipa::path]` cannot say).
    if let Some(body) = router
        .get_openapi_mut()
        .paths
        .paths
        .get_mut("/api/v1/sites/{site}/counters/{counter}/{action}")
        .and_then(|item| item.post.as_mut())
        .and_then(|op| op.request_body.as_mut())
    {
        body.required = Some(utoipa::openapi::Required::False);
    }
    router
}

/// The counter actions, as the last segment of their path.
pub(super) const ACTIONS: [&str; 9] = [
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

/// A counter action (the path segment): the schema of [`ACTIONS`].
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)] // Documentation only; a test checks it against ACTIONS.
enum CounterAction {
    Open,
    Pause,
    Close,
    CallNext,
    Call,
    Recall,
    Start,
    NoShow,
    Complete,
}

/// The body of a counter action, for the document: `call` needs `number`; `complete` takes an
/// optional `transfer_to`; the other actions take no body, or `{}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Documentation only: the handler reads `CallBody` or `CompleteBody`.
struct ActionBody {
    /// `call`: the waiting ticket to call out of order.
    number: Option<TicketNumber>,
    /// `complete`: where the same ticket waits for its next step.
    transfer_to: Option<TransferTo>,
}

/// A counter action's reply.
#[derive(Debug, Serialize, ToSchema)]
struct ActionReply {
    /// The ticket the action was about (after it), if any.
    ticket: Option<TicketView>,
    counter: Option<CounterView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct CounterReply {
    counter: CounterView,
}

/// The body of `complete`: `{"transfer_to": "queue-or-counter"}` or
/// `{"transfer_to": {"queue": "..."}}` / `{"transfer_to": {"counter": "..."}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    transfer_to: Option<TransferTo>,
}

/// A queue or counter id (whichever the site has), or `{"queue": …}` / `{"counter": …}`.
#[derive(Debug, Deserialize, ToSchema)]
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

/// A counter with its state, profile and current ticket.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/counters/{counter}",
    tag = "counters",
    security(("bearer" = ["counter", "floor"])),
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("counter" = String, Path, description = "A counter id, e.g. `1`"),
    ),
    responses(
        (status = 200, description = "The counter", body = CounterReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn view(
    State(app): State<AppState>,
    Path((site, counter)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let (_, handle, grant) = app.granted_site(&site, &headers, &[Role::Counter, Role::Floor])?;
    let id = counter_id(&counter)?;
    super::auth::at_counter(grant, &id)?;
    let view = handle
        .read(move |state| state.counter_view(&id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found("unknown_counter", format!("unknown counter {counter}"))
        })?;
    Ok(Json(CounterReply { counter: view }))
}

/// A counter action: `open`, `pause`, `close`, `call-next` (204 when nobody waits), `call`
/// (`{"number"}`), `recall`, `start`, `no-show`, `complete` (optional `{"transfer_to"}`).
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/counters/{counter}/{action}",
    tag = "counters",
    security(("bearer" = ["counter", "floor"])),
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("counter" = String, Path, description = "A counter id, e.g. `1`"),
        ("action" = inline(CounterAction), Path, description = "The action"),
    ),
    request_body(content = ActionBody, description = "`call`: `{\"number\"}`; `complete`: optional `{\"transfer_to\"}`; others: none or `{}`"),
    responses(
        (status = 200, description = "The ticket and the counter after the action", body = ActionReply),
        (status = 204, description = "`call-next` with nobody waiting"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
async fn action(
    State(app): State<AppState>,
    Path((site, counter, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    // The token first: a caller without one learns nothing, and its body is never read.
    let (_, handle, grant) = app.granted_site(&site, &headers, &[Role::Counter, Role::Floor])?;
    let known = ACTIONS;
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
    super::auth::at_counter(grant, &id)?;
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
    match handle
        .command_as(command, Some(super::auth::operator(grant)))
        .await
    {
        Err(crate::site::SiteError::Domain(DomainError::NobodyWaiting(_))) => {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => Err(e.into()),
        Ok(applied) => Ok(Json(ActionReply {
            ticket: applied.ticket,
            counter: applied.counter,
        })
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

/// Changes the queues a counter serves and how it picks among them (floor managers).
#[utoipa::path(
    put,
    path = "/api/v1/sites/{site}/counters/{counter}/profile",
    tag = "counters",
    security(("bearer" = ["floor"])),
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("counter" = String, Path, description = "A counter id, e.g. `1`"),
    ),
    request_body = Profile,
    responses(
        (status = 200, description = "The counter with its new profile", body = CounterReply),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
async fn set_profile(
    State(app): State<AppState>,
    Path((site, counter)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<impl IntoResponse, ApiError> {
    let (_, handle, grant) = app.granted_site(&site, &headers, &[Role::Floor])?;
    let profile: Profile = body.json().await?;
    let id = counter_id(&counter)?;
    let applied = handle
        .command_as(
            Command::SetProfile {
                counter: id,
                profile,
            },
            Some(super::auth::operator(grant)),
        )
        .await?;
    let counter = applied
        .counter
        .ok_or_else(|| ApiError::unavailable("the profile change gave no counter"))?;
    Ok(Json(CounterReply { counter }))
}
