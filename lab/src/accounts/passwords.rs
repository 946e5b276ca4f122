//! Password hashing (argon2id) on the blocking pool, and the rules for a new password.

use crate::error::Error;
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Shortest and longest password accepted. The upper bound keeps one hash's cost bounded.
pub const MIN_PASSWORD: usize = 12;
pub const MAX_PASSWORD: usize = 256;

/// Why `password` cannot be a new password for `username`, if it cannot.
pub fn check_new_password(password: &str, username: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_PASSWORD {
        return Err(format!(
            "a password has at least {MIN_PASSWORD} characters (a short sentence is easy to remember)"
        ));
    }
    if length > MAX_PASSWORD {
        return Err(format!("a password has at most {MAX_PASSWORD} characters"));
    }
    if password.trim().eq_ignore_ascii_case(username.trim()) {
        return Err("the password must not be the username".into());
    }
    Ok(())
}

/// At most this many hashes at once (one per core): each takes 19 MiB and a core for
/// tens of milliseconds, so a flood of logins must queue, not exhaust memory.
fn hashing_slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| {
            Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            ))
        })
        .clone()
}

/// How long a password check waits for a free slot before the server says it is busy.
const BUSY_AFTER: Duration = Duration::from_secs(5);

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let busy = || Error::TooManyAttempts {
        message: "The server is busy checking passwords; try again in a moment.".into(),
        retry_after: Duration::from_secs(2),
    };
    let slot = match tokio::time::timeout(BUSY_AFTER, hashing_slots().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) | Err(_) => return Err(busy()),
    };
    // The slot is held by the hashing itself, not by the request: a client that hangs up
    // does not free it while the hash still runs.
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .map_err(|e| Error::Internal(format!("password hashing task failed: {e}")))
}

/// The PHC string of `password` (argon2id, a fresh random salt).
pub async fn hash_password(password: String) -> Result<String, Error> {
    blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| Error::Internal(format!("password could not be hashed: {e}")))
    })
    .await?
}

/// A hash of a password no one knows, verified against when the account does not exist,
/// so an unknown username takes as long to refuse as a wrong password.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"decoy password that matches nothing")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Whether `password` matches `stored` (`None`: no such account; always false, after the
/// same work as a real check).
pub async fn verify_password(password: String, stored: Option<String>) -> Result<bool, Error> {
    blocking(move || {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| decoy().to_owned());
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok();
        known && matches
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() -> Result<(), Error> {
        let hash = hash_password("correct horse battery".into()).await?;
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery".into(), Some(hash.clone())).await?);
        assert!(!verify_password("wrong horse battery".into(), Some(hash)).await?);
        assert!(!verify_password("decoy password that matches nothing".into(), None).await?);
        Ok(())
    }

    #[test]
    fn new_passwords_are_checked() {
        assert!(check_new_password("short", "ana").is_err());
        assert!(check_new_password("ana.muller.long", "ana.muller.long").is_err());
        assert!(check_new_password(&"x".repeat(257), "ana").is_err());
        assert!(check_new_password("a long enough phrase", "ana").is_ok());
    }
}
