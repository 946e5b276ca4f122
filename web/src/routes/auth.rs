//! Who is asking, whether they may, and whether the request really came from our own
//! pages: the guard every route passes through.
//!
//! # How a request is authorised
//!
//! Every route is declared in one table ([`super::route_table`]) with its [`Access`]:
//! public, any logged-in principal, or one [`Permission`]. The router is built from that
//! table and wraps each route in [`guard`] with the route's own access, so a route
//! cannot exist without a rule and a handler cannot forget to check: by the time it runs,
//! its principal is in the request's extensions ([`Identity`]).
//!
//! A principal is found from `Authorization: Bearer <token>` (an API token) or from the
//! session cookie. A bearer header that names no live token is refused (401; a page
//! request is sent to the login page) even when a session cookie is present too, so a
//! revoked instrument cannot lean on a browser session. Administration needs a person:
//! tokens are at most lab managers, and the guard refuses them on administrative routes.
//!
//! # CSRF: why a synchronizer token *and* an origin check
//!
//! Cookies are `SameSite=Lax`, which stops other sites' forms from carrying the session
//! cookie on a POST in current browsers. That alone is not enough for a system whose
//! audit trail is its promise: SameSite counts every subdomain of the lab's domain as
//! "same site", and older embedded browsers on instruments ignore it. So every
//! state-changing request authenticated by cookie must carry the session's CSRF token
//! (the hidden `csrf_token` field every form has, or an `X-CSRF-Token` header), compared
//! in constant time, and must not come from another origin (`Sec-Fetch-Site`, else
//! `Origin` against `Host`, when the browser sends them). Requests with a bearer token
//! are exempt: a browser never adds that header on its own. The login form has no
//! session yet; it gets the origin check, which stops another site from logging a
//! victim into the attacker's account.

use crate::config::SecureCookies;
use crate::error::AppError;
use crate::startup::AppState;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use lab::accounts::{Permission, Principal, PrincipalKind, Role};
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "tracseq_session";
/// The name over HTTPS: the `__Host-` prefix makes browsers refuse it from a sibling
/// subdomain or with a `Domain`, so no other site of the lab's domain can plant one.
pub const SECURE_SESSION_COOKIE: &str = "__Host-tracseq_session";

/// The session cookie of a request: over HTTPS only the `__Host-` one (a plain one could
/// have been planted by a sibling subdomain), over plain HTTP the plain one.
pub fn session_of(setting: SecureCookies, headers: &HeaderMap) -> Option<String> {
    let name = if secure(setting, headers) {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    };
    super::context::cookie(headers, name)
}
pub const CSRF_FIELD: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, logged in or not (login page, health checks, the stylesheet).
    Public,
    /// Any logged-in account or live API token.
    LoggedIn,
    /// A principal whose role grants this permission.
    Needs(Permission),
}

/// The authenticated principal of a request, and its session's CSRF token when it came
/// with a session cookie (none for API tokens).
#[derive(Debug, Clone)]
pub struct Identity {
    pub principal: Principal,
    pub csrf_token: Option<String>,
    /// The lab's time zone, in which pages show times.
    pub time_zone: chrono_tz::Tz,
}

impl Identity {
    /// What every page's header shows and every form carries.
    pub fn me(&self) -> Me {
        Me {
            name: self.principal.name.clone(),
            role: self.principal.role,
            csrf_token: self.csrf_token.clone().unwrap_or_default(),
            time_zone: self.time_zone,
        }
    }
}

/// The logged-in principal as pages see it.
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    pub role: Role,
    pub csrf_token: String,
    pub time_zone: chrono_tz::Tz,
}

impl Me {
    pub fn can(&self, permission: &str) -> bool {
        let permission = match permission {
            "read" => Permission::Read,
            "sample_work" => Permission::SampleWork,
            "qc" => Permission::QcDecision,
            "operations" => Permission::Operations,
            "admin" => Permission::Administer,
            _ => return false,
        };
        self.role.allows(permission)
    }

    pub fn role_label(&self) -> &'static str {
        self.role.label()
    }
}

/// Whatever a page knows the lab's time zone from: its `me`, logged in or not.
pub trait LabZone {
    fn lab_zone(&self) -> chrono_tz::Tz;
}

impl LabZone for Me {
    fn lab_zone(&self) -> chrono_tz::Tz {
        self.time_zone
    }
}

impl LabZone for Option<Me> {
    fn lab_zone(&self) -> chrono_tz::Tz {
        self.as_ref().map_or(chrono_tz::Tz::UTC, |m| m.time_zone)
    }
}

impl<T: LabZone + ?Sized> LabZone for &T {
    fn lab_zone(&self) -> chrono_tz::Tz {
        (**self).lab_zone()
    }
}

/// `at` as the lab reads it: a wall-clock time in the lab's time zone, with the zone's
/// abbreviation (`2026-11-23 11:00 CET`); UTC when no one is logged in.
pub fn lab_time(me: &impl LabZone, at: &chrono::DateTime<chrono::Utc>) -> String {
    at.with_timezone(&me.lab_zone())
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// Like [`lab_time`], to the second.
pub fn lab_time_s(me: &impl LabZone, at: &chrono::DateTime<chrono::Utc>) -> String {
    at.with_timezone(&me.lab_zone())
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Identity>().cloned().ok_or_else(|| {
            AppError::Unauthenticated(
                "log in, or send an API token as 'Authorization: Bearer'".into(),
            )
        })
    }
}

/// The optional identity of a public route's request.
pub struct MaybeIdentity(pub Option<Identity>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeIdentity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<Identity>().cloned()))
    }
}

/// The route's rule, handed to [`guard`].
#[derive(Clone)]
pub struct Rule {
    pub state: AppState,
    pub access: Access,
}

pub fn is_api(path: &str) -> bool {
    // The docs page is a page: a browser not logged in is sent to the login page.
    (path.starts_with("/api/") && path != "/api/docs" && !path.starts_with("/api/docs/"))
        || path == "/metrics"
}

fn bearer(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let value = headers.get(header::AUTHORIZATION)?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(()),
    )
}

/// The principal of a request, from its bearer token or its session cookie.
async fn identify(state: &AppState, headers: &HeaderMap) -> Result<Option<Identity>, AppError> {
    if let Some(token) = bearer(headers) {
        let principal = match token {
            Ok(token) => state.accounts.token_principal(token).await?,
            Err(()) => None,
        };
        return match principal {
            Some(principal) => Ok(Some(Identity {
                principal,
                csrf_token: None,
                time_zone: state.samples.time_zone(),
            })),
            None => Err(AppError::Unauthenticated(
                "the API token is not valid: it is unknown or has been revoked (send 'Authorization: Bearer <token>')".into(),
            )),
        };
    }
    let Some(cookie) = session_of(state.secure_cookies, headers) else {
        return Ok(None);
    };
    Ok(state
        .accounts
        .session(&cookie)
        .await?
        .map(|session| Identity {
            principal: session.principal,
            csrf_token: Some(session.csrf_token),
            time_zone: state.samples.time_zone(),
        }))
}

/// Whether the browser says this request came from another site.
pub fn cross_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            !origin_host.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

fn tokens_match(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Checks the CSRF token of a cookie-authenticated, state-changing request, reading it
/// from the header or from the form body (which is put back for the handler).
async fn check_csrf(request: Request, expected: &str) -> Result<Request, Box<Response>> {
    let refuse = |message: &str| {
        let path = request.uri().path().to_owned();
        Err(Box::new(refusal(&path, StatusCode::FORBIDDEN, message)))
    };
    if cross_origin(request.headers()) {
        return refuse(
            "This request came from another site and was refused; nothing was changed. Use TracSeq's own pages.",
        );
    }
    if let Some(given) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return if tokens_match(given, expected) {
            Ok(request)
        } else {
            refuse("The X-CSRF-Token header does not match this session; nothing was changed.")
        };
    }
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let missing = "This form has expired or did not come from TracSeq: its security token is missing or wrong. Go back, reload the page and try again; nothing was changed.";
    if !form {
        return refuse(missing);
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return Err(Box::new(StatusCode::PAYLOAD_TOO_LARGE.into_response())),
    };
    let given = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    let request = Request::from_parts(parts, Body::from(bytes));
    match given {
        Some(given) if tokens_match(&given, expected) => Ok(request),
        _ => {
            let path = request.uri().path().to_owned();
            Err(Box::new(refusal(&path, StatusCode::FORBIDDEN, missing)))
        }
    }
}

/// A refusal as JSON for the API and as a page for people.
pub fn refusal(path: &str, status: StatusCode, message: &str) -> Response {
    if is_api(path) {
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    } else {
        super::ui::error_page(status, message)
    }
}

fn permission_words(permission: Permission) -> &'static str {
    match permission {
        Permission::Read => "seeing the samples",
        Permission::SampleWork => "bench work on samples (technicians and lab managers)",
        Permission::QcDecision => "QC decisions and disposal (lab managers)",
        Permission::Operations => "operations such as dead letters and metrics (lab managers)",
        Permission::Administer => "administering accounts and API tokens (administrators)",
    }
}

/// The guard every route is wrapped in, with that route's [`Access`].
pub async fn guard(State(rule): State<Rule>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let identity = match identify(&rule.state, request.headers()).await {
        Ok(identity) => identity,
        Err(error @ AppError::Unauthenticated(_)) if rule.access != Access::Public => {
            return unauthenticated(
                &path,
                "/samples",
                request.headers(),
                &error.public_message(),
            );
        }
        Err(AppError::Unauthenticated(_)) => None,
        Err(error) => {
            error.log();
            return refusal(&path, error.status(), &error.public_message());
        }
    };
    if rule.access == Access::Public {
        if let Some(identity) = identity {
            request.extensions_mut().insert(identity);
        }
        return next.run(request).await;
    }
    let Some(identity) = identity else {
        // After logging in, a page read comes back to itself; a form post (whose
        // address only answers POST) goes to the samples.
        let back = if request.method() == Method::GET {
            path.as_str()
        } else {
            "/samples"
        };
        return unauthenticated(
            &path,
            back,
            request.headers(),
            "Log in to continue (API clients: send 'Authorization: Bearer <token>').",
        );
    };
    if let Access::Needs(permission) = rule.access
        && !identity.principal.allows(permission)
    {
        tracing::info!(principal = %identity.principal.id, role = identity.principal.role.as_str(), %path, "refused: role lacks permission");
        return refusal(
            &path,
            StatusCode::FORBIDDEN,
            &format!(
                "Your role ({}) does not allow {}; nothing was changed. Ask an administrator if you need it.",
                identity.principal.role.label(),
                permission_words(permission)
            ),
        );
    }
    // Administration needs a person: a token (whatever its role) could otherwise reset a
    // colleague's password and then sign in their name.
    if rule.access == Access::Needs(Permission::Administer)
        && identity.principal.kind == PrincipalKind::ApiToken
    {
        return refusal(
            &path,
            StatusCode::FORBIDDEN,
            "Administering accounts and API tokens needs a person logged in; API tokens cannot do it.",
        );
    }
    let unsafe_method = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if unsafe_method
        && identity.principal.kind == PrincipalKind::User
        && let Some(expected) = identity.csrf_token.clone()
    {
        request = match check_csrf(request, &expected).await {
            Ok(request) => request,
            Err(response) => return *response,
        };
    }
    request.extensions_mut().insert(identity);
    let mut response = next.run(request).await;
    // What a logged-in person sees (a new token's secret, patient data) stays out of
    // shared and back-button caches.
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Not logged in: people reading a page are sent to the login page and back; everyone
/// else gets a 401 that says how to authenticate.
fn unauthenticated(path: &str, back: &str, headers: &HeaderMap, message: &str) -> Response {
    let wants_page = !is_api(path)
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.contains("text/html") || v.contains("*/*"));
    if wants_page && path != "/logout" {
        return Redirect::to(&format!(
            "/login?next={}",
            super::context::percent_encode(back)
        ))
        .into_response();
    }
    let mut response = refusal(path, StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tracseq\""),
    );
    response
}

/// The `Set-Cookie` value for a session, or for ending one (`max_age` 0).
pub fn session_cookie(value: &str, max_age_s: u64, secure: bool) -> String {
    format!(
        "{}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Lax{}",
        if secure {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        },
        if secure { "; Secure" } else { "" }
    )
}

/// Whether cookies set for this request get `Secure`.
pub fn secure(setting: SecureCookies, headers: &HeaderMap) -> bool {
    match setting {
        SecureCookies::Always => true,
        SecureCookies::Never => false,
        SecureCookies::Auto => headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().expect("header"));
        }
        map
    }

    #[test]
    fn other_origins_are_told_apart_from_our_own() {
        assert!(!cross_origin(&headers(&[])));
        assert!(!cross_origin(&headers(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        assert!(cross_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_origin(&headers(&[
            ("origin", "http://lab.example:8080"),
            ("host", "lab.example:8080")
        ])));
        assert!(cross_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "lab.example:8080")
        ])));
        assert!(cross_origin(&headers(&[("origin", "null")])));
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer tsq_abc")])),
            Some(Ok("tsq_abc"))
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "Basic xyz")])),
            Some(Err(()))
        );
        assert_eq!(bearer(&headers(&[])), None);
    }

    #[test]
    fn csrf_tokens_must_match_and_exist() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abd", "abc"));
        assert!(!tokens_match("", ""));
    }
}
