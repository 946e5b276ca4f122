//! TracSeq's use cases: what the laboratory can ask of the system, independent of how it
//! asks.
//!
//! # Where this sits
//!
//! ```text
//!   web (HTTP, pages, Kafka wiring)      saga (orchestration, later)
//!                 \                       /
//!                  lab  — commands, read models, use-case errors, command metrics
//!                 /                       \
//!        cqrs (pure deciders)      event-sourcing (store, projections)
//! ```
//!
//! `cqrs/` decides (pure functions from state and command to events); `event-sourcing/`
//! stores and follows events; this crate turns raw input into commands, runs them through
//! the store with the caller's [`event_sourcing::CommandContext`] (who, why, caused by
//! which event), and owns each aggregate's read tables and the queries over them. Both
//! edges — the HTTP routes in `web/` and the saga, which issues commands in reaction to
//! events — go through the same services, so a rule, a metric or an idempotency check
//! exists once. Nothing here knows about HTTP, pages or Kafka: errors are
//! classified by what the caller can do about them ([`Error`]), and the web edge maps
//! them to status codes; the read side's transport (in-process follower or Kafka
//! consumer) is chosen by whoever wires the application.
//!
//! # Adding an aggregate
//!
//! Its decider goes in `cqrs/`; its module here gets a service (parse input, build the
//! command, `EventStore::execute`) and a [`event_sourcing::Projection`] for its read
//! tables; its `.avsc` files go in `kafka/schemas/`; its routes in `web/`.

pub mod accounts;
pub mod dashboard;
pub mod error;
pub mod history;
pub mod idempotency;
pub mod metrics;
pub mod samples;
pub mod storage;

pub use error::{Error, FieldError};
pub use metrics::CommandMetrics;
