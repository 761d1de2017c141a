//! The drivers' own settings (`drivers:` in configuration): which cluster serves each
//! environment, and the limits paved keeps to there.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DriversSettings {
    pub postgres: PostgresDriverSettings,
    pub redis: RedisDriverSettings,
    pub terraform: super::terraform::TerraformDriverSettings,
}

/// dev, staging and prod, all on `url`.
fn local_targets(url: &str) -> std::collections::BTreeMap<String, String> {
    ["dev", "staging", "prod"]
        .iter()
        .map(|e| (e.to_string(), url.to_owned()))
        .collect()
}

impl Default for PostgresDriverSettings {
    fn default() -> Self {
        Self {
            targets: local_targets("postgres://postgres@127.0.0.1:5432/postgres"),
            extensions: ["pgcrypto", "citext", "uuid-ossp", "pg_trgm", "hstore"]
                .map(String::from)
                .to_vec(),
            lock_timeout_ms: default_lock_timeout_ms(),
            statement_timeout_ms: default_statement_timeout_ms(),
        }
    }
}

impl Default for RedisDriverSettings {
    fn default() -> Self {
        Self {
            targets: local_targets("redis://127.0.0.1:6379"),
        }
    }
}

// Each key has its default on its own: setting one (a timeout) keeps the others.
#[derive(Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresDriverSettings {
    /// Admin connection URL of the cluster serving each environment.
    pub targets: std::collections::BTreeMap<String, String>,
    /// Extensions offerings may ask for.
    pub extensions: Vec<String>,
    /// Every statement paved sends to a target waits at most this long for a lock…
    pub lock_timeout_ms: u64,
    /// …and runs at most this long; then the step is retried later.
    pub statement_timeout_ms: u64,
}

fn default_lock_timeout_ms() -> u64 {
    super::postgres::DEFAULT_LOCK_TIMEOUT_MS
}

fn default_statement_timeout_ms() -> u64 {
    super::postgres::DEFAULT_STATEMENT_TIMEOUT_MS
}

#[derive(Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RedisDriverSettings {
    /// Redis URL (with an admin user) serving each environment.
    pub targets: std::collections::BTreeMap<String, String>,
}

/// Targets are admin URLs: their passwords never reach a `{:?}`.
fn redacted(
    targets: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<&str, String> {
    targets
        .iter()
        .map(|(env, url)| (env.as_str(), crate::vocab::redact::redact(url)))
        .collect()
}

impl std::fmt::Debug for PostgresDriverSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDriverSettings")
            .field("targets", &redacted(&self.targets))
            .field("extensions", &self.extensions)
            .field("lock_timeout_ms", &self.lock_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .finish()
    }
}

impl std::fmt::Debug for RedisDriverSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDriverSettings")
            .field("targets", &redacted(&self.targets))
            .finish()
    }
}
