//! Who asked for a change and why: carried by every command and stored with every event.
//!
//! Every event's metadata names the command that produced it (`command_id`) and its
//! cause (`causation_id`): the event or command that triggered that command when there
//! was one (a saga reacting to an event), else the command itself. With the
//! `correlation_id`, inherited along the chain, this lets anyone walk from an event back
//! through every event and command that led to it, and find everything one request set
//! off.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The context a command runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandContext {
    /// Unique per command; a repeat with the same id returns the first outcome.
    pub command_id: Uuid,
    /// Who issued the command, as people read it (a display name, or a service's name).
    pub user: String,
    /// The authenticated account (or API token) that issued the command: the stable
    /// identity behind `user`, which a display name is not. `None` for commands issued
    /// before accounts existed, and by callers that have no account (a saga names itself
    /// in `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Groups everything that happened because of one request or workflow.
    pub correlation_id: Uuid,
    /// The event (or command) that triggered this command, e.g. the event a saga
    /// reacted to; `None` when it was asked for directly (a user's request).
    #[serde(default)]
    pub caused_by: Option<Uuid>,
    /// W3C trace context (`traceparent`), when the command arrived inside a trace.
    pub traceparent: Option<String>,
    /// W3C `tracestate`, passed on unchanged.
    pub tracestate: Option<String>,
    /// What the command asks for (e.g. `sample.receive`). Recorded with the command id:
    /// a repeat of the id naming another command is refused.
    #[serde(default)]
    pub command_name: Option<String>,
    /// A digest of the request's input, computed by the edge that saw the raw input
    /// (e.g. a hash of the HTTP body). Recorded with the command id: a repeat of the id
    /// with another fingerprint is refused rather than answered with the first outcome.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Whether the caller chose the command id (an idempotency key, a form's id, an id a
    /// saga derived from an event) and so may repeat it. Only then is a rejection
    /// recorded, to be answered the same way on a repeat: a fresh random id can never be
    /// repeated, and recording it would let anyone grow the table with refused requests.
    #[serde(default)]
    pub repeatable: bool,
}

impl CommandContext {
    /// A context for a fresh command with no cause but the user's request; it starts a
    /// new trace (replace `traceparent` when the command arrived inside one).
    pub fn new(user: impl Into<String>) -> Self {
        let command_id = Uuid::now_v7();
        Self {
            command_id,
            user: user.into(),
            user_id: None,
            correlation_id: command_id,
            caused_by: None,
            traceparent: Some(new_traceparent()),
            tracestate: None,
            command_name: None,
            fingerprint: None,
            repeatable: false,
        }
    }

    /// A context for a fresh command by an authenticated account (or API token):
    /// `user_id` is its stable id, `display_name` what people read in histories.
    pub fn for_user(user_id: Uuid, display_name: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id),
            ..Self::new(display_name)
        }
    }

    /// Who the command is by, for comparing a repeat of a command id with its first
    /// sending: the account's id when there is one (a display name can change or be
    /// shared), else the name.
    pub fn principal(&self) -> String {
        match self.user_id {
            Some(id) => id.to_string(),
            None => self.user.clone(),
        }
    }

    /// Names what the command asks for; see [`Self::command_name`].
    pub fn named(mut self, command_name: impl Into<String>) -> Self {
        self.command_name = Some(command_name.into());
        self
    }

    /// The fingerprint of the request's input; see [`Self::fingerprint`].
    pub fn with_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// A context for a command issued because of an earlier event (`event_id`, with its
    /// `metadata`), as a saga or process manager issues them: it joins the event's
    /// correlation and trace, and its events name that event as their cause.
    ///
    /// The command id is new; a reactor that may see the event twice should derive it
    /// from the event (`with_command_id`) so the repeat is recognised.
    pub fn caused_by(event_id: Uuid, metadata: &EventMetadata, user: impl Into<String>) -> Self {
        Self {
            command_id: Uuid::now_v7(),
            user: user.into(),
            user_id: None,
            correlation_id: metadata.correlation_id,
            caused_by: Some(event_id),
            traceparent: metadata.traceparent.clone(),
            tracestate: metadata.tracestate.clone(),
            command_name: None,
            fingerprint: None,
            repeatable: false,
        }
    }

    /// The caller's own command id, which it may send again (see [`Self::repeatable`]).
    pub fn with_command_id(mut self, command_id: Uuid) -> Self {
        if self.correlation_id == self.command_id {
            self.correlation_id = command_id;
        }
        self.command_id = command_id;
        self.repeatable = true;
        self
    }

    /// Metadata for the events this command produces: their cause is what triggered the
    /// command, or the command itself when nothing did.
    pub fn event_metadata(&self) -> EventMetadata {
        EventMetadata {
            user: self.user.clone(),
            user_id: self.user_id,
            command_id: self.command_id,
            correlation_id: self.correlation_id,
            causation_id: self.caused_by.unwrap_or(self.command_id),
            traceparent: self.traceparent.clone(),
            tracestate: self.tracestate.clone(),
        }
    }
}

/// A W3C `traceparent` for a new sampled root span: `00-<trace id>-<span id>-01`.
pub fn new_traceparent() -> String {
    let trace = Uuid::new_v4().simple().to_string();
    let span = Uuid::new_v4().simple().to_string();
    format!("00-{trace}-{}-01", &span[..16])
}

/// Stored beside each event's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Who issued the command, as people read it.
    pub user: String,
    /// The authenticated account (or API token) that issued the command; `None` for
    /// events recorded before accounts existed (their stored metadata has no such field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// The command that produced the event.
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    /// What caused the event: the event that triggered its command, or the command.
    pub causation_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_carried_into_the_events_metadata_and_names_the_principal() {
        let account = Uuid::from_u128(42);
        let context = CommandContext::for_user(account, "Ana Müller");
        assert_eq!(context.user, "Ana Müller");
        assert_eq!(context.principal(), account.to_string());
        let metadata = context.event_metadata();
        assert_eq!(metadata.user_id, Some(account));
        assert_eq!(metadata.user, "Ana Müller");
        assert_eq!(CommandContext::new("saga").principal(), "saga");
    }

    #[test]
    fn metadata_stored_before_accounts_existed_still_loads() {
        let id = Uuid::from_u128(1);
        let old = serde_json::json!({
            "user": "ana", "command_id": id, "correlation_id": id, "causation_id": id
        });
        let metadata: EventMetadata = serde_json::from_value(old).expect("loads");
        assert_eq!(metadata.user_id, None);
        let written = serde_json::to_value(&metadata).expect("writes");
        assert!(written.get("user_id").is_none(), "{written}");
    }
}
