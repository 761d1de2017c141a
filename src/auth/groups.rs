//! A Backstage user's teams from the catalog: the `memberOf` relations of their `User`
//! entity. Backstage's user tokens often carry no ownership claims (the guest provider's have
//! none), and the catalog is where teams are maintained, so paved asks it, through a short
//! cache: a membership change shows within `auth.catalog_groups_ttl_seconds`.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::signing::Outgoing;
use crate::vocab::entity_ref::EntityRef;

#[derive(Deserialize)]
struct UserEntity {
    #[serde(default)]
    relations: Vec<Relation>,
    #[serde(default)]
    spec: Spec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Relation {
    #[serde(rename = "type")]
    kind: String,
    target_ref: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    member_of: Vec<String>,
}

pub struct CatalogGroups {
    base_url: String,
    ttl: Duration,
    outgoing: Outgoing,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, (Instant, BTreeSet<String>)>>,
}

impl CatalogGroups {
    pub fn new(base_url: &str, ttl: Duration, outgoing: Outgoing, http: reqwest::Client) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            ttl,
            outgoing,
            http,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The group refs `user` (a `user:` entity ref) is a member of. A failed lookup is tried
    /// again twice, then is an error (the caller answers 503): taking it as "no teams" would
    /// hide the user's resources and refuse their decisions, and a stale answer would keep a
    /// membership the catalog may have removed.
    pub async fn of(&self, user: &str) -> Result<BTreeSet<String>, String> {
        if let Some((at, groups)) = self.cache.lock().await.get(user)
            && at.elapsed() < self.ttl
        {
            return Ok(groups.clone());
        }
        let mut pause = Duration::from_millis(100);
        let mut attempt = 1;
        let groups = loop {
            match self.fetch(user).await {
                Ok(groups) => break groups,
                Err(Failure { message, retry }) if !retry || attempt == ATTEMPTS => {
                    tracing::warn!(user, error = %message, attempts = attempt, "cannot read the user's teams from Backstage's catalog");
                    return Err(format!(
                        "cannot read {user}'s teams from Backstage's catalog ({message}); try again shortly"
                    ));
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 3;
                    attempt += 1;
                }
            }
        };
        let mut cache = self.cache.lock().await;
        // Bounded: a flood of distinct users must not grow memory without end.
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        cache.insert(user.to_owned(), (Instant::now(), groups.clone()));
        Ok(groups)
    }

    async fn fetch(&self, user: &str) -> Result<BTreeSet<String>, Failure> {
        let r = EntityRef::parse(user, "user").map_err(|e| Failure {
            message: e,
            retry: false,
        })?;
        let url = format!(
            "{}/api/catalog/entities/by-name/{}/{}/{}",
            self.base_url,
            r.kind(),
            r.namespace(),
            r.name()
        );
        // Unsigned, the catalog would answer 401: no point asking before the key is loaded.
        let token = self
            .outgoing
            .bearer_for("catalog")
            .ok_or_else(|| Failure::other("paved's signing key is not loaded yet"))?;
        let res = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| Failure {
                // A timed-out call already waited long enough.
                retry: !e.is_timeout(),
                message: e.to_string(),
            })?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            // No User entity (e.g. the guest user): no catalog groups.
            return Ok(BTreeSet::new());
        }
        if !res.status().is_success() {
            return Err(Failure::other(format!("{} from {url}", res.status())));
        }
        let entity: UserEntity = res.json().await.map_err(Failure::other)?;
        Ok(member_of(&entity, r.namespace()))
    }
}

/// Tries of one lookup before it fails.
const ATTEMPTS: u32 = 3;

struct Failure {
    message: String,
    /// Worth another try (the catalog or paved's key may be back a moment later).
    retry: bool,
}

impl Failure {
    fn other(message: impl ToString) -> Self {
        Self {
            message: message.to_string(),
            retry: true,
        }
    }
}

fn member_of(entity: &UserEntity, user_namespace: &str) -> BTreeSet<String> {
    let from_relations = entity
        .relations
        .iter()
        .filter(|r| r.kind == "memberOf")
        .filter_map(|r| EntityRef::parse(&r.target_ref, "group").ok());
    // spec.memberOf refs without a namespace are relative to the user's, as Backstage reads them.
    let from_spec = entity.spec.member_of.iter().filter_map(|m| {
        let full = if m.contains('/') {
            m.clone()
        } else {
            let (kind, name) = m.split_once(':').unwrap_or(("group", m));
            format!("{kind}:{user_namespace}/{name}")
        };
        EntityRef::parse(&full, "group").ok()
    });
    from_relations
        .chain(from_spec)
        .filter(|r| r.kind() == "group")
        .map(|r| r.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_of_reads_relations_and_spec_relative_to_the_user_namespace() {
        let e: UserEntity = serde_json::from_value(serde_json::json!({
            "spec": {"memberOf": ["team-a", "other/team-b", "group:team-c"]},
            "relations": [
                {"type": "memberOf", "targetRef": "group:default/team-a"},
                {"type": "ownerOf", "targetRef": "component:default/x"}
            ]
        }))
        .unwrap();
        let got: Vec<String> = member_of(&e, "eng").into_iter().collect();
        assert_eq!(
            got,
            [
                "group:default/team-a",
                "group:eng/team-a",
                "group:eng/team-c",
                "group:other/team-b"
            ]
        );
    }
}
