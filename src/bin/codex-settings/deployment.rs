//! Settings the filter never reads: they shape the rendered Envoy configuration (listener,
//! admin port, idle timeout, portable mode, CA bundle, CORS) or only `make run` uses them.
//! Validated like the filter's own, with the same "invalid NAME: ..." messages.

use std::net::IpAddr;

use codex_openai_wrapper::core::config::values::{ConfigError, allowed, flag, positive};

pub const DEFAULT_PORT: u16 = 8787;
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0";
pub const DEFAULT_ADMIN_PORT: u16 = 9901;
pub const DEFAULT_STREAM_IDLE_TIMEOUT_SECONDS: u32 = 300;
pub const DEFAULT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
pub const ANY_ORIGIN: &str = "*";
pub const DEFAULT_CODEX_HOME: &str = "~/.codex";
pub const DEFAULT_ENVOY_LOG_LEVEL: &str = "info";
/// Envoy's `--log-level` names.
pub const ENVOY_LOG_LEVELS: &[&str] = &[
    "trace", "debug", "info", "warning", "warn", "error", "critical", "off",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub listen_address: String,
    pub port: u16,
    pub admin_port: u16,
    /// 0 disables Envoy's idle timeouts (allowed on purpose).
    pub stream_idle_timeout_seconds: u32,
    /// `ENVOY_PORTABLE`: no `allow_on_headers_stop_iteration`, no upstream credentials instance.
    pub portable: bool,
    pub ca_bundle: String,
    /// Exact origins; `None` is any origin (`*`).
    pub cors_allow_origins: Option<Vec<String>>,
    pub run: Run,
}

/// What only `make run` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// `CODEX_HOME` as written (`~` is expanded by whoever reads the file).
    pub codex_home: String,
    pub envoy_bin: Option<String>,
    pub envoy_log_level: String,
    /// Unset: Envoy's default (one worker per core).
    pub envoy_concurrency: Option<usize>,
}

impl Deployment {
    pub fn load(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let trimmed = |name: &str| var(name).map(|v| v.trim().to_string());
        Ok(Self {
            listen_address: listen_address(trimmed("LISTEN_ADDRESS"))?,
            port: port(trimmed("PORT"), "PORT", DEFAULT_PORT)?,
            admin_port: port(
                trimmed("ENVOY_ADMIN_PORT"),
                "ENVOY_ADMIN_PORT",
                DEFAULT_ADMIN_PORT,
            )?,
            stream_idle_timeout_seconds: match trimmed("STREAM_IDLE_TIMEOUT_SECONDS") {
                None => DEFAULT_STREAM_IDLE_TIMEOUT_SECONDS,
                Some(raw) => raw.parse().map_err(|_| {
                    ConfigError::new(
                        "STREAM_IDLE_TIMEOUT_SECONDS",
                        format!("{raw:?} is not a whole number of seconds (0 disables the timeout)"),
                    )
                })?,
            },
            portable: flag(var("ENVOY_PORTABLE"), "ENVOY_PORTABLE")?,
            ca_bundle: trimmed("ENVOY_CA_BUNDLE").unwrap_or_else(|| DEFAULT_CA_BUNDLE.to_string()),
            cors_allow_origins: cors_origins(trimmed("CORS_ALLOW_ORIGINS"))?,
            run: Run {
                codex_home: codex_home(var),
                envoy_bin: trimmed("ENVOY_BIN"),
                envoy_log_level: match trimmed("ENVOY_LOG_LEVEL").map(|l| l.to_ascii_lowercase()) {
                    None => DEFAULT_ENVOY_LOG_LEVEL.to_string(),
                    Some(level) if ENVOY_LOG_LEVELS.contains(&level.as_str()) => level,
                    Some(other) => return Err(allowed("ENVOY_LOG_LEVEL", &other, ENVOY_LOG_LEVELS)),
                },
                envoy_concurrency: var("ENVOY_CONCURRENCY")
                    .map(|raw| positive(Some(raw), "ENVOY_CONCURRENCY", 1))
                    .transpose()?,
            },
        })
    }
}

/// `CODEX_HOME`, where `make run` looks for `auth.json`; needed before anything else is
/// validated (the document it holds is part of what is validated).
pub fn codex_home(var: &dyn Fn(&str) -> Option<String>) -> String {
    var("CODEX_HOME").map_or_else(|| DEFAULT_CODEX_HOME.to_string(), |v| v.trim().to_string())
}

fn port(raw: Option<String>, variable: &'static str, default: u16) -> Result<u16, ConfigError> {
    match raw {
        None => Ok(default),
        Some(raw) => raw.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            ConfigError::new(
                variable,
                format!("{raw:?} is not a port (a whole number from 1 to 65535)"),
            )
        }),
    }
}

fn listen_address(raw: Option<String>) -> Result<String, ConfigError> {
    match raw {
        None => Ok(DEFAULT_LISTEN_ADDRESS.to_string()),
        // Envoy's listener takes an IP address, not a host name.
        Some(raw) => raw.parse::<IpAddr>().map(|_| raw.clone()).map_err(|_| {
            ConfigError::new(
                "LISTEN_ADDRESS",
                format!(
                    "{raw:?} is not an IP address (0.0.0.0 for every interface, 127.0.0.1 for this machine)"
                ),
            )
        }),
    }
}

/// `*` alone, or a comma-separated list of exact origins (`scheme://host[:port]`): Envoy matches
/// them literally, so a path, a trailing `/` or a wildcard would never match a browser's origin.
fn cors_origins(raw: Option<String>) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let origins: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect();
    if origins == [ANY_ORIGIN] {
        return Ok(None);
    }
    if origins.is_empty() || !origins.iter().all(|o| is_origin(o)) {
        return Err(ConfigError::new(
            "CORS_ALLOW_ORIGINS",
            format!(
                "{raw:?} must be `*` alone or a comma-separated list of origins such as \
                 https://app.example.com (scheme://host[:port], no path, no trailing /)"
            ),
        ));
    }
    Ok(Some(origins))
}

fn is_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !authority.is_empty()
        && !authority.contains(['/', '?', '#', '@', '*', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::of;

    fn load(pairs: &[(&str, &str)]) -> Result<Deployment, ConfigError> {
        let settings = of(pairs);
        Deployment::load(&|name: &str| settings.var(name))
    }

    #[test]
    fn defaults() {
        let d = load(&[]).unwrap();
        assert_eq!(
            (d.listen_address.as_str(), d.port, d.admin_port),
            ("0.0.0.0", 8787, 9901)
        );
        assert_eq!(d.stream_idle_timeout_seconds, 300);
        assert!(!d.portable);
        assert_eq!(d.ca_bundle, "/etc/ssl/certs/ca-certificates.crt");
        assert_eq!(d.cors_allow_origins, None);
        assert_eq!(d.run.codex_home, "~/.codex");
        assert_eq!(
            (
                d.run.envoy_bin,
                d.run.envoy_log_level.as_str(),
                d.run.envoy_concurrency
            ),
            (None, "info", None)
        );
    }

    #[test]
    fn values_are_trimmed_and_case_folded() {
        let d = load(&[
            ("PORT", " 9000 "),
            ("LISTEN_ADDRESS", " ::1 "),
            ("STREAM_IDLE_TIMEOUT_SECONDS", "0"),
            ("ENVOY_PORTABLE", "YES"),
            ("ENVOY_LOG_LEVEL", "Debug"),
            ("ENVOY_CONCURRENCY", "4"),
        ])
        .unwrap();
        assert_eq!(
            (d.port, d.listen_address.as_str(), d.stream_idle_timeout_seconds),
            (9000, "::1", 0)
        );
        assert!(d.portable);
        assert_eq!(
            (d.run.envoy_log_level.as_str(), d.run.envoy_concurrency),
            ("debug", Some(4))
        );
    }

    #[test]
    fn explicit_cors_origins() {
        let d = load(&[(
            "CORS_ALLOW_ORIGINS",
            " https://a.example.com , http://localhost:3000,",
        )])
        .unwrap();
        assert_eq!(
            d.cors_allow_origins,
            Some(vec![
                "https://a.example.com".to_string(),
                "http://localhost:3000".to_string()
            ])
        );
        assert_eq!(
            load(&[("CORS_ALLOW_ORIGINS", " * ")]).unwrap().cors_allow_origins,
            None
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: &[(&str, &str)] = &[
            ("PORT", "0"),
            ("PORT", "65536"),
            ("PORT", "http"),
            ("ENVOY_ADMIN_PORT", "-1"),
            ("LISTEN_ADDRESS", "localhost"),
            ("STREAM_IDLE_TIMEOUT_SECONDS", "-1"),
            ("STREAM_IDLE_TIMEOUT_SECONDS", "5m"),
            ("ENVOY_PORTABLE", "maybe"),
            ("ENVOY_LOG_LEVEL", "loud"),
            ("ENVOY_CONCURRENCY", "0"),
            ("CORS_ALLOW_ORIGINS", "*, https://a.example.com"),
            ("CORS_ALLOW_ORIGINS", "https://a.example.com/"),
            ("CORS_ALLOW_ORIGINS", "https://*.example.com"),
            ("CORS_ALLOW_ORIGINS", "a.example.com"),
            ("CORS_ALLOW_ORIGINS", "https://a.example.com/app"),
            ("CORS_ALLOW_ORIGINS", ","),
        ];
        for (variable, value) in cases {
            let err = load(&[(variable, value)])
                .err()
                .unwrap_or_else(|| panic!("{variable}={value} accepted"));
            assert_eq!(err.variable, *variable);
            assert!(
                err.to_string().starts_with(&format!("invalid {variable}: ")),
                "{err}"
            );
        }
        let err = load(&[("ENVOY_LOG_LEVEL", "loud")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("trace, debug, info, warning, warn, error, critical, off"),
            "{err}"
        );
    }
}
