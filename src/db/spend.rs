//! What spend and budgets read: the billed rows of a team's resources, and for a budget the
//! totals of its live resources and accepted orders.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    Statement,
};

use super::entities::resource;
use crate::{
    cost::Billed,
    vocab::status::{Operation, RequestStatus, ResourceStatus},
};

pub fn billed(r: &resource::Model) -> Billed {
    Billed {
        monthly_cost_cents: r.monthly_cost_cents,
        created_at: r.created_at,
        expires_at: r.expires_at,
        deleted_at: r.deleted_at,
    }
}

/// The team's active resources (not deleted, not failed: what the platform metrics count),
/// as billed.
pub async fn live_of_team<C: ConnectionTrait>(db: &C, team: &str) -> Result<Vec<Billed>, DbErr> {
    Ok(resource::Entity::find()
        .filter(resource::Column::Owner.eq(team))
        .filter(resource::Column::DeletedAt.is_null())
        .filter(resource::Column::Status.ne(ResourceStatus::Failed))
        .all(db)
        .await?
        .iter()
        .map(billed)
        .collect())
}

/// What the budget of a team's next order is read from, summed by the database.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TeamTotals {
    /// The live resources billed a whole month (no expiry, or none before `full_from`), in cents.
    pub full_month_cents: i64,
    /// The live resources that expire between now and `full_from`, each prorated: the sum of
    /// cents × whole seconds it has left (as [`crate::cost::current_monthly_of`] counts them).
    pub expiring_cent_seconds: i64,
    /// The accepted orders for new resources not provisioned yet, from the estimate each was
    /// accepted with.
    pub ordered_monthly: f64,
}

/// One row whatever the team's size (its active resources: a failed one is not billed): three sums over indexed columns (migration
/// m20261201_000009), not every resource and open order of the team. `{epoch}` is the
/// backend's whole seconds of `expires_at`.
const TEAM_TOTALS: &str = "SELECT \
 (SELECT CAST(SUM(monthly_cost_cents) AS BIGINT) FROM resources \
   WHERE owner = {team} AND deleted_at IS NULL AND status <> {failed} \
     AND (expires_at IS NULL OR expires_at >= {full_from})) AS cents, \
 (SELECT CAST(SUM(monthly_cost_cents * ({epoch} - {now_secs})) AS BIGINT) FROM resources \
   WHERE owner = {team} AND deleted_at IS NULL AND status <> {failed} \
     AND expires_at > {now} AND expires_at < {full_from}) AS cent_seconds, \
 (SELECT CAST(SUM(estimate_monthly) AS DOUBLE PRECISION) FROM requests \
   WHERE owner = {team} AND operation = {create} \
     AND status IN ({open0}, {open1}, {open2})) AS ordered";

/// The whole seconds since 1970 of `expires_at`, exactly: PostgreSQL's epoch is exact; SQLite's
/// date functions round to the millisecond (…59.9996 would count as the next second), so its
/// UTC text (as paved writes it) is read without the fraction.
fn epoch_seconds(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "CAST(floor(extract(epoch FROM expires_at)) AS BIGINT)",
        _ => {
            "CAST(strftime('%s', CASE WHEN substr(expires_at, -6) = '+00:00' \
             THEN substr(expires_at, 1, 19) ELSE expires_at END) AS INTEGER)"
        }
    }
}

pub async fn totals_of_team<C: ConnectionTrait>(
    db: &C,
    team: &str,
    now: DateTime<Utc>,
    full_from: DateTime<Utc>,
) -> Result<TeamTotals, DbErr> {
    let backend = db.get_database_backend();
    let [open0, open1, open2] = RequestStatus::OPEN.map(|s| sea_orm::Value::from(s.as_str()));
    let named = [
        ("{team}", sea_orm::Value::from(team)),
        ("{now_secs}", now.timestamp().into()),
        ("{now}", now.into()),
        ("{full_from}", full_from.into()),
        ("{create}", Operation::Create.as_str().into()),
        ("{failed}", ResourceStatus::Failed.as_str().into()),
        ("{open0}", open0),
        ("{open1}", open1),
        ("{open2}", open2),
    ];
    // Each marker becomes the backend's next positional parameter, its value repeated.
    let text = TEAM_TOTALS.replace("{epoch}", epoch_seconds(backend));
    let (mut sql, mut values, mut rest) = (String::new(), Vec::new(), text.as_str());
    while let Some(at) = rest.find("{") {
        let (name, value) = named
            .iter()
            .find(|(n, _)| rest[at..].starts_with(n))
            .expect("every marker is named");
        sql.push_str(&rest[..at]);
        values.push(value.clone());
        match backend {
            DbBackend::Postgres => sql.push_str(&format!("${}", values.len())),
            _ => sql.push('?'),
        }
        rest = &rest[at + name.len()..];
    }
    sql.push_str(rest);
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("team totals".into()))?;
    Ok(TeamTotals {
        full_month_cents: row.try_get::<Option<i64>>("", "cents")?.unwrap_or(0),
        expiring_cent_seconds: row.try_get::<Option<i64>>("", "cent_seconds")?.unwrap_or(0),
        ordered_monthly: row.try_get::<Option<f64>>("", "ordered")?.unwrap_or(0.0),
    })
}

/// A resource's owner and billing, deleted or not.
pub async fn of_resource<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<(String, Billed)>, DbErr> {
    Ok(resource::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(|r| (r.owner.clone(), billed(&r))))
}

/// Class id of paved's advisory locks on its own database (the two-key form keeps them apart
/// from any other user of advisory locks there): "pave" in ASCII.
const ORDER_LOCK_CLASS: i32 = 0x7061_7665;

/// PostgreSQL: holds the team's order lock until `txn` ends (a transaction-scoped advisory
/// lock keyed on the team), so the next order of the team, on any replica, reads a spend that
/// includes what `txn` stores.
pub async fn lock_team_orders(txn: &DatabaseTransaction, team: &str) -> Result<(), DbErr> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        [ORDER_LOCK_CLASS.into(), team.into()],
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};

    use super::*;
    use crate::{
        cost,
        db::testdb::{self, TEAM_A},
    };

    async fn order(
        db: &sea_orm::DatabaseConnection,
        id: &str,
        op: &str,
        status: &str,
        monthly: f64,
    ) {
        db.execute_unprepared(&format!(
            "INSERT INTO requests (id, offering, template_version, operation, status, requester, owner, parameters, spec, created_at, updated_at, estimate, decision) \
             VALUES ('{id}', 'postgres-database', '1', '{op}', '{status}', 'user:default/alice', '{TEAM_A}', '{{}}', NULL, '2026-11-24 10:00:00+00:00', '2026-11-24 10:00:00+00:00', \
             '{{\"currency\":\"USD\",\"lineItems\":[],\"monthly\":{monthly},\"annual\":0,\"hourly\":0,\"lifetime\":null,\"recommendations\":[]}}', NULL)"
        ))
        .await
        .unwrap();
    }

    /// The totals are what the team's rows add up to: live resources (prorated when they expire
    /// within the month, nothing once expired or deleted) and open orders for new resources.
    #[tokio::test]
    async fn team_totals_add_up_the_rows() {
        let t = testdb::db().await;
        let now = Utc::now();
        let hpm = 730.0;
        for (id, cents, expires, deleted) in [
            ("full", 10_050, None, false),
            ("far", 4_275, Some(now + TimeDelta::hours(800)), false),
            ("day", 3_470, Some(now + TimeDelta::hours(24)), false),
            ("gone", 999, Some(now - TimeDelta::hours(1)), false),
            ("deleted", 5_000, None, true),
        ] {
            let mut r = testdb::resource(&t.db, id).await.into_active_model();
            r.monthly_cost_cents = Set(Some(cents));
            r.expires_at = Set(expires);
            r.deleted_at = Set(deleted.then_some(now));
            r.update(&t.db).await.unwrap();
        }
        order(&t.db, "o1", "create", "pending", 12.5).await;
        order(&t.db, "o2", "create", "awaiting_approval", 30.0).await;
        order(&t.db, "o3", "create", "running", 0.25).await;
        order(&t.db, "o4", "create", "succeeded", 100.0).await;
        order(&t.db, "o5", "update", "pending", 100.0).await;

        let totals = totals_of_team(&t.db, TEAM_A, now, cost::full_month_from(now, hpm))
            .await
            .unwrap();
        assert_eq!(totals.full_month_cents, 10_050 + 4_275);
        let day = (now + TimeDelta::hours(24)).timestamp() - now.timestamp();
        assert_eq!(totals.expiring_cent_seconds, 3_470 * day);
        assert_eq!(totals.ordered_monthly, 42.75);
        let live = live_of_team(&t.db, TEAM_A).await.unwrap();
        assert_eq!(
            cost::current_monthly_from(totals.full_month_cents, totals.expiring_cent_seconds, hpm),
            cost::team_spend(TEAM_A, &live, "USD", hpm, now).current_monthly
        );
        let none = totals_of_team(&t.db, "group:default/nobody", now, now)
            .await
            .unwrap();
        assert_eq!(none, TeamTotals::default());
    }
}
