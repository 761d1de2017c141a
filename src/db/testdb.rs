//! For tests of db/ and the layers just above the use cases (which may not import
//! `usecases::testkit`): a migrated SQLite file in a temporary directory, and a resource row.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection};

use super::entities::resource;

pub const TEAM_A: &str = "group:default/team-a";

pub struct Db {
    pub db: DatabaseConnection,
    _dir: tempfile::TempDir,
}

pub async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let settings = crate::config::DatabaseSettings {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("paved.db").display()
        ),
        ..Default::default()
    };
    let db = super::connect(&settings).await.unwrap();
    super::migrate(&db).await.unwrap();
    Db { db, _dir: dir }
}

/// A ready resource of team-a in `dev`, named `db-<id>`.
pub async fn resource(db: &DatabaseConnection, id: &str) -> resource::Model {
    let now = chrono::Utc::now();
    resource::ActiveModel {
        id: Set(id.into()),
        entity_name: Set(format!("db-{id}")),
        offering: Set("postgres-database".into()),
        offering_version: Set("1".into()),
        resource_type: Set("database".into()),
        environment: Set("dev".into()),
        owner: Set(TEAM_A.into()),
        system: Set(None),
        component: Set(None),
        status: Set(crate::vocab::status::ResourceStatus::Ready),
        desired: Set(serde_json::json!({})),
        outputs: Set(serde_json::json!({})),
        monthly_cost_cents: Set(None),
        expires_at: Set(None),
        request_id: Set("00000000-0000-0000-0000-000000000000".into()),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
        catalog_bucket: Set(0),
    }
    .insert(db)
    .await
    .unwrap()
}
