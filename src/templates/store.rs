//! The live set of offerings, reloaded when `templates/` changes or on SIGHUP.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::{Offering, Renderer, load_dir};

/// A template that could not be loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LoadProblem {
    /// Folder of the offering, when the problem belongs to one.
    pub offering: Option<String>,
    pub message: String,
}

/// One consistent snapshot of the offerings.
#[derive(Debug, Default)]
pub struct Catalog {
    pub offerings: BTreeMap<String, Arc<Offering>>,
    pub problems: Vec<LoadProblem>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<Arc<Offering>> {
        self.offerings.get(name).cloned()
    }
}

pub struct TemplateStore {
    dir: PathBuf,
    renderer: Renderer,
    current: RwLock<Arc<Catalog>>,
    fingerprint: RwLock<u64>,
}

impl TemplateStore {
    /// Loads `dir` now. Problems are logged and kept in the snapshot, never fatal.
    pub fn open(dir: &Path) -> Self {
        let store = Self {
            dir: dir.to_owned(),
            renderer: Renderer::new(),
            current: RwLock::new(Arc::new(Catalog::default())),
            fingerprint: RwLock::new(0),
        };
        store.reload();
        store
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    pub fn snapshot(&self) -> Arc<Catalog> {
        self.current.read().expect("template lock poisoned").clone()
    }

    /// Re-reads the folder and swaps the snapshot in one step.
    pub fn reload(&self) -> Arc<Catalog> {
        let fingerprint = fingerprint(&self.dir);
        let (offerings, problems) = load_dir(&self.dir, &self.renderer);
        for p in &problems {
            tracing::warn!(offering = p.offering.as_deref().unwrap_or("-"), problem = %p.message, "template skipped");
        }
        tracing::info!(
            dir = %self.dir.display(),
            offerings = offerings.len(),
            skipped = problems.len(),
            "templates loaded"
        );
        let catalog = Arc::new(Catalog {
            offerings,
            problems,
        });
        *self.current.write().expect("template lock poisoned") = catalog.clone();
        *self.fingerprint.write().expect("template lock poisoned") = fingerprint;
        catalog
    }

    /// Reloads when anything under the folder changed since the last load.
    pub fn reload_if_changed(&self) -> bool {
        let now = fingerprint(&self.dir);
        if now == *self.fingerprint.read().expect("template lock poisoned") {
            return false;
        }
        self.reload();
        true
    }

    /// Watches the folder (polling at `interval`; 0 = off) and SIGHUP, until the task is dropped.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = (!interval.is_zero()).then(|| tokio::time::interval(interval));
        loop {
            let by_signal = tokio::select! {
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
                _ = async { match tick.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => false,
            };
            let store = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if by_signal {
                    tracing::info!("SIGHUP: reloading templates");
                    store.reload();
                } else {
                    store.reload_if_changed();
                }
            })
            .await;
        }
    }
}

/// A cheap change detector: paths, sizes and modification times of every file below `dir`.
/// The policies' watch uses it too, so both folders notice the same kinds of change.
pub fn fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut stack = vec![dir.to_owned()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) => files.push((p, m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH))),
                Err(_) => {}
            }
        }
    }
    files.sort();
    files.hash(&mut h);
    h.finish()
}
