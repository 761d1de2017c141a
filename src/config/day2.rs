//! Day-2 sections: platform reports, unused resources, drift, schedules, TTLs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Platform metrics.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsSettings {
    /// The window of the platform gauges on `/metrics`, and the API's default window.
    pub window_hours: u64,
}

impl Default for ReportsSettings {
    fn default() -> Self {
        Self {
            window_hours: 30 * 24,
        }
    }
}

/// Unused-resource detection from the drivers' usage readings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UnusedSettings {
    /// How often every ready resource's usage is read (0 turns sampling and unused alerts off).
    pub sample_interval_seconds: u64,
    /// A resource without any activity over this many hours counts as unused.
    pub window_hours: u64,
}

impl Default for UnusedSettings {
    fn default() -> Self {
        Self {
            sample_interval_seconds: 3600,
            window_hours: 7 * 24,
        }
    }
}

/// Drift detection: scheduled scans of every ready resource (on-demand checks go through the
/// API).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DriftSettings {
    /// How often every ready resource is compared with its actual state (0 turns scans off).
    pub scan_interval_seconds: u64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self {
            scan_interval_seconds: 24 * 3600,
        }
    }
}

/// How background schedules (reaper, expiry warnings, drift scan, usage sampling) share the
/// work between replicas: every replica offers each schedule's job once per interval, the
/// job's id (schedule and period) makes the offers one job, and any runner takes it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesSettings {
    /// How often each replica checks whether a schedule is due.
    pub check_seconds: u64,
    /// No longer read: schedules run as jobs under `engine.lease_seconds`. Accepted so that
    /// configuration written for earlier versions still loads.
    pub lease_seconds: u64,
}

impl Default for SchedulesSettings {
    fn default() -> Self {
        Self {
            check_seconds: 5,
            lease_seconds: 120,
        }
    }
}

/// Time-to-live of ephemeral resources: the reaper and the warnings before expiry.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TtlSettings {
    /// How often expired resources are deleted (0 turns the reaper off).
    pub reaper_interval_seconds: u64,
    /// Owners are warned this many hours before expiry, once per offset (e.g. `[24, 1]`).
    pub warn_before_hours: Vec<f64>,
}

impl Default for TtlSettings {
    fn default() -> Self {
        Self {
            reaper_interval_seconds: 60,
            warn_before_hours: vec![24.0, 1.0],
        }
    }
}
