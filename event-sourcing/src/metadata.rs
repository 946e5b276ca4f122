//! Who asked for a change and why: carried by every command and stored with every event.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The context a command runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandContext {
    /// Unique per command; a repeat with the same id returns the first outcome.
    pub command_id: Uuid,
    /// Who issued the command.
    pub user: String,
    /// Groups everything that happened because of one request or workflow.
    pub correlation_id: Uuid,
    /// The command or event that caused this command.
    pub causation_id: Uuid,
    /// W3C trace context (`traceparent`), when the command arrived inside a trace.
    pub traceparent: Option<String>,
    /// W3C `tracestate`, passed on unchanged.
    pub tracestate: Option<String>,
}

impl CommandContext {
    /// A context for a fresh command with no cause but the user's request; it starts a
    /// new trace (replace `traceparent` when the command arrived inside one).
    pub fn new(user: impl Into<String>) -> Self {
        let command_id = Uuid::now_v7();
        Self {
            command_id,
            user: user.into(),
            correlation_id: command_id,
            causation_id: command_id,
            traceparent: Some(new_traceparent()),
            tracestate: None,
        }
    }

    pub fn with_command_id(mut self, command_id: Uuid) -> Self {
        if self.correlation_id == self.command_id {
            self.correlation_id = command_id;
        }
        if self.causation_id == self.command_id {
            self.causation_id = command_id;
        }
        self.command_id = command_id;
        self
    }

    /// Metadata for the events this command produces: their cause is the command.
    pub fn event_metadata(&self) -> EventMetadata {
        EventMetadata {
            user: self.user.clone(),
            command_id: self.command_id,
            correlation_id: self.correlation_id,
            causation_id: self.command_id,
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
    pub user: String,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}
