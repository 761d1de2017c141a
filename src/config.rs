//! Configuration: a YAML file (`--config` / `PAVED_CONFIG`), then environment overrides.
//!
//! Every key can be overridden by `PAVED_<SECTION>__<KEY>` (double underscore between levels,
//! like `PAVED_DATABASE__URL` or `PAVED_SERVER__LISTEN`), so what differs between deployments
//! never has to live in a file. With no file at all paved runs on its embedded default: SQLite in
//! the working directory, the bundled `templates/`, listening on 127.0.0.1:7077.
//! A bad value stops start-up with a message naming the key (and the variable it came from).

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub const ENV_PREFIX: &str = "PAVED_";
pub const CONFIG_ENV: &str = "PAVED_CONFIG";

/// `PAVED_*` variables that are not configuration keys: the command line's client
/// (`paved resource …`) and the test harness (`PAVED_TEST_*`).
fn not_a_setting(name: &str) -> bool {
    matches!(name, CONFIG_ENV | "PAVED_URL" | "PAVED_TOKEN") || name.starts_with("PAVED_TEST_")
}

/// paved's configuration file; every key can also be set by `PAVED_<SECTION>__<KEY>`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(title = "paved configuration")]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub templates: TemplatesSettings,
    pub log: LogSettings,
    pub backstage: BackstageSettings,
    pub policies: PoliciesSettings,
    pub cost: CostSettings,
    pub auth: AuthSettings,
    pub engine: EngineSettings,
    pub catalog: CatalogSettings,
    pub drivers: DriversSettings,
    pub secrets: SecretsSettings,
    pub schedules: SchedulesSettings,
    pub ttl: TtlSettings,
    pub notifications: NotificationsSettings,
    pub drift: DriftSettings,
    pub unused: UnusedSettings,
    pub reports: ReportsSettings,
}

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
/// work between replicas: each schedule has a lease row in the database; the replica that takes
/// it runs the schedule, the others skip that round.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesSettings {
    /// How often each replica checks whether a schedule is due.
    pub check_seconds: u64,
    /// How long a run holds its lease without a heartbeat; a replica that died mid-run is
    /// replaced after this.
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

/// Where paved tells people about things: Backstage's notifications API and/or a webhook.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
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
    #[serde(deserialize_with = "opt_string")]
    #[schemars(schema_with = "opt_string_schema")]
    pub webhook_token: Option<String>,
    /// Delivery attempts per notification and channel before it is given up.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt up to `retry_max_seconds`.
    pub retry_base_ms: u64,
    /// The longest delay between two attempts.
    pub retry_max_seconds: u64,
    /// Fallback polling for due deliveries; new notifications wake the sender at once.
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
pub struct CatalogSettings {
    /// Serve the catalog documents without a token: Backstage's URL reader sends none.
    /// Protect them at the network layer, or turn this off and use an entity provider.
    pub public: bool,
    /// How many pages resources are spread over (1..=4096). Each page is its own document
    /// with its own ETag and its own `Location` entity in Backstage, so a change re-reads one
    /// page. Aim for a few thousand resources per page at most; changing it moves resources
    /// between pages (Backstage settles that through its orphan cleanup).
    pub pages: u32,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            public: true,
            pages: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Workers in this process (0: this replica only serves the API).
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
            workers: 2,
            lease_seconds: 30,
            poll_seconds: 5,
            max_attempts: 5,
            retry_base_ms: 500,
            retry_max_seconds: 60,
        }
    }
}

pub use crate::provisioning::drivers::settings::{
    DriversSettings, PostgresDriverSettings, RedisDriverSettings,
};

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// Base64 of 32 random bytes (`openssl rand -base64 32`) sealing credentials at rest.
    /// Required unless paved runs on its embedded default (SQLite), which keeps a generated
    /// key in `.paved/secrets.key`.
    #[serde(deserialize_with = "opt_string")]
    #[schemars(schema_with = "opt_string_schema")]
    pub key: Option<String>,
    /// Keys that only open what they sealed before a rotation (`paved secrets reseal` moves
    /// it to `key`); nothing is sealed with them.
    #[serde(deserialize_with = "secret_list")]
    #[schemars(schema_with = "secret_list_schema")]
    pub previous_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PoliciesSettings {
    /// Folder of `.rego` policies and their `.yaml` data.
    pub dir: PathBuf,
    /// Data merged over the folder's data (thresholds without editing files), e.g.
    /// `{guardrails: {approval: {above_monthly: 2000}}}`.
    #[schemars(with = "Map<String, Value>")]
    pub data: Value,
}

impl Default for PoliciesSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("policies"),
            data: Value::Object(Map::new()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CostSettings {
    /// The price book offerings' cost formulas read.
    pub pricebook: PathBuf,
    /// Monthly budgets (USD) by team entity ref; budgets set through the API take precedence.
    pub budgets: std::collections::BTreeMap<String, f64>,
}

impl Default for CostSettings {
    fn default() -> Self {
        Self {
            pricebook: PathBuf::from("pricing.yaml"),
            budgets: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Tokens for API clients and CI. Only the SHA-256 of each token is configured.
    pub static_tokens: Vec<StaticToken>,
    /// Let callers without a token use the API as `anonymous` (they may order and read their
    /// own requests, never decide, change, delete or read credentials). Unset: on while
    /// `server.listen` is a loopback address (a local trial), and start-up is refused on any
    /// other address until it is set explicitly.
    pub allow_anonymous: Option<bool>,
    /// Backstage plugins whose tokens paved accepts (with `backstage.base_url` set).
    pub backstage_callers: Vec<String>,
    /// Extra roles by user or group ref, e.g. `{platform-admin: [group:default/platform-team]}`.
    /// Every Backstage user is a developer.
    pub roles: std::collections::BTreeMap<String, Vec<String>>,
    /// Groups by user ref, added to those the user's token and the catalog name.
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// A Backstage user's groups also come from the `memberOf` relations of their `User`
    /// entity in Backstage's catalog, cached this long. 0 turns the lookup off.
    pub catalog_groups_ttl_seconds: u64,
    /// Backstage's key sets are fetched at most this often per set, for an unknown key id or
    /// a set past its age, whether the fetch works or not.
    pub jwks_refetch_seconds: u64,
    /// A fetched key set is trusted this long, then fetched again: a key Backstage removed
    /// stops verifying tokens after at most this long.
    pub jwks_max_age_seconds: u64,
    /// Clock skew tolerated on a Backstage token's `exp`, `nbf` and `iat`.
    pub token_leeway_seconds: u64,
    /// Backstage tokens whose `exp - iat` is longer are refused (Backstage issues user and
    /// plugin tokens for an hour).
    pub token_max_lifetime_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            static_tokens: Vec::new(),
            allow_anonymous: None,
            backstage_callers: vec!["scaffolder".into(), "catalog".into()],
            roles: Default::default(),
            groups: Default::default(),
            catalog_groups_ttl_seconds: 60,
            jwks_refetch_seconds: 10,
            jwks_max_age_seconds: 300,
            token_leeway_seconds: 5,
            token_max_lifetime_seconds: 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    /// Entity ref the token acts as, e.g. `user:default/ci-bot`.
    pub subject: String,
    /// Lower-case hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    /// developer, lead, platform-admin.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Groups (entity refs) the subject belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
}

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
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7077)),
            public_url: None,
            body_limit_bytes: 1024 * 1024,
            shutdown_grace_seconds: 30,
            metrics_token_sha256: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://paved.db?mode=rwc` (embedded default) or `postgres://user@host/db`.
    #[serde(deserialize_with = "string")]
    #[schemars(schema_with = "string_schema")]
    pub url: String,
    /// Connections in paved's own database pool.
    pub max_connections: u32,
    /// Apply pending migrations when `serve` starts. Turn off where migrations run as a separate
    /// job (`paved migrate`); readiness then stays 503 until the schema is current.
    pub migrate_on_start: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://paved.db?mode=rwc".into(),
            max_connections: 10,
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

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BackstageSettings {
    /// Backstage backend base URL, e.g. `http://localhost:7007` (catalog refresh, JWKS).
    #[serde(deserialize_with = "opt_string")]
    #[schemars(schema_with = "opt_string_schema")]
    pub base_url: Option<String>,
    /// The Backstage app (frontend) URL people open, e.g. `https://backstage.example.com`;
    /// distinct from `base_url`, the backend. Links meant for a browser (entity pages) use it:
    /// paved's API routes answer a browser 401 once anonymous access is off.
    #[serde(deserialize_with = "opt_string")]
    #[schemars(schema_with = "opt_string_schema")]
    pub app_url: Option<String>,
    /// The plugin id Backstage's discovery maps to paved; every path lives under `/api/<id>`.
    #[serde(deserialize_with = "string")]
    #[schemars(schema_with = "string_schema")]
    pub plugin_id: String,
    /// How paved authenticates its calls to Backstage (catalog refresh, users' groups,
    /// locations, notifications). Unset: `static` when `token` is set, else `external-jwks`.
    pub auth: Option<BackstageAuth>,
    /// A static externalAccess token (`auth: static`).
    #[serde(deserialize_with = "opt_string")]
    #[schemars(schema_with = "opt_string_schema")]
    pub token: Option<String>,
    /// `iss` of the tokens paved signs for `auth: external-jwks`; the jwks entry's `issuer`.
    #[serde(deserialize_with = "string")]
    #[schemars(schema_with = "string_schema")]
    pub issuer: String,
    /// `aud` of those tokens; the jwks entry's `audience`. Unset: `backstage.base_url`.
    #[serde(deserialize_with = "opt_string")]
    #[schemars(schema_with = "opt_string_schema")]
    pub audience: Option<String>,
    /// `sub` of those tokens: Backstage sees paved as principal `external:<subject>` (or
    /// `external:<subjectPrefix>:<subject>`), which permission policies can name.
    #[serde(deserialize_with = "string")]
    #[schemars(schema_with = "string_schema")]
    pub subject: String,
    /// How often paved makes a new signing key; the old one stays published until the
    /// tokens it signed have expired.
    pub key_rotation_hours: u64,
    /// How long one `paved:wait` call waits for a final state (Backstage gives up on a
    /// response after 300 s); a template repeats the call, see `paved:wait`'s `attempts`.
    pub wait_seconds: u64,
}

impl Default for BackstageSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            app_url: None,
            plugin_id: "paved".into(),
            wait_seconds: 240,
            auth: None,
            token: None,
            issuer: "paved".into(),
            audience: None,
            subject: "paved".into(),
            key_rotation_hours: 24,
        }
    }
}

/// How paved authenticates its calls to Backstage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackstageAuth {
    /// Plain JWTs paved signs, which a `backend.auth.externalAccess` entry of `type: jwks`
    /// verifies against paved's JWKS: the way Backstage documents for external services.
    ExternalJwks,
    /// `backstage.token`, listed in Backstage as an externalAccess entry of `type: static`.
    Static,
    /// Backstage plugin tokens paved signs as plugin `<plugin_id>`. Relies on Backstage
    /// fetching plugin keys through discovery, which its docs reserve for its own backends.
    Plugin,
}

impl BackstageAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            BackstageAuth::ExternalJwks => "external-jwks",
            BackstageAuth::Static => "static",
            BackstageAuth::Plugin => "plugin",
        }
    }
}

/// A configuration problem, always naming the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {key}: {message}{}", source_hint(.from_env))]
pub struct ConfigError {
    pub key: String,
    pub message: String,
    pub from_env: Option<String>,
}

fn source_hint(from_env: &Option<String>) -> String {
    from_env
        .as_ref()
        .map(|v| format!(" (set by {v})"))
        .unwrap_or_default()
}

impl Settings {
    /// Whether a call without a token is the anonymous caller (see `auth.allow_anonymous`).
    pub fn anonymous_allowed(&self) -> bool {
        self.auth
            .allow_anonymous
            .unwrap_or_else(|| self.server.listen.ip().is_loopback())
    }

    /// The effective configuration to show a person: secret values and URL passwords masked.
    pub fn masked(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("settings serialize");
        for path in [
            &["secrets", "key"][..],
            &["secrets", "previous_keys"],
            &["backstage", "token"],
        ] {
            let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            if get_path(&v, &path).is_some_and(|x| !x.is_null()) {
                set_path(&mut v, &path, Value::String("***".into()));
            }
        }
        mask_url_passwords(&mut v);
        v
    }

    /// Anonymous access beyond loopback only when asked for: a deployment that forgot the
    /// setting must not open its API to everyone on the network.
    pub fn check_anonymous(&self) -> Result<(), ConfigError> {
        if self.auth.allow_anonymous.is_none() && !self.server.listen.ip().is_loopback() {
            return Err(ConfigError {
                key: "auth.allow_anonymous".into(),
                message: format!(
                    "must be set explicitly when server.listen ({}) is not a loopback address: false in production (every call needs a token), true to let callers without a token order and read their own requests",
                    self.server.listen
                ),
                from_env: None,
            });
        }
        Ok(())
    }

    /// Loads `file` (if any), applies `PAVED_*` overrides from `env`, and checks every value.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree = match file {
            Some(path) => read_file(path)?,
            None => Value::Object(Map::new()),
        };
        let defaults = serde_json::to_value(Settings::default()).expect("settings serialize");
        let sections: BTreeSet<String> = defaults
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        // (dotted key, variable) for error messages; (path, raw value) to apply.
        let mut env_keys: Vec<(String, String)> = Vec::new();
        let mut overrides: Vec<(Vec<String>, String)> = Vec::new();
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Only `PAVED_<SECTION>__<KEY>` of a real section is a setting: `PAVED_BIN` in a
            // script is not. Inside a known section an unknown key is still an error.
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if not_a_setting(&name) || path.len() < 2 {
                continue;
            }
            if !sections.contains(&path[0]) {
                // Another tool's variable, unless it is one letter or two from a section: then
                // it is a typo that would otherwise be silently ignored.
                if let Some(near) = sections.iter().find(|s| edit_distance(s, &path[0]) <= 2) {
                    return Err(ConfigError {
                        key: path[0].clone(),
                        message: format!("unknown section (did you mean `{near}`?)"),
                        from_env: Some(name),
                    });
                }
                continue;
            }
            // Overriding one entry of a table (e.g. one environment's target) keeps the
            // others: what the variable goes into starts from the defaults, not from nothing.
            for depth in 1..path.len() {
                if get_path(&tree, &path[..depth]).is_none()
                    && let Some(d) = get_path(&defaults, &path[..depth])
                    && d.is_object()
                {
                    set_path(&mut tree, &path[..depth], d.clone());
                }
            }
            env_keys.push((path.join("."), name));
            overrides.push((path, raw));
        }
        // Each value is first taken as the text it is; only a setting that is not text (a
        // number, a flag, a list) reads it as a YAML scalar. So `0x1f` stays "0x1f" for a
        // plugin id, and `8080` is a number for a port. Inline lists and tables (`[…]`, `{…}`)
        // are structure from the start.
        let mut typed: BTreeSet<usize> = overrides
            .iter()
            .enumerate()
            .filter(|(_, (_, raw))| raw.trim_start().starts_with(['[', '{']))
            .map(|(i, _)| i)
            .collect();
        let settings: Settings = loop {
            let mut attempt = tree.clone();
            for (i, (path, raw)) in overrides.iter().enumerate() {
                let v = if typed.contains(&i) {
                    scalar(raw)
                } else {
                    Value::String(raw.clone())
                };
                set_path(&mut attempt, path, v);
            }
            match serde_path_to_error::deserialize::<_, Settings>(attempt) {
                Ok(s) => break s,
                Err(err) => {
                    let key = err.path().to_string();
                    let message = err.inner().to_string();
                    let retry = overrides.iter().enumerate().position(|(i, (p, _))| {
                        !typed.contains(&i)
                            && p.join(".") == key
                            && message.starts_with("invalid type: string")
                    });
                    if let Some(i) = retry {
                        typed.insert(i);
                        continue;
                    }
                    let from_env = env_var_for(&env_keys, &key, &message);
                    return Err(ConfigError {
                        key,
                        message,
                        from_env,
                    });
                }
            }
        };
        settings.check().map_err(|mut e| {
            // `key[2]` came from the variable that set the whole list `key`.
            e.from_env = env_keys
                .iter()
                .find(|(k, _)| *k == e.key || e.key.starts_with(&format!("{k}[")))
                .map(|(_, v)| v.clone());
            e
        })?;
        Ok(settings)
    }

    /// Rules that types alone do not carry.
    fn check(&self) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            key: key.into(),
            message,
            from_env: None,
        };
        self.check_anonymous()?;
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(err(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(err("database.max_connections", "must be at least 1".into()));
        }
        for (key, ms) in [
            (
                "drivers.postgres.lock_timeout_ms",
                self.drivers.postgres.lock_timeout_ms,
            ),
            (
                "drivers.postgres.statement_timeout_ms",
                self.drivers.postgres.statement_timeout_ms,
            ),
        ] {
            if ms == 0 {
                // PostgreSQL reads 0 as "no timeout": exactly what a tenant's lock exploits.
                return Err(err(key, "must be at least 1".into()));
            }
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(err(
                "server.body_limit_bytes",
                "must be at least 1024".into(),
            ));
        }
        let id = &self.backstage.plugin_id;
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(err(
                "backstage.plugin_id",
                "must match ^[a-z0-9_-]+$ (Backstage plugin id rule)".into(),
            ));
        }
        for (key, value) in [
            ("backstage.base_url", &self.backstage.base_url),
            ("backstage.app_url", &self.backstage.app_url),
            ("server.public_url", &self.server.public_url),
            ("notifications.webhook_url", &self.notifications.webhook_url),
        ] {
            if let Some(v) = value {
                check_http_url(v).map_err(|m| err(key, m))?;
            }
        }
        for (i, k) in self.secrets.previous_keys.iter().enumerate() {
            crate::vocab::secret_box::SecretBox::from_base64(k)
                .map_err(|m| err(&format!("secrets.previous_keys[{i}]"), m))?;
        }
        if let Some(k) = &self.secrets.key {
            crate::vocab::secret_box::SecretBox::from_base64(k)
                .map_err(|m| err("secrets.key", m))?
                .with_previous(&self.secrets.previous_keys)
                .map_err(|(i, m)| err(&format!("secrets.previous_keys[{i}]"), m))?;
        } else if !self.database.url.starts_with("sqlite:") {
            return Err(err(
                "secrets.key",
                "is required outside the embedded SQLite default (generate one with `openssl rand -base64 32`)".into(),
            ));
        }
        if !(1..=crate::vocab::bucket::BUCKETS).contains(&self.catalog.pages) {
            return Err(err(
                "catalog.pages",
                format!(
                    "must be between 1 and {} (got {})",
                    crate::vocab::bucket::BUCKETS,
                    self.catalog.pages
                ),
            ));
        }
        if self.backstage.key_rotation_hours == 0 {
            return Err(err(
                "backstage.key_rotation_hours",
                "must be at least 1".into(),
            ));
        }
        let b = &self.backstage;
        match (self.backstage_auth(), &b.token) {
            (BackstageAuth::Static, None) => {
                return Err(err(
                    "backstage.token",
                    "is required with backstage.auth: static".into(),
                ));
            }
            (mode @ (BackstageAuth::ExternalJwks | BackstageAuth::Plugin), Some(_)) => {
                return Err(err(
                    "backstage.token",
                    format!(
                        "is only used with backstage.auth: static (backstage.auth is {}): unset one of them",
                        mode.as_str()
                    ),
                ));
            }
            _ => {}
        }
        for (key, value) in [
            ("backstage.issuer", Some(b.issuer.as_str())),
            ("backstage.audience", b.audience.as_deref()),
            ("backstage.subject", Some(b.subject.as_str())),
        ] {
            if let Some(v) = value
                && (v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == ','))
            {
                // Backstage splits its jwks options on spaces and commas.
                return Err(err(
                    key,
                    "must be non-empty, without spaces or commas (Backstage splits its jwks options on them)".into(),
                ));
            }
        }
        if b.audience.as_deref() == Some("backstage") {
            // Backstage reads a token with `aud: backstage` as one of its user tokens and
            // never offers it to the externalAccess entries.
            return Err(err(
                "backstage.audience",
                "must not be \"backstage\" (Backstage's user-token audience)".into(),
            ));
        }
        if self.auth.catalog_groups_ttl_seconds > 86_400 {
            return Err(err(
                "auth.catalog_groups_ttl_seconds",
                "must be at most 86400 (a day); 0 turns catalog group lookups off".into(),
            ));
        }
        let a = &self.auth;
        if !(1..=3600).contains(&a.jwks_refetch_seconds) {
            return Err(err(
                "auth.jwks_refetch_seconds",
                "must be between 1 and 3600".into(),
            ));
        }
        if a.jwks_max_age_seconds < a.jwks_refetch_seconds || a.jwks_max_age_seconds > 86_400 {
            return Err(err(
                "auth.jwks_max_age_seconds",
                format!(
                    "must be between auth.jwks_refetch_seconds ({}) and 86400 (a day)",
                    a.jwks_refetch_seconds
                ),
            ));
        }
        if a.token_leeway_seconds > 300 {
            return Err(err(
                "auth.token_leeway_seconds",
                "must be at most 300 (clock skew, not token lifetime)".into(),
            ));
        }
        if !(60..=86_400).contains(&a.token_max_lifetime_seconds) {
            return Err(err(
                "auth.token_max_lifetime_seconds",
                "must be between 60 and 86400 (Backstage issues tokens for 3600 s)".into(),
            ));
        }
        if self.engine.lease_seconds < 2 || self.engine.max_attempts < 1 {
            return Err(err(
                "engine.lease_seconds",
                "must be at least 2 (and engine.max_attempts at least 1)".into(),
            ));
        }
        if self.schedules.check_seconds == 0 {
            return Err(err("schedules.check_seconds", "must be at least 1".into()));
        }
        if self.schedules.lease_seconds < 2 {
            return Err(err("schedules.lease_seconds", "must be at least 2".into()));
        }
        for (i, h) in self.ttl.warn_before_hours.iter().enumerate() {
            if !(h.is_finite() && *h > 0.0 && *h <= 24.0 * 365.0) {
                return Err(err(
                    &format!("ttl.warn_before_hours[{i}]"),
                    "must be a number of hours above 0 (and at most a year)".into(),
                ));
            }
        }
        if !(1..=366 * 24).contains(&self.reports.window_hours) {
            return Err(err(
                "reports.window_hours",
                "must be between 1 and 8784 (366 days)".into(),
            ));
        }
        if self.unused.window_hours == 0 {
            return Err(err("unused.window_hours", "must be at least 1".into()));
        }
        if self.notifications.max_attempts < 1 || self.notifications.poll_seconds == 0 {
            return Err(err(
                "notifications.max_attempts",
                "must be at least 1 (and notifications.poll_seconds at least 1)".into(),
            ));
        }
        if !self.policies.data.is_object() {
            return Err(err("policies.data", "must be a mapping".into()));
        }
        for (team, amount) in &self.cost.budgets {
            crate::vocab::entity_ref::EntityRef::parse(team, "group")
                .map_err(|e| err(&format!("cost.budgets.{team}"), e))?;
            if !(amount.is_finite() && *amount >= 0.0) {
                return Err(err(
                    &format!("cost.budgets.{team}"),
                    "must be a non-negative amount".into(),
                ));
            }
        }
        if let Some(r) = self
            .auth
            .roles
            .keys()
            .find(|r| !crate::vocab::principal::ROLES.contains(&r.as_str()))
        {
            return Err(err(
                &format!("auth.roles.{r}"),
                format!(
                    "unknown role (known: {})",
                    crate::vocab::principal::ROLES.join(", ")
                ),
            ));
        }
        if let Some(h) = &self.server.metrics_token_sha256
            && !is_sha256_hex(h)
        {
            return Err(err(
                "server.metrics_token_sha256",
                "must be 64 lower-case hex characters (the token's SHA-256)".into(),
            ));
        }
        for (i, t) in self.auth.static_tokens.iter().enumerate() {
            let key = |k: &str| format!("auth.static_tokens[{i}].{k}");
            crate::vocab::entity_ref::EntityRef::parse(&t.subject, "user")
                .map_err(|e| err(&key("subject"), e))?;
            if !is_sha256_hex(&t.sha256) {
                return Err(err(
                    &key("sha256"),
                    "must be 64 lower-case hex characters (the token's SHA-256)".into(),
                ));
            }
            if let Some(r) = t
                .roles
                .iter()
                .find(|r| !crate::vocab::principal::ROLES.contains(&r.as_str()))
            {
                return Err(err(
                    &key("roles"),
                    format!(
                        "unknown role {r:?} (known: {})",
                        crate::vocab::principal::ROLES.join(", ")
                    ),
                ));
            }
            for g in &t.groups {
                crate::vocab::entity_ref::EntityRef::parse(g, "group")
                    .map_err(|e| err(&key("groups"), e))?;
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| err("log.level", format!("not a valid log filter: {e}")))?;
        Ok(())
    }

    /// How paved calls Backstage: `backstage.auth`, or its default.
    pub fn backstage_auth(&self) -> BackstageAuth {
        self.backstage
            .auth
            .unwrap_or(if self.backstage.token.is_some() {
                BackstageAuth::Static
            } else {
                BackstageAuth::ExternalJwks
            })
    }

    /// Where paved publishes its token keys (the jwks entry's `url`).
    pub fn jwks_url(&self) -> String {
        format!(
            "{}{}/.backstage/auth/v1/jwks.json",
            self.public_url(),
            self.plugin_base_path()
        )
    }

    /// `aud` of paved's external-access tokens (None: no Backstage to call).
    pub fn backstage_audience(&self) -> Option<String> {
        self.backstage.audience.clone().or_else(|| {
            self.backstage
                .base_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned())
        })
    }

    /// `/api/<plugin id>`: the base path Backstage discovery expects.
    pub fn plugin_base_path(&self) -> String {
        format!("/api/{}", self.backstage.plugin_id)
    }

    /// A resource's page in the Backstage app, when `backstage.app_url` says where the app is.
    pub fn entity_page_url(&self, entity_name: &str) -> Option<String> {
        self.backstage.app_url.as_ref().map(|a| {
            format!(
                "{}/catalog/default/resource/{entity_name}",
                a.trim_end_matches('/')
            )
        })
    }

    /// The URL users reach paved under, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.server.listen),
        }
    }
}

fn check_http_url(v: &str) -> Result<(), String> {
    let url = url::Url::parse(v).map_err(|e| format!("not a URL: {e}"))?;
    match (url.scheme(), url.host_str()) {
        ("http" | "https", Some(_)) => Ok(()),
        _ => Err("must be an absolute http:// or https:// URL".into()),
    }
}

fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        key: "(file)".into(),
        message: format!("cannot read {}: {e}", path.display()),
        from_env: None,
    })?;
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = yaml_serde::from_str(&text).map_err(|e| ConfigError {
        key: "(file)".into(),
        message: format!("{} is not valid YAML: {e}", path.display()),
        from_env: None,
    })?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(ConfigError {
            key: "(file)".into(),
            message: format!("{} must hold a YAML mapping at the top", path.display()),
            from_env: None,
        }),
    }
}

/// Environment values are typed like YAML scalars (`8080` is a number, `true` a boolean);
/// string fields accept any scalar (see [`string`]).
fn scalar(raw: &str) -> Value {
    match yaml_serde::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_))) => v,
        // Lists and mappings (e.g. static tokens) can be given inline: `[{subject: ..., ...}]`.
        Ok(v @ (Value::Array(_) | Value::Object(_)))
            if raw.trim_start().starts_with(['[', '{']) =>
        {
            v
        }
        _ => Value::String(raw.to_owned()),
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`, anywhere in the tree (database
/// URL, driver targets, webhooks).
fn mask_url_passwords(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some((scheme, rest)) = s.split_once("://")
                && let Some((userinfo, host)) = rest.split_once('@')
                && let Some((user, _)) = userinfo.split_once(':')
            {
                *s = format!("{scheme}://{user}:***@{host}");
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mask_url_passwords),
        Value::Object(m) => m.values_mut().for_each(mask_url_passwords),
        _ => {}
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn get_path<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(tree, |node, seg| node.as_object()?.get(seg))
}

fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let mut node = tree;
    for (i, seg) in path.iter().enumerate() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().expect("object ensured above");
        if i == path.len() - 1 {
            map.insert(seg.clone(), value);
            return;
        }
        node = map
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

fn env_var_for(env_keys: &[(String, String)], key: &str, message: &str) -> Option<String> {
    // serde reports an unknown field at its parent path and names the field in the message.
    let unknown: BTreeSet<&str> = env_keys
        .iter()
        .filter(|(k, _)| {
            let leaf = k.rsplit('.').next().unwrap_or(k);
            message.contains(&format!("`{leaf}`"))
        })
        .map(|(_, v)| v.as_str())
        .collect();
    env_keys
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .or_else(|| unknown.into_iter().next().map(str::to_owned))
}

/// Deserializes a string from any scalar, so `PAVED_BACKSTAGE__PLUGIN_ID=123` is "123".
fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string, found {}",
            kind(&other)
        ))),
    }
}

fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        v => string(v).map(Some).map_err(serde::de::Error::custom),
    }
}

/// A list of keys: one string or a list of strings. Errors never quote a value (they are keys).
fn secret_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                other => Err(serde::de::Error::custom(format!(
                    "item {i}: expected a base64 key, found {}",
                    kind(&other)
                ))),
            })
            .collect(),
        other => Err(serde::de::Error::custom(format!(
            "expected a list of base64 keys, found {}",
            kind(&other)
        ))),
    }
}

// What `string`, `opt_string` and `secret_list` accept, for the configuration's JSON Schema.
fn string_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "number", "boolean"] })
}

fn opt_string_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "number", "boolean", "null"] })
}

fn secret_list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["array", "string", "null"], "items": { "type": "string" } })
}

fn from_display<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let s = string(d)?;
    s.parse()
        .map_err(|e| serde::de::Error::custom(format!("{e}: {s:?}")))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A SHA-256 as configured for tokens: 64 lower-case hex characters.
fn is_sha256_hex(h: &str) -> bool {
    h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_default_is_sqlite_on_7077() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:7077");
        assert!(s.database.url.starts_with("sqlite:"));
        assert_eq!(s.templates.dir, PathBuf::from("templates"));
        assert_eq!(s.plugin_base_path(), "/api/paved");
    }

    #[test]
    fn env_overrides_file_and_types_scalars() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("paved.yaml");
        std::fs::write(
            &f,
            "server:\n  listen: 0.0.0.0:9000\ndatabase:\n  url: postgres://a@b/c\nsecrets:\n  key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&f),
            env(&[
                ("PAVED_SERVER__LISTEN", "127.0.0.1:9100"),
                ("PAVED_DATABASE__MAX_CONNECTIONS", "3"),
                ("PAVED_BACKSTAGE__PLUGIN_ID", "infra"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.listen.port(), 9100);
        assert_eq!(s.database.url, "postgres://a@b/c");
        assert_eq!(s.database.max_connections, 3);
        assert_eq!(s.plugin_base_path(), "/api/infra");
    }

    #[test]
    fn bad_values_name_the_key_and_variable() {
        let cases = [
            ("PAVED_SERVER__LISTEN", "nonsense", "server.listen"),
            ("PAVED_DATABASE__URL", "mysql://x", "database.url"),
            (
                "PAVED_DATABASE__MAX_CONNECTIONS",
                "many",
                "database.max_connections",
            ),
            ("PAVED_LOG__FORMAT", "xml", "log.format"),
            (
                "PAVED_BACKSTAGE__BASE_URL",
                "localhost:7007",
                "backstage.base_url",
            ),
            (
                "PAVED_BACKSTAGE__PLUGIN_ID",
                "Bad Id",
                "backstage.plugin_id",
            ),
            (
                "PAVED_SCHEDULES__CHECK_SECONDS",
                "0",
                "schedules.check_seconds",
            ),
            (
                "PAVED_NOTIFICATIONS__WEBHOOK_URL",
                "ftp://hooks.example",
                "notifications.webhook_url",
            ),
            ("PAVED_UNUSED__WINDOW_HOURS", "0", "unused.window_hours"),
            ("PAVED_REPORTS__WINDOW_HOURS", "0", "reports.window_hours"),
            (
                "PAVED_DRIFT__SCAN_INTERVAL_SECONDS",
                "daily",
                "drift.scan_interval_seconds",
            ),
            ("PAVED_CATALOG__PAGES", "0", "catalog.pages"),
            ("PAVED_CATALOG__PAGES", "4097", "catalog.pages"),
            (
                "PAVED_AUTH__JWKS_REFETCH_SECONDS",
                "0",
                "auth.jwks_refetch_seconds",
            ),
            (
                "PAVED_AUTH__JWKS_MAX_AGE_SECONDS",
                "5",
                "auth.jwks_max_age_seconds",
            ),
            (
                "PAVED_AUTH__TOKEN_LEEWAY_SECONDS",
                "3600",
                "auth.token_leeway_seconds",
            ),
            (
                "PAVED_AUTH__TOKEN_MAX_LIFETIME_SECONDS",
                "604800",
                "auth.token_max_lifetime_seconds",
            ),
        ];
        for (var, value, key) in cases {
            let err = Settings::load(None, env(&[(var, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(key), "{var}={value}: {text}");
            assert!(text.contains(var), "{var}={value}: {text}");
        }
    }

    #[test]
    fn backstage_auth_defaults_by_token_and_refuses_what_backstage_would() {
        let mode =
            |vars: &[(&str, &str)]| Settings::load(None, env(vars)).map(|s| s.backstage_auth());
        assert_eq!(mode(&[]).unwrap(), BackstageAuth::ExternalJwks);
        assert_eq!(
            mode(&[("PAVED_BACKSTAGE__TOKEN", "t0k3n")]).unwrap(),
            BackstageAuth::Static
        );
        assert_eq!(
            mode(&[("PAVED_BACKSTAGE__AUTH", "plugin")]).unwrap(),
            BackstageAuth::Plugin
        );
        let s = Settings::load(
            None,
            env(&[(
                "PAVED_BACKSTAGE__BASE_URL",
                "http://backstage.internal:7007/",
            )]),
        )
        .unwrap();
        assert_eq!(
            (
                s.backstage.issuer.as_str(),
                s.backstage_audience().as_deref()
            ),
            ("paved", Some("http://backstage.internal:7007"))
        );
        for (vars, rule) in [
            (
                &[("PAVED_BACKSTAGE__AUTH", "static")][..],
                "backstage.token: is required with backstage.auth: static",
            ),
            (
                &[
                    ("PAVED_BACKSTAGE__AUTH", "external-jwks"),
                    ("PAVED_BACKSTAGE__TOKEN", "t"),
                ],
                "backstage.token: is only used with backstage.auth: static",
            ),
            (
                &[("PAVED_BACKSTAGE__AUDIENCE", "backstage")],
                "backstage.audience: must not be \"backstage\"",
            ),
            (
                &[("PAVED_BACKSTAGE__ISSUER", "paved, other")],
                "backstage.issuer: must be non-empty, without spaces or commas",
            ),
            (&[("PAVED_BACKSTAGE__AUTH", "oauth")], "backstage.auth"),
        ] {
            let text = mode(vars).unwrap_err().to_string();
            assert!(text.contains(rule), "{vars:?}: {text}");
        }
    }

    #[test]
    fn previous_secrets_keys_are_checked_by_index_and_never_echoed() {
        let key = crate::vocab::secret_box::SecretBox::generate_key();
        let old = crate::vocab::secret_box::SecretBox::generate_key();
        let s = Settings::load(
            None,
            env(&[
                ("PAVED_SECRETS__KEY", key.as_str()),
                ("PAVED_SECRETS__PREVIOUS_KEYS", &format!("[{old}]")),
            ]),
        )
        .unwrap();
        assert_eq!(s.secrets.previous_keys, vec![old.clone()]);
        // One key without brackets is a list of one.
        let s =
            Settings::load(None, env(&[("PAVED_SECRETS__PREVIOUS_KEYS", old.as_str())])).unwrap();
        assert_eq!(s.secrets.previous_keys.len(), 1);
        for (value, rule) in [
            (
                format!("[{old}, bm90LWEta2V5]"),
                "secrets.previous_keys[1]: must decode to 32 bytes",
            ),
            (
                format!("[{key}]"),
                "secrets.previous_keys[0]: is secrets.key itself",
            ),
            (
                format!("[{old}, {old}]"),
                "secrets.previous_keys[1]: is listed twice",
            ),
            (
                "{a: b}".to_owned(),
                "secrets.previous_keys: expected a list of base64 keys",
            ),
        ] {
            let text = Settings::load(
                None,
                env(&[
                    ("PAVED_SECRETS__KEY", key.as_str()),
                    ("PAVED_SECRETS__PREVIOUS_KEYS", &value),
                ]),
            )
            .unwrap_err()
            .to_string();
            assert!(text.contains(rule), "{value}: {text}");
            assert!(text.contains("PAVED_SECRETS__PREVIOUS_KEYS"), "{text}");
            assert!(
                !text.contains(&old) && !text.contains(&key),
                "a key leaked: {text}"
            );
        }
    }

    #[test]
    fn day2_schedules_and_offsets_come_from_the_environment() {
        let s = Settings::load(
            None,
            env(&[
                ("PAVED_TTL__WARN_BEFORE_HOURS", "[48, 0.5]"),
                ("PAVED_TTL__REAPER_INTERVAL_SECONDS", "0"),
                ("PAVED_DRIFT__SCAN_INTERVAL_SECONDS", "3600"),
            ]),
        )
        .unwrap();
        assert_eq!(s.ttl.warn_before_hours, vec![48.0, 0.5]);
        assert_eq!(s.ttl.reaper_interval_seconds, 0);
        assert_eq!(s.drift.scan_interval_seconds, 3600);
        let err = Settings::load(None, env(&[("PAVED_TTL__WARN_BEFORE_HOURS", "[24, -1]")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ttl.warn_before_hours[1]"), "{err}");
    }

    #[test]
    fn postgres_driver_timeouts_default_and_come_from_the_environment() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(
            (
                s.drivers.postgres.lock_timeout_ms,
                s.drivers.postgres.statement_timeout_ms
            ),
            (3_000, 30_000)
        );
        let s = Settings::load(
            None,
            env(&[
                ("PAVED_DRIVERS__POSTGRES__LOCK_TIMEOUT_MS", "250"),
                ("PAVED_DRIVERS__POSTGRES__STATEMENT_TIMEOUT_MS", "9000"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (
                s.drivers.postgres.lock_timeout_ms,
                s.drivers.postgres.statement_timeout_ms
            ),
            (250, 9000)
        );
        let err = Settings::load(
            None,
            env(&[("PAVED_DRIVERS__POSTGRES__LOCK_TIMEOUT_MS", "0")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("drivers.postgres.lock_timeout_ms"), "{err}");
    }

    #[test]
    fn postgres_needs_a_secrets_key() {
        let err =
            Settings::load(None, env(&[("PAVED_DATABASE__URL", "postgres://a@b/c")])).unwrap_err();
        assert!(err.to_string().contains("secrets.key"), "{err}");
        let err = Settings::load(None, env(&[("PAVED_SECRETS__KEY", "short")])).unwrap_err();
        assert!(err.to_string().contains("PAVED_SECRETS__KEY"), "{err}");
        assert!(
            !err.to_string().contains("short"),
            "the value itself is not echoed: {err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Settings::load(None, env(&[("PAVED_SERVER__LISTN", "1")])).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("paved.yaml");
        std::fs::write(&f, "databse:\n  url: x\n").unwrap();
        let err = Settings::load(Some(&f), env(&[])).unwrap_err();
        assert!(err.to_string().contains("databse"), "{err}");
    }

    #[test]
    fn missing_or_broken_file_is_reported() {
        let err = Settings::load(Some(Path::new("/nonexistent/paved.yaml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/paved.yaml"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("paved.yaml");
        std::fs::write(&f, "server: [unclosed").unwrap();
        let err = Settings::load(Some(&f), env(&[])).unwrap_err();
        assert!(err.to_string().contains("not valid YAML"), "{err}");
    }

    #[test]
    fn only_real_settings_are_read_from_the_environment_and_by_their_type() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        // A script's own variables are not settings.
        let s = Settings::load(
            None,
            env(&[
                ("PAVED_BIN", "/usr/local/bin/paved"),
                ("PAVED_HOME__DIR", "/x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.listen.port(), 7077);
        // Text stays text; numbers and flags are read as such only where the setting is one.
        let s = Settings::load(
            None,
            env(&[
                ("PAVED_BACKSTAGE__PLUGIN_ID", "0x1f"),
                ("PAVED_DATABASE__MAX_CONNECTIONS", "3"),
                ("PAVED_AUTH__ALLOW_ANONYMOUS", "false"),
                ("PAVED_BACKSTAGE__TOKEN", "12345"),
            ]),
        )
        .unwrap();
        assert_eq!(s.backstage.plugin_id, "0x1f");
        assert_eq!(s.plugin_base_path(), "/api/0x1f");
        assert_eq!(s.database.max_connections, 3);
        assert_eq!(s.auth.allow_anonymous, Some(false));
        assert_eq!(s.backstage.token.as_deref(), Some("12345"));
        // One entry of a table changes that entry only; the whole table replaces it and
        // leaves the rest of its section as it was.
        let s = Settings::load(
            None,
            env(&[(
                "PAVED_DRIVERS__POSTGRES__TARGETS__STAGING",
                "postgres://a@h:5432/postgres",
            )]),
        )
        .unwrap();
        let t = &s.drivers.postgres.targets;
        assert_eq!(t["staging"], "postgres://a@h:5432/postgres");
        assert_eq!(t["dev"], "postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(t.len(), 3);
        let s = Settings::load(
            None,
            env(&[(
                "PAVED_DRIVERS__POSTGRES__TARGETS",
                "{dev: 'postgres://b@h/postgres'}",
            )]),
        )
        .unwrap();
        assert_eq!(s.drivers.postgres.targets.len(), 1);
        assert!(
            s.drivers
                .postgres
                .extensions
                .contains(&"pgcrypto".to_owned())
        );
        // A typo of a section, or inside one, is still refused, naming the variable.
        let e = Settings::load(None, env(&[("PAVED_SERVR__LISTEN", "127.0.0.1:1")])).unwrap_err();
        assert!(e.to_string().contains("did you mean `server`"), "{e}");
        assert_eq!(e.from_env.as_deref(), Some("PAVED_SERVR__LISTEN"));
        let e = Settings::load(None, env(&[("PAVED_DATABASE__URLL", "x")])).unwrap_err();
        assert_eq!(e.from_env.as_deref(), Some("PAVED_DATABASE__URLL"), "{e}");
    }
}
