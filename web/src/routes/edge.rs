//! What every response gets, whatever route (or no route) answered: security headers,
//! a bound on the request body and on the time a request may take, and a readable
//! message when one of those bounds (or the framework itself) refuses a request.

use crate::config::Settings;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tower_http::set_header::SetResponseHeaderLayer;

/// No scripts at all, styles and images only from this origin (images also as `data:`
/// URIs), forms only posted here, never framed, no `<base>` rewriting.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The limits every request is held to (`TRACSEQ_BODY_LIMIT_BYTES`,
/// `TRACSEQ_REQUEST_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_bytes: usize,
    pub timeout: Duration,
}

impl Limits {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            body_bytes: settings.body_limit_bytes,
            timeout: Duration::from_millis(settings.request_timeout_ms),
        }
    }
}

/// The security headers, each set unless the handler chose its own.
pub fn security_headers() -> [SetResponseHeaderLayer<HeaderValue>; 4] {
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    [
        header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        header(header::REFERRER_POLICY, "same-origin"),
        header(header::X_FRAME_OPTIONS, "DENY"),
    ]
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// A handler that panicked: logged, and answered with a bare 500 that
/// [`explain_refusals`] words, instead of a dropped connection.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = %detail, "request handler panicked");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// Gives a message to the refusals that come without one: a body over the limit (413,
/// from the limit layer or an extractor, whose own text is terse), a request that ran out
/// of time (the timeout layer's bare 503), a panic (a bare 500), and any other bare error status the framework
/// answers with (405, ...). The API gets JSON `{"error": ...}`, the UI an error page.
pub async fn explain_refusals(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let api = path.starts_with("/api/") || path.starts_with("/health") || path == "/metrics";
    let response = next.run(request).await;
    let status = response.status();
    let bare = !response.headers().contains_key(header::CONTENT_TYPE);
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "The request is larger than the {} this server accepts; nothing was changed.",
            size(limits.body_bytes)
        ),
        StatusCode::SERVICE_UNAVAILABLE if bare => format!(
            "The server did not finish this request within {} s and stopped it. A change \
             may or may not have been saved: look before trying again (sending the same \
             form or Idempotency-Key again is safe, it is recorded once).",
            limits.timeout.as_secs_f64()
        ),
        StatusCode::INTERNAL_SERVER_ERROR if bare => {
            "Something went wrong on our side and was logged; the request may not have been \
             carried out, so look before trying again."
                .to_owned()
        }
        s if bare && (s.is_client_error() || s.is_server_error()) => {
            format!(
                "{}.",
                s.canonical_reason().unwrap_or("The request was refused")
            )
        }
        _ => return response,
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let replacement = if api {
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    } else {
        super::ui::error_page(status, &message)
    };
    let (new_parts, body) = replacement.into_parts();
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, Body::new(body))
}
