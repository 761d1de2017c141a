//! The catalog change feed (`GET /v1/catalog/changes`, `catalog::feed`), as Backstage's entity
//! provider reads it: everything from the start, then each change once, in its current state,
//! after a cursor that means the same to every replica and after a restart. Real orders,
//! updates and deletes on the local Redis, on PostgreSQL and SQLite.

use crate::common;

use std::time::Duration;

use common::{
    Engine as DbEngine, Teardown, TestApp, TestDb,
    kit::{unique as name, with_workers},
    settings,
};
use paved::{db::entities::resource, vocab::bucket::bucket_of};
use sea_orm::{ActiveValue::Set, Database, EntityTrait};
use serde_json::{Value, json};

/// One read: (entities, removed, cursor, more, templates).
struct Answer {
    entities: Vec<Value>,
    removed: Vec<String>,
    cursor: String,
    more: bool,
}

async fn read(app: &TestApp, token: &str, query: &str) -> Answer {
    let r = app.as_(token).catalog_changes(query).await;
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    let b = r.body;
    assert!(
        b["templates"].as_str().is_some_and(|t| !t.is_empty()),
        "{b}"
    );
    Answer {
        entities: b["entities"].as_array().unwrap().clone(),
        removed: b["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect(),
        cursor: b["cursor"].as_str().unwrap().to_owned(),
        more: b["more"].as_bool().unwrap(),
    }
}

/// Reads while `more`, from `after` (or the start): all entities and removals, last cursor.
async fn read_through(app: &TestApp, after: Option<&str>, limit: u32) -> Answer {
    let mut all = Answer {
        entities: vec![],
        removed: vec![],
        cursor: after.unwrap_or_default().to_owned(),
        more: true,
    };
    let mut first = after.is_none();
    while all.more {
        let q = if first {
            format!("limit={limit}")
        } else {
            format!("after={}&limit={limit}", all.cursor)
        };
        first = false;
        let a = read(app, "alice-token", &q).await;
        all.entities.extend(a.entities);
        all.removed.extend(a.removed);
        all.cursor = a.cursor;
        all.more = a.more;
    }
    all
}

/// Reads through from `after` until `done` holds for the answer (at most 30 s). On PostgreSQL
/// a change is answered once every transaction older than it has ended, on any database of
/// the server: other tests' transactions can hold it back a moment.
async fn read_until(
    app: &TestApp,
    after: Option<&str>,
    what: &str,
    done: impl Fn(&Answer) -> bool,
) -> Answer {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let a = read_through(app, after, 100).await;
        if done(&a) {
            return a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 30 s; last answer: {:?} removed {:?}",
            a.entities,
            a.removed
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn resources_named(entities: &[Value]) -> Vec<String> {
    entities
        .iter()
        .filter(|e| e["kind"] == "Resource")
        .map(|e| e["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn location(e: &Value) -> &str {
    e["metadata"]["annotations"]["backstage.io/managed-by-location"]
        .as_str()
        .unwrap_or("")
}

/// The entity as paved's catalog document of that resource serves it (what a url location
/// reads), with the location annotations the provider adds.
async fn served(app: &TestApp, resource_id: &str) -> Value {
    let path = format!("/api/paved/catalog/resources/{resource_id}.yaml");
    let url = format!("{PUBLIC}{path}");
    let text = app
        .client
        .get(app.url(&path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc = text.split("---\n").find(|d| !d.trim().is_empty()).unwrap();
    let mut v: Value = yaml_serde::from_str(doc).unwrap();
    let a = v["metadata"]["annotations"].as_object_mut().unwrap();
    for k in [
        "backstage.io/managed-by-location",
        "backstage.io/managed-by-origin-location",
    ] {
        a.insert(k.into(), json!(format!("url:{url}")));
    }
    v
}

/// The public URL of the replicas in the scenario below.
const PUBLIC: &str = "https://paved.example.test";

fn cache(n: &str) -> Value {
    json!({"name": n, "environment": "dev", "owner": "team-a", "cost_center": "ENG-1234"})
}

async fn orders_updates_and_deletes_come_through_the_feed(engine: DbEngine) {
    let db = TestDb::new(engine).await;
    // No background workers: each read below sees exactly what the jobs run before it did.
    let mut s = with_workers(settings(&db.url), 0);
    // Replicas behind one address publish the same URLs.
    s.server.public_url = Some(PUBLIC.into());
    let app = TestApp::spawn(s.clone()).await;
    let alice = app.as_("alice-token");

    // From the start: the offerings' Templates, nothing else yet.
    let start = read_through(&app, None, 100).await;
    let templates: Vec<&str> = start
        .entities
        .iter()
        .map(|e| {
            assert_eq!(e["kind"], "Template", "{e}");
            assert_eq!(
                location(e),
                format!("url:{PUBLIC}/api/paved/catalog/entities.yaml")
            );
            e["metadata"]["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        templates,
        [
            "mariadb-database",
            "postgres-database",
            "preview-environment",
            "redis-cache"
        ]
    );
    assert!(start.removed.is_empty());
    let c0 = start.cursor;
    let idle = read(&app, "alice-token", &format!("after={c0}")).await;
    assert!(idle.entities.is_empty() && idle.removed.is_empty() && !idle.more);
    assert_eq!(idle.cursor, c0, "nothing changed: the same cursor");

    // Two orders become two resources: each appears once, as its document serves it.
    let (n1, n2) = (name(), name());
    let r1 = alice.order("redis-cache", cache(&n1)).await.created_id();
    let r2 = alice.order("redis-cache", cache(&n2)).await.created_id();
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![r1.clone(), r2.clone()],
    };
    assert_eq!(app.run_pending_jobs().await, 2);
    let rid = |req: String| {
        let app = &app;
        async move {
            let done = app.as_("alice-token").request(&req).await.body;
            assert_eq!(done["status"], "succeeded", "{done}");
            done["resourceId"].as_str().unwrap().to_owned()
        }
    };
    let (id1, id2) = (rid(r1).await, rid(r2).await);
    // Entity names are `<name>-<environment>`.
    let (e1n, e2n) = (format!("{n1}-dev"), format!("{n2}-dev"));
    let want = sorted(vec![e1n.clone(), e2n.clone()]);
    let created = read_until(&app, Some(&c0), "both new resources", |a| {
        resources_named(&a.entities).len() >= 2
    })
    .await;
    assert_eq!(
        sorted(resources_named(&created.entities)),
        want,
        "each new resource once"
    );
    let e1 = created
        .entities
        .iter()
        .find(|e| e["metadata"]["name"] == e1n.as_str())
        .unwrap();
    assert_eq!(
        *e1,
        served(&app, &id1).await,
        "the body its document serves"
    );
    assert_eq!(e1["spec"]["owner"], "group:default/team-a");
    assert_eq!(e1["metadata"]["annotations"]["paved.dev/status"], "ready");
    let c1 = created.cursor;
    assert_ne!(c1, c0);

    // Paged: one resource per answer, `more` until the last.
    let first = read(&app, "alice-token", "limit=1").await;
    assert!(first.more, "two resources, one per answer");
    assert_eq!(resources_named(&first.entities).len(), 1);
    assert_eq!(
        resources_named(&read_through(&app, None, 1).await.entities).len(),
        2
    );

    // Another replica (and paved after a restart) reads the same cursor the same way.
    let replica = TestApp::spawn(s.clone()).await;
    let there = read(&replica, "alice-token", &format!("after={c0}")).await;
    assert_eq!(there.cursor, c1);
    assert_eq!(there.entities, created.entities);
    replica.stop().await;

    // A change: the cache made read-only comes again, once, as its page now serves it.
    let upd = alice
        .update_resource(&id1, json!({"access": "read-only"}))
        .await;
    assert_eq!(upd.status, 202, "{}", upd.body);
    assert_eq!(app.run_pending_jobs().await, 1);
    let changed = read_until(&app, Some(&c1), "the changed cache", |a| {
        !a.entities.is_empty()
    })
    .await;
    assert_eq!(resources_named(&changed.entities), vec![e1n.clone()]);
    assert!(changed.removed.is_empty());
    assert_eq!(changed.entities[0], served(&app, &id1).await);
    let c2 = changed.cursor;

    // A delete: its ref is to be removed, and it is in no full listing any more.
    let del = alice.delete_resource(&id1).await;
    assert_eq!(del.status, 202, "{}", del.body);
    assert_eq!(app.run_pending_jobs().await, 1);
    let gone = read_until(&app, Some(&c2), "the deleted cache", |a| {
        !a.removed.is_empty()
    })
    .await;
    assert!(
        resources_named(&gone.entities).is_empty(),
        "{:?}",
        gone.entities
    );
    assert_eq!(gone.removed, [format!("resource:default/{e1n}")]);
    let full = read_through(&app, None, 100).await;
    assert_eq!(resources_named(&full.entities), vec![e2n.clone()]);
    assert_eq!(
        full.cursor, gone.cursor,
        "a full read ends where the feed is"
    );
    let _ = id2;

    // Bad input names the parameter and its rule.
    for (query, field) in [
        ("after=not-a-cursor", "after"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("since=1", "since"),
    ] {
        let r = alice.catalog_changes(query).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.body["error"]["name"], "InputError");
        assert_eq!(r.body["error"]["errors"][0]["field"], field, "{}", r.body);
    }
    app.stop().await;
}

#[tokio::test]
async fn orders_updates_and_deletes_come_through_the_feed_on_postgres() {
    orders_updates_and_deletes_come_through_the_feed(DbEngine::Postgres).await;
}

#[tokio::test]
async fn orders_updates_and_deletes_come_through_the_feed_on_sqlite() {
    orders_updates_and_deletes_come_through_the_feed(DbEngine::Sqlite).await;
}

fn row(id: &str) -> resource::ActiveModel {
    let at = chrono::Utc::now();
    resource::ActiveModel {
        id: Set(id.into()),
        entity_name: Set(format!("db-{id}")),
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
        monthly_cost_cents: Set(Some(100)),
        expires_at: Set(None),
        request_id: Set(format!("req-{id}")),
        created_at: Set(at),
        updated_at: Set(at),
        deleted_at: Set(None),
        catalog_bucket: Set(bucket_of(id)),
    }
}

/// On PostgreSQL a change can commit after a later one: the feed must not hand out a cursor
/// past a change that is still to commit, or the provider would never see it.
#[tokio::test]
async fn a_change_that_commits_late_is_not_skipped() {
    use sea_orm::sqlx::{self, Connection, postgres::PgConnection};

    let db = TestDb::new(DbEngine::Postgres).await;
    let app = TestApp::spawn(with_workers(settings(&db.url), 0)).await;
    let conn = Database::connect(&db.url).await.unwrap();
    resource::Entity::insert_many([row("a"), row("b")])
        .exec(&conn)
        .await
        .unwrap();
    let c = read_until(&app, None, "the two resources", |a| {
        resources_named(&a.entities).len() == 2
    })
    .await
    .cursor;

    // `a` changes first and commits last; `b` changes and commits in between.
    let mut slow = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; UPDATE resources SET status = 'failed' WHERE id = 'a'")
        .execute(&mut slow)
        .await
        .unwrap();
    let mut quick = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("UPDATE resources SET monthly_cost_cents = 200 WHERE id = 'b'")
        .execute(&mut quick)
        .await
        .unwrap();
    let early = read(&app, "alice-token", &format!("after={c}")).await;
    // (`b` is answered only after `a`'s transaction ends, whatever its own commit.)
    assert!(
        early.entities.is_empty(),
        "nothing past a change still running: {:?}",
        early.entities
    );
    assert_eq!(early.cursor, c);

    sqlx::raw_sql("COMMIT").execute(&mut slow).await.unwrap();
    let both = read_until(&app, Some(&c), "both changes", |a| {
        resources_named(&a.entities).len() == 2
    })
    .await;
    assert_eq!(sorted(resources_named(&both.entities)), ["db-a", "db-b"]);
    let a = both
        .entities
        .iter()
        .find(|e| e["metadata"]["name"] == "db-a")
        .unwrap();
    assert_eq!(a["metadata"]["annotations"]["paved.dev/status"], "failed");
    drop((slow, quick));
    app.stop().await;
}
