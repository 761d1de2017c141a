//! Checking settings once, at start: every problem names its key.

use super::*;

impl Settings {
    /// Rules that types alone do not carry.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            key: key.into(),
            message,
            from_env: None,
        };
        self.check_anonymous()?;
        if self.database.backend().is_none() {
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
        for origin in &self.server.cors_origins {
            check_origin(origin).map_err(|rule| err("server.cors_origins", rule))?;
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
            crate::vocab::secret_box::SecretBox::from_base64(k.expose())
                .map_err(|m| err(&format!("secrets.previous_keys[{i}]"), m))?;
        }
        if let Some(k) = &self.secrets.key {
            crate::vocab::secret_box::SecretBox::from_base64(k.expose())
                .map_err(|m| err("secrets.key", m))?
                .with_previous(self.secrets.previous_keys.iter().map(Secret::expose))
                .map_err(|(i, m)| err(&format!("secrets.previous_keys[{i}]"), m))?;
        } else if !self.database.is_sqlite() {
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
            if !is_sha256_hex(&t.sha256) {
                return Err(err(
                    &key("sha256"),
                    "must be 64 lower-case hex characters (the token's SHA-256)".into(),
                ));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| err("log.level", format!("not a valid log filter: {e}")))?;
        Ok(())
    }
}

pub(super) fn check_http_url(v: &str) -> Result<(), String> {
    let url = url::Url::parse(v).map_err(|e| format!("not a URL: {e}"))?;
    match (url.scheme(), url.host_str()) {
        ("http" | "https", Some(_)) => Ok(()),
        _ => Err("must be an absolute http:// or https:// URL".into()),
    }
}

/// A SHA-256 as configured for tokens: 64 lower-case hex characters.
pub(super) fn is_sha256_hex(h: &str) -> bool {
    h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A CORS origin as browsers send it: `http(s)://host[:port]`, nothing after. A wildcard is
/// refused: paved lists the Backstage apps it serves by name.
fn check_origin(origin: &str) -> Result<(), String> {
    let shown = format!("{origin:?}");
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{shown} must be an origin: http(s)://host[:port] (no wildcard)"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '*', ' ']) {
        return Err(format!(
            "{shown} must be an origin: http(s)://host[:port], without path, slash or wildcard"
        ));
    }
    Ok(())
}
