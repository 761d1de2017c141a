//! Terraform state kept by paved (its `http` backend): every version a run wrote, sealed with
//! the secrets key (a state holds the module's sensitive values); the lock of each resource's
//! part; and the runs allowed to talk to the backend, by the SHA-256 of a token per run.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(TerraformStates::Table)
                .col(string(TerraformStates::Id).primary_key())
                .col(string(TerraformStates::ResourceId))
                .col(string(TerraformStates::Part))
                // 1, 2, …: the history; the highest is the current state.
                .col(integer(TerraformStates::Version))
                // Terraform's own `serial` and `lineage`, readable without opening the state.
                .col(big_integer(TerraformStates::Serial))
                .col(string(TerraformStates::Lineage))
                .col(string(TerraformStates::KeyId))
                .col(blob(TerraformStates::Nonce))
                .col(blob(TerraformStates::Ciphertext))
                .col(string_null(TerraformStates::RequestId))
                .col(timestamp_with_time_zone(TerraformStates::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("terraform_states_version")
                .table(TerraformStates::Table)
                .col(TerraformStates::ResourceId)
                .col(TerraformStates::Part)
                .col(TerraformStates::Version)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(TerraformLocks::Table)
                // `<resource id>/<part>`: one lock per state.
                .col(string(TerraformLocks::State).primary_key())
                .col(string(TerraformLocks::LockId))
                // Terraform's lock info (ID, Operation, Who, Version, Created, Path), as sent.
                .col(text(TerraformLocks::Info))
                .col(string(TerraformLocks::RunId))
                .col(timestamp_with_time_zone(TerraformLocks::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(TerraformRuns::Table)
                .col(string(TerraformRuns::Id).primary_key())
                .col(string(TerraformRuns::ResourceId))
                .col(string(TerraformRuns::Part))
                .col(string(TerraformRuns::TokenSha256))
                .col(string_null(TerraformRuns::RequestId))
                // The job claim the run belongs to: the run lives as long as that claim's lease.
                .col(string_null(TerraformRuns::JobId))
                .col(integer_null(TerraformRuns::JobAttempt))
                .col(timestamp_with_time_zone(TerraformRuns::CreatedAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            TerraformRuns::Table.into_iden(),
            TerraformLocks::Table.into_iden(),
            TerraformStates::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum TerraformStates {
    Table,
    Id,
    ResourceId,
    Part,
    Version,
    Serial,
    Lineage,
    KeyId,
    Nonce,
    Ciphertext,
    RequestId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TerraformLocks {
    Table,
    State,
    LockId,
    Info,
    RunId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TerraformRuns {
    Table,
    Id,
    ResourceId,
    Part,
    TokenSha256,
    RequestId,
    JobId,
    JobAttempt,
    CreatedAt,
}
