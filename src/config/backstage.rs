//! The Backstage sections: how paved meets Backstage, and the catalog it serves.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

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

#[derive(Clone, Deserialize, Serialize, JsonSchema)]
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
    #[serde(deserialize_with = "opt_secret")]
    #[schemars(schema_with = "opt_string_schema")]
    pub token: Option<Secret>,
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

impl std::fmt::Debug for BackstageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        super::fmt_masked(f, "BackstageSettings", self)
    }
}
