//! A violated rule of an input, named by field: how every bad input is reported.

use serde::Serialize;

/// One violated rule. Displays as `storage_gb: must be <= 1000`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Dotted path of the field (`storage_gb`, `network.cidr`, `tags[1]`); empty for the whole form.
    pub field: String,
    /// The JSON Schema keyword that failed (`maximum`, `required`, `enum`, ...).
    pub rule: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}
