//! Catalog documents Backstage's URL reader fetches (it sends no token, so these routes are
//! public unless `catalog.public` is off). ETag / If-None-Match answer 304. `entities.yaml`
//! holds the Templates and one Location per page; each page is re-serialized only when a
//! resource on it changed (`catalog::pages`).

use crate::{api::state::AppState, error::ApiError};
use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

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

/// The registered document: every offering's Template and one Location per page.
pub async fn all(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let doc = state
        .catalog_pages()
        .index(&state.templates().snapshot())
        .await;
    if let Some(res) = not_modified(&headers, &doc.etag) {
        return Ok(res);
    }
    Ok(yaml(&doc.etag, doc.body))
}

/// One page: the entities of the live resources whose id hashes to it.
pub async fn page(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pages = state.catalog_pages().layout().pages();
    let missing = || {
        ApiError::not_found(format!(
            "no catalog page {file:?} (expected <n>.yaml with n from 0 to {})",
            pages - 1
        ))
    };
    let n: u32 = file
        .strip_suffix(".yaml")
        .and_then(|n| n.parse().ok())
        .ok_or_else(missing)?;
    let doc = state
        .catalog_pages()
        .page(state.db(), n)
        .await?
        .ok_or_else(missing)?;
    if let Some(res) = not_modified(&headers, &doc.etag) {
        return Ok(res);
    }
    Ok(yaml(&doc.etag, doc.body))
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
    let doc = state
        .catalog_pages()
        .resource(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no live resource with id {id:?}")))?;
    if let Some(res) = not_modified(&headers, &doc.etag) {
        return Ok(res);
    }
    Ok(yaml(&doc.etag, doc.body))
}
