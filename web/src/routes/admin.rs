//! Administration: accounts and roles, API tokens. Only administrators reach these (the
//! route table says so); every change lands in the account audit trail.

use super::account::Peer;
use super::api::ApiJson;
use super::auth::{Identity, Me};
use super::ui::{PageError, render};
use crate::error::{AppError, FieldError};
use crate::startup::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use lab::accounts::{Actor, ApiToken, IssuedToken, NewUser, Role, User};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    me: Option<Me>,
    users: Vec<User>,
    roles: &'static [Role],
    input: UserInput,
    errors: Vec<FieldError>,
    message: Option<String>,
    notice: Option<String>,
}

impl UsersPage {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct UserInput {
    username: String,
    display_name: String,
    role: String,
    password: String,
}

async fn users_page(
    state: &AppState,
    identity: &Identity,
    status: StatusCode,
    input: UserInput,
    error: Option<AppError>,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let users = state.accounts.list_users().await?;
    let (errors, message) = match error {
        Some(AppError::Invalid(errors)) => (errors, None),
        Some(other) => (Vec::new(), Some(other.public_message())),
        None => (Vec::new(), None),
    };
    Ok(render(
        status,
        &UsersPage {
            me: Some(identity.me()),
            users,
            roles: Role::ALL,
            input: UserInput {
                password: String::new(),
                ..input
            },
            errors,
            message,
            notice,
        },
    ))
}

/// `GET /admin/users`
pub async fn users(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Response, PageError> {
    let input = UserInput {
        role: Role::Technician.as_str().to_owned(),
        ..UserInput::default()
    };
    users_page(&state, &identity, StatusCode::OK, input, None, None).await
}

/// `POST /admin/users`
pub async fn create_user(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Form(input): Form<UserInput>,
) -> Result<Response, PageError> {
    let actor = Actor {
        principal: Some(&identity.principal),
        address: address.as_deref(),
    };
    let new = NewUser {
        username: input.username.clone(),
        display_name: input.display_name.clone(),
        role: input.role.clone(),
        password: input.password.clone(),
    };
    match state.accounts.create_user(&new, actor).await {
        Ok(user) => {
            let notice = format!(
                "{} can now log in as '{}'.",
                user.display_name, user.username
            );
            users_page(
                &state,
                &identity,
                StatusCode::CREATED,
                UserInput {
                    role: Role::Technician.as_str().to_owned(),
                    ..UserInput::default()
                },
                None,
                Some(notice),
            )
            .await
        }
        Err(error) => {
            let error = AppError::from(error);
            error.log();
            users_page(&state, &identity, error.status(), input, Some(error), None).await
        }
    }
}

fn parse_user_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound("There is no such account.".into()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RoleForm {
    role: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResetForm {
    new_password: String,
}

/// `POST /admin/users/{id}/{role|enable|disable|password}`: one change, then the list.
async fn change(
    state: &AppState,
    identity: &Identity,
    address: Option<String>,
    id: &str,
    what: Change,
) -> Result<Response, PageError> {
    let result = async {
        let id = parse_user_id(id)?;
            let actor = Actor {
            principal: Some(&identity.principal),
            address: address.as_deref(),
        };
        let notice = match what {
            Change::Role(raw) => {
                let role = Role::parse(&raw).map_err(|m| AppError::invalid("role", m))?;
                let user = state.accounts.set_role(id, role, actor).await?;
                format!("{} is now {}.", user.display_name, role.label())
            }
            Change::Enabled(enabled) => {
                let user = state.accounts.set_enabled(id, enabled, actor).await?;
                if enabled {
                    format!("{} can log in again.", user.display_name)
                } else {
                    format!("{} is disabled and logged out everywhere.", user.display_name)
                }
            }
            Change::Password(password) => {
                state.accounts.set_password(id, &password, actor).await?;
                "The password is reset and the account logged out everywhere; tell the person the new password.".to_owned()
            }
        };
        Ok::<_, AppError>(notice)
    }
    .await;
    match result {
        Ok(notice) => {
            users_page(
                state,
                identity,
                StatusCode::OK,
                UserInput::default(),
                None,
                Some(notice),
            )
            .await
        }
        Err(error) => {
            error.log();
            let status = error.status();
            let error = match error {
                AppError::Invalid(fields) => AppError::BadRequest(lab::error::describe(&fields)),
                other => other,
            };
            users_page(
                state,
                identity,
                status,
                UserInput::default(),
                Some(error),
                None,
            )
            .await
        }
    }
}

enum Change {
    Role(String),
    Enabled(bool),
    Password(String),
}

pub async fn set_role(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Path(id): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    change(&state, &identity, address, &id, Change::Role(form.role)).await
}

pub async fn enable(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    change(&state, &identity, address, &id, Change::Enabled(true)).await
}

pub async fn disable(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    change(&state, &identity, address, &id, Change::Enabled(false)).await
}

pub async fn reset_password(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Path(id): Path<String>,
    Form(form): Form<ResetForm>,
) -> Result<Response, PageError> {
    change(
        &state,
        &identity,
        address,
        &id,
        Change::Password(form.new_password),
    )
    .await
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    me: Option<Me>,
    entries: Vec<lab::accounts::AuditEntry>,
}

/// `GET /admin/audit`: logins, failures and every change to accounts and tokens.
pub async fn audit(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Response, PageError> {
    let entries = state.accounts.audit_trail(500).await?;
    Ok(render(
        StatusCode::OK,
        &AuditPage {
            me: Some(identity.me()),
            entries,
        },
    ))
}

// ----- API tokens ----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/tokens.html")]
struct TokensPage {
    me: Option<Me>,
    tokens: Vec<ApiToken>,
    roles: &'static [Role],
    issued: Option<IssuedToken>,
    name: String,
    message: Option<String>,
}

async fn tokens_page(
    state: &AppState,
    identity: &Identity,
    status: StatusCode,
    issued: Option<IssuedToken>,
    name: String,
    message: Option<String>,
) -> Result<Response, PageError> {
    let tokens = state.accounts.list_tokens().await?;
    Ok(render(
        status,
        &TokensPage {
            me: Some(identity.me()),
            tokens,
            roles: Role::ALL,
            issued,
            name,
            message,
        },
    ))
}

/// `GET /admin/tokens`
pub async fn tokens(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Response, PageError> {
    tokens_page(&state, &identity, StatusCode::OK, None, String::new(), None).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TokenForm {
    name: String,
    role: String,
}

/// `POST /admin/tokens`: the new token's secret is on this page and nowhere else.
pub async fn create_token(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Form(form): Form<TokenForm>,
) -> Result<Response, PageError> {
    match state
        .accounts
        .create_token(
            &form.name,
            &form.role,
            &identity.principal,
            address.as_deref(),
        )
        .await
    {
        Ok(issued) => {
            tokens_page(
                &state,
                &identity,
                StatusCode::CREATED,
                Some(issued),
                String::new(),
                None,
            )
            .await
        }
        Err(error) => {
            let error = AppError::from(error);
            error.log();
            let message = Some(error.public_message());
            tokens_page(&state, &identity, error.status(), None, form.name, message).await
        }
    }
}

/// `POST /admin/tokens/{id}/revoke`
pub async fn revoke_token(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id =
        Uuid::parse_str(&id).map_err(|_| AppError::NotFound("There is no such token.".into()))?;
    let actor = Actor {
        principal: Some(&identity.principal),
        address: address.as_deref(),
    };
    state.accounts.revoke_token(id, actor).await?;
    Ok(Redirect::to("/admin/tokens").into_response())
}

/// A token as the API shows it; `token` only in the answer that created it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenBody {
    #[serde(flatten)]
    pub token: ApiToken,
    /// The token to send as `Authorization: Bearer ...`: shown once, never stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /api/tokens`
#[utoipa::path(
    get,
    path = "/api/tokens",
    tag = "tokens",
    summary = "Every API token (never their secrets)",
    responses((status = 200, description = "The tokens", body = Vec<ApiToken>)),
)]
pub async fn list_tokens_api(
    State(state): State<AppState>,
) -> Result<Json<Vec<ApiToken>>, AppError> {
    Ok(Json(state.accounts.list_tokens().await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(example = json!({ "name": "sequencer-3", "role": "technician" }))]
pub struct NewTokenBody {
    /// What the token is for, e.g. the instrument's name.
    #[schema(required = true)]
    name: String,
    /// viewer, technician or lab_manager (administration needs a person, so no token is
    /// an admin).
    #[schema(required = true)]
    role: String,
}

/// `POST /api/tokens`
#[utoipa::path(
    post,
    path = "/api/tokens",
    tag = "tokens",
    summary = "Create an API token",
    request_body(content = NewTokenBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `secret` is shown only here", body = TokenBody),
        (status = 400, description = "The name or role is missing or invalid, or the body is not JSON", body = crate::routes::openapi::ErrorResponse),
        (status = 403, description = "Not an administrator, or the caller is itself an API token: tokens are created by a person logged in", body = crate::routes::openapi::ErrorResponse),
        (status = 409, description = "The name is taken", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn create_token_api(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    ApiJson(body): ApiJson<NewTokenBody>,
) -> Result<Response, AppError> {
    let issued = state
        .accounts
        .create_token(
            &body.name,
            &body.role,
            &identity.principal,
            address.as_deref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenBody {
            token: issued.token,
            secret: Some(issued.secret),
        }),
    )
        .into_response())
}

/// `POST /api/tokens/{id}/revoke`
#[utoipa::path(
    post,
    path = "/api/tokens/{id}/revoke",
    tag = "tokens",
    summary = "Revoke an API token; it stops working at once",
    params(("id" = Uuid, Path, description = "The token's id; anything else is a 404")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token", body = crate::routes::openapi::ErrorResponse),
    ),
)]
pub async fn revoke_token_api(
    State(state): State<AppState>,
    Peer(address): Peer,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let id =
        Uuid::parse_str(&id).map_err(|_| AppError::NotFound(format!("no token with id '{id}'")))?;
    let actor = Actor {
        principal: Some(&identity.principal),
        address: address.as_deref(),
    };
    state.accounts.revoke_token(id, actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
