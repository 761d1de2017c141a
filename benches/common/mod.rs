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

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds_self() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / clock_ticks()
}

/// CPU seconds (user + system) of the processes whose command line contains `needle`: the
/// PostgreSQL backends serving one database (`postgres: postgres <db> ...`), `redis-server`.
/// A backend that has exited is no longer counted: read it while the connections are open.
pub fn cpu_seconds_of(needle: &str) -> f64 {
    let mut total = 0.0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = e.path();
        let cmd = std::fs::read(path.join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmd).contains(needle) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        total += (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / clock_ticks();
    }
    total
}

/// CPU seconds (user + system, every core) the whole machine has used.
pub fn cpu_seconds_machine() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or("");
    let f: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system (idle iowait) irq softirq steal
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).unwrap_or(&0.0))
        .sum();
    busy / clock_ticks()
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    100.0
}

/// What one PostgreSQL database did, from its cumulative statistics: transactions (each
/// statement outside a transaction is one) and, per table, rows written and scans.
pub struct PgActivity {
    pub commits: i64,
    /// (table, inserted, updated, deleted, index scans, sequential scans), busiest first.
    pub tables: Vec<(String, i64, i64, i64, i64, i64)>,
}

/// Reads [`PgActivity`] of `db_url`'s database. Call it after the connections that did the
/// work have closed: a backend reports its counts when it ends (or at most a second later).
pub async fn pg_activity(db_url: &str) -> PgActivity {
    use sea_orm::{ConnectionTrait, Statement};
    let mut d = Settings::default().database;
    d.url = db_url.to_owned();
    let conn = paved::db::connect(&d).await.unwrap();
    let b = conn.get_database_backend();
    let row = conn
        .query_one_raw(Statement::from_string(
            b,
            "SELECT xact_commit::bigint AS c FROM pg_stat_database WHERE datname = current_database()",
        ))
        .await
        .unwrap()
        .unwrap();
    let commits: i64 = row.try_get("", "c").unwrap();
    let rows = conn
        .query_all_raw(Statement::from_string(
            b,
            "SELECT relname::text AS t, n_tup_ins AS i, n_tup_upd AS u, n_tup_del AS d, \
             coalesce(idx_scan, 0) AS x, seq_scan AS s FROM pg_stat_user_tables \
             WHERE n_tup_ins + n_tup_upd + n_tup_del + coalesce(idx_scan, 0) + seq_scan > 0 \
             ORDER BY n_tup_ins + n_tup_upd + n_tup_del + coalesce(idx_scan, 0) + seq_scan DESC",
        ))
        .await
        .unwrap();
    let tables = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "t").unwrap(),
                r.try_get("", "i").unwrap(),
                r.try_get("", "u").unwrap(),
                r.try_get("", "d").unwrap(),
                r.try_get("", "x").unwrap(),
                r.try_get("", "s").unwrap(),
            )
        })
        .collect();
    conn.close().await.ok();
    PgActivity { commits, tables }
}

/// Removes the Redis ACL users whose names start with `prefix` (and paved's ownership markers
/// of them): what a bench's orders created.
pub async fn cleanup_redis(prefix: &str) {
    use redis::AsyncCommands;
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
