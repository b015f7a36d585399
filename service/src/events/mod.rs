//! Federation events: the transactional outbox every state change writes
//! to, in the same transaction as the change.

pub mod outbox;
