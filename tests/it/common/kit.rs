//! Helpers for tests that provision for real: ordering, waiting, tearing down what the engine
//! created, and a recording stand-in for Backstage's HTTP APIs (and a webhook receiver).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use paved::config::Settings;
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
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// Orders as `token`; returns (status, body).
pub async fn order_as(app: &TestApp, token: &str, offering: &str, values: Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.api("/requests"))
        .bearer_auth(token)
        .json(&json!({"offering": offering, "values": values}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Orders as alice and expects the request to be stored; returns its id.
pub async fn order(app: &TestApp, offering: &str, values: Value) -> String {
    let (status, body) = order_as(app, "alice-token", offering, values).await;
    assert!(status == 201, "{status}: {body}");
    body["id"].as_str().unwrap().to_owned()
}

pub async fn wait_final(app: &TestApp, id: &str) -> Value {
    for _ in 0..300 {
        let (_, r) = app.get_json(&format!("/requests/{id}")).await;
        if ["succeeded", "failed", "cancelled", "rejected", "denied"]
            .contains(&r["status"].as_str().unwrap_or(""))
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("request {id} did not finish within 30 s");
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

/// A request with a token.
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
    let mut r = app
        .client
        .request(method.try_into().unwrap(), app.api(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// One call the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub authorization: String,
    pub body: Value,
}

/// A stand-in for Backstage's notifications API (`POST /api/notifications/notifications`) and
/// catalog refresh (`POST /api/catalog/refresh`), and a webhook receiver (`POST /hook`): it
/// records every call and answers 500 to the first `fail_first[path]` calls of a path.
#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    fail_first: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Recorder {
    pub async fn start() -> Self {
        use axum::{
            Json, Router,
            extract::State,
            http::{HeaderMap, StatusCode, Uri},
            routing::post,
        };
        type Shared = (Arc<Mutex<Vec<Call>>>, Arc<Mutex<BTreeMap<String, usize>>>);
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let fail_first: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        async fn record(
            State((calls, fail)): State<Shared>,
            uri: Uri,
            headers: HeaderMap,
            Json(body): Json<Value>,
        ) -> StatusCode {
            let path = uri.path().to_owned();
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            calls.lock().unwrap().push(Call {
                path: path.clone(),
                authorization: auth,
                body,
            });
            let mut fail = fail.lock().unwrap();
            match fail.get_mut(&path) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::OK,
            }
        }
        let app = Router::new()
            .route("/api/notifications/notifications", post(record))
            .route("/api/catalog/refresh", post(record))
            .route("/hook", post(record))
            .with_state((calls.clone(), fail_first.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            calls,
            fail_first,
        }
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
