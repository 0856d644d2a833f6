//! Which upstream the filter talks to and with which credential (`UPSTREAM_AUTH_MODE`):
//! the ChatGPT OAuth token (default), or an API key for an OpenAI-compatible Responses
//! upstream, from `UPSTREAM_API_KEY` or from a field of `OPENAI_CODEX_AUTH`.

use crate::core::auth::auth_json::ChatgptTokens;
use crate::core::config::upstream_url::UpstreamUrl;
use crate::core::config::values::ConfigError;
use crate::core::config::values::allowed;

/// The ChatGPT Codex backend's Responses endpoint, used when no upstream URL is configured.
pub const DEFAULT_RESPONSES_URL: &str = "https://chatgpt.com/backend-api/codex/responses";
/// Appended to `UPSTREAM_BASE_URL` when `UPSTREAM_WIRE_API_PATH` is unset.
pub const DEFAULT_WIRE_API_PATH: &str = "/responses";
/// `UPSTREAM_AUTH_HEADER` when unset.
pub const DEFAULT_AUTH_HEADER: &str = "authorization";
/// `UPSTREAM_AUTH_SCHEME` when unset.
pub const DEFAULT_AUTH_SCHEME: &str = "Bearer";
/// The field of `OPENAI_CODEX_AUTH` that `apikey_auth_json` reads by default.
pub const DEFAULT_AUTH_ENV_KEY: &str = "OPENAI_API_KEY";

/// What authenticates the filter to the upstream; `Debug` redacts the key.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    ChatgptToken,
    /// The key (never logged).
    ApiKey(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ChatgptToken => "ChatgptToken",
            Self::ApiKey(_) => "ApiKey(<redacted>)",
        })
    }
}

/// The upstream credential and the header it travels in (`UPSTREAM_AUTH_*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAuth {
    pub credential: Credential,
    /// Lower-case header name (`UPSTREAM_AUTH_HEADER`, default `authorization`).
    pub header: String,
    /// `UPSTREAM_AUTH_SCHEME`, default `Bearer`; `none` sends the bare key.
    pub scheme: Option<String>,
}

impl UpstreamAuth {
    /// The values `UPSTREAM_AUTH_MODE` accepts, for the start-up error and the settings manifest.
    pub const MODES: &'static [&'static str] = &["chatgpt_token", "apikey_env", "apikey_auth_json"];

    /// Reads `UPSTREAM_AUTH_MODE` and what that mode needs; `Err` when the key it names is
    /// missing or empty, or the mode is unknown.
    pub fn from_settings(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mode = var("UPSTREAM_AUTH_MODE").map(|m| m.trim().to_ascii_lowercase());
        let credential = match mode.as_deref() {
            None | Some("chatgpt_token") => Credential::ChatgptToken,
            Some("apikey_env") => {
                Credential::ApiKey(var("UPSTREAM_API_KEY").map(|k| k.trim().to_string()).ok_or_else(
                    || {
                        ConfigError::new(
                            "UPSTREAM_API_KEY",
                            "must be set when UPSTREAM_AUTH_MODE=apikey_env",
                        )
                    },
                )?)
            }
            Some("apikey_auth_json") => {
                let field = var("UPSTREAM_AUTH_ENV_KEY")
                    .map_or_else(|| DEFAULT_AUTH_ENV_KEY.to_string(), |f| f.trim().to_string());
                Credential::ApiKey(key_in_auth_json(var("OPENAI_CODEX_AUTH").as_deref(), &field)?)
            }
            Some(other) => return Err(allowed("UPSTREAM_AUTH_MODE", other, Self::MODES)),
        };
        let scheme = match var("UPSTREAM_AUTH_SCHEME").map(|s| s.trim().to_string()) {
            None => Some(DEFAULT_AUTH_SCHEME.to_string()),
            Some(s) if s.eq_ignore_ascii_case("none") => None,
            Some(s) => Some(s),
        };
        Ok(Self {
            credential,
            header: var("UPSTREAM_AUTH_HEADER").map_or_else(
                || DEFAULT_AUTH_HEADER.to_string(),
                |h| h.trim().to_ascii_lowercase(),
            ),
            scheme,
        })
    }

    /// The ChatGPT login is the credential: the token refresher, the wait list and the
    /// account-id header only exist in this mode.
    pub fn is_chatgpt(&self) -> bool {
        self.credential == Credential::ChatgptToken
    }

    /// The header value for a credential.
    pub fn value(&self, secret: &str) -> String {
        match &self.scheme {
            Some(scheme) => format!("{scheme} {secret}"),
            None => secret.to_string(),
        }
    }

    /// The credential headers of one upstream request: the API key, or the ChatGPT access
    /// token with its account id; nothing when ChatGPT tokens are not at hand yet.
    pub fn credential_headers(&self, tokens: Option<&ChatgptTokens>) -> Vec<(String, String)> {
        let mut headers = Vec::with_capacity(2);
        match (&self.credential, tokens) {
            (Credential::ApiKey(key), _) => headers.push((self.header.clone(), self.value(key))),
            (Credential::ChatgptToken, Some(tokens)) => {
                headers.push((self.header.clone(), self.value(&tokens.access_token)));
                if let Some(account) = &tokens.account_id {
                    headers.push(("chatgpt-account-id".to_string(), account.clone()));
                }
            }
            (Credential::ChatgptToken, None) => {}
        }
        headers
    }
}

fn key_in_auth_json(document: Option<&str>, field: &str) -> Result<String, ConfigError> {
    let document = document.ok_or_else(|| {
        ConfigError::new(
            "OPENAI_CODEX_AUTH",
            "must be set when UPSTREAM_AUTH_MODE=apikey_auth_json",
        )
    })?;
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(document)
        .map_err(|_| ConfigError::new("OPENAI_CODEX_AUTH", "is not a valid JSON object"))?;
    match object.get(field) {
        Some(serde_json::Value::String(key)) if !key.trim().is_empty() => Ok(key.trim().to_string()),
        _ => Err(ConfigError::new(
            "UPSTREAM_AUTH_ENV_KEY",
            format!("OPENAI_CODEX_AUTH has no non-empty string at key {field:?}"),
        )),
    }
}

/// The Responses URL as the settings spell it, and the variable to blame when it is bad:
/// `UPSTREAM_RESPONSES_URL` > `UPSTREAM_BASE_URL` + `UPSTREAM_WIRE_API_PATH` >
/// `CHATGPT_RESPONSES_URL` (the original's precedence). The rendered Envoy configuration takes
/// its `codex` cluster from the same answer (`codex-settings resolve`).
pub fn responses_url_setting(var: &dyn Fn(&str) -> Option<String>) -> (String, &'static str) {
    if let Some(url) = var("UPSTREAM_RESPONSES_URL") {
        (url.trim().to_string(), "UPSTREAM_RESPONSES_URL")
    } else if let Some(base) = var("UPSTREAM_BASE_URL") {
        let base = base.strip_suffix('/').unwrap_or(&base).to_string();
        let path = var("UPSTREAM_WIRE_API_PATH")
            .map_or_else(|| DEFAULT_WIRE_API_PATH.to_string(), |p| p.trim().to_string());
        let slash = if path.starts_with('/') { "" } else { "/" };
        (format!("{}{slash}{path}", base.trim()), "UPSTREAM_BASE_URL")
    } else {
        let url = var("CHATGPT_RESPONSES_URL").unwrap_or_else(|| DEFAULT_RESPONSES_URL.to_string());
        (url.trim().to_string(), "CHATGPT_RESPONSES_URL")
    }
}

/// The upstream Responses URL by [`responses_url_setting`]'s precedence, parsed; `Err` blames
/// the variable the URL came from.
pub fn responses_url(var: &dyn Fn(&str) -> Option<String>) -> Result<UpstreamUrl, ConfigError> {
    let (raw, variable) = responses_url_setting(var);
    UpstreamUrl::parse(&raw).map_err(|problem| ConfigError::new(variable, problem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n: &str| map.get(n).cloned()
    }

    #[test]
    #[allow(clippy::type_complexity)] // a table of cases reads best as tuples
    fn url_precedence() {
        let cases: &[(&[(&str, &str)], &str, &str)] = &[
            (&[], "chatgpt.com", "/backend-api/codex/responses"),
            (&[("CHATGPT_RESPONSES_URL", "http://c/x")], "c", "/x"),
            (
                &[
                    ("CHATGPT_RESPONSES_URL", "http://c/x"),
                    ("UPSTREAM_BASE_URL", "http://h/v1/"),
                ],
                "h",
                "/v1/responses",
            ),
            (
                &[
                    ("UPSTREAM_BASE_URL", "http://h/v1/"),
                    ("UPSTREAM_WIRE_API_PATH", "custom/resp"),
                ],
                "h",
                "/v1/custom/resp",
            ),
            (
                &[
                    ("UPSTREAM_BASE_URL", "http://h/v1"),
                    ("UPSTREAM_RESPONSES_URL", " https://r/y "),
                ],
                "r",
                "/y",
            ),
        ];
        for (pairs, host, path) in cases {
            let url = responses_url(&settings(pairs)).unwrap();
            assert_eq!(
                (url.host.as_str(), url.path.as_str()),
                (*host, *path),
                "{pairs:?}"
            );
        }
        let err = responses_url(&settings(&[("UPSTREAM_BASE_URL", "ftp://x")])).unwrap_err();
        assert_eq!(err.variable, "UPSTREAM_BASE_URL");
    }

    #[test]
    fn auth_modes() {
        let auth = UpstreamAuth::from_settings(&settings(&[])).unwrap();
        assert!(auth.is_chatgpt());
        assert_eq!(
            (auth.header.as_str(), auth.value("t").as_str()),
            ("authorization", "Bearer t")
        );
        let auth = UpstreamAuth::from_settings(&settings(&[
            ("UPSTREAM_AUTH_MODE", "apikey_env"),
            ("UPSTREAM_API_KEY", " sk-up "),
            ("UPSTREAM_AUTH_HEADER", "X-Api-Key"),
            ("UPSTREAM_AUTH_SCHEME", "none"),
        ]))
        .unwrap();
        assert_eq!(auth.credential, Credential::ApiKey("sk-up".into()));
        assert_eq!(
            (auth.header.as_str(), auth.value("sk-up").as_str()),
            ("x-api-key", "sk-up")
        );
        let auth = UpstreamAuth::from_settings(&settings(&[
            ("UPSTREAM_AUTH_MODE", "apikey_auth_json"),
            (
                "OPENAI_CODEX_AUTH",
                r#"{"OPENAI_API_KEY": null, "MY_KEY": "sk-json"}"#,
            ),
            ("UPSTREAM_AUTH_ENV_KEY", "MY_KEY"),
        ]))
        .unwrap();
        assert_eq!(auth.credential, Credential::ApiKey("sk-json".into()));
        assert!(!format!("{auth:?}").contains("sk-json"));
    }

    #[test]
    fn auth_mode_errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("UPSTREAM_AUTH_MODE", "oauth")], "UPSTREAM_AUTH_MODE"),
            (&[("UPSTREAM_AUTH_MODE", "apikey_env")], "UPSTREAM_API_KEY"),
            (&[("UPSTREAM_AUTH_MODE", "apikey_auth_json")], "OPENAI_CODEX_AUTH"),
            (
                &[
                    ("UPSTREAM_AUTH_MODE", "apikey_auth_json"),
                    ("OPENAI_CODEX_AUTH", "{x"),
                ],
                "OPENAI_CODEX_AUTH",
            ),
            (
                &[
                    ("UPSTREAM_AUTH_MODE", "apikey_auth_json"),
                    ("OPENAI_CODEX_AUTH", r#"{"OPENAI_API_KEY": null}"#),
                ],
                "UPSTREAM_AUTH_ENV_KEY",
            ),
        ];
        for (pairs, variable) in cases {
            let err = UpstreamAuth::from_settings(&settings(pairs)).unwrap_err();
            assert_eq!(err.variable, *variable, "{pairs:?}");
        }
    }
}
