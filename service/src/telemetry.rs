//! Logging: shared with the hub agent, see [`common::telemetry`].

pub use common::telemetry::*;
