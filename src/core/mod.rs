//! The pure core: everything the filter decides, with no dependency on the proxy-wasm host.

pub mod chat_aggregate;
pub mod chat_present;
pub mod chat_request;
pub mod chat_stream;
pub mod config;
pub mod credentials;
pub mod data_url;
pub mod error;
pub mod gate;
pub mod json_fields;
pub mod models;
pub mod reasoning;
pub mod request;
pub mod response;
pub mod responses_request;
pub mod session;
pub mod sse;
pub mod translate;
pub mod turn;
pub mod upstream_error;
pub mod url;
pub mod usage;
