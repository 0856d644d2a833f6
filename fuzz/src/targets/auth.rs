//! Credentials parsing: the Codex `auth.json` document, the JWT claims read from its tokens,
//! the RFC 3339 `last_refresh`, and the token endpoint's answer to a refresh.
//!
//! * never a panic;
//! * a rejected document's message echoes none of its tokens, and an accepted one's debug
//!   output shows none;
//! * a JWT's numeric `exp` is the expiry; a timestamp written as auth.json writes it reads
//!   back as the same second;
//! * a refresh answer is a grant only for a 200 with an access token; a 401 is permanent.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use codex_openai_wrapper::core::auth::auth_json::{ChatgptTokens, parse_rfc3339};
use codex_openai_wrapper::core::auth::token::parse_refresh_response;
use serde_json::Value;

use crate::engine::{Target, fnv, mix};

pub const TARGET: Target = Target {
    name: "auth_json",
    seeds,
    dictionary: DICTIONARY,
    check,
    mutate: None,
    max_len: 32 * 1024,
};

const AUTH_CLAIM: &str = "https://api.openai.com/auth";

const DICTIONARY: &[&str] = &[
    r#""tokens":"#,
    r#""access_token":"#,
    r#""refresh_token":"#,
    r#""id_token":"#,
    r#""account_id":"#,
    r#""last_refresh":"#,
    r#""OPENAI_API_KEY":"#,
    r#""auth_mode":"chatgpt""#,
    r#""exp":"#,
    r#""https://api.openai.com/auth":"#,
    r#""chatgpt_account_id":"#,
    r#""error":"#,
    r#""code":"#,
    r#""error_description":"#,
    "refresh_token_expired",
    "refresh_token_reused",
    "refresh_token_invalidated",
    "invalid_grant",
    "2026-08-01T12:34:56.789Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59Z",
    "eyJhbGciOiJub25lIn0.",
    ".sig",
    "==",
];

fn jwt(claims: &Value) -> String {
    format!(
        "eyJhbGciOiJub25lIn0.{}.sig",
        URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes())
    )
}

/// auth.json documents as `codex login` writes them, and the token endpoint's answers.
fn seeds() -> Vec<Vec<u8>> {
    let claims = serde_json::json!({"exp": 2_000_000_000u64, AUTH_CLAIM: {"chatgpt_account_id": "acct-jwt"}});
    let tokens =
        serde_json::json!({"access_token": jwt(&claims), "refresh_token": "rt_1", "id_token": jwt(&claims)});
    let mut with_account = tokens.clone();
    with_account["account_id"] = "acct-file".into();
    [
        serde_json::json!({"OPENAI_API_KEY": null, "tokens": tokens, "last_refresh": "2026-08-01T12:34:56.789Z"}),
        serde_json::json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "tokens": with_account}),
        serde_json::json!({"tokens": {"access_token": "opaque"}, "last_refresh": "2000-02-29T00:00:01+00:00"}),
        serde_json::json!({"OPENAI_API_KEY": "sk-test"}),
        serde_json::json!({"access_token": jwt(&claims), "refresh_token": "rt_2", "id_token": jwt(&claims)}),
        serde_json::json!({"error": {"code": "refresh_token_expired", "message": "expired"}}),
        serde_json::json!({"error": "invalid_grant", "code": "refresh_token_reused"}),
        serde_json::json!({"error": "invalid_grant", "error_description": "The refresh token is invalid."}),
        claims,
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect()
}

/// Token strings a document holds (anywhere), long enough that finding one in a message
/// means it was copied there.
fn token_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::String(s) if key.ends_with("_token") && s.len() >= 12 => out.push(s.clone()),
                    _ => token_strings(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| token_strings(v, out)),
        _ => {}
    }
}

pub fn check(data: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(data);
    let document: Option<Value> = serde_json::from_str(&text).ok();
    let mut secrets = Vec::new();
    if let Some(v) = &document {
        token_strings(v, &mut secrets);
    }
    let mut signature = Vec::new();

    match ChatgptTokens::from_auth_json(&text) {
        Err(message) => {
            assert!(!message.is_empty());
            for secret in &secrets {
                assert!(
                    !message.contains(secret.as_str()),
                    "the error {message:?} shows a token"
                );
            }
            signature.push(fnv(message.as_bytes()));
        }
        Ok(tokens) => {
            assert!(
                !tokens.access_token.trim().is_empty(),
                "a blank access token was accepted"
            );
            assert!(
                tokens
                    .refresh_token
                    .as_deref()
                    .is_none_or(|t| !t.trim().is_empty())
            );
            // The debug output must not depend on the tokens at all.
            let mut masked = tokens.clone();
            masked.access_token = "masked".into();
            masked.refresh_token = masked.refresh_token.map(|_| "masked".into());
            masked.id_token = masked.id_token.map(|_| "masked".into());
            assert_eq!(
                format!("{tokens:?}"),
                format!("{masked:?}"),
                "debug output shows a token"
            );
            signature.push(mix(&[
                1,
                u64::from(tokens.refresh_token.is_some()),
                u64::from(tokens.id_token.is_some()),
                u64::from(tokens.account_id.is_some()),
                u64::from(tokens.expires_at.is_some()),
                u64::from(tokens.last_refresh.is_some()),
            ]));
        }
    }

    // The input as the claims of an access token: whatever they are, no panic.
    let token = format!("eyJhbGciOiJub25lIn0.{}.sig", URL_SAFE_NO_PAD.encode(data));
    let from_claims = ChatgptTokens::from_parts(token, None, None, None);
    signature
        .push(u64::from(from_claims.expires_at.is_some()) << 1 | u64::from(from_claims.account_id.is_some()));
    // Claims holding only a numeric `exp` (written out again, so without duplicate keys).
    if let Some(Value::Object(claims)) = &document
        && let (1, Some(exp)) = (claims.len(), claims.get("exp").and_then(Value::as_f64))
    {
        let tokens = ChatgptTokens::from_parts(jwt(&Value::Object(claims.clone())), None, None, None);
        let expected = (exp > 0.0).then_some(exp as u64);
        assert_eq!(tokens.expires_at, expected, "exp {:?}", claims.get("exp"));
    }

    // Timestamps: whatever the text, no panic; a well-formed one reads back exactly.
    let _ = parse_rfc3339(&text);
    let second = fnv(data) % 253_402_300_800;
    assert_eq!(
        parse_rfc3339(&rfc3339(second)),
        Some(second),
        "{}",
        rfc3339(second)
    );

    for status in [Some(200), Some(400), Some(401), Some(500), None] {
        match parse_refresh_response(status, data) {
            Ok(grant) => {
                assert_eq!(status, Some(200));
                assert!(
                    !grant.access_token.trim().is_empty(),
                    "a grant without an access token"
                );
                signature.push(3);
            }
            Err(error) => {
                assert!(!error.code.is_empty() && !error.message.is_empty());
                if status == Some(401) {
                    assert!(error.permanent, "a 401 from the token endpoint must be permanent");
                }
                if status.is_none() || status == Some(200) {
                    assert!(!error.permanent, "{status:?} is not a permanent failure");
                }
                // A class of code, not the code: any string in the body can be one.
                let class = match error.code.as_str() {
                    "refresh_token_expired" | "refresh_token_reused" | "refresh_token_invalidated" => 1,
                    "invalid_response" => 2,
                    code if code.starts_with("http_") => 3,
                    _ => 4,
                };
                signature.push(class << 1 | u64::from(error.permanent));
            }
        }
    }
    mix(&signature)
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SS.123Z` (days to civil date, Howard Hinnant's algorithm).
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.123Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}
