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
    vocab::status::{Operation, RequestStatus},
};

pub fn billed(r: &resource::Model) -> Billed {
    Billed {
        monthly_cost_cents: r.monthly_cost_cents,
        created_at: r.created_at,
        expires_at: r.expires_at,
        deleted_at: r.deleted_at,
    }
}

/// The team's resources that are not deleted, as billed.
pub async fn live_of_team<C: ConnectionTrait>(db: &C, team: &str) -> Result<Vec<Billed>, DbErr> {
    Ok(resource::Entity::find()
        .filter(resource::Column::Owner.eq(team))
        .filter(resource::Column::DeletedAt.is_null())
        .all(db)
        .await?
        .iter()
        .map(billed)
        .collect())
}

/// What the budget of a team's next order is read from, summed by the database.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TeamTotals {
    /// The live resources billed a whole month (no expiry, or none within `full_from`), in cents.
    pub full_month_cents: i64,
    /// The live resources that expire between now and `full_from`: a part of a month each.
    pub expiring: Vec<Billed>,
    /// The accepted orders for new resources not provisioned yet, from the estimate each was
    /// accepted with.
    pub ordered_monthly: f64,
}

/// One statement whatever the team's size: two sums over indexed columns (migration
/// m20261201_000009) and the few resources expiring within a month (`full_from`, after which
/// an expiry no longer prorates), not every resource and open order of the team.
const TEAM_TOTALS: &str = "\
SELECT CAST(SUM(monthly_cost_cents) AS BIGINT) AS cents, \
       CAST(NULL AS TIMESTAMP WITH TIME ZONE) AS expires_at, \
       CAST(NULL AS TIMESTAMP WITH TIME ZONE) AS created_at, \
       CAST(NULL AS DOUBLE PRECISION) AS ordered \
  FROM resources WHERE owner = {team} AND deleted_at IS NULL \
   AND (expires_at IS NULL OR expires_at >= {full_from}) \
UNION ALL \
SELECT monthly_cost_cents, expires_at, created_at, NULL \
  FROM resources WHERE owner = {team} AND deleted_at IS NULL \
   AND expires_at > {now} AND expires_at < {full_from} \
UNION ALL \
SELECT NULL, NULL, NULL, CAST(SUM(estimate_monthly) AS DOUBLE PRECISION) \
  FROM requests WHERE owner = {team} AND operation = {create} \
   AND status IN ({open0}, {open1}, {open2})";

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
        ("{now}", now.into()),
        ("{full_from}", full_from.into()),
        ("{create}", Operation::Create.as_str().into()),
        ("{open0}", open0),
        ("{open1}", open1),
        ("{open2}", open2),
    ];
    // Each marker becomes the backend's next positional parameter, its value repeated.
    let (mut sql, mut values, mut rest) = (String::new(), Vec::new(), TEAM_TOTALS);
    while let Some(at) = rest.find('{') {
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
    let mut totals = TeamTotals::default();
    for row in db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
    {
        let cents: Option<i64> = row.try_get("", "cents")?;
        let expires_at: Option<DateTime<Utc>> = row.try_get("", "expires_at")?;
        match expires_at {
            Some(expires_at) => totals.expiring.push(Billed {
                monthly_cost_cents: cents,
                created_at: row.try_get("", "created_at")?,
                expires_at: Some(expires_at),
                deleted_at: None,
            }),
            None => {
                totals.full_month_cents += cents.unwrap_or(0);
                totals.ordered_monthly += row.try_get::<Option<f64>>("", "ordered")?.unwrap_or(0.0);
            }
        }
    }
    Ok(totals)
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
        assert_eq!(totals.expiring.len(), 1, "{:?}", totals.expiring);
        assert_eq!(totals.ordered_monthly, 42.75);
        let live = live_of_team(&t.db, TEAM_A).await.unwrap();
        assert_eq!(
            cost::current_monthly_from(totals.full_month_cents, &totals.expiring, now, hpm),
            cost::team_spend(TEAM_A, &live, "USD", hpm, now).current_monthly
        );
        let none = totals_of_team(&t.db, "group:default/nobody", now, now)
            .await
            .unwrap();
        assert_eq!(none, TeamTotals::default());
    }
}
