//! The outbox, its relay to JetStream and the watch stream.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::instrument::metrics;

metrics! {
    pub struct EventMetrics {
        /// Events committed to the outbox and not yet acknowledged by JetStream
        pub outbox_pending: Gauge = "outbox_pending",
        /// Age of the oldest event not yet acknowledged by JetStream (0 when none)
        pub outbox_oldest_pending_seconds: Gauge<f64, std::sync::atomic::AtomicU64> =
            "outbox_oldest_pending_seconds",
        /// Events published to JetStream and acknowledged (duplicates included)
        pub publish: Counter = "nats_publish",
        /// Publishes JetStream acknowledged as duplicates of an event it already had (re-publish after a crash)
        pub publish_duplicates: Counter = "nats_publish_duplicates",
        /// Publishes that failed or were not acknowledged in time; the event stays in the outbox
        pub publish_failures: Counter = "nats_publish_failures",
        /// Published events deleted from the outbox after the retention period
        pub pruned: Counter = "outbox_pruned",
        /// 1 while this replica is the elected outbox relay
        pub relay_leader: Gauge = "relay_leader",
        /// Clients following /api/fed/watch right now
        pub watch_clients: Gauge = "event_watch_clients",
    }
}
