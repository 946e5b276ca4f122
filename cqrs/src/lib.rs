//! The laboratory domain: aggregates as pure deciders, their commands, events and value types.
//!
//! Nothing here performs I/O. Storage, messaging and the web edge depend on this crate;
//! it depends on none of them.

pub mod aggregate;
pub mod sample;
pub mod storage;
pub mod testing;

pub use aggregate::{Aggregate, DomainEvent, PayloadError, untag};
