//! Non-streaming Chat Completions output: the same pieces a streaming client would get,
//! concatenated into one `chat.completion` object.

use serde::Serialize;

use crate::core::chat_present::{ChatSink, Piece};
use crate::core::chat_stream::chat_id;
use crate::core::error::ApiError;
use crate::core::turn::FinishReason;
use crate::core::usage::Usage;

#[derive(Default)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

pub struct ChatAggregator {
    model: String,
    id: String,
    created: u64,
    content: String,
    reasoning_content: String,
    reasoning: String,
    tool_calls: Vec<ToolCall>,
    result: Option<Result<Vec<u8>, ApiError>>,
}

impl ChatAggregator {
    pub fn new(model: &str, created: u64) -> Self {
        Self {
            model: model.to_string(),
            id: chat_id(""),
            created,
            content: String::new(),
            reasoning_content: String::new(),
            reasoning: String::new(),
            tool_calls: Vec::new(),
            result: None,
        }
    }

    /// The finished body, or the error the turn ended with; `None` until the turn ends.
    pub fn result(&self) -> Option<&Result<Vec<u8>, ApiError>> {
        self.result.as_ref()
    }
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<O3Reasoning<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct O3Reasoning<'a> {
    content: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct TextPart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl ChatSink for ChatAggregator {
    fn meta(&mut self, id: &str, created: Option<u64>) {
        self.id = chat_id(id);
        if let Some(created) = created {
            self.created = created;
        }
    }

    fn piece(&mut self, piece: Piece<'_>) {
        match piece {
            Piece::Role => {}
            Piece::Content(text) => self.content.push_str(text),
            Piece::ReasoningContent(text) => self.reasoning_content.push_str(text),
            Piece::Reasoning(text) => self.reasoning.push_str(text),
            Piece::ToolStart { id, name, .. } => self.tool_calls.push(ToolCall {
                id: id.to_string(),
                name: name.to_string(),
                arguments: String::new(),
            }),
            Piece::ToolArgs { index, delta } => {
                if let Some(call) = self.tool_calls.get_mut(index) {
                    call.arguments.push_str(delta);
                }
            }
        }
    }

    fn finish(&mut self, reason: FinishReason, usage: Option<Usage>) {
        let completion = Completion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices: [Choice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: non_empty(&self.content),
                    reasoning_content: non_empty(&self.reasoning_content),
                    reasoning: non_empty(&self.reasoning).map(|text| O3Reasoning {
                        content: [TextPart { kind: "text", text }],
                    }),
                    tool_calls: self
                        .tool_calls
                        .iter()
                        .map(|c| ToolCallOut {
                            id: &c.id,
                            kind: "function",
                            function: FunctionOut {
                                name: &c.name,
                                arguments: &c.arguments,
                            },
                        })
                        .collect(),
                },
                logprobs: None,
                finish_reason: reason.as_str(),
            }],
            usage,
        };
        self.result = Some(serde_json::to_vec(&completion).map_err(|e| {
            ApiError::new(
                500,
                crate::core::error::SERVER,
                format!("Cannot encode the completion: {e}"),
            )
        }));
    }

    fn fail(&mut self, error: ApiError) {
        self.result = Some(Err(error));
    }
}
