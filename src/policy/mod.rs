//! Policy as code: Rego files in `policies/`, evaluated in-process (regorus).
//!
//! Every package may define `deny`, `warn` (sets of `{rule, message}` objects or plain strings)
//! and `require_approval` (sets of `{rule, message, role}`); all packages are combined, so a
//! request sees every violation at once. Thresholds live in data (`policies/*.yaml`, and
//! `policies.data` in paved's configuration on top), never in the Rego code. Rules named
//! `test_*` are unit tests, run by `paved policy test` as `opa test` would.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use regorus::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A violated (or warned) rule.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct Violation {
    /// Policy package, e.g. `paved.cost`.
    pub policy: String,
    /// Rule identifier within the policy, e.g. `cost_limit`.
    pub rule: String,
    pub message: String,
}

/// A rule that sends the request to a human.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct ApprovalNeed {
    pub policy: String,
    pub rule: String,
    pub message: String,
    /// Role that may approve: `lead` or `platform-admin`.
    pub role: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    NeedsApproval,
    Denied,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDecision {
    pub outcome: Outcome,
    pub deny: Vec<Violation>,
    pub warn: Vec<Violation>,
    pub require_approval: Vec<ApprovalNeed>,
}

impl PolicyDecision {
    fn new(
        deny: Vec<Violation>,
        warn: Vec<Violation>,
        require_approval: Vec<ApprovalNeed>,
    ) -> Self {
        let outcome = if !deny.is_empty() {
            Outcome::Denied
        } else if !require_approval.is_empty() {
            Outcome::NeedsApproval
        } else {
            Outcome::Allowed
        };
        Self {
            outcome,
            deny,
            warn,
            require_approval,
        }
    }
}

/// One `.rego` file as loaded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyInfo {
    pub package: String,
    pub file: String,
    /// Which of deny / warn / require_approval it defines.
    pub decides: Vec<String>,
    pub tests: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub file: PathBuf,
    pub name: String,
    pub passed: bool,
    pub detail: Option<String>,
}

/// Rules that decide a Terraform plan are named `plan_*`: with a plan in the input
/// (`input.plan`), only their denials count (the others decided the order without it).
pub const PLAN_RULE_PREFIX: &str = "plan_";

impl PolicyDecision {
    /// Adds the denials of `plan_*` rules in `with_plan` (a decision on the same order with
    /// its plan in the input) and decides the outcome again.
    pub fn with_plan_denials(self, with_plan: PolicyDecision) -> Self {
        let mut deny = self.deny;
        for v in with_plan.deny {
            if v.rule.starts_with(PLAN_RULE_PREFIX) && !deny.contains(&v) {
                deny.push(v);
            }
        }
        Self::new(deny, self.warn, self.require_approval)
    }
}

/// The compiled policies and their data.
#[derive(Clone)]
pub struct PolicySet {
    engine: Engine,
    infos: Vec<PolicyInfo>,
    /// The rules defining each decision kind.
    deciders: Vec<Decider>,
}

/// A decision rule: `data.<package>.<kind>`.
#[derive(Clone)]
struct Decider {
    path: String,
    kind: &'static str,
    package: String,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("policies", &self.infos)
            .finish()
    }
}

const DECISIONS: [&str; 3] = ["deny", "warn", "require_approval"];

impl PolicySet {
    /// Loads every `.rego` (and `.yaml`/`.json` data) file in `dir`, then merges `extra_data`
    /// over the data. A file that does not compile fails the whole load with file, line and reason.
    pub fn load(dir: &Path, extra_data: &Value) -> Result<Self, String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let mut engine = Engine::new();
        engine.set_strict_builtin_errors(true);
        let mut data = Value::Object(Map::new());
        let mut infos = Vec::new();
        let mut deciders = Vec::new();
        for path in &files {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            match ext {
                "rego" => {
                    let package = engine
                        .add_policy(path.display().to_string(), text.clone())
                        .map_err(|e| format!("{}", e).trim().to_owned())?;
                    let package = package.trim_start_matches("data.").to_owned();
                    let heads = rule_heads(&text);
                    let decides: Vec<String> = DECISIONS
                        .iter()
                        .filter(|d| heads.contains(**d))
                        .map(|d| d.to_string())
                        .collect();
                    for d in DECISIONS {
                        if heads.contains(d) {
                            deciders.push(Decider {
                                path: format!("data.{package}.{d}"),
                                kind: d,
                                package: package.clone(),
                            });
                        }
                    }
                    infos.push(PolicyInfo {
                        package,
                        file: path.display().to_string(),
                        decides,
                        tests: heads
                            .into_iter()
                            .filter(|h| h.starts_with("test_"))
                            .collect(),
                    });
                }
                "yaml" | "yml" | "json" => {
                    let v: Value = yaml_serde::from_str(&text)
                        .map_err(|e| format!("{}: not valid YAML/JSON: {e}", path.display()))?;
                    merge(&mut data, v);
                }
                _ => {}
            }
        }
        if infos.is_empty() {
            return Err(format!("{}: no .rego files", dir.display()));
        }
        merge(&mut data, extra_data.clone());
        engine
            .add_data(regorus::Value::from(data))
            .map_err(|e| format!("policy data: {e}"))?;
        prepare(&mut engine, &deciders, &infos);
        Ok(Self {
            engine,
            infos,
            deciders,
        })
    }

    pub fn policies(&self) -> &[PolicyInfo] {
        &self.infos
    }

    /// Evaluates every policy against `input` and combines the answers.
    ///
    /// One engine per decision, cloned from the prepared one (a clone of a prepared engine
    /// shares its analysed modules; regorus evaluates through `&mut`, so concurrent decisions
    /// each need their own), the input converted once and set once, every decision rule
    /// evaluated on it, and the answers read from regorus's values directly.
    pub fn evaluate(&self, input: &Value) -> Result<PolicyDecision, String> {
        let mut engine = self.engine.clone();
        // Straight from the borrowed document: no copy of it first.
        let input = <regorus::Value as serde::Deserialize>::deserialize(input)
            .map_err(|e| format!("policy input: {e}"))?;
        engine.set_input(input);
        let mut deny = BTreeSet::new();
        let mut warn = BTreeSet::new();
        let mut approvals = BTreeSet::new();
        for decider in &self.deciders {
            let (path, kind, package) = (&decider.path, decider.kind, decider.package.as_str());
            let value = engine
                .eval_rule(path.clone())
                .map_err(|e| format!("{path}: {e}"))?;
            let items: Vec<&regorus::Value> = match &value {
                regorus::Value::Set(items) => items.iter().collect(),
                regorus::Value::Array(items) => items.iter().collect(),
                regorus::Value::Null | regorus::Value::Undefined => continue,
                // What an undefined value used to read as; kept so a rule means what it did.
                regorus::Value::String(s) if s.as_ref() == "<undefined>" => continue,
                other => return Err(format!("{path} must be a set, not {}", as_json(other))),
            };
            for item in items {
                let (rule, message, role) = match item {
                    regorus::Value::String(s) => (
                        package.rsplit('.').next().unwrap_or(package).to_owned(),
                        s.to_string(),
                        None,
                    ),
                    regorus::Value::Object(o) => {
                        let field = |name: &str| match o.get(&regorus::Value::from(name)) {
                            Some(regorus::Value::String(s)) => Some(s.to_string()),
                            _ => None,
                        };
                        (
                            field("rule").unwrap_or_else(|| package.to_owned()),
                            field("message")
                                .ok_or_else(|| format!("{path}: an entry has no message"))?,
                            field("role"),
                        )
                    }
                    other => {
                        return Err(format!(
                            "{path}: entries must be strings or objects, not {}",
                            as_json(other)
                        ));
                    }
                };
                let v = Violation {
                    policy: package.to_owned(),
                    rule,
                    message,
                };
                match kind {
                    "deny" => {
                        deny.insert(v);
                    }
                    "warn" => {
                        warn.insert(v);
                    }
                    _ => {
                        approvals.insert(ApprovalNeed {
                            policy: v.policy,
                            rule: v.rule,
                            message: v.message,
                            role: role.unwrap_or_else(|| "platform-admin".into()),
                        });
                    }
                }
            }
        }
        Ok(PolicyDecision::new(
            deny.into_iter().collect(),
            warn.into_iter().collect(),
            approvals.into_iter().collect(),
        ))
    }

    /// Runs every `test_*` rule; a test passes when it evaluates to true.
    pub fn run_tests(&self) -> Vec<TestResult> {
        let mut out = Vec::new();
        for info in &self.infos {
            for test in &info.tests {
                let mut engine = self.engine.clone();
                let path = format!("data.{}.{test}", info.package);
                let (passed, detail) = match engine.eval_rule(path) {
                    Ok(v) if v == regorus::Value::from(true) => (true, None),
                    Ok(regorus::Value::Undefined) => (
                        false,
                        Some("undefined (a condition did not hold)".to_owned()),
                    ),
                    Ok(v) => (false, Some(format!("evaluated to {v}"))),
                    Err(e) => (false, Some(e.to_string())),
                };
                out.push(TestResult {
                    file: PathBuf::from(&info.file),
                    name: format!("{}.{test}", info.package),
                    passed,
                    detail,
                });
            }
        }
        out
    }
}

/// Analyses the modules once, now: regorus prepares an engine (scheduling, loop hoisting,
/// rule and function tables) on its first evaluation, and each clone of an engine not yet
/// prepared prepared again, two thirds of every decision. Compiling for one entry point is
/// regorus's public way to prepare without evaluating; the compiled form is not kept. A set
/// that cannot be prepared stays as it was, so evaluating it fails as it always did.
fn prepare(engine: &mut Engine, deciders: &[Decider], infos: &[PolicyInfo]) {
    let entry = deciders.first().map(|d| d.path.clone()).or_else(|| {
        infos
            .iter()
            .find_map(|i| Some(format!("data.{}.{}", i.package, i.tests.first()?)))
    });
    if let Some(rule) = entry {
        let _ = engine.compile_with_entrypoint(&rule.as_str().into());
    }
}

/// A regorus value as the JSON an error message shows.
fn as_json(v: &regorus::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Names of the rules a Rego file defines (heads at the start of a line).
fn rule_heads(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with(char::is_whitespace) && !l.starts_with('#'))
        .filter_map(|l| {
            let name: String = l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let rest = l[name.len()..].trim_start();
            let is_head = !name.is_empty()
                && !matches!(name.as_str(), "package" | "import" | "default")
                && (rest.starts_with("contains")
                    || rest.starts_with("if")
                    || rest.starts_with(":=")
                    || rest.starts_with('=')
                    || rest.starts_with('{')
                    || rest.starts_with('['));
            is_head.then_some(name)
        })
        .collect()
}

/// Deep-merges `over` into `base` (objects merge; anything else replaces).
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundled() -> PolicySet {
        PolicySet::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
            &json!({}),
        )
        .unwrap()
    }

    #[test]
    fn bundled_policies_load_and_decide() {
        let p = bundled();
        let input = json!({
            "offering": {"name": "postgres-database", "ttl": null},
            "parameters": {"name": "orders-prod"},
            "resource": {"name": "orders-prod-prod", "owner": "group:default/team-a", "environment": "prod", "labels": {"cost-center": "ENG-1"}},
            "parts": [{"id": "database", "driver": "postgres", "spec": {"database": "orders_prod", "backup_retention_days": 3, "multi_az": false}}],
            "estimate": {"monthly": 12000},
            "budget": {"team": "group:default/team-a", "monthly_limit": null, "current_monthly": 0, "after": 12000}
        });
        let d = p.evaluate(&input).unwrap();
        let rules = |v: &[Violation]| v.iter().map(|x| x.rule.clone()).collect::<Vec<_>>();
        assert_eq!(d.outcome, Outcome::Denied);
        assert_eq!(rules(&d.deny), ["cost_limit", "prod_backup_retention"]);
        assert_eq!(
            rules(&d.warn),
            ["prod_multi_az", "name_repeats_environment"],
            "sorted by policy"
        );
        assert_eq!(d.require_approval.len(), 1);
        assert_eq!(d.require_approval[0].role, "lead");
        assert!(d.deny[0].message.contains("12000"), "{}", d.deny[0].message);
    }

    #[test]
    fn thresholds_come_from_data_and_config() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let input = json!({"resource": {"environment": "dev", "owner": "x", "labels": {"cost-center": "A"}}, "parts": [], "estimate": {"monthly": 150}, "offering": {}, "parameters": {}, "budget": {}});
        assert_eq!(bundled().evaluate(&input).unwrap().outcome, Outcome::Denied);
        let raised = PolicySet::load(
            &dir,
            &json!({"guardrails": {"cost_limit_monthly": {"dev": 200}}}),
        )
        .unwrap();
        assert_eq!(raised.evaluate(&input).unwrap().outcome, Outcome::Allowed);
    }

    #[test]
    fn one_set_decides_each_input_on_its_own() {
        // Engines cloned from the prepared one: nothing of one decision leaks into the next.
        let p = bundled();
        let input = |env: &str, monthly: f64| json!({"resource": {"environment": env, "owner": "x", "labels": {"cost-center": "A"}}, "parts": [], "estimate": {"monthly": monthly}, "offering": {}, "parameters": {}, "budget": {}});
        for _ in 0..3 {
            assert_eq!(
                p.evaluate(&input("dev", 150.0)).unwrap().outcome,
                Outcome::Denied
            );
            assert_eq!(
                p.evaluate(&input("dev", 10.0)).unwrap().outcome,
                Outcome::Allowed
            );
        }
        assert_eq!(
            p.clone().evaluate(&input("prod", 20000.0)).unwrap().deny[0].rule,
            "cost_limit"
        );
    }

    #[test]
    fn compile_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("broken.rego"),
            "package x\n\nimport rego.v1\n\ndeny contains msg if {\n  msg := \n}\n",
        )
        .unwrap();
        let err = PolicySet::load(dir.path(), &json!({})).unwrap_err();
        assert!(err.contains("broken.rego:"), "{err}");
        assert!(
            err.contains(":6") || err.contains(":7"),
            "line is named: {err}"
        );
    }

    #[test]
    fn an_undefined_decision_rule_is_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.rego"),
            "package a\n\nimport rego.v1\n\ndeny contains \"always\" if true\n",
        )
        .unwrap();
        // A complete rule that is undefined for this input.
        std::fs::write(
            dir.path().join("b.rego"),
            "package b\n\nimport rego.v1\n\nwarn := {\"x\"} if input.never\n",
        )
        .unwrap();
        let p = PolicySet::load(dir.path(), &json!({})).unwrap();
        let d = p.evaluate(&json!({})).unwrap();
        assert_eq!(d.outcome, Outcome::Denied);
        assert_eq!(d.deny[0].message, "always");
        assert!(d.warn.is_empty());
    }

    #[test]
    fn bundled_policy_tests_pass() {
        let results = bundled().run_tests();
        assert!(
            results.len() >= 20,
            "every rule has tests, allow and deny side: {}",
            results.len()
        );
        let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
        assert!(failed.is_empty(), "{failed:#?}");
    }
}
