//! Who is calling, and what they may do.
//!
//! Backstage plugin and user tokens (verified against Backstage's JWKS, see [`backstage`]) and
//! static tokens from configuration (only their SHA-256 is configured) all produce a
//! [`Principal`]; a call without a token is the anonymous principal where that is allowed.

pub mod backstage;
pub mod groups;
pub mod signing;

use axum::{extract::FromRequestParts, http::request::Parts};
use sha2::{Digest, Sha256};

use crate::{
    app::AppState,
    config::StaticToken,
    error::{ApiError, ErrorName},
    vocab::entity_ref::EntityRef,
};

pub use crate::vocab::principal::{Principal, ROLES};

/// A plugin calling without a user has exactly what configuration grants its subject
/// (`auth.roles` and `auth.groups` by `plugin:<id>`), nothing by default.
fn grant_plugin(p: &mut Principal, auth: &crate::config::AuthSettings) {
    for (role, refs) in &auth.roles {
        if refs.iter().any(|r| r == &p.subject) {
            p.roles.insert(role.clone());
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
        let norm = |r: &str, kind: &str| {
            EntityRef::parse(r, kind)
                .map(|e| e.to_string())
                .unwrap_or_else(|_| r.to_owned())
        };
        Self(
            tokens
                .iter()
                .map(|t| {
                    (
                        t.sha256.clone(),
                        Principal {
                            subject: norm(&t.subject, "user"),
                            roles: t.roles.iter().cloned().collect(),
                            groups: t.groups.iter().map(|g| norm(g, "group")).collect(),
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

/// Extracts the caller. A token that is presented but unknown is refused (401), never
/// downgraded to anonymous.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Already authenticated by the API's middleware: verify each token once.
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        if !parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            if state.settings().anonymous_allowed() {
                return Ok(Principal::anonymous());
            }
            return Err(ApiError::new(
                ErrorName::Authentication,
                "Missing credentials",
            ));
        }
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::new(
                ErrorName::Authentication,
                "Authorization must be `Bearer <token>`",
            )
        })?;
        if backstage::BackstageTokens::claims_to_be_backstage(token) {
            let Some(verifier) = state.backstage_tokens() else {
                return Err(ApiError::new(
                    ErrorName::Authentication,
                    "Backstage tokens need backstage.base_url to be configured",
                ));
            };
            let mut p = verifier
                .verify(token, &state.settings().auth)
                .await
                .map_err(|e| match e {
                    backstage::VerifyError::Refused(e) => {
                        tracing::info!(reason = %e, "Backstage token refused");
                        ApiError::new(ErrorName::Authentication, e.to_string())
                    }
                    backstage::VerifyError::Unavailable(m) => ApiError::unavailable(m),
                })?;
            if p.via.is_none() && p.subject.starts_with("plugin:") {
                grant_plugin(&mut p, &state.settings().auth);
            }
            return Ok(p);
        }
        state
            .tokens()
            .find(token)
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorName::Authentication, "unknown or invalid token"))
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
            subject: "alice".into(),
            sha256: hash,
            roles: vec!["lead".into()],
            groups: vec!["team-a".into()],
        }]);
        let p = tokens.find("s3cret-token").unwrap();
        assert_eq!(p.subject, "user:default/alice");
        assert!(p.has_role("lead") && p.member_of("group:default/team-a"));
        assert!(tokens.find("s3cret-tokeN").is_none());
        assert!(tokens.find("").is_none());
    }
}
