//! The paged catalog (`catalog::pages`) on real PostgreSQL (and SQLite for the migration):
//! `entities.yaml` holds the Templates and one Location per page, the pages partition the
//! live resources, and a change re-renders only the page it is on.

use crate::common;

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, Utc};
use common::{Engine as DbEngine, TestApp, TestDb, settings};
use paved::{
    catalog::pages::Layout,
    db::entities::resource,
    vocab::bucket::{POSTGRES_BUCKET_SQL, bucket_of},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait,
    QueryFilter, Statement, sea_query::Expr,
};
use sea_orm_migration::MigratorTrait;
use serde_json::{Value, json};

const PAGES: u32 = 8;

fn docs(text: &str) -> Vec<Value> {
    text.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| yaml_serde::from_str(d).unwrap())
        .collect()
}

fn row(id: &str, at: chrono::DateTime<Utc>) -> resource::ActiveModel {
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

async fn insert(db: &DatabaseConnection, ids: &[String], at: chrono::DateTime<Utc>) {
    for chunk in ids.chunks(100) {
        resource::Entity::insert_many(chunk.iter().map(|id| row(id, at)))
            .exec(db)
            .await
            .unwrap();
    }
}

/// Fetches a URL, optionally revalidating: (status, etag, body).
async fn get(app: &TestApp, url: &str, etag: Option<&str>) -> (u16, String, String) {
    let mut req = app.client.get(url);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, etag, r.text().await.unwrap())
}

/// Every page: its ETag and the resource ids on it (`paved.dev/resource-id`).
async fn all_pages(app: &TestApp, layout: &Layout) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for p in 0..layout.pages() {
        let (status, etag, body) = get(app, &layout.page_url(p), None).await;
        assert_eq!(status, 200, "page {p}: {body}");
        let ids = docs(&body)
            .iter()
            .map(|d| {
                assert_eq!(d["kind"], "Resource", "page {p} holds resources only");
                d["metadata"]["annotations"]["paved.dev/resource-id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        out.push((etag, ids));
    }
    out
}

/// Revalidates every page with its ETag: the pages that answered 200 (changed).
async fn changed_pages(app: &TestApp, layout: &Layout, etags: &[String]) -> Vec<u32> {
    let mut changed = Vec::new();
    for p in 0..layout.pages() {
        let (status, _, _) = get(app, &layout.page_url(p), Some(&etags[p as usize])).await;
        assert!(status == 200 || status == 304, "page {p}: {status}");
        if status == 200 {
            changed.push(p);
        }
    }
    changed
}

#[tokio::test]
async fn pages_partition_resources_and_a_change_rerenders_only_its_page() {
    let db = TestDb::new(DbEngine::Postgres).await;
    let mut s = settings(&db.url);
    s.catalog.pages = PAGES;
    let app = TestApp::spawn(s).await;
    let conn = Database::connect(&db.url).await.unwrap();
    let layout = Layout::new(&format!("{}/api/paved", app.base), PAGES);

    let t0 = Utc::now() - Duration::minutes(10);
    let ids: Vec<String> = (0..300).map(|i| format!("res-{i:04}")).collect();
    insert(&conn, &ids, t0).await;
    // A deleted resource is on no page.
    let mut gone = row("res-deleted", t0);
    gone.deleted_at = Set(Some(t0));
    resource::Entity::insert(gone).exec(&conn).await.unwrap();

    // The index: the offerings' Templates and one Location per page, each reading its page.
    let (status, index_etag, body) =
        get(&app, &app.url("/api/paved/catalog/entities.yaml"), None).await;
    assert_eq!(status, 200);
    let index = docs(&body);
    assert_eq!(index.iter().filter(|d| d["kind"] == "Template").count(), 4);
    assert!(index.iter().all(|d| d["kind"] != "Resource"), "{body}");
    let locations: Vec<&Value> = index.iter().filter(|d| d["kind"] == "Location").collect();
    assert_eq!(locations.len(), PAGES as usize);
    for (p, l) in locations.iter().enumerate() {
        let url = layout.page_url(p as u32);
        assert_eq!(l["spec"], json!({"type": "url", "target": url}));
        assert_eq!(
            format!(
                "location:default/{}",
                l["metadata"]["name"].as_str().unwrap()
            ),
            layout.page_location_ref(p as u32),
            "the ref the refresh fallback asks Backstage to refresh"
        );
    }
    let (status, _, _) = get(
        &app,
        &app.url("/api/paved/catalog/entities.yaml"),
        Some(&index_etag),
    )
    .await;
    assert_eq!(status, 304, "the index revalidates");

    // The pages hold every live resource exactly once, each on the page its id hashes to.
    let pages = all_pages(&app, &layout).await;
    let mut seen: HashMap<String, u32> = HashMap::new();
    for (p, (_, on_page)) in pages.iter().enumerate() {
        for id in on_page {
            assert_eq!(layout.page_of(id), p as u32, "{id}");
            assert!(seen.insert(id.clone(), p as u32).is_none(), "{id} twice");
        }
    }
    let mut listed: Vec<&String> = seen.keys().collect();
    listed.sort();
    assert_eq!(
        listed,
        ids.iter().collect::<Vec<_>>(),
        "every live resource, once"
    );
    assert!(
        pages.iter().filter(|(_, ids)| !ids.is_empty()).count() > 1,
        "300 resources spread over several pages"
    );
    let etags: Vec<String> = pages.iter().map(|(e, _)| e.clone()).collect();
    assert!(
        changed_pages(&app, &layout, &etags).await.is_empty(),
        "nothing changed: every page answers 304"
    );

    // One resource changes: only its page is re-rendered.
    let target = &ids[17];
    let page = layout.page_of(target);
    resource::Entity::update_many()
        .col_expr(resource::Column::Status, Expr::value("failed"))
        .col_expr(resource::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(resource::Column::Id.eq(target.clone()))
        .exec(&conn)
        .await
        .unwrap();
    assert_eq!(changed_pages(&app, &layout, &etags).await, vec![page]);
    let (_, new_etag, body) = get(&app, &layout.page_url(page), None).await;
    assert_ne!(new_etag, etags[page as usize]);
    let entity = docs(&body)
        .into_iter()
        .find(|d| d["metadata"]["annotations"]["paved.dev/resource-id"] == target.as_str())
        .unwrap();
    assert_eq!(
        entity["metadata"]["annotations"]["paved.dev/status"],
        "failed"
    );
    let (status, _, _) = get(&app, &layout.page_url(page), Some(&new_etag)).await;
    assert_eq!(status, 304, "the rebuilt page revalidates");
    let mut etags = etags;
    etags[page as usize] = new_etag;

    // A commit that lands late, stamped before the newest change seen, is still noticed.
    let late = "res-late".to_owned();
    insert(
        &conn,
        std::slice::from_ref(&late),
        Utc::now() - Duration::seconds(20),
    )
    .await;
    let late_page = layout.page_of(&late);
    assert_eq!(changed_pages(&app, &layout, &etags).await, vec![late_page]);
    let (_, e, body) = get(&app, &layout.page_url(late_page), None).await;
    assert!(body.contains("db-res-late"), "{body}");
    etags[late_page as usize] = e;

    // A deleted resource leaves its page, and only that page changes.
    let victim = &ids[42];
    let vpage = layout.page_of(victim);
    resource::Entity::update_many()
        .col_expr(resource::Column::DeletedAt, Expr::value(Utc::now()))
        .col_expr(resource::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(resource::Column::Id.eq(victim.clone()))
        .exec(&conn)
        .await
        .unwrap();
    assert_eq!(changed_pages(&app, &layout, &etags).await, vec![vpage]);
    let (_, _, body) = get(&app, &layout.page_url(vpage), None).await;
    let on_page: Vec<Value> = docs(&body)
        .iter()
        .map(|d| d["metadata"]["annotations"]["paved.dev/resource-id"].clone())
        .collect();
    assert!(!on_page.contains(&json!(victim)), "{body}");
    assert!(!on_page.is_empty() || layout.pages() > 1);

    // Pages outside 0..pages do not exist.
    for bad in [format!("{PAGES}.yaml"), "x.yaml".into(), "3".into()] {
        let (status, _, body) = get(
            &app,
            &app.url(&format!("/api/paved/catalog/pages/{bad}")),
            None,
        )
        .await;
        assert_eq!(status, 404, "{bad}: {body}");
        assert!(body.contains("catalog page"), "{body}");
    }
    conn.close().await.ok();
    app.stop().await;
}

/// Another process (a replica, or this one restarted) serves the same pages with the same
/// ETags: nothing but the database decides them.
#[tokio::test]
async fn replicas_agree_on_pages_and_etags() {
    let db = TestDb::new(DbEngine::Postgres).await;
    let mut s = settings(&db.url);
    s.catalog.pages = PAGES;
    s.server.public_url = Some("http://paved.example".into());
    let one = TestApp::spawn(s.clone()).await;
    let conn = Database::connect(&db.url).await.unwrap();
    let ids: Vec<String> = (0..50).map(|i| format!("r-{i}")).collect();
    insert(&conn, &ids, Utc::now()).await;
    let two = TestApp::spawn(s).await;
    let layout = |app: &TestApp| Layout::new(&format!("{}/api/paved", app.base), PAGES);
    let a = all_pages(&one, &layout(&one)).await;
    let b = all_pages(&two, &layout(&two)).await;
    assert_eq!(a, b);
    conn.close().await.ok();
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn postgres_bucket_expression_is_the_rust_hash() {
    let db = TestDb::new(DbEngine::Postgres).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    let conn = Database::connect(&db.url).await.unwrap();
    let ids: Vec<String> = (0..500)
        .map(|i| format!("{}-{i}", uuid::Uuid::new_v4()))
        .chain(["é-ünïcode".to_owned()])
        .collect();
    insert(&conn, &ids, Utc::now()).await;
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT id, {POSTGRES_BUCKET_SQL} AS b FROM resources"),
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), ids.len());
    for r in rows {
        let id: String = r.try_get("", "id").unwrap();
        let b: i32 = r.try_get("", "b").unwrap();
        assert_eq!(b, bucket_of(&id), "{id}");
    }
    conn.close().await.ok();
    app.stop().await;
}

/// Migration 000005 fills the bucket of resources that existed before it.
async fn backfill(engine: DbEngine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::spawn(settings(&db.url)).await;
    app.stop().await;
    let conn = Database::connect(&db.url).await.unwrap();
    let ids: Vec<String> = (0..700).map(|i| format!("old-{i}")).collect();
    insert(&conn, &ids, Utc::now()).await;
    paved::db::Migrator::down(&conn, Some(1)).await.unwrap();
    paved::db::Migrator::up(&conn, None).await.unwrap();
    let rows = resource::Entity::find().all(&conn).await.unwrap();
    assert_eq!(rows.len(), ids.len());
    let mut buckets = BTreeMap::new();
    for r in rows {
        assert_eq!(r.catalog_bucket, bucket_of(&r.id), "{engine:?} {}", r.id);
        buckets.insert(r.catalog_bucket, ());
    }
    assert!(buckets.len() > 1, "not all left at the column default");
    conn.close().await.ok();
}

#[tokio::test]
async fn the_migration_backfills_buckets_on_postgres() {
    backfill(DbEngine::Postgres).await;
}

#[tokio::test]
async fn the_migration_backfills_buckets_on_sqlite() {
    backfill(DbEngine::Sqlite).await;
}

/// Fetches with `Accept-Encoding` and `If-None-Match` as given: (status, headers, body as
/// received, not decoded).
async fn fetch(
    app: &TestApp,
    url: &str,
    accept: Option<&str>,
    etag: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = app.client.get(url);
    if let Some(a) = accept {
        req = req.header("accept-encoding", a);
    }
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn gunzip(b: &[u8]) -> String {
    use std::io::Read;
    let mut out = String::new();
    flate2::read::GzDecoder::new(b)
        .read_to_string(&mut out)
        .unwrap();
    out
}

/// A client that accepts gzip (Backstage's reader does) gets the same text compressed, under
/// the weak form of the text's ETag; either tag revalidates with either encoding, and a change
/// makes both stale.
#[tokio::test]
async fn pages_are_served_gzipped_when_accepted_and_revalidate_under_either_etag() {
    let db = TestDb::new(DbEngine::Postgres).await;
    let mut s = settings(&db.url);
    s.catalog.pages = PAGES;
    let app = TestApp::spawn(s).await;
    let conn = Database::connect(&db.url).await.unwrap();
    let layout = Layout::new(&format!("{}/api/paved", app.base), PAGES);
    let ids: Vec<String> = (0..120).map(|i| format!("gz-{i}")).collect();
    insert(&conn, &ids, Utc::now() - Duration::minutes(10)).await;
    let target = &ids[3];
    let url = layout.page_url(layout.page_of(target));
    let gzip = Some("gzip, deflate, br");

    let (status, plain, text) = fetch(&app, &url, None, None).await;
    assert_eq!(status, 200);
    assert!(plain.get("content-encoding").is_none());
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains(&format!("db-{target}")), "{text}");
    let strong = plain["etag"].to_str().unwrap().to_owned();
    assert!(strong.starts_with('"'), "{strong}");

    let (status, h, body) = fetch(&app, &url, gzip, None).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["vary"], "accept-encoding");
    assert_eq!(h["content-type"], plain["content-type"]);
    let weak = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(weak, format!("W/{strong}"));
    // Each bucket is compressed on its own: with a resource or two per bucket, as here, that
    // saves less than at scale (~9x at 100k resources), but still saves.
    assert!(body.len() < text.len(), "{} of {}", body.len(), text.len());
    assert_eq!(gunzip(&body), text);

    // Refused gzip (q=0) or another coding only: the text.
    for accept in ["gzip;q=0, *", "br"] {
        let (status, h, body) = fetch(&app, &url, Some(accept), None).await;
        assert_eq!(status, 200, "{accept}");
        assert!(h.get("content-encoding").is_none(), "{accept}");
        assert_eq!(body, text.as_bytes(), "{accept}");
    }

    for (accept, tag, answered) in [
        (None, &strong, &strong),
        (None, &weak, &strong),
        (gzip, &weak, &weak),
        (gzip, &strong, &weak),
    ] {
        let (status, h, body) = fetch(&app, &url, accept, Some(tag)).await;
        assert_eq!(status, 304, "{accept:?} {tag}");
        assert_eq!(h["etag"], answered.as_str(), "{accept:?} {tag}");
        assert!(body.is_empty());
    }

    resource::Entity::update_many()
        .col_expr(resource::Column::Status, Expr::value("failed"))
        .col_expr(resource::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(resource::Column::Id.eq(target.clone()))
        .exec(&conn)
        .await
        .unwrap();
    let (status, h, body) = fetch(&app, &url, gzip, Some(&weak)).await;
    assert_eq!(status, 200, "the change is seen through the gzip tag");
    assert_ne!(h["etag"].to_str().unwrap(), weak);
    let changed = gunzip(&body);
    let entity = docs(&changed)
        .into_iter()
        .find(|d| d["metadata"]["annotations"]["paved.dev/resource-id"] == target.as_str())
        .unwrap();
    assert_eq!(
        entity["metadata"]["annotations"]["paved.dev/status"],
        "failed"
    );
    let (status, _, body) = fetch(&app, &url, None, Some(&strong)).await;
    assert_eq!(status, 200, "and through the text's");
    assert_eq!(String::from_utf8(body).unwrap(), changed);

    // The index and one resource's document are compressed the same way.
    for doc in [
        app.url("/api/paved/catalog/entities.yaml"),
        app.url(&format!("/api/paved/catalog/resources/{target}.yaml")),
    ] {
        let (_, plain, text) = fetch(&app, &doc, None, None).await;
        let (status, h, body) = fetch(&app, &doc, gzip, None).await;
        assert_eq!(status, 200, "{doc}");
        assert_eq!(h["content-encoding"], "gzip", "{doc}");
        assert_eq!(gunzip(&body).as_bytes(), text, "{doc}");
        let weak = format!("W/{}", plain["etag"].to_str().unwrap());
        assert_eq!(h["etag"], weak.as_str(), "{doc}");
        let (status, _, _) = fetch(&app, &doc, gzip, Some(&weak)).await;
        assert_eq!(status, 304, "{doc}");
    }
    conn.close().await.ok();
    app.stop().await;
}
