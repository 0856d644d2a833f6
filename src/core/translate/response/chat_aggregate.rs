//! Non-streaming Chat Completions output: the same pieces a streaming client would get,
//! concatenated into one `chat.completion` object.

use serde::Serialize;

use crate::core::error::ApiError;
use crate::core::translate::response::envelope::Answer;
use crate::core::translate::response::events::FinishReason;
use crate::core::translate::response::presenter::{ChatSink, Piece};
use crate::core::translate::response::usage::Usage;

#[derive(Default)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

/// The [`ChatSink`] for a non-streaming chat client: collects every piece and builds one
/// `chat.completion` body when the turn ends.
pub struct ChatAggregator {
    answer: Answer,
    content: String,
    reasoning_content: String,
    reasoning: String,
    tool_calls: Vec<ToolCall>,
}

impl ChatAggregator {
    /// `model` is the id the answer names; `created` (Unix seconds) stands until the upstream
    /// gives its own.
    pub fn new(model: &str, created: u64) -> Self {
        Self {
            answer: Answer::new("chatcmpl", model, created),
            content: String::new(),
            reasoning_content: String::new(),
            reasoning: String::new(),
            tool_calls: Vec::new(),
        }
    }

    /// The finished body, or the error the turn ended with; `None` until the turn ends.
    pub fn result(&self) -> Option<&Result<Vec<u8>, ApiError>> {
        self.answer.result()
    }
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
        self.answer.meta(id, created);
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
        let message = Message {
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
        };
        let choice = Choice {
            index: 0,
            message,
            logprobs: None,
            finish_reason: reason.as_str(),
        };
        self.answer.complete("chat.completion", choice, usage);
    }

    fn fail(&mut self, error: ApiError) {
        self.answer.fail(error);
    }
}
