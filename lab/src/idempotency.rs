//! Command ids: where they come from and how a repeat is recognised.
//!
//! A command id names one command. It is recorded with the command's name, aggregate and a
//! fingerprint of its input in the same commit as its events, so a repeat returns the first
//! outcome and a reuse for different input is refused (see `event_sourcing::repository`).
//! Ids derived here are deterministic, so a client (or the saga, reacting to an event it
//! may see twice) that sends the same thing twice gets one command.

use serde::Serialize;
use uuid::Uuid;

/// Namespace for ids derived from command ids and idempotency keys.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_0c3e_8a4b_4f62_9d2e_7b1a_5c3f_8e90);

/// A command id from an `Idempotency-Key`, scoped by who sends it: two clients never
/// share a key, and one client's key names one command whatever it asks for (a reuse for
/// another request is refused by the store's fingerprint check, as a 422).
pub fn command_id_for_key(sender: &str, key: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{sender}\n{key}").as_bytes())
}

/// A digest of a request's parsed input, recorded with its command id; two requests with
/// equal input have equal fingerprints, whatever their formatting.
pub fn fingerprint(input: &impl Serialize) -> String {
    let canonical = serde_json::to_vec(input).unwrap_or_default();
    Uuid::new_v5(&NAMESPACE, &canonical).simple().to_string()
}

/// The id of the aggregate a creating command makes: derived from the command id, so a
/// repeated command finds what it created the first time instead of creating another.
pub fn created_id(command_id: Uuid) -> Uuid {
    Uuid::new_v5(&NAMESPACE, command_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_scoped_by_sender() {
        assert_eq!(
            command_id_for_key("ana", "k1"),
            command_id_for_key("ana", "k1")
        );
        assert_ne!(
            command_id_for_key("ana", "k1"),
            command_id_for_key("ben", "k1")
        );
    }

    #[test]
    fn fingerprints_follow_the_input_not_its_formatting() {
        let a: serde_json::Value = serde_json::from_str(r#"{"x": 1, "y": "z"}"#).expect("json");
        let b: serde_json::Value = serde_json::from_str(r#"{ "y":"z","x":1 }"#).expect("json");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&("x", 1)));
    }
}
