//! Everything paved decides before provisioning: the template's form, the cost, the team's
//! budget and the policies, as one assessment. Pure: what the team already spends comes in
//! as numbers (`usecases::assess` reads them under the team's lock).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    config::CostSettings,
    cost::{self, Estimate, PriceBook},
    policy::{PolicyDecision, PolicySet},
    templates::{
        Offering, RenderError, Renderer,
        order::{IdempotencyKey, NewRequest, PrepareError},
    },
    vocab::{entity_ref::EntityRef, field_error::FieldError, principal::Principal},
};

/// A team's budget next to its spend and this order.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetView {
    pub team: String,
    /// None: the team has no budget.
    pub monthly_limit: Option<f64>,
    /// What the team's live resources cost per month.
    pub current_monthly: f64,
    /// Orders accepted but not provisioned yet (pending, awaiting approval, running): they
    /// will cost too, so two orders cannot each squeeze under the budget.
    pub ordered_monthly: f64,
    /// For a change: what the resource being changed costs now (its new cost replaces it).
    pub replaced_monthly: f64,
    /// What this order adds to the monthly spend (prorated when it lives for hours).
    pub this_request: f64,
    /// current + ordered - replaced + this request.
    pub after: f64,
}

/// The outcome of checking an order. (Most orders are valid; boxing the common case would buy
/// nothing.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Assessment {
    /// The values break the form (every violation listed).
    Invalid(Vec<FieldError>),
    /// Valid: priced, budgeted and decided.
    Decided {
        request: Box<NewRequest>,
        estimate: Estimate,
        budget: BudgetView,
        decision: PolicyDecision,
    },
}

/// Why an order could not be decided: the platform team's content, never the requester's values.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The template cannot render or price its own plan: the platform team's bug.
    #[error("{0}")]
    Template(String),
    #[error("policy evaluation failed: {0}")]
    Policy(String),
}

/// What decisions are made with: the loaded content and the moment.
pub struct Rules<'a> {
    pub renderer: &'a Renderer,
    pub pricebook: &'a PriceBook,
    pub policies: &'a PolicySet,
    pub cost: &'a CostSettings,
    /// The moment the order is assessed at (prorating).
    pub now: DateTime<Utc>,
}

/// An order that passed its form, rendered and priced: everything that does not depend on
/// what the team already spends.
#[derive(Debug)]
pub struct Priced {
    pub request: NewRequest,
    pub estimate: Estimate,
    /// Terraform parts planned for the estimate: what their policies' `plan_*` rules decide.
    pub plans: Vec<PlannedPart>,
}

/// A part's planned changes (`PlanSummary::changes`: addresses, types, actions, attribute
/// names), as `input.plan` shows them to policies.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPart {
    pub part: String,
    pub resource_changes: Value,
}

/// Form, plan, price.
pub fn price(
    rules: &Rules<'_>,
    offering: &Offering,
    values: &Value,
    requester: &Principal,
    idempotency_key: Option<IdempotencyKey>,
) -> Result<Result<Priced, Vec<FieldError>>, RuleError> {
    let request = match NewRequest::prepare(
        offering,
        rules.renderer,
        values,
        requester.subject.clone(),
        idempotency_key,
    ) {
        Ok(r) => r,
        Err(PrepareError::Invalid(errors)) => return Ok(Err(errors)),
        Err(PrepareError::Template(RenderError { path, message })) => {
            return Err(RuleError::Template(format!("{path}: {message}")));
        }
    };
    let estimate = cost::estimate(
        offering,
        rules.renderer,
        rules.pricebook,
        &request.values,
        &request.spec,
    )
    .map_err(RuleError::Template)?;
    Ok(Ok(Priced {
        request,
        estimate,
        plans: Vec::new(),
    }))
}

/// What the order's team spends and may spend, read when the order is decided.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spend {
    /// None: the team has no budget.
    pub limit: Option<f64>,
    pub current_monthly: f64,
    pub ordered_monthly: f64,
    /// For a change: what the resource being changed costs now.
    pub replaced_monthly: f64,
}

/// The order's budget line: its cost (prorated when it lives for hours) on top of the spend.
pub fn budget(
    team: &EntityRef,
    spend: Spend,
    estimate: &Estimate,
    hours_per_month: f64,
) -> BudgetView {
    let this_request = match &estimate.lifetime {
        Some(l) => estimate.monthly * (f64::from(l.hours) / hours_per_month).min(1.0),
        None => estimate.monthly,
    };
    let round = |x: f64| (x * 100.0).round() / 100.0;
    BudgetView {
        team: team.to_string(),
        monthly_limit: spend.limit,
        current_monthly: spend.current_monthly,
        ordered_monthly: round(spend.ordered_monthly),
        replaced_monthly: round(spend.replaced_monthly),
        this_request: round(this_request),
        after: round(
            spend.current_monthly + spend.ordered_monthly - spend.replaced_monthly + this_request,
        ),
    }
}

/// Budgets a priced order against its team's spend and runs every policy.
pub fn decide(
    rules: &Rules<'_>,
    offering: &Offering,
    priced: &Priced,
    requester: &Principal,
    spend: Spend,
) -> Result<(BudgetView, PolicyDecision), RuleError> {
    let budget = budget(
        &priced.request.owner,
        spend,
        &priced.estimate,
        rules.pricebook.hours_per_month,
    );
    let input = policy_input(
        offering,
        &priced.request,
        requester,
        &priced.estimate,
        &budget,
    );
    let mut decision = rules.policies.evaluate(&input).map_err(RuleError::Policy)?;
    // Each planned part once more, with its plan as `input.plan` (as when it is applied).
    for plan in &priced.plans {
        let mut with_plan = input.clone();
        with_plan["plan"] = json!({"part": plan.part, "resource_changes": plan.resource_changes});
        let d = rules
            .policies
            .evaluate(&with_plan)
            .map_err(RuleError::Policy)?;
        decision = decision.with_plan_denials(d);
    }
    Ok((budget, decision))
}

/// The document every policy sees as `input` (documented in policies/README.md).
pub fn policy_input(
    offering: &Offering,
    request: &NewRequest,
    requester: &Principal,
    estimate: &Estimate,
    budget: &BudgetView,
) -> Value {
    json!({
        "offering": {
            "name": offering.name,
            "version": offering.version,
            "resource_type": offering.spec.resource.resource_type,
            "ttl": offering.spec.ttl,
        },
        "parameters": request.values.as_map(),
        "resource": request.spec.resource,
        "parts": request.spec.parts,
        "requester": {"ref": requester.subject, "roles": requester.roles, "groups": requester.groups},
        "estimate": estimate,
        "budget": {
            "team": budget.team,
            "monthly_limit": budget.monthly_limit,
            "current_monthly": budget.current_monthly,
            "ordered_monthly": budget.ordered_monthly,
            "replaced_monthly": budget.replaced_monthly,
            "this_request": budget.this_request,
            "after": budget.after,
        },
    })
}

/// The budget configuration gives a team, matching refs however they were written.
pub fn configured_budget(cost: &CostSettings, team: &EntityRef) -> Option<f64> {
    cost.budgets
        .iter()
        .find(|(k, _)| EntityRef::parse(k, "group").is_ok_and(|r| &r == team))
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::Renderer;
    use std::path::Path;

    #[derive(serde::Deserialize)]
    struct Example {
        name: String,
        offering: String,
        values: Value,
        expect: Expected,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Expected {
        outcome: String,
        deny: Vec<String>,
        warn: Vec<String>,
        require_approval: Vec<String>,
    }

    /// Every documented example in policies/examples.yaml decides as documented.
    #[test]
    fn documented_policy_examples_hold() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let renderer = Renderer::new();
        let book = PriceBook::load(&root.join("pricing.yaml")).unwrap();
        let policies = PolicySet::load(&root.join("policies"), &json!({})).unwrap();
        let examples: Vec<Example> = yaml_serde::from_str(
            &std::fs::read_to_string(root.join("policies/examples.yaml")).unwrap(),
        )
        .unwrap();
        assert!(examples.len() >= 7);
        for ex in examples {
            let offering =
                Offering::load(&root.join("templates").join(&ex.offering), &renderer).unwrap();
            let req = NewRequest::prepare(
                &offering,
                &renderer,
                &ex.values,
                "user:default/jane".into(),
                None,
            )
            .unwrap_or_else(|e| panic!("{}: {e:?}", ex.name));
            let est = cost::estimate(&offering, &renderer, &book, &req.values, &req.spec).unwrap();
            let budget = BudgetView {
                team: req.owner.to_string(),
                monthly_limit: None,
                current_monthly: 0.0,
                ordered_monthly: 0.0,
                replaced_monthly: 0.0,
                this_request: est.monthly,
                after: est.monthly,
            };
            let d = policies
                .evaluate(&policy_input(
                    &offering,
                    &req,
                    &Principal::anonymous(),
                    &est,
                    &budget,
                ))
                .unwrap();
            let got = Expected {
                outcome: serde_json::to_value(d.outcome)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
                deny: d.deny.iter().map(|v| v.rule.clone()).collect(),
                warn: d.warn.iter().map(|v| v.rule.clone()).collect(),
                require_approval: d.require_approval.iter().map(|v| v.rule.clone()).collect(),
            };
            assert_eq!(got, ex.expect, "{}", ex.name);
        }
    }
}
