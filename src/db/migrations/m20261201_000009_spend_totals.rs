//! A team's spend and open orders summed by the database (issue 16): the estimate read every
//! live resource and every open order of the team to add them up in Rust, so its cost grew
//! with the team. Now:
//!
//! - `requests.estimate_monthly`: the monthly cost of the estimate an order was accepted with,
//!   a column generated from the stored `estimate` by the database itself, so every existing
//!   row has it and every insert writes it with no change to how requests are written;
//! - an index on requests by (owner, status): a team's open orders without its history;
//! - an index on resources by (owner, deleted_at, expires_at, monthly_cost_cents): a team's
//!   live resources without its deleted ones, and what they cost, from the index alone.
//!
//! (A migration that rebuilds `requests` with `INSERT … SELECT *` must leave the generated
//! column out: it cannot be written.)

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const REQUESTS_INDEX: &str = "idx_requests_owner_status";
const RESOURCES_INDEX: &str = "idx_resources_owner_live_cost";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let column = match m.get_database_backend() {
            // A stored column: PostgreSQL fills it for the rows already there.
            sea_orm::DatabaseBackend::Postgres => {
                "estimate_monthly double precision GENERATED ALWAYS AS \
                 (CASE WHEN json_typeof(estimate -> 'monthly') = 'number' \
                 THEN (estimate ->> 'monthly')::double precision END) STORED"
            }
            // SQLite adds only virtual generated columns: computed when read.
            _ => {
                "estimate_monthly REAL GENERATED ALWAYS AS \
                 (CASE WHEN json_valid(estimate) AND json_type(estimate, '$.monthly') IN ('integer', 'real') \
                 THEN json_extract(estimate, '$.monthly') END) VIRTUAL"
            }
        };
        db.execute_unprepared(&format!("ALTER TABLE requests ADD COLUMN {column}"))
            .await?;
        db.execute_unprepared(&format!(
            "CREATE INDEX {REQUESTS_INDEX} ON requests (owner, status)"
        ))
        .await?;
        db.execute_unprepared(&format!(
            "CREATE INDEX {RESOURCES_INDEX} ON resources \
             (owner, deleted_at, expires_at, monthly_cost_cents)"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for index in [RESOURCES_INDEX, REQUESTS_INDEX] {
            db.execute_unprepared(&format!("DROP INDEX {index}"))
                .await?;
        }
        db.execute_unprepared("ALTER TABLE requests DROP COLUMN estimate_monthly")
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
    use sea_orm_migration::MigratorTrait;

    use crate::db::Migrator;

    async fn values(db: &DatabaseConnection, sql: &str) -> Vec<Option<f64>> {
        db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index::<Option<f64>>(0).unwrap())
            .collect()
    }

    /// Rows stored before the migration get their `estimate_monthly`; the down migration takes
    /// the column away and keeps every row.
    async fn fills_existing_rows_and_keeps_them(db: &DatabaseConnection) {
        let before = Migrator::migrations()
            .iter()
            .position(|m| m.name() == "m20261201_000009_spend_totals")
            .unwrap();
        Migrator::up(db, Some(before as u32)).await.unwrap();
        for (id, estimate) in [
            ("a", "'{\"monthly\": 42.75, \"currency\": \"USD\"}'"),
            ("b", "'{\"monthly\": 12}'"),
            ("c", "NULL"),
        ] {
            db.execute_unprepared(&format!(
                "INSERT INTO requests (id, offering, template_version, operation, status, requester, owner, parameters, spec, created_at, updated_at, estimate) \
                 VALUES ('{id}', 'postgres-database', '1', 'create', 'pending', 'user:default/alice', 'group:default/team-a', '{{}}', NULL, '2026-11-24 10:00:00+00:00', '2026-11-24 10:00:00+00:00', {estimate})"
            ))
            .await
            .unwrap();
        }
        Migrator::up(db, None).await.unwrap();
        let q = "SELECT CAST(estimate_monthly AS DOUBLE PRECISION) FROM requests ORDER BY id";
        assert_eq!(values(db, q).await, [Some(42.75), Some(12.0), None]);
        // Down through this one, whatever came after it.
        let after = Migrator::migrations().len() - before;
        Migrator::down(db, Some(after as u32)).await.unwrap();
        let q = "SELECT CAST(COUNT(*) AS DOUBLE PRECISION) FROM requests";
        assert_eq!(values(db, q).await, [Some(3.0)]);
        let sql = "SELECT estimate_monthly FROM requests";
        let gone = db
            .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await;
        assert!(gone.is_err(), "the column is dropped");
    }

    #[tokio::test]
    async fn sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        fills_existing_rows_and_keeps_them(&Database::connect(url).await.unwrap()).await;
    }

    #[tokio::test]
    async fn postgres() {
        let scratch = crate::db::testdb::ScratchPostgres::create("paved_m9").await;
        let db = Database::connect(&scratch.url).await.unwrap();
        fills_existing_rows_and_keeps_them(&db).await;
        db.close().await.unwrap();
    }
}
