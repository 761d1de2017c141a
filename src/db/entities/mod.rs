//! sea-orm entities, one module per table. Tables that a capability does not use yet get their
//! entity when that capability arrives.

pub mod approval;
pub mod audit_event;
pub mod budget;
pub mod drift_finding;
pub mod drift_state;
pub mod job;
pub mod notification;
pub mod request;
pub mod request_log;
pub mod request_step;
pub mod resource;
pub mod resource_notice;
pub mod secret;
pub mod secret_key;
pub mod signing_key;
pub mod terraform_lock;
pub mod terraform_run;
pub mod terraform_state;
pub mod usage_sample;
