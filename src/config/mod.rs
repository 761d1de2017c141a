//! Configuration: a YAML file (`--config` / `PAVED_CONFIG`), then environment overrides.
//!
//! Every key can be overridden by `PAVED_<SECTION>__<KEY>` (double underscore between levels,
//! like `PAVED_DATABASE__URL` or `PAVED_SERVER__LISTEN`), so what differs between deployments
//! never has to live in a file. With no file at all paved runs on its embedded default: SQLite in
//! the working directory, the bundled `templates/`, listening on 127.0.0.1:7077.
//! A bad value stops start-up with a message naming the key (and the variable it came from).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod auth;
mod backstage;
mod check;
mod day2;
mod de;
mod engine;
mod guardrails;
mod load;
mod runtime;
mod secret;

pub use auth::*;
pub use backstage::*;
pub use day2::*;
use de::*;
pub use engine::*;
pub use guardrails::*;
use load::*;
pub use runtime::*;
pub use secret::Secret;

pub const ENV_PREFIX: &str = "PAVED_";
pub const CONFIG_ENV: &str = "PAVED_CONFIG";

/// paved's configuration file; every key can also be set by `PAVED_<SECTION>__<KEY>`.
#[derive(Clone, Default, Deserialize, Serialize, JsonSchema)]
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

pub use crate::provisioning::drivers::settings::{
    DriversSettings, PostgresDriverSettings, RedisDriverSettings,
};

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
        // Secrets serialize as `***` (see `Secret`); URLs may carry passwords of their own.
        let mut v = serde_json::to_value(self).expect("settings serialize");
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
}

impl Settings {
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

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Settings {}", self.masked())
    }
}

/// Debug of a section as `paved config check` shows it ([`Secret`]s serialize masked, URL
/// passwords are masked here), so a `{:?}` in a log line or a panic never prints a key, a
/// token or a URL's password.
fn fmt_masked<T: Serialize>(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    section: &T,
) -> std::fmt::Result {
    let mut v = serde_json::to_value(section).map_err(|_| std::fmt::Error)?;
    mask_url_passwords(&mut v);
    write!(f, "{name} {v}")
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// A `{:?}` of the settings (a debug log, a panic) shows none of their secrets.
    #[test]
    fn debug_output_masks_every_secret() {
        let mut s = Settings::default();
        s.secrets.key = Some("c2VjcmV0LWtleS1ieXRlcw==".into());
        s.secrets.previous_keys = vec!["b2xkLWtleS1ieXRlcw==".into()];
        s.backstage.token = Some("static-backstage-token".into());
        s.notifications.webhook_token = Some("webhook-bearer".into());
        s.database.url = "postgres://paved:db-password@db:5432/paved".into();
        s.drivers.postgres.targets.insert(
            "prod".into(),
            "postgres://admin:target-password@pg:5432/postgres".into(),
        );
        for shown in [
            format!("{s:?}"),
            format!("{:?}", s.secrets),
            format!("{:?}", s.backstage),
            format!("{:?}", s.notifications),
            format!("{:?}", s.database),
            format!("{:?}", s.drivers),
        ] {
            for secret in [
                "c2VjcmV0LWtleS1ieXRlcw==",
                "b2xkLWtleS1ieXRlcw==",
                "static-backstage-token",
                "webhook-bearer",
                "db-password",
                "target-password",
            ] {
                assert!(!shown.contains(secret), "{secret} shown in {shown}");
            }
        }
        assert!(format!("{:?}", s.database).contains("postgres://paved:***@db:5432/paved"));
    }

    /// `server.cors_origins` takes origins as browsers send them, and nothing looser.
    #[test]
    fn cors_origins_are_plain_origins() {
        let ok = Settings::load(
            None,
            env(&[(
                "PAVED_SERVER__CORS_ORIGINS",
                "[https://backstage.example.com, http://127.0.0.1:3000]",
            )]),
        )
        .unwrap();
        assert_eq!(ok.server.cors_origins.len(), 2);
        for bad in [
            "\"*\"",
            "https://backstage.example.com/",
            "backstage.example.com",
            "https://a/b",
        ] {
            let e = Settings::load(
                None,
                env(&[("PAVED_SERVER__CORS_ORIGINS", &format!("[{bad}]"))]),
            )
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.key, "server.cors_origins", "{bad}");
            assert!(
                e.message.contains("must be an origin"),
                "{bad}: {}",
                e.message
            );
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A Terraform env value set by a variable arrives as set (not as the `***` it prints as),
    /// and is masked in what `paved config check` shows.
    #[test]
    fn terraform_env_values_from_variables_survive_loading_and_are_masked() {
        let s = Settings::load(
            None,
            env(&[
                ("PAVED_DRIVERS__TERRAFORM__BINARY", "tofu"),
                (
                    "PAVED_DRIVERS__TERRAFORM__ENV__DEV__CLOUD_TOKEN",
                    "tok-123456",
                ),
            ]),
        )
        .unwrap();
        let dev = &s.drivers.terraform.env["dev"];
        let (name, value) = dev.iter().next().unwrap();
        assert_eq!(name.to_ascii_uppercase(), "CLOUD_TOKEN");
        assert_eq!(value.0, "tok-123456");
        assert_eq!(s.drivers.terraform.binary, "tofu");
        assert!(!s.masked().to_string().contains("tok-123456"));
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

    /// Policy data has no type to read a variable by: it reads as the file would (the
    /// README's `…__APPROVAL__ABOVE_MONTHLY=2000` is a number Rego compares with a cost).
    #[test]
    fn policy_data_from_variables_reads_as_yaml_values() {
        let s = Settings::load(
            None,
            env(&[
                (
                    "PAVED_POLICIES__DATA__GUARDRAILS__APPROVAL__ABOVE_MONTHLY",
                    "2000",
                ),
                ("PAVED_POLICIES__DATA__GUARDRAILS__STRICT", "true"),
                ("PAVED_POLICIES__DATA__GUARDRAILS__APPROVAL__ROLE", "lead"),
                ("PAVED_POLICIES__DATA__GUARDRAILS__CODE", "'0042'"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.policies.data,
            serde_json::json!({"guardrails": {
                "approval": {"above_monthly": 2000, "role": "lead"},
                "strict": true,
                "code": "0042",
            }})
        );
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
        assert_eq!(s.secrets.previous_keys, vec![Secret::from(old.clone())]);
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

    /// Roles and entity refs are parsed where they are read: a typo names its key and the
    /// known roles, and a token's refs come out normalized.
    #[test]
    fn roles_and_refs_are_parsed_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("paved.yaml");
        std::fs::write(&f, "auth:\n  roles:\n    leed: [group:default/x]\n").unwrap();
        let err = Settings::load(Some(&f), env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("auth.roles") && err.contains("platform-admin"),
            "{err}"
        );
        let hash = "a".repeat(64);
        std::fs::write(
            &f,
            format!(
                "auth:\n  static_tokens:\n    - {{subject: ci, sha256: {hash}, roles: [admin]}}\n"
            ),
        )
        .unwrap();
        let err = Settings::load(Some(&f), env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("auth.static_tokens[0].roles") && err.contains("lead"),
            "{err}"
        );
        std::fs::write(
            &f,
            format!("auth:\n  static_tokens:\n    - {{subject: \"a b\", sha256: {hash}}}\n"),
        )
        .unwrap();
        let err = Settings::load(Some(&f), env(&[])).unwrap_err().to_string();
        assert!(err.contains("auth.static_tokens[0].subject"), "{err}");
        std::fs::write(
            &f,
            format!("auth:\n  static_tokens:\n    - {{subject: ci, sha256: {hash}, roles: [lead], groups: [Team-A]}}\n"),
        )
        .unwrap();
        let s = Settings::load(Some(&f), env(&[])).unwrap();
        let t = &s.auth.static_tokens[0];
        assert_eq!(t.subject.to_string(), "user:default/ci");
        assert_eq!(t.roles, vec![crate::vocab::principal::Role::Lead]);
        assert_eq!(t.groups[0].to_string(), "group:default/Team-A");
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
        assert_eq!(
            s.backstage.token.as_ref().map(Secret::expose),
            Some("12345")
        );
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
