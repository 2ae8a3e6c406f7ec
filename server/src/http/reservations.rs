//! Reservations (来庁予約) for residents, no token: the bookable slots of a day with their free
//! places, booking a slot for a visit plan (a short code back), reading, moving and cancelling by
//! that code. Rate-limited per address like the other public routes. The floor manager sets a
//! slot's capacity. Whether a slot has room is decided by the site's log, so two residents
//! racing for a slot's last place get one 201 and one 409 `slot_full`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, FixedOffset, NaiveDate};
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
use crate::core::model::SiteConfig;
use crate::core::reserve::{draw_code, normalize_code, Reservation};
use crate::core::{
    Command, DomainError, LifeEventId, ProcedureCode, QuestionId, QueueId, SiteState, Timestamp,
};

/// The residents' routes, rate-limited per address by the caller.
pub(super) fn residents() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(slots))
        .routes(routes!(create))
        .routes(routes!(read, change, cancel))
        .routes(routes!(qr))
}

/// The kiosk's and the floor's routes.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(set_capacity))
        .routes(routes!(check_in))
}

/// A booking as residents and staff see it. Times carry the site's UTC offset.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReservationView {
    /// The booking's only credential: 8 characters without look-alikes.
    code: String,
    site: String,
    queue: QueueId,
    procedures: Vec<ProcedureCode>,
    life_event: Option<LifeEventId>,
    #[schema(value_type = String, format = DateTime)]
    slot_start: DateTime<FixedOffset>,
    #[schema(value_type = String, format = DateTime)]
    slot_end: DateTime<FixedOffset>,
    /// Check in at the kiosk from this time…
    #[schema(value_type = String, format = DateTime)]
    check_in_from: DateTime<FixedOffset>,
    /// …until this one; later, the visit is a walk-in.
    #[schema(value_type = String, format = DateTime)]
    check_in_until: DateTime<FixedOffset>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReservationReply {
    reservation: ReservationView,
}

fn local(config: &SiteConfig, t: Timestamp) -> DateTime<FixedOffset> {
    t.with_timezone(&config.timezone).fixed_offset()
}

fn view(config: &SiteConfig, r: &Reservation) -> ReservationView {
    let (early, late) = config
        .reservations
        .as_ref()
        .map_or((0, 0), |c| (c.check_in_early_min, c.check_in_late_min));
    ReservationView {
        code: r.code.clone(),
        site: config.id.to_string(),
        queue: r.queue.clone(),
        procedures: r.procedures.clone(),
        life_event: r.life_event.clone(),
        slot_start: local(config, r.slot_start),
        slot_end: local(config, r.slot_end),
        check_in_from: local(
            config,
            r.slot_start - chrono::Duration::minutes(i64::from(early)),
        ),
        check_in_until: local(
            config,
            r.slot_start + chrono::Duration::minutes(i64::from(late)),
        ),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct SlotQuery {
    /// The local date, `YYYY-MM-DD` (default: today).
    date: Option<String>,
    /// One queue's slots; every bookable queue's when absent.
    queue: Option<QueueId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SlotView {
    queue: QueueId,
    #[schema(value_type = String, format = DateTime)]
    start: DateTime<FixedOffset>,
    #[schema(value_type = String, format = DateTime)]
    end: DateTime<FixedOffset>,
    capacity: u32,
    booked: u32,
    /// Places left; a slot that has begun or is beyond the horizon has none.
    free: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SlotsReply {
    site: String,
    #[schema(value_type = String, format = Date)]
    date: NaiveDate,
    slots: Vec<SlotView>,
}

fn slot_views(
    state: &SiteState,
    date: NaiveDate,
    only: Option<&QueueId>,
    now: Timestamp,
) -> Vec<SlotView> {
    let config = &state.config;
    let Some(r) = config.reservations.as_ref() else {
        return Vec::new();
    };
    let in_horizon = config.last_bookable_day(now).is_some_and(|l| date <= l);
    let mut out = Vec::new();
    for q in config.queues.iter().filter(|q| r.queues.contains(&q.id)) {
        if only.is_some_and(|o| o != &q.id) {
            continue;
        }
        for slot in config.slots(q, date) {
            let capacity = state.slot_capacity(q, slot.start);
            let booked = state.slot_booked(&q.id, slot.start);
            let open = in_horizon && slot.start > now;
            out.push(SlotView {
                queue: q.id.clone(),
                start: local(config, slot.start),
                end: local(config, slot.end),
                capacity,
                booked,
                free: if open {
                    capacity.saturating_sub(booked)
                } else {
                    0
                },
            });
        }
    }
    out
}

/// The bookable slots of a day with their free places (no token).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/reservations/slots",
    tag = "reservations",
    params(("site" = String, Path, description = "A site id, e.g. `chuo`"), SlotQuery),
    responses(
        (status = 200, description = "The day's slots of every bookable queue (or `queue`)", body = SlotsReply),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn slots(
    State(app): State<AppState>,
    Path(site): Path<String>,
    query: Result<Query<SlotQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SlotsReply>, ApiError> {
    let handle = app.public_site(&site)?;
    let Query(q) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let now = chrono::Utc::now();
    let date = match &q.date {
        None => handle.config.local_date(now),
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid_query(format!("date {d:?} is not YYYY-MM-DD")))?,
    };
    if handle.config.reservations.is_none() {
        return Err(DomainError::NoReservations.into());
    }
    if let Some(queue) = &q.queue {
        if !handle.config.bookable(queue) {
            return Err(DomainError::NotBookable(queue.clone()).into());
        }
    }
    let site_id = handle.config.id.to_string();
    let slots = handle
        .read(move |state| slot_views(state, date, q.queue.as_ref(), now))
        .await?;
    Ok(Json(SlotsReply {
        site: site_id,
        date,
        slots,
    }))
}

/// A booking: the visit plan (`life_event` with `answers`, or `procedures`) and the start of a
/// slot of the plan's queue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReserveBody {
    life_event: Option<LifeEventId>,
    /// Question id → answer.
    #[serde(default)]
    answers: BTreeMap<QuestionId, bool>,
    procedures: Option<Vec<ProcedureCode>>,
    /// A slot's `start` as the slots list gives it (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    slot: DateTime<FixedOffset>,
}

/// Reads a booking after a command (it is there: the command just made or changed it).
async fn reply(
    handle: &crate::site::SiteHandle,
    code: String,
) -> Result<Json<ReservationReply>, ApiError> {
    handle
        .read(move |state| {
            state
                .reservation(&code)
                .map(|r| view(&state.config, r))
                .ok_or_else(|| DomainError::ReservationNotFound.into())
        })
        .await?
        .map(|reservation| Json(ReservationReply { reservation }))
}

/// Books a slot (no token). The reply's `code` is the booking's only credential.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/reservations",
    tag = "reservations",
    params(("site" = String, Path, description = "A site id, e.g. `chuo`")),
    request_body = ReserveBody,
    responses(
        (status = 201, description = "Booked", body = ReservationReply),
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
async fn create(
    State(app): State<AppState>,
    Path(site): Path<String>,
    body: RawBody,
) -> Result<impl IntoResponse, ApiError> {
    let handle = app.public_site(&site)?;
    let body: ReserveBody = body.json().await?;
    let plan = super::tickets::plan_request(body.life_event, body.answers, body.procedures)?;
    // A code drawn twice (one chance in 10^11) is drawn again.
    for _ in 0..3 {
        let code = draw_code(&mut rand::rng());
        let command = Command::Reserve {
            code: code.clone(),
            plan: plan.clone(),
            slot_start: body.slot.to_utc(),
        };
        match handle.command(command).await {
            Ok(_) => {
                tracing::info!(site = %handle.config.id, "reservation made");
                let reply = reply(handle, code).await?;
                return Ok((StatusCode::CREATED, reply));
            }
            Err(crate::site::SiteError::Domain(DomainError::CodeTaken)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::unavailable("no free reservation code"))
}

/// A booking by its code (no token: the code is the credential).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/reservations/{code}",
    tag = "reservations",
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("code" = String, Path, description = "The reservation code (case, spaces and hyphens do not matter)"),
    ),
    responses(
        (status = 200, description = "The booking", body = ReservationReply),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn read(
    State(app): State<AppState>,
    Path((site, code)): Path<(String, String)>,
) -> Result<Json<ReservationReply>, ApiError> {
    let handle = app.public_site(&site)?;
    reply(handle, normalize_code(&code)).await
}

/// Moves a booking to another slot of its queue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MoveBody {
    #[schema(value_type = String, format = DateTime)]
    slot: DateTime<FixedOffset>,
}

/// Moves a booking to another slot (no token: the code is the credential).
#[utoipa::path(
    put,
    path = "/api/v1/sites/{site}/reservations/{code}",
    tag = "reservations",
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("code" = String, Path, description = "The reservation code"),
    ),
    request_body = MoveBody,
    responses(
        (status = 200, description = "Moved", body = ReservationReply),
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
async fn change(
    State(app): State<AppState>,
    Path((site, code)): Path<(String, String)>,
    body: RawBody,
) -> Result<Json<ReservationReply>, ApiError> {
    let handle = app.public_site(&site)?;
    let body: MoveBody = body.json().await?;
    let code = normalize_code(&code);
    handle
        .command(Command::MoveReservation {
            code: code.clone(),
            slot_start: body.slot.to_utc(),
        })
        .await?;
    reply(handle, code).await
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Cancelled {
    code: String,
    cancelled: bool,
}

/// Cancels a booking (no token: the code is the credential); its place is free again.
#[utoipa::path(
    delete,
    path = "/api/v1/sites/{site}/reservations/{code}",
    tag = "reservations",
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("code" = String, Path, description = "The reservation code"),
    ),
    responses(
        (status = 200, description = "Cancelled", body = Cancelled),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn cancel(
    State(app): State<AppState>,
    Path((site, code)): Path<(String, String)>,
) -> Result<Json<Cancelled>, ApiError> {
    let handle = app.public_site(&site)?;
    let code = normalize_code(&code);
    handle
        .command(Command::CancelReservation { code: code.clone() })
        .await?;
    tracing::info!(site = %handle.config.id, "reservation cancelled");
    Ok(Json(Cancelled {
        code,
        cancelled: true,
    }))
}

/// A slot's capacity set by the floor manager.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CapacityBody {
    /// The slot's `start` (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    start: DateTime<FixedOffset>,
    /// 0 (no bookings) to 999.
    capacity: u32,
}

/// Sets how many bookings a slot takes (floor managers); bookings already made stay.
#[utoipa::path(
    put,
    path = "/api/v1/sites/{site}/queues/{queue}/slot-capacity",
    tag = "reservations",
    security(("bearer" = ["floor"])),
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("queue" = String, Path, description = "A queue id, e.g. `onestop`"),
    ),
    request_body = CapacityBody,
    responses(
        (status = 200, description = "The slot after the change", body = SlotView),
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
async fn set_capacity(
    State(app): State<AppState>,
    Path((site, queue)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Json<SlotView>, ApiError> {
    let (_, handle, grant) = app.granted_site(&site, &headers, &[Role::Floor])?;
    let body: CapacityBody = body.json().await?;
    let id = super::path_queue(handle, &queue)?;
    let start = body.start.to_utc();
    handle
        .command_as(
            Command::SetSlotCapacity {
                queue: id.clone(),
                slot_start: start,
                capacity: body.capacity,
            },
            Some(super::auth::operator(grant)),
        )
        .await?;
    let now = chrono::Utc::now();
    let date = handle.config.local_date(start);
    handle
        .read(move |state| {
            slot_views(state, date, Some(&id), now)
                .into_iter()
                .find(|s| s.start.to_utc() == start)
                .ok_or_else(|| ApiError::unavailable("the slot is gone"))
        })
        .await?
        .map(Json)
}

/// The booking's code as a QR code (SVG), for the resident to show at the kiosk's scanner (no
/// token: the code is the credential, and the image holds nothing else).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/reservations/{code}/qr.svg",
    tag = "reservations",
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("code" = String, Path, description = "The reservation code"),
    ),
    responses(
        (status = 200, description = "An SVG image of a QR code holding the code", body = String, content_type = "image/svg+xml"),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn qr(
    State(app): State<AppState>,
    Path((site, code)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let handle = app.public_site(&site)?;
    let code = normalize_code(&code);
    let known = {
        let code = code.clone();
        handle
            .read(move |state| state.reservation(&code).is_some())
            .await?
    };
    if !known {
        return Err(DomainError::ReservationNotFound.into());
    }
    let svg = qrcode::QrCode::new(code.as_bytes())
        .map_err(ApiError::unavailable)?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
            (axum::http::header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        svg,
    ))
}

/// What the kiosk sends at check-in: its dispenser (for the printer) and the resident's language.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckInBody {
    dispenser: Option<crate::core::DispenserId>,
    lang: Option<super::tickets::Lang>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CheckedIn {
    /// The new ticket, with the booked plan; its `token` (the phone page's key) appears only here.
    ticket: crate::core::TicketView,
    /// The printer of the dispenser named in the request, if it has one.
    printer: Option<super::tickets::IssuePrinter>,
    /// The booking that was checked in.
    reservation: ReservationView,
    /// Past the check-in window: the ticket is a walk-in's, at the end of the line.
    late: bool,
}

/// Checks a booking in at the kiosk: a ticket for the booked plan, placed in line by the rule in
/// docs/ARCHITECTURE.md (Reservations).
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/reservations/{code}/check-in",
    tag = "reservations",
    security(("bearer" = ["dispenser", "floor"])),
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("code" = String, Path, description = "The reservation code, as typed or scanned"),
    ),
    request_body = CheckInBody,
    responses(
        (status = 201, description = "Checked in: the ticket", body = CheckedIn),
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
async fn check_in(
    State(app): State<AppState>,
    Path((site, code)): Path<(String, String)>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<impl IntoResponse, ApiError> {
    let (_, handle) = app.site_for(&site, &headers, &[Role::Dispenser, Role::Floor])?;
    let body: CheckInBody = body.json().await?;
    let code = normalize_code(&code);
    let booking = {
        let code = code.clone();
        handle
            .read(move |state| state.reservation(&code).map(|r| view(&state.config, r)))
            .await?
    };
    let agent = body
        .dispenser
        .as_ref()
        .and_then(|d| handle.config.dispenser(d))
        .and_then(|d| d.printer_agent.clone());
    let applied = handle
        .command(Command::CheckIn {
            code,
            id: crate::core::TicketId::try_from(uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a valid id"),
            token: super::tickets::new_token(),
            dispenser: body.dispenser,
            lang: body.lang.map(|l| l.as_str().to_owned()),
        })
        .await?;
    let ticket = applied
        .ticket
        .ok_or_else(|| ApiError::unavailable("check-in gave no ticket"))?;
    let reservation =
        booking.ok_or_else(|| ApiError::unavailable("the booking went away during check-in"))?;
    let late = {
        let number = ticket.number.clone();
        handle
            .read(move |state| {
                state
                    .ticket_by_number(&number)
                    .and_then(|t| t.booked.as_ref())
                    .is_some_and(|b| b.late)
            })
            .await?
    };
    tracing::info!(site = %handle.config.id, number = %ticket.number, late, "reservation checked in");
    let printer = super::tickets::dispenser_printer(handle, agent).await?;
    Ok((
        StatusCode::CREATED,
        Json(CheckedIn {
            ticket,
            printer,
            reservation,
            late,
        }),
    ))
}
