//! The HTTP API against the real app, on SQLite and on PostgreSQL.

use crate::common;

use common::{Engine, TestApp, TestDb, assert_envelope, postgres_values, settings};
use serde_json::{Value, json};

async fn readiness(app: &TestApp) -> (u16, Value) {
    let r = app
        .client
        .get(app.url("/.backstage/health/v1/readiness"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn health_follows_migrations(engine: Engine) {
    let db = TestDb::new(engine).await;
    let mut s = settings(&db.url);
    s.database.migrate_on_start = false;
    let app = TestApp::spawn(s).await;

    let live = app
        .client
        .get(app.url("/.backstage/health/v1/liveness"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let (status, body) = readiness(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        json!({"status": "error", "message": "database migrations are pending"})
    );
    // The API refuses instead of failing on missing tables.
    let (status, body) = app.get_json("/requests").await;
    assert_eq!(status, 503);
    assert_envelope(&body, 503, "ServiceUnavailableError", "GET", "/v1/requests");

    // As `paved migrate` would, from outside the running server.
    let conn = paved::db::connect(&settings(&db.url).database)
        .await
        .unwrap();
    assert!(paved::db::migrate(&conn).await.unwrap() >= 1);
    conn.close().await.unwrap();

    // Ready once paved has also loaded its signing key, which needs the new tables.
    let body = common::kit::eventually("readiness after the migration", || async {
        let (status, body) = readiness(&app).await;
        if status == 503 {
            assert_ne!(body["message"], "database migrations are pending");
        }
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(body, json!({"status": "ok"}));
    let (status, body) = app.get_json("/requests").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn health_follows_migrations_sqlite() {
    health_follows_migrations(Engine::Sqlite).await;
}

#[tokio::test]
async fn health_follows_migrations_postgres() {
    health_follows_migrations(Engine::Postgres).await;
}

#[tokio::test]
async fn replicas_migrating_a_new_postgres_database_at_once_do_not_collide() {
    let db = TestDb::new(Engine::Postgres).await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(
            paved::db::connect(&settings(&db.url).database)
                .await
                .unwrap(),
        );
    }
    let mut replicas = tokio::task::JoinSet::new();
    for c in &conns {
        let c = c.clone();
        replicas.spawn(async move { paved::db::migrate(&c).await.unwrap() });
    }
    let applied: Vec<usize> = replicas.join_all().await;
    // One of them applied everything; the others found nothing left to do.
    assert_eq!(applied.iter().filter(|n| **n > 0).count(), 1, "{applied:?}");
    for c in &conns {
        assert!(paved::db::schema_is_current(c).await.unwrap());
    }
    for c in conns {
        c.close().await.unwrap();
    }
}

async fn request_survives_restart(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    let (status, created) = app
        .post_json("/requests", &json!({"offering": "postgres-database", "values": postgres_values("orders"), "idempotencyKey": "task-1"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "pending");
    assert_eq!(created["owner"], "group:default/team-a");
    assert_eq!(created["parameters"]["size"], "small", "defaults applied");
    assert!(
        created["templateVersion"]
            .as_str()
            .unwrap()
            .starts_with("1.0.0+")
    );
    assert_eq!(created["spec"]["resource"]["name"], "orders-dev");
    assert_eq!(created["spec"]["parts"][0]["spec"]["connection_limit"], 20);
    app.stop().await;

    let app = TestApp::spawn(settings(&db.url)).await;
    let (status, fetched) = app.get_json(&format!("/requests/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, created, "stored, not kept in memory");
    // The idempotency key still finds it after the restart.
    let (status, again) = app
        .post_json("/requests", &json!({"offering": "postgres-database", "values": postgres_values("orders"), "idempotencyKey": "task-1"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], id.as_str());
    app.stop().await;
}

#[tokio::test]
async fn request_survives_restart_sqlite() {
    request_survives_restart(Engine::Sqlite).await;
}

#[tokio::test]
async fn request_survives_restart_postgres() {
    request_survives_restart(Engine::Postgres).await;
}

async fn idempotency(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    let body = json!({"offering": "redis-cache", "values": {"name": "sessions", "owner": "team-a", "cost_center": "ENG-1234"}, "idempotencyKey": "task-42"});

    // Ten concurrent retries of one step: one request.
    let mut handles = Vec::new();
    for _ in 0..10 {
        let client = app.client.clone();
        let url = app.api("/requests");
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for h in handles {
        let (status, v) = h.await.unwrap();
        assert!(status == 201 || status == 200, "{status} {v}");
        created += usize::from(status == 201);
        ids.insert(v["id"].as_str().unwrap().to_owned());
    }
    assert_eq!((created, ids.len()), (1, 1));

    // The same key with other values is a conflict, naming the first request.
    let mut other = body.clone();
    other["values"]["name"] = json!("carts");
    let (status, err) = app.post_json("/requests", &other).await;
    let msg = assert_envelope(&err, 409, "ConflictError", "POST", "/v1/requests");
    assert_eq!(status, 409);
    assert!(msg.contains(ids.first().unwrap()), "{msg}");

    // Without a key, every create is a new request.
    let mut no_key = body.clone();
    no_key.as_object_mut().unwrap().remove("idempotencyKey");
    let (a, first) = app.post_json("/requests", &no_key).await;
    let (b, second) = app.post_json("/requests", &no_key).await;
    assert_eq!((a, b), (201, 201));
    assert_ne!(first["id"], second["id"]);
    let (_, list) = app.get_json("/requests?offering=redis-cache").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_sqlite() {
    idempotency(Engine::Sqlite).await;
}

#[tokio::test]
async fn idempotency_postgres() {
    idempotency(Engine::Postgres).await;
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let db = TestDb::new(Engine::Postgres).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    for (i, owner) in ["team-a", "team-b", "team-a", "team-a", "team-b"]
        .iter()
        .enumerate()
    {
        let mut values = postgres_values(&format!("db-{i}"));
        values["owner"] = json!(owner);
        let (status, _) = app
            .post_json(
                "/requests",
                &json!({"offering": "postgres-database", "values": values}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (_, page1) = app.get_json("/requests?owner=team-a&limit=2").await;
    let items = page1["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["parameters"]["name"], "db-3", "newest first");
    let cursor = page1["nextCursor"].as_str().unwrap();
    let (_, page2) = app
        .get_json(&format!(
            "/requests?owner=group:default/team-a&limit=2&cursor={cursor}"
        ))
        .await;
    let items2 = page2["items"].as_array().unwrap();
    assert_eq!(items2.len(), 1);
    assert_eq!(items2[0]["parameters"]["name"], "db-0");
    assert!(page2["nextCursor"].is_null());
    let (_, by_status) = app.get_json("/requests?status=pending").await;
    assert_eq!(by_status["items"].as_array().unwrap().len(), 5);
    let (_, none) = app.get_json("/requests?status=succeeded").await;
    assert_eq!(none["items"], json!([]));

    for (query, needle) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("status=done", "status"),
        ("owner=bad%20owner", "owner"),
        ("bogus=1", "bogus"),
    ] {
        let (status, err) = app.get_json(&format!("/requests?{query}")).await;
        assert_eq!(status, 400, "{query}");
        let msg = assert_envelope(
            &err,
            400,
            "InputError",
            "GET",
            &format!("/v1/requests?{query}"),
        );
        assert!(msg.contains(needle), "{query}: {msg}");
    }
    app.stop().await;
}

#[tokio::test]
async fn validation_errors_name_every_field_and_rule() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    let values =
        json!({"name": "X", "environment": "qa", "owner": "team-a", "size": "huge", "extra": 1});
    let (status, err) = app
        .post_json(
            "/requests",
            &json!({"offering": "postgres-database", "values": values}),
        )
        .await;
    assert_eq!(status, 400);
    let msg = assert_envelope(&err, 400, "InputError", "POST", "/v1/requests");
    for part in [
        "name: must match pattern",
        "environment: must be one of: dev, staging, prod",
        "size: must be one of: small, medium, large",
        "cost_center: is required",
        "extra: is not a parameter of this template",
    ] {
        assert!(msg.contains(part), "missing {part:?} in {msg}");
    }
    let fields: Vec<&str> = err["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields.len(), 5, "{fields:?}");
    // Nothing was stored for a refused order.
    let (_, list) = app.get_json("/requests").await;
    assert_eq!(list["items"], json!([]));

    // A bad owner ref is refused by name, after the form passed.
    let mut bad_owner = postgres_values("orders");
    bad_owner["owner"] = json!("group:default/Not Valid");
    let (status, err) = app
        .post_json(
            "/requests",
            &json!({"offering": "postgres-database", "values": bad_owner}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(assert_envelope(&err, 400, "InputError", "POST", "/v1/requests").contains("owner:"));
    app.stop().await;
}

/// (method, path from the server's root, content type, body, status, error name, the
/// envelope's request.url, a word the message must hold)
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a str,
    u16,
    &'a str,
    &'a str,
    &'a str,
);

#[tokio::test]
async fn every_failure_answers_in_backstage_shape() {
    let db = TestDb::new(Engine::Sqlite).await;
    let mut s = settings(&db.url);
    s.server.body_limit_bytes = 4096;
    let app = TestApp::spawn(s).await;
    let big = json!({"offering": "postgres-database", "values": {"name": "x".repeat(10_000)}})
        .to_string();
    let json_type = Some("application/json");
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("GET", "/api/paved/v1/nope?x=1", None, "", 404, "NotFoundError", "/v1/nope?x=1", ""),
        ("GET", "/elsewhere", None, "", 404, "NotFoundError", "/elsewhere", ""),
        ("DELETE", "/api/paved/v1/offerings", None, "", 405, "MethodNotAllowedError", "/v1/offerings", ""),
        ("POST", "/api/paved/v1/requests", json_type, "{\"offering\": ", 400, "InputError", "/v1/requests", "malformed JSON"),
        ("POST", "/api/paved/v1/requests", json_type, "{\"offering\": 5, \"values\": {}}", 400, "InputError", "/v1/requests", "offering"),
        ("POST", "/api/paved/v1/requests", None, "{}", 400, "InputError", "/v1/requests", "Content-Type"),
        ("POST", "/api/paved/v1/requests", json_type, &big, 413, "PayloadTooLargeError", "/v1/requests", ""),
        ("POST", "/api/paved/v1/requests", json_type, "{\"offering\": \"no-such\", \"values\": {}}", 404, "NotFoundError", "/v1/requests", "no-such"),
        ("GET", "/api/paved/v1/requests/does-not-exist", None, "", 404, "NotFoundError", "/v1/requests/does-not-exist", ""),
        ("POST", "/api/paved/v1/requests", json_type, "{\"offering\": \"redis-cache\", \"values\": {}, \"idempotencyKey\": \"\"}", 400, "InputError", "/v1/requests", "idempotencyKey"),
    ];
    for &(method, path, content_type, body, status, name, url, word) in cases {
        let mut req = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(common::OBSERVER_TOKEN);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        if !body.is_empty() {
            req = req.body(body.to_owned());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{method} {path}"
        );
        let msg = assert_envelope(&r.json().await.unwrap(), status, name, method, url);
        assert!(msg.contains(word), "{method} {path}: {msg}");
    }
    app.stop().await;
}

#[tokio::test]
async fn offerings_come_from_templates() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    let (status, list) = app.get_json("/offerings").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "mariadb-database",
            "postgres-database",
            "preview-environment",
            "redis-cache"
        ]
    );
    assert_eq!(list["problems"], json!([]));

    let (status, pg) = app.get_json("/offerings/postgres-database").await;
    assert_eq!(status, 200);
    assert_eq!(pg["templateRef"], "template:default/postgres-database");
    assert_eq!(pg["resourceType"], "database");
    let pages = pg["parameters"].as_array().unwrap();
    assert_eq!(
        pages.len(),
        1,
        "one page: everything on it changes what is provisioned"
    );
    assert_eq!(pages[0]["properties"]["owner"]["ui:field"], "OwnerPicker");
    assert_eq!(pg["presets"]["parameter"], "size");
    assert_eq!(pg["presets"]["values"]["medium"]["connection_limit"], 100);

    let (status, preview) = app.get_json("/offerings/preview-environment").await;
    assert_eq!(status, 200);
    assert_eq!(
        preview["ttl"],
        json!({"default_hours": 24, "max_hours": 168})
    );
    assert_eq!(preview["parts"], json!(["postgres", "redis"]));

    let (status, _) = app.get_json("/offerings/nope").await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn composite_preview_environment_renders_both_parts() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    let values = json!({"component": "checkout-service", "branch": "feature/Login_Page", "owner": "team-a", "cost_center": "ENG-1234"});
    let (status, r) = app
        .post_json(
            "/requests",
            &json!({"offering": "preview-environment", "values": values}),
        )
        .await;
    assert_eq!(status, 201, "{r}");
    let spec = &r["spec"];
    assert_eq!(
        spec["resource"]["name"],
        "preview-checkout-service-feature-login-page"
    );
    assert_eq!(
        spec["resource"]["component"],
        "component:default/checkout-service"
    );
    assert_eq!(spec["resource"]["ttl_hours"], 24, "default TTL applied");
    assert_eq!(spec["parts"][0]["driver"], "postgres");
    assert_eq!(
        spec["parts"][0]["spec"]["database"],
        "preview_checkout_service_feature_login_page"
    );
    assert_eq!(spec["parts"][1]["driver"], "redis");
    assert_eq!(
        spec["parts"][1]["spec"]["key_prefix"],
        "preview-checkout-service-feature-login-page"
    );

    let mut no_ttl_choice = values.clone();
    no_ttl_choice["ttl_hours"] = json!(1000);
    let (status, err) = app
        .post_json(
            "/requests",
            &json!({"offering": "preview-environment", "values": no_ttl_choice}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ttl_hours: must be one of"),
        "{err}"
    );
    app.stop().await;
}

#[tokio::test]
async fn request_ids_metrics_and_docs() {
    let db = TestDb::new(Engine::Sqlite).await;
    let mut s = settings(&db.url);
    s.server.metrics_token_sha256 = Some(common::sha256_hex("scrape-token"));
    let app = TestApp::spawn(s).await;
    let r = app.client.get(app.api("/offerings")).send().await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let r = app
        .client
        .get(app.api("/offerings"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
    let r = app.client.get(app.api("/nope")).send().await.unwrap();
    assert!(
        r.headers().contains_key("x-request-id"),
        "errors carry it too"
    );
    app.get_json("/requests/abc").await;

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"paved_http_requests_total{method="GET",route="/api/paved/v1/offerings",status="200"}"#,
        r#"paved_http_requests_total{method="GET",route="/api/paved/v1/requests/{id}",status="404"}"#,
        r#"route="unmatched",status="404""#,
        "paved_http_request_duration_seconds_bucket{",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }

    let doc: Value = app
        .client
        .get(app.url("/api/paved/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/requests"]["post"].is_object());
    let ui = app
        .client
        .get(app.url("/api/paved/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(
        ui.text().await.unwrap().contains("swagger"),
        "browsable API reference is served"
    );
    app.stop().await;
}

#[tokio::test]
async fn broken_templates_are_skipped_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    for offering in ["postgres-database", "redis-cache"] {
        let to = dir.path().join(offering);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["template.yaml", "offering.yaml"] {
            std::fs::copy(
                common::repo_path(&format!("templates/{offering}/{f}")),
                to.join(f),
            )
            .unwrap();
        }
    }
    let db = TestDb::new(Engine::Sqlite).await;
    let mut s = settings(&db.url);
    s.templates.dir = dir.path().to_owned();
    s.templates.reload_interval_seconds = 1;
    let app = TestApp::spawn(s).await;
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };

    let (_, list) = app.get_json("/offerings").await;
    assert_eq!(names(&list), ["postgres-database", "redis-cache"]);

    let redis = dir.path().join("redis-cache/template.yaml");
    let good = std::fs::read_to_string(&redis).unwrap();
    std::fs::write(
        &redis,
        good.replace("kind: Template", "kind: Template\n  broken: ["),
    )
    .unwrap();
    let list = poll_until(&app, |l| names(l) == ["postgres-database"]).await;
    assert_eq!(list["problems"][0]["offering"], "redis-cache", "{list}");
    assert!(
        list["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("template.yaml")
    );
    // The healthy offering still takes orders.
    let (status, _) = app
        .post_json(
            "/requests",
            &json!({"offering": "postgres-database", "values": postgres_values("orders")}),
        )
        .await;
    assert_eq!(status, 201);

    std::fs::write(&redis, &good).unwrap();
    let list = poll_until(&app, |l| names(l) == ["postgres-database", "redis-cache"]).await;
    assert_eq!(list["problems"], json!([]));
    app.stop().await;
}

async fn poll_until(app: &TestApp, ok: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let (_, list) = app.get_json("/offerings").await;
        if ok(&list) {
            return list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("templates were not reloaded within 10 s");
}

/// Every list of the API document pages the same way: walked with a small `limit`, following
/// `nextCursor` returns each item exactly once (even with items added mid-walk) and ends
/// without a cursor; `limit` out of its documented range and a cursor that is not one are 400s
/// naming the field. A list route added to the document without a row here fails the test.
async fn lists_page_alike(engine: Engine) {
    use paved::db::entities::{approval, request_log, resource};
    use sea_orm::{ActiveValue::Set, EntityTrait};

    let doc = serde_json::to_value(paved::api::openapi()).unwrap();
    let db = TestDb::new(engine).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    let conn = common::kit::db_of(&db.url).await;

    // Fixtures: three of everything, so a page of two never holds a whole list.
    let order = |name: String| {
        let app = &app;
        async move {
            let (status, r) = app
                .post_json(
                    "/requests",
                    &json!({"offering": "postgres-database", "values": postgres_values(&name)}),
                )
                .await;
            assert_eq!(status, 201, "{r}");
            r["id"].as_str().unwrap().to_owned()
        }
    };
    let mut request_ids = Vec::new();
    for i in 0..3 {
        request_ids.push(order(format!("pages-{i}")).await);
    }
    let rid = request_ids[0].clone();
    let now = chrono::Utc::now();
    let add_approval = |n: usize| approval::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        request_id: Set(rid.clone()),
        required_role: Set("lead".into()),
        reason: Set(format!("rule {n}")),
        status: Set(paved::vocab::status::ApprovalStatus::Pending),
        decided_by: Set(None),
        decision_reason: Set(None),
        decided_at: Set(None),
        created_at: Set(now),
    };
    let add_log = |n: usize| request_log::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        request_id: Set(rid.clone()),
        step: Set(None),
        level: Set("info".into()),
        message: Set(format!("line {n}")),
        at: Set(now),
    };
    let add_resource = |n: usize| {
        let id = uuid::Uuid::now_v7().to_string();
        resource::ActiveModel {
            catalog_bucket: Set(paved::vocab::bucket::bucket_of(&id)),
            id: Set(id),
            entity_name: Set(format!("pages-res-{n}")),
            offering: Set("postgres-database".into()),
            offering_version: Set("1".into()),
            resource_type: Set("database".into()),
            environment: Set("dev".into()),
            owner: Set("group:default/team-a".into()),
            system: Set(None),
            component: Set(None),
            status: Set(paved::vocab::status::ResourceStatus::Ready),
            desired: Set(json!({})),
            outputs: Set(json!({})),
            monthly_cost_cents: Set(None),
            expires_at: Set(None),
            request_id: Set(rid.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
        }
    };
    for n in 0..3 {
        approval::Entity::insert(add_approval(n))
            .exec(&conn)
            .await
            .unwrap();
        request_log::Entity::insert(add_log(n))
            .exec(&conn)
            .await
            .unwrap();
        resource::Entity::insert(add_resource(n))
            .exec(&conn)
            .await
            .unwrap();
    }

    // The document's list routes: GET operations answering `{items, nextCursor}`.
    let schema_of = |s: &Value| -> Value {
        match s["$ref"].as_str() {
            Some(r) => doc["components"]["schemas"][r.rsplit('/').next().unwrap()].clone(),
            None => s.clone(),
        }
    };
    let mut lists = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let Some(get) = ops.get("get") else { continue };
        let body = schema_of(&get["responses"]["200"]["content"]["application/json"]["schema"]);
        assert_ne!(body["type"], "array", "GET {path} answers a bare array");
        if body["properties"]["items"]["type"] != "array" {
            continue;
        }
        assert_eq!(
            body["properties"]["nextCursor"]["type"], "string",
            "GET {path}: {body}"
        );
        assert!(
            !body["required"]
                .as_array()
                .unwrap()
                .contains(&json!("nextCursor")),
            "GET {path}: nextCursor is absent on the last page"
        );
        let param = |name: &str| {
            get["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("GET {path} documents no {name}"))
                .clone()
        };
        let limit = param("limit");
        assert_eq!(limit["schema"]["minimum"], 1, "GET {path}");
        let max = limit["schema"]["maximum"].as_u64().unwrap();
        assert_eq!(max, paved::api::page::MAX_LIMIT, "GET {path}");
        let text = limit["description"].as_str().unwrap();
        assert!(
            text.contains(&format!("1 to {max}"))
                && text.contains(&format!("default {}", paved::api::page::DEFAULT_LIMIT)),
            "GET {path}: {text}"
        );
        param("cursor");
        lists.push(path.clone());
    }
    // Each list route, as a URL of the fixtures above, and how to add to it mid-walk.
    let mut walked = Vec::new();
    let cursor_of_another = {
        let (_, p) = app.get_json("/offerings?limit=1").await;
        p["nextCursor"].as_str().unwrap().to_owned()
    };
    for path in &lists {
        let url = match path.as_str() {
            "/v1/offerings" | "/v1/policies" | "/v1/requests" | "/v1/resources" | "/v1/audit" => {
                path.trim_start_matches("/v1").to_owned()
            }
            "/v1/requests/{id}/approvals" | "/v1/requests/{id}/logs" => {
                path.trim_start_matches("/v1").replace("{id}", &rid)
            }
            other => panic!("list route {other} has no fixture in this test: add one"),
        };
        let all = |v: &Value| v["items"].as_array().unwrap().clone();
        let (status, full) = app.get_json(&format!("{url}?limit=500")).await;
        assert_eq!(status, 200, "{url}: {full}");
        assert!(full.get("nextCursor").is_none(), "{url}: {full}");
        let before = all(&full);
        assert!(before.len() > 2, "{url}: fewer items than two pages");

        let mut seen: Vec<String> = Vec::new();
        let mut next = format!("{url}?limit=2");
        let mut pages = 0;
        loop {
            let (status, page) = app.get_json(&next).await;
            assert_eq!(status, 200, "{next}: {page}");
            let items = all(&page);
            assert!(items.len() <= 2, "{next}: more than limit");
            seen.extend(items.iter().map(Value::to_string));
            pages += 1;
            if pages == 1 {
                // Something new arrives while the caller walks.
                match path.as_str() {
                    "/v1/requests" | "/v1/audit" => {
                        order(format!("pages-late-{}", walked.len())).await;
                    }
                    "/v1/resources" => {
                        resource::Entity::insert(add_resource(10))
                            .exec(&conn)
                            .await
                            .unwrap();
                    }
                    "/v1/requests/{id}/approvals" => {
                        approval::Entity::insert(add_approval(10))
                            .exec(&conn)
                            .await
                            .unwrap();
                    }
                    "/v1/requests/{id}/logs" => {
                        request_log::Entity::insert(add_log(10))
                            .exec(&conn)
                            .await
                            .unwrap();
                    }
                    _ => {}
                }
            }
            match page["nextCursor"].as_str() {
                Some(c) => {
                    assert_eq!(items.len(), 2, "{next}: a short page that is not the last");
                    next = format!("{url}?limit=2&cursor={c}");
                }
                None => break,
            }
            assert!(pages < 20, "{url}: the walk does not end");
        }
        assert!(pages >= 2, "{url}: one page only");
        for item in &before {
            let item = item.to_string();
            assert_eq!(
                seen.iter().filter(|s| **s == item).count(),
                1,
                "{url}: {item} not returned exactly once"
            );
        }
        let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{url}: an item came twice");

        // Bad paging input names the field and the rule.
        let garbage = "not-a-cursor".to_owned();
        let sep = if url.contains('?') { '&' } else { '?' };
        for (query, field, rule) in [
            ("limit=0".to_owned(), "limit", "range"),
            (
                format!("limit={}", paved::api::page::MAX_LIMIT + 1),
                "limit",
                "range",
            ),
            ("limit=two".to_owned(), "limit", "range"),
            (format!("cursor={garbage}"), "cursor", "format"),
            (format!("cursor={cursor_of_another}"), "cursor", "format"),
        ] {
            if path == "/v1/offerings" && query.ends_with(&cursor_of_another) {
                continue; // that one is this list's own
            }
            let (status, err) = app.get_json(&format!("{url}{sep}{query}")).await;
            assert_eq!(status, 400, "{url}?{query}: {err}");
            let msg = err["error"]["message"].as_str().unwrap();
            assert!(msg.contains(field), "{url}?{query}: {msg}");
            assert_eq!(err["error"]["errors"][0]["field"], field, "{url}?{query}");
            assert_eq!(err["error"]["errors"][0]["rule"], rule, "{url}?{query}");
        }
        walked.push(path.clone());
    }
    assert_eq!(walked.len(), 7, "every list was walked: {walked:?}");
    app.stop().await;
}

#[tokio::test]
async fn lists_page_alike_sqlite() {
    lists_page_alike(Engine::Sqlite).await;
}

#[tokio::test]
async fn lists_page_alike_postgres() {
    lists_page_alike(Engine::Postgres).await;
}

/// Under another plugin id the envelope's `request.url` is still relative to the plugin
/// router, as Backstage reports it (the base path is not `/api/paved` everywhere).
#[tokio::test]
async fn the_envelope_is_relative_to_the_configured_plugin_base() {
    let db = TestDb::new(Engine::Sqlite).await;
    let mut s = settings(&db.url);
    s.backstage.plugin_id = "infra".into();
    let app = TestApp::spawn(s).await;
    let r = app
        .client
        .get(app.url("/api/infra/v1/nope?x=1"))
        .send()
        .await
        .unwrap();
    assert_envelope(
        &r.json().await.unwrap(),
        404,
        "NotFoundError",
        "GET",
        "/v1/nope?x=1",
    );
    app.stop().await;
}
