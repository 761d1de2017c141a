//! Asks Backstage's catalog to refresh an entity right after paved changed it, so the change
//! shows in seconds instead of at the next processing cycle (100-150 s by default). Each
//! refresh or removal is a `refresh-catalog` job ([`job::RefreshCatalog`]): Backstage being
//! down is never a provisioning failure, the job runner retries with backoff, and one entity
//! has at most one job waiting (the latest change wins).
//!
//! Backstage refreshes only entities it already knows (`POST /api/catalog/refresh` answers 404
//! for a new one, docs/backstage-protocol.md §6b). A new resource therefore refreshes the
//! `Location` entity of the catalog page that publishes it (`catalog::pages`): re-reading that
//! one page is what brings the new entity in. If Backstage does not know the page's Location
//! either (just registered, or `catalog.pages` grew), the registered document's Location is
//! refreshed, which emits the page Locations. A removed resource's entities are deleted from the catalog
//! outright (as an entity provider's removal would be), instead of lingering as orphans until
//! Backstage's orphan cleanup.

use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{DatabaseConnection, DbErr};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use super::pages::Layout;
use crate::auth::signing::Outgoing;

pub mod job;

use job::RefreshCatalog;

#[derive(Clone)]
pub struct Refresher {
    http: reqwest::Client,
    base: String,
    auth: Outgoing,
    /// Where paved's catalog document and pages are, when known.
    layout: Option<Layout>,
    /// Where the jobs go, and this process's idle runners to wake for them.
    db: DatabaseConnection,
    wake: crate::jobs::Wake,
}

/// The name Backstage gives the `Location` it creates for a registered `url` location
/// (`locationSpecToMetadataName` in catalog-node: `generated-` + sha1 of `type:target`).
pub fn location_entity_name(target: &str) -> String {
    let digest = Sha1::digest(format!("url:{target}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("generated-{hex}")
}

/// The entity ref of that `Location`.
pub fn location_entity_ref(target: &str) -> String {
    format!("location:default/{}", location_entity_name(target))
}

/// What a removal found in the catalog.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    Deleted,
    Absent,
    /// Not paved's entity for this resource, or Backstage refused the delete: leave it to
    /// the catalog (a re-read of the document orphans it).
    LeftToCatalog(String),
}

impl Refresher {
    /// `base_url` is Backstage's backend; the jobs go to `db`, and `wake` is told of each.
    pub fn new(
        base_url: &str,
        auth: Outgoing,
        db: DatabaseConnection,
        wake: crate::jobs::Wake,
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client builds"),
            base: base_url.trim_end_matches('/').to_owned(),
            auth,
            layout: None,
            db,
            wake,
        }
    }

    /// Where paved's catalog document (registered by `paved catalog register`) and its pages
    /// are, so a new resource can be brought in by re-reading its page.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = Some(layout);
        self
    }

    /// Refreshes `entity_ref`, an entity of resource `resource_id`, in the background.
    pub fn refresh(&self, entity_ref: String, resource_id: String) {
        self.queue_in_background(vec![RefreshCatalog {
            entity_ref,
            resource_id,
            remove: false,
        }]);
    }

    /// Removes the entities of a deleted resource (`entity_refs`: the resource and its parts)
    /// in the background. Only entities that carry `paved.dev/resource-id: <resource_id>` are
    /// deleted; anything else is refreshed and left to the catalog.
    pub fn remove(&self, entity_refs: Vec<String>, resource_id: String) {
        let jobs = entity_refs
            .into_iter()
            .map(|entity_ref| RefreshCatalog {
                entity_ref,
                resource_id: resource_id.clone(),
                remove: true,
            })
            .collect();
        self.queue_in_background(jobs);
    }

    /// The callers (the engine's `CatalogSink`, the API after a change) do not wait for the
    /// database: the jobs are queued in a task of their own.
    fn queue_in_background(&self, jobs: Vec<RefreshCatalog>) {
        let me = self.clone();
        tokio::spawn(async move {
            for j in &jobs {
                if let Err(e) = me.queue(j).await {
                    tracing::warn!(entity = %j.entity_ref, error = %crate::vocab::redact::redact(&e.to_string()), "cannot queue a catalog refresh; Backstage catches up at its next cycle");
                }
            }
        });
    }

    /// Queues `j` as its entity's one waiting job (the latest change wins); false only when
    /// two jobs of that entity are running right now (the later of them reads the catalog
    /// after this change, or close to it: Backstage's next cycle covers the rest).
    pub async fn queue(&self, j: &RefreshCatalog) -> Result<bool, DbErr> {
        let queued =
            crate::jobs::enqueue_latest(&self.db, j, &j.entity_ref, &j.resource_id, job::ATTEMPTS)
                .await?;
        self.wake.one();
        Ok(queued)
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.auth.bearer_for("catalog") {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// POST /api/catalog/refresh; `Ok(false)` when Backstage does not know the entity.
    async fn post_refresh(&self, entity_ref: &str) -> Result<bool, String> {
        let res = self
            .auth(self.http.post(format!("{}/api/catalog/refresh", self.base)))
            .json(&json!({"entityRef": entity_ref}))
            .send()
            .await
            .map_err(|e| crate::vocab::redact::redact(&e.to_string()))?;
        match res.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(format!("{s} {}", res.text().await.unwrap_or_default())),
        }
    }

    pub(crate) async fn refresh_once(
        &self,
        entity_ref: &str,
        resource_id: &str,
    ) -> Result<(), String> {
        if self.post_refresh(entity_ref).await? {
            return Ok(());
        }
        let Some(layout) = &self.layout else {
            return Ok(());
        };
        // Not in the catalog yet: re-reading the page that publishes it brings it in.
        let page = layout.page_location_ref(layout.page_of(resource_id));
        if self.post_refresh(&page).await? {
            return Ok(());
        }
        // Nor is the page's Location: re-reading the document emits it (and it is then read).
        let document = location_entity_ref(&layout.document_url());
        if !self.post_refresh(&document).await? {
            tracing::warn!(
                entity = %entity_ref,
                location = %document,
                "Backstage knows neither the entity, its page's location nor paved's catalog location; it appears at Backstage's next cycle, if at all: run `paved catalog register`"
            );
        }
        Ok(())
    }

    pub(crate) async fn remove_once(
        &self,
        entity_ref: &str,
        resource_id: &str,
    ) -> Result<Removal, String> {
        let Some((kind, rest)) = entity_ref.split_once(':') else {
            return Ok(Removal::LeftToCatalog(format!(
                "not an entity ref: {entity_ref}"
            )));
        };
        let Some((namespace, name)) = rest.split_once('/') else {
            return Ok(Removal::LeftToCatalog(format!(
                "not an entity ref: {entity_ref}"
            )));
        };
        let res = self
            .auth(self.http.get(format!(
                "{}/api/catalog/entities/by-name/{kind}/{namespace}/{name}",
                self.base
            )))
            .send()
            .await
            .map_err(|e| crate::vocab::redact::redact(&e.to_string()))?;
        match res.status() {
            StatusCode::NOT_FOUND => return Ok(Removal::Absent),
            s if !s.is_success() => {
                return Err(format!("{s} {}", res.text().await.unwrap_or_default()));
            }
            _ => {}
        }
        let entity: Value = res.json().await.map_err(|e| e.to_string())?;
        let owner = entity
            .pointer("/metadata/annotations/paved.dev~1resource-id")
            .and_then(Value::as_str);
        if owner != Some(resource_id) {
            return Ok(Removal::LeftToCatalog(format!(
                "the catalog's {entity_ref} belongs to resource {owner:?}, not {resource_id}"
            )));
        }
        let Some(uid) = entity.pointer("/metadata/uid").and_then(Value::as_str) else {
            return Err("entity without metadata.uid".into());
        };
        let res = self
            .auth(
                self.http
                    .delete(format!("{}/api/catalog/entities/by-uid/{uid}", self.base)),
            )
            .send()
            .await
            .map_err(|e| crate::vocab::redact::redact(&e.to_string()))?;
        match res.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(Removal::Deleted),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                Ok(Removal::LeftToCatalog(format!(
                    "Backstage refused the delete ({s}): paved's token lacks catalog.entity.delete"
                )))
            }
            s => Err(format!("{s} {}", res.text().await.unwrap_or_default())),
        }
    }
}

/// The engine's catalog: a published resource's entity is refreshed, a removed resource's
/// entities (its own and its parts') are deleted.
impl crate::provisioning::catalog_sink::CatalogSink for Refresher {
    fn published(&self, resource_name: &str, resource_id: &str) {
        self.refresh(
            crate::vocab::entity_ref::resource_ref(resource_name),
            resource_id.to_owned(),
        );
    }

    fn removed(&self, resource_name: &str, resource_id: &str, part_ids: &[&str]) {
        let mut refs = vec![crate::vocab::entity_ref::resource_ref(resource_name)];
        refs.extend(super::provider::part_entity_refs(
            resource_name,
            resource_id,
            part_ids,
        ));
        self.remove(refs, resource_id.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_ref_is_backstages() {
        // Backstage 1.55 answered this ref for this target (dry-run of POST /locations).
        assert_eq!(
            location_entity_ref("http://127.0.0.1:7177/api/paved/catalog/entities.yaml"),
            "location:default/generated-e4b223fe80c2d1f0c4dbc9ebb48f56c0f2858432"
        );
    }
}
