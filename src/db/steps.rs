//! The recorded steps of a request, in order: what ran, how often, how it ended.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, sea_query::OnConflict,
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

/// Records the steps `(position, name)`, pending, in one statement. One another run recorded
/// already stays as it is (the unique position decides).
pub async fn add_all<C: ConnectionTrait>(
    db: &C,
    request_id: &str,
    steps: &[(i32, String)],
) -> Result<(), DbErr> {
    if steps.is_empty() {
        return Ok(());
    }
    let rows = steps.iter().map(|(position, name)| ActiveModel {
        id: NotSet,
        request_id: Set(request_id.into()),
        position: Set(*position),
        name: Set(name.clone()),
        status: Set(StepStatus::Pending),
        attempts: Set(0),
        started_at: Set(None),
        finished_at: Set(None),
        error: Set(None),
    });
    Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([Column::RequestId, Column::Position])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
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

/// A whole attempt recorded at once, for a step that ran inside the transaction recording it
/// (its start is never seen on its own): one write instead of a start and a finish.
pub async fn ran<C: ConnectionTrait>(
    db: &C,
    step: Model,
    started_at: DateTime<Utc>,
    status: StepStatus,
    error: Option<String>,
    now: DateTime<Utc>,
) -> Result<Model, DbErr> {
    let attempts = step.attempts + 1;
    let mut s = step.into_active_model();
    s.status = Set(status);
    s.attempts = Set(attempts);
    s.started_at = Set(Some(started_at));
    s.finished_at = Set(Some(now));
    s.error = Set(error);
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

/// The run gave up on the step (its last attempt failed, or the runner stopped it): failed,
/// keeping when its last attempt ended if it had.
pub async fn gave_up<C: ConnectionTrait>(
    db: &C,
    step: Model,
    error: String,
    now: DateTime<Utc>,
) -> Result<Model, DbErr> {
    // A step still `running` has no end of this attempt yet (an earlier attempt's is stale).
    let finished = match step.status {
        StepStatus::Running => now,
        _ => step.finished_at.unwrap_or(now),
    };
    let mut s = step.into_active_model();
    s.status = Set(StepStatus::Failed);
    s.finished_at = Set(Some(finished));
    s.error = Set(Some(error));
    s.update(db).await
}
