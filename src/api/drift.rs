//! `/v1/resources/{id}/drift`: what changed behind paved's back, and resolving it.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;

use super::resources::{authorized, update_resource};
use crate::{
    access::Act,
    api::state::AppState,
    day2::drift::{self, DriftError, DriftReport},
    error::{ApiError, ErrorEnvelope, ErrorName},
    provisioning::requests::Request,
    usecases::update::Purpose,
    vocab::principal::Principal,
};

fn drift_error(e: DriftError) -> ApiError {
    match e {
        DriftError::NotAllowed(m) => ApiError::new(ErrorName::NotAllowed, m),
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
    authorized(&state, &principal, &id, |_| Act::Read).await?;
    Ok(Json(drift::report(state.db(), &id).await?))
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
    let res = authorized(&state, &principal, &id, |_| Act::Change).await?;
    let checked = drift::check(
        state.db(),
        state.drivers(),
        state.notifier(),
        &res,
        &principal.subject,
        state.now(),
    )
    .await
    .map_err(drift_error)?;
    crate::day2::usage::record_self_activity(
        state.db(),
        &res.id,
        &checked.self_transactions,
        state.now(),
    )
    .await;
    if checked.status_changed {
        state.refresh_entity(&res.entity_name, &res.id);
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
    // Read before the update authorizes; nothing of it is answered to a caller it refuses.
    let open_findings = !drift::report(state.db(), &id).await?.findings.is_empty();
    let purpose = Purpose::Revert { open_findings };
    let request = update_resource(&state, &principal, &id, &serde_json::json!({}), purpose).await?;
    let res = authorized(&state, &principal, &id, |_| Act::Change).await?;
    drift::mark_reverted(state.db(), &res, &request.id, &principal, state.now()).await?;
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
    let res = authorized(&state, &principal, &id, |_| Act::Change).await?;
    let body: AcceptDrift = if body.iter().all(u8::is_ascii_whitespace) {
        AcceptDrift::default()
    } else {
        let de = &mut serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            ApiError::input(format!("invalid request body: {}: {}", e.path(), e.inner()))
        })?
    };
    let report = drift::accept(
        state.db(),
        &res,
        body.ids.as_deref(),
        &principal,
        state.now(),
    )
    .await
    .map_err(drift_error)?;
    state.refresh_entity(&res.entity_name, &res.id);
    Ok(Json(report))
}
