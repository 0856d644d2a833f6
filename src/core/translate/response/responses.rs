//! The answer to `/v1/responses`: the backend's event stream is what the client asked for, so
//! a streaming client gets it byte for byte while the filter only watches it (usage, the
//! terminal event); a non-streaming client gets the final `response` object as JSON.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::error::{ApiError, Code};
use crate::core::translate::request::json_fields::{Ordered, write_key};
use crate::core::translate::response::events::leading_type;
use crate::core::translate::response::translator::{End, MAX_EVENT_BYTES, Pipeline, answer_too_large};
use crate::core::translate::response::upstream_error::{self, ErrorFields};
use crate::core::translate::response::usage::{ResponsesUsage, Usage};
use crate::core::wire::sse::SseFramer;

/// The events that end a turn.
const TERMINAL: &[&[u8]] = &[
    b"response.completed",
    b"response.incomplete",
    b"response.failed",
    b"error",
];

/// Only what the filter reads of a terminal event.
#[derive(Deserialize)]
struct Terminal<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ResponseHead<'a> {
    #[serde(default)]
    usage: Option<ResponsesUsage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
}

/// A streaming client's answer: the upstream bytes go on untouched (the host does not even
/// replace them, see [`Pipeline::relays`]); the framer runs alongside to read the usage and
/// notice a stream that ends without its terminal event, which the client then learns about
/// as one more `error` event.
pub struct ResponsesStream {
    framer: SseFramer,
    events: u64,
    terminal: bool,
    /// An event outgrew the framer: the stream still goes on whole, the filter stops reading it.
    blind: bool,
    usage: Option<Usage>,
    tail: Vec<u8>,
}

impl Default for ResponsesStream {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponsesStream {
    pub fn new() -> Self {
        Self {
            framer: SseFramer::new(MAX_EVENT_BYTES),
            events: 0,
            terminal: false,
            blind: false,
            usage: None,
            tail: Vec::new(),
        }
    }

    fn observe(events: &mut u64, terminal: &mut bool, usage: &mut Option<Usage>, data: &[u8]) {
        *events = events.saturating_add(1);
        let Some(kind) = leading_type(data) else {
            // Not in the backend's usual layout: the full parse decides.
            if let Ok(event) = serde_json::from_slice::<Terminal>(data) {
                if TERMINAL.contains(&event.kind.as_bytes()) {
                    *terminal = true;
                    *usage = usage_of(event.response).or(*usage);
                }
            }
            return;
        };
        if !TERMINAL.contains(&kind) {
            return;
        }
        *terminal = true;
        if let Ok(event) = serde_json::from_slice::<Terminal>(data) {
            *usage = usage_of(event.response).or(*usage);
        }
    }
}

fn usage_of(response: Option<&RawValue>) -> Option<Usage> {
    let head: ResponseHead = serde_json::from_str(response?.get()).ok()?;
    head.usage.map(Usage::from)
}

impl Pipeline for ResponsesStream {
    fn push(&mut self, chunk: &[u8], _now: u64) -> &[u8] {
        if !self.blind {
            let Self {
                framer,
                events,
                terminal,
                usage,
                ..
            } = self;
            if framer
                .push(chunk, |data| Self::observe(events, terminal, usage, data))
                .is_err()
            {
                self.blind = true;
            }
        }
        &[]
    }

    fn finish(&mut self, _now: u64) -> End<'_> {
        if !self.blind {
            let Self {
                framer,
                events,
                terminal,
                usage,
                ..
            } = self;
            framer.finish(|data| Self::observe(events, terminal, usage, data));
        }
        if !self.terminal && !self.blind {
            let error = ApiError::of(
                Code::StreamIncomplete,
                "The ChatGPT backend closed the stream before the response was complete; retry the request.",
            );
            self.tail = error_event(&error, self.events);
        }
        End::Tail(&self.tail)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn relays(&self) -> bool {
        true
    }
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    code: Option<&'a str>,
    message: &'a str,
    param: Option<&'a str>,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    code: Option<&'a str>,
    message: &'a str,
    param: Option<&'a str>,
}

/// The filter's own failure inside a Responses stream, as an `error` event: the public API's
/// members (`code`, `message`, `param`, `sequence_number`) and the backend's nested `error`
/// object, which the official SDKs raise as an error and Codex CLI classifies.
pub fn error_event(error: &ApiError, sequence_number: u64) -> Vec<u8> {
    let code = error.code_str();
    let event = ErrorEvent {
        kind: "error",
        sequence_number,
        code,
        message: &error.message,
        param: error.param.as_deref(),
        error: ErrorBody {
            kind: error.kind.as_str(),
            code,
            message: &error.message,
            param: error.param.as_deref(),
        },
    };
    let mut out = b"event: error\ndata: ".to_vec();
    let _ = serde_json::to_writer(&mut out, &event);
    out.extend_from_slice(b"\n\n");
    out
}

/// A non-streaming client's answer: the final `response` object of `response.completed` (or
/// `response.incomplete`, which says why in `incomplete_details`), as JSON. Its `output` can
/// be empty although items were streamed, so the finished items of `response.output_item.done`
/// are kept and fill it in then. An upstream failure is the OpenAI-shaped error with its status.
pub struct ResponsesAggregator {
    framer: SseFramer,
    state: Aggregate,
}

struct Aggregate {
    /// `(output_index, item JSON)` of every finished item.
    items: Vec<(u64, Vec<u8>)>,
    held: usize,
    limit: usize,
    result: Option<Result<Vec<u8>, ApiError>>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ItemDone<'a> {
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(borrow)]
    item: &'a RawValue,
}

impl ResponsesAggregator {
    /// `limit` caps the answer (`MAX_REQUEST_BODY_BYTES`); past it the answer is a 502.
    pub fn new(limit: usize) -> Self {
        Self {
            // The terminal event repeats the whole answer, so one event may be as large as it.
            framer: SseFramer::new(limit.max(MAX_EVENT_BYTES)),
            state: Aggregate {
                items: Vec::new(),
                held: 0,
                limit,
                result: None,
                usage: None,
            },
        }
    }
}

impl Aggregate {
    fn event(&mut self, data: &[u8], now: u64) {
        if self.result.is_some() {
            return;
        }
        match leading_type(data) {
            Some(b"response.output_item.done") => {
                if let Ok(done) = serde_json::from_slice::<ItemDone>(data) {
                    self.keep_item(done);
                }
                return;
            }
            Some(kind) if !TERMINAL.contains(&kind) => return,
            _ => {}
        }
        let Ok(event) = serde_json::from_slice::<Terminal>(data) else {
            return;
        };
        match event.kind.as_ref() {
            "response.output_item.done" => {
                if let Ok(done) = serde_json::from_slice::<ItemDone>(data) {
                    self.keep_item(done);
                }
            }
            "response.completed" | "response.incomplete" => self.complete(event.response),
            "response.failed" => {
                let error = event
                    .response
                    .and_then(|r| serde_json::from_str::<ResponseHead>(r.get()).ok())
                    .and_then(|r| r.error);
                self.fail(error, None, None, now);
            }
            "error" => self.fail(event.error, event.code, event.message, now),
            _ => {}
        }
    }

    fn keep_item(&mut self, done: ItemDone<'_>) {
        let item = done.item.get().as_bytes();
        self.held = self.held.saturating_add(item.len());
        if self.held > self.limit {
            self.result = Some(Err(answer_too_large(self.limit)));
            return;
        }
        self.items
            .push((done.output_index.unwrap_or(u64::MAX), item.to_vec()));
    }

    fn complete(&mut self, response: Option<&RawValue>) {
        let Some(response) = response else {
            self.result = Some(Err(incomplete()));
            return;
        };
        let head = serde_json::from_str::<ResponseHead>(response.get()).ok();
        self.usage = head.as_ref().and_then(|h| h.usage).map(Usage::from);
        let empty_output = head.as_ref().and_then(|h| h.output).is_none_or(|o| {
            let text = o.get();
            text == "null"
                || text
                    .strip_prefix('[')
                    .is_some_and(|rest| rest.trim_start().starts_with(']'))
        });
        let body = if empty_output && !self.items.is_empty() {
            self.with_items(response)
        } else {
            response.get().as_bytes().to_vec()
        };
        self.result = Some(match body.len() > self.limit {
            true => Err(answer_too_large(self.limit)),
            false => Ok(body),
        });
    }

    /// The response object with `output` made of the items seen, in output order.
    fn with_items(&mut self, response: &RawValue) -> Vec<u8> {
        let Ok(fields) = serde_json::from_str::<Ordered>(response.get()) else {
            return response.get().as_bytes().to_vec();
        };
        self.items.sort_by_key(|(index, _)| *index);
        let mut out = Vec::with_capacity(response.get().len().saturating_add(self.held).saturating_add(16));
        out.push(b'{');
        let mut output_written = false;
        for (key, raw) in &fields.members {
            write_key(&mut out, key);
            if key == "output" && !output_written {
                output_written = true;
                self.write_items(&mut out);
            } else {
                out.extend_from_slice(raw.get().as_bytes());
            }
        }
        if !output_written {
            write_key(&mut out, "output");
            self.write_items(&mut out);
        }
        out.push(b'}');
        out
    }

    fn write_items(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, (_, item)) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item);
        }
        out.push(b']');
    }

    fn fail(
        &mut self,
        raw: Option<&RawValue>,
        code: Option<Cow<'_, str>>,
        message: Option<Cow<'_, str>>,
        now: u64,
    ) {
        let mut fields: ErrorFields = raw
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or_default();
        fields.code = fields.code.or(code);
        fields.message = fields.message.or(message);
        self.result = Some(Err(upstream_error::from_stream(&fields, now)));
    }
}

fn incomplete() -> ApiError {
    ApiError::of(
        Code::StreamIncomplete,
        "The ChatGPT backend closed the stream before the response was complete; retry the request.",
    )
}

impl Pipeline for ResponsesAggregator {
    fn push(&mut self, chunk: &[u8], now: u64) -> &[u8] {
        let Self { framer, state } = self;
        if state.result.is_none() && framer.push(chunk, |data| state.event(data, now)).is_err() {
            state
                .result
                .get_or_insert_with(|| Err(answer_too_large(state.limit)));
        }
        &[]
    }

    fn finish(&mut self, now: u64) -> End<'_> {
        let Self { framer, state } = self;
        if state.result.is_none() {
            framer.finish(|data| state.event(data, now));
        }
        match state.result.get_or_insert_with(|| Err(incomplete())) {
            Ok(body) => End::Body(body),
            Err(error) => End::Error(error),
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.state.usage
    }
}

#[cfg(test)]
#[path = "responses_tests.rs"]
mod tests;
