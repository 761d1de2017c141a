//! Policies and cost: thresholds, the price book, budgets.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PoliciesSettings {
    /// Folder of `.rego` policies and their `.yaml` data.
    pub dir: PathBuf,
    /// Data merged over the folder's data (thresholds without editing files), e.g.
    /// `{guardrails: {approval: {above_monthly: 2000}}}`.
    #[schemars(with = "Map<String, Value>")]
    pub data: Value,
    /// How often the folder is checked for changes (0 turns watching off; SIGHUP still reloads).
    /// A set that does not compile is logged and the previous one keeps deciding.
    pub reload_interval_seconds: u64,
}

impl Default for PoliciesSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("policies"),
            data: Value::Object(Map::new()),
            reload_interval_seconds: 2,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CostSettings {
    /// The price book offerings' cost formulas read.
    pub pricebook: PathBuf,
    /// Monthly budgets (USD) by team entity ref; budgets set through the API take precedence.
    pub budgets: std::collections::BTreeMap<String, f64>,
}

impl Default for CostSettings {
    fn default() -> Self {
        Self {
            pricebook: PathBuf::from("pricing.yaml"),
            budgets: Default::default(),
        }
    }
}
