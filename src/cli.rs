//! The `paved` command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{app, config::Settings, db, telemetry, templates};

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
    match cli.command {
        Command::Openapi => {
            println!("{}", openapi_json());
            ExitCode::SUCCESS
        }
        Command::Templates {
            command: TemplatesCommand::Lint { dir },
        } => {
            let settings = match load_settings(&cli.config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            lint(
                &dir.unwrap_or(settings.templates.dir),
                &settings.cost.pricebook,
            )
        }
        Command::Policy {
            command: PolicyCommand::Test { dir },
        } => {
            let settings = match load_settings(&cli.config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            policy_test(
                &dir.unwrap_or(settings.policies.dir),
                &settings.policies.data,
            )
        }
        Command::Serve => with_runtime(&cli.config, |settings| async move {
            let app = app::Application::build(settings).await?;
            app.run_until(app::shutdown_signal()).await
        }),
        Command::Migrate => with_runtime(&cli.config, |settings| async move {
            let conn = db::connect(&settings.database).await?;
            let applied = db::migrate(&conn).await?;
            tracing::info!(applied, database = %db::redact(&settings.database.url), "database schema is current");
            Ok(())
        }),
    }
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    crate::api::openapi()
        .to_pretty_json()
        .expect("OpenAPI document serializes")
}

fn lint(dir: &std::path::Path, pricebook: &std::path::Path) -> ExitCode {
    let book = match crate::cost::PriceBook::load(pricebook) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cost.pricebook: {e}");
            return ExitCode::FAILURE;
        }
    };
    let findings = templates::lint::lint_dir(dir, Some(&book));
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

fn load_settings(file: &Option<PathBuf>) -> Result<Settings, ExitCode> {
    Settings::load(file.as_deref(), std::env::vars()).map_err(|e| {
        eprintln!("paved: {e}");
        ExitCode::from(2)
    })
}

fn with_runtime<F, Fut>(file: &Option<PathBuf>, f: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let settings = match load_settings(file) {
        Ok(s) => s,
        Err(code) => return code,
    };
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
