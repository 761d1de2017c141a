//! Notifications: telling people what happened (an approval is needed, a request was approved,
//! rejected, failed or done, a resource expires soon, drifted, or looks unused).
//!
//! Sending is two halves. [`Notifier::send`] stores one outbox row per configured channel
//! (Backstage's notifications API, a webhook) and returns; it never fails the operation that
//! called it. The [`Sender`] delivers due rows in the background, retrying with capped
//! exponential backoff; several replicas share the outbox (a conditional update claims each
//! row). Nothing secret goes into a notification: titles, descriptions and links only.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::auth::signing::Outgoing;
use crate::{config::Settings, db::entities::notification};

/// What a notification is about; Backstage shows it as the notification's `topic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topic {
    ApprovalNeeded,
    RequestApproved,
    RequestRejected,
    RequestFailed,
    RequestSucceeded,
    ExpiryWarning,
    ResourceExpired,
    DriftDetected,
    UnusedResource,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApprovalNeeded => "approval-needed",
            Self::RequestApproved => "request-approved",
            Self::RequestRejected => "request-rejected",
            Self::RequestFailed => "request-failed",
            Self::RequestSucceeded => "request-succeeded",
            Self::ExpiryWarning => "expiry-warning",
            Self::ResourceExpired => "resource-expired",
            Self::DriftDetected => "drift-detected",
            Self::UnusedResource => "unused-resource",
        }
    }
}

/// Backstage's notification severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Normal,
    Low,
}

/// One thing to tell, to whom (entity refs: users or groups; Backstage expands groups to
/// their members).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub topic: Topic,
    pub recipients: Vec<String>,
    pub title: String,
    pub description: String,
    /// Absolute URL, or a path in the Backstage app (e.g. `/catalog/default/resource/x`).
    pub link: Option<String>,
    pub severity: Severity,
    /// Backstage replaces an earlier notification with the same scope instead of adding one.
    pub scope: Option<String>,
}

impl Notification {
    /// The `payload` of Backstage's `POST /api/notifications/notifications`.
    fn payload(&self) -> Value {
        let mut p = json!({
            "title": self.title,
            "description": self.description,
            "severity": self.severity,
            "topic": self.topic.as_str(),
        });
        if let Some(l) = &self.link {
            p["link"] = json!(l);
        }
        if let Some(s) = &self.scope {
            p["scope"] = json!(s);
        }
        p
    }
}

/// A delivery target.
#[derive(Debug, Clone)]
enum Channel {
    /// `POST {base}/api/notifications/notifications`, authenticated as paved (its own plugin
    /// token, or `backstage.token`).
    Backstage { url: String, auth: Outgoing },
    /// `POST url` with the notification as JSON.
    Webhook { url: String, token: Option<String> },
}

impl Channel {
    fn name(&self) -> &'static str {
        match self {
            Channel::Backstage { .. } => "backstage",
            Channel::Webhook { .. } => "webhook",
        }
    }
}

/// What Backstage answers when its notifications plugin is not installed.
pub const PLUGIN_MISSING: &str = "Backstage's notifications backend is not installed (POST /api/notifications/notifications answered 404); install @backstage/plugin-notifications-backend in Backstage, or set notifications.backstage: false";

/// Stores notifications for delivery; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    channels: Arc<Vec<Channel>>,
    /// Set once Backstage answered 404 for its notifications API: the plugin is not installed,
    /// so this process stops sending there (the webhook goes on) instead of retrying every
    /// notification in vain. A restart checks again.
    backstage_missing: Arc<AtomicBool>,
    wake: Arc<Notify>,
    /// paved's public URL with the plugin base path, for links to its API.
    base: Arc<str>,
    /// The plugin base path alone (`/api/<plugin id>`), for API paths named in messages.
    plugin_base: Arc<str>,
    /// `backstage.app_url`: entity pages as absolute links (a webhook's reader has no app to
    /// resolve a relative one against).
    app: Option<Arc<str>>,
}

impl Notifier {
    pub fn from_settings(s: &Settings, outgoing: &Outgoing) -> Self {
        let mut channels = Vec::new();
        if s.notifications.backstage
            && let Some(base) = &s.backstage.base_url
        {
            channels.push(Channel::Backstage {
                url: format!(
                    "{}/api/notifications/notifications",
                    base.trim_end_matches('/')
                ),
                auth: outgoing.clone(),
            });
        }
        if let Some(url) = &s.notifications.webhook_url {
            channels.push(Channel::Webhook {
                url: url.clone(),
                token: s
                    .notifications
                    .webhook_token
                    .as_ref()
                    .map(|t| t.expose().to_owned()),
            });
        }
        Self {
            channels: Arc::new(channels),
            backstage_missing: Arc::default(),
            wake: Arc::new(Notify::new()),
            base: format!("{}{}", s.public_url(), s.plugin_base_path()).into(),
            plugin_base: s.plugin_base_path().into(),
            app: s
                .backstage
                .app_url
                .as_deref()
                .map(|a| a.trim_end_matches('/').into()),
        }
    }

    /// Where paved's API is mounted (`/api/<backstage.plugin_id>`), for messages that name
    /// an API path.
    pub fn plugin_base_path(&self) -> &str {
        &self.plugin_base
    }

    /// A notifier with no channel: everything is dropped (tests of other capabilities).
    pub fn disabled() -> Self {
        Self {
            channels: Arc::new(Vec::new()),
            backstage_missing: Arc::default(),
            wake: Arc::new(Notify::new()),
            base: "".into(),
            plugin_base: crate::config::Settings::default().plugin_base_path().into(),
            app: None,
        }
    }

    /// The API URL of a request, for notification links.
    pub fn request_link(&self, request_id: &str) -> String {
        self.api_url(&format!("/v1/requests/{request_id}"))
    }

    /// A resource's page in the Backstage app: absolute with `backstage.app_url`, else the path
    /// (Backstage's notifications resolve it against the app).
    pub fn entity_link(&self, entity_name: &str) -> String {
        match &self.app {
            Some(app) => format!("{app}{}", resource_link(entity_name)),
            None => resource_link(entity_name),
        }
    }

    /// An absolute URL of paved's API (`path` relative to the plugin base, e.g. `/v1/…`).
    pub fn api_url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Whether anything is delivered: some channel is configured and usable.
    pub fn is_enabled(&self) -> bool {
        self.live_channels().next().is_some()
    }

    /// The channels still worth sending to.
    fn live_channels(&self) -> impl Iterator<Item = &Channel> {
        let missing = self.backstage_missing.load(Ordering::Relaxed);
        self.channels
            .iter()
            .filter(move |c| !(missing && matches!(c, Channel::Backstage { .. })))
    }

    /// Queues `n` on every channel. Failing to queue is logged, never returned: a notification
    /// never fails the operation it reports on.
    pub async fn send(&self, db: &DatabaseConnection, n: Notification) {
        if n.recipients.is_empty() {
            tracing::debug!(
                topic = n.topic.as_str(),
                "notification without recipients dropped"
            );
            return;
        }
        if !self.is_enabled() {
            tracing::debug!(topic = n.topic.as_str(), title = %n.title, "no notification channel configured");
            return;
        }
        let now = Utc::now();
        let rows: Vec<notification::ActiveModel> = self
            .live_channels()
            .map(|c| notification::ActiveModel {
                id: Set(Uuid::now_v7().to_string()),
                channel: Set(c.name().into()),
                topic: Set(n.topic.as_str().into()),
                recipients: Set(json!(n.recipients)),
                payload: Set(n.payload()),
                status: Set("queued".into()),
                attempts: Set(0),
                next_attempt_at: Set(now),
                locked_until: Set(None),
                last_error: Set(None),
                created_at: Set(now),
                sent_at: Set(None),
            })
            .collect();
        match notification::Entity::insert_many(rows).exec(db).await {
            Ok(_) => self.wake.notify_waiters(),
            Err(e) => {
                tracing::error!(topic = n.topic.as_str(), error = %e, "could not queue a notification; it is lost")
            }
        }
    }

    /// Delivers due notifications until `stop` (one per replica; replicas share the outbox).
    pub fn sender(&self, db: DatabaseConnection, s: &Settings) -> Sender {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Sender {
            db,
            channels: self.channels.clone(),
            backstage_missing: self.backstage_missing.clone(),
            wake: self.wake.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client builds"),
            max_attempts: s.notifications.max_attempts,
            retry_base: Duration::from_millis(s.notifications.retry_base_ms),
            retry_max: Duration::from_secs(s.notifications.retry_max_seconds),
            poll: Duration::from_secs(s.notifications.poll_seconds),
        }
    }
}

/// The background half: claims due outbox rows and delivers them.
pub struct Sender {
    db: DatabaseConnection,
    channels: Arc<Vec<Channel>>,
    backstage_missing: Arc<AtomicBool>,
    wake: Arc<Notify>,
    http: reqwest::Client,
    max_attempts: i32,
    retry_base: Duration,
    retry_max: Duration,
    poll: Duration,
}

/// A claimed row whose delivery attempt did not finish within this is claimable again.
const CLAIM: Duration = Duration::from_secs(60);

impl Sender {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let delivered = match self.deliver_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %crate::vocab::redact::redact(&e.to_string()), "cannot read the notification outbox");
                    0
                }
            };
            if delivered > 0 {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Delivers what is due now; returns how many rows were attempted.
    pub async fn deliver_due(&self) -> Result<usize, DbErr> {
        let now = Utc::now();
        let due = notification::Entity::find()
            .filter(due_rows(now))
            .order_by_asc(notification::Column::NextAttemptAt)
            .limit(20)
            .all(&self.db)
            .await?;
        let mut attempted = 0;
        for row in due {
            // Claim: exactly one replica moves the row to `sending`.
            let until = now + chrono::Duration::from_std(CLAIM).unwrap_or_default();
            let claimed = notification::Entity::update_many()
                .col_expr(notification::Column::Status, Expr::value("sending"))
                .col_expr(notification::Column::LockedUntil, Expr::value(until))
                .col_expr(
                    notification::Column::Attempts,
                    Expr::col(notification::Column::Attempts).add(1),
                )
                .filter(notification::Column::Id.eq(row.id.clone()))
                .filter(due_rows(now))
                .exec(&self.db)
                .await?;
            if claimed.rows_affected != 1 {
                continue;
            }
            attempted += 1;
            let attempt = row.attempts + 1;
            let outcome = match self.channels.iter().find(|c| c.name() == row.channel) {
                Some(Channel::Backstage { .. })
                    if self.backstage_missing.load(Ordering::Relaxed) =>
                {
                    Err(Failure::Final(PLUGIN_MISSING.into()))
                }
                Some(c) => self.post(c, &row).await,
                None => Err(Failure::Retry(format!(
                    "channel {} is no longer configured on this replica",
                    row.channel
                ))),
            };
            let now = Utc::now();
            let mut q = notification::Entity::update_many()
                .col_expr(
                    notification::Column::LockedUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(notification::Column::Id.eq(row.id.clone()));
            match outcome {
                Ok(()) => {
                    tracing::info!(topic = %row.topic, channel = %row.channel, attempt, "notification delivered");
                    q = q
                        .col_expr(notification::Column::Status, Expr::value("sent"))
                        .col_expr(notification::Column::SentAt, Expr::value(now))
                        .col_expr(
                            notification::Column::LastError,
                            Expr::value(Option::<String>::None),
                        );
                }
                Err(Failure::Final(e)) => {
                    // Said once, when detected (see `post`); nothing to retry.
                    tracing::debug!(topic = %row.topic, channel = %row.channel, error = %e, "notification not delivered");
                    q = q
                        .col_expr(notification::Column::Status, Expr::value("failed"))
                        .col_expr(notification::Column::LastError, Expr::value(e));
                }
                Err(Failure::Retry(e)) if attempt < self.max_attempts => {
                    let delay = self.backoff(attempt);
                    tracing::warn!(topic = %row.topic, channel = %row.channel, attempt, retry_in_ms = delay.as_millis() as u64, error = %e, "notification not delivered; will retry");
                    q = q
                        .col_expr(notification::Column::Status, Expr::value("queued"))
                        .col_expr(
                            notification::Column::NextAttemptAt,
                            Expr::value(
                                now + chrono::Duration::from_std(delay).unwrap_or_default(),
                            ),
                        )
                        .col_expr(notification::Column::LastError, Expr::value(e));
                }
                Err(Failure::Retry(e)) => {
                    tracing::error!(topic = %row.topic, channel = %row.channel, attempt, error = %e, "notification given up");
                    q = q
                        .col_expr(notification::Column::Status, Expr::value("failed"))
                        .col_expr(notification::Column::LastError, Expr::value(e));
                }
            }
            q.exec(&self.db).await?;
        }
        Ok(attempted)
    }

    fn backoff(&self, attempt: i32) -> Duration {
        let factor = 1u32 << (attempt.clamp(1, 16) - 1);
        (self.retry_base * factor).min(self.retry_max)
    }

    async fn post(&self, channel: &Channel, row: &notification::Model) -> Result<(), Failure> {
        let (url, token, body) = match channel {
            Channel::Backstage { url, auth } => (
                url,
                &auth.bearer_for("notifications"),
                json!({
                    "recipients": {"type": "entity", "entityRef": row.recipients},
                    "payload": row.payload,
                }),
            ),
            Channel::Webhook { url, token } => (
                url,
                token,
                json!({
                    "id": row.id,
                    "source": "paved",
                    "topic": row.topic,
                    "recipients": row.recipients,
                    "payload": row.payload,
                    "createdAt": row.created_at,
                }),
            ),
        };
        let mut req = self.http.post(url).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        // reqwest's errors name the URL; a URL with credentials must not reach the log.
        let res = req
            .send()
            .await
            .map_err(|e| Failure::Retry(crate::vocab::redact::redact(&e.to_string())))?;
        if res.status().is_success() {
            Ok(())
        } else if res.status() == reqwest::StatusCode::NOT_FOUND
            && matches!(channel, Channel::Backstage { .. })
        {
            // Backstage answers an unknown plugin's route with 404: the notifications plugin is
            // not installed, and no retry will change that.
            if !self.backstage_missing.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "{PLUGIN_MISSING}; paved stops sending notifications to Backstage until it restarts (a webhook, if configured, still gets them)"
                );
            }
            Err(Failure::Final(PLUGIN_MISSING.into()))
        } else {
            let status = res.status();
            let text: String = res
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            Err(Failure::Retry(format!("{status}: {text}")))
        }
    }
}

/// Why a delivery did not happen.
enum Failure {
    /// Worth another attempt (network, 5xx, a refusal that may be fixed meanwhile).
    Retry(String),
    /// Never worth retrying (Backstage has no notifications plugin).
    Final(String),
}

/// Rows to deliver now: queued and due, or claimed by a replica that did not finish in time.
fn due_rows(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(notification::Column::Status.eq("queued"))
                .add(notification::Column::NextAttemptAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(notification::Column::Status.eq("sending"))
                .add(notification::Column::LockedUntil.lt(now)),
        )
}

/// Where a resource shows in Backstage (relative links resolve against the Backstage app).
pub fn resource_link(entity_name: &str) -> String {
    format!("/catalog/default/resource/{entity_name}")
}
