use sea_orm::entity::prelude::*;

/// What a row records. Stored as today's text; read through [`SampleKind::parse`], so an
/// unknown stored value is an error. (Not a `DeriveActiveEnum`: sea-orm 2.0.4's derive makes
/// an identifier of each value and `self` is a keyword.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// A reading of the driver's usage.
    Sample,
    /// Activity paved itself caused (e.g. a drift check's transactions), left out of usage.
    OwnActivity,
}

impl SampleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sample => "sample",
            Self::OwnActivity => "self",
        }
    }

    pub fn parse(stored: &str) -> Result<Self, DbErr> {
        match stored {
            "sample" => Ok(Self::Sample),
            "self" => Ok(Self::OwnActivity),
            other => Err(DbErr::Type(format!(
                "usage_samples.kind: unknown value {other:?}"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_samples")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub resource_id: String,
    pub part: String,
    /// A [`SampleKind`].
    pub kind: String,
    pub at: DateTimeUtc,
    pub active: i64,
    pub counter: i64,
    pub idle_seconds: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
