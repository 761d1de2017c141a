//! Pricing a Terraform plan: the price book's `terraform.resource_types` maps a resource type
//! to a monthly price per instance and, optionally, prices by the planned value of its
//! attributes (an instance class, a size in GB). Each resource the plan leaves in place is one
//! line of the estimate.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{LineItem, cents};

/// `terraform:` in the price book.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanPrices {
    #[serde(default)]
    pub resource_types: BTreeMap<String, TypePrice>,
}

/// The price of one resource type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypePrice {
    /// Per instance and month, whatever its attributes.
    #[serde(default)]
    pub monthly: f64,
    /// By attribute path (`instance_class`, `input.max_user_connections`): what its planned
    /// value adds.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributePrice>,
}

/// How an attribute's planned value is priced: by value, or per unit of a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributePrice {
    /// Monthly price of each value (numbers and booleans as text: `"20"`, `"true"`).
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
    /// Monthly price per unit of a numeric value (storage in GB).
    pub per_unit: Option<f64>,
}

impl PlanPrices {
    /// From the price book's `terraform` key (absent: nothing is priced).
    pub fn parse(v: Option<&Value>) -> Result<Self, String> {
        let Some(v) = v else {
            return Ok(Self::default());
        };
        let p: Self = serde_json::from_value(v.clone()).map_err(|e| format!("terraform: {e}"))?;
        for (t, price) in &p.resource_types {
            let at = format!("terraform.resource_types.{t}");
            if !price.monthly.is_finite() || price.monthly < 0.0 {
                return Err(format!("{at}.monthly: must be a number of 0 or more"));
            }
            for (path, a) in &price.attributes {
                let at = format!("{at}.attributes.{path}");
                if path.is_empty() || path.split('.').any(str::is_empty) {
                    return Err(format!("{at}: not an attribute path (names joined by .)"));
                }
                if a.values.is_empty() && a.per_unit.is_none() {
                    return Err(format!("{at}: needs values or per_unit"));
                }
                let prices = a.values.values().chain(a.per_unit.iter());
                if prices.into_iter().any(|x| !x.is_finite() || *x < 0.0) {
                    return Err(format!("{at}: prices must be numbers of 0 or more"));
                }
            }
        }
        Ok(p)
    }

    /// One line per managed resource the plan (`show -json`) leaves in place, priced by its
    /// planned attributes. A type missing from the price book is a line of 0 that says so;
    /// a value only known after apply, or one without a price, is named and adds nothing.
    pub fn price(&self, part: &str, plan: &Value) -> Vec<LineItem> {
        let mut lines = Vec::new();
        for rc in plan["resource_changes"].as_array().into_iter().flatten() {
            if rc["mode"].as_str().is_some_and(|m| m != "managed") {
                continue;
            }
            let actions: Vec<&str> = rc["change"]["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if actions == ["delete"] {
                continue;
            }
            let address = rc["address"].as_str().unwrap_or("?");
            let kind = rc["type"].as_str().unwrap_or("?");
            let Some(price) = self.resource_types.get(kind) else {
                lines.push(LineItem {
                    part: part.to_owned(),
                    label: format!("{address}: {kind} is not in the price book"),
                    monthly: 0.0,
                });
                continue;
            };
            let after = &rc["change"]["after"];
            let unknown = &rc["change"]["after_unknown"];
            let mut monthly = price.monthly;
            let mut notes = Vec::new();
            for (path, a) in &price.attributes {
                if lookup(unknown, path).is_some_and(|u| u == &Value::Bool(true)) {
                    notes.push(format!("{path} known after apply"));
                    continue;
                }
                let Some(v) = lookup(after, path).filter(|v| !v.is_null()) else {
                    continue;
                };
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if let Some(p) = a.values.get(&text) {
                    monthly += p;
                    notes.push(format!("{path} = {text}"));
                } else if let (Some(unit), Some(n)) = (a.per_unit, v.as_f64()) {
                    monthly += unit * n;
                    notes.push(format!("{path} = {text}"));
                } else {
                    notes.push(format!("{path} = {text} has no price"));
                }
            }
            let label = if notes.is_empty() {
                address.to_owned()
            } else {
                format!("{address} ({})", notes.join(", "))
            };
            lines.push(LineItem {
                part: part.to_owned(),
                label,
                monthly: cents(monthly),
            });
        }
        lines
    }
}

/// `a.b.c` inside a planned value.
fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn book() -> PlanPrices {
        PlanPrices::parse(Some(&json!({"resource_types": {
            "terraform_data": {"attributes": {"input.max_user_connections": {"values": {"20": 12, "100": 35}}}},
            "aws_db_instance": {"monthly": 1, "attributes": {
                "instance_class": {"values": {"db.t4g.micro": 11.68}},
                "allocated_storage": {"per_unit": 0.115}}}
        }})))
        .unwrap()
    }

    #[test]
    fn each_resource_left_in_place_is_a_line_priced_by_its_planned_attributes() {
        let plan = json!({"resource_changes": [
            {"address": "terraform_data.limits", "mode": "managed", "type": "terraform_data",
             "change": {"actions": ["create"], "after": {"input": {"max_user_connections": 20}}, "after_unknown": {"id": true}}},
            {"address": "terraform_data.database", "mode": "managed", "type": "terraform_data",
             "change": {"actions": ["create"], "after": {"input": {"database": "x"}}, "after_unknown": {}}},
            {"address": "aws_db_instance.db", "mode": "managed", "type": "aws_db_instance",
             "change": {"actions": ["update"], "after": {"instance_class": "db.t4g.micro", "allocated_storage": 20}, "after_unknown": {}}},
            {"address": "aws_s3_bucket.b", "mode": "managed", "type": "aws_s3_bucket",
             "change": {"actions": ["create"], "after": {}, "after_unknown": {}}},
            {"address": "aws_iam_role.old", "mode": "managed", "type": "aws_iam_role",
             "change": {"actions": ["delete"], "after": null}},
            {"address": "data.aws_vpc.main", "mode": "data", "type": "aws_vpc",
             "change": {"actions": ["read"], "after": {}}}
        ]});
        let lines: Vec<(String, f64)> = book()
            .price("db", &plan)
            .into_iter()
            .map(|l| (l.label, l.monthly))
            .collect();
        assert_eq!(
            lines,
            [
                (
                    "terraform_data.limits (input.max_user_connections = 20)".to_owned(),
                    12.0
                ),
                ("terraform_data.database".to_owned(), 0.0),
                (
                    "aws_db_instance.db (allocated_storage = 20, instance_class = db.t4g.micro)"
                        .to_owned(),
                    // 1 + 20 x 0.115 + 11.68
                    14.98
                ),
                (
                    "aws_s3_bucket.b: aws_s3_bucket is not in the price book".to_owned(),
                    0.0
                ),
            ]
        );
    }

    #[test]
    fn values_known_only_after_apply_or_unpriced_are_named() {
        let plan = json!({"resource_changes": [
            {"address": "aws_db_instance.db", "mode": "managed", "type": "aws_db_instance",
             "change": {"actions": ["create"], "after": {"instance_class": "db.x9.huge"}, "after_unknown": {"allocated_storage": true}}}
        ]});
        let l = &book().price("db", &plan)[0];
        assert_eq!(
            l.label,
            "aws_db_instance.db (allocated_storage known after apply, instance_class = db.x9.huge has no price)"
        );
        assert_eq!(l.monthly, 1.0);
    }

    #[test]
    fn errors_name_the_key() {
        let e = PlanPrices::parse(Some(
            &json!({"resource_types": {"t": {"attributes": {"a": {}}}}}),
        ))
        .unwrap_err();
        assert!(
            e.contains("terraform.resource_types.t.attributes.a: needs values or per_unit"),
            "{e}"
        );
        let e = PlanPrices::parse(Some(&json!({"resource_types": {"t": {"monthly": -1}}})))
            .unwrap_err();
        assert!(e.contains("terraform.resource_types.t.monthly"), "{e}");
        let e = PlanPrices::parse(Some(&json!({"resource_typo": {}}))).unwrap_err();
        assert!(
            e.contains("terraform:") && e.contains("resource_typo"),
            "{e}"
        );
    }
}
