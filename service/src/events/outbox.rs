//! The outbox table: one row per event, inserted in the transaction that
//! makes the change, so an event exists if and only if its change committed.
//! The statement lives in [`crate::store::outbox`].

pub use crate::store::outbox::enqueue;
