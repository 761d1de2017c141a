//! Requests as stored: what was ordered, where it stands, and the moves between states. Each
//! move is conditional on the state it leaves, so two writers (a worker and a cancel, two
//! approvers) cannot both make it.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::Value;

use super::entities::request::{Column, Entity, Model};
use crate::{
    access::Scope,
    vocab::status::{Operation, RequestStatus},
};

pub async fn by_id<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(id.to_owned()).one(db).await
}

/// The request, row-locked until the transaction ends (PostgreSQL; SQLite's write
/// transaction is the lock there): deciders and cancels of one request take turns.
pub async fn by_id_locked<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(id.to_owned())
        .lock_exclusive()
        .one(db)
        .await
}

/// Only the request's status, row-locked like [`by_id_locked`]: the engine takes it at the
/// start of each of its transactions, so a cancel waits for the step being recorded and the
/// step sees a cancel that committed before it (one lock order: the request row first).
pub async fn status_locked<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<RequestStatus>, DbErr> {
    Entity::find_by_id(id.to_owned())
        .select_only()
        .column(Column::Status)
        .lock_exclusive()
        .into_tuple()
        .one(db)
        .await
}

/// Keys are the owning team's: another team's request with the same key is not this one.
pub async fn by_idempotency_key<C: ConnectionTrait>(
    db: &C,
    owner: &str,
    key: &str,
) -> Result<Option<Model>, DbErr> {
    Entity::find()
        .filter(Column::Owner.eq(owner))
        .filter(Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

pub async fn insert<C: ConnectionTrait>(db: &C, row: Model) -> Result<Model, DbErr> {
    Entity::insert(row.into_active_model())
        .exec_with_returning(db)
        .await
}

/// Filters for listing; all optional.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub owner: Option<crate::vocab::entity_ref::EntityRef>,
    pub status: Option<RequestStatus>,
    pub offering: Option<String>,
    /// Only the requests about this resource (its create, updates, delete).
    pub resource: Option<String>,
    /// Return requests older than this id (ids are time-ordered UUIDv7).
    pub before: Option<String>,
    /// What the caller may see (see `access`).
    pub visible: Scope,
    pub limit: u64,
}

/// Newest first, at most `limit`, older than `before` when given (ids are time-ordered, so
/// the id is the keyset: requests created meanwhile sort before it and never shift a page).
pub async fn list<C: ConnectionTrait>(db: &C, f: &ListFilter) -> Result<Vec<Model>, DbErr> {
    let mut q = Entity::find().order_by_desc(Column::Id);
    if let Some(o) = &f.owner {
        q = q.filter(Column::Owner.eq(o.to_string()));
    }
    if let Some(s) = f.status {
        q = q.filter(Column::Status.eq(s));
    }
    if let Some(o) = &f.offering {
        q = q.filter(Column::Offering.eq(o.as_str()));
    }
    if let Some(r) = &f.resource {
        q = q.filter(Column::ResourceId.eq(r.as_str()));
    }
    if let Scope::Only { teams, requester } = &f.visible {
        q = q.filter(
            Condition::any()
                .add(Column::Owner.is_in(teams.iter().cloned()))
                .add(Column::Requester.eq(requester.as_str())),
        );
    }
    if let Some(b) = &f.before {
        q = q.filter(Column::Id.lt(b.as_str()));
    }
    q.limit(f.limit).all(db).await
}

/// Moves request `id` from one of `from` to `to` (and its timestamps); true when it moved.
async fn transition<C: ConnectionTrait>(
    db: &C,
    id: &str,
    from: &[RequestStatus],
    to: RequestStatus,
    now: DateTime<Utc>,
    finished: bool,
    error: Option<&str>,
) -> Result<bool, DbErr> {
    let mut q = Entity::update_many()
        .col_expr(Column::Status, Expr::value(to))
        .col_expr(Column::UpdatedAt, Expr::value(now));
    if finished {
        q = q.col_expr(Column::CompletedAt, Expr::value(now));
    }
    if let Some(e) = error {
        q = q.col_expr(Column::Error, Expr::value(e));
    }
    let done = q
        .filter(Column::Id.eq(id))
        .filter(Column::Status.is_in(from.iter().copied()))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Cancels an unfinished request; false when it had already finished (or does not exist).
pub async fn cancel<C: ConnectionTrait>(
    db: &C,
    id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    transition(
        db,
        id,
        &RequestStatus::OPEN,
        RequestStatus::Cancelled,
        now,
        true,
        None,
    )
    .await
}

/// A worker takes a pending request up.
pub async fn start<C: ConnectionTrait>(
    db: &C,
    id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    transition(
        db,
        id,
        &[RequestStatus::Pending],
        RequestStatus::Running,
        now,
        false,
        None,
    )
    .await
}

/// Every step of a running request succeeded (unless it was cancelled meanwhile).
pub async fn succeed<C: ConnectionTrait>(
    db: &C,
    id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    transition(
        db,
        id,
        &[RequestStatus::Running],
        RequestStatus::Succeeded,
        now,
        true,
        None,
    )
    .await
}

/// A pending or running request fails with `reason`.
pub async fn fail<C: ConnectionTrait>(
    db: &C,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    transition(
        db,
        id,
        &[RequestStatus::Pending, RequestStatus::Running],
        RequestStatus::Failed,
        now,
        true,
        Some(reason),
    )
    .await
}

/// How a decision leaves a request that waits for approval.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    /// Rejected, with why.
    Rejected(String),
    /// Approved by the last approver it waited for: it goes on (`pending`).
    Approved,
    /// Approved by one of several approvers: it waits for the others.
    StillWaiting,
}

/// Records a decision on a request the caller holds locked ([`by_id_locked`]).
pub async fn decide<C: ConnectionTrait>(
    db: &C,
    req: Model,
    decided: Decided,
    now: DateTime<Utc>,
) -> Result<Model, DbErr> {
    let mut r = req.into_active_model();
    r.updated_at = Set(now);
    match decided {
        Decided::Rejected(why) => {
            r.status = Set(RequestStatus::Rejected);
            r.completed_at = Set(Some(now));
            r.error = Set(Some(why));
        }
        Decided::Approved => r.status = Set(RequestStatus::Pending),
        Decided::StillWaiting => {}
    }
    r.update(db).await
}

/// Links a request to the resource it planned.
pub async fn link_resource<C: ConnectionTrait>(
    db: &C,
    id: &str,
    resource_id: &str,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::ResourceId, Expr::value(resource_id))
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// The open (pending or running) delete request of a resource, if any.
pub async fn open_delete_of<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
) -> Result<Option<Model>, DbErr> {
    Entity::find()
        .filter(Column::ResourceId.eq(resource_id))
        .filter(Column::Operation.eq(Operation::Delete))
        .filter(Column::Status.is_in([RequestStatus::Pending, RequestStatus::Running]))
        .one(db)
        .await
}

/// The deletion that removed a resource, if it was deleted.
pub async fn last_delete_of<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
) -> Result<Option<Model>, DbErr> {
    Entity::find()
        .filter(Column::ResourceId.eq(resource_id))
        .filter(Column::Operation.eq(Operation::Delete))
        .filter(Column::Status.eq(RequestStatus::Succeeded))
        .order_by_desc(Column::CreatedAt)
        .one(db)
        .await
}

/// An unfinished request (pending, awaiting approval or running) for the resource, if any.
pub async fn open_for_resource<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
) -> Result<Option<Model>, DbErr> {
    Entity::find()
        .filter(Column::ResourceId.eq(resource_id))
        .filter(Column::Status.is_in(RequestStatus::OPEN))
        .one(db)
        .await
}

/// The values the resource currently has: those of its latest successful create or update.
pub async fn current_values<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
) -> Result<Option<Value>, DbErr> {
    Ok(Entity::find()
        .filter(Column::ResourceId.eq(resource_id))
        .filter(Column::Status.eq(RequestStatus::Succeeded))
        .filter(Column::Operation.is_in([Operation::Create, Operation::Update]))
        .order_by_desc(Column::Id)
        .one(db)
        .await?
        .map(|r| r.parameters))
}

/// How long the latest `limit` succeeded runs of `offering`'s `operation` took: from their
/// first step's start to their completion (time waiting for an approval is not in it).
pub async fn recent_run_times<C: ConnectionTrait>(
    db: &C,
    offering: &str,
    operation: Operation,
    limit: u64,
) -> Result<Vec<chrono::Duration>, DbErr> {
    use super::entities::request_step;
    type StartedCompleted = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let rows: Vec<StartedCompleted> = Entity::find()
        .select_only()
        .column(request_step::Column::StartedAt)
        .column(Column::CompletedAt)
        .inner_join(request_step::Entity)
        .filter(Column::Offering.eq(offering))
        .filter(Column::Operation.eq(operation))
        .filter(Column::Status.eq(RequestStatus::Succeeded))
        .filter(request_step::Column::Position.eq(0))
        .order_by_desc(Column::CompletedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(started, completed)| Some(completed? - started?))
        .filter(|d| *d >= chrono::Duration::zero())
        .collect())
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DatabaseConnection};

    use crate::{
        cost::Estimate,
        policy::{Outcome, PolicyDecision},
        vocab::status::{Operation, RequestStatus},
    };

    async fn db() -> (DatabaseConnection, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::config::DatabaseSettings {
            url: format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
            ..Default::default()
        };
        let db = crate::db::connect(&settings).await.unwrap();
        crate::db::migrate(&db).await.unwrap();
        (db, dir)
    }

    /// Writes a request row as raw SQL, the way rows stored before these types sit in the table.
    async fn stored(
        db: &DatabaseConnection,
        id: &str,
        status: &str,
        estimate: &str,
        decision: &str,
    ) {
        db.execute_unprepared(&format!(
            "INSERT INTO requests (id, offering, template_version, operation, status, requester, owner, parameters, spec, created_at, updated_at, estimate, decision) \
             VALUES ('{id}', 'postgres-database', '1', 'create', '{status}', 'user:default/alice', 'group:default/team-a', '{{}}', NULL, '2026-11-24 10:00:00+00:00', '2026-11-24 10:00:00+00:00', '{estimate}', '{decision}')"
        ))
        .await
        .unwrap();
    }

    const ESTIMATE: &str = r#"{"currency":"EUR","lineItems":[{"part":"database","label":"db.t4g.small (prod)","monthly":31.5},{"part":"database","label":"storage 20 GB","monthly":11.25}],"monthly":42.75,"annual":513.0,"hourly":0.0586,"lifetime":{"hours":48,"total":2.81},"recommendations":[{"id":"arm-instance","message":"ARM is cheaper","set":{"arch":"arm"},"savingMonthly":4.5}]}"#;
    const DECISION: &str = r#"{"outcome":"needs_approval","deny":[],"warn":[{"policy":"paved.prod","rule":"prod_multi_az","message":"use multi-AZ"}],"requireApproval":[{"policy":"paved.budget","rule":"team_budget","message":"over budget","role":"lead"}]}"#;

    /// A row of the shape paved has always stored (JSON written by `serde_json` from the
    /// guardrails' types, names as text) reads into the types, and writes back the same JSON.
    #[tokio::test]
    async fn a_row_of_the_stored_shape_reads_into_the_types() {
        let (db, _dir) = db().await;
        stored(&db, "r1", "awaiting_approval", ESTIMATE, DECISION).await;
        let r = super::by_id(&db, "r1").await.unwrap().unwrap();
        assert_eq!(
            (r.operation, r.status),
            (Operation::Create, RequestStatus::AwaitingApproval)
        );
        let e: &Estimate = r.estimate.as_ref().unwrap();
        assert_eq!(
            (e.monthly, e.line_items[1].part.as_str()),
            (42.75, "database")
        );
        let d: &PolicyDecision = r.decision.as_ref().unwrap();
        assert_eq!(d.outcome, Outcome::NeedsApproval);
        assert_eq!(d.require_approval[0].role, "lead");
        let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(serde_json::to_value(e).unwrap(), json(ESTIMATE));
        assert_eq!(serde_json::to_value(d).unwrap(), json(DECISION));
    }

    /// A state paved does not know is an error, not a guess at one.
    #[tokio::test]
    async fn an_unknown_stored_status_is_an_error() {
        let (db, _dir) = db().await;
        stored(&db, "r2", "exploded", ESTIMATE, DECISION).await;
        let e = super::by_id(&db, "r2").await.unwrap_err();
        assert!(e.to_string().contains("exploded"), "{e}");
    }
}
