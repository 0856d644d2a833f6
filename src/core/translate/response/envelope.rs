//! What every aggregated (non-streaming) answer shares: its id, time and model, the envelope
//! `{id, object, created, model, choices: [..], usage}`, and the final result.

use serde::Serialize;

use crate::core::error::{ApiError, ErrorType};
use crate::core::translate::response::chat_stream::response_id;
use crate::core::translate::response::usage::Usage;

/// One non-streaming answer being built: the envelope's fields, then its final body or error.
pub struct Answer {
    prefix: &'static str,
    model: String,
    created: u64,
    id: String,
    result: Option<Result<Vec<u8>, ApiError>>,
}

#[derive(Serialize)]
struct Envelope<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [C; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

impl Answer {
    /// `prefix` names the id family (`chatcmpl`, `cmpl`).
    pub fn new(prefix: &'static str, model: &str, created: u64) -> Self {
        Self {
            prefix,
            model: model.to_string(),
            created,
            id: response_id(prefix, ""),
            result: None,
        }
    }

    /// `response.created`: the upstream id and time.
    pub fn meta(&mut self, upstream_id: &str, created: Option<u64>) {
        self.id = response_id(self.prefix, upstream_id);
        self.created = created.unwrap_or(self.created);
    }

    /// The turn ended well: serializes the envelope with `object` (`chat.completion`,
    /// `text_completion`) around the one `choice`.
    pub fn complete(&mut self, object: &'static str, choice: impl Serialize, usage: Option<Usage>) {
        let envelope = Envelope {
            id: &self.id,
            object,
            created: self.created,
            model: &self.model,
            choices: [choice],
            usage,
        };
        self.result =
            Some(serde_json::to_vec(&envelope).map_err(|e| {
                ApiError::new(500, ErrorType::Server, format!("Cannot encode the answer: {e}"))
            }));
    }

    /// The turn ended with `error`; it becomes the answer instead of a body.
    pub fn fail(&mut self, error: ApiError) {
        self.result = Some(Err(error));
    }

    /// The finished body, or the error the turn ended with; `None` until the turn ends.
    pub fn result(&self) -> Option<&Result<Vec<u8>, ApiError>> {
        self.result.as_ref()
    }
}
