//! The Codex model catalogue: which models the account may use, in which order, and the
//! per-model facts the request rules read (efforts, service tiers, the lite request shape,
//! verbosity). It comes from `GET <codex base>/models` once a token is usable, and from the
//! built-in copy (`builtin.json`, written by `tools/slim_catalogue.py` from a Codex CLI
//! release's bundled list) before that, when the fetch fails, and in API-key modes.

pub mod aliases;
pub mod entry;
pub mod listing;
pub mod record;
pub mod refresh;
pub mod rules;
pub mod settings;

use serde::Deserialize;
use serde_json::value::RawValue;

pub use entry::{ModelEntry, Visibility};

/// A catalogue answer larger than this is refused (the real one is about 0.5 MB, mostly
/// prompt texts the filter does not keep).
pub const MAX_CATALOGUE_BYTES: usize = 4 * 1024 * 1024;
/// Entries past this many are ignored; today's catalogue has a dozen.
pub const MAX_ENTRIES: usize = 256;

const BUILTIN: &str = include_str!("builtin.json");

/// The parsed catalogue, entries in priority order (lowest `priority` first, then slug).
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    pub entries: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow)]
    models: Vec<&'a RawValue>,
}

/// Why a catalogue answer was not used (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogueError {
    TooLarge,
    /// Not `{"models": [...]}`.
    NotACatalogue(String),
    /// `models` held no entry the filter could read.
    Empty,
}

impl std::fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge => write!(f, "larger than {MAX_CATALOGUE_BYTES} bytes"),
            Self::NotACatalogue(why) => write!(f, "not a model catalogue: {why}"),
            Self::Empty => write!(f, "no usable model entry"),
        }
    }
}

impl Catalogue {
    /// Reads a `{"models": [...]}` document. An entry the filter cannot read (no slug, a field
    /// of the wrong type) is skipped rather than losing the whole catalogue, since the backend
    /// adds fields every few weeks.
    pub fn parse(body: &[u8]) -> Result<Self, CatalogueError> {
        if body.len() > MAX_CATALOGUE_BYTES {
            return Err(CatalogueError::TooLarge);
        }
        let document: Document =
            serde_json::from_slice(body).map_err(|e| CatalogueError::NotACatalogue(e.to_string()))?;
        let mut entries: Vec<ModelEntry> = Vec::new();
        for entry in document
            .models
            .iter()
            .take(MAX_ENTRIES)
            .filter_map(|raw| ModelEntry::parse(raw.get()))
        {
            // A slug names one model: a second entry for it would make `find` and the listing
            // disagree about which one serves, so the backend's first stands.
            if !entries.iter().any(|e| e.slug == entry.slug) {
                entries.push(entry);
            }
        }
        if entries.is_empty() {
            return Err(CatalogueError::Empty);
        }
        entries.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.slug.cmp(&b.slug)));
        Ok(Self { entries })
    }

    /// The copy compiled into the module. A unit test checks that it parses, so the fallback
    /// here (an empty catalogue) never serves.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN.as_bytes()).unwrap_or(Self { entries: Vec::new() })
    }

    /// The entry for `slug` (exact, as the backend spells it), listed or hidden.
    pub fn find(&self, slug: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.slug == slug)
    }

    /// The entries `/v1/models` lists, in priority order.
    pub fn listed(&self) -> impl Iterator<Item = &ModelEntry> {
        self.entries.iter().filter(|e| e.visibility == Visibility::List)
    }

    /// The model for a request that names none: the first listed entry, as the official
    /// client picks it.
    pub fn default_slug(&self) -> Option<&str> {
        self.listed().next().map(|e| e.slug.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::reasoning::Effort;

    #[test]
    fn the_builtin_catalogue_is_todays() {
        let cat = Catalogue::builtin();
        let listed: Vec<&str> = cat.listed().map(|e| e.slug.as_str()).collect();
        assert_eq!(
            listed,
            [
                "gpt-6.1-sol",
                "gpt-6-astra",
                "gpt-6-sol",
                "gpt-6-luna",
                "gpt-5.6-sol",
                "gpt-6.1-terra",
                "gpt-5.6-terra",
                "gpt-5.6-luna",
                "gpt-5.5"
            ]
        );
        assert_eq!(cat.default_slug(), Some("gpt-6.1-sol"));
        let hidden = cat.find("codex-auto-review").map(|e| e.visibility);
        assert_eq!(hidden, Some(Visibility::Hide));
        let luna = cat.find("gpt-6-luna").map(|e| e.supported_efforts.clone());
        assert_eq!(
            luna,
            Some(vec![
                Effort::Low,
                Effort::Medium,
                Effort::High,
                Effort::Xhigh,
                Effort::Max
            ])
        );
        assert!(cat.find("gpt-5.2").is_none() && cat.find("gpt-5.4").is_none());
    }

    #[test]
    fn odd_entries_are_skipped_and_bad_documents_refused() {
        let body = br#"{"models":[{"slug":"b","priority":2},{"priority":"x"},{"slug":"a","priority":2,"visibility":"list"},7,{"slug":"a","priority":1}]}"#;
        let cat = Catalogue::parse(body).unwrap_or_else(|e| panic!("{e}"));
        let slugs: Vec<&str> = cat.entries.iter().map(|e| e.slug.as_str()).collect();
        assert_eq!(slugs, ["a", "b"]);
        assert_eq!(cat.default_slug(), Some("a"));
        assert!(matches!(
            Catalogue::parse(b"[]"),
            Err(CatalogueError::NotACatalogue(_))
        ));
        assert_eq!(Catalogue::parse(br#"{"models":[]}"#), Err(CatalogueError::Empty));
        let huge = vec![b' '; MAX_CATALOGUE_BYTES + 1];
        assert_eq!(Catalogue::parse(&huge), Err(CatalogueError::TooLarge));
    }
}
