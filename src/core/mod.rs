//! The pure core: everything the filter decides, with no dependency on the proxy-wasm host.
//! ARCHITECTURE.md walks a request through these modules.

pub mod accounts;
pub mod auth;
pub mod background;
pub mod catalogue;
pub mod config;
pub mod error;
pub mod flow;
pub mod instructions;
pub mod keys;
pub mod metrics;
pub mod port;
#[cfg(any(test, feature = "phase-probe"))]
pub mod probe;
pub mod reasoning;
pub mod reply;
pub mod routing;
#[cfg(test)]
pub(crate) mod test_support;
pub mod translate;
pub mod usage;
pub mod vm;
pub mod wire;
