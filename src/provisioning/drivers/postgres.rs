//! The `postgres` driver: a database and its owner role on a target cluster chosen per
//! environment. Every identifier is validated and quoted; every step converges, so running it
//! again after a crash neither duplicates nor fails.

use std::{collections::BTreeMap, time::Duration};

use sea_orm::sqlx::{
    self, AssertSqlSafe, ConnectOptions, Connection, PgPool, Row,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
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
    /// Parses the rendered part spec; cloud-only fields (instance class, storage, backups,
    /// multi-AZ) are priced and policed, but a PostgreSQL cluster has no such knobs.
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

/// Admin connections to each environment's cluster, opened on first use.
pub struct PostgresDriver {
    targets: BTreeMap<String, String>,
    allowed_extensions: Vec<String>,
    pools: Mutex<BTreeMap<String, PgPool>>,
}

impl PostgresDriver {
    pub fn new(targets: BTreeMap<String, String>, allowed_extensions: Vec<String>) -> Self {
        Self {
            targets,
            allowed_extensions,
            pools: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn parse(&self, spec: &Value) -> Result<PostgresSpec, DriverError> {
        PostgresSpec::parse(spec, &self.allowed_extensions)
    }

    fn target(&self, env: &str) -> Result<&str, DriverError> {
        self.targets.get(env).map(String::as_str).ok_or_else(|| {
            DriverError::Permanent(format!(
                "no postgres target configured for environment {env:?}"
            ))
        })
    }

    async fn admin(&self, env: &str) -> Result<PgPool, DriverError> {
        let mut pools = self.pools.lock().await;
        if let Some(p) = pools.get(env) {
            return Ok(p.clone());
        }
        let url = self.target(env)?;
        let opts: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(|e| DriverError::Permanent(format!("postgres target for {env}: {e}")))?
            // Statements carry generated passwords: never let sqlx log them (it logs slow ones).
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(transient)?;
        pools.insert(env.to_owned(), pool.clone());
        Ok(pool)
    }

    /// Creates (or converges) the role with `password`, the database, its grants and extensions.
    /// Two runs for the same database (a worker that died and its successor) take turns on an
    /// advisory lock, since PostgreSQL refuses concurrent DDL on one role ("tuple concurrently
    /// updated").
    pub async fn apply(
        &self,
        spec: &PostgresSpec,
        password: &str,
        tag: &str,
    ) -> Result<Applied, DriverError> {
        let pool = self.admin(&spec.environment).await?;
        let mut conn = pool.acquire().await.map_err(classify)?;
        sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
            .bind(spec.database.as_str())
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        let result = self.converge(&mut conn, spec, password, tag).await;
        let unlock = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(spec.database.as_str())
            .execute(&mut *conn)
            .await;
        if unlock.is_err() {
            // A session-level lock must not linger on a pooled connection.
            conn.detach();
        }
        result?;
        if !spec.extensions.is_empty() {
            let url = self.target(&spec.environment)?;
            let opts: PgConnectOptions = url
                .parse::<PgConnectOptions>()
                .map_err(|e| DriverError::Permanent(e.to_string()))?
                .database(spec.database.as_str())
                .disable_statement_logging();
            let ext_pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await
                .map_err(transient)?;
            for ext in &spec.extensions {
                let mut c = ext_pool.acquire().await.map_err(classify)?;
                exec(
                    &mut c,
                    &format!("CREATE EXTENSION IF NOT EXISTS {}", quote_ident(ext)),
                )
                .await?;
            }
            ext_pool.close().await;
        }
        let opts: PgConnectOptions = self
            .target(&spec.environment)?
            .parse()
            .map_err(|e: sqlx::Error| DriverError::Permanent(e.to_string()))?;
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
    async fn converge(
        &self,
        conn: &mut PgConnection,
        spec: &PostgresSpec,
        password: &str,
        tag: &str,
    ) -> Result<(), DriverError> {
        let (db, role) = (spec.database.quoted(), spec.owner.quoted());
        // The server stores a SCRAM verifier either way; sending one instead of the password
        // keeps the password out of the server's log (log_statement = ddl, failed statements).
        let (pw, tag_lit) = (quote_literal(&scram_verifier(password)), quote_literal(tag));
        let limit = spec.connection_limit;
        match role_tag(conn, spec.owner.as_str()).await? {
            None => {
                // Role and its tag in one transaction: there is never an untagged paved role.
                let created = exec(conn, &format!("BEGIN; CREATE ROLE {role} LOGIN PASSWORD {pw} CONNECTION LIMIT {limit}; COMMENT ON ROLE {role} IS {tag_lit}; COMMIT")).await;
                if created.is_err() {
                    // Leave no aborted transaction on a pooled connection.
                    let _ = exec(conn, "ROLLBACK").await;
                }
                created?;
            }
            Some(found) if found.as_deref() == Some(tag) => {}
            Some(_) => {
                return Err(DriverError::Permanent(format!(
                    "a role named {} already exists on this cluster and is not this resource's; choose another name",
                    spec.owner.as_str()
                )));
            }
        }
        exec(
            conn,
            &format!("ALTER ROLE {role} LOGIN PASSWORD {pw} CONNECTION LIMIT {limit}"),
        )
        .await?;
        match database_tag(conn, spec.database.as_str()).await? {
            None => {
                match exec(
                    conn,
                    &format!("CREATE DATABASE {db} OWNER {role} CONNECTION LIMIT {limit}"),
                )
                .await
                {
                    Err(DriverError::Conflict(_)) => {}
                    other => other?,
                }
                exec(conn, &format!("COMMENT ON DATABASE {db} IS {tag_lit}")).await?;
            }
            Some((found, owner))
                if found.as_deref() == Some(tag)
                    || (found.is_none() && owner == spec.owner.as_str()) =>
            {
                // Untagged but owned by our (tagged) role: a crash between CREATE and COMMENT.
                exec(conn, &format!("COMMENT ON DATABASE {db} IS {tag_lit}")).await?;
            }
            Some(_) => {
                return Err(DriverError::Permanent(format!(
                    "a database named {} already exists on this cluster and is not this resource's; choose another name",
                    spec.database.as_str()
                )));
            }
        }
        exec(conn, &format!("ALTER DATABASE {db} OWNER TO {role}")).await?;
        exec(
            conn,
            &format!("ALTER DATABASE {db} CONNECTION LIMIT {limit}"),
        )
        .await?;
        // Only the owner (and admins) may connect.
        exec(conn, &format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC")).await?;
        exec(conn, &format!("GRANT ALL ON DATABASE {db} TO {role}")).await
    }

    /// What exists: the database (owner, connection limit, whether it accepts connections,
    /// whether PUBLIC may connect, size), its owner role (login, connection limit) and the
    /// extensions installed in it. Reading the extensions connects to the database; that
    /// connection only reads (and rolls back), and is reported as `self_transactions`.
    pub async fn observe(&self, spec: &PostgresSpec) -> Result<Observed, DriverError> {
        let pool = self.admin(&spec.environment).await?;
        let row = sqlx::query(
            "SELECT r.rolname AS owner, d.datconnlimit AS connection_limit, d.datallowconn AS allow_connections, \
             pg_database_size(d.datname) AS size_bytes, \
             EXISTS (SELECT 1 FROM aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a \
                     WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT') AS public_connect \
             FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
        )
        .bind(spec.database.as_str())
        .fetch_optional(&pool)
        .await
        .map_err(classify)?;
        let role = sqlx::query(
            "SELECT rolcanlogin AS can_login, rolconnlimit AS connection_limit FROM pg_roles WHERE rolname = $1",
        )
        .bind(spec.owner.as_str())
        .fetch_optional(&pool)
        .await
        .map_err(classify)?;
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
                "size_bytes": r.get::<i64, _>("size_bytes"),
                "role": role,
                "extensions": extensions,
            }),
            self_transactions,
        })
    }

    /// The extensions installed in the database (sorted, without the built-in plpgsql), or the
    /// reason they could not be read; and how many transactions reading them committed.
    async fn extensions(&self, spec: &PostgresSpec) -> (Value, i64) {
        let opts = match self.target(&spec.environment).and_then(|u| {
            u.parse::<PgConnectOptions>()
                .map_err(|e| DriverError::Permanent(e.to_string()))
        }) {
            Ok(o) => o
                .database(spec.database.as_str())
                .application_name("paved-observer")
                .disable_statement_logging(),
            Err(e) => return (json!({"unreadable": e.to_string()}), 0),
        };
        let mut conn = match opts.connect().await {
            Ok(c) => c,
            Err(e) => return (json!({"unreadable": crate::db::redact(&e.to_string())}), 0),
        };
        // Connecting commits one transaction (backend start-up); the read is rolled back (one
        // rollback). Both show in pg_stat_database, hence `self_transactions` = 2.
        let read = async {
            sqlx::raw_sql("BEGIN READ ONLY").execute(&mut conn).await?;
            let rows = sqlx::query(
                "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname",
            )
            .fetch_all(&mut conn)
            .await?;
            sqlx::raw_sql("ROLLBACK").execute(&mut conn).await?;
            Ok::<_, sqlx::Error>(rows)
        }
        .await;
        let _ = conn.close().await;
        match read {
            Ok(rows) => (
                json!(
                    rows.iter()
                        .map(|r| r.get::<String, _>("extname"))
                        .collect::<Vec<_>>()
                ),
                2,
            ),
            Err(e) => (json!({"unreadable": e.to_string()}), 2),
        }
    }

    /// Drops the database (after ending its connections) and the role. Gone already is fine.
    pub async fn destroy(&self, spec: &PostgresSpec, tag: &str) -> Result<(), DriverError> {
        let pool = self.admin(&spec.environment).await?;
        let mut conn = pool.acquire().await.map_err(classify)?;
        let role_is_ours =
            matches!(role_tag(&mut conn, spec.owner.as_str()).await?, Some(Some(t)) if t == tag);
        match database_tag(&mut conn, spec.database.as_str()).await? {
            None => {}
            Some((found, owner))
                if found.as_deref() == Some(tag)
                    || (found.is_none() && role_is_ours && owner == spec.owner.as_str()) =>
            {
                sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
                    .bind(spec.database.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(classify)?;
                exec(
                    &mut conn,
                    &format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        spec.database.quoted()
                    ),
                )
                .await?;
            }
            Some(_) => {
                return Err(DriverError::Permanent(format!(
                    "database {} is not this resource's; refusing to drop it",
                    spec.database.as_str()
                )));
            }
        }
        if role_is_ours {
            exec(
                &mut conn,
                &format!("DROP ROLE IF EXISTS {}", spec.owner.quoted()),
            )
            .await?;
        }
        Ok(())
    }

    /// Open connections now and transactions so far (cumulative; callers diff two readings).
    pub async fn usage(&self, spec: &PostgresSpec) -> Result<Usage, DriverError> {
        let pool = self.admin(&spec.environment).await?;
        let row = sqlx::query("SELECT numbackends, xact_commit + xact_rollback AS xacts FROM pg_stat_database WHERE datname = $1")
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
    let row = sqlx::query(
        "SELECT shobj_description(oid, 'pg_authid') AS tag FROM pg_roles WHERE rolname = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await
    .map_err(classify)?;
    Ok(row.map(|r| r.get::<Option<String>, _>("tag")))
}

/// `None`: no such database; `Some((comment, owner))` otherwise.
async fn database_tag(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<(Option<String>, String)>, DriverError> {
    let row = sqlx::query(
        "SELECT shobj_description(d.oid, 'pg_database') AS tag, r.rolname AS owner \
         FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await
    .map_err(classify)?;
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

fn transient(e: sqlx::Error) -> DriverError {
    DriverError::Transient(e.to_string())
}

/// Sorts a database error: duplicates are conflicts (converge), connection trouble is
/// transient (retry), anything else is permanent.
fn classify(e: sqlx::Error) -> DriverError {
    match &e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("42710" | "42P04" | "23505") => DriverError::Conflict(db.message().to_owned()),
            Some(c) if c.starts_with("08") || c.starts_with("57") || c == "53300" => {
                DriverError::Transient(db.message().to_owned())
            }
            _ => DriverError::Permanent(db.message().to_owned()),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => DriverError::Transient(e.to_string()),
        _ => DriverError::Permanent(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
