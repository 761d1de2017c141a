//! Which `secrets.key`s the database's sealed values need: one row per key, holding a value
//! sealed with it. Start-up refuses a key that cannot open it, even while no credential or
//! signing key is stored yet, and `paved secrets reseal` removes a key's row once nothing
//! sealed with it is left.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SecretKeys::Table)
                // The key's fingerprint (`SecretBox::key_id`), never the key.
                .col(string(SecretKeys::KeyId).primary_key())
                .col(blob(SecretKeys::Nonce))
                .col(blob(SecretKeys::Ciphertext))
                .col(timestamp_with_time_zone(SecretKeys::CreatedAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SecretKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SecretKeys {
    Table,
    KeyId,
    Nonce,
    Ciphertext,
    CreatedAt,
}
