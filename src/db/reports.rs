//! What the read models (platform metrics, Cost Insights) read: requests, approvals and
//! resources over a window, and a catalog entity's resources with their price history.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use super::entities::{approval, request, resource};
use crate::vocab::status::{Operation, RequestStatus};

/// Requests that finished in `from..=to`.
pub async fn requests_finished_between<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<request::Model>, DbErr> {
    request::Entity::find()
        .filter(request::Column::CompletedAt.gte(from))
        .filter(request::Column::CompletedAt.lte(to))
        .all(db)
        .await
}

/// Requests made in `from..=to`.
pub async fn requests_made_between<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<request::Model>, DbErr> {
    request::Entity::find()
        .filter(request::Column::CreatedAt.gte(from))
        .filter(request::Column::CreatedAt.lte(to))
        .all(db)
        .await
}

/// Approvals waiting for a decision.
/// Only those of requests that still wait (an approval left pending by an older paved on a
/// request cancelled since is not waited for).
pub async fn pending_approvals<C: ConnectionTrait>(db: &C) -> Result<Vec<approval::Model>, DbErr> {
    use sea_orm::sea_query::Query;
    let waiting = Query::select()
        .column(request::Column::Id)
        .from(request::Entity)
        .and_where(
            request::Column::Status.eq(crate::vocab::status::RequestStatus::AwaitingApproval),
        )
        .to_owned();
    approval::Entity::find()
        .filter(approval::Column::Status.eq("pending"))
        .filter(approval::Column::RequestId.in_subquery(waiting))
        .all(db)
        .await
}

/// Resources that exist (not deleted) and did not fail.
pub async fn active_resources<C: ConnectionTrait>(db: &C) -> Result<Vec<resource::Model>, DbErr> {
    resource::Entity::find()
        .filter(resource::Column::DeletedAt.is_null())
        .filter(resource::Column::Status.ne("failed"))
        .all(db)
        .await
}

/// Resources deleted in `from..=to`.
pub async fn resources_deleted_between<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<resource::Model>, DbErr> {
    resource::Entity::find()
        .filter(resource::Column::DeletedAt.gte(from))
        .filter(resource::Column::DeletedAt.lte(to))
        .all(db)
        .await
}

/// Those of `resource_ids` that `requester` asked to delete.
pub async fn deleted_by<C: ConnectionTrait>(
    db: &C,
    requester: &str,
    resource_ids: &[String],
) -> Result<BTreeSet<String>, DbErr> {
    Ok(request::Entity::find()
        .filter(request::Column::Operation.eq(Operation::Delete.as_str()))
        .filter(request::Column::Requester.eq(requester))
        .filter(request::Column::ResourceId.is_in(resource_ids.iter().cloned()))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|r| r.resource_id)
        .collect())
}

/// Which resources a catalog entity's cost is made of.
pub enum CostedBy<'a> {
    /// Every resource (the caller picks a Resource's incarnations by name).
    All,
    /// A Group's: owned by it.
    Owner(&'a str),
    /// A Component's: those that depend on it.
    Component(&'a str),
    /// A System's: those that belong to it.
    System(&'a str),
}

/// The resources `by` selects, deleted or not, by id.
pub async fn costed_resources<C: ConnectionTrait>(
    db: &C,
    by: CostedBy<'_>,
) -> Result<Vec<resource::Model>, DbErr> {
    let q = resource::Entity::find().order_by_asc(resource::Column::Id);
    let q = match by {
        CostedBy::All => q,
        CostedBy::Owner(o) => q.filter(resource::Column::Owner.eq(o)),
        CostedBy::Component(c) => q.filter(resource::Column::Component.eq(c)),
        CostedBy::System(s) => q.filter(resource::Column::System.eq(s)),
    };
    q.all(db).await
}

/// The successful creates and updates of `resource_ids`, in order: each carries the estimate
/// the resource was priced at from then on.
pub async fn price_changes<C: ConnectionTrait>(
    db: &C,
    resource_ids: &[String],
) -> Result<Vec<request::Model>, DbErr> {
    request::Entity::find()
        .filter(request::Column::ResourceId.is_in(resource_ids.iter().cloned()))
        .filter(request::Column::Status.eq(RequestStatus::Succeeded.as_str()))
        .filter(
            request::Column::Operation
                .is_in([Operation::Create.as_str(), Operation::Update.as_str()]),
        )
        .order_by_asc(request::Column::Id)
        .all(db)
        .await
}
