//! Credentials at rest: AES-256-GCM under a key from configuration. Each secret is bound to
//! where it belongs (resource and name as associated data), so a ciphertext copied to another
//! row does not decrypt.

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

pub struct SecretBox {
    cipher: Aes256Gcm,
    key_id: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("SecretBox")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl SecretBox {
    /// From a base64-encoded 32-byte key (`openssl rand -base64 32`).
    pub fn from_base64(key: &str) -> Result<Self, String> {
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
        let key_id: String = Sha256::digest(&bytes)
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self { cipher, key_id })
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_key() -> String {
        let key: [u8; 32] = rand::random();
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn seal(&self, plaintext: &[u8], context: &str) -> Sealed {
        let nonce = Nonce::generate();
        let ciphertext = self
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
            key_id: self.key_id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<Vec<u8>, String> {
        if sealed.key_id != self.key_id {
            return Err(format!(
                "sealed with key {}, but the configured key is {}",
                sealed.key_id, self.key_id
            ));
        }
        let nonce = Nonce::try_from(sealed.nonce.as_slice())
            .map_err(|_| "stored nonce has the wrong length".to_owned())?;
        self.cipher
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
