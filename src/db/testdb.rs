//! For unit tests of db/ and every layer above it (`usecases::testkit` builds on it): a
//! migrated SQLite file in a temporary directory, and a resource row.

use sea_orm::DatabaseConnection;

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

/// A ready resource of team-a in `environment`, named `db-<id>`, not stored yet.
pub fn resource_row(id: &str, environment: &str) -> resource::Model {
    let now = chrono::Utc::now();
    resource::Model {
        id: id.into(),
        entity_name: format!("db-{id}"),
        offering: "postgres-database".into(),
        offering_version: "1".into(),
        resource_type: "database".into(),
        environment: environment.into(),
        owner: TEAM_A.into(),
        system: None,
        component: None,
        status: crate::vocab::status::ResourceStatus::Ready,
        desired: serde_json::json!({}),
        outputs: serde_json::json!({}),
        monthly_cost_cents: None,
        expires_at: None,
        request_id: "00000000-0000-0000-0000-000000000000".into(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
        catalog_bucket: 0,
    }
}

/// A ready resource of team-a in `dev`, named `db-<id>`.
pub async fn resource(db: &DatabaseConnection, id: &str) -> resource::Model {
    super::resources::insert(db, resource_row(id, "dev"))
        .await
        .unwrap()
}

/// A PostgreSQL database of a test's own on the local server (`PAVED_TEST_POSTGRES_URL`),
/// dropped when the test ends, passed or failed: a failing migration test leaves nothing.
pub struct ScratchPostgres {
    pub url: String,
    admin_url: String,
    name: String,
}

impl ScratchPostgres {
    pub async fn create(prefix: &str) -> Self {
        use sea_orm::ConnectionTrait;
        let admin_url = std::env::var("PAVED_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        Self {
            url,
            admin_url,
            name,
        }
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        use sea_orm::ConnectionTrait;
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Its own runtime on its own thread: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = sea_orm::Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
