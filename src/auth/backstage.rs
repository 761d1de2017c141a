//! Backstage's tokens (docs/backstage-protocol.md §4): plugin tokens the scaffolder sends when
//! it invokes paved's actions (ES256, `typ: vnd.backstage.plugin`, `aud` = paved's plugin id,
//! `sub` = the calling plugin, optional `obo` = the limited token of the user behind the task),
//! and user tokens sent directly by portal frontends and CLI users.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{Principal, groups::CatalogGroups, signing::Outgoing};
use crate::config::AuthSettings;

const PLUGIN: &str = "vnd.backstage.plugin";
const USER: &str = "vnd.backstage.user";
const LIMITED_USER: &str = "vnd.backstage.limited-user";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

#[derive(Deserialize)]
struct PluginClaims {
    sub: String,
    obo: Option<String>,
}

#[derive(Deserialize)]
struct UserClaims {
    sub: String,
    #[serde(default)]
    ent: Vec<String>,
}

struct Cached {
    keys: JwkSet,
    fetched: Instant,
}

pub struct BackstageTokens {
    base_url: String,
    plugin_id: String,
    allowed_callers: BTreeSet<String>,
    /// An unknown `kid` refetches a key set at most this often (Backstage rotates hourly).
    refetch_every: Duration,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Cached>>,
    /// Users' teams from the catalog (`None` with `auth.catalog_groups_ttl_seconds: 0`).
    catalog_groups: Option<CatalogGroups>,
}

impl BackstageTokens {
    pub fn new(base_url: &str, plugin_id: &str, auth: &AuthSettings, outgoing: Outgoing) -> Self {
        // reqwest is built without a default TLS provider (no aws-lc); ring it is. Installing
        // twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client builds");
        let catalog_groups = (auth.catalog_groups_ttl_seconds > 0).then(|| {
            CatalogGroups::new(
                base_url,
                Duration::from_secs(auth.catalog_groups_ttl_seconds),
                outgoing,
                http.clone(),
            )
        });
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            plugin_id: plugin_id.to_owned(),
            allowed_callers: auth.backstage_callers.iter().cloned().collect(),
            refetch_every: Duration::from_secs(auth.jwks_refetch_seconds),
            http,
            cache: Mutex::new(HashMap::new()),
            catalog_groups,
        }
    }

    async fn catalog_groups(&self, user: &str) -> BTreeSet<String> {
        match &self.catalog_groups {
            Some(g) => g.of(user).await,
            None => BTreeSet::new(),
        }
    }

    /// Is this token one of Backstage's (by its header)?
    pub fn claims_to_be_backstage(token: &str) -> bool {
        jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|h| h.typ)
            .is_some_and(|t| t.starts_with("vnd.backstage."))
    }

    /// Verifies a plugin or user token. Returns the acting user (from `obo` for plugin
    /// tokens) or, for a plugin token without `obo`, the calling plugin as `plugin:<id>`.
    pub async fn verify(&self, token: &str, auth: &AuthSettings) -> Result<Principal, Refused> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refused(format!("malformed token: {e}")))?;
        match header.typ.as_deref() {
            Some(PLUGIN) => {
                // The caller decides which key set verifies it, so check it is one we accept
                // before fetching anything.
                let unverified: PluginClaims =
                    jsonwebtoken::dangerous::insecure_decode::<PluginClaims>(token)
                        .map_err(|e| Refused(format!("malformed plugin token: {e}")))?
                        .claims;
                let caller = unverified.sub.to_ascii_lowercase();
                if caller.is_empty()
                    || !caller
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(Refused("plugin token has an invalid subject".into()));
                }
                if !self.allowed_callers.contains(&caller) {
                    return Err(Refused(format!(
                        "calling plugin {caller:?} is not allowed (auth.backstage_callers)"
                    )));
                }
                let url = format!(
                    "{}/api/{caller}/.backstage/auth/v1/jwks.json",
                    self.base_url
                );
                let claims: PluginClaims = self
                    .check(token, &header, &url, Some(&self.plugin_id))
                    .await?;
                match claims.obo {
                    Some(obo) => {
                        let obo_header = jsonwebtoken::decode_header(&obo)
                            .map_err(|e| Refused(format!("malformed obo token: {e}")))?;
                        if obo_header.typ.as_deref() != Some(LIMITED_USER) {
                            return Err(Refused("obo must be a limited user token".into()));
                        }
                        let url = format!("{}/api/auth/.well-known/jwks.json", self.base_url);
                        let user: UserClaims = self.check(&obo, &obo_header, &url, None).await?;
                        let teams = self.catalog_groups(&user.sub).await;
                        let mut p = principal_for(&user.sub, &[], teams, auth);
                        p.via = Some(format!("plugin:{caller}"));
                        Ok(p)
                    }
                    None => Ok(Principal {
                        subject: format!("plugin:{}", claims.sub),
                        roles: BTreeSet::new(),
                        groups: BTreeSet::new(),
                        via: None,
                    }),
                }
            }
            Some(USER) => {
                let url = format!("{}/api/auth/.well-known/jwks.json", self.base_url);
                let user: UserClaims = self.check(token, &header, &url, Some("backstage")).await?;
                let teams = self.catalog_groups(&user.sub).await;
                Ok(principal_for(&user.sub, &user.ent, teams, auth))
            }
            Some(LIMITED_USER) => Err(Refused(
                "a limited user token is only valid inside a plugin token".into(),
            )),
            other => Err(Refused(format!("unsupported token type {other:?}"))),
        }
    }

    /// Verifies signature (ES256 only), expiry and audience against the key set at `url`.
    async fn check<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        url: &str,
        audience: Option<&str>,
    ) -> Result<T, Refused> {
        if header.alg != Algorithm::ES256 {
            return Err(Refused(format!(
                "algorithm {:?} is not accepted (ES256 only)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| Refused("token has no kid".into()))?;
        let key = self.key(url, kid).await?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_required_spec_claims(&["exp", "sub"]);
        match audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        jsonwebtoken::decode::<T>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| Refused(format!("token rejected: {e}")))
    }

    /// The key `kid` from the set at `url`, refetching (rate limited) when it is unknown.
    async fn key(&self, url: &str, kid: &str) -> Result<DecodingKey, Refused> {
        let mut cache = self.cache.lock().await;
        let fresh_enough = cache
            .get(url)
            .is_some_and(|c| c.fetched.elapsed() < self.refetch_every);
        let known = cache.get(url).and_then(|c| c.keys.find(kid).cloned());
        let jwk = match known {
            Some(j) => j,
            None if fresh_enough => return Err(Refused(format!("unknown key id {kid:?}"))),
            None => {
                let keys: JwkSet = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| Refused(format!("cannot fetch Backstage keys from {url}: {e}")))?
                    .json()
                    .await
                    .map_err(|e| {
                        Refused(format!("Backstage keys at {url} are not a JWK set: {e}"))
                    })?;
                let found = keys.find(kid).cloned();
                cache.insert(
                    url.to_owned(),
                    Cached {
                        keys,
                        fetched: Instant::now(),
                    },
                );
                found.ok_or_else(|| Refused(format!("unknown key id {kid:?}")))?
            }
        };
        DecodingKey::from_jwk(&jwk).map_err(|e| Refused(format!("unusable key {kid:?}: {e}")))
    }
}

/// Roles and groups of a Backstage user: every user is a developer; `auth.roles` maps user
/// and group refs to more; groups come from the token's ownership refs, the catalog and
/// `auth.groups`.
fn principal_for(
    user: &str,
    ent: &[String],
    mut groups: BTreeSet<String>,
    auth: &AuthSettings,
) -> Principal {
    groups.extend(ent.iter().filter(|e| e.starts_with("group:")).cloned());
    if let Some(extra) = auth.groups.get(user) {
        groups.extend(extra.iter().cloned());
    }
    let mut roles: BTreeSet<String> = ["developer".to_owned()].into();
    for (role, refs) in &auth.roles {
        if refs.iter().any(|r| r == user || groups.contains(r)) {
            roles.insert(role.clone());
        }
    }
    Principal {
        subject: user.to_owned(),
        roles,
        groups,
        via: None,
    }
}
