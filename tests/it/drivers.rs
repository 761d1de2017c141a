//! Drivers against the real PostgreSQL and Redis on this machine. Every test uses its own
//! uniquely named database/user/prefix and removes it.

use crate::common;

use std::collections::BTreeMap;

use paved::provisioning::drivers::{
    DriverError, generate_password,
    postgres::{Ident, PostgresDriver, quote_ident, quote_literal},
    redis::{RedisDriver, RedisSpec},
};
use sea_orm::sqlx::{self, Connection, Row, postgres::PgConnection};
use serde_json::json;

/// Through a `LOGIN CREATEDB CREATEROLE` admin, as in production: no superuser needed.
fn limited_driver(admin: &common::admin::LimitedAdmin) -> PostgresDriver {
    PostgresDriver::new(admin.targets(), vec!["pgcrypto".into(), "citext".into()])
}

/// The superuser, for arranging foreign objects and cleaning up.
fn pg_driver() -> PostgresDriver {
    let url = common::postgres_admin_url();
    let targets = ["dev", "staging", "prod"]
        .iter()
        .map(|e| (e.to_string(), url.clone()))
        .collect();
    PostgresDriver::new(targets, vec!["pgcrypto".into(), "citext".into()])
}

/// Destroys what a test provisioned even when the test fails half-way.
enum Cleanup {
    Postgres(paved::provisioning::drivers::postgres::PostgresSpec, String),
    Redis(RedisSpec, String),
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let rt = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        std::thread::scope(|s| {
            s.spawn(|| match self {
                Cleanup::Postgres(spec, tag) => {
                    rt().block_on(async { pg_driver().destroy(spec, tag).await.ok() })
                }
                Cleanup::Redis(spec, tag) => {
                    rt().block_on(async { redis_driver().destroy(spec, tag).await.ok() })
                }
            });
        });
    }
}

/// The ownership tag these tests provision under.
const TAG: &str = "paved:test";

fn unique(prefix: &str) -> String {
    crate::common::kit::unique_with(&format!("{prefix}_"))
}

async fn connect_as(
    user: &str,
    password: &str,
    database: &str,
) -> Result<PgConnection, sqlx::Error> {
    let base = common::postgres_admin_url();
    let hostpart = base.split('@').nth(1).unwrap().rsplit_once('/').unwrap().0;
    PgConnection::connect(&format!(
        "postgres://{user}:{password}@{hostpart}/{database}"
    ))
    .await
}

#[tokio::test]
async fn postgres_create_connect_observe_destroy() {
    let admin = common::admin::LimitedAdmin::create().await;
    let driver = limited_driver(&admin);
    let name = unique("paved_drv");
    let spec = driver
        .parse(&json!({"database": name, "environment": "dev", "connection_limit": 7, "extensions": ["pgcrypto"]}))
        .unwrap();
    let _cleanup = Cleanup::Postgres(spec.clone(), TAG.into());
    let password = generate_password();
    let applied = driver.apply(&spec, &password, TAG).await.unwrap();
    assert_eq!(applied.outputs["database"], name.as_str());
    assert_eq!(applied.outputs["username"], format!("{name}_owner"));
    assert!(
        !applied.outputs.to_string().contains(&password),
        "outputs never carry the password"
    );

    // The returned credentials connect and can create a table; the extension is there.
    let mut conn = connect_as(&format!("{name}_owner"), &password, &name)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE orders (id serial primary key, note text); INSERT INTO orders (note) VALUES ('x')")
        .execute(&mut conn)
        .await
        .unwrap();
    let digest: String = sqlx::query("SELECT encode(digest('a', 'sha256'), 'hex') AS d")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("d");
    assert_eq!(digest.len(), 64);

    let seen = driver.observe(&spec).await.unwrap();
    assert!(seen.exists);
    assert_eq!(seen.state["owner"], format!("{name}_owner"));
    assert_eq!(seen.state["connection_limit"], 7);
    assert!(seen.state["size_bytes"].as_i64().unwrap() > 0);
    let usage = driver.usage(&spec).await.unwrap();
    assert!(usage.active >= 1, "our open connection counts: {usage:?}");
    assert!(usage.activity_counter > 0);

    // Re-running after a crash converges: same database, new password works.
    let again = generate_password();
    driver.apply(&spec, &again, TAG).await.unwrap();
    assert!(driver.observe(&spec).await.unwrap().exists);

    // Destroy ends our connection, drops database and role; twice is fine.
    driver.destroy(&spec, TAG).await.unwrap();
    driver.destroy(&spec, TAG).await.unwrap();
    assert!(!driver.observe(&spec).await.unwrap().exists);
    assert!(
        connect_as(&format!("{name}_owner"), &again, "postgres")
            .await
            .is_err(),
        "the role is gone"
    );
    drop(conn);
}

#[tokio::test]
async fn postgres_two_workers_applying_at_once_make_one_database() {
    let admin = common::admin::LimitedAdmin::create().await;
    let driver = std::sync::Arc::new(limited_driver(&admin));
    let name = unique("paved_race");
    let spec = driver
        .parse(&json!({"database": name, "environment": "staging"}))
        .unwrap();
    let _cleanup = Cleanup::Postgres(spec.clone(), TAG.into());
    let password = generate_password();
    let (a, b) = tokio::join!(
        driver.apply(&spec, &password, TAG),
        driver.apply(&spec, &password, TAG)
    );
    a.unwrap();
    b.unwrap();
    assert!(driver.observe(&spec).await.unwrap().exists);
    driver.destroy(&spec, TAG).await.unwrap();
}

#[tokio::test]
async fn postgres_never_takes_over_what_it_did_not_create() {
    let limited = common::admin::LimitedAdmin::create().await;
    let driver = limited_driver(&limited);
    let name = unique("paved_foreign");
    // Someone else's database and role with the names paved would use.
    let mut admin = PgConnection::connect(&common::postgres_admin_url())
        .await
        .unwrap();
    for stmt in [
        format!("CREATE ROLE \"{name}_owner\""),
        format!("CREATE DATABASE \"{name}\" OWNER \"{name}_owner\""),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let spec = driver
        .parse(&json!({"database": name, "environment": "dev"}))
        .unwrap();
    let err = driver
        .apply(&spec, &generate_password(), TAG)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DriverError::Permanent(ref m) if m.contains("is not this resource's")),
        "{err:?}"
    );
    // Not this resource's to drop: destroying succeeds and leaves it alone.
    driver.destroy(&spec, TAG).await.unwrap();
    assert!(driver.observe(&spec).await.unwrap().exists, "still there");
    assert_eq!(
        driver.observe(&spec).await.unwrap().state["role"]["exists"],
        true,
        "their role too"
    );
    // And a resource cannot take over another resource's database either.
    let other = unique("paved_mine");
    let mine = driver
        .parse(&json!({"database": other, "environment": "dev"}))
        .unwrap();
    let _cleanup = Cleanup::Postgres(mine.clone(), TAG.into());
    driver
        .apply(&mine, &generate_password(), TAG)
        .await
        .unwrap();
    assert!(
        driver
            .apply(&mine, &generate_password(), "paved:resource:someone-else")
            .await
            .is_err()
    );
    for stmt in [
        format!("DROP DATABASE \"{name}\""),
        format!("DROP ROLE \"{name}_owner\""),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// A name colliding with a database paved does not own (here the superuser's, with no role
/// of the resource's name): the create fails before anything is made, so no role of paved is
/// left behind, and destroying the resource leaves the foreign database alone.
#[tokio::test]
async fn postgres_a_colliding_create_leaves_nothing_behind() {
    let limited = common::admin::LimitedAdmin::create().await;
    let driver = limited_driver(&limited);
    let name = unique("paved_collide");
    let mut su = PgConnection::connect(&common::postgres_admin_url())
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut su)
        .await
        .unwrap();
    let spec = driver
        .parse(&json!({"database": name, "environment": "dev"}))
        .unwrap();
    let _cleanup = Cleanup::Postgres(spec.clone(), TAG.into());
    let err = driver
        .apply(&spec, &generate_password(), TAG)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not this resource's"), "{err}");
    let seen = driver.observe(&spec).await.unwrap();
    assert_eq!(seen.state["role"]["exists"], false, "no role was created");
    assert_eq!(seen.state["owner"], "postgres");
    driver.destroy(&spec, TAG).await.unwrap();
    assert!(driver.observe(&spec).await.unwrap().exists, "theirs stays");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\"")))
        .execute(&mut su)
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_never_takes_over_a_user_it_did_not_create() {
    let driver = redis_driver();
    let prefix = unique("paved-foreign").replace('_', "-");
    let spec = RedisSpec::parse(&json!({"key_prefix": prefix, "environment": "dev", "commands": "+@read", "evict_keys_on_delete": true})).unwrap();
    let url =
        std::env::var("PAVED_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut admin = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&spec.user)
        .arg("on")
        .arg(">theirs")
        .arg("~*")
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:theirs"))
        .arg("1")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(
        driver
            .apply(&spec, &generate_password(), TAG)
            .await
            .unwrap_err()
            .to_string()
            .contains("not this resource's")
    );
    driver.destroy(&spec, TAG).await.unwrap();
    let still: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}:theirs"))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(still.as_deref(), Some("1"), "their keys survive");
    assert!(
        driver.observe(&spec).await.unwrap().exists,
        "their user survives"
    );
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&spec.user)
        .query_async(&mut admin)
        .await
        .map(|_: i64| ())
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:theirs"))
        .query_async(&mut admin)
        .await
        .map(|_: i64| ())
        .unwrap();
}

#[test]
fn postgres_refuses_hostile_names_and_quotes_everything() {
    let allowed = vec!["pgcrypto".to_owned()];
    for bad in [
        "orders\"; DROP DATABASE postgres; --",
        "orders db",
        "Orders",
        "ördner",
        "1orders",
        "orders'",
        "",
        &"a".repeat(64),
        "orders;--",
    ] {
        let err = paved::provisioning::drivers::postgres::PostgresSpec::parse(
            &json!({"database": bad, "environment": "dev"}),
            &allowed,
        )
        .unwrap_err();
        assert!(
            matches!(err, DriverError::Permanent(ref m) if m.starts_with("database:")),
            "{bad:?} accepted: {err:?}"
        );
    }
    let err = paved::provisioning::drivers::postgres::PostgresSpec::parse(
        &json!({"database": "ok", "environment": "dev", "extensions": ["plpython3u"]}),
        &allowed,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
    assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    assert_eq!(quote_literal("it's"), "'it''s'");
    assert_eq!(
        Ident::parse("database", "orders_dev").unwrap().quoted(),
        "\"orders_dev\""
    );
}

fn redis_driver() -> RedisDriver {
    let url =
        std::env::var("PAVED_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    RedisDriver::new(
        ["dev", "staging", "prod"]
            .iter()
            .map(|e| (e.to_string(), url.clone()))
            .collect::<BTreeMap<_, _>>(),
    )
}

async fn redis_as(user: &str, password: &str) -> redis::aio::MultiplexedConnection {
    let url =
        std::env::var("PAVED_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let url = url.replacen("redis://", &format!("redis://{user}:{password}@"), 1);
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn redis_user_is_confined_to_its_prefix() {
    let driver = redis_driver();
    let prefix = unique("paved-drv").replace('_', "-");
    let spec = RedisSpec::parse(&json!({"key_prefix": prefix, "environment": "dev",
        "commands": "+@read +@write +@connection -@dangerous -@admin", "evict_keys_on_delete": true}))
    .unwrap();
    let _cleanup = Cleanup::Redis(spec.clone(), TAG.into());
    let password = generate_password();
    let applied = driver.apply(&spec, &password, TAG).await.unwrap();
    assert_eq!(applied.outputs["username"], format!("paved-{prefix}"));

    let mut c = redis_as(&spec.user, &password).await;
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:a"))
        .arg("1")
        .query_async(&mut c)
        .await
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg(format!("{prefix}:a"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(got, "1");
    let outside: Result<(), _> = redis::cmd("SET")
        .arg("someone-else:a")
        .arg("1")
        .query_async(&mut c)
        .await;
    let e = outside.unwrap_err();
    assert!(
        e.code() == Some("NOPERM") || e.to_string().contains("NOPERM"),
        "writes outside the prefix are refused: {e:?} / {e}"
    );
    let scan: Result<(u64, Vec<String>), _> = redis::cmd("SCAN").arg(0).query_async(&mut c).await;
    assert!(
        scan.is_err(),
        "SCAN ignores key patterns, so tenants may not use it"
    );
    let admin: Result<String, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut c)
        .await;
    assert!(admin.is_err(), "admin commands are refused");

    let seen = driver.observe(&spec).await.unwrap();
    assert!(seen.exists);
    assert!(
        seen.state.to_string().contains(&format!("~{prefix}:*")),
        "{}",
        seen.state
    );
    let usage = driver.usage(&spec).await.unwrap();
    assert_eq!(usage.active, 1, "the tenant's open connection");
    assert_eq!(usage.activity_counter, 1, "one key under the prefix");
    assert!(usage.idle_seconds.is_some(), "{usage:?}");

    driver.destroy(&spec, TAG).await.unwrap();
    assert!(!driver.observe(&spec).await.unwrap().exists);
    let usage = driver.usage(&spec).await.unwrap();
    assert_eq!(
        (usage.active, usage.activity_counter),
        (0, 0),
        "the user's connections are closed and the keys under the prefix are gone"
    );
    let url =
        std::env::var("PAVED_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let login = redis::Client::open(url.replacen(
        "redis://",
        &format!("redis://{}:{password}@", spec.user),
        1,
    ))
    .unwrap()
    .get_multiplexed_async_connection()
    .await;
    assert!(login.is_err(), "the user is gone");
}

#[tokio::test]
async fn redis_read_only_users_cannot_write() {
    let driver = redis_driver();
    let prefix = unique("paved-ro").replace('_', "-");
    let spec = RedisSpec::parse(&json!({"key_prefix": prefix, "environment": "dev", "commands": "+@read +@connection -@dangerous"})).unwrap();
    let _cleanup = Cleanup::Redis(spec.clone(), TAG.into());
    let password = generate_password();
    driver.apply(&spec, &password, TAG).await.unwrap();
    let mut c = redis_as(&spec.user, &password).await;
    let w: Result<(), _> = redis::cmd("SET")
        .arg(format!("{prefix}:a"))
        .arg("1")
        .query_async(&mut c)
        .await;
    assert_eq!(w.unwrap_err().code(), Some("NOPERM"));
    driver.destroy(&spec, TAG).await.unwrap();
}

#[test]
fn redis_refuses_hostile_prefixes_and_rules() {
    for bad in ["a b", "a:*", "A", "x\r\nFLUSHALL", "", "pre fix", "*"] {
        assert!(
            RedisSpec::parse(
                &json!({"key_prefix": bad, "environment": "dev", "commands": "+@read"})
            )
            .is_err(),
            "{bad:?}"
        );
    }
    for bad in ["+@read allkeys", "on", "+@read >pw", "~*", "+flushall"] {
        assert!(
            RedisSpec::parse(&json!({"key_prefix": "ok", "environment": "dev", "commands": bad}))
                .is_err(),
            "{bad:?}"
        );
    }
}

/// On a cluster that checks passwords (SCRAM-SHA-256 over TCP) and logs every DDL statement:
/// paved sends a SCRAM verifier, never the password, so the generated password logs in and
/// appears nowhere in the server's log.
#[tokio::test]
async fn postgres_passwords_are_sent_as_scram_verifiers_and_never_logged() {
    let admin_pw = generate_password();
    let pg = tokio::task::spawn_blocking({
        let pw = admin_pw.clone();
        move || common::servers::PrivatePostgres::start_scram(&pw)
    })
    .await
    .unwrap();
    let driver = PostgresDriver::new([("dev".to_owned(), pg.url("postgres"))].into(), Vec::new());
    let name = unique("paved_scram");
    let spec = driver
        .parse(&json!({"database": name, "environment": "dev"}))
        .unwrap();
    let password = generate_password();
    driver.apply(&spec, &password, TAG).await.unwrap();
    // Applying again (a rerun converges) sends a fresh verifier for the same password.
    driver.apply(&spec, &password, TAG).await.unwrap();

    let url = |pw: &str| format!("postgres://{name}_owner:{pw}@127.0.0.1:{}/{name}", pg.port);
    let mut conn = PgConnection::connect(&url(&password))
        .await
        .expect("the generated password logs in");
    let one: i32 = sqlx::query("SELECT 1 AS one")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("one");
    assert_eq!(one, 1);
    conn.close().await.ok();
    let wrong = PgConnection::connect(&url(&generate_password())).await;
    assert!(wrong.is_err(), "the server really checks the password");

    let stored = pg.psql(
        "postgres",
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{name}_owner'"),
    );
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
    let log = pg.log();
    assert!(log.contains("CREATE ROLE"), "DDL is logged here: {log}");
    assert!(
        !log.contains(&password),
        "the password reached the server's log"
    );
    driver.destroy(&spec, TAG).await.unwrap();
}

/// Another paved session (same admin role) converging the same database: the apply does not
/// wait for it but asks to be retried later; once it is done, the apply goes through.
#[tokio::test]
async fn postgres_a_lock_held_by_another_paved_run_means_retry_later() {
    let limited = common::admin::LimitedAdmin::create().await;
    let driver = limited_driver(&limited);
    let name = unique("paved_busy");
    let spec = driver
        .parse(&json!({"database": name, "environment": "dev"}))
        .unwrap();
    let _cleanup = Cleanup::Postgres(spec.clone(), TAG.into());
    let mut other_run = PgConnection::connect(&limited.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(1885435492, hashtext($1))")
        .bind(&name)
        .execute(&mut other_run)
        .await
        .unwrap();
    let err = driver
        .apply(&spec, &generate_password(), TAG)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DriverError::Transient(ref m) if m.contains("another paved run")),
        "{err:?}"
    );
    assert!(!driver.observe(&spec).await.unwrap().exists, "nothing done");
    other_run.close().await.unwrap();
    driver
        .apply(&spec, &generate_password(), TAG)
        .await
        .unwrap();
    assert!(driver.observe(&spec).await.unwrap().exists);
    driver.destroy(&spec, TAG).await.unwrap();
}
