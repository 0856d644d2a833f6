//! ChatGPT credentials from a Codex `auth.json` document: the access token, its expiry (the
//! JWT `exp`) and the account id (`tokens.account_id`, else the id_token claim). JWTs are only
//! decoded, never verified: the backend verifies them, the filter just needs the claims.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::core::error::{ApiError, Code};

/// One ChatGPT login as the filter uses it. Holds secrets: its `Debug` prints none of them,
/// and nothing may log its fields.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatgptTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub account_id: Option<String>,
    /// Unix seconds from the access token's `exp`, when readable.
    pub expires_at: Option<u64>,
    /// Unix seconds of the last successful refresh (auth.json `last_refresh`), when known.
    #[serde(default)]
    pub last_refresh: Option<u64>,
}

/// Never prints a token.
impl fmt::Debug for ChatgptTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatgptTokens")
            .field("account_id", &self.account_id)
            .field("expires_at", &self.expires_at)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AuthJson {
    tokens: Option<TokensJson>,
    #[serde(default)]
    last_refresh: Option<String>,
}

#[derive(Deserialize)]
struct TokensJson {
    access_token: Option<String>,
    refresh_token: Option<String>,
    id_token: Option<String>,
    account_id: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<f64>,
    #[serde(rename = "https://api.openai.com/auth")]
    auth: Option<AuthClaims>,
}

#[derive(Deserialize)]
struct AuthClaims {
    chatgpt_account_id: Option<String>,
    #[serde(default)]
    chatgpt_plan_type: Option<String>,
}

impl ChatgptTokens {
    /// Parses the document; the error says what is wrong without echoing any of it.
    pub fn from_auth_json(document: &str) -> Result<Self, String> {
        let parsed: AuthJson =
            serde_json::from_str(document).map_err(|_| "is not valid auth.json JSON".to_string())?;
        let tokens = parsed
            .tokens
            .ok_or("has no \"tokens\" object (is this an API-key login?)")?;
        let access_token = tokens
            .access_token
            .filter(|t| !t.trim().is_empty())
            .ok_or("has no tokens.access_token")?;
        let mut parsed_tokens = Self::from_parts(
            access_token,
            tokens.refresh_token,
            tokens.id_token,
            tokens.account_id,
        );
        parsed_tokens.last_refresh = parsed.last_refresh.as_deref().and_then(parse_rfc3339);
        Ok(parsed_tokens)
    }

    /// Builds the record, deriving what the JWTs carry.
    pub fn from_parts(
        access_token: String,
        refresh_token: Option<String>,
        id_token: Option<String>,
        account_id: Option<String>,
    ) -> Self {
        let access_claims = jwt_claims(&access_token);
        let account_id = account_id
            .filter(|a| !a.trim().is_empty())
            .or_else(|| id_token.as_deref().and_then(jwt_claims).and_then(account_of))
            .or_else(|| {
                access_claims
                    .as_ref()
                    .and_then(|c| c.auth.as_ref()?.chatgpt_account_id.clone())
            });
        let expires_at = access_claims
            .and_then(|c| c.exp)
            .filter(|e| *e > 0.0)
            .map(|e| e as u64);
        Self {
            access_token,
            refresh_token: refresh_token.filter(|t| !t.trim().is_empty()),
            id_token,
            account_id,
            expires_at,
            last_refresh: None,
        }
    }
}

impl ChatgptTokens {
    /// The ChatGPT plan (`free`, `plus`, `pro`, `team`, ...) the id_token, else the access
    /// token, names.
    pub fn plan_type(&self) -> Option<String> {
        [self.id_token.as_deref(), Some(self.access_token.as_str())]
            .into_iter()
            .flatten()
            .filter_map(jwt_claims)
            .find_map(|c| c.auth?.chatgpt_plan_type.filter(|p| !p.trim().is_empty()))
    }

    /// The auth.json document Codex CLI writes for a ChatGPT login (pretty-printed, keys in
    /// its order), so that either program reads a login the other wrote. `last_refresh` is
    /// Unix seconds.
    pub fn to_auth_json(&self, last_refresh: u64) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            auth_mode: &'static str,
            #[serde(rename = "OPENAI_API_KEY")]
            openai_api_key: Option<&'a str>,
            tokens: Tokens<'a>,
            last_refresh: String,
        }
        #[derive(Serialize)]
        struct Tokens<'a> {
            id_token: Option<&'a str>,
            access_token: &'a str,
            refresh_token: Option<&'a str>,
            account_id: Option<&'a str>,
        }
        let document = Document {
            auth_mode: "chatgpt",
            openai_api_key: None,
            tokens: Tokens {
                id_token: self.id_token.as_deref(),
                access_token: &self.access_token,
                refresh_token: self.refresh_token.as_deref(),
                account_id: self.account_id.as_deref(),
            },
            last_refresh: format_rfc3339(last_refresh),
        };
        serde_json::to_string_pretty(&document).unwrap_or_default()
    }
}

fn account_of(claims: Claims) -> Option<String> {
    claims.auth?.chatgpt_account_id
}

fn jwt_claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `2026-08-01T12:34:56.789Z` (UTC, as auth.json writes it) → Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let text = text.trim();
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if !separators
        .iter()
        .all(|(at, c)| text.as_bytes().get(*at) == Some(c))
        || !(1..=12).contains(&month)
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3_600 + minute * 60 + second).ok()
}

/// Unix seconds → `2026-08-01T12:34:56Z` (UTC), the inverse of [`parse_rfc3339`].
pub fn format_rfc3339(seconds: u64) -> String {
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX / 2);
    let rest = seconds % 86_400;
    // The civil date from days (Howard Hinnant's algorithm).
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// The 401 for a filter that has no ChatGPT credentials at all.
pub fn missing_credentials() -> ApiError {
    ApiError::of(
        Code::MissingCredentials,
        "No ChatGPT credentials are configured. Run `make login` (or `codex login`); or set OPENAI_CODEX_AUTH to the contents of ~/.codex/auth.json and restart the wrapper.",
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const AUTH_CLAIM: &str = "https://api.openai.com/auth";

    pub(crate) fn jwt(payload: &serde_json::Value) -> String {
        let enc = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            enc(br#"{"alg":"none"}"#),
            enc(payload.to_string().as_bytes())
        )
    }

    pub(crate) fn auth_json(exp: u64, account_in_tokens: bool) -> String {
        let claim = serde_json::json!({"exp": exp, AUTH_CLAIM: {"chatgpt_account_id": "acct-jwt"}});
        let mut tokens = serde_json::json!({
            "access_token": jwt(&claim), "refresh_token": "rt_1", "id_token": jwt(&claim)});
        if account_in_tokens {
            tokens["account_id"] = "acct-file".into();
        }
        serde_json::json!({"OPENAI_API_KEY": null, "tokens": tokens}).to_string()
    }

    #[test]
    fn reads_tokens_account_and_expiry() {
        let t =
            ChatgptTokens::from_auth_json(&auth_json(2_000_000_000, true)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.account_id.as_deref(), Some("acct-file"));
        assert_eq!(t.expires_at, Some(2_000_000_000));
        assert_eq!(t.refresh_token.as_deref(), Some("rt_1"));
        let t =
            ChatgptTokens::from_auth_json(&auth_json(2_000_000_000, false)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.account_id.as_deref(), Some("acct-jwt"));
    }

    #[test]
    fn rejects_unusable_documents_without_echoing_them() {
        for doc in [
            "{",
            "{}",
            r#"{"tokens":{}}"#,
            r#"{"tokens":{"access_token":" "}}"#,
            "null",
        ] {
            let err = ChatgptTokens::from_auth_json(doc).err().unwrap_or_default();
            assert!(
                !err.is_empty() && !err.contains(doc.trim_matches(['{', '}'])) || doc.len() < 5,
                "{doc}: {err}"
            );
        }
    }

    #[test]
    fn opaque_access_tokens_have_no_expiry() {
        let t = ChatgptTokens::from_parts("opaque".into(), None, None, Some("a".into()));
        assert_eq!(t.expires_at, None);
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-08-01T12:34:56.789Z"), Some(1_785_587_696));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:01+00:00"), Some(951_782_401));
        assert_eq!(parse_rfc3339("yesterday"), None);
        let doc = r#"{"tokens":{"access_token":"a"},"last_refresh":"2026-08-01T12:34:56Z"}"#;
        assert_eq!(
            ChatgptTokens::from_auth_json(doc).map(|t| t.last_refresh),
            Ok(Some(1_785_587_696))
        );
    }

    #[test]
    fn rfc3339_round_trips() {
        for seconds in [0, 951_782_401, 1_785_587_696, 4_102_444_800, 253_402_300_799] {
            let text = format_rfc3339(seconds);
            assert_eq!(parse_rfc3339(&text), Some(seconds), "{text}");
        }
        assert_eq!(format_rfc3339(1_785_587_696), "2026-08-01T12:34:56Z");
        assert_eq!(format_rfc3339(951_782_401), "2000-02-29T00:00:01Z");
    }

    #[test]
    fn plan_type_comes_from_the_id_token_else_the_access_token() {
        let id = jwt(&serde_json::json!({AUTH_CLAIM: {"chatgpt_plan_type": "pro"}}));
        let access = jwt(&serde_json::json!({AUTH_CLAIM: {"chatgpt_plan_type": "plus"}}));
        let t = ChatgptTokens::from_parts(access.clone(), None, Some(id), None);
        assert_eq!(t.plan_type().as_deref(), Some("pro"));
        let t = ChatgptTokens::from_parts(access, None, None, None);
        assert_eq!(t.plan_type().as_deref(), Some("plus"));
        let t = ChatgptTokens::from_parts("opaque".into(), None, None, None);
        assert_eq!(t.plan_type(), None);
    }

    #[test]
    fn the_written_document_is_the_codex_cli_format_and_reads_back() {
        let t =
            ChatgptTokens::from_auth_json(&auth_json(2_000_000_000, false)).unwrap_or_else(|e| panic!("{e}"));
        let text = t.to_auth_json(1_785_587_696);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(value["auth_mode"], "chatgpt");
        assert!(value["OPENAI_API_KEY"].is_null() && value.get("OPENAI_API_KEY").is_some());
        assert_eq!(value["tokens"]["account_id"], "acct-jwt");
        assert_eq!(value["tokens"]["refresh_token"], "rt_1");
        assert_eq!(value["last_refresh"], "2026-08-01T12:34:56Z");
        let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap_or(usize::MAX);
        let order = [
            "auth_mode",
            "OPENAI_API_KEY",
            "tokens",
            "id_token",
            "access_token",
            "refresh_token",
            "account_id",
            "last_refresh",
        ];
        assert!(
            order.windows(2).all(|w| at(w[0]) < at(w[1])),
            "Codex CLI's key order: {text}"
        );
        let back = ChatgptTokens::from_auth_json(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.last_refresh, Some(1_785_587_696));
        assert_eq!(
            (back.access_token, back.expires_at),
            (t.access_token, t.expires_at)
        );
        assert!(text.contains("\n  \"tokens\": {"), "pretty-printed: {text}");
    }

    #[test]
    fn debug_output_hides_tokens() {
        let t = ChatgptTokens::from_auth_json(&auth_json(100, true)).unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{t:?}");
        assert!(
            !shown.contains(&t.access_token) && !shown.contains("rt_1"),
            "{shown}"
        );
    }
}
