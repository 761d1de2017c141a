//! The shared words: small types every layer uses, importing nothing of the crate.
//!
//! Entity refs, the caller (principal and roles), request statuses and operations, field
//! errors, the secret box, catalog page buckets, the clock, keyed locks and URL redaction.
//! Nothing here does I/O beyond the clock, and nothing here knows HTTP, the database or
//! Backstage's wire protocols.

pub mod actor;
pub mod bucket;
pub mod clock;
pub mod entity_ref;
pub mod field_error;
pub mod keyed_locks;
pub mod principal;
pub mod redact;
pub mod secret_box;
pub mod status;
