//! A user's teams come from Backstage's catalog; a lookup that fails is retried, then answered
//! 503, never taken as "member of no team". The catalog and Backstage's auth key set are a
//! local stand-in.

use crate::common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use common::{Engine, TestApp, TestDb, settings};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use ring::{rand::SystemRandom, signature};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Catalog {
    auth: Arc<Mutex<Vec<Jwk>>>,
    /// How many more lookups of a user fail with 503 before it answers (absent: never fails).
    failures_left: Arc<Mutex<HashMap<String, u32>>>,
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

async fn user_entity(State(c): State<Catalog>, Path(name): Path<String>) -> Response {
    *c.calls.lock().unwrap().entry(name.clone()).or_default() += 1;
    if name == "guest" {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(left) = c.failures_left.lock().unwrap().get_mut(&name)
        && *left > 0
    {
        *left -= 1;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "User",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"memberOf": []},
        "relations": [{"type": "memberOf", "targetRef": "group:default/team-a"}]
    }))
    .into_response()
}

async fn catalog_server(c: Catalog) -> String {
    let app = Router::new()
        .route(
            "/api/auth/.well-known/jwks.json",
            get(|State(c): State<Catalog>| async move {
                Json(json!({"keys": *c.auth.lock().unwrap()}))
            }),
        )
        .route(
            "/api/catalog/entities/by-name/user/default/{name}",
            get(user_entity),
        )
        .with_state(c);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn user_token(enc: &EncodingKey, user: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("vnd.backstage.user".into());
    h.kid = Some("auth-1".into());
    let claims = json!({"sub": user, "aud": "backstage", "iat": now, "exp": now + 600});
    jsonwebtoken::encode(&h, &claims, enc).unwrap()
}

async fn order(app: &TestApp, token: &str, name: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.api("/requests"))
        .bearer_auth(token)
        .json(&json!({"offering": "redis-cache", "values": {"name": name, "owner": "team-a", "cost_center": "ENG-1234"}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_failed_team_lookup_is_retried_then_answered_503_never_taken_as_no_teams() {
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &SystemRandom::new(),
    )
    .unwrap();
    let enc = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("auth-1".into());
    let catalog = Catalog::default();
    catalog.auth.lock().unwrap().push(jwk);
    let failures = |user: &str, n: u32| {
        catalog.failures_left.lock().unwrap().insert(user.into(), n);
    };
    failures("bob", 2);
    failures("carol", u32::MAX);
    let backstage = catalog_server(catalog.clone()).await;

    let db = TestDb::new(Engine::Sqlite).await;
    let mut s = settings(&db.url);
    s.backstage.base_url = Some(backstage.clone());
    s.auth.allow_anonymous = Some(false);
    // Ready means paved's signing key is loaded: its catalog calls are signed from the start.
    let app = TestApp::spawn(s).await;
    let calls = |user: &str| catalog.calls.lock().unwrap().get(user).copied();

    // Two failures, then an answer: bob is a member of team-a on the first request.
    let (status, body) = order(&app, &user_token(&enc, "user:default/bob"), "bob-cache").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(calls("bob"), Some(3));

    // A catalog that keeps failing: 503 naming the cause, not a 403 for a user without teams.
    let carol = user_token(&enc, "user:default/carol");
    let (status, body) = order(&app, &carol, "carol-cache").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["name"], "ServiceUnavailableError", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Backstage's catalog"),
        "{body}"
    );
    // Reads too: a list that answered with no teams would look empty instead.
    let r = app
        .client
        .get(app.api("/resources"))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // Once the catalog answers again, so does paved (failures are not cached).
    failures("carol", 0);
    let (status, body) = order(&app, &carol, "carol-cache").await;
    assert_eq!(status, 201, "{body}");

    // No User entity (the guest user) legitimately means no catalog teams.
    let (status, body) = order(&app, &user_token(&enc, "user:default/guest"), "guest-cache").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(calls("guest"), Some(1));
    app.stop().await;
}
