//! What a flow machine asks its host to do after an event: a few writes, in order, then
//! whether the stream goes on.

use crate::core::error::{ApiError, ErrorType};
use crate::core::reply::Reply;

/// One host write.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Answer the client locally; the stream stops here.
    Reply(Reply),
    /// Replace the whole request header map.
    ReplaceRequestHeaders(Vec<(String, String)>),
    SetRequestHeader(String, String),
    RemoveRequestHeader(&'static str),
    /// Replace the bytes of the request body this event carried.
    ReplaceRequestBody(Vec<u8>),
    SetResponseHeader(&'static str, String),
    RemoveResponseHeader(&'static str),
    /// Replace the bytes of the response body this event carried.
    ReplaceResponseBody(Vec<u8>),
}

/// Whether the stream continues once the writes are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Hold this direction (buffer a body, wait for a token, or stop after a reply).
    Pause,
}

/// The answer of a flow machine to one event: apply `writes` in order, then `next`.
#[derive(Debug, Clone, PartialEq)]
pub struct Steps {
    pub writes: Vec<Step>,
    pub next: Next,
}

impl Steps {
    /// Nothing to write; let the stream continue.
    pub fn go_on() -> Self {
        Self {
            writes: Vec::new(),
            next: Next::Continue,
        }
    }

    /// Nothing to write; hold this direction (waiting for more body or for a token).
    pub fn pause() -> Self {
        Self {
            writes: Vec::new(),
            next: Next::Pause,
        }
    }

    /// Answer locally and stop: the request goes no further upstream.
    pub fn reply(reply: impl Into<Reply>) -> Self {
        Self {
            writes: vec![Step::Reply(reply.into())],
            next: Next::Pause,
        }
    }

    /// These writes, then `next`.
    pub fn then(writes: Vec<Step>, next: Next) -> Self {
        Self { writes, next }
    }
}

/// Replies marked with this detail are the filter's own (Envoy reports it as
/// `response.code_details`), so the response callbacks leave them alone.
pub const LOCAL_REPLY_DETAILS: &str = "codex_filter";

/// The answer when the host refused a request body the filter rewrote.
pub fn body_write_failed() -> ApiError {
    ApiError::new(
        500,
        ErrorType::Server,
        "The filter could not rewrite the request body.",
    )
}
