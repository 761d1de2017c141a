//! Backstage catalog vocabulary (entity references and naming rules), the catalog provider
//! that publishes `Resource` entities, catalog refresh, and registering paved's location.

pub mod feed;
pub mod gzip;
pub mod pages;
pub mod provider;
pub mod refresh;
pub mod register;

use crate::config::Settings;

/// The URL of paved's catalog document (the templates and the pages' locations), as
/// Backstage reads it and users register it.
pub fn document_url(settings: &Settings) -> String {
    pages::Layout::from_settings(settings).document_url()
}
