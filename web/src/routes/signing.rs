//! Electronic signatures on the decisions a regulator audits (21 CFR Part 11 §11.50,
//! §11.200): the person re-enters their password and says what the signature means;
//! who, when and the meaning go into the event itself (see `cqrs::sample::Signature`).
//!
//! The password is checked here, at the edge, against the logged-in account (throttled
//! like a login), immediately before the command is issued; the domain refuses a QC
//! decision that comes without a signature, so no other path can record an unsigned one.
//! API tokens cannot sign: a signature is a person's.

use crate::error::AppError;
use crate::startup::AppState;
use cqrs::sample::{Signature, SignatureMeaning};
use lab::accounts::Principal;

/// A signature by `principal` with `meaning`, once `password` is shown to be theirs.
pub async fn sign(
    state: &AppState,
    principal: &Principal,
    password: &str,
    meaning: &str,
) -> Result<Signature, AppError> {
    let meaning = SignatureMeaning::parse(meaning.trim()).map_err(|_| {
        AppError::invalid(
            "meaning",
            "choose what your signature means: performed, reviewed or approved",
        )
    })?;
    if password.is_empty() {
        return Err(AppError::invalid(
            "password",
            "a QC decision needs your electronic signature: re-enter your password",
        ));
    }
    state
        .accounts
        .verify_password_of(principal, password)
        .await?;
    Ok(Signature::new(
        principal.id,
        principal.name.clone(),
        meaning,
        chrono::Utc::now(),
    ))
}

/// A signature by the account `username`, whose password is `password`: for an
/// integration (API token) that records a decision a person signs at the instrument.
/// The signer must themselves be allowed to take QC decisions.
pub async fn sign_as(
    state: &AppState,
    username: &str,
    password: &str,
    meaning: &str,
    address: Option<&str>,
) -> Result<Signature, AppError> {
    let meaning = SignatureMeaning::parse(meaning.trim()).map_err(|_| {
        AppError::invalid(
            "meaning",
            "choose what the signature means: performed, reviewed or approved",
        )
    })?;
    let user = match state
        .accounts
        .authenticate(username, password, address)
        .await
    {
        Ok(user) => user,
        Err(lab::Error::Unauthenticated(_)) => {
            return Err(AppError::invalid(
                "password",
                "the signer's username or password is wrong; nothing was changed",
            ));
        }
        Err(other) => return Err(other.into()),
    };
    if !user.role.allows(lab::accounts::Permission::QcDecision) {
        return Err(AppError::Forbidden(format!(
            "{} is a {} and cannot sign QC decisions",
            user.display_name,
            user.role.label()
        )));
    }
    Ok(Signature::new(
        user.id,
        user.display_name,
        meaning,
        chrono::Utc::now(),
    ))
}
