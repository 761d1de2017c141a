//! Terraform / OpenTofu: a platform team's own module as an offering part.
//!
//! A part with `driver: terraform` names a module folder inside its offering (`module:
//! ./module`), the environment, the module's input variables (rendered from the form) and the
//! names of the environment variables it needs from paved's configuration (admin access, which
//! never goes through a variable, so it is in neither plan nor state). Each run gets a working
//! directory of its own (the module copied in, `terraform.tfvars.json`, a backend override
//! pointing at paved's own state endpoint) that is removed afterwards, and runs the CLI with a
//! scrubbed environment: `init`, `plan -out`, `show -json` of the plan (its resource changes
//! go to the step's log), `apply -json` of exactly that plan (its UI lines streamed into the
//! step's log), `output -json`. No shell: arguments are passed as a vector.
//!
//! State lives in paved (see `provisioning::terraform_state`), reached through the
//! [`StateBackend`] port: each run gets credentials of its own, handed to the CLI only as
//! `TF_HTTP_USERNAME` / `TF_HTTP_PASSWORD` (what `-backend-config` is given ends up in
//! `.terraform/` and plan files).

use std::{
    collections::BTreeMap,
    path::{Component, Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::{Applied, DriverError, DriverFuture, Observed, context::RunContext};

/// Variables paved gives every module (a module declares those it uses): the part's password,
/// generated and sealed by paved, and the tag that marks what this resource owns.
pub const PASSWORD_VARIABLE: &str = "paved_password";
pub const OWNER_TAG_VARIABLE: &str = "paved_owner_tag";

const PLAN_FILE: &str = "paved.tfplan";
const VARS_FILE: &str = "terraform.tfvars.json";
const BACKEND_FILE: &str = "paved_backend_override.tf.json";
const CLI_CONFIG_FILE: &str = "paved.tfrc";
/// How often a step's run asks whether its request was cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------------
// Settings

/// `drivers.terraform`: the CLI and how paved runs it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TerraformDriverSettings {
    /// The CLI: `terraform` or `tofu` (a name looked up on `path`, or a path).
    pub binary: String,
    /// PATH of the CLI and of what its `local-exec` provisioners run (nothing else of paved's
    /// environment reaches them).
    pub path: String,
    /// Where each run gets a working directory of its own, removed when the run ends; the
    /// system's temporary directory when unset.
    pub work_dir: Option<PathBuf>,
    /// Provider plugin cache shared by the runs (`TF_PLUGIN_CACHE_DIR`); none when unset.
    pub plugin_cache_dir: Option<PathBuf>,
    /// Each CLI command (init, plan, apply, …) is killed after this long and the step fails.
    pub timeout_seconds: u64,
    /// A cancelled request's CLI is interrupted (SIGINT: it stops, writes its state and
    /// releases its lock) and killed if it has not stopped after this long.
    pub interrupt_grace_seconds: u64,
    /// Where the CLI reaches paved's state backend (`…/api/paved`); paved's own listener when
    /// unset.
    pub state_url: Option<String>,
    /// Plans run for estimates (the form's dry-run calls them often) at most this many at a
    /// time in this process; one more waits for a slot, at most `estimate_timeout_seconds`.
    pub estimate_concurrency: usize,
    /// Each CLI command of an estimate's plan (init, plan, show) is killed after this long,
    /// and the estimate answers that it timed out.
    pub estimate_timeout_seconds: u64,
    /// Environment variables an offering's part may ask for (`env:` in its spec), per
    /// environment: admin access to the systems its module acts on. Values never reach a log or
    /// `paved config check`. The bundled mariadb-database offering's `MARIADB_ADMIN_HOST`,
    /// `_PORT`, `_USER` and `_PASSWORD`, when not set here, are this machine's MariaDB
    /// (127.0.0.1:3306, root, no password), as the other drivers' default targets are local.
    pub env: BTreeMap<String, BTreeMap<String, EnvValue>>,
}

/// What the bundled mariadb-database offering's module reaches when nothing is configured.
/// Kept out of the settings' defaults: those are serialized (masked) when the configuration
/// is loaded, and a masked default would replace the value.
const LOCAL_MARIADB: &[(&str, &str)] = &[
    ("MARIADB_ADMIN_HOST", "127.0.0.1"),
    ("MARIADB_ADMIN_PORT", "3306"),
    ("MARIADB_ADMIN_USER", "root"),
    ("MARIADB_ADMIN_PASSWORD", ""),
];

impl Default for TerraformDriverSettings {
    fn default() -> Self {
        Self {
            binary: "terraform".into(),
            path: "/usr/local/bin:/usr/bin:/bin".into(),
            work_dir: None,
            plugin_cache_dir: None,
            timeout_seconds: 600,
            interrupt_grace_seconds: 30,
            state_url: None,
            estimate_concurrency: 2,
            estimate_timeout_seconds: 60,
            env: BTreeMap::new(),
        }
    }
}

/// A configured environment value: shown as `***` by `Debug` and `Serialize` (it may be a
/// password), read as text whatever YAML or the environment made of it.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvValue(pub String);

impl std::fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for EnvValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Never quotes the value in an error.
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Self(s)),
            Value::Number(n) => Ok(Self(n.to_string())),
            Value::Bool(b) => Ok(Self(b.to_string())),
            _ => Err(serde::de::Error::custom("must be text")),
        }
    }
}

impl JsonSchema for EnvValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EnvValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "number", "boolean"]})
    }

    fn inline_schema() -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// The part's spec

/// A `terraform` part as rendered: `part` and `offering` are filled in by the offering's
/// renderer (`templates`), the rest is the offering's.
#[derive(Debug, Clone, PartialEq)]
pub struct TerraformSpec {
    pub part: String,
    pub offering: String,
    /// The module folder inside the offering, relative (`./module`).
    pub module: String,
    pub environment: String,
    pub variables: Map<String, Value>,
    /// Names of the configured environment variables the module needs.
    pub env: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    part: String,
    offering: String,
    module: String,
    environment: String,
    #[serde(default)]
    variables: Map<String, Value>,
    #[serde(default)]
    env: Vec<String>,
}

/// A module folder an offering may name: relative, inside the offering (no `..`, no root).
pub fn valid_module_path(module: &str) -> Result<PathBuf, String> {
    let p = Path::new(module);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(format!(
                    "module {module:?} must be a folder inside the offering (relative, without ..)"
                ));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("module {module:?} names no folder"));
    }
    Ok(out)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A configured variable whose value is kept out of what a run reports.
fn looks_secret(name: &str) -> bool {
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "PWD",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// What the CLI's environment is made of by paved alone; an offering may not ask for these.
fn reserved_env(name: &str) -> bool {
    matches!(name, "PATH" | "HOME" | "CHECKPOINT_DISABLE")
        || name.starts_with("TF_")
        || name.starts_with("LD_")
}

impl TerraformSpec {
    pub fn parse(spec: &Value) -> Result<Self, DriverError> {
        let bad = |m: String| DriverError::Permanent(format!("terraform part: {m}"));
        let raw: RawSpec = serde_json::from_value(spec.clone()).map_err(|e| bad(e.to_string()))?;
        valid_module_path(&raw.module).map_err(bad)?;
        for (field, v) in [
            ("part", &raw.part),
            ("offering", &raw.offering),
            ("environment", &raw.environment),
        ] {
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(bad(format!(
                    "{field} {v:?} must be letters, digits, '-', '_' or '.'"
                )));
            }
        }
        for name in raw.variables.keys() {
            if !is_identifier(name) {
                return Err(bad(format!(
                    "variables.{name}: not a Terraform variable name"
                )));
            }
            if name.starts_with("paved_") {
                return Err(bad(format!(
                    "variables.{name}: names starting with paved_ are paved's own ({PASSWORD_VARIABLE}, {OWNER_TAG_VARIABLE})"
                )));
            }
        }
        for name in &raw.env {
            let shaped = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !shaped || reserved_env(name) {
                return Err(bad(format!(
                    "env: {name:?} is not a variable an offering may ask for (upper-case letters, digits and _, not PATH, HOME, TF_* or LD_*)"
                )));
            }
        }
        Ok(Self {
            part: raw.part,
            offering: raw.offering,
            module: raw.module,
            environment: raw.environment,
            variables: raw.variables,
            env: raw.env,
        })
    }

    /// What the part is: its module and part of its offering, in its environment.
    pub fn identity(&self) -> String {
        format!(
            "terraform {}/{}/{}",
            self.environment, self.offering, self.part
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The state backend, as the driver sees it

/// Credentials of one run against paved's state backend.
#[derive(Clone)]
pub struct RunCredentials {
    pub run_id: String,
    pub username: String,
    pub password: String,
    /// The state's address (`…/terraform/state/<resource>/<part>`).
    pub address: String,
}

impl std::fmt::Debug for RunCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCredentials")
            .field("run_id", &self.run_id)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// paved's side of a run: its state endpoint and its request log. Implemented above the
/// drivers (`provisioning::terraform_state`), which know paved's database.
pub trait StateBackend: Send + Sync {
    /// Lets one run of the CLI use the state of `part` of `resource_id`, tied to the job
    /// claim in `ctx` (when there is one): once that claim's lease is gone, so is the run.
    fn open_run<'a>(
        &'a self,
        resource_id: &'a str,
        part: &'a str,
        ctx: &'a RunContext,
    ) -> DriverFuture<'a, RunCredentials>;
    /// Ends a run: its credentials stop working, a lock it still holds is free to take.
    fn close_run<'a>(&'a self, run_id: &'a str) -> DriverFuture<'a, ()>;
    /// A line of the run's progress for the request's log (already free of secrets).
    fn log<'a>(
        &'a self,
        ctx: &'a RunContext,
        level: &'static str,
        message: String,
    ) -> DriverFuture<'a, ()>;
    /// Decides a plan's changes (`PlanSummary::changes`) before they are applied: an error
    /// (the policies' deny messages) stops the run.
    fn check_plan<'a>(
        &'a self,
        ctx: &'a RunContext,
        part: &'a str,
        changes: Value,
    ) -> DriverFuture<'a, ()>;
    /// Whether the request of `ctx` was cancelled (its run then interrupts the CLI).
    fn cancelled<'a>(&'a self, ctx: &'a RunContext) -> DriverFuture<'a, bool>;
    /// The current state of `part` of `resource_id` (None before the first write).
    fn current<'a>(
        &'a self,
        resource_id: &'a str,
        part: &'a str,
    ) -> DriverFuture<'a, Option<Value>>;
}

// ---------------------------------------------------------------------------------------------
// The driver

pub struct TerraformDriver {
    settings: TerraformDriverSettings,
    /// Slots for estimates' plans (`estimate_concurrency`).
    estimates: Arc<tokio::sync::Semaphore>,
    /// Where offerings live (`templates.dir`): a part's module is `<this>/<offering>/<module>`.
    modules_dir: PathBuf,
    backend: Option<Arc<dyn StateBackend>>,
}

/// What a plan will do, from `show -json`: addresses per action, attribute names per update.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct PlanSummary {
    /// Every planned change, as policies see it: address, type, name, actions, the names of
    /// the attributes that change (never their values).
    pub changes: Vec<Value>,
    pub create: Vec<String>,
    pub update: Vec<String>,
    pub replace: Vec<String>,
    pub delete: Vec<String>,
    /// For each updated or replaced resource, the attributes that change (names only: a
    /// value may be sensitive).
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl PlanSummary {
    /// From `show -json <plan>` (format 1.x): `resource_changes[].change.actions`.
    pub fn from_plan(plan: &Value) -> Self {
        let mut s = Self::default();
        for rc in plan["resource_changes"].as_array().into_iter().flatten() {
            let addr = rc["address"].as_str().unwrap_or("?").to_owned();
            let actions: Vec<&str> = rc["change"]["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let changed = || changed_attributes(&rc["change"]["before"], &rc["change"]["after"]);
            if !matches!(actions.as_slice(), ["no-op"] | ["read"]) {
                s.changes.push(json!({
                    "address": addr,
                    "type": rc["type"],
                    "name": rc["name"],
                    "actions": actions,
                    "attributes": changed(),
                }));
            }
            match actions.as_slice() {
                ["create"] => s.create.push(addr),
                ["update"] => {
                    s.attributes.insert(addr.clone(), changed());
                    s.update.push(addr)
                }
                ["delete"] => s.delete.push(addr),
                [_, _] => {
                    s.attributes.insert(addr.clone(), changed());
                    s.replace.push(addr)
                }
                _ => {}
            }
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.update.is_empty()
            && self.replace.is_empty()
            && self.delete.is_empty()
    }

    /// `plan: 1 to create (terraform_data.db), 0 to change, 0 to replace, 0 to destroy`.
    pub fn describe(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.join(", "))
            }
        };
        let mut changes: Vec<String> = self.update.clone();
        changes.extend(self.replace.iter().cloned());
        let attrs: Vec<String> = changes
            .iter()
            .filter_map(|a| {
                let names = self.attributes.get(a)?;
                (!names.is_empty()).then(|| format!("{a}: {}", names.join(", ")))
            })
            .collect();
        let mut out = format!(
            "plan: {} to create{}, {} to change{}, {} to replace{}, {} to destroy{}",
            self.create.len(),
            list(&self.create),
            self.update.len(),
            list(&self.update),
            self.replace.len(),
            list(&self.replace),
            self.delete.len(),
            list(&self.delete),
        );
        if !attrs.is_empty() {
            out.push_str(&format!("; attributes changing: {}", attrs.join("; ")));
        }
        out
    }
}

fn changed_attributes(before: &Value, after: &Value) -> Vec<String> {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut names: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Replaces every secret a run knows of by `***` in what it reports.
struct Redactor(Vec<String>);

impl Redactor {
    fn clean(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.0 {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

/// A run's working directory, removed however the run ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything one run needs; `close` ends its backend run. An estimate's plan has neither
/// backend nor credentials: its state is a throwaway local file.
struct Run<'a> {
    part: String,
    dir: WorkDir,
    env: Vec<(String, String)>,
    redact: Redactor,
    ctx: RunContext,
    backend: Option<&'a dyn StateBackend>,
    creds: Option<RunCredentials>,
    /// How long each CLI command may take, and the setting that says so.
    limit: Duration,
    limit_setting: &'static str,
}

/// What a CLI command printed.
struct Ran {
    code: i32,
    /// As printed: only ever parsed.
    stdout: String,
    /// Errors it reported (diagnostics of `-json` commands, or stderr), cleaned.
    errors: String,
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        // A developer's local init or state next to the module is no part of it.
        if name == ".terraform" || name.to_string_lossy().ends_with(".tfstate") {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// The resource id in an owner tag (`paved:resource:<id>`).
fn resource_of(tag: &str) -> Result<&str, DriverError> {
    tag.strip_prefix("paved:resource:")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| DriverError::Permanent(format!("not a resource tag: {tag:?}")))
}

impl TerraformDriver {
    pub fn new(settings: TerraformDriverSettings, modules_dir: PathBuf) -> Self {
        Self {
            estimates: Arc::new(tokio::sync::Semaphore::new(
                settings.estimate_concurrency.max(1),
            )),
            settings,
            modules_dir,
            backend: None,
        }
    }

    /// The state backend the runs use (without one, every run fails and says so).
    pub fn with_backend(mut self, backend: Arc<dyn StateBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    pub fn settings(&self) -> &TerraformDriverSettings {
        &self.settings
    }

    pub fn parse(&self, spec: &Value) -> Result<TerraformSpec, DriverError> {
        let s = TerraformSpec::parse(spec)?;
        for name in &s.env {
            if self.configured(&s.environment, name).is_none() {
                return Err(DriverError::Permanent(format!(
                    "terraform part {}: env {name} is not configured for environment {} (drivers.terraform.env.{}.{name})",
                    s.part, s.environment, s.environment
                )));
            }
        }
        Ok(s)
    }

    /// A configured environment value; names match whatever their case (`PAVED_*` overrides
    /// arrive lower-cased).
    fn configured(&self, environment: &str, name: &str) -> Option<String> {
        let set = self
            .settings
            .env
            .get(environment)
            .and_then(|e| e.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.0.clone());
        set.or_else(|| {
            LOCAL_MARIADB
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn backend(&self) -> Result<&dyn StateBackend, DriverError> {
        self.backend.as_deref().ok_or_else(|| {
            DriverError::Permanent(
                "the terraform driver has no state backend here (only a running paved serves one)"
                    .into(),
            )
        })
    }

    /// Prepares a run: its directory (module, variables, backend override, CLI config), its
    /// backend credentials and its environment.
    async fn open<'a>(
        &'a self,
        spec: &TerraformSpec,
        resource_id: &str,
        password: Option<&str>,
        tag: &str,
    ) -> Result<Run<'a>, DriverError> {
        let backend = self.backend()?;
        let dir = self.work_dir(spec).await?;
        let ctx = super::context::current();
        let creds = backend.open_run(resource_id, &spec.part, &ctx).await?;
        // From here on the run exists: a failure below still closes it.
        let run = Run {
            part: spec.part.clone(),
            dir,
            env: Vec::new(),
            redact: Redactor(Vec::new()),
            ctx,
            backend: Some(backend),
            creds: Some(creds),
            limit: Duration::from_secs(self.settings.timeout_seconds.max(1)),
            limit_setting: "drivers.terraform.timeout_seconds",
        };
        match self.fill(run, spec, password, tag).await {
            Ok(run) => Ok(run),
            Err((run, e)) => {
                run.close().await;
                Err(e)
            }
        }
    }

    /// A working directory of its own with the part's module copied in (removed as it drops).
    async fn work_dir(&self, spec: &TerraformSpec) -> Result<WorkDir, DriverError> {
        let module = self
            .modules_dir
            .join(&spec.offering)
            .join(valid_module_path(&spec.module).map_err(DriverError::Permanent)?);
        if !module.is_dir() {
            return Err(DriverError::Permanent(format!(
                "terraform part {}: module folder {} of offering {} does not exist",
                spec.part, spec.module, spec.offering
            )));
        }
        let root = self
            .settings
            .work_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let dir = WorkDir(root.join(format!("paved-tf-{}", uuid::Uuid::new_v4().simple())));
        let io = |what: &str, e: std::io::Error| {
            DriverError::Transient(format!("terraform working directory ({what}): {e}"))
        };
        {
            let (from, to) = (module.clone(), dir.0.clone());
            tokio::task::spawn_blocking(move || copy_dir(&from, &to))
                .await
                .map_err(|e| DriverError::Transient(e.to_string()))?
                .map_err(|e| io("copying the module", e))?;
        }
        Ok(dir)
    }

    async fn fill<'a>(
        &'a self,
        mut run: Run<'a>,
        spec: &TerraformSpec,
        password: Option<&str>,
        tag: &str,
    ) -> Result<Run<'a>, (Run<'a>, DriverError)> {
        let dir = run.dir.0.clone();
        let backend = match &run.creds {
            Some(creds) => json!({"terraform": {"backend": {"http": {
                "address": creds.address,
                "lock_address": creds.address,
                "unlock_address": creds.address,
                "lock_method": "LOCK",
                "unlock_method": "UNLOCK",
                "update_method": "POST",
            }}}}),
            // An estimate: an empty state of its own, in the throwaway directory (whatever
            // backend the module names, no real state is read or locked).
            None => json!({"terraform": {"backend": {"local": {
                "path": dir.join("estimate.tfstate").display().to_string(),
            }}}}),
        };
        let mut cli_config = String::from("disable_checkpoint = true\n");
        if let Some(cache) = &self.settings.plugin_cache_dir {
            cli_config.push_str(&format!(
                "plugin_cache_dir = {}\n",
                Value::String(cache.display().to_string())
            ));
        }
        let files = [
            (VARS_FILE, Value::Object(spec.variables.clone()).to_string()),
            (BACKEND_FILE, backend.to_string()),
            (CLI_CONFIG_FILE, cli_config),
        ];
        for (name, text) in files {
            if let Err(e) = tokio::fs::write(dir.join(name), text).await {
                let e = DriverError::Transient(format!("terraform working directory: {e}"));
                return Err((run, e));
            }
        }
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), self.settings.path.clone()),
            ("HOME".into(), dir.display().to_string()),
            ("TF_IN_AUTOMATION".into(), "1".into()),
            ("TF_INPUT".into(), "0".into()),
            ("CHECKPOINT_DISABLE".into(), "1".into()),
            (
                "TF_CLI_CONFIG_FILE".into(),
                dir.join(CLI_CONFIG_FILE).display().to_string(),
            ),
            (format!("TF_VAR_{OWNER_TAG_VARIABLE}"), tag.to_owned()),
        ];
        let mut secrets = Vec::new();
        if let Some(creds) = &run.creds {
            env.push(("TF_HTTP_USERNAME".into(), creds.username.clone()));
            env.push(("TF_HTTP_PASSWORD".into(), creds.password.clone()));
            secrets.push(creds.password.clone());
        }
        // A destroy plan still wants every variable: it gets an empty password (what is
        // destroyed is in the state, and destroy provisioners may read only `self`).
        env.push((
            format!("TF_VAR_{PASSWORD_VARIABLE}"),
            password.unwrap_or_default().to_owned(),
        ));
        if let Some(p) = password.filter(|p| !p.is_empty()) {
            secrets.push(p.to_owned());
        }
        if let Some(cache) = &self.settings.plugin_cache_dir {
            env.push(("TF_PLUGIN_CACHE_DIR".into(), cache.display().to_string()));
        }
        for name in &spec.env {
            if let Some(v) = self.configured(&spec.environment, name) {
                // Blanked out of what the run reports when its name says it is a secret (a
                // host or a port would blank out ordinary text).
                if looks_secret(name) && !v.is_empty() {
                    secrets.push(v.clone());
                }
                env.push((name.clone(), v));
            }
        }
        run.env = env;
        run.redact = Redactor(secrets);
        Ok(run)
    }

    /// Runs one CLI command in the run's directory; `stream`: its stdout is `-json` UI lines,
    /// each reported to the step's log as it comes.
    async fn cli(&self, run: &Run<'_>, args: &[&str], stream: bool) -> Result<Ran, DriverError> {
        let command = args.first().copied().unwrap_or("terraform");
        let mut cmd = tokio::process::Command::new(&self.settings.binary);
        cmd.args(args)
            .current_dir(&run.dir.0)
            .env_clear()
            .envs(run.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a timeout kills the CLI and what its provisioners started.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: only an async-signal-safe call between fork and exec. A CLI must not outlive
        // a paved that was killed: its job is claimed again, and the next run takes its lock.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            DriverError::Permanent(format!(
                "cannot run the terraform CLI {:?} (drivers.terraform.binary): {e}",
                self.settings.binary
            ))
        })?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let work = async {
            let mut out = String::new();
            let mut errors = String::new();
            let mut lines = BufReader::new(stdout).lines();
            let read_err = async {
                let mut buf = Vec::new();
                let _ = stderr.read_to_end(&mut buf).await;
                buf
            };
            let read_out = async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if stream {
                        if let Some((level, msg, is_error)) = ui_line(&line) {
                            let msg = run.redact.clean(&msg);
                            if is_error {
                                errors.push_str(&msg);
                                errors.push('\n');
                            }
                            if let Some(b) = run.backend {
                                b.log(&run.ctx, level, msg).await.ok();
                            }
                        }
                    } else {
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
            };
            let (err_bytes, ()) = tokio::join!(read_err, read_out);
            let status = child.wait().await;
            (status, out, errors, err_bytes)
        };
        let limit = run.limit;
        let kill_group = || {
            if let Some(pid) = pid {
                // SAFETY: signals the process group the child leads (`process_group(0)`).
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
        };
        // A step's run watches its request: a cancel interrupts the CLI as Ctrl-C would
        // (Terraform stops its provisioners, writes the state and releases its lock), and kills
        // it if it has not stopped within the grace period. Clean-ups after a failure or a
        // cancel run outside a step and are never interrupted by it.
        let watch = run
            .backend
            .filter(|_| run.ctx.step.is_some() && run.ctx.request_id.is_some());
        let grace = Duration::from_secs(self.settings.interrupt_grace_seconds.max(1));
        let mut work = std::pin::pin!(work);
        let deadline = tokio::time::sleep(limit);
        let mut deadline = std::pin::pin!(deadline);
        let mut checks = tokio::time::interval(CANCEL_CHECK);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut interrupted: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        let finished = loop {
            tokio::select! {
                done = &mut work => break done,
                () = &mut deadline => {
                    kill_group();
                    return Err(DriverError::Permanent(format!(
                        "terraform {command} did not finish within {} s ({}) and was killed",
                        limit.as_secs(),
                        run.limit_setting
                    )));
                }
                () = async { interrupted.as_mut().expect("guarded").as_mut().await }, if interrupted.is_some() => {
                    kill_group();
                    return Err(DriverError::Cancelled(format!(
                        "the request was cancelled; terraform {command} did not stop within {} s of its interrupt (drivers.terraform.interrupt_grace_seconds) and was killed",
                        grace.as_secs()
                    )));
                }
                _ = checks.tick(), if watch.is_some() && interrupted.is_none() => {
                    let backend = watch.expect("guarded");
                    if backend.cancelled(&run.ctx).await.unwrap_or(false) {
                        if let Some(pid) = pid {
                            // SAFETY: signals the CLI alone; it stops what it started itself.
                            unsafe {
                                libc::kill(pid as i32, libc::SIGINT);
                            }
                        }
                        self.say(run, "info", format!("the request was cancelled: interrupting terraform {command}")).await;
                        interrupted = Some(Box::pin(tokio::time::sleep(grace)));
                    }
                }
            }
        };
        let (status, out, mut errors, err_bytes) = finished;
        let status =
            status.map_err(|e| DriverError::Transient(format!("terraform {command}: {e}")))?;
        let stderr = run.redact.clean(&String::from_utf8_lossy(&err_bytes));
        if errors.is_empty() {
            errors = stderr;
        }
        let code = status.code().unwrap_or(-1);
        // Interrupted but done all the same: its work stands, and the engine sees the cancel
        // before the next step.
        if interrupted.is_some() && code != 0 {
            return Err(DriverError::Cancelled(format!(
                "the request was cancelled; terraform {command} was interrupted and stopped cleanly (its state is written)"
            )));
        }
        Ok(Ran {
            code,
            // Parsed, never reported (`output -json` holds the sensitive outputs).
            stdout: out,
            errors,
        })
    }

    /// Runs a command that must succeed; its failure names the command and what it said.
    async fn must(&self, run: &Run<'_>, args: &[&str], stream: bool) -> Result<Ran, DriverError> {
        let ran = self.cli(run, args, stream).await?;
        if ran.code == 0 {
            return Ok(ran);
        }
        let text = short(&ran.errors);
        let e = format!("terraform {} failed: {text}", args[0]);
        // Another run holds the state: worth trying again once it is done.
        if ran.errors.contains("Error acquiring the state lock")
            || ran.errors.contains("Error loading state")
        {
            Err(DriverError::Transient(e))
        } else {
            Err(DriverError::Permanent(e))
        }
    }

    async fn say(&self, run: &Run<'_>, level: &'static str, message: String) {
        if let Some(b) = run.backend {
            b.log(&run.ctx, level, message).await.ok();
        }
    }

    /// init, plan (`-destroy` for a destroy), the plan's summary to the log, apply of exactly
    /// that plan.
    async fn plan_and_apply(
        &self,
        run: &Run<'_>,
        destroy: bool,
    ) -> Result<PlanSummary, DriverError> {
        self.must(run, &["init", "-input=false", "-no-color"], false)
            .await?;
        let out = format!("-out={PLAN_FILE}");
        let mut plan = vec![
            "plan",
            "-input=false",
            "-no-color",
            "-lock-timeout=0s",
            &out,
        ];
        if destroy {
            plan.push("-destroy");
        }
        self.must(run, &plan, false).await?;
        let doc = self.show_plan(run).await?;
        let summary = PlanSummary::from_plan(&doc);
        self.say(run, "info", summary.describe()).await;
        // Policies see what will really change before anything does.
        if let Some(b) = run.backend {
            b.check_plan(&run.ctx, &run.part, json!(summary.changes))
                .await?;
        }
        self.must(run, &["apply", "-json", "-input=false", PLAN_FILE], true)
            .await?;
        Ok(summary)
    }

    pub async fn apply(
        &self,
        spec: &TerraformSpec,
        password: &str,
        tag: &str,
    ) -> Result<Applied, DriverError> {
        let resource_id = resource_of(tag)?;
        let run = self.open(spec, resource_id, Some(password), tag).await?;
        let result = async {
            self.plan_and_apply(&run, false).await?;
            let outputs = self.must(&run, &["output", "-json"], false).await?;
            let doc: Value = serde_json::from_str(&outputs.stdout).unwrap_or(Value::Null);
            Ok(split_outputs(&doc))
        }
        .await;
        run.close().await;
        let (outputs, secrets) = result?;
        Ok(Applied {
            outputs: Value::Object(outputs),
            secrets: Value::Object(secrets),
        })
    }

    pub async fn destroy(&self, spec: &TerraformSpec, tag: &str) -> Result<(), DriverError> {
        let resource_id = resource_of(tag)?;
        let run = self.open(spec, resource_id, None, tag).await?;
        let result = self.plan_and_apply(&run, true).await;
        run.close().await;
        result.map(|_| ())
    }

    /// The plan (`show -json`) of `spec` for a new resource, for an estimate: in a throwaway
    /// directory, against an empty local state, with no lock taken on any state paved keeps;
    /// nothing is applied. At most `estimate_concurrency` run at once in this process, each
    /// command within `estimate_timeout_seconds`. The module gets a throwaway password (the
    /// real one does not exist yet) and the environment it asks for, as a run does.
    pub async fn plan_for_estimate(&self, spec: &TerraformSpec) -> Result<Value, DriverError> {
        let wait = Duration::from_secs(self.settings.estimate_timeout_seconds.max(1));
        let _slot = match tokio::time::timeout(wait, self.estimates.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(DriverError::Transient(format!(
                    "every slot for estimate plans is taken (drivers.terraform.estimate_concurrency = {}); try again shortly",
                    self.settings.estimate_concurrency.max(1)
                )));
            }
        };
        let dir = self.work_dir(spec).await?;
        let run = Run {
            part: spec.part.clone(),
            dir,
            env: Vec::new(),
            redact: Redactor(Vec::new()),
            // No request: nothing is logged into one.
            ctx: RunContext::default(),
            backend: None,
            creds: None,
            limit: wait,
            limit_setting: "drivers.terraform.estimate_timeout_seconds",
        };
        let password = super::generate_password();
        let run = self
            .fill(run, spec, Some(&password), "paved:estimate")
            .await
            .map_err(|(_, e)| e)?;
        self.must(&run, &["init", "-input=false", "-no-color"], false)
            .await?;
        let out = format!("-out={PLAN_FILE}");
        self.must(
            &run,
            &["plan", "-input=false", "-no-color", "-lock=false", &out],
            false,
        )
        .await?;
        self.show_plan(&run).await
    }

    /// `show -json` of the run's saved plan, parsed.
    async fn show_plan(&self, run: &Run<'_>) -> Result<Value, DriverError> {
        let shown = self.must(run, &["show", "-json", PLAN_FILE], false).await?;
        serde_json::from_str(&shown.stdout).map_err(|e| {
            DriverError::Permanent(format!("terraform show -json printed no plan: {e}"))
        })
    }

    /// Drift: `plan -refresh-only -detailed-exitcode` against paved's state (without its
    /// lock: nothing is written), its `resource_drift` reported per resource and attribute. A state
    /// that records nothing is the part missing (`exists`).
    pub async fn drift(
        &self,
        spec: &TerraformSpec,
    ) -> Result<(Observed, Vec<super::Difference>), DriverError> {
        let seen = self.observe(spec).await?;
        if !seen.exists {
            return Ok((seen, vec![super::Difference::new("exists", true, false)]));
        }
        let ctx = super::context::current();
        let resource_id = ctx.resource_id.unwrap_or_default();
        let tag = format!("paved:resource:{resource_id}");
        let run = self.open(spec, &resource_id, None, &tag).await?;
        let result = async {
            self.must(&run, &["init", "-input=false", "-no-color"], false)
                .await?;
            let out = format!("-out={PLAN_FILE}");
            let plan = [
                "plan",
                "-refresh-only",
                "-detailed-exitcode",
                "-input=false",
                "-no-color",
                // It writes nothing: no lock, so it neither waits for an apply nor, should
                // paved die during it, leaves one behind.
                "-lock=false",
                &out,
            ];
            let ran = self.cli(&run, &plan, false).await?;
            match ran.code {
                // Nothing changed.
                0 => return Ok(Vec::new()),
                // Something did (resources, or only outputs): the plan says what.
                2 => {}
                _ => {
                    return Err(DriverError::Transient(format!(
                        "terraform plan -refresh-only failed: {}",
                        short(&ran.errors)
                    )));
                }
            }
            Ok(drift_differences(&self.show_plan(&run).await?))
        }
        .await;
        run.close().await;
        Ok((seen, result?))
    }

    /// What the state records: its serial and resource addresses (never attribute values).
    pub async fn observe(&self, spec: &TerraformSpec) -> Result<Observed, DriverError> {
        let ctx = super::context::current();
        let resource_id = ctx.resource_id.ok_or_else(|| {
            DriverError::Permanent("terraform parts are observed only within a request".into())
        })?;
        let state = self.backend()?.current(&resource_id, &spec.part).await?;
        let resources: Vec<String> = state
            .as_ref()
            .and_then(|s| s["resources"].as_array())
            .into_iter()
            .flatten()
            .filter(|r| r["mode"] == "managed")
            .filter(|r| r["instances"].as_array().is_some_and(|i| !i.is_empty()))
            .map(|r| {
                let module = r["module"]
                    .as_str()
                    .map(|m| format!("{m}."))
                    .unwrap_or_default();
                format!(
                    "{module}{}.{}",
                    r["type"].as_str().unwrap_or("?"),
                    r["name"].as_str().unwrap_or("?")
                )
            })
            .collect();
        Ok(Observed {
            exists: !resources.is_empty(),
            state: json!({
                "serial": state.as_ref().and_then(|s| s["serial"].as_i64()),
                "resources": resources,
            }),
            self_transactions: 0,
        })
    }
}

impl Run<'_> {
    async fn close(self) {
        if let (Some(backend), Some(creds)) = (self.backend, &self.creds)
            && let Err(e) = backend.close_run(&creds.run_id).await
        {
            tracing::warn!(run = %creds.run_id, error = %e, "could not close a terraform run; its lock is freed when its job's lease ends");
        }
        // `dir` is removed as it drops.
    }
}

/// A refresh-only plan's `resource_drift` as differences: `<address>.<attribute>` with the
/// recorded and the refreshed value (`(sensitive)` for a value the provider marks so), and
/// `<address>.exists` for a resource that is gone.
fn drift_differences(plan: &Value) -> Vec<super::Difference> {
    let mut out = Vec::new();
    for rd in plan["resource_drift"].as_array().into_iter().flatten() {
        let addr = rd["address"].as_str().unwrap_or("?");
        let change = &rd["change"];
        let actions: Vec<&str> = change["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if actions.contains(&"delete") && change["after"].is_null() {
            out.push(super::Difference::new(
                &format!("{addr}.exists"),
                true,
                false,
            ));
            continue;
        }
        let marked = |side: &str, name: &str| {
            let m = &change[side];
            m == &Value::Bool(true) || m.get(name).is_some_and(|v| v != &Value::Bool(false))
        };
        for name in changed_attributes(&change["before"], &change["after"]) {
            let field = format!("{addr}.{name}");
            if marked("before_sensitive", &name) || marked("after_sensitive", &name) {
                out.push(super::Difference::new(&field, "(sensitive)", "(sensitive)"));
            } else {
                out.push(super::Difference::new(
                    &field,
                    &change["before"][name.as_str()],
                    &change["after"][name.as_str()],
                ));
            }
        }
    }
    out
}

/// Outputs anyone on the team may see, and the sensitive ones (for the sealed store only).
fn split_outputs(doc: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let mut outputs = Map::new();
    let mut secrets = Map::new();
    for (name, o) in doc.as_object().into_iter().flatten() {
        let value = o.get("value").cloned().unwrap_or(Value::Null);
        if o["sensitive"].as_bool().unwrap_or(true) {
            secrets.insert(name.clone(), value);
        } else {
            outputs.insert(name.clone(), value);
        }
    }
    (outputs, secrets)
}

/// One `-json` UI line as a log line: its level, its message (a diagnostic with its summary
/// and detail), and whether it reports an error.
fn ui_line(line: &str) -> Option<(&'static str, String, bool)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let level = match v["@level"].as_str() {
        Some("error") => "error",
        Some("warn") => "warn",
        _ => "info",
    };
    let mut msg = v["@message"].as_str().unwrap_or_default().to_owned();
    if v["type"] == "diagnostic"
        && let Some(detail) = v["diagnostic"]["detail"].as_str()
        && !detail.is_empty()
    {
        msg = format!("{msg}: {detail}");
    }
    if msg.is_empty() {
        return None;
    }
    Some((level, format!("terraform: {msg}"), level == "error"))
}

/// At most a few lines of what the CLI said, for a step's error. A failed provisioner's
/// command (a whole script) is left out: its exit status and output are the news.
fn short(text: &str) -> String {
    let text = match (
        text.find("Error running command '"),
        text.find("': exit status"),
    ) {
        (Some(a), Some(b)) if a < b => {
            format!("{}Error running command '…{}", &text[..a], &text[b..])
        }
        _ => text.to_owned(),
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| "╷╵│─".contains(c)))
        .map(|l| l.trim_start_matches('│').trim())
        .collect();
    let mut out = lines.into_iter().take(6).collect::<Vec<_>>().join(" ");
    if out.len() > 600 {
        let mut cut = 600;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    if out.is_empty() {
        "no message".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        json!({"part": "db", "offering": "mariadb-database", "module": "./module",
               "environment": "dev", "variables": {"database": "orders"}, "env": ["MARIADB_ADMIN_HOST"]})
    }

    #[test]
    fn a_spec_names_a_module_inside_its_offering() {
        assert!(TerraformSpec::parse(&spec()).is_ok());
        for bad in ["../other", "/etc", "./", "a/../../b"] {
            let mut s = spec();
            s["module"] = json!(bad);
            let e = TerraformSpec::parse(&s).unwrap_err().to_string();
            assert!(e.contains("module"), "{bad}: {e}");
        }
    }

    #[test]
    fn paved_variables_and_the_cli_environment_are_not_the_offerings() {
        let mut s = spec();
        s["variables"]["paved_password"] = json!("x");
        assert!(
            TerraformSpec::parse(&s)
                .unwrap_err()
                .to_string()
                .contains("paved_")
        );
        for name in ["PATH", "TF_HTTP_PASSWORD", "LD_PRELOAD", "lower"] {
            let mut s = spec();
            s["env"] = json!([name]);
            assert!(TerraformSpec::parse(&s).is_err(), "{name}");
        }
    }

    #[test]
    fn an_env_the_configuration_lacks_is_refused_naming_the_key() {
        let d = TerraformDriver::new(TerraformDriverSettings::default(), PathBuf::from("x"));
        let mut s = spec();
        s["env"] = json!(["CLOUD_TOKEN"]);
        let e = d.parse(&s).unwrap_err().to_string();
        assert!(e.contains("drivers.terraform.env.dev.CLOUD_TOKEN"), "{e}");
    }

    #[test]
    fn configured_values_are_never_shown() {
        let mut with = TerraformDriverSettings::default();
        with.env.entry("dev".into()).or_default().insert(
            "MARIADB_ADMIN_PASSWORD".into(),
            EnvValue("hunter2-secret".into()),
        );
        assert!(!format!("{with:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&with).unwrap().contains("hunter2"));
    }

    #[test]
    fn a_plan_summary_names_addresses_and_attributes_but_no_values() {
        let plan = json!({"resource_changes": [
            {"address": "terraform_data.a", "change": {"actions": ["create"], "before": null, "after": {"input": "s3cr3t"}}},
            {"address": "terraform_data.b", "change": {"actions": ["update"], "before": {"input": "old", "x": 1}, "after": {"input": "new", "x": 1}}},
            {"address": "terraform_data.c", "change": {"actions": ["delete", "create"], "before": {"t": 1}, "after": {"t": 2}}},
            {"address": "terraform_data.d", "change": {"actions": ["delete"]}},
            {"address": "terraform_data.e", "change": {"actions": ["no-op"]}}
        ]});
        let s = PlanSummary::from_plan(&plan);
        assert_eq!(s.create, ["terraform_data.a"]);
        assert_eq!(s.update, ["terraform_data.b"]);
        assert_eq!(s.replace, ["terraform_data.c"]);
        assert_eq!(s.delete, ["terraform_data.d"]);
        let text = s.describe();
        assert!(text.contains("terraform_data.b: input"), "{text}");
        assert!(!text.contains("s3cr3t") && !text.contains("new"), "{text}");
    }

    #[test]
    fn a_failed_provisioner_is_reported_by_its_status_and_output() {
        let said = "terraform: Error: local-exec provisioner error: Error running command '# a\nlong\nscript\n': exit status 1. Output: database x is not this resource's";
        let s = short(said);
        assert!(!s.contains("script"), "{s}");
        assert!(
            s.contains("exit status 1. Output: database x is not this resource's"),
            "{s}"
        );
    }

    #[test]
    fn drift_is_reported_per_resource_and_attribute_and_sensitive_values_stay_hidden() {
        // `show -json` of a refresh-only plan (format 1.2) of a provider module.
        let plan = json!({"resource_drift": [
            {"address": "aws_db_instance.db", "change": {"actions": ["update"],
             "before": {"instance_class": "db.t4g.micro", "password": "old-s3cret", "tags": {"a": "1"}},
             "after": {"instance_class": "db.t4g.large", "password": "new-s3cret", "tags": {"a": "1"}},
             "before_sensitive": {"password": true}, "after_sensitive": {"password": true}}},
            {"address": "aws_s3_bucket.logs", "change": {"actions": ["delete"], "before": {"bucket": "x"}, "after": null}}
        ]});
        let d = drift_differences(&plan);
        let fields: Vec<(&str, String, String)> = d
            .iter()
            .map(|d| {
                (
                    d.field.as_str(),
                    d.expected.to_string(),
                    d.actual.to_string(),
                )
            })
            .collect();
        assert_eq!(
            fields,
            [
                (
                    "aws_db_instance.db.instance_class",
                    "\"db.t4g.micro\"".to_owned(),
                    "\"db.t4g.large\"".to_owned()
                ),
                (
                    "aws_db_instance.db.password",
                    "\"(sensitive)\"".to_owned(),
                    "\"(sensitive)\"".to_owned()
                ),
                (
                    "aws_s3_bucket.logs.exists",
                    "true".to_owned(),
                    "false".to_owned()
                ),
            ]
        );
        assert!(!format!("{d:?}").contains("s3cret"));
        assert!(drift_differences(&json!({"resource_drift": []})).is_empty());
    }

    #[test]
    fn sensitive_outputs_are_secrets() {
        let (o, s) = split_outputs(&json!({
            "host": {"sensitive": false, "value": "127.0.0.1"},
            "password": {"sensitive": true, "value": "pw"}
        }));
        assert_eq!(o, *json!({"host": "127.0.0.1"}).as_object().unwrap());
        assert_eq!(s, *json!({"password": "pw"}).as_object().unwrap());
    }
}
