//! Faults while provisioning: PostgreSQL restarting, Redis down, Backstage down, paved killed.
//! The servers that fail here are private ones each test starts (its own PostgreSQL cluster
//! from initdb, its own redis-server on a random port), so restarting them disturbs no other
//! test on this machine.

use crate::common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::kit::wait_final_within as wait_final;
use common::{
    Engine as DbEngine, Teardown, TestApp, TestDb,
    servers::{PrivatePostgres, PrivateRedis},
    settings,
};
use serde_json::{Value, json};

fn name() -> String {
    common::kit::unique_with("f")
}

async fn order(app: &TestApp, offering: &str, values: Value) -> String {
    app.caller(None).order(offering, values).await.created_id()
}

fn pg_values(n: &str) -> Value {
    json!({"name": n, "environment": "dev", "size": "small", "owner": "team-a", "cost_center": "ENG-1234"})
}

#[tokio::test]
async fn postgres_restarting_mid_provisioning_delays_but_does_not_fail_requests() {
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    pg.psql("postgres", "CREATE DATABASE paved");
    let mut s = settings(&pg.url("paved"));
    s.engine.workers = 2;
    s.engine.poll_seconds = 1;
    s.engine.lease_seconds = 3;
    s.engine.retry_base_ms = 200;
    s.engine.retry_max_seconds = 2;
    s.engine.max_attempts = 10;
    // The private cluster is both paved's database and where it provisions.
    s.drivers.postgres.targets = [("dev".to_owned(), pg.url("postgres"))].into();
    let app = TestApp::spawn(s).await;
    let names: Vec<String> = (0..8).map(|_| name()).collect();
    let mut ids = vec![];
    for n in &names {
        ids.push(order(&app, "postgres-database", pg_values(n)).await);
    }
    // Restart while the workers are at it: connections in use break, the pool reconnects.
    let mut unfinished = 0;
    for id in &ids {
        let (_, r) = app.get_json(&format!("/requests/{id}")).await;
        unfinished += usize::from(r["status"] != "succeeded");
    }
    assert!(unfinished > 0, "the restart must come while work is left");
    let pg = tokio::task::spawn_blocking(move || {
        pg.pg_ctl("restart");
        pg
    })
    .await
    .unwrap();
    for id in &ids {
        let done = wait_final(&app, id, Duration::from_secs(90)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    // Each database exists once, owned by its own role.
    for n in &names {
        let db = format!("{n}_dev");
        let count = pg.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{n}%'"),
        );
        assert_eq!(count, "1", "{db}");
    }
    app.stop().await;
}

#[tokio::test]
async fn redis_down_fails_redis_orders_with_a_clear_reason_and_nothing_else() {
    let redis = PrivateRedis::start();
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = settings(&db.url);
    s.engine.workers = 2;
    s.engine.poll_seconds = 1;
    s.engine.retry_base_ms = 100;
    s.engine.retry_max_seconds = 1;
    s.engine.max_attempts = 3;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    s.drivers.redis.targets = ["dev", "staging", "prod"]
        .iter()
        .map(|e| (e.to_string(), url.clone()))
        .collect();
    let app = TestApp::spawn(s).await;
    drop(redis); // down before anything reaches it

    let cache = order(
        &app,
        "redis-cache",
        json!({"name": name(), "environment": "dev", "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let n = name();
    let database = order(&app, "postgres-database", pg_values(&n)).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![database.clone()],
    };

    let failed = wait_final(&app, &cache, Duration::from_secs(60)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["error"].as_str().unwrap();
    assert!(
        reason.contains("Redis (dev)") && reason.contains("refused"),
        "the reason names what is down: {reason}"
    );
    assert!(!reason.contains("panic"), "{reason}");
    // It was retried before giving up.
    let (_, logs) = app.get_json(&format!("/requests/{cache}/logs")).await;
    let retries = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["message"].as_str().unwrap_or("").contains("retry"))
        .count();
    assert!(retries >= 1, "{logs}");
    let ok = wait_final(&app, &database, Duration::from_secs(60)).await;
    assert_eq!(
        ok["status"], "succeeded",
        "the PostgreSQL order is unaffected: {ok}"
    );
    app.stop().await;
}

#[tokio::test]
async fn backstage_down_never_fails_provisioning_and_the_refresh_arrives_when_it_is_back() {
    use std::sync::{Arc, Mutex};
    // Nothing listens on this port yet: Backstage is down.
    let port = common::free_port();
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = settings(&db.url);
    s.engine.workers = 1;
    s.engine.poll_seconds = 1;
    s.backstage.base_url = Some(format!("http://127.0.0.1:{port}"));
    let app = TestApp::spawn(s).await;
    let id = order(
        &app,
        "redis-cache",
        json!({"name": name(), "environment": "dev", "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone()],
    };
    let done = wait_final(&app, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // A stand-in for Backstage's catalog refresh endpoint comes up on that port.
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen2 = seen.clone();
    let stand_in = axum::Router::new().route(
        "/api/catalog/refresh",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let seen = seen2.clone();
            async move {
                seen.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, stand_in).await.unwrap() });
    let rid = done["resourceId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let refs: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["entityRef"].as_str().unwrap_or("").to_owned())
            .collect();
        if refs.iter().any(|r| r.starts_with("resource:")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refresh arrived for {rid}: {refs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

/// GET as the test's observer (a platform-admin configured by `serve`): the anonymous caller
/// sees only its own requests, not the resources they made.
async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .bearer_auth(common::OBSERVER_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `paved serve` as a process, so it can be killed with SIGKILL.
fn serve(db_url: &str, port: u16, key: &str) -> Child {
    common::paved()
        .arg("serve")
        .env("PAVED_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("PAVED_DATABASE__URL", db_url)
        .env("PAVED_SECRETS__KEY", key)
        .env("PAVED_ENGINE__WORKERS", "2")
        .env("PAVED_ENGINE__LEASE_SECONDS", "3")
        .env("PAVED_ENGINE__POLL_SECONDS", "1")
        .env(
            "PAVED_AUTH__STATIC_TOKENS",
            format!(
                "[{{subject: observer, sha256: {}, roles: [platform-admin]}}]",
                common::sha256_hex(common::OBSERVER_TOKEN)
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn paved_killed_mid_request_loses_nothing_and_provisions_each_request_once() {
    let db = TestDb::new(DbEngine::Postgres).await;
    let key = paved::vocab::secret_box::SecretBox::generate_key();
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}/api/paved/v1");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let ready = |http: reqwest::Client| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http
                .get(format!(
                    "http://127.0.0.1:{port}/.backstage/health/v1/readiness"
                ))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "paved did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut child = serve(&db.url, port, &key);
    ready(http.clone()).await;
    let names: Vec<String> = (0..6).map(|_| name()).collect();
    let mut ids = vec![];
    for n in &names {
        let r: Value = http
            .post(format!("{base}/requests"))
            .json(&json!({"offering": "postgres-database", "values": pg_values(n)}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["id"].as_str().expect("created").to_owned());
    }
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: ids.clone(),
    };
    // Kill it as soon as a worker is inside a request.
    let deadline = Instant::now() + Duration::from_secs(30);
    'wait: loop {
        for id in &ids {
            let r = get_json(&http, &format!("{base}/requests/{id}")).await;
            if r["status"] == "running" {
                break 'wait;
            }
        }
        assert!(Instant::now() < deadline, "no request started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL: no graceful shutdown, leases left behind
    child.wait().unwrap();

    let mut child = serve(&db.url, port, &key);
    ready(http.clone()).await;
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            let r = get_json(&http, &format!("{base}/requests/{id}")).await;
            if ["succeeded", "failed", "cancelled"].contains(&r["status"].as_str().unwrap_or("")) {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "{id} not final after restart: {r}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    // One resource per request, and one database per resource on the server.
    let resources = get_json(&http, &format!("{base}/resources?limit=100")).await;
    let resources = resources["items"].as_array().cloned().unwrap();
    for n in &names {
        let matching = resources
            .iter()
            .filter(|r| r["name"].as_str().unwrap_or("").starts_with(n.as_str()))
            .count();
        assert_eq!(matching, 1, "{n}: {resources:?}");
        let out = Command::new("psql")
            .args(["-X", "-At", &common::postgres_admin_url(), "-c"])
            .arg(format!(
                "SELECT count(*) FROM pg_database WHERE datname LIKE '{n}%'"
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{n}");
    }
    child.kill().ok();
    child.wait().ok();
}
