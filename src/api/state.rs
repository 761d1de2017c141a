//! The state every handler and background task shares: settings, the database, the loaded
//! content, keys and clients. Built once by `app`; cheap to clone.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;

use std::sync::RwLock;

use crate::{
    auth::{StaticTokens, signing::Outgoing},
    config::Settings,
    cost::PriceBook,
    db,
    policy::PolicySet,
    provisioning::drivers::Drivers,
    templates::TemplateStore,
    vocab::clock::Clock,
    vocab::secret_box::SecretBox,
};

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) settings: Settings,
    pub(crate) db: DatabaseConnection,
    pub(crate) templates: Arc<TemplateStore>,
    /// Shared with the Terraform state backend, which decides planned changes with them.
    pub(crate) policies: Arc<RwLock<Arc<PolicySet>>>,
    pub(crate) pricebook: PriceBook,
    pub(crate) tokens: StaticTokens,
    pub(crate) secrets: Arc<SecretBox>,
    pub(crate) wake: crate::jobs::Wake,
    pub(crate) backstage_tokens: Option<crate::auth::backstage::BackstageTokens>,
    pub(crate) outgoing: Outgoing,
    pub(crate) catalog_pages: crate::catalog::pages::PageCache,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) notifier: crate::notifications::Notifier,
    pub(crate) refresher: Option<crate::catalog::refresh::Refresher>,
    pub(crate) drivers: Arc<Drivers>,
    /// Terraform's state backend, served under `/terraform/state` (the drivers' runs use it).
    pub(crate) terraform_state: Arc<crate::provisioning::terraform_state::StateService>,
    /// True once the schema is known current; waited on by what needs the tables.
    pub(crate) schema_ready: tokio::sync::watch::Sender<bool>,
    /// `secrets.key` opens what the database stores (checked at start, or once it answers).
    pub(crate) secrets_verified: AtomicBool,
    /// Set when paved must stop (a wrong secrets key found after start-up).
    pub(crate) fatal: std::sync::Mutex<Option<String>>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) clock: Clock,
    /// When `/metrics` last computed the gauges read from paved's tables (see
    /// `http_metrics::GAUGES_MAX_AGE`); held while they are computed, so concurrent scrapes
    /// compute them once.
    pub(crate) gauges_computed: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl AppState {
    /// What identifying a caller needs, borrowed from the state.
    pub fn authenticator(&self) -> crate::auth::Authenticator<'_> {
        crate::auth::Authenticator {
            anonymous_allowed: self.settings().anonymous_allowed(),
            backstage: self.backstage_tokens(),
            settings: &self.settings().auth,
            tokens: self.tokens(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }
    pub fn db(&self) -> &DatabaseConnection {
        &self.0.db
    }
    pub fn templates(&self) -> &TemplateStore {
        &self.0.templates
    }
    /// "Now" for every decision the API makes (spend, cost, budgets, TTLs, reports).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.clock.now()
    }
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.0.metrics
    }
    pub fn schema_ready(&self) -> bool {
        *self.0.schema_ready.borrow()
    }
    pub fn tokens(&self) -> &StaticTokens {
        &self.0.tokens
    }
    pub fn pricebook(&self) -> &PriceBook {
        &self.0.pricebook
    }
    pub fn policies(&self) -> Arc<PolicySet> {
        self.0
            .policies
            .read()
            .expect("policy lock poisoned")
            .clone()
    }

    /// Re-reads `policies/`; a set that does not compile is refused and the old one kept.
    pub fn reload_policies(&self) -> Result<(), String> {
        let s = self.settings();
        let fresh = PolicySet::load(&s.policies.dir, &s.policies.data)?;
        *self.0.policies.write().expect("policy lock poisoned") = Arc::new(fresh);
        Ok(())
    }

    /// What the guardrails need, borrowed from the state.
    pub fn guardrail_inputs<'a>(
        &'a self,
        policies: &'a PolicySet,
    ) -> crate::usecases::assess::Inputs<'a> {
        crate::usecases::assess::Inputs {
            db: self.db(),
            renderer: self.templates().renderer(),
            pricebook: self.pricebook(),
            policies,
            cost: &self.settings().cost,
            max_attempts: self.settings().engine.max_attempts,
            notifier: self.notifier(),
            roles: &self.settings().auth.roles,
            now: self.now(),
            terraform: Some(&self.0.drivers.terraform),
        }
    }

    /// Verifies Backstage's tokens, where `backstage.base_url` is configured.
    pub fn backstage_tokens(&self) -> Option<&crate::auth::backstage::BackstageTokens> {
        self.0.backstage_tokens.as_ref()
    }

    /// How paved authenticates its calls to Backstage.
    pub fn outgoing(&self) -> &Outgoing {
        &self.0.outgoing
    }

    /// The served catalog documents (each page rebuilt only when something on it changed).
    pub fn catalog_pages(&self) -> &crate::catalog::pages::PageCache {
        &self.0.catalog_pages
    }

    /// Seals and opens credentials.
    pub fn secrets(&self) -> &SecretBox {
        &self.0.secrets
    }

    /// Queues notifications (Backstage, webhook) for background delivery.
    pub fn notifier(&self) -> &crate::notifications::Notifier {
        &self.0.notifier
    }

    /// Drivers for day-2 work (drift checks, usage); the engine has its own.
    pub fn drivers(&self) -> &Drivers {
        &self.0.drivers
    }

    pub fn terraform_state(&self) -> &crate::provisioning::terraform_state::StateService {
        &self.0.terraform_state
    }

    /// Asks Backstage's catalog to refresh a resource's entity (where Backstage is configured).
    pub fn refresh_entity(&self, entity_name: &str, resource_id: &str) {
        if let Some(r) = &self.0.refresher {
            r.refresh(
                crate::vocab::entity_ref::resource_ref(entity_name),
                resource_id.to_owned(),
            );
        }
    }

    /// Wakes an idle worker of this process: a job was just queued.
    pub fn wake_workers(&self) {
        self.0.wake.one();
    }

    pub fn secrets_verified(&self) -> bool {
        self.0.secrets_verified.load(Ordering::Acquire)
    }

    /// Checks the secrets key against the database now (a mismatch is remembered: paved stops).
    pub(crate) async fn verify_secrets(
        &self,
    ) -> Result<bool, crate::provisioning::secrets::KeyCheckError> {
        if let Some(m) = self.0.fatal.lock().expect("fatal lock poisoned").clone() {
            return Err(crate::provisioning::secrets::KeyCheckError::Mismatch(m));
        }
        let r = crate::provisioning::secrets::check_secrets_key(self.db(), self.secrets()).await;
        match &r {
            Ok(true) => self.0.secrets_verified.store(true, Ordering::Release),
            Ok(false) => {}
            Err(crate::provisioning::secrets::KeyCheckError::Mismatch(m)) => {
                *self.0.fatal.lock().expect("fatal lock poisoned") = Some(m.clone());
            }
            Err(_) => {}
        }
        r
    }

    /// Whether the schema is current, asking the database until it is (someone may run
    /// `paved migrate` meanwhile). Never creates anything, so it cannot race the migrations.
    pub(crate) async fn schema_current(&self) -> Result<bool, sea_orm::DbErr> {
        if self.schema_ready() {
            return Ok(true);
        }
        let current = db::schema_is_current(self.db()).await?;
        if current {
            self.0.schema_ready.send_replace(true);
        }
        Ok(current)
    }

    /// SIGTERM (or the test's stop) arrived: long calls answer now instead of holding the
    /// shutdown for the whole grace period.
    pub fn shutting_down(&self) -> bool {
        self.0.shutting_down.load(Ordering::Acquire)
    }

    /// Ok when paved can serve every request: not shutting down, schema current, secrets key
    /// verified, signing key loaded (when paved signs its own tokens: without it, its calls to
    /// Backstage, users' teams included, are refused) and the database answering. Templates and
    /// policies are loaded before the listener exists.
    pub async fn readiness(&self) -> Result<(), String> {
        if self.0.shutting_down.load(Ordering::Acquire) {
            return Err("paved is shutting down".into());
        }
        match self.schema_current().await {
            Ok(true) => {}
            Ok(false) => return Err("database migrations are pending".into()),
            Err(e) => {
                return Err(format!(
                    "database unavailable: {}",
                    crate::vocab::redact::redact(&e.to_string())
                ));
            }
        }
        if !self.secrets_verified() {
            // Checked here too, so readiness follows at once when the database came up.
            match self.verify_secrets().await {
                Ok(true) => {}
                Ok(false) => return Err("database migrations are pending".into()),
                Err(crate::provisioning::secrets::KeyCheckError::Mismatch(m)) => return Err(m),
                Err(e) => return Err(crate::vocab::redact::redact(&e.to_string())),
            }
        }
        if let Some(signer) = self.outgoing().signer()
            && !signer.has_key()
        {
            return Err("paved's signing key for calls to Backstage is not loaded yet".into());
        }
        match tokio::time::timeout(Duration::from_secs(2), self.db().ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "database unavailable: {}",
                crate::vocab::redact::redact(&e.to_string())
            )),
            Err(_) => Err("database did not answer within 2 s".into()),
        }
    }
}
