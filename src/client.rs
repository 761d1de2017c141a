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

/// Follows a request until it is final, showing each step's number of the run's steps and,
/// once it ended, how long it took (see [`Progress`]). True when it succeeded.
pub async fn watch(client: &Client, id: &str) -> Result<bool, String> {
    use std::io::{IsTerminal, Write};
    let mut progress = Progress::new(std::io::stdout().is_terminal());
    loop {
        let r = client.get(&format!("/requests/{}", segment(id))).await?;
        let text = progress.update(id, &r);
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) ends nothing: the request goes on either way.
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        drop(out);
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
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What `watch` writes as a request changes. In a terminal (`in_place`) the whole step list,
/// pending steps included, is one block redrawn where it stands, so a person sees where the
/// run is; into a pipe or a file, one plain line per change and no escape codes, which is
/// what logs and scripts want.
pub struct Progress {
    in_place: bool,
    /// Plain: the (step, status) pairs and notes already written.
    shown: Vec<(String, String)>,
    /// In place: the block last drawn.
    drawn: Vec<String>,
}

impl Progress {
    pub fn new(in_place: bool) -> Self {
        Self {
            in_place,
            shown: Vec::new(),
            drawn: Vec::new(),
        }
    }

    /// The text to write for the request as it is now (empty when nothing changed).
    pub fn update(&mut self, id: &str, r: &Value) -> String {
        let steps: Vec<&Value> = r["steps"].as_array().into_iter().flatten().collect();
        let total = steps.len();
        let expected = r["expected"]["durationSeconds"].as_f64().map(|secs| {
            format!(
                "  usually done in about {} (the median of the last {} like it)",
                seconds(secs),
                r["expected"]["basedOn"]
            )
        });
        let approval = (r["status"] == "awaiting_approval").then(|| {
            format!("  waiting for approval (paved request get {id} shows who may decide)")
        });
        if self.in_place {
            let mut block: Vec<String> = steps.iter().map(|s| step_line(s, total)).collect();
            block.extend(expected);
            block.extend(approval);
            if block == self.drawn {
                return String::new();
            }
            let mut out = String::new();
            if !self.drawn.is_empty() {
                // Back to the block's first line, then over it; `J` clears what a shorter
                // block leaves below.
                out.push_str(&format!("\x1b[{}A\r", self.drawn.len()));
            }
            for line in &block {
                out.push_str("\x1b[2K");
                out.push_str(line);
                out.push('\n');
            }
            out.push_str("\x1b[J");
            self.drawn = block;
            return out;
        }
        let mut out = String::new();
        for step in &steps {
            let name = step["name"].as_str().unwrap_or("").to_owned();
            let status = step["status"].as_str().unwrap_or("").to_owned();
            if status != "pending" && !self.shown.iter().any(|(n, s)| *n == name && *s == status) {
                out.push_str(&step_line(step, total));
                out.push('\n');
                self.shown.retain(|(n, _)| *n != name);
                self.shown.push((name, status));
            }
        }
        for (key, note) in [("#expected", expected), ("#approval", approval)] {
            if let Some(note) = note
                && !self.shown.iter().any(|(n, _)| n == key)
            {
                out.push_str(&note);
                out.push('\n');
                self.shown.push((key.into(), String::new()));
            }
        }
        out
    }
}

/// `  [ done] 3/6 create database (1.2 s)`; a failed step with its error.
pub fn step_line(step: &Value, total: usize) -> String {
    let status = step["status"].as_str().unwrap_or("");
    let mark = match status {
        "succeeded" => "done",
        "running" => "...",
        "retrying" => "retry",
        other => other,
    };
    let number = step["number"]
        .as_i64()
        .map(|n| format!("{n}/{total} "))
        .unwrap_or_default();
    let took = step["durationMs"]
        .as_f64()
        .map(|ms| format!(" ({})", seconds(ms / 1000.0)))
        .unwrap_or_default();
    let error = step["error"]
        .as_str()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    format!(
        "  [{mark:>5}] {number}{}{took}{error}",
        step["name"].as_str().unwrap_or("")
    )
}

fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} min {:.0} s", (s / 60.0).floor(), s % 60.0)
    }
}

/// What `paved offerings show` prints: what is provisioned, the form, the outputs.
pub fn describe_offering(o: &Value) -> String {
    let mut out = format!(
        "{} ({}): {}\n{}\n",
        o["name"].as_str().unwrap_or(""),
        o["resourceType"].as_str().unwrap_or(""),
        o["title"].as_str().unwrap_or(""),
        o["description"].as_str().unwrap_or("").trim()
    );
    let parts: Vec<&str> = o["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    out.push_str(&format!("provisioned by: {}\n", parts.join(", ")));
    out.push_str("form:\n");
    for page in o["parameters"].as_array().into_iter().flatten() {
        let required: Vec<&str> = page["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (field, schema) in page["properties"].as_object().into_iter().flatten() {
            let choices = schema["enum"]
                .as_array()
                .map(|e| {
                    let c: Vec<String> = e.iter().map(|v| v.to_string().replace('"', "")).collect();
                    format!(" one of {}", c.join(", "))
                })
                .unwrap_or_default();
            let default = schema
                .get("default")
                .map(|d| format!(", default {}", d.to_string().replace('"', "")))
                .unwrap_or_default();
            let need = if required.contains(&field.as_str()) {
                " (required)"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {field}{need}: {}{choices}{default}\n",
                schema["title"].as_str().unwrap_or("")
            ));
        }
    }
    let outputs: Vec<&Value> = o["outputs"]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if !outputs.is_empty() {
        out.push_str("you get:\n");
        for v in outputs {
            out.push_str(&format!(
                "  {}.{}: {}\n",
                v["part"].as_str().unwrap_or(""),
                v["name"].as_str().unwrap_or(""),
                v["description"].as_str().unwrap_or("")
            ));
        }
    }
    if let Some(c) = o["outputs"]["credentials"].as_str() {
        out.push_str(&format!("credentials: {c}\n"));
    }
    out
}

/// What `paved estimate` prints: the form's problems, or the cost, the decision and what
/// would cost less.
pub fn describe_estimate(e: &Value) -> String {
    let mut out = String::new();
    if e["valid"] == false {
        out.push_str("invalid values:\n");
        for err in e["errors"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {}: {} ({})\n",
                err["field"].as_str().unwrap_or(""),
                err["message"].as_str().unwrap_or(""),
                err["rule"].as_str().unwrap_or("")
            ));
        }
        return out;
    }
    let est = &e["estimate"];
    let currency = est["currency"].as_str().unwrap_or("");
    for item in est["lineItems"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<50} {:>10.2} {currency}/month\n",
            item["label"].as_str().unwrap_or(""),
            item["monthly"].as_f64().unwrap_or(0.0)
        ));
    }
    out.push_str(&format!(
        "  {:<50} {:>10.2} {currency}/month ({:.2} a year)\n",
        "total",
        est["monthly"].as_f64().unwrap_or(0.0),
        est["annual"].as_f64().unwrap_or(0.0)
    ));
    if let Some(l) = est["lifetime"].as_object() {
        out.push_str(&format!(
            "  over its {} hours: {:.2} {currency}\n",
            l.get("hours").and_then(Value::as_i64).unwrap_or(0),
            l.get("total").and_then(Value::as_f64).unwrap_or(0.0)
        ));
    }
    let d = &e["decision"];
    out.push_str(&format!(
        "decision: {}\n",
        d["outcome"].as_str().unwrap_or("")
    ));
    for (kind, key) in [
        ("denied", "deny"),
        ("warning", "warn"),
        ("needs approval", "requireApproval"),
    ] {
        for v in d[key].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {kind} ({}): {}\n",
                v["rule"].as_str().unwrap_or(""),
                v["message"].as_str().unwrap_or("")
            ));
        }
    }
    if let Some(b) = e["budget"].as_object()
        && let Some(limit) = b.get("monthlyLimit").and_then(Value::as_f64)
    {
        out.push_str(&format!(
            "budget of {}: {:.2} of {limit:.2} {currency}/month after this order\n",
            b.get("team").and_then(Value::as_str).unwrap_or(""),
            b.get("after").and_then(Value::as_f64).unwrap_or(0.0)
        ));
    }
    for r in est["recommendations"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "recommendation: {} (saves {:.2} {currency}/month; set {})\n",
            r["message"].as_str().unwrap_or(""),
            r["savingMonthly"].as_f64().unwrap_or(0.0),
            r["set"]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(status: &str, steps: &[(&str, &str)]) -> Value {
        let steps: Vec<Value> = steps
            .iter()
            .enumerate()
            .map(|(i, (name, status))| json!({"name": name, "status": status, "number": i + 1}))
            .collect();
        json!({"status": status, "steps": steps})
    }

    /// Into a pipe: each change once, as a line of its own, without escape codes.
    #[test]
    fn plain_progress_writes_each_change_once() {
        let mut p = Progress::new(false);
        let first = p.update(
            "r1",
            &request(
                "awaiting_approval",
                &[("validate", "succeeded"), ("plan", "pending")],
            ),
        );
        assert_eq!(
            first,
            "  [ done] 1/2 validate\n  waiting for approval (paved request get r1 shows who may decide)\n"
        );
        let same = p.update(
            "r1",
            &request(
                "awaiting_approval",
                &[("validate", "succeeded"), ("plan", "pending")],
            ),
        );
        assert_eq!(same, "");
        let next = p.update(
            "r1",
            &request("running", &[("validate", "succeeded"), ("plan", "running")]),
        );
        assert_eq!(next, "  [  ...] 2/2 plan\n");
    }

    /// In a terminal: the whole block, pending steps too, redrawn over itself; nothing is
    /// written while nothing changes.
    #[test]
    fn terminal_progress_redraws_the_block_in_place() {
        let mut p = Progress::new(true);
        let waiting = request(
            "awaiting_approval",
            &[("validate", "succeeded"), ("plan", "pending")],
        );
        let first = p.update("r1", &waiting);
        assert!(
            !first.contains("\x1b[3A"),
            "nothing to go back over: {first:?}"
        );
        assert!(first.contains("  [pending] 2/2 plan\n"), "{first:?}");
        assert!(first.contains("waiting for approval"), "{first:?}");
        assert_eq!(p.update("r1", &waiting), "");
        let running = p.update(
            "r1",
            &request("running", &[("validate", "succeeded"), ("plan", "running")]),
        );
        assert!(running.starts_with("\x1b[3A\r"), "{running:?}");
        assert!(
            running.contains("\x1b[2K  [  ...] 2/2 plan\n"),
            "{running:?}"
        );
        assert!(!running.contains("waiting for approval"), "{running:?}");
        assert!(
            running.ends_with("\x1b[J"),
            "the left-over line is cleared: {running:?}"
        );
        assert_eq!(running.matches('\n').count(), 2);
    }
}
