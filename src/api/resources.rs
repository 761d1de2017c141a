//! `/v1/resources`: what paved provisioned, and its credentials for the owning team.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    extract::ApiQuery,
    page::{Page, PageParams, Paged},
};
use crate::{
    access::{self, Act, Scope, Target},
    app::AppState,
    auth::Principal,
    catalog::EntityRef,
    error::{ApiError, ErrorEnvelope, ErrorName},
    provisioning::{
        engine,
        resources::{self, Resource},
    },
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
    let absent = || format!("no resource with id {id:?}");
    let res = resources::get(state.db(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found(absent()))?;
    if let Err(d) = access::authorize(
        &principal,
        Act::ReadCredentials,
        Target::Resource { owner: &res.owner },
    ) {
        // Refused attempts are on the record too.
        crate::audit::record_by(
            state.db(),
            &principal,
            "credentials.read",
            &format!("resource:{id}"),
            "denied",
            None,
        )
        .await;
        return Err(ApiError::denied(d, absent));
    }
    let creds = engine::credentials(state.db(), state.secrets(), &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("resource {id} has no credentials (yet)")))?;
    tracing::info!(resource_id = %id, reader = %principal.subject, "credentials read");
    crate::audit::record_by(
        state.db(),
        &principal,
        "credentials.read",
        &format!("resource:{id}"),
        "read",
        None,
    )
    .await;
    Ok(Json(creds))
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
    responses((status = 202, description = "The delete request", body = crate::provisioning::requests::Request),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Already deleted", body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<
    (
        axum::http::StatusCode,
        Json<crate::provisioning::requests::Request>,
    ),
    ApiError,
> {
    let r = delete_resource(&state, &principal, &id, q.override_protection == Some(true)).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(r)))
}

/// Starts the deletion of a resource for `principal` (the REST API and `paved:destroy`).
/// Asking again while its deletion runs returns that same request.
pub async fn delete_resource(
    state: &AppState,
    principal: &Principal,
    id: &str,
    override_protection: bool,
) -> Result<crate::provisioning::requests::Request, ApiError> {
    let res = authorized(state, principal, id, |r| Act::Delete {
        production: r.environment == "prod",
        override_protection,
    })
    .await?;
    if res.deleted_at.is_some() {
        return Err(ApiError::conflict(format!(
            "resource {id} is already deleted"
        )));
    }
    if let Some(open) = crate::provisioning::requests::open_for_resource(state.db(), id).await?
        && res.status != "deleting"
    {
        return Err(ApiError::conflict(format!(
            "resource {id} is busy with request {open}; wait for it to finish or cancel it"
        )));
    }
    let r = crate::provisioning::requests::create_delete(
        state.db(),
        &res,
        &principal.subject,
        state.settings().engine.max_attempts,
    )
    .await?;
    state.wake_workers();
    tracing::info!(resource_id = %id, request_id = %r.id, by = %principal.subject, "deletion requested");
    crate::audit::record_by(
        state.db(),
        principal,
        "resource.delete_requested",
        &format!("resource:{id}"),
        "accepted",
        Some(serde_json::json!({"requestId": r.id, "override": override_protection})),
    )
    .await;
    Ok(r)
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
    responses((status = 202, description = "The update request", body = crate::provisioning::requests::Request),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "Deleted, or busy with another request", body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    super::extract::ApiJson(body): super::extract::ApiJson<UpdateResource>,
) -> Result<
    (
        axum::http::StatusCode,
        Json<crate::provisioning::requests::Request>,
    ),
    ApiError,
> {
    let r = update_resource(&state, &principal, &id, &body.values).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(r)))
}

/// Starts an update of a resource for `principal` (the REST API and `paved:update`): the
/// changed values go through the form, cost and policies again.
pub async fn update_resource(
    state: &AppState,
    principal: &Principal,
    id: &str,
    values: &Value,
) -> Result<crate::provisioning::requests::Request, ApiError> {
    use crate::usecases::place::{self as order, Placed};
    let res = authorized(state, principal, id, |_| Act::Change).await?;
    if res.deleted_at.is_some() || res.status != "ready" {
        return Err(ApiError::conflict(format!(
            "resource {id} is {}; only ready resources can be changed",
            res.status
        )));
    }
    if let Some(open) = crate::provisioning::requests::open_for_resource(state.db(), id).await? {
        return Err(ApiError::conflict(format!(
            "resource {id} is busy with request {open}; wait for it to finish"
        )));
    }
    let current = crate::provisioning::requests::current_values(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::internal(format!("resource {id} has no successful request")))?;
    let offering = super::requests::offering(state, &res.offering)?;
    let policies = state.policies();
    let placed = order::place_update(
        &state.guardrail_inputs(&policies),
        &offering,
        &res,
        &current,
        values,
        principal,
    )
    .await
    .map_err(|e| super::requests::place_error(&offering.name, e))?;
    match placed {
        Placed::Accepted { request, .. } => {
            state.wake_workers();
            tracing::info!(resource_id = %id, request_id = %request.id, by = %principal.subject, "update requested");
            Ok(request)
        }
        Placed::Denied { request, deny } => Err(super::requests::denied(&request, &deny)),
        Placed::Invalid(errors) => Err(super::requests::invalid(&offering.name, &errors)),
    }
}

/// The resource row, when `principal` may do `act(resource)` to it; an invisible one answers
/// 404 exactly like an absent one.
pub(super) async fn authorized(
    state: &AppState,
    principal: &Principal,
    id: &str,
    act: impl FnOnce(&crate::db::entities::resource::Model) -> Act<'static>,
) -> Result<crate::db::entities::resource::Model, ApiError> {
    use sea_orm::EntityTrait;
    let absent = || format!("no resource with id {id:?}");
    let res = crate::db::entities::resource::Entity::find_by_id(id.to_owned())
        .one(state.db())
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
        let e = crate::templates::FieldError {
            field: field.into(),
            rule: rule.into(),
            message: message.into(),
        };
        ApiError::input(e.to_string())
            .with_reason_phrase(&format!("Invalid input: {e}"))
            .with_detail("errors", [e])
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

/// Shared by the REST route and the `paved:extend-ttl` action.
pub(crate) async fn extend_ttl(
    state: &AppState,
    principal: &Principal,
    id: &str,
    hours: i64,
) -> Result<Resource, ApiError> {
    use crate::provisioning::lifecycle::{self, ExtendError};
    let res = authorized(state, principal, id, |_| Act::Change).await?;
    let max_hours = state
        .templates()
        .snapshot()
        .get(&res.offering)
        .and_then(|o| o.spec.ttl.as_ref().map(|t| t.max_hours));
    match lifecycle::extend(state.db(), id, hours, max_hours, principal, state.now()).await {
        Ok(updated) => {
            tracing::info!(resource_id = %id, by = %principal.subject, hours, expires_at = ?updated.expires_at, "expiry extended");
            state.refresh_entity(&updated.entity_name, &updated.id);
            Ok(resources::to_api(updated))
        }
        Err(ExtendError::NotFound(_)) => {
            Err(ApiError::not_found(format!("no resource with id {id:?}")))
        }
        Err(ExtendError::NotAllowed(m)) => {
            Err(ApiError::new(ErrorName::NotAllowed, m.clone()).with_reason_phrase(&m))
        }
        Err(ExtendError::Conflict(m)) => Err(ApiError::conflict(m.clone()).with_reason_phrase(&m)),
        Err(ExtendError::Invalid(e)) => Err(ApiError::input(e.to_string())
            .with_detail("errors", [&e])
            .with_reason_phrase(&format!("Invalid input: {e}"))),
        Err(ExtendError::Db(e)) => Err(e.into()),
    }
}
