//! The answer to `/v1/responses`: the backend's event stream is what the client asked for, so
//! a streaming client gets its events as they come, each payload copied as the backend wrote
//! it, while the filter reads the usage and the terminal event; a non-streaming client gets
//! the final `response` object as JSON.
//!
//! One thing is mended on the way: the backend's `response.completed` often carries an empty
//! `output` although items were streamed, and clients that take the final object from that
//! event (the SDKs' stream helpers, the Agents SDK) would see an answer without text or tool
//! calls. So the finished items of `response.output_item.done` are kept and fill it in.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::error::{ApiError, Code, ErrorType};
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

/// The terminal events whose `response.output` the kept items fill in when it is empty.
const WITH_OUTPUT: &[&[u8]] = &[b"response.completed", b"response.incomplete"];

const ITEM_DONE: &[u8] = b"response.output_item.done";

/// Only what the filter reads of an event it looks into.
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

#[derive(Deserialize)]
struct ItemDone<'a> {
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(borrow)]
    item: &'a RawValue,
}

/// The event's type: from the leading `{"type":"…"` the backend writes, else a full parse.
fn kind_of(data: &[u8]) -> Option<Cow<'_, [u8]>> {
    if let Some(kind) = leading_type(data) {
        return Some(Cow::Borrowed(kind));
    }
    let event = serde_json::from_slice::<Terminal>(data).ok()?;
    Some(Cow::Owned(event.kind.as_bytes().to_vec()))
}

fn usage_of(response: Option<&RawValue>) -> Option<Usage> {
    let head: ResponseHead = serde_json::from_str(response?.get()).ok()?;
    head.usage.map(Usage::from)
}

/// The finished output items of a turn, in output order, up to `limit` bytes in all.
struct OutputItems {
    items: Vec<(u64, Vec<u8>)>,
    held: usize,
    limit: usize,
    over: bool,
}

impl OutputItems {
    fn new(limit: usize) -> Self {
        Self {
            items: Vec::new(),
            held: 0,
            limit,
            over: false,
        }
    }

    fn keep(&mut self, data: &[u8]) {
        if self.over {
            return;
        }
        let Ok(done) = serde_json::from_slice::<ItemDone>(data) else {
            return;
        };
        let item = done.item.get().as_bytes();
        self.held = self.held.saturating_add(item.len());
        if self.held > self.limit {
            self.over = true;
            self.items = Vec::new();
            return;
        }
        self.items
            .push((done.output_index.unwrap_or(u64::MAX), item.to_vec()));
    }

    /// `response` with its `output` made of the kept items, when the backend left it empty
    /// and there are any; `None` leaves the object as it is.
    fn fill(&mut self, response: &RawValue) -> Option<Vec<u8>> {
        if self.items.is_empty() || self.over {
            return None;
        }
        let head = serde_json::from_str::<ResponseHead>(response.get()).ok()?;
        let empty = head.output.is_none_or(|o| {
            let text = o.get();
            text == "null"
                || text
                    .strip_prefix('[')
                    .is_some_and(|rest| rest.trim_start().starts_with(']'))
        });
        if !empty {
            return None;
        }
        let fields = serde_json::from_str::<Ordered>(response.get()).ok()?;
        self.items.sort_by_key(|(index, _)| *index);
        let mut out = Vec::with_capacity(response.get().len().saturating_add(self.held).saturating_add(16));
        out.push(b'{');
        let mut written = false;
        for (key, raw) in &fields.members {
            if key == "output" {
                if !written {
                    written = true;
                    self.write_items(&mut out);
                }
                continue;
            }
            write_key(&mut out, key);
            out.extend_from_slice(raw.get().as_bytes());
        }
        if !written {
            self.write_items(&mut out);
        }
        out.push(b'}');
        Some(out)
    }

    fn write_items(&self, out: &mut Vec<u8>) {
        write_key(out, "output");
        out.push(b'[');
        for (i, (_, item)) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item);
        }
        out.push(b']');
    }
}

/// An event whose `response` member is replaced by `response`, the rest as it came.
fn with_response(data: &[u8], response: &[u8]) -> Option<Vec<u8>> {
    let fields = serde_json::from_slice::<Ordered>(data).ok()?;
    let mut out = Vec::with_capacity(data.len().saturating_add(response.len()));
    out.push(b'{');
    for (key, raw) in &fields.members {
        write_key(&mut out, key);
        match key.as_ref() {
            "response" => out.extend_from_slice(response),
            _ => out.extend_from_slice(raw.get().as_bytes()),
        }
    }
    out.push(b'}');
    Some(out)
}

/// A streaming client's answer: every event framed as the backend frames them (`event:` line,
/// `data:` line, blank line) around its payload as it came, the one mended terminal event
/// aside; a stream that ends without its terminal event gets one more `error` event.
pub struct ResponsesStream {
    framer: SseFramer,
    state: StreamState,
}

struct StreamState {
    out: Vec<u8>,
    events: u64,
    terminal: bool,
    usage: Option<Usage>,
    items: OutputItems,
}

impl ResponsesStream {
    /// `limit` bounds one event and the items kept (`MAX_REQUEST_BODY_BYTES`).
    pub fn new(limit: usize) -> Self {
        Self {
            // An event can be as large as a whole answer (`response.completed` repeats it).
            framer: SseFramer::new(limit.max(MAX_EVENT_BYTES)),
            state: StreamState {
                out: Vec::new(),
                events: 0,
                terminal: false,
                usage: None,
                items: OutputItems::new(limit),
            },
        }
    }
}

impl StreamState {
    fn event(&mut self, data: &[u8]) {
        let kind = kind_of(data);
        let kind = kind.as_deref();
        if self.terminal {
            // The turn is over; what follows (nothing, from the backend) still goes on.
            self.frame(kind, data);
            return;
        }
        self.events = self.events.saturating_add(1);
        match kind {
            Some(ITEM_DONE) => self.items.keep(data),
            Some(kind) if TERMINAL.contains(&kind) => {
                self.terminal = true;
                let event = serde_json::from_slice::<Terminal>(data).ok();
                let response = event.as_ref().and_then(|e| e.response);
                self.usage = usage_of(response).or(self.usage);
                if WITH_OUTPUT.contains(&kind) {
                    if let Some(mended) = response
                        .and_then(|r| self.items.fill(r))
                        .and_then(|filled| with_response(data, &filled))
                    {
                        self.frame(Some(kind), &mended);
                        return;
                    }
                }
            }
            _ => {}
        }
        self.frame(kind, data);
    }

    fn frame(&mut self, kind: Option<&[u8]>, data: &[u8]) {
        // A type spelled with escapes can decode to a line break, which would end the line.
        if let Some(kind) = kind.filter(|k| !k.iter().any(u8::is_ascii_control)) {
            self.out.extend_from_slice(b"event: ");
            self.out.extend_from_slice(kind);
            self.out.push(b'\n');
        }
        // A payload the backend spread over several `data:` lines keeps them.
        for line in data.split(|b| *b == b'\n') {
            self.out.extend_from_slice(b"data: ");
            self.out.extend_from_slice(line);
            self.out.push(b'\n');
        }
        self.out.push(b'\n');
    }

    fn fail(&mut self, error: &ApiError) {
        self.terminal = true;
        let event = error_event(error, self.events);
        self.out.extend_from_slice(&event);
    }
}

impl Pipeline for ResponsesStream {
    fn push(&mut self, chunk: &[u8], _now: u64) -> &[u8] {
        let Self { framer, state } = self;
        state.out.clear();
        if framer.push(chunk, |data| state.event(data)).is_err() && !state.terminal {
            state.fail(&ApiError::of(
                Code::UpstreamEventTooLarge,
                "The ChatGPT backend sent an event larger than the limit for one event (MAX_REQUEST_BODY_BYTES); retry, and report it if it persists.",
            ));
        }
        &state.out
    }

    fn finish(&mut self, _now: u64) -> End<'_> {
        let Self { framer, state } = self;
        state.out.clear();
        // An event the connection cut short is not valid JSON; the client gets the error
        // event below instead of a payload it cannot parse.
        framer.finish(|data| {
            if serde_json::from_slice::<&RawValue>(data).is_ok() {
                state.event(data);
            }
        });
        if !state.terminal {
            state.fail(&incomplete());
        }
        End::Tail(&state.out)
    }

    fn usage(&self) -> Option<Usage> {
        self.state.usage
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
/// `response.incomplete`, which says why in `incomplete_details`), its empty `output` filled
/// in as for a stream, as JSON. An upstream failure is the OpenAI-shaped error with its status.
pub struct ResponsesAggregator {
    framer: SseFramer,
    state: Aggregate,
}

struct Aggregate {
    items: OutputItems,
    limit: usize,
    result: Option<Result<Vec<u8>, ApiError>>,
    usage: Option<Usage>,
}

impl ResponsesAggregator {
    /// `limit` caps the answer (`MAX_REQUEST_BODY_BYTES`); past it the answer is a 502.
    pub fn new(limit: usize) -> Self {
        Self {
            framer: SseFramer::new(limit.max(MAX_EVENT_BYTES)),
            state: Aggregate {
                items: OutputItems::new(limit),
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
        let kind = kind_of(data);
        match kind.as_deref() {
            Some(ITEM_DONE) => {
                self.items.keep(data);
                if self.items.over {
                    self.result = Some(Err(answer_too_large(self.limit)));
                }
                return;
            }
            Some(kind) if TERMINAL.contains(&kind) => {}
            _ => return,
        }
        let Ok(event) = serde_json::from_slice::<Terminal>(data) else {
            return;
        };
        match event.kind.as_ref() {
            "response.completed" | "response.incomplete" => self.complete(event.response),
            "response.failed" => {
                let error = event
                    .response
                    .and_then(|r| serde_json::from_str::<ResponseHead>(r.get()).ok())
                    .and_then(|r| r.error);
                self.fail(error, None, None, now);
            }
            _ => self.fail(event.error, event.code, event.message, now),
        }
    }

    fn complete(&mut self, response: Option<&RawValue>) {
        let Some(response) = response.filter(|r| r.get().starts_with('{')) else {
            self.result = Some(Err(ApiError::new(
                502,
                ErrorType::Upstream,
                "The ChatGPT backend ended the turn without a response object; retry the request.",
            )));
            return;
        };
        self.usage = usage_of(Some(response));
        let body = self
            .items
            .fill(response)
            .unwrap_or_else(|| response.get().as_bytes().to_vec());
        self.result = Some(match body.len() > self.limit {
            true => Err(answer_too_large(self.limit)),
            false => Ok(body),
        });
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
