//! `paved templates lint`: everything that can be wrong with an offering folder, reported as
//! `file:line: message` so editors and CI logs point at the spot.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::cost::{self, PriceBook};
use crate::templates::{OFFERING_FILE, Offering, Renderer, SpecForCheck, TEMPLATE_FILE};
use crate::vocab::entity_ref::{is_valid_entity_name, is_valid_tag};

/// The `paved:*` actions templates may call (the Actions Registry serves these ids).
pub const PAVED_ACTIONS: &[&str] = &[
    "paved:estimate",
    "paved:provision",
    "paved:wait",
    "paved:destroy",
    "paved:extend-ttl",
    "paved:update",
];

/// Backstage's built-in scaffolder actions (scaffolder-backend 4.2), which templates may mix in.
const BACKSTAGE_ACTIONS: &[&str] = &[
    "catalog:register",
    "catalog:write",
    "catalog:fetch",
    "debug:log",
    "debug:wait",
    "fetch:plain",
    "fetch:plain:file",
    "fetch:template",
    "fetch:template:file",
    "fs:delete",
    "fs:rename",
    "fs:readdir",
];

/// Drivers paved can provision with.
pub const DRIVERS: &[&str] = &["postgres", "redis", "terraform"];

/// Variables the provisioning spec may read.
const SPEC_ROOTS: &[&str] = &["parameters", "preset", "offering"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// `^[a-z][a-z0-9]*(-[a-z0-9]+)*$`, at most 20 characters.
fn is_valid_part_id(id: &str) -> bool {
    id.len() <= 20
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.split('-').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Lints every offering folder under `dir`; with a price book, offerings are also priced and
/// the prices their forms show are checked.
pub fn lint_dir(dir: &Path, pricebook: Option<&PriceBook>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut folders: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) => {
            return vec![Finding {
                file: dir.to_owned(),
                line: 0,
                message: format!("cannot read folder: {e}"),
            }];
        }
    };
    folders.sort();
    if folders.is_empty() {
        findings.push(Finding {
            file: dir.to_owned(),
            line: 0,
            message: "no offering folders found".into(),
        });
    }
    for folder in folders {
        findings.extend(lint_offering(&folder, pricebook));
    }
    findings
}

struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    fn read(path: PathBuf) -> Result<Self, Finding> {
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Self { path, text }),
            Err(e) => Err(Finding {
                line: 0,
                message: format!("cannot read: {e}"),
                file: path,
            }),
        }
    }

    /// Line (1-based) of the first line containing every needle, or 1.
    fn line_of(&self, needles: &[&str]) -> usize {
        self.text
            .lines()
            .position(|l| needles.iter().all(|n| l.contains(n)))
            .map(|i| i + 1)
            .unwrap_or(1)
    }

    fn at(&self, needles: &[&str], message: impl Into<String>) -> Finding {
        Finding {
            file: self.path.clone(),
            line: self.line_of(needles),
            message: message.into(),
        }
    }

    fn yaml(&self) -> Result<Value, Finding> {
        yaml_serde::from_str(&self.text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            Finding {
                file: self.path.clone(),
                line,
                message: format!("not valid YAML: {e}"),
            }
        })
    }
}

/// Lints one offering folder.
pub fn lint_offering(folder: &Path, pricebook: Option<&PriceBook>) -> Vec<Finding> {
    let mut out = Vec::new();
    let template = match Source::read(folder.join(TEMPLATE_FILE)) {
        Ok(s) => s,
        Err(f) => return vec![f],
    };
    let offering = match Source::read(folder.join(OFFERING_FILE)) {
        Ok(s) => s,
        Err(f) => return vec![f],
    };
    let tv = match template.yaml() {
        Ok(v) => v,
        Err(f) => return vec![f],
    };
    let str_at = |p: &str| tv.pointer(p).and_then(Value::as_str);

    // Envelope and Backstage naming rules.
    if str_at("/apiVersion") != Some("scaffolder.backstage.io/v1beta3") {
        out.push(template.at(
            &["apiVersion"],
            "apiVersion must be scaffolder.backstage.io/v1beta3",
        ));
    }
    if str_at("/kind") != Some("Template") {
        out.push(template.at(&["kind"], "kind must be Template"));
    }
    for problem in crate::templates::backstage_schema::check_template(&tv) {
        out.push(template.at(&[problem.needle.as_str()], problem.message));
    }
    let name = str_at("/metadata/name").unwrap_or_default();
    if !is_valid_entity_name(name) {
        out.push(template.at(&["name:"], format!("metadata.name {name:?} breaks Backstage naming rules (1-63 letters, digits, '-', '_', '.'; alphanumeric at both ends)")));
    }
    let folder_name = folder
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name != folder_name {
        out.push(template.at(
            &["name:"],
            format!("metadata.name {name:?} must equal the folder name {folder_name:?}"),
        ));
    }
    for tag in tv
        .pointer("/metadata/tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let t = tag.as_str().unwrap_or_default();
        if !is_valid_tag(t) {
            out.push(template.at(
                &[t],
                format!("tag {t:?} breaks Backstage tag rules (^[a-z0-9:+#]+(-[a-z0-9:+#]+)*$)"),
            ));
        }
    }

    // Steps call actions that exist, and paved's provisioning steps pass an idempotency key.
    let steps = tv
        .pointer("/spec/steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if steps.is_empty() {
        out.push(template.at(&["steps"], "spec.steps must list at least one step"));
    }
    let mut step_ids = BTreeSet::new();
    for step in &steps {
        let id = step.get("id").and_then(Value::as_str).unwrap_or_default();
        let action = step
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !id.is_empty() && !step_ids.insert(id.to_owned()) {
            out.push(template.at(&["id:", id], format!("step id {id:?} is used twice")));
        }
        if action.starts_with("paved:") {
            if !PAVED_ACTIONS.contains(&action) {
                out.push(template.at(
                    &["action:", action],
                    format!(
                        "step {id:?}: paved has no action {action:?} (it has: {})",
                        PAVED_ACTIONS.join(", ")
                    ),
                ));
            }
            if action == "paved:provision" && step.pointer("/input/idempotencyKey").is_none() {
                out.push(template.at(&["action:", action], format!("step {id:?}: paved:provision needs input.idempotencyKey (e.g. ${{{{ context.task.id }}}}) so task recovery cannot order twice")));
            }
        } else if !BACKSTAGE_ACTIONS.contains(&action) {
            out.push(template.at(
                &["action:", action],
                format!(
                    "step {id:?}: {action:?} is neither a paved action nor a Backstage built-in"
                ),
            ));
        }
    }

    // The form compiles; the offering parses, renders, and uses exactly the form's fields.
    let renderer = Renderer::new();
    match Offering::load(folder, &renderer) {
        Err(message) => {
            let src = if message.contains(OFFERING_FILE) {
                &offering
            } else {
                &template
            };
            let needle = message.split('`').nth(1).unwrap_or("");
            out.push(src.at(&[needle], message.clone()));
        }
        Ok(o) => lint_loaded(&o, &template, &offering, &renderer, pricebook, &mut out),
    }
    out
}

fn lint_loaded(
    o: &Offering,
    template: &Source,
    offering: &Source,
    renderer: &Renderer,
    pricebook: Option<&PriceBook>,
    out: &mut Vec<Finding>,
) {
    let fields = o.form.fields();
    let spec_value = serde_json::to_value(SpecForCheck::from(&o.spec)).unwrap_or(Value::Null);
    let vars = match renderer.variables(&spec_value) {
        Ok(v) => v,
        Err(e) => {
            out.push(offering.at(&[], e.to_string()));
            return;
        }
    };
    let mut used = BTreeSet::new();
    for var in &vars {
        let mut segs = var.splitn(3, '.');
        let root = segs.next().unwrap_or_default();
        if !SPEC_ROOTS.contains(&root) {
            out.push(offering.at(
                &[root],
                format!(
                    "unknown variable {root:?} (the spec can read: {})",
                    SPEC_ROOTS.join(", ")
                ),
            ));
            continue;
        }
        if root == "parameters" {
            match segs.next() {
                Some(field) if fields.contains(field) => {
                    used.insert(field.to_owned());
                }
                Some(field) => out.push(offering.at(
                    &[&format!("parameters.{field}")],
                    format!("parameters.{field} is not a field of the template's form"),
                )),
                None => {
                    // `${{ parameters }}` as a whole uses everything.
                    used.extend(fields.iter().cloned());
                }
            }
        }
    }
    if let Some(p) = &o.spec.presets {
        used.insert(p.parameter.clone());
        check_presets(o, p, template, offering, out);
    }
    for field in fields.difference(&used) {
        out.push(template.at(
            &[&format!("{field}:")],
            format!("form field {field:?} is never used by {OFFERING_FILE}: drop it or use it"),
        ));
    }
    // An offering promises outputs of its parts: each must name one.
    for out_spec in &o.spec.outputs.values {
        // Its entity shows it as annotation `paved.dev/output.<part>.<name>`.
        let key = format!("output.{}.{}", out_spec.part, out_spec.name);
        if !is_valid_entity_name(&key) {
            out.push(offering.at(
                &["outputs:", &out_spec.name],
                format!(
                    "output {:?}: {key:?} must be a valid Backstage annotation name (up to 63 letters, digits, '-', '_', '.'; starting and ending alphanumeric), as its entity shows it under paved.dev/{key}",
                    out_spec.name
                ),
            ));
        }
        if !o.spec.parts.iter().any(|p| p.id == out_spec.part) {
            out.push(offering.at(
                &["outputs:", &out_spec.name],
                format!(
                    "output {:?} names part {:?}, which the offering does not have",
                    out_spec.name, out_spec.part
                ),
            ));
        }
    }
    let mut part_ids = BTreeSet::new();
    for part in &o.spec.parts {
        // A composite's parts become catalog entities named `<resource>.<part id>`.
        if !is_valid_part_id(&part.id) {
            out.push(offering.at(
                &["id:", &part.id],
                format!(
                    "part id {:?}: use 1-20 lowercase letters, digits and single dashes, starting with a letter (it names the part's catalog entity)",
                    part.id
                ),
            ));
        }
        if !part_ids.insert(part.id.as_str()) {
            out.push(offering.at(
                &["id:", &part.id],
                format!("part id {:?} is used twice", part.id),
            ));
        }
        if !DRIVERS.contains(&part.driver.as_str()) {
            out.push(offering.at(
                &["driver:", &part.driver],
                format!(
                    "part {:?}: unknown driver {:?} (known: {})",
                    part.id,
                    part.driver,
                    DRIVERS.join(", ")
                ),
            ));
        }
    }
    trial_render(o, renderer, template, offering, out);
    if let Some(book) = pricebook {
        trial_price(o, renderer, book, template, offering, out);
    }
    if o.spec.resource.ttl_hours.is_some() != o.spec.ttl.is_some() {
        out.push(offering.at(
            &["ttl"],
            "resource.ttl_hours and ttl (default_hours, max_hours) go together",
        ));
    }
    if let Some(t) = &o.spec.ttl
        && (t.default_hours == 0 || t.default_hours > t.max_hours)
    {
        out.push(offering.at(
            &["default_hours"],
            "ttl.default_hours must be between 1 and ttl.max_hours",
        ));
    }
}

fn check_presets(
    o: &Offering,
    p: &crate::templates::Presets,
    template: &Source,
    offering: &Source,
    out: &mut Vec<Finding>,
) {
    let choices: Option<BTreeSet<String>> = o.form.page_schemas().find_map(|page| {
        page.pointer(&format!("/properties/{}/enum", p.parameter))
            .and_then(Value::as_array)
            .map(|e| {
                e.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
    });
    let Some(choices) = choices else {
        out.push(offering.at(
            &["parameter:"],
            format!(
                "presets.parameter {:?} must be a form field with an enum",
                p.parameter
            ),
        ));
        return;
    };
    for key in p.values.keys() {
        if !choices.contains(key) {
            out.push(offering.at(
                &[&format!("{key}:")],
                format!(
                    "preset {key:?} is not one of the form's choices for {:?}",
                    p.parameter
                ),
            ));
        }
    }
    for choice in &choices {
        if !p.values.contains_key(choice) {
            out.push(template.at(
                &[choice.as_str()],
                format!(
                    "choice {choice:?} of {:?} has no preset in {OFFERING_FILE}",
                    p.parameter
                ),
            ));
        }
    }
}

/// Renders the spec with sample values (once per preset choice), so unknown filters, undefined
/// values and invalid resource names surface here rather than at the first order.
fn trial_render(
    o: &Offering,
    renderer: &Renderer,
    template: &Source,
    offering: &Source,
    out: &mut Vec<Finding>,
) {
    for (choice, values) in per_preset(o, sample_values(o)) {
        let valid = match o.validate(&Value::Object(values)) {
            Ok(v) => v,
            Err(errors) => {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                out.push(template.at(&["parameters"], format!(
                    "cannot build sample values to test-render the spec ({}); give those fields a `default` or `examples`",
                    list.join("; ")
                )));
                return;
            }
        };
        let label = preset_note(&choice);
        match o.render(renderer, &valid) {
            Err(e) => out.push(offering.at(
                &[e.path.rsplit('.').next().unwrap_or("")],
                format!("test render{label}: {e}"),
            )),
            Ok(mut spec) => {
                if let Err(errors) = spec.check() {
                    for e in errors {
                        out.push(offering.at(
                            &[e.field.rsplit('.').next().unwrap_or("")],
                            format!("test render{label}: {e}"),
                        ));
                    }
                }
            }
        }
    }
}

/// Prices each preset with only the required and defaulted fields (what a developer who
/// picks a size sees), and checks the `~$X/month` the preset's label promises.
/// An offering with Terraform parts is priced from their plan, which needs the CLI: its
/// promises are checked by the estimate itself (tests/it/terraform.rs), not here.
fn trial_price(
    o: &Offering,
    renderer: &Renderer,
    book: &PriceBook,
    template: &Source,
    offering: &Source,
    out: &mut Vec<Finding>,
) {
    if o.spec.parts.iter().any(|p| p.driver == "terraform") {
        return;
    }
    let mut required = BTreeSet::new();
    let mut defaulted = BTreeSet::new();
    for page in o.form.page_schemas() {
        for r in page
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            required.extend(r.as_str().map(str::to_owned));
        }
        for (k, v) in page
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if v.get("default").is_some() {
                defaulted.insert(k.clone());
            }
        }
    }
    let mut base = sample_values(o);
    base.retain(|k, _| required.contains(k) || defaulted.contains(k));
    for (choice, values) in per_preset(o, base) {
        let Ok(valid) = o.validate(&Value::Object(values)) else {
            return;
        };
        let Ok(spec) = o.render(renderer, &valid) else {
            return;
        };
        let label = preset_note(&choice);
        let est = match cost::estimate(o, renderer, book, &valid, &spec) {
            Ok(e) => e,
            Err(e) => {
                out.push(offering.at(&["cost:"], format!("test pricing{label}: {e}")));
                continue;
            }
        };
        let (Some(c), Some(p)) = (&choice, &o.spec.presets) else {
            continue;
        };
        let Some(shown) = preset_label(o, &p.parameter, c) else {
            continue;
        };
        if let Some(promised) = promised_monthly(&shown)
            && (promised - est.monthly).abs() > 0.005
        {
            out.push(template.at(&[shown.as_str()], format!(
                "the form promises ~${promised:.2}/month for {c:?}, but it prices at ${:.2}/month with the current price book",
                est.monthly
            )));
        }
    }
}

/// `base` once per size preset, with the preset's parameter set to it (once, as is, for an
/// offering without presets).
fn per_preset(
    o: &Offering,
    base: serde_json::Map<String, Value>,
) -> Vec<(Option<String>, serde_json::Map<String, Value>)> {
    match &o.spec.presets {
        None => vec![(None, base)],
        Some(p) => p
            .values
            .keys()
            .map(|c| {
                let mut values = base.clone();
                values.insert(p.parameter.clone(), Value::String(c.clone()));
                (Some(c.clone()), values)
            })
            .collect(),
    }
}

/// ` (preset "small")` in a finding, when one was tried.
fn preset_note(choice: &Option<String>) -> String {
    choice
        .as_deref()
        .map(|c| format!(" (preset {c:?})"))
        .unwrap_or_default()
}

fn preset_label(o: &Offering, parameter: &str, choice: &str) -> Option<String> {
    o.form.page_schemas().find_map(|page| {
        let prop = page.pointer(&format!("/properties/{parameter}"))?;
        let i = prop
            .get("enum")?
            .as_array()?
            .iter()
            .position(|v| v == choice)?;
        prop.get("enumNames")?.get(i)?.as_str().map(str::to_owned)
    })
}

/// `"Small: ... (~$42.75/month)"` → 42.75.
fn promised_monthly(label: &str) -> Option<f64> {
    let rest = &label[label.find("~$")? + 2..];
    let end = rest.find("/month")?;
    rest[..end].replace(',', "").trim().parse().ok()
}

/// Plausible values for every form field: `examples[0]`, `default`, the first `enum` or
/// `const`, or the first of a few typical strings/numbers the field's own schema accepts.
fn sample_values(o: &Offering) -> serde_json::Map<String, Value> {
    const STRINGS: &[&str] = &[
        "example",
        "example-1",
        "ENG-1234",
        "pr-42",
        "group:default/example",
    ];
    let mut out = serde_json::Map::new();
    for page in o.form.page_schemas() {
        let Some(props) = page.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (name, prop) in props {
            let pick = prop
                .pointer("/examples/0")
                .or_else(|| prop.get("default"))
                .or_else(|| prop.pointer("/enum/0"))
                .or_else(|| prop.get("const"))
                .cloned()
                .or_else(|| {
                    let candidates: Vec<Value> = match prop.get("type").and_then(Value::as_str) {
                        Some("integer" | "number") => {
                            let min = prop.get("minimum").cloned().unwrap_or(Value::from(1));
                            vec![min, Value::from(1)]
                        }
                        Some("boolean") => vec![Value::Bool(false)],
                        Some("string") | None => STRINGS.iter().map(|s| Value::from(*s)).collect(),
                        _ => vec![],
                    };
                    candidates
                        .into_iter()
                        .find(|c| jsonschema::is_valid(prop, c))
                });
            if let Some(v) = pick {
                out.insert(name.clone(), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of a bundled offering with `edit` applied to one of its files.
    fn broken(
        offering: &str,
        file: &str,
        edit: impl Fn(String) -> String,
    ) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(offering);
        std::fs::create_dir_all(&folder).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates")
            .join(offering);
        for f in [TEMPLATE_FILE, OFFERING_FILE] {
            let text = std::fs::read_to_string(src.join(f)).unwrap();
            let text = if f == file { edit(text) } else { text };
            std::fs::write(folder.join(f), text).unwrap();
        }
        (dir, folder)
    }

    fn messages(findings: &[Finding]) -> String {
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn bundled_templates_are_clean() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let book = PriceBook::load(&root.join("pricing.yaml")).unwrap();
        let findings = lint_dir(&root.join("templates"), Some(&book));
        assert!(findings.is_empty(), "{}", messages(&findings));
    }

    #[test]
    fn broken_fixtures_are_reported_with_file_and_line() {
        type Edit = Box<dyn Fn(String) -> String>;
        let cases: Vec<(&str, &str, Edit, &str, &str)> = vec![
            (
                "postgres-database",
                TEMPLATE_FILE,
                Box::new(|t| t.replace("kind: Template", "kind: Template\nbogus: [")),
                TEMPLATE_FILE,
                "not valid YAML",
            ),
            (
                "postgres-database",
                TEMPLATE_FILE,
                Box::new(|t| {
                    t.replace(
                        "apiVersion: scaffolder.backstage.io/v1beta3",
                        "apiVersion: scaffolder.backstage.io/v1beta2",
                    )
                }),
                TEMPLATE_FILE,
                "apiVersion must be scaffolder.backstage.io/v1beta3",
            ),
            (
                "postgres-database",
                TEMPLATE_FILE,
                Box::new(|t| t.replace("  name: postgres-database", "  name: Postgres_Database-")),
                TEMPLATE_FILE,
                "breaks Backstage naming rules",
            ),
            (
                "postgres-database",
                TEMPLATE_FILE,
                Box::new(|t| {
                    t.replace(
                        "tags: [paved, database, postgres]",
                        "tags: [paved, Data Base]",
                    )
                }),
                TEMPLATE_FILE,
                "tag \"Data Base\"",
            ),
            (
                "postgres-database",
                TEMPLATE_FILE,
                Box::new(|t| t.replace("action: paved:wait", "action: paved:wiat")),
                TEMPLATE_FILE,
                "paved has no action \"paved:wiat\"",
            ),
            (
                "postgres-database",
                TEMPLATE_FILE,
                Box::new(|t| t.replace("action: paved:wait", "action: acme:thing")),
                TEMPLATE_FILE,
                "neither a paved action nor a Backstage built-in",
            ),
            (
                "postgres-database",
                TEMPLATE_FILE,
                Box::new(|t| t.replace("        idempotencyKey: ${{ context.task.id }}\n", "")),
                TEMPLATE_FILE,
                "needs input.idempotencyKey",
            ),
            (
                "redis-cache",
                TEMPLATE_FILE,
                Box::new(|t| {
                    t.replace(
                        "type: boolean\n          default: true",
                        "type: bolean\n          default: true",
                    )
                }),
                TEMPLATE_FILE,
                "not a valid JSON Schema",
            ),
            (
                "postgres-database",
                TEMPLATE_FILE,
                Box::new(|t| {
                    t.replace("        owner:\n", "        read_replicas:\n          type: integer\n          default: 0\n        owner:\n")
                }),
                TEMPLATE_FILE,
                "form field \"read_replicas\" is never used",
            ),
            (
                "postgres-database",
                TEMPLATE_FILE,
                Box::new(|t| {
                    t.replace("  tags: [paved, database, postgres]\n", "  tags: [paved, database, postgres]\n  annotations:\n    paved.dev/tier: 3\n")
                }),
                TEMPLATE_FILE,
                "Backstage Template schema",
            ),
            (
                "postgres-database",
                OFFERING_FILE,
                Box::new(|t| {
                    t.replace(
                        "${{ preset.connection_limit }}",
                        "${{ parameters.connections }}",
                    )
                }),
                OFFERING_FILE,
                "parameters.connections is not a field of the template's form",
            ),
            (
                "postgres-database",
                OFFERING_FILE,
                Box::new(|t| t.replace("{part: database, name: host", "{part: db, name: host")),
                OFFERING_FILE,
                "output \"host\" names part \"db\", which the offering does not have",
            ),
            (
                "postgres-database",
                OFFERING_FILE,
                Box::new(|t| t.replace("driver: postgres", "driver: mysql")),
                OFFERING_FILE,
                "unknown driver \"mysql\"",
            ),
            (
                "preview-environment",
                OFFERING_FILE,
                Box::new(|t| t.replace("  - id: cache", "  - id: Cache.1")),
                OFFERING_FILE,
                "part id \"Cache.1\": use 1-20 lowercase letters",
            ),
            (
                "preview-environment",
                OFFERING_FILE,
                Box::new(|t| t.replace("  - id: cache", "  - id: database")),
                OFFERING_FILE,
                "part id \"database\" is used twice",
            ),
            (
                "postgres-database",
                OFFERING_FILE,
                Box::new(|t| t.replace("    large: {", "    huge: {")),
                OFFERING_FILE,
                "preset \"huge\" is not one of the form's choices",
            ),
            (
                "postgres-database",
                OFFERING_FILE,
                Box::new(|t| t.replace("| replace('-', '_')", "| snake_case")),
                OFFERING_FILE,
                "test render",
            ),
            (
                "postgres-database",
                OFFERING_FILE,
                Box::new(|t| {
                    t.replace(
                        "${{ preset.connection_limit }}",
                        "${{ presets.connection_limit }}",
                    )
                }),
                OFFERING_FILE,
                "unknown variable \"presets\"",
            ),
            (
                "postgres-database",
                OFFERING_FILE,
                Box::new(|t| {
                    t.replace(
                        "name: ${{ parameters.name }}-${{ parameters.environment }}",
                        "name: ${{ parameters.name }} ${{ parameters.environment }}",
                    )
                }),
                OFFERING_FILE,
                "not a valid Backstage entity name",
            ),
            (
                "preview-environment",
                OFFERING_FILE,
                Box::new(|t| t.replace("ttl:\n  default_hours: 24\n  max_hours: 168\n", "")),
                OFFERING_FILE,
                "resource.ttl_hours and ttl",
            ),
            (
                "redis-cache",
                OFFERING_FILE,
                Box::new(|t| t.replace("version: 1.0.0", "version: 1.0.0\nunknown_key: 1")),
                OFFERING_FILE,
                "unknown field `unknown_key`",
            ),
            (
                "postgres-database",
                TEMPLATE_FILE,
                Box::new(|t| t.replace("~$305.00/month", "~$99.00/month")),
                TEMPLATE_FILE,
                "the form promises ~$99.00/month for \"medium\", but it prices at $305.00/month",
            ),
            (
                "redis-cache",
                OFFERING_FILE,
                Box::new(|t| {
                    t.replace(
                        "prices.redis.user_monthly",
                        "prices.redis.memory_monthly[part.key_prefix]",
                    )
                }),
                OFFERING_FILE,
                "test pricing",
            ),
        ];
        for (offering, file, edit, expected_file, needle) in cases {
            let (_dir, folder) = broken(offering, file, edit);
            let book = PriceBook::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("pricing.yaml"))
                .unwrap();
            let findings = lint_offering(&folder, Some(&book));
            let all = messages(&findings);
            let hit = findings
                .iter()
                .find(|f| f.message.contains(needle))
                .unwrap_or_else(|| panic!("{offering}/{file}: expected {needle:?}, got:\n{all}"));
            assert!(hit.file.ends_with(expected_file), "{hit}");
            assert!(hit.line >= 1, "{hit}");
        }
    }

    #[test]
    fn missing_files_and_folders_are_findings() {
        let dir = tempfile::tempdir().unwrap();
        assert!(messages(&lint_dir(dir.path(), None)).contains("no offering folders"));
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        assert!(messages(&lint_dir(dir.path(), None)).contains("template.yaml"));
        assert!(messages(&lint_dir(&dir.path().join("nope"), None)).contains("cannot read folder"));
    }
}
