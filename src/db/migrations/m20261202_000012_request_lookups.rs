//! Two look-ups of requests that scanned the table:
//!
//! - a resource's requests, newest first (`GET /v1/requests?resource=…`, what a Resource's
//!   entity card shows as its last request): by (resource_id, id);
//! - the run times of an offering's recent succeeded requests (the expected completion a
//!   request's status shows): by (offering, operation, status, completed_at).

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: &[(&str, &str)] = &[
    ("idx_requests_resource", "requests (resource_id, id)"),
    (
        "idx_requests_offering_runs",
        "requests (offering, operation, status, completed_at)",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (name, on) in INDEXES {
            db.execute_unprepared(&format!("CREATE INDEX {name} ON {on}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (name, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX {name}")).await?;
        }
        Ok(())
    }
}
