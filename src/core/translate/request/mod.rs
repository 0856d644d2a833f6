//! Client request bodies (Chat Completions, Completions) → the Codex Responses request, and
//! the Responses pass-through's normalisation.

pub mod chat;
pub mod common;
pub mod completions;
pub mod conversation_key;
pub mod data_url;
pub mod json_fields;
pub mod responses;
