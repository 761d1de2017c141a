//! The `postgres` driver: a database and its owner role on a target cluster chosen per
//! environment. Every identifier is validated and quoted; every step converges, so running it
//! again after a crash neither duplicates nor fails.

use std::{collections::BTreeMap, time::Duration};

use sea_orm::sqlx::{
    self, AssertSqlSafe, ConnectOptions, Connection, PgPool, Row,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Applied, DriverError, Observed, Usage};

/// What the offering's `postgres` part asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresSpec {
    pub database: Ident,
    pub owner: Ident,
    pub environment: String,
    pub connection_limit: i32,
    pub extensions: Vec<String>,
}

/// A PostgreSQL identifier paved accepts: `^[a-z_][a-z0-9_]*$`, at most 63 bytes. Quoted
/// anyway when used, so even a rule change here could not open an injection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident(String);

impl Ident {
    pub fn parse(field: &str, s: &str) -> Result<Self, DriverError> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(DriverError::Permanent(format!(
                "{field}: {s:?} is not allowed (lower-case letters, digits and '_', starting with a letter or '_', at most 63 characters)"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `"name"`, with embedded quotes doubled (PostgreSQL's quote_ident).
    pub fn quoted(&self) -> String {
        quote_ident(&self.0)
    }
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'`, with embedded quotes doubled (PostgreSQL's quote_literal for standard strings).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[derive(Deserialize)]
struct RawSpec {
    database: String,
    environment: String,
    #[serde(default = "default_limit")]
    connection_limit: i32,
    #[serde(default)]
    extensions: Vec<String>,
}

fn default_limit() -> i32 {
    20
}

impl PostgresSpec {
    /// Parses the rendered part spec. Fields a cluster has no knob for (an instance class,
    /// backups: what older offerings rendered) are ignored, so specs recorded by them still
    /// parse for a delete or a drift check; the bundled offering no longer prices any.
    pub fn parse(spec: &Value, allowed_extensions: &[String]) -> Result<Self, DriverError> {
        let raw: RawSpec = serde_json::from_value(spec.clone())
            .map_err(|e| DriverError::Permanent(format!("postgres spec: {e}")))?;
        let database = Ident::parse("database", &raw.database)?;
        let mut owner_name = format!("{}_owner", raw.database);
        owner_name.truncate(63);
        let owner = Ident::parse("owner", &owner_name)?;
        if !(1..=10_000).contains(&raw.connection_limit) {
            return Err(DriverError::Permanent(format!(
                "connection_limit: must be between 1 and 10000, not {}",
                raw.connection_limit
            )));
        }
        for ext in &raw.extensions {
            if !allowed_extensions.contains(ext) {
                return Err(DriverError::Permanent(format!(
                    "extensions: {ext:?} is not allowed here (allowed: {})",
                    allowed_extensions.join(", ")
                )));
            }
        }
        Ok(Self {
            database,
            owner,
            environment: raw.environment,
            connection_limit: raw.connection_limit,
            extensions: raw.extensions,
        })
    }
}

/// How long paved lets one statement on a target wait for a lock, and run at all, unless
/// configured otherwise (`drivers.postgres.lock_timeout_ms`, `statement_timeout_ms`).
pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 3_000;
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 30_000;

/// paved's search_path on every connection to a target. It and the other pinned settings (see
/// `PostgresDriver::options`) travel in the start-up packet: client settings outrank `ALTER
/// DATABASE … SET` and `ALTER ROLE … SET`, so nothing a tenant stores on its database can move
/// paved's name resolution, identity or timeouts.
const SEARCH_PATH: &str = "pg_catalog,pg_temp";

/// First key of paved's two-key advisory locks; tenants' single-key locks never collide.
const LOCK_CLASS: i32 = 0x7061_7664; // "pavd"

/// Admin connections to each environment's cluster, opened on first use.
pub struct PostgresDriver {
    targets: BTreeMap<String, String>,
    allowed_extensions: Vec<String>,
    lock_timeout_ms: u64,
    statement_timeout_ms: u64,
    /// (environment, read-only) → pool on the target's maintenance database.
    pools: Mutex<BTreeMap<(String, bool), PgPool>>,
    /// Runs of one database in this process take turns here, without asking the server.
    local_locks: crate::vocab::keyed_locks::KeyedLocks,
    /// The connection to a tenant's database `apply` just used, kept for [`PARK_FOR`] for
    /// the `observe` of the configure step that follows (see [`Parked`]).
    parked: Parked,
}

/// How long a connection `apply` opened to a tenant's database waits for the `observe` that
/// follows it before it is closed. The configure step runs right after the create step, so
/// this is ample; a connection nobody takes does not sit in the tenant's database for long.
pub const PARK_FOR: Duration = Duration::from_secs(3);

/// (environment, database) → the connection `apply` left open there, with a number telling
/// its closing timer whether it is still the one it was set for. Opening a connection to the
/// new database is the most expensive thing a create sends (TLS and the backend's start-up
/// in a database nobody has connected to yet; ~95 ms here, more than every statement put
/// together), and `observe` needs one right after `apply` used one.
type ParkedMap = BTreeMap<(String, String), (u64, PgConnection)>;

#[derive(Default, Clone)]
struct Parked(std::sync::Arc<std::sync::Mutex<(u64, ParkedMap)>>);

impl Parked {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, ParkedMap)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `conn` for `key` until taken or [`PARK_FOR`] has passed; one per key.
    fn park(&self, key: (String, String), conn: PgConnection) {
        let n = {
            let mut g = self.lock();
            g.0 += 1;
            let n = g.0;
            if let Some((_, old)) = g.1.insert(key.clone(), (n, conn)) {
                tokio::spawn(async move { old.close().await.ok() });
            }
            n
        };
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PARK_FOR).await;
            let expired = {
                let mut g = me.lock();
                match g.1.get(&key) {
                    Some((m, _)) if *m == n => g.1.remove(&key),
                    _ => None,
                }
            };
            if let Some((_, c)) = expired {
                c.close().await.ok();
            }
        });
    }

    fn take(&self, key: &(String, String)) -> Option<PgConnection> {
        self.lock().1.remove(key).map(|(_, c)| c)
    }
}

impl PostgresDriver {
    pub fn new(targets: BTreeMap<String, String>, allowed_extensions: Vec<String>) -> Self {
        Self {
            targets,
            allowed_extensions,
            lock_timeout_ms: DEFAULT_LOCK_TIMEOUT_MS,
            statement_timeout_ms: DEFAULT_STATEMENT_TIMEOUT_MS,
            pools: Mutex::new(BTreeMap::new()),
            local_locks: crate::vocab::keyed_locks::KeyedLocks::new(),
            parked: Parked::default(),
        }
    }

    /// Every statement paved sends waits at most `lock_ms` for a lock and runs at most
    /// `statement_ms`.
    pub fn with_timeouts(mut self, lock_ms: u64, statement_ms: u64) -> Self {
        self.lock_timeout_ms = lock_ms.max(1);
        self.statement_timeout_ms = statement_ms.max(1);
        self
    }

    pub fn parse(&self, spec: &Value) -> Result<PostgresSpec, DriverError> {
        PostgresSpec::parse(spec, &self.allowed_extensions)
    }

    /// The configured URL of `env`'s target (for where a message points; never shown whole).
    pub fn target_url(&self, env: &str) -> Option<&str> {
        self.targets.get(env).map(String::as_str)
    }

    fn target(&self, env: &str) -> Result<&str, DriverError> {
        self.targets.get(env).map(String::as_str).ok_or_else(|| {
            DriverError::Permanent(format!(
                "no postgres target configured for environment {env:?}"
            ))
        })
    }

    /// Connection options for `env`'s target (its maintenance database unless `database` is
    /// given), with paved's pinned session: `search_path` = pg_catalog, lock and statement
    /// timeouts, and read-only by default where paved only observes. Every connection the
    /// driver opens uses these (the provisioning bench connects with them too).
    pub fn connect_options(
        &self,
        env: &str,
        database: Option<&str>,
        read_only: bool,
    ) -> Result<PgConnectOptions, DriverError> {
        let url = self.target(env)?;
        let mut opts = url
            .parse::<PgConnectOptions>()
            .map_err(|e| {
                DriverError::Permanent(format!(
                    "postgres target for {env}: {}",
                    crate::vocab::redact::redact(&e.to_string())
                ))
            })?
            .application_name(if read_only { "paved-observer" } else { "paved" })
            // Statements carry generated passwords' verifiers: never let sqlx log them.
            .disable_statement_logging();
        if let Some(db) = database {
            opts = opts.database(db);
        }
        let lock = self.lock_timeout_ms.to_string();
        let statement = self.statement_timeout_ms.to_string();
        Ok(opts.options([
            ("search_path", SEARCH_PATH),
            // paved's admin is a member of every owner role: a tenant's `ALTER DATABASE … SET
            // role = <another tenant's role>` would otherwise make paved act as that role.
            ("role", "none"),
            ("standard_conforming_strings", "on"),
            ("lock_timeout", lock.as_str()),
            ("statement_timeout", statement.as_str()),
            ("idle_in_transaction_session_timeout", statement.as_str()),
            (
                "default_transaction_read_only",
                if read_only { "on" } else { "off" },
            ),
        ]))
    }

    /// A pool on the maintenance database: `read_only` for observing and usage, the other for
    /// DDL.
    async fn pool(&self, env: &str, read_only: bool) -> Result<PgPool, DriverError> {
        let key = (env.to_owned(), read_only);
        let mut pools = self.pools.lock().await;
        if let Some(p) = pools.get(&key) {
            return Ok(p.clone());
        }
        let opts = self.connect_options(env, None, read_only)?;
        let pool = match PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
        {
            Ok(p) => p,
            Err(e) => return Err(self.unreachable(env, read_only, e).await),
        };
        pools.insert(key, pool.clone());
        Ok(pool)
    }

    /// A connection from the maintenance database's pool.
    async fn acquire(
        &self,
        env: &str,
        read_only: bool,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, DriverError> {
        let pool = self.pool(env, read_only).await?;
        match pool.acquire().await {
            Ok(c) => Ok(c),
            Err(e) => Err(self.unreachable(env, read_only, e).await),
        }
    }

    /// The real cause behind a pool's error: sqlx retries a refused connection until its
    /// acquire timeout and then says only "pool timed out while waiting for an open
    /// connection", so one direct connection attempt tells what the server answers.
    async fn unreachable(&self, env: &str, read_only: bool, e: sqlx::Error) -> DriverError {
        if !matches!(e, sqlx::Error::PoolTimedOut) {
            return classify(e);
        }
        let Ok(opts) = self.connect_options(env, None, read_only) else {
            return classify(e);
        };
        match tokio::time::timeout(Duration::from_secs(3), opts.connect()).await {
            Ok(Err(cause)) => match classify(cause) {
                DriverError::Transient(m) => DriverError::Transient(format!("cannot connect: {m}")),
                other => other,
            },
            Ok(Ok(c)) => {
                let _ = sqlx::Connection::close(c).await;
                DriverError::Transient(
                    "no free connection within 5 s (paved's connections to the server are all busy)"
                        .into(),
                )
            }
            Err(_) => DriverError::Transient(
                "cannot connect: no answer within 3 s (a wrong host, or a firewall dropping packets)"
                    .into(),
            ),
        }
    }

    async fn observer(&self, env: &str) -> Result<PgPool, DriverError> {
        self.pool(env, true).await
    }

    /// One connection to a tenant's database, pinned like every other.
    async fn connect_to(
        &self,
        env: &str,
        database: &str,
        read_only: bool,
    ) -> Result<PgConnection, DriverError> {
        let opts = self.connect_options(env, Some(database), read_only)?;
        match tokio::time::timeout(Duration::from_secs(10), opts.connect()).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(DriverError::Transient(format!(
                "connecting to database {database} timed out"
            ))),
        }
    }

    /// Creates (or converges) the role with `password`, the database, its grants and extensions.
    /// Two runs for the same database take turns: in this process on a local lock, across
    /// replicas on a *tried* advisory lock. When another paved session holds it, the step is
    /// retried later instead of waiting on a worker; when a session of any other role holds it
    /// (every LOGIN role may connect to the maintenance database on a default cluster), paved
    /// does not let that stall it and converges anyway: the DDL below tolerates a concurrent
    /// run (conflicts converge, "tuple concurrently updated" is retried).
    pub async fn apply(
        &self,
        spec: &PostgresSpec,
        password: &str,
        tag: &str,
    ) -> Result<Applied, DriverError> {
        let _turn = self
            .local_locks
            .lock(&format!("{}/{}", spec.environment, spec.database.as_str()))
            .await;
        let mut conn = self.acquire(&spec.environment, false).await?;
        let locked = try_lock(&mut conn, spec.database.as_str()).await?;
        let result = self.converge(&mut conn, spec, password, tag).await;
        if locked {
            let unlock = unlock_statement(spec.database.as_str())
                .run(&mut conn)
                .await;
            if unlock.is_err() {
                // A session-level lock must not linger on a pooled connection.
                conn.detach();
            }
        }
        result?;
        if !spec.extensions.is_empty() {
            let mut c = self
                .connect_to(&spec.environment, spec.database.as_str(), false)
                .await?;
            let mut done = Ok(());
            for st in extension_ddl(spec) {
                done = st.run(&mut c).await.map(drop);
                if done.is_err() {
                    break;
                }
            }
            if done.is_ok() {
                self.parked.park(
                    (spec.environment.clone(), spec.database.as_str().to_owned()),
                    c,
                );
            } else {
                let _ = c.close().await;
            }
            done?;
        }
        let opts: PgConnectOptions =
            self.target(&spec.environment)?
                .parse()
                .map_err(|e: sqlx::Error| {
                    DriverError::Permanent(crate::vocab::redact::redact(&e.to_string()))
                })?;
        Ok(Applied {
            outputs: json!({
                "host": opts.get_host(),
                "port": opts.get_port(),
                "database": spec.database.as_str(),
                "username": spec.owner.as_str(),
            }),
            secrets: json!({"password": password}),
        })
    }

    /// Converges role and database. Both carry paved's ownership tag as their comment; an
    /// existing role or database without it belongs to someone else and is never taken over.
    /// Both names are checked before anything is created, so a collision leaves nothing behind.
    async fn converge(
        &self,
        conn: &mut PgConnection,
        spec: &PostgresSpec,
        password: &str,
        tag: &str,
    ) -> Result<(), DriverError> {
        let role_found = role_tag(conn, spec.owner.as_str()).await?;
        let role_ours = match &role_found {
            None => false,
            Some(found) if found.as_deref() == Some(tag) => true,
            Some(_) => {
                return Err(DriverError::Permanent(format!(
                    "a role named {} already exists on this cluster and is not this resource's; choose another name",
                    spec.owner.as_str()
                )));
            }
        };
        let db_found = database_tag(conn, spec.database.as_str()).await?;
        if let Some((found, owner)) = &db_found {
            // The database's comment is the tenant's to change (it owns the database), so
            // ownership by this resource's role, whose tag only admins can write, decides too.
            let ours = found.as_deref() == Some(tag) || (role_ours && owner == spec.owner.as_str());
            if !ours {
                return Err(DriverError::Permanent(format!(
                    "a database named {} already exists on this cluster and is not this resource's; choose another name",
                    spec.database.as_str()
                )));
            }
        }
        let ddl = converge_ddl(
            spec,
            &scram_verifier(password),
            tag,
            role_found.is_some(),
            db_found.is_some(),
        );
        for st in ddl {
            match st.run(conn).await {
                Ok(_) => {}
                Err(DriverError::Conflict(_)) if st.converges_on_conflict => {}
                Err(e) => {
                    if st.sql.starts_with("BEGIN") {
                        // Leave no aborted transaction on a pooled connection.
                        let _ = exec(conn, "ROLLBACK").await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// What exists: the database (owner, connection limit, whether it accepts connections,
    /// whether PUBLIC may connect, size), its owner role (login, connection limit) and the
    /// extensions installed in it. Catalog reads come from the maintenance database, read-only;
    /// only the extensions need a connection to the tenant's database, pinned and read-only
    /// too, and reported as `self_transactions`.
    pub async fn observe(&self, spec: &PostgresSpec) -> Result<Observed, DriverError> {
        let mut conn = self.acquire(&spec.environment, true).await?;
        let row = observe_database_statement(spec.database.as_str())
            .run(&mut conn)
            .await?
            .into_iter()
            .next();
        let role = observe_role_statement(spec.owner.as_str())
            .run(&mut conn)
            .await?
            .into_iter()
            .next();
        drop(conn);
        let role = match role {
            None => json!({"exists": false}),
            Some(r) => json!({
                "exists": true,
                "can_login": r.get::<bool, _>("can_login"),
                "connection_limit": r.get::<i32, _>("connection_limit"),
            }),
        };
        let Some(r) = row else {
            return Ok(Observed {
                exists: false,
                state: json!({"role": role}),
                self_transactions: 0,
            });
        };
        let (extensions, self_transactions) = self.extensions(spec).await;
        Ok(Observed {
            exists: true,
            state: json!({
                "owner": r.get::<String, _>("owner"),
                "connection_limit": r.get::<i32, _>("connection_limit"),
                "allow_connections": r.get::<bool, _>("allow_connections"),
                "public_connect": r.get::<bool, _>("public_connect"),
                // Unknown (null) where the admin may not read it (a database an earlier,
                // superuser admin made, before paved made itself a member of its owner).
                "size_bytes": r.get::<Option<i64>, _>("size_bytes"),
                "role": role,
                "extensions": extensions,
            }),
            self_transactions,
        })
    }

    /// The extensions installed in the database (sorted, without the built-in plpgsql), or the
    /// reason they could not be read; and how many transactions reading them committed. The
    /// tenant owns this database: the session is pinned (search_path, timeouts, read-only) and
    /// names only `pg_catalog` objects, so no view, function or operator of theirs runs here.
    async fn extensions(&self, spec: &PostgresSpec) -> (Value, i64) {
        let key = (spec.environment.clone(), spec.database.as_str().to_owned());
        // The connection `apply` just used, if it is still open: the read is its own
        // READ ONLY transaction, on a session pinned like every other (it was opened with
        // default_transaction_read_only off, which the explicit READ ONLY makes moot). Only
        // the rollback counts then; a fresh connection's start-up commits one more.
        if let Some(mut conn) = self.parked.take(&key) {
            let read = read_extensions(&mut conn).await;
            let _ = conn.close().await;
            if let Ok(rows) = read {
                return (rows, 1);
            }
            // Broken meanwhile (a server restart): read on a fresh connection instead.
        }
        let mut conn = match self
            .connect_to(&spec.environment, spec.database.as_str(), true)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                return (
                    json!({"unreadable": crate::vocab::redact::redact(&e.to_string())}),
                    0,
                );
            }
        };
        // Connecting commits one transaction (backend start-up); the read is rolled back (one
        // rollback). Both show in pg_stat_database, hence `self_transactions` = 2.
        let read = read_extensions(&mut conn).await;
        let _ = conn.close().await;
        match read {
            Ok(rows) => (rows, 2),
            Err(e) => (json!({"unreadable": e.to_string()}), 2),
        }
    }

    /// Ends the role's sessions, drops the database and the role; only what carries this
    /// resource's tag. A database or role of someone else with the same name is left alone,
    /// and the destroy still succeeds: it is not this resource's to remove, so a resource
    /// whose create collided with it can be deleted.
    pub async fn destroy(&self, spec: &PostgresSpec, tag: &str) -> Result<(), DriverError> {
        let key = (spec.environment.clone(), spec.database.as_str().to_owned());
        if let Some(c) = self.parked.take(&key) {
            let _ = c.close().await;
        }
        let mut conn = self.acquire(&spec.environment, false).await?;
        let role_is_ours =
            matches!(role_tag(&mut conn, spec.owner.as_str()).await?, Some(Some(t)) if t == tag);
        let role = spec.owner.quoted();
        if role_is_ours {
            // Membership lets a non-superuser admin end the role's sessions and drop what it
            // owns (a role an earlier, superuser admin created has none yet).
            exec(&mut conn, &format!("GRANT {role} TO CURRENT_USER")).await?;
            // No new sessions, and none left anywhere on the cluster: credentials die now.
            exec(&mut conn, &format!("ALTER ROLE {role} NOLOGIN")).await?;
            sqlx::query("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND pid <> pg_catalog.pg_backend_pid()")
                .bind(spec.owner.as_str())
                .execute(&mut *conn)
                .await
                .map_err(classify)?;
        }
        match database_tag(&mut conn, spec.database.as_str()).await? {
            Some((found, owner))
                if found.as_deref() == Some(tag)
                    || (role_is_ours && owner == spec.owner.as_str()) =>
            {
                exec(
                    &mut conn,
                    &format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        spec.database.quoted()
                    ),
                )
                .await?;
            }
            Some(_) => tracing::info!(
                database = spec.database.as_str(),
                "database is not this resource's; leaving it"
            ),
            None => {}
        }
        if role_is_ours {
            // Whatever the role owns in the maintenance database (where default clusters let
            // every role connect) would keep it from being dropped.
            exec(&mut conn, &format!("DROP OWNED BY {role}")).await?;
            exec(&mut conn, &format!("DROP ROLE IF EXISTS {role}")).await?;
        }
        Ok(())
    }

    /// Open connections now and transactions so far (cumulative; callers diff two readings).
    pub async fn usage(&self, spec: &PostgresSpec) -> Result<Usage, DriverError> {
        let pool = self.observer(&spec.environment).await?;
        let row = sqlx::query("SELECT numbackends, xact_commit + xact_rollback AS xacts FROM pg_catalog.pg_stat_database WHERE datname = $1")
            .bind(spec.database.as_str())
            .fetch_optional(&pool)
            .await
            .map_err(classify)?;
        Ok(match row {
            None => Usage {
                active: 0,
                activity_counter: 0,
                idle_seconds: None,
            },
            Some(r) => Usage {
                active: i64::from(r.get::<i32, _>("numbackends")),
                activity_counter: r.get::<i64, _>("xacts"),
                idle_seconds: None,
            },
        })
    }

    /// What an operator should know about each target before tenants use it: paved's admin
    /// being a superuser (more power than provisioning needs), and databases every role may
    /// connect to (tenants reach them with the credentials paved hands out; in the maintenance
    /// database they could also take the locks paved uses). One message per finding.
    /// `own_database` is paved's own database URL: named as such when it is on a target.
    pub async fn target_warnings(&self, own_database: Option<&str>) -> Vec<String> {
        let own = own_database
            .filter(|u| u.starts_with("postgres"))
            .and_then(|u| u.parse::<PgConnectOptions>().ok())
            .map(|o| {
                (
                    o.get_host().to_owned(),
                    o.get_port(),
                    o.get_database().unwrap_or_default().to_owned(),
                )
            });
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (env, url) in &self.targets {
            if !seen.insert(url.clone()) {
                continue;
            }
            let here = url
                .parse::<PgConnectOptions>()
                .ok()
                .map(|o| (o.get_host().to_owned(), o.get_port()));
            let where_ = format!(
                "postgres target {env} ({})",
                crate::vocab::redact::redact(url)
            );
            let pool = match self.observer(env).await {
                Ok(p) => p,
                Err(e) => {
                    out.push(format!("{where_}: cannot check it: {e}"));
                    continue;
                }
            };
            let me = sqlx::query("SELECT r.rolname::pg_catalog.text AS name, r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user")
                .fetch_one(&pool)
                .await;
            match me {
                Ok(r) if r.get::<bool, _>("rolsuper") => out.push(format!(
                    "{where_}: the admin role {} is a superuser; give paved a role with CREATEDB and CREATEROLE instead (README: Tenants on shared targets)",
                    r.get::<String, _>("name")
                )),
                Ok(_) => {}
                Err(e) => out.push(format!("{where_}: cannot check it: {e}")),
            }
            let open = sqlx::query(
                "SELECT d.datname::pg_catalog.text AS name FROM pg_catalog.pg_database d WHERE d.datallowconn \
                 AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) a \
                             WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT') ORDER BY 1",
            )
            .fetch_all(&pool)
            .await;
            match open {
                Ok(rows) => {
                    for r in rows {
                        let name: String = r.get("name");
                        let whose = match (&own, &here) {
                            (Some((h, p, d)), Some((th, tp)))
                                if h == th && p == tp && *d == name =>
                            {
                                "paved's own database"
                            }
                            _ => "database",
                        };
                        out.push(format!(
                            "{where_}: every role may connect to {whose} {name}, tenants included; run REVOKE CONNECT ON DATABASE {} FROM PUBLIC (and GRANT CONNECT to the roles that need it, paved's admin among them)",
                            quote_ident(&name)
                        ));
                    }
                }
                Err(e) => out.push(format!("{where_}: cannot check it: {e}")),
            }
        }
        out
    }
}

/// Which of paved's connections to a target a statement goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// The admin pool on the target's maintenance database (paved's lock, the DDL).
    Admin,
    /// The read-only pool on the maintenance database (observing).
    Observer,
    /// A connection to the tenant's own database, opened for the call (extensions).
    Tenant,
    /// The same, read-only (observing the extensions).
    TenantReadOnly,
}

/// A bind parameter of a [`Statement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Int(i32),
    Text(String),
}

/// One statement exactly as the driver sends it: the connection it goes on, its text and its
/// parameters. The driver builds every statement it sends through the functions below and
/// runs it with [`Statement::run`]; [`create_statements`] lists a create's, so the
/// provisioning bench runs the same ones bare as paved's floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub on: On,
    /// Identifiers quoted and literals escaped (see [`exec`]); the role's password only ever
    /// as its SCRAM verifier.
    pub sql: String,
    /// `None`: sent as a simple query (DDL, which takes no parameters, or several statements
    /// in one transaction); `Some`: prepared, with these parameters.
    pub binds: Option<Vec<Bind>>,
    /// "Already exists" means a concurrent run made it: converge instead of failing.
    pub converges_on_conflict: bool,
}

impl Statement {
    fn simple(on: On, sql: String) -> Self {
        Self {
            on,
            sql,
            binds: None,
            converges_on_conflict: false,
        }
    }

    fn query(on: On, sql: &str, binds: Vec<Bind>) -> Self {
        Self {
            on,
            sql: sql.to_owned(),
            binds: Some(binds),
            converges_on_conflict: false,
        }
    }

    /// Sends it on `conn` as the driver does and returns its rows (none for a simple query).
    pub async fn run(&self, conn: &mut PgConnection) -> Result<Vec<PgRow>, DriverError> {
        let Some(binds) = &self.binds else {
            return exec(conn, &self.sql).await.map(|()| Vec::new());
        };
        let mut q = sqlx::query(AssertSqlSafe(self.sql.as_str()));
        for b in binds {
            q = match b {
                Bind::Int(i) => q.bind(*i),
                Bind::Text(t) => q.bind(t.as_str()),
            };
        }
        q.fetch_all(conn).await.map_err(classify)
    }
}

fn try_lock_statement(database: &str) -> Statement {
    Statement::query(
        On::Admin,
        "SELECT pg_catalog.pg_try_advisory_lock($1, pg_catalog.hashtext($2)) AS got",
        vec![Bind::Int(LOCK_CLASS), Bind::Text(database.to_owned())],
    )
}

/// Whether a session of paved's own role holds the lock (asked only when it was not taken).
fn lock_holder_statement(database: &str) -> Statement {
    Statement::query(
        On::Admin,
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l \
           JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
            AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
            AND l.classid = $1::pg_catalog.int4::pg_catalog.oid \
            AND l.objid = pg_catalog.hashtext($2)::pg_catalog.oid \
            AND a.usename = current_user) AS held",
        vec![Bind::Int(LOCK_CLASS), Bind::Text(database.to_owned())],
    )
}

fn unlock_statement(database: &str) -> Statement {
    Statement::query(
        On::Admin,
        "SELECT pg_catalog.pg_advisory_unlock($1, pg_catalog.hashtext($2))",
        vec![Bind::Int(LOCK_CLASS), Bind::Text(database.to_owned())],
    )
}

fn role_tag_statement(role: &str) -> Statement {
    Statement::query(
        On::Admin,
        "SELECT pg_catalog.shobj_description(oid, 'pg_authid') AS tag FROM pg_catalog.pg_roles WHERE rolname = $1",
        vec![Bind::Text(role.to_owned())],
    )
}

fn database_tag_statement(database: &str) -> Statement {
    Statement::query(
        On::Admin,
        "SELECT pg_catalog.shobj_description(d.oid, 'pg_database') AS tag, r.rolname AS owner \
         FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
        vec![Bind::Text(database.to_owned())],
    )
}

/// The DDL that converges `spec`'s role and database (after their names were checked),
/// given whether each exists already. `verifier` is the password's SCRAM verifier
/// ([`scram_verifier`]): the server stores one either way, and sending it instead of the
/// password keeps the password out of the server's log (log_statement = ddl, failed
/// statements).
pub fn converge_ddl(
    spec: &PostgresSpec,
    verifier: &str,
    tag: &str,
    role_exists: bool,
    database_exists: bool,
) -> Vec<Statement> {
    let (db, role) = (spec.database.quoted(), spec.owner.quoted());
    let (pw, tag_lit) = (quote_literal(verifier), quote_literal(tag));
    let limit = spec.connection_limit;
    let admin = |sql: String| Statement::simple(On::Admin, sql);
    // Each group below is one transaction: every commit on the target waits for its WAL
    // flush, and these statements change nothing that must be visible on its own.
    // A non-superuser admin must be a member of the owner role to create, own-transfer,
    // comment on and drop its database (PostgreSQL 15); the tenant gains nothing by it.
    let grant = format!("GRANT {role} TO CURRENT_USER");
    let mut out = vec![if role_exists {
        // Converges a role a crashed or earlier run made (same password, limit, login).
        admin(format!(
            "BEGIN; ALTER ROLE {role} LOGIN PASSWORD {pw} CONNECTION LIMIT {limit}; {grant}; COMMIT"
        ))
    } else {
        // Role and its tag in one transaction: there is never an untagged paved role.
        admin(format!(
            "BEGIN; CREATE ROLE {role} LOGIN PASSWORD {pw} CONNECTION LIMIT {limit}; COMMENT ON ROLE {role} IS {tag_lit}; {grant}; COMMIT"
        ))
    }];
    if !database_exists {
        // template0 accepts no connections: a tenant sitting in template1 cannot make
        // every CREATE DATABASE on the cluster fail ("being accessed by other users").
        // CREATE DATABASE runs in no transaction block, so alone.
        let mut create = admin(format!(
            "CREATE DATABASE {db} OWNER {role} CONNECTION LIMIT {limit} TEMPLATE template0"
        ));
        create.converges_on_conflict = true;
        out.push(create);
    }
    // Tag, owner and limit again (a database that existed, or a concurrent run's), and only
    // the owner (and admins) may connect: no tenant reaches another's database.
    out.push(admin(format!(
        "BEGIN; COMMENT ON DATABASE {db} IS {tag_lit}; ALTER DATABASE {db} OWNER TO {role}; \
         ALTER DATABASE {db} CONNECTION LIMIT {limit}; REVOKE ALL ON DATABASE {db} FROM PUBLIC; \
         GRANT ALL ON DATABASE {db} TO {role}; COMMIT"
    )));
    out
}

/// The offering's extensions, in the tenant's database.
fn extension_ddl(spec: &PostgresSpec) -> Vec<Statement> {
    spec.extensions
        .iter()
        .map(|ext| {
            // In `public` explicitly: with the pinned search_path it would land in
            // pg_catalog. Only trusted extensions install without a superuser.
            Statement::simple(
                On::Tenant,
                format!(
                    "CREATE EXTENSION IF NOT EXISTS {} SCHEMA public",
                    quote_ident(ext)
                ),
            )
        })
        .collect()
}

fn observe_database_statement(database: &str) -> Statement {
    Statement::query(
        On::Observer,
        "SELECT r.rolname AS owner, d.datconnlimit AS connection_limit, d.datallowconn AS allow_connections, \
         CASE WHEN pg_catalog.has_database_privilege(d.oid, 'CONNECT') \
                   OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE') \
              THEN pg_catalog.pg_database_size(d.oid) END AS size_bytes, \
         EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) a \
                 WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT') AS public_connect \
         FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
        vec![Bind::Text(database.to_owned())],
    )
}

fn observe_role_statement(role: &str) -> Statement {
    Statement::query(
        On::Observer,
        "SELECT rolcanlogin AS can_login, rolconnlimit AS connection_limit FROM pg_catalog.pg_roles WHERE rolname = $1",
        vec![Bind::Text(role.to_owned())],
    )
}

/// The extensions installed, read in a read-only transaction that is rolled back.
fn extension_read_statements() -> [Statement; 3] {
    [
        Statement::simple(On::TenantReadOnly, "BEGIN READ ONLY".into()),
        Statement::query(
            On::TenantReadOnly,
            "SELECT e.extname::pg_catalog.text AS extname FROM pg_catalog.pg_extension e \
             WHERE e.extname OPERATOR(pg_catalog.<>) 'plpgsql' ORDER BY 1",
            Vec::new(),
        ),
        Statement::simple(On::TenantReadOnly, "ROLLBACK".into()),
    ]
}

/// Every statement `apply` and then `observe` (the configure step) send for `spec` when
/// neither its role nor its database exists yet, as in a create, in the order sent:
/// paved's lock, the name checks, [`converge_ddl`], the unlock, the extensions, and the
/// observation. `verifier`: as for [`converge_ddl`]. The provisioning bench runs these bare.
pub fn create_statements(spec: &PostgresSpec, verifier: &str, tag: &str) -> Vec<Statement> {
    let (db, role) = (spec.database.as_str(), spec.owner.as_str());
    let mut out = vec![
        try_lock_statement(db),
        role_tag_statement(role),
        database_tag_statement(db),
    ];
    out.extend(converge_ddl(spec, verifier, tag, false, false));
    out.push(unlock_statement(db));
    out.extend(extension_ddl(spec));
    out.push(observe_database_statement(db));
    out.push(observe_role_statement(role));
    out.extend(extension_read_statements());
    out
}

/// The extensions installed in the database `conn` is on (sorted, without plpgsql).
async fn read_extensions(conn: &mut PgConnection) -> Result<Value, DriverError> {
    let mut rows = Vec::new();
    for st in extension_read_statements() {
        rows.extend(st.run(conn).await?);
    }
    Ok(json!(
        rows.iter()
            .map(|r| r.get::<String, _>("extname"))
            .collect::<Vec<_>>()
    ))
}

/// Tries paved's advisory lock for `database`. `Ok(true)`: taken; `Ok(false)`: held by a
/// session of another role (a tenant), which paved does not wait for; a transient error when
/// another paved session holds it, so the step is retried later without holding a worker.
async fn try_lock(conn: &mut PgConnection, database: &str) -> Result<bool, DriverError> {
    let got: bool = try_lock_statement(database)
        .run(conn)
        .await?
        .first()
        .is_some_and(|r| r.get("got"));
    if got {
        return Ok(true);
    }
    let paved_holds: bool = lock_holder_statement(database)
        .run(conn)
        .await?
        .first()
        .is_some_and(|r| r.get("held"));
    if paved_holds {
        Err(DriverError::Transient(format!(
            "another paved run is converging database {database}; retrying later"
        )))
    } else {
        tracing::warn!(
            database,
            "a session of another role holds paved's lock for this database; not waiting for it"
        );
        Ok(false)
    }
}

/// How `seen` differs from what paved provisions for `spec`: the database exists, is owned by
/// the resource's role, has its connection limit, accepts connections but not from PUBLIC,
/// has the offering's extensions; the role exists, logs in, has the same connection limit.
pub fn differences(spec: &PostgresSpec, seen: &Observed) -> Vec<super::Difference> {
    use super::Difference;
    let mut out = Vec::new();
    let st = &seen.state;
    let role = &st["role"];
    if role["exists"] != json!(true) {
        out.push(Difference::new("role", spec.owner.as_str(), Value::Null));
    } else {
        if role["can_login"] != json!(true) {
            out.push(Difference::new("role_login", true, &role["can_login"]));
        }
        if role["connection_limit"] != json!(spec.connection_limit) {
            out.push(Difference::new(
                "role_connection_limit",
                spec.connection_limit,
                &role["connection_limit"],
            ));
        }
    }
    if !seen.exists {
        out.insert(0, Difference::new("exists", true, false));
        return out;
    }
    if st["owner"] != json!(spec.owner.as_str()) {
        out.push(Difference::new("owner", spec.owner.as_str(), &st["owner"]));
    }
    if st["connection_limit"] != json!(spec.connection_limit) {
        out.push(Difference::new(
            "connection_limit",
            spec.connection_limit,
            &st["connection_limit"],
        ));
    }
    if st["allow_connections"] != json!(true) {
        out.push(Difference::new(
            "allow_connections",
            true,
            &st["allow_connections"],
        ));
    }
    if st["public_connect"] != json!(false) {
        out.push(Difference::new(
            "public_connect",
            false,
            &st["public_connect"],
        ));
    }
    let installed: Option<Vec<&str>> = st["extensions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let missing = match &installed {
        Some(have) => spec.extensions.iter().any(|e| !have.contains(&e.as_str())),
        None => !spec.extensions.is_empty(),
    };
    if missing {
        let mut want = spec.extensions.clone();
        want.sort();
        out.push(Difference::new("extensions", want, &st["extensions"]));
    }
    out
}

/// `None`: no such role; `Some(comment)` otherwise.
async fn role_tag(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<Option<String>>, DriverError> {
    let row = role_tag_statement(name).run(conn).await?.into_iter().next();
    Ok(row.map(|r| r.get::<Option<String>, _>("tag")))
}

/// `None`: no such database; `Some((comment, owner))` otherwise.
async fn database_tag(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<(Option<String>, String)>, DriverError> {
    let row = database_tag_statement(name)
        .run(conn)
        .await?
        .into_iter()
        .next();
    Ok(row.map(|r| {
        (
            r.get::<Option<String>, _>("tag"),
            r.get::<String, _>("owner"),
        )
    }))
}

/// PostgreSQL's SCRAM-SHA-256 verifier for `password` (RFC 5802/7677, the format of
/// `pg_authid.rolpassword`): `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
/// paved's generated passwords are ASCII, for which SASLprep changes nothing.
pub fn scram_verifier(password: &str) -> String {
    use base64::Engine as _;
    use ring::{digest, hmac, pbkdf2};
    const ITERATIONS: u32 = 4096;
    let salt: [u8; 16] = rand::random();
    let mut salted = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(ITERATIONS).expect("non-zero"),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        b64(&salt),
        b64(stored_key.as_ref()),
        b64(server_key.as_ref())
    )
}

/// Runs DDL that cannot take bind parameters. Every identifier in `sql` went through
/// [`Ident`]/[`quote_ident`] and every literal through [`quote_literal`]; that is what makes it
/// safe to assert.
async fn exec(conn: &mut PgConnection, sql: &str) -> Result<(), DriverError> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(classify)
}

/// Sorts a database error: duplicates are conflicts (converge), connection trouble is
/// transient (retry), anything else is permanent.
fn classify(e: sqlx::Error) -> DriverError {
    match &e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("42710" | "42P04" | "23505") => DriverError::Conflict(db.message().to_owned()),
            // Connection trouble, timeouts (57014), a lock not granted within lock_timeout
            // (55P03), serialization and deadlocks, and two sessions altering one role at once.
            Some(c)
                if c.starts_with("08")
                    || c.starts_with("57")
                    || matches!(c, "53300" | "55P03" | "40001" | "40P01")
                    || (c == "XX000" && db.message().contains("concurrently")) =>
            {
                DriverError::Transient(db.message().to_owned())
            }
            _ => DriverError::Permanent(db.message().to_owned()),
        },
        // A reply that is not PostgreSQL's protocol comes from a server restarting or from
        // something briefly on its port: retried like a refused connection (the request still
        // fails with this message once its attempts are spent).
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => DriverError::Transient(e.to_string()),
        _ => DriverError::Permanent(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn connection_trouble_is_retried_and_bad_sql_is_not() {
        let protocol = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert!(matches!(classify(protocol), DriverError::Transient(_)));
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut),
            DriverError::Transient(_)
        ));
        assert!(matches!(
            classify(sqlx::Error::RowNotFound),
            DriverError::Permanent(_)
        ));
    }

    fn spec() -> PostgresSpec {
        PostgresSpec::parse(
            &json!({"database": "orders_dev", "environment": "dev", "connection_limit": 20, "extensions": ["pgcrypto"]}),
            &["pgcrypto".into()],
        )
        .unwrap()
    }

    fn seen(state: Value) -> Observed {
        Observed {
            exists: true,
            state,
            self_transactions: 2,
        }
    }

    fn fields(d: &[super::super::Difference]) -> Vec<&str> {
        d.iter().map(|d| d.field.as_str()).collect()
    }

    #[test]
    fn differences_name_each_field_that_moved() {
        let good = json!({"owner": "orders_dev_owner", "connection_limit": 20, "allow_connections": true,
            "public_connect": false, "extensions": ["citext", "pgcrypto"],
            "role": {"exists": true, "can_login": true, "connection_limit": 20}});
        assert!(
            differences(&spec(), &seen(good.clone())).is_empty(),
            "extra extensions are the owner's business"
        );
        let mut bad = good.clone();
        bad["connection_limit"] = json!(50);
        bad["public_connect"] = json!(true);
        bad["extensions"] = json!([]);
        bad["role"]["can_login"] = json!(false);
        assert_eq!(
            fields(&differences(&spec(), &seen(bad))),
            [
                "role_login",
                "connection_limit",
                "public_connect",
                "extensions"
            ]
        );
        let gone = Observed {
            exists: false,
            state: json!({"role": {"exists": true, "can_login": true, "connection_limit": 20}}),
            self_transactions: 0,
        };
        assert_eq!(fields(&differences(&spec(), &gone)), ["exists"]);
    }
}
