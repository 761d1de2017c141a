//! `/v1/resources/{id}/drift`: what changed behind paved's back, and resolving it.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;

use crate::{
    api::state::AppState,
    day2::drift::{self, DriftError, DriftReport},
    error::{ApiError, ErrorEnvelope},
    provisioning::requests::Request,
    vocab::principal::Principal,
};

impl From<DriftError> for ApiError {
    fn from(e: DriftError) -> Self {
        match e {
            e @ DriftError::NotFound(_) => ApiError::not_found(e.to_string()),
            DriftError::Refused(r) => r.into(),
            e @ (DriftError::NotReady { .. } | DriftError::Conflict(_)) => {
                ApiError::conflict(e.to_string())
            }
            // The system being checked is unreachable or refused: not paved's internal error.
            e @ DriftError::Driver { .. } => {
                ApiError::unavailable(crate::vocab::redact::redact(&e.to_string()))
            }
            DriftError::Db(e) => e.into(),
        }
    }
}

/// The resource's drift: status (`detected`, `none`, `unknown` before the first check), open
/// findings (part, field, expected, actual, detected at) and recently closed ones.
#[utoipa::path(get, path = "/v1/resources/{id}/drift", operation_id = "getResourceDrift", tag = "drift",
    params(("id" = String, Path, description = "Resource id")),
    responses((status = 200, body = DriftReport), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<DriftReport>, ApiError> {
    Ok(Json(drift::report_for(state.db(), &principal, &id).await?))
}

/// Compare the resource with its actual state now (the scheduled scan does the same for every
/// resource). Members of the owning team and platform-admins.
#[utoipa::path(post, path = "/v1/resources/{id}/drift/check", operation_id = "checkResourceDrift", tag = "drift",
    params(("id" = String, Path, description = "Resource id")),
    responses((status = 200, body = DriftReport), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "Not ready", body = ErrorEnvelope),
        (status = 503, description = "The provisioned system cannot be reached", body = ErrorEnvelope)))]
pub async fn check(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<DriftReport>, ApiError> {
    let (db, drivers, notifier) = (state.db(), state.drivers(), state.notifier());
    let checked = drift::check_for(db, drivers, notifier, &principal, &id, state.now()).await?;
    if checked.status_changed {
        state.refresh_entity(&checked.entity_name, &id);
    }
    Ok(Json(checked.report))
}

/// Re-apply paved's desired state: an `update` request with the resource's current values,
/// through the guardrails and steps like any update. The open findings are marked reverted
/// by it; the next check confirms.
#[utoipa::path(post, path = "/v1/resources/{id}/drift/revert", operation_id = "revertResourceDrift", tag = "drift",
    params(("id" = String, Path, description = "Resource id")),
    responses((status = 202, description = "The update request that re-applies the desired state", body = Request),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "No open drift, not ready, or busy with another request", body = ErrorEnvelope)))]
pub async fn revert(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Request>), ApiError> {
    let policies = state.policies();
    let offerings = state.templates().snapshot();
    let inputs = state.guardrail_inputs(&policies);
    let request = drift::revert(&inputs, &offerings, &principal, &id).await?;
    state.wake_workers();
    Ok((StatusCode::ACCEPTED, Json(request)))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptDrift {
    /// Findings to accept; all open ones when absent.
    pub ids: Option<Vec<i64>>,
}

/// Keep the changes: the actual values of the open findings (or of `ids`) become what later
/// checks expect. A missing database, role or user cannot be accepted. An update or revert
/// re-applies the offering's spec and clears acceptances.
#[utoipa::path(post, path = "/v1/resources/{id}/drift/accept", operation_id = "acceptResourceDrift", tag = "drift",
    params(("id" = String, Path, description = "Resource id")), request_body = AcceptDrift,
    responses((status = 200, body = DriftReport), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Nothing to accept, or a finding that cannot be accepted", body = ErrorEnvelope)))]
pub async fn accept(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<DriftReport>, ApiError> {
    let body: AcceptDrift = if body.iter().all(u8::is_ascii_whitespace) {
        AcceptDrift::default()
    } else {
        let de = &mut serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            ApiError::input(format!("invalid request body: {}: {}", e.path(), e.inner()))
        })?
    };
    let ids = body.ids.as_deref();
    let accepted = drift::accept(state.db(), &principal, &id, ids, state.now()).await?;
    state.refresh_entity(&accepted.entity_name, &id);
    Ok(Json(accepted.report))
}
