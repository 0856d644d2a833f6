//! OpenAI-shaped errors: every failure the filter reports, locally or in a stream, goes
//! through `ApiError` so the shape `{"error":{"message","type","param","code"}}` is built in
//! one place, and every code the filter itself gives is in the catalogue below with its
//! status, type and what the client should do (the README's error table is generated from it).

use serde::Serialize;

/// The `type` of an OpenAI error object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    InvalidRequest,
    Authentication,
    Upstream,
    Server,
    RateLimit,
    UsageLimit,
}

impl ErrorType {
    /// The `type` string clients see in the error object.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::Upstream => "upstream_error",
            Self::Server => "server_error",
            Self::RateLimit => "rate_limit_error",
            Self::UsageLimit => "usage_limit_reached",
        }
    }
}

/// Builds [`Code`] and its accessors from one table, so a code, its status, type and
/// remedy cannot drift apart.
macro_rules! catalogue {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $status:literal, $kind:ident, $remedy:literal; )*) => {
        /// The codes the filter gives on its own account.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in the catalogue's order.
            pub const ALL: &'static [Code] = &[$( Code::$variant, )*];

            /// The `code` string clients see.
            pub const fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $name, )* }
            }

            /// The HTTP status of a local reply with this code.
            pub const fn status(self) -> u16 {
                match self { $( Code::$variant => $status, )* }
            }

            /// The error object's `type` for this code.
            pub const fn kind(self) -> ErrorType {
                match self { $( Code::$variant => ErrorType::$kind, )* }
            }

            /// When a client gets it and what to do about it.
            pub const fn remedy(self) -> &'static str {
                match self { $( Code::$variant => $remedy, )* }
            }
        }
    };
}

catalogue! {
    InvalidApiKey = "invalid_api_key", 401, InvalidRequest,
        "The client key is missing or wrong: send `Authorization: Bearer <OPENAI_API_KEY>`.";
    KeyLimitReached = "key_limit_reached", 429, RateLimit,
        "The client key reached a limit of its keys-file entry (requests per minute, tokens per hour or per day): retry after `Retry-After`, or ask the operator for a higher limit; `/v1/usage` shows what is left.";
    RouteNotAllowed = "route_not_allowed", 403, InvalidRequest,
        "The client key's `routes` in the keys file do not include this path: use a route the message lists, or ask the operator.";
    ModelNotAllowed = "model_not_allowed", 403, InvalidRequest,
        "The client key's `models` in the keys file do not include this model: use one the message lists, or ask the operator.";
    UnknownUrl = "unknown_url", 404, InvalidRequest,
        "No such route: use `/v1/chat/completions`, `/v1/completions`, `/v1/responses` or `/v1/models`.";
    MethodNotAllowed = "method_not_allowed", 405, InvalidRequest,
        "The route exists with another method; the message names it.";
    UnsupportedMediaType = "unsupported_media_type", 415, InvalidRequest,
        "Send the body as `content-type: application/json`, uncompressed (no `content-encoding`).";
    InvalidHeader = "invalid_header", 400, InvalidRequest,
        "`authorization`, `content-type`, `content-length`, a session header or a pseudo-header is not UTF-8 text: send it as plain ASCII.";
    PreviousResponseUnsupported = "previous_response_unsupported", 400, InvalidRequest,
        "`previous_response_id` or `conversation` on `/v1/responses`: the backend stores no responses (`store: false`), so send the whole conversation in `input`.";
    WebsocketUnsupported = "websocket_unsupported", 426, InvalidRequest,
        "A WebSocket upgrade on `/v1/responses`: not offered; send the same request as HTTP `POST` (Codex CLI falls back by itself on this status).";
    InvalidPromptCacheKey = "invalid_prompt_cache_key", 400, InvalidRequest,
        "The `prompt_cache_key` has a control byte, a space at either end or more than 256 characters (it also becomes the `session-id` header): send printable ASCII, such as a UUID.";
    RequestTooLarge = "request_too_large", 413, InvalidRequest,
        "The body is over `MAX_REQUEST_BODY_BYTES`: send less, or raise the limit.";
    ModelNotFound = "model_not_found", 404, InvalidRequest,
        "`/v1/models/{id}` for a model the wrapper does not list: see `/v1/models`.";
    OllamaNotConfigured = "ollama_not_configured", 503, Server,
        "`/api/*` needs `OLLAMA_API_URL` set to the Ollama server.";
    MissingCredentials = "missing_credentials", 401, Authentication,
        "No ChatGPT login is configured: run `make login` (or `codex login`), or set `OPENAI_CODEX_AUTH` and restart.";
    TokenExpired = "token_expired", 401, Authentication,
        "The access token expired and there is no refresh token: run `make login` (or `codex login`) again.";
    RefreshTokenInvalid = "refresh_token_invalid", 401, Authentication,
        "The refresh token was rejected for good (expired, reused, revoked): run `make login` (or `codex login`) again.";
    TokenRefreshPending = "token_refresh_pending", 503, Server,
        "A token refresh did not finish while the request waited: retry after `Retry-After`.";
    InvalidUpstreamToken = "invalid_upstream_token", 401, Authentication,
        "The backend still refused the access token after a refresh: run `make login` (or `codex login`) again.";
    UpstreamTokenRejected = "upstream_token_rejected", 503, Server,
        "The backend refused the access token and this deployment cannot re-send the request itself (no credentials instance in the Codex cluster, e.g. Istio): the token is being refreshed, retry after `Retry-After` (the OpenAI SDKs do so on their own).";
    ClientVersionTooOld = "client_version_too_old", 400, InvalidRequest,
        "The backend wants a newer Codex client for this model: set `FORWARD_CLIENT_HEADERS_CODEX_VERSION` to the current Codex CLI release (`npm view @openai/codex version`) and restart.";
    ModelNotSupported = "model_not_supported", 400, InvalidRequest,
        "The backend does not offer this model to ChatGPT accounts: pick one that `/v1/models` lists.";
    UsageLimitReached = "usage_limit_reached", 429, UsageLimit,
        "The ChatGPT plan's usage limit is reached (with several accounts: every one of them): wait until `resets_at` / `Retry-After`.";
    AccountSwitched = "account_switched", 503, Server,
        "Portable mode with several accounts: the account the request used hit its usage limit and the next request goes to another one; retry at once (the OpenAI SDKs do so on their own).";
    UpstreamBlocked = "upstream_blocked", 502, Upstream,
        "The backend answered with an HTML page (a challenge or block; 403 is kept): check that this host can reach chatgpt.com.";
    UpstreamUnavailable = "upstream_unavailable", 502, Upstream,
        "Envoy could not connect to the upstream: retry shortly, check the network and the cluster.";
    UpstreamTimeout = "upstream_timeout", 504, Upstream,
        "The upstream did not answer in time: retry.";
    UpstreamResponseTooLarge = "upstream_response_too_large", 502, Upstream,
        "A non-streaming answer is over `MAX_REQUEST_BODY_BYTES`: send `\"stream\": true`, or raise the limit.";
    StreamIncomplete = "stream_incomplete", 502, Upstream,
        "The backend closed the stream before the answer was complete: retry.";
    UpstreamEventTooLarge = "upstream_event_too_large", 502, Upstream,
        "The backend sent one event over the 1 MiB limit: retry; report it if it persists.";
}

/// A `code` value: one of the filter's own, or one the upstream sent, passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    Own(Code),
    Upstream(String),
}

impl ErrorCode {
    /// The `code` string clients see, whichever side gave it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Own(code) => code.as_str(),
            Self::Upstream(code) => code,
        }
    }
}

/// An error as the client sees it: HTTP status plus the OpenAI error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: ErrorType,
    pub code: Option<ErrorCode>,
    pub param: Option<String>,
    /// Seconds after which a retry may succeed (becomes `Retry-After`).
    pub retry_after: Option<u64>,
    /// Unix time at which a usage limit resets (kept for Codex-aware clients).
    pub resets_at: Option<u64>,
}

impl ApiError {
    /// An error without a code of the filter's own (bad input, or an upstream failure whose
    /// status the upstream decided).
    pub fn new(status: u16, kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
            retry_after: None,
            resets_at: None,
        }
    }

    /// One of the catalogue's errors, with its status and type.
    pub fn of(code: Code, message: impl Into<String>) -> Self {
        Self {
            code: Some(ErrorCode::Own(code)),
            ..Self::new(code.status(), code.kind(), message)
        }
    }

    /// A 400 `invalid_request_error` without a code: the client sent something malformed.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, ErrorType::InvalidRequest, message)
    }

    /// A 400 naming the offending field in `param` (a JSON path such as `messages[2].content`).
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid_request(message).with_param(param)
    }

    /// Gives an error whose status the upstream decided one of the catalogue's codes.
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = Some(ErrorCode::Own(code));
        self
    }

    /// Passes on the code the upstream gave.
    pub fn with_upstream_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(ErrorCode::Upstream(code.into()));
        self
    }

    /// Replaces the HTTP status, keeping type and code.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Names the request field the error is about.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets (or clears, with `None`) the seconds sent as `Retry-After`.
    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }

    /// The 404 `unknown_url` for a path no route answers; the message lists the routes.
    pub fn not_found(path: &str) -> Self {
        Self::of(
            Code::UnknownUrl,
            format!(
                "Unknown route {path}. This server answers /v1/chat/completions, /v1/completions, /v1/responses and /v1/models."
            ),
        )
    }

    /// The 405 `method_not_allowed` for a known path; `allowed` is the readable method list for
    /// the message (the caller adds the `Allow` header).
    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> Self {
        Self::of(
            Code::MethodNotAllowed,
            format!("Method {method} is not allowed on {path}; use {allowed}."),
        )
    }

    /// The `code` string, if any.
    pub fn code_str(&self) -> Option<&str> {
        self.code.as_ref().map(ErrorCode::as_str)
    }

    /// The JSON body `{"error":{...}}`.
    pub fn body(&self) -> Vec<u8> {
        let body = Envelope {
            error: ErrorObject {
                message: &self.message,
                kind: self.kind.as_str(),
                param: self.param.as_deref(),
                code: self.code_str(),
                resets_at: self.resets_at,
            },
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| FALLBACK_BODY.to_vec())
    }

    /// Response headers of a local reply carrying this error.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(seconds) = self.retry_after {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers
    }
}

const FALLBACK_BODY: &[u8] =
    br#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#;

#[derive(Serialize)]
struct Envelope<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resets_at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_openai_shape() {
        let err = ApiError::invalid_param("messages", "`messages` must be an array");
        let body: serde_json::Value = serde_json::from_slice(&err.body()).unwrap_or_default();
        assert_eq!(
            body,
            serde_json::json!({"error": {"message": "`messages` must be an array",
                "type": "invalid_request_error", "param": "messages", "code": null}})
        );
    }

    #[test]
    fn retry_after_becomes_a_header() {
        let err = ApiError::of(Code::UsageLimitReached, "limit").with_retry_after(Some(30));
        assert!(err.headers().contains(&("retry-after", "30".to_string())));
    }

    /// The README's table of the filter's own codes, as the catalogue defines them.
    fn readme_table() -> String {
        let mut table =
            String::from("| `code` | status | `type` | when, and what to do |\n|---|---|---|---|\n");
        for code in Code::ALL {
            table.push_str(&format!(
                "| `{}` | {} | `{}` | {} |\n",
                code.as_str(),
                code.status(),
                code.kind().as_str(),
                code.remedy().replace('|', "\\|")
            ));
        }
        table
    }

    #[test]
    fn the_readme_error_table_is_the_catalogue() {
        let readme = include_str!("../../README.md");
        let start = "<!-- error codes: generated from src/core/error.rs -->\n";
        let end = "<!-- end of error codes -->";
        let found = readme
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(table, _)| table);
        let want = readme_table();
        assert_eq!(
            found,
            Some(want.as_str()),
            "README.md's error table should be:\n{want}"
        );
    }

    #[test]
    fn catalogue_codes_are_unique_and_their_errors_carry_status_and_type() {
        for (i, code) in Code::ALL.iter().enumerate() {
            assert!(
                !Code::ALL[..i].iter().any(|c| c.as_str() == code.as_str()),
                "{code:?}"
            );
            let err = ApiError::of(*code, "m");
            assert_eq!(
                (err.status, err.kind, err.code_str()),
                (code.status(), code.kind(), Some(code.as_str()))
            );
        }
    }
}
