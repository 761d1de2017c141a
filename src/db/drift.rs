//! Drift as stored: each resource's findings (what differed, and what became of it) and its
//! drift state (the latest check's verdict).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::Value;

use super::entities::{
    drift_finding::{self, FindingStatus},
    drift_state::{self, DriftStatus},
    resource,
};

/// A resource's open findings, oldest first.
pub async fn open_findings<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
) -> Result<Vec<drift_finding::Model>, DbErr> {
    drift_finding::Entity::find()
        .filter(drift_finding::Column::ResourceId.eq(resource_id))
        .filter(drift_finding::Column::Status.eq(FindingStatus::Open))
        .order_by_asc(drift_finding::Column::Id)
        .all(db)
        .await
}

/// A resource's latest closed findings (at most `limit`), newest first.
pub async fn closed_findings<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    limit: u64,
) -> Result<Vec<drift_finding::Model>, DbErr> {
    drift_finding::Entity::find()
        .filter(drift_finding::Column::ResourceId.eq(resource_id))
        .filter(drift_finding::Column::Status.ne(FindingStatus::Open))
        .order_by_desc(drift_finding::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// A difference seen for the first time (or changed again).
pub struct NewFinding<'a> {
    pub resource_id: &'a str,
    pub part: &'a str,
    pub field: &'a str,
    pub expected: &'a Value,
    pub actual: &'a Value,
}

/// Stores `f` as an open finding detected at `now`.
pub async fn open_finding<C: ConnectionTrait>(
    db: &C,
    f: NewFinding<'_>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    drift_finding::Entity::insert(drift_finding::ActiveModel {
        id: NotSet,
        resource_id: Set(f.resource_id.to_owned()),
        part: Set(f.part.to_owned()),
        field: Set(f.field.to_owned()),
        expected: Set(Some(f.expected.clone())),
        actual: Set(Some(f.actual.clone())),
        status: Set(FindingStatus::Open),
        detected_at: Set(now),
        last_seen_at: Set(now),
        resolved_at: Set(None),
        resolved_by: Set(None),
        request_id: Set(None),
    })
    .exec(db)
    .await?;
    Ok(())
}

/// An open finding was seen again, unchanged.
pub async fn seen_again<C: ConnectionTrait>(
    db: &C,
    finding_id: i64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    drift_finding::Entity::update_many()
        .col_expr(drift_finding::Column::LastSeenAt, Expr::value(now))
        .filter(drift_finding::Column::Id.eq(finding_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Closes finding `finding_id` as `status` by `by` (with the update request of a revert), if
/// it is still open: a finding closed meanwhile keeps what closed it first.
pub async fn close<C: ConnectionTrait>(
    db: &C,
    finding_id: i64,
    status: FindingStatus,
    by: &str,
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    drift_finding::Entity::update_many()
        .col_expr(drift_finding::Column::Status, Expr::value(status))
        .col_expr(drift_finding::Column::ResolvedAt, Expr::value(now))
        .col_expr(drift_finding::Column::ResolvedBy, Expr::value(by))
        .col_expr(
            drift_finding::Column::RequestId,
            Expr::value(request_id.map(str::to_owned)),
        )
        .filter(drift_finding::Column::Id.eq(finding_id))
        .filter(drift_finding::Column::Status.eq(FindingStatus::Open))
        .exec(db)
        .await?;
    Ok(())
}

/// A resource's drift state; `None` before its first check.
pub async fn state<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
) -> Result<Option<drift_state::Model>, DbErr> {
    drift_state::Entity::find_by_id(resource_id.to_owned())
        .one(db)
        .await
}

/// Records a check's verdict; returns whether it changed. A change counts as an update of the
/// resource: its catalog documents (`paved.dev/drift`) change with it.
pub async fn set_state<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    status: DriftStatus,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let before = state(db, resource_id).await?;
    let changed = before.as_ref().map(|s| s.status) != Some(status);
    match before {
        Some(s) => {
            let mut a = s.into_active_model();
            a.status = Set(status);
            a.checked_at = Set(now);
            a.update(db).await?;
        }
        None => {
            // Another replica's check may insert first; either verdict is as fresh.
            drift_state::Entity::insert(drift_state::ActiveModel {
                resource_id: Set(resource_id.to_owned()),
                status: Set(status),
                checked_at: Set(now),
            })
            .on_conflict_do_nothing_on([drift_state::Column::ResourceId])
            .exec(db)
            .await?;
        }
    }
    if changed {
        touch_resource(db, resource_id, now).await?;
    }
    Ok(changed)
}

async fn touch_resource<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    resource::Entity::update_many()
        .col_expr(resource::Column::UpdatedAt, Expr::value(now))
        .filter(resource::Column::Id.eq(resource_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Stores the resource's desired state with accepted values in it (an update of the resource).
pub async fn store_accepted<C: ConnectionTrait>(
    db: &C,
    resource_id: &str,
    desired: Value,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    resource::Entity::update_many()
        .col_expr(resource::Column::Desired, Expr::value(desired))
        .col_expr(resource::Column::UpdatedAt, Expr::value(now))
        .filter(resource::Column::Id.eq(resource_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The drift status of the given resources (those checked at least once), in chunks so a
/// catalog page of thousands stays within the databases' parameter limits.
pub async fn statuses_of<C: ConnectionTrait>(
    db: &C,
    resource_ids: &[String],
) -> Result<BTreeMap<String, DriftStatus>, DbErr> {
    let mut out = BTreeMap::new();
    for chunk in resource_ids.chunks(500) {
        for s in drift_state::Entity::find()
            .filter(drift_state::Column::ResourceId.is_in(chunk.iter().cloned()))
            .all(db)
            .await?
        {
            out.insert(s.resource_id, s.status);
        }
    }
    Ok(out)
}

/// Findings first detected in `from..=to`, of any status.
pub async fn detected_between<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<drift_finding::Model>, DbErr> {
    drift_finding::Entity::find()
        .filter(drift_finding::Column::DetectedAt.gte(from))
        .filter(drift_finding::Column::DetectedAt.lte(to))
        .all(db)
        .await
}

/// Every open finding, of every resource.
pub async fn all_open<C: ConnectionTrait>(db: &C) -> Result<Vec<drift_finding::Model>, DbErr> {
    drift_finding::Entity::find()
        .filter(drift_finding::Column::Status.eq(FindingStatus::Open))
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;
    use serde_json::json;

    use super::*;
    use crate::db::testdb;

    fn finding<'a>(field: &'a str, actual: &'a Value) -> NewFinding<'a> {
        NewFinding {
            resource_id: "r1",
            part: "database",
            field,
            expected: &Value::Null,
            actual,
        }
    }

    #[tokio::test]
    async fn a_closed_finding_leaves_the_open_ones_and_keeps_what_closed_it() {
        let t = testdb::db().await;
        let now = Utc::now();
        let (one, two) = (json!(1), json!(2));
        open_finding(&t.db, finding("connection_limit", &one), now)
            .await
            .unwrap();
        open_finding(&t.db, finding("exists", &two), now)
            .await
            .unwrap();
        let open = open_findings(&t.db, "r1").await.unwrap();
        assert_eq!(open.len(), 2);
        assert!(open.iter().all(|f| f.status == FindingStatus::Open));

        close(
            &t.db,
            open[0].id,
            FindingStatus::Reverted,
            "u",
            Some("req-1"),
            now,
        )
        .await
        .unwrap();
        // Closed once: a later close (another check) does not rewrite it.
        close(&t.db, open[0].id, FindingStatus::Resolved, "v", None, now)
            .await
            .unwrap();
        let open_now = open_findings(&t.db, "r1").await.unwrap();
        assert_eq!(
            open_now.iter().map(|f| f.id).collect::<Vec<_>>(),
            [open[1].id]
        );
        let closed = closed_findings(&t.db, "r1", 50).await.unwrap();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].status, FindingStatus::Reverted);
        assert_eq!(closed[0].resolved_by.as_deref(), Some("u"));
        assert_eq!(closed[0].request_id.as_deref(), Some("req-1"));
    }

    #[tokio::test]
    async fn a_changed_state_touches_the_resource_and_an_unchanged_one_does_not() {
        let t = testdb::db().await;
        let res = testdb::resource(&t.db, "r1").await;
        let later = res.updated_at + chrono::Duration::minutes(5);
        assert!(
            set_state(&t.db, "r1", DriftStatus::Detected, later)
                .await
                .unwrap()
        );
        let touched = resource::Entity::find_by_id("r1")
            .one(&t.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(touched.updated_at, later);

        let even_later = later + chrono::Duration::minutes(5);
        assert!(
            !set_state(&t.db, "r1", DriftStatus::Detected, even_later)
                .await
                .unwrap()
        );
        let same = resource::Entity::find_by_id("r1")
            .one(&t.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            same.updated_at, later,
            "the catalog documents did not change"
        );
        let st = state(&t.db, "r1").await.unwrap().unwrap();
        assert_eq!(
            (st.status, st.checked_at),
            (DriftStatus::Detected, even_later)
        );
        let of = statuses_of(&t.db, &["r1".into(), "r2".into()])
            .await
            .unwrap();
        assert_eq!(
            of.into_iter().collect::<Vec<_>>(),
            [("r1".to_owned(), DriftStatus::Detected)]
        );
    }

    #[tokio::test]
    async fn an_unknown_stored_status_is_an_error() {
        let t = testdb::db().await;
        t.db.execute_unprepared(
            "INSERT INTO drift_findings (resource_id, part, field, status, detected_at, last_seen_at) \
             VALUES ('r1', 'database', 'x', 'bogus', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        )
        .await
        .unwrap();
        assert!(closed_findings(&t.db, "r1", 50).await.is_err());
    }
}
