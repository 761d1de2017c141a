//! Bad input and tenant boundaries at the edge of the API (issue 13): idempotency keys are the
//! ordering team's, input PostgreSQL cannot store is refused naming the field, `/metrics` is
//! for the scraper only.

use crate::common;

use common::{Engine, TestApp, TestDb, kit::call, settings};
use serde_json::{Value, json};

fn cache(name: &str, owner: &str) -> Value {
    json!({"name": name, "environment": "dev", "owner": owner, "cost_center": "ENG-1234"})
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
        .position(|n| n == "m20261201_000007_idempotency_keys_per_team")
        .unwrap();
    let from_this = (all.len() - before) as u32;
    Migrator::up(&conn, Some(before as u32)).await.unwrap();
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 30, 12, 0, 0).unwrap();
    let row = |id: &str, owner: &str, key: &str| request::ActiveModel {
        id: Set(id.into()),
        offering: Set("redis-cache".into()),
        template_version: Set("1".into()),
        operation: Set(paved::vocab::status::Operation::Create),
        status: Set(paved::vocab::status::RequestStatus::AwaitingApproval),
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
        status: Set(paved::vocab::status::StepStatus::Succeeded),
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
        status: Set(paved::vocab::status::ApprovalStatus::Pending),
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
            status: Set(paved::vocab::status::StepStatus::Pending),
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
    s.auth.allow_anonymous = Some(false);
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

/// One field to send a NUL in: where it goes, and the name paved must answer with.
struct NulCase {
    method: reqwest::Method,
    /// Path and query under the server, `%00` already in place.
    url: String,
    body: Option<Value>,
    /// `path parameter id`, `query parameter owner`, `body field /values/name`.
    names: String,
    field: String,
}

/// A JSON body holding a NUL string at `pointer` (`/values/name`, `/ids/0`).
fn body_with_nul_at(pointer: &str) -> Value {
    let mut keys: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let mut v = Value::String("a\u{0}b".into());
    while let Some(k) = keys.pop() {
        v = match k.parse::<usize>() {
            Ok(0) => Value::Array(vec![v]),
            _ => json!({ k: v }),
        };
    }
    v
}

/// The JSON pointers of every field a request body schema lists, down to its leaves; a
/// free-form object gets a key of its own (`/values/k`).
fn body_fields(doc: &Value, schema: &Value, pointer: String, out: &mut Vec<String>) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {r}")),
        None => schema,
    };
    for key in ["allOf", "oneOf", "anyOf"] {
        for s in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            body_fields(doc, s, pointer.clone(), out);
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, s) in props {
            body_fields(doc, s, format!("{pointer}/{name}"), out);
        }
    } else if let Some(items) = schema.get("items") {
        body_fields(doc, items, format!("{pointer}/0"), out);
    } else if schema.get("type").and_then(Value::as_str) == Some("object")
        || schema.get("additionalProperties").is_some()
    {
        out.push(format!("{pointer}/k"));
    } else if !["allOf", "oneOf", "anyOf"]
        .iter()
        .any(|k| schema.get(k).is_some())
    {
        out.push(if pointer.is_empty() {
            "/k".into()
        } else {
            pointer
        });
    }
}

/// Every path, query and body field of the OpenAPI document.
fn openapi_nul_cases() -> Vec<NulCase> {
    let doc = serde_json::to_value(paved::api::openapi()).unwrap();
    let mut cases = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = method.to_uppercase().parse::<reqwest::Method>() else {
                continue;
            };
            let params: Vec<(String, String)> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["in"].as_str().unwrap().to_owned(),
                        p["name"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let path_with = |nul: Option<&str>| {
                let mut path = template.clone();
                for (kind, name) in &params {
                    if kind == "path" {
                        let value = if nul == Some(name) { "x%00y" } else { "x" };
                        path = path.replace(&format!("{{{name}}}"), value);
                    }
                }
                format!("/api/paved{path}")
            };
            for (kind, name) in &params {
                let (url, names) = match kind.as_str() {
                    "path" => (path_with(Some(name)), format!("path parameter {name}")),
                    "query" => (
                        format!("{}?{name}=a%00b", path_with(None)),
                        format!("query parameter {name}"),
                    ),
                    _ => continue,
                };
                cases.push(NulCase {
                    method: m.clone(),
                    url,
                    body: None,
                    names,
                    field: name.clone(),
                });
            }
            if let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") {
                let mut fields = Vec::new();
                body_fields(&doc, schema, String::new(), &mut fields);
                assert!(!fields.is_empty(), "{method} {template}: no body fields");
                for pointer in fields {
                    cases.push(NulCase {
                        method: m.clone(),
                        url: path_with(None),
                        body: Some(body_with_nul_at(&pointer)),
                        names: format!("body field {pointer}"),
                        field: pointer,
                    });
                }
            }
        }
    }
    cases
}

/// Routes outside the OpenAPI document: Backstage's catalog reader, the Actions Registry and
/// the three-segment Cost Insights form.
fn other_nul_cases() -> Vec<NulCase> {
    let path = |method: reqwest::Method, url: &str, name: &str| NulCase {
        method,
        url: url.to_owned(),
        body: None,
        names: format!("path parameter {name}"),
        field: name.to_owned(),
    };
    let body = |url: &str, body: Value, pointer: &str| NulCase {
        method: reqwest::Method::POST,
        url: url.to_owned(),
        body: Some(body),
        names: format!("body field {pointer}"),
        field: pointer.to_owned(),
    };
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let order =
        json!({"offering": "redis-cache", "values": {"name": "a\u{0}b"}, "idempotencyKey": "k"});
    let mut cases = vec![
        path(get.clone(), "/api/paved/catalog/pages/0%00.yaml", "file"),
        path(
            get.clone(),
            "/api/paved/catalog/resources/x%00.yaml",
            "file",
        ),
        path(
            post.clone(),
            "/api/paved/.backstage/actions/v1/actions/paved:provision%00/invoke",
            "id",
        ),
        path(
            post.clone(),
            "/api/paved/.backstage/actions/v2/actions/paved:provision%00/invoke",
            "id",
        ),
        body(
            "/api/paved/.backstage/actions/v1/actions/paved:provision/invoke",
            order.clone(),
            "/values/name",
        ),
        body(
            "/api/paved/.backstage/actions/v2/actions/paved:provision/invoke",
            json!({"input": order, "secrets": {}}),
            "/input/values/name",
        ),
        body(
            "/api/paved/.backstage/actions/v2/actions/paved:wait/invoke",
            json!({"input": {"requestId": "\u{0}"}}),
            "/input/requestId",
        ),
        body(
            "/api/paved/.backstage/actions/v2/actions/paved:destroy/invoke",
            json!({"input": {"resourceId": "r\u{0}"}}),
            "/input/resourceId",
        ),
    ];
    for (i, name) in ["namespace", "kind", "name", "r", "p", "d"]
        .iter()
        .enumerate()
    {
        let mut segments =
            ["default", "group", "team-a", "R2", "P30D", "2026-11-24"].map(str::to_owned);
        segments[i] = format!("{}%00", segments[i]);
        cases.push(path(
            get.clone(),
            &format!("/api/paved/v1/cost-insights/entity/{}", segments.join("/")),
            name,
        ));
    }
    cases.push(NulCase {
        method: get,
        url: "/api/paved/catalog/entities.yaml?page=%00".into(),
        body: None,
        names: "query parameter page".into(),
        field: "page".into(),
    });
    cases
}

/// A NUL in any path, query or body field answers 400 `InputError` naming the field, on
/// PostgreSQL (whose text and jsonb cannot hold it; it answered 500 on 17 endpoints), as
/// a platform-admin (who may call every route).
#[tokio::test]
async fn nul_in_any_field_is_refused_naming_it() {
    let db = TestDb::new(Engine::Postgres).await;
    let app = TestApp::spawn(common::kit::with_workers(settings(&db.url), 0)).await;
    let openapi = openapi_nul_cases();
    assert!(openapi.len() >= 50, "only {} cases", openapi.len());
    let mut failures = Vec::new();
    let mut cases = openapi;
    cases.extend(other_nul_cases());
    for c in &cases {
        let mut r = app
            .client
            .request(c.method.clone(), app.url(&c.url))
            .bearer_auth("dave-token");
        if let Some(b) = &c.body {
            r = r.json(b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        let ok = status == 400
            && body["error"]["name"] == "InputError"
            && msg.contains(&c.names)
            && body["error"]["errors"][0]["field"] == c.field.as_str()
            && body["error"]["errors"][0]["rule"] == "no_nul";
        if !ok {
            failures.push(format!(
                "{} {} ({}): {status} {body}",
                c.method, c.url, c.names
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Nothing was stored on the way.
    let conn = common::kit::db_of(&db.url).await;
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        paved::db::entities::request::Entity::find()
            .count(&conn)
            .await
            .unwrap(),
        0
    );
    app.stop().await;
}

/// The layer reads bodies whole to look for NUL: a chunked body over the limit (no
/// Content-Length to refuse it by) still answers 413 in Backstage's shape, and a NUL in a body
/// within the limit still answers 400.
#[tokio::test]
async fn chunked_bodies_keep_their_limit() {
    let db = TestDb::new(Engine::Sqlite).await;
    let mut s = settings(&db.url);
    s.server.body_limit_bytes = 1024;
    let app = TestApp::spawn(s).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let send = move |payload: String| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(s, "POST /api/paved/v1/estimates HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").unwrap();
            for chunk in payload.as_bytes().chunks(512) {
                write!(s, "{:x}\r\n", chunk.len()).unwrap();
                s.write_all(chunk).unwrap();
                write!(s, "\r\n").unwrap();
            }
            write!(s, "0\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
    };
    let big = json!({"offering": "redis-cache", "values": {"name": "x".repeat(4096)}}).to_string();
    let out = send(big).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("PayloadTooLargeError"), "{out}");
    let small = json!({"offering": "redis-cache", "values": {"name": "a\u{0}"}}).to_string();
    let out = send(small).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("body field /values/name"), "{out}");
    app.stop().await;
}

/// Other input PostgreSQL cannot hold or paved cannot read, named like NUL: a time before
/// PostgreSQL's first timestamp (500 before), a path parameter that is not UTF-8.
#[tokio::test]
async fn unrepresentable_times_and_bytes_name_their_field() {
    let db = TestDb::new(Engine::Postgres).await;
    let app = TestApp::spawn(common::kit::with_workers(settings(&db.url), 0)).await;
    for (path, field, rule) in [
        ("/audit?since=-5000-01-01T00:00:00Z", "since", "range"),
        ("/audit?until=-0001-12-31T00:00:00Z", "until", "range"),
        ("/requests/%FF", "id", "utf8"),
        ("/teams/team-%C3/spend", "team", "utf8"),
        (
            "/cost-insights/entity/default/group/%FF/R2/P30D/2026-11-24",
            "name",
            "utf8",
        ),
    ] {
        let (status, body) = call(&app, "GET", path, Some("dave-token"), None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["name"], "InputError", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{path}: {body}"
        );
        assert_eq!(body["error"]["errors"][0]["field"], field, "{body}");
        assert_eq!(body["error"]["errors"][0]["rule"], rule, "{body}");
    }
    let (status, body) = call(
        &app,
        "GET",
        "/audit?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z",
        Some("dave-token"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}
