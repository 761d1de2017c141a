//! What callers do, one function per use case: the REST API and Backstage's Actions protocol
//! are two adapters over the same calls. Each checks authorization through `access` and
//! records its audit event; typed errors say what went wrong, never an HTTP status.

pub mod assess;
pub mod place;
pub mod spend;
