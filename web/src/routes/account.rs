//! Logging in and out, and a person's own account page.

use super::auth::{self, Identity, MaybeIdentity, Me};
use super::ui::{PageError, render};
use crate::error::AppError;
use crate::startup::AppState;
use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use lab::accounts::Actor;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    me: Option<Me>,
    username: String,
    next: String,
    message: Option<String>,
    notice: Option<String>,
}

/// Where to go after login: a path on this site only (never `//host` or a URL), so the
/// login page cannot be used to send people elsewhere.
fn safe_next(next: &str) -> String {
    let next = next.trim();
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(char::is_control);
    if local && next != "/login" {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginQuery {
    next: String,
    ended: Option<String>,
}

/// `GET /login`
pub async fn page(
    MaybeIdentity(identity): MaybeIdentity,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    if identity.is_some() {
        return Redirect::to(&safe_next(&query.next)).into_response();
    }
    let notice = match query.ended.as_deref() {
        Some("logout") => Some("You are logged out.".to_owned()),
        Some("password") => Some("Your password is changed; log in with the new one.".to_owned()),
        _ => None,
    };
    render(
        StatusCode::OK,
        &LoginPage {
            me: None,
            username: String::new(),
            next: safe_next(&query.next),
            message: None,
            notice,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    username: String,
    password: String,
    next: String,
}

/// The peer's address, for throttling and the audit trail. Behind a proxy this is the
/// proxy: forwarded headers are not trusted, since anyone can send them.
pub struct Peer(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string()),
        ))
    }
}

/// `POST /login`: a new session (a new id, whatever cookie came), then where the person
/// was going. A refusal keeps the username and says why.
pub async fn login(
    State(state): State<AppState>,
    Peer(address): Peer,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(&form.next);
    let refused = |status: StatusCode, message: String| {
        render(
            status,
            &LoginPage {
                me: None,
                username: form.username.clone(),
                next: next.clone(),
                message: Some(message),
                notice: None,
            },
        )
    };
    if auth::cross_origin(&headers) {
        return refused(
            StatusCode::FORBIDDEN,
            "This login came from another site and was refused.".into(),
        );
    }
    if form.username.trim().is_empty() || form.password.is_empty() {
        return refused(
            StatusCode::BAD_REQUEST,
            "Enter your username and your password.".into(),
        );
    }
    match state
        .accounts
        .login(&form.username, &form.password, address.as_deref())
        .await
    {
        Ok(session) => {
            // Logging in again (as anyone) ends the session this browser had.
            if let Some(old) = auth::session_of(state.secure_cookies, &headers)
                && let Err(error) = state.accounts.end_session(&old).await
            {
                tracing::warn!(%error, "the browser's previous session could not be ended");
            }
            let cookie = auth::session_cookie(
                &session.cookie,
                session.max_age.as_secs(),
                auth::secure(state.secure_cookies, &headers),
            );
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => {
            let error = AppError::from(error);
            error.log();
            let mut response = refused(error.status(), error.public_message());
            error.decorate(&mut response);
            response
        }
    }
}

/// `POST /logout`: the session is deleted on the server and the cookie cleared.
pub async fn logout(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if let Some(cookie) = auth::session_of(state.secure_cookies, &headers) {
        let actor = Actor {
            principal: Some(&identity.principal),
            address: address.as_deref(),
        };
        state.accounts.logout(&cookie, actor).await?;
    }
    let mut response = Redirect::to("/login?ended=logout").into_response();
    let cleared = auth::session_cookie("", 0, auth::secure(state.secure_cookies, &headers));
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    me: Option<Me>,
    message: Option<String>,
}

/// `GET /account`
pub async fn account(identity: Identity) -> Response {
    render(
        StatusCode::OK,
        &AccountPage {
            me: Some(identity.me()),
            message: None,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm_password: String,
}

/// `POST /account/password`: the current password, then the new one twice. All sessions
/// end, this one too.
pub async fn change_password(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Form(form): Form<PasswordForm>,
) -> Response {
    let refused = |error: AppError| {
        error.log();
        let mut response = render(
            error.status(),
            &AccountPage {
                me: Some(identity.me()),
                message: Some(error.public_message()),
            },
        );
        error.decorate(&mut response);
        response
    };
    if form.new_password != form.confirm_password {
        return refused(AppError::invalid(
            "confirm_password",
            "the two new passwords differ; type the same one twice",
        ));
    }
    if let Err(error) = state
        .accounts
        .verify_password_of(&identity.principal, &form.current_password)
        .await
    {
        return refused(error.into());
    }
    let actor = Actor {
        principal: Some(&identity.principal),
        address: address.as_deref(),
    };
    match state
        .accounts
        .set_password(identity.principal.id, &form.new_password, actor)
        .await
    {
        Ok(()) => Redirect::to("/login?ended=password").into_response(),
        Err(error) => refused(error.into()),
    }
}

/// `GET /api/me`: who the API thinks you are.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "account",
    summary = "Who the caller is: the account or API token, and its role",
    responses((status = 200, description = "The caller", body = lab::accounts::Principal)),
)]
pub async fn me(identity: Identity) -> axum::Json<lab::accounts::Principal> {
    axum::Json(identity.principal)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next("/samples/1?v=2"), "/samples/1?v=2");
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("https://evil.example"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next(""), "/");
        assert_eq!(safe_next("/login"), "/");
    }
}
