//! The keys file (`CLIENT_KEYS_FILE`): a JSON array of named keys. The renderer reads it and
//! hands the filter the same shape with every key as its digest (`CLIENT_KEYS`), so one parser
//! serves both; each error names the entry and the line it starts on, never a key or a digest.

use std::fmt;

use serde_json::{Map, Value};

use crate::core::keys::sha256;
use crate::core::keys::{KeyEntry, Limits};

/// The fields an entry may have.
pub const FIELDS: &[&str] = &[
    "name",
    "key",
    "sha256",
    "requests_per_minute",
    "tokens_per_hour",
    "tokens_per_day",
    "models",
    "routes",
    "admin",
];

/// The longest key name: it becomes part of stat names and shared-data keys.
pub const MAX_NAME_LEN: usize = 64;

/// A keys file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysError {
    /// 1-based; 0 when the problem is the whole document.
    pub line: usize,
    /// The entry's name, or `#<position>` (1-based) while it has none.
    pub entry: Option<String>,
    pub problem: String,
}

impl fmt::Display for KeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.entry, self.line) {
            (Some(entry), line) => write!(f, "line {line}, entry {entry}: {}", self.problem),
            (None, 0) => f.write_str(&self.problem),
            (None, line) => write!(f, "line {line}: {}", self.problem),
        }
    }
}

/// Every entry of a keys document, validated: a missing or repeated name, both or neither of
/// `key` and `sha256`, a digest that is not 64 hex digits, a limit that is not a whole number
/// above zero, an unknown field, or two entries with the same key are refused.
pub fn parse(text: &str) -> Result<Vec<KeyEntry>, KeysError> {
    let document: Value = serde_json::from_str(text).map_err(|e| KeysError {
        line: e.line(),
        entry: None,
        // serde's message names a position and a token class, never the text itself.
        problem: format!("is not valid JSON ({e})"),
    })?;
    let Value::Array(items) = document else {
        return Err(KeysError {
            line: 1,
            entry: None,
            problem: "must be a JSON array of key objects, e.g. [{\"name\": \"ci\", \"sha256\": \"…\"}]"
                .to_string(),
        });
    };
    let lines = element_lines(text);
    let mut entries: Vec<(KeyEntry, usize)> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let line = lines.get(index).copied().unwrap_or(0);
        let entry = parse_entry(item, index, line)?;
        let fail = |problem: String| KeysError {
            line,
            entry: Some(format!("{:?}", entry.name)),
            problem,
        };
        if let Some((_, first)) = entries.iter().find(|(e, _)| e.name == entry.name) {
            return Err(fail(format!(
                "the name is already used by the entry on line {first}; give every key its own name"
            )));
        }
        if let Some((other, _)) = entries.iter().find(|(e, _)| e.digest == entry.digest) {
            return Err(fail(format!(
                "has the same key as entry {:?}; give every caller its own key",
                other.name
            )));
        }
        entries.push((entry, line));
    }
    Ok(entries.into_iter().map(|(entry, _)| entry).collect())
}

/// The normalised list the filter reads (`CLIENT_KEYS`): the same document with digests only.
pub fn normalised(entries: &[KeyEntry]) -> String {
    let list: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut object = Map::new();
            object.insert("name".into(), Value::from(entry.name.clone()));
            object.insert("sha256".into(), Value::from(hex(&entry.digest)));
            let limits = [
                ("requests_per_minute", entry.limits.requests_per_minute),
                ("tokens_per_hour", entry.limits.tokens_per_hour),
                ("tokens_per_day", entry.limits.tokens_per_day),
            ];
            for (field, limit) in limits {
                if let Some(limit) = limit {
                    object.insert(field.into(), Value::from(limit));
                }
            }
            if let Some(models) = &entry.models {
                object.insert("models".into(), Value::from(models.clone()));
            }
            if let Some(routes) = &entry.routes {
                object.insert("routes".into(), Value::from(routes.clone()));
            }
            if entry.admin {
                object.insert("admin".into(), Value::Bool(true));
            }
            Value::Object(object)
        })
        .collect();
    Value::Array(list).to_string()
}

fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_entry(item: &Value, index: usize, line: usize) -> Result<KeyEntry, KeysError> {
    let position = format!("#{}", index.saturating_add(1));
    let Value::Object(object) = item else {
        return Err(KeysError {
            line,
            entry: Some(position),
            problem: "must be an object with at least \"name\" and \"sha256\" (or \"key\")".to_string(),
        });
    };
    let named = match object.get("name") {
        Some(Value::String(name)) => Some(name.clone()),
        _ => None,
    };
    let label = named.as_ref().map_or(position, |name| format!("{name:?}"));
    let fail = |problem: String| KeysError {
        line,
        entry: Some(label.clone()),
        problem,
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(fail(format!(
            "unknown field {unknown:?}; the fields are {}",
            FIELDS.join(", ")
        )));
    }
    let name = match named {
        Some(name) => name,
        None if object.contains_key("name") => return Err(fail("\"name\" must be a string".to_string())),
        None => {
            return Err(fail(
                "has no \"name\"; every key needs one (it names the key in logs, stats and /v1/usage)"
                    .to_string(),
            ));
        }
    };
    check_name(&name).map_err(fail)?;
    let digest = match (object.get("key"), object.get("sha256")) {
        (Some(_), Some(_)) => {
            return Err(fail(
                "has both \"key\" and \"sha256\"; give one (\"sha256\" keeps the key itself out of the file)"
                    .to_string(),
            ));
        }
        (None, None) => {
            return Err(fail(
                "has neither \"key\" nor \"sha256\"; give the key's SHA-256 as 64 hex digits (`printf %s KEY | sha256sum`)".to_string(),
            ));
        }
        (Some(Value::String(key)), None) if !key.trim().is_empty() && key.trim() == key => {
            sha256::digest(key.as_bytes())
        }
        (Some(_), None) => {
            return Err(fail(
                "\"key\" must be a non-empty string without spaces at either end".to_string(),
            ));
        }
        (None, Some(Value::String(hex))) => sha256::parse_hex(hex).ok_or_else(|| {
            fail("\"sha256\" must be 64 hex digits (`printf %s KEY | sha256sum`)".to_string())
        })?,
        (None, Some(_)) => {
            return Err(fail("\"sha256\" must be a string of 64 hex digits".to_string()));
        }
    };
    let limit = |field: &str| match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => Ok(n.as_u64()),
        Some(_) => Err(fail(format!(
            "{field:?} must be a whole number above 0 (leave it out for no limit)"
        ))),
    };
    let limits = Limits {
        requests_per_minute: limit("requests_per_minute")?,
        tokens_per_hour: limit("tokens_per_hour")?,
        tokens_per_day: limit("tokens_per_day")?,
    };
    let models = string_list(object, "models", &fail, |_| true)?;
    let routes = string_list(object, "routes", &fail, |r| r.starts_with('/'))?;
    let admin = match object.get("admin") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(admin)) => *admin,
        Some(_) => return Err(fail("\"admin\" must be true or false".to_string())),
    };
    Ok(KeyEntry {
        name,
        digest,
        limits,
        models,
        routes,
        admin,
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let fits = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match fits {
        true => Ok(()),
        false => Err(format!(
            "\"name\" must be 1 to {MAX_NAME_LEN} letters, digits, '_' or '-' (it becomes part of stat names)"
        )),
    }
}

fn string_list(
    object: &Map<String, Value>,
    field: &str,
    fail: &dyn Fn(String) -> KeysError,
    valid: fn(&str) -> bool,
) -> Result<Option<Vec<String>>, KeysError> {
    let what = match field {
        "routes" => "path prefixes starting with '/', such as \"/v1/responses\"",
        _ => "model names",
    };
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.trim().is_empty() && valid(s.trim()) => Ok(s.trim().to_string()),
                _ => Err(fail(format!("{field:?} must be a list of {what}"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(fail(format!(
            "{field:?} must be a non-empty list of {what} (leave it out to allow all)"
        ))),
    }
}

/// The 1-based line on which each element of the document's top-level array starts. The text
/// is known to be valid JSON, so a scan that tracks strings and nesting depth is enough.
fn element_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut line = 1usize;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut expect_element = false;
    for byte in text.bytes() {
        if byte == b'\n' {
            line = line.saturating_add(1);
        }
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if expect_element && !byte.is_ascii_whitespace() && byte != b']' {
            lines.push(line);
            expect_element = false;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth = depth.saturating_add(1);
                expect_element = depth == 1 && byte == b'[';
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_element = true,
            _ => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "2f0e3f1b6e47d4a43b57c4c4b1a49e0c5b4e06c1a9a1ab8c6b2f62cb43d3a1f0";

    fn error(text: &str) -> String {
        parse(text).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn a_full_file() {
        let text = format!(
            r#"[
  {{"name": "alice", "key": "sk-alice", "requests_per_minute": 10, "admin": true}},
  {{"name": "ci", "sha256": "{}", "tokens_per_hour": 1000, "tokens_per_day": 5000,
    "models": ["gpt-5"], "routes": ["/v1/responses"]}}
]"#,
            DIGEST.to_uppercase()
        );
        let entries = parse(&text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "alice");
        assert_eq!(entries[0].digest, sha256::digest(b"sk-alice"));
        assert!(entries[0].admin);
        assert_eq!(entries[0].limits.requests_per_minute, Some(10));
        assert_eq!(entries[1].digest, sha256::parse_hex(DIGEST).unwrap());
        assert_eq!(entries[1].limits.tokens_per_hour, Some(1000));
        assert_eq!(entries[1].limits.tokens_per_day, Some(5000));
        assert_eq!(entries[1].models.as_deref(), Some(&["gpt-5".to_string()][..]));
        assert_eq!(
            entries[1].routes.as_deref(),
            Some(&["/v1/responses".to_string()][..])
        );
        assert!(!entries[1].admin);
        // The normalised list parses back to the same entries and holds no plain key.
        let again = normalised(&entries);
        assert!(!again.contains("sk-alice"), "{again}");
        assert_eq!(parse(&again).unwrap(), entries);
    }

    #[test]
    fn errors_name_the_entry_and_its_line() {
        let cases: &[(&str, &str)] = &[
            (
                "[\n {\"name\": \"a\", \"key\": \"k\"},\n {\"name\": \"b\", \"key\": \"k2\", \"rpm\": 3}\n]",
                "line 3, entry \"b\": unknown field \"rpm\"",
            ),
            ("[{\"key\": \"k\"}]", "line 1, entry #1: has no \"name\""),
            (
                "[\n{\"name\": \"a\", \"key\": \"k\"},\n\n  {\"name\": \"a\", \"key\": \"k2\"}]",
                "line 4, entry \"a\": the name is already used by the entry on line 2",
            ),
            (
                "[{\"name\": \"a\", \"key\": \"k\", \"sha256\": \"x\"}]",
                "line 1, entry \"a\": has both \"key\" and \"sha256\"",
            ),
            (
                "[{\"name\": \"a\"}]",
                "line 1, entry \"a\": has neither \"key\" nor \"sha256\"",
            ),
            (
                "[{\"name\": \"a\", \"sha256\": \"abc\"}]",
                "line 1, entry \"a\": \"sha256\" must be 64 hex digits",
            ),
            (
                "[{\"name\": \"a\", \"key\": \"k\", \"requests_per_minute\": 0}]",
                "\"requests_per_minute\" must be a whole number above 0",
            ),
            (
                "[{\"name\": \"a\", \"key\": \"k\", \"tokens_per_hour\": 1.5}]",
                "\"tokens_per_hour\" must be a whole number above 0",
            ),
            (
                "[{\"name\": \"a\", \"key\": \"k\", \"tokens_per_day\": \"9\"}]",
                "\"tokens_per_day\" must be a whole number above 0",
            ),
            (
                "[{\"name\": \"a\", \"key\": \"k\", \"routes\": [\"v1/responses\"]}]",
                "\"routes\" must be a list of path prefixes",
            ),
            (
                "[{\"name\": \"a\", \"key\": \"k\", \"models\": []}]",
                "\"models\" must be a non-empty list",
            ),
            (
                "[{\"name\": \"a\", \"key\": \"k\", \"admin\": \"yes\"}]",
                "\"admin\" must be true or false",
            ),
            (
                "[{\"name\": \"a b\", \"key\": \"k\"}]",
                "entry \"a b\": \"name\" must be 1 to 64",
            ),
            (
                "[{\"name\": \"a\", \"key\": \"k\"}, {\"name\": \"b\", \"key\": \"k\"}]",
                "entry \"b\": has the same key as entry \"a\"",
            ),
            (
                "[{\"name\": \"a\", \"key\": \" k\"}]",
                "\"key\" must be a non-empty string",
            ),
            ("[1]", "line 1, entry #1: must be an object"),
            ("{\"name\": \"a\"}", "must be a JSON array"),
            ("[\n{\"name\": \"a\",\n}]", "line 3: is not valid JSON"),
        ];
        for (text, expected) in cases {
            let message = error(text);
            assert!(
                message.starts_with(expected) || message.contains(expected),
                "{text:?}: {message}"
            );
        }
    }

    #[test]
    fn errors_never_quote_a_key_or_a_digest() {
        for text in [
            "[{\"name\": \"a\", \"key\": \"sk-secret\", \"sha256\": \"deadbeef\"}]",
            "[{\"name\": \"a\", \"sha256\": \"deadbeef\"}]",
            "[{\"name\": \"a\", \"key\": \"sk-secret\", \"x\": 1}]",
            "[{\"name\": \"a\", \"key\": \"sk-secret\"}, {\"name\": \"b\", \"key\": \"sk-secret\"}]",
        ] {
            let message = error(text);
            assert!(
                !message.contains("sk-secret") && !message.contains("deadbeef"),
                "{message}"
            );
        }
    }

    #[test]
    fn element_lines_skip_strings_and_nesting() {
        let text = "[\n {\"name\": \"[,{\", \"models\": [\"a\",\n \"b\"]},\n\n {\"name\": \"x\\\"]\"}\n]";
        assert_eq!(element_lines(text), vec![2, 5]);
        assert_eq!(element_lines("[]"), Vec::<usize>::new());
        assert_eq!(element_lines("[{}, {}]"), vec![1, 1]);
    }
}
