//! `cargo bench --bench estimate`: `paved:estimate` over HTTP, one client after another, for
//! a team that owns nothing and for teams with hundreds and thousands of resources (each live
//! resource beside a deleted one and a finished order, one in ten expiring within the month,
//! and a few open orders), on SQLite and PostgreSQL. The budget line of an estimate reads the
//! team's spend and open orders; the target is a cost independent of the team's size: each
//! size's mean against the empty team's, in the same run. Prints figures; asserts none.

mod common;

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

const TEAM: &str = "group:default/team-a";
const SIZES: [usize; 3] = [0, 315, 3150];
const CALLS: usize = 300;
/// The target: a team of any size within this ratio of an empty team.
const TARGET_RATIO: f64 = 1.1;

async fn exec(db: &DatabaseConnection, sql: String) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
}

/// Gives `TEAM` `n` more live resources, as many deleted ones and finished orders, and five
/// open orders per 315 resources. Timestamps as paved writes them (RFC 3339).
async fn grow(db: &DatabaseConnection, from: usize, n: usize) {
    let now = chrono::Utc::now();
    let ts = |hours: i64| format!("'{}'", (now + chrono::TimeDelta::hours(hours)).to_rfc3339());
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(200) {
        let mut resources = Vec::new();
        let mut requests = Vec::new();
        for &i in chunk {
            for (id, deleted) in [
                (format!("r{i}"), "NULL".to_owned()),
                (format!("d{i}"), ts(-1)),
            ] {
                let expires = if i % 10 == 0 { ts(72) } else { "NULL".into() };
                resources.push(format!(
                    "('{id}', 'db-{id}', 'postgres-database', '1', 'database', 'prod', '{TEAM}', NULL, NULL, \
                     'ready', '{{}}', '{{}}', 4275, {expires}, 'q{i}', {c}, {c}, {deleted}, 0)",
                    c = ts(-24 * 40)
                ));
            }
            let status = if i % 63 == 0 { "pending" } else { "succeeded" };
            requests.push(format!(
                "('q{i}', 'postgres-database', '1', 'create', '{status}', 'user:default/jane', '{TEAM}', '{{}}', NULL, {c}, {c}, \
                 '{{\"currency\":\"USD\",\"lineItems\":[],\"monthly\":42.75,\"annual\":513.0,\"hourly\":0.0586,\"lifetime\":null,\"recommendations\":[]}}', NULL)",
                c = ts(-24 * 40)
            ));
        }
        exec(
            db,
            format!(
                "INSERT INTO resources (id, entity_name, offering, offering_version, resource_type, \
                 environment, owner, system, component, status, desired, outputs, monthly_cost_cents, \
                 expires_at, request_id, created_at, updated_at, deleted_at, catalog_bucket) VALUES {}",
                resources.join(", ")
            ),
        )
        .await;
        exec(
            db,
            format!(
                "INSERT INTO requests (id, offering, template_version, operation, status, requester, \
                 owner, parameters, spec, created_at, updated_at, estimate, decision) VALUES {}",
                requests.join(", ")
            ),
        )
        .await;
    }
    // As autovacuum leaves a table in use: statistics, and a visibility map for index-only scans.
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        exec(db, "VACUUM ANALYZE resources".into()).await;
        exec(db, "VACUUM ANALYZE requests".into()).await;
    }
}

/// Mean and p50 of `CALLS` estimates, one at a time.
async fn estimates(client: &reqwest::Client, url: &str, body: &Value) -> (Duration, Duration) {
    for _ in 0..CALLS / 10 {
        client.post(url).json(body).send().await.unwrap(); // warm-up
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        let r = client.post(url).json(body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        samples.push(t.elapsed());
    }
    let [mean, p50, _, _] = common::percentiles(&mut samples);
    (mean, p50)
}

async fn run(name: &str, db_url: &str) {
    let mut s = common::settings(db_url);
    s.engine.workers = 0;
    let app = paved::app::Application::build(s).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    while !state.schema_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("{base}/api/paved/.backstage/actions/v1/actions/paved:estimate/invoke");
    let body = json!({"offering": "postgres-database", "values": {"name": "orders", "environment": "staging", "size": "medium", "owner": TEAM, "cost_center": "ENG-1234"}});
    let client = reqwest::Client::new();
    let mut empty = None;
    let mut grown = 0;
    for n in SIZES {
        grow(state.db(), grown, n - grown).await;
        grown = n;
        let probe: Value = client
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(probe["output"]["valid"], true, "{probe}");
        let (mean, p50) = estimates(&client, &url, &body).await;
        // The budget read alone, in process: what of the estimate depends on the team.
        let mut reads = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let t = Instant::now();
            let now = chrono::Utc::now();
            let full_from = paved::cost::full_month_from(now, 730.0);
            std::hint::black_box(
                paved::db::spend::totals_of_team(state.db(), TEAM, now, full_from)
                    .await
                    .unwrap(),
            );
            reads.push(t.elapsed());
        }
        let [read, ..] = common::percentiles(&mut reads);
        let base = *empty.get_or_insert(mean);
        let ratio = mean.as_secs_f64() / base.as_secs_f64();
        println!(
            "{name:<10} team of {n:>5} resources: estimate mean {:>6.2} ms  p50 {:>6.2} ms (budget read {:>5.2} ms)  {ratio:.2}x the empty team's (target ≤ {TARGET_RATIO}x: {:.2} of target); {}",
            common::ms(mean),
            common::ms(p50),
            common::ms(read),
            ratio / TARGET_RATIO,
            probe["output"]["summary"]
        );
    }
    let _ = stop.send(());
    let _ = server.await;
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!(
        "estimate by team size: paved:estimate over HTTP, {CALLS} calls one at a time per size"
    );
    let dir = tempfile::tempdir().unwrap();
    run(
        "SQLite",
        &format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
    )
    .await;
    let pg = common::PgDb::create().await;
    run("PostgreSQL", &pg.url).await;
    pg.drop_now().await;
}
