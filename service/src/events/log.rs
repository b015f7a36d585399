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
/// back: 10 ms at first (a short transaction is about to end), doubling up
/// to `max` (a long one is running), back to 10 ms after progress.
#[derive(Debug, Clone)]
pub struct HeldBackDelay {
    current: std::time::Duration,
    max: std::time::Duration,
}

impl HeldBackDelay {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(10);

    pub fn new(max: std::time::Duration) -> Self {
        HeldBackDelay {
            current: Self::FIRST,
            max: max.max(Self::FIRST),
        }
    }

    pub fn progressed(&mut self) {
        self.current = Self::FIRST;
    }

    pub fn next_wait(&mut self) -> std::time::Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        d
    }
}
