//! The translation between the OpenAI client APIs and the Codex Responses backend.

pub mod request;
pub mod response;
