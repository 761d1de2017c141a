//! The approvals a request waits for, one per policy rule that asked for a human.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::approval::{Column, Entity, Model};
use crate::vocab::status::ApprovalStatus;

pub async fn insert<C: ConnectionTrait>(db: &C, rows: Vec<Model>) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    Entity::insert_many(rows.into_iter().map(IntoActiveModel::into_active_model))
        .exec(db)
        .await?;
    Ok(())
}

/// A request's approvals in the order they were asked for (ids are time-ordered).
pub async fn of_request<C: ConnectionTrait>(db: &C, request_id: &str) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .filter(Column::RequestId.eq(request_id))
        .order_by_asc(Column::Id)
        .all(db)
        .await
}

/// One page of [`of_request`]: at most `limit`, after the approval `after` when given.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    request_id: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Model>, DbErr> {
    let mut q = Entity::find()
        .filter(Column::RequestId.eq(request_id))
        .order_by_asc(Column::Id);
    if let Some(after) = after {
        q = q.filter(Column::Id.gt(after));
    }
    q.limit(limit).all(db).await
}

/// The approvals of a request nobody decided yet.
pub async fn pending_of<C: ConnectionTrait>(db: &C, request_id: &str) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .filter(Column::RequestId.eq(request_id))
        .filter(Column::Status.eq(ApprovalStatus::Pending))
        .all(db)
        .await
}

/// `by` decided approval `a` (approved or rejected), with their reason.
pub async fn decide<C: ConnectionTrait>(
    db: &C,
    a: Model,
    status: ApprovalStatus,
    by: &str,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> Result<Model, DbErr> {
    let mut a = a.into_active_model();
    a.status = Set(status);
    a.decided_by = Set(Some(by.to_owned()));
    a.decision_reason = Set(reason);
    a.decided_at = Set(Some(at));
    a.update(db).await
}

/// Resolves every approval of a request still pending as no longer asked for, with `why`:
/// the request was cancelled or rejected, so nobody is waited for any more.
pub async fn withdraw_pending<C: ConnectionTrait>(
    db: &C,
    request_id: &str,
    by: &str,
    why: &str,
    at: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let done = Entity::update_many()
        .col_expr(Column::Status, ApprovalStatus::Cancelled.as_str().into())
        .col_expr(Column::DecidedBy, by.into())
        .col_expr(Column::DecisionReason, why.into())
        .col_expr(Column::DecidedAt, at.into())
        .filter(Column::RequestId.eq(request_id))
        .filter(Column::Status.eq(ApprovalStatus::Pending))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}
