//! What the engine wrote while running a request, line by line.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::request_log::{ActiveModel, Column, Entity, Model};

pub async fn add<C: ConnectionTrait>(
    db: &C,
    request_id: &str,
    step: Option<&str>,
    level: &'static str,
    message: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let line = NewLine {
        step: step.map(str::to_owned),
        level,
        message: message.to_owned(),
        at,
    };
    add_all(db, request_id, vec![line]).await
}

/// One line to add with [`add_all`].
pub struct NewLine {
    pub step: Option<String>,
    pub level: &'static str,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// Adds `lines` in one statement, in their order (ids grow in it).
pub async fn add_all<C: ConnectionTrait>(
    db: &C,
    request_id: &str,
    lines: Vec<NewLine>,
) -> Result<(), DbErr> {
    if lines.is_empty() {
        return Ok(());
    }
    Entity::insert_many(lines.into_iter().map(|l| ActiveModel {
        id: NotSet,
        request_id: Set(request_id.into()),
        step: Set(l.step),
        level: Set(l.level.into()),
        message: Set(l.message),
        at: Set(l.at),
    }))
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Oldest first: at most `limit` lines after line `after` when given (ids grow).
pub async fn page<C: ConnectionTrait>(
    db: &C,
    request_id: &str,
    after: Option<i64>,
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
