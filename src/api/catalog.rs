//! Catalog documents Backstage's URL reader fetches (it sends no token, so these routes are
//! public unless `catalog.public` is off). ETag / If-None-Match answer 304, and the full
//! document is only re-serialized when resources or templates changed.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sea_orm::{EntityTrait, PaginatorTrait, QueryOrder};
use sha2::{Digest, Sha256};

use crate::{app::AppState, catalog::provider, db::entities::resource, error::ApiError};

/// The served document and what it was built from.
pub struct CachedDocument {
    fingerprint: String,
    etag: String,
    /// Shared, not copied, by every response: at 100k resources the document is ~100 MB.
    body: axum::body::Bytes,
}

fn etag_of(body: &str) -> String {
    let d = Sha256::digest(body.as_bytes());
    format!(
        "\"{}\"",
        d.iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn yaml(etag: &str, body: impl Into<axum::body::Body>) -> Response {
    let mut res = (StatusCode::OK, body.into()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

fn not_modified(headers: &HeaderMap, etag: &str) -> Option<Response> {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    matches.then(|| {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(etag) {
            res.headers_mut().insert(header::ETAG, v);
        }
        res
    })
}

fn base_url(state: &AppState) -> String {
    format!(
        "{}{}",
        state.settings().public_url(),
        state.settings().plugin_base_path()
    )
}

/// Every live resource and every offering's Template, as one YAML stream.
pub async fn all(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    // Cheap: a count and the newest change, instead of reading every row.
    let count = resource::Entity::find().count(state.db()).await?;
    let newest = resource::Entity::find()
        .order_by_desc(resource::Column::UpdatedAt)
        .one(state.db())
        .await?;
    let templates = state.templates().snapshot();
    let versions: Vec<&str> = templates
        .offerings
        .values()
        .map(|o| o.version.as_str())
        .collect();
    let fingerprint = format!(
        "{count}|{}|{}",
        newest
            .map(|n| format!("{}@{}", n.id, n.updated_at.to_rfc3339()))
            .unwrap_or_default(),
        versions.join(",")
    );
    let mut cache = state.catalog_document().lock().await;
    if cache.as_ref().is_none_or(|c| c.fingerprint != fingerprint) {
        let resources = provider::live_resources(state.db()).await?;
        let drift = crate::provisioning::drift::statuses(state.db()).await?;
        let body = provider::document(&resources, &templates, &base_url(&state), &drift);
        *cache = Some(CachedDocument {
            fingerprint,
            etag: etag_of(&body),
            body: body.into(),
        });
    }
    let doc = cache.as_ref().expect("filled above");
    if let Some(res) = not_modified(&headers, &doc.etag) {
        return Ok(res);
    }
    Ok(yaml(&doc.etag, doc.body.clone()))
}

/// One resource's entities (with its parts, for a composite; what `catalog:register` points
/// at). Gone once deleted.
pub async fn one(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = file.strip_suffix(".yaml").ok_or_else(|| {
        ApiError::not_found(format!(
            "no catalog document {file:?} (expected <resource id>.yaml)"
        ))
    })?;
    let r = resource::Entity::find_by_id(id.to_owned())
        .one(state.db())
        .await?
        .filter(|r| r.deleted_at.is_none())
        .ok_or_else(|| ApiError::not_found(format!("no live resource with id {id:?}")))?;
    let drift = crate::db::entities::drift_state::Entity::find_by_id(r.id.clone())
        .one(state.db())
        .await?
        .map(|d| d.status);
    let mut body = String::new();
    for e in provider::resource_entities(&r, &base_url(&state), drift.as_deref()) {
        provider::push_yaml(&mut body, &e);
    }
    let etag = etag_of(&body);
    if let Some(res) = not_modified(&headers, &etag) {
        return Ok(res);
    }
    Ok(yaml(&etag, body))
}
