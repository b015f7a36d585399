//! No code: this package holds the monitoring and deployment tests
//! (`tests/monitoring/`), which run promtool, amtool, Prometheus,
//! Alertmanager, docker-compose and the `federation` binary for real. They
//! live apart from the service so `cargo test -p service` needs none of
//! those tools; `scripts/test` runs them with the rest of the workspace.
