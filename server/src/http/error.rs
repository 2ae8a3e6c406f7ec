//! One error type for the API: it decides the status in one place and always answers
//! `{"error": {"code", "message"}}`. 5xx bodies are generic; the cause goes to the log.

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::core::{DomainError, ErrorClass};
use crate::site::SiteError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
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
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
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
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<SiteError> for ApiError {
    fn from(e: SiteError) -> Self {
        match e {
            SiteError::Domain(d) => d.into(),
            other => ApiError::unavailable(other),
        }
    }
}

/// A request body, read with the router's size cap; too large answers 413 in the API's shape.
pub(super) struct RawBody(pub(super) axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        axum::body::Bytes::from_request(req, &())
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "request body is larger than 64 KiB",
                    )
                } else {
                    ApiError::bad_request(e.body_text())
                }
            })
    }
}

impl RawBody {
    /// The body as JSON; syntax errors 400, shape errors (unknown fields included) 422.
    pub(super) fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        self.optional_json()?
            .ok_or_else(|| ApiError::bad_request("a JSON body is required"))
    }

    /// Like [`RawBody::json`], but an empty body is `None`.
    pub(super) fn optional_json<T: DeserializeOwned>(&self) -> Result<Option<T>, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&self.0)
            .map(Some)
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => ApiError::invalid(e.to_string()),
                _ => ApiError::bad_request(format!("malformed JSON: {e}")),
            })
    }
}

/// A required JSON body (see [`RawBody::json`]).
pub(super) struct ApiJson<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        RawBody::from_request(req, state).await?.json().map(ApiJson)
    }
}
