//! `cargo bench --bench queue`: 1,000 Redis cache orders submitted at once, time until every
//! one has succeeded: on SQLite (one replica), and with 1 and with 2 paved replicas sharing one
//! PostgreSQL database, each with paved's default workers and pool. Each order really creates
//! an ACL user on the local Redis; all are removed after. Prints where the time goes: CPU per
//! order (this process, which is paved and the clients, and the rest of the machine, which is
//! PostgreSQL and Redis) and, on PostgreSQL, transactions and rows written per order.
//! `PAVED_BENCH_ORDERS=N` runs fewer; `PAVED_BENCH_WORKERS` and `PAVED_BENCH_POOL` try other
//! worker and pool sizes than paved's defaults.

mod common;

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

const CLIENTS: usize = 32;

fn orders() -> usize {
    env_number("PAVED_BENCH_ORDERS").unwrap_or(1000)
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

struct Run {
    submitted: Duration,
    done: Duration,
    /// CPU seconds of this process (paved and the clients), of the PostgreSQL backends of
    /// its database, of Redis, and of the rest of the machine.
    cpu_self: f64,
    cpu_pg: f64,
    cpu_redis: f64,
    cpu_rest: f64,
    pg: Option<common::PgActivity>,
}

async fn run(engine: common::testkit::Engine, replicas: usize) -> Run {
    let db = common::testkit::TestDb::new(engine).await;
    let pg = engine == common::testkit::Engine::Postgres;
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..replicas {
        // paved's defaults: workers and pool are what ships.
        let mut s = common::settings(&db.url);
        // (The tests' kit turns workers off; the bench runs what ships.)
        s.engine.workers = paved::config::Settings::default().engine.workers;
        // For tuning: what another setting of the two would do.
        if let Some(w) = env_number("PAVED_BENCH_WORKERS") {
            s.engine.workers = w;
        }
        if let Some(p) = env_number("PAVED_BENCH_POOL") {
            s.database.max_connections = p as u32;
        }
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
    let orders = orders();
    let db_name = db.url.rsplit('/').next().unwrap_or_default().to_owned();
    let (cpu0, machine0) = (common::cpu_seconds_self(), common::cpu_seconds_machine());
    let (pg0, redis0) = (
        common::cpu_seconds_of(&format!(" {db_name} ")),
        common::cpu_seconds_of("redis-server"),
    );
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, bases) = (client.clone(), bases.clone());
            let run_id = run_id.to_owned();
            tokio::spawn(async move {
                for i in (c..orders).step_by(CLIENTS) {
                    // Spread over the replicas, as a load balancer would.
                    let base = &bases[i % bases.len()];
                    let r = client
                        .post(format!("{base}/requests"))
                        .json(&json!({"offering": "redis-cache", "values": {"name": format!("q{run_id}{i}"), "environment": "dev", "owner": "team-a", "cost_center": "ENG-1234"}}))
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
        if failed > 0 {
            let why = conn
                .query_one_raw(Statement::from_string(
                    conn.get_database_backend(),
                    "SELECT error FROM requests WHERE status = 'failed' LIMIT 1",
                ))
                .await
                .unwrap()
                .and_then(|r| r.try_get::<Option<String>>("", "error").ok().flatten());
            // What the run created goes even when it fails.
            common::cleanup_redis(&format!("paved-q{run_id}")).await;
            panic!("{failed} request(s) failed, e.g.: {why:?}");
        }
        if ok as usize == orders {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = start.elapsed();
    let cpu_self = common::cpu_seconds_self() - cpu0;
    // Read while paved's connections are open (a closed backend's time is gone).
    let cpu_pg = if pg {
        common::cpu_seconds_of(&format!(" {db_name} ")) - pg0
    } else {
        0.0
    };
    let cpu_redis = common::cpu_seconds_of("redis-server") - redis0;
    let cpu_rest = common::cpu_seconds_machine() - machine0 - cpu_self - cpu_pg - cpu_redis;
    conn.close().await.ok();
    for (stop, task) in servers {
        let _ = stop.send(());
        let _ = task.await;
    }
    common::cleanup_redis(&format!("paved-q{run_id}")).await;
    let pg = if pg {
        // The backends report their counts as they close; give the last ones a moment.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Some(common::pg_activity(&db.url).await)
    } else {
        None
    };
    drop(db);
    Run {
        submitted,
        done,
        cpu_self,
        cpu_pg,
        cpu_redis,
        cpu_rest,
        pg,
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let orders = orders();
    let d = paved::config::Settings::default();
    println!(
        "queue benchmark: {orders} redis-cache orders from {CLIENTS} clients at once, until all succeeded ({} workers, pool of {} per replica)",
        d.engine.workers, d.database.max_connections
    );
    use common::testkit::Engine::{Postgres, Sqlite};
    let mut pg_runs = Vec::new();
    for (engine, replicas) in [(Sqlite, 1), (Postgres, 1), (Postgres, 2)] {
        let r = run(engine, replicas).await;
        let name = if engine == Sqlite {
            "SQLite"
        } else {
            "PostgreSQL"
        };
        let per = |x: f64| x * 1e3 / orders as f64;
        println!(
            "{name}, {replicas} replica(s): all submitted in {:>6.2} s, all succeeded in {:>6.2} s ({:>6.1} requests/s end to end)",
            r.submitted.as_secs_f64(),
            r.done.as_secs_f64(),
            orders as f64 / r.done.as_secs_f64(),
        );
        println!(
            "  CPU per order: {:.1} ms paved and the clients (one process), {:.1} ms PostgreSQL backends, {:.1} ms Redis, {:.1} ms the rest of the machine",
            per(r.cpu_self),
            per(r.cpu_pg),
            per(r.cpu_redis),
            per(r.cpu_rest),
        );
        if engine == Postgres {
            pg_runs.push(r);
        }
    }
    if let Some(pg) = pg_runs[0].pg.as_ref() {
        let per = |x: i64| x as f64 / orders as f64;
        println!();
        println!(
            "PostgreSQL, 1 replica, per order: {:.1} transactions (a statement outside one counts as one)",
            per(pg.commits)
        );
        for (t, i, u, d, x, sq) in &pg.tables {
            if per(i + u + d + x + sq) < 0.05 {
                continue;
            }
            println!(
                "  {t:<22} {:>5.1} inserted {:>5.1} updated {:>5.1} deleted {:>6.1} index scans {:>5.1} sequential scans",
                per(*i),
                per(*u),
                per(*d),
                per(*x),
                per(*sq)
            );
        }
    }
    println!();
    println!(
        "2 replicas finish in {:.2}x the time of 1 (same machine, same 2 cores: replicas add workers, not CPUs)",
        pg_runs[1].done.as_secs_f64() / pg_runs[0].done.as_secs_f64()
    );
}
