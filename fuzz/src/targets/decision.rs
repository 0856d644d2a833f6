//! The request headers as the flow reads them (the host's header map, then the text view of
//! it), the header-time decisions (`decide`) and, for a forwarded request, the upstream header
//! set, under several configurations.
//!
//! Input: `METHOD PATH` on the first line, then `name: value` lines; they become the header
//! map Envoy would hand over (names lower-cased, values without CR or NUL but with any other
//! byte, UTF-8 or not). The input is also parsed as a raw header map.
//!
//! * never a panic, whatever the map's bytes;
//! * the map reads back as the headers it was made of; one the filter must read that is not
//!   UTF-8 gets a 400 `invalid_header` before any decision;
//! * a local reply is 200 or 4xx/5xx with a JSON body, OpenAI-shaped for an error, a 405
//!   says which methods are allowed;
//! * with a client key configured, nothing but the health routes and the 401/404/405 replies
//!   is reached without exactly one `Authorization: Bearer <key>`;
//! * only POSTs to the API routes are forwarded, only `/api/*` with Ollama configured passes
//!   through;
//! * the upstream headers hold the configured credential (never the client's), one `:path`,
//!   no client `x-envoy-*`, cookies or credentials, and nothing that is not a valid header.

use std::collections::HashMap;
use std::sync::OnceLock;

use codex_openai_wrapper::core::auth::auth_json::ChatgptTokens;
use codex_openai_wrapper::core::catalogue::listing;
use codex_openai_wrapper::core::config::Config;
use codex_openai_wrapper::core::flow::headers::{HeaderView, READ_REQUEST_HEADERS};
use codex_openai_wrapper::core::reply::Reply;
use codex_openai_wrapper::core::routing::decision::{
    Decision, RequestHead, decide, final_request_headers, upstream_headers,
};
use codex_openai_wrapper::core::routing::key_gate::bearer_token;
use codex_openai_wrapper::core::wire::header_map;
use serde_json::Value;

use crate::engine::{Target, fnv, mix};
use crate::targets::catalogue;

pub const TARGET: Target = Target {
    name: "header_decision",
    seeds: Vec::new,
    dictionary: DICTIONARY,
    check,
    mutate: None,
    max_len: 16 * 1024,
};

const KEY: &str = "k-fuzz";

const DICTIONARY: &[&str] = &[
    "GET ",
    "POST ",
    "HEAD ",
    "DELETE ",
    "OPTIONS ",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/models/gpt-5.5",
    "/v1/models/codex-auto-review",
    "?client_version=0.169.0",
    "&client_version",
    "/health",
    "/api/tags",
    "/tagged/v1/",
    "/hidden/v1/",
    "?x=1",
    "#f",
    "%2e%2e/",
    "//",
    "\nauthorization: Bearer k-fuzz",
    "\nauthorization: bearer  k-fuzz ",
    "\nauthorization: Basic k-fuzz",
    "\ncontent-type: application/json",
    "\ncontent-type: application/merge-patch+json; charset=utf-8",
    "\ncontent-type: text/plain",
    "\ncontent-length: 99999999999999999999",
    "\ncontent-length: 1025",
    "\nx-session-id: ",
    "\nsession_id: ",
    "\nuser-agent: ",
    "\nx-trace: t",
    "\ncookie: c=1",
    "\nx-envoy-original-path: /x",
    "\n:authority: localhost",
    "\n:path: /v1/chat/completions",
    "\nx-forwarded-for: 1.2.3.4",
    "\noriginator: codex_vscode",
    "\nsec-ch-ua-platform: \"Linux\"",
];

fn configs() -> &'static [(&'static str, Config)] {
    static CONFIGS: OnceLock<Vec<(&'static str, Config)>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let sets: &[(&str, &[(&str, &str)])] = &[
            ("open", &[]),
            ("key", &[("OPENAI_API_KEY", KEY)]),
            (
                "all",
                &[
                    ("OPENAI_API_KEY", KEY),
                    ("REASONING_OUTPUT_MODE", "all"),
                    ("OLLAMA_API_URL", "http://127.0.0.1:11434"),
                    ("MAX_REQUEST_BODY_BYTES", "1024"),
                ],
            ),
            (
                "apikey",
                &[
                    ("OPENAI_API_KEY", KEY),
                    ("UPSTREAM_AUTH_MODE", "apikey_env"),
                    ("UPSTREAM_API_KEY", "sk-up"),
                    ("UPSTREAM_AUTH_HEADER", "api-key"),
                    ("UPSTREAM_AUTH_SCHEME", "none"),
                    ("FORWARD_CLIENT_HEADERS_MODE", "safe"),
                ],
            ),
            ("codex", &[("FORWARD_CLIENT_HEADERS_MODE", "override-codex")]),
            (
                "list",
                &[
                    ("FORWARD_CLIENT_HEADERS_MODE", "list"),
                    (
                        "FORWARD_CLIENT_HEADERS_LIST",
                        "x-trace,authorization,cookie,x-envoy-original-path,user-agent,content-type",
                    ),
                ],
            ),
        ];
        sets.iter()
            .map(|(name, pairs)| {
                let map: HashMap<String, String> = pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let config = Config::load(&move |n: &str| map.get(n).cloned())
                    .unwrap_or_else(|e| panic!("config {name}: {e:?}"));
                (*name, config)
            })
            .collect()
    })
}

/// The header map of an input: `:method` and `:path` from the request line, then the
/// header lines.
fn pairs(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let clean: Vec<u8> = data.iter().copied().filter(|b| *b != b'\r' && *b != 0).collect();
    let mut lines = clean.split(|b| *b == b'\n');
    let first = lines.next().unwrap_or_default();
    let (method, path) = match first.iter().position(|b| *b == b' ') {
        Some(at) => (&first[..at], &first[at + 1..]),
        None => (first, &b""[..]),
    };
    let mut pairs = vec![
        (b":method".to_vec(), method.to_vec()),
        (b":path".to_vec(), path.to_vec()),
    ];
    for line in lines {
        // Pseudo-headers start with the colon that separates the others.
        let Some(split) = line.iter().skip(1).position(|b| *b == b':').map(|at| at + 1) else {
            continue;
        };
        let name = line[..split].trim_ascii().to_ascii_lowercase();
        let value = &line[split + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if !name.is_empty() {
            pairs.push((name, value.to_vec()));
        }
    }
    pairs
}

fn authorized(headers: &[(String, String)]) -> bool {
    let values: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    matches!(values.as_slice(), [one] if bearer_token(one) == Some(KEY))
}

pub fn check(data: &[u8]) -> u64 {
    // The input as a map the host serialized: whatever it holds, no panic.
    let _ = HeaderView::parse(data).map(|view| view.check_request());
    let pairs = pairs(data);
    let map = header_map::serialize(&pairs);
    let read = header_map::parse(&map).unwrap_or_else(|| panic!("a serialized map does not parse"));
    assert!(
        read.iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .eq(pairs.iter().cloned()),
        "the map changed"
    );
    let view = HeaderView::parse(&map).unwrap_or_else(|| unreachable!());
    assert_eq!(view.text.len() + view.binary.len(), pairs.len());
    if let Err(error) = view.check_request() {
        assert_eq!((error.status, error.code_str()), (400, Some("invalid_header")));
        assert!(
            view.binary
                .iter()
                .any(|n| READ_REQUEST_HEADERS.contains(&n.as_str()))
        );
        return 3;
    }
    let method = view.get(":method").unwrap_or_default().to_string();
    let path = view.get(":path").unwrap_or_default().to_string();
    let headers = view.text;
    let route = path.split(['?', '#']).next().unwrap_or_default();
    let health = route == "/" || route == "/health";
    let tokens = ChatgptTokens::from_parts(
        "at-upstream-secret".into(),
        Some("rt".into()),
        None,
        Some("acct".into()),
    );
    let mut signature = Vec::new();
    for (name, cfg) in configs() {
        let head = RequestHead {
            method: &method,
            path: &path,
            headers: &headers,
        };
        // Codex CLI's catalogue call is answered by the flow; without a stored backend answer
        // it is the reply checked below like any other.
        let decision = match decide(cfg, catalogue(), &head, 1_766_361_600) {
            Decision::CodexCatalogue => Decision::Reply(Reply::json(
                200,
                listing::codex_answer(None, catalogue(), &cfg.models),
            )),
            decision => decision,
        };
        let gated = !cfg.keys.is_open() && !health;
        match &decision {
            Decision::Reply(reply) => {
                let status = reply.status;
                assert!(
                    status == 200 || (400..=599).contains(&status),
                    "{name}: status {status}"
                );
                assert!(
                    reply
                        .headers
                        .iter()
                        .any(|(n, v)| *n == "content-type" && v.starts_with("application/json")),
                    "{name}: {:?}",
                    reply.headers
                );
                let body: Value = serde_json::from_slice(&reply.body)
                    .unwrap_or_else(|e| panic!("{name}: reply {status} is not JSON ({e})"));
                if status >= 400 {
                    let error = body["error"]
                        .as_object()
                        .unwrap_or_else(|| panic!("{name}: {body}"));
                    for field in ["message", "type", "param", "code"] {
                        assert!(error.contains_key(field), "{name}: no {field:?} in {body}");
                    }
                }
                if status == 405 {
                    assert!(
                        reply.headers.iter().any(|(n, _)| *n == "allow"),
                        "{name}: 405 without Allow"
                    );
                }
                if gated && ![401, 404, 405].contains(&status) {
                    assert!(
                        authorized(&headers),
                        "{name}: {status} for {method} {path} without the key"
                    );
                }
                // A model list is one of the two shapes, each entry naming its model.
                if status == 200 && route.ends_with("/models") {
                    let (entries, id) = match body.get("models") {
                        Some(models) => (models, "slug"),
                        None => (&body["data"], "id"),
                    };
                    let entries = entries
                        .as_array()
                        .unwrap_or_else(|| panic!("{name}: a model list without entries: {body}"));
                    assert!(entries.iter().all(|m| m[id].is_string()), "{name}: {body}");
                }
                signature.push(mix(&[
                    u64::from(status),
                    fnv(body["error"]["code"].to_string().as_bytes()),
                    u64::from(body.get("models").is_some()),
                ]));
            }
            Decision::CodexCatalogue => unreachable!("answered above"),
            Decision::Usage => {
                assert!(
                    matches!(method.as_str(), "GET" | "HEAD") && route.ends_with("/v1/usage"),
                    "{name}: {method} {path} as the usage route"
                );
                assert!(!gated || authorized(&headers), "{name}: usage without the key");
                signature.push(3);
            }
            Decision::PassThrough => {
                assert!(
                    route.starts_with("/api/") && cfg.ollama,
                    "{name}: passed {path} through"
                );
                assert!(
                    !gated || authorized(&headers),
                    "{name}: passed through without the key"
                );
                signature.push(1);
            }
            Decision::Forward(forward) => {
                assert_eq!(method, "POST", "{name}: forwarded a {method}");
                assert!(
                    !gated || authorized(&headers),
                    "{name}: forwarded without the key"
                );
                if let Some(hint) = &forward.session_hint {
                    assert!(
                        !hint.is_empty() && hint.bytes().all(|b| b.is_ascii_graphic()),
                        "{hint:?}"
                    );
                }
                upstream_checks(name, cfg, &tokens, &headers, forward.session_hint.as_deref());
                signature.push(2 ^ fnv(format!("{:?}", forward.mode).as_bytes()));
            }
        }
    }
    mix(&signature)
}

fn upstream_checks(
    name: &str,
    cfg: &Config,
    tokens: &ChatgptTokens,
    client: &[(String, String)],
    session: Option<&str>,
) {
    let upstream = upstream_headers(cfg, Some(tokens), client, session, Some(42));
    let count = |n: &str| upstream.iter().filter(|(k, _)| k == n).count();
    assert_eq!(count(":path"), 1, "{name}: {upstream:?}");
    assert_eq!(count("accept"), 1, "{name}: {upstream:?}");
    assert_eq!(count("content-type"), 1, "{name}: {upstream:?}");
    for (header, value) in &upstream {
        assert!(
            !header.is_empty() && !header.bytes().any(|b| b.is_ascii_uppercase() || b <= b' '),
            "{name}: header name {header:?}"
        );
        assert!(
            !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0),
            "{name}: {header}: {value:?}"
        );
        assert!(
            !header.starts_with("x-envoy-"),
            "{name}: {header} reached the upstream"
        );
        for secret in ["authorization", "proxy-authorization", "cookie"] {
            if header == secret {
                assert!(
                    !client.iter().any(|(n, v)| n == secret && v == value),
                    "{name}: the client's {secret} reached the upstream"
                );
            }
        }
    }
    let merged = final_request_headers(client, upstream);
    assert_eq!(
        merged.iter().filter(|(k, _)| k == ":path").count(),
        1,
        "{name}: {merged:?}"
    );
}
