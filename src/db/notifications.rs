//! The notification outbox: one row per notification and channel, holding what is said and how
//! its delivery went. Delivering is a job (`notifications::deliver`); these are its reads and
//! writes.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::Expr,
};
use serde_json::Value;

use super::entities::notification::{self, NotificationStatus};

/// What one outbox row says (the channel and the words), before it is stored.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub id: String,
    pub channel: String,
    pub topic: String,
    pub recipients: Value,
    pub payload: Value,
}

/// Stores rows to deliver (inside the caller's transaction when given one).
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<NewNotification>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows = rows.into_iter().map(|n| notification::ActiveModel {
        id: Set(n.id),
        channel: Set(n.channel),
        topic: Set(n.topic),
        recipients: Set(n.recipients),
        payload: Set(n.payload),
        status: Set(NotificationStatus::Queued),
        attempts: Set(0),
        last_error: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
    });
    notification::Entity::insert_many(rows).exec(conn).await?;
    Ok(())
}

pub async fn find<C: ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<Option<notification::Model>, DbErr> {
    notification::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await
}

/// Attempt `attempt` starts.
pub async fn sending<C: ConnectionTrait>(conn: &C, id: &str, attempt: i32) -> Result<(), DbErr> {
    notification::Entity::update_many()
        .col_expr(
            notification::Column::Status,
            Expr::value(NotificationStatus::Sending),
        )
        .col_expr(notification::Column::Attempts, Expr::value(attempt))
        .filter(notification::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn sent<C: ConnectionTrait>(conn: &C, id: &str, now: DateTime<Utc>) -> Result<(), DbErr> {
    notification::Entity::update_many()
        .col_expr(
            notification::Column::Status,
            Expr::value(NotificationStatus::Sent),
        )
        .col_expr(notification::Column::SentAt, Expr::value(now))
        .col_expr(
            notification::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .filter(notification::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// The last attempt failed: `status` is `Queued` (another follows) or `Failed` (given up).
pub async fn not_sent<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    status: NotificationStatus,
    error: &str,
) -> Result<(), DbErr> {
    notification::Entity::update_many()
        .col_expr(notification::Column::Status, Expr::value(status))
        .col_expr(notification::Column::LastError, Expr::value(error))
        .filter(notification::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}
