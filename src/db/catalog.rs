//! What the catalog documents read: the entries of live resources by bucket (one query, drift
//! status joined in, credentials' outputs left out), one live resource, and the changes since a
//! moment (through the index on `updated_at`).

use std::ops::Range;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, JoinType, QueryFilter,
    QueryOrder, QuerySelect, Select, sea_query::Expr,
};

use super::entities::{
    drift_state::{self, DriftStatus},
    resource,
};

/// What a resource's catalog entities are made of: its row without `outputs` (never
/// published) and the drift status once it was checked.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct Entry {
    pub id: String,
    pub entity_name: String,
    pub offering: String,
    pub offering_version: String,
    pub resource_type: String,
    pub environment: String,
    pub owner: String,
    pub system: Option<String>,
    pub component: Option<String>,
    pub status: crate::vocab::status::ResourceStatus,
    pub desired: serde_json::Value,
    pub monthly_cost_cents: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub request_id: String,
    pub catalog_bucket: i32,
    pub drift: Option<DriftStatus>,
}

/// Live resources with their drift status, in one query: a page used to look drift up by id
/// lists of 500, which cost more than reading and rendering the page (see the catalog bench).
fn entries() -> Select<resource::Entity> {
    use resource::Column as C;
    resource::Entity::find()
        .select_only()
        .columns([
            C::Id,
            C::EntityName,
            C::Offering,
            C::OfferingVersion,
            C::ResourceType,
            C::Environment,
            C::Owner,
            C::System,
            C::Component,
            C::Status,
            C::Desired,
            C::MonthlyCostCents,
            C::ExpiresAt,
            C::RequestId,
            C::CatalogBucket,
        ])
        .column_as(
            Expr::col((drift_state::Entity, drift_state::Column::Status)),
            "drift",
        )
        .join(
            JoinType::LeftJoin,
            resource::Entity::belongs_to(drift_state::Entity)
                .from(C::Id)
                .to(drift_state::Column::ResourceId)
                .into(),
        )
        .filter(C::DeletedAt.is_null())
        .order_by_asc(C::CatalogBucket)
        .order_by_asc(C::Id)
}

/// The entries of the live resources whose bucket is in `buckets`, by bucket then id.
pub async fn entries_in_buckets<C: ConnectionTrait>(
    db: &C,
    buckets: Range<i32>,
) -> Result<Vec<Entry>, DbErr> {
    entries()
        .filter(resource::Column::CatalogBucket.gte(buckets.start))
        .filter(resource::Column::CatalogBucket.lt(buckets.end))
        .into_model()
        .all(db)
        .await
}

/// The entries of the live resources in these buckets (a few changed ones), by bucket then id.
pub async fn entries_of_buckets<C: ConnectionTrait>(
    db: &C,
    buckets: &[i32],
) -> Result<Vec<Entry>, DbErr> {
    entries()
        .filter(resource::Column::CatalogBucket.is_in(buckets.iter().copied()))
        .into_model()
        .all(db)
        .await
}

/// The entry of resource `id` unless it is deleted (or absent).
pub async fn entry<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<Entry>, DbErr> {
    entries()
        .filter(resource::Column::Id.eq(id))
        .into_model()
        .one(db)
        .await
}

/// Resource `id` unless it is deleted (or absent).
pub async fn live<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<resource::Model>, DbErr> {
    Ok(resource::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .filter(|r| r.deleted_at.is_none()))
}
/// The newest `updated_at` of any resource.
pub async fn newest_change<C: ConnectionTrait>(db: &C) -> Result<Option<DateTime<Utc>>, DbErr> {
    resource::Entity::find()
        .select_only()
        .column(resource::Column::UpdatedAt)
        .order_by_desc(resource::Column::UpdatedAt)
        .into_tuple::<DateTime<Utc>>()
        .one(db)
        .await
}

/// A resource row as the change watch sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: String,
    pub bucket: i32,
    pub updated_at: DateTime<Utc>,
}

/// Every resource updated at or after `since`, deleted or not.
pub async fn changed_since<C: ConnectionTrait>(
    db: &C,
    since: DateTime<Utc>,
) -> Result<Vec<Change>, DbErr> {
    let rows: Vec<(String, i32, DateTime<Utc>)> = resource::Entity::find()
        .select_only()
        .columns([
            resource::Column::Id,
            resource::Column::CatalogBucket,
            resource::Column::UpdatedAt,
        ])
        .filter(resource::Column::UpdatedAt.gte(since))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, bucket, updated_at)| Change {
            id,
            bucket,
            updated_at,
        })
        .collect())
}
