//! The per-request flow: what the filter does at each step of one request's life, as state
//! machines the host feeds with callbacks and whose steps it performs.

pub mod credentials;
pub mod headers;
pub mod request;
pub mod response;
pub mod step;
pub mod upload;
