//! Model ids: the list `/v1/models` shows, retired ids that old client configurations still
//! send, and the effort suffixes (`gpt-5.5-high`, `gpt-5.5_low`, `gpt-5.5:xhigh`).

use serde::Serialize;

use crate::core::config::values::ConfigError;
use crate::core::reasoning::Effort;

/// The Codex catalogue's listed models (2026-08).
pub const DEFAULT_MODELS: &[&str] = &[
    "gpt-5.6-sol",
    "gpt-5.6-terra",
    "gpt-5.6-luna",
    "gpt-5.5",
    "gpt-5.2",
];
/// Where a missing model and the retired general-purpose ids go.
pub const DEFAULT_MODEL: &str = "gpt-5.5";

/// Retired ids (lower-case) → the current model that replaces them.
const ALIASES: &[(&str, &str)] = &[
    ("gpt5", DEFAULT_MODEL),
    ("gpt-5", DEFAULT_MODEL),
    ("gpt-5-latest", DEFAULT_MODEL),
    ("gpt5-codex", DEFAULT_MODEL),
    ("gpt-5-codex", DEFAULT_MODEL),
    ("gpt-5-codex-latest", DEFAULT_MODEL),
    ("gpt-5-codex-mini", DEFAULT_MODEL),
    ("codex", DEFAULT_MODEL),
    ("codex-mini", DEFAULT_MODEL),
    ("codex-mini-latest", DEFAULT_MODEL),
    ("gpt-5.1", DEFAULT_MODEL),
    ("gpt-5.1-codex", DEFAULT_MODEL),
    ("gpt-5.1-codex-max", DEFAULT_MODEL),
    ("gpt-5.1-codex-mini", DEFAULT_MODEL),
    ("gpt-5.2-codex", "gpt-5.2"),
    ("gpt-5.3-codex", DEFAULT_MODEL),
];

/// The models `/v1/models` lists (`EXPOSE_MODELS`, else [`DEFAULT_MODELS`]) and how a
/// requested id becomes the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCatalog {
    pub exposed: Vec<String>,
    /// `DEBUG_MODEL`: every request goes to this model.
    pub forced: Option<String>,
}

/// A requested model resolved for the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub id: String,
    pub suffix_effort: Option<Effort>,
}

impl ModelCatalog {
    /// `expose_models` is a JSON array or a comma/space-separated list; `Err` names
    /// `EXPOSE_MODELS` when the array is malformed or holds non-strings.
    pub fn new(expose_models: Option<&str>, forced: Option<String>) -> Result<Self, ConfigError> {
        let exposed = match expose_models {
            Some(raw) => parse_model_list(raw)?,
            None => DEFAULT_MODELS.iter().map(|m| m.to_string()).collect(),
        };
        Ok(Self {
            exposed,
            forced: forced.map(|m| m.trim().to_string()),
        })
    }

    /// The upstream model for a request: its effort suffix split off, a retired id mapped to its
    /// replacement, [`DEFAULT_MODEL`] when missing. Ids not listed still pass: the list is only
    /// what `/v1/models` shows.
    pub fn resolve(&self, requested: Option<&str>) -> ResolvedModel {
        let requested = requested.map(str::trim).filter(|m| !m.is_empty());
        let (base, suffix_effort) = match requested {
            Some(name) => split_effort_suffix(name),
            None => (DEFAULT_MODEL, None),
        };
        let id = match &self.forced {
            Some(forced) => forced.clone(),
            None => canonical(base),
        };
        ResolvedModel { id, suffix_effort }
    }

    /// The `/v1/models` list body.
    pub fn list_body(&self, created: u64) -> Vec<u8> {
        let data: Vec<ModelObject> = self
            .exposed
            .iter()
            .map(|id| ModelObject::new(id, created))
            .collect();
        serde_json::to_vec(&ModelList { object: "list", data }).unwrap_or_default()
    }

    /// `/v1/models/{id}`: exposed ids only.
    pub fn model_body(&self, id: &str, created: u64) -> Option<Vec<u8>> {
        self.exposed
            .iter()
            .find(|m| m.as_str() == id)
            .and_then(|m| serde_json::to_vec(&ModelObject::new(m, created)).ok())
    }
}

fn canonical(base: &str) -> String {
    let lower = base.to_ascii_lowercase();
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or(lower, |(_, target)| target.to_string())
}

/// `gpt-5.5-high` → (`gpt-5.5`, high). `-`, `_` and `:` all separate an effort suffix.
fn split_effort_suffix(name: &str) -> (&str, Option<Effort>) {
    match name.rfind(['-', '_', ':']) {
        Some(at) => {
            let (base, suffix) = name.split_at(at);
            match suffix.get(1..).and_then(Effort::parse) {
                // `gpt-5.5 -high`: the space is not part of the model's name.
                Some(effort) if !base.trim_end().is_empty() => (base.trim_end(), Some(effort)),
                _ => (name, None),
            }
        }
        None => (name, None),
    }
}

fn parse_model_list(raw: &str) -> Result<Vec<String>, ConfigError> {
    let trimmed = raw.trim();
    let ids: Vec<String> = if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(trimmed).map_err(|_| {
            ConfigError::new(
                "EXPOSE_MODELS",
                "is not a valid JSON array; use [\"a\",\"b\"] or a comma-separated list",
            )
        })?;
        values
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s.trim().to_string()),
                _ => Err(ConfigError::new(
                    "EXPOSE_MODELS",
                    "a JSON array must contain only strings",
                )),
            })
            .collect::<Result<_, _>>()?
    } else {
        trimmed
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(|s| s.trim_matches(['"', '\'']).to_string())
            .collect()
    };
    Ok(ids.into_iter().filter(|s| !s.is_empty()).collect())
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

impl<'a> ModelObject<'a> {
    fn new(id: &'a str, created: u64) -> Self {
        Self {
            id,
            object: "model",
            created,
            owned_by: "openai-codex",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> ModelCatalog {
        ModelCatalog::new(None, None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn resolves_aliases_suffixes_and_defaults() {
        let cases: &[(Option<&str>, &str, Option<Effort>)] = &[
            (None, "gpt-5.5", None),
            (Some("  "), "gpt-5.5", None),
            (Some("gpt-5.5"), "gpt-5.5", None),
            (Some("gpt-5.5-high"), "gpt-5.5", Some(Effort::High)),
            (Some("gpt-5.6-sol_xhigh"), "gpt-5.6-sol", Some(Effort::Xhigh)),
            (Some("gpt-5.6-luna:none"), "gpt-5.6-luna", Some(Effort::None)),
            (Some("GPT-5-Codex-LOW"), "gpt-5.5", Some(Effort::Low)),
            (Some("gpt5_minimal"), "gpt-5.5", Some(Effort::Minimal)),
            (Some("gpt-5.2-codex"), "gpt-5.2", None),
            (Some("gpt-5.4-mini"), "gpt-5.4-mini", None),
            (Some("high"), "high", None),
        ];
        for (requested, id, effort) in cases {
            let got = catalog().resolve(*requested);
            assert_eq!(
                (got.id.as_str(), got.suffix_effort),
                (*id, *effort),
                "{requested:?}"
            );
        }
    }

    #[test]
    fn a_space_before_the_effort_suffix_is_not_part_of_the_name() {
        let cat = ModelCatalog::new(None, None).unwrap_or_else(|e| panic!("{e}"));
        let got = cat.resolve(Some("GPT-5.5 -high"));
        assert_eq!(
            (got.id.as_str(), got.suffix_effort),
            ("gpt-5.5", Some(Effort::High))
        );
        for (name, id) in [
            ("gpt-5.6-solBearer -minimal", "gpt-5.6-solbearer"),
            ("odd model :low", "odd model"),
        ] {
            assert_eq!(cat.resolve(Some(name)).id, id, "{name}");
        }
    }

    #[test]
    fn debug_model_forces_the_id_but_keeps_the_suffix_effort() {
        let cat = ModelCatalog::new(None, Some(" gpt-5.2 ".into())).unwrap_or_else(|e| panic!("{e}"));
        let got = cat.resolve(Some("gpt-5.5-high"));
        assert_eq!(
            (got.id.as_str(), got.suffix_effort),
            ("gpt-5.2", Some(Effort::High))
        );
    }

    #[test]
    fn expose_models_accepts_json_and_csv() {
        for (raw, expected) in [
            (r#"["a", " b ", ""]"#, vec!["a", "b"]),
            ("a, b  c,,", vec!["a", "b", "c"]),
            ("\"a,b\"", vec!["a", "b"]),
        ] {
            let cat = ModelCatalog::new(Some(raw), None).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cat.exposed, expected, "{raw}");
        }
        assert!(ModelCatalog::new(Some("[1]"), None).is_err());
        assert!(ModelCatalog::new(Some("[oops"), None).is_err());
    }

    #[test]
    fn list_body_is_the_openai_shape() {
        let cat = ModelCatalog::new(Some("m1"), None).unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value = serde_json::from_slice(&cat.list_body(7)).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({"object":"list","data":[{"id":"m1","object":"model","created":7,"owned_by":"openai-codex"}]})
        );
        assert!(cat.model_body("m1", 7).is_some());
        assert!(cat.model_body("m2", 7).is_none());
    }
}
