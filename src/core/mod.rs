//! The pure core: everything the filter decides, with no dependency on the proxy-wasm host.

pub mod sse;
