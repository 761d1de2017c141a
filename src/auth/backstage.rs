//! Backstage's tokens (docs/backstage-protocol.md §4): plugin tokens the scaffolder sends when
//! it invokes paved's actions (ES256, `typ: vnd.backstage.plugin`, `aud` = paved's plugin id,
//! `sub` = the calling plugin, optional `obo` = the limited token of the user behind the task),
//! and user tokens sent directly by portal frontends and CLI users.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use serde_json::Value;

use super::{Principal, groups::CatalogGroups, signing::Outgoing};
use crate::{
    config::AuthSettings,
    vocab::{clock::Clock, principal::Role},
};

const PLUGIN: &str = "vnd.backstage.plugin";
const USER: &str = "vnd.backstage.user";
const LIMITED_USER: &str = "vnd.backstage.limited-user";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Why a Backstage token gives no caller.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token is not acceptable (401).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The token is fine but the caller's teams could not be read (503): answering with
    /// fewer teams than the user has would refuse what they may do, or hide their resources.
    #[error("{0}")]
    Unavailable(String),
}

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

pub struct BackstageTokens {
    base_url: String,
    plugin_id: String,
    allowed_callers: BTreeSet<String>,
    jwks: Arc<Jwks>,
    clock: Clock,
    leeway: i64,
    max_lifetime: i64,
    /// Users' teams from the catalog (`None` with `auth.catalog_groups_ttl_seconds: 0`).
    catalog_groups: Option<CatalogGroups>,
}

impl BackstageTokens {
    /// `clock` decides token expiry and the key sets' age (tests move a fixed one).
    pub fn new(
        base_url: &str,
        plugin_id: &str,
        auth: &AuthSettings,
        outgoing: Outgoing,
        clock: Clock,
    ) -> Self {
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
            jwks: Arc::new(Jwks {
                http,
                clock: clock.clone(),
                refetch_every: secs(auth.jwks_refetch_seconds),
                max_age: secs(auth.jwks_max_age_seconds),
                entries: Mutex::new(HashMap::new()),
                fetch_locks: crate::vocab::keyed_locks::KeyedLocks::new(),
                fetches: AtomicU64::new(0),
            }),
            clock,
            leeway: auth.token_leeway_seconds as i64,
            max_lifetime: auth.token_max_lifetime_seconds as i64,
            catalog_groups,
        }
    }

    /// How many key-set fetches were started (successful or not) since start.
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks.fetches.load(Ordering::Relaxed)
    }

    async fn catalog_groups(&self, user: &str) -> Result<BTreeSet<String>, VerifyError> {
        match &self.catalog_groups {
            Some(g) => g.of(user).await.map_err(VerifyError::Unavailable),
            None => Ok(BTreeSet::new()),
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
    pub async fn verify(&self, token: &str, auth: &AuthSettings) -> Result<Principal, VerifyError> {
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
                    return Err(Refused("plugin token has an invalid subject".into()).into());
                }
                if !self.allowed_callers.contains(&caller) {
                    return Err(Refused(format!(
                        "calling plugin {caller:?} is not allowed (auth.backstage_callers)"
                    ))
                    .into());
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
                            return Err(Refused("obo must be a limited user token".into()).into());
                        }
                        let url = format!("{}/api/auth/.well-known/jwks.json", self.base_url);
                        let user: UserClaims = self.check(&obo, &obo_header, &url, None).await?;
                        let teams = self.catalog_groups(&user.sub).await?;
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
                let teams = self.catalog_groups(&user.sub).await?;
                Ok(principal_for(&user.sub, &user.ent, teams, auth))
            }
            Some(LIMITED_USER) => Err(Refused(
                "a limited user token is only valid inside a plugin token".into(),
            )
            .into()),
            other => Err(Refused(format!("unsupported token type {other:?}")).into()),
        }
    }

    /// Verifies signature (ES256 only), audience and the token's times against the key set at
    /// `url`.
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
        let key = Jwks::key(&self.jwks, url, kid).await?;
        let mut v = Validation::new(Algorithm::ES256);
        // Times are checked below against paved's clock with paved's leeway (the library's
        // default leeway is 60 s and it ignores `nbf`).
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_required_spec_claims(&["sub"]);
        match audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| Refused(format!("token rejected: {e}")))?;
        self.check_times(&claims)?;
        serde_json::from_value(claims).map_err(|e| Refused(format!("token rejected: {e}")))
    }

    /// `exp` and `iat` are required (Backstage always sets both), `nbf` is honoured when
    /// present, each within `auth.token_leeway_seconds` of paved's clock; and a token may not
    /// live longer than Backstage issues them (`auth.token_max_lifetime_seconds`): a long-lived
    /// token is a stolen signing key's favourite.
    fn check_times(&self, claims: &Value) -> Result<(), Refused> {
        let now = self.clock.now().timestamp();
        let leeway = self.leeway;
        let time = |name: &str| -> Result<Option<i64>, Refused> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                    .map(Some)
                    .ok_or_else(|| {
                        Refused(format!("token rejected: {name} must be a NumericDate"))
                    }),
            }
        };
        let exp = time("exp")?.ok_or_else(|| Refused("token rejected: no exp".into()))?;
        let iat = time("iat")?.ok_or_else(|| Refused("token rejected: no iat".into()))?;
        if now >= exp.saturating_add(leeway) {
            return Err(Refused(format!(
                "token expired {} s ago (leeway {leeway} s, auth.token_leeway_seconds)",
                now.saturating_sub(exp)
            )));
        }
        if let Some(nbf) = time("nbf")?
            && nbf > now.saturating_add(leeway)
        {
            return Err(Refused(format!(
                "token not valid yet: nbf is {} s ahead (leeway {leeway} s, auth.token_leeway_seconds)",
                nbf - now
            )));
        }
        if iat > now.saturating_add(leeway) {
            return Err(Refused(format!(
                "token issued in the future: iat is {} s ahead (leeway {leeway} s, auth.token_leeway_seconds)",
                iat - now
            )));
        }
        let lifetime = exp.saturating_sub(iat);
        if lifetime > self.max_lifetime {
            return Err(Refused(format!(
                "token lives {lifetime} s, longer than Backstage issues tokens (at most {} s, auth.token_max_lifetime_seconds)",
                self.max_lifetime
            )));
        }
        Ok(())
    }
}

fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(s.min(i64::MAX as u64 / 1000) as i64)
}

/// Backstage's key sets by URL. Verifying with a known key never waits for the network: the
/// state lock is synchronous and never held across an `.await`. A fetch happens only for an
/// unknown `kid` or a set older than `max_age`, at most once per `refetch_every` per URL
/// whatever its outcome (so forged kids or a failing Backstage cannot make paved hammer it),
/// and one at a time per URL (callers that need it wait for that one fetch, nobody else does).
struct Jwks {
    http: reqwest::Client,
    clock: Clock,
    refetch_every: chrono::Duration,
    max_age: chrono::Duration,
    entries: Mutex<HashMap<String, Entry>>,
    /// One fetch at a time per URL.
    fetch_locks: crate::vocab::keyed_locks::KeyedLocks,
    fetches: AtomicU64,
}

#[derive(Default)]
struct Entry {
    keys: Option<KeySet>,
    last_attempt: Option<DateTime<Utc>>,
    last_error: Option<String>,
    /// A fetch is under way: whoever needs it waits for that one rather than being refused.
    in_flight: bool,
}

struct KeySet {
    keys: Arc<JwkSet>,
    fetched_at: DateTime<Utc>,
}

enum Lookup {
    Found(Box<jsonwebtoken::jwk::Jwk>),
    Refused(Refused),
    Fetch,
}

impl Jwks {
    /// The key `kid` from the set at `url`.
    async fn key(this: &Arc<Self>, url: &str, kid: &str) -> Result<DecodingKey, Refused> {
        let jwk = match this.lookup(url, kid, true) {
            Lookup::Found(j) => j,
            Lookup::Refused(r) => return Err(r),
            Lookup::Fetch => {
                let guard = this.fetch_locks.lock(url).await;
                // Whoever held the lock may just have fetched what we need (or failed to).
                match this.lookup(url, kid, false) {
                    Lookup::Found(j) => j,
                    Lookup::Refused(r) => return Err(r),
                    Lookup::Fetch => {
                        {
                            let mut entries = this.entries.lock().expect("jwks lock poisoned");
                            let entry = entries.entry(url.to_owned()).or_default();
                            entry.last_attempt = Some(this.clock.now());
                            entry.in_flight = true;
                        }
                        // Spawned, so a caller that gives up (client gone) does not abort
                        // the fetch everyone else is waiting for.
                        let (me, u) = (this.clone(), url.to_owned());
                        let done = tokio::spawn(async move {
                            let result = me.fetch(&u).await;
                            me.store(&u, result);
                            drop(guard);
                        });
                        let _ = done.await;
                        match this.lookup(url, kid, false) {
                            Lookup::Found(j) => j,
                            Lookup::Refused(r) => return Err(r),
                            Lookup::Fetch => {
                                return Err(Refused(format!(
                                    "cannot fetch Backstage keys from {url}"
                                )));
                            }
                        }
                    }
                }
            }
        };
        DecodingKey::from_jwk(&jwk).map_err(|e| Refused(format!("unusable key {kid:?}: {e}")))
    }

    /// What the cache says about `kid` right now, without waiting for anything. `join`: a
    /// fetch under way counts as one to wait for (false once holding the fetch lock, when no
    /// other fetch can be under way).
    fn lookup(&self, url: &str, kid: &str, join: bool) -> Lookup {
        let now = self.clock.now();
        let entries = self.entries.lock().expect("jwks lock poisoned");
        let entry = entries.get(url);
        // Past the rate limit, or joining the fetch under way. A clock that went back counts
        // as time passed, so it cannot stretch how long a set is trusted.
        let may_fetch = (join && entry.is_some_and(|e| e.in_flight))
            || entry
                .and_then(|e| e.last_attempt)
                .is_none_or(|at| now - at >= self.refetch_every || now < at);
        let fresh = entry
            .and_then(|e| e.keys.as_ref())
            .filter(|k| now >= k.fetched_at && now - k.fetched_at < self.max_age);
        match fresh {
            Some(set) => match set.keys.find(kid) {
                Some(j) => Lookup::Found(Box::new(j.clone())),
                None if may_fetch => Lookup::Fetch,
                None => Lookup::Refused(Refused(format!("unknown key id {kid:?}"))),
            },
            // No set yet, or one too old to trust: a key Backstage removed must stop working.
            None if may_fetch => Lookup::Fetch,
            None => Lookup::Refused(Refused(match entry.and_then(|e| e.last_error.as_ref()) {
                Some(e) => format!(
                    "{e} (next attempt within {} s)",
                    self.refetch_every.num_seconds()
                ),
                None => format!("cannot verify: Backstage keys from {url} are out of date"),
            })),
        }
    }

    async fn fetch(&self, url: &str) -> Result<JwkSet, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("cannot fetch Backstage keys from {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("Backstage keys at {url} are not a JWK set: {e}"))
    }

    fn store(&self, url: &str, result: Result<JwkSet, String>) {
        let now = self.clock.now();
        let mut entries = self.entries.lock().expect("jwks lock poisoned");
        let entry = entries.entry(url.to_owned()).or_default();
        entry.in_flight = false;
        match result {
            Ok(keys) => {
                tracing::debug!(url, keys = keys.keys.len(), "fetched Backstage keys");
                entry.keys = Some(KeySet {
                    keys: Arc::new(keys),
                    fetched_at: now,
                });
                entry.last_error = None;
            }
            // The old set stays until it is too old: one failed refetch (forged kid) must not
            // lock out valid tokens.
            Err(e) => {
                tracing::warn!(url, error = %e, "Backstage keys not refreshed");
                entry.last_error = Some(e);
            }
        }
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
    let mut roles: BTreeSet<Role> = [Role::Developer].into();
    for (role, refs) in &auth.roles {
        if refs.iter().any(|r| r == user || groups.contains(r)) {
            roles.insert(*role);
        }
    }
    Principal {
        subject: user.to_owned(),
        roles,
        groups,
        via: None,
    }
}
