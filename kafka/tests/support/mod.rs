//! The shared test infrastructure lives in `kafka::testkit`.

#![allow(unused_imports)]

pub use kafka::testkit::*;
