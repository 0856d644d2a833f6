//! Upstream failures → OpenAI-shaped errors with a fitting status: HTTP error responses from
//! the backend, and `response.failed` / `error` events inside a 200 stream.

use std::borrow::Cow;

use serde::Deserialize;

use crate::core::config::identity::{DEFAULT_CLIENT_VERSION, VERSION_VARIABLE};
use crate::core::error::{ApiError, Code, ErrorType};

/// The error fields, whichever of the backend's shapes carried them.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorFields<'a> {
    #[serde(borrow, rename = "type", default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub param: Option<Cow<'a, str>>,
    #[serde(default)]
    pub resets_at: Option<f64>,
    #[serde(default)]
    pub resets_in_seconds: Option<f64>,
}

/// Rate-limit header values the backend sent with the response (all optional).
#[derive(Debug, Default, Clone)]
pub struct LimitHeaders {
    pub retry_after: Option<String>,
    pub primary_used_percent: Option<String>,
    pub primary_reset_at: Option<String>,
    pub primary_reset_after_seconds: Option<String>,
    pub secondary_used_percent: Option<String>,
    pub secondary_reset_at: Option<String>,
    pub secondary_reset_after_seconds: Option<String>,
}

impl LimitHeaders {
    /// Fills the record from `(name, value)` pairs; names must be lower-case.
    pub fn from_pairs<'h>(pairs: impl IntoIterator<Item = (&'h str, &'h str)>) -> Self {
        let mut h = Self::default();
        for (name, value) in pairs {
            let slot = match name {
                "retry-after" => &mut h.retry_after,
                "x-codex-primary-used-percent" => &mut h.primary_used_percent,
                "x-codex-primary-reset-at" => &mut h.primary_reset_at,
                "x-codex-primary-reset-after-seconds" => &mut h.primary_reset_after_seconds,
                "x-codex-secondary-used-percent" => &mut h.secondary_used_percent,
                "x-codex-secondary-reset-at" => &mut h.secondary_reset_at,
                "x-codex-secondary-reset-after-seconds" => &mut h.secondary_reset_after_seconds,
                _ => continue,
            };
            *slot = Some(value.trim().to_string());
        }
        h
    }

    /// The usage windows the backend reported: used percent (rounded) and reset time (Unix
    /// seconds, from `*-reset-at` or the older `*-reset-after-seconds`), primary then secondary.
    pub fn windows(&self, now: u64) -> [Window; 2] {
        let window = |used: &Option<String>, at: &Option<String>, after: &Option<String>| Window {
            used_percent: used
                .as_deref()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|p| *p >= 0.0)
                .map(|p| p.round() as u64),
            resets_at: at.as_deref().and_then(|v| v.parse::<u64>().ok()).or_else(|| {
                after
                    .as_deref()
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(|s| now.saturating_add(s.max(0.0).ceil() as u64))
            }),
        };
        [
            window(
                &self.primary_used_percent,
                &self.primary_reset_at,
                &self.primary_reset_after_seconds,
            ),
            window(
                &self.secondary_used_percent,
                &self.secondary_reset_at,
                &self.secondary_reset_after_seconds,
            ),
        ]
    }

    /// Seconds to wait, from `Retry-After` or else the exhausted window's reset time.
    pub fn retry_after(&self, now: u64) -> Option<u64> {
        if let Some(seconds) = self.retry_after.as_deref().and_then(|v| v.parse::<u64>().ok()) {
            return Some(seconds);
        }
        let exhausted = |used: &Option<String>| {
            used.as_deref()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|p| p >= 100.0)
        };
        let windows = [
            (
                &self.secondary_used_percent,
                &self.secondary_reset_at,
                &self.secondary_reset_after_seconds,
            ),
            (
                &self.primary_used_percent,
                &self.primary_reset_at,
                &self.primary_reset_after_seconds,
            ),
        ];
        let reset = |(_, at, after): &(&Option<String>, &Option<String>, &Option<String>)| {
            seconds_until(
                at.as_deref().and_then(|v| v.parse().ok()),
                after.as_deref().and_then(|v| v.parse().ok()),
                now,
            )
        };
        windows
            .iter()
            .filter(|w| exhausted(w.0))
            .find_map(reset)
            .or_else(|| windows.iter().rev().find_map(reset))
    }
}

/// One usage window from the `x-codex-*` headers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub used_percent: Option<u64>,
    pub resets_at: Option<u64>,
}

#[derive(Deserialize)]
struct HttpBody<'a> {
    #[serde(borrow, default)]
    error: Option<ErrorSlot<'a>>,
    #[serde(borrow, default)]
    detail: Option<Detail<'a>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorSlot<'a> {
    Object(#[serde(borrow)] ErrorFields<'a>),
    Text(#[serde(borrow)] Cow<'a, str>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Detail<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

/// A non-2xx HTTP response from the backend.
pub fn from_http(status: u16, body: &[u8], headers: &LimitHeaders, now: u64) -> ApiError {
    let mut fields = ErrorFields::default();
    if let Ok(parsed) = serde_json::from_slice::<HttpBody>(body) {
        match parsed.error {
            Some(ErrorSlot::Object(object)) => fields = object,
            Some(ErrorSlot::Text(text)) => fields.kind = Some(text),
            None => {}
        }
        if let Some(Detail::Text(detail)) = parsed.detail {
            fields.message = fields.message.or(Some(detail));
        }
        fields.code = fields.code.or(parsed.code);
        fields.message = fields.message.or(parsed.message);
    } else if looks_like_html(body) {
        return ApiError::of(
            Code::UpstreamBlocked,
            format!(
                "The ChatGPT backend answered HTTP {status} with an HTML page (a Cloudflare challenge or block). Check that this host can reach chatgpt.com."
            ),
        )
        .with_status(if status == 403 { 403 } else { 502 });
    } else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if !text.is_empty() {
            fields.message = Some(Cow::Owned(truncate(text, 300).to_string()));
        }
    }
    let mut err = classify(Some(status), &fields, now);
    if err.retry_after.is_none() && matches!(err.status, 429 | 503) {
        err.retry_after = headers.retry_after(now);
    }
    err
}

/// A `response.failed` or `error` event.
pub fn from_stream(fields: &ErrorFields<'_>, now: u64) -> ApiError {
    classify(None, fields, now)
}

fn classify(status: Option<u16>, f: &ErrorFields<'_>, now: u64) -> ApiError {
    let code = f.code.as_deref().or(f.kind.as_deref()).unwrap_or("");
    let kind = f.kind.as_deref().unwrap_or("");
    let message = f.message.as_deref().map(str::trim).filter(|m| !m.is_empty());
    let with = |status: u16, kind: ErrorType, default: &str| {
        let mut err = ApiError::new(status, kind, message.unwrap_or(default));
        if !code.is_empty() {
            err = err.with_upstream_code(code);
        }
        if let Some(param) = &f.param {
            err = err.with_param(param.as_ref());
        }
        err
    };
    if kind == "usage_limit_reached" || code == "usage_limit_reached" {
        let mut err = with(429, ErrorType::UsageLimit, "You've hit your ChatGPT usage limit.")
            .with_code(Code::UsageLimitReached);
        let wait = seconds_until(f.resets_at, f.resets_in_seconds, now);
        err.retry_after = wait;
        err.resets_at = f
            .resets_at
            .filter(|at| *at > now as f64)
            .map(|at| at as u64)
            .or(wait.map(|w| now.saturating_add(w)));
        return err;
    }
    if matches!(status, None | Some(400))
        && let Some(err) = model_refusal(message.unwrap_or(""))
    {
        return err;
    }
    match code {
        // A policy refusal (400 or 403 over HTTP, also in-stream): the request's fault, not a
        // server error, so it keeps a 4xx status.
        "misalignment_policy_violation" => {
            let status = status.filter(|s| (400..500).contains(s)).unwrap_or(400);
            return with(
                status,
                ErrorType::InvalidRequest,
                "The request was refused by the model's policy (misalignment_policy_violation); change the request rather than retrying it.",
            );
        }
        "context_length_exceeded" | "invalid_prompt" | "invalid_value" | "cyber_policy" | "bio_policy" => {
            return with(
                400,
                ErrorType::InvalidRequest,
                "The request was rejected by the model's policy or limits.",
            );
        }
        "usage_not_included" => {
            return with(
                403,
                ErrorType::InvalidRequest,
                "This ChatGPT plan does not include Codex.",
            );
        }
        "insufficient_quota" => return with(429, ErrorType::RateLimit, "The account has no quota left."),
        "rate_limit_exceeded" => {
            let mut err = with(429, ErrorType::RateLimit, "Rate limit reached; retry shortly.");
            err.retry_after = message.and_then(parse_try_again);
            return err;
        }
        "server_is_overloaded" | "slow_down" => {
            return with(
                503,
                ErrorType::Server,
                "The ChatGPT backend is overloaded; retry shortly.",
            );
        }
        _ => {}
    }
    match status {
        None => with(
            502,
            ErrorType::Upstream,
            "The ChatGPT backend reported a failure.",
        ),
        Some(401) => {
            let mut err = with(
                401,
                ErrorType::Authentication,
                "The ChatGPT backend rejected the access token.",
            );
            err.message = format!(
                "{}. Run `make login` (or `codex login`) again.",
                err.message.trim_end_matches('.')
            );
            if err.code.is_none() {
                err = err.with_code(Code::InvalidUpstreamToken);
            }
            err
        }
        Some(429) => with(429, ErrorType::RateLimit, "Rate limited by the ChatGPT backend."),
        Some(404) => with(
            502,
            ErrorType::Upstream,
            "The ChatGPT backend answered 404: check CHATGPT_RESPONSES_URL.",
        ),
        Some(s) if s >= 500 => with(
            502,
            ErrorType::Upstream,
            &format!("The ChatGPT backend failed with HTTP {s}."),
        ),
        Some(s) if s >= 400 => with(
            s,
            ErrorType::InvalidRequest,
            &format!("The ChatGPT backend rejected the request (HTTP {s})."),
        ),
        Some(s) => with(
            502,
            ErrorType::Upstream,
            &format!("Unexpected HTTP {s} from the ChatGPT backend."),
        ),
    }
}

/// The backend's 400 for a model this client may not use: the announced Codex version is
/// older than the model's `minimal_client_version`, or the model is not offered to ChatGPT
/// accounts at all. Both name the model in quotes.
fn model_refusal(message: &str) -> Option<ApiError> {
    let lower = message.to_ascii_lowercase();
    let model = message
        .split('\'')
        .nth(1)
        .filter(|m| !m.is_empty() && m.len() <= 100)
        .map_or_else(|| "this model".to_string(), |m| format!("the '{m}' model"));
    if lower.contains("requires a newer version of codex") {
        return Some(ApiError::of(
            Code::ClientVersionTooOld,
            format!(
                "The ChatGPT backend refused {model} because the Codex client version the wrapper announces is too old (\"{message}\"). Set {VERSION_VARIABLE} to the current Codex CLI release (`npm view @openai/codex version`; the built-in default is {DEFAULT_CLIENT_VERSION}) and restart the wrapper."
            ),
        ));
    }
    if lower.contains("is not supported when using codex with a chatgpt account") {
        return Some(ApiError::of(
            Code::ModelNotSupported,
            format!(
                "The ChatGPT backend does not offer {model} to ChatGPT accounts (\"{message}\"); a newer client version will not help. Use a model that /v1/models lists."
            ),
        ));
    }
    None
}

fn seconds_until(at: Option<f64>, after: Option<f64>, now: u64) -> Option<u64> {
    let from_at = at
        .filter(|at| *at > now as f64)
        .map(|at| (at - now as f64).ceil() as u64);
    from_at.or_else(|| after.filter(|s| *s > 0.0).map(|s| s.ceil() as u64))
}

/// "Please try again in 11.054s" / "…in 350ms" → whole seconds (at least 1).
fn parse_try_again(message: &str) -> Option<u64> {
    let rest = message.split("try again in ").nth(1)?;
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let value: f64 = number.parse().ok()?;
    let unit = rest.get(number.len()..).unwrap_or("");
    let seconds = if unit.starts_with("ms") {
        value / 1000.0
    } else {
        value
    };
    Some(seconds.ceil().max(1.0) as u64)
}

fn looks_like_html(body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(body.get(..body.len().min(256)).unwrap_or(body)).to_ascii_lowercase();
    head.trim_start().starts_with("<!doctype html") || head.trim_start().starts_with("<html")
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_000_000;

    fn http(status: u16, body: &str) -> ApiError {
        from_http(status, body.as_bytes(), &LimitHeaders::default(), NOW)
    }

    #[test]
    #[allow(clippy::type_complexity)] // a table of cases reads best as tuples
    fn http_errors_get_fitting_statuses() {
        let cases: &[(u16, &str, u16, ErrorType, Option<&str>, &str)] = &[
            (
                400,
                r#"{"detail":"Instructions are not valid"}"#,
                400,
                ErrorType::InvalidRequest,
                None,
                "Instructions are not valid",
            ),
            (
                400,
                r#"{"detail":"The 'gpt-9' model is not supported when using Codex with a ChatGPT account."}"#,
                400,
                ErrorType::InvalidRequest,
                Some("model_not_supported"),
                "does not offer the 'gpt-9' model to ChatGPT accounts",
            ),
            (
                400,
                r#"{"detail":"The 'gpt-6-sol' model requires a newer version of Codex. Please upgrade to the latest app or CLI and try again."}"#,
                400,
                ErrorType::InvalidRequest,
                Some("client_version_too_old"),
                "Set FORWARD_CLIENT_HEADERS_CODEX_VERSION to the current Codex CLI release",
            ),
            (
                400,
                r#"{"error":{"message":"The 'gpt-6.1-sol' model requires a newer version of Codex. Please upgrade to the latest app or CLI and try again.","type":"invalid_request_error"}}"#,
                400,
                ErrorType::InvalidRequest,
                Some("client_version_too_old"),
                "refused the 'gpt-6.1-sol' model",
            ),
            (
                400,
                r#"{"error":{"code":"misalignment_policy_violation","message":"This request was flagged."}}"#,
                400,
                ErrorType::InvalidRequest,
                Some("misalignment_policy_violation"),
                "This request was flagged.",
            ),
            (
                403,
                r#"{"error":{"code":"misalignment_policy_violation","message":""}}"#,
                403,
                ErrorType::InvalidRequest,
                Some("misalignment_policy_violation"),
                "refused by the model's policy",
            ),
            (
                401,
                r#"{"error":{"message":"Provided token expired.","type":"invalid_request_error","code":"token_expired"}}"#,
                401,
                ErrorType::Authentication,
                Some("token_expired"),
                "Provided token expired. Run `make login` (or `codex login`) again",
            ),
            (
                401,
                "",
                401,
                ErrorType::Authentication,
                Some("invalid_upstream_token"),
                "rejected the access token",
            ),
            (
                429,
                r#"{"error":{"type":"usage_limit_reached","message":"You've hit your usage limit.","plan_type":"plus","resets_at":1767000600}}"#,
                429,
                ErrorType::UsageLimit,
                Some("usage_limit_reached"),
                "You've hit your usage limit.",
            ),
            (
                429,
                r#"{"error":{"type":"usage_not_included","message":"no codex"}}"#,
                403,
                ErrorType::InvalidRequest,
                Some("usage_not_included"),
                "no codex",
            ),
            (500, "oops", 502, ErrorType::Upstream, None, "oops"),
            (502, "", 502, ErrorType::Upstream, None, "HTTP 502"),
            (
                503,
                r#"{"error":{"code":"server_is_overloaded","message":"busy"}}"#,
                503,
                ErrorType::Server,
                Some("server_is_overloaded"),
                "busy",
            ),
            (
                403,
                "<!DOCTYPE html><html>challenge</html>",
                403,
                ErrorType::Upstream,
                Some("upstream_blocked"),
                "Cloudflare",
            ),
            (404, "not here", 502, ErrorType::Upstream, None, "not here"),
            (
                422,
                r#"{"error":"invalid_grant","code":"x"}"#,
                422,
                ErrorType::InvalidRequest,
                Some("x"),
                "rejected the request",
            ),
        ];
        for (status, body, want_status, kind, code, message) in cases {
            let err = http(*status, body);
            assert_eq!(
                (err.status, err.kind, err.code_str()),
                (*want_status, *kind, *code),
                "{status} {body}"
            );
            assert!(err.message.contains(message), "{status} {body}: {}", err.message);
        }
    }

    #[test]
    fn usage_limits_carry_reset_times() {
        let err = http(
            429,
            r#"{"error":{"type":"usage_limit_reached","message":"m","resets_at":1767000600}}"#,
        );
        assert_eq!((err.retry_after, err.resets_at), (Some(600), Some(1_767_000_600)));
        let err = http(
            429,
            r#"{"error":{"type":"usage_limit_reached","message":"m","resets_in_seconds":42}}"#,
        );
        assert_eq!((err.retry_after, err.resets_at), (Some(42), Some(NOW + 42)));
        // A past resets_at falls back to resets_in_seconds.
        let err = http(
            429,
            r#"{"error":{"type":"usage_limit_reached","resets_at":5,"resets_in_seconds":9}}"#,
        );
        assert_eq!(err.retry_after, Some(9));
    }

    #[test]
    fn absurd_reset_times_saturate_instead_of_overflowing() {
        let err = http(
            429,
            r#"{"error":{"type":"usage_limit_reached","resets_in_seconds":1e308}}"#,
        );
        assert_eq!((err.retry_after, err.resets_at), (Some(u64::MAX), Some(u64::MAX)));
        let h = LimitHeaders::from_pairs([("x-codex-primary-reset-after-seconds", "1e30")]);
        assert_eq!(h.windows(NOW)[0].resets_at, Some(u64::MAX));
    }

    #[test]
    fn retry_after_from_headers_prefers_the_exhausted_window() {
        let h = LimitHeaders::from_pairs([
            ("x-codex-primary-used-percent", "40"),
            ("x-codex-primary-reset-at", "1767000100"),
            ("x-codex-secondary-used-percent", "100"),
            ("x-codex-secondary-reset-at", "1767003600"),
        ]);
        assert_eq!(h.retry_after(NOW), Some(3600));
        let h = LimitHeaders::from_pairs([("retry-after", "12")]);
        assert_eq!(h.retry_after(NOW), Some(12));
        let h = LimitHeaders::from_pairs([("x-codex-primary-reset-after-seconds", "30")]);
        assert_eq!(h.retry_after(NOW), Some(30));
        let err = from_http(429, b"{}", &LimitHeaders::from_pairs([("retry-after", "7")]), NOW);
        assert_eq!((err.status, err.retry_after), (429, Some(7)));
    }

    #[test]
    fn usage_windows_from_both_header_forms() {
        let h = LimitHeaders::from_pairs([
            ("x-codex-primary-used-percent", "42.4"),
            ("x-codex-primary-reset-at", "1767003600"),
            ("x-codex-secondary-used-percent", "13.5"),
            ("x-codex-secondary-reset-after-seconds", "60"),
        ]);
        assert_eq!(
            h.windows(NOW),
            [
                Window {
                    used_percent: Some(42),
                    resets_at: Some(1_767_003_600)
                },
                Window {
                    used_percent: Some(14),
                    resets_at: Some(NOW + 60)
                },
            ]
        );
        assert_eq!(LimitHeaders::default().windows(NOW), [Window::default(); 2]);
    }

    #[test]
    fn a_policy_refusal_is_the_clients_400_not_a_server_error() {
        let fields: ErrorFields =
            serde_json::from_str(r#"{"code":"misalignment_policy_violation","message":""}"#)
                .unwrap_or_default();
        let err = from_stream(&fields, NOW);
        assert_eq!(
            (err.status, err.kind, err.code_str()),
            (
                400,
                ErrorType::InvalidRequest,
                Some("misalignment_policy_violation")
            )
        );
        assert!(err.message.contains("change the request"), "{}", err.message);
        assert_eq!(err.retry_after, None);
        // Over HTTP a 5xx status with this code still means the request was refused.
        let err = http(500, r#"{"error":{"code":"misalignment_policy_violation"}}"#);
        assert_eq!(err.status, 400);
    }

    #[test]
    fn only_a_400_reads_as_a_model_refusal() {
        let body = r#"{"detail":"The 'gpt-6-sol' model requires a newer version of Codex. Please upgrade to the latest app or CLI and try again."}"#;
        assert_eq!(http(400, body).code_str(), Some("client_version_too_old"));
        assert!(http(400, body).message.contains("0.169.0"));
        assert_eq!(http(503, body).status, 502);
        // No quoted model name: the message still says what to set.
        let err = http(
            400,
            r#"{"detail":"This model requires a newer version of Codex."}"#,
        );
        assert!(err.message.contains("this model") && err.message.contains(VERSION_VARIABLE));
    }

    #[test]
    fn stream_errors_are_classified_by_code() {
        let cases: &[(&str, u16, Option<u64>)] = &[
            (
                r#"{"code":"context_length_exceeded","message":"Your input exceeds the context window.\nTry less."}"#,
                400,
                None,
            ),
            (
                r#"{"code":"rate_limit_exceeded","message":"Rate limit reached. Please try again in 11.054s."}"#,
                429,
                Some(12),
            ),
            (
                r#"{"code":"rate_limit_exceeded","message":"Please try again in 350ms"}"#,
                429,
                Some(1),
            ),
            (
                r#"{"type":"usage_limit_reached","message":"limit","resets_in_seconds":300}"#,
                429,
                Some(300),
            ),
            (
                r#"{"type":"service_unavailable_error","code":"server_is_overloaded","message":"busy"}"#,
                503,
                None,
            ),
            (r#"{"code":"insufficient_quota","message":"q"}"#, 429, None),
            (r#"{"code":"cyber_policy","message":""}"#, 400, None),
            (
                r#"{"code":"misalignment_policy_violation","message":"flagged"}"#,
                400,
                None,
            ),
            (
                r#"{"message":"The 'gpt-6-sol' model requires a newer version of Codex. Please upgrade to the latest app or CLI and try again."}"#,
                400,
                None,
            ),
            (r#"{"code":"something_new","message":"?"}"#, 502, None),
            (r#"{}"#, 502, None),
        ];
        for (json, status, retry) in cases {
            let fields: ErrorFields = serde_json::from_str(json).unwrap_or_default();
            let err = from_stream(&fields, NOW);
            assert_eq!((err.status, err.retry_after), (*status, *retry), "{json}");
            assert!(!err.message.is_empty(), "{json}");
        }
    }
}
