//! The `/v1/models` answers: the OpenAI list (`GET /v1/models`, `GET /v1/models/{id}`) and,
//! for Codex CLI (`GET /v1/models?client_version=…`, what it asks a custom provider), the
//! Codex catalogue shape `{"models": [...]}`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::core::catalogue::settings::ModelSettings;
use crate::core::catalogue::{Catalogue, ModelEntry};

const OWNED_BY: &str = "openai-codex";

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

/// An OpenAI model object, with the catalogue's name, description and context window as
/// extra fields when the catalogue knows the model.
#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_window: Option<u64>,
}

impl<'a> ModelObject<'a> {
    fn new(id: &'a str, entry: Option<&'a ModelEntry>, created: u64) -> Self {
        Self {
            id,
            object: "model",
            created,
            owned_by: OWNED_BY,
            display_name: entry.and_then(|e| e.display_name.as_deref()),
            description: entry.and_then(|e| e.description.as_deref()),
            context_window: entry.and_then(|e| e.context_window),
        }
    }
}

/// `GET /v1/models`: `EXPOSE_MODELS` when set, else the listed entries in priority order.
pub fn list_body(catalogue: &Catalogue, settings: &ModelSettings, created: u64) -> Vec<u8> {
    let data: Vec<ModelObject> = match &settings.exposed {
        Some(ids) => ids
            .iter()
            .map(|id| ModelObject::new(id, catalogue.find(id), created))
            .collect(),
        None => catalogue
            .listed()
            .map(|e| ModelObject::new(&e.slug, Some(e), created))
            .collect(),
    };
    serde_json::to_vec(&ModelList { object: "list", data }).unwrap_or_default()
}

/// `GET /v1/models/{id}`: an exposed id, or any catalogue entry (hidden ones too: they serve
/// when asked for by name).
pub fn model_body(
    catalogue: &Catalogue,
    settings: &ModelSettings,
    id: &str,
    created: u64,
) -> Option<Vec<u8>> {
    let entry = catalogue.find(id);
    let exposed = settings
        .exposed
        .as_ref()
        .is_some_and(|ids| ids.iter().any(|m| m == id));
    if entry.is_none() && !exposed {
        return None;
    }
    serde_json::to_vec(&ModelObject::new(id, entry, created)).ok()
}

/// `GET /v1/models?client_version=…`: the account's catalogue exactly as the backend gave it
/// (`raw`, prompt texts included, which Codex CLI takes instead of its bundled ones) when one
/// was fetched and `EXPOSE_MODELS` does not narrow the list; else [`codex_body`].
pub fn codex_answer(raw: Option<Vec<u8>>, catalogue: &Catalogue, settings: &ModelSettings) -> Vec<u8> {
    match raw {
        Some(raw) if settings.exposed.is_none() => raw,
        _ => codex_body(catalogue, settings),
    }
}

/// `GET /v1/models?client_version=…` without the backend's answer: every entry in the Codex catalogue shape, each with the
/// fields Codex CLI requires (the catalogue's values, else neutral defaults). With
/// `EXPOSE_MODELS`, the exposed ids in their order, all listed. The prompt texts are not
/// kept, so Codex CLI uses its own.
pub fn codex_body(catalogue: &Catalogue, settings: &ModelSettings) -> Vec<u8> {
    let models: Vec<Value> = match &settings.exposed {
        Some(ids) => ids
            .iter()
            .enumerate()
            .map(|(position, id)| {
                let mut fields = catalogue
                    .find(id)
                    .map(|e| e.codex_fields.clone())
                    .unwrap_or_default();
                fields.insert("slug".into(), Value::from(id.as_str()));
                fields.insert("visibility".into(), Value::from("list"));
                fields.insert("priority".into(), Value::from(position.saturating_add(1)));
                codex_entry(fields)
            })
            .collect(),
        None => catalogue
            .entries
            .iter()
            .map(|e| codex_entry(e.codex_fields.clone()))
            .collect(),
    };
    serde_json::to_vec(&json!({ "models": models })).unwrap_or_default()
}

/// The fields Codex CLI's `ModelInfo` cannot do without (no serde default there), with the
/// value used when an entry lacks them.
fn required_defaults(slug: &str) -> [(&'static str, Value); 12] {
    [
        ("display_name", Value::from(slug)),
        ("supported_reasoning_levels", json!([])),
        ("shell_type", Value::from("shell_command")),
        ("visibility", Value::from("hide")),
        ("supported_in_api", Value::from(true)),
        ("priority", Value::from(i32::MAX)),
        ("base_instructions", Value::from("")),
        ("supports_reasoning_summaries", Value::from(false)),
        ("support_verbosity", Value::from(false)),
        ("truncation_policy", json!({"mode": "bytes", "limit": 10000})),
        ("supports_parallel_tool_calls", Value::from(false)),
        ("experimental_supported_tools", json!([])),
    ]
}

fn codex_entry(mut fields: Map<String, Value>) -> Value {
    let slug = fields
        .get("slug")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    for (name, value) in required_defaults(&slug) {
        if fields.get(name).is_none_or(Value::is_null) {
            fields.insert(name.to_string(), value);
        }
    }
    // Codex reads `priority` as a 32-bit number.
    if let Some(priority) = fields.get("priority").and_then(Value::as_i64) {
        let clamped = priority.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
        fields.insert("priority".into(), Value::from(clamped));
    }
    // Each effort and tier needs its description (and a tier its name) as a string.
    for (list, needed) in [
        ("supported_reasoning_levels", &["description"][..]),
        ("service_tiers", &["name", "description"][..]),
    ] {
        if let Some(Value::Array(items)) = fields.get_mut(list) {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                for name in needed {
                    if !item.get(*name).is_some_and(Value::is_string) {
                        item.insert((*name).to_string(), Value::from(""));
                    }
                }
            }
        }
    }
    Value::Object(fields)
}

#[cfg(test)]
#[path = "listing_tests.rs"]
mod tests;
