//! The `redis` driver: an ACL user confined to its own key prefix (`~{prefix}:*`) with the
//! command categories the offering allows. Every ACL rule is built from validated tokens.

use std::collections::BTreeMap;

use redis::{AsyncCommands, aio::MultiplexedConnection};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Applied, DriverError, Observed, Usage};

#[derive(Debug, Clone, PartialEq)]
pub struct RedisSpec {
    /// Keys live under `{key_prefix}:`.
    pub key_prefix: String,
    pub user: String,
    pub environment: String,
    /// ACL category rules, e.g. `+@read`, `-@dangerous`.
    pub commands: Vec<String>,
    pub evict_keys_on_delete: bool,
}

#[derive(Deserialize)]
struct RawSpec {
    key_prefix: String,
    environment: String,
    commands: String,
    #[serde(default)]
    evict_keys_on_delete: bool,
}

impl RedisSpec {
    pub fn parse(spec: &Value) -> Result<Self, DriverError> {
        let raw: RawSpec = serde_json::from_value(spec.clone())
            .map_err(|e| DriverError::Permanent(format!("redis spec: {e}")))?;
        let p = &raw.key_prefix;
        let prefix_ok = !p.is_empty()
            && p.len() <= 100
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !prefix_ok {
            return Err(DriverError::Permanent(format!(
                "key_prefix: {p:?} is not allowed (lower-case letters, digits, '-' and '_', at most 100 characters)"
            )));
        }
        let commands: Vec<String> = raw.commands.split_whitespace().map(str::to_owned).collect();
        for c in &commands {
            let ok = (c.starts_with("+@") || c.starts_with("-@"))
                && c.len() > 2
                && c[2..].chars().all(|ch| ch.is_ascii_lowercase());
            if !ok {
                return Err(DriverError::Permanent(format!(
                    "commands: {c:?} is not an ACL category rule like +@read or -@dangerous"
                )));
            }
        }
        if commands.is_empty() {
            return Err(DriverError::Permanent(
                "commands: at least one ACL category rule is needed".into(),
            ));
        }
        Ok(Self {
            user: format!("paved-{p}"),
            key_prefix: raw.key_prefix,
            environment: raw.environment,
            commands,
            evict_keys_on_delete: raw.evict_keys_on_delete,
        })
    }

    fn key_pattern(&self) -> String {
        format!("{}:*", self.key_prefix)
    }
}

/// Rules paved appends after every offering's command categories, so no offering can lift
/// them: a tenant stays in database 0 (no `SELECT`, `SWAPDB`, `MOVE`, `COPY … DB`), sees
/// nothing server-wide (no `DBSIZE`, `KEYS`, `SCAN`, `RANDOMKEY`, `PUBSUB`, `INFO`, `CLIENT
/// LIST`, `CONFIG`, `MONITOR`: `@admin` and `@dangerous`), cannot change what other tenants
/// share (`FLUSHALL`, `FLUSHDB`, `FUNCTION` libraries, `SCRIPT FLUSH`) and cannot track every
/// key modified on the server (`CLIENT TRACKING … BCAST`). Key patterns confine the rest.
pub const CONFINEMENT: &[&str] = &[
    "-@admin",
    "-@dangerous",
    "-select",
    "-swapdb",
    "-move",
    "-copy",
    "-dbsize",
    "-keys",
    "-scan",
    "-randomkey",
    "-pubsub",
    "-function",
    "-script|flush",
    "-script|kill",
    "-client|tracking",
];

pub struct RedisDriver {
    targets: BTreeMap<String, String>,
    conns: Mutex<BTreeMap<String, MultiplexedConnection>>,
}

impl RedisDriver {
    pub fn new(targets: BTreeMap<String, String>) -> Self {
        Self {
            targets,
            conns: Mutex::new(BTreeMap::new()),
        }
    }

    /// The configured URL of `env`'s target (for where a message points; never shown whole).
    pub fn target_url(&self, env: &str) -> Option<&str> {
        self.targets.get(env).map(String::as_str)
    }

    fn target(&self, env: &str) -> Result<&str, DriverError> {
        self.targets.get(env).map(String::as_str).ok_or_else(|| {
            DriverError::Permanent(format!(
                "no redis target configured for environment {env:?}"
            ))
        })
    }

    async fn conn(&self, env: &str) -> Result<MultiplexedConnection, DriverError> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(env) {
            return Ok(c.clone());
        }
        let client = redis::Client::open(self.target(env)?)
            .map_err(|e| DriverError::Permanent(format!("redis target for {env}: {e}")))?;
        let c = client
            .get_multiplexed_async_connection()
            .await
            .map_err(classify)?;
        conns.insert(env.to_owned(), c.clone());
        Ok(c)
    }

    /// Creates or resets the ACL user: `reset` first, so re-running converges exactly. A user
    /// that exists without this resource's ownership marker is someone else's and is refused.
    pub async fn apply(
        &self,
        spec: &RedisSpec,
        password: &str,
        tag: &str,
    ) -> Result<Applied, DriverError> {
        let mut c = self.conn(&spec.environment).await?;
        let marker: Option<String> = c
            .get(owner_key(&spec.user))
            .await
            .map_err(|e| self.fail(&spec.environment, e))?;
        let exists = !matches!(
            redis::cmd("ACL")
                .arg("GETUSER")
                .arg(&spec.user)
                .query_async::<redis::Value>(&mut c)
                .await
                .map_err(|e| self.fail(&spec.environment, e))?,
            redis::Value::Nil
        );
        if marker.as_deref().is_some_and(|m| m != tag) || (exists && marker.is_none()) {
            return Err(DriverError::Permanent(format!(
                "a Redis user named {} already exists and is not this resource's; choose another name",
                spec.user
            )));
        }
        if marker.is_none() {
            // A new user: keys already under its prefix belong to whoever had it before (a
            // deletion that kept its keys); the new owner must never read them.
            let left = self.keys_everywhere(&spec.environment, spec).await?;
            if let Some((db, n)) = left.iter().find(|(_, n)| *n > 0) {
                return Err(DriverError::Permanent(format!(
                    "{n} key(s) under {}: remain from a previous owner (database {db}); choose another name, or have an administrator remove them",
                    spec.key_pattern()
                )));
            }
        }
        // The marker first: a crash after it leaves a user we recognise as ours.
        c.set::<_, _, ()>(owner_key(&spec.user), tag)
            .await
            .map_err(|e| self.fail(&spec.environment, e))?;
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(&spec.user)
            .arg("reset")
            .arg("on")
            .arg(format!(">{password}"))
            .arg(format!("~{}", spec.key_pattern()))
            .arg("resetchannels");
        for rule in spec
            .commands
            .iter()
            .map(String::as_str)
            .chain(CONFINEMENT.iter().copied())
        {
            cmd.arg(rule);
        }
        cmd.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.fail(&spec.environment, e))?;
        let url: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(self.target(&spec.environment)?)
                .map_err(|e| DriverError::Permanent(e.to_string()))?;
        let (host, port, tls) = match url.addr() {
            redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p, false),
            redis::ConnectionAddr::TcpTls {
                host: h, port: p, ..
            } => (h.clone(), *p, true),
            other => (other.to_string(), 0, false),
        };
        Ok(Applied {
            outputs: json!({"host": host, "port": port, "tls": tls, "username": spec.user, "key_prefix": format!("{}:", spec.key_prefix)}),
            secrets: json!({"password": password}),
        })
    }

    /// The user as Redis has it (`ACL GETUSER`): flags, key patterns, command rules.
    pub async fn observe(&self, spec: &RedisSpec) -> Result<Observed, DriverError> {
        let mut c = self.conn(&spec.environment).await?;
        let v: redis::Value = redis::cmd("ACL")
            .arg("GETUSER")
            .arg(&spec.user)
            .query_async(&mut c)
            .await
            .map_err(classify)?;
        if v == redis::Value::Nil {
            return Ok(Observed {
                exists: false,
                state: json!({}),
                self_transactions: 0,
            });
        }
        let state = acl_map(v)?;
        Ok(Observed {
            exists: true,
            state: Value::Object(state),
            self_transactions: 0,
        })
    }

    /// What `ACL GETUSER` answers for a user paved set up from `spec`, as this Redis server
    /// writes it (Redis rewrites command rules into its own normal form, which differs between
    /// versions): a disabled probe user with the same rules, read back and deleted at once. It
    /// has no password and is off, so nobody can log in as it meanwhile.
    pub async fn expected_state(&self, spec: &RedisSpec) -> Result<Value, DriverError> {
        let mut c = self.conn(&spec.environment).await?;
        let probe = format!("__paved_probe_{}", uuid::Uuid::new_v4().simple());
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(&probe)
            .arg("reset")
            .arg("off")
            .arg(format!("~{}", spec.key_pattern()))
            .arg("resetchannels");
        for rule in spec
            .commands
            .iter()
            .map(String::as_str)
            .chain(CONFINEMENT.iter().copied())
        {
            cmd.arg(rule);
        }
        let set = cmd
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| self.fail(&spec.environment, e));
        let read = match set {
            Ok(()) => redis::cmd("ACL")
                .arg("GETUSER")
                .arg(&probe)
                .query_async::<redis::Value>(&mut c)
                .await
                .map_err(classify),
            Err(e) => Err(e),
        };
        let _ = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&probe)
            .query_async::<i64>(&mut c)
            .await;
        let mut state = acl_map(read?)?;
        // A live user is on; the probe is off on purpose.
        state.insert("flags".into(), json!(["on"]));
        Ok(Value::Object(state))
    }

    /// Deletes the user and, when the spec says so, every key under its prefix.
    pub async fn destroy(&self, spec: &RedisSpec, tag: &str) -> Result<(), DriverError> {
        let mut c = self.conn(&spec.environment).await?;
        let marker: Option<String> = c
            .get(owner_key(&spec.user))
            .await
            .map_err(|e| self.fail(&spec.environment, e))?;
        match marker.as_deref() {
            Some(m) if m == tag => {}
            // Never created (or already destroyed): nothing of ours to remove.
            None => return Ok(()),
            // Someone else's user (a create that collided with it): not ours to remove, and
            // nothing stops this resource from being deleted.
            Some(_) => {
                tracing::info!(user = %spec.user, "Redis user is not this resource's; leaving it");
                return Ok(());
            }
        }
        redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&spec.user)
            .query_async::<i64>(&mut c)
            .await
            .map_err(classify)?;
        if spec.evict_keys_on_delete {
            // Every logical database: a tenant confined to one by ACL today may have written
            // elsewhere under an older user, and the next owner of the name must find nothing.
            for db in self.databases_with_keys(&spec.environment).await? {
                let mut d = self.conn_to_db(&spec.environment, db).await?;
                let keys = scan(&mut d, spec).await?;
                for chunk in keys.chunks(500) {
                    d.unlink::<_, i64>(chunk).await.map_err(classify)?;
                }
            }
        }
        c.del::<_, i64>(owner_key(&spec.user))
            .await
            .map_err(|e| self.fail(&spec.environment, e))?;
        Ok(())
    }

    /// Classifies an error, and forgets the cached connection when it is broken so the next
    /// call reconnects (a restarted Redis must not need a restarted paved).
    fn fail(&self, env: &str, e: redis::RedisError) -> DriverError {
        let err = classify(e);
        if matches!(err, DriverError::Transient(_))
            && let Ok(mut conns) = self.conns.try_lock()
        {
            conns.remove(env);
        }
        err
    }

    /// Clients logged in as the tenant's user now, keys under its prefix, and how long ago the
    /// most recently used of them (up to 1000 looked at) was touched. Reading access times with
    /// `OBJECT IDLETIME` does not touch the keys.
    pub async fn usage(&self, spec: &RedisSpec) -> Result<Usage, DriverError> {
        let mut c = self.conn(&spec.environment).await?;
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail(&spec.environment, e))?;
        let me = format!("user={}", spec.user);
        let active = clients
            .lines()
            .filter(|l| l.split_whitespace().any(|f| f == me))
            .count() as i64;
        let keys = scan(&mut c, spec).await?;
        let mut idle: Option<i64> = None;
        for key in keys.iter().take(1000) {
            // Fails under an LFU eviction policy (no access times): then idle stays unknown.
            match redis::cmd("OBJECT")
                .arg("IDLETIME")
                .arg(key)
                .query_async::<Option<i64>>(&mut c)
                .await
            {
                Ok(Some(t)) => idle = Some(idle.map_or(t, |i| i.min(t))),
                Ok(None) => {}
                Err(_) => {
                    idle = None;
                    break;
                }
            }
        }
        Ok(Usage {
            active,
            activity_counter: keys.len() as i64,
            idle_seconds: idle,
        })
    }

    /// The logical databases holding any key (`INFO keyspace`); every database the server
    /// has (`CONFIG GET databases`, else 16) where that cannot be read.
    async fn databases_with_keys(&self, env: &str) -> Result<Vec<i64>, DriverError> {
        let mut c = self.conn(env).await?;
        if let Ok(info) = redis::cmd("INFO")
            .arg("keyspace")
            .query_async::<String>(&mut c)
            .await
        {
            return Ok(info
                .lines()
                .filter_map(|l| l.strip_prefix("db")?.split_once(':')?.0.parse().ok())
                .collect());
        }
        let got: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("databases")
            .query_async(&mut c)
            .await;
        let n: i64 = got
            .ok()
            .and_then(|v| v.get(1).and_then(|n| n.parse().ok()))
            .unwrap_or(16);
        Ok((0..n).collect())
    }

    /// A connection of its own to logical database `db` (never `SELECT` on the shared one).
    async fn conn_to_db(&self, env: &str, db: i64) -> Result<MultiplexedConnection, DriverError> {
        let info = redis::IntoConnectionInfo::into_connection_info(self.target(env)?)
            .map_err(|e| DriverError::Permanent(format!("redis target for {env}: {e}")))?;
        let settings = info.redis_settings().clone().set_db(db);
        redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| DriverError::Permanent(format!("redis target for {env}: {e}")))?
            .get_multiplexed_async_connection()
            .await
            .map_err(classify)
    }

    /// Keys under the prefix, per logical database.
    async fn keys_everywhere(
        &self,
        env: &str,
        spec: &RedisSpec,
    ) -> Result<Vec<(i64, usize)>, DriverError> {
        let mut out = Vec::new();
        for db in self.databases_with_keys(env).await? {
            let mut d = self.conn_to_db(env, db).await?;
            out.push((db, scan(&mut d, spec).await?.len()));
        }
        Ok(out)
    }

    /// What an operator should know about each target: a `default` user that is on without a
    /// password lets anyone who reaches the server act as an administrator, whatever paved's
    /// ACL users say.
    pub async fn target_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (env, url) in &self.targets {
            if !seen.insert(url.clone()) {
                continue;
            }
            let where_ = format!("redis target {env}");
            let v = match self.conn(env).await {
                Ok(mut c) => redis::cmd("ACL")
                    .arg("GETUSER")
                    .arg("default")
                    .query_async::<redis::Value>(&mut c)
                    .await
                    .map_err(classify),
                Err(e) => Err(e),
            };
            match v.and_then(acl_map) {
                Ok(user) => {
                    let flags = user.get("flags").cloned().unwrap_or(Value::Null);
                    let has = |f: &str| flags.as_array().is_some_and(|a| a.iter().any(|x| x == f));
                    if has("on") && has("nopass") {
                        out.push(format!(
                            "{where_}: the default user is on without a password, so tenants need no credentials at all; give paved its own admin user and run ACL SETUSER default off (or resetpass with a password)"
                        ));
                    }
                }
                Err(e) => out.push(format!("{where_}: cannot check it: {e}")),
            }
        }
        out
    }
}

async fn scan(c: &mut MultiplexedConnection, spec: &RedisSpec) -> Result<Vec<String>, DriverError> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(spec.key_pattern())
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await
            .map_err(classify)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// An `ACL GETUSER` answer as a JSON object, without the password hashes (credentials too).
fn acl_map(v: redis::Value) -> Result<serde_json::Map<String, Value>, DriverError> {
    let pairs: Vec<(redis::Value, redis::Value)> = match v {
        redis::Value::Map(pairs) => pairs,
        redis::Value::Array(items) => items
            .chunks(2)
            .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone())))
            .collect(),
        other => {
            return Err(DriverError::Permanent(format!(
                "unexpected ACL GETUSER answer: {other:?}"
            )));
        }
    };
    let mut state = serde_json::Map::new();
    for (k, v) in pairs {
        if let Ok(key) = redis::from_redis_value::<String>(k)
            && key != "passwords"
        {
            state.insert(key, to_json(&v));
        }
    }
    Ok(state)
}

/// How the observed user differs from `expected` (see [`RedisDriver::expected_state`]): it
/// exists and is enabled, and its key patterns, channels, command rules and selectors are the
/// ones paved set.
pub fn differences(expected: &Value, seen: &Observed) -> Vec<super::Difference> {
    use super::Difference;
    if !seen.exists {
        return vec![Difference::new("exists", true, false)];
    }
    let st = &seen.state;
    let mut out = Vec::new();
    let enabled = st["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "on"));
    if !enabled {
        out.push(Difference::new("enabled", true, false));
    }
    for field in ["keys", "channels", "commands", "selectors"] {
        if st[field] != expected[field] {
            out.push(Difference::new(field, &expected[field], &st[field]));
        }
    }
    out
}

fn to_json(v: &redis::Value) -> Value {
    match v {
        redis::Value::Nil => Value::Null,
        redis::Value::Int(i) => json!(i),
        redis::Value::BulkString(b) => json!(String::from_utf8_lossy(b)),
        redis::Value::SimpleString(s) => json!(s),
        redis::Value::Okay => json!("OK"),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        redis::Value::Map(pairs) => Value::Array(
            pairs
                .iter()
                .map(|(k, v)| json!([to_json(k), to_json(v)]))
                .collect(),
        ),
        redis::Value::Boolean(b) => json!(b),
        redis::Value::Double(d) => json!(d),
        other => json!(format!("{other:?}")),
    }
}

/// Where paved marks the users it created (outside every tenant prefix, which must start with
/// a letter or digit).
fn owner_key(user: &str) -> String {
    format!("__paved_owner__:{user}")
}

fn classify(e: redis::RedisError) -> DriverError {
    if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_connection_dropped()
        || matches!(
            e.retry_method(),
            redis::RetryMethod::WaitAndRetry | redis::RetryMethod::Reconnect
        )
    {
        DriverError::Transient(e.to_string())
    } else {
        DriverError::Permanent(e.to_string())
    }
}
