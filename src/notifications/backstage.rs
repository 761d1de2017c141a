//! The Backstage channel: `POST {backstage.base_url}/api/notifications/notifications`,
//! authenticated as paved (its own plugin token, or `backstage.token`). It sits with the
//! Backstage adapters, above the outbox: it is the one part of notifications that knows how
//! paved signs its calls to Backstage.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use serde_json::json;

use super::{Channel, Delivered, Failure, Notifier, http_client, post_json, refused};
use crate::{auth::signing::Outgoing, config::Settings, db::entities::notification};

/// What Backstage answers when its notifications plugin is not installed.
pub const PLUGIN_MISSING: &str = "Backstage's notifications backend is not installed (POST /api/notifications/notifications answered 404); install @backstage/plugin-notifications-backend in Backstage, or set notifications.backstage: false";

/// The notifier `s` configures: Backstage's notifications (`notifications.backstage` with a
/// `backstage.base_url`) first, then the webhook.
pub fn notifier(s: &Settings, outgoing: &Outgoing) -> Notifier {
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    if s.notifications.backstage
        && let Some(base) = &s.backstage.base_url
    {
        channels.push(Arc::new(Backstage::new(base, outgoing.clone())));
    }
    channels.extend(super::webhook::Webhook::from_settings(s));
    Notifier::new(s, channels)
}

pub struct Backstage {
    url: String,
    auth: Outgoing,
    http: reqwest::Client,
    /// Set once Backstage answered 404 for its notifications API: the plugin is not installed,
    /// so this process stops sending there (the webhook goes on) instead of retrying every
    /// notification in vain. A restart checks again.
    missing: AtomicBool,
}

impl Backstage {
    /// `base` is Backstage's backend.
    pub fn new(base: &str, auth: Outgoing) -> Self {
        Self {
            url: format!(
                "{}/api/notifications/notifications",
                base.trim_end_matches('/')
            ),
            auth,
            http: http_client(),
            missing: AtomicBool::new(false),
        }
    }
}

impl Channel for Backstage {
    fn name(&self) -> &'static str {
        "backstage"
    }

    fn usable(&self) -> bool {
        !self.missing.load(Ordering::Relaxed)
    }

    fn deliver<'a>(&'a self, row: &'a notification::Model) -> Delivered<'a> {
        Box::pin(async move {
            if !self.usable() {
                return Err(Failure::Final(PLUGIN_MISSING.into()));
            }
            let body = json!({
                "recipients": {"type": "entity", "entityRef": row.recipients},
                "payload": row.payload,
            });
            let token = self.auth.bearer_for("notifications");
            let res = post_json(&self.http, &self.url, token.as_deref(), &body).await?;
            if res.status().is_success() {
                Ok(())
            } else if res.status() == reqwest::StatusCode::NOT_FOUND {
                // Backstage answers an unknown plugin's route with 404: the notifications
                // plugin is not installed, and no retry will change that.
                if !self.missing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "{PLUGIN_MISSING}; paved stops sending notifications to Backstage until it restarts (a webhook, if configured, still gets them)"
                    );
                }
                Err(Failure::Final(PLUGIN_MISSING.into()))
            } else {
                Err(refused(res).await)
            }
        })
    }
}
