//! Resource notices: what an owner was told about a resource, once per resource, kind and key
//! (the unique index decides, across replicas).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, SqlErr,
};

use super::entities::resource_notice::{self, NoticeKind};

/// Records the notice; `false` when it was recorded before (by this or another replica), so
/// the owner is not told again.
pub async fn first_time<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    kind: NoticeKind,
    key: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let inserted = resource_notice::Entity::insert(resource_notice::ActiveModel {
        id: NotSet,
        resource_id: Set(resource_id.to_owned()),
        kind: Set(kind),
        notice_key: Set(key.to_owned()),
        sent_at: Set(now),
    })
    .exec(db)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Those of `resource_ids` that got a notice of `kind`.
pub async fn noticed_among<C: ConnectionTrait>(
    db: &C,
    kind: NoticeKind,
    resource_ids: &[String],
) -> Result<BTreeSet<String>, DbErr> {
    Ok(resource_notice::Entity::find()
        .filter(resource_notice::Column::Kind.eq(kind))
        .filter(resource_notice::Column::ResourceId.is_in(resource_ids.iter().cloned()))
        .all(db)
        .await?
        .into_iter()
        .map(|n| n.resource_id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testdb;

    #[tokio::test]
    async fn a_notice_is_recorded_once_per_resource_kind_and_key() {
        let t = testdb::db().await;
        testdb::resource(&t.db, "r1").await;
        testdb::resource(&t.db, "r2").await;
        let now = Utc::now();
        assert!(
            first_time(&t.db, "r1", NoticeKind::Unused, "never", now)
                .await
                .unwrap()
        );
        assert!(
            !first_time(&t.db, "r1", NoticeKind::Unused, "never", now)
                .await
                .unwrap()
        );
        assert!(
            first_time(&t.db, "r1", NoticeKind::Unused, "2026-01-01", now)
                .await
                .unwrap()
        );
        assert!(
            first_time(&t.db, "r1", NoticeKind::ExpiryWarning, "never", now)
                .await
                .unwrap()
        );
        let ids = ["r1".to_owned(), "r2".to_owned()];
        let noticed = noticed_among(&t.db, NoticeKind::Unused, &ids)
            .await
            .unwrap();
        assert_eq!(noticed.into_iter().collect::<Vec<_>>(), ["r1"]);
    }
}
