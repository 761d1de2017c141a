use sea_orm::entity::prelude::*;

/// One notification for one channel: what was said, to whom, and how its delivery went. The
/// delivery itself is a `deliver-notification` job naming this row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub channel: String,
    pub topic: String,
    pub recipients: Json,
    pub payload: Json,
    pub status: NotificationStatus,
    /// Delivery attempts so far (the job's attempt number of the last one).
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
}

/// Where a notification's delivery is. Stored as the text it always was (no migration); an
/// unknown stored value is an error when the row is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum NotificationStatus {
    /// Waiting for its (next) attempt.
    #[sea_orm(string_value = "queued")]
    Queued,
    /// An attempt is under way (or its runner died in it; the job's lease covers that).
    #[sea_orm(string_value = "sending")]
    Sending,
    #[sea_orm(string_value = "sent")]
    Sent,
    /// Given up: attempts used up, or the channel cannot take it.
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl NotificationStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
