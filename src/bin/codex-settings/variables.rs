//! Every configuration variable: who reads it, its default and the values it allows. The
//! filter's list of environment variables (`host_env_keys`) is taken from here, and the tests
//! below hold this table to what `Config::load` and `Deployment::load` actually do, and the
//! README and `.dev.vars.example` to this table.

use serde::Serialize;

use codex_openai_wrapper::core::config::header_forwarding::ForwardMode;
use codex_openai_wrapper::core::config::identity::{DEFAULT_CLIENT_VERSION, DEFAULT_ORIGINATOR, UNKNOWN};
use codex_openai_wrapper::core::config::upstream::{
    DEFAULT_AUTH_ENV_KEY, DEFAULT_AUTH_HEADER, DEFAULT_AUTH_SCHEME, DEFAULT_RESPONSES_URL,
    DEFAULT_WIRE_API_PATH, UpstreamAuth,
};
use codex_openai_wrapper::core::config::values::FLAG_VALUES;
use codex_openai_wrapper::core::config::{
    DEFAULT_AUTH_ISSUER, DEFAULT_CATALOGUE_CLUSTER, DEFAULT_CATALOGUE_REFRESH_SECONDS, DEFAULT_CLIENT_ID,
    DEFAULT_ETCD_CLUSTER, DEFAULT_ETCD_KEY, DEFAULT_INSTRUCTIONS_BASE_CLUSTER,
    DEFAULT_INSTRUCTIONS_CODEX_CLUSTER, DEFAULT_MAX_REQUEST_BODY_BYTES, DEFAULT_OAUTH_CLUSTER,
    DEFAULT_REFRESH_TOKEN_URL, FILTER_ROLES, TOKEN_STORES, TOOLS_FORMATS,
};
use codex_openai_wrapper::core::reasoning::{Effort, OutputMode, Summary};

use crate::deployment::{
    ANY_ORIGIN, DEFAULT_ADMIN_PORT, DEFAULT_CA_BUNDLE, DEFAULT_CODEX_HOME, DEFAULT_ENVOY_LOG_LEVEL,
    DEFAULT_LISTEN_ADDRESS, DEFAULT_PORT, DEFAULT_STREAM_IDLE_TIMEOUT_SECONDS, ENVOY_LOG_LEVELS,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reader {
    /// The filter, from Envoy's environment (`host_env_keys`); some also shape the rendered
    /// configuration (an upstream URL becomes a cluster).
    Filter,
    /// The renderer, which hands the value to the filter in the plugin configuration.
    Plugin,
    /// The renderer alone: the value shapes the Envoy configuration.
    Envoy,
    /// `make run` alone.
    Run,
    /// Set by the rendered configuration itself, never by a person.
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Unset means off, none, or "not used".
    Unset,
    /// Setting this value changes nothing (checked below).
    Text(&'static str),
    Number(u64),
    /// Worked out when unset; the note says from what.
    Note(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub reader: Reader,
    pub default: Fallback,
    /// Empty for free-form values.
    pub values: &'static [&'static str],
    pub secret: bool,
}

const fn v(name: &'static str, reader: Reader, default: Fallback) -> Variable {
    Variable {
        name,
        reader,
        default,
        values: &[],
        secret: false,
    }
}

const fn one_of(
    name: &'static str,
    reader: Reader,
    default: &'static str,
    values: &'static [&'static str],
) -> Variable {
    Variable {
        name,
        reader,
        default: Fallback::Text(default),
        values,
        secret: false,
    }
}

const fn secret(name: &'static str, default: Fallback) -> Variable {
    Variable {
        name,
        reader: Reader::Filter,
        default,
        values: &[],
        secret: true,
    }
}

use Fallback::{Note, Number, Text, Unset};
use Reader::{Envoy, Filter, Internal, Plugin, Run};

const TERMINAL: Fallback = Note("Envoy's environment (the User-Agent's terminal token)");

/// In the order `host_env_keys` lists the filter's variables.
pub const VARIABLES: &[Variable] = &[
    secret("OPENAI_API_KEY", Note("unset: the key gate is open")),
    secret("OPENAI_CODEX_AUTH", Note("make run: $CODEX_HOME/auth.json")),
    v("CHATGPT_RESPONSES_URL", Filter, Text(DEFAULT_RESPONSES_URL)),
    v("CHATGPT_LOCAL_CLIENT_ID", Filter, Text(DEFAULT_CLIENT_ID)),
    v("CODEX_AUTH_ISSUER", Filter, Text(DEFAULT_AUTH_ISSUER)),
    v("CODEX_REFRESH_TOKEN_URL", Filter, Text(DEFAULT_REFRESH_TOKEN_URL)),
    v("EXPOSE_MODELS", Filter, Note("the built-in catalogue")),
    v("DEBUG_MODEL", Filter, Unset),
    Variable {
        default: Note("the model's catalogue default (low for a model the catalogue does not know)"),
        ..one_of("REASONING_EFFORT", Filter, "low", Effort::VALUES)
    },
    one_of("REASONING_SUMMARY", Filter, "auto", Summary::SETTING_VALUES),
    one_of(
        "REASONING_OUTPUT_MODE",
        Filter,
        "openai",
        OutputMode::SETTING_VALUES,
    ),
    one_of("VERBOSE", Filter, "false", FLAG_VALUES),
    one_of("USAGE_ENDPOINT", Filter, "true", FLAG_VALUES),
    one_of("UPSTREAM_AUTH_MODE", Filter, "chatgpt_token", UpstreamAuth::MODES),
    secret("UPSTREAM_API_KEY", Unset),
    v("UPSTREAM_AUTH_ENV_KEY", Filter, Text(DEFAULT_AUTH_ENV_KEY)),
    v("UPSTREAM_AUTH_HEADER", Filter, Text(DEFAULT_AUTH_HEADER)),
    v("UPSTREAM_AUTH_SCHEME", Filter, Text(DEFAULT_AUTH_SCHEME)),
    v("UPSTREAM_RESPONSES_URL", Filter, Unset),
    v("UPSTREAM_BASE_URL", Filter, Unset),
    v("UPSTREAM_WIRE_API_PATH", Filter, Text(DEFAULT_WIRE_API_PATH)),
    one_of("UPSTREAM_TOOLS_FORMAT", Filter, "flat", TOOLS_FORMATS),
    one_of("FORWARD_CLIENT_HEADERS_MODE", Filter, "off", ForwardMode::VALUES),
    v("FORWARD_CLIENT_HEADERS_LIST", Filter, Unset),
    v("FORWARD_CLIENT_HEADERS_OVERRIDE", Filter, Unset),
    v("FORWARD_CLIENT_HEADERS_OVERRIDE_CODEX", Filter, Unset),
    v(
        "FORWARD_CLIENT_HEADERS_CODEX_VERSION",
        Filter,
        Text(DEFAULT_CLIENT_VERSION),
    ),
    v(
        "FORWARD_CLIENT_HEADERS_CODEX_ORIGINATOR",
        Filter,
        Text(DEFAULT_ORIGINATOR),
    ),
    v("FORWARD_CLIENT_HEADERS_CODEX_OS_TYPE", Filter, Text(UNKNOWN)),
    v("FORWARD_CLIENT_HEADERS_CODEX_OS_VERSION", Filter, Text(UNKNOWN)),
    v("FORWARD_CLIENT_HEADERS_CODEX_ARCH", Filter, Text(UNKNOWN)),
    v("FORWARD_CLIENT_HEADERS_CODEX_EDITOR", Filter, Unset),
    v("CODEX_INTERNAL_ORIGINATOR_OVERRIDE", Filter, Unset),
    v("TERM_PROGRAM", Filter, TERMINAL),
    v("TERM_PROGRAM_VERSION", Filter, TERMINAL),
    v("TERM", Filter, TERMINAL),
    v("WEZTERM_VERSION", Filter, TERMINAL),
    v("KITTY_WINDOW_ID", Filter, TERMINAL),
    v("ALACRITTY_SOCKET", Filter, TERMINAL),
    v("KONSOLE_VERSION", Filter, TERMINAL),
    v("VTE_VERSION", Filter, TERMINAL),
    v("WT_SESSION", Filter, TERMINAL),
    v("OLLAMA_API_URL", Filter, Unset),
    v("INSTRUCTIONS_BASE_URL", Filter, Unset),
    v("INSTRUCTIONS_CODEX_URL", Filter, Unset),
    one_of("TOKEN_STORE", Filter, "memory", TOKEN_STORES),
    v("ETCD_ENDPOINT", Filter, Unset),
    v("ETCD_KEY", Filter, Text(DEFAULT_ETCD_KEY)),
    v("CATALOGUE_CLUSTER", Filter, Text(DEFAULT_CATALOGUE_CLUSTER)),
    v("OAUTH_CLUSTER", Filter, Text(DEFAULT_OAUTH_CLUSTER)),
    v("ETCD_CLUSTER", Filter, Text(DEFAULT_ETCD_CLUSTER)),
    v(
        "INSTRUCTIONS_BASE_CLUSTER",
        Filter,
        Text(DEFAULT_INSTRUCTIONS_BASE_CLUSTER),
    ),
    v(
        "INSTRUCTIONS_CODEX_CLUSTER",
        Filter,
        Text(DEFAULT_INSTRUCTIONS_CODEX_CLUSTER),
    ),
    v(
        "CATALOGUE_REFRESH_SECONDS",
        Filter,
        Number(DEFAULT_CATALOGUE_REFRESH_SECONDS as u64),
    ),
    // The body limit must match Envoy's buffer limits, so the renderer owns it.
    v(
        "MAX_REQUEST_BODY_BYTES",
        Plugin,
        Number(DEFAULT_MAX_REQUEST_BODY_BYTES as u64),
    ),
    v("PORT", Envoy, Number(DEFAULT_PORT as u64)),
    v("LISTEN_ADDRESS", Envoy, Text(DEFAULT_LISTEN_ADDRESS)),
    v("ENVOY_ADMIN_PORT", Envoy, Number(DEFAULT_ADMIN_PORT as u64)),
    v(
        "STREAM_IDLE_TIMEOUT_SECONDS",
        Envoy,
        Number(DEFAULT_STREAM_IDLE_TIMEOUT_SECONDS as u64),
    ),
    one_of("ENVOY_PORTABLE", Envoy, "false", FLAG_VALUES),
    v("ENVOY_CA_BUNDLE", Envoy, Text(DEFAULT_CA_BUNDLE)),
    v("CORS_ALLOW_ORIGINS", Envoy, Text(ANY_ORIGIN)),
    // Read by the renderer, which hands the filter its normalised entries as CLIENT_KEYS.
    v("CLIENT_KEYS_FILE", Envoy, Unset),
    v("CODEX_HOME", Run, Text(DEFAULT_CODEX_HOME)),
    v("CODEX_AUTH_DIR", Run, Unset),
    v("ENVOY_BIN", Run, Note(".venv/bin/envoy, else envoy on PATH")),
    one_of("ENVOY_LOG_LEVEL", Run, DEFAULT_ENVOY_LOG_LEVEL, ENVOY_LOG_LEVELS),
    v("ENVOY_CONCURRENCY", Run, Note("Envoy's: one worker per core")),
    one_of("ENVOY_HOLD_HEADERS", Internal, "false", FLAG_VALUES),
    one_of("CREDENTIALS_UPSTREAM", Internal, "false", FLAG_VALUES),
    one_of("FILTER_ROLE", Internal, "main", FILTER_ROLES),
    v("CLIENT_KEYS", Internal, Unset),
];

/// `host_env_keys`: what the filter reads from Envoy's environment. A name absent from the
/// environment is harmless (Envoy starts, the filter sees it unset).
pub fn host_env_keys() -> Vec<&'static str> {
    VARIABLES
        .iter()
        .filter(|v| v.reader == Filter)
        .map(|v| v.name)
        .collect()
}

#[derive(Serialize)]
pub struct Entry {
    name: &'static str,
    reader: Reader,
    /// The value that means "unset", when there is one.
    default: Option<String>,
    /// How the value is worked out when unset, when no single value says it.
    default_note: Option<&'static str>,
    values: &'static [&'static str],
    secret: bool,
}

pub fn manifest() -> Vec<Entry> {
    VARIABLES
        .iter()
        .map(|v| Entry {
            name: v.name,
            reader: v.reader,
            default: match v.default {
                Text(text) => Some(text.to_string()),
                Number(n) => Some(n.to_string()),
                Unset | Note(_) => None,
            },
            default_note: match v.default {
                Note(note) => Some(note),
                _ => None,
            },
            values: v.values,
            secret: v.secret,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{BTreeSet, HashMap};

    use codex_openai_wrapper::core::config::Config;

    use crate::deployment::Deployment;

    fn lookup(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<String, String> {
        let map = lookup(pairs);
        Config::load(&move |name: &str| map.get(name).cloned())
            .map(|c| format!("{c:?}"))
            .map_err(|e| e.to_string())
    }

    fn deploy(pairs: &[(&str, &str)]) -> Result<Deployment, String> {
        let map = lookup(pairs);
        Deployment::load(&move |name: &str| map.get(name).cloned().filter(|v| !v.trim().is_empty()))
            .map_err(|e| e.to_string())
    }

    fn filter_reads(reader: Reader) -> bool {
        matches!(reader, Filter | Plugin | Internal)
    }

    #[test]
    fn names_are_unique() {
        let names: BTreeSet<_> = VARIABLES.iter().map(|v| v.name).collect();
        assert_eq!(names.len(), VARIABLES.len());
    }

    /// The table and `Config::load` agree on which variables the filter reads: every mode
    /// that makes it read more is visited, and what it asked for is recorded.
    #[test]
    fn the_filter_reads_exactly_the_variables_listed_for_it() {
        let auth = r#"{"OPENAI_API_KEY": "sk", "tokens": null}"#;
        let scenarios: &[&[(&str, &str)]] = &[
            &[],
            &[("UPSTREAM_AUTH_MODE", "apikey_env"), ("UPSTREAM_API_KEY", "k")],
            &[
                ("UPSTREAM_AUTH_MODE", "apikey_auth_json"),
                ("OPENAI_CODEX_AUTH", auth),
            ],
            &[("UPSTREAM_BASE_URL", "http://h/v1")],
            &[("UPSTREAM_RESPONSES_URL", "http://h/r")],
            &[("FORWARD_CLIENT_HEADERS_MODE", "list")],
            &[("FORWARD_CLIENT_HEADERS_MODE", "override")],
            &[("FORWARD_CLIENT_HEADERS_MODE", "override-codex")],
            &[
                ("TOKEN_STORE", "etcd"),
                ("ETCD_ENDPOINT", "http://127.0.0.1:2379"),
            ],
            &[("TERM_PROGRAM", "vscode")],
        ];
        let read = RefCell::new(BTreeSet::new());
        for pairs in scenarios {
            let map = lookup(pairs);
            let source = |name: &str| {
                read.borrow_mut().insert(name.to_string());
                map.get(name).cloned()
            };
            Config::load(&source).unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
        }
        let listed: BTreeSet<String> = VARIABLES
            .iter()
            .filter(|v| filter_reads(v.reader))
            .map(|v| v.name.to_string())
            .collect();
        assert_eq!(read.into_inner(), listed);
    }

    #[test]
    fn setting_a_default_changes_nothing() {
        let unset = load(&[]).unwrap();
        let deployment = deploy(&[]).unwrap();
        for variable in VARIABLES {
            let value = match variable.default {
                Text(text) => text.to_string(),
                Number(n) => n.to_string(),
                Unset | Note(_) => continue,
            };
            if filter_reads(variable.reader) {
                assert_eq!(
                    load(&[(variable.name, &value)]).as_ref(),
                    Ok(&unset),
                    "{}={value}",
                    variable.name
                );
            } else {
                assert_eq!(
                    deploy(&[(variable.name, &value)]),
                    Ok(deployment.clone()),
                    "{}={value}",
                    variable.name
                );
            }
        }
    }

    /// What a value needs beside it to be usable.
    fn companions(value: &str) -> &'static [(&'static str, &'static str)] {
        match value {
            "apikey_env" => &[("UPSTREAM_API_KEY", "k")],
            "apikey_auth_json" => &[("OPENAI_CODEX_AUTH", r#"{"OPENAI_API_KEY": "sk"}"#)],
            "etcd" => &[("ETCD_ENDPOINT", "http://127.0.0.1:2379")],
            _ => &[],
        }
    }

    #[test]
    fn every_listed_value_is_accepted_and_others_are_refused_with_the_list() {
        for variable in VARIABLES.iter().filter(|v| !v.values.is_empty()) {
            let check = |pairs: &[(&str, &str)]| {
                if filter_reads(variable.reader) {
                    load(pairs).map(|_| ())
                } else {
                    deploy(pairs).map(|_| ())
                }
            };
            for value in variable.values {
                let pairs = [&[(variable.name, *value)], companions(value)].concat();
                assert_eq!(check(&pairs), Ok(()), "{}={value}", variable.name);
            }
            let err = check(&[(variable.name, "no-such-value")]).unwrap_err();
            assert!(err.starts_with(&format!("invalid {}: ", variable.name)), "{err}");
            assert!(err.ends_with(&variable.values.join(", ")), "{err}");
        }
    }

    fn repo_file(name: &str) -> String {
        std::fs::read_to_string(format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// The README's table row of each variable: its default and every allowed value appear.
    #[test]
    fn the_readme_configuration_table_covers_every_variable() {
        let readme = repo_file("README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .unwrap()
            .split("\n## ")
            .next()
            .unwrap();
        let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
        for variable in VARIABLES.iter().filter(|v| v.reader != Internal) {
            let name = format!("`{}`", variable.name);
            let row = rows
                .iter()
                .find(|row| row.split(" | ").next().is_some_and(|cell| cell.contains(&name)))
                .unwrap_or_else(|| panic!("README.md's configuration table has no row for {name}"));
            let default = match variable.default {
                Text(text) => Some(text.to_string()),
                Number(n) => Some(n.to_string()),
                Unset | Note(_) => None,
            };
            if let Some(default) = default {
                let cell = row.split(" | ").nth(1).unwrap_or_default();
                assert!(
                    cell.contains(&format!("`{default}`")),
                    "{name}: the default `{default}` is not in {cell:?}"
                );
            }
            for value in variable.values {
                assert!(
                    row.contains(&format!("`{value}`")),
                    "{name}: `{value}` is not in its row"
                );
            }
        }
    }

    #[test]
    fn dev_vars_example_shows_every_variable_a_person_sets() {
        let example = repo_file(".dev.vars.example");
        // The terminal variables come from the shell that starts Envoy, not from a file.
        for variable in VARIABLES
            .iter()
            .filter(|v| v.reader != Internal && v.default != TERMINAL)
        {
            assert!(
                example
                    .lines()
                    .any(|l| l.starts_with(&format!("# {}=", variable.name))),
                ".dev.vars.example has no `# {}=` line",
                variable.name
            );
        }
    }
}
