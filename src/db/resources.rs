//! Provisioned resources: what exists on the targets, who owns it, what it costs and when it
//! expires. A deleted resource keeps its row (`deleted_at`), its name freed for a new order.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::Value;

use super::entities::resource::{Column, Entity, Model};
use crate::vocab::status::ResourceStatus;

pub async fn by_id<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<Model>, DbErr> {
    Entity::find_by_id(id.to_owned()).one(db).await
}

/// The resource request `request_id` created, if it got that far.
pub async fn by_request<C: ConnectionTrait>(
    db: &C,
    request_id: &str,
) -> Result<Option<Model>, DbErr> {
    Entity::find()
        .filter(Column::RequestId.eq(request_id))
        .one(db)
        .await
}

/// The live (not deleted) resource that holds `name`, if any.
pub async fn live_by_name<C: ConnectionTrait>(db: &C, name: &str) -> Result<Option<Model>, DbErr> {
    Entity::find()
        .filter(Column::EntityName.eq(name))
        .filter(Column::DeletedAt.is_null())
        .one(db)
        .await
}

/// Inserts a resource; a name another live resource holds is a unique violation
/// ([`super::is_unique_violation`]).
pub async fn insert<C: ConnectionTrait>(db: &C, row: Model) -> Result<Model, DbErr> {
    Entity::insert(row.into_active_model())
        .exec_with_returning(db)
        .await
}

/// Live resources, newest first, optionally of one owner and only of `visible` owners: at
/// most `limit`, older than `before` when given (ids are time-ordered, so the id is the
/// keyset and resources created meanwhile never shift a page).
pub async fn list_live<C: ConnectionTrait>(
    db: &C,
    owner: Option<&str>,
    visible: Option<&BTreeSet<String>>,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<Model>, DbErr> {
    let mut q = Entity::find()
        .filter(Column::DeletedAt.is_null())
        .order_by_desc(Column::Id);
    if let Some(b) = before {
        q = q.filter(Column::Id.lt(b));
    }
    if let Some(o) = owner {
        q = q.filter(Column::Owner.eq(o));
    }
    if let Some(v) = visible {
        q = q.filter(Column::Owner.is_in(v.iter().cloned()));
    }
    q.limit(limit).all(db).await
}

/// Sets the resource's status. `updated_at` moves too: the catalog shows the status, and its
/// page must see the change.
pub async fn set_status<C: ConnectionTrait>(
    db: &C,
    id: &str,
    status: ResourceStatus,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Status, Expr::value(status))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// The resource is gone from its targets. Its name is freed for a new order (the API still
/// shows the original one, from `desired`).
pub async fn mark_deleted<C: ConnectionTrait>(
    db: &C,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Status, Expr::value(ResourceStatus::Deleted))
        .col_expr(Column::EntityName, Expr::value(format!("deleted:{id}")))
        .col_expr(Column::DeletedAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// What a finished create or update records on its resource.
#[derive(Debug, Clone)]
pub struct Published {
    pub monthly_cost_cents: Option<i64>,
    /// `Some`: the expiry a create sets (none without a TTL); `None`: keep it (an update:
    /// extending a TTL is its own operation).
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// The rendered spec it now has.
    pub desired: Value,
    pub offering_version: String,
}

/// The resource is ready as `published` says.
pub async fn publish<C: ConnectionTrait>(
    db: &C,
    res: Model,
    published: Published,
    now: DateTime<Utc>,
) -> Result<Model, DbErr> {
    let mut r = res.into_active_model();
    r.status = Set(ResourceStatus::Ready);
    r.monthly_cost_cents = Set(published.monthly_cost_cents);
    if let Some(expires_at) = published.expires_at {
        r.expires_at = Set(expires_at);
    }
    r.desired = Set(published.desired);
    r.offering_version = Set(published.offering_version);
    r.updated_at = Set(now);
    r.update(db).await
}

/// Records what a part is now: the outputs per part and the desired spec.
pub async fn record_parts<C: ConnectionTrait>(
    db: &C,
    res: Model,
    outputs: Value,
    desired: Value,
    now: DateTime<Utc>,
) -> Result<Model, DbErr> {
    let mut r = res.into_active_model();
    r.outputs = Set(outputs);
    r.desired = Set(desired);
    r.updated_at = Set(now);
    r.update(db).await
}

/// Moves a ready resource's expiry from `from` (as read) to `to`; false when it changed
/// meanwhile (another extension, a deletion), so two extensions cannot both extend from it.
pub async fn extend_expiry<C: ConnectionTrait>(
    db: &C,
    id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let updated = Entity::update_many()
        .col_expr(Column::ExpiresAt, Expr::value(to))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::ExpiresAt.eq(from))
        .filter(Column::Status.eq(ResourceStatus::Ready))
        .filter(Column::DeletedAt.is_null())
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}
