//! Client header forwarding (`FORWARD_CLIENT_HEADERS_MODE`): which of the client's headers,
//! or which configured values, join the upstream request. Credentials and the protocol
//! headers the filter owns are never forwarded or overridden.

use crate::core::config::values::ConfigError;
use crate::core::config::values::{allowed, json_object};

/// What the `safe` mode forwards. Client addresses (`x-forwarded-*`, `cf-connecting-ip`) are
/// not among them: Envoy's route strips `x-forwarded-*` before any upstream.
pub const SAFE_HEADERS: &[&str] = &[
    "user-agent",
    "accept-language",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "sec-ch-ua-arch",
    "sec-ch-ua-model",
];

/// Never forwarded nor overridden, whatever the mode.
const PROTECTED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "accept",
    "accept-encoding",
    "openai-beta",
    "chatgpt-account-id",
    "session-id",
    "session_id",
    "x-request-id",
];

/// `FORWARD_CLIENT_HEADERS_MODE` as parsed at start-up; applied per request by
/// [`ForwardMode::extra_headers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardMode {
    Off,
    /// Forward the client's values of these (lower-case) names.
    Pass(Vec<String>),
    /// Set these configured headers.
    Override(Vec<(String, String)>),
    /// Derive a Codex identity per request from the client's hints; optional fixed values.
    OverrideCodex {
        user_agent: Option<String>,
        originator: Option<String>,
    },
}

impl ForwardMode {
    /// The accepted setting values, for the start-up error and the settings manifest.
    pub const VALUES: &'static [&'static str] = &["off", "safe", "list", "override", "override-codex"];

    /// Reads the mode and the variable it needs (`…_LIST`, `…_OVERRIDE`, `…_OVERRIDE_CODEX`);
    /// unset means `off`. `Err` names the variable for an unknown mode, or a value that is not
    /// a JSON object of strings.
    pub fn from_settings(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let Some(raw) = var("FORWARD_CLIENT_HEADERS_MODE") else {
            return Ok(Self::Off);
        };
        Ok(match raw.trim().to_ascii_lowercase().as_str() {
            "off" => Self::Off,
            "safe" => Self::Pass(SAFE_HEADERS.iter().map(|h| h.to_string()).collect()),
            "list" => Self::Pass(
                var("FORWARD_CLIENT_HEADERS_LIST")
                    .unwrap_or_default()
                    .split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect(),
            ),
            "override" => Self::Override(
                json_object(
                    var("FORWARD_CLIENT_HEADERS_OVERRIDE"),
                    "FORWARD_CLIENT_HEADERS_OVERRIDE",
                )?
                .into_iter()
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v))
                .collect(),
            ),
            "override-codex" | "override_codex" => {
                let values = json_object(
                    var("FORWARD_CLIENT_HEADERS_OVERRIDE_CODEX"),
                    "FORWARD_CLIENT_HEADERS_OVERRIDE_CODEX",
                )?;
                let pick = |name: &str| {
                    values
                        .iter()
                        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_string())
                };
                Self::OverrideCodex {
                    user_agent: pick("user-agent"),
                    originator: pick("originator"),
                }
            }
            _ => return Err(allowed("FORWARD_CLIENT_HEADERS_MODE", &raw, Self::VALUES)),
        })
    }

    /// The extra upstream headers for one request. `auth_header` is the configured upstream
    /// credential header, protected like `authorization`.
    pub fn extra_headers(&self, client: &[(String, String)], auth_header: &str) -> Vec<(String, String)> {
        let allowed = |name: &str| {
            !name.starts_with(':')
                && !name.starts_with("x-envoy-")
                && name != auth_header
                && !PROTECTED.contains(&name)
        };
        match self {
            Self::Off | Self::OverrideCodex { .. } => Vec::new(),
            Self::Pass(names) => client
                .iter()
                .filter(|(name, value)| names.contains(name) && allowed(name) && !value.trim().is_empty())
                .cloned()
                .collect(),
            Self::Override(pairs) => pairs
                .iter()
                .filter(|(name, value)| allowed(name) && !value.trim().is_empty())
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn mode(pairs: &[(&str, &str)]) -> Result<ForwardMode, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ForwardMode::from_settings(&|n: &str| map.get(n).cloned())
    }

    fn client() -> Vec<(String, String)> {
        [
            ("user-agent", "Open WebUI"),
            ("accept-language", "fr"),
            ("authorization", "Bearer client"),
            ("cookie", "c"),
            ("x-api-key", "secret"),
            ("x-trace", "t1"),
            ("x-empty", " "),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn names(headers: &[(String, String)]) -> Vec<&str> {
        headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn modes_forward_what_they_promise_and_never_credentials() {
        let safe = mode(&[("FORWARD_CLIENT_HEADERS_MODE", "SAFE")]).unwrap();
        assert_eq!(
            names(&safe.extra_headers(&client(), "authorization")),
            ["user-agent", "accept-language"]
        );
        let list = mode(&[
            ("FORWARD_CLIENT_HEADERS_MODE", "list"),
            (
                "FORWARD_CLIENT_HEADERS_LIST",
                " X-Trace, authorization,cookie, x-empty,, x-api-key",
            ),
        ])
        .unwrap();
        // x-api-key is forwarded only because it is not the configured credential header.
        assert_eq!(
            names(&list.extra_headers(&client(), "authorization")),
            ["x-api-key", "x-trace"]
        );
        assert_eq!(names(&list.extra_headers(&client(), "x-api-key")), ["x-trace"]);
        let over = mode(&[
            ("FORWARD_CLIENT_HEADERS_MODE", "override"),
            ("FORWARD_CLIENT_HEADERS_OVERRIDE", r#"{"User-Agent": "ua", "X-Extra": "1", "Authorization": "x", "Accept": "y", "X-Null": null}"#),
        ])
        .unwrap();
        assert_eq!(
            over.extra_headers(&[], "authorization"),
            [
                ("user-agent".to_string(), "ua".to_string()),
                ("x-extra".to_string(), "1".to_string())
            ]
        );
        assert_eq!(mode(&[]).unwrap(), ForwardMode::Off);
        assert!(
            mode(&[("FORWARD_CLIENT_HEADERS_MODE", "off")])
                .unwrap()
                .extra_headers(&client(), "authorization")
                .is_empty()
        );
    }

    #[test]
    fn override_codex_reads_its_fixed_values() {
        let m = mode(&[
            ("FORWARD_CLIENT_HEADERS_MODE", "override_codex"),
            (
                "FORWARD_CLIENT_HEADERS_OVERRIDE_CODEX",
                r#"{"User-Agent": " ua/1 ", "other": "x"}"#,
            ),
        ])
        .unwrap();
        assert_eq!(
            m,
            ForwardMode::OverrideCodex {
                user_agent: Some("ua/1".into()),
                originator: None
            }
        );
    }

    #[test]
    fn invalid_settings_stop_start_up() {
        for pairs in [
            vec![("FORWARD_CLIENT_HEADERS_MODE", "all")],
            vec![
                ("FORWARD_CLIENT_HEADERS_MODE", "override"),
                ("FORWARD_CLIENT_HEADERS_OVERRIDE", "{bad"),
            ],
            vec![
                ("FORWARD_CLIENT_HEADERS_MODE", "override"),
                ("FORWARD_CLIENT_HEADERS_OVERRIDE", "[1]"),
            ],
            vec![
                ("FORWARD_CLIENT_HEADERS_MODE", "override-codex"),
                ("FORWARD_CLIENT_HEADERS_OVERRIDE_CODEX", r#"{"a": 1}"#),
            ],
        ] {
            let err = mode(&pairs).err().unwrap_or_else(|| panic!("accepted {pairs:?}"));
            assert!(err.variable.starts_with("FORWARD_CLIENT_HEADERS"), "{err}");
        }
    }
}
