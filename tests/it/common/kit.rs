//! Helpers for tests that provision for real: ordering, waiting, tearing down what the engine
//! created, and a recording stand-in for Backstage's HTTP APIs (and a webhook receiver).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use paved::{config::Settings, vocab::status::RequestStatus};
use serde_json::{Value, json};

use super::TestApp;

/// Settings with `workers` provisioning workers and three callers: alice (developer, team-a),
/// mallory (developer, team-b), dave (platform-admin), lena (lead, team-a).
pub fn with_workers(mut s: Settings, workers: usize) -> Settings {
    s.engine.workers = workers;
    s.engine.poll_seconds = 1;
    s.auth.allow_anonymous = Some(true);
    s.auth.static_tokens = vec![
        super::static_token("alice", "alice-token", &["developer"], &["team-a"]),
        super::static_token("mallory", "mallory-token", &["developer"], &["team-b"]),
        super::static_token("dave", "dave-token", &["platform-admin"], &[]),
        super::static_token("lena", "lena-token", &["lead"], &["team-a"]),
    ];
    s
}

/// A short unique name (offerings build database and key names from it).
pub fn unique() -> String {
    unique_with("t")
}

/// Orders as `token`; returns (status, body).
pub async fn order_as(app: &TestApp, token: &str, offering: &str, values: Value) -> (u16, Value) {
    app.as_(token).order(offering, values).await.pair()
}

/// Orders as alice and expects the request to be stored; returns its id.
pub async fn order(app: &TestApp, offering: &str, values: Value) -> String {
    let r = app.as_("alice-token").order(offering, values).await;
    assert!(r.status == 201, "{}: {}", r.status, r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

/// Waits (at most 30 s) until the request is final; returns it as the observer reads it.
pub async fn wait_final(app: &TestApp, id: &str) -> Value {
    wait_final_within(app, id, Duration::from_secs(30)).await
}

/// As `wait_final`, for orders against servers that answer slowly on purpose.
pub async fn wait_final_within(app: &TestApp, id: &str, within: Duration) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (_, r) = app.get_json(&format!("/requests/{id}")).await;
        // Final as the crate itself decides it, not as a list of strings kept here.
        if RequestStatus::parse(r["status"].as_str().unwrap_or("")).is_some_and(|s| s.is_final()) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "request {id} not final within {within:?}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a call answered. An error status always comes in Backstage's envelope: every call
/// through [`Caller`] checks that, so no test has to remember to.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    pub fn pair(self) -> (u16, Value) {
        (self.status, self.body)
    }

    /// The request id of a stored order (asserting it was stored).
    pub fn created_id(&self) -> String {
        assert_eq!(self.status, 201, "{}", self.body);
        self.body["id"].as_str().unwrap().to_owned()
    }
}

/// Someone calling paved's API: `app.as_("alice-token")` or `app.anonymous()`.
pub struct Caller<'a> {
    app: &'a TestApp,
    token: Option<&'a str>,
}

impl TestApp {
    pub fn as_<'a>(&'a self, token: &'a str) -> Caller<'a> {
        Caller {
            app: self,
            token: Some(token),
        }
    }

    pub fn anonymous(&self) -> Caller<'_> {
        Caller {
            app: self,
            token: None,
        }
    }

    /// As `as_` for a token that may be absent.
    pub fn caller<'a>(&'a self, token: Option<&'a str>) -> Caller<'a> {
        Caller { app: self, token }
    }
}

impl Caller<'_> {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut r = self.app.client.request(method.clone(), self.app.api(path));
        if let Some(t) = self.token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            assert!(
                body["error"]["name"].is_string() && body["response"]["statusCode"] == status,
                "{method} {path}: {status} not in Backstage's error shape: {body}"
            );
        }
        Response { status, body }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// `POST /requests` of a create.
    pub async fn order(&self, offering: &str, values: Value) -> Response {
        self.post(
            "/requests",
            &json!({"offering": offering, "values": values}),
        )
        .await
    }

    pub async fn request(&self, id: &str) -> Response {
        self.get(&format!("/requests/{id}")).await
    }

    pub async fn resource(&self, id: &str) -> Response {
        self.get(&format!("/resources/{id}")).await
    }

    pub async fn approve(&self, id: &str) -> Response {
        self.post(&format!("/requests/{id}/approve"), &json!({}))
            .await
    }

    pub async fn cancel(&self, id: &str) -> Response {
        self.post(&format!("/requests/{id}/cancel"), &json!({}))
            .await
    }

    pub async fn delete_resource(&self, id: &str) -> Response {
        self.delete(&format!("/resources/{id}")).await
    }

    pub async fn credentials(&self, id: &str) -> Response {
        self.get(&format!("/resources/{id}/credentials")).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn estimate(&self, offering: &str, values: Value) -> Response {
        self.post(
            "/estimates",
            &json!({"offering": offering, "values": values}),
        )
        .await
    }

    pub async fn offerings(&self) -> Response {
        self.get("/offerings").await
    }

    pub async fn offering(&self, name: &str) -> Response {
        self.get(&format!("/offerings/{name}")).await
    }

    pub async fn requests(&self, query: &str) -> Response {
        self.get(&format!("/requests{query}")).await
    }

    pub async fn approvals(&self, id: &str) -> Response {
        self.get(&format!("/requests/{id}/approvals")).await
    }

    pub async fn reject(&self, id: &str, reason: &str) -> Response {
        self.post(
            &format!("/requests/{id}/reject"),
            &json!({"reason": reason}),
        )
        .await
    }

    pub async fn logs(&self, id: &str) -> Response {
        self.get(&format!("/requests/{id}/logs")).await
    }

    pub async fn resources(&self, query: &str) -> Response {
        self.get(&format!("/resources{query}")).await
    }

    /// `PATCH /resources/{id}`: an update with new values.
    pub async fn update_resource(&self, id: &str, values: Value) -> Response {
        self.patch(&format!("/resources/{id}"), &json!({"values": values}))
            .await
    }

    pub async fn cost(&self, id: &str) -> Response {
        self.get(&format!("/resources/{id}/cost")).await
    }

    pub async fn extend(&self, id: &str, hours: i64) -> Response {
        self.post(&format!("/resources/{id}/extend"), &json!({"hours": hours}))
            .await
    }

    pub async fn drift(&self, id: &str) -> Response {
        self.get(&format!("/resources/{id}/drift")).await
    }

    /// `POST /resources/{id}/drift/{check|accept|revert}`.
    pub async fn drift_action(&self, id: &str, action: &str) -> Response {
        self.post(&format!("/resources/{id}/drift/{action}"), &json!({}))
            .await
    }

    pub async fn budget(&self, team: &str) -> Response {
        self.get(&format!("/teams/{team}/budget")).await
    }

    pub async fn set_budget(&self, team: &str, monthly: f64) -> Response {
        self.put(
            &format!("/teams/{team}/budget"),
            &json!({"monthlyLimit": monthly}),
        )
        .await
    }

    pub async fn spend(&self, team: &str) -> Response {
        self.get(&format!("/teams/{team}/spend")).await
    }

    pub async fn unused(&self, team: &str) -> Response {
        self.get(&format!("/teams/{team}/unused")).await
    }

    pub async fn audit(&self, query: &str) -> Response {
        self.get(&format!("/audit{query}")).await
    }

    pub async fn policies(&self) -> Response {
        self.get("/policies").await
    }

    /// `GET /catalog/changes?<query>`: the catalog feed (`after`, `limit`).
    pub async fn catalog_changes(&self, query: &str) -> Response {
        self.get(&format!("/catalog/changes?{query}")).await
    }

    pub async fn platform_metrics(&self) -> Response {
        self.get("/metrics/platform").await
    }
}

/// Calls `probe` until it returns Some (at most ~30 s), for state that settles in the
/// background.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not reached within 30 s");
}

/// A request with a token (the error envelope checked, see [`Caller::send`]).
pub async fn call<M>(
    app: &TestApp,
    method: M,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value)
where
    M: TryInto<reqwest::Method>,
    M::Error: std::fmt::Debug,
{
    app.caller(token)
        .send(method.try_into().unwrap(), path, body.as_ref())
        .await
        .pair()
}

/// A short unique name with `prefix` (offerings build database and key names from it).
pub fn unique_with(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// One call the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub authorization: String,
    pub body: Value,
}

/// A stand-in for Backstage's notifications API (`POST /api/notifications/notifications`),
/// catalog refresh (`POST /api/catalog/refresh`) and the catalog's entity look-up and delete
/// (`GET …/entities/by-name/…`, `DELETE …/entities/by-uid/…`, for the entities a test
/// declares with [`Recorder::knows`]), and a webhook receiver (`POST /hook`): it records every
/// call and answers 500 to the first `fail_first[path]` calls of a path.
#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    fail_first: Arc<Mutex<BTreeMap<String, usize>>>,
    /// The catalog's entities: entity ref → the resource id its annotation names.
    entities: Arc<Mutex<BTreeMap<String, String>>>,
}

type Shared = (
    Arc<Mutex<Vec<Call>>>,
    Arc<Mutex<BTreeMap<String, usize>>>,
    Arc<Mutex<BTreeMap<String, String>>>,
);

/// The uid the stand-in catalog gives an entity.
fn uid_of(entity_ref: &str) -> String {
    format!("uid-{}", entity_ref.replace([':', '/'], "-"))
}

impl Recorder {
    pub async fn start() -> Self {
        use axum::{
            Json, Router,
            extract::{Path, State},
            http::{HeaderMap, StatusCode, Uri},
            routing::{delete, get, post},
        };
        fn push(calls: &Mutex<Vec<Call>>, uri: &Uri, headers: &HeaderMap, body: Value) {
            let authorization = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            calls.lock().unwrap().push(Call {
                path: uri.path().to_owned(),
                authorization,
                body,
            });
        }
        async fn record(
            State((calls, fail, _)): State<Shared>,
            uri: Uri,
            headers: HeaderMap,
            Json(body): Json<Value>,
        ) -> StatusCode {
            push(&calls, &uri, &headers, body);
            let mut fail = fail.lock().unwrap();
            match fail.get_mut(uri.path()) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::OK,
            }
        }
        async fn by_name(
            State((calls, _, entities)): State<Shared>,
            Path((kind, namespace, name)): Path<(String, String, String)>,
            uri: Uri,
            headers: HeaderMap,
        ) -> Result<Json<Value>, StatusCode> {
            push(&calls, &uri, &headers, Value::Null);
            let entity_ref = format!("{kind}:{namespace}/{name}");
            let entities = entities.lock().unwrap();
            let resource_id = entities.get(&entity_ref).ok_or(StatusCode::NOT_FOUND)?;
            Ok(Json(json!({
                "kind": kind,
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": uid_of(&entity_ref),
                    "annotations": {"paved.dev/resource-id": resource_id},
                },
            })))
        }
        async fn by_uid(
            State((calls, _, entities)): State<Shared>,
            Path(uid): Path<String>,
            uri: Uri,
            headers: HeaderMap,
        ) -> StatusCode {
            push(&calls, &uri, &headers, Value::Null);
            let mut entities = entities.lock().unwrap();
            let before = entities.len();
            entities.retain(|r, _| uid_of(r) != uid);
            if entities.len() < before {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            }
        }
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let fail_first: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let entities: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let app = Router::new()
            .route("/api/notifications/notifications", post(record))
            .route("/api/catalog/refresh", post(record))
            .route(
                "/api/catalog/entities/by-name/{kind}/{namespace}/{name}",
                get(by_name),
            )
            .route("/api/catalog/entities/by-uid/{uid}", delete(by_uid))
            .route("/hook", post(record))
            .with_state((calls.clone(), fail_first.clone(), entities.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            calls,
            fail_first,
            entities,
        }
    }

    /// The stand-in catalog holds `entity_ref`, paved's entity of resource `resource_id`.
    pub fn knows(&self, entity_ref: &str, resource_id: &str) {
        self.entities
            .lock()
            .unwrap()
            .insert(entity_ref.to_owned(), resource_id.to_owned());
    }

    /// Whether the stand-in catalog still holds `entity_ref`.
    pub fn holds(&self, entity_ref: &str) -> bool {
        self.entities.lock().unwrap().contains_key(entity_ref)
    }

    /// The path of the delete that removes `entity_ref` from the stand-in catalog.
    pub fn delete_path_of(entity_ref: &str) -> String {
        format!("/api/catalog/entities/by-uid/{}", uid_of(entity_ref))
    }

    /// The first `n` calls to `path` fail with 500.
    pub fn fail_first(&self, path: &str, n: usize) {
        self.fail_first.lock().unwrap().insert(path.to_owned(), n);
    }

    pub fn calls(&self, path: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }

    /// Notifications Backstage received with `topic`, successful or not.
    pub fn notifications(&self, topic: &str) -> Vec<Call> {
        self.calls("/api/notifications/notifications")
            .into_iter()
            .filter(|c| c.body["payload"]["topic"] == topic)
            .collect()
    }

    /// Webhook calls with `topic`.
    pub fn hooks(&self, topic: &str) -> Vec<Call> {
        self.calls("/hook")
            .into_iter()
            .filter(|c| c.body["topic"] == topic)
            .collect()
    }
}

/// Points paved's Backstage and webhook at the recorder, with quick retries.
pub fn notify_to(s: &mut Settings, rec: &Recorder) {
    s.backstage.base_url = Some(rec.url.clone());
    s.backstage.token = Some("backstage-static-token".into());
    s.notifications.webhook_url = Some(format!("{}/hook", rec.url));
    s.notifications.webhook_token = Some("hook-token".into());
    s.notifications.retry_base_ms = 50;
    s.notifications.retry_max_seconds = 1;
    s.notifications.poll_seconds = 1;
}

/// The app's database, for what a test reads or arranges directly.
pub async fn db_of(url: &str) -> sea_orm::DatabaseConnection {
    let mut db = Settings::default().database;
    db.url = url.to_owned();
    paved::db::connect(&db).await.unwrap()
}

/// A Redis ACL user made behind paved's back (disabled, so nobody can log in with it), on
/// this machine's Redis; removed when dropped, whatever the test's outcome.
pub struct ForeignRedisUser(pub String);

impl ForeignRedisUser {
    pub async fn create(user: &str) -> Self {
        let mut admin = redis::Client::open("redis://127.0.0.1:6379")
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let guard = Self(user.to_owned());
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg("off")
            .query_async(&mut admin)
            .await
            .unwrap();
        guard
    }
}

impl Drop for ForeignRedisUser {
    fn drop(&mut self) {
        if let Ok(mut c) =
            redis::Client::open("redis://127.0.0.1:6379").and_then(|c| c.get_connection())
        {
            let _: Result<i64, _> = redis::cmd("ACL").arg("DELUSER").arg(&self.0).query(&mut c);
        }
    }
}

/// What a hand-written HTTP/1.1 exchange answered: the status line as sent (reqwest would
/// hide its reason phrase, which Backstage shows), the status, and the body.
pub struct RawResponse {
    pub status_line: String,
    pub status: u16,
    pub body: String,
}

/// One request over a plain TCP connection to `addr` (`host:port`), for what a client
/// library would hide or refuse: reason phrases, a process without reqwest's runtime.
pub fn raw_http(
    addr: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> RawResponse {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or("");
    let content = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{content}Connection: close\r\n\r\n{body}"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status_line = out.lines().next().unwrap_or_default().to_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    RawResponse {
        status_line,
        status,
        body: out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned(),
    }
}
