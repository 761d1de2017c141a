//! Provisioning requests: what a developer ordered, stored before anything else happens.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    cost::Estimate,
    db::{
        self,
        entities::{approval, request, resource},
    },
    policy::{Outcome, PolicyDecision},
    vocab::{
        entity_ref::EntityRef,
        status::{ApprovalStatus, ResourceStatus, StepStatus},
    },
};

pub use crate::db::requests::ListFilter;
pub use crate::templates::order::{IdempotencyKey, NewRequest, PrepareError};
pub use crate::vocab::status::{Operation, RequestStatus};

/// A stored request as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub id: String,
    pub offering: String,
    /// Version and digest of the template and offering the request was made from.
    pub template_version: String,
    pub operation: Operation,
    pub status: RequestStatus,
    /// Entity ref of whoever submitted it.
    pub requester: String,
    /// Entity ref of the owning group.
    pub owner: String,
    pub idempotency_key: Option<String>,
    /// The submitted values, defaults applied.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// The rendered provisioning plan.
    #[schema(value_type = Object)]
    pub spec: Option<Value>,
    pub resource_id: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The cost estimate the request was decided with.
    #[schema(value_type = Object)]
    pub estimate: Option<Estimate>,
    /// The policy decision it was created with (outcome, deny, warn, require_approval).
    #[schema(value_type = Object)]
    pub decision: Option<PolicyDecision>,
    /// Recorded steps, in order (filled once the engine runs the request).
    pub steps: Vec<Step>,
    /// When an unfinished request is expected to be done, learned from past requests of the
    /// offering (shown on a single request; none before there is a past to learn from).
    pub expected: Option<Expected>,
}

/// An expected completion: the median run time of the latest succeeded requests of the same
/// offering and operation.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Expected {
    /// Median time from the first step's start to completion.
    pub duration_seconds: f64,
    /// The run's start (or now, while it waits for a worker) plus that median; none while it
    /// waits for an approval (a person decides when).
    pub completion_at: Option<DateTime<Utc>>,
    /// How many past requests the median is of.
    pub based_on: usize,
}

/// How many past runs an expectation is learned from.
const EXPECTED_FROM: u64 = 20;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Its place in the run, from 1 (of `steps.len()`).
    pub number: i32,
    pub name: String,
    #[schema(value_type = String)]
    pub status: StepStatus,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How long its last attempt took, once it ended.
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
}

/// The outcome of a create: a new request, or the one an earlier call with the same key made.
#[derive(Debug)]
pub enum Created {
    New(Request),
    Existing(Request),
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(
        "idempotency key {key:?} was already used for request {existing} with different values"
    )]
    KeyReused { key: String, existing: String },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// How a request starts, as the guardrails decided.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub estimate: Estimate,
    pub decision: PolicyDecision,
}

/// The earlier request of a repeated idempotency key (the same order), or the error for a key
/// reused by another order; `None` for a new key or none.
pub async fn repeated<C: ConnectionTrait>(
    db: &C,
    new: &NewRequest,
) -> Result<Option<Request>, CreateError> {
    let Some(key) = &new.idempotency_key else {
        return Ok(None);
    };
    match find_by_key(db, &new.owner, key.as_str()).await? {
        Some(existing) => match same_or_conflict(db, existing, new).await? {
            Created::Existing(r) | Created::New(r) => Ok(Some(r)),
        },
        None => Ok(None),
    }
}

/// Stores a new request, or returns the earlier one when its idempotency key turns out to be
/// taken (the caller asked [`repeated`] first; two orders racing with one key are settled by
/// the unique index). The verdict sets its first status: denied requests are stored too (and
/// end at once), requests needing approval wait with one approval record per rule that asked
/// for it.
pub async fn create<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    new: NewRequest,
    verdict: Verdict,
    max_attempts: i32,
) -> Result<Created, CreateError> {
    let now = Utc::now();
    let spec = serde_json::to_value(&new.spec).expect("rendered spec serializes");
    let id = Uuid::now_v7().to_string();
    let (status, error, completed_at) = match verdict.decision.outcome {
        Outcome::Denied => {
            let reasons: Vec<&str> = verdict
                .decision
                .deny
                .iter()
                .map(|v| v.message.as_str())
                .collect();
            (
                RequestStatus::Denied,
                Some(format!("denied by policy: {}", reasons.join("; "))),
                Some(now),
            )
        }
        Outcome::NeedsApproval => (RequestStatus::AwaitingApproval, None, None),
        Outcome::Allowed => (RequestStatus::Pending, None, None),
    };
    let approvals: Vec<approval::Model> = match verdict.decision.outcome {
        Outcome::NeedsApproval => verdict
            .decision
            .require_approval
            .iter()
            .map(|need| approval::Model {
                id: Uuid::now_v7().to_string(),
                request_id: id.clone(),
                required_role: need.role.clone(),
                reason: need.message.clone(),
                status: ApprovalStatus::Pending,
                decided_by: None,
                decision_reason: None,
                decided_at: None,
                created_at: now,
            })
            .collect(),
        _ => vec![],
    };
    let row = request::Model {
        id,
        offering: new.offering.clone(),
        template_version: new.template_version.clone(),
        operation: new.operation,
        status,
        requester: new.requester.clone(),
        owner: new.owner.to_string(),
        idempotency_key: new.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
        parameters: new.values.clone().into_value(),
        spec: Some(spec),
        resource_id: new.resource_id.clone(),
        error,
        created_at: now,
        updated_at: now,
        completed_at,
        estimate: Some(verdict.estimate),
        decision: Some(verdict.decision),
    };
    let inserted = db::transaction(db, |txn| {
        Box::pin(async move {
            let model = db::requests::insert(txn, row).await?;
            db::approvals::insert(txn, approvals).await?;
            // Stored and queued together: a pending request always has its job.
            if model.status == RequestStatus::Pending {
                enqueue_provision(txn, &model.id, max_attempts).await?;
            }
            Ok(model)
        })
    })
    .await;
    match inserted {
        Ok(model) => Ok(Created::New(to_api(model, vec![]))),
        // Two creates with one key raced; the unique index let exactly one in.
        Err(e) if db::is_unique_violation(&e) => {
            let key = new
                .idempotency_key
                .as_ref()
                .map(|k| k.as_str())
                .unwrap_or_default();
            match find_by_key(db, &new.owner, key).await? {
                Some(existing) => same_or_conflict(db, existing, &new).await,
                None => Err(CreateError::Db(e)),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Queues request `id`'s `provision` job, in the caller's transaction.
async fn enqueue_provision<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    max_attempts: i32,
) -> Result<(), DbErr> {
    crate::jobs::enqueue_job(conn, &super::engine::Provision, id, max_attempts).await?;
    Ok(())
}

/// Keys are the owning team's: another team's request with the same key is not this one, and
/// is neither returned nor named in a conflict.
async fn find_by_key<C: ConnectionTrait>(
    db: &C,
    owner: &EntityRef,
    key: &str,
) -> Result<Option<request::Model>, DbErr> {
    db::requests::by_idempotency_key(db, &owner.to_string(), key).await
}

async fn same_or_conflict<C: ConnectionTrait>(
    db: &C,
    existing: request::Model,
    new: &NewRequest,
) -> Result<Created, CreateError> {
    if existing.offering == new.offering
        && existing.parameters.as_object() == Some(new.values.as_map())
    {
        let steps = steps_of(db, &existing.id).await?;
        Ok(Created::Existing(to_api(existing, steps)))
    } else {
        Err(CreateError::KeyReused {
            key: existing.idempotency_key.clone().unwrap_or_default(),
            existing: existing.id,
        })
    }
}

pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Option<Request>, DbErr> {
    let Some(model) = db::requests::by_id(db, id).await? else {
        return Ok(None);
    };
    let steps = steps_of(db, id).await?;
    Ok(Some(to_api(model, steps)))
}

async fn steps_of<C: ConnectionTrait>(db: &C, id: &str) -> Result<Vec<Step>, DbErr> {
    Ok(db::steps::of_request(db, id)
        .await?
        .into_iter()
        .map(|s| Step {
            number: s.position + 1,
            duration_ms: s
                .started_at
                .zip(s.finished_at)
                .map(|(a, b)| (b - a).num_milliseconds().max(0)),
            name: s.name,
            status: s.status,
            attempts: s.attempts,
            started_at: s.started_at,
            finished_at: s.finished_at,
            error: s.error,
        })
        .collect())
}

/// When `request` is expected to be done (see [`Expected`]); none for a final request or an
/// offering without a succeeded past.
pub async fn expected(
    db: &DatabaseConnection,
    request: &Request,
    now: DateTime<Utc>,
) -> Result<Option<Expected>, DbErr> {
    if request.status.is_final() {
        return Ok(None);
    }
    let mut past =
        db::requests::recent_run_times(db, &request.offering, request.operation, EXPECTED_FROM)
            .await?;
    let Some(median) = median(&mut past) else {
        return Ok(None);
    };
    let started = request.steps.first().and_then(|s| s.started_at);
    let completion_at = match request.status {
        RequestStatus::AwaitingApproval => None,
        // Already late: expected now, not in the past.
        _ => Some((started.unwrap_or(now) + median).max(now)),
    };
    Ok(Some(Expected {
        duration_seconds: (median.num_milliseconds() as f64 / 1000.0 * 10.0).round() / 10.0,
        completion_at,
        based_on: past.len(),
    }))
}

fn median(d: &mut [chrono::Duration]) -> Option<chrono::Duration> {
    if d.is_empty() {
        return None;
    }
    d.sort();
    let mid = d.len() / 2;
    Some(if d.len() % 2 == 1 {
        d[mid]
    } else {
        (d[mid - 1] + d[mid]) / 2
    })
}

/// Newest first, at most `limit`, older than `before` when given (see [`ListFilter`]).
pub async fn list(db: &DatabaseConnection, f: &ListFilter) -> Result<Vec<Request>, DbErr> {
    Ok(db::requests::list(db, f)
        .await?
        .into_iter()
        .map(|m| to_api(m, vec![]))
        .collect())
}

fn to_api(m: request::Model, steps: Vec<Step>) -> Request {
    Request {
        id: m.id,
        offering: m.offering,
        template_version: m.template_version,
        operation: m.operation,
        status: m.status,
        requester: m.requester,
        owner: m.owner,
        idempotency_key: m.idempotency_key,
        parameters: m.parameters,
        spec: m.spec,
        resource_id: m.resource_id,
        error: m.error,
        created_at: m.created_at,
        updated_at: m.updated_at,
        completed_at: m.completed_at,
        estimate: m.estimate,
        decision: m.decision,
        steps,
        expected: None,
    }
}

/// Cancels an unfinished request. `None`: no such request; `Err(status)`: already final.
/// Its pending approvals are withdrawn with it (nobody is asked to decide a cancelled request).
pub async fn cancel(
    db: &DatabaseConnection,
    id: &str,
    by: &str,
) -> Result<Option<Result<Request, String>>, DbErr> {
    let (id_, by_) = (id.to_owned(), by.to_owned());
    let cancelled = db::transaction(db, |txn| {
        Box::pin(async move {
            let now = Utc::now();
            let cancelled = db::requests::cancel(txn, &id_, now).await?;
            if cancelled {
                db::approvals::withdraw_pending(
                    txn,
                    &id_,
                    &by_,
                    &format!("the request was cancelled by {by_}"),
                    now,
                )
                .await?;
            }
            Ok(cancelled)
        })
    })
    .await?;
    let Some(r) = get(db, id).await? else {
        return Ok(None);
    };
    Ok(Some(if cancelled {
        Ok(r)
    } else {
        Err(r.status.as_str().to_owned())
    }))
}

/// Asks for a resource to be destroyed: a `delete` request with its own steps, so it shows
/// status and history like any other. An open delete request for the resource is returned
/// instead of a second one.
pub async fn create_delete(
    db: &DatabaseConnection,
    resource: &resource::Model,
    requester: &str,
    max_attempts: i32,
) -> Result<Request, DbErr> {
    if let Some(open) = db::requests::open_delete_of(db, &resource.id).await? {
        let steps = steps_of(db, &open.id).await?;
        return Ok(to_api(open, steps));
    }
    let now = Utc::now();
    let row = request::Model {
        id: Uuid::now_v7().to_string(),
        offering: resource.offering.clone(),
        template_version: resource.offering_version.clone(),
        operation: Operation::Delete,
        status: RequestStatus::Pending,
        requester: requester.into(),
        owner: resource.owner.clone(),
        idempotency_key: None,
        parameters: Value::Object(Default::default()),
        spec: Some(resource.desired.clone()),
        resource_id: Some(resource.id.clone()),
        error: None,
        created_at: now,
        updated_at: now,
        completed_at: None,
        estimate: None,
        decision: None,
    };
    let resource_id = resource.id.clone();
    let model = db::transaction(db, |txn| {
        Box::pin(async move {
            let model = db::requests::insert(txn, row).await?;
            enqueue_provision(txn, &model.id, max_attempts).await?;
            db::resources::set_status(txn, &resource_id, ResourceStatus::Deleting, Utc::now())
                .await?;
            Ok(model)
        })
    })
    .await?;
    Ok(to_api(model, vec![]))
}

/// The deletion that removed a resource, if it was deleted.
pub async fn last_delete(
    db: &DatabaseConnection,
    resource_id: &str,
) -> Result<Option<Request>, DbErr> {
    match db::requests::last_delete_of(db, resource_id).await? {
        Some(m) => get(db, &m.id).await,
        None => Ok(None),
    }
}

/// An unfinished request (pending, awaiting approval or running) for `resource_id`, if any.
pub async fn open_for_resource(
    db: &DatabaseConnection,
    resource_id: &str,
) -> Result<Option<String>, DbErr> {
    Ok(db::requests::open_for_resource(db, resource_id)
        .await?
        .map(|r| r.id))
}

/// The values the resource currently has: those of its latest successful create or update.
pub async fn current_values(
    db: &DatabaseConnection,
    resource_id: &str,
) -> Result<Option<Value>, DbErr> {
    db::requests::current_values(db, resource_id).await
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    #[test]
    fn the_median_is_the_middle_run_or_the_mean_of_the_two_middle_ones() {
        let s = Duration::seconds;
        assert_eq!(super::median(&mut []), None);
        assert_eq!(super::median(&mut [s(9), s(1), s(3)]), Some(s(3)));
        assert_eq!(super::median(&mut [s(4), s(1), s(100), s(2)]), Some(s(3)));
    }
}
