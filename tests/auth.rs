//! Backstage tokens: signed by test keys served from a local JWKS endpoint standing in for
//! Backstage's (`/api/<plugin>/.backstage/auth/v1/jwks.json`, `/api/auth/.well-known/jwks.json`).

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, extract::State, routing::get};
use base64::Engine as _;
use common::{Engine as DbEngine, TestApp, TestDb, settings};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use ring::{rand::SystemRandom, signature};
use serde_json::{Value, json};

struct Key {
    kid: String,
    enc: EncodingKey,
    jwk: Jwk,
    pkcs8: Vec<u8>,
}

fn key(kid: &str) -> Key {
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &SystemRandom::new(),
    )
    .unwrap();
    let enc = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    Key {
        kid: kid.into(),
        enc,
        jwk,
        pkcs8: pkcs8.as_ref().to_vec(),
    }
}

#[derive(Clone, Default)]
struct Published {
    scaffolder: Arc<Mutex<Vec<Jwk>>>,
    auth: Arc<Mutex<Vec<Jwk>>>,
}

/// A stand-in for Backstage's two JWKS endpoints, on a random local port.
async fn jwks_server(published: Published) -> String {
    let app = Router::new()
        .route(
            "/api/scaffolder/.backstage/auth/v1/jwks.json",
            get(|State(p): State<Published>| async move {
                Json(json!({"keys": *p.scaffolder.lock().unwrap()}))
            }),
        )
        .route(
            "/api/auth/.well-known/jwks.json",
            get(|State(p): State<Published>| async move {
                Json(json!({"keys": *p.auth.lock().unwrap()}))
            }),
        )
        .with_state(published);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(k: &Key, typ: &str, claims: Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some(typ.into());
    h.kid = Some(k.kid.clone());
    jsonwebtoken::encode(&h, &claims, &k.enc).unwrap()
}

fn plugin_token(plugin_key: &Key, obo: Option<String>, aud: &str, sub: &str, exp: u64) -> String {
    let mut claims = json!({"sub": sub, "aud": aud, "iat": now(), "exp": exp});
    if let Some(o) = obo {
        claims["obo"] = json!(o);
    }
    sign(plugin_key, "vnd.backstage.plugin", claims)
}

fn obo(user_key: &Key, user: &str) -> String {
    sign(
        user_key,
        "vnd.backstage.limited-user",
        json!({"sub": user, "iat": now(), "exp": now() + 600}),
    )
}

async fn order_as(app: &TestApp, token: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.api("/requests"))
        .bearer_auth(token)
        .json(&json!({"offering": "redis-cache", "values": {"name": "tokens", "owner": "team-a", "cost_center": "ENG-1234"}}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn whoami(app: &TestApp, token: &str) -> u16 {
    app.client
        .get(app.api("/requests"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn backstage_tokens_are_accepted_or_refused_as_they_should() {
    let published = Published::default();
    let (plugin_key, user_key) = (key("plugin-1"), key("auth-1"));
    published
        .scaffolder
        .lock()
        .unwrap()
        .push(plugin_key.jwk.clone());
    published.auth.lock().unwrap().push(user_key.jwk.clone());
    let backstage = jwks_server(published.clone()).await;

    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = settings(&db.url);
    s.backstage.base_url = Some(backstage);
    s.auth.allow_anonymous = false;
    s.auth.jwks_refetch_seconds = 1;
    s.auth.groups.insert(
        "user:development/guest".into(),
        vec!["group:default/team-a".into()],
    );
    let app = TestApp::spawn(s).await;
    let exp = now() + 600;

    // The scaffolder calling for a user: the user is the requester.
    let good = plugin_token(
        &plugin_key,
        Some(obo(&user_key, "user:development/guest")),
        "paved",
        "scaffolder",
        exp,
    );
    let (status, r) = order_as(&app, &good).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["requester"], "user:development/guest");
    // The audit trail names the plugin as actor, on behalf of the user.
    let audit: Value = app
        .client
        .get(app.api(&format!(
            "/audit?type=request.created&target=request:{}",
            r["id"].as_str().unwrap()
        )))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit[0]["actor"], "plugin:scaffolder");
    assert_eq!(audit[0]["onBehalfOf"], "user:development/guest");

    let refused = [
        (
            "expired",
            plugin_token(
                &plugin_key,
                Some(obo(&user_key, "user:development/guest")),
                "paved",
                "scaffolder",
                now() - 120,
            ),
        ),
        (
            "wrong aud",
            plugin_token(&plugin_key, None, "catalog", "scaffolder", exp),
        ),
        (
            "caller not allowed",
            plugin_token(&plugin_key, None, "paved", "evil-plugin", exp),
        ),
        (
            "obo signed by the wrong key",
            plugin_token(
                &plugin_key,
                Some(obo(&plugin_key, "user:default/admin")),
                "paved",
                "scaffolder",
                exp,
            ),
        ),
        (
            "limited token alone",
            obo(&user_key, "user:development/guest"),
        ),
    ];
    for (case, token) in refused {
        assert_eq!(whoami(&app, &token).await, 401, "{case}");
    }

    // alg: none, and HS256 keyed with the public key.
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = json!({"sub": "scaffolder", "aud": "paved", "iat": now(), "exp": exp});
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "vnd.backstage.plugin", "kid": "plugin-1"})),
        b64(&claims)
    );
    assert_eq!(whoami(&app, &none).await, 401, "alg none");
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("vnd.backstage.plugin".into());
    hs.kid = Some("plugin-1".into());
    let public = serde_json::to_vec(&plugin_key.jwk).unwrap();
    let hs256 = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&public)).unwrap();
    assert_eq!(
        whoami(&app, &hs256).await,
        401,
        "HS256 with the public key as secret"
    );

    // A tampered payload no longer matches its signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["exp"] = json!(exp + 100_000);
    parts[1] = b64(&payload);
    assert_eq!(whoami(&app, &parts.join(".")).await, 401, "tampered");

    // Without obo the call is the plugin's own: it may read, but is nobody's team member.
    let service = plugin_token(&plugin_key, None, "paved", "scaffolder", exp);
    assert_eq!(whoami(&app, &service).await, 200);
    assert_eq!(order_as(&app, &service).await.0, 403);

    // Backstage rotates keys: an unknown kid is refused until the key set has it, then refetched.
    let rotated = key("plugin-2");
    let next = plugin_token(&rotated, None, "paved", "scaffolder", exp);
    assert_eq!(whoami(&app, &next).await, 401, "not published yet");
    published
        .scaffolder
        .lock()
        .unwrap()
        .push(rotated.jwk.clone());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        whoami(&app, &next).await,
        200,
        "refetched on the unknown kid"
    );

    // A user token sent directly (portal frontends, CLI): groups from its ownership refs.
    let user = sign(
        &user_key,
        "vnd.backstage.user",
        json!({"sub": "user:default/jane", "aud": "backstage", "iat": now(), "exp": exp, "ent": ["user:default/jane", "group:default/team-a"]}),
    );
    let (status, r) = order_as(&app, &user).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["requester"], "user:default/jane");
    let _ = plugin_key.pkcs8.len();
    app.stop().await;
}
