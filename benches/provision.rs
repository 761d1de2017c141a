//! `cargo bench --bench provision`: time from ordering a PostgreSQL database over the REST API
//! until paved reports it `succeeded`, beside the bare `CREATE ROLE` + `CREATE DATABASE` on the
//! same server (the floor), measured in the same run. Needs the local PostgreSQL
//! (`PAVED_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/postgres). Prints
//! figures; asserts none. Everything it creates is dropped.

use std::time::{Duration, Instant};

use paved::{
    app::Application, config::Settings, provisioning::drivers::Drivers,
    vocab::secret_box::SecretBox,
};
use sea_orm::sqlx::{self, Connection, postgres::PgConnection};
use serde_json::{Value, json};

const N: usize = 20;

fn stats(name: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q) as usize];
    println!(
        "{name:<52} mean {:>8.1} ms  p50 {:>8.1} ms  p95 {:>8.1} ms  ({} runs)",
        mean.as_secs_f64() * 1e3,
        p(0.5).as_secs_f64() * 1e3,
        p(0.95).as_secs_f64() * 1e3,
        v.len()
    );
    mean
}

#[tokio::main]
async fn main() {
    let admin = std::env::var("PAVED_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let meta_db = format!("paved_bench_{run}");
    let mut adm = PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL is running");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{meta_db}\""
    )))
    .execute(&mut adm)
    .await
    .unwrap();

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.database.url = format!("{}/{meta_db}", admin.rsplit_once('/').unwrap().0);
    s.templates.dir = root.join("templates");
    s.policies.dir = root.join("policies");
    s.cost.pricebook = root.join("pricing.yaml");
    s.secrets.key = Some(SecretBox::generate_key().into());
    s.engine.workers = 2;
    s.log.level = "warn".into();
    let app = Application::build(s.clone()).await.unwrap();
    let base = format!("http://{}/api/paved/v1", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    while client
        .get(format!("{base}/requests"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!(
        "paved provisioning benchmark: PostgreSQL database, request -> succeeded ({N} sequential orders)"
    );
    let mut paved_times = Vec::new();
    let mut created = Vec::new();
    for i in 0..N {
        let t = Instant::now();
        let r: Value = client
            .post(format!("{base}/requests"))
            .json(&json!({"offering": "postgres-database", "values": {"name": format!("bench-{run}-{i}"), "owner": "team-a", "cost_center": "ENG-1234"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["id"].as_str().expect("request created").to_owned();
        let spec = r["spec"]["parts"][0]["spec"].clone();
        loop {
            let r: Value = client
                .get(format!("{base}/requests/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match r["status"].as_str() {
                Some("succeeded") => {
                    created.push((
                        spec,
                        r["resourceId"].as_str().unwrap_or_default().to_owned(),
                    ));
                    break;
                }
                Some("failed") => panic!("{r}"),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        paved_times.push(t.elapsed());
    }

    let mut floor = Vec::new();
    for i in 0..N {
        let name = format!("bench_floor_{run}_{i}");
        let t = Instant::now();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE \"{name}_owner\" LOGIN PASSWORD 'x'"
        )))
        .execute(&mut adm)
        .await
        .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\" OWNER \"{name}_owner\""
        )))
        .execute(&mut adm)
        .await
        .unwrap();
        floor.push(t.elapsed());
        // One statement each: DROP DATABASE refuses to run inside a (multi-statement) transaction.
        for stmt in [
            format!("DROP DATABASE \"{name}\""),
            format!("DROP ROLE \"{name}_owner\""),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
                .execute(&mut adm)
                .await
                .unwrap();
        }
    }

    let floor_mean = stats("floor: CREATE ROLE + CREATE DATABASE", floor);
    let paved_mean = stats(
        "paved: POST /requests -> succeeded (all steps)",
        paved_times,
    );
    println!();
    println!(
        "request -> completed: {:.1} ms, {:.1}x the bare statements ({:.1} ms of guardrails, queue, steps, sealing, polling)",
        paved_mean.as_secs_f64() * 1e3,
        paved_mean.as_secs_f64() / floor_mean.as_secs_f64(),
        (paved_mean.as_secs_f64() - floor_mean.as_secs_f64()) * 1e3
    );

    let drivers = Drivers::from_settings(&s.drivers);
    for (spec, resource_id) in created {
        if let Ok(p) = drivers.parse("postgres", &spec) {
            drivers
                .destroy(&p, &paved::provisioning::engine::owner_tag(&resource_id))
                .await
                .ok();
        }
    }
    let _ = stop.send(());
    let _ = server.await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{meta_db}\" WITH (FORCE)"
    )))
    .execute(&mut adm)
    .await
    .unwrap();
}
