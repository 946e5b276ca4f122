//! The decider contract every event-sourced aggregate implements.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An event of a domain aggregate: it names its type and schema version itself, so no
/// string literal for either is scattered around the code base.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Stable type name, e.g. `SampleRegistered`.
    fn event_type(&self) -> &'static str;
    /// Version of this event type's payload schema.
    fn schema_version(&self) -> u32;
}

/// An aggregate as a pure decider: `handle` decides which events a command produces given
/// the current state, `apply` folds an event into the state. Neither performs I/O, so both
/// are unit-tested without a database.
pub trait Aggregate:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Aggregate type name stored beside every event, e.g. `Sample`.
    const TYPE: &'static str;
    /// Version of the serialized state; snapshots of another version are ignored.
    const SNAPSHOT_VERSION: u32;

    type Command: Send;
    type Event: DomainEvent;
    /// A business rejection: the command was understood and refused. Serialisable
    /// because it is recorded with the command id, so that a repeat of the command is
    /// answered with the same rejection.
    type Rejection: std::error::Error + Serialize + DeserializeOwned + Send + Sync + 'static;

    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Rejection>;

    fn apply(&mut self, event: &Self::Event);

    /// Values an event claims that no other aggregate may hold, as `(scope, value)` pairs
    /// (a sample's barcode, say). The store claims them atomically with the event.
    fn unique_values(_event: &Self::Event) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Values an event gives up, as `(scope, value)` pairs (a freed storage position, a
    /// disposed tube's barcode): the store releases them atomically with the event, and
    /// another aggregate may then claim them. Only values this aggregate holds are
    /// released.
    fn released_values(_event: &Self::Event) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Folds events into a state.
    fn fold<'a>(mut self, events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        for event in events {
            self.apply(event);
        }
        self
    }
}
