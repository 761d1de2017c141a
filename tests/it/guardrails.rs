//! Policy, cost, budgets, approvals and the Actions Registry, against the real app.

use crate::common;

use common::{Engine, TestApp, TestDb, assert_envelope, kit::call, settings};
use paved::config::Settings;
use serde_json::{Value, json};

/// alice (developer, team-a), bob (lead, team-a), carol (lead, team-b), dave (platform-admin).
fn with_people(mut s: Settings) -> Settings {
    s.auth.static_tokens = vec![
        common::static_token("alice", "alice-token", &["developer"], &["team-a"]),
        common::static_token("bob", "bob-token", &["lead"], &["team-a"]),
        common::static_token("carol", "carol-token", &["lead"], &["team-b"]),
        common::static_token("dave", "dave-token", &["platform-admin"], &[]),
    ];
    s
}

fn pg_values(env: &str, extra: Value) -> Value {
    let mut v = json!({"name": "orders", "environment": env, "size": "small", "owner": "group:default/team-a", "cost_center": "ENG-1234"});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

/// Sends a raw HTTP/1.1 POST and returns the status line, to read the reason phrase (HTTP
/// clients hide it). Blocking I/O, so off the test's runtime thread, which also runs the server.
async fn raw_status_line(base: &str, path: &str, body: &Value, bearer: Option<&str>) -> String {
    let (base, path, body, bearer) = (
        base.to_owned(),
        path.to_owned(),
        body.clone(),
        bearer.map(str::to_owned),
    );
    tokio::task::spawn_blocking(move || {
        raw_status_line_blocking(&base, &path, &body, bearer.as_deref())
    })
    .await
    .unwrap()
}

fn raw_status_line_blocking(base: &str, path: &str, body: &Value, bearer: Option<&str>) -> String {
    let addr = base.trim_start_matches("http://");
    common::kit::raw_http(addr, "POST", path, bearer, Some(&body.to_string())).status_line
}

#[tokio::test]
async fn estimate_shows_cost_recommendations_and_decision() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    // What the cluster enforces: a database (5) and its owner role's 20 connections (20 x 3).
    let values = pg_values("prod", json!({"size": "small"}));
    // As someone who may see team-a's budget (the anonymous caller gets no budget part).
    let (status, e) = call(
        &app,
        "POST",
        "/estimates",
        Some(common::OBSERVER_TOKEN),
        Some(json!({"offering": "postgres-database", "values": values})),
    )
    .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["valid"], true);
    assert_eq!(e["estimate"]["monthly"], 65.0);
    assert_eq!(e["estimate"]["annual"], 780.0);
    let items: Vec<f64> = e["estimate"]["lineItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["monthly"].as_f64().unwrap())
        .collect();
    assert_eq!(items, [5.0, 60.0]);
    assert_eq!(e["estimate"]["recommendations"], json!([]));
    assert_eq!(e["decision"]["outcome"], "allowed");
    // No backup or standby rule for what has no backups or standby of its own.
    assert_eq!(e["decision"]["warn"], json!([]), "{e}");
    assert_eq!(e["budget"]["team"], "group:default/team-a");
    assert_eq!(e["budget"]["after"], 65.0);
    // Nothing was stored.
    let (_, list) = call(&app, "GET", "/requests", None, None).await;
    assert_eq!(list["items"], json!([]));

    let (status, e) = call(
        &app,
        "POST",
        "/estimates",
        None,
        Some(json!({"offering": "postgres-database", "values": {"name": "X"}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(e["valid"], false);
    assert_eq!(e["errors"].as_array().unwrap().len(), 3, "{e}");
    app.stop().await;
}

#[tokio::test]
async fn denied_requests_are_stored_and_refused_with_the_reason_on_the_status_line() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    // Medium in dev: 305 USD/month over the dev limit of 100.
    let body = json!({"offering": "postgres-database", "values": pg_values("dev", json!({"size": "medium"})), "idempotencyKey": "deny-1"});
    let line = raw_status_line(&app.base, "/api/paved/v1/requests", &body, None).await;
    assert!(
        line.starts_with("HTTP/1.1 403 Policy cost_limit denied: estimated 305"),
        "{line}"
    );
    let (status, err) = call(&app, "POST", "/requests", None, Some(body.clone())).await;
    assert_eq!(status, 403);
    let msg = assert_envelope(&err, 403, "NotAllowedError", "POST", "/v1/requests");
    assert!(msg.contains("cost_limit"), "{msg}");
    let id = err["error"]["requestId"].as_str().unwrap();
    let (_, stored) = call(&app, "GET", &format!("/requests/{id}"), None, None).await;
    assert_eq!(stored["status"], "denied");
    assert!(
        stored["error"]
            .as_str()
            .unwrap()
            .contains("exceeds the dev limit")
    );
    assert_eq!(stored["decision"]["deny"][0]["rule"], "cost_limit");

    // The denies come as a list, each with its rule.
    let two = json!({"offering": "postgres-database", "values": pg_values("staging", json!({"size": "large"}))});
    let (status, err) = call(&app, "POST", "/requests", None, Some(two)).await;
    assert_eq!(status, 403);
    let rules: Vec<&str> = err["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["cost_limit"], "{err}");
    app.stop().await;
}

async fn approvals_flow(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::spawn(with_people(settings(&db.url))).await;
    // Large in prod: 1205 USD/month, above the 1000 approval threshold.
    let body = |key: &str| json!({"offering": "postgres-database", "values": pg_values("prod", json!({"size": "large"})), "idempotencyKey": key});
    let (status, r) = call(
        &app,
        "POST",
        "/requests",
        Some("alice-token"),
        Some(body("appr-1")),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["status"], "awaiting_approval");
    assert_eq!(r["requester"], "user:default/alice");
    let id = r["id"].as_str().unwrap().to_owned();
    let (_, approvals) = call(
        &app,
        "GET",
        &format!("/requests/{id}/approvals"),
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(approvals["items"][0]["requiredRole"], "lead");
    assert_eq!(approvals["items"][0]["status"], "pending");

    for (who, status, name) in [
        // The anonymous caller and a lead of another team cannot see it: it is not there.
        (None, 404, "NotFoundError"),
        (Some("wrong-token"), 401, "AuthenticationError"),
        (Some("alice-token"), 403, "NotAllowedError"), // own request
        (Some("carol-token"), 404, "NotFoundError"),
    ] {
        let (s, err) = call(&app, "POST", &format!("/requests/{id}/approve"), who, None).await;
        assert_eq!(s, status, "{who:?}: {err}");
        assert_eq!(err["error"]["name"], name);
    }
    let (s, approved) = call(
        &app,
        "POST",
        &format!("/requests/{id}/approve"),
        Some("bob-token"),
        Some(json!({"reason": "launch week"})),
    )
    .await;
    assert_eq!(s, 200, "{approved}");
    assert_eq!(
        approved["status"], "pending",
        "approved requests continue automatically"
    );
    let (_, approvals) = call(
        &app,
        "GET",
        &format!("/requests/{id}/approvals"),
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(approvals["items"][0]["status"], "approved");
    assert_eq!(approvals["items"][0]["decidedBy"], "user:default/bob");
    assert_eq!(approvals["items"][0]["decisionReason"], "launch week");
    let (s, _) = call(
        &app,
        "POST",
        &format!("/requests/{id}/approve"),
        Some("dave-token"),
        None,
    )
    .await;
    assert_eq!(s, 409, "already decided");

    // An admin rejects another one: it ends.
    let (_, r2) = call(
        &app,
        "POST",
        "/requests",
        Some("alice-token"),
        Some(body("appr-2")),
    )
    .await;
    let id2 = r2["id"].as_str().unwrap();
    let (s, rejected) = call(
        &app,
        "POST",
        &format!("/requests/{id2}/reject"),
        Some("dave-token"),
        Some(json!({"reason": "too big"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(rejected["status"], "rejected");
    assert!(rejected["completedAt"].is_string());
    assert!(rejected["error"].as_str().unwrap().contains("too big"));
    app.stop().await;
}

#[tokio::test]
async fn approvals_sqlite() {
    approvals_flow(Engine::Sqlite).await;
}

#[tokio::test]
async fn approvals_postgres() {
    approvals_flow(Engine::Postgres).await;
}

#[tokio::test]
async fn team_budgets_and_spend() {
    let db = TestDb::new(Engine::Postgres).await;
    let mut s = with_people(settings(&db.url));
    s.cost.budgets.insert("team-b".into(), 500.0);
    // Ten hours into a 31-day month (744 h, more than the 730 h a monthly price covers): the
    // case that failed on the wall clock on 1 December.
    let month_start =
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 12, 1, 0, 0, 0).unwrap();
    let now = month_start + chrono::Duration::hours(10);
    let app = TestApp::spawn_with_clock(s, paved::vocab::clock::Clock::fixed(now)).await;

    let (_, b) = call(
        &app,
        "GET",
        "/teams/team-b/budget",
        Some("dave-token"),
        None,
    )
    .await;
    assert_eq!(
        (b["monthlyLimit"].as_f64(), b["source"].as_str()),
        (Some(500.0), Some("config"))
    );
    let (_, b) = call(
        &app,
        "GET",
        "/teams/team-a/budget",
        Some("alice-token"),
        None,
    )
    .await;
    assert!(b["monthlyLimit"].is_null());
    let (s1, _) = call(
        &app,
        "PUT",
        "/teams/team-a/budget",
        None,
        Some(json!({"monthlyLimit": 50})),
    )
    .await;
    let (s2, _) = call(
        &app,
        "PUT",
        "/teams/team-a/budget",
        Some("bob-token"),
        Some(json!({"monthlyLimit": 50})),
    )
    .await;
    let (s3, bad) = call(
        &app,
        "PUT",
        "/teams/team-a/budget",
        Some("dave-token"),
        Some(json!({"monthlyLimit": -1})),
    )
    .await;
    // Anonymous: team-a is not its to see; bob, its lead, may see but not set it.
    assert_eq!((s1, s2, s3), (404, 403, 400), "{bad}");
    let (s4, b) = call(
        &app,
        "PUT",
        "/teams/team-a/budget",
        Some("dave-token"),
        Some(json!({"monthlyLimit": 50})),
    )
    .await;
    assert_eq!(s4, 200);
    assert_eq!(
        (
            b["monthlyLimit"].as_f64(),
            b["source"].as_str(),
            b["updatedBy"].as_str()
        ),
        (Some(50.0), Some("api"), Some("user:default/dave"))
    );

    // team-a runs, since the month began, a 20 USD/month resource and a preview environment
    // (73 USD/month, 0.10 USD/h) that expires in 73 h.
    let conn = paved::db::connect(&settings(&db.url).database)
        .await
        .unwrap();
    for (id, cents, expires) in [
        ("r1", 2000, None),
        ("r2", 7300, Some(now + chrono::Duration::hours(73))),
    ] {
        use paved::db::entities::resource;
        use sea_orm::{ActiveValue::Set, EntityTrait};
        resource::Entity::insert(resource::ActiveModel {
            id: Set(id.into()),
            entity_name: Set(id.into()),
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
            monthly_cost_cents: Set(Some(cents)),
            expires_at: Set(expires),
            request_id: Set("req".into()),
            created_at: Set(month_start),
            updated_at: Set(month_start),
            deleted_at: Set(None),
            catalog_bucket: Set(paved::vocab::bucket::bucket_of(id)),
        })
        .exec(&conn)
        .await
        .unwrap();
    }
    let (_, spend) = call(
        &app,
        "GET",
        "/teams/group:default%2Fteam-a/spend",
        Some("alice-token"),
        None,
    )
    .await;
    // 20 + 73 * (73 / 730) = 20 + 7.30
    assert_eq!(spend["currentMonthly"], 27.3, "{spend}");
    assert_eq!(spend["activeResources"], 2);
    // Accrued: 10 h of 20/730 per hour (0.274) + 10 h at 0.10 (1.00).
    assert_eq!(spend["monthToDate"], 1.27, "{spend}");
    // Month end: r1 for all 744 h (20.384), r2 until it expires at hour 83 (8.30).
    assert_eq!(spend["forecastMonthEnd"], 28.68, "{spend}");
    let (s5, cost) = call(&app, "GET", "/resources/r1/cost", Some("alice-token"), None).await;
    assert_eq!(s5, 200);
    assert_eq!(
        (cost["monthly"].as_f64(), cost["owner"].as_str()),
        (Some(20.0), Some("group:default/team-a"))
    );
    assert_eq!(
        (
            cost["monthToDate"].as_f64(),
            cost["forecastMonthEnd"].as_f64()
        ),
        (Some(0.27), Some(20.38)),
        "hourly billing: a 744-hour month costs 744/730 of the monthly price"
    );
    let (s6, _) = call(&app, "GET", "/resources/nope/cost", None, None).await;
    assert_eq!(s6, 404);

    // 27.30 + 65 > 50: over budget, so a platform-admin must approve.
    let (status, r) = call(
        &app,
        "POST",
        "/requests",
        Some("alice-token"),
        Some(json!({"offering": "postgres-database", "values": pg_values("dev", json!({}))})),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["status"], "awaiting_approval");
    assert_eq!(r["decision"]["requireApproval"][0]["rule"], "team_budget");
    assert_eq!(
        r["decision"]["requireApproval"][0]["role"],
        "platform-admin"
    );
    let (s, _) = call(
        &app,
        "POST",
        &format!("/requests/{}/approve", r["id"].as_str().unwrap()),
        Some("bob-token"),
        None,
    )
    .await;
    assert_eq!(s, 403, "a lead may not decide what needs a platform-admin");
    app.stop().await;
}

#[tokio::test]
async fn actions_registry_estimate_and_provision() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    let base = app.url("/api/paved/.backstage/actions");
    let list: Value = app
        .client
        .get(format!("{base}/v1/actions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "paved:estimate",
            "paved:provision",
            "paved:wait",
            "paved:destroy",
            "paved:update",
            "paved:extend-ttl"
        ]
    );
    // Honest attributes: only destroy is destructive; estimate and wait change nothing.
    let attrs = |i: usize| list["actions"][i]["attributes"].clone();
    assert_eq!(attrs(3)["destructive"], true);
    assert_eq!(attrs(4)["idempotent"], false);
    assert!(
        (0..6)
            .filter(|&i| i != 3)
            .all(|i| attrs(i)["destructive"] == false)
    );
    let est = &list["actions"][0];
    assert_eq!(
        est["attributes"],
        json!({"readOnly": true, "destructive": false, "idempotent": true})
    );
    assert_eq!(
        est["schema"]["input"]["$schema"],
        "http://json-schema.org/draft-07/schema#"
    );
    assert!(list["actions"][1]["schema"]["output"]["properties"]["requestId"].is_object());

    let input = json!({"offering": "postgres-database", "values": pg_values("dev", json!({}))});
    let r: Value = app
        .client
        .post(format!("{base}/v1/actions/paved%3Aestimate/invoke"))
        .json(&input)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["output"]["monthlyCost"], 65.0, "{r}");
    assert_eq!(r["output"]["outcome"], "allowed");
    let v2: Value = app
        .client
        .post(format!("{base}/v2/actions/paved%3Aestimate/invoke"))
        .json(&json!({"input": input, "secrets": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2, r);

    let mut prov = input.clone();
    prov["idempotencyKey"] = json!("task-123");
    let first: Value = app
        .client
        .post(format!("{base}/v1/actions/paved:provision/invoke"))
        .json(&prov)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again: Value = app
        .client
        .post(format!("{base}/v1/actions/paved%3Aprovision/invoke"))
        .json(&prov)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["output"]["requestId"], again["output"]["requestId"],
        "task recovery re-runs the step: one request"
    );
    assert_eq!(first["output"]["status"], "pending");
    assert!(
        first["output"]["requestUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!(
                "/api/paved/v1/requests/{}",
                first["output"]["requestId"].as_str().unwrap()
            ))
    );

    let mut denied = prov.clone();
    denied["values"]["size"] = json!("large");
    denied["idempotencyKey"] = json!("task-124");
    let line = raw_status_line(
        &app.base,
        "/api/paved/.backstage/actions/v1/actions/paved%3Aprovision/invoke",
        &denied,
        None,
    )
    .await;
    assert!(
        line.starts_with("HTTP/1.1 403 Policy cost_limit denied"),
        "{line}"
    );
    let r = app
        .client
        .post(format!("{base}/v1/actions/paved%3Aprovision/invoke"))
        .json(&json!({"offering": "postgres-database", "values": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "idempotencyKey is required");
    // A template dry-run skips paved:provision, making its output up from the output schema's
    // example, but runs the read-only paved:wait with it: that must not fail the dry run.
    let example = &list["actions"][1]["schema"]["output"]["examples"][0];
    let waited: Value = app
        .client
        .post(format!("{base}/v1/actions/paved%3Await/invoke"))
        .json(&json!({"requestId": example["requestId"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(waited["output"]["status"], "dry-run", "{waited}");
    assert_eq!(waited["output"]["final"], true);
    let r = app
        .client
        .post(format!("{base}/v1/actions/paved%3Await/invoke"))
        .json(&json!({"requestId": "01a20fd7-0000-7000-8000-000000000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "any other unknown request is an error");
    let r = app
        .client
        .post(format!("{base}/v1/actions/paved%3Aunknown/invoke"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn policies_are_listed_evaluated_and_a_broken_one_stops_startup() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    let (_, list) = call(&app, "GET", "/policies", None, None).await;
    let pkgs: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["package"].as_str().unwrap())
        .collect();
    for p in [
        "paved.budget",
        "paved.cost",
        "paved.database",
        "paved.ownership",
        "paved.ttl",
    ] {
        assert!(pkgs.contains(&p), "{pkgs:?}");
    }
    let (s, d) = call(&app, "POST", "/policies/evaluate", None, Some(json!({"resource": {"environment": "preview", "owner": "x", "labels": {"cost-center": "A"}}, "offering": {"ttl": null}, "estimate": {"monthly": 1}, "parts": [], "parameters": {}, "budget": {}}))).await;
    assert_eq!(s, 200);
    assert_eq!(d["outcome"], "denied");
    assert_eq!(d["deny"][0]["rule"], "ttl_required");
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.rego"),
        "package paved.bad\n\nimport rego.v1\n\ndeny contains x if {\n  x :=\n}\n",
    )
    .unwrap();
    let mut s = settings(&db.url);
    s.policies.dir = dir.path().to_owned();
    let err = match paved::app::Application::build(s).await {
        Ok(_) => panic!("a broken policy must stop start-up"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("bad.rego:"), "{err}");
}

/// The budget counts what is already ordered, and a change is charged its difference, not its
/// whole new cost on top of the old.
#[tokio::test]
async fn budgets_count_open_orders_and_charge_changes_their_difference() {
    use common::kit::{order_as, unique, wait_final, with_workers};
    let db = TestDb::new(Engine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 1);
    let app = TestApp::spawn(s.clone()).await;
    let _teardown = common::Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    // Databases in staging: their sizes (connection limits) are priced apart.
    let cache = |size: &str| json!({"name": unique(), "environment": "staging", "size": size, "owner": "team-a", "cost_center": "ENG-1234"});
    let (_, est) = call(
        &app,
        "POST",
        "/estimates",
        None,
        Some(json!({"offering": "postgres-database", "values": cache("small")})),
    )
    .await;
    let small = est["estimate"]["monthly"].as_f64().unwrap();
    let (_, est) = call(
        &app,
        "POST",
        "/estimates",
        None,
        Some(json!({"offering": "postgres-database", "values": cache("medium")})),
    )
    .await;
    let medium = est["estimate"]["monthly"].as_f64().unwrap();
    assert!(medium > small, "{small} {medium}");

    // A budget that fits the medium size alone, not small + medium.
    let limit = medium + small / 2.0;
    let (status, _) = call(
        &app,
        "PUT",
        "/teams/team-a/budget",
        Some("dave-token"),
        Some(json!({"monthlyLimit": limit})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, created) =
        order_as(&app, "alice-token", "postgres-database", cache("small")).await;
    assert_eq!(status, 201, "{created}");
    let done = wait_final(&app, created["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let rid = done["resourceId"].as_str().unwrap();

    // small -> medium: the team will spend `medium`, within the budget.
    let r = app
        .client
        .patch(app.api(&format!("/resources/{rid}")))
        .bearer_auth("alice-token")
        .json(&json!({"values": {"size": "medium"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let update: Value = r.json().await.unwrap();
    assert_eq!(update["status"], "pending", "no approval needed: {update}");
    assert_eq!(
        wait_final(&app, update["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );

    // Orders not provisioned yet count: with workers off, two small orders wait in the queue.
    app.stop().await;
    s.engine.workers = 0;
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    let app = TestApp::spawn(s).await;
    let (status, first) = order_as(&app, "alice-token", "postgres-database", cache("small")).await;
    assert_eq!(status, 201);
    assert_eq!(
        first["status"], "awaiting_approval",
        "medium + small is over: {first}"
    );
    let (_, second) = order_as(&app, "alice-token", "postgres-database", cache("small")).await;
    let (_, est) = call(
        &app,
        "POST",
        "/estimates",
        Some("alice-token"),
        Some(json!({"offering": "postgres-database", "values": cache("small")})),
    )
    .await;
    assert!(
        (est["budget"]["orderedMonthly"].as_f64().unwrap() - 2.0 * small).abs() < 0.01,
        "both open orders count: {est} (second: {second})"
    );
    app.stop().await;
}

/// Orders racing for one team's budget (issue 13: twelve concurrent orders of 15 against a
/// budget of 100 got ten accepted). Fifty fire at once; the ones accepted without approval
/// must fit the budget exactly: their sum within it, and one more would not fit.
async fn concurrent_orders_fit_the_budget(engine: Engine) {
    let db = TestDb::new(engine).await;
    let mut s = common::kit::with_workers(settings(&db.url), 0);
    // Enough connections for the orders to really overlap (five made the race rare).
    s.database.max_connections = 20;
    let app = TestApp::spawn(s).await;
    let cache = || json!({"name": common::kit::unique(), "environment": "dev", "owner": "team-a", "cost_center": "ENG-1234"});
    let (_, est) = call(
        &app,
        "POST",
        "/estimates",
        None,
        Some(json!({"offering": "redis-cache", "values": cache()})),
    )
    .await;
    let price = est["estimate"]["monthly"].as_f64().unwrap();
    assert_eq!(price, 15.0, "{est}");
    let limit = 100.0;
    let (status, _) = call(
        &app,
        "PUT",
        "/teams/team-a/budget",
        Some("dave-token"),
        Some(json!({"monthlyLimit": limit})),
    )
    .await;
    assert_eq!(status, 200);

    let mut orders = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (client, url, values) = (app.client.clone(), app.api("/requests"), cache());
        orders.spawn(async move {
            let r = client
                .post(url)
                .bearer_auth("alice-token")
                .json(&json!({"offering": "redis-cache", "values": values}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        });
    }
    let (mut accepted, mut approval) = (0, 0);
    while let Some(done) = orders.join_next().await {
        let (status, body) = done.unwrap();
        assert_eq!(status, 201, "{body}");
        match body["status"].as_str().unwrap() {
            "pending" => accepted += 1,
            "awaiting_approval" => {
                assert_eq!(
                    body["decision"]["requireApproval"][0]["rule"], "team_budget",
                    "{body}"
                );
                approval += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    let spent = f64::from(accepted) * price;
    assert!(spent <= limit, "{accepted} accepted: {spent} > {limit}");
    assert!(
        spent + price > limit,
        "only {accepted} accepted, one more would have fit"
    );
    assert_eq!(accepted + approval, 50);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_fit_the_budget_sqlite() {
    concurrent_orders_fit_the_budget(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_fit_the_budget_postgres() {
    concurrent_orders_fit_the_budget(Engine::Postgres).await;
}

/// Replicas share one PostgreSQL database, so the in-process lock is not enough: an order
/// takes the team's advisory lock in its transaction. Held elsewhere (as by another replica
/// deciding an order of the same team), the team's next order waits for it; another team's
/// does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_wait_for_the_teams_lock_held_by_another_replica() {
    use sea_orm::{ConnectionTrait, Statement};
    let db = TestDb::new(Engine::Postgres).await;
    let mut s = common::kit::with_workers(settings(&db.url), 0);
    // Only a team with a budget serializes its orders (team-b has none: it takes no lock).
    s.cost.budgets = [("group:default/team-a".to_owned(), 100_000.0)].into();
    let app = TestApp::spawn(s).await;
    let other_replica = common::kit::db_of(&db.url).await;
    let lock = |f: &str| {
        Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT {f}(1885435493, hashtext('group:default/team-a'))::text"),
        )
    };
    // A pool could run the unlock on another session: hold the lock in a transaction.
    use sea_orm::TransactionTrait;
    let holder = other_replica.begin().await.unwrap();
    holder
        .execute_raw(lock("pg_advisory_xact_lock"))
        .await
        .unwrap();
    // team-b's key is held too: its orders would wait if they took it.
    holder
        .execute_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(1885435493, hashtext('group:default/team-b'))::text",
        ))
        .await
        .unwrap();

    let order = |owner: &str, token: &str| {
        let (client, url) = (app.client.clone(), app.api("/requests"));
        let body = json!({"offering": "redis-cache", "values": {"name": common::kit::unique(), "environment": "dev", "owner": owner, "cost_center": "ENG-1234"}});
        let token = token.to_owned();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let team_a = order("team-a", "alice-token");
    common::kit::eventually("team-a's order waits for the advisory lock", || async {
        let waiting = other_replica
            .query_one_raw(Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*)::bigint AS n FROM pg_locks WHERE locktype = 'advisory' \
                 AND classid = 1885435493 AND NOT granted",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        (waiting == 1).then_some(())
    })
    .await;
    assert_eq!(
        order("team-b", "mallory-token").await.unwrap(),
        201,
        "a team without a budget takes no lock, so it does not wait"
    );
    assert!(
        !team_a.is_finished(),
        "team-a's order waits while the lock is held"
    );
    holder.commit().await.unwrap();
    assert_eq!(team_a.await.unwrap(), 201);
    app.stop().await;
}

/// Everything paved logs on this test's thread (the server runs on it too: a current-thread
/// runtime), to check what an operator would read.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Policies follow their files as templates do: a changed file decides the next evaluation; a
/// file that does not compile is logged and the previous set keeps deciding.
#[tokio::test]
async fn policies_reload_when_their_files_change_and_keep_the_last_good_set() {
    use common::kit::eventually;
    let logs = LogBuffer::default();
    let sink = logs.clone();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish(),
    );
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("policies");
    std::fs::create_dir(&dir).unwrap();
    // Written beside the folder and renamed in, so the watch never reads half a file.
    let put = |text: &str| {
        let staged = root.path().join("limit.rego");
        std::fs::write(&staged, text).unwrap();
        std::fs::rename(&staged, dir.join("limit.rego")).unwrap();
    };
    let policy = |rule: &str| {
        format!(
            "package paved.limit\n\nimport rego.v1\n\ndeny contains {{\"rule\": \"{rule}\", \"message\": \"{rule} says no\"}} if input.estimate.monthly > 10\n"
        )
    };
    put(&policy("first"));
    let db = TestDb::new(Engine::Sqlite).await;
    let mut s = settings(&db.url);
    s.policies.dir = dir.clone();
    s.policies.reload_interval_seconds = 1;
    let app = TestApp::spawn(s).await;
    let input = json!({"resource": {"environment": "production", "owner": "x", "labels": {}}, "offering": {"ttl": null}, "estimate": {"monthly": 50}, "parts": [], "parameters": {}, "budget": {}});
    let denied_by = || async {
        let (status, d) = call(
            &app,
            "POST",
            "/policies/evaluate",
            None,
            Some(input.clone()),
        )
        .await;
        assert_eq!(status, 200, "{d}");
        d["deny"][0]["rule"].as_str().map(str::to_owned)
    };
    assert_eq!(denied_by().await.as_deref(), Some("first"));

    put(&policy("second, longer"));
    eventually("the changed policy decides", || async {
        (denied_by().await.as_deref() == Some("second, longer")).then_some(())
    })
    .await;

    put("package paved.limit\n\nimport rego.v1\n\ndeny contains x if {\n  x :=\n}\n");
    let line = eventually("the broken policy is reported", || async {
        logs.text()
            .lines()
            .find(|l| l.contains("keeping the previous set"))
            .map(str::to_owned)
    })
    .await;
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("limit.rego"), "the file is named: {line}");
    assert_eq!(
        denied_by().await.as_deref(),
        Some("second, longer"),
        "the last set that compiled keeps deciding"
    );
    app.stop().await;
}
