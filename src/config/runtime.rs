//! Where paved runs: server, database, templates, logs.

use std::{net::SocketAddr, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address the HTTP server binds to.
    #[serde(deserialize_with = "from_display")]
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// URL under which users and Backstage reach paved (links, catalog locations). Defaults to
    /// `http://<listen>`.
    #[serde(deserialize_with = "opt_string")]
    #[schemars(schema_with = "opt_string_schema")]
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// How long a SIGTERM waits for in-flight requests before paved exits anyway.
    pub shutdown_grace_seconds: u64,
    /// Lower-case hex SHA-256 of the token Prometheus scrapes `/metrics` with (`Authorization:
    /// Bearer`). The metrics carry every team's costs: without this token only platform-admins
    /// read them.
    #[serde(deserialize_with = "opt_string")]
    #[schemars(schema_with = "opt_string_schema")]
    pub metrics_token_sha256: Option<String>,
    /// Origins of Backstage apps whose pages call paved's API from the browser
    /// (`@paved/plugin-paved` with the frontend's discovery pointing at paved), e.g.
    /// `https://backstage.example.com`: paved answers their CORS preflights and lets them read
    /// its answers. Empty (the default): no CORS headers, browsers keep pages of other origins
    /// out. Callers still authenticate with their own token; no cookies are involved.
    pub cors_origins: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7077)),
            public_url: None,
            body_limit_bytes: 1024 * 1024,
            shutdown_grace_seconds: 30,
            metrics_token_sha256: None,
            cors_origins: Vec::new(),
        }
    }
}

#[derive(Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://paved.db?mode=rwc` (embedded default) or `postgres://user@host/db`.
    #[serde(deserialize_with = "string")]
    #[schemars(schema_with = "string_schema")]
    pub url: String,
    /// Connections in paved's own database pool (the API and the workers share it: more than
    /// the workers, so a busy queue leaves the API connections).
    pub max_connections: u32,
    /// Apply pending migrations when `serve` starts. Turn off where migrations run as a separate
    /// job (`paved migrate`); readiness then stays 503 until the schema is current.
    pub migrate_on_start: bool,
}

/// Which engine `database.url` names (checked once at load: nothing else parses the scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseBackend {
    /// The embedded default: one process, in-process locks.
    Sqlite,
    /// Shared by replicas: `FOR UPDATE SKIP LOCKED`, advisory locks, LISTEN/NOTIFY.
    Postgres,
}

impl DatabaseSettings {
    /// The backend of `url`; `None` for a scheme paved does not run on (refused at load).
    pub fn backend(&self) -> Option<DatabaseBackend> {
        let url = self.url.as_str();
        if url.starts_with("sqlite:") {
            Some(DatabaseBackend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(DatabaseBackend::Postgres)
        } else {
            None
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.backend() == Some(DatabaseBackend::Sqlite)
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://paved.db?mode=rwc".into(),
            max_connections: 20,
            migrate_on_start: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesSettings {
    /// Folder with one sub-folder per offering (`template.yaml` + `offering.yaml`).
    pub dir: PathBuf,
    /// How often the folder is checked for changes (0 turns watching off; SIGHUP still reloads).
    pub reload_interval_seconds: u64,
}

impl Default for TemplatesSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("templates"),
            reload_interval_seconds: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `human` (coloured only on a terminal) or `json`, one object per line.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `paved=debug,sqlx=warn`. `RUST_LOG` wins when set.
    #[serde(deserialize_with = "string")]
    #[schemars(schema_with = "string_schema")]
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        super::fmt_masked(f, "DatabaseSettings", self)
    }
}
