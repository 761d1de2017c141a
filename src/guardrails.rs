//! Everything paved decides before provisioning: the template's form, the cost, the team's
//! budget and the policies, as one assessment.

use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    Statement, TransactionTrait,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    auth::Principal,
    catalog::EntityRef,
    config::CostSettings,
    cost::{self, Estimate, PriceBook},
    db::entities::budget,
    policy::{PolicyDecision, PolicySet},
    provisioning::requests::{NewRequest, PrepareError},
    templates::{FieldError, Offering, RenderError, Renderer},
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

#[derive(Debug, thiserror::Error)]
pub enum AssessError {
    /// The template cannot render or price its own plan: the platform team's bug.
    #[error("{0}")]
    Template(String),
    #[error("policy evaluation failed: {0}")]
    Policy(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

pub struct Inputs<'a> {
    pub db: &'a DatabaseConnection,
    pub renderer: &'a Renderer,
    pub pricebook: &'a PriceBook,
    pub policies: &'a PolicySet,
    pub cost: &'a CostSettings,
    /// For the provisioning job a pending request gets.
    pub max_attempts: i32,
    /// Tells approvers when a request waits for them.
    pub notifier: &'a crate::notifications::Notifier,
    /// Who holds which role beyond developer (`auth.roles`): platform-admins to notify.
    pub roles: &'a std::collections::BTreeMap<String, Vec<String>>,
    /// The moment the order is assessed at (spend, prorating).
    pub now: chrono::DateTime<Utc>,
}

/// Validates, renders, prices, budgets and runs every policy over one order.
pub async fn assess(
    inputs: &Inputs<'_>,
    offering: &Offering,
    values: &Value,
    requester: &Principal,
    idempotency_key: Option<crate::provisioning::requests::IdempotencyKey>,
    replaces: Option<&crate::db::entities::resource::Model>,
) -> Result<Assessment, AssessError> {
    let priced = match price(inputs, offering, values, requester, idempotency_key)? {
        Ok(p) => p,
        Err(errors) => return Ok(Assessment::Invalid(errors)),
    };
    let (budget, decision) =
        decide(inputs.db, inputs, offering, &priced, requester, replaces).await?;
    Ok(Assessment::Decided {
        request: Box::new(priced.request),
        estimate: priced.estimate,
        budget,
        decision,
    })
}

/// An order that passed its form, rendered and priced: everything that does not depend on
/// what the team already spends.
#[derive(Debug)]
pub struct Priced {
    pub request: NewRequest,
    pub estimate: Estimate,
}

/// The part of an assessment that reads no database: form, plan, price.
pub fn price(
    inputs: &Inputs<'_>,
    offering: &Offering,
    values: &Value,
    requester: &Principal,
    idempotency_key: Option<crate::provisioning::requests::IdempotencyKey>,
) -> Result<Result<Priced, Vec<FieldError>>, AssessError> {
    let request = match NewRequest::prepare(
        offering,
        inputs.renderer,
        values,
        requester.subject.clone(),
        idempotency_key,
    ) {
        Ok(r) => r,
        Err(PrepareError::Invalid(errors)) => return Ok(Err(errors)),
        Err(PrepareError::Template(RenderError { path, message })) => {
            return Err(AssessError::Template(format!("{path}: {message}")));
        }
    };
    let estimate = cost::estimate(
        offering,
        inputs.renderer,
        inputs.pricebook,
        &request.values,
        &request.spec,
    )
    .map_err(AssessError::Template)?;
    Ok(Ok(Priced { request, estimate }))
}

/// Budgets a priced order against what its team spends and has ordered, read through `db`,
/// and runs every policy. An order that will be stored must be decided on the connection
/// that holds its team's [`TeamLock`].
pub async fn decide<C: ConnectionTrait>(
    db: &C,
    inputs: &Inputs<'_>,
    offering: &Offering,
    priced: &Priced,
    requester: &Principal,
    replaces: Option<&crate::db::entities::resource::Model>,
) -> Result<(BudgetView, PolicyDecision), AssessError> {
    let budget = budget_view(
        db,
        inputs,
        &priced.request.owner,
        &priced.estimate,
        replaces,
    )
    .await?;
    let input = policy_input(
        offering,
        &priced.request,
        requester,
        &priced.estimate,
        &budget,
    );
    let decision = inputs
        .policies
        .evaluate(&input)
        .map_err(AssessError::Policy)?;
    Ok((budget, decision))
}

/// Serializes the orders of one team, from reading its spend to storing the order, so two
/// concurrent orders cannot each fit under a budget that holds only one of them.
///
/// In this process, a per-team lock comes first, so a burst of one team's orders waits in
/// memory, not each on a pooled database connection that other callers need.
///
/// PostgreSQL (several replicas may share the database): then a transaction holding a
/// transaction-scoped advisory lock keyed on the team; the budget is read and the order
/// inserted inside it, and the lock ends with the commit, so the next order of the team, on
/// any replica, reads a spend that includes this one. Other teams are not delayed.
///
/// SQLite: the in-process lock is all. SQLite is the single-replica embedded default (a file
/// only one paved serves), so the process is the whole world; a write transaction taken up
/// front (`BEGIN IMMEDIATE`) would serialize every team's orders with every other write
/// (workers, audit) and turn contention into `SQLITE_BUSY` after the busy timeout. The reads
/// and the insert use the pool as usual: the insert commits before the lock is released.
pub enum TeamLock {
    Postgres {
        txn: DatabaseTransaction,
        _local: tokio::sync::OwnedMutexGuard<()>,
    },
    Local(tokio::sync::OwnedMutexGuard<()>),
}

/// Class id of paved's advisory locks on its own database (the two-key form keeps them apart
/// from any other user of advisory locks there): "pave" in ASCII.
const ORDER_LOCK_CLASS: i32 = 0x7061_7665;

impl TeamLock {
    pub async fn acquire(db: &DatabaseConnection, team: &str) -> Result<Self, DbErr> {
        let local = LOCAL_LOCKS.lock(team).await;
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(Self::Local(local));
        }
        let txn = db.begin().await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            [ORDER_LOCK_CLASS.into(), team.into()],
        ))
        .await?;
        Ok(Self::Postgres { txn, _local: local })
    }

    /// The transaction to read and store through, where there is one.
    pub fn transaction(&self) -> Option<&DatabaseTransaction> {
        match self {
            Self::Postgres { txn, .. } => Some(txn),
            Self::Local(_) => None,
        }
    }

    /// Ends the lock: commits what was stored under it when `commit`, else rolls it back.
    pub async fn release(self, commit: bool) -> Result<(), DbErr> {
        match self {
            Self::Postgres { txn, .. } if commit => txn.commit().await,
            Self::Postgres { txn, .. } => txn.rollback().await,
            Self::Local(_) => Ok(()),
        }
    }
}

static LOCAL_LOCKS: crate::keyed_locks::KeyedLocks = crate::keyed_locks::KeyedLocks::new();

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

async fn budget_view<C: ConnectionTrait>(
    db: &C,
    inputs: &Inputs<'_>,
    team: &EntityRef,
    estimate: &Estimate,
    replaces: Option<&crate::db::entities::resource::Model>,
) -> Result<BudgetView, DbErr> {
    let limit = match budget::Entity::find_by_id(team.to_string()).one(db).await? {
        Some(b) => Some(b.monthly_limit_cents as f64 / 100.0),
        None => configured_budget(inputs.cost, team),
    };
    let spend = cost::team_spend(
        db,
        team,
        &inputs.pricebook.currency,
        inputs.pricebook.hours_per_month,
        inputs.now,
    )
    .await?;
    let this_request = match &estimate.lifetime {
        Some(l) => {
            estimate.monthly * (f64::from(l.hours) / inputs.pricebook.hours_per_month).min(1.0)
        }
        None => estimate.monthly,
    };
    let now = inputs.now;
    let ordered = cost::ordered_monthly(db, team).await?;
    // Only a resource of this team is in its spend (an update never changes the owner).
    let replaced = replaces
        .filter(|r| r.owner == team.to_string() && r.deleted_at.is_none())
        .map_or(0.0, |r| {
            cost::current_monthly_of(r, now, inputs.pricebook.hours_per_month)
        });
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Ok(BudgetView {
        team: team.to_string(),
        monthly_limit: limit,
        current_monthly: spend.current_monthly,
        ordered_monthly: round(ordered),
        replaced_monthly: round(replaced),
        this_request: round(this_request),
        after: round(spend.current_monthly + ordered - replaced + this_request),
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
    use std::path::Path;

    use super::*;
    use crate::templates::Renderer;

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
