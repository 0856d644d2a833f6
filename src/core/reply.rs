//! A complete answer the filter gives itself, without the upstream: an error, `/health`,
//! `/v1/models`, or the end of a response that had to be held.

use crate::core::error::ApiError;

/// A complete local answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply whose `body` is already JSON (`/health`, `/v1/models`), with its content type.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".to_string())],
            body,
        }
    }
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Self {
        Self {
            status: error.status,
            headers: error.headers(),
            body: error.body(),
        }
    }
}
