//! The resources day-2 rounds walk: the ready ones (drift scans, usage samples, unused
//! reports), the expired ones (the reaper) and those expiring soon (warnings).

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Select};

use super::entities::resource;

fn ready_query() -> Select<resource::Entity> {
    resource::Entity::find()
        .filter(resource::Column::DeletedAt.is_null())
        .filter(resource::Column::Status.eq("ready"))
}

/// Ready resources (of `owner`, or all), by id.
pub async fn ready<C: ConnectionTrait>(
    db: &C,
    owner: Option<&str>,
) -> Result<Vec<resource::Model>, DbErr> {
    let mut q = ready_query().order_by_asc(resource::Column::Id);
    if let Some(o) = owner {
        q = q.filter(resource::Column::Owner.eq(o));
    }
    q.all(db).await
}

/// Ready resources whose expiry is at or before `now`.
pub async fn expired<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
) -> Result<Vec<resource::Model>, DbErr> {
    ready_query()
        .filter(resource::Column::ExpiresAt.lte(now))
        .all(db)
        .await
}

/// Ready resources that expire after `now` and no later than `until`.
pub async fn expiring<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<resource::Model>, DbErr> {
    ready_query()
        .filter(resource::Column::ExpiresAt.gt(now))
        .filter(resource::Column::ExpiresAt.lte(until))
        .all(db)
        .await
}
