//! Bad input and tenant boundaries at the edge of the API (issue 13): idempotency keys are the
//! ordering team's, input PostgreSQL cannot store is refused naming the field, `/metrics` is
//! for the scraper only.

mod common;

use common::{Engine, TestApp, TestDb, kit::call, settings};
use serde_json::{Value, json};

fn cache(name: &str, owner: &str) -> Value {
    json!({"name": name, "environment": "dev", "size": "small", "owner": owner, "cost_center": "ENG-1234"})
}

async fn create(app: &TestApp, token: &str, values: Value, key: &str) -> (u16, Value) {
    call(
        app,
        "POST",
        "/requests",
        Some(token),
        Some(json!({"offering": "redis-cache", "values": values, "idempotencyKey": key})),
    )
    .await
}

/// Another team's idempotency key is simply a different key: no 409, no request id, nothing
/// of the other team's order; within a team the key keeps making retries safe.
async fn idempotency_keys_are_the_teams(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::spawn(common::kit::with_workers(settings(&db.url), 0)).await;
    let key = "task-0b7e";
    let (status, a) = create(&app, "alice-token", cache("orders", "team-a"), key).await;
    assert_eq!(status, 201, "{a}");
    let a_id = a["id"].as_str().unwrap();

    let (status, b) = create(&app, "mallory-token", cache("ledger", "team-b"), key).await;
    assert_eq!(status, 201, "another team's key is a new order: {b}");
    let b_id = b["id"].as_str().unwrap();
    assert_ne!(a_id, b_id);
    assert!(!b.to_string().contains(a_id), "{b}");
    assert_eq!(b["owner"], "group:default/team-b");

    // Retries answer each team with its own request.
    let (status, again) = create(&app, "mallory-token", cache("ledger", "team-b"), key).await;
    assert_eq!((status, again["id"].as_str()), (200, Some(b_id)), "{again}");
    let (status, again) = create(&app, "alice-token", cache("orders", "team-a"), key).await;
    assert_eq!((status, again["id"].as_str()), (200, Some(a_id)), "{again}");
    // Reusing one's own key for something else still conflicts, naming one's own request.
    let (status, conflict) = create(&app, "alice-token", cache("other", "team-a"), key).await;
    assert_eq!(status, 409, "{conflict}");
    let msg = conflict["error"]["message"].as_str().unwrap();
    assert!(msg.contains(a_id) && !msg.contains(b_id), "{msg}");
    app.stop().await;
}

#[tokio::test]
async fn idempotency_keys_are_the_teams_sqlite() {
    idempotency_keys_are_the_teams(Engine::Sqlite).await;
}

#[tokio::test]
async fn idempotency_keys_are_the_teams_postgres() {
    idempotency_keys_are_the_teams(Engine::Postgres).await;
}

/// The migration that scopes keys to teams keeps every request and everything hanging off it
/// (SQLite rebuilds the table: with foreign keys on, dropping it would cascade into the steps,
/// logs and approvals), and its down migration restores the global index.
async fn key_scope_migration_keeps_data(engine: Engine) {
    use paved::db::{
        Migrator,
        entities::{approval, request, request_log, request_step},
    };
    use sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait};
    use sea_orm_migration::MigratorTrait;

    let db = TestDb::new(engine).await;
    let conn = common::kit::db_of(&db.url).await;
    // The migrations before this one, and this one with any added after it.
    let all: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let before = all
        .iter()
        .position(|n| n == "m20261201_000001_idempotency_keys_per_team")
        .unwrap();
    let from_this = (all.len() - before) as u32;
    Migrator::up(&conn, Some(before as u32)).await.unwrap();
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 30, 12, 0, 0).unwrap();
    let row = |id: &str, owner: &str, key: &str| request::ActiveModel {
        id: Set(id.into()),
        offering: Set("redis-cache".into()),
        template_version: Set("1".into()),
        operation: Set("create".into()),
        status: Set("awaiting_approval".into()),
        requester: Set("user:default/alice".into()),
        owner: Set(owner.into()),
        idempotency_key: Set(Some(key.into())),
        parameters: Set(json!({"name": id})),
        spec: Set(None),
        resource_id: Set(None),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        completed_at: Set(None),
        estimate: Set(None),
        decision: Set(None),
    };
    request::Entity::insert(row("r1", "group:default/team-a", "k1"))
        .exec(&conn)
        .await
        .unwrap();
    assert!(
        request::Entity::insert(row("r2", "group:default/team-b", "k1"))
            .exec(&conn)
            .await
            .is_err(),
        "before the migration keys are global"
    );
    request_step::Entity::insert(request_step::ActiveModel {
        request_id: Set("r1".into()),
        position: Set(0),
        name: Set("validate".into()),
        status: Set("succeeded".into()),
        attempts: Set(1),
        ..Default::default()
    })
    .exec(&conn)
    .await
    .unwrap();
    request_log::Entity::insert(request_log::ActiveModel {
        request_id: Set("r1".into()),
        step: Set(Some("validate".into())),
        level: Set("info".into()),
        message: Set("checked".into()),
        at: Set(now),
        ..Default::default()
    })
    .exec(&conn)
    .await
    .unwrap();
    approval::Entity::insert(approval::ActiveModel {
        id: Set("a1".into()),
        request_id: Set("r1".into()),
        required_role: Set("lead".into()),
        reason: Set("over budget".into()),
        status: Set("pending".into()),
        decided_by: Set(None),
        decision_reason: Set(None),
        decided_at: Set(None),
        created_at: Set(now),
    })
    .exec(&conn)
    .await
    .unwrap();

    Migrator::up(&conn, None).await.unwrap();
    let counts = async || {
        (
            request::Entity::find().count(&conn).await.unwrap(),
            request_step::Entity::find().count(&conn).await.unwrap(),
            request_log::Entity::find().count(&conn).await.unwrap(),
            approval::Entity::find().count(&conn).await.unwrap(),
        )
    };
    assert_eq!(counts().await, (1, 1, 1, 1), "nothing lost");
    request::Entity::insert(row("r2", "group:default/team-b", "k1"))
        .exec(&conn)
        .await
        .expect("another team may use the same key");
    assert!(
        request::Entity::insert(row("r3", "group:default/team-a", "k1"))
            .exec(&conn)
            .await
            .is_err(),
        "a key stays unique within its team"
    );
    // Foreign keys still hold after the rebuild: a step of a missing request is refused.
    assert!(
        request_step::Entity::insert(request_step::ActiveModel {
            request_id: Set("missing".into()),
            position: Set(0),
            name: Set("validate".into()),
            status: Set("pending".into()),
            attempts: Set(0),
            ..Default::default()
        })
        .exec(&conn)
        .await
        .is_err()
    );

    request::Entity::delete_by_id("r2")
        .exec(&conn)
        .await
        .unwrap();
    Migrator::down(&conn, Some(from_this)).await.unwrap();
    assert_eq!(counts().await, (1, 1, 1, 1), "nothing lost going back");
    assert!(
        request::Entity::insert(row("r2", "group:default/team-b", "k1"))
            .exec(&conn)
            .await
            .is_err(),
        "down restores the global key"
    );
    Migrator::up(&conn, None).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn key_scope_migration_keeps_data_sqlite() {
    key_scope_migration_keeps_data(Engine::Sqlite).await;
}

#[tokio::test]
async fn key_scope_migration_keeps_data_postgres() {
    key_scope_migration_keeps_data(Engine::Postgres).await;
}

/// `/metrics` carries every team's monthly costs: the scrape token and platform-admins read
/// it; nobody else learns anything from it.
#[tokio::test]
async fn metrics_answer_the_scraper_and_platform_admins_only() {
    let db = TestDb::new(Engine::Sqlite).await;
    let mut s = common::kit::with_workers(settings(&db.url), 0);
    s.server.metrics_token_sha256 = Some(common::sha256_hex("scrape-token"));
    let app = TestApp::spawn(s).await;
    let scrape = |token: Option<&'static str>| {
        let mut r = app.client.get(app.url("/metrics"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    for (token, status) in [
        (None, 401),
        (Some("wrong-token"), 401),
        (Some("alice-token"), 404),
        (Some("mallory-token"), 404),
        (Some("lena-token"), 404),
    ] {
        let (got, body) = scrape(token).await;
        assert_eq!(got, status, "{token:?}: {body}");
        assert!(!body.contains("paved_"), "{token:?}: {body}");
    }
    for token in ["scrape-token", "dave-token"] {
        let (status, body) = scrape(Some(token)).await;
        assert_eq!(status, 200, "{token}");
        assert!(body.contains("paved_http_requests_total"), "{body}");
        assert!(
            body.contains("paved_resources_monthly_cost")
                || body.contains("paved_approvals_pending"),
            "{body}"
        );
    }
    app.stop().await;

    // Where anonymous access is off, no token is a plain 401 too; a bad configured hash stops
    // start-up naming the key.
    let mut s = common::kit::with_workers(settings(&db.url), 0);
    s.auth.allow_anonymous = false;
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    let app = TestApp::spawn(s.clone()).await;
    assert_eq!(scrape_status(&app, None).await, 401);
    assert_eq!(scrape_status(&app, Some("dave-token")).await, 200);
    app.stop().await;
    let err = paved::config::Settings::load(
        None,
        [(
            "PAVED_SERVER__METRICS_TOKEN_SHA256".to_owned(),
            "not-a-hash".to_owned(),
        )],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("server.metrics_token_sha256"),
        "{err}"
    );
    let ok = paved::config::Settings::load(
        None,
        [(
            "PAVED_SERVER__METRICS_TOKEN_SHA256".to_owned(),
            common::sha256_hex("scrape-token"),
        )],
    )
    .unwrap();
    assert_eq!(
        ok.server.metrics_token_sha256,
        Some(common::sha256_hex("scrape-token"))
    );
}

async fn scrape_status(app: &TestApp, token: Option<&str>) -> u16 {
    let mut r = app.client.get(app.url("/metrics"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap().status().as_u16()
}
