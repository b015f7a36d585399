#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

//! Monitoring and deployment, tested with the real tools: promtool, amtool,
//! docker-compose and a real Prometheus scraping the service. A missing tool
//! fails its tests (scripts/test installs them); nothing is skipped.

mod alerting;
mod alertmanager;
mod backup;
mod compose;
mod dashboards;
mod dockerfile;
mod prometheus;
mod promql;
mod rules;
mod running;
mod support;
