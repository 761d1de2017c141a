//! `/v1/resources`: what paved provisioned, and its credentials for the owning team.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    extract::ApiQuery,
    page::{Page, PageParams, Paged},
};
use crate::{
    access::{self, Act, Scope, Target},
    api::state::AppState,
    error::{ApiError, ErrorEnvelope},
    provisioning::{
        requests::Request,
        resources::{self, Resource},
    },
    usecases::{
        self,
        extend_ttl::ExtendError,
        update::{Purpose, UpdateError},
    },
    vocab::{entity_ref::EntityRef, field_error::FieldError, principal::Principal},
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResourceQuery {
    /// Owner group ref or name.
    pub owner: Option<String>,
}

/// Active resources, newest first.
#[utoipa::path(get, path = "/v1/resources", operation_id = "listResources", tag = "resources", params(ResourceQuery, PageParams),
    responses((status = 200, body = Page<Resource>), (status = 400, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Paged { filter: q, paging }: Paged<ResourceQuery>,
) -> Result<Json<Page<Resource>>, ApiError> {
    let before = paging.after_uuid("resources")?;
    let owner = q
        .owner
        .as_deref()
        .map(|o| {
            EntityRef::parse(o, "group")
                .map(|r| r.to_string())
                .map_err(|e| ApiError::input(format!("owner: {e}")))
        })
        .transpose()?;
    let rows = resources::list_visible(
        state.db(),
        owner.as_deref(),
        Scope::of(&principal).teams(),
        before.as_deref(),
        paging.fetch(),
    )
    .await?;
    Ok(Json(Page::from_rows(rows, &paging, "resources", |r| {
        r.id.clone()
    })))
}

/// One resource.
#[utoipa::path(get, path = "/v1/resources/{id}", operation_id = "getResource", tag = "resources",
    params(("id" = String, Path, description = "Resource id")),
    responses((status = 200, body = Resource), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Resource>, ApiError> {
    // Another team's resource is as good as absent: its existence is not revealed.
    resources::get(state.db(), &id)
        .await?
        .filter(|r| access::may_see(&principal, Target::Resource { owner: &r.owner }))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no resource with id {id:?}")))
}

/// The resource's credentials, per part (host, port, username, password, url). Only members of
/// the owning team and platform-admins may read them.
#[utoipa::path(get, path = "/v1/resources/{id}/credentials", operation_id = "getCredentials", tag = "resources",
    params(("id" = String, Path, description = "Resource id")),
    responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn credentials(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        usecases::credentials::read(state.db(), state.secrets(), &principal, &id).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Platform-admins only: delete a production resource despite deletion protection.
    #[serde(rename = "override")]
    pub override_protection: Option<bool>,
}

/// Delete a resource: starts a `delete` request (destroy each part, then unpublish). Members
/// of the owning team may delete; production resources are protected and only a
/// platform-admin with `override=true` deletes them.
#[utoipa::path(delete, path = "/v1/resources/{id}", operation_id = "deleteResource", tag = "resources",
    params(("id" = String, Path, description = "Resource id"), DeleteQuery),
    responses((status = 202, description = "The delete request", body = Request),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Already deleted", body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<(StatusCode, Json<Request>), ApiError> {
    let overridden = q.override_protection == Some(true);
    let r =
        usecases::delete::delete(super::requests::ctx(&state), &principal, &id, overridden).await?;
    state.wake_workers();
    Ok((StatusCode::ACCEPTED, Json(r)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateResource {
    /// Form values to change, e.g. `{"storage_gb": 200}`; the rest stay as ordered.
    #[schema(value_type = Object)]
    pub values: Value,
}

/// Change a resource (resize, connection limit, ...): an `update` request that goes through
/// the form, cost and policies again, then converges each part.
#[utoipa::path(patch, path = "/v1/resources/{id}", operation_id = "updateResource", tag = "resources",
    params(("id" = String, Path, description = "Resource id")), request_body = UpdateResource,
    responses((status = 202, description = "The update request", body = Request),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "Deleted, or busy with another request", body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    super::extract::ApiJson(body): super::extract::ApiJson<UpdateResource>,
) -> Result<(StatusCode, Json<Request>), ApiError> {
    let r = update_resource(&state, &principal, &id, &body.values, Purpose::Change).await?;
    Ok((StatusCode::ACCEPTED, Json(r)))
}

/// The update use case over the app's state (the REST API, `paved:update` and drift revert).
pub(crate) async fn update_resource(
    state: &AppState,
    principal: &Principal,
    id: &str,
    values: &Value,
    purpose: Purpose,
) -> Result<Request, UpdateError> {
    let policies = state.policies();
    let inputs = state.guardrail_inputs(&policies);
    let offerings = state.templates().snapshot();
    let r = usecases::update::update(&inputs, &offerings, principal, id, values, purpose).await?;
    state.wake_workers();
    Ok(r)
}

/// The resource row, when `principal` may do `act(resource)` to it; an invisible one answers
/// 404 exactly like an absent one.
pub(super) async fn authorized(
    state: &AppState,
    principal: &Principal,
    id: &str,
    act: impl FnOnce(&crate::db::entities::resource::Model) -> Act<'static>,
) -> Result<crate::db::entities::resource::Model, ApiError> {
    let absent = || format!("no resource with id {id:?}");
    let res = crate::db::resources::by_id(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(absent()))?;
    access::authorize(principal, act(&res), Target::Resource { owner: &res.owner })
        .map_err(|d| ApiError::denied(d, absent))?;
    Ok(res)
}

/// The body of an extension (documentation; [`hours_of`] reads it, naming field and rule).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ExtendTtl {
    /// Hours to add to the current expiry (counted from now if it already passed). The whole
    /// lifetime stays within the offering's `ttl.max_hours`.
    #[schema(minimum = 1)]
    pub hours: i64,
}

/// Extend an ephemeral resource's time to live. Members of the owning team and platform-admins
/// may extend, up to the offering's maximum lifetime (creation to expiry).
#[utoipa::path(post, path = "/v1/resources/{id}/extend", operation_id = "extendResourceTtl", tag = "resources",
    params(("id" = String, Path, description = "Resource id")), request_body = ExtendTtl,
    responses((status = 200, description = "The resource with its new expiry", body = Resource),
        (status = 400, description = "`hours` breaks a rule (`error.errors` names field and rule)", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Does not expire, is not ready, or changed meanwhile", body = ErrorEnvelope)))]
pub async fn extend(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    super::extract::ApiJson(body): super::extract::ApiJson<Value>,
) -> Result<Json<Resource>, ApiError> {
    let hours = hours_of(&body, &["hours"])?;
    Ok(Json(extend_ttl(&state, &principal, &id, hours).await?))
}

/// Reads `hours` from a body whose only allowed keys are `allowed`, naming field and rule for
/// whatever is wrong (serde's own message would not name the field of a wrong type).
pub(crate) fn hours_of(body: &Value, allowed: &[&str]) -> Result<i64, ApiError> {
    let err = |field: &str, rule: &str, message: &str| {
        ApiError::field(FieldError {
            field: field.into(),
            rule: rule.into(),
            message: message.into(),
        })
    };
    let Some(map) = body.as_object() else {
        return Err(err("", "type", "the body must be a JSON object"));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(err(k, "additionalProperties", "is not an allowed field"));
    }
    match map.get("hours") {
        None => Err(err("hours", "required", "is required")),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| err("hours", "type", "must be a whole number of hours")),
    }
}

/// The extension use case over the app's state (the REST route and `paved:extend-ttl`).
pub(crate) async fn extend_ttl(
    state: &AppState,
    principal: &Principal,
    id: &str,
    hours: i64,
) -> Result<Resource, ExtendError> {
    let offerings = state.templates().snapshot();
    let ctx = super::requests::ctx(state);
    let updated = usecases::extend_ttl::extend(ctx, &offerings, principal, id, hours).await?;
    state.refresh_entity(&updated.entity_name, &updated.id);
    Ok(resources::to_api(updated))
}
