//! The engine on a migrated SQLite file with the fake driver: a request's steps, a failure at
//! a step and a retry, without PostgreSQL or Redis (the real drivers are tested against the
//! real servers in `tests/it`).

use std::sync::Arc;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde_json::{Value, json};

use super::{Engine, Provision};
use crate::{
    config::{DatabaseSettings, EngineSettings},
    db::entities::{request, request_step, resource},
    jobs::{BackgroundJob, Outcome, Registry, Runner},
    provisioning::drivers::{
        DriverError,
        fake::{FakeDriver, Op},
    },
    vocab::{
        secret_box::SecretBox,
        status::{Operation, RequestStatus, StepStatus},
    },
};

const DB_PART: &str = "postgres dev/orders_dev";
const CACHE_PART: &str = "redis dev/paved-orders";

struct Setup {
    db: DatabaseConnection,
    fake: Arc<FakeDriver>,
    runner: Runner,
    secrets: Arc<SecretBox>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("paved.db").display()
    );
    let db = crate::db::connect(&DatabaseSettings {
        url,
        ..Default::default()
    })
    .await
    .unwrap();
    crate::db::migrate(&db).await.unwrap();
    let fake = Arc::new(FakeDriver::new());
    let secrets = Arc::new(SecretBox::from_base64(&SecretBox::generate_key()).unwrap());
    // Retries are due at once, so one `run_pending` runs every attempt.
    let settings = EngineSettings {
        max_attempts: 3,
        retry_base_ms: 0,
        ..Default::default()
    };
    let wake = crate::jobs::Wake::default();
    let engine = Arc::new(Engine::new(
        db.clone(),
        fake.clone(),
        secrets.clone(),
        settings,
        wake.clone(),
    ));
    let runner = Runner::new(
        db.clone(),
        Registry::new().register::<Provision>(engine.clone()),
        engine.runner_settings(),
        wake,
    );
    Setup {
        db,
        fake,
        runner,
        secrets,
        _dir: dir,
    }
}

/// A pending create of a database and a cache, queued as request code queues it.
async fn order(db: &DatabaseConnection) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let now = chrono::Utc::now();
    let spec = json!({
        "resource": {
            "type": "service-backing", "name": "orders-dev", "owner": "group:default/team-a",
            "environment": "dev", "component": null, "system": null, "title": null,
            "description": null, "ttl_hours": null, "labels": {}
        },
        "parts": [
            {"id": "db", "driver": "postgres", "spec": {"database": "orders_dev", "environment": "dev"}},
            {"id": "cache", "driver": "redis", "spec": {"key_prefix": "orders", "environment": "dev", "commands": "+@read +@write"}}
        ]
    });
    request::ActiveModel {
        id: Set(id.clone()),
        offering: Set("service-backing".into()),
        template_version: Set("1".into()),
        operation: Set(Operation::Create),
        status: Set(RequestStatus::Pending),
        requester: Set("user:default/alice".into()),
        owner: Set("group:default/team-a".into()),
        idempotency_key: Set(None),
        parameters: Set(json!({})),
        spec: Set(Some(spec)),
        resource_id: Set(None),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        completed_at: Set(None),
        estimate: Set(None),
        decision: Set(None),
    }
    .insert(db)
    .await
    .unwrap();
    crate::jobs::storage::enqueue(db, Provision::JOB_NAME, &id, 3, Value::Null)
        .await
        .unwrap();
    id
}

async fn request_of(db: &DatabaseConnection, id: &str) -> request::Model {
    request::Entity::find_by_id(id.to_owned())
        .one(db)
        .await
        .unwrap()
        .unwrap()
}

/// (name, status, attempts) of each step, in order.
async fn steps_of(db: &DatabaseConnection, id: &str) -> Vec<(String, StepStatus, i32)> {
    request_step::Entity::find()
        .filter(request_step::Column::RequestId.eq(id))
        .order_by_asc(request_step::Column::Position)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.status, s.attempts))
        .collect()
}

fn step(name: &str, status: &str, attempts: i32) -> (String, StepStatus, i32) {
    (name.into(), StepStatus::parse(status).unwrap(), attempts)
}

#[tokio::test]
async fn a_create_runs_its_steps_to_succeeded_on_the_fake_driver() {
    let t = setup().await;
    let id = order(&t.db).await;
    assert_eq!(t.runner.run_pending("w").await.unwrap(), [Outcome::Done]);

    let req = request_of(&t.db, &id).await;
    assert_eq!(req.status.as_str(), "succeeded", "{:?}", req.error);
    assert_eq!(
        steps_of(&t.db, &id).await,
        [
            step("validate", "succeeded", 1),
            step("plan", "succeeded", 1),
            step("create db", "succeeded", 1),
            step("create cache", "succeeded", 1),
            step("configure db", "succeeded", 1),
            step("configure cache", "succeeded", 1),
            step("store credentials", "succeeded", 1),
            step("publish", "succeeded", 1),
        ]
    );
    assert_eq!(
        t.fake.calls(),
        [
            (Op::Apply, DB_PART.into()),
            (Op::Apply, CACHE_PART.into()),
            (Op::Observe, DB_PART.into()),
            (Op::Observe, CACHE_PART.into()),
        ]
    );
    let res_id = req.resource_id.unwrap();
    let res = resource::Entity::find_by_id(res_id.clone())
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status.as_str(), "ready");
    // The sealed credentials are built from the driver's outputs and the sealed password.
    let creds = super::credentials(&t.db, &t.secrets, &res_id)
        .await
        .unwrap()
        .unwrap();
    let password = creds["db"]["password"].as_str().unwrap();
    assert_eq!(
        creds["db"]["url"],
        format!("postgres://orders_dev_owner:{password}@fake.invalid:5432/orders_dev")
    );
}

#[tokio::test]
async fn a_permanent_driver_failure_fails_the_request_at_its_step() {
    let t = setup().await;
    let refused = DriverError::Permanent("permission denied".into());
    t.fake.fail(Op::Apply, CACHE_PART, refused, usize::MAX);
    let id = order(&t.db).await;
    let out = t.runner.run_pending("w").await.unwrap();
    assert!(matches!(&out[..], [Outcome::Failed(_)]), "{out:?}");

    let req = request_of(&t.db, &id).await;
    assert_eq!(req.status.as_str(), "failed");
    let why = req.error.unwrap_or_default();
    assert!(
        why.starts_with("failed at step 4 of 8: create cache: Redis (dev): permission denied. What next: paved's account on the server lacks a privilege"),
        "{why}"
    );
    assert!(why.contains("paved resource delete"), "{why}");
    let steps = steps_of(&t.db, &id).await;
    assert_eq!(steps[2], step("create db", "succeeded", 1));
    assert_eq!(steps[3], step("create cache", "failed", 1));
    assert!(
        steps[4..]
            .iter()
            .all(|(_, status, _)| *status == StepStatus::Pending),
        "{steps:?}"
    );
    // A failed create leaves nothing on the targets: the part it made is destroyed.
    assert!(!t.fake.exists(DB_PART));
    assert!(t.fake.calls().contains(&(Op::Destroy, DB_PART.into())));
    let res = resource::Entity::find_by_id(req.resource_id.unwrap())
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status.as_str(), "failed");
}

#[tokio::test]
async fn a_transient_driver_failure_is_retried_and_the_request_succeeds() {
    let t = setup().await;
    let down = DriverError::Transient("connection refused".into());
    t.fake.fail(Op::Apply, CACHE_PART, down, 2);
    let id = order(&t.db).await;
    let out = t.runner.run_pending("w").await.unwrap();
    assert!(
        matches!(
            &out[..],
            [
                Outcome::Retrying { .. },
                Outcome::Retrying { .. },
                Outcome::Done
            ]
        ),
        "{out:?}"
    );

    let req = request_of(&t.db, &id).await;
    assert_eq!(req.status.as_str(), "succeeded", "{:?}", req.error);
    let steps = steps_of(&t.db, &id).await;
    // Only the failing step ran again; what had succeeded did not.
    assert_eq!(steps[2], step("create db", "succeeded", 1));
    assert_eq!(steps[3], step("create cache", "succeeded", 3));
    let applies = |part: &str| {
        t.fake
            .calls()
            .iter()
            .filter(|c| **c == (Op::Apply, part.to_owned()))
            .count()
    };
    assert_eq!((applies(DB_PART), applies(CACHE_PART)), (1, 3));
    assert!(t.fake.exists(CACHE_PART));
}
