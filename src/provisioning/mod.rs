//! Provisioning: requests, and (as they arrive) the engine that runs them and the drivers that
//! talk to real systems.

pub mod approvals;
pub mod catalog_sink;
pub mod drivers;
pub mod engine;
pub mod requests;
pub mod resources;
pub mod secrets;
pub mod terraform_state;
