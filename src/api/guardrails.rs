//! Estimates, team budgets and spend, policies: the guardrails, readable before ordering.

use axum::{
    Json,
    extract::{Path, State},
};
use sea_orm::{ActiveValue::Set, EntityTrait, sea_query::OnConflict};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    extract::ApiJson,
    page::{NoFilter, Page, PageParams, Paged},
};
use crate::{
    access::{self, Act, Target},
    app::AppState,
    auth::Principal,
    catalog::EntityRef,
    cost::{self, Estimate, TeamSpend},
    db::entities::budget,
    error::{ApiError, ErrorEnvelope},
    guardrails::{self, Assessment, BudgetView},
    policy::{PolicyDecision, PolicyInfo},
    templates::FieldError,
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
    .map_err(|e| super::requests::place_error(&o.name, e.into()))?;
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
#[utoipa::path(post, path = "/v1/estimates", operation_id = "estimate", tag = "guardrails",
    request_body = EstimateRequest,
    responses((status = 200, body = EstimateResponse), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    pub team: String,
    pub currency: String,
    /// None: no budget.
    pub monthly_limit: Option<f64>,
    /// `api` (set through this API), `config` (paved's configuration) or `none`.
    pub source: String,
    pub updated_by: Option<String>,
}

async fn load_budget(state: &AppState, team: &EntityRef) -> Result<Budget, ApiError> {
    let currency = state.pricebook().currency.clone();
    if let Some(b) = budget::Entity::find_by_id(team.to_string())
        .one(state.db())
        .await?
    {
        return Ok(Budget {
            team: b.team,
            currency,
            monthly_limit: Some(b.monthly_limit_cents as f64 / 100.0),
            source: "api".into(),
            updated_by: Some(b.updated_by),
        });
    }
    let configured = guardrails::configured_budget(&state.settings().cost, team);
    Ok(Budget {
        team: team.to_string(),
        currency,
        monthly_limit: configured,
        source: if configured.is_some() {
            "config"
        } else {
            "none"
        }
        .into(),
        updated_by: None,
    })
}

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
    authorize_team(&principal, Act::Read, &team)?;
    Ok(Json(load_budget(&state, &team).await?))
}

/// What a team's budget and spend routes ask of `access`; another team's answers 404.
fn authorize_team(principal: &Principal, act: Act<'_>, team: &EntityRef) -> Result<(), ApiError> {
    let team = team.to_string();
    access::authorize(principal, act, Target::Team(&team))
        .map_err(|d| ApiError::denied(d, || format!("no team {team:?} known to paved")))
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
    authorize_team(&principal, Act::SetBudget, &team)?;
    if !(body.monthly_limit.is_finite() && body.monthly_limit >= 0.0 && body.monthly_limit < 1e12) {
        return Err(ApiError::input(
            "monthlyLimit: must be a non-negative amount",
        ));
    }
    let row = budget::ActiveModel {
        team: Set(team.to_string()),
        monthly_limit_cents: Set((body.monthly_limit * 100.0).round() as i64),
        updated_by: Set(principal.subject.clone()),
        updated_at: Set(state.now()),
    };
    budget::Entity::insert(row)
        .on_conflict(
            OnConflict::column(budget::Column::Team)
                .update_columns([
                    budget::Column::MonthlyLimitCents,
                    budget::Column::UpdatedBy,
                    budget::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(state.db())
        .await?;
    tracing::info!(team = %team, monthly_limit = body.monthly_limit, by = %principal.subject, "budget set");
    crate::audit::record_by(
        state.db(),
        &principal,
        "budget.set",
        &format!("team:{team}"),
        "set",
        Some(serde_json::json!({"monthlyLimit": body.monthly_limit})),
    )
    .await;
    Ok(Json(load_budget(&state, &team).await?))
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
    authorize_team(&principal, Act::Read, &team)?;
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
