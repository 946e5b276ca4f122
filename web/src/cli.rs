//! `tracseq user …` and `tracseq token …`: account administration from the command line,
//! for the first administrator and for scripts.
//!
//! ```text
//! tracseq user create --username NAME --name "Full Name" --role ROLE [--password-stdin] [--if-no-users]
//! tracseq user reset-password --username NAME [--password-stdin]
//! tracseq user list
//! tracseq token create --name NAME --role ROLE --by USERNAME
//! ```
//!
//! Without `--password-stdin` a random password is generated and printed once.
//! `--if-no-users` creates the account only when there is no account at all (what
//! `./deploy-phase7.sh local` does on a first run) and otherwise succeeds silently.

use crate::Settings;
use lab::accounts::{Actor, NewUser, Principal, PrincipalKind};
use std::io::BufRead;
use std::process::ExitCode;

const USAGE: &str = "usage:
  tracseq user create --username NAME --name \"Full Name\" --role viewer|technician|lab_manager|admin [--password-stdin] [--if-no-users]
  tracseq user reset-password --username NAME [--password-stdin]
  tracseq user list
  tracseq token create --name NAME --role ROLE --by USERNAME";

struct Args<'a>(&'a [String]);

impl Args<'_> {
    fn value(&self, flag: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    fn has(&self, flag: &str) -> bool {
        self.0.iter().any(|a| a == flag)
    }
}

fn generated_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

fn password(args: &Args<'_>) -> Result<(String, bool), String> {
    if args.has("--password-stdin") {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false))
    } else {
        Ok((generated_password()?, true))
    }
}

/// Runs `tracseq user|token …`; `args` starts with `user` or `token`.
pub async fn run(settings: &Settings, args: &[String]) -> ExitCode {
    match run_inner(settings, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tracseq: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_inner(settings: &Settings, all: &[String]) -> Result<(), String> {
    let args = Args(all);
    let (noun, verb) = (
        all.first().map(String::as_str),
        all.get(1).map(String::as_str),
    );
    let accounts = crate::startup::accounts(settings)
        .await
        .map_err(|e| e.to_string())?;
    let need = |flag: &str| {
        args.value(flag)
            .map(str::to_owned)
            .ok_or_else(|| format!("{flag} is required\n{USAGE}"))
    };
    match (noun, verb) {
        (Some("user"), Some("create")) => {
            if args.has("--if-no-users")
                && accounts.count_users().await.map_err(|e| e.to_string())? > 0
            {
                return Ok(());
            }
            let username = need("--username")?;
            let (password, generated) = password(&args)?;
            let input = NewUser {
                display_name: args.value("--name").unwrap_or(&username).to_owned(),
                username,
                role: need("--role")?,
                password: password.clone(),
            };
            let user = accounts
                .create_user(&input, Actor::CLI)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "created {} '{}' ({})",
                user.role.label(),
                user.username,
                user.display_name
            );
            if generated {
                println!("password: {password}");
                println!("(shown once; change it after logging in, at /account)");
            }
            Ok(())
        }
        (Some("user"), Some("reset-password")) => {
            let username = need("--username")?;
            let user = accounts
                .user_by_name(&username)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("there is no account '{username}'"))?;
            let (password, generated) = password(&args)?;
            accounts
                .set_password(user.id, &password, Actor::CLI)
                .await
                .map_err(|e| e.to_string())?;
            println!("password of '{}' reset; its sessions ended", user.username);
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        (Some("user"), Some("list")) => {
            for user in accounts.list_users().await.map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}\t{}\t{}",
                    user.username,
                    user.role.as_str(),
                    if user.enabled { "enabled" } else { "disabled" },
                    user.display_name
                );
            }
            Ok(())
        }
        (Some("token"), Some("create")) => {
            let by = need("--by")?;
            let user = accounts
                .user_by_name(&by)
                .await
                .map_err(|e| e.to_string())?
                .filter(|u| u.enabled && u.role == lab::accounts::Role::Admin)
                .ok_or_else(|| {
                    format!("--by must name an enabled administrator; '{by}' is not one")
                })?;
            let creator = Principal {
                id: user.id,
                name: user.display_name,
                role: user.role,
                kind: PrincipalKind::User,
            };
            let issued = accounts
                .create_token(
                    &need("--name")?,
                    &need("--role")?,
                    &creator,
                    Some("command line"),
                )
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", issued.secret);
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    }
}
