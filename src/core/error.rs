//! OpenAI-shaped errors: every failure the filter reports, locally or in a stream, goes
//! through `ApiError` so the shape `{"error":{"message","type","param","code"}}` is built in
//! one place.

use serde::Serialize;

/// An error as the client sees it: HTTP status plus the OpenAI error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    /// Seconds after which a retry may succeed (becomes `Retry-After`).
    pub retry_after: Option<u64>,
    /// Unix time at which a usage limit resets (kept for Codex-aware clients).
    pub resets_at: Option<u64>,
}

pub const INVALID_REQUEST: &str = "invalid_request_error";
pub const AUTHENTICATION: &str = "authentication_error";
pub const UPSTREAM: &str = "upstream_error";
pub const SERVER: &str = "server_error";
pub const RATE_LIMIT: &str = "rate_limit_error";
pub const USAGE_LIMIT: &str = "usage_limit_reached";

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
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

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, INVALID_REQUEST, message)
    }

    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid_request(message).with_param(param)
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(
            404,
            INVALID_REQUEST,
            format!("Unknown route {path}. This server answers /v1/chat/completions, /v1/completions and /v1/models."),
        )
        .with_code("unknown_url")
    }

    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> Self {
        Self::new(
            405,
            INVALID_REQUEST,
            format!("Method {method} is not allowed on {path}; use {allowed}."),
        )
        .with_code("method_not_allowed")
    }

    /// The JSON body `{"error":{...}}`.
    pub fn body(&self) -> Vec<u8> {
        let body = Envelope {
            error: ErrorObject {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
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
        let err = ApiError::new(429, USAGE_LIMIT, "limit").with_retry_after(Some(30));
        assert!(err.headers().contains(&("retry-after", "30".to_string())));
    }
}
