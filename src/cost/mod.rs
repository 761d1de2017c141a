//! Cost: a price book (YAML) and each offering's formula give an estimate with line items,
//! monthly/annual totals, the cost over a TTL, and recommendations with their savings.

mod plan;
mod spend;

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use plan::{AttributePrice, PlanPrices, TypePrice};
pub use spend::{
    Billed, ResourceCost, TeamSpend, current_monthly_from, current_monthly_of, full_month_from,
    resource_cost, team_spend,
};

use crate::templates::{Context, Offering, RenderedSpec, Renderer, ValidValues};

/// The price book: free-form YAML read by offerings' cost formulas as `prices.*`, plus the
/// two keys paved itself needs.
#[derive(Debug, Clone)]
pub struct PriceBook {
    pub currency: String,
    pub hours_per_month: f64,
    /// `prices` as formulas read it, converted once: every estimate shares it.
    prices: Context,
    /// `terraform`: what a Terraform plan's resources cost (see `plan`).
    pub terraform: PlanPrices,
}

impl PriceBook {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let prices: Value =
            yaml_serde::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        let currency = prices
            .get("currency")
            .and_then(Value::as_str)
            .ok_or("currency: is required")?
            .to_owned();
        let hours_per_month = prices
            .get("hours_per_month")
            .and_then(Value::as_f64)
            .filter(|h| *h > 0.0)
            .ok_or("hours_per_month: must be a positive number")?;
        let terraform = PlanPrices::parse(prices.get("terraform"))?;
        Ok(Self {
            currency,
            hours_per_month,
            prices: Context::new(&prices),
            terraform,
        })
    }
}

/// One line of an estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    /// The part (database, cache, ...) it belongs to.
    pub part: String,
    pub label: String,
    /// Per month, rounded to cents.
    pub monthly: f64,
}

/// What it will cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub currency: String,
    pub line_items: Vec<LineItem>,
    /// Per month while it exists.
    pub monthly: f64,
    pub annual: f64,
    pub hourly: f64,
    /// For resources with a TTL: hours and total cost over that lifetime.
    pub lifetime: Option<Lifetime>,
    pub recommendations: Vec<Recommendation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lifetime {
    pub hours: u32,
    pub total: f64,
}

/// A cheaper variant of the same order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub id: String,
    pub message: String,
    /// The form values to change.
    #[schema(value_type = Object)]
    pub set: Map<String, Value>,
    /// Monthly saving if applied.
    pub saving_monthly: f64,
}

pub use crate::templates::cost_model::{CostItem, CostModel, CostMultiplier, RecommendationRule};

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Estimate {
    /// Adds lines priced elsewhere (a Terraform plan's resources) and totals again.
    pub fn add_lines(&mut self, lines: Vec<LineItem>, hours_per_month: f64) {
        self.line_items.extend(lines);
        self.monthly = cents(self.line_items.iter().map(|l| l.monthly).sum());
        let hourly = self.monthly / hours_per_month;
        self.annual = cents(self.monthly * 12.0);
        self.hourly = (hourly * 10_000.0).round() / 10_000.0;
        if let Some(l) = &mut self.lifetime {
            l.total = cents(hourly * f64::from(l.hours));
        }
    }
}

/// Prices the rendered plan of `offering` (without recommendations).
pub fn price(
    offering: &Offering,
    renderer: &Renderer,
    book: &PriceBook,
    values: &ValidValues,
    spec: &RenderedSpec,
) -> Result<Estimate, String> {
    let model = &offering.spec.cost;
    // One rendering context per part; what the parts share is converted once, the price book
    // not at all.
    let parameters = Context::of(values.as_map());
    let preset = Context::of(&offering.preset(values));
    let resource = Context::of(&spec.resource);
    let mut contexts: BTreeMap<&str, Context> = BTreeMap::new();
    for p in &spec.parts {
        let ctx = Context::object([
            ("parameters", parameters.clone()),
            ("preset", preset.clone()),
            ("prices", book.prices.clone()),
            ("resource", resource.clone()),
            ("part", Context::of(&p.spec)),
        ]);
        contexts.insert(p.id.as_str(), ctx);
    }
    let ctx_of = |id: &str| {
        contexts
            .get(id)
            .ok_or_else(|| format!("cost refers to unknown part {id:?}"))
    };
    // `what` names the formula only when it failed (no message built per success).
    let number = |expr: &str, ctx: &Context, what: &dyn Fn() -> String| -> Result<f64, String> {
        match renderer.render_str(expr, ctx) {
            Ok(Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| format!("{}: not a number", what())),
            Ok(Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("{}: {s:?} is not a number", what())),
            Ok(other) => Err(format!("{}: {other} is not a number", what())),
            Err(e) => Err(format!("{}: {e}", what())),
        }
    };
    let label = |tmpl: &str, ctx: &Context| -> Result<String, String> {
        match renderer.render_str(tmpl, ctx) {
            Ok(Value::String(s)) => Ok(s),
            Ok(other) => Ok(other.to_string()),
            Err(e) => Err(format!("cost label {tmpl:?}: {e}")),
        }
    };
    let mut line_items = Vec::new();
    for item in &model.items {
        let ctx = ctx_of(&item.part)?;
        let monthly = number(&item.monthly, ctx, &|| {
            format!("cost item {:?}", item.label)
        })?;
        line_items.push(LineItem {
            part: item.part.clone(),
            label: label(&item.label, ctx)?,
            monthly: cents(monthly),
        });
    }
    for m in &model.multipliers {
        let ctx = ctx_of(&m.part)?;
        let factor = number(&m.factor, ctx, &|| format!("cost multiplier {:?}", m.label))?;
        if (factor - 1.0).abs() > f64::EPSILON {
            let subtotal: f64 = line_items
                .iter()
                .filter(|l| l.part == m.part)
                .map(|l| l.monthly)
                .sum();
            line_items.push(LineItem {
                part: m.part.clone(),
                label: format!("{} (x{factor})", label(&m.label, ctx)?),
                monthly: cents(subtotal * (factor - 1.0)),
            });
        }
    }
    let monthly = cents(line_items.iter().map(|l| l.monthly).sum());
    let hourly = monthly / book.hours_per_month;
    let lifetime = spec.resource.ttl_hours.map(|hours| Lifetime {
        hours,
        total: cents(hourly * f64::from(hours)),
    });
    Ok(Estimate {
        currency: book.currency.clone(),
        line_items,
        monthly,
        annual: cents(monthly * 12.0),
        hourly: (hourly * 10_000.0).round() / 10_000.0,
        lifetime,
        recommendations: vec![],
    })
}

/// Prices the order and every applicable recommendation (each re-validated and re-priced, so a
/// saving is what the changed order would really cost less).
pub fn estimate(
    offering: &Offering,
    renderer: &Renderer,
    book: &PriceBook,
    values: &ValidValues,
    spec: &RenderedSpec,
) -> Result<Estimate, String> {
    let mut est = price(offering, renderer, book, values, spec)?;
    let ctx = Context::object([
        ("parameters", Context::of(values.as_map())),
        ("preset", Context::of(&offering.preset(values))),
        ("prices", book.prices.clone()),
    ]);
    for rule in &offering.spec.cost.recommendations {
        let applies = match renderer.render_str(&rule.when, &ctx) {
            Ok(Value::Bool(b)) => b,
            Ok(other) => {
                return Err(format!(
                    "recommendation {:?}: when gave {other}, not true/false",
                    rule.id
                ));
            }
            Err(e) => return Err(format!("recommendation {:?}: {e}", rule.id)),
        };
        if !applies {
            continue;
        }
        let set = renderer
            .render_value(&Value::Object(rule.set.clone()), &ctx)
            .map_err(|e| format!("recommendation {:?}: {e}", rule.id))?;
        let Value::Object(set) = set else { continue };
        let mut changed = values.as_map().clone();
        changed.extend(set.clone());
        // A recommendation the form would refuse is no recommendation.
        let Ok(valid) = offering.validate(&Value::Object(changed)) else {
            continue;
        };
        let Ok(alt_spec) = offering.render(renderer, &valid) else {
            continue;
        };
        let alt = price(offering, renderer, book, &valid, &alt_spec)?;
        let saving = cents(est.monthly - alt.monthly);
        if saving > 0.0 {
            est.recommendations.push(Recommendation {
                id: rule.id.clone(),
                message: rule.message.clone(),
                set,
                saving_monthly: saving,
            });
        }
    }
    Ok(est)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup() -> (Offering, Renderer, PriceBook) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let renderer = Renderer::new();
        let offering =
            Offering::load(&root.join("templates/postgres-database"), &renderer).unwrap();
        let book = PriceBook::load(&root.join("pricing.yaml")).unwrap();
        (offering, renderer, book)
    }

    fn estimate_for(values: Value) -> Estimate {
        let (o, r, b) = setup();
        let valid = o.validate(&values).unwrap();
        let spec = o.render(&r, &valid).unwrap();
        estimate(&o, &r, &b, &valid, &spec).unwrap()
    }

    fn order(env: &str, extra: Value) -> Value {
        let mut v = json!({"name": "orders", "environment": env, "size": "small",
                           "owner": "team-a", "cost_center": "ENG-1234"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    }

    #[test]
    fn a_database_is_priced_by_what_the_cluster_enforces() {
        // A database on the shared cluster (5) and its owner role's 20 connections (20 x 3).
        let e = estimate_for(order("prod", json!({})));
        let items: Vec<(&str, f64)> = e
            .line_items
            .iter()
            .map(|l| (l.label.as_str(), l.monthly))
            .collect();
        assert_eq!(
            items,
            [
                ("Database and owner role on the shared cluster", 5.0),
                ("20 connections", 60.0)
            ]
        );
        assert_eq!(e.monthly, 65.0);
        assert_eq!(e.annual, 780.0);
        assert_eq!(e.currency, "USD");
        assert!(e.lifetime.is_none());
    }

    #[test]
    fn presets_match_the_prices_the_form_shows() {
        let (o, _, _) = setup();
        let shown = o
            .template
            .pointer("/spec/parameters/0/properties/size/enumNames")
            .unwrap()
            .to_string();
        for (size, monthly) in [("small", 65.0), ("medium", 305.0), ("large", 1205.0)] {
            let e = estimate_for(order("prod", json!({"size": size})));
            assert_eq!(e.monthly, monthly, "{size}");
            assert!(
                shown.contains(&format!("~${monthly:.2}/month")),
                "{size}: {shown}"
            );
        }
    }

    #[test]
    fn recommendations_carry_their_savings() {
        let e = estimate_for(order("dev", json!({"size": "large"})));
        let recs: Vec<(&str, f64)> = e
            .recommendations
            .iter()
            .map(|r| (r.id.as_str(), r.saving_monthly))
            .collect();
        // 400 -> 100 connections: 1205 -> 305.
        assert_eq!(recs, [("fewer-connections", 900.0)]);
        assert_eq!(e.recommendations[0].set["size"], "medium");
        let prod = estimate_for(order("prod", json!({"size": "large"})));
        assert!(
            prod.recommendations.is_empty(),
            "{:?}",
            prod.recommendations
        );
    }

    #[test]
    fn ttl_resources_are_priced_over_their_lifetime() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (r, book) = (
            Renderer::new(),
            PriceBook::load(&root.join("pricing.yaml")).unwrap(),
        );
        let o = Offering::load(&root.join("templates/preview-environment"), &r).unwrap();
        let valid = o
            .validate(&json!({"component": "shop", "branch": "pr-1", "owner": "team-a", "cost_center": "ENG-1234", "ttl_hours": 24}))
            .unwrap();
        let e = estimate(&o, &r, &book, &valid, &o.render(&r, &valid).unwrap()).unwrap();
        // 5 + 10 connections x 3 + a Redis user at 15.
        assert_eq!(e.monthly, 50.0);
        assert_eq!(
            e.lifetime,
            Some(Lifetime {
                hours: 24,
                total: 1.64
            })
        );
    }

    #[test]
    fn price_book_errors_name_the_key() {
        assert!(
            PriceBook::parse("hours_per_month: 730")
                .unwrap_err()
                .contains("currency")
        );
        assert!(
            PriceBook::parse("currency: USD\nhours_per_month: 0")
                .unwrap_err()
                .contains("hours_per_month")
        );
    }
}
