//! Credentials at rest: AES-256-GCM under a key from configuration. Each secret is bound to
//! where it belongs (resource and name as associated data), so a ciphertext copied to another
//! row does not decrypt.
//!
//! Every sealed value records the id of its key (a short fingerprint, never the key). Values
//! are always sealed with `secrets.key`; `secrets.previous_keys` only open what older keys
//! sealed, until `paved secrets reseal` moved it to the current key. The `secret_keys` table
//! remembers which keys the database needs, so start-up refuses a wrong or changed key before
//! anything is sealed with it (see [`check_stored`]).

use std::collections::BTreeMap;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbErr};

use crate::db::{self, has_table};
use crate::vocab::secret_box::{Sealed, SecretBox, secret_context, signing_key_context};

const CHECK_PLAINTEXT: &[u8] = b"paved secrets.key check";

fn check_context(key_id: &str) -> String {
    format!("secret-key-check:{key_id}")
}

/// Why the configured keys do not fit the stored secrets.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error("{0}")]
    Mismatch(String),
    #[error("cannot read the stored secrets: {0}")]
    Db(#[from] DbErr),
}

/// The stored sealed values, by the id of the key that sealed them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// key id → number of sealed values (credentials and signing keys).
    pub values: BTreeMap<String, u64>,
    /// Keys the database recorded as needed (`secret_keys`), with or without values.
    pub recorded: Vec<String>,
    /// `secrets.key` is recorded in the database (false while its schema is not there yet:
    /// check again once it is).
    pub recorded_current: bool,
}

impl KeyUse {
    /// Every key id the database needs.
    pub fn needed(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.values.keys().cloned().collect();
        for r in &self.recorded {
            if !ids.contains(r) {
                ids.push(r.clone());
            }
        }
        ids.sort();
        ids
    }
}

/// A sealed value of each kind per key id, to prove the configured key really opens it (a
/// fingerprint alone could collide).
struct Sample {
    sealed: Sealed,
    context: String,
}

async fn key_use<C: ConnectionTrait>(db: &C) -> Result<(KeyUse, BTreeMap<String, Sample>), DbErr> {
    let mut usage = KeyUse::default();
    let mut samples: BTreeMap<String, Sample> = BTreeMap::new();
    if has_table(db, "secrets").await? {
        for (id, n) in db::secrets::count_by_key(db).await? {
            *usage.values.entry(id.clone()).or_default() += n as u64;
            if let Some(r) = db::secrets::one_sealed_with(db, &id).await? {
                let (resource_id, name) = r.key;
                samples.entry(id).or_insert(Sample {
                    context: secret_context(&resource_id, &name),
                    sealed: r.sealed,
                });
            }
        }
    }
    if has_table(db, "signing_keys").await? {
        for (id, n) in db::secrets::signing_keys_by_key(db).await? {
            *usage.values.entry(id.clone()).or_default() += n as u64;
            if samples.contains_key(&id) {
                continue;
            }
            if let Some(r) = db::secrets::one_signing_key_sealed_with(db, &id).await? {
                samples.insert(
                    id,
                    Sample {
                        context: signing_key_context(&r.key),
                        sealed: r.sealed,
                    },
                );
            }
        }
    }
    // Terraform states: counted (a key sealing one is still needed); the key-check values
    // prove the key.
    if has_table(db, "terraform_states").await? {
        for (id, n) in db::terraform::count_by_key(db).await? {
            *usage.values.entry(id).or_default() += n as u64;
        }
    }
    if has_table(db, "secret_keys").await? {
        for check in db::secrets::key_checks(db).await? {
            usage.recorded.push(check.key_id.clone());
            // The check value is the better proof: it is always there for a recorded key.
            samples.insert(
                check.key_id.clone(),
                Sample {
                    context: check_context(&check.key_id),
                    sealed: check,
                },
            );
        }
    }
    Ok((usage, samples))
}

/// Checks that `secrets` opens everything stored (credentials, signing keys, the key-check
/// values), then records `secrets.key` as needed by the database, so a different key is
/// refused from now on even before anything else is sealed. A missing table (fresh database,
/// migrations pending) holds nothing.
///
/// The error names the key ids the stored values need, never a key.
pub async fn check_stored<C: ConnectionTrait>(
    db: &C,
    secrets: &SecretBox,
) -> Result<KeyUse, KeyCheckError> {
    let (usage, samples) = key_use(db).await?;
    let missing: Vec<String> = usage
        .needed()
        .into_iter()
        .filter(|id| !secrets.knows(id))
        .collect();
    if !missing.is_empty() {
        let described: Vec<String> = missing
            .iter()
            .map(|id| match usage.values.get(id) {
                Some(n) => format!("{id} ({n} sealed values)"),
                None => format!("{id} (recorded at an earlier start)"),
            })
            .collect();
        let previous = secrets.previous_key_ids();
        return Err(KeyCheckError::Mismatch(format!(
            "secrets.key: the stored secrets need key {}, but secrets.key is {}{}: set secrets.key to the key with id {} (or, to rotate, keep it in secrets.previous_keys and run `paved secrets reseal`)",
            described.join(", "),
            secrets.key_id(),
            if previous.is_empty() {
                " and secrets.previous_keys is empty".to_owned()
            } else {
                format!(" and secrets.previous_keys are {}", previous.join(", "))
            },
            missing.join(", ")
        )));
    }
    for (id, sample) in &samples {
        if secrets.open(&sample.sealed, &sample.context).is_err() {
            return Err(KeyCheckError::Mismatch(format!(
                "secrets.key: the configured key with id {id} does not open the values stored under that id (a different key with the same fingerprint, or tampered data); refusing to seal anything with it"
            )));
        }
    }
    let mut usage = usage;
    if !has_table(db, "secret_keys").await? {
        return Ok(usage);
    }
    if !usage.recorded.iter().any(|r| r == secrets.key_id()) {
        let check = secrets.seal(CHECK_PLAINTEXT, &check_context(secrets.key_id()));
        // Another replica may record the same key at the same time.
        db::secrets::record_key_check(db, check, Utc::now()).await?;
    }
    usage.recorded_current = true;
    Ok(usage)
}

/// What `paved secrets reseal` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resealed {
    pub credentials: u64,
    pub signing_keys: u64,
    pub terraform_states: u64,
    /// Previous keys nothing is sealed with any more (safe to drop from configuration).
    pub released: Vec<String>,
    /// Key ids that still seal values (the current key, and any written meanwhile).
    pub still_needed: Vec<String>,
}

/// Re-seals with `secrets.key` every stored value sealed with another key, then forgets the
/// keys nothing needs any more. A value that does not open stops the run before anything is
/// written for it: nothing is ever sealed from a wrong plaintext.
pub async fn reseal_all<C: ConnectionTrait>(
    db: &C,
    secrets: &SecretBox,
) -> Result<Resealed, KeyCheckError> {
    check_stored(db, secrets).await?;
    let current = secrets.key_id().to_owned();
    let mut out = Resealed::default();
    // Paged by primary key, so rows written meanwhile cannot keep the loop going.
    let mut after = String::new();
    loop {
        let page = db::secrets::page_not_sealed_with(db, &current, &after, 200).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for c in page {
            let context = secret_context(&c.resource_id, &c.name);
            let Some(new) = secrets.reseal(&c.sealed, &context).map_err(|e| {
                KeyCheckError::Mismatch(format!(
                    "secret {} of resource {}: {e}",
                    c.name, c.resource_id
                ))
            })?
            else {
                continue;
            };
            // Only if the row still holds what was opened (the engine may have replaced it).
            if db::secrets::reseal(db, &c, new).await? {
                out.credentials += 1;
            }
        }
    }
    for r in db::secrets::signing_keys_not_sealed_with(db, &current).await? {
        let context = signing_key_context(&r.key);
        let Some(new) = secrets
            .reseal(&r.sealed, &context)
            .map_err(|e| KeyCheckError::Mismatch(format!("signing key {}: {e}", r.key)))?
        else {
            continue;
        };
        if db::secrets::reseal_signing_key(db, &r.key, &r.sealed, new).await? {
            out.signing_keys += 1;
        }
    }
    let mut after = String::new();
    loop {
        let page = db::terraform::page_not_sealed_with(db, &current, &after, 200).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for v in page {
            let context = super::terraform_state::context(&v.resource_id, &v.part, v.version);
            let sealed = db::terraform::sealed_of(&v);
            let Some(new) = secrets.reseal(&sealed, &context).map_err(|e| {
                KeyCheckError::Mismatch(format!(
                    "terraform state {} version {} of resource {}: {e}",
                    v.part, v.version, v.resource_id
                ))
            })?
            else {
                continue;
            };
            if db::terraform::reseal(db, &v, new).await? {
                out.terraform_states += 1;
            }
        }
    }
    let (usage, _) = key_use(db).await?;
    for id in usage.recorded.iter().filter(|id| **id != current) {
        if !usage.values.contains_key(id) {
            db::secrets::forget_key(db, id).await?;
            out.released.push(id.clone());
        }
    }
    for id in secrets.previous_key_ids() {
        if !usage.values.contains_key(id) && !out.released.iter().any(|r| r == id) {
            out.released.push(id.to_owned());
        }
    }
    out.released.sort();
    out.still_needed = usage.values.keys().cloned().collect();
    Ok(out)
}

/// Checks the configured keys against what the database stores (and records `secrets.key`
/// there). A wrong or changed key is an error naming the key ids needed.
/// Ok(false): nothing contradicts the key, but the schema is not there yet to record it.
pub async fn check_secrets_key(
    db: &sea_orm::DatabaseConnection,
    secrets: &SecretBox,
) -> Result<bool, KeyCheckError> {
    let usage = check_stored(db, secrets).await?;
    if !usage.recorded_current {
        return Ok(false);
    }
    for id in secrets.previous_key_ids() {
        match usage.values.get(id) {
            Some(n) => tracing::warn!(
                key_id = id,
                values = n,
                "values are still sealed with a previous secrets key; run `paved secrets reseal`"
            ),
            None => tracing::info!(
                key_id = id,
                "no stored value needs this previous secrets key; it can be removed from secrets.previous_keys"
            ),
        }
    }
    tracing::info!(
        key_id = secrets.key_id(),
        "secrets key verified against the stored secrets"
    );
    Ok(true)
}

/// The credentials keys: `secrets.key` (or, on the embedded SQLite default, a key generated
/// once and kept in `.paved/secrets.key`; config validation refuses the rest without one) and
/// `secrets.previous_keys` for reading what older keys sealed.
pub fn secret_box(settings: &crate::config::Settings) -> anyhow::Result<SecretBox> {
    let current = match &settings.secrets.key {
        Some(k) => {
            SecretBox::from_base64(k.expose()).map_err(|e| anyhow::anyhow!("secrets.key: {e}"))?
        }
        None => {
            let path = std::path::Path::new(".paved/secrets.key");
            if !path.exists() {
                std::fs::create_dir_all(".paved")?;
                std::fs::write(path, SecretBox::generate_key())?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
                }
                tracing::warn!(path = %path.display(), "generated a local secrets key for the embedded default; set secrets.key in production");
            }
            let key = std::fs::read_to_string(path)?;
            SecretBox::from_base64(&key).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
    };
    current
        .with_previous(
            settings
                .secrets
                .previous_keys
                .iter()
                .map(crate::config::Secret::expose),
        )
        .map_err(|(i, e)| anyhow::anyhow!("secrets.previous_keys[{i}]: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_in_its_context() {
        let b = SecretBox::from_base64(&SecretBox::generate_key()).unwrap();
        let s = b.seal(b"hunter2", "resource-1/password");
        assert_ne!(s.ciphertext, b"hunter2");
        assert_eq!(b.open(&s, "resource-1/password").unwrap(), b"hunter2");
        assert!(
            b.open(&s, "resource-2/password").is_err(),
            "moved to another row"
        );
        let mut tampered = s.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(b.open(&tampered, "resource-1/password").is_err());
        let other = SecretBox::from_base64(&SecretBox::generate_key()).unwrap();
        assert!(
            other
                .open(&s, "resource-1/password")
                .unwrap_err()
                .contains("sealed with key")
        );
        assert_ne!(
            b.seal(b"x", "c").nonce,
            b.seal(b"x", "c").nonce,
            "fresh nonce each time"
        );
    }

    #[test]
    fn previous_keys_only_open_and_reseal_moves_to_the_current_key() {
        let (old_key, new_key) = (SecretBox::generate_key(), SecretBox::generate_key());
        let old = SecretBox::from_base64(&old_key).unwrap();
        let sealed = old.seal(b"hunter2", "r/password");
        let rotated = SecretBox::from_base64(&new_key)
            .unwrap()
            .with_previous([old_key.as_str()])
            .unwrap();
        assert_eq!(rotated.previous_key_ids(), vec![old.key_id()]);
        assert_eq!(rotated.open(&sealed, "r/password").unwrap(), b"hunter2");
        assert_eq!(
            rotated.seal(b"x", "c").key_id,
            rotated.key_id(),
            "sealing uses secrets.key"
        );
        let moved = rotated.reseal(&sealed, "r/password").unwrap().unwrap();
        assert_eq!(moved.key_id, rotated.key_id());
        assert!(rotated.reseal(&moved, "r/password").unwrap().is_none());
        let new_only = SecretBox::from_base64(&new_key).unwrap();
        assert_eq!(new_only.open(&moved, "r/password").unwrap(), b"hunter2");
        assert!(
            new_only
                .open(&sealed, "r/password")
                .unwrap_err()
                .contains("nor in secrets.previous_keys")
        );
        // A value that does not open is never re-sealed.
        assert!(new_only.reseal(&sealed, "r/password").is_err());
        assert!(
            !format!("{rotated:?}").contains(&old_key)
                && !format!("{rotated:?}").contains(&new_key)
        );
    }

    #[test]
    fn bad_keys_are_refused_by_rule() {
        assert!(
            SecretBox::from_base64("not base64!")
                .unwrap_err()
                .contains("base64")
        );
        assert!(
            SecretBox::from_base64("c2hvcnQ=")
                .unwrap_err()
                .contains("32 bytes")
        );
        assert!(
            !format!(
                "{:?}",
                SecretBox::from_base64(&SecretBox::generate_key()).unwrap()
            )
            .contains("cipher")
        );
    }
}
