//! `cargo bench --bench provision`: time from ordering a PostgreSQL database over the REST API
//! until paved reports it `succeeded`, beside two floors measured in the same run, order by
//! order (interleaved, so load on the machine falls on all three alike):
//!
//! - the statements paved's PostgreSQL driver sends for that order (`apply`, then `observe` for
//!   the configure step), as the driver itself lists them (`postgres::create_statements`), run
//!   bare with the fewest connections they need: one open connection to the maintenance
//!   database (paved's pools are open after the first order) and one new connection to the new
//!   database (extensions live there), opened with the driver's own connection options;
//! - the bare `CREATE ROLE` + `CREATE DATABASE` (the floor this bench printed before).
//!
//! It also prints where paved's time goes, per step, from the request's recorded steps
//! (`GET /requests/{id}`: `startedAt`/`finishedAt`), and the floor per statement. Needs the
//! local PostgreSQL (`PAVED_TEST_POSTGRES_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres). Prints figures; asserts none. Everything it
//! creates is dropped.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use paved::{
    app::Application,
    config::Settings,
    provisioning::drivers::{
        Drivers, PartSpec,
        postgres::{On, PostgresSpec, Statement, create_statements, scram_verifier},
    },
    vocab::secret_box::SecretBox,
};
use sea_orm::sqlx::{self, ConnectOptions, Connection, postgres::PgConnection};
use serde_json::{Value, json};

const N: usize = 20;

fn stats(name: &str, v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q) as usize];
    println!(
        "{name:<60} mean {:>8.1} ms  p50 {:>8.1} ms  p95 {:>8.1} ms  ({} runs)",
        mean.as_secs_f64() * 1e3,
        p(0.5).as_secs_f64() * 1e3,
        p(0.95).as_secs_f64() * 1e3,
        v.len()
    );
    mean
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A statement as printed: its text with names and literals elided (stable across runs, and no
/// verifier on the screen), shortened.
fn label(st: &Statement) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in st.sql.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                out.push(c);
            }
            Some(_) => {}
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                out.push(c);
                out.push('…');
            }
            None => out.push(c),
        }
    }
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = out.chars().take(62).collect();
    let on = match st.on {
        On::Admin => "admin",
        On::Observer => "observer",
        On::Tenant => "tenant",
        On::TenantReadOnly => "tenant ro",
    };
    if short.len() < out.len() {
        format!("[{on}] {short}…")
    } else {
        format!("[{on}] {short}")
    }
}

/// What one paved order took: the whole of it as the client saw it, and its recorded parts.
struct Order {
    total: Duration,
    post: Duration,
    /// The request as last read (succeeded), with its steps.
    request: Value,
}

fn at(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()?.parse().ok()
}

fn span(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Duration {
    match (from, to) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

async fn order(client: &reqwest::Client, base: &str, name: &str) -> Order {
    let t = Instant::now();
    let r: Value = client
        .post(format!("{base}/requests"))
        .json(&json!({"offering": "postgres-database", "values": {"name": name, "owner": "team-a", "cost_center": "ENG-1234"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let post = t.elapsed();
    let id = r["id"].as_str().expect("request created").to_owned();
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
                return Order {
                    total: t.elapsed(),
                    post,
                    request: r,
                };
            }
            Some("failed") => panic!("{r}"),
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// Runs `statements` bare, as paved's driver would send them, timing each; the connection to
/// the new database is opened (and timed) at its first statement and closed at the end.
async fn run_bare(
    drivers: &Drivers,
    spec: &PostgresSpec,
    statements: &[Statement],
    maintenance: &mut PgConnection,
    per_statement: &mut BTreeMap<(usize, u8), (String, Vec<Duration>)>,
) -> Duration {
    let t = Instant::now();
    let mut tenant: Option<PgConnection> = None;
    let mut record = |i: (usize, u8), l: String, d: Duration| {
        per_statement.entry(i).or_insert((l, Vec::new())).1.push(d);
    };
    for (i, st) in statements.iter().enumerate() {
        let conn = match st.on {
            On::Admin | On::Observer => &mut *maintenance,
            On::Tenant | On::TenantReadOnly => {
                if tenant.is_none() {
                    let c = Instant::now();
                    let opts = drivers
                        .postgres
                        .connect_options(&spec.environment, Some(spec.database.as_str()), false)
                        .unwrap();
                    tenant = Some(opts.connect().await.expect("connects to the new database"));
                    record((i, 0), "connect to the new database".into(), c.elapsed());
                }
                tenant.as_mut().unwrap()
            }
        };
        let s = Instant::now();
        st.run(conn)
            .await
            .expect("the driver's statement runs bare");
        record((i, 1), label(st), s.elapsed());
    }
    if let Some(c) = tenant {
        c.close().await.ok();
    }
    t.elapsed()
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

    let drivers = Drivers::from_settings(&s.drivers);
    println!(
        "paved provisioning benchmark: PostgreSQL database, request -> succeeded ({N} sequential orders after one warm-up, each beside its floors)"
    );

    // One order first: paved's driver opens its pools on first use (so does the floor's
    // maintenance connection, below), and both sides' caches warm up.
    let warm = order(&client, &base, &format!("bench-{run}-warm")).await;
    let mut created = vec![(
        warm.request["spec"]["parts"][0]["spec"].clone(),
        warm.request["resourceId"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )];
    let part_spec = warm.request["spec"]["parts"][0]["spec"].clone();
    let env = part_spec["environment"]
        .as_str()
        .unwrap_or("dev")
        .to_owned();
    let mut maintenance = drivers
        .postgres
        .connect_options(&env, None, false)
        .unwrap()
        .connect()
        .await
        .expect("connects to the target");

    let mut orders = Vec::new();
    let mut bare = Vec::new();
    let mut role_db = Vec::new();
    let mut verifiers = Vec::new();
    let mut per_statement = BTreeMap::new();
    let mut floor_specs = Vec::new();
    for i in 0..=N {
        // Warm-up round (i == 0) for the floors; not counted.
        if i > 0 {
            let o = order(&client, &base, &format!("bench-{run}-{i}")).await;
            created.push((
                o.request["spec"]["parts"][0]["spec"].clone(),
                o.request["resourceId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
            orders.push(o);
        }

        // The driver's own statements for the same part spec, on a database name of the
        // floor's.
        let mut floor_spec = part_spec.clone();
        floor_spec["database"] = json!(format!("bench_floor_{run}_{i}"));
        let spec = match drivers.parse("postgres", &floor_spec).unwrap() {
            PartSpec::Postgres(p) => p,
            _ => unreachable!(),
        };
        let tag = paved::provisioning::engine::owner_tag(&format!("bench-floor-{run}-{i}"));
        let v = Instant::now();
        let verifier = scram_verifier("bench-floor-password-0123456789ab");
        let v = v.elapsed();
        let statements = create_statements(&spec, &verifier, &tag);
        let mut scratch = BTreeMap::new();
        let took = run_bare(
            &drivers,
            &spec,
            &statements,
            &mut maintenance,
            if i > 0 {
                &mut per_statement
            } else {
                &mut scratch
            },
        )
        .await;
        floor_specs.push((spec, tag));

        // Today's floor: the role and the database alone.
        let name = format!("bench_floor_{run}_{i}_rd");
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
        let rd = t.elapsed();
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
        if i > 0 {
            bare.push(took);
            role_db.push(rd);
            verifiers.push(v);
        }
    }
    let statement_count =
        create_statements(&floor_specs[0].0, &scram_verifier("x"), &floor_specs[0].1).len();

    println!(
        "first order (paved opens its pools): {:.1} ms",
        ms(warm.total)
    );
    let role_db_mean = stats("floor: CREATE ROLE + CREATE DATABASE", &role_db);
    let bare_mean = stats(
        &format!("floor: the driver's {statement_count} statements, bare (2 connections)"),
        &bare,
    );
    let paved_times: Vec<Duration> = orders.iter().map(|o| o.total).collect();
    let paved_mean = stats(
        "paved: POST /requests -> succeeded (all steps)",
        &paved_times,
    );
    println!();
    println!(
        "request -> completed: {:.1} ms, {:.2}x the driver's statements bare (target 1.5x), {:.1}x CREATE ROLE + CREATE DATABASE",
        ms(paved_mean),
        paved_mean.as_secs_f64() / bare_mean.as_secs_f64(),
        paved_mean.as_secs_f64() / role_db_mean.as_secs_f64(),
    );

    // Where paved's time goes: the client's POST, then the request's own timestamps.
    println!();
    println!("paved, where the time goes (mean per order, from the recorded steps):");
    let n = orders.len() as u32;
    let mean_of = |f: &dyn Fn(&Order) -> Duration| orders.iter().map(f).sum::<Duration>() / n;
    let post = mean_of(&|o| o.post);
    println!(
        "  POST /requests (guardrails, request + job stored): {:>8.1} ms",
        ms(post)
    );
    let queue = mean_of(&|o| {
        span(
            at(&o.request["createdAt"]),
            at(&o.request["steps"][0]["startedAt"]),
        )
    });
    println!(
        "  created -> first step started (queue, claim):      {:>8.1} ms",
        ms(queue)
    );
    let steps = orders[0].request["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (k, step) in steps.iter().enumerate() {
        let name = step["name"].as_str().unwrap_or("?");
        let took = mean_of(&|o| {
            let s = &o.request["steps"][k];
            span(at(&s["startedAt"]), at(&s["finishedAt"]))
        });
        let attempts: i64 = orders
            .iter()
            .map(|o| o.request["steps"][k]["attempts"].as_i64().unwrap_or(0))
            .sum();
        println!(
            "  step {name:<20} {:>8.1} ms  ({:.2} attempts per order)",
            ms(took),
            attempts as f64 / f64::from(n)
        );
    }
    let between = mean_of(&|o| {
        let s = o.request["steps"].as_array().cloned().unwrap_or_default();
        s.windows(2)
            .map(|w| span(at(&w[0]["finishedAt"]), at(&w[1]["startedAt"])))
            .sum()
    });
    println!(
        "  between steps (engine bookkeeping):                {:>8.1} ms",
        ms(between)
    );
    let completing = mean_of(&|o| {
        let last = o.request["steps"]
            .as_array()
            .and_then(|s| s.last())
            .cloned()
            .unwrap_or(Value::Null);
        span(at(&last["finishedAt"]), at(&o.request["completedAt"]))
    });
    println!(
        "  last step finished -> request completed:           {:>8.1} ms",
        ms(completing)
    );
    let seen = mean_of(&|o| {
        let server = span(at(&o.request["createdAt"]), at(&o.request["completedAt"]));
        o.total.saturating_sub(o.post + server)
    });
    println!(
        "  completed -> client saw it (polling every 2 ms):   {:>8.1} ms",
        ms(seen)
    );

    println!();
    println!("floor, per statement (mean of {N}):");
    for (_, (l, v)) in per_statement.iter() {
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        println!("  {l:<80} {:>7.2} ms", ms(mean));
    }
    let verifier = verifiers.iter().sum::<Duration>() / verifiers.len() as u32;
    println!(
        "  (not in the floor) SCRAM verifier for the password, client CPU: {:.2} ms",
        ms(verifier)
    );

    for (spec, tag) in &floor_specs {
        drivers
            .destroy(&PartSpec::Postgres(spec.clone()), tag)
            .await
            .ok();
    }
    for (spec, resource_id) in created {
        if let Ok(p) = drivers.parse("postgres", &spec) {
            drivers
                .destroy(&p, &paved::provisioning::engine::owner_tag(&resource_id))
                .await
                .ok();
        }
    }
    maintenance.close().await.ok();
    let _ = stop.send(());
    let _ = server.await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{meta_db}\" WITH (FORCE)"
    )))
    .execute(&mut adm)
    .await
    .unwrap();
}
