//! What the benchmarks share: the tests' kit (settings, a throwaway PostgreSQL database),
//! percentiles, and the process's memory. Benchmarks print figures; they assert nothing.
#![allow(dead_code)]

use std::time::Duration;

use paved::config::Settings;

/// The integration tests' kit (settings, throwaway databases, private servers): benches and
/// tests set paved up the same way.
#[path = "../../tests/it/common/mod.rs"]
pub mod testkit;

pub fn admin_url() -> String {
    testkit::postgres_admin_url()
}

/// The tests' settings for an in-process paved on `db_url`, quieter: benches measure, they
/// do not read logs.
pub fn settings(db_url: &str) -> Settings {
    let mut s = testkit::settings(db_url);
    s.log.level = "warn".into();
    // paved's own default pool, not the tests' smaller one: benches measure what ships.
    s.database.max_connections = Settings::default().database.max_connections;
    s
}

/// A PostgreSQL database for one run (the tests' [`testkit::TestDb`]), dropped by
/// [`PgDb::drop_now`] or when it goes out of scope.
pub struct PgDb {
    pub url: String,
    db: testkit::TestDb,
}

impl PgDb {
    pub async fn create() -> Self {
        let db = testkit::TestDb::new(testkit::Engine::Postgres).await;
        Self {
            url: db.url.clone(),
            db,
        }
    }

    pub async fn drop_now(self) {
        drop(self.db);
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
