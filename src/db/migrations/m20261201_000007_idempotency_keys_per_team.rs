//! Idempotency keys belong to the team that orders (issue 13): the same key from another team
//! is a different key. A global unique index made a second team's create answer 409 with the
//! first team's request id; the index becomes unique on (owner, idempotency_key).

use sea_orm::{ConnectionTrait, Statement};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "uq_requests_owner_idempotency_key";
/// What the initial migration's inline `UNIQUE` is called on PostgreSQL.
const PG_CONSTRAINT: &str = "requests_idempotency_key_key";
/// The column as the initial migration declared it on SQLite.
const SQLITE_GLOBAL: &str = "\"idempotency_key\" varchar NULL UNIQUE";
const SQLITE_SCOPED: &str = "\"idempotency_key\" varchar NULL";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                db.execute_unprepared(&format!(
                    "ALTER TABLE requests DROP CONSTRAINT {PG_CONSTRAINT}; \
                     CREATE UNIQUE INDEX {INDEX} ON requests (owner, idempotency_key)"
                ))
                .await?;
            }
            backend => {
                let sql = sqlite_rebuild(db, backend, SQLITE_GLOBAL, SQLITE_SCOPED).await?;
                db.execute_unprepared(&format!(
                    "{sql}; CREATE UNIQUE INDEX \"{INDEX}\" ON \"requests\" (\"owner\", \"idempotency_key\"); \
                     COMMIT; PRAGMA foreign_keys = ON"
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// SQLite's rebuild turns foreign keys off, which only works outside a transaction: it
    /// begins and commits its own.
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }

    /// Fails where two teams already share a key (the global index cannot hold them).
    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                db.execute_unprepared(&format!(
                    "DROP INDEX {INDEX}; \
                     ALTER TABLE requests ADD CONSTRAINT {PG_CONSTRAINT} UNIQUE (idempotency_key)"
                ))
                .await?;
            }
            backend => {
                let sql = sqlite_rebuild(db, backend, SQLITE_SCOPED, SQLITE_GLOBAL).await?;
                db.execute_unprepared(&format!("{sql}; COMMIT; PRAGMA foreign_keys = ON"))
                    .await?;
            }
        }
        Ok(())
    }
}

/// SQLite cannot drop a column's inline UNIQUE: the table is rebuilt with the column declared
/// `to` instead of `from` (SQLite's documented 12-step procedure), its other indexes and
/// triggers re-created, and the transaction left open for the caller's last statements.
///
/// Foreign keys are off meanwhile, because dropping the old table with them on would cascade
/// into request_steps, request_logs and approvals and delete them. The returned statements are
/// sent as one batch so that the pragma, the transaction and the rebuild share one pooled
/// connection.
async fn sqlite_rebuild(
    db: &sea_orm_migration::SchemaManagerConnection<'_>,
    backend: sea_orm::DatabaseBackend,
    from: &str,
    to: &str,
) -> Result<String, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT type, sql FROM sqlite_schema WHERE tbl_name = 'requests' AND sql IS NOT NULL",
        ))
        .await?;
    let mut table = None;
    let mut others = Vec::new();
    for row in rows {
        let kind: String = row.try_get("", "type")?;
        let sql: String = row.try_get("", "sql")?;
        match kind.as_str() {
            "table" => table = Some(sql),
            // The index this migration manages is re-created by the caller, or dropped.
            _ if sql.contains(INDEX) => {}
            _ => others.push(sql),
        }
    }
    let table = table.ok_or_else(|| DbErr::Migration("table requests not found".into()))?;
    if !table.contains(from) {
        return Err(DbErr::Migration(format!(
            "requests.idempotency_key is not declared as {from:?}: {table}"
        )));
    }
    let create = table.replacen(from, to, 1).replacen(
        "CREATE TABLE \"requests\"",
        "CREATE TABLE \"requests_new\"",
        1,
    );
    let mut sql = vec![
        "PRAGMA foreign_keys = OFF".to_owned(),
        "BEGIN IMMEDIATE".to_owned(),
        create,
        "INSERT INTO \"requests_new\" SELECT * FROM \"requests\"".to_owned(),
        "DROP TABLE \"requests\"".to_owned(),
        "ALTER TABLE \"requests_new\" RENAME TO \"requests\"".to_owned(),
    ];
    sql.extend(others);
    Ok(sql.join(";\n"))
}
