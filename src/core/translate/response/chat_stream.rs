//! Streaming Chat Completions output: `chat.completion.chunk` SSE frames, one finish chunk,
//! an optional usage chunk, then `data: [DONE]`.

use std::io::Write;

use crate::core::error::ApiError;
use crate::core::translate::response::events::FinishReason;
use crate::core::translate::response::presenter::{ChatSink, Piece};
use crate::core::translate::response::usage::Usage;

/// The [`ChatSink`] for a streaming chat client: writes each piece as a chunk frame at once,
/// into a buffer the caller drains after every upstream chunk.
pub struct ChatStreamWriter {
    model: String,
    created: u64,
    include_usage: bool,
    /// `{"id":…,"object":…,"created":…,"model":…` — identical in every chunk, built once.
    head: Vec<u8>,
    out: Vec<u8>,
}

impl ChatStreamWriter {
    /// `model` is the id every chunk names; `created` (Unix seconds) stands until the upstream
    /// gives its own; `include_usage` is the client's `stream_options.include_usage`.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        let mut writer = Self {
            model: model.to_string(),
            created,
            include_usage,
            head: Vec::new(),
            out: Vec::with_capacity(512),
        };
        writer.set_head("", None);
        writer
    }

    /// Output produced since the last `clear`.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// The buffer is reused across chunks to avoid per-chunk allocation.
    pub fn take_output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    fn set_head(&mut self, upstream_id: &str, created: Option<u64>) {
        if let Some(created) = created {
            self.created = created;
        }
        self.head.clear();
        self.head.extend_from_slice(b"{\"id\":");
        write_json(&mut self.head, &response_id("chatcmpl", upstream_id));
        let _ = write!(
            self.head,
            ",\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":",
            self.created
        );
        write_json(&mut self.head, &self.model);
    }

    fn chunk(&mut self, delta: impl FnOnce(&mut Vec<u8>), finish_reason: Option<&str>) {
        self.out.extend_from_slice(b"data: ");
        self.out.extend_from_slice(&self.head);
        self.out
            .extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
        delta(&mut self.out);
        self.out
            .extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish_reason {
            Some(reason) => write_json(&mut self.out, reason),
            None => self.out.extend_from_slice(b"null"),
        }
        self.out.extend_from_slice(b"}]}\n\n");
    }
}

/// The most of an upstream id kept in the client's ids. The backend's are about 50
/// characters; the id is repeated in every chunk, so a huge one would multiply the size of
/// everything the client receives (and of the buffer one upstream chunk turns into).
pub const MAX_UPSTREAM_ID_BYTES: usize = 128;

/// `chatcmpl-…` / `cmpl-…` from the upstream `resp_…` id, so logs on both sides match.
pub fn response_id(prefix: &str, upstream_id: &str) -> String {
    let bare = upstream_id.strip_prefix("resp_").unwrap_or(upstream_id);
    let end = bare
        .char_indices()
        .map(|(at, c)| at + c.len_utf8())
        .take_while(|end| *end <= MAX_UPSTREAM_ID_BYTES)
        .last()
        .unwrap_or(0);
    let bare = bare.get(..end).unwrap_or_default();
    if bare.is_empty() {
        format!("{prefix}-codex")
    } else {
        format!("{prefix}-{bare}")
    }
}

/// Appends `value` as JSON, or `null` if it cannot be serialized (never for the types used
/// here), so a frame is always well-formed.
pub fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b'{');
    write_json(out, name);
    out.push(b':');
    write_json(out, value);
    out.push(b'}');
}

/// The frame that ends every chat and completions stream, after a success or an error.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// An error after the stream started: an OpenAI error frame, then `[DONE]`.
pub fn write_error_frame(out: &mut Vec<u8>, error: &ApiError) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&error.body());
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(DONE);
}

impl ChatSink for ChatStreamWriter {
    fn meta(&mut self, id: &str, created: Option<u64>) {
        self.set_head(id, created);
    }

    fn piece(&mut self, piece: Piece<'_>) {
        self.chunk(
            |out| match piece {
                Piece::Role => out.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"\"}"),
                Piece::Content(text) => write_field(out, "content", text),
                Piece::ReasoningContent(text) => write_field(out, "reasoning_content", text),
                Piece::Reasoning(text) => {
                    out.extend_from_slice(b"{\"reasoning\":{\"content\":[{\"type\":\"text\",\"text\":");
                    write_json(out, text);
                    out.extend_from_slice(b"}]}}");
                }
                Piece::ToolStart { index, id, name } => {
                    let _ = write!(out, "{{\"tool_calls\":[{{\"index\":{index},\"id\":");
                    write_json(out, id);
                    out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                    write_json(out, name);
                    out.extend_from_slice(b",\"arguments\":\"\"}}]}");
                }
                Piece::ToolArgs { index, delta } => {
                    let _ = write!(
                        out,
                        "{{\"tool_calls\":[{{\"index\":{index},\"function\":{{\"arguments\":"
                    );
                    write_json(out, delta);
                    out.extend_from_slice(b"}}]}");
                }
            },
            None,
        );
    }

    fn finish(&mut self, reason: FinishReason, usage: Option<Usage>) {
        self.chunk(|out| out.extend_from_slice(b"{}"), Some(reason.as_str()));
        if self.include_usage {
            self.out.extend_from_slice(b"data: ");
            self.out.extend_from_slice(&self.head);
            self.out.extend_from_slice(b",\"choices\":[],\"usage\":");
            write_json(&mut self.out, &usage);
            self.out.extend_from_slice(b"}\n\n");
        }
        self.out.extend_from_slice(DONE);
    }

    fn fail(&mut self, error: ApiError) {
        write_error_frame(&mut self.out, &error);
    }
}
