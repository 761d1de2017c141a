//! Persistence: one schema on SQLite (embedded default) and PostgreSQL (production, replicas).
//!
//! The repositories (one module per aggregate: `requests`, `steps`, `request_logs`,
//! `resources`, `approvals`, `secrets`, `budgets`, `spend`) are the only place query
//! builders appear. They take any `ConnectionTrait`, so a caller passes its transaction when
//! a change and the job it causes must commit together, and return entity models or small
//! typed structs.

pub mod approvals;
pub mod budgets;
mod columns;
pub mod entities;
pub mod migrations;
pub mod request_logs;
pub mod requests;
pub mod resources;
pub mod secrets;
pub mod spend;
pub mod steps;
pub mod terraform;
// Day-2, reports, audit, catalog pages and signing keys.
pub mod audit;
pub mod catalog;
pub mod day2;
pub mod drift;
pub mod notices;
pub mod reports;
pub mod signing_keys;
#[cfg(test)]
pub mod testdb;
pub mod usage;
// The job system's and the notification outbox's tables.
pub mod jobs;
pub mod notifications;

use std::{future::Future, pin::Pin, time::Duration};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, SqlErr,
    Statement, TransactionError, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub use migrations::Migrator;

use crate::config::DatabaseSettings;

/// Opens the pool lazily: a database that is down at start keeps readiness at 503 (and is
/// retried) instead of stopping paved. SQLite gets WAL and a busy timeout so the API and
/// background work can share the file.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(settings.url.clone());
    opts.max_connections(settings.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .connect_lazy(true)
        .map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
        });
    Database::connect(opts).await
}

/// Applies every pending migration; returns how many ran. The only place paved creates
/// tables, sea-orm's bookkeeping table included.
pub async fn migrate(db: &DatabaseConnection) -> Result<usize, DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        // Replicas starting together on a new database: one migrates, the others wait for it
        // and find nothing pending (else their CREATE TABLEs collide). One transaction, so a
        // failed migration leaves the schema as it was.
        let txn = db.begin().await?;
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(7077001)")
            .await?;
        let pending = Migrator::get_pending_migrations_read_only(&txn)
            .await?
            .len();
        if pending > 0 {
            Migrator::up(&txn, None).await?;
        }
        txn.commit().await?;
        return Ok(pending);
    }
    // SQLite: the pending migrations in as few transactions as they allow (each of its own
    // becomes a savepoint), since every commit syncs the file: a fresh database takes three.
    let pending: Vec<String> = Migrator::get_pending_migrations_read_only(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let own_transaction = migrations::managing_their_own_transaction();
    let mut rest = pending.as_slice();
    while let Some(first) = rest.first() {
        if own_transaction.contains(first) {
            Migrator::up(db, Some(1)).await?;
            rest = &rest[1..];
            continue;
        }
        let run = rest
            .iter()
            .take_while(|m| !own_transaction.contains(m))
            .count();
        let txn = begin_write(db).await?;
        Migrator::up(&txn, Some(run as u32)).await?;
        txn.commit().await?;
        rest = &rest[run..];
    }
    Ok(pending.len())
}

/// True when every migration is recorded (readiness and everything waiting for the schema).
/// Reads the bookkeeping table only, a missing one meaning "not current": sea-orm's
/// `get_pending_migrations` creates that table, and doing so beside a running migration
/// collides with it on PostgreSQL (`pg_type_typname_nsp_index`).
pub async fn schema_is_current(db: &DatabaseConnection) -> Result<bool, DbErr> {
    Ok(Migrator::get_pending_migrations_read_only(db)
        .await?
        .is_empty())
}

/// Runs `body` in one transaction (a savepoint when `db` is itself a transaction): committed
/// when it returns `Ok`, rolled back otherwise. The error is the one that stopped it, whether
/// from `body` or from beginning or committing.
pub async fn transaction<C, T, F>(db: &C, body: F) -> Result<T, DbErr>
where
    C: TransactionTrait,
    T: Send,
    F: for<'c> FnOnce(
            &'c C::Transaction,
        ) -> Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 'c>>
        + Send,
{
    db.transaction(body).await.map_err(|e| match e {
        TransactionError::Connection(e) | TransactionError::Transaction(e) => e,
    })
}

/// Begins a transaction that reads before it writes. On SQLite it takes the write lock at
/// once (`BEGIN IMMEDIATE`): a deferred one that read first cannot wait for the lock when it
/// comes to write and fails with "database is locked" instead. PostgreSQL has row locks.
pub async fn begin_write(
    db: &sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// True when `e` is a unique index refusing a second row (a race another writer won).
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// True when the schema has `table` (false on a fresh database before its migrations).
pub async fn has_table<C: ConnectionTrait>(db: &C, table: &str) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT 1 AS x FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
        }
        _ => "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?",
    };
    Ok(db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await?
        .is_some())
}
