//! Reports over what paved manages: unused resources per team.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;

use super::extract::ApiQuery;
use crate::{
    api::state::AppState,
    day2::usage::UnusedReport,
    error::{ApiError, ErrorEnvelope},
    reports::{self, ReportError},
    vocab::principal::Principal,
};

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::NotFound(m) => ApiError::not_found(m),
            ReportError::Refused(r) => r.into(),
            ReportError::Invalid(e) => ApiError::input(e.to_string()).with_detail("errors", [e]),
            ReportError::Db(e) => e.into(),
        }
    }
}

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
    let window = q
        .window_hours
        .unwrap_or(state.settings().unused.window_hours);
    let currency = &state.pricebook().currency;
    let report =
        reports::unused_of_team(state.db(), &principal, &team, window, currency, state.now());
    Ok(Json(report.await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// How far back: `30d`, `7d`, `24h`, `2w` (1h to 366d; default `reports.window_hours`).
    pub window: Option<String>,
}

/// How the platform does: time to infrastructure (average, median, p95), success rate, policy
/// denials, warnings and approvals by rule, approvals waiting and their age, active resources
/// and monthly cost by team and offering, requests per team per week, drift incidents, and
/// what cleanup (expired and unused resources deleted) saves. Platform-wide, so only for
/// callers who see every team (platform-admins). The same figures are Prometheus gauges on
/// `/metrics`.
#[utoipa::path(get, path = "/v1/metrics/platform", operation_id = "getPlatformMetrics", tag = "guardrails",
    params(MetricsQuery),
    responses((status = 200, body = crate::reports::PlatformMetrics), (status = 400, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope)))]
pub async fn platform(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> Result<Json<crate::reports::PlatformMetrics>, ApiError> {
    let default_hours = state.settings().reports.window_hours;
    let currency = &state.pricebook().currency;
    let window = q.window.as_deref();
    let metrics = reports::platform_for(
        state.db(),
        &principal,
        window,
        default_hours,
        state.now(),
        currency,
    );
    Ok(Json(metrics.await?))
}

fn input_error(field: &str, rule: &str, message: String) -> ApiError {
    let e = crate::vocab::field_error::FieldError {
        field: field.into(),
        rule: rule.into(),
        message,
    };
    ApiError::input(e.to_string())
        .with_reason_phrase(&format!("Invalid input: {e}"))
        .with_detail("errors", [e])
}

/// Daily cost of a catalog entity in Backstage Cost Insights' `Cost` shape (the reference
/// backends' `getCatalogEntityDailyCost`): a Resource paved provisioned, a Group (its
/// resources), a Component (resources that depend on it) or a System. Computed from paved's
/// own history: each resource's creation, the monthly estimate of every successful create or
/// update, and its deletion (or expiry). `intervals` is an ISO 8601 repeating interval such
/// as `R2/P30D/2026-11-24` (percent-encode the slashes, or pass it as three path segments):
/// R periods of P days (`D`), weeks (`W`) or months (`M`) ending before the date. `change`
/// compares the last period with the first; `trendline` is a least-squares fit over (epoch
/// seconds, amount); `groupedCosts` breaks a Group/Component/System down by `offering` and
/// `resource`, a Resource by `part`.
#[utoipa::path(get, path = "/v1/cost-insights/entity/{namespace}/{kind}/{name}/{intervals}", operation_id = "getCatalogEntityDailyCost", tag = "guardrails",
    params(("namespace" = String, Path, description = "Entity namespace, e.g. default"),
        ("kind" = String, Path, description = "resource, group, component or system"),
        ("name" = String, Path, description = "Entity name"),
        ("intervals" = String, Path, description = "e.g. R2/P30D/2026-11-24 (percent-encoded)")),
    responses((status = 200, body = crate::reports::cost_insights::Cost), (status = 400, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn entity_cost(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, kind, name, intervals)): Path<(String, String, String, String)>,
) -> Result<Json<crate::reports::cost_insights::Cost>, ApiError> {
    entity_cost_of(&state, &principal, &namespace, &kind, &name, &intervals).await
}

/// The same with the interval's slashes left unencoded (three path segments).
pub async fn entity_cost_split(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, kind, name, r, p, d)): Path<(String, String, String, String, String, String)>,
) -> Result<Json<crate::reports::cost_insights::Cost>, ApiError> {
    entity_cost_of(
        &state,
        &principal,
        &namespace,
        &kind,
        &name,
        &format!("{r}/{p}/{d}"),
    )
    .await
}

async fn entity_cost_of(
    state: &AppState,
    principal: &Principal,
    namespace: &str,
    kind: &str,
    name: &str,
    intervals: &str,
) -> Result<Json<crate::reports::cost_insights::Cost>, ApiError> {
    use crate::reports::cost_insights as insights;
    let kind = kind.to_ascii_lowercase();
    if !["resource", "group", "component", "system"].contains(&kind.as_str()) {
        return Err(input_error(
            "kind",
            "enum",
            format!("must be resource, group, component or system, not {kind:?}"),
        ));
    }
    let entity =
        crate::vocab::entity_ref::EntityRef::parse(&format!("{kind}:{namespace}/{name}"), &kind)
            .map_err(|e| input_error("name", "entityRef", e))?;
    let iv = insights::Intervals::parse(intervals)
        .map_err(|e| input_error("intervals", "pattern", e))?;
    let cost = insights::entity_cost_for(
        state.db(),
        principal,
        &entity,
        &iv,
        state.pricebook().hours_per_month,
        state.now(),
    )
    .await?;
    cost.map(Json)
        .ok_or_else(|| ApiError::not_found(format!("paved has no {entity}")))
}
