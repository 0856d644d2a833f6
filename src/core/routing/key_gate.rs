//! The client key gate: `Authorization: Bearer <key>`, matched against every configured key
//! (`OPENAI_API_KEY` and the keys file) by digest.

use crate::core::error::{ApiError, Code};
use crate::core::keys::{KeyId, KeySet};

/// Checks the `authorization` header values of a request (all of them: a repeated header is
/// refused rather than trusting whichever copy a component happens to read). `Ok(None)`: no
/// keys are configured, the gate is open; `Ok(Some(id))`: the key that was presented.
pub fn check(keys: &KeySet, authorization: &[&str]) -> Result<Option<KeyId>, ApiError> {
    if keys.is_open() {
        return Ok(None);
    }
    let value = match authorization {
        [] => return Err(unauthorized("Missing Authorization header")),
        [one] => *one,
        _ => return Err(unauthorized("Send exactly one Authorization header")),
    };
    let token = bearer_token(value)
        .ok_or_else(|| unauthorized("Invalid Authorization header format. Expected: Bearer <token>"))?;
    match keys.identify(token) {
        Some(id) => Ok(Some(id)),
        None => Err(unauthorized("Invalid API key")),
    }
}

/// The token of a `Bearer` credential; the scheme is case-insensitive (RFC 9110).
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::of(Code::InvalidApiKey, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::type_complexity)] // a table of cases reads best as tuples
    fn gate_decisions() {
        let cases: &[(Option<&str>, &[&str], Result<Option<KeyId>, &str>)] = &[
            (None, &[], Ok(None)),
            (None, &["garbage"], Ok(None)),
            (Some("k"), &["Bearer k"], Ok(Some(0))),
            (Some("k"), &["bearer k"], Ok(Some(0))),
            (Some("k"), &["BEARER   k  "], Ok(Some(0))),
            (Some("j,k"), &["Bearer k"], Ok(Some(1))),
            (Some(""), &["Bearer k"], Err("Invalid API key")),
            (Some("k"), &[], Err("Missing Authorization header")),
            (
                Some("k"),
                &["Basic k"],
                Err("Invalid Authorization header format. Expected: Bearer <token>"),
            ),
            (
                Some("k"),
                &["Bearer"],
                Err("Invalid Authorization header format. Expected: Bearer <token>"),
            ),
            (Some("k"), &["Bearer x"], Err("Invalid API key")),
            (Some("k"), &["Bearer kk"], Err("Invalid API key")),
            (Some("kk"), &["Bearer k"], Err("Invalid API key")),
            (
                Some("k"),
                &["Bearer k", "Bearer k"],
                Err("Send exactly one Authorization header"),
            ),
        ];
        for (expected, headers, outcome) in cases {
            // `Some("")`: an emptied keys file and no OPENAI_API_KEY, which lets nobody in.
            let keys = match expected {
                Some("") => KeySet::from_settings(Some("[]"), None),
                _ => KeySet::from_settings(None, *expected),
            }
            .unwrap();
            let got = check(&keys, headers).map_err(|e| {
                assert_eq!((e.status, e.code_str()), (401, Some("invalid_api_key")));
                e.message
            });
            assert_eq!(got, outcome.map_err(str::to_string), "{expected:?} {headers:?}");
        }
    }
}
