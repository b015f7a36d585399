//! The federation catalog service.
//!
//! `app` composes: it builds the `Components` once, the HTTP state and the
//! workers of `serve` and `federation sync` from them, and runs the workers
//! under a `supervisor` (one span each, a failure stops the service, one
//! shutdown deadline); `state` is what handlers receive. Every other module
//! owns one concern:
//!
//! - `config`: settings, every error at once; `cli`: the command line
//! - `store`: every SQL statement, checked at compile time against `.sqlx/`
//! - `catalog`: projects, their seeding and metrics; `catalog_view`: the
//!   catalog in memory
//! - `spoke`: the spoke registry's rules; `revision`: a spoke's update in
//!   place; `conditions`: per-spoke status conditions, the onboarding's
//!   progress and the links derived from them
//! - `fed_routing`: tenant routing's nodes, rules and tenant map, database
//!   URLs sealed at rest; `routing_view`: routing in memory, resolution and
//!   the gateways' snapshot
//! - `events`: outbox, relay, watch feed; `ingest`: heartbeats; `sweeper`:
//!   liveness; `leader`: one leader among replicas; `retention`: pruning
//! - `sync`: tfvars, Keycloak, probes, leases, links, rollouts, drift
//! - `auth`: API keys; `identity`: the NATS authority; `nats`: the NATS
//!   connection
//! - `api`: the REST API; `ui`: the web UI at `/ui`, over `api`'s handlers;
//!   `client`: the operator's CLI, a REST client only
//! - `health`, `server` (the accept loop), `metrics` (the registry),
//!   `telemetry` (logs)
//! - leaves: `rules`, `field_error`, `listing` (pages, sorts and cursors),
//!   `instrument`, `log_limit`, `supervisor`
//!
//! No module reaches back into one that depends on it
//! (`tests/api/structure.rs` checks).

pub mod api;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod catalog_view;
pub mod cli;
pub mod client;
pub mod conditions;
pub mod config;
pub mod events;
pub mod fed_routing;
pub mod field_error;
pub mod health;
pub mod identity;
pub mod ingest;
pub mod instrument;
pub mod leader;
pub mod listing;
pub mod log_limit;
pub mod metrics;
pub mod nats;
pub mod retention;
pub mod revision;
pub mod routing_view;
pub mod rules;
pub mod server;
pub mod spoke;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod sweeper;
pub mod sync;
pub mod telemetry;
pub mod ui;
