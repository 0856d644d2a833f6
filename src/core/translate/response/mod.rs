//! The Codex Responses event stream → what the client asked for: a chunk stream or one
//! aggregated answer, for chat or text completions.

pub mod chat_aggregate;
pub mod chat_stream;
pub mod completions;
pub mod envelope;
pub mod events;
pub mod presenter;
pub mod responses;
pub mod translator;
pub mod upstream_error;
pub mod usage;
