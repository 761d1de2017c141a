//! The engine and notification sections.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

/// Where paved tells people about things: Backstage's notifications API and/or a webhook.
#[derive(Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsSettings {
    /// Send to Backstage's notifications backend (needs `backstage.base_url`; authenticates
    /// with `backstage.token`).
    pub backstage: bool,
    /// Also POST every notification as JSON to this URL.
    #[serde(deserialize_with = "opt_string")]
    #[schemars(schema_with = "opt_string_schema")]
    pub webhook_url: Option<String>,
    /// Bearer token for the webhook.
    #[serde(deserialize_with = "opt_secret")]
    #[schemars(schema_with = "opt_string_schema")]
    pub webhook_token: Option<Secret>,
    /// Delivery attempts per notification and channel before it is given up.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt up to `retry_max_seconds`.
    pub retry_base_ms: u64,
    /// The longest delay between two attempts.
    pub retry_max_seconds: u64,
    /// Fallback polling for due deliveries (a retry coming due); a new notification wakes the
    /// job runners at once.
    pub poll_seconds: u64,
}

impl Default for NotificationsSettings {
    fn default() -> Self {
        Self {
            backstage: true,
            webhook_url: None,
            webhook_token: None,
            max_attempts: 8,
            retry_base_ms: 1000,
            retry_max_seconds: 600,
            poll_seconds: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Workers in this process (0: this replica only serves the API). Cheap async tasks that
    /// mostly wait on targets and the database; 16 keep a slow cloud API's calls in flight
    /// without one holding up the others.
    pub workers: usize,
    /// How long a claimed job stays a worker's without a heartbeat.
    pub lease_seconds: u64,
    /// Fallback polling interval; new jobs normally wake a worker at once.
    pub poll_seconds: u64,
    /// Attempts before a transiently failing job fails its request.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt up to `retry_max_seconds`.
    pub retry_base_ms: u64,
    /// The longest delay between two attempts.
    pub retry_max_seconds: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            workers: 16,
            lease_seconds: 30,
            poll_seconds: 5,
            max_attempts: 5,
            retry_base_ms: 500,
            retry_max_seconds: 60,
        }
    }
}

impl std::fmt::Debug for NotificationsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        super::fmt_masked(f, "NotificationsSettings", self)
    }
}
