//! Static files compiled into the binary: the one stylesheet, so pages need no inline
//! styles and the Content-Security-Policy can forbid them.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const STYLESHEET: &str = include_str!("../../static/app.css");

/// Changes whenever the stylesheet does (FNV-1a of its text): pages link
/// `/static/app.css?v=<this>`, so the file can be cached for a year and a new build is
/// still fetched at once.
pub const STYLESHEET_VERSION: u64 = fnv1a(STYLESHEET.as_bytes());

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `GET /static/app.css`
pub async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        STYLESHEET,
    )
        .into_response()
}
