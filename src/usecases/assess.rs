//! Assessing an order: the guardrails' decision over what its team spends now, read under
//! the team's lock when the order is to be stored.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionTrait,
};
use serde_json::Value;

use crate::{
    config::CostSettings,
    cost::{self, PriceBook},
    db::spend,
    guardrails::{self, Assessment, BudgetView, Priced, RuleError, Rules, Spend},
    notifications::Notifier,
    policy::{PolicyDecision, PolicySet},
    templates::{Offering, Renderer, order::IdempotencyKey},
    vocab::{entity_ref::EntityRef, keyed_locks::KeyedLocks, principal::Principal},
};

#[derive(Debug, thiserror::Error)]
pub enum AssessError {
    /// The guardrails could not decide (a template or policy bug of the platform team's).
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A Terraform part's plan for the estimate failed (the driver's error: already free of
    /// secrets).
    #[error("the estimate's terraform plan of part {part} failed: {error}")]
    Plan {
        part: String,
        error: crate::provisioning::drivers::DriverError,
    },
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
    pub notifier: &'a Notifier,
    /// Who holds which role beyond developer (`auth.roles`): platform-admins to notify.
    pub roles: &'a std::collections::BTreeMap<crate::vocab::principal::Role, Vec<String>>,
    /// The moment the order is assessed at (spend, prorating).
    pub now: DateTime<Utc>,
    /// Plans Terraform parts for their estimate; without it (unit tests) they are priced
    /// by their formulas only.
    pub terraform: Option<&'a crate::provisioning::drivers::terraform::TerraformDriver>,
}

impl Inputs<'_> {
    pub fn rules(&self) -> Rules<'_> {
        Rules {
            renderer: self.renderer,
            pricebook: self.pricebook,
            policies: self.policies,
            cost: self.cost,
            now: self.now,
        }
    }
}

/// Validates, renders, prices, budgets and runs every policy over one order.
pub async fn assess(
    inputs: &Inputs<'_>,
    offering: &Offering,
    values: &Value,
    requester: &Principal,
    idempotency_key: Option<IdempotencyKey>,
    replaces: Option<&crate::db::entities::resource::Model>,
) -> Result<Assessment, AssessError> {
    let priced = match price(inputs, offering, values, requester, idempotency_key).await? {
        Ok(p) => p,
        Err(errors) => return Ok(Assessment::Invalid(errors)),
    };
    // A taken name is a problem of the form the requester can fix now, not a failure at
    // `plan` after an approval.
    if let Some(taken) = name_taken(inputs.db, offering, &priced, requester, replaces).await? {
        return Ok(Assessment::Invalid(vec![taken.field_error()]));
    }
    let (limit, _) = super::budget::limit_of(inputs.db, inputs.cost, &priced.request.owner).await?;
    let (budget, decision) = decide(
        inputs.db, inputs, offering, &priced, requester, replaces, limit,
    )
    .await?;
    Ok(Assessment::Decided {
        request: Box::new(priced.request),
        estimate: priced.estimate,
        budget,
        decision,
    })
}

/// The part of an assessment that reads no database: form, plan, price. Each Terraform part
/// is planned (never applied) and its plan priced by the price book's `terraform` section.
pub async fn price(
    inputs: &Inputs<'_>,
    offering: &Offering,
    values: &Value,
    requester: &Principal,
    idempotency_key: Option<IdempotencyKey>,
) -> Result<Result<Priced, Vec<crate::vocab::field_error::FieldError>>, AssessError> {
    let mut priced = match price_by_formula(inputs, offering, values, requester, idempotency_key)? {
        Ok(p) => p,
        Err(errors) => return Ok(Err(errors)),
    };
    plan_parts(inputs, &mut priced).await?;
    Ok(Ok(priced))
}

/// [`price`] without planning Terraform parts (seconds each): what an order checks first,
/// so a repeated key or a taken name is answered without a plan.
pub fn price_by_formula(
    inputs: &Inputs<'_>,
    offering: &Offering,
    values: &Value,
    requester: &Principal,
    idempotency_key: Option<IdempotencyKey>,
) -> Result<Result<Priced, Vec<crate::vocab::field_error::FieldError>>, AssessError> {
    Ok(guardrails::price(
        &inputs.rules(),
        offering,
        values,
        requester,
        idempotency_key,
    )?)
}

/// Plans each Terraform part (never applies) and adds its plan's priced lines and changes.
pub async fn plan_parts(inputs: &Inputs<'_>, priced: &mut Priced) -> Result<(), AssessError> {
    use crate::provisioning::drivers::terraform::PlanSummary;
    let Some(driver) = inputs.terraform else {
        return Ok(());
    };
    let parts: Vec<(String, Value)> = priced
        .request
        .spec
        .parts
        .iter()
        .filter(|p| p.driver == "terraform")
        .map(|p| (p.id.clone(), p.spec.clone()))
        .collect();
    let mut lines = Vec::new();
    for (part, spec) in parts {
        let failed = |error| AssessError::Plan {
            part: part.clone(),
            error,
        };
        let spec = driver.parse(&spec).map_err(failed)?;
        let plan = driver.plan_for_estimate(&spec).await.map_err(failed)?;
        lines.extend(inputs.pricebook.terraform.price(&part, &plan));
        priced.plans.push(guardrails::PlannedPart {
            resource_changes: Value::from(PlanSummary::from_plan(&plan).changes),
            part,
        });
    }
    if !priced.plans.is_empty() {
        priced
            .estimate
            .add_lines(lines, inputs.pricebook.hours_per_month);
    }
    Ok(())
}

/// The live resource that already holds the name an order renders (names are unique across
/// teams: they are the catalog entity's name).
#[derive(Debug, Clone, PartialEq)]
pub struct NameTaken {
    /// The rendered resource name.
    pub name: String,
    /// The form field the requester changes to free it (`name`, or what the name is made of).
    pub field: String,
    /// The holder, when the requester may see it; another team's resource stays unnamed
    /// beyond its catalog ref (public in Backstage anyway).
    pub existing: Option<TakenBy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TakenBy {
    pub id: String,
    pub owner: String,
    pub status: crate::vocab::status::ResourceStatus,
}

impl NameTaken {
    pub fn entity_ref(&self) -> String {
        crate::vocab::entity_ref::resource_ref(&self.name)
    }

    /// What the requester reads: who holds the name and how to free it.
    pub fn message(&self) -> String {
        let r = self.entity_ref();
        match &self.existing {
            Some(e) => {
                let delete = format!("`paved resource delete {}`", e.id);
                if e.status == crate::vocab::status::ResourceStatus::Failed {
                    format!(
                        "the name {} is taken by resource {} ({r}) of {}, whose create failed; delete it to free the name ({delete}; deleting it touches nothing that is not paved's)",
                        self.name, e.id, e.owner
                    )
                } else {
                    format!(
                        "the name {} is taken by resource {} ({r}) of {}, {}; choose another name, or delete it to free the name ({delete})",
                        self.name, e.id, e.owner, e.status
                    )
                }
            }
            None => format!(
                "the name {} is taken by another team's resource ({r}); choose another name",
                self.name
            ),
        }
    }

    pub fn field_error(&self) -> crate::vocab::field_error::FieldError {
        crate::vocab::field_error::FieldError {
            field: self.field.clone(),
            rule: "unique".into(),
            message: self.message(),
        }
    }
}

/// Whether the order's resource name is held by a live resource other than the one it
/// changes (`replaces`).
pub async fn name_taken<C: ConnectionTrait>(
    db: &C,
    offering: &Offering,
    priced: &Priced,
    requester: &Principal,
    replaces: Option<&crate::db::entities::resource::Model>,
) -> Result<Option<NameTaken>, DbErr> {
    let name = &priced.request.spec.resource.name;
    if replaces.is_some_and(|r| &r.entity_name == name) {
        return Ok(None);
    }
    let Some(existing) = crate::db::resources::live_by_name(db, name).await? else {
        return Ok(None);
    };
    let visible = crate::access::may_see(
        requester,
        crate::access::Target::Resource {
            owner: &existing.owner,
        },
    );
    Ok(Some(NameTaken {
        name: name.clone(),
        field: name_field(offering),
        existing: visible.then_some(TakenBy {
            id: existing.id,
            owner: existing.owner,
            status: existing.status,
        }),
    }))
}

/// The form field a resource name comes from: `name` where the form has one, else the last
/// form field its template reads (a preview's `branch`).
fn name_field(offering: &Offering) -> String {
    let fields = offering.form.fields();
    if fields.contains("name") {
        return "name".into();
    }
    let template = &offering.spec.resource.name;
    template
        .match_indices("parameters.")
        .filter_map(|(at, m)| {
            let rest = &template[at + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let f = &rest[..end];
            fields.contains(f).then(|| f.to_owned())
        })
        .last()
        .unwrap_or_else(|| "name".into())
}

/// Budgets a priced order against what its team spends and has ordered, read through `db`,
/// and runs every policy. An order that will be stored must be decided on the connection
/// that holds its team's [`TeamLock`]. `limit` is the team's budget limit as the caller read
/// it (it chose the lock by it: a team without a budget takes none).
pub async fn decide<C: ConnectionTrait>(
    db: &C,
    inputs: &Inputs<'_>,
    offering: &Offering,
    priced: &Priced,
    requester: &Principal,
    replaces: Option<&crate::db::entities::resource::Model>,
    limit: Option<f64>,
) -> Result<(BudgetView, PolicyDecision), AssessError> {
    let spend = spend_of(db, inputs, &priced.request.owner, replaces, limit).await?;
    Ok(guardrails::decide(
        &inputs.rules(),
        offering,
        priced,
        requester,
        spend,
    )?)
}

async fn spend_of<C: ConnectionTrait>(
    db: &C,
    inputs: &Inputs<'_>,
    team: &EntityRef,
    replaces: Option<&crate::db::entities::resource::Model>,
    limit: Option<f64>,
) -> Result<Spend, DbErr> {
    let owner = team.to_string();
    let hours_per_month = inputs.pricebook.hours_per_month;
    // Summed by the database: the same cost for a team of any size.
    let full_from = cost::full_month_from(inputs.now, hours_per_month);
    let totals = spend::totals_of_team(db, &owner, inputs.now, full_from).await?;
    let current_monthly = cost::current_monthly_from(
        totals.full_month_cents,
        totals.expiring_cent_seconds,
        hours_per_month,
    );
    // Only a resource of this team is in its spend (an update never changes the owner).
    let replaced = replaces
        .filter(|r| r.owner == owner && r.deleted_at.is_none())
        .map_or(0.0, |r| {
            cost::current_monthly_of(&spend::billed(r), inputs.now, hours_per_month)
        });
    Ok(Spend {
        limit,
        current_monthly,
        ordered_monthly: totals.ordered_monthly,
        replaced_monthly: replaced,
    })
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
/// A team without a budget has nothing two orders could both fit under: its orders take no
/// lock and run side by side (in a transaction of their own on PostgreSQL all the same). A
/// budget set while one of them is being decided applies from the next order on.
///
/// SQLite: the in-process lock is all. SQLite is the single-replica embedded default (a file
/// only one paved serves), so the process is the whole world; a write transaction taken up
/// front (`BEGIN IMMEDIATE`) would serialize every team's orders with every other write
/// (workers, audit) and turn contention into `SQLITE_BUSY` after the busy timeout. The reads
/// and the insert use the pool as usual: the insert commits before the lock is released.
pub enum TeamLock {
    Postgres {
        txn: DatabaseTransaction,
        _local: Option<tokio::sync::OwnedMutexGuard<()>>,
    },
    Local(Option<tokio::sync::OwnedMutexGuard<()>>),
}

impl TeamLock {
    /// Locks `team`'s orders when it is `budgeted` (has a limit).
    pub async fn acquire(
        db: &DatabaseConnection,
        team: &str,
        budgeted: bool,
    ) -> Result<Self, DbErr> {
        let local = match budgeted {
            true => Some(LOCAL_LOCKS.lock(team).await),
            false => None,
        };
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(Self::Local(local));
        }
        let txn = db.begin().await?;
        if budgeted {
            spend::lock_team_orders(&txn, team).await?;
        }
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

static LOCAL_LOCKS: KeyedLocks = KeyedLocks::new();
