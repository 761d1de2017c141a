//! How paved's own types sit in columns: the states of `vocab::status` as their stored names
//! (text), the guardrails' estimate and decision as the JSON they were always stored as.
//!
//! The impls are the ones sea-orm's `DeriveValueType` (string form) and
//! `FromJsonQueryResult` generate. They are written here, not derived, because a derive
//! must sit on the type and these types live in layers that do not know sea-orm (the layer
//! test forbids it); this crate owns both sides, so it may implement sea-orm's traits for
//! them here. A stored name paved does not know, or JSON of another shape, is a read error,
//! never a guess.

use crate::{
    cost::Estimate,
    policy::PolicyDecision,
    vocab::status::{ApprovalStatus, Operation, RequestStatus, ResourceStatus, StepStatus},
};

/// Stored as text, read back through `parse`.
macro_rules! stored_as_name {
    ($($t:ident),+) => {$(
        impl From<$t> for sea_orm::Value {
            fn from(v: $t) -> Self {
                v.as_str().into()
            }
        }

        impl sea_orm::TryGetable for $t {
            fn try_get_by<I: sea_orm::ColIdx>(
                res: &sea_orm::QueryResult,
                idx: I,
            ) -> Result<Self, sea_orm::TryGetError> {
                let s = String::try_get_by(res, idx)?;
                $t::parse(&s).ok_or_else(|| {
                    sea_orm::TryGetError::DbErr(sea_orm::DbErr::Type(format!(
                        "unknown {} {s:?} stored",
                        stringify!($t)
                    )))
                })
            }
        }

        impl sea_orm::sea_query::ValueType for $t {
            fn try_from(v: sea_orm::Value) -> Result<Self, sea_orm::sea_query::ValueTypeErr> {
                let s = <String as sea_orm::sea_query::ValueType>::try_from(v)?;
                $t::parse(&s).ok_or(sea_orm::sea_query::ValueTypeErr)
            }

            fn type_name() -> String {
                stringify!($t).to_owned()
            }

            fn array_type() -> sea_orm::sea_query::ArrayType {
                sea_orm::sea_query::ArrayType::String
            }

            fn column_type() -> sea_orm::sea_query::ColumnType {
                sea_orm::sea_query::ColumnType::String(sea_orm::sea_query::StringLen::None)
            }
        }

        impl sea_orm::sea_query::Nullable for $t {
            fn null() -> sea_orm::Value {
                sea_orm::Value::String(None)
            }
        }

        impl sea_orm::IntoActiveValue<$t> for $t {
            fn into_active_value(self) -> sea_orm::ActiveValue<$t> {
                sea_orm::ActiveValue::Set(self)
            }
        }
    )+};
}

stored_as_name!(
    RequestStatus,
    Operation,
    StepStatus,
    ResourceStatus,
    ApprovalStatus
);

/// Stored as JSON (serde), read back into the type.
macro_rules! stored_as_json {
    ($($t:ident),+) => {$(
        impl sea_orm::TryGetableFromJson for $t {}

        impl From<$t> for sea_orm::Value {
            fn from(v: $t) -> Self {
                sea_orm::Value::Json(Some(Box::new(
                    serde_json::to_value(&v).expect(concat!(stringify!($t), " serializes")),
                )))
            }
        }

        impl sea_orm::sea_query::ValueType for $t {
            fn try_from(v: sea_orm::Value) -> Result<Self, sea_orm::sea_query::ValueTypeErr> {
                match v {
                    sea_orm::Value::Json(Some(json)) => serde_json::from_value(*json)
                        .map_err(|_| sea_orm::sea_query::ValueTypeErr),
                    _ => Err(sea_orm::sea_query::ValueTypeErr),
                }
            }

            fn type_name() -> String {
                stringify!($t).to_owned()
            }

            fn array_type() -> sea_orm::sea_query::ArrayType {
                sea_orm::sea_query::ArrayType::Json
            }

            fn column_type() -> sea_orm::sea_query::ColumnType {
                sea_orm::sea_query::ColumnType::Json
            }
        }

        impl sea_orm::sea_query::Nullable for $t {
            fn null() -> sea_orm::Value {
                sea_orm::Value::Json(None)
            }
        }

        impl sea_orm::IntoActiveValue<$t> for $t {
            fn into_active_value(self) -> sea_orm::ActiveValue<$t> {
                sea_orm::ActiveValue::Set(self)
            }
        }
    )+};
}

stored_as_json!(Estimate, PolicyDecision);
