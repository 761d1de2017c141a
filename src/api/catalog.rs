//! Catalog documents Backstage's URL reader fetches (it sends no token, so these routes are
//! public unless `catalog.public` is off). ETag / If-None-Match answer 304. `entities.yaml`
//! holds the Templates and one Location per page; each page is re-rendered only where a
//! resource on it changed (`catalog::pages`).
//!
//! Documents are kept gzip-compressed (`catalog::gzip`): a client that accepts gzip (Backstage's
//! reader does) gets the stored bytes, any other the text inflated. The gzip form carries the
//! weak form of the text's ETag (`W/"…"`, as nginx does: a strong tag names one exact byte
//! sequence), and If-None-Match compares weakly (RFC 9110 §13.1.2), so either tag revalidates.

use crate::{
    api::state::AppState,
    catalog::{feed, pages::Document},
    error::{ApiError, ErrorEnvelope},
    vocab::field_error::FieldError,
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

/// Whether `Accept-Encoding` allows gzip: listed (or `*`) with a non-zero q; `gzip;q=0` refuses
/// it even beside `*`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for item in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut params = item.split(';');
        let coding = params.next().unwrap_or_default().trim();
        let q = params
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
            })
            .map_or(1.0, |v| v.parse::<f32>().unwrap_or(0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q > 0.0);
        } else if coding == "*" {
            any = Some(q > 0.0);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// If-None-Match by weak comparison: `W/"x"` and `"x"` both match `"x"`.
fn matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// `doc` as this client takes it: 304 when its ETag matches, else gzip or the text.
fn serve(headers: &HeaderMap, doc: &Document) -> Result<Response, ApiError> {
    let gzip = accepts_gzip(headers);
    let etag = if gzip {
        format!("W/{}", doc.etag)
    } else {
        doc.etag.clone()
    };
    let mut res = if matches(headers, &doc.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = if gzip {
            doc.gzip()
        } else {
            doc.identity().map_err(ApiError::internal)?
        };
        let mut res = (StatusCode::OK, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml; charset=utf-8"),
        );
        if gzip {
            res.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        res
    };
    let h = res.headers_mut();
    // Caches must keep the two forms apart.
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(res)
}

/// The registered document: every offering's Template and one Location per page.
pub async fn all(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let doc = state
        .catalog_pages()
        .index(&state.templates().snapshot())
        .await;
    serve(&headers, &doc)
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
    serve(&headers, &doc)
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
    serve(&headers, &doc)
}

/// What changed in paved's catalog since a cursor (`catalog::feed`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogChanges {
    /// Entities to add or replace, whole (as the catalog documents serve them, with
    /// `backstage.io/managed-by-location` naming their document). Without `after`: the
    /// offerings' Templates first.
    #[schema(value_type = Vec<Object>)]
    pub entities: Vec<serde_json::Value>,
    /// Entity refs to remove (deleted resources and their parts).
    pub removed: Vec<String>,
    /// Pass as `after` for the changes that follow; unchanged while nothing changes.
    pub cursor: String,
    /// More changes follow right away (ask again with `cursor`).
    pub more: bool,
    /// A digest of the offerings' versions. When it differs from the one seen on the last
    /// read from the start, read from the start again (Templates are listed there only).
    pub templates: String,
}

/// The query of the feed, documented (read by hand: unknown parameters are refused).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ChangesParams {
    /// The `cursor` of the previous answer, unchanged (opaque). Absent: everything, from the
    /// start (a full sync: read while `more`, then keep the last cursor).
    after: Option<String>,
    /// How many changed resources one answer holds at most: 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<u64>,
}

fn changes_query(uri: &Uri) -> Result<(Option<String>, Option<u64>), FieldError> {
    let field = |field: &str, rule: &str, message: &str| FieldError {
        field: field.into(),
        rule: rule.into(),
        message: message.into(),
    };
    let (mut after, mut limit) = (None, None);
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        let slot = match k.as_ref() {
            "after" => &mut after,
            "limit" => &mut limit,
            other => {
                return Err(field(
                    other,
                    "additionalProperties",
                    "is not a parameter of the catalog feed (after, limit)",
                ));
            }
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(field(&k, "unique", "is given more than once"));
        }
    }
    let limit = limit
        .map(|l| {
            l.parse::<u64>().map_err(|_| {
                field(
                    "limit",
                    "range",
                    &format!("must be a whole number from 1 to {}", feed::MAX_LIMIT),
                )
            })
        })
        .transpose()?;
    Ok((after, limit))
}

/// Changes to paved's catalog after a cursor, for Backstage's entity provider
/// (`@paved/plugin-catalog-backend-module-paved`): changed entities whole and removed refs,
/// each resource once in its current state. Positions are stored, so a cursor holds across
/// restarts and replicas. Readable by every caller, like the catalog documents.
#[utoipa::path(get, path = "/v1/catalog/changes", operation_id = "listCatalogChanges", tag = "catalog",
    params(ChangesParams),
    responses((status = 200, body = CatalogChanges), (status = 400, body = ErrorEnvelope)))]
pub async fn changes(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<CatalogChanges>, ApiError> {
    let (after, limit) = changes_query(&uri).map_err(ApiError::field)?;
    let after = after
        .as_deref()
        .map(feed::decode)
        .transpose()
        .map_err(ApiError::field)?;
    let limit = feed::check_limit(limit).map_err(ApiError::field)?;
    let c = feed::changes(
        state.db(),
        state.catalog_pages().layout(),
        &state.templates().snapshot(),
        after,
        limit,
    )
    .await?;
    Ok(Json(CatalogChanges {
        entities: c.entities,
        removed: c.removed,
        cursor: c.cursor,
        more: c.more,
        templates: c.templates,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn gzip_is_taken_when_listed_with_a_nonzero_q_or_by_star() {
        let ae = header::ACCEPT_ENCODING;
        for (value, gzip) in [
            ("gzip, deflate, br", true),
            ("br;q=1.0, GZIP;q=0.5", true),
            ("x-gzip", true),
            ("*", true),
            ("deflate, br", false),
            ("gzip;q=0", false),
            ("gzip; q=0.000, *", false),
            ("identity", false),
            ("*;q=0", false),
        ] {
            assert_eq!(
                accepts_gzip(&headers(&[(ae.clone(), value)])),
                gzip,
                "{value}"
            );
        }
        assert!(!accepts_gzip(&HeaderMap::new()), "no header: the text");
        assert!(accepts_gzip(&headers(&[(ae.clone(), "br"), (ae, "gzip")])));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let inm = header::IF_NONE_MATCH;
        let tag = "\"abc\"";
        for (value, hit) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", W/\"abc\"", true),
            ("*", true),
            ("\"abcd\"", false),
            ("W/\"ab\"", false),
        ] {
            assert_eq!(
                matches(&headers(&[(inm.clone(), value)]), tag),
                hit,
                "{value}"
            );
        }
        assert!(!matches(&HeaderMap::new(), tag));
    }
}
