//! `GET /v1/offerings` and `/v1/offerings/{name}`: what can be ordered, from `templates/`.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Serialize;
use serde_json::Value;

use super::page::{NoFilter, Page, PageParams, Paged};
use crate::{
    api::state::AppState,
    error::{ApiError, ErrorEnvelope},
    templates::{LoadProblem, Offering, TtlLimits},
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferingSummary {
    /// Offering (and Template entity) name.
    pub name: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    /// `<version>+<digest>` of template.yaml and offering.yaml.
    pub version: String,
    /// Resource `spec.type` it produces.
    pub resource_type: String,
    /// Entity ref of the Template in Backstage's catalog.
    pub template_ref: String,
}

/// A page of offerings: the list shape of every list (`items`, `nextCursor`), and the
/// templates that failed to load, on every page (they are not items: they cannot be ordered).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferingList {
    pub items: Vec<OfferingSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub next_cursor: Option<String>,
    /// Templates that failed to load and are not offered until fixed.
    pub problems: Vec<LoadProblem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferingDetail {
    #[serde(flatten)]
    pub summary: OfferingSummary,
    /// The form: JSON Schema pages exactly as the template declares them (`ui:*` included).
    #[schema(value_type = Vec<Object>)]
    pub parameters: Vec<Value>,
    /// Preset field and its choices, when the offering has size presets.
    #[schema(value_type = Object)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presets: Option<Value>,
    pub ttl: Option<TtlLimits>,
    /// Drivers of its parts, in provisioning order.
    pub parts: Vec<String>,
    /// What a resource of it hands its team, and where its credentials are read.
    pub outputs: crate::templates::Outputs,
}

fn summary(o: &Offering) -> OfferingSummary {
    OfferingSummary {
        name: o.name.clone(),
        title: o.title.clone(),
        description: o.description.clone(),
        tags: o.tags.clone(),
        version: o.version.clone(),
        resource_type: o.spec.resource.resource_type.clone(),
        template_ref: format!("template:default/{}", o.name),
    }
}

/// List the offerings developers can order, by name.
#[utoipa::path(get, path = "/v1/offerings", operation_id = "listOfferings", tag = "offerings",
    params(PageParams),
    responses((status = 200, body = OfferingList), (status = 400, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    Paged { paging, .. }: Paged<NoFilter>,
) -> Result<Json<OfferingList>, ApiError> {
    let catalog = state.templates().snapshot();
    // The catalog is a map by name: already in list order.
    let page = Page::of_sorted(
        catalog.offerings.values().map(|o| summary(o)),
        &paging,
        "offerings",
        |o| o.name.clone(),
    )?;
    Ok(Json(OfferingList {
        items: page.items,
        next_cursor: page.next_cursor,
        problems: catalog.problems.clone(),
    }))
}

/// One offering with its form (parameter schema), presets and limits.
#[utoipa::path(get, path = "/v1/offerings/{name}", operation_id = "getOffering", tag = "offerings",
    params(("name" = String, Path, description = "Offering name")),
    responses((status = 200, body = OfferingDetail), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<OfferingDetail>, ApiError> {
    let o = state
        .templates()
        .snapshot()
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("no offering named {name:?}")))?;
    Ok(Json(OfferingDetail {
        summary: summary(&o),
        parameters: o.form.page_schemas().cloned().collect(),
        presets: o
            .spec
            .presets
            .as_ref()
            .map(|p| serde_json::json!({"parameter": p.parameter, "values": p.values})),
        ttl: o.spec.ttl.clone(),
        parts: o.spec.parts.iter().map(|p| p.driver.clone()).collect(),
        outputs: o.spec.outputs.clone(),
    }))
}
