//! Text Completions output (`text_completion` objects), streamed and aggregated. The same
//! presenter feeds it as for chat, in `hidden` mode: only answer text reaches the client.

use std::io::Write;

use serde::Serialize;

use crate::core::error::ApiError;
use crate::core::translate::response::chat_stream::{DONE, response_id, write_error_frame, write_json};
use crate::core::translate::response::envelope::Answer;
use crate::core::translate::response::events::FinishReason;
use crate::core::translate::response::presenter::{ChatSink, Piece};
use crate::core::translate::response::usage::Usage;

/// The [`ChatSink`] for a streaming Completions client: answer text as `text_completion`
/// frames; reasoning and tool calls are dropped.
pub struct CompletionStreamWriter {
    model: String,
    created: u64,
    include_usage: bool,
    id: String,
    out: Vec<u8>,
}

impl CompletionStreamWriter {
    /// `model` is the id every frame names; `created` (Unix seconds) stands until the upstream
    /// gives its own; `include_usage` adds a usage frame before `[DONE]`.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        Self {
            model: model.to_string(),
            created,
            include_usage,
            id: response_id("cmpl", ""),
            out: Vec::new(),
        }
    }

    /// The frames written since the last [`CompletionStreamWriter::clear`].
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Empties the output once the caller has forwarded it; the buffer is reused.
    pub fn clear(&mut self) {
        self.out.clear();
    }

    fn chunk(&mut self, text: &str, finish_reason: Option<&str>, usage: Option<&Usage>) {
        self.out.extend_from_slice(b"data: {\"id\":");
        write_json(&mut self.out, &self.id);
        let _ = write!(
            self.out,
            ",\"object\":\"text_completion\",\"created\":{},\"model\":",
            self.created
        );
        write_json(&mut self.out, &self.model);
        if let Some(usage) = usage {
            self.out.extend_from_slice(b",\"choices\":[],\"usage\":");
            write_json(&mut self.out, usage);
        } else {
            self.out.extend_from_slice(b",\"choices\":[{\"text\":");
            write_json(&mut self.out, text);
            self.out
                .extend_from_slice(b",\"index\":0,\"logprobs\":null,\"finish_reason\":");
            write_json(&mut self.out, &finish_reason);
            self.out.extend_from_slice(b"}]");
        }
        self.out.extend_from_slice(b"}\n\n");
    }
}

impl ChatSink for CompletionStreamWriter {
    fn meta(&mut self, id: &str, created: Option<u64>) {
        self.id = response_id("cmpl", id);
        self.created = created.unwrap_or(self.created);
    }

    fn piece(&mut self, piece: Piece<'_>) {
        if let Piece::Content(text) = piece {
            self.chunk(text, None, None);
        }
    }

    fn finish(&mut self, reason: FinishReason, usage: Option<Usage>) {
        self.chunk("", Some(reason.as_str()), None);
        if let (true, Some(usage)) = (self.include_usage, usage.as_ref()) {
            self.chunk("", None, Some(usage));
        }
        self.out.extend_from_slice(DONE);
    }

    fn fail(&mut self, error: ApiError) {
        write_error_frame(&mut self.out, &error);
    }
}

/// The [`ChatSink`] for a non-streaming Completions client: the answer text in one
/// `text_completion` body.
pub struct CompletionAggregator {
    answer: Answer,
    text: String,
}

impl CompletionAggregator {
    /// `model` is the id the answer names; `created` (Unix seconds) stands until the upstream
    /// gives its own.
    pub fn new(model: &str, created: u64) -> Self {
        Self {
            answer: Answer::new("cmpl", model, created),
            text: String::new(),
        }
    }

    /// The finished body, or the error the turn ended with; `None` until the turn ends.
    pub fn result(&self) -> Option<&Result<Vec<u8>, ApiError>> {
        self.answer.result()
    }
}

#[derive(Serialize)]
struct Choice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

impl ChatSink for CompletionAggregator {
    fn meta(&mut self, id: &str, created: Option<u64>) {
        self.answer.meta(id, created);
    }

    fn piece(&mut self, piece: Piece<'_>) {
        if let Piece::Content(text) = piece {
            self.text.push_str(text);
        }
    }

    fn finish(&mut self, reason: FinishReason, usage: Option<Usage>) {
        let choice = Choice {
            text: &self.text,
            index: 0,
            logprobs: None,
            finish_reason: reason.as_str(),
        };
        self.answer.complete("text_completion", choice, usage);
    }

    fn fail(&mut self, error: ApiError) {
        self.answer.fail(error);
    }
}
