//! One authorization point, checked from outside: every route of the router (the OpenAPI
//! document's and the ones it leaves out) and every action of the Actions Registry, called by
//! every persona, against the status each must get. A route or action without a row fails the
//! test, so a new route cannot ship without deciding who may call it.
//!
//! Objects another persona may not see answer 404 exactly as absent ones do. Routes that change
//! state get a fresh object per persona, so each persona's answer is its own.

use crate::common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, extract::State, routing::get};
use common::{Engine as DbEngine, TestApp, TestDb, settings, static_token};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use paved::db::entities::{request, resource, secret};
use paved::vocab::status::ResourceStatus;
use ring::{rand::SystemRandom, signature};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{Value, json};

const PERSONAS: [&str; 6] = [
    "anonymous",
    "developer of the owning team",
    "developer of another team",
    "lead of the owning team",
    "platform-admin",
    "plugin without user",
];
const TEAM_A: &str = "group:default/team-a";

/// A plugin token signed by a key served from a local stand-in for Backstage's JWKS endpoint.
async fn plugin_token() -> (String, String) {
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &SystemRandom::new(),
    )
    .unwrap();
    let enc = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let keys = Arc::new(Mutex::new(vec![jwk]));
    let app = Router::new()
        .route(
            "/api/scaffolder/.backstage/auth/v1/jwks.json",
            get(|State(k): State<Arc<Mutex<Vec<Jwk>>>>| async move {
                Json(json!({"keys": *k.lock().unwrap()}))
            }),
        )
        .with_state(keys);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // The verifier checks iat/exp against the real clock: the token's times must be real.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("vnd.backstage.plugin".into());
    h.kid = Some("k1".into());
    let claims = json!({"sub": "scaffolder", "aud": "paved", "iat": now, "exp": now + 600});
    (url, jsonwebtoken::encode(&h, &claims, &enc).unwrap())
}

struct Ctx {
    app: TestApp,
    db: DatabaseConnection,
    tokens: [Option<String>; 6],
    key: String,
    seq: Mutex<u32>,
}

impl Ctx {
    async fn send(
        &self,
        who: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.app.base);
        let mut req = self.app.client.request(method.parse().unwrap(), url);
        if let Some(t) = &self.tokens[who] {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    fn next(&self) -> u32 {
        let mut s = self.seq.lock().unwrap();
        *s += 1;
        *s
    }

    /// A request of team-a placed by its developer, waiting for a lead's approval.
    async fn awaiting(&self) -> String {
        self.awaiting_named().await.0
    }

    async fn awaiting_named(&self) -> (String, String) {
        let name = format!("acc{}", self.next());
        let (s, r) = self
            .send(
                1,
                "POST",
                "/api/paved/v1/requests",
                Some(json!({"offering": "redis-cache", "values": cache(&name)})),
            )
            .await;
        assert_eq!(
            (s, r["status"].as_str()),
            (201, Some("awaiting_approval")),
            "{r}"
        );
        (r["id"].as_str().unwrap().to_owned(), name)
    }

    /// A ready resource of team-a (with the successful request that created it and sealed
    /// credentials), written straight into paved's database: nothing is provisioned.
    async fn resource(&self, status: ResourceStatus) -> String {
        // Named as ordered: an update keeps the name.
        let (req, id) = self.awaiting_named().await;
        let now = chrono::Utc::now();
        resource::Entity::insert(resource::ActiveModel {
            id: Set(id.clone()),
            entity_name: Set(format!("{id}-dev")),
            offering: Set("redis-cache".into()),
            offering_version: Set("1".into()),
            resource_type: Set("cache".into()),
            environment: Set("dev".into()),
            owner: Set(TEAM_A.into()),
            system: Set(None),
            component: Set(None),
            status: Set(status),
            desired: Set(json!({})),
            outputs: Set(json!({})),
            monthly_cost_cents: Set(Some(1500)),
            expires_at: Set(None),
            request_id: Set(req.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
            catalog_bucket: Set(paved::vocab::bucket::bucket_of(&id)),
        })
        .exec(&self.db)
        .await
        .unwrap();
        request::Entity::update_many()
            .col_expr(
                request::Column::Status,
                sea_orm::sea_query::Expr::value("succeeded"),
            )
            .col_expr(
                request::Column::ResourceId,
                sea_orm::sea_query::Expr::value(id.clone()),
            )
            .filter(request::Column::Id.eq(req))
            .exec(&self.db)
            .await
            .unwrap();
        let sealed = paved::vocab::secret_box::SecretBox::from_base64(&self.key)
            .unwrap()
            .seal(
                br#"{"cache":{"password":"x"}}"#,
                &format!("{id}/credentials"),
            );
        secret::Entity::insert(secret::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            resource_id: Set(id.clone()),
            name: Set("credentials".into()),
            key_id: Set(sealed.key_id),
            nonce: Set(sealed.nonce),
            ciphertext: Set(sealed.ciphertext),
            created_at: Set(now),
        })
        .exec(&self.db)
        .await
        .unwrap();
        id
    }
}

fn cache(name: &str) -> Value {
    json!({"name": name, "environment": "dev", "owner": "team-a", "cost_center": "ENG-1234"})
}

/// Calls `route` (a "METHOD /path" key) as persona `who`, on objects made for the call, and
/// returns the status.
async fn call(ctx: &Ctx, route: &str, who: usize) -> u16 {
    let api = "/api/paved/v1";
    let (method, path) = route.split_once(' ').unwrap();
    let fresh_request = || ctx.awaiting();
    let (m, p, body): (&str, String, Option<Value>) = match route {
        "GET /v1/offerings" => (method, format!("{api}/offerings"), None),
        "GET /v1/offerings/{name}" => (method, format!("{api}/offerings/redis-cache"), None),
        "GET /v1/policies" => (method, format!("{api}/policies"), None),
        "POST /v1/policies/evaluate" => {
            (method, format!("{api}/policies/evaluate"), Some(json!({})))
        }
        "POST /v1/estimates" => (
            method,
            format!("{api}/estimates"),
            Some(json!({"offering": "redis-cache", "values": cache("est")})),
        ),
        "GET /v1/requests" => (method, format!("{api}/requests"), None),
        "POST /v1/requests" => (
            method,
            format!("{api}/requests"),
            Some(
                json!({"offering": "redis-cache", "values": cache(&format!("ord{}", ctx.next()))}),
            ),
        ),
        "GET /v1/requests/{id}"
        | "GET /v1/requests/{id}/approvals"
        | "GET /v1/requests/{id}/logs" => {
            let id = fresh_request().await;
            (
                method,
                format!("/api/paved{}", path.replace("{id}", &id)),
                None,
            )
        }
        "POST /v1/requests/{id}/approve"
        | "POST /v1/requests/{id}/reject"
        | "POST /v1/requests/{id}/cancel" => {
            let id = fresh_request().await;
            (
                method,
                format!("/api/paved{}", path.replace("{id}", &id)),
                None,
            )
        }
        "GET /v1/resources" => (method, format!("{api}/resources"), None),
        "GET /v1/resources/{id}"
        | "GET /v1/resources/{id}/cost"
        | "GET /v1/resources/{id}/credentials"
        | "GET /v1/resources/{id}/drift"
        | "DELETE /v1/resources/{id}" => {
            let id = ctx.resource(ResourceStatus::Ready).await;
            (
                method,
                format!("/api/paved{}", path.replace("{id}", &id)),
                None,
            )
        }
        "PATCH /v1/resources/{id}" => {
            let id = ctx.resource(ResourceStatus::Ready).await;
            (
                method,
                format!("{api}/resources/{id}"),
                Some(json!({"values": {"access": "read-only"}})),
            )
        }
        // Without a TTL (409 once authorized) and not ready (drift: 409 once authorized):
        // authorization is decided before either.
        "POST /v1/resources/{id}/extend" => {
            let id = ctx.resource(ResourceStatus::Ready).await;
            (
                method,
                format!("{api}/resources/{id}/extend"),
                Some(json!({"hours": 1})),
            )
        }
        "POST /v1/resources/{id}/drift/check" | "POST /v1/resources/{id}/drift/revert" => {
            let id = ctx.resource(ResourceStatus::Provisioning).await;
            (
                method,
                format!("/api/paved{}", path.replace("{id}", &id)),
                None,
            )
        }
        "POST /v1/resources/{id}/drift/accept" => {
            let id = ctx.resource(ResourceStatus::Ready).await;
            (method, format!("{api}/resources/{id}/drift/accept"), None)
        }
        "GET /v1/teams/{team}/budget"
        | "GET /v1/teams/{team}/spend"
        | "GET /v1/teams/{team}/unused" => (
            method,
            format!("/api/paved{}", path.replace("{team}", "team-a")),
            None,
        ),
        "PUT /v1/teams/{team}/budget" => (
            method,
            format!("{api}/teams/team-a/budget"),
            Some(json!({"monthlyLimit": 1000})),
        ),
        "GET /v1/metrics/platform" => (method, format!("{api}/metrics/platform"), None),
        "GET /v1/audit" => (method, format!("{api}/audit"), None),
        "GET /v1/catalog/changes" => (method, format!("{api}/catalog/changes"), None),
        "GET /v1/cost-insights/entity/{namespace}/{kind}/{name}/{intervals}" => (
            method,
            format!("{api}/cost-insights/entity/default/group/team-a/R2%2FP7D%2F2026-11-20"),
            None,
        ),
        "GET /v1/cost-insights/entity/{namespace}/{kind}/{name}/{r}/{p}/{d}" => (
            method,
            format!("{api}/cost-insights/entity/default/group/team-a/R2/P7D/2026-11-20"),
            None,
        ),
        "GET /.backstage/actions/v1/actions" => (method, format!("/api/paved{path}"), None),
        // Each action has its own rows (see `action`); the v1 route is the same invoke.
        "POST /.backstage/actions/v1/actions/{id}/invoke" => (
            method,
            "/api/paved/.backstage/actions/v1/actions/paved:estimate/invoke".into(),
            Some(json!({"offering": "redis-cache", "values": cache("est")})),
        ),
        "GET /catalog/entities.yaml" => (method, "/api/paved/catalog/entities.yaml".into(), None),
        "GET /catalog/pages/{file}" => (method, "/api/paved/catalog/pages/0.yaml".into(), None),
        "GET /catalog/resources/{file}" => {
            let id = ctx.resource(ResourceStatus::Ready).await;
            (
                method,
                format!("/api/paved/catalog/resources/{id}.yaml"),
                None,
            )
        }
        "GET /.backstage/auth/v1/jwks.json" | "GET /docs" | "GET /openapi.json" => {
            (method, format!("/api/paved{path}"), None)
        }
        "GET /terraform/state/{resource}/{part}"
        | "POST /terraform/state/{resource}/{part}"
        | "LOCK /terraform/state/{resource}/{part}"
        | "UNLOCK /terraform/state/{resource}/{part}" => {
            let id = ctx.resource(ResourceStatus::Ready).await;
            let body = (method != "GET").then(|| json!({"ID": "x", "serial": 1, "lineage": "l"}));
            (method, format!("/api/paved/terraform/state/{id}/db"), body)
        }
        "GET /.backstage/health/v1/liveness"
        | "GET /.backstage/health/v1/readiness"
        | "GET /metrics" => (method, path.to_owned(), None),
        _ => panic!("no row for {route}: decide who may call it, then add it here and to ROWS"),
    };
    let (status, body) = ctx.send(who, m, &p, body).await;
    if std::env::var("ACCESS_DEBUG").is_ok() && status >= 400 {
        eprintln!("{route} as {}: {status} {body}", PERSONAS[who]);
    }
    status
}

/// Invokes action `name` over the Actions Registry (v2) as persona `who`.
async fn action(ctx: &Ctx, name: &str, who: usize) -> u16 {
    let input = match name {
        "estimate" => json!({"offering": "redis-cache", "values": cache("est")}),
        "provision" => {
            json!({"offering": "redis-cache", "values": cache(&format!("act{}", ctx.next())), "idempotencyKey": format!("k{}", ctx.next())})
        }
        "wait" => json!({"requestId": ctx.awaiting().await}),
        "destroy" => json!({"resourceId": ctx.resource(ResourceStatus::Ready).await}),
        "update" => {
            json!({"resourceId": ctx.resource(ResourceStatus::Ready).await, "values": {"access": "read-only"}})
        }
        "extend-ttl" => {
            json!({"resourceId": ctx.resource(ResourceStatus::Ready).await, "hours": 1})
        }
        _ => panic!("no row for action paved:{name}: decide who may invoke it, then add it"),
    };
    let path = format!("/api/paved/.backstage/actions/v2/actions/paved:{name}/invoke");
    ctx.send(who, "POST", &path, Some(json!({"input": input})))
        .await
        .0
}

/// Expected status per persona, in the order of `PERSONAS`.
const ROWS: &[(&str, [u16; 6])] = &[
    // Public reading: the catalog of offerings and policies, estimates.
    ("GET /v1/offerings", [200, 200, 200, 200, 200, 200]),
    ("GET /v1/offerings/{name}", [200, 200, 200, 200, 200, 200]),
    ("GET /v1/policies", [200, 200, 200, 200, 200, 200]),
    ("POST /v1/policies/evaluate", [200, 200, 200, 200, 200, 200]),
    ("POST /v1/estimates", [200, 200, 200, 200, 200, 200]),
    // Lists answer everyone, with what each may see (checked below).
    ("GET /v1/requests", [200, 200, 200, 200, 200, 200]),
    ("GET /v1/resources", [200, 200, 200, 200, 200, 200]),
    ("GET /v1/audit", [200, 200, 200, 200, 200, 200]),
    // Ordering for team-a: its members, platform-admins, and the anonymous trial user.
    ("POST /v1/requests", [201, 201, 403, 201, 201, 403]),
    // A request of team-a placed by its developer.
    ("GET /v1/requests/{id}", [404, 200, 404, 200, 200, 404]),
    (
        "GET /v1/requests/{id}/approvals",
        [404, 200, 404, 200, 200, 404],
    ),
    ("GET /v1/requests/{id}/logs", [404, 200, 404, 200, 200, 404]),
    // Nobody decides their own request; the lead of the team and platform-admins decide.
    (
        "POST /v1/requests/{id}/approve",
        [404, 403, 404, 200, 200, 404],
    ),
    (
        "POST /v1/requests/{id}/reject",
        [404, 403, 404, 200, 200, 404],
    ),
    (
        "POST /v1/requests/{id}/cancel",
        [404, 200, 404, 200, 200, 404],
    ),
    // A resource of team-a.
    ("GET /v1/resources/{id}", [404, 200, 404, 200, 200, 404]),
    (
        "GET /v1/resources/{id}/cost",
        [404, 200, 404, 200, 200, 404],
    ),
    (
        "GET /v1/resources/{id}/credentials",
        [404, 200, 404, 200, 200, 404],
    ),
    (
        "GET /v1/resources/{id}/drift",
        [404, 200, 404, 200, 200, 404],
    ),
    ("DELETE /v1/resources/{id}", [404, 202, 404, 202, 202, 404]),
    ("PATCH /v1/resources/{id}", [404, 202, 404, 202, 202, 404]),
    // 409 once authorized: no TTL to extend, not ready to check or revert.
    (
        "POST /v1/resources/{id}/extend",
        [404, 409, 404, 409, 409, 404],
    ),
    (
        "POST /v1/resources/{id}/drift/check",
        [404, 409, 404, 409, 409, 404],
    ),
    (
        "POST /v1/resources/{id}/drift/revert",
        [404, 409, 404, 409, 409, 404],
    ),
    // 409 once authorized: nothing to accept.
    (
        "POST /v1/resources/{id}/drift/accept",
        [404, 409, 404, 409, 409, 404],
    ),
    // Team-a's money: its members and platform-admins; setting a budget: platform-admins.
    (
        "GET /v1/teams/{team}/budget",
        [404, 200, 404, 200, 200, 404],
    ),
    (
        "PUT /v1/teams/{team}/budget",
        [404, 403, 404, 403, 200, 404],
    ),
    ("GET /v1/teams/{team}/spend", [404, 200, 404, 200, 200, 404]),
    (
        "GET /v1/teams/{team}/unused",
        [404, 200, 404, 200, 200, 404],
    ),
    (
        "GET /v1/cost-insights/entity/{namespace}/{kind}/{name}/{intervals}",
        [404, 200, 404, 200, 200, 404],
    ),
    (
        "GET /v1/cost-insights/entity/{namespace}/{kind}/{name}/{r}/{p}/{d}",
        [404, 200, 404, 200, 200, 404],
    ),
    // Every team at once: platform-admins.
    ("GET /v1/metrics/platform", [401, 403, 403, 403, 200, 403]),
    // Backstage's protocols and documents.
    (
        "GET /.backstage/actions/v1/actions",
        [200, 200, 200, 200, 200, 200],
    ),
    (
        "POST /.backstage/actions/v1/actions/{id}/invoke",
        [200, 200, 200, 200, 200, 200],
    ),
    ("POST /.backstage/actions/v2/actions/{id}/invoke", [0; 6]), // per action, ACTION_ROWS
    // The catalog documents hold what Backstage shows every signed-in user (no secrets).
    ("GET /catalog/entities.yaml", [200, 200, 200, 200, 200, 200]),
    // The same entities as a change feed, for Backstage's entity provider.
    ("GET /v1/catalog/changes", [200, 200, 200, 200, 200, 200]),
    ("GET /catalog/pages/{file}", [200, 200, 200, 200, 200, 200]),
    (
        "GET /catalog/resources/{file}",
        [200, 200, 200, 200, 200, 200],
    ),
    (
        "GET /.backstage/auth/v1/jwks.json",
        [200, 200, 200, 200, 200, 200],
    ),
    // Terraform's state: only the CLI runs paved starts, with their own basic credentials;
    // no user or plugin token opens it, not even a platform-admin's.
    (
        "GET /terraform/state/{resource}/{part}",
        [401, 401, 401, 401, 401, 401],
    ),
    (
        "POST /terraform/state/{resource}/{part}",
        [401, 401, 401, 401, 401, 401],
    ),
    (
        "LOCK /terraform/state/{resource}/{part}",
        [401, 401, 401, 401, 401, 401],
    ),
    (
        "UNLOCK /terraform/state/{resource}/{part}",
        [401, 401, 401, 401, 401, 401],
    ),
    ("GET /docs", [200, 200, 200, 200, 200, 200]),
    ("GET /openapi.json", [200, 200, 200, 200, 200, 200]),
    (
        "GET /.backstage/health/v1/liveness",
        [200, 200, 200, 200, 200, 200],
    ),
    (
        "GET /.backstage/health/v1/readiness",
        [200, 200, 200, 200, 200, 200],
    ),
    // Every team's costs: the scrape token and platform-admins; without credentials 401.
    ("GET /metrics", [401, 404, 404, 404, 200, 404]),
];

const ACTION_ROWS: &[(&str, [u16; 6])] = &[
    ("estimate", [200, 200, 200, 200, 200, 200]),
    ("provision", [200, 200, 403, 200, 200, 403]),
    // 409 once authorized: the request waits for approval, which the task must not hide.
    ("wait", [404, 409, 404, 409, 409, 404]),
    ("destroy", [404, 200, 404, 200, 200, 404]),
    ("update", [404, 200, 404, 200, 200, 404]),
    ("extend-ttl", [404, 409, 404, 409, 409, 404]),
];

async fn ctx() -> (TestDb, Ctx) {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let (jwks, plugin) = plugin_token().await;
    let mut s = settings(&db.url);
    s.auth.allow_anonymous = Some(true);
    s.auth.static_tokens = vec![
        static_token("dev-a", "dev-a", &["developer"], &["team-a"]),
        static_token("dev-b", "dev-b", &["developer"], &["team-b"]),
        static_token("lead-a", "lead-a", &["developer", "lead"], &["team-a"]),
        static_token("admin", "admin", &["platform-admin"], &[]),
    ];
    s.backstage.base_url = Some(jwks);
    s.backstage.wait_seconds = 0;
    s.auth.catalog_groups_ttl_seconds = 0;
    // Every order waits for a lead's approval, so deciding can be tried by everyone.
    s.policies.data = json!({"guardrails": {"approval": {"above_monthly": 0}}});
    let key = s.secrets.key.clone().unwrap().expose().to_owned();
    let app = TestApp::spawn(s).await;
    let conn = paved::db::connect(&settings(&db.url).database)
        .await
        .unwrap();
    let tokens = [
        None,
        Some("dev-a".into()),
        Some("dev-b".into()),
        Some("lead-a".into()),
        Some("admin".into()),
        Some(plugin),
    ];
    let ctx = Ctx {
        app,
        db: conn,
        tokens,
        key,
        seq: Mutex::new(0),
    };
    (db, ctx)
}

#[tokio::test]
async fn every_route_and_action_by_every_persona() {
    let (_db, ctx) = ctx().await;

    // Every route the router serves: the document's and the ones it leaves out.
    let doc = paved::api::openapi();
    let mut routes: BTreeSet<String> = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        for (method, op) in [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ] {
            if op.is_some() {
                routes.insert(format!("{method} {path}"));
            }
        }
    }
    for (method, path) in paved::api::paths::UNDER_PLUGIN
        .iter()
        .chain(paved::api::paths::AT_ROOT)
    {
        routes.insert(format!("{method} {path}"));
    }
    let rows: BTreeMap<&str, [u16; 6]> = ROWS.iter().copied().collect();
    let missing: Vec<&String> = routes
        .iter()
        .filter(|r| !rows.contains_key(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without an authorization row: {missing:?}"
    );
    let stale: Vec<&&str> = rows.keys().filter(|r| !routes.contains(**r)).collect();
    assert!(
        stale.is_empty(),
        "rows for routes the router does not serve: {stale:?}"
    );

    let mut wrong = vec![];
    for (route, expected) in ROWS {
        if route.starts_with("POST /.backstage/actions/v2/") {
            continue;
        }
        for (who, want) in expected.iter().enumerate() {
            let got = call(&ctx, route, who).await;
            if got != *want {
                wrong.push(format!(
                    "{route} as {}: got {got}, expected {want}",
                    PERSONAS[who]
                ));
            }
        }
    }

    // Every action the registry lists has a row.
    let (_, list) = ctx
        .send(4, "GET", "/api/paved/.backstage/actions/v1/actions", None)
        .await;
    let listed: BTreeSet<String> = list["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    let with_rows: BTreeSet<String> = ACTION_ROWS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        listed, with_rows,
        "every listed action needs a row, and only those"
    );
    for (name, expected) in ACTION_ROWS {
        for (who, want) in expected.iter().enumerate() {
            let got = action(&ctx, name, who).await;
            if got != *want {
                wrong.push(format!(
                    "action paved:{name} as {}: got {got}, expected {want}",
                    PERSONAS[who]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    ctx.app.stop().await;
}

#[tokio::test]
async fn lists_show_each_persona_only_what_it_may_see() {
    let (_db, ctx) = ctx().await;
    let theirs = ctx.awaiting().await;
    let res = ctx.resource(ResourceStatus::Ready).await;
    // The anonymous trial user's own order is its to see; nobody else's is.
    let (s, own) = ctx
        .send(
            0,
            "POST",
            "/api/paved/v1/requests",
            Some(json!({"offering": "redis-cache", "values": cache("mine")})),
        )
        .await;
    assert_eq!(s, 201, "{own}");
    let own = own["id"].as_str().unwrap().to_owned();

    let ids = |v: &Value, key: &str| -> BTreeSet<String> {
        let items = &v["items"];
        items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[key].as_str().unwrap().to_owned())
            .collect()
    };
    for (who, persona) in PERSONAS.iter().enumerate() {
        let (_, requests) = ctx.send(who, "GET", "/api/paved/v1/requests", None).await;
        let (_, resources) = ctx.send(who, "GET", "/api/paved/v1/resources", None).await;
        let (_, audit) = ctx.send(who, "GET", "/api/paved/v1/audit", None).await;
        let sees_team_a = [1, 3, 4].contains(&who);
        assert_eq!(
            ids(&requests, "id").contains(&theirs),
            sees_team_a,
            "{} and team-a's request: {requests}",
            persona
        );
        assert_eq!(
            ids(&requests, "id").contains(&own),
            sees_team_a || who == 0,
            "{} and the anonymous order: {requests}",
            persona
        );
        assert_eq!(
            ids(&resources, "id").contains(&res),
            sees_team_a,
            "{}: {resources}",
            persona
        );
        let targets: Vec<&str> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["target"].as_str())
            .collect();
        assert_eq!(
            targets.contains(&format!("request:{theirs}").as_str()),
            sees_team_a,
            "{} and team-a's audit trail: {targets:?}",
            persona
        );
    }

    // An estimate for team-a shows its budget to those who may see team-a only.
    for (who, persona) in PERSONAS.iter().enumerate() {
        let (_, e) = ctx
            .send(
                who,
                "POST",
                "/api/paved/v1/estimates",
                Some(json!({"offering": "redis-cache", "values": cache("est")})),
            )
            .await;
        assert_eq!(
            e["budget"].is_object(),
            [1, 3, 4].contains(&who),
            "{}: {e}",
            persona
        );
    }
    ctx.app.stop().await;
}

#[tokio::test]
async fn a_plugin_without_a_user_gets_what_configuration_grants_it() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let (jwks, plugin) = plugin_token().await;
    let mut s = settings(&db.url);
    s.auth.allow_anonymous = Some(false);
    s.backstage.base_url = Some(jwks);
    s.auth.catalog_groups_ttl_seconds = 0;
    s.auth
        .groups
        .insert("plugin:scaffolder".into(), vec!["team-a".into()]);
    let app = TestApp::spawn(s).await;
    let (s, r) = common::kit::order_as(&app, &plugin, "redis-cache", cache("granted")).await;
    assert_eq!(s, 201, "granted team-a, it orders for team-a: {r}");
    let spend = app
        .client
        .get(app.api("/teams/team-a/spend"))
        .bearer_auth(&plugin)
        .send()
        .await
        .unwrap();
    assert_eq!(spend.status().as_u16(), 200);
    let (s, _) = common::kit::order_as(&app, &plugin, "redis-cache", json!({"name": "other", "environment": "dev", "owner": "team-b", "cost_center": "ENG-1234"})).await;
    assert_eq!(s, 403, "but not for team-b");
    app.stop().await;
}

#[tokio::test]
async fn anonymous_access_beyond_loopback_must_be_asked_for() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = settings(&db.url);
    s.server.listen = "0.0.0.0:0".parse().unwrap();
    s.auth.allow_anonymous = None;
    let err = paved::app::Application::build(s)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("auth.allow_anonymous")
            && err.contains("0.0.0.0:0")
            && err.contains("loopback"),
        "{err}"
    );
    // On loopback the trial default stays: a call without a token is the anonymous caller.
    let mut s = settings(&db.url);
    s.auth.allow_anonymous = None;
    let app = TestApp::spawn(s).await;
    let (status, _) = app.get_json("/offerings").await;
    assert_eq!(status, 200);
    app.stop().await;
}
