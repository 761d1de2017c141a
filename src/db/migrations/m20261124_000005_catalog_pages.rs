//! Paging of the catalog document (`catalog::pages`): each resource's hash bucket, stored so a
//! page is an index range scan, and an index on `updated_at` so each process finds the
//! resources changed since it last built its pages without reading every row.

use sea_orm::{ConnectionTrait, Statement};
use sea_orm_migration::{prelude::*, schema::*};

use sha2::{Digest, Sha256};

// Frozen copies of `vocab::bucket` as it was when this migration was written: a migration
// that follows live code would change history when the code changes.
const POSTGRES_BUCKET_SQL: &str = "(((get_byte(sha256(convert_to(id, 'UTF8')), 0) & 15) << 8) \
     | get_byte(sha256(convert_to(id, 'UTF8')), 1))";

fn bucket_of(resource_id: &str) -> i32 {
    let d = Sha256::digest(resource_id.as_bytes());
    (((u32::from(d[0]) & 0x0f) << 8) | u32::from(d[1])) as i32
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Resources::Table)
                .add_column(integer(Resources::CatalogBucket).default(0))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                db.execute_unprepared(&format!(
                    "UPDATE resources SET catalog_bucket = {POSTGRES_BUCKET_SQL}"
                ))
                .await?;
            }
            backend => {
                // SQLite has no sha256: compute in Rust, one statement per bucket in use.
                let rows = db
                    .query_all_raw(Statement::from_string(backend, "SELECT id FROM resources"))
                    .await?;
                let mut by_bucket: std::collections::BTreeMap<i32, Vec<String>> =
                    Default::default();
                for row in rows {
                    let id: String = row.try_get("", "id")?;
                    by_bucket.entry(bucket_of(&id)).or_default().push(id);
                }
                for (bucket, ids) in by_bucket {
                    for chunk in ids.chunks(500) {
                        let q = Query::update()
                            .table(Resources::Table)
                            .value(Resources::CatalogBucket, bucket)
                            .and_where(Expr::col(Resources::Id).is_in(chunk.iter().cloned()))
                            .to_owned();
                        m.exec_stmt(q).await?;
                    }
                }
            }
        }
        m.create_index(
            Index::create()
                .name("idx_resources_updated_at")
                .table(Resources::Table)
                .col(Resources::UpdatedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_resources_catalog_bucket")
                .table(Resources::Table)
                .col(Resources::CatalogBucket)
                .col(Resources::Id)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for name in ["idx_resources_catalog_bucket", "idx_resources_updated_at"] {
            m.drop_index(Index::drop().name(name).table(Resources::Table).to_owned())
                .await?;
        }
        m.alter_table(
            Table::alter()
                .table(Resources::Table)
                .drop_column(Resources::CatalogBucket)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum Resources {
    Table,
    Id,
    UpdatedAt,
    CatalogBucket,
}

#[cfg(test)]
mod tests {
    /// Stored buckets were computed by this copy: the live function must still agree, or
    /// pages would lose the resources whose rows say otherwise.
    #[test]
    fn the_frozen_bucket_function_agrees_with_the_live_one() {
        for id in [
            "",
            "a",
            "0193-resource",
            "ffffffff-ffff-7fff-bfff-ffffffffffff",
        ] {
            assert_eq!(
                super::bucket_of(id),
                crate::vocab::bucket::bucket_of(id),
                "{id}"
            );
        }
        assert_eq!(
            super::POSTGRES_BUCKET_SQL,
            crate::vocab::bucket::POSTGRES_BUCKET_SQL
        );
    }
}
