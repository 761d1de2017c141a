//! `cargo bench --bench http`: invoking `paved:estimate` over HTTP (form validation, rendering,
//! cost, every policy, Backstage's action envelope) under a concurrent loader on loopback,
//! beside two baselines in the same run: a trivial axum handler served by this same binary
//! with the same body (the floor of the HTTP stack), and the same estimate done in-process
//! (the use case the handler calls, `usecases::assess::assess`, by as many tasks on the same
//! runtime, over the same paved and database). Throughput and p50/p99 latency for each, and
//! HTTP / in-process throughput against issue 16's target (≥ 0.6).

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Json, Router, routing::post};
use paved::{api::state::AppState, guardrails::Assessment, usecases::assess::assess};
use serde_json::{Value, json};

const CONCURRENCY: usize = 32;
const SECONDS: u64 = 5;

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `op` from [`CONCURRENCY`] tasks at once: one second of warm-up, then [`SECONDS`].
async fn drive<F, Fut>(op: F) -> Figures
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let run = |until: Instant| {
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let op = op.clone();
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while Instant::now() < until {
                        let t = Instant::now();
                        op().await;
                        samples.push(t.elapsed());
                    }
                    samples
                })
            })
            .collect();
        async move {
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        }
    };
    run(Instant::now() + Duration::from_secs(1)).await; // warm-up: pools, caches
    let start = Instant::now();
    let mut samples = run(start + Duration::from_secs(SECONDS)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let n = samples.len();
    let [_, p50, _, p99] = common::percentiles(&mut samples);
    Figures {
        rps: n as f64 / elapsed,
        p50,
        p99,
    }
}

/// POSTs `body` to `url` from [`CONCURRENCY`] clients sharing one connection pool.
async fn load(url: &str, body: &Value) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let (url, body) = (Arc::<str>::from(url), Arc::new(body.clone()));
    drive(move || {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        async move {
            let r = client.post(&*url).json(&*body).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            r.bytes().await.unwrap();
        }
    })
    .await
}

/// The same estimate without HTTP: what `paved:estimate`'s handler calls, for the caller the
/// middleware finds in a request without a token, on the same state (database, templates,
/// policies, price book).
async fn in_process(state: &AppState, body: &Value) -> Figures {
    let offering = state
        .templates()
        .snapshot()
        .get(body["offering"].as_str().unwrap())
        .expect("the bundled offering");
    let values = Arc::new(body["values"].clone());
    let principal = Arc::new(
        state
            .authenticator()
            .caller(&axum::http::HeaderMap::new())
            .await
            .expect("anonymous callers are let in on loopback"),
    );
    let state = state.clone();
    drive(move || {
        let (state, offering) = (state.clone(), offering.clone());
        let (values, principal) = (values.clone(), principal.clone());
        async move {
            let policies = state.policies();
            let assessment = assess(
                &state.guardrail_inputs(&policies),
                &offering,
                &values,
                &principal,
                None,
                None,
            )
            .await
            .unwrap();
            assert!(matches!(assessment, Assessment::Decided { .. }));
        }
    })
    .await
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<48} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        f.rps,
        common::ms(f.p50),
        common::ms(f.p99)
    );
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let mut s = common::settings(&db);
    s.engine.workers = 0;
    let app = paved::app::Application::build(s).await.unwrap();
    let state = app.state().clone();
    let paved_url = format!(
        "http://{}/api/paved/.backstage/actions/v1/actions/paved:estimate/invoke",
        app.local_addr()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));

    // The floor: parse the same JSON body, answer a small JSON document.
    let trivial = Router::new().route(
        "/invoke",
        post(|Json(_): Json<Value>| async { Json(json!({"output": {"ok": true}})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let floor_url = format!("http://{}/invoke", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, trivial).await.unwrap() });

    let body = json!({"offering": "postgres-database", "values": {"name": "orders", "environment": "staging", "size": "medium", "owner": "group:default/team-a", "cost_center": "ENG-1234"}});
    let client = reqwest::Client::new();
    let ready = paved_url.replace(
        "/api/paved/.backstage/actions/v1/actions/paved:estimate/invoke",
        "/.backstage/health/v1/readiness",
    );
    while client
        .get(&ready)
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probe: Value = client
        .post(&paved_url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // A valid order, so every call runs the whole decision (an invalid one stops at the form).
    assert_eq!(probe["output"]["valid"], true, "{probe}");
    println!("each call: {}", probe["output"]["summary"]);

    println!(
        "HTTP benchmark: {CONCURRENCY} concurrent clients, {SECONDS} s each, loopback, loader in the same process"
    );
    let floor = load(&floor_url, &body).await;
    print("floor: trivial axum JSON handler", &floor);
    let paved = load(&paved_url, &body).await;
    print("paved: POST …/actions/paved:estimate/invoke", &paved);
    let inproc = in_process(&state, &body).await;
    print("in-process: usecases::assess::assess", &inproc);
    println!();
    println!(
        "paved:estimate serves {:.2}x the floor's throughput; p50 {:.1}x, p99 {:.1}x the floor's latency",
        paved.rps / floor.rps,
        paved.p50.as_secs_f64() / floor.p50.as_secs_f64(),
        paved.p99.as_secs_f64() / floor.p99.as_secs_f64()
    );
    println!(
        "HTTP / in-process throughput: {:.2} (target ≥ 0.6: {:.2} of it); p50 {:.1}x the in-process latency",
        paved.rps / inproc.rps,
        paved.rps / inproc.rps / 0.6,
        paved.p50.as_secs_f64() / inproc.p50.as_secs_f64()
    );
    let _ = stop.send(());
    let _ = server.await;
}
