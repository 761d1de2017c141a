//! The provisioning engine end to end: orders become real databases and Redis users on this
//! machine's servers; crashes and racing replicas provision each request exactly once.

use crate::common;

use std::{sync::Arc, time::Duration};

use common::{
    Engine as DbEngine, Teardown, TestApp, TestDb,
    fake_driver::DiesAfterApply,
    kit::{call, order, unique as name, wait_final, with_workers},
    settings,
};
use paved::provisioning::{
    drivers::{Drivers, Provisioner},
    engine::Engine,
};
use paved::vocab::secret_box::SecretBox;
use sea_orm::sqlx::{self, Connection, postgres::PgConnection};
use serde_json::{Value, json};

#[tokio::test]
async fn a_postgres_order_becomes_a_database_only_its_team_can_read() {
    let db = TestDb::new(DbEngine::Postgres).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 2)).await;
    let n = name();
    let id = order(&app, "postgres-database", json!({"name": n, "environment": "staging", "size": "small", "owner": "team-a", "cost_center": "ENG-1234"})).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone()],
    };
    let done = wait_final(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let steps: Vec<(&str, &str)> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("validate", "succeeded"),
            ("plan", "succeeded"),
            ("create database", "succeeded"),
            ("configure database", "succeeded"),
            ("store credentials", "succeeded"),
            ("publish", "succeeded")
        ]
    );
    assert!(
        done["steps"][2]["startedAt"].is_string() && done["steps"][2]["finishedAt"].is_string()
    );

    let rid = done["resourceId"].as_str().unwrap();
    let (_, res) = app.get_json(&format!("/resources/{rid}")).await;
    assert_eq!(res["status"], "ready");
    assert_eq!(res["name"], format!("{n}-staging"));
    // Another team does not even see it.
    let as_mallory = |path: String| {
        app.client
            .get(app.api(&path))
            .bearer_auth("mallory-token")
            .send()
    };
    assert_eq!(
        as_mallory(format!("/resources/{rid}"))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        as_mallory(format!("/requests/{id}"))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        as_mallory(format!("/requests/{id}/logs"))
            .await
            .unwrap()
            .status(),
        404
    );
    let theirs: Value = as_mallory("/resources".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        theirs["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != rid),
        "{theirs}"
    );
    let ours: Value = app
        .client
        .get(app.api("/resources"))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ours["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == rid)
    );
    assert_eq!(res["monthlyCost"], 65.0);
    assert!(
        !res.to_string().contains("password"),
        "no secret in the resource: {res}"
    );

    let creds_path = format!("/resources/{rid}/credentials");
    let creds = |who: Option<&'static str>| call(&app, "GET", &creds_path, who, None);
    assert_eq!(
        creds(None).await.0,
        404,
        "the anonymous caller sees no team's resources"
    );
    assert_eq!(
        creds(Some("mallory-token")).await.0,
        404,
        "another team does not even see the resource"
    );
    let (status, c) = creds(Some("alice-token")).await;
    assert_eq!(status, 200, "{c}");
    let url = c["database"]["url"].as_str().unwrap();
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let (_, logs) = app.get_json(&format!("/requests/{id}/logs")).await;
    let lines: Vec<&str> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"create database: database applied"),
        "{lines:?}"
    );
    let password = c["database"]["password"].as_str().unwrap();
    assert!(
        !logs.to_string().contains(password),
        "logs never carry the password"
    );

    // Changing it goes through the guardrails again and converges the database.
    let patch = |values: Value| {
        app.client
            .patch(app.api(&format!("/resources/{rid}")))
            .bearer_auth("alice-token")
            .json(&json!({"values": values}))
            .send()
    };
    let r = patch(json!({"name": "renamed"})).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("name: cannot change"));
    let r = patch(json!({"size": "large"})).await.unwrap();
    assert_eq!(r.status(), 403, "over the staging cost limit");
    let r = patch(json!({"size": "medium"})).await.unwrap();
    assert_eq!(r.status(), 202);
    let upd: Value = r.json().await.unwrap();
    assert_eq!(upd["operation"], "update");
    let updated = wait_final(&app, upd["id"].as_str().unwrap()).await;
    assert_eq!(updated["status"], "succeeded", "{updated}");
    let (_, res) = app.get_json(&format!("/resources/{rid}")).await;
    assert_eq!(res["monthlyCost"], 305.0);
    let mut admin = PgConnection::connect(&common::postgres_admin_url())
        .await
        .unwrap();
    let limit: i32 = sqlx::query_scalar("SELECT datconnlimit FROM pg_database WHERE datname = $1")
        .bind(format!("{n}_staging"))
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(limit, 100, "the medium preset's connection limit");
    let mut conn = PgConnection::connect(url).await.unwrap();
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        kept, 1,
        "data survives an update; the password did not change"
    );
    drop(conn);

    // Deleting is a request too: another team may not; the owner may.
    let del = |who: &'static str| {
        app.client
            .delete(app.api(&format!("/resources/{rid}")))
            .bearer_auth(who)
            .send()
    };
    assert_eq!(del("mallory-token").await.unwrap().status(), 404);
    let r = del("alice-token").await.unwrap();
    assert_eq!(r.status(), 202);
    let deletion: Value = r.json().await.unwrap();
    assert_eq!(deletion["operation"], "delete");
    let gone = wait_final(&app, deletion["id"].as_str().unwrap()).await;
    assert_eq!(gone["status"], "succeeded", "{gone}");
    let names: Vec<&str> = gone["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["validate", "destroy database", "unpublish"]);
    let (_, res) = app.get_json(&format!("/resources/{rid}")).await;
    assert_eq!(res["status"], "deleted");
    assert_eq!(
        res["name"],
        format!("{n}-staging"),
        "still shown under its name"
    );
    assert!(
        PgConnection::connect(url).await.is_err(),
        "the database and its role are gone"
    );
    assert_eq!(
        creds(Some("alice-token")).await.0,
        404,
        "credentials destroyed"
    );

    // Every state change is on the record, and the record cannot be edited.
    // The name is free again: the same order can be placed (and provisioned) anew.
    let again = order(&app, "postgres-database", json!({"name": n, "environment": "staging", "size": "small", "owner": "team-a", "cost_center": "ENG-1234"})).await;
    let _teardown_again = Teardown {
        db_url: db.url.clone(),
        requests: vec![again.clone()],
    };
    assert_eq!(wait_final(&app, &again).await["status"], "succeeded");

    let (_, trail) = app.get_json(&format!("/audit?target=resource:{rid}")).await;
    let mut kinds: Vec<(&str, &str)> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    kinds.reverse();
    assert_eq!(
        kinds,
        [
            ("resource.created", "paved:engine"),
            // Refused attempts are on the record too, the anonymous one included.
            ("credentials.read", "anonymous"),
            ("credentials.read", "user:default/mallory"),
            ("credentials.read", "user:default/alice"),
            ("resource.updated", "paved:engine"),
            ("resource.delete_requested", "user:default/alice"),
            ("resource.deleted", "paved:engine")
        ]
    );
    let (_, trail) = app.get_json(&format!("/audit?target=request:{id}")).await;
    let kinds: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"request.created") && kinds.contains(&"policy.decided"),
        "{kinds:?}"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "step.succeeded").count(), 6);
    let (_, reads) = app
        .get_json("/audit?type=credentials.read&actor=user:default/alice")
        .await;
    assert_eq!(reads["items"].as_array().unwrap().len(), 1);
    let r = app.client.delete(app.api("/audit")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    app.stop().await;
}

#[tokio::test]
async fn production_resources_are_protected_from_deletion() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    // No background workers: the test runs the jobs itself, so each check reads what they did.
    let app = TestApp::spawn(with_workers(settings(&db.url), 0)).await;
    let (alice, dave) = (app.as_("alice-token"), app.as_("dave-token"));
    let id = alice
        .order(
            "redis-cache",
            json!({"name": name(), "environment": "prod", "owner": "team-a", "cost_center": "ENG-1234"}),
        )
        .await
        .created_id();
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone()],
    };
    assert_eq!(app.run_pending_jobs().await, 1);
    let done = alice.request(&id).await.body;
    assert_eq!(done["status"], "succeeded", "{done}");
    let rid = done["resourceId"].as_str().unwrap();
    let r = alice.delete_resource(rid).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body.to_string().contains("deletion protection"),
        "{}",
        r.body
    );
    let path = format!("/resources/{rid}?override=true");
    assert_eq!(
        alice.delete(&path).await.status,
        403,
        "only admins override"
    );
    assert_eq!(
        dave.delete_resource(rid).await.status,
        403,
        "even admins say so explicitly"
    );
    let deletion = dave.delete(&path).await;
    assert_eq!(deletion.status, 202);
    assert_eq!(app.run_pending_jobs().await, 1);
    let id = deletion.body["id"].as_str().unwrap();
    assert_eq!(dave.request(id).await.body["status"], "succeeded");
    app.stop().await;
}

#[tokio::test]
async fn a_preview_environment_provisions_database_and_cache_as_one() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 1)).await;
    let branch = name();
    let id = order(&app, "preview-environment", json!({"component": "shop", "branch": branch, "owner": "team-a", "cost_center": "ENG-1234", "ttl_hours": 4})).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone()],
    };
    let done = wait_final(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let names: Vec<&str> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "validate",
            "plan",
            "create database",
            "create cache",
            "configure database",
            "configure cache",
            "store credentials",
            "publish"
        ]
    );
    let (_, res) = app
        .get_json(&format!(
            "/resources/{}",
            done["resourceId"].as_str().unwrap()
        ))
        .await;
    assert!(res["expiresAt"].is_string(), "a TTL makes it expire");

    // In the catalog: the environment, and each part as a Resource it depends on.
    let doc = app
        .client
        .get(app.url(&format!(
            "/api/paved/catalog/resources/{}.yaml",
            res["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let docs: Vec<Value> = doc
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| yaml_serde::from_str(d).unwrap())
        .collect();
    let unit = res["name"].as_str().unwrap();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    let (db_part, cache_part) = (format!("{unit}.database"), format!("{unit}.cache"));
    assert_eq!(names, [unit, db_part.as_str(), cache_part.as_str()]);
    assert_eq!(docs[0]["spec"]["type"], "environment");
    assert_eq!(
        docs[0]["spec"]["dependsOn"],
        json!([
            format!("resource:default/{db_part}"),
            format!("resource:default/{cache_part}")
        ])
    );
    assert_eq!(
        docs[0]["spec"]["dependencyOf"],
        json!(["component:default/shop"])
    );
    for (part, kind) in [(&docs[1], "database"), (&docs[2], "cache")] {
        assert_eq!(part["kind"], "Resource");
        assert_eq!(part["spec"]["type"], kind);
        assert_eq!(part["spec"]["owner"], "group:default/team-a");
        assert_eq!(
            part["spec"]["dependencyOf"],
            json!([format!("resource:default/{unit}")])
        );
        let ann = &part["metadata"]["annotations"];
        assert_eq!(ann["paved.dev/resource-id"], res["id"]);
        assert!(
            ann["paved.dev/monthly-cost-usd"].is_null(),
            "the environment's cost covers its parts"
        );
    }
    assert!(!doc.contains("password"), "no credential in the catalog");
    let c: Value = app
        .client
        .get(app.api(&format!(
            "/resources/{}/credentials",
            res["id"].as_str().unwrap()
        )))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut redis = redis::Client::open(c["cache"]["url"].as_str().unwrap())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = c["cache"]["key_prefix"].as_str().unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}x"))
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_worker_that_dies_mid_provision_is_replaced_and_nothing_runs_twice() {
    let db = TestDb::new(DbEngine::Postgres).await;
    let mut s = with_workers(settings(&db.url), 0);
    s.engine.lease_seconds = 2;
    let key = s.secrets.key.clone().unwrap().expose().to_owned();
    let app = TestApp::spawn(s.clone()).await;
    let id = order(
        &app,
        "redis-cache",
        json!({"name": name(), "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone()],
    };

    let conn = paved::db::connect(&s.database).await.unwrap();
    let secrets = Arc::new(SecretBox::from_base64(&key).unwrap());
    let make = |drivers: Arc<dyn Provisioner>| {
        Engine::new(
            conn.clone(),
            drivers,
            secrets.clone(),
            s.engine.clone(),
            paved::jobs::Wake::default(),
        )
    };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    // This worker "dies" right after creating the cache: its next driver call hangs, and the
    // worker is killed there, its job still claimed.
    let dying = Arc::new(DiesAfterApply::new(
        Drivers::from_settings(&s.drivers),
        "redis",
    ));
    let doomed = tokio::spawn(Arc::new(make(dying.clone())).work("doomed".into(), rx.clone()));
    tokio::time::timeout(Duration::from_secs(60), dying.hung())
        .await
        .expect("the doomed worker reaches the step after creating the cache");
    doomed.abort();
    let _ = doomed.await;
    let (_, half) = app.get_json(&format!("/requests/{id}")).await;
    assert_eq!(half["status"], "running");
    assert_eq!(half["steps"][2]["status"], "succeeded");

    // A fresh worker takes the job over once the lease expires and finishes it.
    let survivor = tokio::spawn(
        Arc::new(make(Arc::new(Drivers::from_settings(&s.drivers))))
            .work("survivor".into(), rx.clone()),
    );
    let done = wait_final(&app, &id).await;
    survivor.abort();
    assert_eq!(done["status"], "succeeded", "{done}");
    let create = &done["steps"][2];
    assert_eq!(
        (create["name"].as_str(), create["attempts"].as_i64()),
        (Some("create cache"), Some(1)),
        "not run twice"
    );
    let (_, logs) = app.get_json(&format!("/requests/{id}/logs")).await;
    let starts = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["message"] == "create cache: started")
        .count();
    assert_eq!(starts, 1);
    app.stop().await;
}

#[tokio::test]
async fn two_replicas_racing_over_many_requests_provision_each_exactly_once() {
    const N: usize = 200;
    let db = TestDb::new(DbEngine::Postgres).await;
    let s = with_workers(settings(&db.url), 0);
    let app = TestApp::spawn(s.clone()).await;
    let run = name();
    let mut ids = Vec::new();
    for i in 0..N {
        let id = order(
            &app,
            "redis-cache",
            json!({"name": format!("{run}-{i}"), "owner": "team-a", "cost_center": "ENG-1234"}),
        )
        .await;
        ids.push(id);
    }
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: ids.clone(),
    };
    // Two replicas of paved on the same PostgreSQL, two workers each.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut rs = s.clone();
        rs.engine.workers = 2;
        replicas.push(TestApp::spawn(rs).await);
    }
    for id in &ids {
        let done = wait_final(&app, id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    use sea_orm::{ConnectionTrait, Statement};
    let conn = paved::db::connect(&s.database).await.unwrap();
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS jobs, SUM(attempts) AS attempts, COUNT(DISTINCT locked_by) AS x FROM jobs WHERE status = 'done'",
        ))
        .await
        .unwrap()
        .unwrap();
    let jobs: i64 = row.try_get("", "jobs").unwrap();
    let attempts: i64 = row
        .try_get::<Option<i64>>("", "attempts")
        .unwrap()
        .unwrap_or_default();
    assert_eq!(
        (jobs, attempts),
        (N as i64, N as i64),
        "each job claimed exactly once"
    );
    let creates = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM request_logs WHERE message = 'create cache: started'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        creates.try_get::<i64>("", "n").unwrap(),
        N as i64,
        "each cache created once"
    );
    for r in replicas {
        r.stop().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn pending_requests_can_be_cancelled() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 0)).await;
    let id = order(
        &app,
        "redis-cache",
        json!({"name": name(), "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let cancel_path = format!("/requests/{id}/cancel");
    let cancel = |who: Option<&'static str>| call(&app, "POST", &cancel_path, who, None);
    // Neither may see it, so for both it does not exist.
    assert_eq!(cancel(None).await.0, 404);
    assert_eq!(cancel(Some("mallory-token")).await.0, 404, "another team");
    assert_eq!(cancel(Some("alice-token")).await.0, 200);
    let (_, got) = app.get_json(&format!("/requests/{id}")).await;
    assert_eq!(got["status"], "cancelled");
    assert_eq!(cancel(Some("alice-token")).await.0, 409);

    // Nobody orders for a team they do not belong to.
    let r = app
        .client
        .post(app.api("/requests"))
        .bearer_auth("mallory-token")
        .json(&json!({"offering": "redis-cache", "values": {"name": name(), "owner": "team-a", "cost_center": "ENG-1234"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    app.stop().await;

    // Where anonymous access is off, the API needs credentials; health stays public.
    let mut locked = with_workers(settings(&db.url), 0);
    locked.auth.allow_anonymous = Some(false);
    let app = TestApp::spawn(locked).await;
    assert_eq!(
        app.client
            .get(app.api("/requests"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.client
            .get(app.api("/requests"))
            .bearer_auth("alice-token")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/.backstage/health/v1/liveness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn another_replica_starts_a_job_at_once_through_listen_notify() {
    let db = TestDb::new(DbEngine::Postgres).await;
    // The replica taking orders has no workers; the worker replica would poll only every 60 s.
    let api = TestApp::spawn(with_workers(settings(&db.url), 0)).await;
    let mut ws = with_workers(settings(&db.url), 1);
    ws.engine.poll_seconds = 60;
    let worker = TestApp::spawn(ws).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // its listener is up
    let started = std::time::Instant::now();
    let id = order(
        &api,
        "redis-cache",
        json!({"name": name(), "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone()],
    };
    let done = wait_final(&api, &id).await;
    assert_eq!(done["status"], "succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "woken by NOTIFY, not by the 60 s poll: {:?}",
        started.elapsed()
    );
    worker.stop().await;
    api.stop().await;
}

#[tokio::test]
async fn the_template_steps_provision_then_wait_for_the_resource() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    // Every order waits for approval: the one cancelled below can then never be provisioned
    // before its cancel arrives (it once was, and its Redis user outlived the test).
    let mut s = with_workers(settings(&db.url), 1);
    s.policies.data = json!({"guardrails": {"approval": {"above_monthly": 0}}});
    let app = TestApp::spawn(s).await;
    let actions = app.url("/api/paved/.backstage/actions/v1/actions");
    let n = name();
    let out: Value = app
        .client
        .post(format!("{actions}/paved%3Aprovision/invoke"))
        .bearer_auth("alice-token")
        .json(&json!({"offering": "redis-cache", "values": {"name": n, "owner": "team-a", "cost_center": "ENG-1234"}, "idempotencyKey": format!("task-{n}")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = out["output"]["requestId"].as_str().unwrap().to_owned();
    let other = order(
        &app,
        "redis-cache",
        json!({"name": name(), "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone(), other.clone()],
    };
    let (st, _) = call(
        &app,
        reqwest::Method::POST,
        &format!("/requests/{id}/approve"),
        Some("lena-token"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let waited: Value = app
        .client
        .post(format!("{actions}/paved%3Await/invoke"))
        .bearer_auth("alice-token")
        .json(&json!({"requestId": id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(waited["output"]["final"], true, "{waited}");
    assert_eq!(waited["output"]["status"], "succeeded");
    assert_eq!(
        waited["output"]["entityRef"],
        format!("resource:default/{n}-dev")
    );

    // A request that ends badly fails the step with paved's reason on the status line.
    app.client
        .post(app.api(&format!("/requests/{other}/cancel")))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap();
    let r = app
        .client
        .post(format!("{actions}/paved%3Await/invoke"))
        .bearer_auth("alice-token")
        .json(&json!({"requestId": other}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.status().canonical_reason(), Some("Conflict"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{body}"
    );
    app.stop().await;
}

/// A task never shows success for a request that has not succeeded: past the wait bound, a
/// request awaiting approval fails the step (saying who may approve and where the requester is
/// told), and one still provisioning answers `final: false` until the template's last call,
/// which fails too. (`wait_seconds: 0`: every call is at its bound, no clock involved.)
#[tokio::test]
async fn a_wait_past_its_bound_never_answers_success() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    // No workers: an approved request stays pending, as one still being provisioned.
    let mut s = with_workers(settings(&db.url), 0);
    s.backstage.wait_seconds = 0;
    s.backstage.app_url = Some("https://backstage.example.com/".into());
    s.policies.data = json!({"guardrails": {"approval": {"above_monthly": 0}}});
    let app = TestApp::spawn(s).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let wait = |input: Value| {
        let url = app.url("/api/paved/.backstage/actions/v1/actions/paved%3Await/invoke");
        let client = app.client.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth("alice-token")
                .json(&input)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let reason = r.status().canonical_reason().map(str::to_owned);
            (status, reason, r.json::<Value>().await.unwrap())
        }
    };
    let n = name();
    let id = order(
        &app,
        "redis-cache",
        json!({"name": n, "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let (_, r) = app.get_json(&format!("/requests/{id}")).await;
    assert_eq!(r["status"], "awaiting_approval", "{r}");

    // Even on the first of three calls: approvals outlast a task.
    let (status, _, body) = wait(json!({"requestId": id, "attempt": 1, "attempts": 3})).await;
    assert_eq!(status, 409, "a failed step, never an output: {body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message
            .contains("waits for approval by a lead of group:default/team-a (or a platform-admin)"),
        "who may approve: {message}"
    );
    assert!(
        message.contains(&format!(
            "https://backstage.example.com/catalog/default/resource/{n}-dev"
        )),
        "where it will be: {message}"
    );
    assert!(
        message.contains("No notification channel is configured"),
        "says plainly nobody is notified here: {message}"
    );
    assert!(
        body.get("output").is_none(),
        "no entity link, no resource id: {body}"
    );

    // Approved but not provisioned yet: not final before the last call, an error on it.
    let (st, _) = call(
        &app,
        reqwest::Method::POST,
        &format!("/requests/{id}/approve"),
        Some("lena-token"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (status, _, body) = wait(json!({"requestId": id, "attempt": 1, "attempts": 3})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"]["final"], false, "{body}");
    assert_eq!(body["output"]["entityRef"], "", "{body}");
    let (status, _, body) = wait(json!({"requestId": id, "attempt": 3, "attempts": 3})).await;
    assert_eq!(status, 503, "the last call fails the task: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is still pending"),
        "{body}"
    );
    // A single call (no attempts given) is its own last one.
    let (status, _, _) = wait(json!({"requestId": id})).await;
    assert_eq!(status, 503);
    app.stop().await;
}

/// `paved:update` and `paved:destroy`, as a day-2 template calls them.
#[tokio::test]
async fn templates_change_and_destroy_resources_through_actions() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 1)).await;
    let invoke = |action: &str, token: &'static str, input: Value| {
        let url = app.url(&format!(
            "/api/paved/.backstage/actions/v1/actions/paved%3A{action}/invoke"
        ));
        let client = app.client.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&input)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let reason = r.status().canonical_reason().map(str::to_owned);
            (status, r.json::<Value>().await.unwrap(), reason)
        }
    };
    let n = name();
    // A database: its size (the owner role's connection limit) is what an update changes.
    let id = order(
        &app,
        "postgres-database",
        json!({"name": n, "environment": "staging", "size": "small", "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let done = wait_final(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let rid = done["resourceId"].as_str().unwrap().to_owned();
    let (_, before) = app.get_json(&format!("/resources/{rid}")).await;

    // Update: the new size is re-priced and re-checked, then applied.
    let (status, out, _) = invoke(
        "update",
        "alice-token",
        json!({"resourceId": rid, "values": {"size": "medium"}}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["output"]["resourceId"], rid.as_str());
    assert!(
        out["output"]["monthlyCost"].as_f64().unwrap() > 0.0,
        "{out}"
    );
    let update = out["output"]["requestId"].as_str().unwrap().to_owned();
    assert_eq!(wait_final(&app, &update).await["status"], "succeeded");
    let (_, after) = app.get_json(&format!("/resources/{rid}")).await;
    assert!(
        after["monthlyCost"].as_f64() > before["monthlyCost"].as_f64(),
        "medium costs more than small: {before} -> {after}"
    );
    assert_eq!(after["monthlyCost"], out["output"]["monthlyCost"]);

    // Another team cannot even see it; bad input names the field.
    let (status, _, _) = invoke("destroy", "mallory-token", json!({"resourceId": rid})).await;
    assert_eq!(status, 404);
    let (status, out, _) = invoke("destroy", "alice-token", json!({"resource": rid})).await;
    assert_eq!(status, 400);
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resource"),
        "{out}"
    );

    // Destroy, then destroy again (a recovered task re-runs its steps): the same deletion.
    let (status, out, _) = invoke("destroy", "alice-token", json!({"resourceId": rid})).await;
    assert_eq!(status, 200, "{out}");
    let deletion = out["output"]["requestId"].as_str().unwrap().to_owned();
    assert_eq!(wait_final(&app, &deletion).await["status"], "succeeded");
    let (status, again, _) = invoke("destroy", "alice-token", json!({"resourceId": rid})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["output"]["requestId"], deletion.as_str());
    let (_, res) = app.get_json(&format!("/resources/{rid}")).await;
    assert_eq!(res["status"], "deleted", "{res}");
    app.stop().await;
}

#[tokio::test]
async fn resources_are_published_as_backstage_entities() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 1)).await;
    let n = name();
    let id = order(&app, "redis-cache", json!({"name": n, "owner": "team-a", "component": "component:default/shop", "cost_center": "ENG-1234"})).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone()],
    };
    let done = wait_final(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let rid = done["resourceId"].as_str().unwrap().to_owned();

    let all = app
        .client
        .get(app.url("/api/paved/catalog/entities.yaml"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        all.status(),
        200,
        "public: Backstage's URL reader sends no token"
    );
    let index = yaml_docs(&all.text().await.unwrap());
    let templates = index.iter().filter(|d| d["kind"] == "Template").count();
    assert_eq!(
        templates, 4,
        "the offerings' Templates, exactly as paved validates against"
    );
    assert!(
        index.iter().all(|d| d["kind"] != "Resource"),
        "resources live on the pages"
    );
    // The resource is on the page its id hashes to, which a Location of the index reads.
    let layout = paved::catalog::pages::Layout::new(&format!("{}/api/paved", app.base), 64);
    let page_url = layout.page_url(layout.page_of(&rid));
    assert!(
        index
            .iter()
            .any(|d| d["kind"] == "Location" && d["spec"]["target"] == page_url.as_str()),
        "no Location reads {page_url}"
    );
    let page = app.client.get(&page_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let etag = page.headers()["etag"].to_str().unwrap().to_owned();
    let text = page.text().await.unwrap();
    let docs = yaml_docs(&text);
    let entity = docs
        .iter()
        .find(|d| d["kind"] == "Resource")
        .expect("the resource is published");
    assert_eq!(entity["metadata"]["name"], format!("{n}-dev"));
    assert_eq!(entity["spec"]["type"], "cache");
    assert_eq!(entity["spec"]["owner"], "group:default/team-a");
    assert_eq!(
        entity["spec"]["dependencyOf"],
        json!(["component:default/shop"])
    );
    let ann = &entity["metadata"]["annotations"];
    assert_eq!(ann["paved.dev/monthly-cost-usd"], "15.00");
    assert_eq!(ann["paved.dev/environment"], "dev");
    assert_eq!(
        ann["backstage.io/source-template"],
        "template:default/redis-cache"
    );
    // The catalog sets where an entity is managed from (the Location that read it).
    assert!(ann["backstage.io/managed-by-location"].is_null(), "{ann}");
    assert!(
        ann["backstage.io/managed-by-origin-location"].is_null(),
        "{ann}"
    );
    assert!(
        ann.as_object().unwrap().values().all(Value::is_string),
        "annotation values are strings"
    );
    assert!(!text.contains("password"), "no credential in the catalog");

    let again = app
        .client
        .get(&page_url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let one = app
        .client
        .get(app.url(&format!("/api/paved/catalog/resources/{rid}.yaml")))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);

    // Deleted resources disappear from the documents (Backstage then removes the orphan).
    let r = app
        .client
        .delete(app.api(&format!("/resources/{rid}")))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap();
    let del: Value = r.json().await.unwrap();
    wait_final(&app, del["id"].as_str().unwrap()).await;
    let after = app
        .client
        .get(&page_url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200, "changed, so no 304");
    assert!(!after.text().await.unwrap().contains(&format!("{n}-dev")));
    let gone = app
        .client
        .get(app.url(&format!("/api/paved/catalog/resources/{rid}.yaml")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    app.stop().await;
}

/// The documents of a YAML stream.
fn yaml_docs(text: &str) -> Vec<Value> {
    text.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| yaml_serde::from_str(d).unwrap())
        .collect()
}

/// What the stand-in catalog was asked: (Authorization header, body).
type Calls = Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// A stand-in for Backstage's `POST /api/catalog/refresh` that records what it was asked.
/// Like Backstage, it answers 404 for a resource it has not read yet (every resource here).
async fn refresh_recorder() -> (String, Calls) {
    use axum::{Json, Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
    let seen: Calls = Arc::default();
    let app = Router::new()
        .route(
            "/api/catalog/refresh",
            post(
                |State(seen): State<Calls>,
                 headers: HeaderMap,
                 Json(body): Json<Value>| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let known = !body["entityRef"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("resource:");
                    seen.lock().unwrap().push((auth, body));
                    if known {
                        StatusCode::OK
                    } else {
                        StatusCode::NOT_FOUND
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn the_catalog_is_asked_to_refresh_and_backstage_down_fails_nothing() {
    let (url, seen) = refresh_recorder().await;
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 1);
    s.backstage.base_url = Some(url);
    s.backstage.token = Some("static-t0ken".into());
    let app = TestApp::spawn(s).await;
    let n = name();
    let id = order(
        &app,
        "redis-cache",
        json!({"name": n, "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone()],
    };
    assert_eq!(wait_final(&app, &id).await["status"], "succeeded");
    for _ in 0..50 {
        if seen.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = seen.lock().unwrap().clone();
    // Backstage refreshes only entities it knows: a new resource comes in by re-reading the
    // Location of the catalog page that publishes it, so that is refreshed next.
    let rid = wait_final(&app, &id).await["resourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let layout = paved::catalog::pages::Layout::new(&format!("{}/api/paved", app.base), 64);
    let location = layout.page_location_ref(layout.page_of(&rid));
    assert_eq!(
        calls,
        vec![
            (
                "Bearer static-t0ken".to_owned(),
                json!({"entityRef": format!("resource:default/{n}-dev")})
            ),
            (
                "Bearer static-t0ken".to_owned(),
                json!({"entityRef": location})
            )
        ]
    );
    app.stop().await;

    // Backstage unreachable: provisioning succeeds all the same.
    let db2 = TestDb::new(DbEngine::Sqlite).await;
    let mut s = with_workers(settings(&db2.url), 1);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    s.backstage.base_url = Some(format!("http://{closed}"));
    let app = TestApp::spawn(s).await;
    let id = order(
        &app,
        "redis-cache",
        json!({"name": name(), "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let _teardown2 = Teardown {
        db_url: db2.url.clone(),
        requests: vec![id.clone()],
    };
    assert_eq!(wait_final(&app, &id).await["status"], "succeeded");
    app.stop().await;
}

/// A rolling deploy stops a replica while a task's `paved:wait` is open on it: the wait answers
/// at once (not after its 200 s bound, not cut off by the grace period), saying the request is
/// not final, so the template's next call reaches a replica that stays.
#[tokio::test]
async fn an_open_wait_answers_when_paved_is_told_to_stop() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    // No workers: the request stays pending.
    let mut s = with_workers(settings(&db.url), 0);
    s.backstage.wait_seconds = 200;
    s.server.shutdown_grace_seconds = 120;
    let app = TestApp::spawn(s).await;
    let id = order(
        &app,
        "redis-cache",
        json!({"name": name(), "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let url = app.url("/api/paved/.backstage/actions/v1/actions/paved%3Await/invoke");
    let client = app.client.clone();
    let waiting = tokio::spawn(async move {
        let r = client
            .post(url)
            .bearer_auth("alice-token")
            .json(&json!({"requestId": id, "attempt": 1, "attempts": 3}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    // Let the call reach paved's wait loop (it holds for up to 200 s from there).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "the wait holds until its bound");
    let stopping = tokio::spawn(app.stop());
    // Bounded far below the wait's 200 s and the 120 s grace: it answers because of the stop.
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the open wait answered when paved was told to stop")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"]["final"], false, "{body}");
    assert_eq!(body["output"]["status"], "pending", "{body}");
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("paved stops once nothing is in flight")
        .unwrap();
}
