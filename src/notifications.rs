//! Notifications: telling people what happened (an approval is needed, a request was approved,
//! rejected, failed or done, a resource expires soon, drifted, or looks unused).
//!
//! Sending is two halves. [`Notifier::send`] stores one outbox row per configured channel
//! (Backstage's notifications API, a webhook) and, in the same transaction, one
//! [`deliver::DeliverNotification`] job per row; it never fails the operation that called it.
//! The job runner delivers them like any job: leased, retried with capped exponential backoff
//! (`notifications.retry_*`), given up after `notifications.max_attempts`, shared by replicas.
//! Nothing secret goes into a notification: titles, descriptions and links only; a channel's
//! credentials (the webhook token, paved's Backstage token) stay in the channel, never in a
//! row or a job.
//!
//! This module knows no Backstage credentials: the Backstage channel is
//! `notifications::backstage`, with the Backstage adapters above it; the webhook is here.

use std::{future::Future, pin::Pin, sync::Arc};

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionSession, TransactionTrait};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    config::Settings,
    db::{self, entities::notification, notifications::NewNotification},
};

pub mod backstage;
pub mod deliver;
pub mod webhook;

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
    /// To the team owning resource `entity_name` (id `resource_id`), linking its entity page;
    /// a later one of the same `scope_kind` about it replaces this one in Backstage.
    pub fn to_owner_of(
        topic: Topic,
        severity: Severity,
        (owner, entity_name, resource_id): (&str, &str, &str),
        scope_kind: &str,
        title: String,
        description: String,
    ) -> Self {
        Self {
            topic,
            recipients: vec![owner.to_owned()],
            title,
            description,
            link: Some(resource_link(entity_name)),
            severity,
            scope: Some(format!("paved:{scope_kind}:{resource_id}")),
        }
    }

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

/// Why a delivery did not happen.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Worth another attempt (network, 5xx, a refusal that may be fixed meanwhile).
    Retry(String),
    /// Never worth retrying (say, Backstage has no notifications plugin).
    Final(String),
}

/// A boxed future, so channels of different kinds sit in one list.
pub type Delivered<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// A delivery target: where an outbox row goes, with the channel's own credentials.
pub trait Channel: Send + Sync {
    /// The outbox rows' `channel` column.
    fn name(&self) -> &'static str;
    /// False once the channel found it cannot take notifications at all: no rows are queued
    /// for it any more (until a restart checks again).
    fn usable(&self) -> bool {
        true
    }
    /// One delivery attempt of `row`.
    fn deliver<'a>(&'a self, row: &'a notification::Model) -> Delivered<'a>;
}

/// The channels a notifier queues for and the delivery job sends through.
pub type Channels = Arc<Vec<Arc<dyn Channel>>>;

/// Stores notifications for delivery; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    channels: Channels,
    /// Idle job runners of this process, woken when a notification was queued.
    wake: crate::jobs::Wake,
    max_attempts: i32,
    /// paved's public URL with the plugin base path, for links to its API.
    base: Arc<str>,
    /// The plugin base path alone (`/api/<plugin id>`), for API paths named in messages.
    plugin_base: Arc<str>,
    /// `backstage.app_url`: entity pages as absolute links (a webhook's reader has no app to
    /// resolve a relative one against).
    app: Option<Arc<str>>,
}

impl Notifier {
    /// A notifier for `channels` (in the order their rows are queued), with `notifications:`'s
    /// attempts and the links `s` gives. `notifications::backstage::notifier` builds the
    /// configured channels.
    pub fn new(s: &Settings, channels: Vec<Arc<dyn Channel>>) -> Self {
        Self {
            channels: Arc::new(channels),
            wake: crate::jobs::Wake::default(),
            max_attempts: s.notifications.max_attempts,
            base: format!("{}{}", s.public_url(), s.plugin_base_path()).into(),
            plugin_base: s.plugin_base_path().into(),
            app: s
                .backstage
                .app_url
                .as_deref()
                .map(|a| a.trim_end_matches('/').into()),
        }
    }

    /// Wakes these runners (the process's own) when a notification is queued; without it only
    /// `NOTIFY` (PostgreSQL) and polling do.
    /// Wakes idle runners: for a caller whose transaction queued notifications, once it
    /// committed (a wake before the commit finds nothing to claim).
    pub fn wake(&self) {
        self.wake.one();
    }

    pub fn with_wake(mut self, wake: crate::jobs::Wake) -> Self {
        self.wake = wake;
        self
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
            wake: crate::jobs::Wake::default(),
            max_attempts: 1,
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
    fn live_channels(&self) -> impl Iterator<Item = &Arc<dyn Channel>> {
        self.channels.iter().filter(|c| c.usable())
    }

    /// What the delivery job needs: the database and these channels.
    pub fn delivery(&self, db: DatabaseConnection) -> deliver::Delivery {
        deliver::Delivery::new(db, self.channels.clone())
    }

    /// Queues `n` on every channel: its outbox rows and their delivery jobs, in one
    /// transaction (inside the caller's when `conn` is one, so they exist exactly when the
    /// change they report does). Failing to queue is logged, never returned: a notification
    /// never fails the operation it reports on.
    pub async fn send<C: ConnectionTrait + TransactionTrait>(&self, conn: &C, n: Notification) {
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
        match self.queue(conn, &n).await {
            Ok(()) => self.wake.one(),
            Err(e) => {
                tracing::error!(topic = n.topic.as_str(), error = %crate::vocab::redact::redact(&e.to_string()), "could not queue a notification; it is lost")
            }
        }
    }

    async fn queue<C: ConnectionTrait + TransactionTrait>(
        &self,
        conn: &C,
        n: &Notification,
    ) -> Result<(), DbErr> {
        let rows: Vec<NewNotification> = self
            .live_channels()
            .map(|c| NewNotification {
                id: Uuid::now_v7().to_string(),
                channel: c.name().into(),
                topic: n.topic.as_str().into(),
                recipients: json!(n.recipients),
                payload: n.payload(),
            })
            .collect();
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let txn = conn.begin().await?;
        db::notifications::insert(&txn, rows, Utc::now()).await?;
        for id in ids {
            let job = deliver::DeliverNotification {
                notification: id.clone(),
            };
            crate::jobs::enqueue_job(&txn, &job, &id, self.max_attempts).await?;
        }
        txn.commit().await
    }
}

/// POSTs `body` as JSON with an optional bearer token; network trouble is worth a retry.
/// reqwest's errors name the URL, and a URL with credentials must not reach a log or a row.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<reqwest::Response, Failure> {
    let mut req = http.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send()
        .await
        .map_err(|e| Failure::Retry(crate::vocab::redact::redact(&e.to_string())))
}

/// A refusal, with the start of what the receiver said (worth another attempt).
async fn refused(res: reqwest::Response) -> Failure {
    let status = res.status();
    let text: String = res
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    Failure::Retry(format!("{status}: {text}"))
}

/// An HTTP client for a channel: a delivery attempt ends within 10 s.
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("HTTP client builds")
}

/// Where a resource shows in Backstage (relative links resolve against the Backstage app).
pub fn resource_link(entity_name: &str) -> String {
    format!("/catalog/default/resource/{entity_name}")
}
