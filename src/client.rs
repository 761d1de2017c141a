//! `paved resource …`: the command line as a client of a running paved, for developers and CI
//! (what the templates' "next steps" tell users to run). It speaks the public REST API with
//! the caller's token, so it can do exactly what that token may do over HTTP.

use std::time::Duration;

use serde_json::Value;

use crate::api::page::MAX_LIMIT;

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
        self.send(reqwest::Method::GET, path, None).await
    }

    /// Every item of a list, following `nextCursor` page by page (`path` may carry filters).
    pub async fn get_all(&self, path: &str) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page_path = match &cursor {
                Some(c) => format!("{path}{sep}limit={MAX_LIMIT}&cursor={}", segment(c)),
                None => format!("{path}{sep}limit={MAX_LIMIT}"),
            };
            let mut page = self.get(&page_path).await?;
            match page["items"].take() {
                Value::Array(found) => items.extend(found),
                _ => return Err(format!("GET {path}: the answer is not a list page")),
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, String> {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
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

/// Follows a request until it is final, printing each step as it changes. True when it
/// succeeded.
pub async fn watch(client: &Client, id: &str) -> Result<bool, String> {
    let mut shown: Vec<(String, String)> = Vec::new();
    loop {
        let r = client.get(&format!("/requests/{}", segment(id))).await?;
        for step in r["steps"].as_array().into_iter().flatten() {
            let name = step["name"].as_str().unwrap_or("").to_owned();
            let status = step["status"].as_str().unwrap_or("").to_owned();
            if !shown.iter().any(|(n, s)| *n == name && *s == status) && status != "pending" {
                let mark = match status.as_str() {
                    "succeeded" => "done",
                    "running" => "...",
                    "retrying" => "retry",
                    _ => status.as_str(),
                };
                let error = step["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                println!("  [{mark:>5}] {name}{error}");
                shown.retain(|(n, _)| *n != name);
                shown.push((name, status));
            }
        }
        let status = r["status"].as_str().unwrap_or("");
        if crate::vocab::status::RequestStatus::parse(status).is_some_and(|s| s.is_final()) {
            let detail = r["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            let resource = r["resourceId"]
                .as_str()
                .map(|id| format!(" (resource {id})"))
                .unwrap_or_default();
            println!("request {id} {status}{resource}{detail}");
            return Ok(status == "succeeded");
        }
        if status == "awaiting_approval" && !shown.iter().any(|(n, _)| n == "#approval") {
            println!("  waiting for approval (paved request get {id} shows who may decide)");
            shown.push(("#approval".into(), String::new()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
