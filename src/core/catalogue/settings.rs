//! The model settings of the configuration: `EXPOSE_MODELS` (what `/v1/models` lists instead
//! of the catalogue's listed entries) and `DEBUG_MODEL` (one model for every request).

use crate::core::config::values::ConfigError;

/// The model settings as configured; the catalogue itself lives in the VM's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelSettings {
    /// `EXPOSE_MODELS`; `None` lists the catalogue's `visibility: list` entries.
    pub exposed: Option<Vec<String>>,
    /// `DEBUG_MODEL`: every request goes to this model.
    pub forced: Option<String>,
}

impl ModelSettings {
    /// `expose_models` is a JSON array or a comma/space-separated list; `Err` names
    /// `EXPOSE_MODELS` when the array is malformed or holds non-strings.
    pub fn new(expose_models: Option<&str>, forced: Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            exposed: expose_models.map(parse_model_list).transpose()?,
            forced: forced.map(|m| m.trim().to_string()).filter(|m| !m.is_empty()),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expose_models_accepts_json_and_csv() {
        for (raw, expected) in [
            (r#"["a", " b ", ""]"#, vec!["a", "b"]),
            ("a, b  c,,", vec!["a", "b", "c"]),
            ("\"a,b\"", vec!["a", "b"]),
        ] {
            let settings = ModelSettings::new(Some(raw), None).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                settings.exposed,
                Some(expected.iter().map(|s| s.to_string()).collect()),
                "{raw}"
            );
        }
        assert!(ModelSettings::new(Some("[1]"), None).is_err());
        assert!(ModelSettings::new(Some("[oops"), None).is_err());
        let unset = ModelSettings::new(None, Some("  ".into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(unset, ModelSettings::default());
    }
}
