//! Day-2 work on what exists: TTLs (warnings before expiry, the reaper deleting through normal
//! delete requests), drift detection with revert/accept, and usage sampling for unused
//! resources. Each round runs as a periodic job (`app::day2_jobs`), once per period across
//! replicas.

pub mod drift;
pub mod lifecycle;
pub mod usage;
