//! The provisioning job's name, and the old home of the queue's storage (now `crate::jobs`):
//! request and approval code enqueue through this path.

pub use crate::jobs::storage::{Depth, WAKE_CHANNEL, depth, enqueue, listen_for_jobs};

pub const PROVISION: &str = <super::engine::Provision as crate::jobs::BackgroundJob>::JOB_NAME;
