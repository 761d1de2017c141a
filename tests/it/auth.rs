//! Backstage tokens: signed by test keys served from a local JWKS endpoint standing in for
//! Backstage's (`/api/<plugin>/.backstage/auth/v1/jwks.json`, `/api/auth/.well-known/jwks.json`).

use crate::common;

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
    s.auth.allow_anonymous = Some(false);
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
    assert_eq!(audit["items"][0]["actor"], "plugin:scaffolder");
    assert_eq!(audit["items"][0]["onBehalfOf"], "user:development/guest");

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

/// Stand-in for Backstage's auth JWKS and catalog: serves one user entity whose `memberOf`
/// the test changes, and records the Authorization header of each catalog call.
#[derive(Clone)]
struct Catalog {
    auth: Arc<Mutex<Vec<Jwk>>>,
    member_of: Arc<Mutex<Vec<String>>>,
    seen_auth: Arc<Mutex<Vec<String>>>,
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
            "/api/catalog/entities/by-name/user/default/bob",
            get(
                |State(c): State<Catalog>, headers: axum::http::HeaderMap| async move {
                    if let Some(h) = headers.get("authorization") {
                        c.seen_auth
                            .lock()
                            .unwrap()
                            .push(h.to_str().unwrap().to_owned());
                    }
                    let relations: Vec<Value> = c
                        .member_of
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|g| json!({"type": "memberOf", "targetRef": g}))
                        .collect();
                    Json(json!({
                        "apiVersion": "backstage.io/v1alpha1", "kind": "User",
                        "metadata": {"name": "bob", "namespace": "default"},
                        "spec": {"memberOf": []},
                        "relations": relations
                    }))
                },
            ),
        )
        .with_state(c);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_users_teams_come_from_the_catalog_asked_with_a_token_paved_signed() {
    let user_key = key("auth-1");
    let catalog = Catalog {
        auth: Arc::new(Mutex::new(vec![user_key.jwk.clone()])),
        member_of: Arc::new(Mutex::new(vec!["group:default/team-b".into()])),
        seen_auth: Arc::default(),
    };
    let backstage = catalog_server(catalog.clone()).await;
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = settings(&db.url);
    s.backstage.base_url = Some(backstage);
    // The plugin-token mode (the default signs external-access tokens; see backstage_e2e.rs).
    s.backstage.auth = Some(paved::config::BackstageAuth::Plugin);
    s.auth.allow_anonymous = Some(false);
    s.auth.catalog_groups_ttl_seconds = 1;
    let app = TestApp::spawn(s).await;
    // Bob's token names no groups (like Backstage's guest tokens): the catalog decides.
    let bob = sign(
        &user_key,
        "vnd.backstage.user",
        json!({"sub": "user:default/bob", "aud": "backstage", "iat": now(), "exp": now() + 600}),
    );
    let order_for = |team: &'static str| {
        let (app, bob) = (&app, bob.clone());
        async move {
            app.client
                .post(app.api("/requests"))
                .bearer_auth(bob)
                .json(&json!({"offering": "redis-cache", "values": {"name": format!("bob-{team}"), "owner": team, "cost_center": "ENG-1234"}}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // The signing key appears once migrations ran; until then catalog calls are unsigned.
    wait_for_keys(&app).await;
    assert_eq!(order_for("team-b").await, 201);
    assert_eq!(order_for("team-a").await, 403);

    // Membership changes show after the cache's lifetime.
    *catalog.member_of.lock().unwrap() = vec!["group:default/team-a".into()];
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(order_for("team-a").await, 201);

    // paved asked the catalog as itself: a plugin token for audience `catalog`, verifiable
    // with the keys paved publishes.
    let seen = catalog.seen_auth.lock().unwrap().clone();
    let token = seen
        .last()
        .expect("the catalog was called")
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    let claims = verify_with_paveds_keys(&app, &token, "catalog").await;
    assert_eq!(claims["sub"], "paved");
    assert!(claims["exp"].as_u64().unwrap() <= now() + 600);
    app.stop().await;
}

async fn wait_for_keys(app: &TestApp) -> Value {
    for _ in 0..100 {
        let jwks: Value = app
            .client
            .get(app.url("/api/paved/.backstage/auth/v1/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !jwks["keys"].as_array().unwrap().is_empty() {
            return jwks;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("paved published no signing key");
}

/// Verifies `token` the way Backstage does: header type, ES256 with a key from paved's JWKS
/// (fetched without credentials), audience, expiry.
async fn verify_with_paveds_keys(app: &TestApp, token: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("vnd.backstage.plugin"));
    assert_eq!(header.alg, Algorithm::ES256);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(wait_for_keys(app).await).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the token's key is published");
    let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
    v.set_audience(&[aud]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .expect("paved's token verifies")
    .claims
}

#[tokio::test]
async fn signing_keys_rotate_and_stay_published_until_their_tokens_expire() {
    use paved::auth::signing::{Signer, published_keys};
    use paved::vocab::secret_box::SecretBox;
    for engine in [DbEngine::Sqlite, DbEngine::Postgres] {
        let (_db, conn) = common::migrated(engine).await;
        let secrets = SecretBox::from_base64(&SecretBox::generate_key()).unwrap();

        // A rotation interval of zero makes every check rotate.
        let signer = Signer::new("paved", Duration::ZERO);
        assert!(
            signer.token_for("catalog").is_none(),
            "no key before loading"
        );
        signer.rotate_if_due(&conn, &secrets).await.unwrap();
        let first = signer.token_for("catalog").unwrap();
        signer.rotate_if_due(&conn, &secrets).await.unwrap();
        let second = signer.token_for("catalog").unwrap();
        let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
        assert_ne!(kid(&first), kid(&second), "{engine:?}: rotated");

        // Both keys are published: a token signed just before the rotation still verifies.
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(published_keys(&conn).await.unwrap()).unwrap();
        for t in [&first, &second] {
            let jwk = jwks.find(&kid(t)).expect("published");
            let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
            v.set_audience(&["catalog"]);
            jsonwebtoken::decode::<Value>(
                t,
                &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
                &v,
            )
            .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        }
        // Another replica (same database and secrets key) signs with the newest key.
        let replica = Signer::new("paved", Duration::from_secs(3600));
        replica.rotate_if_due(&conn, &secrets).await.unwrap();
        assert_eq!(kid(&replica.token_for("catalog").unwrap()), kid(&second));

        // The private halves are sealed: nothing in the table is the PKCS#8 key in the clear.
        use sea_orm::EntityTrait;
        let rows = paved::db::entities::signing_key::Entity::find()
            .all(&conn)
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        for r in rows {
            let c = r.ciphertext;
            assert!(
                signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &c,
                    &SystemRandom::new()
                )
                .is_err(),
                "{engine:?}: a private key is stored in the clear"
            );
        }
        conn.close().await.ok();
    }
}

/// How the JWKS stand-in answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Serve,
    /// Waits for a permit of `gate` (the test holds the fetch in flight), then serves.
    Hold,
    Fail,
}

/// A Backstage JWKS stand-in whose behaviour the test controls, counting the fetches it sees.
#[derive(Clone)]
struct StandIn {
    keys: Arc<Mutex<Vec<Jwk>>>,
    mode: Arc<Mutex<Mode>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
    served: Arc<std::sync::atomic::AtomicUsize>,
    entered: Arc<tokio::sync::Notify>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl StandIn {
    async fn start(keys: Vec<Jwk>) -> (Self, String) {
        let me = Self {
            keys: Arc::new(Mutex::new(keys)),
            mode: Arc::new(Mutex::new(Mode::Serve)),
            fetches: Arc::default(),
            served: Arc::default(),
            entered: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        async fn serve(State(s): State<StandIn>) -> axum::response::Response {
            use axum::response::IntoResponse;
            s.fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            s.entered.notify_one();
            let mode = *s.mode.lock().unwrap();
            match mode {
                Mode::Fail => {
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
                }
                Mode::Hold => s.gate.acquire().await.unwrap().forget(),
                Mode::Serve => {}
            }
            let keys = s.keys.lock().unwrap().clone();
            s.served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Json(json!({ "keys": keys })).into_response()
        }
        let app = Router::new()
            .route("/api/scaffolder/.backstage/auth/v1/jwks.json", get(serve))
            .route("/api/auth/.well-known/jwks.json", get(serve))
            .with_state(me.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (me, url)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn served(&self) -> usize {
        self.served.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
}

fn t0() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()
}

/// A verifier on `url` reading time from `clock`, with paved's defaults unless `tune` changes
/// them.
fn verifier(
    url: &str,
    clock: &paved::vocab::clock::Clock,
    tune: impl FnOnce(&mut paved::config::AuthSettings),
) -> (
    Arc<paved::auth::backstage::BackstageTokens>,
    paved::config::AuthSettings,
) {
    let mut auth = paved::config::AuthSettings {
        catalog_groups_ttl_seconds: 0,
        ..Default::default()
    };
    tune(&mut auth);
    let v = paved::auth::backstage::BackstageTokens::new(
        url,
        "paved",
        &auth,
        paved::auth::signing::Outgoing::Static("unused".into()),
        clock.clone(),
    );
    (Arc::new(v), auth)
}

/// A plugin token from the scaffolder without a user, issued at the clock's time.
fn service_token(k: &Key, clock: &paved::vocab::clock::Clock) -> String {
    let iat = clock.now().timestamp();
    sign(
        k,
        "vnd.backstage.plugin",
        json!({"sub": "scaffolder", "aud": "paved", "iat": iat, "exp": iat + 3600}),
    )
}

#[tokio::test]
async fn a_valid_token_never_waits_behind_forged_kids_and_refetches_are_single_flight_and_rate_limited()
 {
    let good_key = key("plugin-1");
    let (backstage, url) = StandIn::start(vec![good_key.jwk.clone()]).await;
    let clock = paved::vocab::clock::Clock::fixed(t0());
    let (tokens, auth) = verifier(&url, &clock, |a| a.jwks_refetch_seconds = 10);
    let secs = |s: i64| chrono::Duration::seconds(s);

    let good = service_token(&good_key, &clock);
    tokens.verify(&good, &auth).await.expect("valid token");
    assert_eq!(backstage.fetches(), 1);

    // Eight forged tokens with kids Backstage never published, after the refetch window: they
    // trigger one refetch, which the stand-in holds until the test lets it go.
    clock.set(t0() + secs(11));
    backstage.set_mode(Mode::Hold);
    let forged = |i: usize| service_token(&key(&format!("forged-{i}")), &clock);
    let mut forgers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (tokens, auth, t) = (tokens.clone(), auth.clone(), forged(i));
        forgers.spawn(async move { tokens.verify(&t, &auth).await.map(|p| p.subject) });
    }
    while backstage.fetches() < 2 {
        backstage.entered.notified().await;
    }

    // The valid token verifies while that fetch is still held: no forged token has been
    // answered yet (they all wait for the held fetch) and the stand-in has not answered it.
    let valid = tokens.verify(&good, &auth).await.expect("valid token");
    assert_eq!(valid.subject, "plugin:scaffolder");
    assert!(
        forgers.try_join_next().is_none(),
        "a forged token was answered before the valid one: the valid token waited behind the refetch"
    );
    assert_eq!(backstage.served(), 1, "the refetch is still held");
    assert_eq!(backstage.fetches(), 2, "one refetch for eight forged kids");

    backstage.gate.add_permits(1000);
    while let Some(r) = forgers.join_next().await {
        let e = r.unwrap().expect_err("forged token accepted");
        assert!(e.to_string().contains("unknown key id"), "{e}");
    }
    assert_eq!(
        backstage.fetches(),
        2,
        "the waiting forgers shared the one fetch"
    );

    // More forged kids in the same window: refused without asking Backstage.
    for i in 10..20 {
        assert!(tokens.verify(&forged(i), &auth).await.is_err());
    }
    assert_eq!(backstage.fetches(), 2);

    // A failing Backstage is rate-limited just the same, and the known key keeps working.
    backstage.set_mode(Mode::Fail);
    clock.set(t0() + secs(22));
    let mut forgers = tokio::task::JoinSet::new();
    for i in 20..28 {
        let (tokens, auth, t) = (tokens.clone(), auth.clone(), forged(i));
        forgers.spawn(async move { tokens.verify(&t, &auth).await.map(|p| p.subject) });
    }
    while let Some(r) = forgers.join_next().await {
        assert!(r.unwrap().is_err(), "forged token accepted");
    }
    assert_eq!(
        backstage.fetches(),
        3,
        "one failed fetch for eight forged kids"
    );
    for i in 30..40 {
        assert!(tokens.verify(&forged(i), &auth).await.is_err());
    }
    assert_eq!(
        backstage.fetches(),
        3,
        "a failed fetch is not retried within the window"
    );
    tokens
        .verify(&service_token(&good_key, &clock), &auth)
        .await
        .expect("the cached key still verifies after a failed refetch");

    clock.set(t0() + secs(33));
    assert!(tokens.verify(&forged(40), &auth).await.is_err());
    assert_eq!(backstage.fetches(), 4, "the next window may fetch again");
    assert_eq!(tokens.jwks_fetches(), 4);
}

#[tokio::test]
async fn a_key_removed_from_backstage_stops_verifying_within_the_max_age() {
    let (old, new) = (key("plugin-old"), key("plugin-new"));
    let (backstage, url) = StandIn::start(vec![old.jwk.clone()]).await;
    let clock = paved::vocab::clock::Clock::fixed(t0());
    let (tokens, auth) = verifier(&url, &clock, |a| {
        a.jwks_refetch_seconds = 10;
        a.jwks_max_age_seconds = 300;
    });
    let at = |s: i64| t0() + chrono::Duration::seconds(s);

    tokens
        .verify(&service_token(&old, &clock), &auth)
        .await
        .expect("published key");
    // Backstage drops the key (rotated out, or revoked after a leak).
    *backstage.keys.lock().unwrap() = vec![new.jwk.clone()];
    clock.set(at(299));
    tokens
        .verify(&service_token(&old, &clock), &auth)
        .await
        .expect("trusted until the set's max age");
    assert_eq!(backstage.fetches(), 1);

    clock.set(at(300));
    let e = tokens
        .verify(&service_token(&old, &clock), &auth)
        .await
        .expect_err("a removed key is refused once the set is past its max age");
    assert!(e.to_string().contains("unknown key id"), "{e}");
    tokens
        .verify(&service_token(&new, &clock), &auth)
        .await
        .expect("the new key verifies");
    assert_eq!(backstage.fetches(), 2, "one refresh");

    // A set that cannot be refreshed is not trusted past its age either (fail closed), and
    // works again once Backstage answers.
    backstage.set_mode(Mode::Fail);
    clock.set(at(600));
    let e = tokens
        .verify(&service_token(&new, &clock), &auth)
        .await
        .expect_err("stale set");
    assert!(e.to_string().contains("cannot fetch Backstage keys"), "{e}");
    assert!(
        tokens
            .verify(&service_token(&new, &clock), &auth)
            .await
            .is_err()
    );
    assert_eq!(backstage.fetches(), 3, "rate-limited while failing");
    backstage.set_mode(Mode::Serve);
    clock.set(at(610));
    tokens
        .verify(&service_token(&new, &clock), &auth)
        .await
        .expect("refreshed");
    assert_eq!(backstage.fetches(), 4);
}

#[tokio::test]
async fn token_times_are_checked_with_a_small_leeway_and_a_bounded_lifetime() {
    let k = key("plugin-1");
    let (_backstage, url) = StandIn::start(vec![k.jwk.clone()]).await;
    let clock = paved::vocab::clock::Clock::fixed(t0());
    let (tokens, auth) = verifier(&url, &clock, |_| {});
    assert_eq!(auth.token_leeway_seconds, 5, "default leeway");
    assert_eq!(auth.token_max_lifetime_seconds, 3600, "default lifetime");
    let now = t0().timestamp();
    let token = |claims: Value| {
        let mut c = json!({"sub": "scaffolder", "aud": "paved"});
        c.as_object_mut()
            .unwrap()
            .extend(claims.as_object().unwrap().clone());
        sign(&k, "vnd.backstage.plugin", c)
    };
    let cases = [
        ("normal", json!({"iat": now, "exp": now + 3600}), None),
        (
            "expired within the leeway",
            json!({"iat": now - 3600, "exp": now - 4}),
            None,
        ),
        (
            "nbf within the leeway",
            json!({"iat": now, "nbf": now + 4, "exp": now + 600}),
            None,
        ),
        (
            "expired beyond the leeway",
            json!({"iat": now - 3600, "exp": now - 6}),
            Some("token expired 6 s ago (leeway 5 s, auth.token_leeway_seconds)"),
        ),
        (
            "not yet valid",
            json!({"iat": now, "nbf": now + 60, "exp": now + 600}),
            Some("token not valid yet: nbf is 60 s ahead"),
        ),
        (
            "issued in the future",
            json!({"iat": now + 60, "exp": now + 600}),
            Some("token issued in the future"),
        ),
        (
            "24 h lifetime",
            json!({"iat": now, "exp": now + 86_400}),
            Some(
                "token lives 86400 s, longer than Backstage issues tokens (at most 3600 s, auth.token_max_lifetime_seconds)",
            ),
        ),
        ("no iat", json!({"exp": now + 600}), Some("no iat")),
        ("no exp", json!({"iat": now}), Some("no exp")),
        (
            "exp not a number",
            json!({"iat": now, "exp": "tomorrow"}),
            Some("exp must be a NumericDate"),
        ),
    ];
    for (case, claims, refused) in cases {
        let r = tokens.verify(&token(claims), &auth).await;
        match refused {
            None => assert!(r.is_ok(), "{case}: {:?}", r.err()),
            Some(reason) => {
                let e = r.expect_err(case);
                assert!(e.to_string().contains(reason), "{case}: {e}");
            }
        }
    }

    // The limited user token inside a plugin token is held to the same rules.
    let user_key = key("auth-1");
    let (_b2, url2) = StandIn::start(vec![k.jwk.clone(), user_key.jwk.clone()]).await;
    let (tokens, auth) = verifier(&url2, &clock, |_| {});
    let obo = sign(
        &user_key,
        "vnd.backstage.limited-user",
        json!({"sub": "user:default/jane", "iat": now, "exp": now + 7 * 86_400}),
    );
    let e = tokens
        .verify(
            &token(json!({"iat": now, "exp": now + 600, "obo": obo})),
            &auth,
        )
        .await
        .expect_err("a week-long obo token");
    assert!(e.to_string().contains("token lives 604800 s"), "{e}");
}
