//! What the catalog documents read: live resources by page (a range of `catalog_bucket`), one
//! live resource, and the changes since a moment (through the index on `updated_at`).

use std::ops::Range;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::resource;

/// The live resources whose bucket is in `buckets`, by id.
pub async fn live_in_buckets<C: ConnectionTrait>(
    db: &C,
    buckets: Range<i32>,
) -> Result<Vec<resource::Model>, DbErr> {
    resource::Entity::find()
        .filter(resource::Column::DeletedAt.is_null())
        .filter(resource::Column::CatalogBucket.gte(buckets.start))
        .filter(resource::Column::CatalogBucket.lt(buckets.end))
        .order_by_asc(resource::Column::Id)
        .all(db)
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
