//! `paved resource …`: the command line as a client of a running paved, for developers and CI
//! (what the templates' "next steps" tell users to run). It speaks the public REST API with
//! the caller's token, so it can do exactly what that token may do over HTTP.

use std::time::Duration;

use serde_json::Value;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `server` is paved's public URL (`http://paved.internal:7077`); `plugin_id` its path.
    pub fn new(server: &str, plugin_id: &str, token: Option<String>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client builds"),
            base: format!("{}/api/{plugin_id}/v1", server.trim_end_matches('/')),
            token,
        }
    }

    /// GET a path of the API; a refusal becomes paved's own message.
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let res = req
            .send()
            .await
            .map_err(|e| format!("cannot reach paved at {}: {e}", self.base))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_owned();
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            " (set PAVED_TOKEN to a paved API token or a Backstage user token)"
        } else {
            ""
        };
        Err(format!("{} {message}{hint}", status.as_u16()))
    }
}

/// Path segments come from the command line: keep them one segment.
pub fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
