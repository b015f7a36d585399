//! Gateway side (see the crate docs).
