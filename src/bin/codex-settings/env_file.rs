//! `.dev.vars`, read with `dotenvy` (the README's configuration section lists where its reading
//! differs from docker compose's `env_file`). Errors name the file, the line and the variable,
//! never the value: the file holds keys and auth.json.

use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError(pub String);

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The file's assignments in order (a later one of the same name wins when merged). A path
/// that is not a regular file (absent, or `/dev/null`) has none.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| EnvFileError(format!("{name}: cannot be read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| EnvFileError(format!("{name}: is not UTF-8 text")))?;
    parse(&text).map_err(|problem| EnvFileError(format!("{name}:{problem}")))
}

/// `Err` is "LINE: what is wrong" (the caller adds the file name).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut found = Vec::new();
    // Where the last good assignment's line ends: dotenvy reports a bad line by its text
    // alone, which is looked up from here.
    let mut cursor = 0;
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((key, value)) => {
                cursor = line_end_after(text, cursor, &key);
                found.push((key, value));
            }
            Err(dotenvy::Error::LineParse(reported, _)) => return Err(describe(text, cursor, &reported)),
            Err(other) => return Err(format!(" {other}")),
        }
    }
    Ok(found)
}

/// The key of an assignment line (after an optional `export `), if it has one.
fn key_of(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let (key, _) = line.split_once('=')?;
    let key = key.trim_end();
    let valid = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    valid.then_some(key)
}

/// The end of the first line at or after `from` that assigns `key`.
fn line_end_after(text: &str, from: usize, key: &str) -> usize {
    let mut at = from;
    for line in text.get(from..).unwrap_or_default().split_inclusive('\n') {
        at = at.saturating_add(line.len());
        if key_of(line) == Some(key) {
            return at;
        }
    }
    from
}

/// The line number and key of a line dotenvy refused; its value is never repeated.
fn describe(text: &str, cursor: usize, reported: &str) -> String {
    let found = text
        .get(cursor..)
        .and_then(|rest| rest.find(reported))
        .map(|at| at.saturating_add(cursor));
    let Some(at) = found else {
        return " a line cannot be read: put JSON and values with spaces, quotes, `\\` or `$` in 'single quotes'"
            .to_string();
    };
    let before = text.get(..at).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
    let number = text
        .get(..line_start)
        .unwrap_or_default()
        .matches('\n')
        .count()
        .saturating_add(1);
    let line = text
        .get(line_start..)
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default();
    match key_of(line) {
        Some(key) => format!(
            "{number}: cannot read the value of {key}: put JSON and values with spaces, quotes, `\\` or \
             `$` in 'single quotes'"
        ),
        None => format!("{number}: expected KEY=VALUE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn one(text: &str) -> String {
        let found = values(text);
        assert_eq!(found.len(), 1, "{text:?} → {found:?}");
        found[0].1.clone()
    }

    #[test]
    fn the_forms_dev_vars_example_documents() {
        let text = "# comment\n\nexport REASONING_EFFORT=high\nOPENAI_API_KEY=\"sk-local\" # after quotes\n\
                    EXPOSE_MODELS=gpt-5.5,gpt-5.2 # inline\nHASH=abc#def\nEMPTY=\n\
                    SINGLE='keep $this \\n literally'\nDOUBLE=\"line1\\nline2 \\\"quoted\\\" back\\\\slash\"\n\
                    AUTH='{\"tokens\": {\"access_token\": \"a.b.c\", \"note\": \"x #y\"}}'\nMULTI='{\n  \"a\": 1\n}'\n";
        let found: std::collections::BTreeMap<_, _> = values(text).into_iter().collect();
        let get = |k: &str| found.get(k).map(String::as_str);
        assert_eq!(get("REASONING_EFFORT"), Some("high"));
        assert_eq!(get("OPENAI_API_KEY"), Some("sk-local"));
        assert_eq!(get("EXPOSE_MODELS"), Some("gpt-5.5,gpt-5.2"));
        assert_eq!(get("HASH"), Some("abc#def"));
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(get("SINGLE"), Some("keep $this \\n literally"));
        assert_eq!(get("DOUBLE"), Some("line1\nline2 \"quoted\" back\\slash"));
        assert_eq!(
            get("AUTH"),
            Some(r#"{"tokens": {"access_token": "a.b.c", "note": "x #y"}}"#)
        );
        assert_eq!(get("MULTI"), Some("{\n  \"a\": 1\n}"));
    }

    #[test]
    fn a_later_assignment_follows_an_earlier_one_and_a_bom_is_ignored() {
        assert_eq!(
            values("\u{feff}A=1\nA=2\n"),
            [("A".into(), "1".into()), ("A".into(), "2".into())]
        );
    }

    /// Where dotenvy 0.15 reads differently from docker compose (README, "Configuration").
    #[test]
    fn the_documented_differences_from_compose() {
        // Unquoted: compose keeps the double quotes, dotenvy removes them (and rejects a space).
        assert_eq!(one(r#"J={"k":"v"}"#), "{k:v}");
        assert!(parse(r#"J={"k": "v"}"#).is_err());
        // `$NAME` ends at `_` in dotenvy; `${NAME}` does not.
        assert_eq!(one("A=$NO_SUCH_VARIABLE_HERE"), "_SUCH_VARIABLE_HERE");
        assert_eq!(one("A=${NO_SUCH_VARIABLE_HERE}"), "");
        // Escapes other than \n \\ \" \' \$ are errors in double quotes (compose keeps `\u`).
        assert!(parse(r#"A="\u00e9""#).is_err());
    }

    #[test]
    fn errors_name_the_line_and_the_key_but_never_the_value() {
        let err = parse("A=1\nthis is not an assignment\n").unwrap_err();
        assert_eq!(err, "2: expected KEY=VALUE");
        let err = parse("A=1\n\nOPENAI_CODEX_AUTH={\"refresh_token\": \"rt-secret\"}\n").unwrap_err();
        assert!(
            err.starts_with("3: cannot read the value of OPENAI_CODEX_AUTH: "),
            "{err}"
        );
        assert!(!err.contains("rt-secret"), "{err}");
        let err = parse("export KEY='never closed\nnext=1\n").unwrap_err();
        assert!(err.starts_with("1: cannot read the value of KEY"), "{err}");
        // The same text earlier in the file does not mislead the line count.
        let err = parse("A='x y'\nB=x y\n").unwrap_err();
        assert!(err.starts_with("2: cannot read the value of B"), "{err}");
        let err = parse("A=ok\nB=x y\nC=ok\nD=x y\n").unwrap_err();
        assert!(err.starts_with("2: cannot read the value of B"), "{err}");
    }

    #[test]
    fn a_path_that_is_not_a_file_has_no_values() {
        assert_eq!(read(Path::new("/dev/null")), Ok(Vec::new()));
        assert_eq!(read(Path::new("/nonexistent/.dev.vars")), Ok(Vec::new()));
    }
}
