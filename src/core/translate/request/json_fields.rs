//! Request bodies are read field by field from borrowed raw JSON: no `Value` tree is built,
//! unknown fields cost nothing, and a type error names the field it is in.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::error::ApiError;

/// The top-level fields of a request body, each kept as borrowed raw JSON until asked for.
pub struct Fields<'a> {
    map: BTreeMap<Cow<'a, str>, &'a RawValue>,
}

impl<'a> Fields<'a> {
    /// The body must be one JSON object.
    pub fn parse(body: &'a [u8]) -> Result<Self, ApiError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        match first {
            None => {
                return Err(ApiError::invalid_request(
                    "The request body is empty; send a JSON object.",
                ));
            }
            Some(b'{') => {}
            Some(_) if serde_json::from_slice::<&RawValue>(body).is_ok() => {
                return Err(ApiError::invalid_request(
                    "The request body must be a JSON object.",
                ));
            }
            Some(_) => {}
        }
        serde_json::from_slice(body)
            .map(|map| Self { map })
            .map_err(|e| ApiError::invalid_request(format!("Invalid JSON body: {e}")))
    }

    /// A field, `None` when absent or `null`.
    pub fn get<T: Deserialize<'a>>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(raw) => parse_raw(raw, name),
        }
    }
}

/// Deserializes one raw value; `null` counts as absent. Errors name `param`.
pub fn parse_raw<'a, T: Deserialize<'a>>(raw: &'a RawValue, param: &str) -> Result<Option<T>, ApiError> {
    if raw.get() == "null" {
        return Ok(None);
    }
    serde_json::from_str(raw.get())
        .map(Some)
        .map_err(|e| ApiError::invalid_param(param, format!("Invalid `{param}`: {}.", without_position(&e))))
}

/// serde positions are relative to the field, which would only confuse the reader.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((head, _)) => head.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "The request body is empty; send a JSON object."),
            ("  ", "The request body is empty; send a JSON object."),
            ("[1]", "The request body must be a JSON object."),
            ("null", "The request body must be a JSON object."),
            ("\"x\"", "The request body must be a JSON object."),
            (
                "{\"a\":",
                "Invalid JSON body: EOF while parsing a value at line 1 column 5",
            ),
            ("nope", "Invalid JSON body: expected ident at line 1 column 2"),
        ];
        for (body, message) in cases {
            let err = Fields::parse(body.as_bytes())
                .err()
                .map(|e| (e.status, e.message));
            assert_eq!(err, Some((400, message.to_string())), "{body:?}");
        }
    }

    #[test]
    fn fields_are_typed_and_named_in_errors() {
        let body = br#"{"stream": "yes", "n": 2, "model": null, "x\u0041": 1}"#;
        let fields = Fields::parse(body).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(fields.get::<u32>("n").ok(), Some(Some(2)));
        assert_eq!(fields.get::<String>("model").ok(), Some(None));
        assert_eq!(fields.get::<u32>("xA").ok(), Some(Some(1)));
        let err = fields.get::<bool>("stream").err().map(|e| (e.param, e.message));
        assert_eq!(
            err,
            Some((
                Some("stream".into()),
                "Invalid `stream`: invalid type: string \"yes\", expected a boolean.".into()
            ))
        );
    }
}
