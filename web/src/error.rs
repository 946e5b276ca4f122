//! The one error type at the HTTP edge and how users see it.
//!
//! Input the user can fix is a 400 naming the field; a command the lifecycle forbids or
//! that lost a race is a 409; a missing thing is a 404. Infrastructure failures are
//! logged with their cause and shown as an opaque 503/500.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use event_sourcing::StoreError;
use serde::Serialize;

pub use lab::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Malformed or invalid input.
    #[error("{}", lab::error::describe(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The body is over the configured limit (the limit layer words the message).
    #[error("{0}")]
    TooLarge(String),
    /// The command is not allowed in the aggregate's current state.
    #[error("{0}")]
    Rejected(String),
    /// Someone else changed it first, or a unique value is taken.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but cannot be processed as sent (an Idempotency-Key reused for
    /// another request).
    #[error("{0}")]
    Unprocessable(String),
    /// Not logged in, or the credentials are wrong.
    #[error("{0}")]
    Unauthenticated(String),
    /// The principal's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed attempts; `Retry-After` says when to try again.
    #[error("{message}")]
    TooManyAttempts {
        message: String,
        retry_after: std::time::Duration,
    },
    #[error("service unavailable: {0}")]
    Unavailable(#[source] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError {
            field,
            message: message.into(),
        }])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Rejected(_) | Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the user is told: the message itself, except for server faults.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unavailable(_) => {
                "The sample database is not reachable right now; nothing was changed. Try again shortly.".into()
            }
            Self::Internal(_) => "Something went wrong on our side; nothing was changed.".into(),
            other => other.to_string(),
        }
    }

    /// What a page says: like [`Self::public_message`], but in lab words: invalid input
    /// without internal field names, and a stale page said as such.
    pub fn page_message(&self) -> String {
        let sentence = |text: &str| {
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        };
        match self {
            Self::Invalid(errors) => errors
                .iter()
                .map(|e| sentence(&e.message))
                .collect::<Vec<_>>()
                .join(". "),
            Self::Conflict(m) if m.contains("changed by someone else") => {
                "Someone else changed this after you opened the page. Below is how it stands now and what you can still do.".into()
            }
            other => sentence(&other.public_message()),
        }
    }

    /// Headers the status needs: `Retry-After` on 429, `WWW-Authenticate` on 401.
    pub fn decorate(&self, response: &mut Response) {
        match self {
            Self::TooManyAttempts { retry_after, .. } => {
                if let Ok(value) =
                    axum::http::HeaderValue::from_str(&retry_after.as_secs().max(1).to_string())
                {
                    response
                        .headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, value);
                }
            }
            Self::Unauthenticated(_) => {
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer realm=\"tracseq\""),
                );
            }
            _ => {}
        }
    }

    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Self::Invalid(errors) => errors,
            _ => &[],
        }
    }

    /// Logs server-side faults with their chain; user errors are only traced.
    pub fn log(&self) {
        match self {
            Self::Unavailable(_) | Self::Internal(_) => {
                tracing::error!(error = %self, source = ?std::error::Error::source(self), "request failed");
            }
            other => tracing::debug!(error = %other, "request refused"),
        }
    }
}

impl From<lab::Error> for AppError {
    fn from(error: lab::Error) -> Self {
        match error {
            lab::Error::Invalid(fields) => Self::Invalid(fields),
            lab::Error::NotFound(m) => Self::NotFound(m),
            lab::Error::Rejected(m) => Self::Rejected(m),
            lab::Error::Conflict(m) => Self::Conflict(m),
            lab::Error::KeyReused(m) => Self::Unprocessable(m),
            lab::Error::Unauthenticated(m) => Self::Unauthenticated(m),
            lab::Error::Forbidden(m) => Self::Forbidden(m),
            lab::Error::TooManyAttempts {
                message,
                retry_after,
            } => Self::TooManyAttempts {
                message,
                retry_after,
            },
            lab::Error::Unavailable(e) => Self::Unavailable(e),
            lab::Error::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        lab::Error::from(error).into()
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        lab::Error::from(error).into()
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    fields: &'a [FieldError],
}

/// JSON rendering, for the API.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log();
        let body = ErrorBody {
            error: self.public_message(),
            fields: self.field_errors(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        self.decorate(&mut response);
        response
    }
}
