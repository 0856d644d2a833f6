//! The device-code login (Codex CLI's `codex login --device-auth`): ask the issuer for a user
//! code, show it with the page to enter it on, poll until it was entered, exchange the
//! authorization code the poll returns. Needs no browser on this machine and no input, so it
//! runs on a server, in a container or under CI.

use std::time::{Duration, Instant};

use serde::Deserialize;

use codex_openai_wrapper::core::auth::auth_json::ChatgptTokens;

use crate::failure::Failure;
use crate::issuer::Issuer;

const USER_CODE_PATH: &str = "/api/accounts/deviceauth/usercode";
const POLL_PATH: &str = "/api/accounts/deviceauth/token";
/// Where the user enters the code.
const VERIFICATION_PATH: &str = "/codex/device";
/// The redirect URI the issuer bound the device's authorization code to.
const CALLBACK_PATH: &str = "/deviceauth/callback";
/// A user code lives 15 minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// When the issuer names no interval.
const DEFAULT_INTERVAL_SECONDS: u64 = 5;

#[derive(Deserialize)]
struct UserCode {
    device_auth_id: String,
    #[serde(alias = "usercode")]
    user_code: String,
    /// Seconds, which the issuer sends as a string.
    #[serde(default)]
    interval: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Authorized {
    authorization_code: String,
    code_verifier: String,
}

/// What the user is shown: the page and the code.
pub struct Prompt {
    pub verification_url: String,
    pub user_code: String,
}

fn interval_of(value: Option<&serde_json::Value>) -> u64 {
    let seconds = match value {
        Some(serde_json::Value::String(text)) => text.trim().parse().ok(),
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    // At least a second apart, whatever the issuer says: a zero would poll in a busy loop.
    seconds.unwrap_or(DEFAULT_INTERVAL_SECONDS).clamp(1, 60)
}

/// The issuer's error code in any of the places token endpoints put it.
fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error");
    error
        .and_then(|e| e.get("code"))
        .or(error.filter(|e| e.is_string()))
        .or_else(|| value.get("code"))
        .and_then(|c| c.as_str())
        .map(str::to_string)
}

pub fn login(
    issuer: &Issuer,
    timeout: Duration,
    show: impl FnOnce(&Prompt),
) -> Result<ChatgptTokens, Failure> {
    let answer = issuer.http.post_json(
        &issuer.url(USER_CODE_PATH),
        &serde_json::json!({"client_id": issuer.client_id}),
    )?;
    match answer.status {
        200..=299 => {}
        404 => {
            return Err(Failure::DeviceLoginDisabled {
                issuer: issuer.base.clone(),
            });
        }
        status => {
            return Err(Failure::Other(format!(
                "the device code request failed: {} answered HTTP {status}{}",
                issuer.base,
                error_code(&answer.body).map_or_else(String::new, |c| format!(" ({c})"))
            )));
        }
    }
    let code: UserCode = serde_json::from_slice(&answer.body)
        .map_err(|_| Failure::Other("the device code answer has no device_auth_id and user_code".into()))?;
    let interval = Duration::from_secs(interval_of(code.interval.as_ref()));
    show(&Prompt {
        verification_url: issuer.url(VERIFICATION_PATH),
        user_code: code.user_code.clone(),
    });
    let authorized = poll(issuer, &code, interval, timeout)?;
    issuer.exchange(
        &authorized.authorization_code,
        &issuer.url(CALLBACK_PATH),
        &authorized.code_verifier,
    )
}

fn poll(
    issuer: &Issuer,
    code: &UserCode,
    interval: Duration,
    timeout: Duration,
) -> Result<Authorized, Failure> {
    let deadline = Instant::now().checked_add(timeout);
    let body = serde_json::json!({"device_auth_id": code.device_auth_id, "user_code": code.user_code});
    loop {
        let answer = issuer.http.post_json(&issuer.url(POLL_PATH), &body)?;
        let code = error_code(&answer.body).unwrap_or_default();
        match answer.status {
            200..=299 => {
                return serde_json::from_slice(&answer.body).map_err(|_| {
                    Failure::Other(
                        "the device authorization answer has no authorization_code and code_verifier".into(),
                    )
                });
            }
            // Still waiting for the user.
            403 | 404 if !code.to_ascii_lowercase().contains("expired") => {}
            410 => return Err(Failure::CodeExpired),
            _ if code.to_ascii_lowercase().contains("expired") => return Err(Failure::CodeExpired),
            status => {
                return Err(Failure::Refused(format!(
                    "the device authorization failed: HTTP {status}{}",
                    if code.is_empty() {
                        String::new()
                    } else {
                        format!(" ({code})")
                    }
                )));
            }
        }
        let now = Instant::now();
        match deadline {
            Some(deadline) if now >= deadline => return Err(Failure::CodeExpired),
            Some(deadline) => std::thread::sleep(interval.min(deadline.saturating_duration_since(now))),
            None => std::thread::sleep(interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let json = |v: serde_json::Value| interval_of(Some(&v));
        assert_eq!(json("5".into()), 5);
        assert_eq!(json(" 3 ".into()), 3);
        assert_eq!(json(7.into()), 7);
        assert_eq!(json("0".into()), 1);
        assert_eq!(json("soon".into()), DEFAULT_INTERVAL_SECONDS);
        assert_eq!(interval_of(None), DEFAULT_INTERVAL_SECONDS);
    }

    #[test]
    fn error_codes_in_every_place() {
        assert_eq!(error_code(br#"{"error":{"code":"a"}}"#).as_deref(), Some("a"));
        assert_eq!(error_code(br#"{"error":"b"}"#).as_deref(), Some("b"));
        assert_eq!(error_code(br#"{"code":"c"}"#).as_deref(), Some("c"));
        assert_eq!(error_code(b"not json"), None);
    }
}
