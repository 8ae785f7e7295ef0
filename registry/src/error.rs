//! The one error type of the HTTP boundary: each variant names its error code, the code its
//! status (one table, [`ErrorCode::status`], that the client reads too), and the response is
//! always `{"error":{"code","message"}}`. Internal details are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse, Response};
use gridreg_protocol::api::{ErrorBody, ErrorCode, ErrorDetail};

use crate::blob::BlobError;
use crate::log::LogError;
use crate::sequencer::{Rejection, namespace_code, rejection_code};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    MalformedRecord(String),
    #[error("{0}")]
    DigestMismatch(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    ContentMissing(String),
    #[error("{0}")]
    SizeMismatch(String),
    #[error("{0}")]
    InvalidWasm(String),
    #[error("{0}")]
    NotWasm(String),
    #[error("{0}")]
    SurfaceMismatch(String),
    #[error("{0}")]
    PolicyViolation(String),
    /// A conflict with the log's current state; the code says which.
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    /// A record whose `prev` is not its chain's head; `head` is the head now, in `prev` form.
    #[error("{message}")]
    StalePrev { message: String, head: String },
    /// A signer (not a token) lacks the right; the code says which.
    #[error("{message}")]
    NotAuthorised { code: ErrorCode, message: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    UploadQuota(String),
    /// Logged in full; the client sees only "internal error".
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The status the code is served with.
    pub fn status(&self) -> StatusCode {
        self.code()
            .status()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::MalformedRecord(_) => ErrorCode::MalformedRecord,
            ApiError::DigestMismatch(_) => ErrorCode::DigestMismatch,
            ApiError::TooLarge(_) => ErrorCode::TooLarge,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::ContentMissing(_) => ErrorCode::ContentMissing,
            ApiError::SizeMismatch(_) => ErrorCode::SizeMismatch,
            ApiError::InvalidWasm(_) => ErrorCode::InvalidWasm,
            ApiError::NotWasm(_) => ErrorCode::NotWasm,
            ApiError::SurfaceMismatch(_) => ErrorCode::SurfaceMismatch,
            ApiError::PolicyViolation(_) => ErrorCode::PolicyViolation,
            ApiError::Conflict { code, .. } | ApiError::NotAuthorised { code, .. } => code.clone(),
            ApiError::StalePrev { .. } => ErrorCode::StalePrev,
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::UploadQuota(_) => ErrorCode::UploadQuota,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
                head: match &self {
                    ApiError::StalePrev { head, .. } => Some(head.clone()),
                    _ => None,
                },
            },
        };
        let status = self.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Shutting down or a failed write: another try (or another replica) may succeed.
            return (status, [(RETRY_AFTER, "1")], Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Merkle(m) => ApiError::BadRequest(m.to_string()),
            LogError::Store(s) => s.into(),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let code = rejection_code(&r);
        match r {
            Rejection::VersionExists { .. } | Rejection::AlreadyYanked { .. } => {
                ApiError::Conflict {
                    code,
                    message: r.to_string(),
                }
            }
            Rejection::NoSuchRelease { .. } => ApiError::NotFound(r.to_string()),
            Rejection::Namespace(e) => namespace_error(e),
            Rejection::StalePrev { head, .. } => ApiError::StalePrev {
                message: r.to_string(),
                head: head.to_string(),
            },
            Rejection::PolicyViolation(m) => ApiError::PolicyViolation(m),
            // Nothing of the batch was stored (the sequencer logged why), so the publisher may
            // send the same record again; the detail (a database error) stays in the log.
            Rejection::Internal(_) => ApiError::Unavailable(
                "the log could not be written just now, so nothing of this record was stored; \
                 send it again"
                    .into(),
            ),
        }
    }
}

/// Maps a namespace state-machine refusal: authorisation failures are 403, state conflicts 409.
pub fn namespace_error(e: gridreg_protocol::NamespaceError) -> ApiError {
    let code = namespace_code(&e);
    match code {
        ErrorCode::NotOwner | ErrorCode::NotAuthorised => ApiError::NotAuthorised {
            code,
            message: e.to_string(),
        },
        ErrorCode::Internal => ApiError::Internal(e.to_string()),
        _ => ApiError::Conflict {
            code,
            message: e.to_string(),
        },
    }
}
