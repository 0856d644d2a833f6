//! One module per area of outside input.

pub mod auth;
pub mod catalogue;
pub mod decision;
pub mod etcd;
pub mod request;
pub mod responses;
pub mod sse_stream;
pub mod upstream_error;

use std::sync::OnceLock;

use codex_openai_wrapper::core::catalogue::Catalogue;
use codex_openai_wrapper::core::catalogue::settings::ModelSettings;

/// The model settings of an unconfigured filter, built once for every target.
pub(crate) fn models() -> &'static ModelSettings {
    static MODELS: OnceLock<ModelSettings> = OnceLock::new();
    MODELS.get_or_init(ModelSettings::default)
}

/// The built-in catalogue, parsed once for every target.
pub(crate) fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(Catalogue::builtin)
}
