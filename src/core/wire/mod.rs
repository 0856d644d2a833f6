//! Wire formats: the Responses request body the backend accepts, and SSE framing.

pub mod responses_request;
pub mod sse;
