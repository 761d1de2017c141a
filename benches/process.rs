//! `cargo bench --bench process`: `paved serve` as an operator runs it (the release binary, on
//! its embedded SQLite default): time from exec to readiness, resident memory idle, and after
//! 5,000 estimate calls from 16 clients.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut startups = Vec::new();
    let mut idle = 0.0;
    let mut loaded = (0.0, 0.0);
    for run in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let t = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_paved"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("serve")
            .env("PAVED_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "PAVED_DATABASE__URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
            )
            .env(
                "PAVED_SECRETS__KEY",
                paved::vocab::secret_box::SecretBox::generate_key(),
            )
            .env("PAVED_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ready = format!("http://127.0.0.1:{port}/.backstage/health/v1/readiness");
        loop {
            if let Ok(r) = client.get(&ready).send().await
                && r.status() == 200
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        startups.push(t.elapsed());
        if run == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            idle = common::memory_mib(child.id()).0;
            let url = format!(
                "http://127.0.0.1:{port}/api/paved/.backstage/actions/v1/actions/paved:estimate/invoke"
            );
            let body = json!({"offering": "postgres-database", "values": {"name": "orders", "environment": "staging", "size": "medium", "owner": "team-a", "cost_center": "ENG-1234"}});
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let (client, url, body) = (client.clone(), url.clone(), body.clone());
                    tokio::spawn(async move {
                        for _ in 0..5000 / 16 {
                            let r: serde_json::Value = client
                                .post(&url)
                                .json(&body)
                                .send()
                                .await
                                .unwrap()
                                .json()
                                .await
                                .unwrap();
                            assert_eq!(r["output"]["valid"], true, "{r}");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            loaded = common::memory_mib(child.id());
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let [mean, p50, _, _] = common::percentiles(&mut startups);
    println!(
        "paved serve (release, embedded SQLite, fresh database each time: migrations included)"
    );
    println!(
        "start-up to readiness: mean {:.0} ms, p50 {:.0} ms ({} runs)",
        common::ms(mean),
        common::ms(p50),
        startups.len()
    );
    println!(
        "resident memory: idle {idle:.1} MiB; after 5,000 estimates {:.1} MiB (peak {:.1} MiB)",
        loaded.0, loaded.1
    );
}
