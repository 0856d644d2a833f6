//! The configured logins: `OPENAI_CODEX_AUTH` holds one auth.json document (one account, as
//! always) or a JSON array of them (a pool; `make run` builds the array from the files of
//! `CODEX_AUTH_DIR`, each labelled with its file name). An element may carry a `"label"`
//! member; without one the label is a short hash of the ChatGPT account id, never a token or
//! an e-mail address.

use crate::core::auth::auth_json::ChatgptTokens;
use crate::core::translate::request::conversation_key::fingerprint;

/// At most this many accounts are used; a longer list is cut.
pub const MAX_ACCOUNTS: usize = 64;

/// A label as logs and stat names carry it: `[A-Za-z0-9_-]`, anything else becomes `_`, at
/// most 64 characters; empty becomes `_`.
pub fn sanitize_label(raw: &str) -> String {
    let cleaned: String = raw
        .trim()
        .chars()
        .take(64)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_string()
    } else {
        cleaned
    }
}

/// One configured login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub label: String,
    pub tokens: ChatgptTokens,
}

/// The logins in `document`; `Err` says what is wrong (never quoting the document).
pub fn parse(document: &str) -> Result<Vec<Login>, String> {
    let trimmed = document.trim_start();
    if !trimmed.starts_with('[') {
        let tokens = ChatgptTokens::from_auth_json(document).map_err(|p| format!("the document {p}"))?;
        let label = label_member(document).unwrap_or_else(|| derived_label(&tokens));
        return Ok(vec![Login { label, tokens }]);
    }
    let elements: Vec<serde_json::Value> = serde_json::from_str(trimmed)
        .map_err(|_| "is not a valid JSON array of auth.json documents".to_string())?;
    if elements.is_empty() {
        return Err("is an empty array: give at least one auth.json document".to_string());
    }
    let mut logins: Vec<Login> = Vec::with_capacity(elements.len().min(MAX_ACCOUNTS));
    for (at, element) in elements.iter().take(MAX_ACCOUNTS).enumerate() {
        let text = element.to_string();
        let tokens = ChatgptTokens::from_auth_json(&text)
            .map_err(|p| format!("element {} of the array {p}", at.saturating_add(1)))?;
        let label = label_member(&text).unwrap_or_else(|| derived_label(&tokens));
        let label = unique(&logins, label);
        logins.push(Login { label, tokens });
    }
    Ok(logins)
}

fn label_member(document: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(document).ok()?;
    let label = value.get("label")?.as_str()?.trim();
    (!label.is_empty()).then(|| sanitize_label(label))
}

/// `acct-` and eight hex digits of the account id (of the access token when there is none).
fn derived_label(tokens: &ChatgptTokens) -> String {
    let basis = tokens
        .account_id
        .as_deref()
        .unwrap_or(tokens.access_token.as_str());
    let hash = fingerprint(basis.as_bytes());
    format!("acct-{}", hash.get(..8).unwrap_or(hash.as_str()))
}

/// Two logins of one account, or two files that sanitise alike, get `-2`, `-3`, … appended.
fn unique(logins: &[Login], label: String) -> String {
    if !logins.iter().any(|l| l.label == label) {
        return label;
    }
    (2..)
        .map(|n: usize| format!("{label}-{n}"))
        .find(|candidate| !logins.iter().any(|l| &l.label == candidate))
        .unwrap_or(label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::auth_json::tests::auth_json;

    #[test]
    fn one_document_is_one_account_with_a_hashed_label() {
        let logins = parse(&auth_json(2_000_000_000, true)).unwrap();
        assert_eq!(logins.len(), 1);
        let label = &logins[0].label;
        assert!(label.starts_with("acct-") && label.len() == 13, "{label}");
    }

    #[test]
    fn an_array_is_a_pool_with_its_labels() {
        let doc = auth_json(2_000_000_000, true);
        let mut labelled: serde_json::Value = serde_json::from_str(&doc).unwrap();
        labelled["label"] = "work laptop".into();
        let array = format!("[{labelled}, {doc}, {doc}]");
        let logins = parse(&array).unwrap();
        let labels: Vec<&str> = logins.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels[0], "work_laptop");
        assert!(labels[1].starts_with("acct-"));
        assert_eq!(labels[2], format!("{}-2", labels[1]));
    }

    #[test]
    fn bad_arrays_say_what_is_wrong_without_quoting() {
        assert!(parse("[]").unwrap_err().contains("empty"));
        assert!(parse("[1").unwrap_err().contains("JSON array"));
        let err = parse(r#"[{"tokens": {"refresh_token": "secret"}}]"#).unwrap_err();
        assert!(err.starts_with("element 1 of the array"), "{err}");
        assert!(!err.contains("secret"));
    }

    #[test]
    fn labels_keep_only_safe_characters() {
        assert_eq!(sanitize_label("work"), "work");
        assert_eq!(sanitize_label(" me@example.com "), "me_example_com");
        assert_eq!(sanitize_label("a.b/c d"), "a_b_c_d");
        assert_eq!(sanitize_label(""), "_");
        assert_eq!(sanitize_label(&"x".repeat(100)).len(), 64);
    }
}
