//! The `paved` command line.

mod lint;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{app, config::Settings, db, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "paved",
    version,
    about = "Self-service infrastructure for Backstage"
)]
pub struct Cli {
    /// YAML configuration file; every key can be overridden by PAVED_<SECTION>__<KEY>.
    #[arg(long, global = true, env = crate::config::CONFIG_ENV)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (applies pending migrations first unless database.migrate_on_start is off).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Work with offering templates.
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
    /// Work with Rego policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Work with Backstage's catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Check the configuration (file and PAVED_<SECTION>__<KEY> variables).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Work with the keys credentials and signing keys are sealed with.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Order and follow requests on a running paved, as the caller's token allows.
    Request {
        /// paved's URL.
        #[arg(long, env = "PAVED_URL", default_value = "http://127.0.0.1:7077")]
        server: String,
        /// A paved API token or a Backstage user token (never printed).
        #[arg(long, env = "PAVED_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        command: RequestCommand,
    },
    /// What can be ordered on a running paved: its offerings, their forms and outputs.
    Offerings {
        /// paved's URL.
        #[arg(long, env = "PAVED_URL", default_value = "http://127.0.0.1:7077")]
        server: String,
        /// A paved API token or a Backstage user token (never printed).
        #[arg(long, env = "PAVED_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        command: OfferingsCommand,
    },
    /// Price an order and run every policy over it, storing nothing: the answer the form's
    /// review step gets. `paved estimate postgres-database --set name=orders --set owner=team-a`.
    Estimate {
        offering: String,
        /// A form value, `key=value` (repeat for each).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Form values from a YAML or JSON file (--set wins).
        #[arg(long)]
        values: Option<PathBuf>,
        /// paved's URL.
        #[arg(long, env = "PAVED_URL", default_value = "http://127.0.0.1:7077")]
        server: String,
        /// A paved API token or a Backstage user token (never printed).
        #[arg(long, env = "PAVED_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Read resources from a running paved, as the caller's token allows.
    Resource {
        /// paved's URL.
        #[arg(long, env = "PAVED_URL", default_value = "http://127.0.0.1:7077")]
        server: String,
        /// A paved API token or a Backstage user token (never printed).
        #[arg(long, env = "PAVED_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        command: ResourceCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Order an offering: `paved request create postgres-database --set name=orders
    /// --set owner=team-a ...`; values are YAML scalars. Follows it until final with --wait.
    Create {
        offering: String,
        /// A form value, `key=value` (repeat for each).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Form values from a YAML or JSON file (--set wins).
        #[arg(long)]
        values: Option<PathBuf>,
        /// Follow the request, step by step, until it is final.
        #[arg(long)]
        wait: bool,
    },
    /// Requests you may see, newest first: id, status, offering, owner, requester.
    List {
        /// Only requests in this status (e.g. awaiting_approval).
        #[arg(long)]
        status: Option<String>,
    },
    /// A request with its steps, as JSON.
    Get { id: String },
    /// Approve a request that waits for your approval.
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a request that waits for your approval; it ends.
    Reject {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Cancel a request that has not finished (its pending approvals are withdrawn).
    Cancel { id: String },
    /// Follow a request step by step until it is final; exits 1 unless it succeeded.
    Watch { id: String },
}

#[derive(Debug, Subcommand)]
pub enum OfferingsCommand {
    /// Every offering: name, resource type, title.
    List,
    /// One offering: what it provisions, its form fields and what a resource of it hands you.
    Show { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Your teams' resources: id, entity name, status, owner, monthly cost.
    List,
    /// Delete a resource (members of the owning team; production: platform-admins with
    /// --override). Follows the deletion until it is final.
    Delete {
        id: String,
        #[arg(long = "override")]
        override_protection: bool,
    },
    /// A resource's credentials as JSON (members of the owning team only; the read is audited).
    Credentials {
        /// Resource id (the template's output shows it).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Register paved's catalog document (every resource and the offerings' templates) as a
    /// Backstage `url` location, after a dry run that explains a missing
    /// `backend.reading.allow` entry. Already registered is success. Needs backstage.base_url.
    Register {
        /// The URL Backstage reads the document from (default: server.public_url +
        /// /api/<plugin id>/catalog/entities.yaml).
        #[arg(long)]
        url: Option<String>,
        /// Only check that Backstage can read and accept the document; register nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets masked) or the problem with it (exit 2).
    Check,
    /// Print the JSON Schema (draft 2020-12) of the configuration file, as committed in
    /// config/paved.schema.json; it needs no configuration.
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-seal with secrets.key every stored value (credentials, signing keys) sealed with a
    /// key from secrets.previous_keys, then say which previous keys nothing needs any more.
    Reseal,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run the `test_*` rules of every policy (like `opa test`); exits 1 when one fails.
    Test {
        /// Folder of policies (default: policies.dir from the configuration).
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Check every offering folder; exits non-zero with file:line messages on problems.
    Lint {
        /// Folder of offerings (default: templates.dir from the configuration).
        dir: Option<PathBuf>,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    // The two documents are the same on every machine: they need no configuration.
    match cli.command {
        Command::Openapi => {
            println!("{}", openapi_json());
            return ExitCode::SUCCESS;
        }
        Command::Config {
            command: ConfigCommand::Schema,
        } => {
            println!("{}", config_schema_json());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let settings = match Settings::load(cli.config.as_deref(), std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("paved: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Openapi
        | Command::Config {
            command: ConfigCommand::Schema,
        } => unreachable!("answered above"),
        Command::Templates {
            command: TemplatesCommand::Lint { dir },
        } => lint(
            &dir.unwrap_or(settings.templates.dir),
            &settings.cost.pricebook,
        ),
        Command::Policy {
            command: PolicyCommand::Test { dir },
        } => policy_test(
            &dir.unwrap_or(settings.policies.dir),
            &settings.policies.data,
        ),
        Command::Catalog {
            command: CatalogCommand::Register { url, dry_run },
        } => catalog_register(&settings, url, dry_run),
        Command::Request {
            server,
            token,
            command,
        } => request(&settings, &server, token, command),
        Command::Offerings {
            server,
            token,
            command,
        } => offerings(&settings, &server, token, command),
        Command::Estimate {
            offering,
            set,
            values,
            server,
            token,
        } => estimate(&settings, &server, token, &offering, set, values),
        Command::Resource {
            server,
            token,
            command,
        } => resource(&settings, &server, token, command),
        Command::Config {
            command: ConfigCommand::Check,
        } => match yaml_serde::to_string(&settings.masked()) {
            Ok(text) => {
                print!("{text}");
                eprintln!("paved: the configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("paved: cannot print the configuration: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => with_runtime(settings, |settings| async move {
            let app = app::Application::build(settings).await?;
            app.run_until(app::shutdown_signal()).await
        }),
        Command::Secrets {
            command: SecretsCommand::Reseal,
        } => with_runtime(settings, |settings| async move { reseal(&settings).await }),
        Command::Migrate => with_runtime(settings, |settings| async move {
            let conn = db::connect(&settings.database).await?;
            let applied = db::migrate(&conn).await?;
            tracing::info!(applied, database = %crate::vocab::redact::redact(&settings.database.url), "database schema is current");
            Ok(())
        }),
    }
}

/// `paved secrets reseal`: every value moves to `secrets.key`; prints what was done and which
/// previous keys can be dropped.
async fn reseal(settings: &Settings) -> anyhow::Result<()> {
    let conn = db::connect(&settings.database).await?;
    if !db::schema_is_current(&conn).await? {
        anyhow::bail!("paved's database schema is not current: run `paved migrate` first");
    }
    let secrets = app::secret_box(settings)?;
    let done = crate::provisioning::secrets::reseal_all(&conn, &secrets)
        .await
        .map_err(|e| anyhow::anyhow!(crate::vocab::redact::redact(&e.to_string())))?;
    conn.close().await.ok();
    println!(
        "re-sealed {} credentials and {} signing keys with secrets.key (key id {})",
        done.credentials,
        done.signing_keys,
        secrets.key_id()
    );
    if done.terraform_states > 0 {
        println!(
            "re-sealed {} terraform state versions",
            done.terraform_states
        );
    }
    let left: Vec<&String> = done
        .still_needed
        .iter()
        .filter(|id| id.as_str() != secrets.key_id())
        .collect();
    if left.is_empty() {
        println!("every stored secret is sealed with secrets.key");
    } else {
        let ids: Vec<&str> = left.iter().map(|s| s.as_str()).collect();
        println!(
            "still sealed with other keys (written meanwhile; run again): {}",
            ids.join(", ")
        );
    }
    if !done.released.is_empty() {
        println!(
            "no stored secret needs key {} any more: remove it from secrets.previous_keys",
            done.released.join(", ")
        );
    }
    Ok(())
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    crate::api::openapi()
        .to_pretty_json()
        .expect("OpenAPI document serializes")
}

/// The configuration's JSON Schema, generated from [`Settings`] and its doc comments.
pub fn config_schema_json() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(Settings)).expect("schema serializes")
}

fn lint(dir: &std::path::Path, pricebook: &std::path::Path) -> ExitCode {
    let book = match crate::cost::PriceBook::load(pricebook) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cost.pricebook: {e}");
            return ExitCode::FAILURE;
        }
    };
    let findings = lint::lint_dir(dir, Some(&book));
    for f in &findings {
        eprintln!("{f}");
    }
    if findings.is_empty() {
        println!("{}: all templates are valid", dir.display());
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s)", findings.len());
        ExitCode::FAILURE
    }
}

fn resource(
    settings: &Settings,
    server: &str,
    token: Option<String>,
    command: ResourceCommand,
) -> ExitCode {
    use crate::client::{Client, segment};
    let client = Client::new(server, &settings.backstage.plugin_id, token);
    run_client("paved resource", async {
        match command {
            ResourceCommand::Credentials { id } => {
                let creds = client
                    .get(&format!("/resources/{}/credentials", segment(&id)))
                    .await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&creds).expect("JSON prints")
                );
            }
            ResourceCommand::Delete {
                id,
                override_protection,
            } => {
                let query = if override_protection {
                    "?override=true"
                } else {
                    ""
                };
                let r = client
                    .delete(&format!("/resources/{}{query}", segment(&id)))
                    .await?;
                let rid = r["id"].as_str().unwrap_or_default().to_owned();
                println!("deletion requested: request {rid}");
                if !crate::client::watch(&client, &rid).await? {
                    return Err(format!("request {rid} did not succeed"));
                }
            }
            ResourceCommand::List => {
                // All of them: a team with more resources than one page still sees every one.
                for r in client.get_all("/resources").await? {
                    let cost = r["monthlyCost"]
                        .as_f64()
                        .map(|c| format!("{c:.2}/month"))
                        .unwrap_or_default();
                    println!(
                        "{}  {:<40} {:<10} {:<28} {cost}",
                        r["id"].as_str().unwrap_or(""),
                        r["name"].as_str().unwrap_or(""),
                        r["status"].as_str().unwrap_or(""),
                        r["owner"].as_str().unwrap_or(""),
                    );
                }
            }
        }
        Ok(())
    })
}

fn request(
    settings: &Settings,
    server: &str,
    token: Option<String>,
    command: RequestCommand,
) -> ExitCode {
    use crate::client::{Client, segment, watch};
    let client = Client::new(server, &settings.backstage.plugin_id, token);
    let command_verb = match &command {
        RequestCommand::Reject { .. } => Verb::Reject,
        _ => Verb::Approve,
    };
    run_client("paved request", async {
        match command {
            RequestCommand::Create {
                offering,
                set,
                values,
                wait,
            } => {
                let form = form_values(set, values)?;
                let r = client
                    .post(
                        "/requests",
                        &serde_json::json!({"offering": offering, "values": form}),
                    )
                    .await?;
                let id = r["id"].as_str().unwrap_or_default().to_owned();
                let cost = r["estimate"]["monthly"]
                    .as_f64()
                    .map(|m| format!(", {m:.2}/month"))
                    .unwrap_or_default();
                println!("request {id}: {}{cost}", r["status"].as_str().unwrap_or(""));
                if wait && !watch(&client, &id).await? {
                    return Err(format!("request {id} did not succeed"));
                }
            }
            RequestCommand::Get { id } => {
                let r = client.get(&format!("/requests/{}", segment(&id))).await?;
                println!("{}", serde_json::to_string_pretty(&r).expect("JSON prints"));
            }
            RequestCommand::List { status } => {
                // The newest 50: a history can be long, and the API pages the rest.
                let query = status
                    .map(|s| format!("&status={}", segment(&s)))
                    .unwrap_or_default();
                let page = client.get(&format!("/requests?limit=50{query}")).await?;
                for r in page["items"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<18} {:<20} {:<28} {}",
                        r["id"].as_str().unwrap_or(""),
                        r["status"].as_str().unwrap_or(""),
                        r["offering"].as_str().unwrap_or(""),
                        r["owner"].as_str().unwrap_or(""),
                        r["requester"].as_str().unwrap_or(""),
                    );
                }
            }
            RequestCommand::Approve { id, reason } | RequestCommand::Reject { id, reason } => {
                let verb = if matches!(command_verb, Verb::Approve) {
                    "approve"
                } else {
                    "reject"
                };
                let r = client
                    .post(
                        &format!("/requests/{}/{verb}", segment(&id)),
                        &serde_json::json!({"reason": reason}),
                    )
                    .await?;
                println!("request {id}: {}", r["status"].as_str().unwrap_or(""));
            }
            RequestCommand::Cancel { id } => {
                let r = client
                    .post(
                        &format!("/requests/{}/cancel", segment(&id)),
                        &serde_json::json!({}),
                    )
                    .await?;
                println!("request {id}: {}", r["status"].as_str().unwrap_or(""));
            }
            RequestCommand::Watch { id } => {
                if !watch(&client, &id).await? {
                    return Err(format!("request {id} did not succeed"));
                }
            }
        }
        Ok(())
    })
}

enum Verb {
    Approve,
    Reject,
}

/// Form values from `--values FILE` and `--set KEY=VALUE` (which wins), as YAML scalars.
fn form_values(set: Vec<String>, values: Option<PathBuf>) -> Result<serde_json::Value, String> {
    let mut form = match values {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("--values {}: {e}", path.display()))?;
            yaml_serde::from_str::<serde_json::Value>(&text)
                .map_err(|e| format!("--values {}: {e}", path.display()))?
        }
        None => serde_json::json!({}),
    };
    if !form.is_object() {
        return Err("--values: must be a mapping of form values".to_owned());
    }
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv:?}: must be KEY=VALUE"))?;
        // YAML scalars: 20 is a number, true a boolean, the rest strings.
        let v: serde_json::Value =
            yaml_serde::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
        form[k] = v;
    }
    Ok(form)
}

fn offerings(
    settings: &Settings,
    server: &str,
    token: Option<String>,
    command: OfferingsCommand,
) -> ExitCode {
    use crate::client::{Client, segment};
    let client = Client::new(server, &settings.backstage.plugin_id, token);
    run_client("paved offerings", async {
        match command {
            OfferingsCommand::List => {
                for o in client.get_all("/offerings").await? {
                    println!(
                        "{:<24} {:<12} {}",
                        o["name"].as_str().unwrap_or(""),
                        o["resourceType"].as_str().unwrap_or(""),
                        o["title"].as_str().unwrap_or(""),
                    );
                }
            }
            OfferingsCommand::Show { name } => {
                let o = client
                    .get(&format!("/offerings/{}", segment(&name)))
                    .await?;
                print!("{}", crate::client::describe_offering(&o));
            }
        }
        Ok(())
    })
}

fn estimate(
    settings: &Settings,
    server: &str,
    token: Option<String>,
    offering: &str,
    set: Vec<String>,
    values: Option<PathBuf>,
) -> ExitCode {
    use crate::client::Client;
    let client = Client::new(server, &settings.backstage.plugin_id, token);
    run_client("paved estimate", async {
        let form = form_values(set, values)?;
        let e = client
            .post(
                "/estimates",
                &serde_json::json!({"offering": offering, "values": form}),
            )
            .await?;
        print!("{}", crate::client::describe_estimate(&e));
        if e["valid"] == false || e["decision"]["outcome"] == "denied" {
            return Err("the order would be refused (see above)".into());
        }
        Ok(())
    })
}

/// Runs a client command: its error is paved's refusal (or why paved was unreachable),
/// printed with exit code 1.
fn run_client(
    what: &str,
    command: impl std::future::Future<Output = Result<(), String>>,
) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(command);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn catalog_register(settings: &Settings, url: Option<String>, dry_run: bool) -> ExitCode {
    use crate::catalog::register::{self, RegisterError};
    let target = url.unwrap_or_else(|| crate::catalog::document_url(settings));
    let result = match &settings.backstage.base_url {
        None => Err(RegisterError::NotConfigured(
            "backstage.base_url is not set (PAVED_BACKSTAGE__BASE_URL): where is Backstage's backend?"
                .into(),
        )),
        Some(base) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(async {
                let auth = crate::auth::signing::outgoing_for(settings)
                    .await
                    .map_err(|e| RegisterError::NotConfigured(e.to_string()))?;
                register::register(base, auth.bearer_for("catalog").as_deref(), &target, dry_run)
                    .await
            }),
    };
    match result {
        Ok(r) => {
            let what = match (r.dry_run, r.already) {
                (_, true) => "is already registered",
                (true, false) => "can be registered (dry run: nothing changed)",
                (false, false) => "is now registered",
            };
            println!("{} {what} in Backstage as {}", r.target, r.location_ref);
            if !r.entities.is_empty() {
                println!(
                    "Backstage reads {} entities from it: {}",
                    r.entities.len(),
                    r.entities.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paved catalog register: {e}");
            ExitCode::FAILURE
        }
    }
}

fn policy_test(dir: &std::path::Path, data: &serde_json::Value) -> ExitCode {
    let set = match crate::policy::PolicySet::load(dir, data) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let results = set.run_tests();
    let failed = results.iter().filter(|r| !r.passed).count();
    for r in &results {
        match (&r.passed, &r.detail) {
            (true, _) => println!("PASS {}", r.name),
            (false, d) => println!(
                "FAIL {} ({}): {}",
                r.name,
                r.file.display(),
                d.as_deref().unwrap_or("false")
            ),
        }
    }
    println!(
        "policy: {} passed, {} failed",
        results.len() - failed,
        failed
    );
    if results.is_empty() {
        eprintln!("{}: no test_* rules found", dir.display());
        return ExitCode::FAILURE;
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn with_runtime<F, Fut>(settings: Settings, f: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    telemetry::init_logs(&settings.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(f(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "paved failed");
            eprintln!("paved: {e:#}");
            ExitCode::FAILURE
        }
    }
}
