//! Header maps as the flow reads them. The host hands over bytes, and a client or an upstream
//! can put any byte in a header value (`X-Odd: caf\xe9` over a raw socket or h2c), so text is
//! only what is valid UTF-8 and the rest is decided here:
//!
//! - Request headers the filter reads to decide ([`READ_REQUEST_HEADERS`]: the pseudo-headers,
//!   `authorization`, `content-type`, `content-length`, the session headers): a value that is
//!   not UTF-8 cannot be read, so the request is answered `400 invalid_header`, whatever the
//!   route.
//! - Any other request header that is not UTF-8: left out of the filter's view. A translated
//!   request's header map is replaced with the one the filter builds, so such a header does
//!   not go upstream; the Ollama pass-through leaves the map as it is, so there it goes through
//!   untouched (the credential headers it strips are removed by name, whatever their value).
//! - Response headers that are not UTF-8: read as absent (a `content-type` that is not text is
//!   not an event stream, a rate-limit header that is not text is ignored) and left in the map
//!   untouched, unless their name is one the filter removes anyway.

use crate::core::error::{ApiError, Code};
use crate::core::wire::header_map;

/// The request headers the filter's decisions read.
pub const READ_REQUEST_HEADERS: &[&str] = &[
    ":method",
    ":path",
    ":authority",
    ":scheme",
    "authorization",
    "content-type",
    "content-length",
    "x-session-id",
    "session-id",
    "session_id",
];

/// One header map: the headers that are text, and the names of those that are not.
#[derive(Debug, Default, PartialEq)]
pub struct HeaderView {
    /// Name and value both UTF-8, in the host's order (names are lower-case in Envoy).
    pub text: Vec<(String, String)>,
    /// The names (lossily decoded) of headers whose name or value is not UTF-8.
    pub binary: Vec<String>,
}

impl HeaderView {
    /// `None` when the host's bytes are not a header map at all.
    pub fn parse(map: &[u8]) -> Option<Self> {
        let mut view = Self::default();
        for (name, value) in header_map::parse(map)? {
            match (std::str::from_utf8(name), std::str::from_utf8(value)) {
                (Ok(name), Ok(value)) => view.text.push((name.to_string(), value.to_string())),
                _ => view.binary.push(String::from_utf8_lossy(name).into_owned()),
            }
        }
        Some(view)
    }

    /// The first text value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.text.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every name in the map, text or not.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.text
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(self.binary.iter().map(String::as_str))
    }

    /// Refuses a request whose headers the filter must read are not text.
    pub fn check_request(&self) -> Result<(), ApiError> {
        match self
            .binary
            .iter()
            .find(|name| READ_REQUEST_HEADERS.contains(&name.as_str()))
        {
            Some(name) => Err(invalid_header(name)),
            None => Ok(()),
        }
    }
}

/// The 400 `invalid_header` for a header the filter must read but the client sent as non-UTF-8
/// bytes.
pub fn invalid_header(name: &str) -> ApiError {
    ApiError::of(
        Code::InvalidHeader,
        format!("The {name} header is not valid UTF-8 text; send it as plain ASCII."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        header_map::serialize(pairs)
    }

    #[test]
    fn text_and_binary_headers_are_told_apart() {
        let view = HeaderView::parse(&map(&[
            (b":path", b"/v1/chat/completions"),
            (b"x-odd", b"caf\xe9"),
            (b"accept", b"*/*"),
        ]))
        .unwrap();
        assert_eq!(view.get(":path"), Some("/v1/chat/completions"));
        assert_eq!(view.get("x-odd"), None);
        assert_eq!(view.binary, ["x-odd"]);
        assert_eq!(view.names().collect::<Vec<_>>(), [":path", "accept", "x-odd"]);
        assert_eq!(view.check_request(), Ok(()));
        assert_eq!(HeaderView::parse(b"\x01"), None);
    }

    #[test]
    fn a_header_the_filter_reads_must_be_text() {
        for name in READ_REQUEST_HEADERS {
            let view = HeaderView::parse(&map(&[(name.as_bytes(), b"Bearer \xff")])).unwrap();
            let error = view.check_request().unwrap_err();
            assert_eq!((error.status, error.code_str()), (400, Some("invalid_header")));
            assert!(error.message.contains(name), "{}", error.message);
        }
    }
}
