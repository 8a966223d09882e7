//! How the HTTP surface reports failure: one place picks each status and body.
//!
//! Bad input is the caller's to fix: a 4xx with a message saying exactly what
//! was wrong, logged at debug only. An internal failure is a 5xx that says what
//! could not be done but not why in detail; it is logged once, here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer from Mandate's HTTP API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not acceptable JSON for this endpoint.
    #[error("{0}")]
    BadRequest(String),
    /// No or wrong credentials.
    #[error("a valid bearer key is required")]
    Unauthorized,
    /// The body is larger than `max_body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The body is not declared as JSON.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// A task token presented as the subject was refused.
    #[error("task token refused: {0}")]
    TokenRefused(String),
    /// The admin API needs the admin credential.
    #[error("the admin API needs the admin credential: Authorization: Bearer mandate_admin_...")]
    AdminRequired,
    /// Authenticated, or not, but never allowed to do this (an agent
    /// trying to approve).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// The thing is no longer in a state that allows this change; the answer
    /// carries the state it is in.
    #[error("{message}")]
    StateConflict {
        /// What could not be done, and why.
        message: String,
        /// The state it is in (`approved`, `expired`, ...).
        state: &'static str,
    },
    /// A dependency (store, audit log) cannot be used right now.
    #[error("{0}")]
    Unavailable(String),
    /// An unexpected internal failure; the detail is logged, not returned.
    #[error("internal error")]
    Internal(String),
    /// The decision could not be recorded, so it is not given (fail closed).
    #[error("the decision could not be recorded in the audit log, so it is not given")]
    AuditUnavailable(#[source] mandate_store::AuditError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::AdminRequired => StatusCode::UNAUTHORIZED,
            ApiError::TokenRefused(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::StateConflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized | ApiError::AdminRequired => "unauthorized",
            ApiError::TokenRefused(_) => "invalid_token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) | ApiError::StateConflict { .. } => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::AuditUnavailable(_) => "audit_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            let detail = match &self {
                ApiError::Internal(detail) => detail.as_str(),
                _ => "",
            };
            tracing::error!(error = %self, detail, cause = ?std::error::Error::source(&self), "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let mut body = json!({"error": self.code(), "message": self.to_string()});
        if let ApiError::StateConflict { state, .. } = &self {
            body["state"] = json!(state);
        }
        let body = Json(body);
        let mut response = (status, body).into_response();
        match self {
            ApiError::Unauthorized | ApiError::AdminRequired => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // The rest of the body was never read, so the connection cannot
            // carry another request: tell the client before it tries.
            ApiError::TooLarge { .. } => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}
