//! Who may call paved (`auth`) and the key sealing credentials (`secrets`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::vocab::{entity_ref::EntityRef, principal::Role};

#[derive(Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// Base64 of 32 random bytes (`openssl rand -base64 32`) sealing credentials at rest.
    /// Required unless paved runs on its embedded default (SQLite), which keeps a generated
    /// key in `.paved/secrets.key`.
    #[serde(deserialize_with = "opt_secret")]
    #[schemars(schema_with = "opt_string_schema")]
    pub key: Option<Secret>,
    /// Keys that only open what they sealed before a rotation (`paved secrets reseal` moves
    /// it to `key`); nothing is sealed with them.
    #[serde(deserialize_with = "secret_list")]
    #[schemars(schema_with = "secret_list_schema")]
    pub previous_keys: Vec<Secret>,
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
    pub roles: std::collections::BTreeMap<Role, Vec<String>>,
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
    #[serde(deserialize_with = "user_ref")]
    #[schemars(schema_with = "ref_schema")]
    pub subject: EntityRef,
    /// Lower-case hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    /// developer, lead, platform-admin.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Groups (entity refs) the subject belongs to.
    #[serde(default, deserialize_with = "group_refs")]
    #[schemars(schema_with = "refs_schema")]
    pub groups: Vec<EntityRef>,
}

impl std::fmt::Debug for SecretsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        super::fmt_masked(f, "SecretsSettings", self)
    }
}
