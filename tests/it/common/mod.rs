//! Spawns the real app (in-process, random port) on SQLite or on a throwaway PostgreSQL
//! database, and talks HTTP to it.
#![allow(dead_code)]

pub mod admin;
pub mod fake_driver;
pub mod kit;
pub mod servers;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use paved::{app::Application, config::Settings};
use sea_orm::{ConnectionTrait, Database};
use tokio::{sync::oneshot, task::JoinHandle};

/// Where the tests' PostgreSQL lives; each test creates and drops its own database there.
pub fn postgres_admin_url() -> String {
    std::env::var("PAVED_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A database for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    engine: Engine,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("paved.db").display()
                );
                Self {
                    url,
                    engine,
                    name: String::new(),
                    _dir: Some(dir),
                }
            }
            Engine::Postgres => {
                let name = format!("paved_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(postgres_admin_url())
                    .await
                    .expect("PostgreSQL for tests must be running (PAVED_TEST_POSTGRES_URL)");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap();
                admin.close().await.ok();
                let base = postgres_admin_url();
                let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
                Self {
                    url,
                    engine,
                    name,
                    _dir: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.engine != Engine::Postgres {
            return;
        }
        let name = self.name.clone();
        // Drop runs outside any async context guarantee: use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = Database::connect(postgres_admin_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    admin.close().await.ok();
                }
            });
        })
        .join();
    }
}

pub fn settings(db_url: &str) -> Settings {
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.database.url = db_url.to_owned();
    s.database.max_connections = 5;
    s.templates.dir = repo_path("templates");
    s.policies.dir = repo_path("policies");
    s.cost.pricebook = repo_path("pricing.yaml");
    // One key per test database, so a test that restarts paved on it restarts with the same
    // key (paved refuses a key that does not open the stored secrets).
    s.secrets.key = Some(secrets_key_for(db_url).into());
    // Tests that provision turn workers on themselves, with names of their own.
    s.engine.workers = 0;
    s.templates.reload_interval_seconds = 0;
    s.policies.reload_interval_seconds = 0;
    s.server.shutdown_grace_seconds = 5;
    // Background schedules run where a test turns them on.
    s.ttl.reaper_interval_seconds = 0;
    s.drift.scan_interval_seconds = 0;
    s.unused.sample_interval_seconds = 0;
    s
}

/// A secrets key derived from the test database's URL (unique per test database).
pub fn secrets_key_for(db_url: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(db_url.as_bytes()))
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    jobs: std::sync::Arc<paved::jobs::Runner>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts paved with `settings`; waits until it is ready when migrations run at start.
    pub async fn spawn(settings: Settings) -> Self {
        Self::spawn_with_clock(settings, paved::vocab::clock::Clock::system()).await
    }

    /// As `spawn`, reading time from `clock` (a fixed one makes cost figures exact).
    pub async fn spawn_with_clock(
        mut settings: Settings,
        clock: paved::vocab::clock::Clock,
    ) -> Self {
        // The test's own eyes: `get_json` reads as a platform-admin that takes no part in the
        // test, so a test sees every request whoever placed it.
        settings.auth.static_tokens.push(static_token(
            "test-observer",
            OBSERVER_TOKEN,
            &["platform-admin"],
            &[],
        ));
        let wait_ready = settings.database.migrate_on_start;
        let app = Application::build_with_clock(settings, clock)
            .await
            .expect("app builds");
        let base = format!("http://{}", app.local_addr());
        let jobs = app.job_runner();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        // reqwest is built without a default TLS provider (as in the app): install ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let me = Self {
            base,
            client: reqwest::Client::new(),
            jobs,
            stop: Some(tx),
            task: Some(task),
        };
        if wait_ready {
            me.wait_ready().await;
        }
        me
    }

    /// Runs every job that is due now, one after the other, in this test: with
    /// `engine.workers: 0` (the tests' default) nothing runs in the background, so what a
    /// test sees next is what those jobs did, without polling. Returns how many ran.
    pub async fn run_pending_jobs(&self) -> usize {
        self.jobs
            .run_pending("test-runner")
            .await
            .expect("the job table answers")
            .len()
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self
                .client
                .get(self.url("/.backstage/health/v1/readiness"))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("paved did not become ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/paved/v1{path}", self.base)
    }

    /// GET as the test's observer (a platform-admin of its own).
    /// GET as the observer (sees every team); an error comes in Backstage's envelope.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        self.as_(OBSERVER_TOKEN).get(path).await.pair()
    }

    /// POST without a token; an error comes in Backstage's envelope.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.anonymous().post(path, body).await.pair()
    }

    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Values that pass the postgres-database form.
pub fn postgres_values(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "environment": "dev",
        "size": "small",
        "owner": "group:default/team-a",
        "cost_center": "ENG-1234"
    })
}

/// Asserts Backstage's error envelope and returns `error.message`.
pub fn assert_envelope(
    body: &serde_json::Value,
    status: u16,
    name: &str,
    method: &str,
    url: &str,
) -> String {
    assert_eq!(body["error"]["name"], name, "{body}");
    assert_eq!(body["response"]["statusCode"], status, "{body}");
    assert_eq!(body["request"]["method"], method, "{body}");
    assert_eq!(body["request"]["url"], url, "{body}");
    let msg = body["error"]["message"]
        .as_str()
        .expect("message is a string")
        .to_owned();
    assert!(!msg.is_empty());
    msg
}

/// What paved's configuration holds for a token: its SHA-256, lower-case hex.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A static token for `subject` whose secret is `secret` (only its SHA-256 is configured).
/// The token `TestApp::get_json` reads with (added to every spawned app's settings).
pub const OBSERVER_TOKEN: &str = "test-observer-token";

use paved::vocab::entity_ref::EntityRef;

pub fn static_token(
    subject: &str,
    secret: &str,
    roles: &[&str],
    groups: &[&str],
) -> paved::config::StaticToken {
    paved::config::StaticToken {
        subject: EntityRef::parse(subject, "user").expect("a user ref"),
        sha256: sha256_hex(secret),
        roles: roles.iter().map(|r| r.parse().expect("a role")).collect(),
        groups: groups
            .iter()
            .map(|g| EntityRef::parse(g, "group").expect("a group ref"))
            .collect(),
    }
}

/// Destroys what the engine created for some requests, whatever the test's outcome (reading
/// the resources and their ownership tags from the test's database, which outlives this).
pub struct Teardown {
    pub db_url: String,
    /// Whose resources to destroy; empty: every request's in the test's database.
    pub requests: Vec<String>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let (url, ids) = (self.db_url.clone(), std::mem::take(&mut self.requests));
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use paved::db::entities::request;
                    use sea_orm::EntityTrait;
                    let mut db = Settings::default().database;
                    db.url = url;
                    let Ok(conn) = paved::db::connect(&db).await else {
                        return;
                    };
                    let drivers = paved::provisioning::drivers::Drivers::from_settings(
                        &Settings::default().drivers,
                    );
                    let all = request::Entity::find().all(&conn).await.unwrap_or_default();
                    for r in all
                        .into_iter()
                        .filter(|r| ids.is_empty() || ids.contains(&r.id))
                    {
                        let Some(rid) = r.resource_id else { continue };
                        let parts = r
                            .spec
                            .as_ref()
                            .and_then(|s| s.get("parts"))
                            .and_then(serde_json::Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        for p in parts {
                            if let Ok(spec) =
                                drivers.parse(p["driver"].as_str().unwrap_or(""), &p["spec"])
                            {
                                drivers
                                    .destroy(&spec, &paved::provisioning::engine::owner_tag(&rid))
                                    .await
                                    .ok();
                            }
                        }
                    }
                    conn.close().await.ok();
                });
            });
        });
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A database for one test with paved's schema applied, and a connection to it.
pub async fn migrated(engine: Engine) -> (TestDb, sea_orm::DatabaseConnection) {
    let db = TestDb::new(engine).await;
    let mut settings = Settings::default().database;
    settings.url = db.url.clone();
    let conn = paved::db::connect(&settings).await.unwrap();
    paved::db::migrate(&conn).await.unwrap();
    (db, conn)
}

/// The `paved` binary, run from the checkout with a clean slate: no `PAVED_*` or `RUST_LOG`
/// from the developer's shell leaks into a test.
pub fn paved() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_paved"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PAVED_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}
