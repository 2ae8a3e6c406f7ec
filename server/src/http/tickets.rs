//! Tickets: issue (dispensers), look up and cancel (staff, and the resident by token).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, RawBody};
use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, RequestTimeout, TooManyRequests,
    Unauthorized, Unavailable, Unprocessable,
};
use super::AppState;
use crate::config::Role;
use crate::core::{
    CancelReason, Command, DispenserId, IssueCommand, LifeEventId, PhoneView, PlanRequest,
    PrinterId, PrinterState, ProcedureCode, QuestionId, TicketId, TicketNumber, TicketSelector,
    TicketStatus, TicketView,
};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue, list_open))
        .routes(routes!(staff_view))
        .routes(routes!(staff_cancel))
}

/// The resident's own ticket, by the phone page's token: rate-limited per address.
pub(super) fn residents() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(public_view))
        .routes(routes!(resident_cancel))
        .routes(routes!(rate))
}

/// The issue reply.
#[derive(Debug, Serialize, ToSchema)]
struct Issued {
    /// The new ticket; its `token` (the phone page's key) appears only here.
    ticket: TicketView,
    /// The printer of the dispenser named in the request, if it has one.
    printer: Option<IssuePrinter>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct IssuePrinter {
    id: PrinterId,
    state: PrinterState,
    /// The kiosk tells the resident to ask staff (paper end, cover open, offline…).
    needs_staff: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct TicketList {
    tickets: Vec<TicketView>,
}

/// A ticket as staff see it.
#[derive(Debug, Serialize, ToSchema)]
struct StaffTicket {
    ticket: TicketView,
}

/// A ticket as the phone page shows it.
#[derive(Debug, Serialize, ToSchema)]
struct PhoneTicket {
    ticket: PhoneView,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum Lang {
    Ja,
    En,
    Zh,
    Ko,
    Vi,
}

impl Lang {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
            Lang::Zh => "zh",
            Lang::Ko => "ko",
            Lang::Vi => "vi",
        }
    }
}

/// Either `life_event` with `answers` (every question of the life event answered), or
/// `procedures`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    life_event: Option<LifeEventId>,
    /// Question id → answer.
    #[serde(default)]
    answers: BTreeMap<QuestionId, bool>,
    procedures: Option<Vec<ProcedureCode>>,
    #[serde(default)]
    priority: bool,
    lang: Option<Lang>,
    /// The dispenser pressed: keys idempotency, and picks the printer.
    dispenser: Option<DispenserId>,
}

/// Longest accepted `Idempotency-Key`.
const MAX_KEY: usize = 128;

/// Issues a ticket. With an `Idempotency-Key`, a retry of the same press returns the first ticket
/// (200) instead of issuing another.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/tickets",
    tag = "tickets",
    security(("bearer" = ["dispenser", "floor"])),
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–128 visible ASCII characters; per dispenser"),
    ),
    request_body = IssueBody,
    responses(
        (status = 201, description = "Issued", body = Issued),
        (status = 200, description = "A retry with the same `Idempotency-Key`: the first ticket", body = Issued),
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
async fn issue(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<impl IntoResponse, ApiError> {
    let (site_id, handle) = app.site_for(&site, &headers, &[Role::Dispenser, Role::Floor])?;
    let body: IssueBody = body.json().await?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .ok()
                .filter(|v| !v.is_empty() && v.len() <= MAX_KEY)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Idempotency-Key must be 1–{MAX_KEY} visible ASCII characters"
                    ))
                })?;
            Some(v.to_owned())
        }
    };
    let plan = plan_request(body.life_event, body.answers, body.procedures)?;
    let agent = body
        .dispenser
        .as_ref()
        .and_then(|d| handle.config.dispenser(d))
        .and_then(|d| d.printer_agent.clone());
    let command = Command::Issue(IssueCommand {
        id: TicketId::try_from(uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid id"),
        token: new_token(),
        plan,
        priority: body.priority,
        dispenser: body.dispenser,
        lang: body.lang.map(|l| l.as_str().to_owned()),
        idempotency_key: key,
    });
    let applied = handle.command(command).await?;
    let ticket = applied
        .ticket
        .ok_or_else(|| ApiError::unavailable("issue gave no ticket"))?;
    tracing::info!(site = %site_id, number = %ticket.number, queue = %ticket.queue, replayed = applied.replayed, "ticket issued");
    let status = if applied.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let printer = dispenser_printer(handle, agent).await?;
    Ok((status, Json(Issued { ticket, printer })))
}

/// The state of the printer of a dispenser's agent: the kiosk tells the resident to ask staff
/// when it cannot print.
pub(super) async fn dispenser_printer(
    handle: &crate::site::SiteHandle,
    agent: Option<PrinterId>,
) -> Result<Option<IssuePrinter>, ApiError> {
    let Some(agent) = agent else {
        return Ok(None);
    };
    let state = handle
        .read(move |s| s.printers.get(&agent).map(|p| (agent.clone(), p.0)))
        .await?;
    Ok(state.map(|(id, state)| IssuePrinter {
        id,
        state,
        needs_staff: state.needs_staff(),
    }))
}

/// The visit plan of a body with either `life_event` (and `answers`) or `procedures`.
pub(super) fn plan_request(
    life_event: Option<LifeEventId>,
    answers: BTreeMap<QuestionId, bool>,
    procedures: Option<Vec<ProcedureCode>>,
) -> Result<PlanRequest, ApiError> {
    match (life_event, procedures) {
        (Some(id), None) => Ok(PlanRequest::LifeEvent {
            id,
            answers: answers.into_iter().collect(),
        }),
        (None, Some(codes)) if answers.is_empty() => Ok(PlanRequest::Procedures(codes)),
        (None, Some(_)) => Err(ApiError::invalid(
            "`answers` go with `life_event`, not with `procedures`",
        )),
        _ => Err(ApiError::invalid(
            "give either `life_event` (with `answers`) or `procedures`",
        )),
    }
}

/// 128 random bits, URL-safe: the phone page's only credential.
pub(super) fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only the tickets of this status (default: every open ticket).
    status: Option<TicketStatus>,
}

/// Today's tickets that are still open (or of one status), for counter staff and the floor.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/tickets",
    tag = "tickets",
    security(("bearer" = ["counter", "floor"])),
    params(("site" = String, Path, description = "A site id, e.g. `chuo`"), ListQuery),
    responses(
        (status = 200, description = "Today's tickets, by arrival", body = TicketList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
async fn list_open(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let (_, handle) = app.site_for(&site, &headers, &[Role::Counter, Role::Floor])?;
    let query = query.map_err(|e| ApiError::invalid(e.body_text()))?.0;
    let tickets = handle
        .read(move |state| {
            let mut list: Vec<TicketView> = state
                .tickets
                .values()
                .filter(|t| match query.status {
                    Some(s) => t.status == s,
                    None => !t.status.is_terminal(),
                })
                .map(|t| state.ticket_view(t, false))
                .collect();
            list.sort_by(|a, b| (a.issued_at, &a.number).cmp(&(b.issued_at, &b.number)));
            list
        })
        .await?;
    Ok(Json(TicketList { tickets }))
}

/// One of today's tickets by its number.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/tickets/{number}",
    tag = "tickets",
    security(("bearer" = ["counter", "floor"])),
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("number" = String, Path, description = "The ticket's number, e.g. `12` or `A012`"),
    ),
    responses(
        (status = 200, description = "The ticket", body = StaffTicket),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
async fn staff_view(
    State(app): State<AppState>,
    Path((site, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let (_, handle) = app.site_for(&site, &headers, &[Role::Counter, Role::Floor])?;
    let n = TicketNumber(number.clone());
    let ticket = handle
        .read(move |state| {
            state
                .ticket_by_number(&n)
                .map(|t| state.ticket_view(t, false))
        })
        .await?
        .ok_or_else(|| {
            ApiError::not_found("ticket_not_found", format!("no ticket {number} today"))
        })?;
    Ok(Json(StaffTicket { ticket }))
}

/// Staff cancel a ticket that has not ended.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/tickets/{number}/cancel",
    tag = "tickets",
    security(("bearer" = ["counter", "floor"])),
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("number" = String, Path, description = "The ticket's number, e.g. `12` or `A012`"),
    ),
    responses(
        (status = 200, description = "The cancelled ticket", body = StaffTicket),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
async fn staff_cancel(
    State(app): State<AppState>,
    Path((site, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let (_, handle, grant) = app.granted_site(&site, &headers, &[Role::Counter, Role::Floor])?;
    let applied = handle
        .command_as(
            Command::Cancel {
                ticket: TicketSelector::Number(TicketNumber(number)),
                reason: CancelReason::Staff,
            },
            Some(super::auth::operator(grant)),
        )
        .await?;
    let ticket = applied
        .ticket
        .ok_or_else(|| ApiError::unavailable("cancel gave no ticket"))?;
    Ok(Json(StaffTicket { ticket }))
}

/// The resident's ticket by its phone token: the index names the one site to ask.
async fn find_by_token(app: &AppState, token: &str) -> Result<PhoneView, ApiError> {
    let handle = app
        .site_of_token(token)
        .await
        .ok_or_else(ApiError::unknown_phone_ticket)?;
    let t = token.to_owned();
    handle
        .read(move |state| state.phone_view(&t))
        .await?
        .ok_or_else(ApiError::unknown_phone_ticket)
}

/// The resident's ticket, by the phone page's token (public; rate-limited per address).
#[utoipa::path(
    get,
    path = "/api/v1/tickets/{token}",
    tag = "tickets",
    params(("token" = String, Path, description = "The phone page's token (32 hex digits)")),
    responses(
        (status = 200, description = "The ticket as the phone page shows it", body = PhoneTicket),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn public_view(
    State(app): State<AppState>,
    Path(token): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let ticket = find_by_token(&app, &token).await?;
    Ok(Json(PhoneTicket { ticket }))
}

/// A command the resident's token allows, answered with the ticket as the phone page shows it.
async fn as_resident(
    app: &AppState,
    token: &str,
    command: Command,
) -> Result<Json<PhoneTicket>, ApiError> {
    let ticket = find_by_token(app, token).await?;
    let handle = app
        .site(&ticket.site.id)
        .ok_or_else(|| ApiError::unavailable("site vanished"))?;
    handle.command(command).await?;
    let ticket = find_by_token(app, token).await?;
    Ok(Json(PhoneTicket { ticket }))
}

/// The resident gives up waiting, from the phone page (public; rate-limited per address).
#[utoipa::path(
    post,
    path = "/api/v1/tickets/{token}/cancel",
    tag = "tickets",
    params(("token" = String, Path, description = "The phone page's token (32 hex digits)")),
    responses(
        (status = 200, description = "The cancelled ticket", body = PhoneTicket),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn resident_cancel(
    State(app): State<AppState>,
    Path(token): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let command = Command::Cancel {
        ticket: TicketSelector::Token(token.clone()),
        reason: CancelReason::Resident,
    };
    as_resident(&app, &token, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RateBody {
    /// 5 満足 very satisfied … 1 不満 very dissatisfied.
    #[schema(minimum = 1, maximum = 5)]
    score: u8,
}

/// The one-tap satisfaction question after a finished visit (5 満足 … 1 不満; public,
/// rate-limited per address).
#[utoipa::path(
    post,
    path = "/api/v1/tickets/{token}/satisfaction",
    tag = "tickets",
    params(("token" = String, Path, description = "The phone page's token (32 hex digits)")),
    request_body = RateBody,
    responses(
        (status = 200, description = "The ticket with its rating", body = PhoneTicket),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn rate(
    State(app): State<AppState>,
    Path(token): Path<String>,
    body: RawBody,
) -> Result<impl IntoResponse, ApiError> {
    // The token in the address is the resident's credential: check it before the body.
    find_by_token(&app, &token).await?;
    let body: RateBody = body.json().await?;
    let command = Command::Rate {
        token: token.clone(),
        score: body.score,
    };
    as_resident(&app, &token, command).await
}
