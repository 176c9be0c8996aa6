//! The one error type of the service and its mapping to RFC 9457 problem+json.
//! Every failure a client can see goes through `AppError`; internal detail is
//! logged here and never sent.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::store::StoreError;

/// One invalid field of a request body or query.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `input.offerDetails` or `results.analysis[0].score`.
    pub field: String,
    /// Machine-readable rule: `required`, `type`, `unknown_field`, `length`, `range`, `format`, …
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidCursor(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("this account has been deleted")]
    AccountDeleted,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    IdempotencyMismatch(String),
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    #[error("{message}")]
    QuotaExceeded { message: String, retry_after_secs: u64 },
    #[error("service temporarily unavailable")]
    Unavailable { retry_after_secs: u64, cause: String },
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn validation(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, code, message)])
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// The stable snake_case code sent as `code` and in the `type` URI.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::InvalidCursor(_) => "invalid_cursor",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::AccountDeleted => "account_deleted",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PreconditionFailed(_) => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::IdempotencyMismatch(_) => "idempotency_mismatch",
            Self::Validation(_) => "validation_failed",
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "Bad request",
            Self::InvalidCursor(_) => "Invalid cursor",
            Self::Unauthenticated(_) => "Unauthenticated",
            Self::AccountDeleted => "Account deleted",
            Self::Forbidden(_) => "Forbidden",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict(_) => "Conflict",
            Self::PreconditionFailed(_) => "Precondition failed",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType(_) => "Unsupported media type",
            Self::IdempotencyMismatch(_) => "Idempotency key reused with a different request",
            Self::Validation(_) => "Validation failed",
            Self::RateLimited { .. } => "Too many requests",
            Self::QuotaExceeded { .. } => "Quota exceeded",
            Self::Unavailable { .. } => "Service unavailable",
            Self::Internal(_) => "Internal server error",
        }
    }

    /// What the client is told. Internal causes stay in the logs.
    fn detail(&self) -> String {
        match self {
            Self::Internal(_) => {
                "An unexpected error occurred. Quote the requestId when reporting it.".into()
            }
            Self::Unavailable { .. } => {
                "The data store is not answering; retry after the indicated delay.".into()
            }
            Self::Validation(errors) => format!("{} field(s) are invalid", errors.len()),
            other => other.to_string(),
        }
    }

    /// Builds the problem+json body; `request_id` is the current request's id.
    pub fn problem(&self, request_id: &str) -> Problem {
        Problem {
            kind: format!("https://funnelflow.app/errors/{}", self.code()),
            title: self.title().to_owned(),
            status: self.status_code().as_u16(),
            detail: self.detail(),
            code: self.code().to_owned(),
            request_id: request_id.to_owned(),
            errors: match self {
                Self::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
        }
    }
}

/// RFC 9457 problem details, as every error response carries them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::InvalidCursor(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) | Self::AccountDeleted => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::IdempotencyMismatch(_) | Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } | Self::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(cause) => tracing::error!(error.cause = %cause, "internal error"),
            Self::Unavailable { cause, .. } => tracing::warn!(error.cause = %cause, "store unavailable"),
            _ => {}
        }
        let request_id = crate::http::request_id::current();
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        match self {
            Self::Unauthenticated(_) | Self::AccountDeleted => {
                res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::RateLimited { retry_after_secs }
            | Self::QuotaExceeded { retry_after_secs, .. }
            | Self::Unavailable { retry_after_secs, .. } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        res.json(self.problem(&request_id))
    }
}

/// The single mapping of store failures to client-visible errors. A store's
/// message names documents and values: it goes to the log, never to the client.
impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::NotFound,
            StoreError::AlreadyExists(what) => {
                tracing::info!(error.cause = %what, "store: already exists");
                Self::Conflict("the resource already exists".into())
            }
            // Firestore also answers FAILED_PRECONDITION for a missing index or an
            // expired transaction: only callers that sent a version precondition
            // may turn it into 412, and they do so themselves.
            StoreError::FailedPrecondition(cause) => Self::Internal(format!("failed precondition: {cause}")),
            StoreError::Aborted(cause) | StoreError::Unavailable(cause) => Self::Unavailable {
                retry_after_secs: 1,
                cause,
            },
            StoreError::InvalidArgument(cause)
            | StoreError::Serialization(cause)
            | StoreError::Internal(cause) => Self::Internal(cause),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_details_never_reach_the_client() {
        let name = "projects/p/databases/(default)/documents/users/u1/analyses/a1";
        for e in [
            StoreError::AlreadyExists(name.into()),
            StoreError::InvalidArgument(format!("{name}: cannot convert firestore.v1.Value")),
            StoreError::FailedPrecondition(name.into()),
            StoreError::Internal(name.into()),
        ] {
            let problem = AppError::from(e).problem("r");
            assert!(!problem.detail.contains("users/u1"), "{}", problem.detail);
            assert!(!problem.detail.contains("firestore"), "{}", problem.detail);
        }
        let conflict = AppError::from(StoreError::AlreadyExists(name.into()));
        assert_eq!(conflict.status_code(), StatusCode::CONFLICT);
    }
}
