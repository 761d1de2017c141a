//! `cargo bench --bench scaleout`: does throughput grow with workers × replicas when the
//! provisioning itself is slow? The driver is a fake standing in for a slow cloud API
//! (`SlowCloudFake`: paved's `FakeDriver` whose `apply` takes 200 ms), so what is measured is
//! paved's engine and job queue on one PostgreSQL around a wait that costs no CPU.
//!
//! Per configuration (1, 2, 4, 8, 16, 32 workers on one replica, then 2 replicas × 32 workers =
//! 64 concurrent jobs), on a fresh paved database: redis-cache orders (the fake never touches
//! Redis) are placed through one paved app whose workers are off, then the workers start and
//! the clock runs until every request has succeeded. A replica is an `Engine` with its own
//! connection pool; all replicas share the one fake (one cloud). Prints jobs/s, the ideal
//! (concurrency × the 1-worker rate of the same run) and the ratio, and checks that each
//! request was applied exactly once. Prints figures; asserts none. Everything it creates is
//! dropped.

mod common;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use paved::{
    provisioning::{
        drivers::{
            Applied, Difference, DriverFuture, Observed, PartSpec, Provisioner, Usage,
            fake::{FakeDriver, Op},
        },
        engine::Engine,
    },
    vocab::secret_box::SecretBox,
};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

/// How long the fake cloud takes to create a thing.
const APPLY: Duration = Duration::from_millis(200);

/// A fake, named as one: paved's `FakeDriver` behind a slow cloud API. `apply` waits 200 ms
/// (no CPU) and then applies; everything else is the fake's, at once.
struct SlowCloudFake(FakeDriver);

impl Provisioner for SlowCloudFake {
    fn parse(
        &self,
        driver: &str,
        spec: &Value,
    ) -> Result<PartSpec, paved::provisioning::drivers::DriverError> {
        self.0.parse(driver, spec)
    }

    fn apply<'a>(
        &'a self,
        spec: &'a PartSpec,
        password: &'a str,
        tag: &'a str,
    ) -> DriverFuture<'a, Applied> {
        Box::pin(async move {
            tokio::time::sleep(APPLY).await;
            self.0.apply(spec, password, tag).await
        })
    }

    fn observe<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, Observed> {
        self.0.observe(spec)
    }

    fn drift<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, (Observed, Vec<Difference>)> {
        self.0.drift(spec)
    }

    fn destroy<'a>(&'a self, spec: &'a PartSpec, tag: &'a str) -> DriverFuture<'a, ()> {
        self.0.destroy(spec, tag)
    }

    fn usage<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, Usage> {
        self.0.usage(spec)
    }
}

/// Orders placed, then worked off: how long it took and what the fake saw.
struct Run {
    orders: usize,
    took: Duration,
    /// Distinct parts applied, and those applied more than once.
    applied: usize,
    applied_twice: usize,
    failed: i64,
}

/// Concurrent order submitters while placing (the app's workers are off, so this only fills
/// the queue).
const CLIENTS: usize = 16;

async fn place(base: &str, run_id: &str, n: usize) {
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, base, run_id) = (client.clone(), base.to_owned(), run_id.to_owned());
            tokio::spawn(async move {
                for i in (c..n).step_by(CLIENTS) {
                    let r = client
                        .post(format!("{base}/requests"))
                        .json(&json!({"offering": "redis-cache", "values": {"name": format!("s{run_id}{i}"), "environment": "dev", "owner": "team-a", "cost_center": "ENG-1234"}}))
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
}

/// Connections per replica: one per worker (its claim and its steps' statements) and two more
/// (lease heartbeats and what overlaps), so no worker waits for a connection.
fn pool_size(workers: usize) -> u32 {
    workers as u32 + 2
}

async fn run(replicas: usize, workers: usize) -> Run {
    let concurrency = replicas * workers;
    let orders = (8 * concurrency).max(16);
    let db = common::testkit::TestDb::new(common::testkit::Engine::Postgres).await;
    let s = common::settings(&db.url);
    assert_eq!(s.engine.workers, 0, "the ordering app runs no jobs");
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    {
        let app = paved::app::Application::build(s.clone()).await.unwrap();
        let base = format!("http://{}/api/paved/v1", app.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        while client
            .get(format!("{base}/offerings"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        place(&base, run_id, orders).await;
        let _ = stop.send(());
        let _ = task.await;
    }

    let key = s.secrets.key.clone().expect("the kit sets a key");
    let secrets = Arc::new(SecretBox::from_base64(key.expose()).unwrap());
    let fake = Arc::new(SlowCloudFake(FakeDriver::new()));
    let mut engines = Vec::new();
    for _ in 0..replicas {
        let mut d = s.database.clone();
        d.max_connections = pool_size(workers);
        let conn = paved::db::connect(&d).await.unwrap();
        engines.push(Arc::new(Engine::new(
            conn,
            fake.clone(),
            secrets.clone(),
            s.engine.clone(),
            paved::jobs::Wake::default(),
        )));
    }
    let watcher = paved::db::connect(&s.database).await.unwrap();
    let count = |watcher: sea_orm::DatabaseConnection| async move {
        let row = watcher
            .query_one_raw(Statement::from_string(
                watcher.get_database_backend(),
                "SELECT count(*) FILTER (WHERE status = 'succeeded') AS ok, count(*) FILTER (WHERE status = 'failed') AS failed FROM requests",
            ))
            .await
            .unwrap()
            .unwrap();
        let ok: i64 = row.try_get("", "ok").unwrap();
        let failed: i64 = row.try_get("", "failed").unwrap();
        (ok, failed)
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (r, engine) in engines.iter().enumerate() {
        for w in 0..workers {
            tasks.push(tokio::spawn(
                engine.clone().work(format!("r{r}w{w}"), stop_rx.clone()),
            ));
        }
    }
    let failed = loop {
        let (ok, failed) = count(watcher.clone()).await;
        if (ok + failed) as usize >= orders {
            break failed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = start.elapsed();
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }

    let mut applies: BTreeMap<String, usize> = BTreeMap::new();
    for (op, identity) in fake.0.calls() {
        if op == Op::Apply {
            *applies.entry(identity).or_default() += 1;
        }
    }
    watcher.close().await.ok();
    for e in engines {
        drop(e);
    }
    drop(db);
    Run {
        orders,
        took,
        applied: applies.len(),
        applied_twice: applies.values().filter(|&&n| n > 1).count(),
        failed,
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!(
        "scale-out benchmark: a fake slow cloud (SlowCloudFake: apply takes {} ms), redis-cache orders queued first, then worked off by workers × replicas on one PostgreSQL (pool per replica: workers + 2)",
        APPLY.as_millis()
    );
    let mut one_worker_rate = None;
    for (replicas, workers) in [(1, 1), (1, 2), (1, 4), (1, 8), (1, 16), (1, 32), (2, 32)] {
        let concurrency = replicas * workers;
        let r = run(replicas, workers).await;
        let rate = r.orders as f64 / r.took.as_secs_f64();
        let base = *one_worker_rate.get_or_insert(rate);
        let ideal = base * concurrency as f64;
        println!(
            "{replicas} replica(s) x {workers:>2} workers = {concurrency:>2} concurrent jobs: {:>4} orders in {:>6.2} s, {:>6.1} jobs/s; ideal {:>6.1} jobs/s, {:.2} of ideal; applied once each: {} of {} ({} applied more than once, {} failed)",
            r.orders,
            r.took.as_secs_f64(),
            rate,
            ideal,
            rate / ideal,
            r.applied - r.applied_twice,
            r.orders,
            r.applied_twice,
            r.failed,
        );
        if concurrency == 1 {
            println!(
                "  (1 worker: {:.1} ms per order, {:.1} ms of it paved's own around the {} ms apply)",
                1e3 / rate,
                1e3 / rate - APPLY.as_secs_f64() * 1e3,
                APPLY.as_millis()
            );
        }
    }
    println!();
    println!("target: >= 0.90 of ideal up to 64 concurrent jobs, each request provisioned once");
}
