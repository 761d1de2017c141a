//! The composition root: builds the state from settings, runs the server until told to stop.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

pub mod day2_jobs;

use anyhow::Context;
use tokio::net::TcpListener;

use std::sync::RwLock;

use crate::{
    auth::{
        StaticTokens,
        signing::{Outgoing, Signer},
    },
    config::Settings,
    cost::PriceBook,
    db,
    policy::PolicySet,
    provisioning::{drivers::Drivers, engine::Engine},
    telemetry,
    templates::TemplateStore,
    vocab::clock::Clock,
};

use crate::api::state::AppState;
use crate::api::state::Inner;

/// A built, bound, not yet running paved.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Migrations, started as soon as the pool exists: on a fresh database they are most of
    /// the time to readiness, and they wait on the disk while templates and policies compile.
    migrating: Option<tokio::task::JoinHandle<()>>,
    /// The policy folder as it was just before start-up compiled it: the watch compares with
    /// this, so an edit made while paved was starting is not missed.
    policies_seen: u64,
}

impl Application {
    /// Opens the database pool (lazily: a database that is down keeps readiness at 503 instead
    /// of failing start-up), loads templates and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// As `build`, with time read from `clock` (tests pass a fixed one).
    pub async fn build_with_clock(mut settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        settings.check_anonymous()?;
        let db = db::connect(&settings.database).await.with_context(|| {
            format!(
                "cannot open database {}",
                crate::vocab::redact::redact(&settings.database.url)
            )
        })?;
        let migrating = settings
            .database
            .migrate_on_start
            .then(|| tokio::spawn(migrate_until_done(db.clone())));
        let templates = Arc::new(TemplateStore::open(&settings.templates.dir));
        let policies_seen = crate::templates::fingerprint(&settings.policies.dir);
        // Broken policies or prices stop start-up: serving without guardrails is not an option.
        let policies = PolicySet::load(&settings.policies.dir, &settings.policies.data)
            .map_err(|e| anyhow::anyhow!("policies: {e}"))?;
        let pricebook = PriceBook::load(&settings.cost.pricebook)
            .map_err(|e| anyhow::anyhow!("cost.pricebook: {e}"))?;
        let tokens = StaticTokens::new(&settings.auth.static_tokens);
        let secrets = Arc::new(secret_box(&settings)?);
        // A wrong or changed key stops start-up here, before anything is sealed with it. A
        // database that does not answer yet is checked once it does (readiness waits).
        let secrets_verified = match tokio::time::timeout(
            Duration::from_secs(3),
            check_secrets_key(&db, &secrets),
        )
        .await
        {
            Ok(Ok(recorded)) => recorded,
            Ok(Err(crate::provisioning::secrets::KeyCheckError::Mismatch(m))) => {
                anyhow::bail!(m)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::vocab::redact::redact(&e.to_string()), "secrets key not checked yet: the database does not answer");
                false
            }
            Err(_) => {
                tracing::warn!(
                    "secrets key not checked yet: the database did not answer within 3 s"
                );
                false
            }
        };
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("server.listen: cannot bind {}", settings.server.listen))?;
        if settings.server.public_url.is_none() {
            // Links and catalog locations need the real port (listen may say 0).
            settings.server.public_url = Some(format!("http://{}", listener.local_addr()?));
        }
        let outgoing = Outgoing::from_settings(&settings);
        let backstage_tokens = settings.backstage.base_url.as_deref().map(|url| {
            crate::auth::backstage::BackstageTokens::new(
                url,
                &settings.backstage.plugin_id,
                &settings.auth,
                outgoing.clone(),
                clock.clone(),
            )
        });
        let catalog_pages = crate::catalog::pages::PageCache::new(
            crate::catalog::pages::Layout::from_settings(&settings),
        );
        // The job runners' wake-up: whatever queues a job in this process rings it.
        let wake = crate::jobs::Wake::default();
        let notifier =
            crate::notifications::backstage::notifier(&settings, &outgoing).with_wake(wake.clone());
        let policies = Arc::new(RwLock::new(Arc::new(policies)));
        let terraform_state = Arc::new(
            crate::provisioning::terraform_state::StateService::new(
                db.clone(),
                secrets.clone(),
                terraform_state_url(&settings, listener.local_addr()?),
            )
            .with_policies(policies.clone()),
        );
        let drivers = Arc::new(drivers_of(&settings, &terraform_state));
        let refresher = settings.backstage.base_url.as_deref().map(|url| {
            crate::catalog::refresh::Refresher::new(url, outgoing.clone(), db.clone(), wake.clone())
                .with_layout(catalog_pages.layout().clone())
        });
        let state = AppState(Arc::new(Inner {
            settings,
            db,
            templates,
            policies,
            pricebook,
            tokens,
            secrets,
            wake,
            backstage_tokens,
            outgoing,
            catalog_pages,
            metrics: telemetry::metrics_handle(),
            notifier,
            refresher,
            drivers,
            terraform_state,
            schema_ready: tokio::sync::watch::Sender::new(false),
            secrets_verified: AtomicBool::new(secrets_verified),
            fatal: std::sync::Mutex::new(None),
            shutting_down: AtomicBool::new(false),
            clock,
            gauges_computed: tokio::sync::Mutex::new(None),
        }));
        Ok(Self {
            listener,
            state,
            migrating,
            policies_seen,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A runner over every job type, provisioning included, for running what is due now
    /// (`Runner::run_pending`) instead of waiting for the background workers: an operator's
    /// one-off drain, or a test that drives jobs on demand.
    pub fn job_runner(&self) -> Arc<crate::jobs::Runner> {
        let state = &self.state;
        Arc::new(crate::jobs::Runner::new(
            state.db().clone(),
            register_jobs(state, Some(build_engine(state))),
            crate::jobs::RunnerSettings::from(&state.settings().engine),
            state.0.wake.clone(),
        ))
    }

    /// Serves until `shutdown` resolves, then at once turns readiness 503, stops accepting and
    /// stops the workers claiming jobs; returns as soon as the in-flight requests and each
    /// worker's step in progress are done (at the latest after `server.shutdown_grace_seconds`).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let settings = state.settings().clone();
        tracing::info!(
            listen = %self.local_addr(),
            database = %crate::vocab::redact::redact(&settings.database.url),
            templates = %settings.templates.dir.display(),
            "paved starting"
        );

        if settings.anonymous_allowed() {
            tracing::warn!(
                "auth.allow_anonymous is on: callers without a token may read and order; turn it off in production"
            );
        }
        crate::provisioning::drivers::warn_about_targets(&settings.drivers, &settings.database.url);
        let mut background = tokio::task::JoinSet::new();
        let (fatal_tx, mut fatal_rx) = tokio::sync::watch::channel(None::<String>);
        background.spawn(verify_secrets_until_done(state.clone(), fatal_tx));
        if let Some(migrating) = self.migrating {
            let st = state.clone();
            background.spawn(async move {
                if migrating.await.is_ok() {
                    st.0.schema_ready.send_replace(true);
                }
            });
        } else {
            tracing::info!("database.migrate_on_start is off: waiting for `paved migrate`");
        }
        background.spawn(state.0.templates.clone().watch(Duration::from_secs(
            settings.templates.reload_interval_seconds,
        )));
        background.spawn(watch_policies(
            state.clone(),
            Duration::from_secs(settings.policies.reload_interval_seconds),
            self.policies_seen,
        ));
        if let Some(signer) = state.outgoing().signer() {
            background.spawn(keep_signing_keys(state.clone(), signer.clone()));
        }
        if settings.backstage.base_url.is_some() {
            let b = &settings.backstage;
            match state.outgoing() {
                Outgoing::External(_, claims) => tracing::info!(
                    mode = "external-jwks",
                    jwks_url = %settings.jwks_url(),
                    issuer = %claims.issuer,
                    audience = %claims.audience,
                    subject = %claims.subject,
                    "calling Backstage with external-access tokens (its app-config needs a backend.auth.externalAccess entry of type jwks with these options)"
                ),
                Outgoing::Static(_) => {
                    tracing::info!(mode = "static", "calling Backstage with backstage.token")
                }
                Outgoing::Plugin(_) => tracing::info!(
                    mode = "plugin",
                    plugin_id = %b.plugin_id,
                    "calling Backstage with plugin tokens (relies on Backstage finding paved's keys through discovery)"
                ),
            }
        }
        // One stop signal for the server and every background loop: on SIGTERM workers stop
        // claiming at once, not after the HTTP server drained.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let workers_stop_rx = stop_rx.clone();
        let mut workers = tokio::task::JoinSet::new();
        // Provisioning runs only where workers are configured; the day-2, notification and
        // catalog jobs need a runner wherever they are on, so a replica without workers still
        // runs one for them.
        let engine = (settings.engine.workers > 0).then(|| build_engine(&state));
        let runners = if engine.is_some() {
            settings.engine.workers
        } else {
            usize::from(
                day2_jobs::any_enabled(&state)
                    || state.0.notifier.is_enabled()
                    || state.0.refresher.is_some(),
            )
        };
        if runners > 0 {
            let mut runner_settings = crate::jobs::RunnerSettings::from(&settings.engine);
            if state.0.notifier.is_enabled() {
                // A retried delivery is due between two wake-ups: found at the next poll.
                let poll = Duration::from_secs(settings.notifications.poll_seconds);
                runner_settings.poll = runner_settings.poll.min(poll);
            }
            let runner = Arc::new(crate::jobs::Runner::new(
                state.db().clone(),
                register_jobs(&state, engine),
                runner_settings,
                state.0.wake.clone(),
            ));
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "paved".into());
            for i in 0..runners {
                // Unique across replicas even where HOSTNAME is unset and every PID is 1.
                let name = format!(
                    "{host}-{}-{i}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                );
                let (st, runner, stop) = (state.clone(), runner.clone(), workers_stop_rx.clone());
                workers.spawn(async move {
                    let mut stopping = stop.clone();
                    let stopped = async move {
                        let _ = stopping.wait_for(|s| *s).await;
                    };
                    // Jobs live in tables the migrations make; nothing is sealed with a key
                    // the database has not confirmed.
                    let settled = async {
                        wait_for_schema(&st).await;
                        wait_for_secrets(&st).await;
                    };
                    tokio::select! {
                        _ = settled => runner.work(name, stop).await,
                        _ = stopped => {}
                    }
                });
            }
            if !settings.database.is_sqlite() {
                background.spawn(crate::jobs::listen_for_jobs(
                    settings.database.url.clone(),
                    state.0.wake.clone(),
                ));
            }
            tracing::info!(workers = runners, "job runners started");
        }

        // Background day-2 work starts once the schema is current (its tables may be new).
        if day2_jobs::any_enabled(&state) {
            // Every replica offers each period's day-2 jobs; the job id makes them one.
            let (st, mut stop) = (state.clone(), workers_stop_rx.clone());
            let check = Duration::from_secs(settings.schedules.check_seconds);
            background.spawn(async move {
                wait_for_schema(&st).await;
                loop {
                    if *stop.borrow() {
                        return;
                    }
                    if day2_jobs::enqueue_due(&st, chrono::Utc::now()).await {
                        st.wake_workers();
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(check) => {}
                        _ = stop.changed() => {}
                    }
                }
            });
        }

        let signal_state = state.clone();
        let signal_stop = stop_tx.clone();
        let mut fatal_seen = fatal_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => tracing::info!("shutdown requested: finishing in-flight requests"),
                _ = async {
                    // The checker drops its sender once the key is verified: never fatal then.
                    if fatal_seen.wait_for(|f| f.is_some()).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => tracing::error!("stopping: the secrets key does not fit the stored secrets"),
            }
            signal_state.0.shutting_down.store(true, Ordering::Release);
            let _ = signal_stop.send(true);
        });

        let traffic = Arc::new(Traffic::default());
        let app = crate::api::router(state.clone()).layer(axum::middleware::from_fn_with_state(
            (state.clone(), traffic.clone()),
            count_and_close_when_stopping,
        ));
        let listener = DrainingListener {
            addr: self.listener.local_addr()?,
            inner: Some(self.listener),
            stop: stop_rx.clone(),
            traffic: traffic.clone(),
        };
        let mut graceful_rx = stop_rx.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = graceful_rx.wait_for(|stop| *stop).await;
            traffic.drained().await;
        });
        let grace = Duration::from_secs(settings.server.shutdown_grace_seconds);
        let mut deadline_rx = stop_rx;
        // Everything in flight: the server's open calls (an open `paved:wait` answers at once
        // when stopping), and each worker's step in progress (the job then goes back to the
        // queue for another replica).
        let drained = async {
            let served = server.into_future().await;
            // Also when the server failed: nothing else stops the workers then.
            let _ = stop_tx.send(true);
            while workers.join_next().await.is_some() {}
            served
        };
        tokio::select! {
            served = drained => {
                served.context("HTTP server failed")?;
                tracing::info!("shutdown: nothing in flight; exiting");
            }
            _ = async {
                let _ = deadline_rx.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!(grace_seconds = grace.as_secs(), "shutdown: work still in flight after the grace period; exiting anyway (an unfinished job runs again once its lease expires)"),
        }
        workers.abort_all();
        background.abort_all();
        state.db().clone().close().await.ok();
        tracing::info!("paved stopped");
        if let Some(m) = fatal_rx.borrow_and_update().clone() {
            anyhow::bail!(m);
        }
        Ok(())
    }
}

/// The drivers as configured, the Terraform one with its modules in the templates folder and
/// its state in paved's own backend.
fn drivers_of(
    settings: &Settings,
    state: &Arc<crate::provisioning::terraform_state::StateService>,
) -> Drivers {
    use crate::provisioning::drivers::terraform::TerraformDriver;
    let backend: Arc<dyn crate::provisioning::drivers::terraform::StateBackend> = state.clone();
    Drivers::from_settings(&settings.drivers).with_terraform(
        TerraformDriver::new(
            settings.drivers.terraform.clone(),
            settings.templates.dir.clone(),
        )
        .with_backend(backend),
    )
}

/// Where the Terraform CLI reaches paved's state backend: `drivers.terraform.state_url`, or
/// this process's own listener (the CLI runs on the same machine; a wildcard listen address
/// is reached over loopback).
fn terraform_state_url(settings: &Settings, bound: SocketAddr) -> String {
    if let Some(u) = &settings.drivers.terraform.state_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = match bound.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!(
        "http://{host}:{}{}",
        bound.port(),
        settings.plugin_base_path()
    )
}

/// The provisioning engine over the configured drivers, publishing to the catalog and
/// notifying where those are on.
fn build_engine(state: &AppState) -> Arc<Engine> {
    let settings = state.settings();
    let mut engine = Engine::new(
        state.db().clone(),
        Arc::new(drivers_of(settings, &state.0.terraform_state)),
        state.0.secrets.clone(),
        settings.engine.clone(),
        state.0.wake.clone(),
    );
    if let Some(r) = &state.0.refresher {
        engine = engine.with_catalog(Arc::new(r.clone()));
    }
    Arc::new(
        engine
            .with_notifier(state.0.notifier.clone())
            .with_clock(state.0.clock.clone()),
    )
}

/// Every job type this process runs, each with what its runs need: the one place a new
/// job type is registered.
fn register_jobs(state: &AppState, engine: Option<Arc<Engine>>) -> crate::jobs::Registry {
    use crate::{
        catalog::refresh::job::RefreshCatalog, notifications::deliver::DeliverNotification,
    };
    let s = state.settings();
    let mut registry = day2_jobs::register(crate::jobs::Registry::new(), state);
    if let Some(engine) = engine {
        registry = registry.register::<crate::provisioning::engine::Provision>(engine);
    }
    // Only where a channel is configured: a runner without one would spend the attempts of
    // deliveries another replica can make.
    if state.0.notifier.is_enabled() {
        let delivery = Arc::new(state.0.notifier.delivery(state.db().clone()));
        let backoff = crate::jobs::Backoff {
            base: Duration::from_millis(s.notifications.retry_base_ms),
            max: Duration::from_secs(s.notifications.retry_max_seconds),
        };
        registry = registry.register_with_backoff::<DeliverNotification>(delivery, backoff);
    }
    if let Some(r) = &state.0.refresher {
        registry = registry.register_with_backoff::<RefreshCatalog>(
            Arc::new(r.clone()),
            crate::catalog::refresh::job::BACKOFF,
        );
    }
    registry
}

/// Returns once the schema is current (migrated here, or by `paved migrate` elsewhere).
async fn wait_for_schema(state: &AppState) {
    // Migrating here marks the schema ready: waited for without asking the database, so the
    // runners waiting at start-up do not each open a connection beside the migrations.
    // Otherwise ask the database, as readiness does.
    if state.settings().database.migrate_on_start {
        let _ = state
            .0
            .schema_ready
            .subscribe()
            .wait_for(|ready| *ready)
            .await;
        return;
    }
    while !matches!(state.schema_current().await, Ok(true)) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies migrations, retrying while the database is unreachable. Readiness then finds the
/// schema current (and remembers it).
async fn migrate_until_done(db: sea_orm::DatabaseConnection) {
    let mut delay = Duration::from_millis(500);
    loop {
        match db::migrate(&db).await {
            Ok(applied) => {
                tracing::info!(applied, "database schema is current");
                return;
            }
            Err(e) => {
                tracing::error!(error = %crate::vocab::redact::redact(&e.to_string()), retry_in_ms = delay.as_millis() as u64, "migrations failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Loads paved's signing key once the schema is there, and rotates it on schedule. Checked
/// every minute, so a key another replica made is picked up soon after.
async fn keep_signing_keys(state: AppState, signer: Arc<Signer>) {
    // Its table may be new, and a key is sealed with `secrets.key`: both must be settled.
    wait_for_schema(&state).await;
    wait_for_secrets(&state).await;
    loop {
        let next = match signer.rotate_if_due(state.db(), state.secrets()).await {
            Ok(()) => Duration::from_secs(60),
            Err(e) => {
                tracing::error!(error = %crate::vocab::redact::redact(&e.to_string()), "cannot load or rotate the signing key; retrying");
                Duration::from_secs(5)
            }
        };
        tokio::time::sleep(next).await;
    }
}

pub use crate::provisioning::secrets::{check_secrets_key, secret_box};

/// Verifies the secrets key once the database answers and has the key table (start-up could
/// not: the database was down, or new). A mismatch stops paved. Only reads the schema, so it
/// never races the migrations.
async fn verify_secrets_until_done(
    state: AppState,
    fatal: tokio::sync::watch::Sender<Option<String>>,
) {
    loop {
        if state.secrets_verified() {
            return;
        }
        match state.verify_secrets().await {
            Ok(true) => return,
            // Not recorded yet (a fresh database: its tables are being made): again as soon
            // as the schema is current, so readiness does not wait on a write of its own.
            Ok(false) => {
                tokio::select! {
                    _ = wait_for_schema(&state) => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Err(crate::provisioning::secrets::KeyCheckError::Mismatch(m)) => {
                tracing::error!(problem = %m, "refusing to run with this secrets key");
                let _ = fatal.send(Some(m));
                return;
            }
            // Readiness reports it; migrations log the database being down already.
            Err(e) => {
                tracing::debug!(error = %crate::vocab::redact::redact(&e.to_string()), "cannot check the secrets key yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Returns once the secrets key was verified: nothing may be sealed with a key that is not
/// the database's.
async fn wait_for_secrets(state: &AppState) {
    while !state.secrets_verified() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Re-reads the policies on SIGHUP and, polling at `interval` (0 = off), when their folder
/// changes, as the templates' watch does. A set that does not compile is logged and the previous
/// one keeps deciding: a typo in a file must not open or close every guardrail.
async fn watch_policies(state: AppState, interval: Duration, mut seen: u64) {
    use crate::templates::fingerprint;
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let dir = state.settings().policies.dir.clone();
    let mut tick = (!interval.is_zero()).then(|| tokio::time::interval(interval));
    loop {
        let by_signal = tokio::select! {
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
            _ = async { match tick.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => false,
        };
        let st = state.clone();
        let d = dir.clone();
        let Ok((now, outcome)) = tokio::task::spawn_blocking(move || {
            let now = fingerprint(&d);
            // An unchanged folder is not re-compiled; a broken one is reported once per change.
            let outcome = (by_signal || now != seen).then(|| st.reload_policies());
            (now, outcome)
        })
        .await
        else {
            continue;
        };
        seen = now;
        // Logged here, on the watching task, rather than on the blocking thread.
        let why = if by_signal {
            "SIGHUP"
        } else {
            "policy files changed"
        };
        match outcome {
            None => {}
            Some(Ok(())) => tracing::info!(trigger = why, "policies reloaded"),
            Some(Err(e)) => tracing::error!(
                trigger = why,
                problem = %e,
                "policies not reloaded; keeping the previous set"
            ),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// How long the open connections must have carried no request before a stopping paved closes
/// them. HTTP/1.1 gives a server no safe moment to close a kept-alive connection: a client may
/// be sending on it just then, and Backstage's fetch fails the task step ("fetch failed").
/// Node's fetch drops a connection idle for 4 s, so after 5 s quiet none of Backstage's is
/// reused; the others got `Connection: close` on their last response.
const IDLE_BEFORE_CLOSE: Duration = Duration::from_secs(5);

/// What the HTTP server has open, for a shutdown that cuts off no call.
#[derive(Default)]
struct Traffic {
    connections: std::sync::atomic::AtomicUsize,
    requests: std::sync::atomic::AtomicUsize,
    /// Bumped whenever a request starts or ends: "quiet" means it did not move.
    activity: std::sync::atomic::AtomicU64,
}

impl Traffic {
    /// Returns once no connection is open, or the open ones carried nothing for
    /// [`IDLE_BEFORE_CLOSE`] (the server then closes them).
    async fn drained(&self) {
        let mut quiet_since = tokio::time::Instant::now();
        let mut seen = self.activity.load(Ordering::Acquire);
        loop {
            if self.connections.load(Ordering::Acquire) == 0 {
                return;
            }
            let now = self.activity.load(Ordering::Acquire);
            if now != seen || self.requests.load(Ordering::Acquire) > 0 {
                (seen, quiet_since) = (now, tokio::time::Instant::now());
            } else if quiet_since.elapsed() >= IDLE_BEFORE_CLOSE {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Counts requests in flight and, once paved is stopping, answers each with
/// `Connection: close`, so the client opens its next call elsewhere instead of on a connection
/// paved is about to close.
async fn count_and_close_when_stopping(
    axum::extract::State((state, traffic)): axum::extract::State<(AppState, Arc<Traffic>)>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    traffic.requests.fetch_add(1, Ordering::AcqRel);
    traffic.activity.fetch_add(1, Ordering::AcqRel);
    let mut res = next.run(req).await;
    traffic.requests.fetch_sub(1, Ordering::AcqRel);
    traffic.activity.fetch_add(1, Ordering::AcqRel);
    if state.shutting_down() {
        res.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    res
}

/// The server's listener: closed the moment paved is told to stop (new connections are
/// refused, so a load balancer or client goes to another replica at once), while the
/// connections already open keep being served until [`Traffic::drained`].
struct DrainingListener {
    inner: Option<TcpListener>,
    addr: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
    traffic: Arc<Traffic>,
}

impl axum::serve::Listener for DrainingListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(listener) = &self.inner else {
                return std::future::pending().await;
            };
            let accepted = if *self.stop.borrow() {
                // Connections the kernel already queued are served, not reset.
                match tokio::time::timeout(Duration::ZERO, listener.accept()).await {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        self.inner = None;
                        continue;
                    }
                }
            } else {
                tokio::select! {
                    biased;
                    accepted = listener.accept() => accepted,
                    _ = async {
                        let _ = self.stop.wait_for(|stop| *stop).await;
                    } => continue,
                }
            };
            match accepted {
                Ok((stream, addr)) => {
                    self.traffic.connections.fetch_add(1, Ordering::AcqRel);
                    let traffic = self.traffic.clone();
                    return (Counted { stream, traffic }, addr);
                }
                // As axum's own listener: a connection that failed while queued is nothing;
                // anything else (out of file descriptors) deserves a pause.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => {
                    tracing::error!(error = %e, "accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A connection the server counts while it is open.
struct Counted {
    stream: tokio::net::TcpStream,
    traffic: Arc<Traffic>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.traffic.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
