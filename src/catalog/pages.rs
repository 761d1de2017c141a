//! Paging of paved's catalog, so a change re-serializes, and Backstage re-reads, one small page
//! instead of one document holding every resource (139 MB at 100k resources).
//!
//! `entities.yaml` (the URL users register) holds the offerings' `Template`s and one `Location`
//! entity per page. Backstage 1.55 reads a Location entity's `spec.target(s)` inline while
//! processing that Location (`runSpecialLocationStep` in catalog-backend's
//! `DefaultCatalogProcessingOrchestrator`): targets get no Location entity of their own, so the
//! only way to make Backstage re-read exactly one page is to give each page its own Location
//! entity. Each is named as Backstage names the Location of a registered URL
//! (`generated-<sha1 of "url:<target>">`, `locationSpecToMetadataName`), so
//! [`Layout::page_location_ref`] is what the refresh fallback asks Backstage to refresh.
//!
//! A resource's page comes from a stable hash of its id: the `resources.catalog_bucket` column
//! (one of [`BUCKETS`]) is stored at insert time, and page `n` is a contiguous range of buckets,
//! so a page is read with an index range scan and `catalog.pages` can change without touching
//! rows. Each bucket's entities are rendered and compressed on their own and cached per process
//! ([`gzip::Chunk`]); a page is its buckets' chunks joined, and a change re-renders only the
//! bucket it is in (about 25 resources at 100k, instead of the page's ~1,600). Changes are found
//! through the index on `resources.updated_at`. Only compressed text is held (about 1/15 of
//! it), so memory stays small with every page cached. Nothing but the database decides what a
//! page holds, so replicas serve the same bytes and ETags.

use std::{collections::HashMap, ops::Range, sync::Arc};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use serde_json::{Value, json};
use tokio::sync::Mutex;

pub use super::gzip::{Document, etag_of};
use super::{
    gzip::{Chunk, Deflater},
    provider,
    refresh::location_entity_name,
};
use crate::{config::Settings, db, templates::Catalog};

use crate::vocab::bucket::{BUCKETS, bucket_of};

/// How far behind the newest change seen a late commit may land and still be noticed: rows
/// are written with the writer's clock inside transactions, so a row can become visible after
/// a newer one. Covers commit lag and clock skew between replicas up to this much.
const LOOKBACK_SECONDS: i64 = 60;

/// Where the catalog documents live and how many pages there are.
#[derive(Clone, Debug)]
pub struct Layout {
    base_url: String,
    pages: u32,
}

impl Layout {
    /// `base_url`: paved's public URL with the plugin base path; `pages`: 1..=[`BUCKETS`].
    pub fn new(base_url: &str, pages: u32) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            pages: pages.clamp(1, BUCKETS),
        }
    }

    pub fn from_settings(settings: &Settings) -> Self {
        Self::new(
            &format!("{}{}", settings.public_url(), settings.plugin_base_path()),
            settings.catalog.pages,
        )
    }

    pub fn pages(&self) -> u32 {
        self.pages
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The document users register: Templates and the pages' Locations.
    pub fn document_url(&self) -> String {
        format!("{}/catalog/entities.yaml", self.base_url)
    }

    pub fn page_url(&self, page: u32) -> String {
        format!("{}/catalog/pages/{page}.yaml", self.base_url)
    }

    pub fn page_of_bucket(&self, bucket: i32) -> u32 {
        let b = u64::from(bucket.clamp(0, BUCKETS as i32 - 1) as u32);
        (b * u64::from(self.pages) / u64::from(BUCKETS)) as u32
    }

    /// The page that publishes this resource.
    pub fn page_of(&self, resource_id: &str) -> u32 {
        self.page_of_bucket(bucket_of(resource_id))
    }

    /// The buckets of `page`: those `b` with `b * pages / BUCKETS == page`.
    pub fn buckets(&self, page: u32) -> Range<i32> {
        let start = |p: u32| (u64::from(p) * u64::from(BUCKETS)).div_ceil(u64::from(self.pages));
        start(page) as i32..start(page + 1) as i32
    }

    /// The entity ref of the Location entity that reads `page`.
    pub fn page_location_ref(&self, page: u32) -> String {
        format!(
            "location:default/{}",
            location_entity_name(&self.page_url(page))
        )
    }

    fn page_location(&self, page: u32) -> Value {
        json!({
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Location",
            "metadata": {
                "name": location_entity_name(&self.page_url(page)),
                "title": format!("paved catalog page {page} (of pages 0-{})", self.pages - 1),
                "description": "Resources paved provisioned whose id hashes to this page; one page is re-read when one of them changes.",
                "annotations": {"paved.dev/catalog-page": page.to_string()},
            },
            "spec": {"type": "url", "target": self.page_url(page)},
        })
    }

    /// `entities.yaml`: the offerings' Templates, then one Location per page.
    pub fn index_document(&self, templates: &Catalog) -> String {
        let mut out = String::new();
        for o in templates.offerings.values() {
            provider::push_yaml(&mut out, &o.template);
        }
        for p in 0..self.pages {
            provider::push_yaml(&mut out, &self.page_location(p));
        }
        out
    }
}

/// What this process has seen change, to tell which buckets are stale.
struct Watch {
    started: bool,
    /// The newest `updated_at` seen.
    newest: Option<DateTime<Utc>>,
    /// Rows seen within the lookback window, with the `updated_at` seen.
    recent: HashMap<String, DateTime<Utc>>,
    /// Per bucket: how many changes were seen in it since this process started.
    changes: Vec<u64>,
}

/// A bucket's rendered entities and the change count they were rendered at.
struct Built {
    changes: u64,
    chunk: Arc<Chunk>,
}

/// The per-process cache of the index document and the pages' buckets.
pub struct PageCache {
    layout: Layout,
    watch: Mutex<Watch>,
    /// Per page: its buckets, in order.
    pages: Vec<Mutex<Vec<Option<Built>>>>,
    index: Mutex<Option<(String, Document)>>,
}

impl PageCache {
    pub fn new(layout: Layout) -> Self {
        let n = layout.pages();
        Self {
            watch: Mutex::new(Watch {
                started: false,
                newest: None,
                recent: HashMap::new(),
                changes: vec![0; BUCKETS as usize],
            }),
            pages: (0..n)
                .map(|p| Mutex::new(layout.buckets(p).map(|_| None).collect()))
                .collect(),
            index: Mutex::new(None),
            layout,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The index document, rebuilt when the offerings' versions change.
    pub async fn index(&self, templates: &Catalog) -> Document {
        let versions = templates
            .offerings
            .iter()
            .map(|(name, o)| format!("{name}@{}", o.version))
            .collect::<Vec<_>>()
            .join(",");
        let mut slot = self.index.lock().await;
        match &*slot {
            Some((built_from, doc)) if *built_from == versions => doc.clone(),
            _ => {
                let doc = Document::whole(&self.layout.index_document(templates));
                *slot = Some((versions, doc.clone()));
                doc
            }
        }
    }

    /// Page `page`: its buckets' entities, each bucket re-rendered only when a resource in it
    /// changed since it was last rendered. `None` for a page number outside `0..pages`.
    pub async fn page<C: ConnectionTrait>(
        &self,
        db: &C,
        page: u32,
    ) -> Result<Option<Document>, DbErr> {
        let Some(slot) = self.pages.get(page as usize) else {
            return Ok(None);
        };
        let buckets = self.layout.buckets(page);
        let changes = self.watch(db, buckets.clone()).await?;
        let mut slot = slot.lock().await;
        let stale: Vec<i32> = buckets
            .clone()
            .zip(slot.iter().zip(&changes))
            .filter(|(_, (built, n))| built.as_ref().is_none_or(|b| b.changes != **n))
            .map(|(b, _)| b)
            .collect();
        if !stale.is_empty() {
            // Read after the change counts were taken: the text holds at least those changes.
            let entries = if stale.len() == buckets.len() {
                db::catalog::entries_in_buckets(db, buckets.clone()).await?
            } else {
                db::catalog::entries_of_buckets(db, &stale).await?
            };
            let mut entries = entries.iter().peekable();
            let mut deflater = Deflater::default();
            let mut text = String::new();
            for b in stale {
                text.clear();
                // Entries come by bucket, and only from these buckets.
                while let Some(e) = entries.next_if(|e| e.catalog_bucket <= b) {
                    provider::push_resource_entities(&mut text, e, self.layout.base_url());
                }
                let i = (b - buckets.start) as usize;
                slot[i] = Some(Built {
                    changes: changes[i],
                    chunk: Arc::new(deflater.chunk(text.as_bytes())),
                });
            }
        }
        let chunks = slot
            .iter()
            .map(|b| b.as_ref().expect("every bucket built above").chunk.clone())
            .collect();
        Ok(Some(Document::of_chunks(chunks)))
    }

    /// One live resource's entities (with its parts, for a composite), built on each call
    /// (`catalog:register` points at it; it is read rarely). `None` when it is deleted or
    /// absent.
    pub async fn resource<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<Document>, DbErr> {
        let Some(e) = db::catalog::entry(db, id).await? else {
            return Ok(None);
        };
        let mut text = String::new();
        provider::push_resource_entities(&mut text, &e, self.layout.base_url());
        Ok(Some(Document::whole(&text)))
    }

    /// Reads the rows changed since the newest change seen (minus the lookback window), counts
    /// a change on the bucket of each row not seen in that state yet, and returns the counts of
    /// `buckets`.
    async fn watch<C: ConnectionTrait>(
        &self,
        db: &C,
        buckets: Range<i32>,
    ) -> Result<Vec<u64>, DbErr> {
        let mut w = self.watch.lock().await;
        let since = match w.newest {
            Some(n) => Some(n),
            // Nothing seen yet: start at the newest row, without reading every row.
            None => db::catalog::newest_change(db).await?,
        };
        let rows = match since {
            None => Vec::new(),
            Some(since) => {
                db::catalog::changed_since(db, since - Duration::seconds(LOOKBACK_SECONDS)).await?
            }
        };
        // Before the first build every bucket is stale anyway: only remember what was seen.
        let count = w.started;
        for db::catalog::Change {
            id,
            bucket,
            updated_at: at,
        } in rows
        {
            if w.recent.get(&id) != Some(&at) {
                if count {
                    w.changes[bucket.clamp(0, BUCKETS as i32 - 1) as usize] += 1;
                }
                w.recent.insert(id, at);
            }
            if w.newest.is_none_or(|n| at > n) {
                w.newest = Some(at);
            }
        }
        w.started = true;
        if let Some(n) = w.newest {
            let horizon = n - Duration::seconds(LOOKBACK_SECONDS);
            w.recent.retain(|_, at| *at >= horizon);
        }
        Ok(w.changes[buckets.start as usize..buckets.end as usize].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_contiguous_bucket_ranges_covering_every_bucket_once() {
        for pages in [1, 2, 3, 7, 64, 100, 4095, 4096] {
            let l = Layout::new("http://x/api/paved", pages);
            let mut next = 0;
            for p in 0..pages {
                let r = l.buckets(p);
                assert_eq!(r.start, next, "pages={pages} page={p}");
                assert!(r.end > r.start, "pages={pages} page={p} is not empty");
                for b in r.clone() {
                    assert_eq!(l.page_of_bucket(b), p, "pages={pages} bucket={b}");
                }
                next = r.end;
            }
            assert_eq!(next, BUCKETS as i32, "pages={pages}");
        }
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket_of("r1"), bucket_of("r1"));
        let l = Layout::new("http://x", 64);
        let mut per_page = vec![0u32; 64];
        for i in 0..64_000 {
            per_page[l.page_of(&format!("resource-{i}")) as usize] += 1;
        }
        // 1000 expected per page; a stable hash keeps every page well within 2x of it.
        assert!(
            per_page.iter().all(|&c| (500..2000).contains(&c)),
            "{per_page:?}"
        );
    }

    #[tokio::test]
    async fn a_resource_document_shows_its_drift_and_is_gone_once_deleted() {
        use crate::db::entities::{drift_state::DriftStatus, resource};
        use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};

        let t = crate::usecases::testkit::db().await;
        let cache = PageCache::new(Layout::new("http://x/api/paved", 4));
        assert!(cache.resource(&t.db, "r1").await.unwrap().is_none());
        let res = crate::usecases::testkit::resource(&t.db, "r1", "dev").await;
        let doc = cache.resource(&t.db, "r1").await.unwrap().unwrap();
        let text = doc.identity().unwrap();
        let body = std::str::from_utf8(&text).unwrap().to_owned();
        assert!(body.contains("name: db-r1"), "{body}");
        assert!(!body.contains("paved.dev/drift"), "never checked: {body}");
        assert_eq!(doc.etag, etag_of(&body));

        crate::db::drift::set_state(&t.db, "r1", DriftStatus::Detected, Utc::now())
            .await
            .unwrap();
        let doc = cache.resource(&t.db, "r1").await.unwrap().unwrap();
        let text = doc.identity().unwrap();
        let body = std::str::from_utf8(&text).unwrap();
        assert!(body.contains("paved.dev/drift: detected"), "{body}");

        let mut gone: resource::ActiveModel = res.into_active_model();
        gone.deleted_at = Set(Some(Utc::now()));
        gone.update(&t.db).await.unwrap();
        assert!(cache.resource(&t.db, "r1").await.unwrap().is_none());
    }

    #[test]
    fn page_locations_are_named_as_backstage_names_a_url_location() {
        let l = Layout::new("http://127.0.0.1:7177/api/paved/", 64);
        assert_eq!(
            l.page_url(3),
            "http://127.0.0.1:7177/api/paved/catalog/pages/3.yaml"
        );
        assert_eq!(
            l.page_location_ref(3),
            super::super::refresh::location_entity_ref(&l.page_url(3))
        );
    }
}
