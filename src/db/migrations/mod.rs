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
mod m20261202_000011_catalog_feed;
mod m20261202_000012_request_lookups;

pub struct Migrator;

/// Runs a migration in a transaction on SQLite too (sea-orm's default there is none): each of
/// its statements would otherwise commit, and sync the file, on its own: 71 syncs for a fresh
/// database, most of paved's time to readiness. `db::migrate` puts consecutive ones in one
/// transaction. A migration that manages its own transaction says so with
/// `use_transaction() = Some(false)`.
struct InTransaction(Box<dyn MigrationTrait>);

impl MigrationName for InTransaction {
    fn name(&self) -> &str {
        self.0.name()
    }
}

#[async_trait::async_trait]
impl MigrationTrait for InTransaction {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        self.0.up(m).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        self.0.down(m).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(self.0.use_transaction().unwrap_or(true))
    }
}

/// The names of the migrations that begin and commit their own transaction.
pub(crate) fn managing_their_own_transaction() -> Vec<String> {
    Migrator::migrations()
        .into_iter()
        .filter(|m| m.use_transaction() == Some(false))
        .map(|m| m.name().to_owned())
        .collect()
}

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let all: Vec<Box<dyn MigrationTrait>> = vec![
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
            Box::new(m20261202_000011_catalog_feed::Migration),
            Box::new(m20261202_000012_request_lookups::Migration),
        ];
        all.into_iter()
            .map(|m| Box::new(InTransaction(m)) as Box<dyn MigrationTrait>)
            .collect()
    }
}
