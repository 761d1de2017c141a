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
use crate::catalog::EntityRef;

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

    /// The group refs `user` (a `user:` entity ref) is a member of. A catalog that cannot be
    /// reached gives the last known answer, or none: paved then falls back to the token's
    /// claims and `auth.groups`, which only ever narrows what the user may do.
    pub async fn of(&self, user: &str) -> BTreeSet<String> {
        if let Some((at, groups)) = self.cache.lock().await.get(user)
            && at.elapsed() < self.ttl
        {
            return groups.clone();
        }
        match self.fetch(user).await {
            Ok(groups) => {
                let mut cache = self.cache.lock().await;
                // Bounded: a flood of distinct users must not grow memory without end.
                if cache.len() > 10_000 {
                    cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
                }
                cache.insert(user.to_owned(), (Instant::now(), groups.clone()));
                groups
            }
            Err(e) => {
                tracing::warn!(user, error = %e, "cannot read the user's groups from Backstage's catalog");
                self.cache
                    .lock()
                    .await
                    .get(user)
                    .map(|(_, g)| g.clone())
                    .unwrap_or_default()
            }
        }
    }

    async fn fetch(&self, user: &str) -> Result<BTreeSet<String>, String> {
        let r = EntityRef::parse(user, "user")?;
        let url = format!(
            "{}/api/catalog/entities/by-name/{}/{}/{}",
            self.base_url,
            r.kind(),
            r.namespace(),
            r.name()
        );
        let mut req = self.http.get(&url);
        if let Some(token) = self.outgoing.bearer_for("catalog") {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            // No User entity (e.g. the guest user): no catalog groups.
            return Ok(BTreeSet::new());
        }
        if !res.status().is_success() {
            return Err(format!("{} from {url}", res.status()));
        }
        let entity: UserEntity = res.json().await.map_err(|e| e.to_string())?;
        Ok(member_of(&entity, r.namespace()))
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
