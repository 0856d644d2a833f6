//! Request headers → what the filter does with the request: answer it locally, or forward it
//! to the Codex backend with which upstream headers. Everything here is decided from the
//! headers alone, so it works on every Envoy (portable mode, see the README).

use crate::core::auth::auth_json::ChatgptTokens;
use crate::core::catalogue::{Catalogue, listing};
use crate::core::config::Config;
use crate::core::config::header_forwarding::ForwardMode;
use crate::core::error::{ApiError, Code};
use crate::core::flow::upload::{BodyLimit, body_too_large};
use crate::core::keys::KeyId;
use crate::core::reasoning::OutputMode;
use crate::core::reply::Reply;
use crate::core::routing::key_gate;
use crate::core::translate::request::conversation_key::MAX_CLIENT_KEY_LEN;

/// A request as the filter sees it at header time. Header names are lower-case.
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
}

impl RequestHead<'_> {
    /// The first value of header `name` (give it in lower case); `None` when absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The OpenAI API a forwarded request speaks; picks the request translator and the response
/// writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    /// `/v1/responses`: the client already speaks the backend's API; normalised, not translated.
    Responses,
    /// `/v1/responses/compact`: Codex CLI's history compaction, a unary JSON call.
    ResponsesCompact,
}

impl Endpoint {
    /// The Responses routes, whose bodies and answers pass through nearly as they are.
    pub fn is_responses(self) -> bool {
        matches!(self, Self::Responses | Self::ResponsesCompact)
    }
}

/// A request that goes upstream once its body is translated.
#[derive(Debug, PartialEq)]
pub struct Forward {
    pub endpoint: Endpoint,
    pub mode: OutputMode,
    /// A conversation id the client sent as a header.
    pub session_hint: Option<String>,
    /// The client marked its Responses body as the lite shape (instructions in the input).
    pub lite_shape: bool,
    /// `MAX_REQUEST_BODY_BYTES`, applied as the body arrives.
    pub body: BodyLimit,
}

/// What the request-headers callback does with a request.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Reply(Reply),
    Forward(Forward),
    /// An Ollama route: passed through untouched once the key gate let it in.
    PassThrough,
    /// `GET /v1/models?client_version=…` let in by the key gate: answered with
    /// [`listing::codex_answer`], which may need the stored backend answer (read only then).
    CodexCatalogue,
    /// `GET /v1/usage` let in by the key gate: answered locally from shared data (`usage.rs`).
    Usage,
}

/// A [`Decision`] and the client key the request presented (`None` while the gate is open,
/// and for public routes).
#[derive(Debug, PartialEq)]
pub struct Decided {
    pub decision: Decision,
    pub key: Option<KeyId>,
}

/// `/`, `/health`: public; everything else behind the key gate. `catalogue` answers
/// `/v1/models`.
pub fn decide(cfg: &Config, catalogue: &Catalogue, head: &RequestHead<'_>, created: u64) -> Decision {
    decide_keyed(cfg, catalogue, head, created).decision
}

/// [`decide`], and which client key the request presented.
pub fn decide_keyed(cfg: &Config, catalogue: &Catalogue, head: &RequestHead<'_>, created: u64) -> Decided {
    let mut key = None;
    let decision = match decide_inner(cfg, catalogue, head, created, &mut key) {
        Ok(decision) => decision,
        Err(error) => Decision::Reply(error.into()),
    };
    Decided { decision, key }
}

enum Route {
    Health,
    /// `codex`: the Codex catalogue shape (`?client_version=`, Codex CLI's call).
    Models {
        codex: bool,
    },
    Model(String),
    Api(Endpoint, OutputMode),
    Ollama,
    Usage,
}

fn decide_inner(
    cfg: &Config,
    catalogue: &Catalogue,
    head: &RequestHead<'_>,
    created: u64,
    key: &mut Option<KeyId>,
) -> Result<Decision, ApiError> {
    let path = head.path.split(['?', '#']).next().unwrap_or("");
    let route = match classify(cfg, path)? {
        Route::Models { .. } => Route::Models {
            codex: query_has(head.path, "client_version"),
        },
        route => route,
    };
    let (allowed, readable) = match route {
        Route::Health | Route::Models { .. } | Route::Model(_) | Route::Usage => {
            (["GET", "HEAD"].as_slice(), "GET")
        }
        // A WebSocket handshake is a GET; it gets the 426 that sends the client to HTTP.
        Route::Api(endpoint, _) if endpoint.is_responses() && is_websocket_upgrade(head) => {
            (["GET", "POST"].as_slice(), "POST")
        }
        Route::Api(..) => (["POST"].as_slice(), "POST"),
        Route::Ollama => (
            ["GET", "HEAD", "POST", "PUT", "DELETE"].as_slice(),
            "GET, HEAD, POST, PUT or DELETE",
        ),
    };
    if !allowed.contains(&head.method) {
        let mut reply = Reply::from(ApiError::method_not_allowed(head.method, path, readable));
        reply.headers.push(("allow", allowed.join(", ")));
        return Ok(Decision::Reply(reply));
    }
    if let Route::Health = route {
        return Ok(health());
    }
    *key = key_gate::check(&cfg.keys, &head.all("authorization"))?;
    if is_websocket_upgrade(head) {
        return Err(websocket_refused(path));
    }
    // Every key may read its own usage, whatever its routes.
    if let Some(entry) = key.and_then(|id| cfg.keys.get(id)) {
        if !matches!(route, Route::Usage) && !entry.allows_route(path) {
            return Err(route_not_allowed(
                &entry.name,
                path,
                entry.routes.as_deref().unwrap_or_default(),
            ));
        }
    }
    match route {
        Route::Health => Ok(health()),
        Route::Usage => Ok(Decision::Usage),
        Route::Models { codex: true } => Ok(Decision::CodexCatalogue),
        Route::Models { codex: false } => Ok(Decision::Reply(Reply::json(
            200,
            listing::list_body(catalogue, &cfg.models, created),
        ))),
        Route::Model(id) => match listing::model_body(catalogue, &cfg.models, &id, created) {
            Some(body) => Ok(Decision::Reply(Reply::json(200, body))),
            None => Err(ApiError::of(
                Code::ModelNotFound,
                format!("The model {id:?} does not exist or is not exposed here."),
            )
            .with_param("model")),
        },
        Route::Ollama if cfg.ollama => Ok(Decision::PassThrough),
        Route::Ollama => Err(ApiError::of(
            Code::OllamaNotConfigured,
            "Ollama routes are disabled: OLLAMA_API_URL is not set. Set it to your Ollama server (for example http://localhost:11434) and restart.",
        )),
        Route::Api(endpoint, mode) => {
            let body = check_body_headers(cfg, head)?;
            Ok(Decision::Forward(Forward {
                endpoint,
                mode,
                session_hint: session_hint(head),
                lite_shape: endpoint.is_responses()
                    && head
                        .header(LITE_HEADER)
                        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
                body,
            }))
        }
    }
}

/// `Upgrade: websocket` (any case, possibly in a list). Envoy lets the handshake reach the
/// filter only because the rendered configuration enables the upgrade type.
fn is_websocket_upgrade(head: &RequestHead<'_>) -> bool {
    head.all("upgrade")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// The wrapper cannot carry a WebSocket to the backend (a Wasm filter cannot originate one).
/// 426 is the status Codex CLI reads as "no WebSocket here" and falls back to HTTP at once;
/// any other refusal it retries as a failed connection.
fn websocket_refused(path: &str) -> ApiError {
    ApiError::of(
        Code::WebsocketUnsupported,
        format!(
            "WebSocket is not offered on {path}: send the request as HTTP POST {path} (the answer streams as server-sent events)."
        ),
    )
}

fn route_not_allowed(name: &str, path: &str, routes: &[String]) -> ApiError {
    ApiError::of(
        Code::RouteNotAllowed,
        format!(
            "The key {name:?} may not call {path}; it may call {}. Ask the operator to add the route to the key's routes.",
            routes.join(", ")
        ),
    )
}

fn health() -> Decision {
    Decision::Reply(Reply::json(200, br#"{"status":"ok"}"#.to_vec()))
}

fn classify(cfg: &Config, path: &str) -> Result<Route, ApiError> {
    match path {
        "/" | "/health" => return Ok(Route::Health),
        _ if path.starts_with("/api/") => return Ok(Route::Ollama),
        _ => {}
    }
    let (mode, rest) = match OutputMode::PREFIXES.iter().find_map(|(prefix, mode)| {
        path.strip_prefix('/')?
            .strip_prefix(prefix)?
            .strip_prefix("/v1/")
            .map(|rest| (*mode, rest))
    }) {
        Some(found) if cfg.prefixed_modes => found,
        Some(_) => return Err(ApiError::not_found(path)),
        None => match path.strip_prefix("/v1/") {
            Some(rest) => (cfg.output_mode, rest),
            None => return Err(ApiError::not_found(path)),
        },
    };
    match rest {
        "chat/completions" => Ok(Route::Api(Endpoint::ChatCompletions, mode)),
        "completions" => Ok(Route::Api(Endpoint::Completions, mode)),
        "responses" => Ok(Route::Api(Endpoint::Responses, mode)),
        "responses/compact" => Ok(Route::Api(Endpoint::ResponsesCompact, mode)),
        "models" => Ok(Route::Models { codex: false }),
        "usage" if cfg.usage_endpoint => Ok(Route::Usage),
        _ => match rest.strip_prefix("models/") {
            Some(id) if !id.is_empty() && !id.contains('/') => Ok(Route::Model(id.to_string())),
            _ => Err(ApiError::not_found(path)),
        },
    }
}

/// The query string of `path` has parameter `name` (any value).
fn query_has(path: &str, name: &str) -> bool {
    let query = path
        .split('#')
        .next()
        .unwrap_or("")
        .split_once('?')
        .map_or("", |(_, q)| q);
    query.split('&').any(|pair| pair.split('=').next() == Some(name))
}

fn check_body_headers(cfg: &Config, head: &RequestHead<'_>) -> Result<BodyLimit, ApiError> {
    if let Some(content_type) = head.header("content-type") {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != "application/json" && !media.ends_with("+json") {
            return Err(ApiError::of(
                Code::UnsupportedMediaType,
                format!("Unsupported content type {media:?}; send the body as application/json."),
            ));
        }
    }
    // The body is read as JSON; a compressed one (Codex CLI can send zstd) would only fail
    // as "invalid JSON".
    if let Some(encoding) = head
        .header("content-encoding")
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
    {
        return Err(ApiError::of(
            Code::UnsupportedMediaType,
            format!(
                "Compressed request bodies (content-encoding: {encoding}) are not supported; send the body as plain JSON."
            ),
        ));
    }
    let length = head
        .header("content-length")
        .and_then(|l| l.trim().parse::<usize>().ok());
    let limit = cfg.max_request_body_bytes;
    // Held headers let the filter read and drop an oversize body before it answers (see
    // BodyLimit). Released headers would carry the credentials upstream for a request that is
    // refused anyway, so without them a declared oversize is refused at once.
    if !cfg.hold_headers && length.is_some_and(|length| length > limit) {
        return Err(body_too_large(limit));
    }
    Ok(BodyLimit::declared(limit, length))
}

fn session_hint(head: &RequestHead<'_>) -> Option<String> {
    ["x-session-id", "session-id", "session_id"]
        .iter()
        .find_map(|name| head.header(name))
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_CLIENT_KEY_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
}

/// Stamped with the client's path ahead of the filter by the shipped Envoy configuration
/// (envoy/render.py), which routes and counts requests on it and strips it before the upstream.
pub const CLIENT_PATH_HEADER: &str = "x-envoy-client-path";

/// Headers Envoy itself uses to route; the route configuration strips them before the
/// upstream (`request_headers_to_remove`), and removing them here breaks route matching.
/// Any other `x-envoy-*` name is a client's (the shipped configuration already drops those
/// before the filter; a mesh's configuration may not) and never goes upstream.
pub fn is_envoy_header(name: &str) -> bool {
    name.starts_with(':')
        || name.starts_with("x-forwarded-")
        || name == CLIENT_PATH_HEADER
        || name == "x-request-id"
}

/// The request's whole header map as it goes upstream: Envoy's own headers from the client's
/// map (pseudo-headers, `x-forwarded-*`, …) where the upstream set does not replace them, then
/// the upstream set. Replacing the map in one host call is much cheaper than one call per header.
pub fn final_request_headers(
    client: &[(String, String)],
    upstream: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = client
        .iter()
        .filter(|(name, _)| is_envoy_header(name) && !upstream.iter().any(|(n, _)| n == name))
        .cloned()
        .collect();
    headers.extend(upstream);
    headers
}

/// The complete upstream header set (with `:path`). Every other client header is dropped
/// (a client's headers must never reach the backend as credentials) except what
/// `FORWARD_CLIENT_HEADERS_MODE` forwards. `user-agent` and `originator` are defaults that
/// forwarded or configured values may replace; everything else here is the filter's own.
pub fn upstream_headers(
    cfg: &Config,
    tokens: Option<&ChatgptTokens>,
    client: &[(String, String)],
    session_id: Option<&str>,
    content_length: Option<usize>,
) -> Vec<(String, String)> {
    upstream_headers_for(
        cfg,
        Endpoint::ChatCompletions,
        tokens,
        client,
        session_id,
        content_length,
    )
}

/// Codex CLI's own per-turn headers, kept on the Responses routes so its prompt cache, turn
/// state and sticky routing work through the wrapper (`x-codex-*` as a prefix).
/// The lite header is not among them: the flow sets it from the body it sends (`mark_lite`).
const CODEX_TURN_HEADERS: &[&str] = &["thread-id", "x-client-request-id", "x-openai-subagent"];

fn is_codex_turn_header(name: &str) -> bool {
    CODEX_TURN_HEADERS.contains(&name) || name.starts_with("x-codex-")
}

/// [`upstream_headers`] for one endpoint: the Responses routes keep the client's Codex turn
/// headers (ChatGPT upstream only), and compaction goes to `<responses path>/compact` and
/// answers JSON.
pub fn upstream_headers_for(
    cfg: &Config,
    endpoint: Endpoint,
    tokens: Option<&ChatgptTokens>,
    client: &[(String, String)],
    session_id: Option<&str>,
    content_length: Option<usize>,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(12);
    let path = match endpoint {
        Endpoint::ResponsesCompact => format!("{}/compact", cfg.upstream.path.trim_end_matches('/')),
        _ => cfg.upstream.path.clone(),
    };
    headers.push((":path".to_string(), path));
    headers.extend(cfg.auth.credential_headers(tokens));
    let mut own = |name: &str, value: String| headers.push((name.to_string(), value));
    let accept = match endpoint {
        Endpoint::ResponsesCompact => "application/json",
        // An API-key upstream answers a client's `stream: false` with JSON.
        Endpoint::Responses if !cfg.auth.is_chatgpt() => "text/event-stream, application/json",
        _ => "text/event-stream",
    };
    own("accept", accept.to_string());
    own("content-type", "application/json".to_string());
    if let Some(length) = content_length {
        own("content-length", length.to_string());
    }
    let mut defaults: Vec<(&str, String)> = Vec::new();
    if cfg.auth.is_chatgpt() {
        if let Some(session) = session_id {
            own("session-id", session.to_string());
        }
        if endpoint.is_responses() {
            headers.extend(
                client
                    .iter()
                    .filter(|(name, value)| is_codex_turn_header(name) && !value.trim().is_empty())
                    .cloned(),
            );
        }
        defaults.extend(codex_identity_headers(cfg, client));
    } else {
        defaults.push((
            "user-agent",
            format!("codex-openai-wrapper/{}", env!("CARGO_PKG_VERSION")),
        ));
    }
    let extras = cfg.forward.extra_headers(client, &cfg.auth.header);
    for (name, value) in defaults {
        if !extras.iter().any(|(n, _)| n == name) {
            headers.push((name.to_string(), value));
        }
    }
    for extra in extras {
        if !headers.iter().any(|(n, _)| *n == extra.0) {
            headers.push(extra);
        }
    }
    headers
}

/// The header that tells the backend the body is in the lite shape (Codex CLI sends it for
/// every `use_responses_lite` model).
pub const LITE_HEADER: &str = "x-openai-internal-codex-responses-lite";

/// Sets the lite header for a lite body, and makes sure a classic body never carries one (a
/// client's copy could arrive through `FORWARD_CLIENT_HEADERS_MODE`).
pub fn mark_lite(upstream: &mut Vec<(String, String)>, lite: bool) {
    upstream.retain(|(name, _)| name != LITE_HEADER);
    if lite {
        upstream.push((LITE_HEADER.to_string(), "true".to_string()));
    }
}

/// `originator`, `user-agent` and `version` for the Codex backend: the configured identity
/// ([`crate::core::config::identity::Identity::headers`], the set the background calls send
/// too), refined by this request's client hints and fixed values in `override-codex` mode
/// (the model catalogue call passes no client headers).
pub(crate) fn codex_identity_headers(
    cfg: &Config,
    client: &[(String, String)],
) -> Vec<(&'static str, String)> {
    let ForwardMode::OverrideCodex {
        user_agent,
        originator,
    } = &cfg.forward
    else {
        return cfg.identity.headers();
    };
    let header = |name: &str| client.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut headers = cfg.identity.with_client_hints(&header).headers();
    for (name, value) in &mut headers {
        let fixed = match *name {
            "user-agent" => user_agent,
            "originator" => originator,
            _ => &None,
        };
        if let Some(fixed) = fixed {
            *value = fixed.clone();
        }
    }
    headers
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
