//! Reports over what paved manages: unused resources per team.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;

use super::extract::ApiQuery;
use crate::{
    app::AppState,
    auth::Principal,
    error::{ApiError, ErrorEnvelope, ErrorName},
    provisioning::usage::{self, UnusedReport},
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UnusedQuery {
    /// Hours without activity that make a resource unused, 1-8760 (default `unused.window_hours`).
    pub window_hours: Option<u64>,
}

/// A team's resources nobody used over the window (no connections, transactions or key
/// activity in the drivers' readings), with the monthly cost deleting them would save.
#[utoipa::path(get, path = "/v1/teams/{team}/unused", operation_id = "getUnusedResources", tag = "guardrails",
    params(("team" = String, Path, description = "Group ref or name"), UnusedQuery),
    responses((status = 200, body = UnusedReport), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn unused(
    State(state): State<AppState>,
    principal: Principal,
    Path(team): Path<String>,
    ApiQuery(q): ApiQuery<UnusedQuery>,
) -> Result<Json<UnusedReport>, ApiError> {
    let team = super::guardrails::team_ref(&team)?.to_string();
    if !principal.may_see(&team) {
        return Err(ApiError::new(
            ErrorName::NotAllowed,
            format!("only members of {team} and platform-admins see its resources"),
        ));
    }
    let window = q
        .window_hours
        .unwrap_or(state.settings().unused.window_hours);
    if !(1..=8760).contains(&window) {
        return Err(
            ApiError::input("windowHours: must be between 1 and 8760").with_detail(
                "errors",
                [crate::templates::FieldError {
                    field: "windowHours".into(),
                    rule: "range".into(),
                    message: "must be between 1 and 8760".into(),
                }],
            ),
        );
    }
    Ok(Json(
        usage::team_report(
            state.db(),
            &team,
            window,
            &state.pricebook().currency,
            chrono::Utc::now(),
        )
        .await?,
    ))
}
