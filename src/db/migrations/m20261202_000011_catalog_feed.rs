//! The catalog change feed (issue 18): `catalog_feed` holds one row per resource ever made,
//! at the position of its latest change, so Backstage's entity provider asks "what changed
//! after position p" and gets each changed resource once, in its current state. Positions live
//! in the database, so they hold across restarts and replicas.
//!
//! Rows are written by triggers, in the transaction of the change itself: on every insert and
//! update of `resources` and whenever a resource's drift status changes (it is an annotation),
//! so no writer of those tables can forget the feed and a rolled-back change leaves none.
//!
//! A position is `(txid, seq)`. On SQLite one writer at a time commits, so `seq`
//! (`MAX(seq) + 1` under the write lock) grows in commit order and `txid` is 0. On PostgreSQL
//! a sequence value is taken before the commit, so a later value can commit first; the row
//! also records its transaction id and the feed only answers rows whose transaction is older
//! than every transaction still running (`pg_snapshot_xmin`), in `(txid, seq)` order: a row
//! not yet visible always sorts after every row already answered.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    "CREATE SEQUENCE catalog_feed_seq",
    "CREATE TABLE catalog_feed (\
       resource_id text PRIMARY KEY, \
       txid bigint NOT NULL, \
       seq bigint NOT NULL)",
    "CREATE INDEX idx_catalog_feed_position ON catalog_feed (txid, seq)",
    // The key column is the trigger's argument: one function for both tables.
    "CREATE FUNCTION catalog_feed_touch() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
       INSERT INTO catalog_feed (resource_id, txid, seq) \
       VALUES (to_jsonb(NEW) ->> TG_ARGV[0], pg_current_xact_id()::text::bigint, \
               nextval('catalog_feed_seq')) \
       ON CONFLICT (resource_id) DO UPDATE SET txid = EXCLUDED.txid, seq = EXCLUDED.seq; \
       RETURN NULL; \
     END $$",
    "CREATE TRIGGER catalog_feed_resources AFTER INSERT OR UPDATE ON resources \
     FOR EACH ROW EXECUTE FUNCTION catalog_feed_touch('id')",
    "CREATE TRIGGER catalog_feed_drift_insert AFTER INSERT ON drift_states \
     FOR EACH ROW EXECUTE FUNCTION catalog_feed_touch('resource_id')",
    // A drift scan rewrites `checked_at` every round; only a new status changes the entity.
    "CREATE TRIGGER catalog_feed_drift_update AFTER UPDATE ON drift_states \
     FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) \
     EXECUTE FUNCTION catalog_feed_touch('resource_id')",
    // What exists already, oldest change first.
    "INSERT INTO catalog_feed (resource_id, txid, seq) \
     SELECT id, pg_current_xact_id()::text::bigint, nextval('catalog_feed_seq') \
     FROM (SELECT id FROM resources ORDER BY updated_at, id) r",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER catalog_feed_drift_update ON drift_states",
    "DROP TRIGGER catalog_feed_drift_insert ON drift_states",
    "DROP TRIGGER catalog_feed_resources ON resources",
    "DROP FUNCTION catalog_feed_touch()",
    "DROP TABLE catalog_feed",
    "DROP SEQUENCE catalog_feed_seq",
];

/// One upsert at the next position, for the resource `key` names (SQLite trigger body).
fn sqlite_touch(key: &str) -> String {
    format!(
        "INSERT INTO catalog_feed (resource_id, txid, seq) \
         VALUES ({key}, 0, (SELECT COALESCE(MAX(seq), 0) + 1 FROM catalog_feed WHERE txid = 0)) \
         ON CONFLICT (resource_id) DO UPDATE SET seq = excluded.seq;"
    )
}

fn sqlite_up() -> Vec<String> {
    vec![
        "CREATE TABLE catalog_feed (\
           resource_id TEXT NOT NULL PRIMARY KEY, \
           txid INTEGER NOT NULL, \
           seq INTEGER NOT NULL)"
            .into(),
        "CREATE INDEX idx_catalog_feed_position ON catalog_feed (txid, seq)".into(),
        format!(
            "CREATE TRIGGER catalog_feed_resources_insert AFTER INSERT ON resources \
             BEGIN {} END",
            sqlite_touch("NEW.id")
        ),
        format!(
            "CREATE TRIGGER catalog_feed_resources_update AFTER UPDATE ON resources \
             BEGIN {} END",
            sqlite_touch("NEW.id")
        ),
        format!(
            "CREATE TRIGGER catalog_feed_drift_insert AFTER INSERT ON drift_states \
             BEGIN {} END",
            sqlite_touch("NEW.resource_id")
        ),
        format!(
            "CREATE TRIGGER catalog_feed_drift_update AFTER UPDATE ON drift_states \
             WHEN OLD.status IS NOT NEW.status BEGIN {} END",
            sqlite_touch("NEW.resource_id")
        ),
        "INSERT INTO catalog_feed (resource_id, txid, seq) \
         SELECT id, 0, ROW_NUMBER() OVER (ORDER BY updated_at, id) FROM resources"
            .into(),
    ]
}

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER catalog_feed_drift_update",
    "DROP TRIGGER catalog_feed_drift_insert",
    "DROP TRIGGER catalog_feed_resources_update",
    "DROP TRIGGER catalog_feed_resources_insert",
    "DROP TABLE catalog_feed",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let statements: Vec<String> = match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                POSTGRES_UP.iter().map(|s| (*s).to_owned()).collect()
            }
            _ => sqlite_up(),
        };
        for s in statements {
            db.execute_unprepared(&s).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let statements = match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => POSTGRES_DOWN,
            _ => SQLITE_DOWN,
        };
        for s in statements {
            db.execute_unprepared(s).await?;
        }
        Ok(())
    }
}
