//! `cargo bench --bench queue`: 1,000 Redis cache orders submitted at once, time until every
//! one has succeeded, with 1 and with 2 paved replicas (2 workers each) sharing one PostgreSQL
//! database. Each order really creates an ACL user on the local Redis; all are removed after.

mod common;

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

const ORDERS: usize = 1000;
const CLIENTS: usize = 32;

async fn run(replicas: usize) -> (Duration, Duration) {
    let db = common::PgDb::create().await;
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..replicas {
        let mut s = common::settings(&db.url);
        s.engine.workers = 2;
        s.engine.poll_seconds = 1;
        s.database.max_connections = 10;
        let app = paved::app::Application::build(s).await.unwrap();
        bases.push(format!("http://{}/api/paved/v1", app.local_addr()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        servers.push((stop, task));
    }
    let client = reqwest::Client::new();
    for b in &bases {
        while client
            .get(format!("{b}/offerings"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, bases) = (client.clone(), bases.clone());
            let run_id = run_id.to_owned();
            tokio::spawn(async move {
                for i in (c..ORDERS).step_by(CLIENTS) {
                    // Spread over the replicas, as a load balancer would.
                    let base = &bases[i % bases.len()];
                    let r = client
                        .post(format!("{base}/requests"))
                        .json(&json!({"offering": "redis-cache", "values": {"name": format!("q{run_id}{i}"), "environment": "dev", "size": "small", "owner": "team-a", "cost_center": "ENG-1234"}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let submitted = start.elapsed();
    let conn = paved::db::connect(&{
        let mut d = paved::config::Settings::default().database;
        d.url = db.url.clone();
        d
    })
    .await
    .unwrap();
    loop {
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT count(*) FILTER (WHERE status = 'succeeded') AS ok, count(*) FILTER (WHERE status = 'failed') AS failed FROM requests",
            ))
            .await
            .unwrap()
            .unwrap();
        let ok: i64 = row.try_get("", "ok").unwrap();
        let failed: i64 = row.try_get("", "failed").unwrap();
        assert_eq!(failed, 0, "a request failed");
        if ok as usize == ORDERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = start.elapsed();
    conn.close().await.ok();
    for (stop, task) in servers {
        let _ = stop.send(());
        let _ = task.await;
    }
    cleanup_redis(&format!("paved-q{run_id}")).await;
    db.drop_now().await;
    (submitted, done)
}

/// Removes the ACL users (and paved's ownership markers) this run created.
async fn cleanup_redis(prefix: &str) {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let users: Vec<String> = redis::cmd("ACL")
        .arg("USERS")
        .query_async(&mut c)
        .await
        .unwrap();
    for u in users.iter().filter(|u| u.starts_with(prefix)) {
        let _: i64 = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(u)
            .query_async(&mut c)
            .await
            .unwrap();
        let _: i64 = c.del(format!("__paved_owner__:{u}")).await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!(
        "queue benchmark: {ORDERS} redis-cache orders from {CLIENTS} clients at once, until all succeeded"
    );
    let mut per_replica = Vec::new();
    for replicas in [1, 2] {
        let (submitted, done) = run(replicas).await;
        println!(
            "{replicas} replica(s) x 2 workers: all submitted in {:>6.2} s, all succeeded in {:>6.2} s ({:>6.1} requests/s end to end)",
            submitted.as_secs_f64(),
            done.as_secs_f64(),
            ORDERS as f64 / done.as_secs_f64()
        );
        per_replica.push(done);
    }
    println!();
    println!(
        "2 replicas finish in {:.2}x the time of 1 (same machine, same 2 cores: replicas add workers, not CPUs)",
        per_replica[1].as_secs_f64() / per_replica[0].as_secs_f64()
    );
}
