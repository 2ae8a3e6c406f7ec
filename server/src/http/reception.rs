//! The floor manager's say over a queue's reception: close it for the rest of the period
//! (「本日の受付は終了しました」) or keep it open when the forecast says the day is full.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
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
use crate::core::{Command, QueueId, QueueReception, ReceptionMode, ReceptionReason};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(set_reception))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReceptionBody {
    /// `closing`: take no more tickets for the rest of the period; `open`: keep taking them
    /// (within the reception hours) although the forecast says the day is full.
    mode: ReceptionMode,
}

#[derive(Debug, Serialize, ToSchema)]
struct ReceptionReply {
    queue: QueueId,
    reception: QueueReception,
}

/// Closes a queue's reception for the rest of the period, or keeps it open against the
/// forecast (floor managers). An event in the log, in the audit trail with who asked.
#[utoipa::path(
    put,
    path = "/api/v1/sites/{site}/queues/{queue}/reception",
    tag = "floor",
    security(("bearer" = ["floor"])),
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("queue" = String, Path, description = "A queue id, e.g. `onestop`"),
    ),
    request_body = ReceptionBody,
    responses(
        (status = 200, description = "The queue's reception now", body = ReceptionReply),
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
async fn set_reception(
    State(app): State<AppState>,
    Path((site, queue)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<impl IntoResponse, ApiError> {
    let (_, handle, grant) = app.granted_site(&site, &headers, &[Role::Floor])?;
    let body: ReceptionBody = body.json().await?;
    let id = super::path_queue(handle, &queue)?;
    handle
        .command_as(
            Command::SetReception {
                queue: id.clone(),
                mode: body.mode,
                reason: ReceptionReason::Floor,
            },
            Some(super::auth::operator(grant)),
        )
        .await?;
    let reception = handle
        .read({
            let id = id.clone();
            move |state| state.reception_now.0.get(&id).cloned()
        })
        .await?
        .ok_or_else(|| ApiError::unavailable("the queue has no reception"))?;
    Ok(Json(ReceptionReply {
        queue: id,
        reception,
    }))
}
