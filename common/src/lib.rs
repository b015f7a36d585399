//! What the `federation` service and the `hub-agent` both run on: settings
//! loading that reports every error at once ([`config`]), lenient
//! deserializers for YAML and environment values ([`de`]), NATS connection
//! settings and options ([`nats`]), the one retry policy ([`retry`]), starting the async runtime
//! ([`runtime`]), stop signals ([`signal`]) and logging ([`telemetry`]).

pub mod config;
pub mod de;
pub mod nats;
pub mod retry;
pub mod runtime;
pub mod signal;
pub mod telemetry;
