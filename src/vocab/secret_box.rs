//! Credentials at rest: AES-256-GCM under a key from configuration. Each secret is bound to
//! where it belongs (resource and name as associated data), so a ciphertext copied to another
//! row does not decrypt. Every sealed value records the id of its key (a short fingerprint,
//! never the key); previous keys only open.

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, Generate, KeyInit, Payload},
};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// An encrypted secret as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl Key {
    fn from_base64(key: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| {
                "must be base64 (generate one with `openssl rand -base64 32`)".to_owned()
            })?;
        if bytes.len() != 32 {
            return Err(format!("must decode to 32 bytes, not {}", bytes.len()));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|e| e.to_string())?;
        // Identifies the key (for rotation) without revealing it.
        let id: String = Sha256::digest(&bytes)
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self { id, cipher })
    }
}

/// The current key (seals and opens) and previous ones (open only).
pub struct SecretBox {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("SecretBox")
            .field("key_id", &self.current.id)
            .field("previous_key_ids", &self.previous_key_ids())
            .finish()
    }
}

impl SecretBox {
    /// From a base64-encoded 32-byte key (`openssl rand -base64 32`).
    pub fn from_base64(key: &str) -> Result<Self, String> {
        Ok(Self {
            current: Key::from_base64(key)?,
            previous: Vec::new(),
        })
    }

    /// Adds keys that only open (`secrets.previous_keys`). On a bad one: its index and why.
    pub fn with_previous<'a>(
        mut self,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, (usize, String)> {
        for (i, k) in keys.into_iter().enumerate() {
            let key = Key::from_base64(k).map_err(|e| (i, e))?;
            if key.id == self.current.id {
                return Err((i, "is secrets.key itself; list only older keys".into()));
            }
            if self.previous.iter().any(|p| p.id == key.id) {
                return Err((i, "is listed twice".into()));
            }
            self.previous.push(key);
        }
        Ok(self)
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_key() -> String {
        let key: [u8; 32] = rand::random();
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// The id of the key everything is sealed with.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    pub fn previous_key_ids(&self) -> Vec<&str> {
        self.previous.iter().map(|k| k.id.as_str()).collect()
    }

    /// Whether values sealed under `key_id` can be opened.
    pub fn knows(&self, key_id: &str) -> bool {
        self.key(key_id).is_some()
    }

    fn key(&self, key_id: &str) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
    }

    pub fn seal(&self, plaintext: &[u8], context: &str) -> Sealed {
        let nonce = Nonce::generate();
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        Sealed {
            key_id: self.current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<Vec<u8>, String> {
        let Some(key) = self.key(&sealed.key_id) else {
            return Err(format!(
                "sealed with key {}, which is neither secrets.key ({}) nor in secrets.previous_keys",
                sealed.key_id, self.current.id
            ));
        };
        let nonce = Nonce::try_from(sealed.nonce.as_slice())
            .map_err(|_| "stored nonce has the wrong length".to_owned())?;
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed.ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| {
                "cannot decrypt: wrong key, or the secret was tampered with or moved".to_owned()
            })
    }

    /// `sealed` opened and sealed again with the current key; `None` when it already is.
    pub fn reseal(&self, sealed: &Sealed, context: &str) -> Result<Option<Sealed>, String> {
        if sealed.key_id == self.current.id {
            return Ok(None);
        }
        let plain = self.open(sealed, context)?;
        Ok(Some(self.seal(&plain, context)))
    }
}

/// Where a credential row is bound (its resource and name), as the engine seals it.
pub fn secret_context(resource_id: &str, name: &str) -> String {
    format!("{resource_id}/{name}")
}

/// Where a signing key's private half is bound (its kid), so a ciphertext moved to another
/// row does not open.
pub fn signing_key_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}
