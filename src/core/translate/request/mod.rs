//! Client request bodies (Chat Completions, Completions) → the Codex Responses request.

pub mod chat;
pub mod common;
pub mod completions;
pub mod conversation_key;
pub mod data_url;
pub mod json_fields;
