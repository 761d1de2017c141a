//! Estimates, team budgets and spend, policies: the guardrails, readable before ordering.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    extract::ApiJson,
    page::{NoFilter, Page, PageParams, Paged},
};
use crate::{
    access::{self, Act, Target},
    api::state::AppState,
    cost::{self, Estimate, TeamSpend},
    error::{ApiError, ErrorEnvelope},
    guardrails::{Assessment, BudgetView},
    policy::{PolicyDecision, PolicyInfo},
    usecases::budget,
    vocab::{entity_ref::EntityRef, field_error::FieldError, principal::Principal},
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EstimateRequest {
    pub offering: String,
    #[schema(value_type = Object)]
    pub values: Value,
}

/// Everything the form's review step shows before submit.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EstimateResponse {
    /// False when the values break the form; then only `errors` is filled.
    pub valid: bool,
    pub errors: Vec<FieldError>,
    pub estimate: Option<Estimate>,
    pub decision: Option<PolicyDecision>,
    pub budget: Option<BudgetView>,
}

pub(crate) async fn assess(
    state: &AppState,
    principal: &Principal,
    offering: &str,
    values: &Value,
) -> Result<EstimateResponse, ApiError> {
    let o = super::requests::offering(state, offering)?;
    let policies = state.policies();
    let assessment = crate::usecases::assess::assess(
        &state.guardrail_inputs(&policies),
        &o,
        values,
        principal,
        None,
        None,
    )
    .await
    .map_err(|e| ApiError::place(&o.name, e.into()))?;
    Ok(match assessment {
        Assessment::Invalid(errors) => EstimateResponse {
            valid: false,
            errors,
            estimate: None,
            decision: None,
            budget: None,
        },
        Assessment::Decided {
            estimate,
            decision,
            budget,
            ..
        } => EstimateResponse {
            valid: true,
            errors: vec![],
            estimate: Some(estimate),
            decision: Some(decision),
            // Another team's spend is theirs to see.
            budget: access::may_see(principal, Target::Team(&budget.team)).then_some(budget),
        },
    })
}

/// Price an order and run every policy over it, without storing anything.
///
/// Terraform parts are planned (never applied) and their plans priced and decided by the
/// `plan_*` rules.
#[utoipa::path(post, path = "/v1/estimates", operation_id = "estimate", tag = "guardrails",
    request_body = EstimateRequest,
    responses((status = 200, body = EstimateResponse),
        (status = 400, description = "Bad input, or a Terraform part's plan failed (the message names the cause)", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 503, description = "paved is starting or its database is unavailable, or a Terraform part could not be planned now (every estimate slot taken); try again", body = ErrorEnvelope)))]
pub async fn estimate(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<EstimateRequest>,
) -> Result<Json<EstimateResponse>, ApiError> {
    Ok(Json(
        assess(&state, &principal, &body.offering, &body.values).await?,
    ))
}

pub(crate) fn team_ref(team: &str) -> Result<EntityRef, ApiError> {
    let r = EntityRef::parse(team, "group").map_err(|e| ApiError::input(format!("team: {e}")))?;
    if r.kind() != "group" {
        return Err(ApiError::input(format!(
            "team: must be a group, not a {}",
            r.kind()
        )));
    }
    Ok(r)
}

pub use crate::usecases::budget::Budget;

/// A team's monthly budget.
#[utoipa::path(get, path = "/v1/teams/{team}/budget", operation_id = "getBudget", tag = "guardrails",
    params(("team" = String, Path, description = "Group ref or name, e.g. `team-a`")),
    responses((status = 200, body = Budget), (status = 400, body = ErrorEnvelope), (status = 404, description = "Not a team the caller may see", body = ErrorEnvelope)))]
pub async fn get_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path(team): Path<String>,
) -> Result<Json<Budget>, ApiError> {
    let team = team_ref(&team)?;
    let (cost, currency) = (&state.settings().cost, &state.pricebook().currency);
    Ok(Json(
        budget::get(state.db(), cost, currency, &principal, &team).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetBudget {
    /// Monthly limit in the price book's currency.
    pub monthly_limit: f64,
}

/// Set a team's monthly budget (platform-admins).
#[utoipa::path(put, path = "/v1/teams/{team}/budget", operation_id = "setBudget", tag = "guardrails",
    params(("team" = String, Path, description = "Group ref or name")), request_body = SetBudget,
    responses((status = 200, body = Budget), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, description = "Not a team the caller may see", body = ErrorEnvelope)))]
pub async fn set_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path(team): Path<String>,
    ApiJson(body): ApiJson<SetBudget>,
) -> Result<Json<Budget>, ApiError> {
    let team = team_ref(&team)?;
    let (cost, currency) = (&state.settings().cost, &state.pricebook().currency);
    let limit = body.monthly_limit;
    let set = budget::set(
        state.db(),
        cost,
        currency,
        &principal,
        &team,
        limit,
        state.now(),
    );
    Ok(Json(set.await?))
}

/// A team's spend: run rate of its active resources, month to date, forecast to month end.
#[utoipa::path(get, path = "/v1/teams/{team}/spend", operation_id = "getSpend", tag = "guardrails",
    params(("team" = String, Path, description = "Group ref or name")),
    responses((status = 200, body = TeamSpend), (status = 400, body = ErrorEnvelope), (status = 404, description = "Not a team the caller may see", body = ErrorEnvelope)))]
pub async fn spend(
    State(state): State<AppState>,
    principal: Principal,
    Path(team): Path<String>,
) -> Result<Json<TeamSpend>, ApiError> {
    let team = team_ref(&team)?;
    budget::authorize(&principal, Act::Read, &team)?;
    let book = state.pricebook();
    Ok(Json(
        crate::usecases::spend::team_spend(state.db(), &team, book, state.now()).await?,
    ))
}

/// The loaded policies and what each decides, by file name.
#[utoipa::path(get, path = "/v1/policies", operation_id = "listPolicies", tag = "guardrails",
    params(PageParams),
    responses((status = 200, body = Page<PolicyInfo>), (status = 400, body = ErrorEnvelope)))]
pub async fn policies(
    State(state): State<AppState>,
    Paged { paging, .. }: Paged<NoFilter>,
) -> Result<Json<Page<PolicyInfo>>, ApiError> {
    let mut all = state.policies().policies().to_vec();
    // The cursor compares file names as strings: sort the same way.
    all.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(Json(Page::of_sorted(all, &paging, "policies", |p| {
        p.file.clone()
    })?))
}

/// Run every policy over an input document (as paved builds it for requests).
#[utoipa::path(post, path = "/v1/policies/evaluate", operation_id = "evaluatePolicies", tag = "guardrails",
    request_body = Object,
    responses((status = 200, body = PolicyDecision), (status = 400, body = ErrorEnvelope)))]
pub async fn evaluate(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<Value>,
) -> Result<Json<PolicyDecision>, ApiError> {
    if !input.is_object() {
        return Err(ApiError::input("the input document must be a JSON object"));
    }
    state
        .policies()
        .evaluate(&input)
        .map(Json)
        .map_err(|e| ApiError::input(format!("policy evaluation failed: {e}")))
}

/// What one resource costs: monthly, month to date, forecast to month end.
#[utoipa::path(get, path = "/v1/resources/{id}/cost", operation_id = "getResourceCost", tag = "guardrails",
    params(("id" = String, Path, description = "Resource id")),
    responses((status = 200, body = cost::ResourceCost), (status = 404, body = ErrorEnvelope)))]
pub async fn resource_cost(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<cost::ResourceCost>, ApiError> {
    let book = state.pricebook();
    crate::usecases::spend::resource_cost(state.db(), &principal, &id, book, state.now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no resource with id {id:?}")))
}
