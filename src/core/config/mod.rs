//! Configuration: the original project's variable names, read from the environment Envoy
//! exposes to the module (`host_env_keys`) or from the plugin configuration JSON. Every value
//! is validated once, at start-up, so a typo stops the filter with a message naming the
//! variable instead of surfacing as odd behaviour on some later request.

pub mod header_forwarding;
pub mod identity;
pub mod upstream;
pub mod upstream_url;
pub mod values;

use std::collections::HashMap;

use crate::core::accounts::login::{self, Login};
use crate::core::auth::auth_json::ChatgptTokens;
pub use crate::core::auth::etcd::DEFAULT_KEY as DEFAULT_ETCD_KEY;
pub use crate::core::auth::token::DEFAULT_CLIENT_ID;
use crate::core::catalogue::settings::ModelSettings;
use crate::core::config::header_forwarding::ForwardMode;
use crate::core::config::identity::Identity;
use crate::core::config::upstream::{UpstreamAuth, responses_url};
use crate::core::config::upstream_url::UpstreamUrl;
use crate::core::config::values::{ConfigError, allowed, flag, positive};
use crate::core::keys::KeySet;
use crate::core::reasoning::{Effort, OutputMode, Summary};
use crate::core::translate::request::common::ToolsFormat;

/// `MAX_REQUEST_BODY_BYTES` when unset (16 MiB): the cap on a buffered request body, and on a
/// non-streaming answer.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 16 * 1024 * 1024;
/// `CODEX_AUTH_ISSUER` when unset: the OAuth issuer the Codex CLI logs in with.
pub const DEFAULT_AUTH_ISSUER: &str = "https://auth.openai.com";
/// The token endpoint under the issuer (code exchange and refresh).
pub const TOKEN_PATH: &str = "/oauth/token";
/// `CODEX_REFRESH_TOKEN_URL` when unset (and `CODEX_AUTH_ISSUER` unset): the OpenAI OAuth
/// token endpoint the Codex CLI uses.
pub const DEFAULT_REFRESH_TOKEN_URL: &str = "https://auth.openai.com/oauth/token";
/// The values `UPSTREAM_TOOLS_FORMAT` accepts (see [`ToolsFormat`]).
pub const TOOLS_FORMATS: &[&str] = &["flat", "nested"];
/// The values `TOKEN_STORE` accepts.
pub const TOKEN_STORES: &[&str] = &["memory", "etcd"];
/// The values `FILTER_ROLE` accepts (see [`FilterRole`]).
pub const FILTER_ROLES: &[&str] = &["main", "credentials"];
/// Names of the clusters the filter calls itself, as the rendered configuration defines them.
pub const DEFAULT_OAUTH_CLUSTER: &str = "oauth";
/// `ETCD_CLUSTER` when unset.
pub const DEFAULT_ETCD_CLUSTER: &str = "etcd";
/// `CATALOGUE_CLUSTER` when unset: the Codex backend's host, for the filter's own model
/// catalogue calls. Not the router's `codex` cluster: with the credentials instance in that
/// cluster, a call from the filter would enter a filter of its own VM while that VM is busy,
/// which the SDK does not survive.
pub const DEFAULT_CATALOGUE_CLUSTER: &str = "codex_catalogue";
/// `CATALOGUE_REFRESH_SECONDS` when unset: how often the model catalogue is fetched again.
pub const DEFAULT_CATALOGUE_REFRESH_SECONDS: usize = 300;
/// `INSTRUCTIONS_BASE_CLUSTER` when unset.
pub const DEFAULT_INSTRUCTIONS_BASE_CLUSTER: &str = "instructions_base";
/// `INSTRUCTIONS_CODEX_CLUSTER` when unset.
pub const DEFAULT_INSTRUCTIONS_CODEX_CLUSTER: &str = "instructions_codex";

/// Every setting of one plugin instance, validated; built once per VM by [`Config::load`] and
/// read-only afterwards.
#[derive(Debug, Clone)]
pub struct Config {
    /// Keys clients must present (`CLIENT_KEYS` and `OPENAI_API_KEY`); none leaves the gate open.
    pub keys: KeySet,
    /// `USAGE_ENDPOINT`: `GET /v1/usage` answers (on by default).
    pub usage_endpoint: bool,
    /// The raw auth.json document (never logged).
    pub codex_auth: Option<String>,
    pub upstream: UpstreamUrl,
    pub models: ModelSettings,
    /// `REASONING_EFFORT`; `None`: the model's catalogue default.
    pub default_effort: Option<Effort>,
    pub default_summary: Summary,
    pub output_mode: OutputMode,
    /// `REASONING_OUTPUT_MODE=all`: the prefixed route families exist.
    pub prefixed_modes: bool,
    pub verbose: bool,
    pub auth: UpstreamAuth,
    pub identity: Identity,
    pub forward: ForwardMode,
    pub tools_format: ToolsFormat,
    /// `OLLAMA_API_URL` is set, so Envoy routes `/api/*` to an Ollama cluster.
    pub ollama: bool,
    pub instructions_base_url: Option<UpstreamUrl>,
    pub instructions_codex_url: Option<UpstreamUrl>,
    /// The OAuth token endpoint (`CODEX_REFRESH_TOKEN_URL`), reached through the `oauth` cluster.
    pub refresh_url: UpstreamUrl,
    /// `CHATGPT_LOCAL_CLIENT_ID`
    pub client_id: String,
    /// `TOKEN_STORE=etcd`: the etcd endpoint (reached through the `etcd` cluster) and key.
    pub etcd: Option<(UpstreamUrl, String)>,
    pub clusters: Clusters,
    pub max_request_body_bytes: usize,
    /// `CATALOGUE_REFRESH_SECONDS`: the model catalogue is fetched again this often.
    pub catalogue_refresh_seconds: u64,
    /// Envoy runs with `allow_on_headers_stop_iteration`, so headers may wait for the body.
    pub hold_headers: bool,
    /// What this plugin instance is (`FILTER_ROLE`, set by the rendered configuration).
    pub role: FilterRole,
    /// An upstream instance (`FilterRole::Credentials`) attaches the ChatGPT credentials to
    /// every attempt, so Envoy's retry after a backend 401 goes out with the refreshed token.
    pub credentials_upstream: bool,
}

/// The same module runs as the main filter (listener) and, optionally, as the cluster's
/// upstream filter that only attaches credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterRole {
    Main,
    Credentials,
}

/// The Envoy clusters the filter calls itself. The rendered configuration uses the defaults;
/// under Istio they are named like `outbound|443||auth.openai.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clusters {
    pub catalogue: String,
    pub oauth: String,
    pub etcd: String,
    pub instructions_base: String,
    pub instructions_codex: String,
}

/// Where configuration values come from: the plugin configuration wins over the environment.
pub trait Source {
    /// The raw value of variable `name`, `None` when unset.
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Config {
    /// Reads and validates every variable (blank counts as unset, defaults fill the rest). `Err`
    /// names the first bad variable and its allowed values; the filter then refuses to start.
    pub fn load(source: &dyn Source) -> Result<Self, ConfigError> {
        let var = |name: &str| source.get(name).filter(|v| !v.trim().is_empty());
        let (output_mode, prefixed_modes) = match var("REASONING_OUTPUT_MODE") {
            Some(raw) => OutputMode::parse_setting(&raw)
                .ok_or_else(|| allowed("REASONING_OUTPUT_MODE", &raw, OutputMode::SETTING_VALUES))?,
            None => (OutputMode::OpenAi, false),
        };
        let default_effort = match var("REASONING_EFFORT") {
            Some(raw) => {
                Some(Effort::parse(&raw).ok_or_else(|| allowed("REASONING_EFFORT", &raw, Effort::VALUES))?)
            }
            None => None,
        };
        let default_summary = match var("REASONING_SUMMARY") {
            Some(raw) => Summary::parse_setting(&raw)
                .ok_or_else(|| allowed("REASONING_SUMMARY", &raw, Summary::SETTING_VALUES))?,
            None => Summary::Auto,
        };
        let upstream = responses_url(&var)?;
        let models = ModelSettings::new(var("EXPOSE_MODELS").as_deref(), var("DEBUG_MODEL"))?;
        let tools_format = match var("UPSTREAM_TOOLS_FORMAT")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("flat") => ToolsFormat::Flat,
            Some("nested") => ToolsFormat::Nested,
            Some(other) => return Err(allowed("UPSTREAM_TOOLS_FORMAT", other, TOOLS_FORMATS)),
        };
        let optional_url = |variable: &'static str| {
            var(variable)
                .map(|raw| {
                    UpstreamUrl::parse(raw.trim()).map_err(|problem| ConfigError::new(variable, problem))
                })
                .transpose()
        };
        let ollama = optional_url("OLLAMA_API_URL")?.is_some();
        Ok(Self {
            keys: KeySet::from_settings(var("CLIENT_KEYS").as_deref(), var("OPENAI_API_KEY").as_deref())?,
            usage_endpoint: match var("USAGE_ENDPOINT") {
                None => true,
                raw => flag(raw, "USAGE_ENDPOINT")?,
            },
            codex_auth: var("OPENAI_CODEX_AUTH"),
            upstream,
            models,
            default_effort,
            default_summary,
            output_mode,
            prefixed_modes,
            verbose: flag(var("VERBOSE"), "VERBOSE")?,
            auth: UpstreamAuth::from_settings(&var)?,
            identity: Identity::from_settings(&var),
            forward: ForwardMode::from_settings(&var)?,
            tools_format,
            ollama,
            instructions_base_url: optional_url("INSTRUCTIONS_BASE_URL")?,
            instructions_codex_url: optional_url("INSTRUCTIONS_CODEX_URL")?,
            // A login from another issuer is refreshed there too.
            refresh_url: match optional_url("CODEX_REFRESH_TOKEN_URL")? {
                Some(url) => url,
                None => UpstreamUrl::parse(&format!("{}{TOKEN_PATH}", auth_issuer(&var)?))
                    .map_err(|p| ConfigError::new("CODEX_AUTH_ISSUER", p))?,
            },
            etcd: match var("TOKEN_STORE")
                .map(|v| v.trim().to_ascii_lowercase())
                .as_deref()
            {
                None | Some("memory") => None,
                Some("etcd") => Some((
                    optional_url("ETCD_ENDPOINT")?.ok_or_else(|| {
                        ConfigError::new("ETCD_ENDPOINT", "must be set when TOKEN_STORE=etcd")
                    })?,
                    var("ETCD_KEY").map_or_else(|| DEFAULT_ETCD_KEY.to_string(), |k| k.trim().to_string()),
                )),
                Some(other) => return Err(allowed("TOKEN_STORE", other, TOKEN_STORES)),
            },
            clusters: Clusters {
                catalogue: var("CATALOGUE_CLUSTER")
                    .map_or_else(|| DEFAULT_CATALOGUE_CLUSTER.to_string(), |v| v.trim().to_string()),
                oauth: var("OAUTH_CLUSTER")
                    .map_or_else(|| DEFAULT_OAUTH_CLUSTER.to_string(), |v| v.trim().to_string()),
                etcd: var("ETCD_CLUSTER")
                    .map_or_else(|| DEFAULT_ETCD_CLUSTER.to_string(), |v| v.trim().to_string()),
                instructions_base: var("INSTRUCTIONS_BASE_CLUSTER").map_or_else(
                    || DEFAULT_INSTRUCTIONS_BASE_CLUSTER.to_string(),
                    |v| v.trim().to_string(),
                ),
                instructions_codex: var("INSTRUCTIONS_CODEX_CLUSTER").map_or_else(
                    || DEFAULT_INSTRUCTIONS_CODEX_CLUSTER.to_string(),
                    |v| v.trim().to_string(),
                ),
            },
            client_id: var("CHATGPT_LOCAL_CLIENT_ID")
                .map_or_else(|| DEFAULT_CLIENT_ID.to_string(), |c| c.trim().to_string()),
            max_request_body_bytes: positive(
                var("MAX_REQUEST_BODY_BYTES"),
                "MAX_REQUEST_BODY_BYTES",
                DEFAULT_MAX_REQUEST_BODY_BYTES,
            )?,
            catalogue_refresh_seconds: u64::try_from(positive(
                var("CATALOGUE_REFRESH_SECONDS"),
                "CATALOGUE_REFRESH_SECONDS",
                DEFAULT_CATALOGUE_REFRESH_SECONDS,
            )?)
            .unwrap_or(u64::MAX),
            hold_headers: flag(var("ENVOY_HOLD_HEADERS"), "ENVOY_HOLD_HEADERS")?,
            role: match var("FILTER_ROLE")
                .map(|r| r.trim().to_ascii_lowercase())
                .as_deref()
            {
                None | Some("main") => FilterRole::Main,
                Some("credentials") => FilterRole::Credentials,
                Some(other) => return Err(allowed("FILTER_ROLE", other, FILTER_ROLES)),
            },
            credentials_upstream: flag(var("CREDENTIALS_UPSTREAM"), "CREDENTIALS_UPSTREAM")?,
        })
    }
}

impl Config {
    /// The configured ChatGPT login, read at start-up besides `load`: with the ChatGPT
    /// upstream, `OPENAI_CODEX_AUTH` must be an auth.json document the filter can read (the
    /// problem never quotes the document). `None` without it, or with an API-key upstream.
    pub fn chatgpt_login(&self) -> Result<Option<ChatgptTokens>, ConfigError> {
        Ok(self
            .chatgpt_logins()?
            .into_iter()
            .next()
            .map(|login| login.tokens))
    }
}

impl Config {
    /// Every configured ChatGPT login: `OPENAI_CODEX_AUTH` as one auth.json document or a
    /// JSON array of them (a pool), each with its label. Empty without it, or with an API-key
    /// upstream.
    pub fn chatgpt_logins(&self) -> Result<Vec<Login>, ConfigError> {
        match self.codex_auth.as_deref() {
            Some(document) if self.auth.is_chatgpt() => {
                login::parse(document).map_err(|problem| ConfigError::new("OPENAI_CODEX_AUTH", problem))
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// `CODEX_AUTH_ISSUER`: the OAuth issuer's origin (and base path), without a trailing `/`;
/// the login's endpoints (`/oauth/authorize`, `/oauth/token`, `/api/accounts/deviceauth/*`)
/// hang under it. `var` reads a value, blank counting as unset.
pub fn auth_issuer(var: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let Some(raw) = var("CODEX_AUTH_ISSUER") else {
        return Ok(DEFAULT_AUTH_ISSUER.to_string());
    };
    let issuer = raw.trim().trim_end_matches('/');
    let url = UpstreamUrl::parse(issuer).map_err(|p| ConfigError::new("CODEX_AUTH_ISSUER", p))?;
    if url.path.contains(['?', '#']) {
        return Err(ConfigError::new(
            "CODEX_AUTH_ISSUER",
            format!("{issuer:?} must be an origin (and path) without a query"),
        ));
    }
    Ok(issuer.to_string())
}

/// The plugin configuration: a JSON object of variable names to values (strings, numbers or
/// booleans), the alternative to environment variables.
pub fn plugin_values(bytes: &[u8]) -> Result<HashMap<String, String>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(HashMap::new());
    }
    let object: HashMap<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| format!("is not a JSON object: {e}"))?;
    object
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Bool(_) | serde_json::Value::Number(_) => Ok((k, v.to_string())),
            _ => Err(format!("value of {k} must be a string, number or boolean")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::values::ascii_header_value;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&move |name: &str| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_original() {
        let cfg = load(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.keys.is_open());
        assert!(cfg.usage_endpoint);
        assert_eq!(cfg.default_effort, None);
        assert_eq!(cfg.default_summary, Summary::Auto);
        assert_eq!(cfg.output_mode, OutputMode::OpenAi);
        assert!(!cfg.prefixed_modes);
        assert_eq!(cfg.upstream.path, "/backend-api/codex/responses");
        assert_eq!(cfg.max_request_body_bytes, DEFAULT_MAX_REQUEST_BODY_BYTES);
        assert!(cfg.identity.user_agent().starts_with("codex_cli_rs/0.169.0 ("));
        assert!(cfg.auth.is_chatgpt());
        assert_eq!(
            (cfg.refresh_url.host.as_str(), cfg.refresh_url.path.as_str()),
            ("auth.openai.com", "/oauth/token")
        );
        assert_eq!(cfg.client_id, "app_EMoamEEZ73f0CkXaXp7hrann");
        assert!(!cfg.ollama);
        assert_eq!(cfg.catalogue_refresh_seconds, 300);
        assert_eq!(cfg.clusters.catalogue, "codex_catalogue");
    }

    #[test]
    fn bad_values_name_the_variable_and_the_allowed_values() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "REASONING_EFFORT",
                "extreme",
                "none, minimal, low, medium, high, xhigh",
            ),
            ("REASONING_SUMMARY", "loud", "auto, concise, detailed, none"),
            (
                "REASONING_OUTPUT_MODE",
                "xml",
                "openai, tagged, o3, r1, hidden, all",
            ),
            ("VERBOSE", "maybe", "true, false"),
            ("USAGE_ENDPOINT", "maybe", "true, false"),
            (
                "CLIENT_KEYS",
                "[{\"name\": \"a\"}]",
                "line 1, entry \"a\": has neither",
            ),
            ("MAX_REQUEST_BODY_BYTES", "-1", "positive whole number"),
            ("CATALOGUE_REFRESH_SECONDS", "0", "positive whole number"),
            ("UPSTREAM_TOOLS_FORMAT", "deep", "flat, nested"),
            ("OLLAMA_API_URL", "localhost:11434", "http"),
            ("INSTRUCTIONS_BASE_URL", "file:///x", "http"),
            ("CODEX_REFRESH_TOKEN_URL", "auth.openai.com/oauth/token", "http"),
            (
                "UPSTREAM_AUTH_MODE",
                "magic",
                "chatgpt_token, apikey_env, apikey_auth_json",
            ),
            (
                "FORWARD_CLIENT_HEADERS_MODE",
                "all",
                "off, safe, list, override, override-codex",
            ),
            ("CHATGPT_RESPONSES_URL", "ftp://x/y", "http"),
            ("EXPOSE_MODELS", "[1,2]", "strings"),
        ];
        for (variable, value, expected) in cases {
            let err = load(&[(variable, value)])
                .err()
                .unwrap_or_else(|| panic!("{variable}={value} accepted"));
            assert_eq!(err.variable, *variable);
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn the_issuer_moves_the_refresh_endpoint_unless_that_is_set() {
        let cfg =
            load(&[("CODEX_AUTH_ISSUER", "http://127.0.0.1:9/auth/")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (
                cfg.refresh_url.host.as_str(),
                cfg.refresh_url.port,
                cfg.refresh_url.path.as_str()
            ),
            ("127.0.0.1", 9, "/auth/oauth/token")
        );
        let cfg = load(&[
            ("CODEX_AUTH_ISSUER", "http://127.0.0.1:9"),
            ("CODEX_REFRESH_TOKEN_URL", "https://tokens.example/t"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.refresh_url.host, "tokens.example");
        let var = |v: &'static str| move |name: &str| (name == "CODEX_AUTH_ISSUER").then(|| v.to_string());
        assert_eq!(
            auth_issuer(&var("https://auth.example.com/")).ok().as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(
            auth_issuer(&|_: &str| None).ok().as_deref(),
            Some(DEFAULT_AUTH_ISSUER)
        );
        for bad in [
            "auth.example.com",
            "https://a.example/?x=1",
            "https://user@a.example",
        ] {
            assert_eq!(
                auth_issuer(&var(bad)).err().map(|e| e.variable),
                Some("CODEX_AUTH_ISSUER"),
                "{bad}"
            );
        }
    }

    #[test]
    fn etcd_needs_an_endpoint() {
        let err = load(&[("TOKEN_STORE", "etcd")]).err().map(|e| e.variable);
        assert_eq!(err, Some("ETCD_ENDPOINT"));
        let cfg = load(&[
            ("TOKEN_STORE", "ETCD"),
            ("ETCD_ENDPOINT", "http://127.0.0.1:2379"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let (url, key) = cfg.etcd.unwrap_or_else(|| panic!("no etcd"));
        assert_eq!(
            (url.port, key.as_str()),
            (2379, crate::core::auth::etcd::DEFAULT_KEY)
        );
    }

    #[test]
    fn blank_values_count_as_unset() {
        let cfg =
            load(&[("OPENAI_API_KEY", "  "), ("REASONING_EFFORT", "")]).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.keys.is_open());
        assert_eq!(cfg.default_effort, None);
    }

    #[test]
    fn aliases_and_case_are_accepted() {
        let cfg = load(&[
            ("REASONING_SUMMARY", "OFF"),
            ("REASONING_OUTPUT_MODE", " All "),
            ("VERBOSE", "TRUE"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.default_summary, Summary::None);
        assert_eq!(cfg.output_mode, OutputMode::OpenAi);
        assert!(cfg.prefixed_modes);
        assert!(cfg.verbose);
    }

    #[test]
    fn plugin_configuration_values() {
        let values = plugin_values(br#"{"A": "x", "B": true, "C": 5, "D": null}"#).unwrap_or_default();
        assert_eq!(values.get("A").map(String::as_str), Some("x"));
        assert_eq!(values.get("B").map(String::as_str), Some("true"));
        assert_eq!(values.get("C").map(String::as_str), Some("5"));
        assert!(!values.contains_key("D"));
        assert!(plugin_values(b"  ").is_ok_and(|v| v.is_empty()));
        assert!(plugin_values(b"[1]").is_err());
        assert!(plugin_values(br#"{"A": [1]}"#).is_err());
    }

    #[test]
    fn user_agent_is_ascii() {
        assert_eq!(ascii_header_value("é-ok\u{7f}"), "_-ok_");
    }
}
