//! Placing an order: check it against the guardrails, then store it with their verdict.
//! Shared by the REST API and the `paved:provision` action.

use serde_json::Value;

use sea_orm::{ConnectionTrait, TransactionTrait};

use super::assess::{self, AssessError, Inputs, TeamLock};
use crate::provisioning::requests::{self, CreateError, Created, IdempotencyKey, Request, Verdict};
use crate::{
    guardrails,
    policy::{ApprovalNeed, Violation},
    templates::Offering,
    vocab::{
        entity_ref::EntityRef, field_error::FieldError, principal::Principal, status::RequestStatus,
    },
};

#[derive(Debug)]
pub enum Placed {
    /// Stored (pending or awaiting approval); `new` is false for a repeated idempotency key.
    Accepted { request: Request, new: bool },
    /// Stored as denied; every deny is listed.
    Denied {
        request: Request,
        deny: Vec<Violation>,
    },
    /// Refused by the form; nothing stored.
    Invalid(Vec<FieldError>),
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The caller may not order for the owner the values name.
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    Assess(#[from] AssessError),
    #[error(transparent)]
    Create(#[from] CreateError),
    /// Another live resource holds the name; nothing stored.
    #[error("{}", .0.message())]
    NameTaken(assess::NameTaken),
}

pub async fn place(
    inputs: &Inputs<'_>,
    offering: &Offering,
    values: &Value,
    requester: &Principal,
    key: Option<IdempotencyKey>,
) -> Result<Placed, PlaceError> {
    let mut priced = match assess::price_by_formula(inputs, offering, values, requester, key)? {
        Ok(p) => p,
        Err(errors) => return Ok(Placed::Invalid(errors)),
    };
    may_order_for(requester, &priced.request.owner.to_string())?;
    // A repeated key answers with its request as it was decided (whose resource may hold the
    // name by now): no second decision, no budget lock.
    let (request, new) = match requests::repeated(inputs.db, &priced.request).await? {
        Some(earlier) => (earlier, false),
        None => {
            if let Some(taken) = assess::name_taken(inputs.db, offering, &priced, requester, None)
                .await
                .map_err(CreateError::Db)?
            {
                return Err(PlaceError::NameTaken(taken));
            }
            assess::plan_parts(inputs, &mut priced).await?;
            decide_and_store(inputs, offering, priced, requester, None, |r| r).await?
        }
    };
    if new {
        inputs.notifier.wake();
    }
    if request.status == RequestStatus::Denied {
        // From what was stored, so a retried key answers as the first call did.
        let deny = stored_denials(&request);
        return Ok(Placed::Denied { request, deny });
    }
    Ok(Placed::Accepted { request, new })
}

/// Budgets, decides and stores an order under its team's [`TeamLock`]: the spend it was
/// decided on cannot change before it is stored. `finish` completes the request (an update's
/// operation and resource) before it is stored.
async fn decide_and_store(
    inputs: &Inputs<'_>,
    offering: &Offering,
    priced: guardrails::Priced,
    requester: &Principal,
    replaces: Option<&crate::db::entities::resource::Model>,
    finish: impl FnOnce(requests::NewRequest) -> requests::NewRequest,
) -> Result<(Request, bool), PlaceError> {
    let owner = &priced.request.owner;
    let (limit, _) = super::budget::limit_of(inputs.db, inputs.cost, owner)
        .await
        .map_err(CreateError::Db)?;
    let lock = TeamLock::acquire(inputs.db, &owner.to_string(), limit.is_some())
        .await
        .map_err(CreateError::Db)?;
    let order = Ordering {
        requester,
        replaces,
        limit,
    };
    let stored = match lock.transaction() {
        Some(txn) => store(txn, inputs, offering, priced, order, finish).await,
        None => store(inputs.db, inputs, offering, priced, order, finish).await,
    };
    lock.release(stored.is_ok())
        .await
        .map_err(CreateError::Db)?;
    stored
}

/// Who orders, what the order changes, and the team's budget limit read before its lock.
#[derive(Clone, Copy)]
struct Ordering<'a> {
    requester: &'a Principal,
    replaces: Option<&'a crate::db::entities::resource::Model>,
    limit: Option<f64>,
}

async fn store<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    inputs: &Inputs<'_>,
    offering: &Offering,
    priced: guardrails::Priced,
    order: Ordering<'_>,
    finish: impl FnOnce(requests::NewRequest) -> requests::NewRequest,
) -> Result<(Request, bool), PlaceError> {
    let Ordering {
        requester,
        replaces,
        limit,
    } = order;
    let (_, decision) =
        assess::decide(db, inputs, offering, &priced, requester, replaces, limit).await?;
    let verdict = Verdict {
        estimate: priced.estimate,
        decision,
    };
    Ok(
        match requests::create(db, finish(priced.request), verdict, inputs.max_attempts).await? {
            Created::New(r) => {
                // Recorded and told in the order's transaction (the team lock's, where the
                // database has one): an approver hears of every stored request, and only
                // of stored ones.
                audit_created(db, &r, requester).await;
                notify_approvers(db, inputs, &r).await;
                (r, true)
            }
            Created::Existing(r) => (r, false),
        },
    )
}

/// Developers order for teams they belong to; platform-admins for anyone. (The anonymous
/// caller exists only where `auth.allow_anonymous` is on, the embedded default.)
fn may_order_for(requester: &Principal, owner: &str) -> Result<(), PlaceError> {
    use crate::access::{Act, Target, authorize};
    authorize(requester, Act::Order, Target::Team(owner))
        .map_err(|d| PlaceError::NotAllowed(d.to_string()))
}

/// A new request and the policy decision it was stored with.
async fn audit_created<C: ConnectionTrait>(db: &C, request: &Request, requester: &Principal) {
    let target = format!("request:{}", request.id);
    // The request's team is known here: no look-up per event.
    crate::audit::record_by_of_team(
        db,
        requester,
        "request.created",
        &target,
        &request.owner,
        request.status.as_str(),
        Some(serde_json::json!({"offering": request.offering, "operation": request.operation, "owner": request.owner, "resourceId": request.resource_id})),
    )
    .await;
    if let Some(d) = &request.decision {
        // The outcome's serde name (`needs_approval`, ...), as the decision stores it.
        let outcome = match serde_json::to_value(d.outcome) {
            Ok(Value::String(s)) => s,
            _ => "unknown".to_owned(),
        };
        let details = serde_json::to_value(d).expect("decision serializes");
        crate::audit::record_of_team(
            db,
            "paved:policy",
            "policy.decided",
            &target,
            &request.owner,
            &outcome,
            Some(details),
        )
        .await;
    }
}

/// A request that waits for approval: the owning team (its leads decide) and, where a policy
/// asks for a platform-admin, the configured platform-admins hear of it.
async fn notify_approvers<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    inputs: &Inputs<'_>,
    request: &Request,
) {
    use crate::notifications::{Notification, Severity, Topic};
    if request.status != RequestStatus::AwaitingApproval {
        return;
    }
    let needs: &[ApprovalNeed] = request
        .decision
        .as_ref()
        .map_or(&[], |d| d.require_approval.as_slice());
    let mut recipients = vec![request.owner.clone()];
    if needs.iter().any(|n| n.role == "platform-admin") {
        for r in inputs
            .roles
            .get(&crate::vocab::principal::Role::PlatformAdmin)
            .into_iter()
            .flatten()
        {
            let r = EntityRef::parse(r, "group")
                .map(|e| e.to_string())
                .unwrap_or_else(|_| r.clone());
            if !recipients.contains(&r) {
                recipients.push(r);
            }
        }
    }
    let name = request
        .spec
        .as_ref()
        .and_then(|s| s.pointer("/resource/name"))
        .and_then(Value::as_str)
        .unwrap_or(&request.offering);
    let reasons: Vec<&str> = needs.iter().map(|n| n.message.as_str()).collect();
    inputs
        .notifier
        .send(
            db,
            Notification {
                topic: Topic::ApprovalNeeded,
                recipients,
                title: format!("Approval needed: {} of {name}", request.operation.as_str()),
                description: format!(
                    "{} asks to {} {name} ({}); it waits for approval: {}. Approve or reject it with POST /api/paved/v1/requests/{}/approve or /reject (nobody decides their own request).",
                    request.requester,
                    request.operation.as_str(),
                    request.offering,
                    reasons.join("; "),
                    request.id
                ),
                link: Some(inputs.notifier.request_link(&request.id)),
                severity: Severity::Normal,
                scope: Some(format!("paved:request:{}", request.id)),
            },
        )
        .await;
}

/// The denials a stored request was decided with, so a retried key answers as the first call.
fn stored_denials(request: &Request) -> Vec<Violation> {
    request
        .decision
        .as_ref()
        .map(|d| d.deny.clone())
        .unwrap_or_default()
}

/// Changing a provisioned resource (resize, connection limit, ...): the changed values are
/// merged over the ones it was created with and go through the same guardrails; the resource's
/// identity (name, owner) cannot change.
pub async fn place_update(
    inputs: &Inputs<'_>,
    offering: &Offering,
    resource: &crate::db::entities::resource::Model,
    created_with: &Value,
    changes: &Value,
    requester: &Principal,
) -> Result<Placed, PlaceError> {
    let Some(changes) = changes.as_object() else {
        return Ok(Placed::Invalid(vec![FieldError {
            field: "values".into(),
            rule: "type".into(),
            message: "must be an object of the values to change".into(),
        }]));
    };
    let mut merged = created_with.as_object().cloned().unwrap_or_default();
    merged.extend(changes.clone());
    let mut priced =
        match assess::price(inputs, offering, &Value::Object(merged), requester, None).await? {
            Ok(p) => p,
            Err(errors) => return Ok(Placed::Invalid(errors)),
        };
    // The estimate's plan starts from an empty state: its price is the updated resource's,
    // but its changes (all creates) are not what the update will do. The update's own plan,
    // against the real state, is what `plan_*` rules decide, at apply time.
    priced.plans.clear();
    may_order_for(requester, &resource.owner)?;
    let mut errors = Vec::new();
    if priced.request.spec.resource.name != resource.entity_name {
        errors.push(FieldError {
            field: "name".into(),
            rule: "immutable".into(),
            message: format!(
                "cannot change: the resource is {} (order a new one instead)",
                resource.entity_name
            ),
        });
    }
    if priced.request.owner.to_string() != resource.owner {
        errors.push(FieldError {
            field: "owner".into(),
            rule: "immutable".into(),
            message: format!(
                "cannot change through an update (owned by {})",
                resource.owner
            ),
        });
    }
    if !errors.is_empty() {
        return Ok(Placed::Invalid(errors));
    }
    let (request, _) = decide_and_store(
        inputs,
        offering,
        priced,
        requester,
        Some(resource),
        |mut request| {
            request.operation = requests::Operation::Update;
            request.resource_id = Some(resource.id.clone());
            request
        },
    )
    .await?;
    inputs.notifier.wake();
    if request.status == RequestStatus::Denied {
        let deny = stored_denials(&request);
        return Ok(Placed::Denied { request, deny });
    }
    Ok(Placed::Accepted { request, new: true })
}
