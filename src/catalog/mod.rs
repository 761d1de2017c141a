//! Backstage catalog vocabulary: entity references and naming rules.
//! (The catalog provider that publishes `Resource` entities lives here too once it exists.)

mod entity_ref;
pub mod provider;
pub mod refresh;

pub use entity_ref::{EntityRef, is_valid_entity_name, is_valid_namespace, is_valid_tag};
