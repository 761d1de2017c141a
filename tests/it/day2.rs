//! Day-2 operations against the real servers: TTL (extend, warnings, reaper), schedules shared
//! by replicas, notifications, drift, unused resources, platform metrics, cost reports.

use crate::common;

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use common::{
    Engine as DbEngine, Teardown, TestApp, TestDb,
    kit::{Recorder, call, db_of, eventually, notify_to, order, unique, wait_final, with_workers},
    settings,
};
use paved::db::entities::{audit_event, request, resource};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

fn preview(branch: &str, ttl: u32) -> Value {
    json!({"component": "shop", "branch": branch, "owner": "team-a", "cost_center": "ENG-1234", "ttl_hours": ttl})
}

async fn pg_database_exists(name: &str) -> bool {
    use sea_orm::sqlx::{self, Connection, Row};
    let mut c = sqlx::postgres::PgConnection::connect(&common::postgres_admin_url())
        .await
        .unwrap();
    sqlx::query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get::<i64, _>("n")
        == 1
}

async fn redis_user_exists(user: &str) -> bool {
    let mut c = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let v: redis::Value = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(user)
        .query_async(&mut c)
        .await
        .unwrap();
    !matches!(v, redis::Value::Nil)
}

#[tokio::test]
async fn ephemeral_environments_warn_extend_and_are_reaped_through_a_delete_request() {
    let rec = Recorder::start().await;
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 1);
    notify_to(&mut s, &rec);
    s.ttl.reaper_interval_seconds = 1;
    s.schedules.check_seconds = 1;
    let app = TestApp::spawn(s).await;
    let conn = db_of(&db.url).await;

    let id = order(&app, "preview-environment", preview(&unique(), 4)).await;
    let done = wait_final(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let rid = done["resourceId"].as_str().unwrap().to_owned();
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![], // all this test's database holds
    };
    let (_, res) = call(
        &app,
        Method::GET,
        &format!("/resources/{rid}"),
        Some("alice-token"),
        None,
    )
    .await;
    let created: chrono::DateTime<Utc> = res["createdAt"].as_str().unwrap().parse().unwrap();
    let expires: chrono::DateTime<Utc> = res["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!((expires - created).num_minutes(), 4 * 60, "the ordered TTL");

    // 4 h left: inside the 24 h offset, so one warning goes out (to Backstage and the webhook),
    // naming the time actually left.
    let warned = eventually("the expiry warning", || async {
        let n = rec.notifications("expiry-warning");
        let h = rec.hooks("expiry-warning");
        (!n.is_empty() && !h.is_empty()).then_some((n, h))
    })
    .await;
    let (n, h) = (&warned.0[0], &warned.1[0]);
    assert_eq!(n.authorization, "Bearer backstage-static-token");
    assert_eq!(
        n.body["recipients"],
        json!({"type": "entity", "entityRef": ["group:default/team-a"]})
    );
    let title = n.body["payload"]["title"].as_str().unwrap();
    assert!(
        title.contains("expires in 3 hours") || title.contains("expires in 4 hours"),
        "{title}"
    );
    assert_eq!(n.body["payload"]["severity"], "normal");
    assert_eq!(
        n.body["payload"]["link"],
        format!(
            "/catalog/default/resource/{}",
            res["name"].as_str().unwrap()
        )
    );
    assert_eq!(h.authorization, "Bearer hook-token");
    assert_eq!(h.body["payload"], n.body["payload"]);
    // Sent once: another round (here run directly) finds nothing new to warn about.
    let again = paved::day2::lifecycle::warn_expiring(
        &conn,
        &paved::notifications::Notifier::disabled(),
        &[24.0, 1.0],
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(again, 0);
    assert_eq!(rec.notifications("expiry-warning").len(), 1);

    // Extending: the owning team and admins, within the offering's 168 h lifetime.
    let path = format!("/resources/{rid}/extend");
    let (st, body) = call(&app, Method::POST, &path, None, Some(json!({"hours": 1}))).await;
    assert_eq!(
        st, 404,
        "the anonymous caller sees no team's resources: {body}"
    );
    let (st, _) = call(
        &app,
        Method::POST,
        &path,
        Some("mallory-token"),
        Some(json!({"hours": 1})),
    )
    .await;
    assert_eq!(st, 404, "another team does not even see it");
    let (st, body) = call(
        &app,
        Method::POST,
        &path,
        Some("alice-token"),
        Some(json!({"hours": 200})),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["error"]["name"], "InputError");
    assert_eq!(body["error"]["errors"][0]["field"], "hours");
    assert_eq!(body["error"]["errors"][0]["rule"], "maximum");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("must be <= 163"),
        "{body}"
    );
    let (st, body) = call(
        &app,
        Method::POST,
        &path,
        Some("alice-token"),
        Some(json!({"hours": "soon"})),
    )
    .await;
    assert_eq!(
        (st, body["error"]["errors"][0]["rule"].as_str()),
        (400, Some("type")),
        "{body}"
    );
    let (st, body) = call(
        &app,
        Method::POST,
        &path,
        Some("alice-token"),
        Some(json!({"hours": 20})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let extended: chrono::DateTime<Utc> = body["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(extended - expires, chrono::Duration::hours(20));
    let (_, audit) = call(
        &app,
        Method::GET,
        &format!("/audit?type=resource.ttl_extended&target=resource:{rid}"),
        Some("dave-token"),
        None,
    )
    .await;
    assert_eq!(audit["items"][0]["actor"], "user:default/alice", "{audit}");

    // The same through Backstage's Actions Registry.
    let invoke = |input: Value| {
        app.client
            .post(app.url("/api/paved/.backstage/actions/v1/actions/paved%3Aextend-ttl/invoke"))
            .bearer_auth("dave-token")
            .json(&input)
            .send()
    };
    let r = invoke(json!({"resourceId": rid, "hours": 2}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    let via_action: chrono::DateTime<Utc> = out["output"]["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(via_action - extended, chrono::Duration::hours(2));
    assert_eq!(
        out["output"]["entityRef"],
        format!("resource:default/{}", res["name"].as_str().unwrap())
    );
    let r = invoke(json!({"resourceId": rid})).await.unwrap();
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(
        (
            err["error"]["errors"][0]["field"].as_str(),
            err["error"]["errors"][0]["rule"].as_str()
        ),
        (Some("hours"), Some("required"))
    );
    let listed: Value = app
        .client
        .get(app.url("/api/paved/.backstage/actions/v1/actions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let action = listed["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "paved:extend-ttl")
        .expect("listed");
    assert_eq!(
        action["attributes"],
        json!({"readOnly": false, "destructive": false, "idempotent": false})
    );
    assert_eq!(
        action["schema"]["input"]["$schema"],
        "http://json-schema.org/draft-07/schema#"
    );

    // Backstage's catalog holds the resource's entity (and an unrelated one of the same
    // kind): the deletion must take paved's entity out of it, not wait for orphan cleanup.
    let entity_ref = format!("resource:default/{}", res["name"].as_str().unwrap());
    rec.knows(&entity_ref, &rid);
    rec.knows("resource:default/someone-elses", "another-resource");

    // Time passes (the clock is the database's expiry): the reaper deletes it through a
    // normal delete request, as system:reaper.
    resource::Entity::update_many()
        .col_expr(
            resource::Column::ExpiresAt,
            Expr::value(Utc::now() - chrono::Duration::minutes(1)),
        )
        .filter(resource::Column::Id.eq(rid.clone()))
        .exec(&conn)
        .await
        .unwrap();
    let deletion = eventually("the reaper's delete request", || async {
        request::Entity::find()
            .filter(request::Column::ResourceId.eq(rid.clone()))
            .filter(request::Column::Operation.eq("delete"))
            .one(&conn)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(deletion.requester, "system:reaper");
    let finished = wait_final(&app, &deletion.id).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let steps: Vec<&str> = finished["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["validate", "destroy cache", "destroy database", "unpublish"]
    );
    let (_, gone) = call(
        &app,
        Method::GET,
        &format!("/resources/{rid}"),
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(gone["status"], "deleted");
    let db_name = res["outputs"]["database"]["database"].as_str().unwrap();
    assert!(
        !pg_database_exists(db_name).await,
        "the database is dropped"
    );
    assert!(!redis_user_exists(res["outputs"]["cache"]["username"].as_str().unwrap()).await);
    let expired_event = audit_event::Entity::find()
        .filter(audit_event::Column::EventType.eq("resource.expired"))
        .filter(audit_event::Column::Target.eq(format!("resource:{rid}")))
        .one(&conn)
        .await
        .unwrap()
        .expect("audited");
    assert_eq!(expired_event.actor, "system:reaper");
    eventually("the expiry notice", || async {
        (!rec.notifications("resource-expired").is_empty()).then_some(())
    })
    .await;
    eventually("the entity's removal from the catalog", || async {
        (!rec.holds(&entity_ref)).then_some(())
    })
    .await;
    let deletes = rec.calls(&common::kit::Recorder::delete_path_of(&entity_ref));
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].authorization, "Bearer backstage-static-token");
    assert!(
        rec.holds("resource:default/someone-elses"),
        "only its own entity"
    );
    let (_, ext) = call(
        &app,
        Method::POST,
        &path,
        Some("alice-token"),
        Some(json!({"hours": 1})),
    )
    .await;
    assert_eq!(
        ext["error"]["name"], "ConflictError",
        "a deleted resource is not extended: {ext}"
    );
    app.stop().await;
}

#[tokio::test]
async fn notifications_reach_backstage_and_the_webhook_with_retries() {
    let rec = Recorder::start().await;
    // Backstage's notifications API is down for the first two attempts.
    rec.fail_first("/api/notifications/notifications", 2);
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 1);
    notify_to(&mut s, &rec);
    s.backstage.app_url = Some("https://backstage.example.com".into());
    // Every order needs a lead; team-a's budget is spent, so a platform-admin too.
    s.policies.data = json!({"guardrails": {"approval": {"above_monthly": 1}}});
    s.cost.budgets = [("group:default/team-a".to_owned(), 1.0)].into();
    s.auth.roles = [(
        paved::vocab::principal::Role::PlatformAdmin,
        vec!["group:default/platform-team".to_owned()],
    )]
    .into();
    let app = TestApp::spawn(s).await;
    let conn = db_of(&db.url).await;

    let (st, waiting) = common::kit::order_as(
        &app,
        "alice-token",
        "redis-cache",
        json!({"name": unique(), "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    assert_eq!(
        (st, waiting["status"].as_str()),
        (201, Some("awaiting_approval")),
        "{waiting}"
    );
    let id = waiting["id"].as_str().unwrap().to_owned();
    let needed = eventually("the approval notice, after two failed attempts", || async {
        let calls = rec.notifications("approval-needed");
        (calls.len() >= 3).then_some(calls)
    })
    .await;
    assert_eq!(
        needed.len(),
        3,
        "delivered on the third attempt, then not again"
    );
    let n = &needed[2].body;
    assert_eq!(n["recipients"]["type"], "entity");
    assert_eq!(
        n["recipients"]["entityRef"],
        json!(["group:default/team-a", "group:default/platform-team"]),
        "the team's leads and the platform-admins"
    );
    assert_eq!(
        n["payload"]["link"],
        format!("{}/api/paved/v1/requests/{id}", app.base)
    );
    assert!(
        n["payload"]["title"]
            .as_str()
            .unwrap()
            .starts_with("Approval needed: create of "),
        "{n}"
    );
    let row = eventually("the outbox row marked sent", || async {
        paved::db::entities::notification::Entity::find()
            .filter(paved::db::entities::notification::Column::Channel.eq("backstage"))
            .filter(paved::db::entities::notification::Column::Topic.eq("approval-needed"))
            .one(&conn)
            .await
            .unwrap()
            .filter(|r| {
                use paved::db::entities::notification::NotificationStatus::{Queued, Sending};
                r.status != Sending && r.status != Queued
            })
    })
    .await;
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 3));
    let hook = eventually("the webhook copy", || async {
        rec.hooks("approval-needed").pop()
    })
    .await;
    assert_eq!(hook.body["source"], "paved");
    assert_eq!(hook.body["recipients"], n["recipients"]["entityRef"]);

    // The lead approves: one of two approvals, so nobody is told yet; the admin completes it.
    let (st, _) = call(
        &app,
        Method::POST,
        &format!("/requests/{id}/approve"),
        Some("lena-token"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = call(
        &app,
        Method::POST,
        &format!("/requests/{id}/approve"),
        Some("dave-token"),
        Some(json!({"reason": "ok for launch"})),
    )
    .await;
    assert_eq!(st, 200);
    let approved = eventually("the approved notice", || async {
        rec.notifications("request-approved").pop()
    })
    .await;
    assert_eq!(
        approved.body["recipients"]["entityRef"],
        json!(["group:default/team-a", "user:default/alice"])
    );
    assert!(
        approved.body["payload"]["description"]
            .as_str()
            .unwrap()
            .contains("ok for launch")
    );
    assert_eq!(
        rec.notifications("request-approved").len(),
        1,
        "only the last approval tells"
    );
    wait_final(&app, &id).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![], // all this test's database holds
    };
    // Done: the requester hears it, linked to the entity's page in the Backstage app.
    let done = eventually("the done notice", || async {
        rec.notifications("request-succeeded").pop()
    })
    .await;
    let entity = paved::db::entities::request::Entity::find_by_id(id.clone())
        .one(&conn)
        .await
        .unwrap()
        .and_then(|r| r.spec)
        .and_then(|s| {
            s.pointer("/resource/name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap();
    assert_eq!(
        done.body["payload"]["link"],
        format!("https://backstage.example.com/catalog/default/resource/{entity}")
    );

    // A rejection.
    let (_, second) = common::kit::order_as(
        &app,
        "alice-token",
        "redis-cache",
        json!({"name": unique(), "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let id2 = second["id"].as_str().unwrap();
    let (st, body) = call(
        &app,
        Method::POST,
        &format!("/requests/{id2}/reject"),
        Some("dave-token"),
        Some(json!({"reason": "not this quarter"})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let rejected = eventually("the rejected notice", || async {
        rec.notifications("request-rejected").pop()
    })
    .await;
    assert_eq!(rejected.body["payload"]["severity"], "high");
    assert!(
        rejected.body["payload"]["description"]
            .as_str()
            .unwrap()
            .contains("not this quarter")
    );

    // A failure: the Redis user the order would create exists already and is not paved's.
    let name = unique();
    let user = format!("paved-{name}-dev");
    let _foreign = common::kit::ForeignRedisUser::create(&user).await;
    let (_, third) = common::kit::order_as(
        &app,
        "alice-token",
        "redis-cache",
        json!({"name": name, "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let id3 = third["id"].as_str().unwrap().to_owned();
    call(
        &app,
        Method::POST,
        &format!("/requests/{id3}/approve"),
        Some("dave-token"),
        None,
    )
    .await;
    call(
        &app,
        Method::POST,
        &format!("/requests/{id3}/approve"),
        Some("lena-token"),
        None,
    )
    .await;
    assert_eq!(wait_final(&app, &id3).await["status"], "failed");
    let failed = eventually("the failure notice", || async {
        rec.notifications("request-failed").pop()
    })
    .await;
    assert_eq!(
        failed.body["recipients"]["entityRef"],
        json!(["group:default/team-a", "user:default/alice"])
    );
    assert!(
        failed.body["payload"]["description"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{}",
        failed.body
    );
    eventually("the webhook's copy of the failure", || async {
        rec.hooks("request-failed").pop()
    })
    .await;

    // Nothing secret ever goes out.
    for c in rec
        .calls("/api/notifications/notifications")
        .iter()
        .chain(rec.calls("/hook").iter())
    {
        assert!(
            !c.body.to_string().to_lowercase().contains("password"),
            "{}",
            c.body
        );
    }
    app.stop().await;
}

/// A Backstage without the notifications plugin answers its route with 404: paved notices it
/// on the first delivery, stops sending there (no retries), and the webhook still gets
/// everything, the requester's "done" notice included.
#[tokio::test]
async fn a_backstage_without_notifications_is_detected_once() {
    use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
    type Seen = Arc<std::sync::Mutex<(usize, Vec<Value>)>>;
    let seen: Seen = Arc::default();
    async fn hook(State(seen): State<Seen>, Json(body): Json<Value>) -> StatusCode {
        seen.lock().unwrap().1.push(body);
        StatusCode::OK
    }
    async fn missing(State(seen): State<Seen>) -> StatusCode {
        seen.lock().unwrap().0 += 1;
        StatusCode::NOT_FOUND
    }
    let router = Router::new()
        .route("/hook", post(hook))
        .route("/api/notifications/notifications", post(missing))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 1);
    s.backstage.base_url = Some(url.clone());
    s.backstage.token = Some("backstage-static-token".into());
    s.notifications.webhook_url = Some(format!("{url}/hook"));
    s.notifications.retry_base_ms = 20;
    s.notifications.poll_seconds = 1;
    let app = TestApp::spawn(s).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let conn = db_of(&db.url).await;
    let names = [unique(), unique()];
    for n in &names {
        let id = order(
            &app,
            "redis-cache",
            json!({"name": n, "owner": "team-a", "cost_center": "ENG-1234"}),
        )
        .await;
        assert_eq!(wait_final(&app, &id).await["status"], "succeeded");
    }
    let done = eventually("both done notices on the webhook", || async {
        let hooks: Vec<Value> = seen
            .lock()
            .unwrap()
            .1
            .iter()
            .filter(|h| h["topic"] == "request-succeeded")
            .cloned()
            .collect();
        (hooks.len() == 2).then_some(hooks)
    })
    .await;
    assert_eq!(
        done[0]["recipients"],
        json!(["group:default/team-a", "user:default/alice"]),
        "the team and the requester hear it is done"
    );
    assert_eq!(
        done[0]["payload"]["link"],
        format!("/catalog/default/resource/{}-dev", names[0]),
        "{}",
        done[0]
    );
    let rows = paved::db::entities::notification::Entity::find()
        .filter(paved::db::entities::notification::Column::Channel.eq("backstage"))
        .all(&conn)
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!((r.status.as_str(), r.attempts), ("failed", 1), "{r:?}");
        assert!(
            r.last_error
                .as_deref()
                .unwrap_or("")
                .contains("@backstage/plugin-notifications-backend"),
            "{r:?}"
        );
    }
    assert_eq!(
        seen.lock().unwrap().0,
        1,
        "one 404 says it: no retry, nothing sent there after"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_notification_service_fails_nothing() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 0);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    s.backstage.base_url = Some(format!("http://{closed}"));
    s.notifications.webhook_url = Some(format!("http://user:hook-secret@{closed}/hook"));
    s.notifications.retry_base_ms = 20;
    s.notifications.max_attempts = 2;
    s.policies.data = json!({"guardrails": {"approval": {"above_monthly": 1}}});
    let app = TestApp::spawn(s).await;
    let conn = db_of(&db.url).await;
    let (st, r) = common::kit::order_as(
        &app,
        "alice-token",
        "redis-cache",
        json!({"name": unique(), "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    assert_eq!(
        (st, r["status"].as_str()),
        (201, Some("awaiting_approval")),
        "the order is unaffected: {r}"
    );
    // Both channels give up after their attempts; the reason is kept, the webhook's password not.
    let rows = eventually("both deliveries given up", || async {
        let rows = paved::db::entities::notification::Entity::find()
            .all(&conn)
            .await
            .unwrap();
        (rows.len() == 2
            && rows
                .iter()
                .all(|r| r.status == paved::db::entities::notification::NotificationStatus::Failed))
        .then_some(rows)
    })
    .await;
    for row in rows {
        assert_eq!(row.attempts, 2);
        let err = row.last_error.unwrap_or_default();
        assert!(!err.is_empty() && !err.contains("hook-secret"), "{err}");
    }
    app.stop().await;
}

async fn pg_admin_exec(database: &str, sql: &str) {
    use sea_orm::sqlx::{self, Connection};
    let base = common::postgres_admin_url();
    let url = format!("{}/{database}", base.rsplit_once('/').unwrap().0);
    let mut c = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.ok();
}

async fn drift_of(app: &TestApp, rid: &str, action: &str) -> (u16, Value) {
    let (method, path) = match action {
        "get" => (Method::GET, format!("/resources/{rid}/drift")),
        a => (Method::POST, format!("/resources/{rid}/drift/{a}")),
    };
    call(app, method, &path, Some("alice-token"), None).await
}

async fn entity_annotations(app: &TestApp, rid: &str) -> Value {
    let text = app
        .client
        .get(app.url(&format!("/api/paved/catalog/resources/{rid}.yaml")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc: Value = yaml_serde::from_str(text.trim_start_matches("---\n")).unwrap();
    doc["metadata"]["annotations"].clone()
}

#[tokio::test]
async fn postgres_drift_is_found_accepted_and_reverted_through_an_update() {
    let rec = Recorder::start().await;
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 1);
    notify_to(&mut s, &rec);
    let app = TestApp::spawn(s).await;
    let name = unique();
    let id = order(&app, "postgres-database", json!({"name": name, "environment": "dev", "size": "small", "owner": "team-a", "cost_center": "ENG-1234"})).await;
    let done = wait_final(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let rid = done["resourceId"].as_str().unwrap().to_owned();
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![], // all this test's database holds
    };
    let dbname = format!("{name}_dev");

    let (_, before) = drift_of(&app, &rid, "get").await;
    assert_eq!(before["status"], "unknown", "never checked yet");
    let (st, fresh) = drift_of(&app, &rid, "check").await;
    assert_eq!(st, 200, "{fresh}");
    assert_eq!(
        (
            fresh["status"].as_str(),
            fresh["findings"].as_array().map(Vec::len)
        ),
        (Some("none"), Some(0)),
        "{fresh}"
    );
    assert_eq!(
        entity_annotations(&app, &rid).await["paved.dev/drift"],
        "none"
    );

    // Someone raises the connection limit behind paved's back.
    pg_admin_exec(
        "postgres",
        &format!("ALTER DATABASE \"{dbname}\" CONNECTION LIMIT 50"),
    )
    .await;
    let (_, found) = drift_of(&app, &rid, "check").await;
    assert_eq!(found["status"], "detected", "{found}");
    let f = &found["findings"][0];
    assert_eq!(
        (f["part"].as_str(), f["field"].as_str()),
        (Some("database"), Some("connection_limit"))
    );
    assert_eq!(
        (f["expected"].clone(), f["actual"].clone()),
        (json!(20), json!(50))
    );
    assert!(f["detectedAt"].is_string());
    assert_eq!(found["findings"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(
        entity_annotations(&app, &rid).await["paved.dev/drift"],
        "detected"
    );
    let told = eventually("the drift notice", || async {
        rec.notifications("drift-detected").pop()
    })
    .await;
    assert!(
        told.body["payload"]["description"]
            .as_str()
            .unwrap()
            .contains("connection_limit: expected 20, found 50"),
        "{}",
        told.body
    );
    // Seen again: the same finding, not a second one.
    let (_, again) = drift_of(&app, &rid, "check").await;
    assert_eq!(again["findings"][0]["id"], f["id"]);
    assert_eq!(
        rec.notifications("drift-detected").len(),
        1,
        "one incident, one notice"
    );
    let (st, _) = call(
        &app,
        Method::GET,
        &format!("/resources/{rid}/drift"),
        Some("mallory-token"),
        None,
    )
    .await;
    assert_eq!(st, 404, "another team does not see it");
    let (st, _) = call(
        &app,
        Method::POST,
        &format!("/resources/{rid}/drift/accept"),
        Some("dave-token"),
        Some(json!({"ids": "all"})),
    )
    .await;
    assert_eq!(st, 400, "ids must be a list");

    // Accepted: 50 is what is expected from now on.
    let (st, accepted) = drift_of(&app, &rid, "accept").await;
    assert_eq!(
        (st, accepted["status"].as_str()),
        (200, Some("none")),
        "{accepted}"
    );
    assert_eq!(accepted["history"][0]["status"], "accepted");
    assert_eq!(accepted["history"][0]["resolvedBy"], "user:default/alice");
    let (_, still) = drift_of(&app, &rid, "check").await;
    assert_eq!(still["status"], "none", "{still}");

    // An extension dropped and then the whole database: revert re-creates them through an
    // update request with the resource's own values.
    pg_admin_exec(&dbname, "DROP EXTENSION pgcrypto").await;
    let (_, ext) = drift_of(&app, &rid, "check").await;
    assert_eq!(ext["findings"][0]["field"], "extensions", "{ext}");
    assert_eq!(ext["findings"][0]["expected"], json!(["pgcrypto"]));
    pg_admin_exec(
        "postgres",
        &format!("DROP DATABASE \"{dbname}\" WITH (FORCE)"),
    )
    .await;
    let (_, dropped) = drift_of(&app, &rid, "check").await;
    let fields: Vec<&str> = dropped["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["exists"],
        "a missing database is one finding: {dropped}"
    );
    assert_eq!(
        dropped["history"][0]["status"], "resolved",
        "the extension finding is closed by the drop"
    );
    let (st, refused) = drift_of(&app, &rid, "accept").await;
    assert_eq!(st, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database.exists"),
        "{refused}"
    );
    let (st, _) = call(
        &app,
        Method::POST,
        &format!("/resources/{rid}/drift/revert"),
        Some("mallory-token"),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (st, revert) = drift_of(&app, &rid, "revert").await;
    assert_eq!(st, 202, "{revert}");
    assert_eq!(revert["operation"], "update");
    let reverted = wait_final(&app, revert["id"].as_str().unwrap()).await;
    assert_eq!(reverted["status"], "succeeded", "{reverted}");
    assert!(pg_database_exists(&dbname).await, "the database is back");
    let (_, clean) = drift_of(&app, &rid, "check").await;
    assert_eq!(
        clean["status"], "none",
        "connection limit, extension and database as provisioned: {clean}"
    );
    let revert_finding = clean["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["status"] == "reverted")
        .expect("marked reverted");
    assert_eq!(revert_finding["requestId"], revert["id"]);
    let (_, audit) = call(
        &app,
        Method::GET,
        &format!("/audit?target=resource:{rid}"),
        Some("dave-token"),
        None,
    )
    .await;
    let types: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in ["drift.detected", "drift.accepted", "drift.reverted"] {
        assert!(types.contains(&t), "{t} audited: {types:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn redis_drift_is_found_by_the_scheduled_scan_and_reverted() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 1);
    s.drift.scan_interval_seconds = 1;
    s.schedules.check_seconds = 1;
    let app = TestApp::spawn(s).await;
    let name = unique();
    let id = order(
        &app,
        "redis-cache",
        json!({"name": name, "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let done = wait_final(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let rid = done["resourceId"].as_str().unwrap().to_owned();
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![], // all this test's database holds
    };
    let user = format!("paved-{name}-dev");
    eventually("a first scheduled scan finds nothing", || async {
        let (_, d) = drift_of(&app, &rid, "get").await;
        (d["status"] == "none").then_some(())
    })
    .await;

    // Someone widens the tenant's access behind paved's back.
    let mut admin = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("~*")
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .unwrap();
    let found = eventually("the scheduled scan finds it", || async {
        let (_, d) = drift_of(&app, &rid, "get").await;
        (d["status"] == "detected").then_some(d)
    })
    .await;
    let mut fields: Vec<&str> = found["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["commands", "keys"], "{found}");
    let keys = found["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "keys")
        .unwrap();
    assert_eq!(keys["expected"], format!("~{name}-dev:*"));
    assert_eq!(keys["actual"], "~*", "Redis folds the wider pattern in");
    assert!(
        !found.to_string().contains("passwords"),
        "password hashes are never part of a finding"
    );

    let (st, revert) = drift_of(&app, &rid, "revert").await;
    assert_eq!(st, 202, "{revert}");
    assert_eq!(
        wait_final(&app, revert["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    let (_, clean) = drift_of(&app, &rid, "check").await;
    assert_eq!(clean["status"], "none", "{clean}");
    // The tenant is confined to its prefix again.
    let seen: redis::Value = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(!format!("{seen:?}").contains("~*\""), "{seen:?}");

    // Disabled behind paved's back: found too.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("off")
        .query_async(&mut admin)
        .await
        .unwrap();
    let (_, off) = drift_of(&app, &rid, "check").await;
    assert_eq!(off["findings"][0]["field"], "enabled", "{off}");
    app.stop().await;
}

/// Waits until PostgreSQL's statistics for a part stopped moving (backends that paved itself
/// opened have ended and flushed their counters).
async fn settled_usage(
    drivers: &paved::provisioning::drivers::Drivers,
    spec: &paved::provisioning::drivers::PartSpec,
) {
    let mut last = None;
    for _ in 0..100 {
        let u = drivers.usage(spec).await.unwrap();
        if u.active == 0 && last == Some(u.activity_counter) {
            return;
        }
        last = Some(u.activity_counter);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("usage did not settle");
}

#[tokio::test]
async fn unused_resources_are_found_from_usage_and_reported_with_their_savings() {
    use paved::{day2::usage, provisioning::drivers::Drivers};
    let rec = Recorder::start().await;
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 1);
    notify_to(&mut s, &rec);
    let app = TestApp::spawn(s.clone()).await;
    let conn = db_of(&db.url).await;
    let pg = order(&app, "postgres-database", json!({"name": unique(), "environment": "dev", "size": "small", "owner": "team-a", "cost_center": "ENG-1234"})).await;
    let cache_name = unique();
    let cache = order(
        &app,
        "redis-cache",
        json!({"name": cache_name, "owner": "team-a", "cost_center": "ENG-1234"}),
    )
    .await;
    let (pg, cache) = (wait_final(&app, &pg).await, wait_final(&app, &cache).await);
    assert_eq!(
        (pg["status"].as_str(), cache["status"].as_str()),
        (Some("succeeded"), Some("succeeded"))
    );
    let (pg_id, cache_id) = (
        pg["resourceId"].as_str().unwrap().to_owned(),
        cache["resourceId"].as_str().unwrap().to_owned(),
    );
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![], // all this test's database holds
    };
    let drivers = Drivers::from_settings(&s.drivers);
    let res = |id: String| {
        let conn = conn.clone();
        async move {
            resource::Entity::find_by_id(id)
                .one(&conn)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let (pg_res, cache_res) = (res(pg_id.clone()).await, res(cache_id.clone()).await);
    let pg_spec = drivers
        .parse("postgres", &pg_res.desired["parts"][0]["spec"])
        .unwrap();
    settled_usage(&drivers, &pg_spec).await;

    // A reading eight days ago (the clock is the sample's time), then nothing used them.
    let week_ago = Utc::now() - chrono::Duration::days(8);
    usage::sample_resource(&conn, &drivers, &pg_res, week_ago)
        .await
        .unwrap();
    usage::sample_resource(&conn, &drivers, &cache_res, week_ago)
        .await
        .unwrap();
    // paved's own drift check connects to the database: that is not use.
    let (st, _) = drift_of(&app, &pg_id, "check").await;
    assert_eq!(st, 200);
    settled_usage(&drivers, &pg_spec).await;
    usage::sample_resource(&conn, &drivers, &pg_res, Utc::now())
        .await
        .unwrap();
    usage::sample_resource(&conn, &drivers, &cache_res, Utc::now())
        .await
        .unwrap();

    let (st, report) = call(
        &app,
        Method::GET,
        "/teams/team-a/unused",
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{report}");
    let mut names: Vec<&str> = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resourceId"].as_str().unwrap())
        .collect();
    names.sort();
    let mut expected = vec![pg_id.as_str(), cache_id.as_str()];
    expected.sort();
    assert_eq!(names, expected, "{report}");
    let cost = |r: &resource::Model| r.monthly_cost_cents.unwrap() as f64 / 100.0;
    let savings = report["monthlySavings"].as_f64().unwrap();
    assert!(
        (savings - (cost(&pg_res) + cost(&cache_res))).abs() < 0.005,
        "{report}"
    );
    assert_eq!(report["windowHours"], 168);
    assert_eq!(report["currency"], "USD");
    let reasons = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["reasons"].as_array().unwrap().clone())
        .map(|r| r.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" | ");
    assert!(
        reasons.contains("database: no connections and no transactions"),
        "{reasons}"
    );
    assert!(
        reasons.contains("cache: no client connected and no key read or written"),
        "{reasons}"
    );
    // A shorter window than the readings cover is fine; a longer one has not enough data.
    let (_, long) = call(
        &app,
        Method::GET,
        "/teams/team-a/unused?windowHours=720",
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(
        (
            long["resources"].as_array().unwrap().len(),
            long["notEnoughData"].as_u64()
        ),
        (0, Some(2)),
        "{long}"
    );
    let (st, err) = call(
        &app,
        Method::GET,
        "/teams/team-a/unused?windowHours=0",
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(
        (st, err["error"]["errors"][0]["field"].as_str()),
        (400, Some("windowHours")),
        "{err}"
    );
    let (st, _) = call(
        &app,
        Method::GET,
        "/teams/team-a/unused",
        Some("mallory-token"),
        None,
    )
    .await;
    assert_eq!(st, 404);

    // The team hears it once, with the savings.
    let notifier = paved::notifications::backstage::notifier(
        &s,
        &paved::auth::signing::Outgoing::Static(
            s.backstage
                .token
                .as_ref()
                .map(|t| t.expose().to_owned())
                .unwrap_or_default()
                .into(),
        ),
    );
    assert_eq!(
        usage::notify_unused(&conn, &notifier, 168, "USD", Utc::now())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        usage::notify_unused(&conn, &notifier, 168, "USD", Utc::now())
            .await
            .unwrap(),
        0,
        "once"
    );
    // Another round of paved's own checks and readings: still the same idle period, so no
    // second notice, and the report still has seen no use.
    let (st, _) = drift_of(&app, &pg_id, "check").await;
    assert_eq!(st, 200);
    settled_usage(&drivers, &pg_spec).await;
    usage::sample_resource(&conn, &drivers, &pg_res, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        usage::notify_unused(&conn, &notifier, 168, "USD", Utc::now())
            .await
            .unwrap(),
        0,
        "a drift check is not use: the idle period goes on"
    );
    let (_, again) = call(
        &app,
        Method::GET,
        "/teams/team-a/unused",
        Some("alice-token"),
        None,
    )
    .await;
    let pg = again["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resourceId"] == pg_id.as_str())
        .unwrap_or_else(|| panic!("{again}"));
    assert_eq!(pg["lastActivity"], Value::Null, "{again}");
    let told = eventually("the unused notice", || async {
        rec.notifications("unused-resource").pop()
    })
    .await;
    assert_eq!(
        told.body["recipients"]["entityRef"],
        json!(["group:default/team-a"])
    );
    assert!(
        told.body["payload"]["title"]
            .as_str()
            .unwrap()
            .starts_with("2 resource(s) look unused"),
        "{}",
        told.body
    );

    // Somebody uses them: a query on the database, a key in the cache.
    let (_, creds) = call(
        &app,
        Method::GET,
        &format!("/resources/{pg_id}/credentials"),
        Some("alice-token"),
        None,
    )
    .await;
    {
        use sea_orm::sqlx::{self, Connection};
        let mut c =
            sqlx::postgres::PgConnection::connect(creds["database"]["url"].as_str().unwrap())
                .await
                .unwrap();
        sqlx::query("SELECT 1").execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }
    let (_, creds) = call(
        &app,
        Method::GET,
        &format!("/resources/{cache_id}/credentials"),
        Some("alice-token"),
        None,
    )
    .await;
    {
        let mut c = redis::Client::open(creds["cache"]["url"].as_str().unwrap())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("{cache_name}-dev:k"))
            .arg(1)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    settled_usage(&drivers, &pg_spec).await;
    usage::sample_resource(&conn, &drivers, &pg_res, Utc::now())
        .await
        .unwrap();
    usage::sample_resource(&conn, &drivers, &cache_res, Utc::now())
        .await
        .unwrap();
    let (_, after) = call(
        &app,
        Method::GET,
        "/teams/group:default%2Fteam-a/unused",
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(after["resources"], json!([]), "{after}");
    assert_eq!(after["monthlySavings"], 0.0);
    app.stop().await;

    // The schedule samples by itself (one replica per round).
    let before = paved::db::entities::usage_sample::Entity::find()
        .all(&conn)
        .await
        .unwrap()
        .len();
    let mut s2 = s.clone();
    s2.engine.workers = 0;
    s2.unused.sample_interval_seconds = 1;
    s2.schedules.check_seconds = 1;
    let app2 = TestApp::spawn(s2).await;
    eventually("scheduled samples", || async {
        let now = paved::db::entities::usage_sample::Entity::find()
            .all(&conn)
            .await
            .unwrap()
            .len();
        (now >= before + 2).then_some(())
    })
    .await;
    app2.stop().await;
}

fn gauge(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn platform_metrics_measure_speed_outcomes_guardrails_drift_and_cleanup() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let s = with_workers(settings(&db.url), 1);
    let app = TestApp::spawn(s.clone()).await;
    let conn = db_of(&db.url).await;
    let cache = |name: String| json!({"name": name, "owner": "team-a", "cost_center": "ENG-1234"});

    // Two caches delivered (one named so that a policy warns), one denied, one waiting for a
    // lead, one failed.
    let a = order(&app, "redis-cache", cache(unique())).await;
    let b = order(&app, "redis-cache", cache(format!("dev{}", unique()))).await;
    let (a, b) = (wait_final(&app, &a).await, wait_final(&app, &b).await);
    let (a_id, b_id) = (
        a["resourceId"].as_str().unwrap().to_owned(),
        b["resourceId"].as_str().unwrap().to_owned(),
    );
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![], // all this test's database holds
    };
    let (st, denied) = common::kit::order_as(&app, "alice-token", "postgres-database", json!({"name": unique(), "environment": "dev", "size": "medium", "owner": "team-a", "cost_center": "ENG-1234"})).await;
    assert_eq!(st, 403, "{denied}");
    let deny_rule = denied["error"]["errors"][0]["rule"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, waiting) = common::kit::order_as(&app, "alice-token", "postgres-database", json!({"name": unique(), "environment": "prod", "size": "large", "owner": "team-a", "cost_center": "ENG-1234"})).await;
    assert_eq!(
        (st, waiting["status"].as_str()),
        (201, Some("awaiting_approval"))
    );
    let name = unique();
    let user = format!("paved-{name}-dev");
    let _foreign = common::kit::ForeignRedisUser::create(&user).await;
    let failing = order(&app, "redis-cache", cache(name)).await;
    assert_eq!(wait_final(&app, &failing).await["status"], "failed");

    // Drift on one cache; the other expires and the reaper deletes it.
    let a_user = a["spec"]["parts"][0]["spec"]["key_prefix"]
        .as_str()
        .map(|p| format!("paved-{p}"))
        .unwrap();
    let mut admin = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&a_user)
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .unwrap();
    let (_, d) = drift_of(&app, &a_id, "check").await;
    assert_eq!(d["status"], "detected", "{d}");
    resource::Entity::update_many()
        .col_expr(
            resource::Column::ExpiresAt,
            Expr::value(Utc::now() - chrono::Duration::minutes(1)),
        )
        .filter(resource::Column::Id.eq(b_id.clone()))
        .exec(&conn)
        .await
        .unwrap();
    let reaped = paved::day2::lifecycle::reap(
        &conn,
        &paved::notifications::Notifier::disabled(),
        3,
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(wait_final(&app, &reaped[0]).await["status"], "succeeded");

    let (st, _) = call(
        &app,
        Method::GET,
        "/metrics/platform",
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(st, 403, "platform-wide figures are for platform-admins");
    let (st, err) = call(
        &app,
        Method::GET,
        "/metrics/platform?window=soon",
        Some("dave-token"),
        None,
    )
    .await;
    assert_eq!(
        (st, err["error"]["errors"][0]["field"].as_str()),
        (400, Some("window")),
        "{err}"
    );
    let (st, m) = call(
        &app,
        Method::GET,
        "/metrics/platform?window=7d",
        Some("dave-token"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{m}");
    let t = &m["timeToInfrastructure"];
    assert_eq!(t["count"], 2, "{m}");
    let (avg, med, p95) = (
        t["averageSeconds"].as_f64().unwrap(),
        t["medianSeconds"].as_f64().unwrap(),
        t["p95Seconds"].as_f64().unwrap(),
    );
    assert!(avg > 0.0 && med > 0.0 && p95 >= med, "{t}");
    let r = &m["requests"];
    assert_eq!(
        (
            r["succeeded"].as_u64(),
            r["failed"].as_u64(),
            r["denied"].as_u64()
        ),
        (Some(3), Some(1), Some(1)),
        "two creates and the reaper's delete succeeded: {r}"
    );
    assert_eq!(r["successRate"], 0.75);
    assert_eq!(m["policy"]["denials"][&deny_rule], 1, "{m}");
    assert_eq!(
        m["policy"]["warnings"]["name_repeats_environment"], 1,
        "{m}"
    );
    assert_eq!(m["policy"]["approvalsRequired"]["cost_approval"], 1, "{m}");
    assert_eq!(m["approvals"]["pending"], 1);
    assert!(m["approvals"]["oldestAgeSeconds"].as_i64().unwrap() >= 0);
    let groups = m["resources"]["byTeamAndOffering"].as_array().unwrap();
    let caches = groups
        .iter()
        .find(|g| g["offering"] == "redis-cache")
        .expect("caches");
    assert_eq!(
        (
            caches["team"].as_str(),
            caches["active"].as_u64(),
            caches["monthlyCost"].as_f64()
        ),
        (Some("group:default/team-a"), Some(1), Some(15.0)),
        "{m}"
    );
    assert_eq!(m["adoption"][0]["team"], "group:default/team-a");
    assert_eq!(
        m["adoption"][0]["requests"], 5,
        "the developer's five orders, not the reaper's delete: {m}"
    );
    assert_eq!(
        (
            m["drift"]["incidents"].as_u64(),
            m["drift"]["open"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(
        (
            m["cleanup"]["cleanedUp"].as_u64(),
            m["cleanup"]["monthlySavings"].as_f64()
        ),
        (Some(1), Some(15.0)),
        "{m}"
    );

    // The same as Prometheus gauges.
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
    assert_eq!(
        gauge(
            &text,
            r#"paved_resources_active{team="group:default/team-a",offering="redis-cache"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(gauge(&text, "paved_drift_open"), Some(1.0));
    assert_eq!(gauge(&text, "paved_cleanup_monthly_savings"), Some(15.0));
    assert_eq!(gauge(&text, "paved_approvals_pending"), Some(1.0));
    assert!(
        text.contains(&format!(
            r#"paved_policy_decisions{{kind="deny",rule="{deny_rule}"}} 1"#
        )),
        "{text}"
    );
    assert!(gauge(&text, r#"paved_time_to_infrastructure_seconds{stat="p95"}"#).is_some());
    // What an operator's Prometheus needs: a HELP line for every family, finished requests
    // as a counter and their time as a histogram (counted by the worker's replica, so sums
    // over replicas are right), the queue, and no label that grows forever.
    for family in [
        "paved_http_requests_total",
        "paved_requests_finished_total",
        "paved_request_time_to_finish_seconds",
        "paved_jobs_queued",
        "paved_jobs_oldest_queued_age_seconds",
        "paved_resources_monthly_cost",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}:\n{text}"
        );
    }
    assert!(
        gauge(
            &text,
            r#"paved_requests_finished_total{operation="create",outcome="succeeded"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("paved_request_time_to_finish_seconds_bucket{"),
        "{text}"
    );
    assert!(
        gauge(&text, r#"paved_jobs_queued{job="provision"}"#).is_some(),
        "{text}"
    );
    assert!(
        !text.contains("week=\""),
        "a label that grows every week: {text}"
    );
    assert!(!text.contains(" -0\n"), "money as -0: {text}");
    app.stop().await;
}

/// The day the cost-insights test runs on, whatever the wall clock says.
fn insights_today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

fn midnight(days_ago: i64) -> chrono::DateTime<Utc> {
    (insights_today() - chrono::Days::new(days_ago as u64))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

#[tokio::test]
async fn cost_insights_daily_costs_come_from_resource_history() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    // paved's "now" is noon of a fixed day: no day boundary falls inside the test.
    let noon = insights_today().and_hms_opt(12, 0, 0).unwrap().and_utc();
    let app = TestApp::spawn_with_clock(
        with_workers(settings(&db.url), 1),
        paved::vocab::clock::Clock::fixed(noon),
    )
    .await;
    let conn = db_of(&db.url).await;
    // Databases: their size (the owner role's connection limit) is what a resize changes.
    let cache = |name: &str| json!({"name": name, "environment": "staging", "owner": "team-a", "cost_center": "ENG-1234", "size": "small"});
    // One database resized after five days, one that lived for two days.
    let kept_name = unique();
    let kept = wait_final(
        &app,
        &order(&app, "postgres-database", cache(&kept_name)).await,
    )
    .await;
    let gone = wait_final(
        &app,
        &order(&app, "postgres-database", cache(&unique())).await,
    )
    .await;
    let (kept_id, gone_id) = (
        kept["resourceId"].as_str().unwrap().to_owned(),
        gone["resourceId"].as_str().unwrap().to_owned(),
    );
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![], // all this test's database holds
    };
    let (st, resize) = call(
        &app,
        Method::PATCH,
        &format!("/resources/{kept_id}"),
        Some("alice-token"),
        Some(json!({"values": {"size": "medium"}})),
    )
    .await;
    assert_eq!(st, 202, "{resize}");
    assert_eq!(
        wait_final(&app, resize["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    let (st, del) = call(
        &app,
        Method::DELETE,
        &format!("/resources/{gone_id}"),
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(st, 202, "{del}");
    assert_eq!(
        wait_final(&app, del["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    // Their history, moved back in time (the timestamps are paved's clock).
    let set = |id: String, col: resource::Column, at: chrono::DateTime<Utc>| {
        let conn = conn.clone();
        async move {
            resource::Entity::update_many()
                .col_expr(col, Expr::value(at))
                .filter(resource::Column::Id.eq(id))
                .exec(&conn)
                .await
                .unwrap();
        }
    };
    set(kept_id.clone(), resource::Column::CreatedAt, midnight(10)).await;
    request::Entity::update_many()
        .col_expr(request::Column::CompletedAt, Expr::value(midnight(5)))
        .filter(request::Column::Id.eq(resize["id"].as_str().unwrap()))
        .exec(&conn)
        .await
        .unwrap();
    set(gone_id.clone(), resource::Column::CreatedAt, midnight(3)).await;
    set(gone_id.clone(), resource::Column::DeletedAt, midnight(1)).await;
    let (small, medium) = (65.0 / 730.0 * 24.0, 305.0 / 730.0 * 24.0);
    let r2 = |x: f64| (x * 100.0).round() / 100.0;

    // Two weeks ending today (the end date is exclusive): days 14..1 ago.
    let today = insights_today();
    let intervals = format!("R2%2FP7D%2F{today}");
    let (st, c) = call(
        &app,
        Method::GET,
        &format!("/cost-insights/entity/default/resource/{kept_name}-staging/{intervals}"),
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["id"], format!("resource:default/{kept_name}-staging"));
    let days: Vec<f64> = c["aggregation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["amount"].as_f64().unwrap())
        .collect();
    assert_eq!(days.len(), 14);
    assert_eq!(
        c["aggregation"][0]["date"],
        (today - chrono::Days::new(14)).to_string()
    );
    let expect: Vec<f64> = (1..=14)
        .rev()
        .map(|ago| match ago {
            11.. => 0.0,
            6..=10 => r2(small),
            _ => r2(medium),
        })
        .collect();
    assert_eq!(
        days, expect,
        "0 before creation, small for five days, then medium"
    );
    let (first, last): (f64, f64) = (expect[..7].iter().sum(), expect[7..].iter().sum());
    assert!(
        (c["change"]["amount"].as_f64().unwrap() - (last - first)).abs() < 0.05,
        "{c}"
    );
    assert!(
        (c["change"]["ratio"].as_f64().unwrap() - (last - first) / first).abs() < 0.05,
        "{c}"
    );
    assert!(
        c["trendline"]["slope"].as_f64().unwrap() > 0.0,
        "rising: {c}"
    );
    assert!(c["trendline"]["intercept"].is_number());
    assert_eq!(c["groupedCosts"]["part"][0]["id"], "database");

    // The team: both caches, the deleted one for the two days it lived; unencoded slashes too.
    let (st, g) = call(
        &app,
        Method::GET,
        &format!("/cost-insights/entity/default/group/team-a/R2/P7D/{today}"),
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{g}");
    let days: Vec<f64> = g["aggregation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["amount"].as_f64().unwrap())
        .collect();
    let with_gone: Vec<f64> = (1..=14i64)
        .rev()
        .map(|ago| {
            let kept = match ago {
                11.. => 0.0,
                6..=10 => small,
                _ => medium,
            };
            r2(kept + if ago == 3 || ago == 2 { small } else { 0.0 })
        })
        .collect();
    assert_eq!(days, with_gone, "{g}");
    assert_eq!(g["groupedCosts"]["offering"][0]["id"], "postgres-database");
    assert_eq!(g["groupedCosts"]["resource"].as_array().unwrap().len(), 2);

    for (path, field) in [
        (
            format!("/cost-insights/entity/default/template/x/{intervals}"),
            "kind",
        ),
        (
            format!("/cost-insights/entity/default/group/team-a/R2%2FP7X%2F{today}"),
            "intervals",
        ),
    ] {
        let (st, e) = call(&app, Method::GET, &path, Some("alice-token"), None).await;
        assert_eq!(
            (st, e["error"]["errors"][0]["field"].as_str()),
            (400, Some(field)),
            "{e}"
        );
    }
    let (st, _) = call(
        &app,
        Method::GET,
        &format!("/cost-insights/entity/default/resource/nothing-here/{intervals}"),
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = call(
        &app,
        Method::GET,
        &format!("/cost-insights/entity/default/resource/{kept_name}-staging/{intervals}"),
        Some("mallory-token"),
        None,
    )
    .await;
    assert_eq!(st, 404, "another team's resource is not revealed");
    let (st, _) = call(
        &app,
        Method::GET,
        &format!("/cost-insights/entity/default/group/team-a/{intervals}"),
        Some("mallory-token"),
        None,
    )
    .await;
    assert_eq!(st, 404, "another team's costs are not there for mallory");
    app.stop().await;
}
