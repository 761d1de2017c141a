//! paved's frontend plugin (`backstage/plugins/paved`) in a real browser against a real paved:
//! Debian's headless Chromium, driven by playwright-core (`plugins/paved/dev/browser.mjs`),
//! opens a Resource's entity page (`plugins/paved/dev`, built by `scripts/backstage-modules
//! page`): the plugin's card inside Backstage's app wrapper and API providers, calling paved
//! from the browser with the user's token through Backstage's FetchApi and frontend discovery,
//! which point at paved directly (paved lists the page's origin in `server.cors_origins`).
//! The entity is the one paved publishes for the resource (from its catalog feed).
//!
//! Needs node, npm and `/usr/bin/chromium` (Debian's `chromium`; `.ci/run` installs it when
//! missing); fails without them. The screenshots are kept under `target/` (path printed).

use crate::{
    backstage_e2e::{Clock, require_node, run},
    common,
};

use std::{path::PathBuf, process::Command, sync::Arc};

use common::{
    Engine as DbEngine, Teardown, TestApp, TestDb,
    kit::{order, wait_final, with_workers},
    repo_path, settings,
};
use serde_json::{Value, json};
use sha2::Digest;

/// Serves the built page and the entity it shows, as Backstage's app server would.
async fn serve_page(listener: tokio::net::TcpListener, dir: PathBuf, entity: Arc<Value>) {
    use axum::{extract::Path, http::header, response::IntoResponse};
    let files = move |Path(rel): Path<String>| {
        let dir = dir.clone();
        async move {
            // Only files of the build, by their plain relative names.
            if rel.split('/').any(|c| c.is_empty() || c == "..") {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            }
            let path = dir.join(&rel);
            let kind = match path.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("svg") => "image/svg+xml",
                _ => "application/octet-stream",
            };
            match tokio::fs::read(&path).await {
                Ok(body) => ([(header::CONTENT_TYPE, kind)], body).into_response(),
                Err(_) => axum::http::StatusCode::NOT_FOUND.into_response(),
            }
        }
    };
    let app = axum::Router::new()
        .route(
            "/entity.json",
            axum::routing::get(move || {
                let e = entity.clone();
                async move { axum::Json((*e).clone()) }
            }),
        )
        .route("/{*rel}", axum::routing::get(files));
    axum::serve(listener, app).await.unwrap();
}

/// The Resource entity paved publishes for `resource_id`, from its catalog feed.
async fn published_entity(app: &TestApp, resource_id: &str) -> Value {
    let mut after: Option<String> = None;
    loop {
        let q = after
            .as_deref()
            .map(|c| format!("?after={}", urlencode(c)))
            .unwrap_or_default();
        let (st, page) = app.get_json(&format!("/catalog/changes{q}")).await;
        assert_eq!(st, 200, "{page}");
        if let Some(e) = page["entities"].as_array().into_iter().flatten().find(|e| {
            e["kind"] == "Resource"
                && e["metadata"]["annotations"]["paved.dev/resource-id"] == resource_id
                && e["metadata"]["annotations"]["paved.dev/part"].is_null()
        }) {
            return e.clone();
        }
        assert!(
            page["more"] == true,
            "paved's catalog feed has no entity for {resource_id}"
        );
        after = page["cursor"].as_str().map(str::to_owned);
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Credentials as the card lists them: `part.name` → SHA-256 of the value as written.
fn flatten(v: &Value, path: &str, out: &mut std::collections::BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(v, &at, out);
            }
        }
        leaf => {
            let text = leaf
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| leaf.to_string());
            let digest = sha2::Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            out.insert(path.to_owned(), digest);
        }
    }
}

/// How the card writes an amount (Intl's en-US currency format, below a thousand).
fn usd(amount: f64) -> String {
    format!("${amount:.2}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_card_in_a_real_browser_shows_what_paved_reports() {
    let clock = Clock(std::time::Instant::now());
    clock.step("setup: the plugin's page built, Chromium present");
    require_node();
    let chromium = PathBuf::from("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "{} is missing: apt-get install -y chromium (what .ci/run does)",
        chromium.display()
    );
    run(
        Command::new(repo_path("scripts/backstage-modules")).arg("page"),
        "scripts/backstage-modules page",
    );
    let page_dir = repo_path("backstage/plugins/paved/dist-page");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "backstage-frontend-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&shots).unwrap();

    // The page's origin is known before paved starts: paved lets exactly it call from a browser.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_origin = format!("http://{}", listener.local_addr().unwrap());
    let db = TestDb::new(DbEngine::Postgres).await;
    let mut s = with_workers(settings(&db.url), 1);
    s.server.cors_origins = vec![page_origin.clone()];
    // A fixed "now": month-to-date spend does not move between paved's answer and the card's.
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 12, 2, 12, 0, 0).unwrap();
    let app = TestApp::spawn_with_clock(s, paved::vocab::clock::Clock::fixed(now)).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };

    clock.step("alice (team-a) orders a preview environment (a database and a cache, 24 h)");
    let branch = common::kit::unique();
    let request = order(
        &app,
        "preview-environment",
        json!({"component": "component:default/shop", "branch": branch, "owner": "team-a", "ttl_hours": 24, "cost_center": "ENG-1234"}),
    )
    .await;
    let done = wait_final(&app, &request).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let id = done["resourceId"].as_str().unwrap().to_owned();

    // What paved reports, read over its API as alice: the card must show the same.
    let resource = app
        .as_("alice-token")
        .get(&format!("/resources/{id}"))
        .await;
    assert_eq!(resource.status, 200, "{}", resource.body);
    let cost = app
        .as_("alice-token")
        .get(&format!("/resources/{id}/cost"))
        .await;
    assert_eq!(cost.status, 200, "{}", cost.body);
    let credentials = app.as_("alice-token").credentials(&id).await;
    assert_eq!(credentials.status, 200);
    let entity = Arc::new(published_entity(&app, &id).await);

    tokio::spawn(serve_page(listener, page_dir, entity));

    clock.step("Chromium opens the entity page as alice, then as mallory (team-b)");
    let out = run(
        Command::new("node")
            .current_dir(repo_path("backstage/plugins/paved"))
            .arg("dev/browser.mjs")
            .arg(format!("{page_origin}/index.html"))
            .arg(&app.base)
            .arg("alice-token")
            .arg("mallory-token")
            .arg(&shots)
            .env("CHROMIUM", &chromium),
        "node dev/browser.mjs",
    );
    let seen: Value = serde_json::from_slice(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("browser.mjs printed no JSON ({e}): {out:?}"));
    eprintln!("screenshots of the card: {}", shots.display());
    let owner = &seen["owner"];

    assert_eq!(owner["status"], resource.body["status"], "{seen}");
    assert_eq!(owner["status"], "ready");
    assert_eq!(
        owner["monthlyCost"],
        usd(cost.body["monthly"].as_f64().unwrap()),
        "{seen}"
    );
    assert_eq!(
        owner["monthToDate"],
        usd(cost.body["monthToDate"].as_f64().unwrap()),
        "{seen}"
    );
    // The expiry paved reports: 24 h after the (fixed) moment it was ordered.
    assert_eq!(
        resource.body["expiresAt"]
            .as_str()
            .map(|t| t.starts_with("2026-12-03T12:00:00")),
        Some(true),
        "{}",
        resource.body
    );
    assert_eq!(owner["expiresAt"], resource.body["expiresAt"], "{seen}");
    assert_ne!(owner["expires"], "never", "{seen}");
    assert!(
        owner["steps"].as_str().unwrap().contains("succeeded"),
        "{seen}"
    );
    assert_eq!(owner["showCredentialsButtons"], 1, "{seen}");

    // alice revealed exactly the credentials paved gives her, value by value (as SHA-256).
    let revealed = owner["credentials"].as_object().expect("credentials shown");
    let mut expected = std::collections::BTreeMap::new();
    flatten(&credentials.body, "", &mut expected);
    assert!(!expected.is_empty(), "{}", credentials.status);
    let shown: std::collections::BTreeMap<_, _> = revealed
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(
        shown, expected,
        "the card shows other credentials than paved's"
    );

    // mallory (team-b) gets paved's 404 and no way to ask for the credentials.
    let other = &seen["other"];
    assert_eq!(other["showCredentialsButtons"], 0, "{seen}");
    assert!(
        other["message"]
            .as_str()
            .unwrap()
            .contains("paved shows this resource only to its team"),
        "{seen}"
    );
    for shot in ["owner-card.png", "owner-credentials.png", "other-team.png"] {
        assert!(shots.join(shot).exists(), "no screenshot {shot}");
    }
    app.stop().await;
}
