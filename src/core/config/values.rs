//! Parsing and validating single configuration values; every error names its variable.

use std::fmt;

/// A configuration value that cannot be used, reported with the variable's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.variable, self.problem)
    }
}

impl ConfigError {
    /// `problem` reads after the variable's name (`invalid X: <problem>`) and must not quote secrets.
    pub fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }
}

/// Header values must be visible ASCII; anything else becomes `_` (the official client does the same).
pub fn ascii_header_value(value: &str) -> String {
    value
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '_' })
        .collect()
}

/// The error for a value outside a fixed set; the message lists the allowed `values`.
pub fn allowed(variable: &'static str, value: &str, values: &[&str]) -> ConfigError {
    ConfigError::new(
        variable,
        format!("{:?} is not one of {}", value.trim(), values.join(", ")),
    )
}

/// What a boolean setting accepts, as error messages list it (`1`/`yes`/`on` and
/// `0`/`no`/`off` are taken too).
pub const FLAG_VALUES: &[&str] = &["true", "false"];

/// A boolean setting, case-insensitive; unset is `false`.
pub fn flag(value: Option<String>, variable: &'static str) -> Result<bool, ConfigError> {
    match value.as_deref().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(allowed(variable, other, FLAG_VALUES)),
    }
}

/// A whole number above zero; `default` when unset.
pub fn positive(value: Option<String>, variable: &'static str, default: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::new(
                variable,
                format!("{:?} is not a positive whole number", raw.trim()),
            )),
        },
    }
}

/// A JSON object of string values (`null` values are skipped), in document order.
pub fn json_object(
    value: Option<String>,
    variable: &'static str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(raw) = value else {
        return Ok(Vec::new());
    };
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&raw)
        .map_err(|_| ConfigError::new(variable, "is not a JSON object of header names to string values"))?;
    object
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err(ConfigError::new(
                variable,
                format!("the value of {k:?} must be a string"),
            )),
        })
        .collect()
}
