//! The federation catalog service.
//!
//! `app` wires the concerns together; each other module owns one concern
//! and its SQL: `config`, `store`, `catalog`, `federation` (the spoke
//! registry's rules), `events`, `api`, `metrics`, `health`, `sync` (tfvars,
//! Keycloak, links, drift).

pub mod api;
pub mod app;
pub mod catalog;
pub mod catalog_view;
pub mod cli;
pub mod config;
pub mod events;
pub mod federation;
pub mod health;
pub mod ingest;
pub mod leader;
pub mod log_limit;
pub mod metrics;
pub mod nats;
pub mod rules;
pub mod server;
pub mod store;
pub mod sweeper;
pub mod sync;
pub mod telemetry;
