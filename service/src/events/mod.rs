//! Federation events: the transactional outbox every state change writes
//! to, in the same transaction as the change; the outbox read as an ordered
//! log; the relay that publishes it to JetStream; and the watch feed that
//! streams it to Server-Sent-Events clients.

pub mod log;
pub mod metrics;
pub mod outbox;
pub mod relay;
pub mod watch;
