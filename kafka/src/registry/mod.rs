//! A Confluent-compatible Schema Registry, stored in PostgreSQL, for local runs and tests
//! (production uses Confluent's). It implements the subset of the REST API that Confluent
//! clients call: registering and looking up schemas by subject, fetching by id, listing,
//! compatibility configuration and checks, and soft deletion of a subject.
//!
//! As in Confluent's registry, a soft-deleted subject's schemas stay readable by id
//! (`GET /schemas/ids/{id}`): ids are written into every message, and consumers of old
//! messages must keep decoding them. There is no permanent delete, so an id never stops
//! answering.

pub mod canonical;
mod compatibility;
mod server;
mod store;

pub use compatibility::{Compatibility, can_read, check as check_compatibility};
pub use server::{RegistryServer, router};
pub use store::RegistryStore;
