//! Schema migrations, applied in order at `serve` start and by `paved migrate`.

use sea_orm_migration::prelude::*;

mod m20261124_000001_initial;
mod m20261124_000002_request_decisions;
mod m20261124_000003_signing_keys_and_audit_teams;
mod m20261124_000004_day2;
mod m20261124_000005_catalog_pages;
mod m20261201_000006_secret_keys;
mod m20261201_000007_idempotency_keys_per_team;
mod m20261201_000008_notification_delivery_jobs;
mod m20261201_000009_spend_totals;
mod m20261202_000010_terraform_state;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_initial::Migration),
            Box::new(m20261124_000002_request_decisions::Migration),
            Box::new(m20261124_000003_signing_keys_and_audit_teams::Migration),
            Box::new(m20261124_000004_day2::Migration),
            Box::new(m20261124_000005_catalog_pages::Migration),
            Box::new(m20261201_000006_secret_keys::Migration),
            Box::new(m20261201_000007_idempotency_keys_per_team::Migration),
            Box::new(m20261201_000008_notification_delivery_jobs::Migration),
            Box::new(m20261201_000009_spend_totals::Migration),
            Box::new(m20261202_000010_terraform_state::Migration),
        ]
    }
}
