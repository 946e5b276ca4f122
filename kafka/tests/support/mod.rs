//! The shared test infrastructure lives in `kafka::testkit`; the test-only aggregate here.

#![allow(unused_imports, dead_code)]

pub mod registry_client;
pub mod widget;

pub use kafka::testkit::*;
