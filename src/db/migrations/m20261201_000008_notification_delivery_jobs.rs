//! Notification delivery becomes a job (`deliver-notification`) of the one job system: the
//! outbox keeps what is said and how delivery went, the job carries the attempts, the lease and
//! the next attempt's time. Every row still waiting (queued, or being sent when the old sender
//! stopped) gets its job, due when its next attempt was, with the attempts it already had; the
//! outbox's own scheduling columns (`next_attempt_at`, `locked_until`) and their index go.
//! Every outbox row stays.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `notifications.max_attempts`' default; a row past it keeps one more attempt.
const MAX_ATTEMPTS: i32 = 8;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let payload = match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => "json_build_object('notification', id)",
            _ => "json_object('notification', id)",
        };
        db.execute_unprepared(&format!(
            "INSERT INTO jobs (id, kind, request_id, payload, status, run_at, attempts, \
             max_attempts, locked_by, locked_until, last_error, created_at, updated_at) \
             SELECT 'deliver-notification:' || id, 'deliver-notification', id, {payload}, \
             'queued', next_attempt_at, attempts, \
             CASE WHEN attempts >= {MAX_ATTEMPTS} THEN attempts + 1 ELSE {MAX_ATTEMPTS} END, \
             NULL, NULL, last_error, created_at, created_at \
             FROM notifications WHERE status IN ('queued', 'sending')"
        ))
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_notifications_due")
            .await?;
        for column in ["next_attempt_at", "locked_until"] {
            db.execute_unprepared(&format!("ALTER TABLE notifications DROP COLUMN {column}"))
                .await?;
        }
        Ok(())
    }

    /// The scheduling columns come back (due now, unclaimed) and the delivery jobs go.
    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        m.alter_table(
            Table::alter()
                .table(Notifications::Table)
                .add_column(
                    ColumnDef::new(Notifications::NextAttemptAt)
                        .timestamp_with_time_zone()
                        .not_null()
                        // A constant (SQLite adds no column with another); set just below.
                        .default("1970-01-01 00:00:00+00:00"),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Notifications::Table)
                .add_column(
                    ColumnDef::new(Notifications::LockedUntil)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        db.execute_unprepared(
            "UPDATE notifications SET next_attempt_at = created_at, \
             status = CASE WHEN status = 'sending' THEN 'queued' ELSE status END",
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_notifications_due")
                .table(Notifications::Table)
                .col(Notifications::Status)
                .col(Notifications::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        db.execute_unprepared("DELETE FROM jobs WHERE kind = 'deliver-notification'")
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Notifications {
    Table,
    Status,
    NextAttemptAt,
    LockedUntil,
}
