//! Drivers: the only code that talks to the systems paved provisions. One shape for all
//! (apply, observe, destroy, usage; plan is what the offering rendered); a driver knows
//! nothing of HTTP or Backstage.
//!
//! The engine and the day-2 jobs see them through [`Provisioner`]: [`Drivers`] is the real
//! set, and tests put a fake (`fake::FakeDriver`) or a wrapper in its place.

// Unit tests, and benches (the `fake-driver` feature, which paved's dev-dependency on itself
// turns on for tests and benches only): never in what ships.
pub mod context;
#[cfg(any(test, feature = "fake-driver"))]
pub mod fake;
pub mod postgres;
pub mod redis;
pub mod settings;
pub mod terraform;

use std::{future::Future, pin::Pin};

use serde_json::Value;

/// Why a driver call failed, and so what the engine does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// Worth retrying (connection refused, timeouts, server restarting).
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help (invalid spec, permission denied); the request fails with this.
    #[error("{0}")]
    Permanent(String),
    /// Something exists already (a concurrent run created it); converge instead of failing.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The request was cancelled while the call ran, and the call stopped (what it left is
    /// recorded as far as the driver could: a Terraform run writes its state).
    #[error("cancelled: {0}")]
    Cancelled(String),
}

/// What an apply produced: outputs anyone on the team may see, and secrets for the encrypted
/// store only.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub outputs: Value,
    pub secrets: Value,
}

/// The actual state of a provisioned thing.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub exists: bool,
    pub state: Value,
    /// Transactions the observation itself committed on the tenant's database (connecting
    /// commits one on PostgreSQL), so usage counters can leave paved's own activity out.
    pub self_transactions: i64,
}

/// One way the actual state differs from what paved provisioned.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Difference {
    /// e.g. `connection_limit`, `exists`, `commands`.
    pub field: String,
    pub expected: Value,
    pub actual: Value,
}

impl Difference {
    pub fn new(
        field: &str,
        expected: impl serde::Serialize,
        actual: impl serde::Serialize,
    ) -> Self {
        Self {
            field: field.into(),
            expected: serde_json::to_value(expected).unwrap_or(Value::Null),
            actual: serde_json::to_value(actual).unwrap_or(Value::Null),
        }
    }
}

/// Activity: what is open now and a counter that moves with use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Open connections: PostgreSQL backends on the database, Redis clients logged in as the
    /// tenant's user.
    pub active: i64,
    /// PostgreSQL: transactions so far (committed + rolled back, cumulative); Redis: keys under
    /// the prefix. Callers compare two readings.
    pub activity_counter: i64,
    /// Redis: seconds since the most recently touched key under the prefix was used (`OBJECT
    /// IDLETIME`), when there are keys and the eviction policy keeps access times.
    pub idle_seconds: Option<i64>,
}

/// A generated credential: 32 characters from a 62-letter alphabet (~190 bits), safe inside
/// SQL literals, Redis ACL rules and URLs.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..32)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A driver call's future, boxed so callers can hold any [`Provisioner`] as `dyn`.
pub type DriverFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DriverError>> + Send + 'a>>;

/// The seam between paved and the systems it provisions: everything the engine and the day-2
/// jobs ask of drivers. [`Drivers`] is the real one; what a part *is* (its identity, whether it
/// may be renamed) is a fact of its [`PartSpec`], the same whoever acts on it.
pub trait Provisioner: Send + Sync {
    /// Checks a rendered part spec for the driver named `driver` (no I/O).
    fn parse(&self, driver: &str, spec: &Value) -> Result<PartSpec, DriverError>;
    /// Creates or converges the part; `tag` marks what this resource owns, and nothing
    /// untagged is ever taken over.
    fn apply<'a>(
        &'a self,
        spec: &'a PartSpec,
        password: &'a str,
        tag: &'a str,
    ) -> DriverFuture<'a, Applied>;
    fn observe<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, Observed>;
    /// Observes the part and compares it with what paved provisions for `spec`.
    fn drift<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, (Observed, Vec<Difference>)>;
    /// Removes the part, only if it carries `tag`.
    fn destroy<'a>(&'a self, spec: &'a PartSpec, tag: &'a str) -> DriverFuture<'a, ()>;
    fn usage<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, Usage>;
}

/// Every driver paved has, chosen by the part's `driver` name.
pub struct Drivers {
    pub postgres: postgres::PostgresDriver,
    pub redis: redis::RedisDriver,
    pub terraform: terraform::TerraformDriver,
}

/// A part's spec, parsed by its driver: what the driver will act on.
#[derive(Debug, Clone)]
pub enum PartSpec {
    Postgres(postgres::PostgresSpec),
    Redis(redis::RedisSpec),
    Terraform(terraform::TerraformSpec),
}

impl DriverError {
    /// Prefixes where it happened, so a failed request names what was unreachable or refused
    /// ("Redis (dev): Connection refused"), not just the socket error.
    pub fn within(self, what: &str) -> Self {
        match self {
            DriverError::Transient(m) => DriverError::Transient(format!("{what}: {m}")),
            DriverError::Permanent(m) => DriverError::Permanent(format!("{what}: {m}")),
            DriverError::Conflict(m) => DriverError::Conflict(format!("{what}: {m}")),
            DriverError::Cancelled(m) => DriverError::Cancelled(format!("{what}: {m}")),
        }
    }
}

impl PartSpec {
    /// The server a part lives on, for messages: `PostgreSQL (dev)`.
    pub fn server(&self) -> String {
        match self {
            PartSpec::Postgres(s) => format!("PostgreSQL ({})", s.environment),
            PartSpec::Redis(s) => format!("Redis ({})", s.environment),
            PartSpec::Terraform(s) => format!("Terraform ({})", s.environment),
        }
    }

    /// The driver name an offering's part gives for it (`parse`'s `driver`).
    pub fn driver(&self) -> &'static str {
        match self {
            PartSpec::Postgres(_) => "postgres",
            PartSpec::Redis(_) => "redis",
            PartSpec::Terraform(_) => "terraform",
        }
    }

    /// What the part is on its target: `postgres dev/orders_dev`, `redis dev/paved-cache`.
    pub fn identity(&self) -> String {
        match self {
            PartSpec::Postgres(s) => format!("postgres {}/{}", s.environment, s.database.as_str()),
            PartSpec::Redis(s) => format!("redis {}/{}", s.environment, s.user),
            PartSpec::Terraform(s) => s.identity(),
        }
    }

    /// Whether both specs name the same thing on the same target (then an update converges
    /// it; otherwise the old one is replaced).
    pub fn same_identity(&self, other: &PartSpec) -> bool {
        self.identity() == other.identity()
    }

    /// Whether an update may replace the part by another of a new name: a Redis user and its
    /// ephemeral keys may; a database would lose its data.
    pub fn renamable(&self) -> bool {
        matches!(self, PartSpec::Redis(_))
    }
}

/// `host:port` of a target URL (`default_port` when it names none).
fn address(url: &str, default_port: u16) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str().filter(|h| !h.is_empty())?;
    Some(format!("{host}:{}", u.port().unwrap_or(default_port)))
}

/// Logs, once at start-up and in the background, what makes a target unsafe for tenants (see
/// [`Drivers::target_warnings`]); an unreachable target is reported, never fatal.
/// `own_database` is paved's database URL, named as such when it lives on a target.
pub fn warn_about_targets(settings: &settings::DriversSettings, own_database: &str) {
    let drivers = Drivers::from_settings(settings);
    let own = own_database.to_owned();
    tokio::spawn(async move {
        let checks = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            drivers.target_warnings(Some(&own)),
        );
        match checks.await {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!("{w}");
                }
            }
            Err(_) => tracing::warn!("checking the provisioning targets timed out"),
        }
    });
}

impl Drivers {
    /// Every PostgreSQL and Redis target's warnings (see the drivers' `target_warnings`);
    /// `own_database` is paved's own database URL.
    pub async fn target_warnings(&self, own_database: Option<&str>) -> Vec<String> {
        let mut out = self.postgres.target_warnings(own_database).await;
        out.extend(self.redis.target_warnings().await);
        out
    }

    pub fn from_settings(s: &settings::DriversSettings) -> Self {
        Self {
            postgres: postgres::PostgresDriver::new(
                s.postgres.targets.clone(),
                s.postgres.extensions.clone(),
            )
            .with_timeouts(s.postgres.lock_timeout_ms, s.postgres.statement_timeout_ms),
            redis: redis::RedisDriver::new(s.redis.targets.clone()),
            // Modules are found under the bundled `templates/` until the app says where its
            // templates are (`with_terraform`), and runs need the app's state backend.
            terraform: terraform::TerraformDriver::new(
                s.terraform.clone(),
                std::path::PathBuf::from("templates"),
            ),
        }
    }

    /// The Terraform driver the app wires: modules under its templates folder, state in
    /// paved's own backend.
    pub fn with_terraform(mut self, driver: terraform::TerraformDriver) -> Self {
        self.terraform = driver;
        self
    }

    /// Where a part lives, for messages: `PostgreSQL (dev) at 127.0.0.1:5432`. The host and
    /// port only: a target URL's user and password never appear.
    pub fn location(&self, spec: &PartSpec) -> String {
        let (url, default_port) = match spec {
            PartSpec::Postgres(s) => (self.postgres.target_url(&s.environment), 5432),
            PartSpec::Redis(s) => (self.redis.target_url(&s.environment), 6379),
            // A module reaches whatever it provisions itself: no address paved knows.
            PartSpec::Terraform(_) => (None, 0),
        };
        match url.and_then(|u| address(u, default_port)) {
            Some(a) => format!("{} at {a}", spec.server()),
            None => spec.server(),
        }
    }

    pub fn parse(&self, driver: &str, spec: &Value) -> Result<PartSpec, DriverError> {
        match driver {
            "postgres" => self.postgres.parse(spec).map(PartSpec::Postgres),
            "redis" => redis::RedisSpec::parse(spec).map(PartSpec::Redis),
            "terraform" => self.terraform.parse(spec).map(PartSpec::Terraform),
            other => Err(DriverError::Permanent(format!("unknown driver {other:?}"))),
        }
    }

    /// `tag` marks what this resource owns; drivers never take over or destroy untagged things.
    pub async fn apply(
        &self,
        spec: &PartSpec,
        password: &str,
        tag: &str,
    ) -> Result<Applied, DriverError> {
        match spec {
            PartSpec::Postgres(s) => self.postgres.apply(s, password, tag).await,
            PartSpec::Redis(s) => self.redis.apply(s, password, tag).await,
            PartSpec::Terraform(s) => self.terraform.apply(s, password, tag).await,
        }
        .map_err(|e| e.within(&self.location(spec)))
    }

    pub async fn observe(&self, spec: &PartSpec) -> Result<Observed, DriverError> {
        match spec {
            PartSpec::Postgres(s) => self.postgres.observe(s).await,
            PartSpec::Redis(s) => self.redis.observe(s).await,
            PartSpec::Terraform(s) => self.terraform.observe(s).await,
        }
        .map_err(|e| e.within(&self.location(spec)))
    }

    /// Observes the part and compares it with what paved provisions for `spec`.
    pub async fn drift(&self, spec: &PartSpec) -> Result<(Observed, Vec<Difference>), DriverError> {
        match spec {
            PartSpec::Postgres(s) => {
                let seen = self.postgres.observe(s).await?;
                let diff = postgres::differences(s, &seen);
                Ok((seen, diff))
            }
            PartSpec::Redis(s) => {
                let seen = self.redis.observe(s).await?;
                let diff = if seen.exists {
                    let expected = self.redis.expected_state(s).await?;
                    redis::differences(&expected, &seen)
                } else {
                    redis::differences(&Value::Null, &seen)
                };
                Ok((seen, diff))
            }
            // `plan -refresh-only`: what the module's providers see changed, per resource and
            // attribute.
            PartSpec::Terraform(s) => self
                .terraform
                .drift(s)
                .await
                .map_err(|e| e.within(&self.location(spec))),
        }
    }

    pub async fn destroy(&self, spec: &PartSpec, tag: &str) -> Result<(), DriverError> {
        match spec {
            PartSpec::Postgres(s) => self.postgres.destroy(s, tag).await,
            PartSpec::Redis(s) => self.redis.destroy(s, tag).await,
            PartSpec::Terraform(s) => self.terraform.destroy(s, tag).await,
        }
        .map_err(|e| e.within(&self.location(spec)))
    }

    pub async fn usage(&self, spec: &PartSpec) -> Result<Usage, DriverError> {
        match spec {
            PartSpec::Postgres(s) => self.postgres.usage(s).await,
            PartSpec::Redis(s) => self.redis.usage(s).await,
            PartSpec::Terraform(_) => Err(DriverError::Permanent(
                "usage of terraform parts is not measured".into(),
            )),
        }
        .map_err(|e| e.within(&self.location(spec)))
    }
}

// The inherent methods stay callable without the trait in scope (tools and tests call them).
impl Provisioner for Drivers {
    fn parse(&self, driver: &str, spec: &Value) -> Result<PartSpec, DriverError> {
        Drivers::parse(self, driver, spec)
    }

    fn apply<'a>(
        &'a self,
        spec: &'a PartSpec,
        password: &'a str,
        tag: &'a str,
    ) -> DriverFuture<'a, Applied> {
        Box::pin(Drivers::apply(self, spec, password, tag))
    }

    fn observe<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, Observed> {
        Box::pin(Drivers::observe(self, spec))
    }

    fn drift<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, (Observed, Vec<Difference>)> {
        Box::pin(Drivers::drift(self, spec))
    }

    fn destroy<'a>(&'a self, spec: &'a PartSpec, tag: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(Drivers::destroy(self, spec, tag))
    }

    fn usage<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, Usage> {
        Box::pin(Drivers::usage(self, spec))
    }
}

#[cfg(test)]
mod tests {
    // By its full path: `super::` here reads as the provisioning layer to tests/it/layers.rs.
    use crate::provisioning::drivers::address;

    #[test]
    fn an_address_names_host_and_port_never_the_password() {
        assert_eq!(
            address("postgres://paved:s3cret@db.internal/postgres", 5432).as_deref(),
            Some("db.internal:5432")
        );
        assert_eq!(
            address("redis://:s3cret@127.0.0.1:6380/0", 6379).as_deref(),
            Some("127.0.0.1:6380")
        );
    }
}
