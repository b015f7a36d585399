#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

//! Integration tests of the HTTP API against a real PostgreSQL. One binary;
//! each test gets its own database and port.

mod audit;
mod auth;
mod chaos;
mod cli;
mod cluster;
mod contract;
mod credentials;
mod deadlines;
mod enrollment;
mod fedkit;
mod health;
mod heartbeat_props;
mod heartbeat_trust;
mod heartbeats;
mod helpers;
mod history;
mod identity;
mod leader;
mod limits;
mod listing;
mod maintenance;
mod metrics;
mod nats;
mod openapi;
mod outage;
mod process;
mod projects;
mod relay;
mod replicas;
mod seeding;
mod spoke_credentials;
mod spokes;
mod structure;
mod sweeper;
mod sync;
mod sync_conditions;
mod sync_lease;
mod sync_process;
mod sync_worker;
mod synckit;
mod ui;
mod ui_browser;
mod watch;
mod workers;
