//! The webhook channel: `POST notifications.webhook_url` with the notification as JSON, with
//! `notifications.webhook_token` as the bearer token (kept here, never in a row or a job).

use std::sync::Arc;

use serde_json::json;

use super::{Channel, Delivered, Failure, http_client, post_json, refused};
use crate::{config::Settings, db::entities::notification};

pub struct Webhook {
    url: String,
    token: Option<crate::config::Secret>,
    http: reqwest::Client,
}

impl Webhook {
    /// The configured webhook, if any.
    pub fn from_settings(s: &Settings) -> Option<Arc<dyn Channel>> {
        let url = s.notifications.webhook_url.clone()?;
        Some(Arc::new(Self {
            url,
            token: s.notifications.webhook_token.clone(),
            http: http_client(),
        }))
    }
}

impl Channel for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn deliver<'a>(&'a self, row: &'a notification::Model) -> Delivered<'a> {
        Box::pin(async move {
            let body = json!({
                "id": row.id,
                "source": "paved",
                "topic": row.topic,
                "recipients": row.recipients,
                "payload": row.payload,
                "createdAt": row.created_at,
            });
            let res = post_json(
                &self.http,
                &self.url,
                self.token.as_ref().map(crate::config::Secret::expose),
                &body,
            )
            .await?;
            if res.status().is_success() {
                Ok(())
            } else {
                Err::<(), Failure>(refused(res).await)
            }
        })
    }
}
