//! The OAuth issuer both flows end at: the authorization code exchanged for tokens at
//! `{issuer}/oauth/token` (form-encoded, with the PKCE verifier), as Codex CLI does.

use codex_openai_wrapper::core::auth::auth_json::ChatgptTokens;
use codex_openai_wrapper::core::auth::token::parse_refresh_response;
use codex_openai_wrapper::core::config::TOKEN_PATH;

use crate::failure::Failure;
use crate::http::Client;

pub struct Issuer {
    /// `CODEX_AUTH_ISSUER`, without a trailing `/`.
    pub base: String,
    pub client_id: String,
    pub http: Client,
}

impl Issuer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The tokens for `code`; the answer has the refresh endpoint's shape, so the core's
    /// reading of it (and of its error codes) is the one used.
    pub fn exchange(&self, code: &str, redirect_uri: &str, verifier: &str) -> Result<ChatgptTokens, Failure> {
        let answer = self.http.post_form(
            &self.url(TOKEN_PATH),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", &self.client_id),
                ("code_verifier", verifier),
            ],
        )?;
        let grant = parse_refresh_response(Some(answer.status), &answer.body).map_err(|e| {
            if (400..500).contains(&answer.status) {
                Failure::Refused(format!("the code exchange was refused: {}", e.message))
            } else {
                // A server error or an unreadable answer: the same login may work in a moment.
                Failure::Other(format!(
                    "the code exchange failed: {}; run `make login` again",
                    e.message
                ))
            }
        })?;
        if grant.refresh_token.is_none() {
            return Err(Failure::Other(
                "the code exchange answered without a refresh token, so the login could not be kept \
                 alive: run `make login` again"
                    .into(),
            ));
        }
        Ok(ChatgptTokens::from_parts(
            grant.access_token,
            grant.refresh_token,
            grant.id_token,
            None,
        ))
    }
}
