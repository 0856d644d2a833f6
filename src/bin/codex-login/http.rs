//! The calls to the issuer: JSON or form bodies up, status and body back. A non-2xx answer is
//! an answer (the flows read their meaning), only a failed call is an error.

use std::time::Duration;

use crate::failure::Failure;

/// An issuer's answer is small; anything larger is not one.
const MAX_BODY_BYTES: u64 = 1024 * 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_TIMEOUT))
            .user_agent(concat!("codex-openai-wrapper-login/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent }
    }

    pub fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<Answer, Failure> {
        let sent = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.to_string());
        read(url, sent)
    }

    pub fn post_form(&self, url: &str, pairs: &[(&str, &str)]) -> Result<Answer, Failure> {
        read(url, self.agent.post(url).send_form(pairs.iter().copied()))
    }
}

fn read(url: &str, sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Answer, Failure> {
    // The URL carries no secret (the issuer's endpoint); the error text is ureq's own.
    let unreachable = |e: ureq::Error| Failure::Other(format!("cannot reach {url}: {e}"));
    let mut response = sent.map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
        .map_err(unreachable)?;
    Ok(Answer { status, body })
}

/// `application/x-www-form-urlencoded` / query-string encoding of one value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The inverse of [`encode`] (`+` is a space); `None` for a broken escape or non-UTF-8.
pub fn decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' => {
                let hex = value.get(i.checked_add(1)?..i.checked_add(3)?)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i = i.checked_add(3)?;
            }
            b'+' => {
                out.push(b' ');
                i = i.checked_add(1)?;
            }
            other => {
                out.push(other);
                i = i.checked_add(1)?;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A query string's pairs, decoded; a pair that does not decode is left out.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        for value in [
            "plain",
            "a b&c=d/é?",
            "openid profile email",
            "http://localhost:1455/auth/callback",
        ] {
            assert_eq!(decode(&encode(value)).as_deref(), Some(value));
        }
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(decode("a+b%2fc").as_deref(), Some("a b/c"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
    }

    #[test]
    fn query_pairs_decode_and_skip_broken_ones() {
        let pairs = query_pairs("code=ab%2Fc&state=x+y&&bad=%G0&flag");
        assert_eq!(
            pairs,
            [("code", "ab/c"), ("state", "x y"), ("flag", "")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
