//! Stopping a replica (SIGTERM in a rolling deploy) without Backstage: its workers stop
//! claiming jobs at once, while the HTTP server still finishes the calls in flight. The
//! restart of two replicas under a real Backstage is in tests/backstage_e2e.rs.

use crate::common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    time::Duration,
};

use common::{Engine as DbEngine, Teardown, TestApp, TestDb, kit::with_workers, settings};
use paved::db::entities::{job, request};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

/// An order whose body is still arriving when the stop comes is stored (the call was in
/// flight), but this replica's idle worker, woken by that very order, leaves its job queued for
/// a replica that stays: a job claimed now would be cut off by the exit, or hold the exit up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_stop_a_worker_claims_no_new_job() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = with_workers(settings(&db.url), 1);
    s.server.shutdown_grace_seconds = 60;
    let app = TestApp::spawn(s).await;
    let addr = app.base.trim_start_matches("http://").to_owned();

    let body = json!({"offering": "redis-cache", "values": {"name": common::kit::unique(), "owner": "team-a", "cost_center": "ENG-1234"}}).to_string();
    let (first, second) = body.split_at(body.len() / 2);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /api/paved/v1/requests HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer alice-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    s.flush().unwrap();

    let stopping = tokio::spawn(app.stop());
    // The stop has begun once the listener is gone (it closes at once; readiness is 503).
    let readiness = format!("http://{addr}/.backstage/health/v1/readiness");
    let probe = reqwest::Client::new();
    let mut began = false;
    for _ in 0..300 {
        match probe.get(&readiness).send().await {
            Ok(r) if r.status() == 200 => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => {
                began = true;
                break;
            }
        }
    }
    assert!(began, "paved kept serving after the stop");

    // The order completes: the call was in flight.
    s.write_all(second.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    assert!(
        status_line.starts_with("HTTP/1.1 201"),
        "the in-flight order was stored: {status_line}"
    );
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let stored: Value = serde_json::from_str(rest.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap();
    let id = stored["id"].as_str().unwrap().to_owned();
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![id.clone()],
    };
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("paved stops once nothing is in flight, long before its 60 s grace")
        .unwrap();

    // paved has exited: what it left in the database is final.
    let mut dbs = paved::config::Settings::default().database;
    dbs.url = db.url.clone();
    let conn = paved::db::connect(&dbs).await.unwrap();
    let jobs = job::Entity::find()
        .filter(job::Column::RequestId.eq(id.clone()))
        .all(&conn)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let j = &jobs[0];
    assert_eq!(
        (j.status.as_str(), j.attempts, j.locked_by.as_deref()),
        ("queued", 0, None),
        "the job waits, unclaimed, for another replica: {j:?}"
    );
    let r = request::Entity::find_by_id(id)
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.status,
        paved::vocab::status::RequestStatus::Pending,
        "nothing of it ran here"
    );
    conn.close().await.ok();
}
