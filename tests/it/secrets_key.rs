//! `secrets.key` against what the database stores: a wrong or changed key stops start-up
//! (naming the key id the stored secrets need, never a key), rotation keeps old keys for
//! reading, and `paved secrets reseal` moves everything to the new key.

use crate::common;

use std::collections::BTreeSet;

use common::{Engine as DbEngine, Teardown, TestApp, TestDb, kit, settings};
use paved::{
    app::Application,
    config::Settings,
    db::entities::{secret, secret_key, signing_key},
    vocab::secret_box::SecretBox,
};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

fn key_id(key: &str) -> String {
    SecretBox::from_base64(key).unwrap().key_id().to_owned()
}

/// Every key id a sealed value (or a key-check row) in the database names.
async fn stored_key_ids(s: &Settings) -> BTreeSet<String> {
    let conn = paved::db::connect(&s.database).await.unwrap();
    let mut ids = BTreeSet::new();
    for r in secret::Entity::find().all(&conn).await.unwrap() {
        ids.insert(format!("secret:{}", r.key_id));
    }
    for r in signing_key::Entity::find().all(&conn).await.unwrap() {
        ids.insert(format!("signing:{}", r.key_id));
    }
    for r in secret_key::Entity::find().all(&conn).await.unwrap() {
        ids.insert(format!("check:{}", r.key_id));
    }
    conn.close().await.ok();
    ids
}

fn with_keys(base: &Settings, key: &str, previous: &[&str]) -> Settings {
    let mut s = base.clone();
    s.secrets.key = Some(key.into());
    s.secrets.previous_keys = previous.iter().map(|k| (*k).into()).collect();
    s
}

async fn credentials(app: &TestApp, rid: &str) -> (u16, Value) {
    let r = app
        .client
        .get(app.api(&format!("/resources/{rid}/credentials")))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// paved refuses to build; returns the error text.
async fn refused(s: Settings) -> String {
    match Application::build(s).await {
        Ok(_) => panic!("paved started with a key that does not fit the stored secrets"),
        Err(e) => format!("{e:#}"),
    }
}

async fn published_signing_key(app: &TestApp) {
    kit::eventually("a published signing key", || async {
        let jwks: Value = app
            .client
            .get(app.url("/api/paved/.backstage/auth/v1/jwks.json"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (!jwks["keys"].as_array()?.is_empty()).then_some(())
    })
    .await
}

async fn rotation(engine: DbEngine) {
    let db = TestDb::new(engine).await;
    let base = kit::with_workers(settings(&db.url), 1);
    let (a, b) = (SecretBox::generate_key(), SecretBox::generate_key());
    let (id_a, id_b) = (key_id(&a), key_id(&b));

    // Key A seals a resource's credentials and paved's signing key.
    let app = TestApp::spawn(with_keys(&base, &a, &[])).await;
    let id = kit::order(
        &app,
        "redis-cache",
        json!({"name": kit::unique(), "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone()],
    };
    let done = kit::wait_final(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let rid = done["resourceId"].as_str().unwrap().to_owned();
    let (status, original) = credentials(&app, &rid).await;
    assert_eq!(status, 200, "{original}");
    published_signing_key(&app).await;
    app.stop().await;
    let sealed_with_a: BTreeSet<String> = ["secret", "signing", "check"]
        .iter()
        .map(|k| format!("{k}:{id_a}"))
        .collect();
    assert_eq!(stored_key_ids(&base).await, sealed_with_a);

    // A different key: refused, naming the key the secrets need; no key in the message.
    let e = refused(with_keys(&base, &b, &[])).await;
    assert!(
        e.contains(&format!("the stored secrets need key {id_a}")),
        "{e}"
    );
    assert!(e.contains(&format!("secrets.key is {id_b}")), "{e}");
    assert!(!e.contains(&a) && !e.contains(&b), "a key leaked: {e}");
    assert_eq!(
        stored_key_ids(&base).await,
        sealed_with_a,
        "nothing was sealed with the wrong key"
    );

    // The right key after the wrong one reads everything.
    let app = TestApp::spawn(with_keys(&base, &a, &[])).await;
    assert_eq!(credentials(&app, &rid).await, (200, original.clone()));
    app.stop().await;

    // Rotation: the new key seals, the old one still reads.
    let app = TestApp::spawn(with_keys(&base, &b, &[&a])).await;
    assert_eq!(credentials(&app, &rid).await, (200, original.clone()));
    app.stop().await;
    assert!(
        stored_key_ids(&base)
            .await
            .contains(&format!("check:{id_b}"))
    );
    // Dropping the old key before re-sealing is refused.
    let e = refused(with_keys(&base, &b, &[])).await;
    assert!(e.contains(&id_a), "{e}");

    // `paved secrets reseal` moves every sealed value to the new key.
    let out = common::paved()
        .args(["secrets", "reseal"])
        .env("PAVED_DATABASE__URL", &db.url)
        .env("PAVED_SECRETS__KEY", &b)
        .env("PAVED_SECRETS__PREVIOUS_KEYS", format!("[{a}]"))
        .env("PAVED_LOG__LEVEL", "warn")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("re-sealed 2 credentials and 1 signing keys with secrets.key"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "no stored secret needs key {id_a} any more: remove it from secrets.previous_keys"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains(&a) && !stderr.contains(&a) && !stdout.contains(&b));
    let sealed_with_b: BTreeSet<String> = ["secret", "signing", "check"]
        .iter()
        .map(|k| format!("{k}:{id_b}"))
        .collect();
    assert_eq!(stored_key_ids(&base).await, sealed_with_b);

    // The old key can go; and now the old key alone is the wrong one.
    let app = TestApp::spawn(with_keys(&base, &b, &[])).await;
    assert_eq!(credentials(&app, &rid).await, (200, original.clone()));
    // paved's own signing key opened under the new key too: it still signs with it.
    published_signing_key(&app).await;
    app.stop().await;
    let e = refused(with_keys(&base, &a, &[])).await;
    assert!(
        e.contains(&format!("the stored secrets need key {id_b}")),
        "{e}"
    );
}

#[tokio::test]
async fn a_changed_secrets_key_is_refused_and_rotation_reseals_everything_sqlite() {
    rotation(DbEngine::Sqlite).await;
}

#[tokio::test]
async fn a_changed_secrets_key_is_refused_and_rotation_reseals_everything_postgres() {
    rotation(DbEngine::Postgres).await;
}

/// Even before any credential exists, the database remembers its key: an operator who
/// changes it by mistake finds out at once, not when the first secret fails to open.
#[tokio::test]
async fn the_database_remembers_its_key_before_anything_is_sealed() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut base = settings(&db.url);
    // A static token: paved makes no signing key, so nothing at all is sealed.
    base.backstage.token = Some("static-token-for-backstage".into());
    let (a, b) = (SecretBox::generate_key(), SecretBox::generate_key());
    let app = TestApp::spawn(with_keys(&base, &a, &[])).await;
    app.stop().await;
    assert_eq!(
        stored_key_ids(&base).await,
        BTreeSet::from([format!("check:{}", key_id(&a))])
    );
    let e = refused(with_keys(&base, &b, &[])).await;
    assert!(
        e.contains(&format!(
            "the stored secrets need key {} (recorded at an earlier start)",
            key_id(&a)
        )),
        "{e}"
    );
}

/// `paved serve` with the wrong key exits with the reason instead of answering 500s.
#[test]
fn paved_serve_with_the_wrong_key_exits_naming_the_key_it_needs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(DbEngine::Sqlite));
    let (a, b) = (SecretBox::generate_key(), SecretBox::generate_key());
    let serve = |key: &str| {
        let mut c = common::paved();
        c.arg("serve")
            .env("PAVED_SERVER__LISTEN", "127.0.0.1:0")
            .env("PAVED_DATABASE__URL", &db.url)
            .env("PAVED_SECRETS__KEY", key)
            .env("PAVED_ENGINE__WORKERS", "0")
            .env("PAVED_BACKSTAGE__TOKEN", "static-token-for-backstage");
        c
    };
    // First start records key A; `migrate` alone seals nothing, so start once and stop.
    let mut first = serve(&a)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let conn_settings = settings(&db.url);
    rt.block_on(kit::eventually("key A recorded", || async {
        let conn = paved::db::connect(&conn_settings.database).await.ok()?;
        let rows = secret_key::Entity::find().all(&conn).await.ok();
        conn.close().await.ok();
        (!rows?.is_empty()).then_some(())
    }));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    first.wait().unwrap();

    let out = serve(&b).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("the stored secrets need key {}", key_id(&a))),
        "{text}"
    );
    assert!(
        !text.contains(&a) && !text.contains(&b),
        "a key leaked: {text}"
    );
}

/// The database is not there when paved starts (so start-up cannot check the key); when it
/// appears, sealed with another key, paved stays unready, seals nothing, and stops naming the
/// key it needs.
#[tokio::test]
async fn a_wrong_key_found_after_start_stops_paved_before_anything_is_sealed() {
    use sea_orm::ConnectionTrait;
    let (a, b) = (SecretBox::generate_key(), SecretBox::generate_key());
    // A database sealed with key A, prepared under another name.
    let staging = TestDb::new(DbEngine::Postgres).await;
    let staging_name = staging.url.rsplit_once('/').unwrap().1.to_owned();
    {
        let mut s = settings(&staging.url);
        s.secrets.key = Some(a.clone().into());
        let conn = paved::db::connect(&s.database).await.unwrap();
        paved::db::migrate(&conn).await.unwrap();
        paved::app::check_secrets_key(&conn, &paved::app::secret_box(&s).unwrap())
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    // paved with key B on a database that does not exist yet.
    let live_name = format!("{staging_name}_live");
    let url = format!("{}/{live_name}", staging.url.rsplit_once('/').unwrap().0);
    let mut s = kit::with_workers(settings(&url), 1);
    s.secrets.key = Some(b.clone().into());
    let app = Application::build(s.clone())
        .await
        .expect("starts: the database is not there to check yet");
    let base = format!("http://{}", app.local_addr());
    let run = tokio::spawn(app.run_until(std::future::pending()));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let (status, body) = kit::eventually("paved answers", || async {
        let r = client
            .get(format!("{base}/.backstage/health/v1/readiness"))
            .send()
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    })
    .await;
    assert_eq!(status, 503, "{body}");

    // The database appears, all at once (a rename is atomic).
    let admin = sea_orm::Database::connect(common::postgres_admin_url())
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{staging_name}\" RENAME TO \"{live_name}\""
        ))
        .await
        .unwrap();

    let e = format!("{:#}", run.await.unwrap().expect_err("paved kept running"));
    assert!(
        e.contains(&format!("the stored secrets need key {}", key_id(&a))),
        "{e}"
    );
    assert!(!e.contains(&a) && !e.contains(&b), "a key leaked: {e}");
    assert_eq!(
        stored_key_ids(&settings(&url)).await,
        BTreeSet::from([format!("check:{}", key_id(&a))]),
        "nothing was sealed with key B"
    );
    // Back under its own name, so the test database is dropped as usual.
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{live_name}\" RENAME TO \"{staging_name}\""
        ))
        .await
        .unwrap();
    admin.close().await.ok();
}
