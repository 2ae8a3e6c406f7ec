//! The audit trail: who changed the floor, and when. Counter states, profiles, cancellations by
//! staff and calls out of order carry the acting token's name and role in the event log; these
//! routes read them back for the floor board (JSON) and the analyst (CSV).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::openapi::{Forbidden, NotFound, Unauthorized, Unavailable, Unprocessable};
use super::AppState;
use crate::config::Role;
use crate::core::TicketId;
use crate::core::{CounterState, Event, Timestamp};
use crate::projection::AuditRow;
use crate::site::SiteHandle;

/// Most entries one request returns.
const MAX_LIMIT: usize = 10_000;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit))
        .routes(routes!(audit_csv))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// How many of the latest entries (default 50, at most 10,000).
    limit: Option<usize>,
}

/// One change of the floor.
#[derive(Debug, Serialize, ToSchema)]
struct AuditEntry {
    /// The event's place in the site's log.
    seq: u64,
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// The name of the token that made the change (a device or a person).
    operator: String,
    role: String,
    /// `counter_opened`, `counter_paused`, `counter_closed`, `profile_changed`,
    /// `ticket_cancelled` or `called_out_of_order`.
    action: String,
    counter: Option<String>,
    /// The ticket's number, for cancellations and calls.
    number: Option<String>,
    /// The new profile's queues, for profile changes.
    queues: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
struct AuditReply {
    audit: Vec<AuditEntry>,
}

/// The latest entries of a site, with ticket numbers filled in from the site's state where the
/// visit has not ended yet.
async fn entries(
    app: &AppState,
    handle: &SiteHandle,
    limit: Option<usize>,
) -> Result<Vec<AuditEntry>, ApiError> {
    let limit = limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid_query(format!(
            "limit must be 1–{MAX_LIMIT}"
        )));
    }
    app.settled(Some(&handle.config.id)).await;
    let rows = app
        .store()
        .audit(handle.config.id.as_str(), limit)
        .await
        .map_err(ApiError::unavailable)?;
    let open: Vec<TicketId> = rows
        .iter()
        .filter(|r| r.number.is_none())
        .filter_map(|r| r.event.ticket().cloned())
        .collect();
    let numbers: HashMap<String, String> = if open.is_empty() {
        HashMap::new()
    } else {
        handle
            .read(move |state| {
                open.into_iter()
                    .filter_map(|id| {
                        let number = state.tickets.get(&id)?.number.to_string();
                        Some((id.to_string(), number))
                    })
                    .collect()
            })
            .await?
    };
    Ok(rows
        .into_iter()
        .filter_map(|row| entry(row, &numbers))
        .collect())
}

fn entry(row: AuditRow, numbers: &HashMap<String, String>) -> Option<AuditEntry> {
    let operator = row.event.operator()?.clone();
    let number = row.number.clone().or_else(|| {
        row.event
            .ticket()
            .and_then(|t| numbers.get(t.as_str()).cloned())
    });
    let (action, counter, queues) = match &row.event {
        Event::CounterStateChanged { counter, state, .. } => (
            match state {
                CounterState::Open => "counter_opened",
                CounterState::Paused => "counter_paused",
                CounterState::Closed => "counter_closed",
            },
            Some(counter.to_string()),
            None,
        ),
        Event::ProfileChanged {
            counter, profile, ..
        } => (
            "profile_changed",
            Some(counter.to_string()),
            Some(profile.queues.iter().map(ToString::to_string).collect()),
        ),
        Event::TicketCancelled { .. } => ("ticket_cancelled", None, None),
        Event::ReceptionChanged { queue, mode, .. } => (
            match mode {
                crate::core::ReceptionMode::Closing => "reception_closed",
                crate::core::ReceptionMode::Open => "reception_kept_open",
            },
            None,
            Some(vec![queue.to_string()]),
        ),
        Event::SlotCapacitySet { queue, .. } => {
            ("slot_capacity_set", None, Some(vec![queue.to_string()]))
        }
        Event::TicketCalled { counter, .. } => {
            ("called_out_of_order", Some(counter.to_string()), None)
        }
        _ => return None,
    };
    Some(AuditEntry {
        seq: row.seq,
        at: row.event.at(),
        operator: operator.name,
        role: operator.role,
        action: action.to_owned(),
        counter,
        number,
        queues,
    })
}

/// The latest floor changes with who made them (floor board, analysts).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/audit",
    tag = "audit",
    security(("bearer" = ["floor", "analyst"])),
    params(("site" = String, Path, description = "A site id"), AuditQuery),
    responses(
        (status = 200, description = "Newest first", body = AuditReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
async fn audit(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditReply>, ApiError> {
    // The token first, then the query.
    let (_, handle) = app.site_for(&site, &headers, &[Role::Floor, Role::Analyst])?;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let audit = entries(&app, handle, q.limit).await?;
    Ok(Json(AuditReply { audit }))
}

/// The audit trail as CSV for analysts (UTF-8 with a byte order mark, for Excel).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/audit.csv",
    tag = "audit",
    security(("bearer" = ["analyst"])),
    params(("site" = String, Path, description = "A site id"), AuditQuery),
    responses(
        (status = 200, description = "Newest first", body = String, content_type = "text/csv; charset=utf-8"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
async fn audit_csv(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, handle) = app.site_for(&site, &headers, &[Role::Analyst])?;
    let tz = handle.config.timezone;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let rows = entries(&app, handle, q.limit.or(Some(MAX_LIMIT))).await?;
    let mut out = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    let write = |out: &mut csv::Writer<Vec<u8>>, record: &[&str]| {
        out.write_record(record).map_err(ApiError::unavailable)
    };
    write(
        &mut out,
        &[
            "seq", "at_local", "operator", "role", "action", "counter", "number", "queues",
        ],
    )?;
    for e in &rows {
        write(
            &mut out,
            &[
                &e.seq.to_string(),
                &e.at
                    .with_timezone(&tz)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
                &e.operator,
                &e.role,
                &e.action,
                e.counter.as_deref().unwrap_or(""),
                e.number.as_deref().unwrap_or(""),
                &e.queues.as_ref().map(|q| q.join(" ")).unwrap_or_default(),
            ],
        )?;
    }
    let body = out.into_inner().map_err(ApiError::unavailable)?;
    Ok(super::kpi::csv_response(
        &format!("madoguchi-audit-{site}.csv"),
        axum::body::Body::from(body),
    ))
}
