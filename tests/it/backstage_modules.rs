//! paved's own Backstage backend modules (`backstage/plugins/*`, built by
//! `scripts/backstage-modules build`) inside the pinned real Backstage, as an installation that
//! added them with `backend.add(...)` sees them: no url location, no `backend.reading.allow`
//! entry for paved, Backstage's default `catalog.rules`, and paved's catalog documents not
//! public. Templates and Resources come through the entity provider; a template's
//! `paved:provision` runs in-process and writes paved's steps into the task log, waits out an
//! approval longer than paved's own wait bound, and a cancelled task cancels its request.
//!
//! paved cannot call Backstage here (no externalAccess entry for its tokens), so every entity
//! that appears or leaves does so through the provider, not through paved's refresh or delete.
//! Needs node and npm; fails without them. Everything started or created is removed again.

use crate::{backstage_e2e::*, common};

use std::{path::PathBuf, process::Command, time::Duration};

use common::{Engine as DbEngine, TestDb, repo_path};
use serde_json::{Value, json};

/// The request id the in-process action logs when it places the order.
fn placed_request(text: &str) -> Option<String> {
    let rest = text.split("paved request ").nth(1)?;
    Some(rest.split(' ').next()?.to_owned())
}

/// Drops a database this test made itself (not paved's), also when the test fails.
struct ForeignDatabase(String);

impl Drop for ForeignDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.0
            ))
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paveds_modules_work_inside_a_real_backstage() {
    let clock = Clock(std::time::Instant::now());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = Http(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "backstage-modules-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&logs).unwrap();

    clock.step("setup: the peer installed, paved's modules built");
    require_node();
    run(
        Command::new(repo_path("scripts/backstage-peer")).arg("install"),
        "scripts/backstage-peer install",
    );
    run(
        Command::new(repo_path("scripts/backstage-modules")).arg("build"),
        "scripts/backstage-modules build",
    );
    let modules = [
        repo_path("backstage/plugins/catalog-backend-module-paved"),
        repo_path("backstage/plugins/scaffolder-backend-module-paved"),
    ];

    let db = TestDb::new(DbEngine::Postgres).await;
    let _provisioned = common::Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let overlay = |paved_port: u16, _backstage_port: u16| {
        format!(
            r#"# Written by tests/backstage_modules.rs: paved's modules, nothing else for paved.
backend:
  auth:
    externalAccess:
      - type: static
        options: {{ token: {BACKSTAGE_TOKEN}, subject: integration-tests }}
discovery:
  endpoints:
    - target: http://127.0.0.1:{paved_port}/api/{{{{pluginId}}}}
      plugins: [paved]
catalog:
  # Backstage's default rules: provider entities need none.
  rules:
    - allow: [Component, API, Location]
paved:
  catalog: {{ pollSeconds: 1 }}
  scaffolder: {{ pollMilliseconds: 250 }}
"#
        )
    };
    let extra = [
        // The provider reads the feed with a token; nobody needs the public documents.
        ("PAVED_CATALOG__PUBLIC", "false".to_owned()),
        // The guest's team comes from paved's configuration (paved cannot call Backstage).
        ("PAVED_AUTH__CATALOG_GROUPS_TTL_SECONDS", "0".to_owned()),
        // The remote paved:wait's bound, short: an approval in step 5 outlasts it.
        ("PAVED_BACKSTAGE__WAIT_SECONDS", "2".to_owned()),
    ];
    let (paved, peer) = start_both_with(&http, &db.url, &logs, overlay, &extra, &modules).await;
    let bs = format!("http://localhost:{}", peer.port);
    let api = format!("{}/api/paved/v1", paved.base());
    clock.step(&format!(
        "setup: paved on :{}, Backstage with paved's modules on :{}",
        paved.port, peer.port
    ));

    clock.step("1. the offerings' Templates reach the catalog through the provider, no location registered");
    let template = eventually(
        "template:default/redis-cache in Backstage's catalog",
        Duration::from_secs(60),
        || entity(&http, &bs, "template:default/redis-cache"),
    )
    .await;
    assert_eq!(
        template["metadata"]["annotations"]["backstage.io/managed-by-location"],
        format!("url:{}/api/paved/catalog/entities.yaml", paved.base()).as_str()
    );
    assert_eq!(processing_errors(&template), Vec::<Value>::new());
    let (code, locations) = http
        .get(
            &format!("{bs}/api/catalog/locations"),
            Some(BACKSTAGE_TOKEN),
        )
        .await;
    assert_eq!(code, 200, "{locations}");
    assert_eq!(locations, json!([]), "no location registered");

    clock.step("2. a guest's task on redis-cache: paved's steps in the task log as they happen");
    let user = guest_token(&http, &bs).await;
    let name = common::kit::unique_with("mod-");
    let task = start_task(
        &http,
        &bs,
        &user,
        "redis-cache",
        json!({"name": name, "environment": "dev", "owner": TEAM, "cost_center": "ENG-1234"}),
    )
    .await;
    let (status, events) = finished_task(&http, &bs, &user, &task).await;
    let text = task_text(&events);
    assert_eq!(status, "completed", "{text}");
    let request_id = placed_request(&text).expect("the action logs the request it placed");
    // paved:estimate and paved:wait ran in-process too: their lines are in the log.
    assert!(
        text.contains("paved estimate: 15.00 USD/month; allowed"),
        "the in-process estimate's summary: {text}"
    );
    assert!(
        events.iter().any(|e| e["body"]["stepId"] == "wait"
            && e["body"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Step 1 of"))),
        "the in-process wait follows the request: {text}"
    );
    let (code, req) = http
        .get(&format!("{api}/requests/{request_id}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(code, 200, "{req}");
    assert_eq!(
        req["requester"], GUEST,
        "paved authorized the task's user: {req}"
    );
    assert_eq!(req["idempotencyKey"], task.as_str());
    let steps = req["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{req}");
    for (i, s) in steps.iter().enumerate() {
        let line = format!(
            "Step {} of {}, {}: succeeded",
            i + 1,
            steps.len(),
            s["name"].as_str().unwrap()
        );
        assert!(text.contains(&line), "{line:?} in the task log:\n{text}");
    }
    let (_, lines) = http
        .get(
            &format!("{api}/requests/{request_id}/logs"),
            Some(ADMIN_TOKEN),
        )
        .await;
    for l in lines["items"].as_array().unwrap() {
        // The task text is the events' bodies as JSON: the line as a JSON string's content.
        let m = serde_json::to_string(l["message"].as_str().unwrap()).unwrap();
        let m = &m[1..m.len() - 1];
        assert!(
            text.contains(m),
            "paved's log line {m} in the task log:\n{text}"
        );
    }

    clock.step("3. the new Resource appears in the catalog through the provider");
    let resource_id = req["resourceId"].as_str().unwrap().to_owned();
    let entity_ref = format!("resource:default/{name}-dev");
    let resource = eventually(
        &format!("{entity_ref} in Backstage's catalog"),
        Duration::from_secs(60),
        || entity(&http, &bs, &entity_ref),
    )
    .await;
    assert_eq!(
        resource["metadata"]["annotations"]["backstage.io/managed-by-location"],
        format!(
            "url:{}/api/paved/catalog/resources/{resource_id}.yaml",
            paved.base()
        )
        .as_str()
    );
    assert_eq!(resource["spec"]["owner"], TEAM);
    assert_eq!(processing_errors(&resource), Vec::<Value>::new());

    clock.step("4. a failing order fails the task with its step, position and reason");
    let taken = common::kit::unique_with("mod-");
    let database = format!("{}_dev", taken.replace('-', "_"));
    let _foreign = ForeignDatabase(database.clone());
    run(
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-c"])
            .arg(format!("CREATE DATABASE \"{database}\"")),
        "create a database paved does not own",
    );
    let task = start_task(
        &http,
        &bs,
        &user,
        "postgres-database",
        json!({"name": taken, "environment": "dev", "size": "small", "owner": TEAM, "cost_center": "ENG-1234"}),
    )
    .await;
    let (status, events) = finished_task(&http, &bs, &user, &task).await;
    let text = task_text(&events);
    assert_eq!(status, "failed", "{text}");
    let failed = placed_request(&text).unwrap();
    let (_, req) = http
        .get(&format!("{api}/requests/{failed}"), Some(ADMIN_TOKEN))
        .await;
    let steps = req["steps"].as_array().unwrap();
    let at = steps
        .iter()
        .position(|s| s["status"] == "failed")
        .expect("a failed step");
    let expected = format!(
        "paved request {failed} failed at step {} of {}: {}: PostgreSQL (dev) at 127.0.0.1:5432: a database named {database} already exists",
        at + 1,
        steps.len(),
        steps[at]["name"].as_str().unwrap()
    );
    assert!(
        text.contains(&expected),
        "{expected:?} in the task log:\n{text}"
    );
    assert!(
        text.contains(&format!("/api/paved/v1/requests/{failed}")),
        "the request's link: {text}"
    );
    assert!(
        !text.contains("    at "),
        "the reason, not a stack trace: {text}"
    );

    clock.step("5. an approval that outlasts paved's wait bound still ends the task");
    // Over budget from here on: team-a spends 15/month, each further cache 15 more.
    let (code, b) = http
        .send(
            reqwest::Method::PUT,
            &format!("{api}/teams/team-a/budget"),
            Some(ADMIN_TOKEN),
            Some(&json!({"monthlyLimit": 20})),
        )
        .await;
    assert_eq!(code, 200, "{b}");
    let waiting_task = |values: Value| {
        let (http, bs, user, api) = (&http, &bs, &user, &api);
        async move {
            let task = start_task(http, bs, user, "redis-cache", values).await;
            let request = eventually(
                "the task's request waits for approval",
                Duration::from_secs(60),
                || async {
                    let (_, events) = http
                        .get(
                            &format!("{bs}/api/scaffolder/v2/tasks/{task}/events"),
                            Some(user),
                        )
                        .await;
                    let id = placed_request(&task_text(events.as_array()?))?;
                    let (_, r) = http
                        .get(&format!("{api}/requests/{id}"), Some(ADMIN_TOKEN))
                        .await;
                    (r["status"] == "awaiting_approval").then_some(id)
                },
            )
            .await;
            (task, request)
        }
    };
    let approved_name = common::kit::unique_with("mod-");
    let (task, request) = waiting_task(
        json!({"name": approved_name, "environment": "dev", "owner": TEAM, "cost_center": "ENG-1234"}),
    )
    .await;
    // Longer than the remote action may wait (PAVED_BACKSTAGE__WAIT_SECONDS, 2 s here, stands
    // for Backstage's 5-minute fetch limit): the in-process action is not bound by it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (code, r) = http
        .post(
            &format!("{api}/requests/{request}/approve"),
            Some(ADMIN_TOKEN),
            &json!({"reason": "within the quarter's plan"}),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    let (status, events) = finished_task(&http, &bs, &user, &task).await;
    let text = task_text(&events);
    assert_eq!(status, "completed", "{text}");
    assert!(
        text.contains("approval") && text.contains("platform-admin"),
        "the log says who it waits for: {text}"
    );
    let (_, r) = http
        .get(&format!("{api}/requests/{request}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(r["status"], "succeeded", "{r}");

    clock.step("6. cancelling the task cancels the paved request it waits on");
    let (task, request) = waiting_task(
        json!({"name": common::kit::unique_with("mod-"), "environment": "dev", "owner": TEAM, "cost_center": "ENG-1234"}),
    )
    .await;
    let (code, c) = http
        .post(
            &format!("{bs}/api/scaffolder/v2/tasks/{task}/cancel"),
            Some(&user),
            &json!({}),
        )
        .await;
    assert!(code < 300, "{code} {c}");
    let (status, events) = finished_task(&http, &bs, &user, &task).await;
    // Backstage 1.55 marks the step cancelled and completes the run as failed.
    assert_eq!(status, "failed", "{}", task_text(&events));
    assert!(
        events
            .iter()
            .any(|e| e["body"]["stepId"] == "provision" && e["body"]["status"] == "cancelled"),
        "{}",
        task_text(&events)
    );
    eventually(
        "the paved request is cancelled",
        Duration::from_secs(30),
        || async {
            let (_, r) = http
                .get(&format!("{api}/requests/{request}"), Some(ADMIN_TOKEN))
                .await;
            (r["status"] == "cancelled").then_some(())
        },
    )
    .await;

    clock.step("7. the deleted Resource leaves the catalog through the provider");
    let (code, del) = http
        .send(
            reqwest::Method::DELETE,
            &format!("{api}/resources/{resource_id}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(code, 202, "{del}");
    eventually(
        &format!("{entity_ref} gone from Backstage's catalog"),
        Duration::from_secs(60),
        || async {
            entity(&http, &bs, &entity_ref)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    clock.step("done");
    drop(peer);
    drop(paved);
}
