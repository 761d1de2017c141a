//! paved's signing keys for its calls to Backstage, stored sealed so every replica signs with
//! (and publishes) the same keys.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use super::entities::signing_key;

/// Deletes the keys retired at or before `now` (their last tokens have expired).
pub async fn forget_retired<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<(), DbErr> {
    signing_key::Entity::delete_many()
        .filter(signing_key::Column::RetireAt.lte(now))
        .exec(db)
        .await?;
    Ok(())
}

/// The most recently created key.
pub async fn newest<C: ConnectionTrait>(db: &C) -> Result<Option<signing_key::Model>, DbErr> {
    signing_key::Entity::find()
        .order_by_desc(signing_key::Column::CreatedAt)
        .one(db)
        .await
}

pub async fn insert<C: ConnectionTrait>(db: &C, key: &signing_key::Model) -> Result<(), DbErr> {
    signing_key::Entity::insert(signing_key::ActiveModel::from(key.clone()))
        .exec(db)
        .await?;
    Ok(())
}

/// The keys not retired at `now`, newest first.
pub async fn published<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
) -> Result<Vec<signing_key::Model>, DbErr> {
    signing_key::Entity::find()
        .filter(signing_key::Column::RetireAt.gt(now))
        .order_by_desc(signing_key::Column::CreatedAt)
        .all(db)
        .await
}
