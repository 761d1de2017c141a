//! Tenants attacking paved with nothing but the credentials paved hands out, against this
//! machine's PostgreSQL and Redis: hijacking paved's catalog reads, stalling other teams'
//! orders, reaching databases or Redis data that are not theirs, and keeping logins alive
//! after a rename or deletion. Each attack must fail while legitimate use keeps working.
//!
//! paved provisions PostgreSQL here through a `LOGIN CREATEDB CREATEROLE` admin made by the
//! test (the production set-up), never the superuser.

use crate::common;

use std::collections::BTreeSet;

use common::{
    Engine as DbEngine, Teardown, TestApp, TestDb,
    admin::{LimitedAdmin, url_as},
    kit::{call, db_of, eventually, order_as, unique, wait_final, with_workers},
    settings,
};
use paved::{config::Settings, provisioning::drivers::Drivers};
use sea_orm::sqlx::{self, AssertSqlSafe, Connection, Row, postgres::PgConnection};
use serde_json::{Value, json};

/// paved with two workers provisioning through a fresh non-superuser admin.
async fn spawn(
    engine: DbEngine,
    tweak: impl FnOnce(&mut Settings),
) -> (TestDb, LimitedAdmin, TestApp, Settings) {
    let db = TestDb::new(engine).await;
    let admin = LimitedAdmin::create().await;
    let mut s = with_workers(settings(&db.url), 2);
    admin.apply_to(&mut s);
    tweak(&mut s);
    let app = TestApp::spawn(s.clone()).await;
    (db, admin, app, s)
}

fn token(team: &str) -> &'static str {
    match team {
        "team-a" => "alice-token",
        "team-b" => "mallory-token",
        other => panic!("no caller for {other}"),
    }
}

fn pg_values(name: &str, team: &str) -> Value {
    json!({"name": name, "environment": "dev", "size": "small", "owner": team, "cost_center": "ENG-1234"})
}

fn cache_values(name: &str, team: &str, evict: bool) -> Value {
    json!({"name": name, "environment": "dev", "owner": team, "cost_center": "ENG-1234", "evict_keys": evict})
}

/// Orders for `team` and waits for the request's end; returns (request, resource id).
async fn ordered(app: &TestApp, team: &str, offering: &str, values: Value) -> (Value, String) {
    let (status, body) = order_as(app, token(team), offering, values).await;
    assert_eq!(status, 201, "{body}");
    let done = wait_final(app, body["id"].as_str().unwrap()).await;
    let rid = done["resourceId"].as_str().unwrap_or_default().to_owned();
    (done, rid)
}

async fn credentials(app: &TestApp, team: &str, rid: &str) -> (u16, Value) {
    call(
        app,
        "GET",
        &format!("/resources/{rid}/credentials"),
        Some(token(team)),
        None,
    )
    .await
}

/// Starts a request through the API as `team` and waits for it; returns the final request.
async fn requested(
    app: &TestApp,
    team: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let (status, r) = call(app, method, path, Some(token(team)), body).await;
    assert_eq!(status, 202, "{method} {path}: {r}");
    wait_final(app, r["id"].as_str().unwrap()).await
}

/// The superuser on `database`, as itself even where the database's settings say otherwise
/// (one test's tenant sets a default role on its database).
async fn superuser(database: &str) -> PgConnection {
    use sea_orm::sqlx::ConnectOptions;
    url_as("postgres", None, database)
        .parse::<sea_orm::sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .options([("role", "none")])
        .connect()
        .await
        .unwrap()
}

async fn run(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// What carries resource `rid`'s tag on the targets: PostgreSQL roles and databases, Redis
/// users (their ownership markers, and whether the user itself exists).
async fn tagged(rid: &str) -> BTreeSet<String> {
    let tag = paved::provisioning::engine::owner_tag(rid);
    let mut su = superuser("postgres").await;
    let mut out = BTreeSet::new();
    for r in sqlx::query("SELECT 'role ' || rolname AS o FROM pg_roles WHERE shobj_description(oid, 'pg_authid') = $1 UNION ALL SELECT 'database ' || datname FROM pg_database WHERE shobj_description(oid, 'pg_database') = $1")
        .bind(&tag)
        .fetch_all(&mut su)
        .await
        .unwrap()
    {
        out.insert(r.get::<String, _>("o"));
    }
    su.close().await.ok();
    let mut r = redis_admin(0).await;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("__paved_owner__:*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut r)
            .await
            .unwrap();
        for k in keys {
            let v: Option<String> = redis::cmd("GET").arg(&k).query_async(&mut r).await.unwrap();
            if v.as_deref() == Some(tag.as_str()) {
                out.insert(format!("redis marker {}", &k["__paved_owner__:".len()..]));
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out
}

async fn redis_user_exists(user: &str) -> bool {
    let v: redis::Value = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(user)
        .query_async(&mut redis_admin(0).await)
        .await
        .unwrap();
    v != redis::Value::Nil
}

fn redis_url() -> String {
    std::env::var("PAVED_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis_admin(db: i64) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("{}/{db}", redis_url().trim_end_matches('/')))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Removes the given keys (database, key) however the test ends.
struct RedisKeys(Vec<(i64, String)>);

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let keys = std::mem::take(&mut self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for (db, k) in keys {
                        let _: Result<i64, _> = redis::cmd("DEL")
                            .arg(k)
                            .query_async(&mut redis_admin(db).await)
                            .await;
                    }
                });
            });
        });
    }
}

/// Deletes an ACL user the test made as "someone else", however the test ends.
struct ForeignRedisUser(String);

impl Drop for ForeignRedisUser {
    fn drop(&mut self) {
        let user = self.0.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let _: Result<i64, _> = redis::cmd("ACL")
                        .arg("DELUSER")
                        .arg(user)
                        .query_async(&mut redis_admin(0).await)
                        .await;
                })
        })
        .join();
    }
}

/// Drops a database the test made as "someone else", however the test ends.
struct ForeignDatabase(String);

impl Drop for ForeignDatabase {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut su = superuser("postgres").await;
                    let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut su)
                    .await;
                })
        })
        .join();
    }
}

fn is_noperm(r: &Result<redis::Value, redis::RedisError>) -> bool {
    matches!(r, Err(e) if e.code() == Some("NOPERM") || e.to_string().contains("NOPERM"))
}

/// The owner role of a tenant database turns every name paved might resolve in it into its
/// own: a schema first on the database's and role's search_path, with a view called
/// `pg_extension` whose rows come from a function telling who ran it. paved's configure step,
/// on-demand drift check, scheduled scan, usage sampling and update read the real catalog,
/// never run the function, and report the real state.
#[tokio::test]
async fn a_search_path_hijack_runs_nothing_and_fools_no_check() {
    let (db, _admin, app, s) = spawn(DbEngine::Sqlite, |_| {}).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let n = unique();
    let (done, rid) = ordered(&app, "team-a", "postgres-database", pg_values(&n, "team-a")).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let dbname = format!("{n}_dev");
    let (_, c) = credentials(&app, "team-a", &rid).await;
    let url = c["database"]["url"].as_str().unwrap().to_owned();
    // Real drift for the checks to find (paved's admin owns the extension, so an operator
    // drops it), which the tenant's trap tries to hide.
    let mut su = superuser(&dbname).await;
    run(&mut su, "DROP EXTENSION pgcrypto").await;
    su.close().await.ok();
    let mut tenant = PgConnection::connect(&url).await.unwrap();
    run(
        &mut tenant,
        &format!(
            "CREATE SCHEMA trap; \
             CREATE FUNCTION trap.spy() RETURNS SETOF name LANGUAGE sql AS \
               $$ SELECT ('ran as ' || current_user)::name UNION ALL SELECT 'pgcrypto'::name $$; \
             CREATE VIEW trap.pg_extension AS SELECT s AS extname, 0::oid AS extnamespace FROM trap.spy() s; \
             CREATE FUNCTION trap.hashtext(text) RETURNS int LANGUAGE sql AS $$ SELECT 0 $$; \
             ALTER DATABASE \"{dbname}\" SET search_path = trap, pg_catalog, public; \
             ALTER DATABASE \"{dbname}\" SET default_transaction_read_only = on; \
             ALTER ROLE CURRENT_USER SET search_path = trap, pg_catalog, public"
        ),
    )
    .await;
    // The trap is real: a session that trusts the database's settings reads the tenant's view.
    let mut naive = PgConnection::connect(&url).await.unwrap();
    let fooled: Vec<String> = sqlx::query("SELECT extname::text AS e FROM pg_extension")
        .fetch_all(&mut naive)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("e"))
        .collect();
    assert!(
        fooled.iter().any(|e| e.starts_with("ran as ")),
        "{fooled:?}"
    );
    naive.close().await.ok();
    // Ownership tags of roles are out of the tenant's reach.
    let comment = sqlx::raw_sql("COMMENT ON ROLE CURRENT_USER IS 'mine now'")
        .execute(&mut tenant)
        .await;
    assert!(comment.is_err(), "a tenant cannot re-tag its role");

    // On-demand drift check: the real state (pgcrypto gone), nothing of the trap's.
    let (status, report) = call(
        &app,
        "POST",
        &format!("/resources/{rid}/drift/check"),
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert!(!report.to_string().contains("ran as"), "{report}");
    let ext = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "extensions")
        .unwrap_or_else(|| panic!("the dropped extension is found: {report}"));
    assert_eq!(ext["expected"], json!(["pgcrypto"]));
    assert_eq!(ext["actual"], json!([]), "{report}");

    // The scheduled scan and usage sampling run the same driver code.
    let conn = db_of(&db.url).await;
    let drivers = Drivers::from_settings(&s.drivers);
    let now = chrono::Utc::now();
    paved::day2::drift::scan(
        &conn,
        &drivers,
        &paved::notifications::Notifier::disabled(),
        now,
    )
    .await
    .unwrap();
    paved::day2::usage::sample(&conn, &drivers, now)
        .await
        .unwrap();
    let (_, scanned) = call(
        &app,
        "GET",
        &format!("/resources/{rid}/drift"),
        Some("alice-token"),
        None,
    )
    .await;
    assert!(!scanned.to_string().contains("ran as"), "{scanned}");
    assert_eq!(scanned["status"], "detected", "{scanned}");

    // An update (the drift revert) re-installs the extension where it belongs (the
    // database's read-only default is the tenant's, not paved's) and its configure step logs
    // the real state.
    let updated = requested(
        &app,
        "team-a",
        "POST",
        &format!("/resources/{rid}/drift/revert"),
        None,
    )
    .await;
    assert_eq!(updated["status"], "succeeded", "{updated}");
    let (_, logs) = call(
        &app,
        "GET",
        &format!("/requests/{}/logs", updated["id"].as_str().unwrap()),
        Some("alice-token"),
        None,
    )
    .await;
    assert!(!logs.to_string().contains("ran as"), "{logs}");
    let mut su = superuser(&dbname).await;
    let schema: String = sqlx::query("SELECT n.nspname::text AS s FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto'")
        .fetch_one(&mut su)
        .await
        .unwrap()
        .get("s");
    assert_eq!(schema, "public");
    su.close().await.ok();
    let (_, clean) = call(
        &app,
        "POST",
        &format!("/resources/{rid}/drift/check"),
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(clean["status"], "none", "{clean}");
    // Legitimate use goes on: the tenant uses the extension.
    run(&mut tenant, "SELECT public.digest('a', 'sha256')").await;

    // The tenant re-tags its database as someone else's: deletion still removes it (the
    // owner role, which only admins can tag, decides), and the role with it.
    run(
        &mut tenant,
        &format!("COMMENT ON DATABASE \"{dbname}\" IS 'paved:resource:someone-else'"),
    )
    .await;
    tenant.close().await.ok();
    // A session kept open elsewhere (the maintenance database is open to PUBLIC here) does
    // not outlive the deletion either.
    let (user, pw) = (
        c["database"]["username"].as_str().unwrap(),
        c["database"]["password"].as_str().unwrap(),
    );
    let mut lingering = PgConnection::connect(&url_as(user, Some(pw), "postgres"))
        .await
        .unwrap();
    let deleted = requested(&app, "team-a", "DELETE", &format!("/resources/{rid}"), None).await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    let after = sqlx::raw_sql("SELECT 1").execute(&mut lingering).await;
    assert!(after.is_err(), "the deleted role's session was ended");
    let mut su = superuser("postgres").await;
    let left: i64 = sqlx::query("SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) + (SELECT count(*) FROM pg_roles WHERE rolname = $2) AS n")
        .bind(&dbname)
        .bind(format!("{dbname}_owner"))
        .fetch_one(&mut su)
        .await
        .unwrap()
        .get("n");
    assert_eq!(left, 0, "database and role are gone");
    assert!(tagged(&rid).await.is_empty());
}

/// A tenant holds paved's advisory locks for another team's database name (the old single-key
/// form and the current two-key one) in the maintenance database every role may connect to,
/// and locks its own database: the other team's order goes through; only the tenant's own
/// update waits (retried, without holding a worker) until it lets go.
#[tokio::test]
async fn a_tenant_holding_locks_delays_only_its_own_resource() {
    let (db, _admin, app, _) = spawn(DbEngine::Sqlite, |s| {
        s.drivers.postgres.lock_timeout_ms = 200;
        s.engine.retry_base_ms = 50;
        s.engine.retry_max_seconds = 1;
        s.engine.max_attempts = 10_000;
    })
    .await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let (a, b) = (unique(), unique());
    let (done, rid_a) = ordered(&app, "team-a", "postgres-database", pg_values(&a, "team-a")).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, c) = credentials(&app, "team-a", &rid_a).await;
    let user = c["database"]["username"].as_str().unwrap().to_owned();
    let password = c["database"]["password"].as_str().unwrap().to_owned();

    // PUBLIC may connect to the maintenance database on a default cluster (paved warns).
    let mut squatter = PgConnection::connect(&url_as(&user, Some(&password), "postgres"))
        .await
        .expect("the shared cluster lets every role into its maintenance database");
    let victim = format!("{b}_dev");
    for sql in [
        "SELECT pg_advisory_lock(hashtext($1))",
        "SELECT pg_advisory_lock(1885435492, hashtext($1))",
    ] {
        sqlx::query(sql)
            .bind(&victim)
            .execute(&mut squatter)
            .await
            .unwrap();
    }
    let mut own = PgConnection::connect(c["database"]["url"].as_str().unwrap())
        .await
        .unwrap();
    run(
        &mut own,
        &format!("BEGIN; COMMENT ON DATABASE \"{a}_dev\" IS 'busy'"),
    )
    .await;

    let (other, rid_b) =
        ordered(&app, "team-b", "postgres-database", pg_values(&b, "team-b")).await;
    assert_eq!(
        other["status"], "succeeded",
        "another team's order is not stalled: {other}"
    );
    let (_, cb) = credentials(&app, "team-b", &rid_b).await;
    PgConnection::connect(cb["database"]["url"].as_str().unwrap())
        .await
        .expect("their database works")
        .close()
        .await
        .ok();

    // The tenant's own update waits for its lock, retried between attempts.
    let (status, upd) = call(
        &app,
        "PATCH",
        &format!("/resources/{rid_a}"),
        Some("alice-token"),
        Some(json!({"values": {"size": "small"}})),
    )
    .await;
    assert_eq!(status, 202, "{upd}");
    let upd_id = upd["id"].as_str().unwrap().to_owned();
    let waiting = eventually("the update retrying on the tenant's lock", || async {
        let (_, r) = app.get_json(&format!("/requests/{upd_id}")).await;
        r["steps"]
            .as_array()?
            .iter()
            .find(|s| s["status"] == "retrying")
            .cloned()
    })
    .await;
    assert!(
        waiting["error"]
            .as_str()
            .unwrap_or("")
            .contains("lock timeout"),
        "{waiting}"
    );
    run(&mut own, "ROLLBACK").await;
    let upd = wait_final(&app, &upd_id).await;
    assert_eq!(upd["status"], "succeeded", "{upd}");
    own.close().await.ok();
    squatter.close().await.ok();
}

/// A tenant sitting in template1 (open to PUBLIC on a default cluster) makes every `CREATE
/// DATABASE … TEMPLATE template1` fail; paved copies template0, so another team's database is
/// still created. On a cluster of the test's own: the shared one's template1 is every test's.
#[tokio::test]
async fn a_tenant_in_template1_blocks_no_create() {
    let pg = tokio::task::spawn_blocking(common::servers::PrivatePostgres::start)
        .await
        .unwrap();
    pg.psql(
        "postgres",
        "CREATE ROLE paved_admin LOGIN CREATEDB CREATEROLE",
    );
    let admin_url = format!("postgres://paved_admin@127.0.0.1:{}/postgres", pg.port);
    let driver = paved::provisioning::drivers::postgres::PostgresDriver::new(
        [("dev".to_owned(), admin_url.clone())].into(),
        vec![],
    );
    let spec = |db: &str| {
        driver
            .parse(&json!({"database": db, "environment": "dev"}))
            .unwrap()
    };
    let (a, b) = (spec("tenant_a"), spec("tenant_b"));
    driver
        .apply(
            &a,
            &paved::provisioning::drivers::generate_password(),
            "paved:resource:a",
        )
        .await
        .unwrap();
    let sitter = PgConnection::connect(&format!(
        "postgres://tenant_a_owner@127.0.0.1:{}/template1",
        pg.port
    ))
    .await
    .expect("PUBLIC may connect to template1 on a default cluster");
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    let blocked = sqlx::raw_sql("CREATE DATABASE copied_from_template1")
        .execute(&mut admin)
        .await
        .unwrap_err();
    assert!(
        blocked
            .to_string()
            .contains("being accessed by other users"),
        "{blocked}"
    );
    driver
        .apply(
            &b,
            &paved::provisioning::drivers::generate_password(),
            "paved:resource:b",
        )
        .await
        .expect("paved's create does not depend on template1");
    assert!(driver.observe(&b).await.unwrap().exists);
    sitter.close().await.ok();
}

/// Tenant A's credentials open A's database and no other: not team B's, and not paved's own
/// once the start-up check's advice is followed; the check names what is open to PUBLIC and
/// says whether the admin is a superuser.
#[tokio::test]
async fn tenants_reach_only_their_own_database() {
    let (db, admin, app, s) = spawn(DbEngine::Postgres, |_| {}).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let (a, b) = (unique(), unique());
    let (da, rid_a) = ordered(&app, "team-a", "postgres-database", pg_values(&a, "team-a")).await;
    let (dbb, rid_b) = ordered(&app, "team-b", "postgres-database", pg_values(&b, "team-b")).await;
    assert_eq!(
        (da["status"].as_str(), dbb["status"].as_str()),
        (Some("succeeded"), Some("succeeded"))
    );
    let (_, c) = credentials(&app, "team-a", &rid_a).await;
    let (user, pw) = (
        c["database"]["username"].as_str().unwrap(),
        c["database"]["password"].as_str().unwrap(),
    );
    PgConnection::connect(&url_as(user, Some(pw), &format!("{a}_dev")))
        .await
        .expect("their own database")
        .close()
        .await
        .ok();
    let err = PgConnection::connect(&url_as(user, Some(pw), &format!("{b}_dev")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");

    // paved's own database here was created with PostgreSQL's defaults: open to PUBLIC.
    let own = db.url.rsplit('/').next().unwrap().to_owned();
    let warnings = Drivers::from_settings(&s.drivers)
        .target_warnings(Some(&db.url))
        .await;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&format!("paved's own database {own}"))),
        "{warnings:#?}"
    );
    let advice = format!("REVOKE CONNECT ON DATABASE \"{own}\" FROM PUBLIC");
    assert!(
        warnings.iter().any(|w| w.contains(&advice)),
        "{warnings:#?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("superuser")),
        "the test's admin is no superuser: {warnings:#?}"
    );
    assert!(
        PgConnection::connect(&url_as(user, Some(pw), &own))
            .await
            .is_ok()
    );
    let mut su = superuser("postgres").await;
    run(&mut su, &advice).await;
    let err = PgConnection::connect(&url_as(user, Some(pw), &own))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    let warnings = Drivers::from_settings(&s.drivers)
        .target_warnings(None)
        .await;
    assert!(
        !warnings.iter().any(|w| w.contains(&advice)),
        "{warnings:#?}"
    );
    // A superuser admin is called out.
    let warnings = Drivers::from_settings(&Settings::default().drivers)
        .target_warnings(None)
        .await;
    assert!(
        warnings.iter().any(|w| w.contains("is a superuser")),
        "{warnings:#?}"
    );

    // paved's admin is a member of every owner role. Tenant A makes sessions in its database
    // become tenant B's role, then gets paved to create something there (an extension an
    // operator dropped, re-installed by the drift revert): it is paved's, not B's, and B's
    // deletion is not blocked by an object of B's in A's database.
    let mut tenant = PgConnection::connect(&url_as(user, Some(pw), &format!("{a}_dev")))
        .await
        .unwrap();
    run(
        &mut tenant,
        &format!("ALTER DATABASE \"{a}_dev\" SET role = '{b}_dev_owner'"),
    )
    .await;
    tenant.close().await.ok();
    let mut su_a = superuser(&format!("{a}_dev")).await;
    run(&mut su_a, "DROP EXTENSION pgcrypto").await;
    let (status, found) = call(
        &app,
        "POST",
        &format!("/resources/{rid_a}/drift/check"),
        Some("alice-token"),
        None,
    )
    .await;
    assert_eq!(
        (status, found["status"].as_str()),
        (200, Some("detected")),
        "{found}"
    );
    let reverted = requested(
        &app,
        "team-a",
        "POST",
        &format!("/resources/{rid_a}/drift/revert"),
        None,
    )
    .await;
    assert_eq!(reverted["status"], "succeeded", "{reverted}");
    let owner: String = sqlx::query("SELECT r.rolname::text AS o FROM pg_extension e JOIN pg_roles r ON r.oid = e.extowner WHERE e.extname = 'pgcrypto'")
        .fetch_one(&mut su_a)
        .await
        .unwrap()
        .get("o");
    assert_eq!(
        owner, admin.role,
        "created as paved's admin, not as another tenant"
    );
    su_a.close().await.ok();
    let deleted = requested(
        &app,
        "team-b",
        "DELETE",
        &format!("/resources/{rid_b}"),
        None,
    )
    .await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    assert!(tagged(&rid_b).await.is_empty());
    let _ = app.stop().await;
}

/// A Redis tenant stays in database 0 and sees nothing server-wide; what a tenant of before
/// (whose user could SELECT) left in database 1 is evicted with the resource, so the next
/// team to order the freed name finds nothing; and where the offering keeps keys on
/// deletion, the name is refused to the next team instead of handing over the data.
#[tokio::test]
async fn a_redis_tenant_stays_in_its_prefix_in_every_database() {
    let (db, _admin, app, _) = spawn(DbEngine::Sqlite, |_| {}).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let n = unique();
    let prefix = format!("{n}-dev");
    let _keys = RedisKeys(vec![
        (0, format!("{prefix}:secret")),
        (1, format!("{prefix}:secret")),
        (1, format!("{prefix}:moved")),
    ]);
    let (done, rid) = ordered(
        &app,
        "team-a",
        "redis-cache",
        cache_values(&n, "team-a", true),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, c) = credentials(&app, "team-a", &rid).await;
    let mut t = redis::Client::open(c["cache"]["url"].as_str().unwrap())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{prefix}:secret");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("team-a data")
        .query_async(&mut t)
        .await
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut t)
        .await
        .unwrap();
    assert_eq!(got, "team-a data", "legitimate use works");
    let attacks: Vec<Vec<String>> = [
        vec!["SELECT", "1"],
        vec!["MOVE", &key, "1"],
        vec!["COPY", &key, &format!("{prefix}:moved"), "DB", "1"],
        vec!["SWAPDB", "0", "1"],
        vec!["DBSIZE"],
        vec!["KEYS", "*"],
        vec!["SCAN", "0"],
        vec!["RANDOMKEY"],
        vec!["FLUSHDB"],
        vec!["FLUSHALL"],
        vec!["INFO", "keyspace"],
        vec!["CONFIG", "GET", "*"],
        vec!["CLIENT", "LIST"],
        vec!["CLIENT", "KILL", "TYPE", "normal"],
        vec!["CLIENT", "TRACKING", "on", "BCAST"],
        vec!["SLOWLOG", "GET"],
        vec!["FUNCTION", "LIST"],
        vec!["FUNCTION", "FLUSH"],
        vec!["SCRIPT", "FLUSH"],
        vec!["PUBSUB", "CHANNELS"],
        vec!["PUBLISH", "other-team:events", "x"],
        vec!["SET", "other-team:k", "x"],
        vec!["GET", "__paved_owner__:paved-x"],
        vec!["SORT", &key, "BY", "other-team:*"],
        vec!["ACL", "LIST"],
        vec!["ACL", "SETUSER", &format!("paved-{prefix}"), "allkeys"],
        vec!["MIGRATE", "127.0.0.1", "1", &key, "0", "1000"],
    ]
    .iter()
    .map(|a| a.iter().map(|s| s.to_string()).collect())
    .collect();
    for a in &attacks {
        let mut cmd = redis::cmd(&a[0]);
        for arg in &a[1..] {
            cmd.arg(arg);
        }
        let r: Result<redis::Value, _> = cmd.query_async(&mut t).await;
        assert!(is_noperm(&r), "{a:?} is not refused: {r:?}");
    }
    // What an earlier tenant (whose user could SELECT) left in database 1.
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("team-a data, db 1")
        .query_async(&mut redis_admin(1).await)
        .await
        .unwrap();
    let deleted = requested(&app, "team-a", "DELETE", &format!("/resources/{rid}"), None).await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    let after: Result<Option<String>, _> = redis::cmd("GET").arg(&key).query_async(&mut t).await;
    assert!(
        after.is_err(),
        "the deleted user's connection was closed: {after:?}"
    );
    for d in [0, 1] {
        let left: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut redis_admin(d).await)
            .await
            .unwrap();
        assert_eq!(left, 0, "database {d} still holds the key");
    }
    // The freed name, ordered by another team: nothing of team A's.
    let (again, rid_b) = ordered(
        &app,
        "team-b",
        "redis-cache",
        cache_values(&n, "team-b", true),
    )
    .await;
    assert_eq!(again["status"], "succeeded", "{again}");
    let (_, cb) = credentials(&app, "team-b", &rid_b).await;
    let mut tb = redis::Client::open(cb["cache"]["url"].as_str().unwrap())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let seen: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut tb)
        .await
        .unwrap();
    assert_eq!(seen, None);
    let r: Result<redis::Value, _> = redis::cmd("SELECT").arg(1).query_async(&mut tb).await;
    assert!(is_noperm(&r), "{r:?}");
    let deleted = requested(
        &app,
        "team-b",
        "DELETE",
        &format!("/resources/{rid_b}"),
        None,
    )
    .await;
    assert_eq!(deleted["status"], "succeeded");

    // An offering that keeps keys on deletion: the next team does not get them.
    let kept = unique();
    let kept_key = format!("{kept}-dev:orders");
    let _kept_keys = RedisKeys(vec![(0, kept_key.clone())]);
    let (done, rid) = ordered(
        &app,
        "team-a",
        "redis-cache",
        cache_values(&kept, "team-a", false),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, c) = credentials(&app, "team-a", &rid).await;
    let mut t = redis::Client::open(c["cache"]["url"].as_str().unwrap())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&kept_key)
        .arg("team-a orders")
        .query_async(&mut t)
        .await
        .unwrap();
    let deleted = requested(&app, "team-a", "DELETE", &format!("/resources/{rid}"), None).await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    let (refused, rid_b) = ordered(
        &app,
        "team-b",
        "redis-cache",
        cache_values(&kept, "team-b", true),
    )
    .await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("previous owner"),
        "{refused}"
    );
    assert!(
        !redis_user_exists(&format!("paved-{kept}-dev")).await,
        "no user left behind"
    );
    assert!(tagged(&rid_b).await.is_empty());
    let deleted = requested(
        &app,
        "team-b",
        "DELETE",
        &format!("/resources/{rid_b}"),
        None,
    )
    .await;
    assert_eq!(
        deleted["status"], "succeeded",
        "a failed create can be deleted: {deleted}"
    );
    let still: Option<String> = redis::cmd("GET")
        .arg(&kept_key)
        .query_async(&mut redis_admin(0).await)
        .await
        .unwrap();
    assert_eq!(
        still.as_deref(),
        Some("team-a orders"),
        "the kept keys stay as they were"
    );
}

/// A preview environment whose branch changes past the truncated name keeps its name and
/// database but gets a new key prefix: the old ACL user is removed at once, the credentials
/// endpoint hands out the new one, and deleting the environment leaves nothing tagged.
#[tokio::test]
async fn a_renamed_preview_leaves_no_old_login_and_deletion_leaves_nothing() {
    let (db, _admin, app, _) = spawn(DbEngine::Sqlite, |_| {}).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let stem = format!("{}-rename-branch-", unique());
    let values = |suffix: &str| json!({"component": "shop", "branch": format!("{stem}{suffix}"), "owner": "team-a", "cost_center": "ENG-1234", "ttl_hours": 4});
    let (done, rid) = ordered(&app, "team-a", "preview-environment", values("one")).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, before) = credentials(&app, "team-a", &rid).await;
    let old_user = before["cache"]["username"].as_str().unwrap().to_owned();
    let old_url = before["cache"]["url"].as_str().unwrap().to_owned();
    assert!(old_user.ends_with("-one"), "{old_user}");
    let role = before["database"]["username"].as_str().unwrap().to_owned();
    let mut old = redis::Client::open(old_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let old_key = format!("preview-shop-{stem}one:session");
    let _keys = RedisKeys(vec![(0, old_key.clone())]);
    let _: () = redis::cmd("SET")
        .arg(&old_key)
        .arg("x")
        .query_async(&mut old)
        .await
        .unwrap();

    // First the new name is someone else's user: the update fails and changes nothing.
    let squatted = format!("paved-preview-shop-{stem}two");
    let squatter = ForeignRedisUser(squatted.clone());
    let mut r = redis_admin(0).await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&squatted)
        .arg("off")
        .query_async(&mut r)
        .await
        .unwrap();
    let before_tags = tagged(&rid).await;
    let rename = json!({"values": {"branch": format!("{stem}two")}});
    let failed = requested(
        &app,
        "team-a",
        "PATCH",
        &format!("/resources/{rid}"),
        Some(rename.clone()),
    )
    .await;
    drop(squatter);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        tagged(&rid).await,
        before_tags,
        "a failed update leaves the resource as it was"
    );
    assert_eq!(credentials(&app, "team-a", &rid).await.1, before);
    let _: String = redis::cmd("GET")
        .arg(&old_key)
        .query_async(&mut old)
        .await
        .unwrap();

    let updated = requested(
        &app,
        "team-a",
        "PATCH",
        &format!("/resources/{rid}"),
        Some(rename),
    )
    .await;
    assert_eq!(updated["status"], "succeeded", "{updated}");
    let (_, after) = credentials(&app, "team-a", &rid).await;
    let new_user = after["cache"]["username"].as_str().unwrap().to_owned();
    assert!(new_user.ends_with("-two"), "{after}");
    assert_eq!(
        after["database"]["username"],
        role.as_str(),
        "same database"
    );
    assert!(!redis_user_exists(&old_user).await, "the old user is gone");
    let old_login = redis::Client::open(old_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await;
    assert!(old_login.is_err(), "the old credentials no longer log in");
    let mut new = redis::Client::open(after["cache"]["url"].as_str().unwrap())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let new_key = format!("preview-shop-{stem}two:session");
    let _: () = redis::cmd("SET")
        .arg(&new_key)
        .arg("y")
        .query_async(&mut new)
        .await
        .unwrap();
    let r: Result<redis::Value, _> = redis::cmd("GET").arg(&old_key).query_async(&mut new).await;
    assert!(
        is_noperm(&r),
        "the new user is confined to the new prefix: {r:?}"
    );
    assert_eq!(
        tagged(&rid).await,
        BTreeSet::from([
            format!("role {role}"),
            format!(
                "database {}",
                after["database"]["database"].as_str().unwrap()
            ),
            format!("redis marker {new_user}"),
        ]),
        "exactly what the resource is now"
    );

    let deleted = requested(&app, "team-a", "DELETE", &format!("/resources/{rid}"), None).await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    assert!(
        tagged(&rid).await.is_empty(),
        "nothing of the resource is left"
    );
    assert!(!redis_user_exists(&new_user).await);
    let (status, _) = credentials(&app, "team-a", &rid).await;
    assert_eq!(status, 404, "no credentials of a deleted resource");
}

/// An order whose database name is taken by a database paved does not own fails without
/// leaving a role behind, hands out no credentials, and can be deleted without touching the
/// other database.
#[tokio::test]
async fn a_colliding_create_leaves_nothing_and_can_be_deleted() {
    let (db, _admin, app, _) = spawn(DbEngine::Sqlite, |_| {}).await;
    let _teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let n = unique();
    let dbname = format!("{n}_dev");
    let _foreign = ForeignDatabase(dbname.clone());
    let mut su = superuser("postgres").await;
    run(&mut su, &format!("CREATE DATABASE \"{dbname}\"")).await;
    let (failed, rid) = ordered(&app, "team-a", "postgres-database", pg_values(&n, "team-a")).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("not this resource's"),
        "{failed}"
    );
    assert!(tagged(&rid).await.is_empty(), "nothing tagged is left");
    let roles: i64 = sqlx::query("SELECT count(*) AS n FROM pg_roles WHERE rolname = $1")
        .bind(format!("{dbname}_owner"))
        .fetch_one(&mut su)
        .await
        .unwrap()
        .get("n");
    assert_eq!(roles, 0, "no role was created");
    let (status, _) = credentials(&app, "team-a", &rid).await;
    assert_eq!(status, 404);
    // Ordering the name again is refused at once, saying which resource holds it and how
    // to free it.
    let (status, again) = order_as(
        &app,
        token("team-a"),
        "postgres-database",
        pg_values(&n, "team-a"),
    )
    .await;
    assert_eq!(status, 409, "{again}");
    let why = again["error"]["message"].as_str().unwrap_or("");
    assert!(
        why.contains(&format!("resource {rid}"))
            && why.contains("whose create failed")
            && why.contains(&format!("paved resource delete {rid}")),
        "{again}"
    );
    let deleted = requested(&app, "team-a", "DELETE", &format!("/resources/{rid}"), None).await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    let owner: String = sqlx::query("SELECT r.rolname::text AS o FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1")
        .bind(&dbname)
        .fetch_one(&mut su)
        .await
        .unwrap()
        .get("o");
    assert_eq!(owner, "postgres", "the other database is untouched");
}

/// A Redis server whose default user needs no password is reported at start-up; once it has
/// one (and paved's URL carries it), the warning goes, and no warning repeats the password.
#[tokio::test]
async fn a_password_less_redis_default_user_is_reported() {
    let server = tokio::task::spawn_blocking(common::servers::PrivateRedis::start)
        .await
        .unwrap();
    let url = format!("redis://127.0.0.1:{}", server.port);
    let mut s = Settings::default().drivers;
    s.redis.targets = [("dev".to_owned(), url.clone())].into();
    s.postgres.targets = Default::default();
    let warnings = Drivers::from_settings(&s).target_warnings(None).await;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("default user is on without a password")),
        "{warnings:#?}"
    );
    let pw = paved::provisioning::drivers::generate_password();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("resetpass")
        .arg(format!(">{pw}"))
        .query_async(
            &mut redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    s.redis.targets = [(
        "dev".to_owned(),
        format!("redis://default:{pw}@127.0.0.1:{}", server.port),
    )]
    .into();
    let warnings = Drivers::from_settings(&s).target_warnings(None).await;
    assert!(warnings.is_empty(), "{warnings:#?}");
}

/// `paved serve` says at start-up what makes its targets unsafe for tenants: here the
/// embedded default, whose PostgreSQL admin is the superuser on a cluster open to PUBLIC.
#[test]
fn paved_serve_warns_about_its_targets_at_start_up() {
    use std::{
        io::{BufRead, BufReader},
        process::Stdio,
        sync::mpsc,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::paved()
        .arg("serve")
        .env(
            "PAVED_SERVER__LISTEN",
            format!("127.0.0.1:{}", common::free_port()),
        )
        .env(
            "PAVED_DATABASE__URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
        )
        .env("PAVED_ENGINE__WORKERS", "0")
        .env(
            "PAVED_SECRETS__KEY",
            paved::vocab::secret_box::SecretBox::generate_key(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    for stream in [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(line) if line.contains("is a superuser") => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let line = found.unwrap_or_else(|| panic!("no superuser warning in {seen:#?}"));
    assert!(line.contains("WARN") || line.contains("warn"), "{line}");
    assert!(line.contains("CREATEDB and CREATEROLE"), "{line}");
}
