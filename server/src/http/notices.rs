//! Residents opt in to "your turn is near" (the phone page) and to a booking's day-before
//! reminder. The e-mail address goes to the side table (`crate::notices`), never to the log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, RawBody};
use super::openapi::{
    BadRequest, Conflict, NotFound, PayloadTooLarge, RequestTimeout, TooManyRequests, Unavailable,
    Unprocessable,
};
use super::AppState;
use crate::core::notice::NoticeChannel;
use crate::core::{Command, PhoneView};

pub(super) fn residents() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_notice, withdraw_notice))
        .routes(routes!(request_reminder))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NoticeBody {
    /// `email`: an e-mail through the city's mail server; `link`: a code to send to the city's
    /// LINE or SMS gateway.
    channel: NoticeChannel,
    /// For `email`.
    email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct NoticeReply {
    ticket: PhoneView,
}

/// The site, id and language of the ticket of a phone token (404 `ticket_not_found`).
async fn resident_ticket(
    app: &AppState,
    token: &str,
) -> Result<
    (
        crate::site::SiteHandle,
        crate::core::TicketId,
        Option<String>,
    ),
    ApiError,
> {
    let handle = app
        .site_of_token(token)
        .await
        .ok_or_else(ApiError::unknown_phone_ticket)?
        .clone();
    let t = token.to_owned();
    let (ticket, lang) = handle
        .read(move |s| {
            s.ticket_by_token(&t)
                .map(|t| (t.id.clone(), t.lang.clone()))
        })
        .await?
        .ok_or_else(ApiError::unknown_phone_ticket)?;
    Ok((handle, ticket, lang))
}

/// An e-mail address as the mail server takes it (no display name), at most 254 characters.
fn email_address(raw: Option<&str>) -> Result<String, ApiError> {
    let raw = raw.map(str::trim).unwrap_or("");
    if raw.len() > 254 || raw.parse::<lettre::Address>().is_err() {
        return Err(ApiError::invalid(
            "メールアドレスを確認してください / give a valid e-mail address",
        ));
    }
    Ok(raw.to_owned())
}

/// Asks to be told when the turn is near (public; rate-limited per address): by e-mail, or with
/// a link code the resident sends to the city's LINE or SMS gateway (in the reply's
/// `ticket.notice.link_code`). Once per ticket, while it waits.
#[utoipa::path(
    post,
    path = "/api/v1/tickets/{token}/notice",
    tag = "tickets",
    params(("token" = String, Path, description = "The phone page's token (32 hex digits)")),
    request_body = NoticeBody,
    responses(
        (status = 200, description = "The ticket with its notice", body = NoticeReply),
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
async fn request_notice(
    State(app): State<AppState>,
    Path(token): Path<String>,
    body: RawBody,
) -> Result<impl IntoResponse, ApiError> {
    // The token in the address is the resident's credential: check it before the body.
    let (handle, ticket, lang) = resident_ticket(&app, &token).await?;
    let body: NoticeBody = body.json().await?;
    let notices = app
        .notices()
        .ok_or_else(|| ApiError::unavailable("notices are not running"))?;
    let mut link_code = None;
    let mut stored = false;
    match body.channel {
        NoticeChannel::Email => {
            let email = email_address(body.email.as_deref())?;
            if notices.mailer.is_none() {
                return Err(ApiError::from(crate::core::DomainError::NoNotices));
            }
            notices
                .contacts
                .put(
                    "ticket",
                    ticket.as_str(),
                    &handle.config.id,
                    &email,
                    lang.as_deref(),
                    None,
                )
                .await
                .map_err(ApiError::unavailable)?;
            stored = true;
        }
        NoticeChannel::Link => {
            if body.email.is_some() {
                return Err(ApiError::invalid("email is for the email channel only"));
            }
            link_code = Some(crate::core::reserve::draw_code(&mut rand::rng()));
        }
    }
    let command = Command::RequestNotice {
        token: token.clone(),
        channel: body.channel,
        link_code,
    };
    if let Err(e) = handle.command(command).await {
        if stored {
            let _ = notices
                .contacts
                .forget(vec![("ticket", ticket.to_string())])
                .await;
        }
        return Err(e.into());
    }
    if !stored {
        // Switched to the gateway: an address given before is not needed any more.
        notices
            .contacts
            .forget(vec![("ticket", ticket.to_string())])
            .await
            .map_err(ApiError::unavailable)?;
    }
    let t = token.clone();
    let view = handle
        .read(move |s| s.phone_view(&t))
        .await?
        .ok_or_else(ApiError::unknown_phone_ticket)?;
    Ok(Json(NoticeReply { ticket: view }))
}

/// No longer wants the notice (public; rate-limited per address): the address is deleted.
#[utoipa::path(
    delete,
    path = "/api/v1/tickets/{token}/notice",
    tag = "tickets",
    params(("token" = String, Path, description = "The phone page's token (32 hex digits)")),
    responses(
        (status = 204, description = "No notice any more"),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn withdraw_notice(
    State(app): State<AppState>,
    Path(token): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (handle, ticket, _) = resident_ticket(&app, &token).await?;
    handle.command(Command::WithdrawNotice { token }).await?;
    if let Some(notices) = app.notices() {
        notices
            .contacts
            .forget(vec![("ticket", ticket.to_string())])
            .await
            .map_err(ApiError::unavailable)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReminderBody {
    email: String,
    /// `ja` or `en`.
    lang: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ReminderReply {
    /// When the reminder goes out: the day before the slot, at `[notices] reminder_time`.
    #[schema(value_type = String, format = DateTime)]
    remind_at: chrono::DateTime<chrono::FixedOffset>,
}

/// A booking's reminder by e-mail the day before (public, by the booking code; rate-limited
/// per address). The address is deleted at check-in, on cancelling, or once the slot passed.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/reservations/{code}/reminder",
    tag = "reservations",
    params(
        ("site" = String, Path, description = "A site id, e.g. `chuo`"),
        ("code" = String, Path, description = "The booking's code"),
    ),
    request_body = ReminderBody,
    responses(
        (status = 200, description = "The reminder is set", body = ReminderReply),
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
async fn request_reminder(
    State(app): State<AppState>,
    Path((site, code)): Path<(String, String)>,
    body: RawBody,
) -> Result<impl IntoResponse, ApiError> {
    let handle = app.public_site(&site)?.clone();
    let code = crate::core::reserve::normalize_code(&code);
    let c = code.clone();
    let slot_start = handle
        .read(move |s| s.reservations.get(&c).map(|r| r.slot_start))
        .await?
        .ok_or_else(|| ApiError::from(crate::core::DomainError::ReservationNotFound))?;
    let body: ReminderBody = body.json().await?;
    let email = email_address(Some(&body.email))?;
    let notices = app
        .notices()
        .filter(|n| n.mailer.is_some())
        .ok_or_else(|| ApiError::from(crate::core::DomainError::NoNotices))?;
    let config = &handle.config;
    let day_before = slot_start
        .with_timezone(&config.timezone)
        .date_naive()
        .pred_opt();
    let remind_at = day_before
        .map(|d| config.instant(d.and_time(notices.settings.reminder_time)))
        .ok_or_else(|| ApiError::invalid("no day before this slot"))?;
    notices
        .contacts
        .put(
            "reservation",
            &crate::hooks::reservation_ref(&code),
            &config.id,
            &email,
            body.lang.as_deref(),
            Some(slot_start.timestamp_millis()),
        )
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(ReminderReply { remind_at }))
}
