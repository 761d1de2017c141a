//! `cargo bench --bench catalog`: the paged catalog Backstage's URL reader fetches, with 10k
//! and 100k live resources in PostgreSQL: the index document (`entities.yaml`: Templates and
//! one Location per page), one page cold (first read: rows read and serialized) and warm (the
//! cached body), a 304 revalidation of a page, a change to one resource then the rebuild of its
//! page, reading every page once (what Backstage does right after registration), one
//! resource's own document, and this process's peak memory.

mod common;

use std::time::{Duration, Instant};

use paved::vocab::bucket::POSTGRES_BUCKET_SQL;
use sea_orm::{ConnectionTrait, Statement};

async fn fill(conn: &sea_orm::DatabaseConnection, n: usize) {
    // generate_series keeps 100k inserts to one statement; rows look like real ones, created
    // and last changed one second apart (one statement would otherwise stamp them all alike).
    conn.execute_raw(Statement::from_string(
        conn.get_database_backend(),
        format!(
            "INSERT INTO resources (id, entity_name, offering, offering_version, resource_type,
               environment, owner, system, component, status, desired, outputs,
               monthly_cost_cents, expires_at, request_id, created_at, updated_at, deleted_at)
             SELECT md5(i::text), 'db-' || i || '-prod', 'postgres-database', '1.0.0+abc',
               'database', 'prod', 'group:default/team-' || (i % 50), 'system:default/shop',
               'component:default/orders', 'ready',
               json_build_object('resource', json_build_object('title', 'PostgreSQL db-' || i,
                 'labels', json_build_object('cost-center', 'ENG-1234'))),
               '{{}}'::json, 4200, NULL, md5((i + 1)::text),
               now() - make_interval(secs => i), now() - make_interval(secs => i), NULL
             FROM generate_series(1, {n}) AS i"
        ),
    ))
    .await
    .unwrap();
    // What paved stores at insert time (`pages::bucket_of`), as the migration computes it.
    for sql in [
        format!("UPDATE resources SET catalog_bucket = {POSTGRES_BUCKET_SQL}"),
        "ANALYZE resources".to_owned(),
    ] {
        conn.execute_raw(Statement::from_string(conn.get_database_backend(), sql))
            .await
            .unwrap();
    }
}

async fn timed(
    client: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
) -> (Duration, u16, usize, Option<String>) {
    let mut req = client.get(url);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    let t = Instant::now();
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let len = r.bytes().await.unwrap().len();
    (t.elapsed(), status, len, etag)
}

fn median(v: &mut [Duration]) -> f64 {
    common::ms(common::percentiles(v)[1])
}

async fn random_ids(state: &paved::api::state::AppState, n: usize) -> Vec<String> {
    state
        .db()
        .query_all_raw(Statement::from_string(
            state.db().get_database_backend(),
            format!("SELECT id FROM resources ORDER BY random() LIMIT {n}"),
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get("", "id").unwrap())
        .collect()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    println!("paged catalog benchmark (PostgreSQL, in-process server and client, 64 pages)");
    for n in [10_000, 100_000] {
        let db = common::PgDb::create().await;
        let mut s = common::settings(&db.url);
        s.engine.workers = 0;
        let app = paved::app::Application::build(s).await.unwrap();
        let base = format!("http://{}/api/paved/catalog", app.local_addr());
        let state = app.state().clone();
        let layout = state.catalog_pages().layout().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        while !state.schema_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fill(state.db(), n).await;

        // The index document.
        let all = format!("{base}/entities.yaml");
        let (index_first, status, index_size, index_etag) = timed(&client, &all, None).await;
        assert_eq!(status, 200);
        let mut index_304 = Vec::new();
        for _ in 0..20 {
            let (d, status, _, _) = timed(&client, &all, index_etag.as_deref()).await;
            assert_eq!(status, 304);
            index_304.push(d);
        }

        // One page: cold, warm, 304.
        let page0 = layout.page_url(0);
        let (cold, status, page_size, etag) = timed(&client, &page0, None).await;
        assert_eq!(status, 200);
        let mut warm = Vec::new();
        let mut revalidate = Vec::new();
        for _ in 0..20 {
            warm.push(timed(&client, &page0, None).await.0);
            let (d, status, _, _) = timed(&client, &page0, etag.as_deref()).await;
            assert_eq!(status, 304);
            revalidate.push(d);
        }

        // Every other page once, as right after registration.
        let t = Instant::now();
        let mut total = page_size;
        for p in 1..layout.pages() {
            let (_, status, size, _) = timed(&client, &layout.page_url(p), None).await;
            assert_eq!(status, 200);
            total += size;
        }
        let every_page = t.elapsed();

        // A change to one resource, then its page is read (rebuilt) and revalidated.
        let mut rebuild = Vec::new();
        for id in random_ids(&state, 10).await {
            let url = layout.page_url(layout.page_of(&id));
            let before = timed(&client, &url, None).await.3;
            state
                .db()
                .execute_raw(Statement::from_string(
                    state.db().get_database_backend(),
                    format!(
                        "UPDATE resources SET status = 'failed', updated_at = now() WHERE id = '{id}'"
                    ),
                ))
                .await
                .unwrap();
            let (d, status, _, _) = timed(&client, &url, before.as_deref()).await;
            assert_eq!(status, 200, "the change is seen");
            rebuild.push(d);
        }

        let mut one = Vec::new();
        for id in random_ids(&state, 20).await {
            let (d, status, _, _) =
                timed(&client, &format!("{base}/resources/{id}.yaml"), None).await;
            assert_eq!(status, 200);
            one.push(d);
        }
        let (_, peak) = common::memory_mib(std::process::id());
        println!(
            "{n:>7} resources: index {:.1} KB first {:.1} ms 304 {:.2} ms | page {:.2} MB cold {:.1} ms warm {:.2} ms 304 {:.2} ms | change -> page rebuild {:.1} ms | all {} pages ({:.1} MB) {:.0} ms | one resource {:.2} ms | peak RSS {:.0} MiB",
            index_size as f64 / 1e3,
            common::ms(index_first),
            median(&mut index_304),
            page_size as f64 / 1e6,
            common::ms(cold),
            median(&mut warm),
            median(&mut revalidate),
            median(&mut rebuild),
            layout.pages(),
            total as f64 / 1e6,
            common::ms(every_page),
            median(&mut one),
            peak
        );
        let _ = stop.send(());
        let _ = task.await;
        db.drop_now().await;
    }
    println!(
        "(warm/304/rebuild/one resource: medians; cold includes the first change scan; peak RSS is this whole process, client included)"
    );
}
