//! The recorded steps of a request, in order: what ran, how often, how it ended.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};

use super::entities::request_step::{ActiveModel, Column, Entity, Model};
use crate::vocab::status::StepStatus;

/// A request's steps by position.
pub async fn of_request<C: ConnectionTrait>(db: &C, request_id: &str) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .filter(Column::RequestId.eq(request_id))
        .order_by_asc(Column::Position)
        .all(db)
        .await
}

/// Records step `name` at `position`, pending. One another run recorded already stays as it
/// is (the unique position decides).
pub async fn add<C: ConnectionTrait>(
    db: &C,
    request_id: &str,
    position: i32,
    name: &str,
) -> Result<(), DbErr> {
    let row = ActiveModel {
        id: NotSet,
        request_id: Set(request_id.into()),
        position: Set(position),
        name: Set(name.into()),
        status: Set(StepStatus::Pending),
        attempts: Set(0),
        started_at: Set(None),
        finished_at: Set(None),
        error: Set(None),
    };
    match Entity::insert(row).exec(db).await {
        Ok(_) => Ok(()),
        Err(e) if super::is_unique_violation(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The step starts another attempt.
pub async fn start<C: ConnectionTrait>(
    db: &C,
    step: Model,
    now: DateTime<Utc>,
) -> Result<Model, DbErr> {
    let attempts = step.attempts + 1;
    let mut s = step.into_active_model();
    s.status = Set(StepStatus::Running);
    s.started_at = Set(Some(now));
    s.attempts = Set(attempts);
    s.error = Set(None);
    s.update(db).await
}

/// The attempt ended as `status` (with the error when it did not succeed).
pub async fn finish<C: ConnectionTrait>(
    db: &C,
    step: Model,
    status: StepStatus,
    error: Option<String>,
    now: DateTime<Utc>,
) -> Result<Model, DbErr> {
    let mut s = step.into_active_model();
    s.status = Set(status);
    s.finished_at = Set(Some(now));
    if error.is_some() {
        s.error = Set(error);
    }
    s.update(db).await
}
