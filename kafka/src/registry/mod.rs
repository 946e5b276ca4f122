//! A Confluent-compatible Schema Registry, stored in PostgreSQL, for local runs and tests
//! (production uses Confluent's). It implements the subset of the REST API that Confluent
//! clients call: registering and looking up schemas by subject, fetching by id, listing,
//! compatibility configuration and checks, and soft deletion of a subject.

mod compatibility;
mod server;
mod store;

pub use compatibility::{Compatibility, check as check_compatibility};
pub use server::{RegistryServer, router};
pub use store::RegistryStore;
