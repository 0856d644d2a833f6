//! Client keys: the keys file's entries (names, digests, limits, allowed models and routes),
//! the constant-time match of a presented key against every digest, the rolling limit
//! windows, and the per-key counters all worker VMs share (exact where a limit reads them,
//! batched per VM where none does).

pub mod counters;
pub mod file;
pub mod local;
pub mod sha256;
pub mod sync;
pub mod window;

use crate::core::config::values::ConfigError;

/// Per-key limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    /// Input plus output tokens, as the backend reports them.
    pub tokens_per_hour: Option<u64>,
    pub tokens_per_day: Option<u64>,
}

/// One client key. Only the digest is kept: the key itself never stays in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// Letters, digits, `_` and `-`: what logs, stats and `/v1/usage` call the key.
    pub name: String,
    pub digest: [u8; 32],
    pub limits: Limits,
    /// Models the key may use; `None`: any.
    pub models: Option<Vec<String>>,
    /// Path prefixes the key may call; `None`: any.
    pub routes: Option<Vec<String>>,
    /// Sees every key in `/v1/usage`.
    pub admin: bool,
}

impl KeyEntry {
    /// The key may call `path` (without its query): a prefix matches whole path segments.
    pub fn allows_route(&self, path: &str) -> bool {
        self.routes.as_ref().is_none_or(|routes| {
            routes.iter().any(|prefix| {
                let prefix = prefix.trim_end_matches('/');
                path == prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/') || prefix.is_empty())
            })
        })
    }

    /// The key may use `model` (the model the request resolves to).
    pub fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }
}

/// Every configured key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub entries: Vec<KeyEntry>,
    /// A keys file is in use: even with no entry left the gate stays shut, so emptying the
    /// file cuts every caller off rather than letting everyone in.
    pub file: bool,
}

/// Which configured key a request presented (an index into [`KeySet::entries`]).
pub type KeyId = usize;

impl KeySet {
    /// `CLIENT_KEYS` (the renderer's normalised keys file) and `OPENAI_API_KEY` (one key or a
    /// comma-separated list, named `key-1`, `key-2`, … and without limits).
    pub fn from_settings(
        client_keys: Option<&str>,
        openai_api_key: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let file = client_keys.is_some();
        let mut entries = match client_keys {
            Some(text) => file::parse(text).map_err(|e| ConfigError::new("CLIENT_KEYS", e.to_string()))?,
            None => Vec::new(),
        };
        let plain = openai_api_key
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty());
        for (index, key) in plain.enumerate() {
            let name = format!("key-{}", index.saturating_add(1));
            let digest = sha256::digest(key.as_bytes());
            if let Some(other) = entries.iter().find(|e| e.digest == digest || e.name == name) {
                let what = if other.digest == digest {
                    "is the same key as"
                } else {
                    "has the name of"
                };
                return Err(ConfigError::new(
                    "OPENAI_API_KEY",
                    format!(
                        "key {} ({name}) {what} the keys file's entry {:?}; list each key once, and do not name file entries key-N",
                        index.saturating_add(1),
                        other.name
                    ),
                ));
            }
            entries.push(KeyEntry {
                name,
                digest,
                limits: Limits::default(),
                models: None,
                routes: None,
                admin: false,
            });
        }
        Ok(Self { entries, file })
    }

    /// No key and no keys file is configured: the gate is open.
    pub fn is_open(&self) -> bool {
        self.entries.is_empty() && !self.file
    }

    /// A keys file with an admin key is in use.
    pub fn has_admin(&self) -> bool {
        self.entries.iter().any(|e| e.admin)
    }

    /// The entry of a key [`KeySet::identify`] found.
    pub fn get(&self, id: KeyId) -> Option<&KeyEntry> {
        self.entries.get(id)
    }

    /// The key whose digest is the presented key's. Every digest is compared in full, and the
    /// match is picked with masks rather than branches, so the time taken depends only on the
    /// number of keys, not on which one matched or how much of a guess was right. The file
    /// refuses two entries with one key, so at most one digest matches.
    pub fn identify(&self, presented: &str) -> Option<KeyId> {
        let digest = sha256::digest(presented.as_bytes());
        let mut found = 0usize;
        let mut any = 0usize;
        for (index, entry) in self.entries.iter().enumerate() {
            let mut diff = 0u8;
            for (a, b) in entry.digest.iter().zip(digest.iter()) {
                diff |= a ^ b;
            }
            // all ones when diff == 0, zero otherwise
            let mask = usize::from(diff).wrapping_sub(1) >> 8;
            let mask = 0usize.wrapping_sub(mask & 1);
            found |= mask & index;
            any |= mask;
        }
        (any != 0).then_some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(file: Option<&str>, env: Option<&str>) -> KeySet {
        KeySet::from_settings(file, env).unwrap()
    }

    #[test]
    fn digest_matching() {
        let keys = set(
            Some(
                r#"[{"name": "a", "key": "sk-a"}, {"name": "b", "key": "sk-b"}, {"name": "c", "key": "sk-c"}]"#,
            ),
            Some("sk-env1, sk-env2"),
        );
        let names: Vec<&str> = keys.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "key-1", "key-2"]);
        for (presented, expected) in [
            ("sk-a", Some(0)),
            ("sk-b", Some(1)),
            ("sk-c", Some(2)),
            ("sk-env1", Some(3)),
            ("sk-env2", Some(4)),
            ("sk-d", None),
            ("", None),
            ("sk-a ", None),
            ("sk-env1, sk-env2", None),
        ] {
            assert_eq!(keys.identify(presented), expected, "{presented:?}");
        }
        assert_eq!(KeySet::default().identify("x"), None);
        // The first entry (index 0) is told apart from no match at all.
        assert_eq!(set(None, Some("only")).identify("only"), Some(0));
    }

    #[test]
    fn every_digest_byte_counts() {
        let keys = set(None, Some("k"));
        let digest = sha256::digest(b"k");
        for i in 0..32 {
            for bit in 0..8 {
                let mut other = keys.clone();
                if let Some(byte) = other.entries[0].digest.get_mut(i) {
                    *byte ^= 1 << bit;
                }
                assert_eq!(other.identify("k"), None, "byte {i} bit {bit}");
            }
        }
        assert_eq!(keys.entries[0].digest, digest);
    }

    #[test]
    fn the_environment_list_and_the_file_must_not_overlap() {
        let file = r#"[{"name": "a", "key": "sk-a"}]"#;
        let err = KeySet::from_settings(Some(file), Some("sk-x,sk-a")).unwrap_err();
        assert_eq!(err.variable, "OPENAI_API_KEY");
        assert!(
            err.problem
                .contains("key 2 (key-2) is the same key as the keys file's entry \"a\""),
            "{err}"
        );
        assert!(!err.problem.contains("sk-a"));
        let named = r#"[{"name": "key-1", "key": "sk-a"}]"#;
        assert!(KeySet::from_settings(Some(named), Some("sk-b")).is_err());
        let bad = KeySet::from_settings(Some("[{\"name\": \"a\"}]"), None).unwrap_err();
        assert_eq!(bad.variable, "CLIENT_KEYS");
        assert!(set(None, Some(" , ")).is_open());
        let emptied = set(Some("[]"), None);
        assert!(!emptied.is_open() && emptied.identify("anything").is_none());
    }

    #[test]
    fn routes_match_whole_segments() {
        let entry = |routes: Option<Vec<&str>>| KeyEntry {
            name: "a".into(),
            digest: [0; 32],
            limits: Limits::default(),
            models: Some(vec!["gpt-5".into()]),
            routes: routes.map(|r| r.into_iter().map(String::from).collect()),
            admin: false,
        };
        let only = entry(Some(vec!["/v1/responses"]));
        assert!(only.allows_route("/v1/responses"));
        assert!(only.allows_route("/v1/responses/compact"));
        assert!(!only.allows_route("/v1/responsesx"));
        assert!(!only.allows_route("/v1/chat/completions"));
        let slash = entry(Some(vec!["/v1/"]));
        assert!(slash.allows_route("/v1/models") && !slash.allows_route("/api/tags"));
        assert!(entry(Some(vec!["/"])).allows_route("/api/tags"));
        assert!(entry(None).allows_route("/anything"));
        assert!(only.allows_model("gpt-5") && !only.allows_model("gpt-5-mini"));
    }
}
