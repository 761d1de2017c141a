//! What the benchmarks share: paved's settings for a run, a throwaway PostgreSQL database,
//! percentiles, and the process's memory. Benchmarks print figures; they assert nothing.
#![allow(dead_code)]

use std::time::Duration;

use paved::{config::Settings, vocab::secret_box::SecretBox};
use sea_orm::sqlx::{self, Connection, postgres::PgConnection};

pub fn admin_url() -> String {
    std::env::var("PAVED_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Settings for an in-process paved on `db_url`, quiet, API on a random port.
pub fn settings(db_url: &str) -> Settings {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.database.url = db_url.to_owned();
    s.templates.dir = root.join("templates");
    s.policies.dir = root.join("policies");
    s.cost.pricebook = root.join("pricing.yaml");
    s.secrets.key = Some(SecretBox::generate_key().into());
    s.log.level = "warn".into();
    s
}

/// A PostgreSQL database for one run, dropped by [`PgDb::drop_now`].
pub struct PgDb {
    pub url: String,
    name: String,
}

impl PgDb {
    pub async fn create() -> Self {
        let name = format!(
            "paved_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut adm = PgConnection::connect(&admin_url())
            .await
            .expect("PostgreSQL is running");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut adm)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
        Self { url, name }
    }

    pub async fn drop_now(self) {
        let mut adm = PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut adm)
        .await
        .unwrap();
    }
}

/// mean, p50, p95, p99 of `v` (sorted here).
pub fn percentiles(v: &mut [Duration]) -> [Duration; 4] {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q) as usize];
    let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
    [mean, p(0.5), p(0.95), p(0.99)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `VmRSS` / `VmHWM` (peak) of a process, in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}
