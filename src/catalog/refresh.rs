//! Asks Backstage's catalog to refresh an entity right after paved changed it, so the change
//! shows in seconds instead of at the next processing cycle (100-150 s by default). Backstage
//! being down is never a provisioning failure: refreshes retry with backoff in the background.

use std::time::Duration;

use serde_json::json;

use crate::auth::signing::Outgoing;

#[derive(Clone)]
pub struct Refresher {
    http: reqwest::Client,
    url: String,
    auth: Outgoing,
    attempts: u32,
}

impl Refresher {
    /// `base_url` is Backstage's backend.
    pub fn new(base_url: &str, auth: Outgoing) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client builds"),
            url: format!("{}/api/catalog/refresh", base_url.trim_end_matches('/')),
            auth,
            attempts: 6,
        }
    }

    /// Refreshes `entity_ref` in the background (1 s, 2 s, 4 s ... between attempts).
    pub fn refresh(&self, entity_ref: String) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            for attempt in 1..=me.attempts {
                match me.once(&entity_ref).await {
                    Ok(()) => {
                        tracing::debug!(entity = %entity_ref, attempt, "catalog refreshed");
                        return;
                    }
                    Err(e) if attempt < me.attempts => {
                        tracing::info!(entity = %entity_ref, attempt, error = %e, "catalog refresh failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(e) => {
                        tracing::warn!(entity = %entity_ref, error = %e, "catalog refresh gave up; Backstage will catch up at its next cycle")
                    }
                }
            }
        });
    }

    async fn once(&self, entity_ref: &str) -> Result<(), String> {
        let mut req = self
            .http
            .post(&self.url)
            .json(&json!({"entityRef": entity_ref}));
        if let Some(t) = self.auth.bearer_for("catalog") {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        // A resource Backstage has not read yet answers 404: its location read picks it up.
        if res.status().is_success() || res.status() == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(format!(
                "{} {}",
                res.status(),
                res.text().await.unwrap_or_default()
            ))
        }
    }
}
