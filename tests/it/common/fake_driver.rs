//! `DiesAfterApply`: the real drivers with a fake crash. It delegates every call to them until
//! a part of one driver kind was applied; from then on no call ever answers, as if the worker
//! running it had died right after that step. A test aborts the hung worker (its heartbeat goes
//! with it) and lets another take the job over once the lease runs out.

use std::sync::atomic::{AtomicBool, Ordering};

use paved::provisioning::drivers::{
    Applied, Difference, DriverError, DriverFuture, Drivers, Observed, PartSpec, Provisioner, Usage,
};
use serde_json::Value;
use tokio::sync::Notify;

pub struct DiesAfterApply {
    real: Drivers,
    /// `PartSpec::driver` of the part whose apply is the last thing that happens.
    kind: &'static str,
    dead: AtomicBool,
    hung: Notify,
}

impl DiesAfterApply {
    pub fn new(real: Drivers, kind: &'static str) -> Self {
        Self {
            real,
            kind,
            dead: AtomicBool::new(false),
            hung: Notify::new(),
        }
    }

    /// Returns once a call hangs: the step after the apply has started and will never end.
    pub async fn hung(&self) {
        self.hung.notified().await
    }

    /// Never answers once dead; says so to `hung`.
    async fn alive(&self) {
        if self.dead.load(Ordering::Acquire) {
            self.hung.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

impl Provisioner for DiesAfterApply {
    fn parse(&self, driver: &str, spec: &Value) -> Result<PartSpec, DriverError> {
        self.real.parse(driver, spec)
    }

    fn apply<'a>(
        &'a self,
        spec: &'a PartSpec,
        password: &'a str,
        tag: &'a str,
    ) -> DriverFuture<'a, Applied> {
        Box::pin(async move {
            self.alive().await;
            let applied = self.real.apply(spec, password, tag).await;
            if applied.is_ok() && spec.driver() == self.kind {
                self.dead.store(true, Ordering::Release);
            }
            applied
        })
    }

    fn observe<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, Observed> {
        Box::pin(async move {
            self.alive().await;
            self.real.observe(spec).await
        })
    }

    fn drift<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, (Observed, Vec<Difference>)> {
        Box::pin(async move {
            self.alive().await;
            self.real.drift(spec).await
        })
    }

    fn destroy<'a>(&'a self, spec: &'a PartSpec, tag: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            self.alive().await;
            self.real.destroy(spec, tag).await
        })
    }

    fn usage<'a>(&'a self, spec: &'a PartSpec) -> DriverFuture<'a, Usage> {
        Box::pin(async move {
            self.alive().await;
            self.real.usage(spec).await
        })
    }
}
