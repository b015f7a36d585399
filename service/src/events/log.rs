//! The outbox read as an ordered log, shared by the relay and the watch
//! stream so both deliver the same events in the same order.
//!
//! Order is `(xid, seq)`: the id of the transaction that wrote the row, then
//! the row's sequence number. Readers only see rows whose transaction is
//! older than every transaction of this database still running (`xid <
//! outbox_horizon()`, as of the reading statement's snapshot). Every row that becomes readable later
//! belongs to a transaction with `xid >= that horizon`, so it sorts after
//! everything already read: a `(xid, seq)` cursor never skips an event that
//! committed late. See docs/decisions.md, "Event order".

pub use crate::store::outbox::{
    head, held_back, pending, position_of, read_after, Cursor, OutboxEvent,
};

/// How long to wait before looking again while committed events are held
/// back: about 10 ms at first (a short transaction is about to end), doubling
/// up to `max` (a long one is running), back to the start after progress
/// ([`common::retry::Schedule::reset`]).
pub fn held_back_delay(max: std::time::Duration) -> common::retry::Schedule {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(10);
    common::retry::Backoff::new(FIRST, max.max(FIRST)).schedule()
}
