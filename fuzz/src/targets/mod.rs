//! One module per area of outside input.

pub mod auth;
pub mod decision;
pub mod etcd;
pub mod request;
pub mod responses;
pub mod sse_stream;
pub mod upstream_error;
