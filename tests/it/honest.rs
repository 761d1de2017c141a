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
