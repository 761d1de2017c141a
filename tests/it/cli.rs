//! The `paved` binary as an operator runs it: configuration errors, migrate, openapi, lint,
//! signals, logs.

use crate::common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::paved;
use serde_json::{Value, json};

/// A `paved serve` process, killed if the test ends early.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(configure: impl FnOnce(&mut Command)) -> Self {
        let port = common::free_port();
        let mut cmd = paved();
        cmd.arg("serve")
            .env("PAVED_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            // These tests are about the process, not provisioning: no workers, and a key so
            // nothing is written into the checkout.
            .env("PAVED_ENGINE__WORKERS", "0")
            .env(
                "PAVED_SECRETS__KEY",
                paved::vocab::secret_box::SecretBox::generate_key(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut cmd);
        Self {
            child: cmd.spawn().unwrap(),
            port,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let r = common::kit::raw_http(&format!("127.0.0.1:{}", self.port), "GET", path, None, None);
        (r.status, r.body)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.get("/.backstage/health/v1/readiness").0 == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("paved serve did not become ready");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for exit; returns (exit code, stdout, stderr).
    fn wait(mut self) -> (i32, String, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut out = String::new();
                let mut err = String::new();
                self.child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status.code().unwrap_or(-1), out, err);
            }
            assert!(Instant::now() < deadline, "paved did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn openapi_document_is_committed_and_current() {
    let committed = std::fs::read_to_string(common::repo_path("openapi/openapi.json")).unwrap();
    let out = paved().arg("openapi").output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    assert_eq!(generated.trim_end(), paved::cli::openapi_json());
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json differs from what the code describes; regenerate it with:\n  cargo run -- openapi > openapi/openapi.json"
    );
}

#[test]
fn bad_configuration_stops_startup_naming_the_key() {
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            vec![("PAVED_SERVER__LISTEN", "localhost")],
            &["server.listen", "PAVED_SERVER__LISTEN"],
        ),
        (
            vec![("PAVED_DATABASE__URL", "mysql://db")],
            &["database.url", "PAVED_DATABASE__URL"],
        ),
        (
            vec![("PAVED_LOG__FORMAT", "xml")],
            &["log.format", "PAVED_LOG__FORMAT"],
        ),
        (vec![("PAVED_SERVR__LISTEN", "127.0.0.1:1")], &["servr"]),
    ];
    for (env, needles) in cases {
        let out = paved().arg("serve").envs(env.clone()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{env:?}: {n:?} not in {err}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("paved.yaml");
    std::fs::write(&file, "server:\n  body_limit_bytes: 10\n").unwrap();
    let out = paved()
        .args(["--config", file.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("server.body_limit_bytes: must be at least 1024")
    );
    // PAVED_CONFIG names the file too.
    let out = paved()
        .arg("serve")
        .env("PAVED_CONFIG", dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml"));
}

#[test]
fn migrate_command_brings_the_schema_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    for _ in 0..2 {
        let out = paved()
            .arg("migrate")
            .env("PAVED_DATABASE__URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut s = paved::config::Settings::default();
        s.database.url = url.clone();
        let db = paved::db::connect(&s.database).await.unwrap();
        assert!(paved::db::schema_is_current(&db).await.unwrap());
    });
}

#[test]
fn templates_lint_exits_nonzero_with_file_and_line() {
    let out = paved().args(["templates", "lint"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("redis-cache");
    std::fs::create_dir(&folder).unwrap();
    for f in ["template.yaml", "offering.yaml"] {
        let text =
            std::fs::read_to_string(common::repo_path(&format!("templates/redis-cache/{f}")))
                .unwrap();
        std::fs::write(
            folder.join(f),
            text.replace("action: paved:wait", "action: paved:sleep"),
        )
        .unwrap();
    }
    let out = paved()
        .args(["templates", "lint", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = std::fs::read_to_string(folder.join("template.yaml"))
        .unwrap()
        .lines()
        .position(|l| l.contains("paved:sleep"))
        .unwrap()
        + 1;
    let expected = format!(
        "{}:{line}: step \"wait\": paved has no action \"paved:sleep\"",
        folder.join("template.yaml").display()
    );
    assert!(err.contains(&expected), "{expected}\nnot in\n{err}");
}

#[test]
fn sigterm_lets_in_flight_requests_finish_and_logs_carry_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let server = Server::start(|c| {
        c.env("PAVED_DATABASE__URL", &url)
            .env("PAVED_LOG__FORMAT", "json");
    });
    server.wait_ready();

    // A request whose body is still arriving when SIGTERM comes.
    let body = json!({"offering": "postgres-database", "values": common::postgres_values("inflight"), "idempotencyKey": "sigterm-1"}).to_string();
    let (first, second) = body.split_at(body.len() / 2);
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/paved/v1/requests HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Request-Id: inflight-req-1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(second.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    assert!(
        status_line.starts_with("HTTP/1.1 201"),
        "in-flight request finished: {status_line}"
    );

    let (code, stdout, _) = server.wait();
    assert_eq!(code, 0, "clean exit after SIGTERM");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "inflight-req-1")
        .collect();
    assert!(
        ours.iter().any(|l| l["message"] == "request stored"),
        "the handler's log line carries the request id: {stdout}"
    );
    assert!(lines.iter().any(|l| {
        l["message"]
            .as_str()
            .unwrap_or("")
            .contains("shutdown requested")
    }));
    // Every line written while serving a request carries its id.
    for l in &lines {
        if l.get("span").is_some() {
            assert!(l["span"]["request_id"].is_string(), "{l}");
        }
    }
}

#[test]
fn sighup_reloads_templates() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    for offering in ["postgres-database", "redis-cache"] {
        let to = templates.join(offering);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["template.yaml", "offering.yaml"] {
            std::fs::copy(
                common::repo_path(&format!("templates/{offering}/{f}")),
                to.join(f),
            )
            .unwrap();
        }
    }
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let server = Server::start(|c| {
        c.env("PAVED_DATABASE__URL", &url)
            .env("PAVED_TEMPLATES__DIR", &templates)
            .env("PAVED_TEMPLATES__RELOAD_INTERVAL_SECONDS", "0");
    });
    server.wait_ready();
    let count = |s: &Server| -> usize {
        let (_, body) = s.get("/api/paved/v1/offerings");
        serde_json::from_str::<Value>(&body).unwrap()["items"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(&server), 2);
    std::fs::remove_dir_all(templates.join("redis-cache")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        count(&server),
        2,
        "no watching: nothing changes without a signal"
    );
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&server) != 1 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.signal("TERM");
    assert_eq!(server.wait().0, 0);
}

#[test]
fn database_passwords_never_reach_logs_or_answers() {
    let server = Server::start(|c| {
        c.env(
            "PAVED_DATABASE__URL",
            "postgres://postgres:s3cr3t-pw@127.0.0.1:5432/paved_no_such_database",
        )
        .env("PAVED_LOG__FORMAT", "json");
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        if TcpStream::connect(("127.0.0.1", server.port)).is_ok() {
            break server.get("/.backstage/health/v1/readiness");
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains("s3cr3t-pw"), "{body}");
    std::thread::sleep(Duration::from_millis(700)); // let a migration retry log
    server.signal("TERM");
    let (_, stdout, stderr) = server.wait();
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("postgres://postgres:***@127.0.0.1:5432"),
        "{all}"
    );
    assert!(!all.contains("s3cr3t-pw"), "password leaked:\n{all}");
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates")
            .exists()
    );
}

#[test]
fn credentials_never_reach_the_logs_of_a_full_provision() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let hash: String = sha2::Sha256::digest(b"alice-token")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tokens =
        format!("[{{subject: alice, sha256: {hash}, roles: [developer], groups: [team-a]}}]");
    let server = Server::start(|c| {
        c.env("PAVED_DATABASE__URL", &url)
            .env("PAVED_LOG__FORMAT", "json")
            .env("PAVED_LOG__LEVEL", "debug")
            .env("PAVED_ENGINE__WORKERS", "1")
            .env("PAVED_AUTH__STATIC_TOKENS", &tokens);
    });
    server.wait_ready();
    // The deletion below may still be running when the server stops.
    let _teardown = common::Teardown {
        db_url: url.clone(),
        requests: vec![],
    };
    let name = format!(
        "logcheck-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let body = json!({"offering": "redis-cache", "values": {"name": name, "owner": "team-a", "cost_center": "ENG-1234"}}).to_string();
    let send = |method: &str, path: &str, body: &str| -> (u16, String) {
        let addr = format!("127.0.0.1:{}", server.port);
        let r = common::kit::raw_http(&addr, method, path, Some("alice-token"), Some(body));
        (r.status, r.body)
    };
    let (status, created) = send("POST", "/api/paved/v1/requests", &body);
    assert_eq!(status, 201, "{created}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let id = created["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let (_, r) = send("GET", &format!("/api/paved/v1/requests/{id}"), "");
        let r: Value = serde_json::from_str(&r).unwrap();
        if r["status"] == "succeeded" || r["status"] == "failed" {
            break r;
        }
        assert!(Instant::now() < deadline, "not finished: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    let rid = done["resourceId"].as_str().unwrap();
    let (status, creds) = send(
        "GET",
        &format!("/api/paved/v1/resources/{rid}/credentials"),
        "",
    );
    assert_eq!(status, 200, "{creds}");
    let creds: Value = serde_json::from_str(&creds).unwrap();
    let password = creds["cache"]["password"].as_str().unwrap().to_owned();
    assert_eq!(password.len(), 32);
    // The command line reads the same credentials with the same token, and refuses others.
    let cli = |token: &str| {
        paved()
            .args(["resource", "credentials", rid])
            .env("PAVED_URL", format!("http://127.0.0.1:{}", server.port))
            .env("PAVED_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = cli("alice-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["cache"]["password"], password.as_str());
    let out = cli("not-a-token");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && !err.contains("not-a-token"), "{err}");
    let out = paved()
        .args(["resource", "list"])
        .env("PAVED_URL", format!("http://127.0.0.1:{}", server.port))
        .env("PAVED_TOKEN", "alice-token")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(rid) && listed.contains(&name), "{listed}");
    let (status, _) = send("DELETE", &format!("/api/paved/v1/resources/{rid}"), "");
    assert_eq!(status, 202);
    std::thread::sleep(Duration::from_millis(1500));
    server.signal("TERM");
    let (_, stdout, stderr) = server.wait();
    assert!(
        stdout.contains("credentials read"),
        "the read itself is logged (who, which resource)"
    );
    assert!(
        !stdout.contains(&password) && !stderr.contains(&password),
        "a password reached the logs"
    );
}

/// `paved catalog register` against a real Backstage is in tests/backstage_e2e.rs; these are
/// the mistakes it must explain without one.
#[test]
fn catalog_register_explains_a_missing_or_unreachable_backstage() {
    let out = paved().args(["catalog", "register"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backstage.base_url is not set"), "{err}");

    let closed = common::free_port();
    let out = paved()
        .args(["catalog", "register", "--dry-run"])
        .env(
            "PAVED_BACKSTAGE__BASE_URL",
            format!("http://127.0.0.1:{closed}"),
        )
        // A static token: no signing key to load, so nothing touches a database here.
        .env("PAVED_BACKSTAGE__TOKEN", "some-static-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot reach Backstage at http://127.0.0.1:{closed}"
        )),
        "{err}"
    );
}

/// The command line as a developer uses it against a running paved: order and follow a
/// request, read it back, delete the resource.
/// Approvals from the command line, and `request watch` in a terminal (a pseudo-terminal made
/// by util-linux `script`): the step list is redrawn in place while the request waits, is
/// approved by the team's lead and runs; a rejected one ends with the lead's reason.
#[test]
fn leads_approve_and_reject_from_the_command_line_and_watch_redraws_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let token = |subject: &str, role: &str| {
        format!(
            "{{subject: {subject}, sha256: {}, roles: [{role}], groups: [team-a]}}",
            common::sha256_hex(&format!("cli-{subject}-token"))
        )
    };
    let tokens = format!(
        "[{}, {}]",
        token("alice", "developer"),
        token("lena", "lead")
    );
    let server = Server::start(|c| {
        c.env("PAVED_DATABASE__URL", &url)
            .env("PAVED_LOG__LEVEL", "warn")
            .env("PAVED_ENGINE__WORKERS", "1")
            .env("PAVED_AUTH__ALLOW_ANONYMOUS", "false")
            .env("PAVED_AUTH__STATIC_TOKENS", tokens)
            // Every order waits for a lead.
            .env(
                "PAVED_POLICIES__DATA__GUARDRAILS__APPROVAL__ABOVE_MONTHLY",
                "0",
            );
    });
    server.wait_ready();
    let _teardown = common::Teardown {
        db_url: url.clone(),
        requests: vec![],
    };
    let paved_url = format!("http://127.0.0.1:{}", server.port);
    let cli = |who: &str, args: &[&str]| {
        let out = paved()
            .args(args)
            .env("PAVED_URL", &paved_url)
            .env("PAVED_TOKEN", format!("cli-{who}-token"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let create = |name: &str| {
        let (code, out, err) = cli(
            "alice",
            &[
                "request",
                "create",
                "redis-cache",
                "--set",
                &format!("name={name}"),
                "--set",
                "owner=team-a",
                "--set",
                "cost_center=ENG-1234",
            ],
        );
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("awaiting_approval"), "{out}");
        out.split_whitespace()
            .nth(1)
            .unwrap()
            .trim_end_matches(':')
            .to_owned()
    };
    let unique = || common::kit::unique_with("cli");
    let first = create(&unique());

    // Nobody approves their own request: refused with paved's reason, exit 1.
    let (code, _, err) = cli("alice", &["request", "approve", &first]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("403") && err.contains("their own request"),
        "{err}"
    );

    // Watched in a terminal while it waits; the lead approves; the block is redrawn.
    let mut watch = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "{} request watch {first}",
            env!("CARGO_BIN_EXE_paved")
        ))
        .arg("/dev/null")
        .env("PAVED_URL", &paved_url)
        .env("PAVED_TOKEN", "cli-alice-token")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let reader = {
        let (seen, mut stdout) = (seen.clone(), watch.stdout.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen.lock().unwrap()).contains("waiting for approval") {
        assert!(
            Instant::now() < deadline,
            "watch never showed the wait: {:?}",
            String::from_utf8_lossy(&seen.lock().unwrap())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out, err) = cli(
        "lena",
        &["request", "approve", &first, "--reason", "fits the quarter"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("request {first}:")), "{out}");
    let status = watch.wait().unwrap();
    reader.join().unwrap();
    let shown = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(status.success(), "{shown}");
    // While it waits the block is the wait; then it is redrawn over it, at last with the
    // steps run.
    let (waiting, _) = shown.split_once("\x1b[1A\r").expect(&shown);
    assert!(waiting.contains("waiting for approval"), "{shown:?}");
    let (_, ran) = shown.rsplit_once("A\r").unwrap();
    assert!(
        !ran.contains("waiting for approval") && ran.contains("[ done] 6/6 publish"),
        "{shown:?}"
    );
    assert!(
        shown.contains(&format!("request {first} succeeded")),
        "{shown:?}"
    );

    // A rejection ends the request with the lead's reason; piped, watch writes plain lines.
    let second = create(&unique());
    let (code, out, err) = cli(
        "lena",
        &[
            "request",
            "reject",
            &second,
            "--reason",
            "use the shared cache",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("rejected"), "{out}");
    let (code, out, _) = cli("alice", &["request", "get", &second]);
    assert_eq!(code, Some(0));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["status"], "rejected", "{r}");
    assert!(r.to_string().contains("use the shared cache"), "{r}");
    let (code, out, _) = cli("alice", &["request", "watch", &second]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("request {second} rejected")), "{out}");
    assert!(
        !out.contains('\x1b'),
        "no escape codes into a pipe: {out:?}"
    );
    server.signal("TERM");
    server.wait();
}

#[test]
fn the_command_line_orders_follows_and_deletes() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let hash: String = sha2::Sha256::digest(b"cli-alice-token")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let server = Server::start(|c| {
        c.env("PAVED_DATABASE__URL", &url)
            .env("PAVED_LOG__LEVEL", "warn")
            .env("PAVED_ENGINE__WORKERS", "1")
            .env("PAVED_AUTH__ALLOW_ANONYMOUS", "false")
            .env(
                "PAVED_AUTH__STATIC_TOKENS",
                format!(
                    "[{{subject: alice, sha256: {hash}, roles: [developer], groups: [team-a]}}]"
                ),
            );
    });
    server.wait_ready();
    let _teardown = common::Teardown {
        db_url: url.clone(),
        requests: vec![],
    };
    let cli = |args: &[&str]| {
        let out = paved()
            .args(args)
            .env("PAVED_URL", format!("http://127.0.0.1:{}", server.port))
            .env("PAVED_TOKEN", "cli-alice-token")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let name = format!("cli{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (code, out, err) = cli(&[
        "request",
        "create",
        "redis-cache",
        "--set",
        &format!("name={name}"),
        "--set",
        "owner=team-a",
        "--set",
        "cost_center=ENG-1234",
        "--wait",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    // Each step as it finishes, numbered and timed, then the outcome with the resource.
    assert!(
        out.contains("[ done] 1/6 validate (") && out.contains("[ done] 6/6 publish ("),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains(" succeeded (resource "))
        .expect(&out);
    let request = line.split_whitespace().nth(1).unwrap().to_owned();
    let resource = line
        .split("(resource ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .to_owned();

    let (code, out, _) = cli(&["request", "get", &request]);
    assert_eq!(code, Some(0));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["requester"], "user:default/alice");

    // What can be ordered, what it costs, what was ordered: the same answers the API gives.
    let (code, out, err) = cli(&["offerings", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("redis-cache") && out.contains("postgres-database"),
        "{out}"
    );
    let (code, out, err) = cli(&["offerings", "show", "redis-cache"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("you get:") && out.contains("cache.username") && out.contains("credentials:"),
        "{out}"
    );
    let (code, out, err) = cli(&[
        "estimate",
        "postgres-database",
        "--set",
        "name=orders",
        "--set",
        "owner=team-a",
        "--set",
        "cost_center=ENG-1234",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("65.00 USD/month") && out.contains("decision: allowed"),
        "{out}"
    );
    let (code, out, _) = cli(&[
        "estimate",
        "postgres-database",
        "--set",
        "name=orders",
        "--set",
        "owner=team-a",
        "--set",
        "cost_center=ENG-1234",
        "--set",
        "size=medium",
    ]);
    assert_eq!(code, Some(1), "denied in dev: {out}");
    assert!(out.contains("denied (cost_limit)"), "{out}");
    let (code, out, _) = cli(&["request", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&request) && out.contains("succeeded"), "{out}");
    let (code, _, err) = cli(&["request", "cancel", &request]);
    assert_eq!(code, Some(1));
    assert!(err.contains("can no longer be cancelled"), "{err}");

    // Refusals come back as paved's message, naming the field, with exit code 1.
    let (code, _, err) = cli(&[
        "request",
        "create",
        "redis-cache",
        "--set",
        "name=Not_Valid",
        "--set",
        "owner=team-a",
        "--set",
        "cost_center=ENG-1234",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("400") && err.contains("name"), "{err}");

    let (code, out, err) = cli(&["resource", "delete", &resource]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("deletion requested") && out.contains("succeeded"),
        "{out}"
    );
    let (_, out, _) = cli(&["resource", "list"]);
    assert!(
        !out.contains(&resource),
        "deleted resources are not listed: {out}"
    );
    server.signal("TERM");
    server.wait();
}

#[test]
fn human_logs_written_to_a_pipe_carry_no_colour_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let server = Server::start(|c| {
        c.env("PAVED_DATABASE__URL", &url)
            .env("PAVED_LOG__FORMAT", "human");
    });
    server.wait_ready();
    server.signal("TERM");
    let (_, stdout, stderr) = server.wait();
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("paved starting"), "{all}");
    assert!(
        !all.contains('\u{1b}'),
        "escape codes in a piped log:\n{all:?}"
    );
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_masked() {
    let key = paved::vocab::secret_box::SecretBox::generate_key();
    let out = paved()
        .args(["config", "check"])
        .env("PAVED_SECRETS__KEY", &key)
        .env(
            "PAVED_DATABASE__URL",
            "postgres://paved:db-s3cret@db.internal:5432/paved",
        )
        .env("PAVED_BACKSTAGE__TOKEN", "static-t0ken")
        .env(
            "PAVED_DRIVERS__REDIS__TARGETS__PROD",
            "redis://admin:r3dis-pw@cache:6379",
        )
        .env("PAVED_BIN", "/usr/local/bin/paved")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = yaml_serde::from_str(&stdout).unwrap();
    assert_eq!(
        printed["database"]["url"],
        "postgres://paved:***@db.internal:5432/paved"
    );
    assert_eq!(
        printed["drivers"]["redis"]["targets"]["prod"],
        "redis://admin:***@cache:6379"
    );
    assert_eq!(
        printed["drivers"]["redis"]["targets"]["dev"],
        "redis://127.0.0.1:6379"
    );
    assert_eq!(printed["secrets"]["key"], "***");
    assert_eq!(printed["backstage"]["token"], "***");
    for secret in [key.as_str(), "db-s3cret", "static-t0ken", "r3dis-pw"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    // A problem names the key and the variable, and fails.
    let bad = paved()
        .args(["config", "check"])
        .env("PAVED_SERVER__LISTEN", "0.0.0.0:7077")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("auth.allow_anonymous"), "{stderr}");
}

#[test]
fn config_schema_is_committed_current_and_agrees_with_what_paved_accepts() {
    let committed = std::fs::read_to_string(common::repo_path("config/paved.schema.json")).unwrap();
    let out = paved().args(["config", "schema"]).output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    assert_eq!(generated.trim_end(), paved::cli::config_schema_json());
    assert!(
        committed.trim_end() == generated.trim_end(),
        "config/paved.schema.json differs from what the code describes; regenerate it with:\n  cargo run -q -- config schema > config/paved.schema.json"
    );
    let schema: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::meta::validate(&schema).expect("a valid draft 2020-12 schema");
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let problems = |v: &Value| -> Vec<String> {
        validator
            .iter_errors(v)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    };
    // An editor shows each key's doc comment and default.
    let listen = &schema["$defs"]["ServerSettings"]["properties"]["listen"];
    assert_eq!(listen["description"], "Address the HTTP server binds to.");
    assert_eq!(listen["default"], "127.0.0.1:7077");
    for (name, def) in schema["$defs"].as_object().unwrap() {
        for (key, prop) in def["properties"].as_object().into_iter().flatten() {
            assert!(
                prop.get("description").is_some() || prop.get("$ref").is_some(),
                "{name}.{key} has no doc comment, so the schema does not describe it"
            );
        }
    }

    // The embedded default and the example file are valid, for the schema and for paved.
    let defaults = serde_json::to_value(paved::config::Settings::default()).unwrap();
    assert_eq!(problems(&defaults), Vec::<String>::new());
    let example_path = common::repo_path("config/paved.example.yaml");
    let example: Value =
        yaml_serde::from_str(&std::fs::read_to_string(&example_path).unwrap()).unwrap();
    assert_eq!(problems(&example), Vec::<String>::new());
    let check = paved()
        .args([
            "--config",
            example_path.to_str().unwrap(),
            "config",
            "check",
        ])
        .env(
            "PAVED_SECRETS__KEY",
            paved::vocab::secret_box::SecretBox::generate_key(),
        )
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // What the lenient deserializers take (a number as text, one key as a list of one) the
    // schema takes too; what paved refuses for its type or name, the schema refuses.
    let dir = tempfile::tempdir().unwrap();
    let load = |v: &Value| {
        let f = dir.path().join("paved.yaml");
        std::fs::write(&f, v.to_string()).unwrap();
        paved::config::Settings::load(Some(&f), Vec::new())
    };
    let lenient = json!({
        "backstage": {"plugin_id": 123, "token": 42},
        "secrets": {"previous_keys": paved::vocab::secret_box::SecretBox::generate_key()},
        "server": {"public_url": ""},
    });
    assert_eq!(problems(&lenient), Vec::<String>::new());
    load(&lenient).unwrap();
    for (bad, path) in [
        (json!({"databse": {"url": "sqlite://x.db"}}), ""),
        (json!({"server": {"listn": "127.0.0.1:1"}}), "/server"),
        (
            json!({"server": {"body_limit_bytes": "big"}}),
            "/server/body_limit_bytes",
        ),
        (json!({"log": {"format": "xml"}}), "/log/format"),
        (json!({"engine": {"workers": -1}}), "/engine/workers"),
        (
            json!({"secrets": {"previous_keys": [1]}}),
            "/secrets/previous_keys/0",
        ),
        (
            json!({"auth": {"static_tokens": [{"subject": "user:default/ci"}]}}),
            "/auth/static_tokens/0",
        ),
    ] {
        let found = problems(&bad);
        assert!(
            found.iter().any(|p| p.starts_with(&format!("{path}: "))),
            "{bad}: {found:?}"
        );
        assert!(load(&bad).is_err(), "paved accepts {bad}");
    }
}

#[test]
fn a_first_start_on_an_empty_postgres_database_is_clean_and_ready_means_ready() {
    first_start_on_empty_postgres(true);
}

#[test]
fn a_first_start_waiting_for_paved_migrate_is_clean_too() {
    first_start_on_empty_postgres(false);
}

/// `paved serve` on a new database, migrating itself or waiting for `paved migrate` (run
/// while readiness is probed): no warning or error, and ready only once the signing key is in.
fn first_start_on_empty_postgres(migrate_on_start: bool) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(common::TestDb::new(common::Engine::Postgres));
    let tokens = format!(
        "[{{subject: ops, sha256: {}, roles: [platform-admin]}}]",
        common::sha256_hex("ops-token")
    );
    let key = common::secrets_key_for(&db.url);
    let server = Server::start(|c| {
        c.env("PAVED_DATABASE__URL", &db.url)
            .env("PAVED_SECRETS__KEY", &key)
            .env("PAVED_LOG__FORMAT", "json")
            .env("PAVED_AUTH__ALLOW_ANONYMOUS", "false")
            .env("PAVED_AUTH__STATIC_TOKENS", &tokens)
            // Workers and day-2 schedules on: they wait for the schema too.
            .env("PAVED_ENGINE__WORKERS", "2")
            .env("PAVED_SCHEDULES__CHECK_SECONDS", "1")
            .env("PAVED_TTL__REAPER_INTERVAL_SECONDS", "1")
            // Their warnings about shared targets are intended (tests/it/tenancy.rs).
            .env("PAVED_DRIVERS__POSTGRES__TARGETS", "{}")
            .env("PAVED_DRIVERS__REDIS__TARGETS", "{}")
            .env(
                "PAVED_DATABASE__MIGRATE_ON_START",
                migrate_on_start.to_string(),
            );
    });
    let migrate = (!migrate_on_start).then(|| {
        paved()
            .arg("migrate")
            .env("PAVED_DATABASE__URL", &db.url)
            .env("PAVED_SECRETS__KEY", &key)
            .env("PAVED_LOG__FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    });
    // Probed often while it starts, as a load balancer would (not so often that its log
    // fills the pipe this test reads only at the end).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(TcpStream::connect(("127.0.0.1", server.port)).is_ok()
        && server.get("/.backstage/health/v1/readiness").0 == 200)
    {
        assert!(
            Instant::now() < deadline,
            "paved serve did not become ready"
        );
        std::thread::sleep(Duration::from_millis(40));
    }
    if let Some(m) = migrate {
        let out = m.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A few rounds of the background work on the new schema.
    std::thread::sleep(Duration::from_millis(1500));
    server.signal("TERM");
    let (code, out, err) = server.wait();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let noisy: Vec<&Value> = lines
        .iter()
        .filter(|l| matches!(l["level"].as_str(), Some("WARN" | "ERROR")))
        .collect();
    assert!(
        noisy.is_empty(),
        "warnings or errors on a clean start: {noisy:#?}"
    );
    assert!(err.trim().is_empty(), "stderr: {err}");

    // Each probe's response is logged after its handler: none said 200 before the key was in.
    let key_loaded = lines
        .iter()
        .position(|l| l["message"] == "signing Backstage tokens with key")
        .expect("the signing key was loaded");
    let first_ready = lines
        .iter()
        .position(|l| l["span"]["path"] == "/.backstage/health/v1/readiness" && l["status"] == 200)
        .expect("readiness answered 200");
    assert!(
        key_loaded < first_ready,
        "readiness answered 200 before the signing key was loaded"
    );
    drop(db);
}
