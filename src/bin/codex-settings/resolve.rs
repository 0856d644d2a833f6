//! Everything the renderer needs, worked out by the filter's own code: the filter's view of
//! the settings is loaded exactly as the filter will load it at start-up (the plugin
//! configuration the renderer writes, over the environment variables `host_env_keys` passes),
//! so a value the filter would refuse stops the renderer with the same message.

use serde::Serialize;

use codex_openai_wrapper::core::config::upstream::responses_url_setting;
use codex_openai_wrapper::core::config::upstream_url::UpstreamUrl;
use codex_openai_wrapper::core::config::values::ConfigError;
use codex_openai_wrapper::core::config::{Config, plugin_values};
use codex_openai_wrapper::core::keys::file as keys_file;
use codex_openai_wrapper::core::reasoning::OutputMode;

use crate::deployment::Deployment;
use crate::settings::Settings;
use crate::variables::host_env_keys;

/// Router targets only: the filter never calls these clusters by name.
pub const CODEX_CLUSTER: &str = "codex";
pub const OLLAMA_CLUSTER: &str = "ollama";

#[derive(Debug, Serialize)]
pub struct Resolved {
    pub listener: Listener,
    pub admin_port: u16,
    pub max_request_body_bytes: usize,
    pub stream_idle_timeout_seconds: u32,
    pub portable: bool,
    pub ca_bundle: String,
    /// Exact origins; `null` allows any origin.
    pub cors_allow_origins: Option<Vec<String>>,
    pub upstreams: Upstreams,
    /// The Codex cluster gets the filter's credentials instance (and the 401 retry): ChatGPT
    /// login only, and not in portable mode (Istio's WasmPlugin cannot place one there).
    pub credentials_upstream: bool,
    /// How many ChatGPT accounts `OPENAI_CODEX_AUTH` holds (0 without a login): with more
    /// than one, the Codex route retries a 429 on the next account.
    pub accounts: usize,
    pub plugin_configuration: PluginConfigurations,
    pub host_env_keys: Vec<&'static str>,
    /// `REASONING_OUTPUT_MODE=all` serves `/<prefix>/v1/...` for each of these.
    pub reasoning_output_prefixes: Vec<&'static str>,
    pub run: Run,
}

#[derive(Debug, Serialize)]
pub struct Listener {
    pub address: String,
    pub port: u16,
}

#[derive(Debug, Serialize)]
pub struct Upstreams {
    pub codex: Upstream,
    /// The Codex backend's host again, for the filter's own model catalogue calls (ChatGPT
    /// login only): a cluster without the credentials instance.
    pub catalogue: Option<Upstream>,
    /// The OAuth token endpoint the filter refreshes ChatGPT tokens against.
    pub oauth: Upstream,
    pub ollama: Option<Ollama>,
    pub instructions_base: Option<Upstream>,
    pub instructions_codex: Option<Upstream>,
    /// With `TOKEN_STORE=etcd` only.
    pub etcd: Option<Upstream>,
}

#[derive(Debug, Serialize)]
pub struct Upstream {
    pub cluster: String,
    /// The variable that supplied the URL.
    pub variable: &'static str,
    pub url: String,
    pub tls: bool,
    /// A host name or an IP address (without brackets).
    pub host: String,
    pub port: u16,
    pub path: String,
    /// The `Host` header: the port only when it is not the scheme's.
    pub authority: String,
    pub ip_literal: bool,
}

#[derive(Debug, Serialize)]
pub struct Ollama {
    #[serde(flatten)]
    pub upstream: Upstream,
    /// `/api/` → `<base path>/api/` when the base URL has a path (`http://h:11434/ollama`).
    pub api_prefix_rewrite: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PluginConfigurations {
    /// The listener's instance.
    pub main: MainPlugin,
    /// The Codex cluster's upstream instance, when `credentials_upstream`.
    pub credentials: CredentialsPlugin,
}

/// Non-secret values only: the plugin configuration is visible in the admin `/config_dump`.
#[derive(Debug, Serialize)]
pub struct MainPlugin {
    #[serde(rename = "ENVOY_HOLD_HEADERS")]
    pub hold_headers: bool,
    #[serde(rename = "MAX_REQUEST_BODY_BYTES")]
    pub max_request_body_bytes: usize,
    #[serde(rename = "CREDENTIALS_UPSTREAM", skip_serializing_if = "std::ops::Not::not")]
    pub credentials_upstream: bool,
    /// `CLIENT_KEYS_FILE`, read and normalised: names, digests (a plain `key` is hashed here,
    /// so neither the filter nor Envoy's configuration holds one), limits, models, routes.
    #[serde(rename = "CLIENT_KEYS", skip_serializing_if = "Option::is_none")]
    pub client_keys: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CredentialsPlugin {
    #[serde(rename = "FILTER_ROLE")]
    pub role: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Run {
    pub codex_home: String,
    pub envoy_bin: Option<String>,
    pub envoy_log_level: String,
    pub envoy_concurrency: Option<usize>,
}

pub fn resolve(settings: &Settings) -> Result<Resolved, ConfigError> {
    let var = |name: &str| settings.var(name);
    let deployment = Deployment::load(&var)?;
    // The body limit and the auth mode decide what the plugin configuration says; both are
    // read the way the filter reads them.
    let first = filter_view(
        settings,
        &serde_json::json!({"MAX_REQUEST_BODY_BYTES": var("MAX_REQUEST_BODY_BYTES")}),
    )?;
    let credentials_upstream = first.auth.is_chatgpt() && !deployment.portable;
    let main = MainPlugin {
        hold_headers: !deployment.portable,
        max_request_body_bytes: first.max_request_body_bytes,
        credentials_upstream,
        client_keys: client_keys(var("CLIENT_KEYS_FILE"))?,
    };
    let credentials = CredentialsPlugin { role: "credentials" };
    let config = filter_view(settings, &main)?;
    let accounts = config.chatgpt_logins()?.len();
    if credentials_upstream {
        filter_view(settings, &credentials)?.chatgpt_login()?;
    }
    let filter_var = |name: &str| filter_env(settings, name);
    let (_, codex_variable) = responses_url_setting(&filter_var);
    let clusters = &config.clusters;
    Ok(Resolved {
        listener: Listener {
            address: deployment.listen_address,
            port: deployment.port,
        },
        admin_port: deployment.admin_port,
        max_request_body_bytes: config.max_request_body_bytes,
        stream_idle_timeout_seconds: deployment.stream_idle_timeout_seconds,
        portable: deployment.portable,
        ca_bundle: deployment.ca_bundle,
        cors_allow_origins: deployment.cors_allow_origins,
        upstreams: Upstreams {
            codex: upstream(CODEX_CLUSTER, codex_variable, &config.upstream),
            catalogue: config
                .auth
                .is_chatgpt()
                .then(|| upstream(&clusters.catalogue, codex_variable, &config.upstream)),
            oauth: upstream(&clusters.oauth, "CODEX_REFRESH_TOKEN_URL", &config.refresh_url),
            ollama: ollama(filter_var("OLLAMA_API_URL"))?,
            instructions_base: config
                .instructions_base_url
                .as_ref()
                .map(|url| upstream(&clusters.instructions_base, "INSTRUCTIONS_BASE_URL", url)),
            instructions_codex: config
                .instructions_codex_url
                .as_ref()
                .map(|url| upstream(&clusters.instructions_codex, "INSTRUCTIONS_CODEX_URL", url)),
            etcd: config
                .etcd
                .as_ref()
                .map(|(url, _)| upstream(&clusters.etcd, "ETCD_ENDPOINT", url)),
        },
        credentials_upstream,
        accounts,
        plugin_configuration: PluginConfigurations { main, credentials },
        host_env_keys: host_env_keys(),
        reasoning_output_prefixes: OutputMode::PREFIXES.iter().map(|(prefix, _)| *prefix).collect(),
        run: Run {
            codex_home: deployment.run.codex_home,
            envoy_bin: deployment.run.envoy_bin,
            envoy_log_level: deployment.run.envoy_log_level,
            envoy_concurrency: deployment.run.envoy_concurrency,
        },
    })
}

/// The keys file as the filter's `CLIENT_KEYS`; a problem names the file, the entry and its line.
fn client_keys(path: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(path) = path.map(|p| p.trim().to_string()) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new("CLIENT_KEYS_FILE", format!("cannot read {path}: {e}")))?;
    let entries =
        keys_file::parse(&text).map_err(|e| ConfigError::new("CLIENT_KEYS_FILE", format!("{path}: {e}")))?;
    Ok(Some(keys_file::normalised(&entries)))
}

/// A variable as the filter sees it in Envoy's environment: only `host_env_keys` pass.
fn filter_env(settings: &Settings, name: &str) -> Option<String> {
    host_env_keys()
        .contains(&name)
        .then(|| settings.var(name))
        .flatten()
}

/// `Config::load` from the same source the filter builds in `on_configure`: the plugin
/// configuration (through the filter's own JSON reading) over the environment.
fn filter_view(settings: &Settings, plugin: &impl Serialize) -> Result<Config, ConfigError> {
    let json = serde_json::to_vec(plugin).map_err(|e| ConfigError::new("FILTER_ROLE", e.to_string()))?;
    let plugin = plugin_values(&json).map_err(|problem| ConfigError::new("FILTER_ROLE", problem))?;
    Config::load(&|name: &str| plugin.get(name).cloned().or_else(|| filter_env(settings, name)))
}

fn upstream(cluster: &str, variable: &'static str, url: &UpstreamUrl) -> Upstream {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let default_port = if url.https { 443 } else { 80 };
    let authority = if url.port == default_port {
        host
    } else {
        format!("{host}:{}", url.port)
    };
    let scheme = if url.https { "https" } else { "http" };
    Upstream {
        cluster: cluster.to_string(),
        variable,
        url: format!("{scheme}://{authority}{}", url.path),
        tls: url.https,
        host: url.host.clone(),
        port: url.port,
        path: url.path.clone(),
        authority,
        ip_literal: url.host.parse::<std::net::IpAddr>().is_ok(),
    }
}

/// Envoy routes `/api/*` to Ollama only when `OLLAMA_API_URL` is set (the filter has already
/// checked it is an http(s) URL).
fn ollama(raw: Option<String>) -> Result<Option<Ollama>, ConfigError> {
    let Some(raw) = raw.map(|r| r.trim().to_string()) else {
        return Ok(None);
    };
    let url = UpstreamUrl::parse(&raw).map_err(|problem| ConfigError::new("OLLAMA_API_URL", problem))?;
    if url.path.contains(['?', '#']) {
        return Err(ConfigError::new(
            "OLLAMA_API_URL",
            format!("{raw:?} must be a base URL without ?query or #fragment"),
        ));
    }
    let base_path = url.path.trim_end_matches('/');
    let api_prefix_rewrite = (!base_path.is_empty()).then(|| format!("{base_path}/api/"));
    Ok(Some(Ollama {
        upstream: upstream(OLLAMA_CLUSTER, "OLLAMA_API_URL", &url),
        api_prefix_rewrite,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::of;

    fn resolved(pairs: &[(&str, &str)]) -> Resolved {
        resolve(&of(pairs)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(pairs: &[(&str, &str)]) -> ConfigError {
        resolve(&of(pairs))
            .err()
            .unwrap_or_else(|| panic!("{pairs:?} accepted"))
    }

    #[test]
    fn defaults() {
        let r = resolved(&[]);
        let codex = &r.upstreams.codex;
        assert_eq!(
            (codex.cluster.as_str(), codex.variable),
            ("codex", "CHATGPT_RESPONSES_URL")
        );
        assert_eq!(codex.url, "https://chatgpt.com/backend-api/codex/responses");
        assert_eq!(
            (codex.authority.as_str(), codex.port, codex.tls, codex.ip_literal),
            ("chatgpt.com", 443, true, false)
        );
        assert_eq!(
            (
                r.upstreams.oauth.cluster.as_str(),
                r.upstreams.oauth.host.as_str()
            ),
            ("oauth", "auth.openai.com")
        );
        assert!(r.upstreams.ollama.is_none() && r.upstreams.etcd.is_none());
        assert!(r.upstreams.instructions_base.is_none() && r.upstreams.instructions_codex.is_none());
        assert!(r.credentials_upstream && r.plugin_configuration.main.hold_headers);
        assert_eq!(r.max_request_body_bytes, 16 * 1024 * 1024);
        assert_eq!(
            r.reasoning_output_prefixes,
            ["tagged", "r1", "o3", "openai", "hidden"]
        );
        assert!(r.host_env_keys.contains(&"OPENAI_API_KEY") && !r.host_env_keys.contains(&"PORT"));
        let plugin = serde_json::to_string(&r.plugin_configuration).unwrap();
        assert_eq!(
            plugin,
            r#"{"main":{"ENVOY_HOLD_HEADERS":true,"MAX_REQUEST_BODY_BYTES":16777216,"CREDENTIALS_UPSTREAM":true},"credentials":{"FILTER_ROLE":"credentials"}}"#
        );
    }

    #[test]
    fn portable_mode_and_api_keys_have_no_credentials_instance() {
        for pairs in [
            &[("ENVOY_PORTABLE", "1")][..],
            &[("UPSTREAM_AUTH_MODE", "apikey_env"), ("UPSTREAM_API_KEY", "k")][..],
        ] {
            let r = resolved(pairs);
            assert!(!r.credentials_upstream, "{pairs:?}");
            let plugin = serde_json::to_value(&r.plugin_configuration.main).unwrap();
            assert!(plugin.get("CREDENTIALS_UPSTREAM").is_none(), "{pairs:?}");
        }
    }

    #[test]
    fn optional_upstreams_and_their_cluster_names() {
        let r = resolved(&[
            ("OLLAMA_API_URL", "http://[::1]:11434/ollama/"),
            ("INSTRUCTIONS_BASE_URL", "http://10.0.0.5:8000/prompt.md"),
            ("TOKEN_STORE", "etcd"),
            ("ETCD_ENDPOINT", "http://127.0.0.1:2379"),
            ("ETCD_CLUSTER", "outbound|2379||etcd"),
        ]);
        let ollama = r.upstreams.ollama.unwrap();
        assert_eq!(ollama.upstream.authority, "[::1]:11434");
        assert_eq!(
            (ollama.upstream.host.as_str(), ollama.upstream.ip_literal),
            ("::1", true)
        );
        assert_eq!(ollama.api_prefix_rewrite.as_deref(), Some("/ollama/api/"));
        let base = r.upstreams.instructions_base.unwrap();
        assert_eq!(
            (base.cluster.as_str(), base.authority.as_str()),
            ("instructions_base", "10.0.0.5:8000")
        );
        let etcd = r.upstreams.etcd.unwrap();
        assert_eq!((etcd.cluster.as_str(), etcd.port), ("outbound|2379||etcd", 2379));
    }

    #[test]
    fn the_filter_sees_only_host_env_keys_and_the_plugin_configuration() {
        // Not passed to the filter: set by the rendered plugin configuration instead.
        let r = resolved(&[("FILTER_ROLE", "bogus"), ("ENVOY_HOLD_HEADERS", "bogus")]);
        assert!(r.plugin_configuration.main.hold_headers);
        // A value the filter refuses stops the renderer with the filter's message.
        let err = error(&[("REASONING_EFFORT", "extreme")]);
        assert_eq!(
            err.to_string(),
            "invalid REASONING_EFFORT: \"extreme\" is not one of none, minimal, low, medium, high, xhigh, max, ultra"
        );
        assert_eq!(
            error(&[("MAX_REQUEST_BODY_BYTES", "0")]).variable,
            "MAX_REQUEST_BODY_BYTES"
        );
        assert_eq!(
            error(&[("OPENAI_CODEX_AUTH", "{broken")]).to_string(),
            "invalid OPENAI_CODEX_AUTH: the document is not valid auth.json JSON"
        );
        assert_eq!(error(&[("PORT", "http")]).variable, "PORT");
    }

    #[test]
    fn the_url_that_wins_names_its_variable() {
        let r = resolved(&[
            ("UPSTREAM_BASE_URL", "https://api.example.com:8443/v1/"),
            ("CHATGPT_RESPONSES_URL", "http://c/x"),
        ]);
        let codex = &r.upstreams.codex;
        assert_eq!(
            (codex.variable, codex.url.as_str()),
            ("UPSTREAM_BASE_URL", "https://api.example.com:8443/v1/responses")
        );
        assert_eq!(
            error(&[("UPSTREAM_RESPONSES_URL", "ftp://r/y")]).variable,
            "UPSTREAM_RESPONSES_URL"
        );
    }

    #[test]
    fn ollama_needs_a_base_url() {
        for url in [
            "localhost:11434",
            "ftp://h/x",
            "http://h:11434/?x=1",
            "http://h:11434/#f",
        ] {
            assert_eq!(
                error(&[("OLLAMA_API_URL", url)]).variable,
                "OLLAMA_API_URL",
                "{url}"
            );
        }
        assert_eq!(
            resolved(&[("OLLAMA_API_URL", "http://h:11434/")])
                .upstreams
                .ollama
                .unwrap()
                .api_prefix_rewrite,
            None
        );
    }
}

#[cfg(test)]
mod keys_file_tests {
    use super::*;
    use crate::settings::of;

    fn file(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("codex-settings-keys-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn the_keys_file_reaches_the_filter_as_digests() {
        let path = file(
            "ok",
            r#"[{"name": "ci", "key": "sk-ci-plain", "requests_per_minute": 2}, {"name": "ops", "sha256": "00000000000000000000000000000000000000000000000000000000000000aa", "admin": true}]"#,
        );
        let r = resolve(&of(&[("CLIENT_KEYS_FILE", &path)])).unwrap();
        let keys = r.plugin_configuration.main.client_keys.unwrap();
        assert!(!keys.contains("sk-ci-plain"), "{keys}");
        let list: serde_json::Value = serde_json::from_str(&keys).unwrap();
        assert_eq!(list[0]["name"], "ci");
        assert_eq!(list[0]["requests_per_minute"], 2);
        assert_eq!(list[1]["admin"], true);
        assert_eq!(list[0]["sha256"].as_str().map(str::len), Some(64));
        assert!(
            resolve(&of(&[]))
                .unwrap()
                .plugin_configuration
                .main
                .client_keys
                .is_none()
        );
    }

    #[test]
    fn a_malformed_entry_names_the_file_the_entry_and_its_line() {
        let path = file(
            "bad",
            "[\n  {\"name\": \"ci\", \"key\": \"sk-ci\"},\n  {\"name\": \"ops\", \"key\": \"sk-ops\", \"limit\": 3}\n]",
        );
        let err = resolve(&of(&[("CLIENT_KEYS_FILE", &path)])).unwrap_err();
        assert_eq!(err.variable, "CLIENT_KEYS_FILE");
        assert!(
            err.problem
                .starts_with(&format!("{path}: line 3, entry \"ops\": unknown field \"limit\"")),
            "{err}"
        );
        assert!(!err.problem.contains("sk-ops"));
        let missing = resolve(&of(&[("CLIENT_KEYS_FILE", "/nonexistent/keys.json")])).unwrap_err();
        assert!(
            missing.problem.starts_with("cannot read /nonexistent/keys.json"),
            "{missing}"
        );
    }
}
