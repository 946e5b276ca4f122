//! TracSeq's web edge: the server-rendered UI, the JSON API, health checks, configuration
//! and telemetry. `main.rs` only parses the command line and calls into here.

pub mod cli;
pub mod config;
pub mod error;
pub mod pipeline;
pub mod retention;
pub mod routes;
pub mod startup;
pub mod telemetry;

pub use config::Settings;
pub use startup::Application;
