//! One catalogue entry: the fields of the backend's model object that the filter reads. The
//! rest (prompt texts, plans) stays with the backend's own clients.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::core::reasoning::Effort;

/// Whether `/v1/models` lists the model; hidden ones still serve when asked for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    List,
    Hide,
}

/// A model as the catalogue describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    pub slug: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: Visibility,
    pub priority: i64,
    pub default_effort: Option<Effort>,
    /// In the catalogue's order (weakest first); efforts this filter does not know are left
    /// out.
    pub supported_efforts: Vec<Effort>,
    pub context_window: Option<u64>,
    pub max_context_window: Option<u64>,
    pub minimal_client_version: Option<String>,
    /// Sent in the lite request shape, with the lite header.
    pub lite: bool,
    pub supports_verbosity: bool,
    pub default_verbosity: Option<String>,
    pub supports_parallel_tool_calls: bool,
    /// The `service_tiers[].id`s (`priority`, …).
    pub service_tiers: Vec<String>,
    pub default_service_tier: Option<String>,
    /// Client-facing names of speed tiers (`fast`).
    pub speed_tiers: Vec<String>,
    /// The entry's [`CODEX_FIELDS`] as the catalogue gave them, for the Codex-shaped
    /// `/v1/models` answer (see `listing`).
    pub codex_fields: Map<String, Value>,
}

/// The fields of a catalogue entry the filter keeps: what the request rules read plus what a
/// Codex CLI needs to accept the entry from `/v1/models?client_version=`. The prompt texts
/// (`model_messages`, tens of kilobytes per model) are left out. `tools/slim_catalogue.py`
/// reads this list when it writes the built-in copy.
pub const CODEX_FIELDS: &[&str] = &[
    "slug",
    "display_name",
    "description",
    "visibility",
    "priority",
    "default_reasoning_level",
    "supported_reasoning_levels",
    "default_reasoning_summary",
    "supports_reasoning_summaries",
    "supports_reasoning_summary_parameter",
    "context_window",
    "max_context_window",
    "minimal_client_version",
    "use_responses_lite",
    "support_verbosity",
    "default_verbosity",
    "supports_parallel_tool_calls",
    "input_modalities",
    "default_service_tier",
    "service_tiers",
    "additional_speed_tiers",
    "shell_type",
    "supported_in_api",
    "truncation_policy",
    "apply_patch_tool_type",
    "web_search_tool_type",
    "supports_search_tool",
    "supports_image_detail_original",
];

#[derive(Deserialize)]
struct Raw {
    slug: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    visibility: Option<String>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    default_reasoning_level: Option<String>,
    #[serde(default)]
    supported_reasoning_levels: Option<Vec<Level>>,
    #[serde(default)]
    context_window: Option<u64>,
    #[serde(default)]
    max_context_window: Option<u64>,
    #[serde(default)]
    minimal_client_version: Option<String>,
    #[serde(default)]
    use_responses_lite: Option<bool>,
    #[serde(default)]
    support_verbosity: Option<bool>,
    #[serde(default)]
    default_verbosity: Option<String>,
    #[serde(default)]
    supports_parallel_tool_calls: Option<bool>,
    #[serde(default)]
    service_tiers: Option<Vec<Tier>>,
    #[serde(default)]
    default_service_tier: Option<String>,
    #[serde(default)]
    additional_speed_tiers: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Level {
    effort: String,
}

#[derive(Deserialize)]
struct Tier {
    id: String,
}

impl ModelEntry {
    /// `None` when the entry has no slug or a field of the wrong type.
    pub fn parse(json: &str) -> Option<Self> {
        let raw: Raw = serde_json::from_str(json).ok()?;
        let mut codex_fields: Map<String, Value> = serde_json::from_str(json).ok()?;
        codex_fields.retain(|key, _| CODEX_FIELDS.contains(&key.as_str()));
        let slug = raw.slug.trim().to_string();
        if slug.is_empty() {
            return None;
        }
        Some(Self {
            slug,
            display_name: raw.display_name,
            description: raw.description,
            visibility: match raw.visibility.as_deref() {
                Some("list") => Visibility::List,
                _ => Visibility::Hide,
            },
            priority: raw.priority.unwrap_or(i64::MAX),
            default_effort: raw.default_reasoning_level.as_deref().and_then(Effort::parse),
            supported_efforts: raw
                .supported_reasoning_levels
                .unwrap_or_default()
                .iter()
                .filter_map(|l| Effort::parse(&l.effort))
                .collect(),
            context_window: raw.context_window,
            max_context_window: raw.max_context_window,
            minimal_client_version: raw.minimal_client_version,
            lite: raw.use_responses_lite.unwrap_or(false),
            supports_verbosity: raw.support_verbosity.unwrap_or(false),
            default_verbosity: raw.default_verbosity,
            supports_parallel_tool_calls: raw.supports_parallel_tool_calls.unwrap_or(false),
            service_tiers: raw
                .service_tiers
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.id)
                .collect(),
            default_service_tier: raw.default_service_tier,
            speed_tiers: raw.additional_speed_tiers.unwrap_or_default(),
            codex_fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_the_rules_need() {
        let entry = ModelEntry::parse(
            r#"{"slug":" gpt-x ","visibility":"list","priority":3,"default_reasoning_level":"medium",
               "supported_reasoning_levels":[{"effort":"low"},{"effort":"hyper"},{"effort":"ultra"}],
               "use_responses_lite":true,"service_tiers":[{"id":"priority","name":"Fast"}],
               "additional_speed_tiers":["fast"],"default_verbosity":"low","future_field":{"a":1}}"#,
        );
        let entry = entry.unwrap_or_else(|| panic!("entry did not parse"));
        assert_eq!(entry.slug, "gpt-x");
        assert_eq!(entry.visibility, Visibility::List);
        assert_eq!(entry.default_effort, Some(Effort::Medium));
        assert_eq!(entry.supported_efforts, [Effort::Low, Effort::Ultra]);
        assert!(entry.lite);
        assert_eq!(entry.service_tiers, ["priority"]);
        assert_eq!(entry.speed_tiers, ["fast"]);
        let bare = ModelEntry::parse(r#"{"slug":"m"}"#).unwrap_or_else(|| panic!("bare entry"));
        assert_eq!(
            (bare.visibility, bare.priority, bare.lite),
            (Visibility::Hide, i64::MAX, false)
        );
        assert!(bare.codex_fields.contains_key("slug"));
        assert!(!entry.codex_fields.contains_key("future_field"));
        assert!(ModelEntry::parse(r#"{"slug":"  "}"#).is_none());
        assert!(ModelEntry::parse(r#"{"slug":"m","priority":"high"}"#).is_none());
    }
}
