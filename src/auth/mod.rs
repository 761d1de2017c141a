//! Who is calling, and what they may do.
//!
//! Backstage plugin and user tokens (verified against Backstage's JWKS, see [`backstage`]) and
//! static tokens from configuration (only their SHA-256 is configured) all produce a
//! [`Principal`]; a call without a token is the anonymous principal where that is allowed.

pub mod backstage;
pub mod groups;
pub mod signing;

use sha2::{Digest, Sha256};

use crate::{config::StaticToken, vocab::entity_ref::EntityRef};

use crate::vocab::principal::Principal;

/// A plugin calling without a user has exactly what configuration grants its subject
/// (`auth.roles` and `auth.groups` by `plugin:<id>`), nothing by default.
fn grant_plugin(p: &mut Principal, auth: &crate::config::AuthSettings) {
    for (role, refs) in &auth.roles {
        if refs.iter().any(|r| r == &p.subject) {
            p.roles.insert(*role);
        }
    }
    if let Some(groups) = auth.groups.get(&p.subject) {
        p.groups.extend(groups.iter().map(|g| {
            EntityRef::parse(g, "group")
                .map(|e| e.to_string())
                .unwrap_or_else(|_| g.clone())
        }));
    }
}

/// Static tokens, hashed, ready to match.
#[derive(Debug, Clone, Default)]
pub struct StaticTokens(Vec<(String, Principal)>);

impl StaticTokens {
    pub fn new(tokens: &[StaticToken]) -> Self {
        Self(
            tokens
                .iter()
                .map(|t| {
                    (
                        t.sha256.clone(),
                        Principal {
                            subject: t.subject.to_string(),
                            roles: t.roles.iter().copied().collect(),
                            groups: t.groups.iter().map(|g| g.to_string()).collect(),
                            via: None,
                        },
                    )
                })
                .collect(),
        )
    }

    fn find(&self, token: &str) -> Option<&Principal> {
        let digest = sha256_hex(token);
        // Compare every entry (no early exit on the hash) so timing says nothing about which.
        let mut found = None;
        for (hash, p) in &self.0 {
            if constant_time_eq(hash.as_bytes(), digest.as_bytes()) {
                found = Some(p);
            }
        }
        found
    }
}

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `token` is the one whose SHA-256 (lower-case hex) is configured, compared in
/// constant time: configuration holds only hashes of tokens.
pub fn matches_hash(token: &str, sha256: &str) -> bool {
    constant_time_eq(sha256.as_bytes(), sha256_hex(token).as_bytes())
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Why a caller could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Missing credentials")]
    Missing,
    #[error("Authorization must be `Bearer <token>`")]
    Malformed,
    #[error("Backstage tokens need backstage.base_url to be configured")]
    BackstageNotConfigured,
    /// A token that is presented but not accepted (never downgraded to anonymous).
    #[error("{0}")]
    Refused(String),
    #[error("unknown or invalid token")]
    Unknown,
    /// Backstage could not be asked (its keys or the user's teams): try again.
    #[error("{0}")]
    Unavailable(String),
}

/// What identifying a caller needs.
pub struct Authenticator<'a> {
    pub anonymous_allowed: bool,
    pub backstage: Option<&'a backstage::BackstageTokens>,
    pub settings: &'a crate::config::AuthSettings,
    pub tokens: &'a StaticTokens,
}

impl Authenticator<'_> {
    /// The caller of a request with these headers. No `Authorization` header is the anonymous
    /// caller where that is allowed; a token that is presented but unknown is refused.
    pub async fn caller(&self, headers: &axum::http::HeaderMap) -> Result<Principal, AuthError> {
        if !headers.contains_key(axum::http::header::AUTHORIZATION) {
            return if self.anonymous_allowed {
                Ok(Principal::anonymous())
            } else {
                Err(AuthError::Missing)
            };
        }
        let token = bearer(headers).ok_or(AuthError::Malformed)?;
        if backstage::BackstageTokens::claims_to_be_backstage(token) {
            let verifier = self.backstage.ok_or(AuthError::BackstageNotConfigured)?;
            let mut p = verifier
                .verify(token, self.settings)
                .await
                .map_err(|e| match e {
                    backstage::VerifyError::Refused(e) => {
                        tracing::info!(reason = %e, "Backstage token refused");
                        AuthError::Refused(e.to_string())
                    }
                    backstage::VerifyError::Unavailable(m) => AuthError::Unavailable(m),
                })?;
            if p.via.is_none() && p.subject.starts_with("plugin:") {
                grant_plugin(&mut p, self.settings);
            }
            return Ok(p);
        }
        self.tokens.find(token).cloned().ok_or(AuthError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_hash_only() {
        let hash: String = Sha256::digest(b"s3cret-token")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let tokens = StaticTokens::new(&[StaticToken {
            subject: EntityRef::parse("alice", "user").unwrap(),
            sha256: hash,
            roles: vec![crate::vocab::principal::Role::Lead],
            groups: vec![EntityRef::parse("team-a", "group").unwrap()],
        }]);
        let p = tokens.find("s3cret-token").unwrap();
        assert_eq!(p.subject, "user:default/alice");
        assert!(
            p.has_role(crate::vocab::principal::Role::Lead) && p.member_of("group:default/team-a")
        );
        assert!(tokens.find("s3cret-tokeN").is_none());
        assert!(tokens.find("").is_none());
    }
}
