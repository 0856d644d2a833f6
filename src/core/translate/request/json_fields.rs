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
        check_object(body)?;
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

    /// The raw value of field `name`, `null` included.
    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.map.get(name).copied()
    }
}

/// An empty body, or valid JSON that is not an object, named as such (anything else is left
/// to the parser's own message).
fn check_object(body: &[u8]) -> Result<(), ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(ApiError::invalid_request(
            "The request body is empty; send a JSON object.",
        )),
        Some(b'{') => Ok(()),
        Some(_) if serde_json::from_slice::<&RawValue>(body).is_ok() => Err(ApiError::invalid_request(
            "The request body must be a JSON object.",
        )),
        Some(_) => Ok(()),
    }
}

/// A JSON object's members in the order the client wrote them, values kept as borrowed raw
/// JSON: a body can be edited at the top level and written back without decoding, or
/// re-encoding, what it does not change.
pub struct Ordered<'a> {
    pub members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Ordered<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Members<'a> {
            type Value = Ordered<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16).min(64));
                while let Some(Key(key)) = map.next_key()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(Ordered { members })
            }
        }
        deserializer.deserialize_map(Members(std::marker::PhantomData))
    }
}

impl<'a> Ordered<'a> {
    /// The body as an object; the same errors as [`Fields::parse`].
    pub fn parse(body: &'a [u8]) -> Result<Self, ApiError> {
        check_object(body)?;
        serde_json::from_slice(body).map_err(|e| ApiError::invalid_request(format!("Invalid JSON body: {e}")))
    }

    /// The last member named `name` (as JSON objects read), `None` when absent or `null`.
    pub fn get<T: Deserialize<'a>>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(raw) => parse_raw(raw, name),
        }
    }

    /// The raw value of member `name`, `null` included.
    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

/// Writes `"key":` (escaped as JSON) to `out`, after a comma unless it is the first member.
pub fn write_key(out: &mut Vec<u8>, key: &str) {
    if out.last().is_some_and(|b| *b != b'{') {
        out.push(b',');
    }
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
}

/// Deserializes one raw value; `null` counts as absent. Errors name `param` (written out only
/// then).
pub fn parse_raw<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    param: &(impl std::fmt::Display + ?Sized),
) -> Result<Option<T>, ApiError> {
    if raw.get() == "null" {
        return Ok(None);
    }
    serde_json::from_str(raw.get()).map(Some).map_err(|e| {
        let param = param.to_string();
        let message = format!("Invalid `{param}`: {}.", without_position(&e));
        ApiError::invalid_param(param, message)
    })
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
