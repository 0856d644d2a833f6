//! codex-openai-wrapper: an Envoy proxy-wasm filter that serves the OpenAI Chat Completions,
//! Completions and Models APIs on top of the ChatGPT Codex Responses backend.
//!
//! `core` is pure Rust (no host calls, no clock, no randomness) and is unit-tested natively;
//! `host` is the proxy-wasm glue and only exists when compiling for wasm.

pub mod core;

#[cfg(target_family = "wasm")]
mod host;
