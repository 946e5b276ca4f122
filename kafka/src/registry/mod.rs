//! A Confluent-compatible Schema Registry, stored in PostgreSQL, for local runs and tests
//! (production uses Confluent's). It implements the REST API Confluent's clients and Kafka
//! UI call: registering and looking up schemas by subject, fetching by id, listings with
//! `?deleted=true` / `?deletedOnly=true`, soft and permanent deletion of versions and
//! subjects, compatibility configuration and checks, modes, and Confluent's error codes and
//! content negotiation. Only Avro schemas without references are supported.
//!
//! As in Confluent's registry, a soft-deleted version's schema stays readable by id
//! (`GET /schemas/ids/{id}`): ids are written into every message, and consumers of old
//! messages must keep decoding them. Only permanently deleting every version that uses a
//! schema makes its id answer 40403.
//!
//! With a [`RegistryToken`] configured, every request that changes what the registry holds
//! (registering, `PUT`/`DELETE` of config and mode, every `DELETE`) must carry
//! `Authorization: Bearer <token>`; reads, look-ups and compatibility checks stay open.

pub mod canonical;
mod compatibility;
mod server;
mod store;

pub use compatibility::{Compatibility, can_read, check as check_compatibility};
pub use server::{RegistryServer, RegistryToken, router, router_with_token};
pub use store::{Mode, RegistryStore};
