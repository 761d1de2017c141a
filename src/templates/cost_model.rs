//! An offering's price model (`cost:` in offering.yaml): what the platform team wrote, read
//! with the offering; `cost` evaluates it.

use serde::Deserialize;
use serde_json::{Map, Value};

/// `cost:` in offering.yaml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostModel {
    #[serde(default)]
    pub items: Vec<CostItem>,
    /// Factors applied to one part's subtotal (shown as their own line, e.g. multi-AZ ×2).
    #[serde(default)]
    pub multipliers: Vec<CostMultiplier>,
    #[serde(default)]
    pub recommendations: Vec<RecommendationRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostItem {
    pub part: String,
    pub label: String,
    /// An expression giving the monthly price; reads `part`, `prices`, `parameters`, `preset`.
    pub monthly: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostMultiplier {
    pub part: String,
    pub label: String,
    pub factor: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationRule {
    pub id: String,
    /// A boolean expression over the order.
    pub when: String,
    pub message: String,
    /// Form values to change; each may be an expression.
    pub set: Map<String, Value>,
}
