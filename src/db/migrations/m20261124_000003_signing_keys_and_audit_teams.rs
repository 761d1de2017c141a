//! Paved's own signing keys (for the plugin tokens it sends to Backstage), the team each audit
//! event concerns (so developers can be shown their teams' trail only), and triggers that make
//! the audit trail append-only in the database itself, not just in the API.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // The first migration reserved a `signing_keys` table that nothing ever wrote to; this
        // one replaces it with the shape the signer needs (the private key sealed, not raw).
        m.drop_table(Table::drop().table(SigningKeys::Table).to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table(SigningKeys::Table)
                .col(string(SigningKeys::Kid).primary_key())
                // The PKCS#8 private key, sealed with `secrets.key` like every credential.
                .col(string(SigningKeys::KeyId))
                .col(blob(SigningKeys::Nonce))
                .col(blob(SigningKeys::Ciphertext))
                .col(json(SigningKeys::PublicJwk))
                .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
                // Published in the JWKS until then, so tokens signed just before a rotation
                // still verify.
                .col(timestamp_with_time_zone(SigningKeys::RetireAt))
                .to_owned(),
        )
        .await?;

        m.alter_table(
            Table::alter()
                .table(AuditEvents::Table)
                .add_column(string_null(AuditEvents::Team))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_audit_team")
                .table(AuditEvents::Table)
                .col(AuditEvents::Team)
                .col(AuditEvents::At)
                .to_owned(),
        )
        .await?;

        let db = m.get_connection();
        match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE FUNCTION paved_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'audit events are append-only'; END $$;
                     CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
                     FOR EACH ROW EXECUTE FUNCTION paved_audit_append_only();",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared(
                    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
                     BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
                     BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    "DROP TRIGGER audit_events_append_only ON audit_events;
                     DROP FUNCTION paved_audit_append_only();",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared("DROP TRIGGER audit_events_no_update")
                    .await?;
                db.execute_unprepared("DROP TRIGGER audit_events_no_delete")
                    .await?;
            }
        }
        m.drop_index(
            Index::drop()
                .name("idx_audit_team")
                .table(AuditEvents::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(AuditEvents::Table)
                .drop_column(AuditEvents::Team)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(SigningKeys::Table).to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table(SigningKeys::Table)
                .col(string(SigningKeys::Kid).primary_key())
                .col(string(SigningKeys::Algorithm))
                .col(blob(SigningKeys::PrivateKey))
                .col(json(SigningKeys::PublicJwk))
                .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
                .col(timestamp_with_time_zone(SigningKeys::ExpiresAt))
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    KeyId,
    Nonce,
    Ciphertext,
    PublicJwk,
    CreatedAt,
    RetireAt,
    // The first migration's columns, for `down`.
    Algorithm,
    PrivateKey,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Team,
    At,
}
