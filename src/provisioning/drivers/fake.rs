//! `FakeDriver`: stands in for the systems paved provisions where they cannot run (unit tests
//! on SQLite, no PostgreSQL or Redis). It parses specs as the real drivers do, keeps what it
//! "applied" in memory, records every call and fails a part on demand. What the real drivers
//! do on a real server is tested against one (`tests/it/drivers.rs`).

use std::{collections::BTreeMap, sync::Mutex};

use serde_json::{Value, json};

use super::{
    Applied, Difference, DriverError, DriverFuture, Observed, PartSpec, Provisioner, Usage,
    postgres::PostgresSpec, redis::RedisSpec, settings::PostgresDriverSettings,
};

/// Which driver call, as recorded and as failed on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Apply,
    Observe,
    Drift,
    Destroy,
    Usage,
}

/// A failure asked for: the next `times` calls of `op` on one part fail with `error`.
struct Failure {
    error: DriverError,
    times: usize,
}

#[derive(Default)]
struct State {
    /// Identity → the tag it was applied with: what "exists" on the fake's targets.
    applied: BTreeMap<String, String>,
    calls: Vec<(Op, String)>,
    failures: BTreeMap<(Op, String), Failure>,
}

/// A fake for the PostgreSQL and Redis drivers (see the module's comment).
pub struct FakeDriver {
    allowed_extensions: Vec<String>,
    state: Mutex<State>,
}

impl Default for FakeDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeDriver {
    /// Allows the extensions paved's default settings allow.
    pub fn new() -> Self {
        Self {
            allowed_extensions: PostgresDriverSettings::default().extensions,
            state: Mutex::new(State::default()),
        }
    }

    /// The next `times` calls of `op` on the part named `identity` (`PartSpec::identity`:
    /// `redis dev/paved-x`) fail with `error`; `usize::MAX` for "every time".
    pub fn fail(&self, op: Op, identity: &str, error: DriverError, times: usize) {
        self.lock()
            .failures
            .insert((op, identity.to_owned()), Failure { error, times });
    }

    /// Every call so far, oldest first, as (operation, part identity).
    pub fn calls(&self) -> Vec<(Op, String)> {
        self.lock().calls.clone()
    }

    /// Whether the part exists on the fake's targets.
    pub fn exists(&self, identity: &str) -> bool {
        self.lock().applied.contains_key(identity)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not hide what the fake recorded from the next assert.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the call and, when a failure was asked for, takes one.
    fn call(&self, op: Op, spec: &PartSpec) -> Result<(), DriverError> {
        let id = spec.identity();
        let mut st = self.lock();
        st.calls.push((op, id.clone()));
        let key = (op, id);
        let Some(f) = st.failures.get_mut(&key) else {
            return Ok(());
        };
        let error = f.error.clone();
        f.times = f.times.saturating_sub(1);
        if f.times == 0 {
            st.failures.remove(&key);
        }
        Err(error.within(&spec.server()))
    }

    fn observed(&self, spec: &PartSpec) -> Observed {
        let tag = self.lock().applied.get(&spec.identity()).cloned();
        Observed {
            exists: tag.is_some(),
            state: tag.map_or(Value::Null, |t| json!({"tag": t})),
            self_transactions: 0,
        }
    }

    fn apply_now(&self, spec: &PartSpec, tag: &str) -> Result<Applied, DriverError> {
        self.call(Op::Apply, spec)?;
        let id = spec.identity();
        let mut st = self.lock();
        // As the real drivers: what exists under another owner is never taken over.
        if st.applied.get(&id).is_some_and(|t| t != tag) {
            return Err(DriverError::Permanent(format!(
                "{id} exists and is not this resource's"
            )));
        }
        st.applied.insert(id, tag.to_owned());
        // The outputs' shape the real drivers give (the engine builds URLs from them).
        let outputs = match spec {
            PartSpec::Postgres(s) => json!({
                "host": "fake.invalid", "port": 5432,
                "database": s.database.as_str(), "username": s.owner.as_str(),
            }),
            PartSpec::Redis(s) => json!({
                "host": "fake.invalid", "port": 6379, "tls": false,
                "username": s.user, "key_prefix": format!("{}:", s.key_prefix),
            }),
            PartSpec::Terraform(s) => json!({"module": s.module}),
        };
        Ok(Applied {
            outputs,
            secrets: json!({}),
        })
    }

    fn destroy_now(&self, spec: &PartSpec, tag: &str) -> Result<(), DriverError> {
        self.call(Op::Destroy, spec)?;
        let id = spec.identity();
        let mut st = self.lock();
        match st.applied.get(&id) {
            Some(t) if t != tag => Err(DriverError::Permanent(format!(
                "{id} is not this resource's; left in place"
            ))),
            Some(_) => {
                st.applied.remove(&id);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Provisioner for FakeDriver {
    fn parse(&self, driver: &str, spec: &Value) -> Result<PartSpec, DriverError> {
        match driver {
            "postgres" => {
                PostgresSpec::parse(spec, &self.allowed_extensions).map(PartSpec::Postgres)
            }
            "redis" => RedisSpec::parse(spec).map(PartSpec::Redis),
            other => Err(DriverError::Permanent(format!("unknown driver {other:?}"))),
        }
    }

    fn apply<'a>(
        &'a self,
        spec: &'a PartSpec,
        _password: &'a str,
        tag: &'a str,
    ) -> DriverFuture<'a, Applied> {
        Box::pin(async move { self.apply_now(spec, tag) })
    }

    fn observe<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, Observed> {
        Box::pin(async move {
            self.call(Op::Observe, spec)?;
            Ok(self.observed(spec))
        })
    }

    /// The fake keeps nothing but existence, so that is all that can drift.
    fn drift<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, (Observed, Vec<Difference>)> {
        Box::pin(async move {
            self.call(Op::Drift, spec)?;
            let seen = self.observed(spec);
            let diff = if seen.exists {
                vec![]
            } else {
                vec![Difference::new("exists", true, false)]
            };
            Ok((seen, diff))
        })
    }

    fn destroy<'a>(&'a self, spec: &'a PartSpec, tag: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move { self.destroy_now(spec, tag) })
    }

    fn usage<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, Usage> {
        Box::pin(async move {
            self.call(Op::Usage, spec)?;
            Ok(Usage {
                active: 0,
                activity_counter: 0,
                idle_seconds: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(fake: &FakeDriver) -> PartSpec {
        fake.parse(
            "redis",
            &json!({"key_prefix": "c1", "environment": "dev", "commands": "+@read"}),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn it_keeps_what_it_applied_and_refuses_another_owners_part() {
        let fake = FakeDriver::new();
        let spec = cache(&fake);
        assert!(!fake.observe(&spec).await.unwrap().exists);
        fake.apply(&spec, "pw", "paved:resource:a").await.unwrap();
        assert!(fake.exists("redis dev/paved-c1"));
        assert!(fake.drift(&spec).await.unwrap().1.is_empty());
        let e = fake
            .apply(&spec, "pw", "paved:resource:b")
            .await
            .unwrap_err();
        assert!(matches!(e, DriverError::Permanent(_)), "{e:?}");
        assert!(fake.destroy(&spec, "paved:resource:b").await.is_err());
        fake.destroy(&spec, "paved:resource:a").await.unwrap();
        assert!(!fake.exists("redis dev/paved-c1"));
        assert_eq!(
            fake.calls().iter().map(|(op, _)| *op).collect::<Vec<_>>(),
            [
                Op::Observe,
                Op::Apply,
                Op::Drift,
                Op::Apply,
                Op::Destroy,
                Op::Destroy
            ]
        );
    }

    #[tokio::test]
    async fn a_failure_asked_for_happens_that_many_times_then_stops() {
        let fake = FakeDriver::new();
        let spec = cache(&fake);
        let down = DriverError::Transient("connection refused".into());
        fake.fail(Op::Apply, "redis dev/paved-c1", down, 2);
        for _ in 0..2 {
            let e = fake.apply(&spec, "pw", "t").await.unwrap_err();
            assert_eq!(
                e,
                DriverError::Transient("Redis (dev): connection refused".into())
            );
        }
        fake.apply(&spec, "pw", "t").await.unwrap();
        assert!(fake.exists("redis dev/paved-c1"));
    }
}
