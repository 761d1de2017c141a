//! Offerings: what developers can order, straight from `templates/`.
//!
//! Each offering is one folder: `template.yaml`, a genuine Backstage Software Template (the
//! form the portal shows), and `offering.yaml`, what paved needs to provision it (the resource
//! it becomes, size presets, the parts and their drivers). Both are versioned together; a
//! request records the version and digest it was made from.

pub mod backstage_schema;
pub mod cost_model;
mod form;
pub mod order;
mod render;
mod store;

use std::{collections::BTreeMap, path::Path, sync::Arc};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::vocab::field_error::FieldError;
pub use form::{Form, ValidValues};
pub use render::{Context, RenderError, Renderer};
pub use store::{Catalog, LoadProblem, TemplateStore, fingerprint};

use crate::vocab::entity_ref::{EntityRef, is_valid_entity_name};

pub const TEMPLATE_FILE: &str = "template.yaml";
pub const OFFERING_FILE: &str = "offering.yaml";

/// `offering.yaml`: the provisioning side of a template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferingSpec {
    /// Version of this offering; bump it when the spec changes meaning.
    pub version: String,
    /// The `Resource` a request becomes; every string may use `${{ }}`.
    pub resource: ResourceSpec,
    /// Size presets: a form field picks one, the spec reads it as `preset.*`.
    #[serde(default)]
    pub presets: Option<Presets>,
    /// Lifetime limits for ephemeral offerings (hours).
    #[serde(default)]
    pub ttl: Option<TtlLimits>,
    /// What gets provisioned, by which driver, in order.
    pub parts: Vec<PartSpec>,
    /// How to price it from the price book.
    #[serde(default)]
    pub cost: cost_model::CostModel,
    /// What a resource of it hands its team, as the offering promises it.
    #[serde(default)]
    pub outputs: Outputs,
}

/// What a resource of an offering hands its team: each part's non-secret outputs (the
/// resource's `outputs.<part>.<name>`), and where the secret ones are read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    #[serde(default)]
    pub values: Vec<OutputSpec>,
    /// Where the password and a connection URL are read (never an output).
    #[serde(default)]
    pub credentials: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// The part whose driver reports it.
    pub part: String,
    /// Its key in the part's outputs (`host`, `port`, `database`, `username`, ...).
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Resource `spec.type` (database, cache, environment, ...).
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub owner: String,
    pub environment: String,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub ttl_hours: Option<String>,
    /// Entity labels (e.g. `cost-center`); values must follow Backstage's label rules.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presets {
    /// The form field whose value selects the preset.
    pub parameter: String,
    pub values: BTreeMap<String, Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TtlLimits {
    pub default_hours: u32,
    pub max_hours: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartSpec {
    pub id: String,
    pub driver: String,
    #[serde(default)]
    pub spec: Value,
}

/// One loaded offering.
#[derive(Debug)]
pub struct Offering {
    pub name: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    /// `<offering.yaml version>+<digest>`: what a request records.
    pub version: String,
    /// The Template entity, unchanged.
    pub template: Value,
    pub form: Form,
    pub spec: OfferingSpec,
}

/// A request's rendered provisioning plan: identity of the resource plus each part's spec.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct RenderedSpec {
    pub resource: RenderedResource,
    pub parts: Vec<RenderedPart>,
    /// The outputs the offering declares: which of the resource's outputs its entity shows
    /// (kept with the resource, so its entity shows what it was ordered with).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputSpec>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct RenderedResource {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub owner: String,
    pub environment: String,
    pub component: Option<String>,
    pub system: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub ttl_hours: Option<u32>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct RenderedPart {
    pub id: String,
    pub driver: String,
    pub spec: Value,
}

impl Offering {
    /// Loads one offering folder. The folder name must equal the template's `metadata.name`.
    pub fn load(dir: &Path, renderer: &Renderer) -> Result<Self, String> {
        let folder = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: folder name is not UTF-8", dir.display()))?
            .to_owned();
        let template_path = dir.join(TEMPLATE_FILE);
        let offering_path = dir.join(OFFERING_FILE);
        let template_text = std::fs::read_to_string(&template_path)
            .map_err(|e| format!("{}: {e}", template_path.display()))?;
        let offering_text = std::fs::read_to_string(&offering_path)
            .map_err(|e| format!("{}: {e}", offering_path.display()))?;
        let template: Value = yaml_serde::from_str(&template_text)
            .map_err(|e| format!("{}: not valid YAML: {e}", template_path.display()))?;
        let spec: OfferingSpec = yaml_serde::from_str(&offering_text)
            .map_err(|e| format!("{}: {e}", offering_path.display()))?;

        let get = |p: &str| template.pointer(p).and_then(Value::as_str);
        if get("/apiVersion") != Some("scaffolder.backstage.io/v1beta3")
            || get("/kind") != Some("Template")
        {
            return Err(format!(
                "{}: must be a scaffolder.backstage.io/v1beta3 Template",
                template_path.display()
            ));
        }
        let name = get("/metadata/name").unwrap_or_default().to_owned();
        if !is_valid_entity_name(&name) {
            return Err(format!(
                "{}: metadata.name {name:?} breaks Backstage naming rules",
                template_path.display()
            ));
        }
        if name != folder {
            return Err(format!(
                "{}: metadata.name {name:?} must equal the folder name {folder:?}",
                template_path.display()
            ));
        }
        let form = Form::compile(template.pointer("/spec/parameters"))
            .map_err(|e| format!("{}: {e}", template_path.display()))?;
        // Syntax errors in the provisioning spec surface at load, not at the first order.
        renderer
            .variables(&serde_json::to_value(SpecForCheck::from(&spec)).unwrap_or(Value::Null))
            .map_err(|e| format!("{}: {e}", offering_path.display()))?;
        if spec.parts.is_empty() {
            return Err(format!(
                "{}: parts must list at least one part",
                offering_path.display()
            ));
        }
        for p in spec.parts.iter().filter(|p| p.driver == TERRAFORM) {
            check_terraform_part(dir, p)
                .map_err(|e| format!("{}: parts.{}: {e}", offering_path.display(), p.id))?;
        }

        let mut hasher = Sha256::new();
        hasher.update(template_text.as_bytes());
        hasher.update([0]);
        hasher.update(offering_text.as_bytes());
        let digest = hasher.finalize();
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();

        Ok(Self {
            title: get("/metadata/title").unwrap_or(&name).to_owned(),
            description: get("/metadata/description").unwrap_or_default().to_owned(),
            tags: template
                .pointer("/metadata/tags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            version: format!("{}+{hex}", spec.version),
            name,
            template,
            form,
            spec,
        })
    }

    /// Validates submitted values against this template's own form.
    pub fn validate(&self, values: &Value) -> Result<ValidValues, Vec<FieldError>> {
        self.form.validate(values)
    }

    /// The chosen preset's values (empty when the offering has none or the choice has none).
    pub fn preset(&self, values: &ValidValues) -> Map<String, Value> {
        self.spec
            .presets
            .as_ref()
            .and_then(|p| {
                let choice = values.as_map().get(&p.parameter)?.as_str()?;
                p.values.get(choice).cloned()
            })
            .unwrap_or_default()
    }

    /// Renders the provisioning plan for validated values.
    pub fn render(
        &self,
        renderer: &Renderer,
        values: &ValidValues,
    ) -> Result<RenderedSpec, RenderError> {
        let ctx = Context::new(&json!({
            "parameters": values.as_map(),
            "preset": self.preset(values),
            "offering": {"name": self.name, "version": self.version},
        }));
        let r = &self.spec.resource;
        let text = |path: &str, tmpl: &str| -> Result<String, RenderError> {
            match renderer.render_str(tmpl, &ctx) {
                Ok(Value::String(s)) => Ok(s),
                Ok(other) => Ok(other.to_string()),
                Err(message) => Err(RenderError {
                    path: path.into(),
                    message,
                }),
            }
        };
        let opt_text = |path: &str, tmpl: &Option<String>| -> Result<Option<String>, RenderError> {
            match tmpl {
                None => Ok(None),
                Some(t) => match renderer.render_str(t, &ctx) {
                    Ok(Value::Null) => Ok(None),
                    Ok(Value::String(s)) if s.is_empty() => Ok(None),
                    Ok(Value::String(s)) => Ok(Some(s)),
                    Ok(other) => Ok(Some(other.to_string())),
                    Err(message) => Err(RenderError {
                        path: path.into(),
                        message,
                    }),
                },
            }
        };
        let ttl_hours = match opt_text("resource.ttl_hours", &r.ttl_hours)? {
            None => None,
            Some(s) => Some(s.parse::<u32>().map_err(|_| RenderError {
                path: "resource.ttl_hours".into(),
                message: format!("{s:?} is not a whole number of hours"),
            })?),
        };
        let resource = RenderedResource {
            resource_type: r.resource_type.clone(),
            name: text("resource.name", &r.name)?,
            owner: text("resource.owner", &r.owner)?,
            environment: text("resource.environment", &r.environment)?,
            component: opt_text("resource.component", &r.component)?,
            system: opt_text("resource.system", &r.system)?,
            title: opt_text("resource.title", &r.title)?,
            description: opt_text("resource.description", &r.description)?,
            ttl_hours,
            labels: r
                .labels
                .iter()
                .map(|(k, v)| Ok((k.clone(), text(&format!("resource.labels.{k}"), v)?)))
                .collect::<Result<_, RenderError>>()?,
        };
        let parts = self
            .spec
            .parts
            .iter()
            .map(|p| {
                let spec = renderer
                    .render_value(&p.spec, &ctx)
                    .map_err(|e| RenderError {
                        path: format!("parts.{}.spec.{}", p.id, e.path),
                        message: e.message,
                    })?;
                let mut spec = spec;
                if p.driver == TERRAFORM
                    && let Some(m) = spec.as_object_mut()
                {
                    // Its state is the part's, its module is in this offering's folder.
                    m.insert("part".into(), Value::String(p.id.clone()));
                    m.insert("offering".into(), Value::String(self.name.clone()));
                }
                Ok(RenderedPart {
                    id: p.id.clone(),
                    driver: p.driver.clone(),
                    spec,
                })
            })
            .collect::<Result<_, RenderError>>()?;
        Ok(RenderedSpec {
            resource,
            parts,
            outputs: self.spec.outputs.values.clone(),
        })
    }
}

impl RenderedSpec {
    /// Checks what the rendered identity must satisfy whatever the template said: the resource
    /// name is a valid entity name, owner/component/system are entity refs (stored in their
    /// full `kind:namespace/name` form). Returns the owner.
    pub fn check(&mut self) -> Result<EntityRef, Vec<FieldError>> {
        let mut errors = Vec::new();
        let r = &mut self.resource;
        let mut err = |field: &str, rule: &str, message: String| {
            errors.push(FieldError {
                field: field.into(),
                rule: rule.into(),
                message,
            })
        };
        if !is_valid_entity_name(&r.name) {
            err(
                "resource.name",
                "entityName",
                format!(
                    "{:?} is not a valid Backstage entity name (1-63 letters, digits, '-', '_', '.'; starts and ends alphanumeric)",
                    r.name
                ),
            );
        }
        let owner = EntityRef::parse(&r.owner, "group");
        if let Err(e) = &owner {
            err("owner", "entityRef", e.clone());
        }
        if let Ok(o) = &owner
            && !matches!(o.kind(), "group" | "user")
        {
            err(
                "owner",
                "entityRef",
                format!("must be a group or user, not a {}", o.kind()),
            );
        }
        if let Ok(o) = &owner {
            r.owner = o.to_string();
        }
        for (field, value, kind) in [
            ("component", &mut r.component, "component"),
            ("system", &mut r.system, "system"),
        ] {
            if let Some(v) = value {
                match EntityRef::parse(v, kind) {
                    Ok(parsed) => *v = parsed.to_string(),
                    Err(e) => err(field, "entityRef", e),
                }
            }
        }
        for (key, value) in &r.labels {
            if !(value.is_empty() || is_valid_entity_name(value)) {
                err(
                    &format!("labels.{key}"),
                    "labelValue",
                    format!("{value:?} is not a valid Backstage label value"),
                );
            }
        }
        match owner {
            Ok(o) if errors.is_empty() => Ok(o),
            _ => Err(errors),
        }
    }
}

const TERRAFORM: &str = "terraform";

/// A `terraform` part names a module folder of its own offering, literally (a form value
/// never chooses what code runs), that holds Terraform files; `part` and `offering` are paved's
/// to fill in.
fn check_terraform_part(dir: &Path, p: &PartSpec) -> Result<(), String> {
    let module = p
        .spec
        .get("module")
        .and_then(Value::as_str)
        .ok_or("spec.module must name the module folder (e.g. ./module)")?;
    if module.contains("${{") {
        return Err("spec.module must be a fixed folder, not a template".into());
    }
    let rel = crate::provisioning::drivers::terraform::valid_module_path(module)?;
    let folder = dir.join(rel);
    let has_tf = std::fs::read_dir(&folder)
        .map_err(|e| format!("spec.module {module:?}: {e}"))?
        .filter_map(Result::ok)
        .any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".tf") || n.ends_with(".tf.json")
        });
    if !has_tf {
        return Err(format!("spec.module {module:?} holds no .tf file"));
    }
    for own in ["part", "offering"] {
        if p.spec.get(own).is_some() {
            return Err(format!("spec.{own} is filled in by paved"));
        }
    }
    Ok(())
}

/// The templated strings of an offering spec, gathered for syntax checks and variable lists.
#[derive(serde::Serialize)]
pub(crate) struct SpecForCheck<'a> {
    resource: Vec<&'a str>,
    parts: Vec<&'a Value>,
}

impl<'a> From<&'a OfferingSpec> for SpecForCheck<'a> {
    fn from(s: &'a OfferingSpec) -> Self {
        let r = &s.resource;
        let mut resource = vec![r.name.as_str(), r.owner.as_str(), r.environment.as_str()];
        for v in [
            &r.component,
            &r.system,
            &r.title,
            &r.description,
            &r.ttl_hours,
        ]
        .into_iter()
        .flatten()
        {
            resource.push(v.as_str());
        }
        resource.extend(r.labels.values().map(String::as_str));
        Self {
            resource,
            parts: s.parts.iter().map(|p| &p.spec).collect(),
        }
    }
}

/// Loads every offering folder under `dir`; a broken one is reported and skipped.
pub fn load_dir(
    dir: &Path,
    renderer: &Renderer,
) -> (BTreeMap<String, Arc<Offering>>, Vec<LoadProblem>) {
    let mut offerings = BTreeMap::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(LoadProblem {
                offering: None,
                message: format!("{}: {e}", dir.display()),
            });
            return (offerings, problems);
        }
    };
    let mut folders: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        let name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned);
        match Offering::load(&folder, renderer) {
            Ok(o) => {
                offerings.insert(o.name.clone(), Arc::new(o));
            }
            Err(message) => problems.push(LoadProblem {
                offering: name,
                message,
            }),
        }
    }
    (offerings, problems)
}
