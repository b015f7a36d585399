//! Wire contract shared by the catalog service and the hub agent.
//!
//! Only types and naming rules live here: what a slug is, which NATS subjects
//! carry what, the heartbeat payload and the CloudEvents envelope of federation
//! events. No I/O, no runtime, no database.

pub mod events;
pub mod heartbeat;
pub mod naming;
pub mod subjects;

pub use events::{CloudEvent, EventKind};
pub use heartbeat::{Heartbeat, HubStatus, Rejection};
pub use naming::{is_valid_instance_code, is_valid_slug, mesh_namespace, NamingError};
