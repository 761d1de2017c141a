//! Where the engine says what it published or removed. Backstage's catalog, in production
//! (`catalog::refresh::Refresher`); the engine knows no entity refs, pages or Backstage calls.

pub trait CatalogSink: Send + Sync {
    /// Resource `resource_id` (named `resource_name`) was created or changed.
    fn published(&self, resource_name: &str, resource_id: &str);
    /// Resource `resource_id` and its parts (`part_ids`) are gone.
    fn removed(&self, resource_name: &str, resource_id: &str, part_ids: &[&str]);
}
