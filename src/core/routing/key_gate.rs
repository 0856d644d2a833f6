//! The client key gate: `Authorization: Bearer <OPENAI_API_KEY>`.

use crate::core::error::{ApiError, Code};

/// Checks the `authorization` header values of a request (all of them: a repeated header is
/// refused rather than trusting whichever copy a component happens to read).
pub fn check(expected: Option<&str>, authorization: &[&str]) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let value = match authorization {
        [] => return Err(unauthorized("Missing Authorization header")),
        [one] => *one,
        _ => return Err(unauthorized("Send exactly one Authorization header")),
    };
    let token = bearer_token(value)
        .ok_or_else(|| unauthorized("Invalid Authorization header format. Expected: Bearer <token>"))?;
    if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("Invalid API key"))
    }
}

/// The token of a `Bearer` credential; the scheme is case-insensitive (RFC 9110).
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares without an early exit, so response time does not reveal how much of a guess matched.
/// The length is not secret: every OpenAI-style key has a well-known length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        let y = b.get(i % b.len().max(1)).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
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
        let cases: &[(Option<&str>, &[&str], Result<(), &str>)] = &[
            (None, &[], Ok(())),
            (None, &["garbage"], Ok(())),
            (Some("k"), &["Bearer k"], Ok(())),
            (Some("k"), &["bearer k"], Ok(())),
            (Some("k"), &["BEARER   k  "], Ok(())),
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
            let got = check(*expected, headers).map_err(|e| {
                assert_eq!((e.status, e.code_str()), (401, Some("invalid_api_key")));
                e.message
            });
            assert_eq!(got, outcome.map_err(str::to_string), "{expected:?} {headers:?}");
        }
    }

    #[test]
    fn constant_time_eq_is_equality() {
        for (a, b) in [
            ("", ""),
            ("a", "a"),
            ("a", ""),
            ("", "a"),
            ("abc", "abd"),
            ("abc", "ab"),
            ("sk-1", "sk-1"),
        ] {
            assert_eq!(
                constant_time_eq(a.as_bytes(), b.as_bytes()),
                a == b,
                "{a:?} {b:?}"
            );
        }
    }
}
