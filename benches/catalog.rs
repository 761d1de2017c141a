//! `cargo bench --bench catalog`: the catalog document Backstage's URL reader fetches, with 10k
//! and 100k live resources in PostgreSQL: the first fetch (reads every row and serializes),
//! a repeat fetch (nothing changed: served from the cached body), a revalidation with
//! `If-None-Match` (304), one resource's own document, and this process's peak memory.

mod common;

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};

async fn fill(conn: &sea_orm::DatabaseConnection, n: usize) {
    // generate_series keeps 100k inserts to one statement; rows look like real ones.
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
               '{{}}'::json, 4200, NULL, md5((i + 1)::text), now(), now(), NULL
             FROM generate_series(1, {n}) AS i"
        ),
    ))
    .await
    .unwrap();
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

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    println!("catalog document benchmark (PostgreSQL, in-process server and client)");
    for n in [10_000, 100_000] {
        let db = common::PgDb::create().await;
        let mut s = common::settings(&db.url);
        s.engine.workers = 0;
        let app = paved::app::Application::build(s).await.unwrap();
        let base = format!("http://{}/api/paved/catalog", app.local_addr());
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        while !state.schema_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fill(state.db(), n).await;
        let all = format!("{base}/entities.yaml");
        let (first, status, size, etag) = timed(&client, &all, None).await;
        assert_eq!(status, 200);
        let mut repeat = Vec::new();
        for _ in 0..5 {
            repeat.push(timed(&client, &all, None).await.0);
        }
        let mut revalidate = Vec::new();
        for _ in 0..20 {
            let (d, status, _, _) = timed(&client, &all, etag.as_deref()).await;
            assert_eq!(status, 304);
            revalidate.push(d);
        }
        let ids = state
            .db()
            .query_all_raw(Statement::from_string(
                state.db().get_database_backend(),
                "SELECT id FROM resources ORDER BY random() LIMIT 20",
            ))
            .await
            .unwrap();
        let mut one = Vec::new();
        for row in ids {
            let id: String = row.try_get("", "id").unwrap();
            let (d, status, _, _) =
                timed(&client, &format!("{base}/resources/{id}.yaml"), None).await;
            assert_eq!(status, 200);
            one.push(d);
        }
        let (_, peak) = common::memory_mib(std::process::id());
        println!(
            "{n:>7} resources: document {:>6.1} MB | first fetch {:>8.1} ms | repeat {:>7.1} ms | 304 {:>5.2} ms | one resource {:>5.2} ms | peak RSS {:>6.0} MiB",
            size as f64 / 1e6,
            common::ms(first),
            common::ms(common::percentiles(&mut repeat)[1]),
            common::ms(common::percentiles(&mut revalidate)[1]),
            common::ms(common::percentiles(&mut one)[1]),
            peak
        );
        let _ = stop.send(());
        let _ = task.await;
        db.drop_now().await;
    }
    println!("(repeat/304/one resource: medians; peak RSS is this whole process, client included)");
}
