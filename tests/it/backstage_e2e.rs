//! paved inside a real Backstage backend (the pinned peer of `scripts/backstage-peer`:
//! Backstage 1.55 with catalog, scaffolder, guest auth and allow-all permissions, on the local
//! PostgreSQL), end to end as a developer and a platform team see it.
//!
//! One test function runs the scenarios in order against one Backstage and one `paved serve`
//! that calls Backstage the documented way (an externalAccess entry of type jwks), printing a
//! line per step (`cargo nextest run -E 'test(/^backstage_e2e::/)' --no-capture` shows them). A second
//! one restarts two replicas behind one address while scaffolder tasks wait on them.
//! It needs node and npm (Node.js 20 or 22), and fails, rather than skips, without them.
//! Everything it starts or creates is stopped and removed again, also when it fails: paved and
//! Backstage by pid, Backstage's databases (`scripts/backstage-peer stop`), paved's database,
//! and the PostgreSQL databases, roles and Redis users it provisioned (by ownership tag).

use crate::common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Engine as DbEngine, TestDb, repo_path};
use serde_json::{Value, json};

/// The peer's static externalAccess token: what this test itself uses to call Backstage.
pub(super) const BACKSTAGE_TOKEN: &str = "test-static-token-0123456789";

/// A static externalAccess token the overlay lists for paved's `backstage.auth: static` check.
const PAVED_STATIC_TOKEN: &str = "paved-static-token-7c1d9e0b4a";

/// How paved authenticates to Backstage (catalog refresh, users' groups, location
/// registration, deletes): the documented way, plain JWTs paved signs, which the overlay's
/// `backend.auth.externalAccess` entry of `type: jwks` verifies against paved's JWKS. Nothing
/// else in Backstage accepts such a token, so everything paved does in Backstage below proves it.
fn paved_outgoing_auth_env() -> Vec<(&'static str, String)> {
    vec![("PAVED_BACKSTAGE__AUTH", "external-jwks".into())]
}

/// The overlay's `backend.auth.externalAccess`: the test's own static token, one for paved's
/// static mode, and the jwks entry for paved's tokens (its JWKS at `paved_base`, the audience
/// paved defaults to: `backstage.base_url`). Backstage replaces lists, so all three are here.
fn external_access(paved_base: &str, backstage_port: u16) -> String {
    format!(
        r#"    externalAccess:
      - type: static
        options: {{ token: {BACKSTAGE_TOKEN}, subject: integration-tests }}
      - type: static
        options: {{ token: {PAVED_STATIC_TOKEN}, subject: paved-static }}
      - type: jwks
        options:
          url: {paved_base}/api/paved/.backstage/auth/v1/jwks.json
          issuer: paved
          algorithm: ES256
          audience: http://localhost:{backstage_port}
"#
    )
}

/// A platform admin's static token for paved's own API (deleting, reading credentials).
pub(super) const ADMIN_TOKEN: &str = "e2e-admin-token-5b7f0c";
pub(super) const GUEST: &str = "user:development/guest";
pub(super) const TEAM: &str = "group:default/team-a";

pub(super) struct Clock(pub(super) Instant);

impl Clock {
    pub(super) fn step(&self, msg: &str) {
        eprintln!("[e2e {:>6.1} s] {msg}", self.0.elapsed().as_secs_f64());
    }
}

/// Polls `f` until it yields a value, for at most `limit`.
pub(super) async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The Backstage peer on its own port; stopped (and its databases dropped) when dropped.
pub(super) struct Peer {
    pub(super) port: u16,
}

impl Peer {
    fn script(port: u16, args: &[&str]) -> Command {
        let mut c = Command::new(repo_path("scripts/backstage-peer"));
        c.args(args).env("BACKSTAGE_PORT", port.to_string());
        c
    }

    fn log(&self) -> PathBuf {
        repo_path(&format!(".backstage-peer/backstage-{}.log", self.port))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- Backstage log (tail; whole: {}) ---\n{}",
                self.log().display(),
                tail(&self.log(), 60)
            );
        }
        match Self::script(self.port, &["stop"]).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "backstage-peer stop failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("backstage-peer stop: {e}"),
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(self.log());
        }
    }
}

/// `paved serve` as deployed (the real binary, configured through PAVED_* variables).
pub(super) struct Paved {
    child: Child,
    pub(super) port: u16,
    log: PathBuf,
}

impl Paved {
    pub(super) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM, as a rolling deploy sends it, then waits for the exit (bounded only so a hung
    /// process fails the test instead of hanging it; far beyond the grace period).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "paved did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `paved serve` on `port` with `env`, logging to `log`; returns once it is ready.
async fn serve_on(http: &Http, port: u16, env: &[(&'static str, String)], log: PathBuf) -> Paved {
    let file = std::fs::File::create(&log).unwrap();
    let child = paved_command(env)
        .arg("serve")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .expect("paved starts");
    let mut paved = Paved { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = paved.child.try_wait() {
            panic!(
                "paved on :{port} exited ({status}):\n{}",
                tail(&paved.log, 20)
            );
        }
        let url = format!("{}/.backstage/health/v1/readiness", paved.base());
        if let Ok(r) = http.0.get(&url).send().await
            && r.status() == 200
        {
            return paved;
        }
        assert!(
            Instant::now() < deadline,
            "paved on :{port} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One address for several replicas, as a load balancer gives them: each connection goes to
/// the next replica in turn, or to another when that one refuses it (it is restarting). No
/// health checks: a replica that stopped listening is skipped, nothing more.
async fn front(replicas: Vec<u16>) -> u16 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let turn = std::sync::Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let (replicas, first) = (replicas.clone(), turn.fetch_add(1, Ordering::Relaxed));
            tokio::spawn(async move {
                // Both down at once does not happen here (one restart at a time); retry a
                // while anyway rather than drop the connection on a slow start.
                for round in 0..100 {
                    for i in 0..replicas.len() {
                        let p = replicas[(first + i) % replicas.len()];
                        if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", p)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            return;
                        }
                    }
                    if round == 99 {
                        eprintln!("front :{port}: no replica accepted a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    port
}

impl Drop for Paved {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- paved log (tail; whole: {}) ---\n{}",
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }
}

/// JSON over HTTP with an optional bearer token: (status, body).
#[derive(Clone)]
pub(super) struct Http(pub(super) reqwest::Client);

impl Http {
    pub(super) async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.0.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    pub(super) async fn get(&self, url: &str, token: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::GET, url, token, None).await
    }
    pub(super) async fn post(&self, url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, url, token, Some(body))
            .await
    }
}

pub(super) fn require_node() {
    for tool in ["node", "npm"] {
        match Command::new(tool).arg("--version").output() {
            Ok(o) if o.status.success() => {
                let v = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                if tool == "node" {
                    let major: u32 = v
                        .trim_start_matches('v')
                        .split('.')
                        .next()
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(0);
                    assert!(
                        major >= 20,
                        "the Backstage peer needs Node.js 20 or 22, found {v}"
                    );
                }
            }
            _ => panic!(
                "`{tool}` not found: the Backstage end-to-end test needs Node.js 20 or 22 with npm \
                 (Debian: apt-get install nodejs npm). It fails rather than pretends to pass."
            ),
        }
    }
}

pub(super) fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One sealing key for the whole run (a restarted paved must open what it sealed).
fn secrets_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(paved::vocab::secret_box::SecretBox::generate_key)
        .clone()
}

/// The environment `paved serve` and `paved catalog register` share.
pub(super) fn paved_env(
    port: u16,
    backstage_port: u16,
    db_url: &str,
) -> Vec<(&'static str, String)> {
    use sha2::Digest;
    let admin_sha: String = sha2::Sha256::digest(ADMIN_TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut env = vec![
        ("PAVED_SERVER__LISTEN", format!("127.0.0.1:{port}")),
        ("PAVED_DATABASE__URL", db_url.to_owned()),
        ("PAVED_DATABASE__MAX_CONNECTIONS", "5".into()),
        ("PAVED_SECRETS__KEY", secrets_key()),
        (
            "PAVED_BACKSTAGE__BASE_URL",
            format!("http://localhost:{backstage_port}"),
        ),
        // As in production: every call is authenticated (Backstage's tokens or static ones).
        ("PAVED_AUTH__ALLOW_ANONYMOUS", "false".into()),
        (
            "PAVED_AUTH__GROUPS",
            format!(r#"{{"{GUEST}": ["{TEAM}"]}}"#),
        ),
        (
            "PAVED_AUTH__STATIC_TOKENS",
            format!(
                r#"[{{"subject": "user:default/e2e-admin", "sha256": "{admin_sha}", "roles": ["platform-admin"]}}]"#
            ),
        ),
        ("PAVED_ENGINE__POLL_SECONDS", "1".into()),
        // Short bounded waits (the templates make three): an approval outlasts them at once.
        ("PAVED_BACKSTAGE__WAIT_SECONDS", "5".into()),
        ("PAVED_BACKSTAGE__APP_URL", "http://localhost:3000".into()),
        ("PAVED_LOG__LEVEL", "info,paved=debug".into()),
    ];
    env.extend(paved_outgoing_auth_env());
    env
}

fn paved_command(env: &[(&'static str, String)]) -> Command {
    let mut c = common::paved();
    c.envs(env.iter().cloned());
    c
}

/// `paved serve` for Backstage on `backstage_port`, with `extra` variables over `paved_env`.
async fn start_paved_with(
    http: &Http,
    backstage_port: u16,
    db_url: &str,
    logs: &Path,
    extra: &[(&'static str, String)],
) -> Paved {
    // A free port can be taken between the probe and the bind: try a few.
    for attempt in 1..=3 {
        let port = common::free_port();
        let log = logs.join(format!("paved-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut env = paved_env(port, backstage_port, db_url);
        env.extend(extra.iter().cloned());
        let child = paved_command(&env)
            .arg("serve")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("paved starts");
        let mut paved = Paved { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = paved.child.try_wait() {
                eprintln!(
                    "paved exited ({status}) on attempt {attempt}:\n{}",
                    tail(&paved.log, 20)
                );
                break;
            }
            let url = format!("{}/.backstage/health/v1/readiness", paved.base());
            if let Ok(r) = http.0.get(&url).send().await
                && r.status() == 200
            {
                return paved;
            }
            assert!(Instant::now() < deadline, "paved did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("paved did not start");
}

/// paved needs Backstage's URL and Backstage needs paved's port: Backstage's port is chosen
/// first, paved started with it, then Backstage pointed at paved. Both again on other ports
/// if a port was taken meanwhile.
async fn start_both(
    http: &Http,
    db_url: &str,
    logs: &Path,
    overlay: impl Fn(u16, u16) -> String,
) -> (Paved, Peer) {
    start_both_with(http, db_url, logs, overlay, &[], &[]).await
}

/// As `start_both`, with `extra` variables for paved and backend `modules` (package paths)
/// added to Backstage.
pub(super) async fn start_both_with(
    http: &Http,
    db_url: &str,
    logs: &Path,
    overlay: impl Fn(u16, u16) -> String,
    extra: &[(&'static str, String)],
    modules: &[PathBuf],
) -> (Paved, Peer) {
    let modules = modules
        .iter()
        .map(|m| m.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    for attempt in 1..=3 {
        let backstage_port = common::free_port();
        let paved = start_paved_with(http, backstage_port, db_url, logs, extra).await;
        let file = logs.join(format!("backstage-{backstage_port}.yaml"));
        std::fs::write(&file, overlay(paved.port, backstage_port)).unwrap();
        // Guard first: a failed start leaves databases that `stop` drops.
        let peer = Peer {
            port: backstage_port,
        };
        let out = Peer::script(
            backstage_port,
            &["start", "--config", file.to_str().unwrap()],
        )
        .env("BACKSTAGE_PEER_MODULES", &modules)
        .output()
        .expect("scripts/backstage-peer runs");
        if out.status.success() {
            return (paved, peer);
        }
        eprintln!(
            "Backstage did not start on :{backstage_port} (attempt {attempt}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    panic!("Backstage did not start");
}

/// Waits for a scaffolder task to end; returns (status, events).
pub(super) async fn finished_task(
    http: &Http,
    backstage: &str,
    token: &str,
    id: &str,
) -> (String, Vec<Value>) {
    let status = eventually(
        &format!("scaffolder task {id} finishes"),
        Duration::from_secs(120),
        || async {
            let (_, t) = http
                .get(
                    &format!("{backstage}/api/scaffolder/v2/tasks/{id}"),
                    Some(token),
                )
                .await;
            let s = t["status"].as_str().unwrap_or("").to_owned();
            ["completed", "failed", "cancelled"]
                .contains(&s.as_str())
                .then_some(s)
        },
    )
    .await;
    let (code, events) = http
        .get(
            &format!("{backstage}/api/scaffolder/v2/tasks/{id}/events"),
            Some(token),
        )
        .await;
    assert_eq!(code, 200, "{events}");
    (status, events.as_array().cloned().unwrap_or_default())
}

pub(super) async fn start_task(
    http: &Http,
    backstage: &str,
    token: &str,
    template: &str,
    values: Value,
) -> String {
    let (code, body) = http
        .post(
            &format!("{backstage}/api/scaffolder/v2/tasks"),
            Some(token),
            &json!({"templateRef": format!("template:default/{template}"), "values": values}),
        )
        .await;
    assert_eq!(code, 201, "task on {template}: {body}");
    body["id"].as_str().unwrap().to_owned()
}

pub(super) async fn entity(http: &Http, backstage: &str, reference: &str) -> Option<Value> {
    let (kind, rest) = reference.split_once(':').unwrap();
    let (code, e) = http
        .get(
            &format!("{backstage}/api/catalog/entities/by-name/{kind}/{rest}"),
            Some(BACKSTAGE_TOKEN),
        )
        .await;
    match code {
        200 => Some(e),
        404 => None,
        other => panic!("catalog answered {other} for {reference}: {e}"),
    }
}

fn relations(e: &Value, kind: &str) -> BTreeSet<String> {
    e["relations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["type"] == kind)
        .filter_map(|r| r["targetRef"].as_str().map(str::to_owned))
        .collect()
}

/// Processing errors Backstage attached to an entity (none is what "loads" means).
pub(super) fn processing_errors(e: &Value) -> Vec<Value> {
    e.pointer("/status/items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

pub(super) async fn database_exists(name: &str) -> bool {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let admin = Database::connect(common::postgres_admin_url())
        .await
        .unwrap();
    let rows = admin
        .query_all_raw(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .unwrap();
    admin.close().await.ok();
    !rows.is_empty()
}

fn completion(events: &[Value]) -> &Value {
    events
        .iter()
        .rev()
        .find(|e| e["type"] == "completion")
        .map(|e| &e["body"])
        .expect("a completion event")
}

/// A guest user's Backstage token (the guest provider signs in without a form).
pub(super) async fn guest_token(http: &Http, backstage: &str) -> String {
    let (code, guest) = http
        .get(&format!("{backstage}/api/auth/guest/refresh"), None)
        .await;
    assert_eq!(code, 200, "{guest}");
    guest["backstageIdentity"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(super) fn task_text(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| e["body"].to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paved_works_inside_a_real_backstage() {
    let clock = Clock(Instant::now());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = Http(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("backstage-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).unwrap();

    clock.step("setup: node and npm, then scripts/backstage-peer install (npm ci unless node_modules is current)");
    require_node();
    run(
        Command::new(repo_path("scripts/backstage-peer")).arg("install"),
        "scripts/backstage-peer install",
    );

    // Declared in reverse order of teardown: paved stops first, then Backstage, then what
    // paved provisioned is destroyed, then paved's database is dropped.
    let db = TestDb::new(DbEngine::Postgres).await;
    let _provisioned = common::Teardown {
        db_url: db.url.clone(),
        requests: vec![], // everything paved provisioned in this run
    };
    let overlay = |paved_port: u16, backstage_port: u16| {
        let auth = external_access(&format!("http://127.0.0.1:{paved_port}"), backstage_port);
        format!(
            r#"# Written by tests/backstage_e2e.rs: paved as plugin `paved` on its test port.
backend:
  auth:
{auth}  reading:
    allow:
      - host: 127.0.0.1:{paved_port}
        paths: [/api/paved/catalog/]
discovery:
  endpoints:
    - target: http://127.0.0.1:{paved_port}/api/{{{{pluginId}}}}
      plugins: [paved]
catalog:
  # Far beyond this test: an entity that shows up in seconds came through paved's refresh.
  processingInterval: {{ seconds: 300 }}
"#
        )
    };
    let (paved, peer) = start_both(&http, &db.url, &logs, overlay).await;
    let bs = format!("http://localhost:{}", peer.port);
    clock.step(&format!(
        "setup: paved serving on :{}, Backstage ready on :{}",
        paved.port, peer.port
    ));

    // --- paved catalog register -------------------------------------------------------
    clock.step("register: a host Backstage may not read is explained with the lines to add");
    let mut env = paved_env(paved.port, peer.port, &db.url);
    env.push((
        "PAVED_SERVER__PUBLIC_URL",
        format!("http://localhost:{}", paved.port),
    ));
    let out = paved_command(&env)
        .args(["catalog", "register"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "backend:\n  reading:\n    allow:\n      - host: localhost:{}\n        paths: [/api/paved/catalog/]\n",
            paved.port
        )),
        "{err}"
    );
    assert!(err.contains("Backstage said:") && err.contains("backend.reading.allow"));
    let locations = |http: Http, bs: String| async move {
        let (code, l) = http
            .get(
                &format!("{bs}/api/catalog/locations"),
                Some(BACKSTAGE_TOKEN),
            )
            .await;
        assert_eq!(code, 200, "{l}");
        l.as_array().unwrap().len()
    };
    assert_eq!(
        locations(http.clone(), bs.clone()).await,
        0,
        "nothing registered"
    );

    clock.step("register: paved's document becomes a url location (dry run first)");
    let env = paved_env(paved.port, peer.port, &db.url);
    let out = run(
        paved_command(&env).args(["catalog", "register"]),
        "paved catalog register",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let document = format!("{}/api/paved/catalog/entities.yaml", paved.base());
    let location = paved::catalog::refresh::location_entity_ref(&document);
    assert!(
        said.contains(&format!(
            "{document} is now registered in Backstage as {location}"
        )),
        "{said}"
    );
    let templates: BTreeSet<String> = std::fs::read_dir(repo_path("templates"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("template.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for t in &templates {
        assert!(said.contains(&format!("template:default/{t}")), "{said}");
    }
    let out = run(
        paved_command(&env).args(["catalog", "register"]),
        "paved catalog register (again)",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is already registered"),
        "registering twice is success"
    );
    assert_eq!(locations(http.clone(), bs.clone()).await, 1);

    clock.step("auth: Backstage accepts paved's static and plugin tokens too, and refuses a jwks token for another audience");
    // `register --dry-run` makes Backstage read paved's document with paved's credentials.
    let dry_run_as = |extra: &[(&'static str, &str)]| {
        let mut env = paved_env(paved.port, peer.port, &db.url);
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        paved_command(&env)
            .args(["catalog", "register", "--dry-run"])
            .output()
            .unwrap()
    };
    for (mode, extra) in [
        (
            "static",
            vec![
                ("PAVED_BACKSTAGE__AUTH", "static"),
                ("PAVED_BACKSTAGE__TOKEN", PAVED_STATIC_TOKEN),
            ],
        ),
        // Backstage finds the plugin keys through discovery: the same JWKS, served by paved.
        ("plugin", vec![("PAVED_BACKSTAGE__AUTH", "plugin")]),
    ] {
        let out = dry_run_as(&extra);
        assert!(
            out.status.success(),
            "backstage.auth: {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = dry_run_as(&[(
        "PAVED_BACKSTAGE__AUDIENCE",
        "https://another-backstage.example",
    )]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Backstage refused paved's credentials (401)") && err.contains("type: jwks"),
        "{err}"
    );

    // --- 1. templates and actions ------------------------------------------------------
    clock.step("1. the bundled templates load into Backstage's catalog without errors");
    for t in &templates {
        let template_ref = format!("template:default/{t}");
        let e = eventually(
            &format!("template {t} in Backstage's catalog"),
            Duration::from_secs(30),
            || entity(&http, &bs, &template_ref),
        )
        .await;
        assert_eq!(processing_errors(&e), Vec::<Value>::new(), "template {t}");
        assert_eq!(e["apiVersion"], "scaffolder.backstage.io/v1beta3");
        assert_eq!(
            e["metadata"]["annotations"]["backstage.io/managed-by-location"],
            format!("url:{document}")
        );
    }
    let loc = entity(&http, &bs, &location)
        .await
        .expect("the Location entity");
    assert_eq!(processing_errors(&loc), Vec::<Value>::new(), "{loc}");

    clock.step("1. GET /api/scaffolder/v2/actions lists paved's actions with their schemas");
    let (code, actions) = http
        .get(
            &format!("{bs}/api/scaffolder/v2/actions"),
            Some(BACKSTAGE_TOKEN),
        )
        .await;
    assert_eq!(code, 200, "{actions}");
    let ids: BTreeSet<&str> = actions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .filter(|id| id.starts_with("paved:"))
        .collect();
    // Exactly what paved's own Actions Registry lists.
    let (_, own) = http
        .get(
            &format!("{}/api/paved/.backstage/actions/v1/actions", paved.base()),
            Some(ADMIN_TOKEN),
        )
        .await;
    let own: BTreeSet<&str> = own["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert!(
        own.contains("paved:provision") && own.contains("paved:wait"),
        "{own:?}"
    );
    assert_eq!(ids, own);
    let provision = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "paved:provision")
        .unwrap();
    assert!(
        provision["schema"]["input"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("idempotencyKey")),
        "Backstage serves paved's own schema: {provision}"
    );

    // --- 2. a guest orders a database ----------------------------------------------------
    clock.step("2. a guest user's scaffolder task on postgres-database completes");
    let user_token = guest_token(&http, &bs).await;
    let name = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let task = start_task(
        &http,
        &bs,
        &user_token,
        "postgres-database",
        json!({"name": name, "environment": "dev", "size": "small", "owner": TEAM, "cost_center": "ENG-1234"}),
    )
    .await;
    let (status, events) = finished_task(&http, &bs, &user_token, &task).await;
    assert_eq!(status, "completed", "{}", task_text(&events));
    let output = &completion(&events)["output"];
    let entity_ref = format!("resource:default/{name}-dev");
    let links = output["links"].as_array().unwrap();
    assert!(
        links.iter().any(|l| l["entityRef"] == entity_ref),
        "the output names the resource: {output}"
    );
    let request_url = links
        .iter()
        .find_map(|l| l["url"].as_str())
        .expect("the output links the request");
    let request_id = request_url
        .rsplit_once("/v1/requests/")
        .map(|(_, id)| id.to_owned())
        .expect("a request URL");
    assert!(
        output["text"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["content"] == "65.00 USD/month; allowed"),
        "the output shows the estimate: {output}"
    );

    clock.step("2. paved recorded the guest as requester, and the database exists");
    let api = format!("{}/api/paved/v1", paved.base());
    let (code, req) = http
        .get(&format!("{api}/requests/{request_id}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(code, 200, "{req}");
    assert_eq!(req["requester"], GUEST, "{req}");
    assert_eq!(req["owner"], TEAM);
    assert_eq!(req["status"], "succeeded");
    assert_eq!(req["idempotencyKey"], task.as_str(), "keyed on the task id");
    let resource_id = req["resourceId"].as_str().unwrap().to_owned();
    let database = format!("{}_dev", name.replace('-', "_"));
    assert!(database_exists(&database).await, "database {database}");

    // --- 3. the Resource in Backstage's catalog ----------------------------------------
    clock.step("3. the Resource entity is in Backstage's catalog within seconds");
    let since = Instant::now();
    let resource = eventually(
        &format!("{entity_ref} in Backstage's catalog"),
        Duration::from_secs(30),
        || entity(&http, &bs, &entity_ref),
    )
    .await;
    clock.step(&format!(
        "3. ... {:.1} s after the task ended (Backstage's own cycle: 300 s here)",
        since.elapsed().as_secs_f64()
    ));
    assert_eq!(
        relations(&resource, "ownedBy"),
        BTreeSet::from([TEAM.to_owned()])
    );
    let ann = &resource["metadata"]["annotations"];
    assert_eq!(ann["paved.dev/monthly-cost-usd"], "65.00", "{resource}");
    assert_eq!(ann["paved.dev/environment"], "dev");
    assert_eq!(ann["paved.dev/resource-id"], resource_id.as_str());
    assert_eq!(ann["paved.dev/request-id"], request_id.as_str());
    assert_eq!(processing_errors(&resource), Vec::<Value>::new());
    // It came from its catalog page, read by that page's own Location entity (the one paved's
    // refresh fallback refreshes), which the registered document emitted.
    let layout = paved::catalog::pages::Layout::new(&format!("{}/api/paved", paved.base()), 64);
    let page_url = layout.page_url(layout.page_of(&resource_id));
    assert_eq!(
        ann["backstage.io/managed-by-location"],
        format!("url:{page_url}").as_str(),
        "{resource}"
    );
    let page_location = entity(
        &http,
        &bs,
        &layout.page_location_ref(layout.page_of(&resource_id)),
    )
    .await
    .expect("the page's Location entity is in Backstage's catalog");
    assert_eq!(page_location["spec"]["target"], page_url.as_str());
    assert_eq!(processing_errors(&page_location), Vec::<Value>::new());
    let (code, creds) = http
        .get(
            &format!("{api}/resources/{resource_id}/credentials"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(code, 200, "{creds}");
    let password = creds["database"]["password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 16);
    assert!(
        !resource.to_string().contains(&password),
        "no credential in the catalog"
    );

    // --- 4. a policy-denied request ------------------------------------------------------
    clock.step("4. a request policy denies fails the task, with paved's reason in its log");
    let denied_name = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let task = start_task(
        &http,
        &bs,
        &user_token,
        "postgres-database",
        json!({"name": denied_name, "environment": "dev", "size": "medium", "owner": TEAM,
               "cost_center": "ENG-1234"}),
    )
    .await;
    let (status, events) = finished_task(&http, &bs, &user_token, &task).await;
    assert_eq!(status, "failed", "{}", task_text(&events));
    let reason = "exceeds the dev limit of 100 USD/month";
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "log"
                && e["body"]["message"].as_str().unwrap_or("").contains(reason)),
        "the task log shows paved's reason: {}",
        task_text(&events)
    );
    assert!(
        completion(&events)["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(reason)
    );
    assert!(!database_exists(&format!("{}_dev", denied_name.replace('-', "_"))).await);

    // --- 4b. an approval that outlasts the task's waits -----------------------------------
    clock
        .step("4b. a request awaiting approval past the waits fails the task, saying who approves");
    let approval_name = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let task = start_task(
        &http,
        &bs,
        &user_token,
        "postgres-database",
        json!({"name": approval_name, "environment": "prod", "size": "large",
               "owner": TEAM, "cost_center": "ENG-1234"}),
    )
    .await;
    let (status, events) = finished_task(&http, &bs, &user_token, &task).await;
    assert_eq!(
        status,
        "failed",
        "never completed while awaiting approval: {}",
        task_text(&events)
    );
    let said = completion(&events)["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        said.contains("Waits for approval by a lead of group:default/team-a"),
        "{said}"
    );
    assert!(
        completion(&events).get("output").is_none_or(|o| o["links"]
            .as_array()
            .is_none_or(|l| l.iter().all(|l| l["entityRef"].is_null()))),
        "no entity link: {}",
        completion(&events)
    );
    let (_, listed) = http
        .get(
            &format!("{api}/requests?status=awaiting_approval"),
            Some(ADMIN_TOKEN),
        )
        .await;
    let waiting = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["idempotencyKey"] == task.as_str())
        .unwrap_or_else(|| panic!("the task's request still awaits approval: {listed}"))
        .clone();
    let waiting_id = waiting["id"].as_str().unwrap().to_owned();
    clock.step("4b. ... approved later, it is provisioned and reaches the catalog all the same");
    let (code, body) = http
        .post(
            &format!("{api}/requests/{waiting_id}/approve"),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let approval_ref = format!("resource:default/{approval_name}-prod");
    eventually(
        &format!("{approval_ref} in Backstage's catalog"),
        Duration::from_secs(60),
        || entity(&http, &bs, &approval_ref),
    )
    .await;

    // --- 5. a dry run ------------------------------------------------------------------
    clock.step("5. a template dry-run runs paved:estimate and returns its cost and decision");
    let (_, before) = http
        .get(&format!("{api}/requests"), Some(ADMIN_TOKEN))
        .await;
    let mut template = entity(&http, &bs, "template:default/postgres-database")
        .await
        .unwrap();
    for k in ["uid", "etag"] {
        template["metadata"].as_object_mut().unwrap().remove(k);
    }
    template.as_object_mut().unwrap().remove("relations");
    template.as_object_mut().unwrap().remove("status");
    let (code, dry) = http
        .post(
            &format!("{bs}/api/scaffolder/v2/dry-run"),
            Some(&user_token),
            &json!({"template": template, "directoryContents": [],
                    "values": {"name": "dry-run-db", "environment": "dev", "size": "medium",
                               "owner": TEAM, "cost_center": "ENG-1234"}}),
        )
        .await;
    assert_eq!(code, 200, "{dry}");
    let log = dry["log"].to_string();
    assert!(
        log.contains("Running paved:estimate in dry-run mode"),
        "{log}"
    );
    assert!(
        dry["output"]["text"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["content"]
                == "Denied: estimated 305 USD/month exceeds the dev limit of 100 USD/month"),
        "the estimate's cost and decision: {}",
        dry["output"]
    );
    let (_, after) = http
        .get(&format!("{api}/requests"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(
        after["items"].as_array().map(Vec::len),
        before["items"].as_array().map(Vec::len),
        "a dry run orders nothing: {after}"
    );

    // --- composite: a preview environment ------------------------------------------------
    clock.step("composite: a preview environment is a Resource that dependsOn its parts");
    let branch = format!("pr-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let task = start_task(
        &http,
        &bs,
        &user_token,
        "preview-environment",
        json!({"component": "component:default/shop", "branch": branch, "owner": TEAM,
               "ttl_hours": 4, "cost_center": "ENG-1234"}),
    )
    .await;
    let (status, events) = finished_task(&http, &bs, &user_token, &task).await;
    assert_eq!(status, "completed", "{}", task_text(&events));
    let env_name = format!("preview-shop-{branch}");
    let env_ref = format!("resource:default/{env_name}");
    let environment = eventually(
        &format!("{env_ref} in Backstage's catalog"),
        Duration::from_secs(30),
        || entity(&http, &bs, &env_ref),
    )
    .await;
    let parts = BTreeSet::from([
        format!("resource:default/{env_name}.cache"),
        format!("resource:default/{env_name}.database"),
    ]);
    assert_eq!(relations(&environment, "dependsOn"), parts);
    assert_eq!(environment["spec"]["type"], "environment");
    let env_id = environment["metadata"]["annotations"]["paved.dev/resource-id"]
        .as_str()
        .unwrap()
        .to_owned();
    for part in &parts {
        let p = eventually(
            &format!("{part} in Backstage's catalog"),
            Duration::from_secs(30),
            || entity(&http, &bs, part),
        )
        .await;
        assert_eq!(
            relations(&p, "dependencyOf"),
            BTreeSet::from([env_ref.clone()])
        );
        assert_eq!(relations(&p, "ownedBy"), BTreeSet::from([TEAM.to_owned()]));
        assert_eq!(processing_errors(&p), Vec::<Value>::new());
    }

    // --- 6. deleting through paved --------------------------------------------------------
    clock.step("6. deleting the resources through paved's API removes their entities");
    // The developer deletes their database (with their Backstage token), a platform admin
    // the environment.
    for (id, as_who) in [(&resource_id, user_token.as_str()), (&env_id, ADMIN_TOKEN)] {
        let (code, del) = http
            .send(
                reqwest::Method::DELETE,
                &format!("{api}/resources/{id}"),
                Some(as_who),
                None,
            )
            .await;
        assert_eq!(code, 202, "{del}");
        let del_id = del["id"].as_str().unwrap().to_owned();
        eventually(
            &format!("delete request {del_id} succeeds"),
            Duration::from_secs(60),
            || {
                let (http, url) = (http.clone(), format!("{api}/requests/{del_id}"));
                async move {
                    let (_, r) = http.get(&url, Some(ADMIN_TOKEN)).await;
                    assert_ne!(r["status"], "failed", "{r}");
                    (r["status"] == "succeeded").then_some(())
                }
            },
        )
        .await;
    }
    clock.step("6. ... paved deleted both; now Backstage's catalog");
    for gone in std::iter::once(&entity_ref)
        .chain(std::iter::once(&env_ref))
        .chain(parts.iter())
    {
        eventually(
            &format!("{gone} leaves Backstage's catalog"),
            Duration::from_secs(30),
            || async { entity(&http, &bs, gone).await.is_none().then_some(()) },
        )
        .await;
    }
    assert!(
        !database_exists(&database).await,
        "database {database} dropped"
    );

    clock.step("secrets: no password in paved's or Backstage's log");
    let paved_log = std::fs::read_to_string(&paved.log).unwrap();
    let backstage_log = std::fs::read_to_string(peer.log()).unwrap_or_default();
    assert!(paved_log.contains("catalog removal done"));
    // The peer has no notifications plugin: paved says so once, and does not retry there.
    let missing = paved_log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("@backstage/plugin-notifications-backend"))
        .count();
    assert_eq!(missing, 1, "one WARN naming what to install");
    assert!(
        !paved_log
            .lines()
            .any(|l| l.contains("will retry") && l.contains("backstage")),
        "no retries against a Backstage without notifications"
    );
    assert!(!paved_log.contains(&password), "a password in paved's log");
    assert!(
        !backstage_log.contains(&password),
        "a password in Backstage's log"
    );
    assert!(!backstage_log.contains(ADMIN_TOKEN));

    clock.step("done; stopping paved and Backstage, dropping what was created");
    drop(paved);
    drop(peer);
    let _ = std::fs::remove_dir_all(&logs);
}

/// A rolling deploy: two `paved serve` replicas on one PostgreSQL behind one address, a real
/// Backstage pointed at that address, and scaffolder tasks on the bundled postgres-database
/// template waiting in `paved:wait` while the replicas are restarted one at a time (SIGTERM,
/// exit, start again). No task fails, every request is provisioned once, and each replica
/// exited because nothing was in flight any more, not because its grace period ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_replicas_one_at_a_time_fails_no_task() {
    let clock = Clock(Instant::now());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = Http(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "backstage-restarts-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&logs).unwrap();
    require_node();
    run(
        Command::new(repo_path("scripts/backstage-peer")).arg("install"),
        "scripts/backstage-peer install",
    );

    let db = TestDb::new(DbEngine::Postgres).await;
    let _provisioned = common::Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };
    let ports = [common::free_port(), common::free_port()];
    let front_port = front(ports.to_vec()).await;
    let front_url = format!("http://127.0.0.1:{front_port}");
    let backstage_port = common::free_port();
    let env = |port: u16| {
        let mut env = paved_env(port, backstage_port, &db.url);
        env.extend([
            // Links, catalog locations and the JWKS Backstage fetches: the shared address.
            ("PAVED_SERVER__PUBLIC_URL", front_url.clone()),
            // Far beyond what a stop should take: reaching it is a failure, seen in the log.
            ("PAVED_SERVER__SHUTDOWN_GRACE_SECONDS", "120".into()),
            // One worker each, so the tasks' jobs queue up and their waits stay open a while.
            ("PAVED_ENGINE__WORKERS", "1".into()),
            ("PAVED_BACKSTAGE__WAIT_SECONDS", "20".into()),
        ]);
        env
    };
    let mut generation = 0;
    let mut log_for = |port: u16| {
        generation += 1;
        logs.join(format!("paved-{port}-{generation}.log"))
    };
    // One after the other: the first applies the migrations.
    let mut replicas = Vec::new();
    for port in ports {
        let log = log_for(port);
        replicas.push(serve_on(&http, port, &env(port), log).await);
    }

    let overlay = logs.join("backstage.yaml");
    std::fs::write(
        &overlay,
        format!(
            r#"# Written by tests/backstage_e2e.rs: paved's replicas behind one address.
backend:
  auth:
{auth}  reading:
    allow:
      - host: 127.0.0.1:{front_port}
        paths: [/api/paved/catalog/]
discovery:
  endpoints:
    - target: {front_url}/api/{{{{pluginId}}}}
      plugins: [paved]
"#,
            auth = external_access(&front_url, backstage_port)
        ),
    )
    .unwrap();
    let peer = Peer {
        port: backstage_port,
    };
    run(
        &mut Peer::script(
            backstage_port,
            &["start", "--config", overlay.to_str().unwrap()],
        ),
        "scripts/backstage-peer start",
    );
    let bs = format!("http://localhost:{backstage_port}");
    clock.step(&format!(
        "setup: replicas on :{} and :{} behind :{front_port}, Backstage on :{backstage_port}",
        ports[0], ports[1]
    ));
    run(
        paved_command(&env(ports[0])).args(["catalog", "register"]),
        "paved catalog register",
    );
    eventually(
        "template postgres-database in Backstage's catalog",
        Duration::from_secs(60),
        || entity(&http, &bs, "template:default/postgres-database"),
    )
    .await;

    clock.step("tasks: a guest orders several databases through the scaffolder");
    let user_token = guest_token(&http, &bs).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let name = format!("roll-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let id = start_task(
            &http,
            &bs,
            &user_token,
            "postgres-database",
            json!({"name": name, "environment": "dev", "size": "small", "owner": TEAM, "cost_center": "ENG-1234"}),
        )
        .await;
        tasks.push((id, name));
    }
    let api = format!("{front_url}/api/paved/v1");
    // Restart once the tasks are in paved: their provisioning and waits are under way.
    eventually(
        "the tasks' requests reach paved",
        Duration::from_secs(60),
        || {
            let (http, url) = (http.clone(), format!("{api}/requests"));
            async move {
                let (_, r) = http.get(&url, Some(ADMIN_TOKEN)).await;
                (r["items"].as_array().map_or(0, Vec::len) >= 2).then_some(())
            }
        },
    )
    .await;

    let mut stopped = Vec::new();
    for i in 0..replicas.len() {
        let port = ports[i];
        clock.step(&format!(
            "restart: SIGTERM to the replica on :{port}, wait for its exit"
        ));
        let status = replicas[i].terminate();
        assert!(
            status.success(),
            "replica :{port} exited with {status}:\n{}",
            tail(&replicas[i].log, 30)
        );
        stopped.push(replicas[i].log.clone());
        clock.step(&format!(
            "restart: ... exited; starting it again on :{port}"
        ));
        let log = log_for(port);
        replicas[i] = serve_on(&http, port, &env(port), log).await;
    }

    clock.step("tasks: every one completes");
    for (task, name) in &tasks {
        let (status, events) = finished_task(&http, &bs, &user_token, task).await;
        assert_eq!(
            status,
            "completed",
            "task for {name}: {}",
            task_text(&events)
        );
    }

    clock.step("requests: one per task, succeeded, every step run once, one database each");
    let (code, listed) = http
        .get(&format!("{api}/requests?limit=100"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(code, 200, "{listed}");
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), tasks.len(), "{listed}");
    for (task, name) in &tasks {
        let ours: Vec<&Value> = items
            .iter()
            .filter(|r| r["idempotencyKey"] == task.as_str())
            .collect();
        assert_eq!(ours.len(), 1, "one request for task {task}: {listed}");
        let id = ours[0]["id"].as_str().unwrap();
        let (_, req) = http
            .get(&format!("{api}/requests/{id}"), Some(ADMIN_TOKEN))
            .await;
        assert_eq!(req["status"], "succeeded", "{req}");
        for step in req["steps"].as_array().unwrap() {
            assert_eq!(step["status"], "succeeded", "{req}");
            assert_eq!(step["attempts"], 1, "each step ran once: {req}");
        }
        let database = format!("{}_dev", name.replace('-', "_"));
        assert!(database_exists(&database).await, "database {database}");
    }

    clock.step("logs: each stopped replica exited once nothing was in flight");
    for log in &stopped {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(
            text.contains("shutdown: nothing in flight; exiting"),
            "{}: {}",
            log.display(),
            tail(log, 30)
        );
        assert!(
            !text.contains("after the grace period"),
            "{}",
            log.display()
        );
        let handed = text
            .lines()
            .filter(|l| l.contains("job handed back"))
            .count();
        clock.step(&format!(
            "logs: ... {} (jobs handed back: {handed})",
            log.display()
        ));
    }

    clock.step("done; stopping the replicas and Backstage, dropping what was created");
    drop(replicas);
    drop(peer);
    let _ = std::fs::remove_dir_all(&logs);
}
