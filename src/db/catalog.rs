//! What the catalog documents read: the entries of live resources by bucket (one query, drift
//! status joined in), one live resource, and the changes since a
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

/// What a resource's catalog entities are made of: its row (its `outputs` hold no secret:
/// credentials are sealed apart; the entity shows the ones its offering declares) and the
/// drift status once it was checked.
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
    pub outputs: serde_json::Value,
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
            C::Outputs,
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

/// A position in the catalog change feed (`catalog_feed`, see its migration): rows are
/// answered in `(txid, seq)` order; `txid` is 0 on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FeedPosition {
    pub txid: i64,
    pub seq: i64,
}

/// Up to `limit` resources whose latest change lies after `after`, in feed order, with the
/// position of that change. On PostgreSQL only changes of transactions older than every one
/// still running are answered (one statement: one snapshot), so a change committed later can
/// never land before a position already handed out.
pub async fn feed_after<C: ConnectionTrait>(
    db: &C,
    after: FeedPosition,
    limit: u64,
) -> Result<Vec<(String, FeedPosition)>, DbErr> {
    use sea_orm::{DatabaseBackend, Statement};
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "SELECT resource_id, txid, seq FROM catalog_feed \
             WHERE (txid, seq) > ($1, $2) \
               AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
             ORDER BY txid, seq LIMIT $3"
        }
        _ => {
            "SELECT resource_id, txid, seq FROM catalog_feed \
             WHERE (txid, seq) > (?, ?) ORDER BY txid, seq LIMIT ?"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [
                after.txid.into(),
                after.seq.into(),
                (limit.min(i64::MAX as u64) as i64).into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String>("", "resource_id")?,
                FeedPosition {
                    txid: r.try_get("", "txid")?,
                    seq: r.try_get("", "seq")?,
                },
            ))
        })
        .collect()
}

/// The entries of the live ones among these resources, by bucket then id.
pub async fn entries_of_ids<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
) -> Result<Vec<Entry>, DbErr> {
    entries()
        .filter(resource::Column::Id.is_in(ids.iter().cloned()))
        .into_model()
        .all(db)
        .await
}

/// What a resource was published as: its entity name and desired state (for its parts).
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct Published {
    pub id: String,
    pub entity_name: String,
    pub desired: serde_json::Value,
}

/// Of these resources, the deleted ones, as they were published.
pub async fn deleted_of_ids<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
) -> Result<Vec<Published>, DbErr> {
    use resource::Column as C;
    resource::Entity::find()
        .select_only()
        .columns([C::Id, C::EntityName, C::Desired])
        .filter(C::Id.is_in(ids.iter().cloned()))
        .filter(C::DeletedAt.is_not_null())
        .into_model()
        .all(db)
        .await
}
