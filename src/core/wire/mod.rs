//! Wire formats: the Responses request body the backend accepts, SSE framing, and the host's
//! header-map encoding.

pub mod header_map;
pub mod responses_request;
pub mod sse;
