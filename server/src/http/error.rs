//! One error type for the API: it decides the status in one place and always answers
//! `{"error": {"code", "message"}}`. 5xx bodies are generic; the cause goes to the log.

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::core::{DomainError, ErrorClass};
use crate::site::SiteError;

/// The body of every error: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": {"code": "unknown_site", "message": "unknown site \"x\""}}))]
pub(super) struct ErrorBody {
    pub(super) error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ErrorDetail {
    /// A stable, machine-readable code (`unauthorized`, `unknown_site`, `counter_busy`…).
    pub(super) code: String,
    /// For people, in Japanese and/or English; may change.
    pub(super) message: String,
    /// `queue_closed`: when the queue next takes tickets (RFC 3339, the site's offset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) next_open: Option<String>,
    /// `too_early`: when the booking can be checked in (RFC 3339, the site's offset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) check_in_from: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
    /// When a closed queue opens again (`queue_closed`).
    pub next_open: Option<String>,
    /// When a booking can be checked in (`too_early`).
    pub check_in_from: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            next_open: None,
            check_in_from: None,
        }
    }
    /// Too many requests from one address; `wait` becomes `Retry-After` in whole seconds.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "混み合っています。しばらくしてから再度お試しください。 / Too many requests; retry after the time in Retry-After.",
            )
        }
    }
    /// No ticket of today has this phone token (the phone page and its channel).
    pub fn unknown_phone_ticket() -> Self {
        Self::not_found(
            "ticket_not_found",
            "この受付票は見つかりません / no such ticket today",
        )
    }
    /// Too many WebSockets from one address.
    pub fn too_many_sockets() -> Self {
        Self {
            retry_after: Some(30),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sockets",
                "too many live connections from this address",
            )
        }
    }
    /// The handler did not answer within the response timeout.
    pub fn timeout() -> Self {
        tracing::warn!("a request took longer than the response timeout");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "時間内に応答できませんでした。再度お試しください。 / The server could not answer in time; please retry.",
        )
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
    }
    /// A query string that is well-formed but not acceptable (422 `invalid_query`).
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed: service unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "一時的に利用できません。しばらくしてから再度お試しください。 / Temporarily unavailable, please retry shortly.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                next_open: self.next_open,
                check_in_from: self.check_in_from,
            },
        });
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let status = match e.class() {
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            // Handlers answer 204 themselves; reaching here is still not an error of the caller.
            ErrorClass::Empty => StatusCode::NO_CONTENT,
        };
        let next_open = match &e {
            DomainError::QueueClosed {
                next_open: Some(at),
                ..
            } => Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            _ => None,
        };
        let check_in_from = match &e {
            DomainError::TooEarly { from } => {
                Some(from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }
            _ => None,
        };
        Self {
            next_open,
            check_in_from,
            ..Self::new(status, e.code(), e.to_string())
        }
    }
}

impl From<SiteError> for ApiError {
    fn from(e: SiteError) -> Self {
        match e {
            SiteError::Domain(d) => d.into(),
            // The site is being rebuilt after a failure, or the request was under way when its
            // actor failed: a retry in a moment will be served.
            SiteError::Restarting | SiteError::Stopped => Self {
                retry_after: Some(1),
                ..ApiError::unavailable(e)
            },
            // The event log (Redis, or the disk) does not answer: nothing was recorded unless
            // the log took it, in which case a retry with the same `Idempotency-Key` gets it.
            SiteError::Unavailable(_) => Self {
                retry_after: Some(2),
                ..ApiError::unavailable(e)
            },
        }
    }
}

/// A request body, not yet read: handlers check the token and role first, then read it with
/// [`RawBody::json`], so a caller without the right token never gets its body parsed.
pub(super) struct RawBody {
    body: axum::body::Body,
    timeout: Option<std::time::Duration>,
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = std::convert::Infallible;
    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let timeout = req
            .extensions()
            .get::<crate::net::BodyTimeout>()
            .map(|t| t.0);
        Ok(RawBody {
            body: req.into_body(),
            timeout,
        })
    }
}

/// True when `e` or one of its sources is a `T`.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<T>() {
            return true;
        }
        cause = c.source();
    }
    false
}

impl RawBody {
    /// The body's bytes, at most [`super::BODY_LIMIT`] of them (413 beyond), within the body
    /// timeout (408 after).
    pub(super) async fn bytes(self) -> Result<axum::body::Bytes, ApiError> {
        use http_body_util::BodyExt;
        let too_slow = || {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            )
        };
        let read = http_body_util::Limited::new(self.body, super::BODY_LIMIT).collect();
        let collected = match self.timeout {
            Some(limit) => tokio::time::timeout(limit, read)
                .await
                .map_err(|_| too_slow())?,
            None => read.await,
        };
        match collected {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if caused_by::<http_body_util::LengthLimitError>(e.as_ref()) => {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "request body is larger than 64 KiB",
                ))
            }
            Err(e) if caused_by::<tower_http::timeout::TimeoutError>(e.as_ref()) => Err(too_slow()),
            Err(_) => Err(ApiError::bad_request("the request body could not be read")),
        }
    }

    /// The body as JSON; syntax errors 400, shape errors (unknown fields included) 422.
    pub(super) async fn json<T: DeserializeOwned>(self) -> Result<T, ApiError> {
        self.optional_json()
            .await?
            .ok_or_else(|| ApiError::bad_request("a JSON body is required"))
    }

    /// Like [`RawBody::json`], but an empty body is `None`.
    pub(super) async fn optional_json<T: DeserializeOwned>(self) -> Result<Option<T>, ApiError> {
        let bytes = self.bytes().await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => ApiError::invalid(e.to_string()),
                _ => ApiError::bad_request(format!("malformed JSON: {e}")),
            })
    }
}
