//! Requests keep the guardrails' verdict: the cost estimate and the policy decision they were
//! created with, so what was decided stays readable after prices or policies change.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table(Requests::Table)
                .add_column(json_null(Requests::Estimate))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Requests::Table)
                .add_column(json_null(Requests::Decision))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Requests::Table)
                .drop_column(Requests::Decision)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Requests::Table)
                .drop_column(Requests::Estimate)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum Requests {
    Table,
    Estimate,
    Decision,
}
