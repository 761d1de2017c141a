//! The actors paved itself acts as, as recorded in requests and the audit trail: one list, so
//! reports and audits that look for them agree with the code that writes them.

/// The provisioning engine.
pub const ENGINE: &str = "paved:engine";
/// The TTL reaper, which deletes expired resources through normal delete requests.
pub const REAPER: &str = "system:reaper";
/// Drift detection, when it records what it found.
pub const DRIFT: &str = "system:drift";
