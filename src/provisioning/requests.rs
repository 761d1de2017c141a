//! Provisioning requests: what a developer ordered, stored before anything else happens.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    db::entities::{approval, request, request_step},
    policy::{Outcome, PolicyDecision},
    vocab::entity_ref::EntityRef,
};

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
    pub estimate: Option<Value>,
    /// The policy decision it was created with (outcome, deny, warn, require_approval).
    #[schema(value_type = Object)]
    pub decision: Option<Value>,
    /// Recorded steps, in order (filled once the engine runs the request).
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    pub status: String,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
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
    pub estimate: Value,
    pub decision: PolicyDecision,
}

/// Stores a new request, or returns the earlier one for a repeated idempotency key. The
/// verdict sets its first status: denied requests are stored too (and end at once), requests
/// needing approval wait with one approval record per rule that asked for it.
pub async fn create<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    new: NewRequest,
    verdict: Verdict,
    max_attempts: i32,
) -> Result<Created, CreateError> {
    if let Some(key) = &new.idempotency_key
        && let Some(existing) = find_by_key(db, &new.owner, key.as_str()).await?
    {
        return same_or_conflict(db, existing, &new).await;
    }
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
    let row = request::ActiveModel {
        id: Set(id.clone()),
        offering: Set(new.offering.clone()),
        template_version: Set(new.template_version.clone()),
        operation: Set(new.operation.as_str().into()),
        status: Set(status.as_str().into()),
        requester: Set(new.requester.clone()),
        owner: Set(new.owner.to_string()),
        idempotency_key: Set(new.idempotency_key.as_ref().map(|k| k.as_str().to_owned())),
        parameters: Set(new.values.clone().into_value()),
        spec: Set(Some(spec)),
        resource_id: Set(new.resource_id.clone()),
        error: Set(error),
        created_at: Set(now),
        updated_at: Set(now),
        completed_at: Set(completed_at),
        estimate: Set(Some(verdict.estimate.clone())),
        decision: Set(Some(
            serde_json::to_value(&verdict.decision).expect("decision serializes"),
        )),
    };
    let approvals: Vec<approval::ActiveModel> = match verdict.decision.outcome {
        Outcome::NeedsApproval => verdict
            .decision
            .require_approval
            .iter()
            .map(|need| approval::ActiveModel {
                id: Set(Uuid::now_v7().to_string()),
                request_id: Set(id.clone()),
                required_role: Set(need.role.clone()),
                reason: Set(need.message.clone()),
                status: Set("pending".into()),
                decided_by: Set(None),
                decision_reason: Set(None),
                decided_at: Set(None),
                created_at: Set(now),
            })
            .collect(),
        _ => vec![],
    };
    let inserted = db
        .transaction::<_, request::Model, DbErr>(|txn| {
            Box::pin(async move {
                let model = request::Entity::insert(row)
                    .exec_with_returning(txn)
                    .await?;
                if !approvals.is_empty() {
                    approval::Entity::insert_many(approvals).exec(txn).await?;
                }
                // Stored and queued together: a pending request always has its job.
                if model.status == RequestStatus::Pending.as_str() {
                    super::queue::enqueue(
                        txn,
                        super::queue::PROVISION,
                        &model.id,
                        max_attempts,
                        Value::Null,
                    )
                    .await?;
                }
                Ok(model)
            })
        })
        .await
        .map_err(|e| match e {
            sea_orm::TransactionError::Connection(e)
            | sea_orm::TransactionError::Transaction(e) => e,
        });
    match inserted {
        Ok(model) => Ok(Created::New(to_api(model, vec![]))),
        // Two creates with one key raced; the unique index let exactly one in.
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
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

/// Keys are the owning team's: another team's request with the same key is not this one, and
/// is neither returned nor named in a conflict.
async fn find_by_key<C: ConnectionTrait>(
    db: &C,
    owner: &EntityRef,
    key: &str,
) -> Result<Option<request::Model>, DbErr> {
    request::Entity::find()
        .filter(request::Column::Owner.eq(owner.to_string()))
        .filter(request::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
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
    let Some(model) = request::Entity::find_by_id(id.to_owned()).one(db).await? else {
        return Ok(None);
    };
    let steps = steps_of(db, id).await?;
    Ok(Some(to_api(model, steps)))
}

async fn steps_of<C: ConnectionTrait>(db: &C, id: &str) -> Result<Vec<Step>, DbErr> {
    Ok(request_step::Entity::find()
        .filter(request_step::Column::RequestId.eq(id))
        .order_by_asc(request_step::Column::Position)
        .all(db)
        .await?
        .into_iter()
        .map(|s| Step {
            name: s.name,
            status: s.status,
            attempts: s.attempts,
            started_at: s.started_at,
            finished_at: s.finished_at,
            error: s.error,
        })
        .collect())
}

/// Filters for listing; all optional.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub owner: Option<EntityRef>,
    pub status: Option<RequestStatus>,
    pub offering: Option<String>,
    /// Return requests older than this id (ids are time-ordered UUIDv7).
    pub before: Option<String>,
    /// What the caller may see (see `access`).
    pub visible: crate::access::Scope,
    pub limit: u64,
}

/// Newest first, at most `limit`, older than `before` when given (ids are time-ordered, so
/// the id is the keyset: requests created meanwhile sort before it and never shift a page).
pub async fn list(db: &DatabaseConnection, f: &ListFilter) -> Result<Vec<Request>, DbErr> {
    let mut q = request::Entity::find().order_by_desc(request::Column::Id);
    if let Some(o) = &f.owner {
        q = q.filter(request::Column::Owner.eq(o.to_string()));
    }
    if let Some(s) = f.status {
        q = q.filter(request::Column::Status.eq(s.as_str()));
    }
    if let Some(o) = &f.offering {
        q = q.filter(request::Column::Offering.eq(o.as_str()));
    }
    if let crate::access::Scope::Only { teams, requester } = &f.visible {
        q = q.filter(
            sea_orm::Condition::any()
                .add(request::Column::Owner.is_in(teams.iter().cloned()))
                .add(request::Column::Requester.eq(requester.as_str())),
        );
    }
    if let Some(b) = &f.before {
        q = q.filter(request::Column::Id.lt(b.as_str()));
    }
    Ok(q.limit(f.limit)
        .all(db)
        .await?
        .into_iter()
        .map(|m| to_api(m, vec![]))
        .collect())
}

fn to_api(m: request::Model, steps: Vec<Step>) -> Request {
    Request {
        status: RequestStatus::parse(&m.status).unwrap_or(RequestStatus::Failed),
        operation: match m.operation.as_str() {
            "update" => Operation::Update,
            "delete" => Operation::Delete,
            _ => Operation::Create,
        },
        id: m.id,
        offering: m.offering,
        template_version: m.template_version,
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
    }
}

/// Cancels an unfinished request. `None`: no such request; `Err(status)`: already final.
pub async fn cancel(
    db: &DatabaseConnection,
    id: &str,
) -> Result<Option<Result<Request, String>>, DbErr> {
    use sea_orm::sea_query::Expr;
    let now = Utc::now();
    let open = [
        RequestStatus::Pending.as_str(),
        RequestStatus::AwaitingApproval.as_str(),
        RequestStatus::Running.as_str(),
    ];
    let res = request::Entity::update_many()
        .col_expr(
            request::Column::Status,
            Expr::value(RequestStatus::Cancelled.as_str()),
        )
        .col_expr(request::Column::CompletedAt, Expr::value(now))
        .col_expr(request::Column::UpdatedAt, Expr::value(now))
        .filter(request::Column::Id.eq(id))
        .filter(request::Column::Status.is_in(open))
        .exec(db)
        .await?;
    let Some(r) = get(db, id).await? else {
        return Ok(None);
    };
    Ok(Some(if res.rows_affected == 1 {
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
    resource: &crate::db::entities::resource::Model,
    requester: &str,
    max_attempts: i32,
) -> Result<Request, DbErr> {
    use crate::db::entities::resource;
    if let Some(open) = request::Entity::find()
        .filter(request::Column::ResourceId.eq(resource.id.clone()))
        .filter(request::Column::Operation.eq(Operation::Delete.as_str()))
        .filter(request::Column::Status.is_in([
            RequestStatus::Pending.as_str(),
            RequestStatus::Running.as_str(),
        ]))
        .one(db)
        .await?
    {
        let steps = steps_of(db, &open.id).await?;
        return Ok(to_api(open, steps));
    }
    let now = Utc::now();
    let row = request::ActiveModel {
        id: Set(Uuid::now_v7().to_string()),
        offering: Set(resource.offering.clone()),
        template_version: Set(resource.offering_version.clone()),
        operation: Set(Operation::Delete.as_str().into()),
        status: Set(RequestStatus::Pending.as_str().into()),
        requester: Set(requester.into()),
        owner: Set(resource.owner.clone()),
        idempotency_key: Set(None),
        parameters: Set(Value::Object(Default::default())),
        spec: Set(Some(resource.desired.clone())),
        resource_id: Set(Some(resource.id.clone())),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        completed_at: Set(None),
        estimate: Set(None),
        decision: Set(None),
    };
    let resource_id = resource.id.clone();
    let model = db
        .transaction::<_, request::Model, DbErr>(|txn| {
            Box::pin(async move {
                let model = request::Entity::insert(row)
                    .exec_with_returning(txn)
                    .await?;
                super::queue::enqueue(
                    txn,
                    super::queue::PROVISION,
                    &model.id,
                    max_attempts,
                    Value::Null,
                )
                .await?;
                resource::Entity::update_many()
                    .col_expr(
                        resource::Column::Status,
                        sea_orm::sea_query::Expr::value("deleting"),
                    )
                    // The catalog shows the status: its page must see the change.
                    .col_expr(
                        resource::Column::UpdatedAt,
                        sea_orm::sea_query::Expr::value(chrono::Utc::now()),
                    )
                    .filter(resource::Column::Id.eq(resource_id))
                    .exec(txn)
                    .await?;
                Ok(model)
            })
        })
        .await
        .map_err(|e| match e {
            sea_orm::TransactionError::Connection(e)
            | sea_orm::TransactionError::Transaction(e) => e,
        })?;
    Ok(to_api(model, vec![]))
}

/// An unfinished request (pending, awaiting approval or running) for `resource_id`, if any.
/// The deletion that removed a resource, if it was deleted.
pub async fn last_delete(
    db: &DatabaseConnection,
    resource_id: &str,
) -> Result<Option<Request>, DbErr> {
    let found = request::Entity::find()
        .filter(request::Column::ResourceId.eq(resource_id))
        .filter(request::Column::Operation.eq("delete"))
        .filter(request::Column::Status.eq(RequestStatus::Succeeded.as_str()))
        .order_by_desc(request::Column::CreatedAt)
        .one(db)
        .await?;
    match found {
        Some(m) => get(db, &m.id).await,
        None => Ok(None),
    }
}

pub async fn open_for_resource(
    db: &DatabaseConnection,
    resource_id: &str,
) -> Result<Option<String>, DbErr> {
    Ok(request::Entity::find()
        .filter(request::Column::ResourceId.eq(resource_id))
        .filter(request::Column::Status.is_in([
            RequestStatus::Pending.as_str(),
            RequestStatus::AwaitingApproval.as_str(),
            RequestStatus::Running.as_str(),
        ]))
        .one(db)
        .await?
        .map(|r| r.id))
}

/// The values the resource currently has: those of its latest successful create or update.
pub async fn current_values(
    db: &DatabaseConnection,
    resource_id: &str,
) -> Result<Option<Value>, DbErr> {
    Ok(request::Entity::find()
        .filter(request::Column::ResourceId.eq(resource_id))
        .filter(request::Column::Status.eq(RequestStatus::Succeeded.as_str()))
        .filter(
            request::Column::Operation
                .is_in([Operation::Create.as_str(), Operation::Update.as_str()]),
        )
        .order_by_desc(request::Column::Id)
        .one(db)
        .await?
        .map(|r| r.parameters))
}
