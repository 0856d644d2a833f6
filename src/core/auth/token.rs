//! The ChatGPT token lifecycle, shared by every worker VM through Envoy shared data:
//!
//! ```text
//! valid ──(5 min before exp, a backend 401, or 8 days without exp)──► refresh due
//! refresh due ──(lease taken, call sent)──► refreshing
//! refreshing ──► valid (new tokens, generation + 1)
//!            ──► failed-temporary (retry with backoff: 5 s, 10 s, … 5 min)
//!            ──► outcome unknown (no answer: retry no sooner than 30 s, see below)
//!            ──► failed-permanent (refresh token expired/reused/invalidated, a 400
//!                                  invalid_grant, or a 401: stop, answer 401 "log in again")
//! ```
//!
//! Everything here is pure and driven by the caller's clock.
//!
//! ## A call without an answer
//!
//! Refresh tokens rotate: once the endpoint has answered a refresh, the refresh token it was
//! sent is spent, and sending it again fails with `refresh_token_reused` for good. A refresh
//! call that ends without an HTTP status (timed out, reset, or the connection failed; Envoy
//! does not say which) may or may not have rotated the token, so it is an *unknown outcome*,
//! not an ordinary failure:
//!
//! - The call gets [`REFRESH_CALL_TIMEOUT_SECONDS`], far more than a healthy endpoint needs,
//!   so a slow endpoint's answer (and the rotated token in it) still arrives. The official
//!   Codex client sets no timeout at all on this call and treats any transport error as
//!   transient; a proxy call needs some bound, so this one is generous.
//! - Requests do not wait longer because of it: they keep their own limit
//!   ([`REFRESH_WAIT_SECONDS`], then 503 `token_refresh_pending`) while the call runs on.
//! - After an unknown outcome nobody sends the same refresh token again before
//!   [`UNKNOWN_OUTCOME_RETRY_SECONDS`] (the endpoint may still be working on the first call,
//!   and a second use while it does is exactly what spends the login).
//! - If that later attempt gets `refresh_token_reused`, the lost call did rotate the token and
//!   its answer, the only copy of the new refresh token, is gone: the failure is permanent
//!   like any reuse (answer 401 "log in again"), and the logged message says why.

use serde::{Deserialize, Serialize};

use crate::core::auth::auth_json::ChatgptTokens;
use crate::core::error::{ApiError, Code};

/// Refresh this long before the access token's `exp` (the official client's window).
pub const REFRESH_AHEAD_SECONDS: u64 = 300;
/// Without a readable `exp`, refresh when the last refresh is this old (the official client).
pub const REFRESH_INTERVAL_SECONDS: u64 = 8 * 24 * 3600;
/// A token this close to expiry is not sent any more.
pub const EXPIRY_SKEW_SECONDS: u64 = 10;
/// How long one VM may hold the refresh lease before another may take it over.
pub const LEASE_SECONDS: u64 = 30;
const FIRST_RETRY_SECONDS: u64 = 5;
const MAX_RETRY_SECONDS: u64 = 300;

/// The record in shared data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub tokens: ChatgptTokens,
    /// Incremented by every successful refresh.
    pub generation: u64,
    /// Identifies the configured login, so a new login replaces the old record.
    pub source: String,
    /// A backend 401 said this access token is no longer accepted.
    #[serde(default)]
    pub stale: bool,
    #[serde(default)]
    pub failure: Option<Failure>,
    /// With an external store: this record was reconciled with it since start-up.
    #[serde(default)]
    pub store_synced: bool,
}

/// The last refresh failure: permanent ones end the login, temporary ones wait until `retry_at`
/// (Unix seconds) with a backoff that grows with `attempts`. `code`/`message` are loggable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub permanent: bool,
    pub code: String,
    pub message: String,
    pub attempts: u32,
    pub retry_at: u64,
}

/// What a request can do with the current record.
#[derive(Debug, PartialEq)]
pub enum Availability<'a> {
    Usable(&'a ChatgptTokens),
    /// A refresh is due or running; wait for it.
    Wait,
    /// Nothing will make this record usable without a new login.
    Dead(ApiError),
}

impl TokenRecord {
    /// A fresh record for a configured login (generation 0); `source` identifies that login.
    pub fn new(tokens: ChatgptTokens, source: String) -> Self {
        Self {
            tokens,
            generation: 0,
            source,
            stale: false,
            failure: None,
            store_synced: false,
        }
    }

    fn unexpired(&self, now: u64) -> bool {
        self.tokens
            .expires_at
            .is_none_or(|exp| exp > now.saturating_add(EXPIRY_SKEW_SECONDS))
    }

    /// What a request arriving at `now` (Unix seconds) can do with this record; the decision
    /// behind [`for_request`] and the wait list.
    pub fn availability(&self, now: u64) -> Availability<'_> {
        if let Some(failure) = self.failure.as_ref().filter(|f| f.permanent) {
            return Availability::Dead(relogin_error(failure));
        }
        if self.unexpired(now) && !self.stale {
            return Availability::Usable(&self.tokens);
        }
        if self.tokens.refresh_token.is_none() {
            return Availability::Dead(ApiError::of(
                Code::TokenExpired,
                "The ChatGPT access token has expired and there is no refresh token. Run `make login` (or `codex login`) again.",
            ));
        }
        Availability::Wait
    }

    /// Whether a refresh should start now.
    pub fn refresh_due(&self, now: u64) -> bool {
        if self.tokens.refresh_token.is_none() {
            return false;
        }
        match &self.failure {
            Some(f) if f.permanent || now < f.retry_at => return false,
            _ => {}
        }
        let expiring = match self.tokens.expires_at {
            Some(exp) => exp <= now.saturating_add(REFRESH_AHEAD_SECONDS),
            None => self
                .tokens
                .last_refresh
                .is_some_and(|at| now.saturating_sub(at) >= REFRESH_INTERVAL_SECONDS),
        };
        self.stale || expiring
    }

    /// A backend 401 for a request sent with `generation`: stale only if no refresh
    /// has replaced that token since.
    pub fn mark_stale(&mut self, generation: u64) -> bool {
        let changed = self.generation == generation && !self.stale;
        self.stale |= changed;
        changed
    }

    /// New tokens from the token endpoint; absent fields keep their old value.
    pub fn refreshed(&self, grant: Grant, now: u64) -> Self {
        // The account id is re-derived from the new tokens' claims, else kept.
        let mut tokens = ChatgptTokens::from_parts(
            grant.access_token,
            grant.refresh_token.or_else(|| self.tokens.refresh_token.clone()),
            grant.id_token.or_else(|| self.tokens.id_token.clone()),
            None,
        );
        if tokens.account_id.is_none() {
            tokens.account_id = self.tokens.account_id.clone();
        }
        tokens.last_refresh = Some(now);
        Self {
            tokens,
            generation: self.generation.saturating_add(1),
            stale: false,
            failure: None,
            ..self.clone()
        }
    }

    /// The record after a failed refresh: the same tokens, with the failure and its next retry
    /// time (exponential backoff, at least 30 s after an unknown outcome).
    pub fn failed(&self, error: RefreshError, now: u64) -> Self {
        let attempts = self.failure.as_ref().map_or(0, |f| f.attempts).saturating_add(1);
        let mut backoff = FIRST_RETRY_SECONDS
            .saturating_mul(1 << attempts.min(10).saturating_sub(1))
            .min(MAX_RETRY_SECONDS);
        if error.code == OUTCOME_UNKNOWN {
            backoff = backoff.max(UNKNOWN_OUTCOME_RETRY_SECONDS);
        }
        let after_unknown = self.failure.as_ref().is_some_and(|f| f.code == OUTCOME_UNKNOWN);
        // A refresh token that the endpoint no longer takes, right after a call whose answer was
        // lost: that call is what spent it (a reuse says so; invalid_grant is OAuth's word
        // for the same).
        let spent = error.code.eq_ignore_ascii_case("refresh_token_reused")
            || error.code.eq_ignore_ascii_case(INVALID_GRANT);
        let message = if after_unknown && error.permanent && spent {
            format!(
                "{}; an earlier refresh call whose answer never arrived had already rotated the refresh token",
                error.message
            )
        } else {
            error.message
        };
        Self {
            failure: Some(Failure {
                permanent: error.permanent,
                code: error.code,
                message,
                attempts,
                retry_at: now.saturating_add(backoff),
            }),
            ..self.clone()
        }
    }
}

fn relogin_error(failure: &Failure) -> ApiError {
    ApiError::of(
        Code::RefreshTokenInvalid,
        format!(
            "The ChatGPT login can no longer be refreshed ({}). Run `make login` (or `codex login`) again.",
            failure.code
        ),
    )
}

/// The credentials a request may use: `Ok(Some)` to send now, `Ok(None)` to wait for the
/// refresh that is due, `Err` for a 401 no refresh can fix.
pub fn for_request(record: Option<&TokenRecord>, now: u64) -> Result<Option<&ChatgptTokens>, ApiError> {
    match record.map(|r| r.availability(now)) {
        None => Err(crate::core::auth::auth_json::missing_credentials()),
        Some(Availability::Usable(tokens)) => Ok(Some(tokens)),
        Some(Availability::Wait) => Ok(None),
        Some(Availability::Dead(error)) => Err(error),
    }
}

/// How long a request may wait for a refresh before it gets a 503.
pub const REFRESH_WAIT_SECONDS: u64 = 30;

/// The 503 for a request that waited too long for a refresh.
pub fn refresh_timeout() -> ApiError {
    ApiError::of(
        Code::TokenRefreshPending,
        "The ChatGPT access token is being refreshed and the refresh did not finish in time; retry shortly.",
    )
    .with_retry_after(Some(5))
}

/// The answer to a request the backend refused with 401 when this filter instance cannot send
/// it again itself (no credentials instance in the Codex cluster: Envoy's retry would repeat
/// the refused token, and without `allow_on_headers_stop_iteration` the response cannot wait
/// for the refresh). The token is being refreshed, so the client is told to retry, not to log
/// in again; a 503 with `Retry-After` is what the OpenAI SDKs retry on their own.
pub fn rejected_retry() -> ApiError {
    ApiError::of(
        Code::UpstreamTokenRejected,
        "The ChatGPT backend refused the access token (it expired or was revoked early); the wrapper is refreshing it now. Retry the request in a moment: there is no need to log in again.",
    )
    .with_retry_after(Some(1))
}

// --- the refresh protocol ----------------------------------------------------------------

/// How long the refresh call may take before its outcome counts as unknown (see the module
/// documentation): far longer than a healthy token endpoint needs.
pub const REFRESH_CALL_TIMEOUT_SECONDS: u64 = 120;
/// After a refresh call without an answer, the same refresh token is not sent again sooner.
pub const UNKNOWN_OUTCOME_RETRY_SECONDS: u64 = 30;
/// The failure code of a refresh call that ended without an HTTP status.
pub const OUTCOME_UNKNOWN: &str = "outcome_unknown";

/// The OAuth client id of the Codex CLI (a public client, no secret).
pub const DEFAULT_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

#[derive(Serialize)]
struct RefreshRequest<'a> {
    client_id: &'a str,
    grant_type: &'static str,
    refresh_token: &'a str,
}

/// `POST /oauth/token` body, as the current official client sends it (no `scope`).
pub fn refresh_body(client_id: &str, refresh_token: &str) -> Vec<u8> {
    serde_json::to_vec(&RefreshRequest {
        client_id,
        grant_type: "refresh_token",
        refresh_token,
    })
    .unwrap_or_default()
}

/// The token endpoint's 200 answer; fields it leaves out keep their old value (see
/// [`TokenRecord::refreshed`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Grant {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

/// Why a refresh failed; `permanent` means no retry can help and the user must log in again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshError {
    pub permanent: bool,
    pub code: String,
    /// Safe to log: never contains a token.
    pub message: String,
}

impl RefreshError {
    /// The host refused to send the call (for example, no such cluster): nothing reached the
    /// endpoint, so an ordinary retry is safe.
    pub fn not_sent() -> Self {
        Self {
            permanent: false,
            code: "unreachable".into(),
            message: "the token endpoint could not be called".into(),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// Codes that end the login whatever the status (compared without case).
const PERMANENT_CODES: &[&str] = &[
    "refresh_token_expired",
    "refresh_token_reused",
    "refresh_token_invalidated",
];

/// OAuth's code for an unusable refresh token (RFC 6749); permanent when the status is 400.
const INVALID_GRANT: &str = "invalid_grant";

/// A code as the token endpoint wrote it; a blank one names nothing (the next place is read).
fn code_text(code: &str) -> Option<String> {
    (!code.trim().is_empty()).then(|| code.trim().to_string())
}

/// The error code of a token endpoint answer, where the official client reads it: `error.code`
/// (object form), then `error` (string form), then a top-level `code`.
fn error_code(body: Option<&ErrorBody>) -> Option<String> {
    let body = body?;
    let nested = match &body.error {
        Some(serde_json::Value::Object(o)) => o.get("code").and_then(|c| c.as_str()).and_then(code_text),
        Some(serde_json::Value::String(text)) => code_text(text),
        _ => None,
    };
    nested.or_else(|| body.code.as_deref().and_then(code_text))
}

/// Whether a failed refresh can never succeed with this refresh token: any 401, one of the
/// `refresh_token_*` codes, or a 400 `invalid_grant` (the official client's classes).
fn is_permanent(status: u16, code: &str) -> bool {
    status == 401
        || PERMANENT_CODES.iter().any(|c| c.eq_ignore_ascii_case(code))
        || (status == 400 && code.eq_ignore_ascii_case(INVALID_GRANT))
}

/// The token endpoint's answer; `status` is `None` when the call ended without one, which
/// leaves its outcome unknown.
pub fn parse_refresh_response(status: Option<u16>, body: &[u8]) -> Result<Grant, RefreshError> {
    let status = match status {
        Some(200) => {
            return serde_json::from_slice::<Grant>(body)
                .ok()
                .filter(|g| !g.access_token.trim().is_empty())
                .ok_or_else(|| RefreshError {
                    permanent: false,
                    code: "invalid_response".into(),
                    message: "the token endpoint answered 200 without an access_token".into(),
                });
        }
        Some(status) => status,
        None => {
            return Err(RefreshError {
                permanent: false,
                code: OUTCOME_UNKNOWN.into(),
                message: format!(
                    "no answer from the token endpoint (timed out after {REFRESH_CALL_TIMEOUT_SECONDS}s, or the connection failed); it may have rotated the refresh token"
                ),
            });
        }
    };
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = error_code(parsed.as_ref()).unwrap_or_else(|| format!("http_{status}"));
    let detail = parsed.and_then(|b| b.error_description).unwrap_or_default();
    let permanent = is_permanent(status, &code);
    Err(RefreshError {
        permanent,
        message: format!(
            "the token endpoint answered HTTP {status} ({code}){}",
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        ),
        code,
    })
}

// --- the refresh lease ---------------------------------------------------------------------

/// Who may refresh: one VM at a time, until `until` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: u64,
    pub until: u64,
}

impl Lease {
    /// `current` is what shared data holds; a lease whose holder died runs out.
    pub fn may_take(current: Option<&Lease>, me: u64, now: u64) -> bool {
        current.is_none_or(|l| l.holder == me || l.until <= now)
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
