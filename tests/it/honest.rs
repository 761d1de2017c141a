//! Issue 19: what a developer is told is true and actionable — a taken name refused when the
//! order is placed, failures that say where and why, status with step timings.

use crate::common;

use common::{
    Engine, Teardown, TestApp, TestDb,
    kit::{unique as name, with_workers},
    settings,
};
use serde_json::{Value, json};

fn cache(n: &str) -> Value {
    json!({"name": n, "owner": "team-a", "cost_center": "ENG-1234"})
}

/// The name a live resource holds is refused in the estimate (as the `name` field's problem,
/// also through `paved:estimate`, what a template dry-run runs) and by the order (409 naming
/// the holder), before anything is stored; another team learns only that it is taken.
#[tokio::test]
async fn a_taken_name_is_refused_when_the_order_is_placed() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 0)).await;
    let alice = app.as_("alice-token");
    let n = name();
    let keyed = json!({"offering": "redis-cache", "values": cache(&n), "idempotencyKey": "task-1"});
    let first = alice.post("/requests", &keyed).await.created_id();
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![first.clone()],
    };
    assert_eq!(app.run_pending_jobs().await, 1);
    let done = alice.request(&first).await.body;
    assert_eq!(done["status"], "succeeded", "{done}");
    let rid = done["resourceId"].as_str().unwrap().to_owned();
    let entity = format!("resource:default/{n}-dev");

    let est = alice.estimate("redis-cache", cache(&n)).await;
    assert_eq!(est.status, 200, "{}", est.body);
    assert_eq!(est.body["valid"], false, "{}", est.body);
    let e = &est.body["errors"][0];
    assert_eq!(
        (&e["field"], &e["rule"]),
        (&json!("name"), &json!("unique"))
    );
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains(&rid) && msg.contains(&entity), "{msg}");

    let action: Value = app
        .client
        .post(app.url("/api/paved/.backstage/actions/v1/actions/paved%3Aestimate/invoke"))
        .bearer_auth("alice-token")
        .json(&json!({"offering": "redis-cache", "values": cache(&n)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(action["output"]["valid"], false, "{action}");
    assert_eq!(action["output"]["errors"][0]["field"], "name", "{action}");

    let again = alice.order("redis-cache", cache(&n)).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.body["error"]["name"], "ConflictError");
    assert_eq!(
        again.body["error"]["resourceId"],
        json!(rid),
        "{}",
        again.body
    );
    assert_eq!(again.body["error"]["entityRef"], json!(entity));
    assert!(
        again.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&rid)
    );
    // Nothing was stored: the only request is the first.
    let (_, list) = app.get_json("/requests").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    // Another team may not see the holder: it is not named beyond its catalog ref.
    let mallory = app.as_("mallory-token");
    let theirs = json!({"name": n, "owner": "team-b", "cost_center": "ENG-1234"});
    let r = mallory.order("redis-cache", theirs.clone()).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body["error"]["resourceId"].is_null(), "{}", r.body);
    assert!(!r.body.to_string().contains(&rid), "{}", r.body);
    let est = mallory.estimate("redis-cache", theirs).await;
    assert_eq!(est.body["errors"][0]["rule"], "unique", "{}", est.body);

    // A retried order (same idempotency key) still answers with its request, not 409.
    let retried = alice.post("/requests", &keyed).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["id"], json!(first));
    app.stop().await;
}

/// A server that is not there: the request says at which step of how many it failed, on
/// which server (environment, host and port, never the password in paved's target URL), the
/// real cause (not "pool timed out"), what to do next and where the logs are; and the step it
/// stopped at is `failed` once the attempts are spent, not `retrying`.
#[tokio::test]
async fn a_failure_says_what_where_why_and_what_next() {
    let db = TestDb::new(Engine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 2);
    s.engine.retry_base_ms = 50;
    s.engine.retry_max_seconds = 1;
    s.engine.max_attempts = 2;
    // Nothing listens on these ports.
    let (pg_port, redis_port) = (common::free_port(), common::free_port());
    s.drivers.postgres.targets = [(
        "dev".to_owned(),
        format!("postgres://paved:s3cret-pg@127.0.0.1:{pg_port}/postgres"),
    )]
    .into();
    s.drivers.redis.targets = [(
        "dev".to_owned(),
        format!("redis://:s3cret-redis@127.0.0.1:{redis_port}"),
    )]
    .into();
    let app = TestApp::spawn(s).await;
    let alice = app.as_("alice-token");
    let pg = alice
        .order(
            "postgres-database",
            json!({"name": name(), "size": "small", "owner": "team-a", "cost_center": "ENG-1234"}),
        )
        .await
        .created_id();
    let cache = alice
        .order("redis-cache", cache(&name()))
        .await
        .created_id();

    for (id, step, server, port) in [
        (&pg, "create database", "PostgreSQL (dev)", pg_port),
        (&cache, "create cache", "Redis (dev)", redis_port),
    ] {
        let done =
            common::kit::wait_final_within(&app, id, std::time::Duration::from_secs(60)).await;
        assert_eq!(done["status"], "failed", "{done}");
        let why = done["error"].as_str().unwrap();
        let head = format!("failed at step 3 of 6: {step}: {server} at 127.0.0.1:{port}: ");
        assert!(why.starts_with(&head), "{why}");
        assert!(why.to_lowercase().contains("connection refused"), "{why}");
        assert!(!why.contains("pool timed out"), "{why}");
        assert!(
            why.contains("What next: the server is not accepting connections"),
            "{why}"
        );
        assert!(why.contains(&format!("/v1/requests/{id}/logs")), "{why}");
        assert!(!why.contains("s3cret"), "{why}");
        let rid = done["resourceId"].as_str().unwrap();
        assert!(
            why.contains(&format!("paved resource delete {rid}")),
            "{why}"
        );
        let failed = &done["steps"][2];
        assert_eq!(failed["name"], step);
        assert_eq!(failed["status"], "failed", "{done}");
        assert_eq!(failed["attempts"], 2, "{done}");
        assert!(
            failed["error"].as_str().unwrap().starts_with(&head),
            "{done}"
        );
        let (_, logs) = app.get_json(&format!("/requests/{id}/logs")).await;
        assert!(!logs.to_string().contains("s3cret"), "{logs}");
    }
    app.stop().await;
}

/// A request's status numbers its steps and says how long each took, and an unfinished one
/// says when it should be done, learned from the offering's past succeeded requests.
#[tokio::test]
async fn status_numbers_steps_times_them_and_expects_a_completion() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 0)).await;
    let alice = app.as_("alice-token");
    let mut ids = Vec::new();
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    // No past yet: nothing to expect.
    let first = alice
        .order("redis-cache", cache(&name()))
        .await
        .created_id();
    assert!(alice.request(&first).await.body["expected"].is_null());
    ids.push(first);
    assert_eq!(app.run_pending_jobs().await, 1);
    for _ in 0..2 {
        ids.push(
            alice
                .order("redis-cache", cache(&name()))
                .await
                .created_id(),
        );
        assert_eq!(app.run_pending_jobs().await, 1);
    }
    let done = alice.request(&ids[0]).await.body;
    assert_eq!(done["status"], "succeeded", "{done}");
    let steps = done["steps"].as_array().unwrap();
    let numbers: Vec<i64> = steps
        .iter()
        .map(|s| s["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    assert!(
        steps
            .iter()
            .all(|s| s["durationMs"].as_i64().is_some_and(|d| d >= 0)),
        "{done}"
    );
    assert!(
        done["expected"].is_null(),
        "a finished request expects nothing"
    );

    let next = alice
        .order("redis-cache", cache(&name()))
        .await
        .created_id();
    let waiting = alice.request(&next).await.body;
    let expected = &waiting["expected"];
    assert_eq!(expected["basedOn"], 3, "{waiting}");
    assert!(
        expected["durationSeconds"]
            .as_f64()
            .is_some_and(|d| d >= 0.0),
        "{waiting}"
    );
    assert!(expected["completionAt"].is_string(), "{waiting}");
    // Another offering's past is not this one's.
    let pg = alice
        .order(
            "postgres-database",
            json!({"name": name(), "size": "small", "owner": "team-a", "cost_center": "ENG-1234"}),
        )
        .await
        .created_id();
    assert!(alice.request(&pg).await.body["expected"].is_null());
    app.stop().await;
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// An order over its team's budget waits for a platform-admin, and its approval says that a
/// lead cannot give it; cancelling it withdraws the approval, so the request's approvals, the
/// platform metrics and the Prometheus gauge all agree nothing waits any more.
#[tokio::test]
async fn cancelling_a_request_that_waits_for_approval_withdraws_its_approvals() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 0)).await;
    let (alice, lena, dave) = (
        app.as_("alice-token"),
        app.as_("lena-token"),
        app.as_("dave-token"),
    );
    assert_eq!(dave.set_budget("team-a", 1.0).await.status, 200);
    let id = alice
        .order("redis-cache", cache(&name()))
        .await
        .created_id();
    assert_eq!(alice.request(&id).await.body["status"], "awaiting_approval");
    let approvals = alice.approvals(&id).await.body;
    let reason = approvals["items"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("only a platform-admin may approve it"),
        "{approvals}"
    );
    let refused = lena.approve(&id).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("platform-admin"),
        "{}",
        refused.body
    );
    assert_eq!(
        dave.platform_metrics().await.body["approvals"]["pending"],
        1
    );

    let cancelled = alice.cancel(&id).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let approvals = alice.approvals(&id).await.body;
    let a = &approvals["items"][0];
    assert_eq!(a["status"], "cancelled", "{approvals}");
    assert_eq!(a["decidedBy"], "user:default/alice", "{approvals}");
    assert!(
        a["decisionReason"].as_str().unwrap().contains("cancelled"),
        "{approvals}"
    );
    assert_eq!(
        dave.platform_metrics().await.body["approvals"]["pending"],
        0
    );
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("dave-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(gauge(&text, "paved_approvals_pending"), Some(0.0), "{text}");
    app.stop().await;
}

/// Each bundled offering says what its resources hand the team, and a resource provisioned on
/// the real servers has every output it declares (and no password among them).
#[tokio::test]
async fn offerings_declare_the_outputs_their_resources_really_have() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 0)).await;
    let alice = app.as_("alice-token");
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    for (offering, values) in [
        ("redis-cache", cache(&name())),
        (
            "postgres-database",
            json!({"name": name(), "size": "small", "owner": "team-a", "cost_center": "ENG-1234"}),
        ),
    ] {
        let o = alice.offering(offering).await.body;
        let declared = o["outputs"]["values"].as_array().unwrap().clone();
        assert!(declared.len() >= 4, "{o}");
        assert!(
            o["outputs"]["credentials"]
                .as_str()
                .unwrap()
                .contains("paved resource credentials"),
            "{o}"
        );
        let id = alice.order(offering, values).await.created_id();
        assert_eq!(app.run_pending_jobs().await, 1);
        let done = alice.request(&id).await.body;
        assert_eq!(done["status"], "succeeded", "{done}");
        let res = alice
            .resource(done["resourceId"].as_str().unwrap())
            .await
            .body;
        // Its entity in Backstage shows the same values, under paved.dev/output.<part>.<name>.
        let feed = alice.catalog_changes("limit=500").await.body;
        let entity = feed["entities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["metadata"]["name"] == res["name"])
            .unwrap_or_else(|| panic!("no entity {} in {feed}", res["name"]))
            .clone();
        for d in &declared {
            let (part, key) = (d["part"].as_str().unwrap(), d["name"].as_str().unwrap());
            let value = &res["outputs"][part][key];
            assert!(!value.is_null(), "{offering} declares {part}.{key}: {res}");
            let shown =
                &entity["metadata"]["annotations"][format!("paved.dev/output.{part}.{key}")];
            let expected = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            assert_eq!(shown, &json!(expected), "{entity}");
        }
        assert!(!res["outputs"].to_string().contains("password"), "{res}");
        let creds = alice.credentials(res["id"].as_str().unwrap()).await.body;
        let secrets: Vec<&str> = creds
            .as_object()
            .unwrap()
            .values()
            .filter_map(|p| p["password"].as_str())
            .collect();
        assert!(!secrets.is_empty(), "{creds}");
        for secret in secrets {
            assert!(!entity.to_string().contains(secret), "{entity}");
        }
    }
    app.stop().await;
}

/// A resource's requests, newest first, as its entity card reads its last one
/// (`?resource=…&limit=1`): its delete, then its create; another resource's never.
#[tokio::test]
async fn a_resources_requests_are_listed_by_resource() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 0)).await;
    let alice = app.as_("alice-token");
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let mut resources = Vec::new();
    for _ in 0..2 {
        let id = alice
            .order("redis-cache", cache(&name()))
            .await
            .created_id();
        assert_eq!(app.run_pending_jobs().await, 1);
        let done = alice.request(&id).await.body;
        resources.push((id, done["resourceId"].as_str().unwrap().to_owned()));
    }
    let (created, rid) = &resources[0];
    let deleted = alice.delete_resource(rid).await;
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    let delete_request = deleted.body["id"].as_str().unwrap().to_owned();
    let all = alice.requests(&format!("?resource={rid}")).await.body;
    let ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [delete_request.as_str(), created.as_str()], "{all}");
    let last = alice
        .requests(&format!("?resource={rid}&limit=1"))
        .await
        .body;
    assert_eq!(last["items"][0]["id"], json!(delete_request), "{last}");
    // Another team's resource: its requests are as absent as the resource.
    let theirs = app
        .as_("mallory-token")
        .requests(&format!("?resource={rid}"))
        .await
        .body;
    assert_eq!(theirs["items"], json!([]), "{theirs}");
    app.stop().await;
}
