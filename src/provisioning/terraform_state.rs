//! paved as Terraform's `http` state backend: one state per resource part, every version kept
//! (sealed with the secrets key: a state holds the module's sensitive values), locks with
//! Terraform's lock ids, and access only for the runs paved starts.
//!
//! Each run of the CLI gets a run id and a token of its own (HTTP basic auth, through
//! `TF_HTTP_USERNAME` / `TF_HTTP_PASSWORD`), stored as its SHA-256 and bound to the job claim
//! the run belongs to. A run lives while that claim does: once the job's lease runs out and
//! the job is claimed again (its worker died), the old run's credentials stop working and a
//! lock it held is free to take for the next run. So the lease machinery, not a timer,
//! releases a dead worker's lock.

use std::sync::{Arc, RwLock};

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::drivers::{
    DriverError, DriverFuture,
    context::RunContext,
    generate_password,
    terraform::{RunCredentials, StateBackend},
};
use crate::{
    db::{
        self,
        entities::{terraform_lock, terraform_run},
    },
    policy::PolicySet,
    vocab::secret_box::SecretBox,
};

/// Why a state call is refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No run, a wrong token, another state's run, or a run whose claim is gone.
    #[error("not a live terraform run of this state")]
    Unauthorized,
    /// Held by another run: the holder's lock info, as Terraform sent it.
    #[error("the state is locked by another run")]
    Locked(Value),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unreadable(String),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// One stored version, as the history shows it (never its content).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VersionInfo {
    pub version: i32,
    pub serial: i64,
    pub lineage: String,
    pub key_id: String,
    pub request_id: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
}

pub struct StateService {
    db: DatabaseConnection,
    secrets: Arc<SecretBox>,
    /// `http://127.0.0.1:7077/api/paved`: where the CLI reaches this backend.
    base_url: String,
    /// The live policy set (reloads included): plans are decided with it before apply.
    policies: Option<Arc<RwLock<Arc<PolicySet>>>>,
}

/// Rules that decide a plan are named `plan_*`: at plan time, only their denials count (the
/// others decided the request when it was placed, on an input with its estimate and budget).
pub use crate::policy::PLAN_RULE_PREFIX;

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a state version is sealed to (so a ciphertext copied to another row does not open).
pub fn context(resource_id: &str, part: &str, version: i32) -> String {
    format!("terraform-state/{resource_id}/{part}/{version}")
}

impl StateService {
    pub fn new(db: DatabaseConnection, secrets: Arc<SecretBox>, base_url: String) -> Self {
        Self {
            db,
            secrets,
            base_url: base_url.trim_end_matches('/').to_owned(),
            policies: None,
        }
    }

    /// Decide plans with these policies (without, plans are not decided).
    pub fn with_policies(mut self, policies: Arc<RwLock<Arc<PolicySet>>>) -> Self {
        self.policies = Some(policies);
        self
    }

    /// Runs the policies on a request's planned changes (`input.plan`, with the request's
    /// operation, resource, parts, parameters and requester); the denials of `plan_*` rules
    /// stop the run before anything is applied.
    pub async fn decide_plan(
        &self,
        ctx: &RunContext,
        part: &str,
        changes: Value,
    ) -> Result<(), DriverError> {
        let (Some(policies), Some(request_id)) = (&self.policies, &ctx.request_id) else {
            return Ok(());
        };
        let req = db::requests::by_id(&self.db, request_id)
            .await
            .map_err(|e| DriverError::Transient(format!("terraform plan policy: database: {e}")))?
            .ok_or_else(|| {
                DriverError::Permanent("terraform plan policy: no such request".into())
            })?;
        let spec = req.spec.clone().unwrap_or(Value::Null);
        let input = json!({
            "operation": req.operation.as_str(),
            "resource": spec["resource"],
            "parts": spec["parts"],
            "parameters": req.parameters,
            "requester": {"ref": req.requester},
            "plan": {"part": part, "resource_changes": changes},
        });
        let set = policies.read().expect("policy lock poisoned").clone();
        let decision = set
            .evaluate(&input)
            .map_err(|e| DriverError::Permanent(format!("terraform plan policy: {e}")))?;
        let denied: Vec<String> = decision
            .deny
            .iter()
            .filter(|v| v.rule.starts_with(PLAN_RULE_PREFIX))
            .map(|v| format!("{} ({}.{})", v.message, v.policy, v.rule))
            .collect();
        if denied.is_empty() {
            return Ok(());
        }
        Err(DriverError::Permanent(format!(
            "policy denies the plan, nothing was applied: {}",
            denied.join("; ")
        )))
    }

    /// The state's address for the CLI.
    pub fn address(&self, resource_id: &str, part: &str) -> String {
        format!("{}/terraform/state/{resource_id}/{part}", self.base_url)
    }

    /// Registers a run and returns its credentials (the token exists only in them).
    pub async fn open_run(
        &self,
        resource_id: &str,
        part: &str,
        ctx: &RunContext,
    ) -> Result<RunCredentials, DbErr> {
        if let (Some(job), Some(attempt)) = (&ctx.job_id, ctx.job_attempt) {
            db::terraform::delete_runs_of_earlier_claims(&self.db, job, attempt).await?;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let token = generate_password();
        db::terraform::insert_run(
            &self.db,
            terraform_run::Model {
                id: id.clone(),
                resource_id: resource_id.to_owned(),
                part: part.to_owned(),
                token_sha256: sha256_hex(&token),
                request_id: ctx.request_id.clone(),
                job_id: ctx.job_id.clone(),
                job_attempt: ctx.job_attempt,
                created_at: Utc::now(),
            },
        )
        .await?;
        Ok(RunCredentials {
            username: id.clone(),
            run_id: id,
            password: token,
            address: self.address(resource_id, part),
        })
    }

    pub async fn close_run(&self, run_id: &str) -> Result<(), DbErr> {
        db::terraform::delete_run(&self.db, run_id).await
    }

    /// Whether a run may still act: it exists and, when it belongs to a job claim, that claim
    /// is the job's current one with its lease running.
    async fn live(&self, run: &terraform_run::Model) -> Result<bool, DbErr> {
        match (&run.job_id, run.job_attempt) {
            (Some(job), Some(attempt)) => {
                db::terraform::claim_is_live(&self.db, job, attempt, Utc::now()).await
            }
            _ => Ok(true),
        }
    }

    /// The run behind basic credentials, if it is a live run of this very state.
    pub async fn authenticate(
        &self,
        resource_id: &str,
        part: &str,
        basic: Option<(&str, &str)>,
    ) -> Result<terraform_run::Model, StateError> {
        let (user, token) = basic.ok_or(StateError::Unauthorized)?;
        let run = db::terraform::run_by_id(&self.db, user)
            .await?
            .ok_or(StateError::Unauthorized)?;
        // Hashes compared, so the comparison's time tells nothing about the token.
        if run.token_sha256 != sha256_hex(token)
            || run.resource_id != resource_id
            || run.part != part
            || !self.live(&run).await?
        {
            return Err(StateError::Unauthorized);
        }
        Ok(run)
    }

    /// The current state's bytes, as Terraform wrote them.
    pub async fn get(&self, run: &terraform_run::Model) -> Result<Option<Vec<u8>>, StateError> {
        self.open_latest(&run.resource_id, &run.part).await
    }

    async fn open_latest(
        &self,
        resource_id: &str,
        part: &str,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let Some(row) = db::terraform::latest_state(&self.db, resource_id, part).await? else {
            return Ok(None);
        };
        self.secrets
            .open(
                &db::terraform::sealed_of(&row),
                &context(resource_id, part, row.version),
            )
            .map(Some)
            .map_err(StateError::Unreadable)
    }

    /// The current state, parsed (for the driver's observation).
    pub async fn current(
        &self,
        resource_id: &str,
        part: &str,
    ) -> Result<Option<Value>, StateError> {
        let Some(bytes) = self.open_latest(resource_id, part).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Unreadable(format!("stored state is not JSON: {e}")))
    }

    /// Stores a new version; the run must hold the state's lock as `lock_id`.
    pub async fn put(
        &self,
        run: &terraform_run::Model,
        lock_id: Option<&str>,
        body: &[u8],
    ) -> Result<(), StateError> {
        let key = db::terraform::state_key(&run.resource_id, &run.part);
        let lock = db::terraform::lock_of(&self.db, &key).await?;
        match (&lock, lock_id) {
            (Some(l), Some(id)) if l.lock_id == id && l.run_id == run.id => {}
            (Some(l), _) => return Err(StateError::Locked(lock_info(l))),
            (None, _) => {
                return Err(StateError::Conflict(
                    "the state is not locked by this run: lock it first".into(),
                ));
            }
        }
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| StateError::BadRequest(format!("state: not JSON: {e}")))?;
        let serial = doc["serial"]
            .as_i64()
            .ok_or_else(|| StateError::BadRequest("state: serial must be a number".into()))?;
        let lineage = doc["lineage"]
            .as_str()
            .ok_or_else(|| StateError::BadRequest("state: lineage must be text".into()))?
            .to_owned();
        let latest = db::terraform::latest_state(&self.db, &run.resource_id, &run.part).await?;
        if let Some(l) = &latest
            && l.lineage != lineage
        {
            return Err(StateError::Conflict(format!(
                "state: lineage {lineage} is not this state's ({})",
                l.lineage
            )));
        }
        let version = latest.map_or(1, |l| l.version + 1);
        let sealed = self
            .secrets
            .seal(body, &context(&run.resource_id, &run.part, version));
        let stored = db::terraform::insert_state(
            &self.db,
            db::terraform::NewVersion {
                resource_id: &run.resource_id,
                part: &run.part,
                version,
                serial,
                lineage: &lineage,
                sealed: &sealed,
                request_id: run.request_id.as_deref(),
                at: Utc::now(),
            },
        )
        .await;
        match stored {
            Err(e) if db::is_unique_violation(&e) => Err(StateError::Conflict(
                "another write of this state came first".into(),
            )),
            other => Ok(other?),
        }
    }

    /// Takes the lock for `run` with Terraform's lock info (its `ID` is the lock id). A lock
    /// whose holder is gone (closed, or its job claim ended) is taken over.
    pub async fn lock(&self, run: &terraform_run::Model, info: &Value) -> Result<(), StateError> {
        let lock_id = info["ID"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| StateError::BadRequest("lock info: ID must be text".into()))?;
        let key = db::terraform::state_key(&run.resource_id, &run.part);
        let new = terraform_lock::Model {
            state: key.clone(),
            lock_id: lock_id.to_owned(),
            info: info.to_string(),
            run_id: run.id.clone(),
            created_at: Utc::now(),
        };
        if db::terraform::take_free_lock(&self.db, new.clone()).await? {
            return Ok(());
        }
        let Some(held) = db::terraform::lock_of(&self.db, &key).await? else {
            // Released in between: try once more.
            return if db::terraform::take_free_lock(&self.db, new).await? {
                Ok(())
            } else {
                Err(StateError::Conflict(
                    "the lock changed hands; try again".into(),
                ))
            };
        };
        let holder = db::terraform::run_by_id(&self.db, &held.run_id).await?;
        let holder_live = match &holder {
            Some(h) => self.live(h).await?,
            None => false,
        };
        if holder_live {
            return Err(StateError::Locked(lock_info(&held)));
        }
        if db::terraform::take_over_lock(&self.db, &held.lock_id, new).await? {
            tracing::info!(state = %key, from_run = %held.run_id, to_run = %run.id, "took over the lock of a terraform run that is gone");
            Ok(())
        } else {
            let now = db::terraform::lock_of(&self.db, &key).await?;
            Err(StateError::Locked(
                now.as_ref().map_or(Value::Null, lock_info),
            ))
        }
    }

    /// Releases the lock `info` names (its `ID`); releasing a lock that is not held is a
    /// no-op, one held under another id is refused with its holder's info.
    pub async fn unlock(
        &self,
        run: &terraform_run::Model,
        info: Option<&Value>,
    ) -> Result<(), StateError> {
        let key = db::terraform::state_key(&run.resource_id, &run.part);
        let Some(held) = db::terraform::lock_of(&self.db, &key).await? else {
            return Ok(());
        };
        let id = info.and_then(|i| i["ID"].as_str());
        match id {
            Some(id) if id == held.lock_id => {
                db::terraform::release_lock(&self.db, &key, id).await?;
                Ok(())
            }
            _ => Err(StateError::Locked(lock_info(&held))),
        }
    }

    /// The versions of a state, oldest first (metadata only).
    pub async fn history(&self, resource_id: &str, part: &str) -> Result<Vec<VersionInfo>, DbErr> {
        Ok(db::terraform::history(&self.db, resource_id, part)
            .await?
            .into_iter()
            .map(|m| VersionInfo {
                version: m.version,
                serial: m.serial,
                lineage: m.lineage,
                key_id: m.key_id,
                request_id: m.request_id,
                created_at: m.created_at,
            })
            .collect())
    }

    async fn log_line(&self, ctx: &RunContext, level: &'static str, message: &str) {
        match &ctx.request_id {
            Some(request_id) => {
                let step = ctx.step.as_deref();
                if let Err(e) =
                    db::request_logs::add(&self.db, request_id, step, level, message, Utc::now())
                        .await
                {
                    tracing::warn!(error = %e, "could not record a terraform log line");
                }
            }
            None => tracing::info!(terraform = %message),
        }
    }
}

/// A lock's info as stored (what Terraform sent with its LOCK).
fn lock_info(l: &terraform_lock::Model) -> Value {
    serde_json::from_str(&l.info).unwrap_or_else(|_| json!({"ID": l.lock_id}))
}

fn driver_error(e: StateError) -> DriverError {
    match e {
        StateError::Db(e) => DriverError::Transient(format!("terraform state: database: {e}")),
        other => DriverError::Permanent(format!("terraform state: {other}")),
    }
}

impl StateBackend for StateService {
    fn open_run<'a>(
        &'a self,
        resource_id: &'a str,
        part: &'a str,
        ctx: &'a RunContext,
    ) -> DriverFuture<'a, RunCredentials> {
        Box::pin(async move {
            StateService::open_run(self, resource_id, part, ctx)
                .await
                .map_err(|e| DriverError::Transient(format!("terraform state: database: {e}")))
        })
    }

    fn close_run<'a>(&'a self, run_id: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            StateService::close_run(self, run_id)
                .await
                .map_err(|e| DriverError::Transient(format!("terraform state: database: {e}")))
        })
    }

    fn log<'a>(
        &'a self,
        ctx: &'a RunContext,
        level: &'static str,
        message: String,
    ) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            self.log_line(ctx, level, &message).await;
            Ok(())
        })
    }

    fn check_plan<'a>(
        &'a self,
        ctx: &'a RunContext,
        part: &'a str,
        changes: Value,
    ) -> DriverFuture<'a, ()> {
        Box::pin(self.decide_plan(ctx, part, changes))
    }

    fn cancelled<'a>(&'a self, ctx: &'a RunContext) -> DriverFuture<'a, bool> {
        Box::pin(async move {
            let Some(id) = &ctx.request_id else {
                return Ok(false);
            };
            let req = db::requests::by_id(&self.db, id)
                .await
                .map_err(|e| DriverError::Transient(format!("terraform run: database: {e}")))?;
            Ok(req.is_some_and(|r| r.status == crate::vocab::status::RequestStatus::Cancelled))
        })
    }

    fn current<'a>(
        &'a self,
        resource_id: &'a str,
        part: &'a str,
    ) -> DriverFuture<'a, Option<Value>> {
        Box::pin(async move {
            StateService::current(self, resource_id, part)
                .await
                .map_err(driver_error)
        })
    }
}
