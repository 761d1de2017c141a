//! Paved's own ES256 keys and the tokens it signs with them for calls to Backstage. The keys
//! are published at `/api/<plugin id>/.backstage/auth/v1/jwks.json` and sign either:
//!
//! - external-access tokens (`backstage.auth: external-jwks`, the way Backstage documents for
//!   services outside it): header `{alg: ES256, kid, typ: JWT}`, claims `{iss, aud, sub, iat,
//!   exp}`, verified by a `backend.auth.externalAccess` entry of `type: jwks` (Backstage's
//!   `jwksTokenHandler`: `jose.jwtVerify` with the entry's `algorithm`, `issuer`, `audience`);
//! - plugin tokens (`backstage.auth: plugin`, docs/backstage-protocol.md §4.4 D, verified on the
//!   wire in backstage-live.md §5): header `{typ: vnd.backstage.plugin, alg: ES256, kid}`,
//!   claims `{sub: <paved's plugin id>, aud: <target plugin>, iat, exp}`, which Backstage checks
//!   against the JWKS it finds through discovery.
//!
//! Keys live in the database (private half sealed with `secrets.key`) so every replica signs
//! with keys the others publish. A new key is made every `backstage.key_rotation_hours`; old
//! ones stay published until every token they signed has expired.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use sea_orm::{ConnectionTrait, DbErr};
use serde_json::{Value, json};

use crate::{
    db::{self, entities::signing_key},
    vocab::secret_box::{Sealed, SecretBox},
};

/// Tokens are signed fresh for each call; a short life limits what a leaked one is worth.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(600);

struct CurrentKey {
    kid: String,
    pair: EcdsaKeyPair,
}

pub struct Signer {
    plugin_id: String,
    rotate_every: chrono::Duration,
    current: RwLock<Option<Arc<CurrentKey>>>,
    rng: SystemRandom,
}

impl Signer {
    pub fn new(plugin_id: &str, rotate_every: Duration) -> Self {
        Self {
            plugin_id: plugin_id.to_owned(),
            rotate_every: chrono::Duration::from_std(rotate_every)
                .unwrap_or(chrono::Duration::hours(24)),
            current: RwLock::new(None),
            rng: SystemRandom::new(),
        }
    }

    /// Whether a key is loaded: until then paved cannot call Backstage (readiness waits).
    pub fn has_key(&self) -> bool {
        self.current.read().expect("signer lock poisoned").is_some()
    }

    /// A plugin token for a call to Backstage plugin `audience` (e.g. `catalog`), or `None`
    /// before the first key was loaded (the database may still be coming up).
    pub fn token_for(&self, audience: &str) -> Option<String> {
        let now = Utc::now().timestamp();
        self.sign(
            Some("vnd.backstage.plugin"),
            json!({
                "sub": self.plugin_id,
                "aud": audience,
                "iat": now,
                "exp": now + TOKEN_LIFETIME.as_secs() as i64,
            }),
        )
    }

    /// An external-access token for a `type: jwks` entry, or `None` before the first key was
    /// loaded. `typ` is plain JWT: Backstage offers a token to its externalAccess entries only
    /// when it is neither a plugin nor a user token (`typ` vnd.backstage.*, or `aud: backstage`).
    pub fn external_token(&self, claims: &ExternalClaims) -> Option<String> {
        let now = Utc::now().timestamp();
        self.sign(
            Some("JWT"),
            json!({
                "iss": claims.issuer,
                "aud": claims.audience,
                "sub": claims.subject,
                "iat": now,
                "exp": now + TOKEN_LIFETIME.as_secs() as i64,
            }),
        )
    }

    fn sign(&self, typ: Option<&str>, claims: Value) -> Option<String> {
        let key = self.current.read().expect("signer lock poisoned").clone()?;
        let mut header = json!({"alg": "ES256", "kid": key.kid});
        if let Some(t) = typ {
            header["typ"] = json!(t);
        }
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        // FIXED signing gives JOSE's raw r‖s encoding.
        let sig = key
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ECDSA signing with a valid key does not fail");
        Some(format!("{signing_input}.{}", B64.encode(sig.as_ref())))
    }

    /// Makes a key if none is younger than the rotation interval, forgets retired ones, and
    /// signs with the newest (possibly made by another replica).
    pub async fn rotate_if_due<C: ConnectionTrait>(
        &self,
        db: &C,
        secrets: &SecretBox,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        db::signing_keys::forget_retired(db, now).await?;
        let newest = db::signing_keys::newest(db).await?;
        let row = match newest {
            Some(k) if now - k.created_at < self.rotate_every => k,
            _ => self.create(db, secrets, now).await?,
        };
        let loaded = self
            .current
            .read()
            .expect("signer lock poisoned")
            .as_ref()
            .is_some_and(|c| c.kid == row.kid);
        if !loaded {
            let pkcs8 = secrets
                .open(
                    &Sealed {
                        key_id: row.key_id.clone(),
                        nonce: row.nonce.clone(),
                        ciphertext: row.ciphertext.clone(),
                    },
                    &sealed_context(&row.kid),
                )
                .map_err(|e| DbErr::Custom(format!("signing key {}: {e}", row.kid)))?;
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &self.rng)
                    .map_err(|e| DbErr::Custom(format!("signing key {}: {e}", row.kid)))?;
            tracing::info!(kid = %row.kid, created_at = %row.created_at, "signing Backstage tokens with key");
            *self.current.write().expect("signer lock poisoned") =
                Some(Arc::new(CurrentKey { kid: row.kid, pair }));
        }
        Ok(())
    }

    async fn create<C: ConnectionTrait>(
        &self,
        db: &C,
        secrets: &SecretBox,
        now: DateTime<Utc>,
    ) -> Result<signing_key::Model, DbErr> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.rng)
            .map_err(|e| DbErr::Custom(format!("cannot generate a signing key: {e}")))?;
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &self.rng)
                .map_err(|e| DbErr::Custom(format!("generated signing key unusable: {e}")))?;
        let kid = uuid::Uuid::new_v4().to_string();
        // Uncompressed point: 0x04 ‖ x ‖ y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        });
        let sealed = secrets.seal(pkcs8.as_ref(), &sealed_context(&kid));
        // Published while it signs, then until its last token expires (plus clock skew).
        let retire_at = now
            + self.rotate_every
            + chrono::Duration::from_std(TOKEN_LIFETIME).expect("small duration")
            + chrono::Duration::minutes(5);
        let row = signing_key::Model {
            kid,
            key_id: sealed.key_id,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            public_jwk: jwk,
            created_at: now,
            retire_at,
        };
        db::signing_keys::insert(db, &row).await?;
        tracing::info!(kid = %row.kid, %retire_at, "generated a new signing key");
        Ok(row)
    }
}

/// Every key not yet retired, read from the database so a key another replica just made is
/// published by all of them.
pub async fn published_keys<C: ConnectionTrait>(db: &C) -> Result<Value, DbErr> {
    let keys: Vec<Value> = db::signing_keys::published(db, Utc::now())
        .await?
        .into_iter()
        .map(|k| k.public_jwk)
        .collect();
    Ok(json!({ "keys": keys }))
}

pub use crate::vocab::secret_box::signing_key_context as sealed_context;

/// The claims of paved's external-access tokens (`backstage.issuer`, `.audience`, `.subject`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalClaims {
    pub issuer: String,
    pub audience: String,
    pub subject: String,
}

/// How paved authenticates its own calls to Backstage (`backstage.auth`).
#[derive(Clone)]
pub enum Outgoing {
    /// A static `backend.auth.externalAccess` token from `backstage.token`.
    Static(Arc<str>),
    /// Tokens for an externalAccess entry of `type: jwks` (the default).
    External(Arc<Signer>, Arc<ExternalClaims>),
    /// Backstage plugin tokens paved signs as its plugin id.
    Plugin(Arc<Signer>),
}

impl Outgoing {
    /// The mode `settings` asks for; signing modes start without a key (see
    /// [`Signer::rotate_if_due`]).
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        use crate::config::BackstageAuth;
        let signer = || {
            Arc::new(Signer::new(
                &settings.backstage.plugin_id,
                Duration::from_secs(settings.backstage.key_rotation_hours * 3600),
            ))
        };
        match (settings.backstage_auth(), &settings.backstage.token) {
            (BackstageAuth::Static, Some(t)) => Outgoing::Static(t.expose().into()),
            (BackstageAuth::Plugin, _) => Outgoing::Plugin(signer()),
            // Static without a token does not pass config validation.
            _ => Outgoing::External(
                signer(),
                Arc::new(ExternalClaims {
                    issuer: settings.backstage.issuer.clone(),
                    audience: settings.backstage_audience().unwrap_or_default(),
                    subject: settings.backstage.subject.clone(),
                }),
            ),
        }
    }

    /// The bearer token for a call to Backstage plugin `audience` (only plugin tokens name it).
    pub fn bearer_for(&self, audience: &str) -> Option<String> {
        match self {
            Outgoing::Static(t) => Some(t.to_string()),
            Outgoing::External(s, claims) => s.external_token(claims),
            Outgoing::Plugin(s) => s.token_for(audience),
        }
    }

    /// The key holder, when paved signs its tokens itself.
    pub fn signer(&self) -> Option<&Arc<Signer>> {
        match self {
            Outgoing::Static(_) => None,
            Outgoing::External(s, _) | Outgoing::Plugin(s) => Some(s),
        }
    }
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.write_str(match self {
            Outgoing::Static(_) => "Outgoing::Static",
            Outgoing::External(..) => "Outgoing::External",
            Outgoing::Plugin(_) => "Outgoing::Plugin",
        })
    }
}

/// How a `paved` command outside the server (e.g. `paved catalog register`) calls Backstage:
/// as the server does, with a key from the database the server uses when paved signs (made
/// there if none exists yet; the server publishes every key in the database).
pub async fn outgoing_for(settings: &crate::config::Settings) -> anyhow::Result<Outgoing> {
    let outgoing = Outgoing::from_settings(settings);
    let Some(signer) = outgoing.signer() else {
        return Ok(outgoing);
    };
    let db = crate::db::connect(&settings.database).await?;
    if !crate::db::schema_is_current(&db).await? {
        anyhow::bail!(
            "paved's database schema is not current: run `paved migrate` (or start paved) first, or set backstage.auth: static with backstage.token"
        );
    }
    let secrets = crate::provisioning::secrets::secret_box(settings)?;
    // Never seal a new signing key with a key that is not the database's.
    crate::provisioning::secrets::check_secrets_key(&db, &secrets)
        .await
        .map_err(|e| anyhow::anyhow!(crate::vocab::redact::redact(&e.to_string())))?;
    signer.rotate_if_due(&db, &secrets).await?;
    db.close().await.ok();
    Ok(outgoing)
}
