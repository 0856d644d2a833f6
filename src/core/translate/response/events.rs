//! One upstream turn: Responses SSE events → the signals every client format is built from
//! (text, reasoning, tool calls, the one terminal outcome). Streaming and non-streaming output,
//! chat and text completions all consume the same signals, so they cannot disagree.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::error::{ApiError, Code};
use crate::core::translate::response::upstream_error::{self, ErrorFields};
use crate::core::translate::response::usage::{ResponsesUsage, Usage};

/// How a completed turn ended, as Chat Completions' `finish_reason` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    /// The `finish_reason` string clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
        }
    }
}

/// One thing the upstream turn said, in client-neutral form; borrows from the event being
/// read, so a sink must copy what it keeps.
#[derive(Debug, PartialEq)]
pub enum Signal<'e> {
    /// `response.created`: the upstream id and creation time.
    Meta {
        id: &'e str,
        created: Option<u64>,
    },
    Text(&'e str),
    Reasoning(&'e str),
    /// A new reasoning paragraph (summary part) starts after earlier reasoning text.
    ReasoningBreak,
    ToolCallStart {
        index: usize,
        call_id: &'e str,
        name: &'e str,
    },
    ToolCallArgs {
        index: usize,
        delta: &'e str,
    },
    Finish {
        reason: FinishReason,
        usage: Option<Usage>,
    },
    Fail(ApiError),
}

/// One event. The large parts (`item`, `response`) stay raw JSON and are decoded only by the
/// few event types that need them: most events are deltas, and parsing every copy of the full
/// answer that `*.done` events repeat dominated the cost of a stream.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    item_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    item: Option<&'a RawValue>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
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
struct Item<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ResponseObject<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    created_at: Option<u64>,
    #[serde(default)]
    usage: Option<ResponsesUsage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    incomplete_details: Option<IncompleteDetails<'a>>,
}

#[derive(Deserialize)]
struct IncompleteDetails<'a> {
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
}

struct Call {
    item_id: String,
    /// Argument text already sent to the client, to reconcile with the final arguments.
    sent: String,
}

/// The interpreter state of one turn.
#[derive(Default)]
pub struct Turn {
    calls: Vec<Call>,
    reasoning_seen: bool,
    break_pending: bool,
    done: bool,
    /// Events that were not valid JSON (skipped, counted for diagnostics).
    pub malformed_events: u32,
}

impl Turn {
    /// The turn has had its one terminal signal (`Finish` or `Fail`); later events are ignored.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Interprets one SSE data payload. `now` (Unix seconds) dates usage-limit resets.
    pub fn event(&mut self, data: &[u8], now: u64, emit: &mut impl FnMut(Signal<'_>)) {
        let leading = leading_type(data);
        if self.done || leading.is_some_and(|kind| IGNORED.iter().any(|i| i.as_bytes() == kind)) {
            return;
        }
        let fast = leading.and_then(|kind| fast_delta(data, kind));
        let Some(event) = fast.or_else(|| serde_json::from_slice::<Event>(data).ok()) else {
            if data.trim_ascii() != b"[DONE]" {
                self.malformed_events = self.malformed_events.saturating_add(1);
            }
            return;
        };
        match event.kind.as_ref() {
            "response.created" => {
                if let Some(response) = decode::<ResponseObject>(event.response) {
                    emit(Signal::Meta {
                        id: response.id.as_deref().unwrap_or(""),
                        created: response.created_at,
                    });
                }
            }
            "response.output_text.delta" => {
                if let Some(delta) = event.delta.as_deref().filter(|d| !d.is_empty()) {
                    emit(Signal::Text(delta));
                }
            }
            "response.reasoning_summary_part.added" => self.break_pending = self.reasoning_seen,
            "response.reasoning_summary_text.delta"
            | "response.reasoning_text.delta"
            | "response.reasoning_summary.delta"
            | "response.reasoning.delta" => {
                if let Some(delta) = event.delta.as_deref().filter(|d| !d.is_empty()) {
                    if std::mem::take(&mut self.break_pending) {
                        emit(Signal::ReasoningBreak);
                    }
                    self.reasoning_seen = true;
                    emit(Signal::Reasoning(delta));
                }
            }
            "response.output_item.added" => {
                if let Some(item) = decode::<Item>(event.item).filter(|i| i.kind == "function_call") {
                    let index = self.start_call(&item, emit);
                    self.reconcile(index, item.arguments.as_deref(), emit);
                }
            }
            "response.function_call_arguments.delta" => {
                if let (Some(index), Some(delta)) =
                    (self.call_index(event.item_id.as_deref()), event.delta.as_deref())
                {
                    if !delta.is_empty() {
                        if let Some(call) = self.calls.get_mut(index) {
                            call.sent.push_str(delta);
                        }
                        emit(Signal::ToolCallArgs { index, delta });
                    }
                }
            }
            "response.function_call_arguments.done" => {
                if let Some(index) = self.call_index(event.item_id.as_deref()) {
                    self.reconcile(index, event.arguments.as_deref(), emit);
                }
            }
            "response.output_item.done" => {
                if let Some(item) = decode::<Item>(event.item).filter(|i| i.kind == "function_call") {
                    let index = match self.call_index(item.id.as_deref()) {
                        Some(index) => index,
                        None => self.start_call(&item, emit),
                    };
                    self.reconcile(index, item.arguments.as_deref(), emit);
                }
            }
            "response.completed" => {
                let reason = if self.calls.is_empty() {
                    FinishReason::Stop
                } else {
                    FinishReason::ToolCalls
                };
                self.finish(reason, decode(event.response).as_ref(), emit);
            }
            "response.incomplete" => {
                let response = decode::<ResponseObject>(event.response);
                let reason = response
                    .as_ref()
                    .and_then(|r| r.incomplete_details.as_ref())
                    .and_then(|d| d.reason.as_deref());
                let reason = if reason == Some("content_filter") {
                    FinishReason::ContentFilter
                } else {
                    FinishReason::Length
                };
                self.finish(reason, response.as_ref(), emit);
            }
            "response.failed" => {
                let response = decode::<ResponseObject>(event.response);
                let raw = response.as_ref().and_then(|r| r.error);
                self.fail(error_fields(raw, None, None), now, emit);
            }
            "error" => self.fail(error_fields(event.error, event.code, event.message), now, emit),
            _ => {}
        }
    }

    /// The upstream closed the stream. Without a terminal event the answer is cut short,
    /// which the client must learn about rather than mistake for a complete answer.
    pub fn end_of_stream(&mut self, emit: &mut impl FnMut(Signal<'_>)) {
        if !self.done {
            self.done = true;
            emit(Signal::Fail(ApiError::of(
                Code::StreamIncomplete,
                "The ChatGPT backend closed the stream before the response was complete; retry the request.",
            )));
        }
    }

    /// An upstream event too large to buffer.
    pub fn overflow(&mut self, emit: &mut impl FnMut(Signal<'_>)) {
        if !self.done {
            self.done = true;
            emit(Signal::Fail(ApiError::of(
                Code::UpstreamEventTooLarge,
                "The ChatGPT backend sent an event larger than the 1 MiB limit.",
            )));
        }
    }

    fn start_call(&mut self, item: &Item<'_>, emit: &mut impl FnMut(Signal<'_>)) -> usize {
        let index = self.calls.len();
        let call_id = item.call_id.as_deref().or(item.id.as_deref()).unwrap_or("");
        self.calls.push(Call {
            item_id: item.id.as_deref().unwrap_or(call_id).to_string(),
            sent: String::new(),
        });
        emit(Signal::ToolCallStart {
            index,
            call_id,
            name: item.name.as_deref().unwrap_or(""),
        });
        index
    }

    fn call_index(&self, item_id: Option<&str>) -> Option<usize> {
        let item_id = item_id?;
        self.calls.iter().position(|c| c.item_id == item_id)
    }

    /// Sends whatever part of the final arguments the client has not seen yet.
    fn reconcile(&mut self, index: usize, arguments: Option<&str>, emit: &mut impl FnMut(Signal<'_>)) {
        let (Some(call), Some(arguments)) = (self.calls.get_mut(index), arguments) else {
            return;
        };
        if let Some(rest) = arguments
            .strip_prefix(call.sent.as_str())
            .filter(|r| !r.is_empty())
        {
            call.sent.push_str(rest);
            emit(Signal::ToolCallArgs { index, delta: rest });
        }
    }

    fn finish(
        &mut self,
        reason: FinishReason,
        response: Option<&ResponseObject<'_>>,
        emit: &mut impl FnMut(Signal<'_>),
    ) {
        self.done = true;
        emit(Signal::Finish {
            reason,
            usage: response.and_then(|r| r.usage).map(Usage::from),
        });
    }

    fn fail(&mut self, fields: ErrorFields<'_>, now: u64, emit: &mut impl FnMut(Signal<'_>)) {
        self.done = true;
        emit(Signal::Fail(upstream_error::from_stream(&fields, now)));
    }
}

/// Event types that never change what the client gets. Recognised from the leading
/// `{"type":"…"` the backend writes, they are skipped unparsed: several repeat the whole
/// answer text (`response.output_text.done`), which made parsing them a large share of a stream.
const IGNORED: &[&str] = &[
    "response.in_progress",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.done",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.reasoning_text.done",
    "response.metadata",
    "codex.response.metadata",
    "codex.rate_limits",
];

/// The event type when the payload starts with it, else `None` (then the full parse decides).
pub(crate) fn leading_type(data: &[u8]) -> Option<&[u8]> {
    let rest = data.trim_ascii_start().strip_prefix(b"{\"type\":\"")?;
    let end = rest.iter().position(|b| *b == b'"' || *b == b'\\')?;
    (rest.get(end) == Some(&b'"')).then(|| rest.get(..end)).flatten()
}

/// Delta events, by far the most frequent, read by [`fast_delta`] without a full parse.
const DELTAS: &[&str] = &[
    "response.output_text.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.reasoning_summary.delta",
    "response.reasoning.delta",
];

/// The members `Event` knows (serde refuses a second one of these: a duplicate field), by
/// their index in [`field_index`].
const EVENT_FIELDS: usize = 9;

fn field_index(key: &[u8]) -> Option<usize> {
    Some(match key {
        b"type" => 0,
        b"delta" => 1,
        b"item_id" => 2,
        b"item" => 3,
        b"arguments" => 4,
        b"response" => 5,
        b"error" => 6,
        b"code" => 7,
        b"message" => 8,
        _ => return None,
    })
}

/// A delta event's `type`, `delta` and `item_id`, read by one pass over its top-level members
/// instead of a full parse. Only the plain shape the backend writes is taken: plain ASCII
/// strings, integers, `true`/`false`/`null` and `[]` as the members it does not use, no escapes
/// outside `delta`, each known member once, nothing after the object. Anything else is `None`
/// and gets the full parse, which accepts (or refuses) exactly what it always did; so whatever
/// this returns is what the full parse would have read.
fn fast_delta<'a>(data: &'a [u8], kind: &[u8]) -> Option<Event<'a>> {
    let kind = *DELTAS.iter().find(|d| d.as_bytes() == kind)?;
    let mut scan = Scan { data, at: 0 };
    scan.space();
    scan.byte(b'{')?;
    let mut seen = [false; EVENT_FIELDS];
    let (mut delta, mut item_id) = (None, None);
    loop {
        scan.space();
        let key = scan.plain_string()?;
        scan.space();
        scan.byte(b':')?;
        scan.space();
        let known = field_index(key);
        if let Some(slot) = known.and_then(|i| seen.get_mut(i)) {
            if std::mem::replace(slot, true) {
                return None;
            }
        }
        match known {
            Some(1) => delta = scan.string_value()?,
            Some(2) => item_id = Some(std::str::from_utf8(scan.plain_string()?).ok()?),
            // `type` was read by `leading_type`; the other known members would need decoding.
            Some(0) => drop(scan.plain_string()?),
            Some(_) => return None,
            None => scan.simple_value()?,
        }
        scan.space();
        match scan.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    scan.space();
    if scan.at != data.len() {
        return None;
    }
    Some(Event {
        kind: Cow::Borrowed(kind),
        delta,
        item_id: item_id.map(Cow::Borrowed),
        item: None,
        arguments: None,
        response: None,
        error: None,
        code: None,
        message: None,
    })
}

/// The fast read of a delta event agrees with the full parse: it reads nothing the full parse
/// refuses, and the same `type`, `delta` and `item_id` (checked by the unit tests and the
/// `sse_stream` fuzz target on every event).
pub fn fast_read_agrees(data: &[u8]) -> bool {
    let Some(fast) = leading_type(data).and_then(|kind| fast_delta(data, kind)) else {
        return true;
    };
    serde_json::from_slice::<Event>(data)
        .is_ok_and(|full| full.kind == fast.kind && full.delta == fast.delta && full.item_id == fast.item_id)
}

struct Scan<'a> {
    data: &'a [u8],
    at: usize,
}

/// A byte a plain string may hold as it is: printable ASCII but the quote and the backslash.
/// (Anything else sends the event to the full parse, except in `delta`.)
fn plain(b: u8) -> bool {
    matches!(b, 0x20..=0x7e) && b != b'"' && b != b'\\'
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at = self.at.saturating_add(1);
        Some(byte)
    }

    fn byte(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at = self.at.saturating_add(1);
        }
    }

    /// A string of printable ASCII without escapes: its bytes between the quotes.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let start = self.at;
        let mut end = start;
        loop {
            let b = *self.data.get(end)?;
            if b == b'"' {
                break;
            }
            if !plain(b) {
                return None;
            }
            end = end.saturating_add(1);
        }
        self.at = end.saturating_add(1);
        self.data.get(start..end)
    }

    /// A string member's value, borrowed when it has no escapes, decoded as serde does when
    /// it has; `null` is absent, as for an `Option`.
    fn string_value(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.peek()? == b'n' {
            self.word(b"null")?;
            return Some(None);
        }
        let start = self.at;
        self.byte(b'"')?;
        let mut end = self.at;
        let mut escaped = false;
        loop {
            match *self.data.get(end)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    end = end.saturating_add(2);
                }
                0..=0x1f => return None,
                _ => end = end.saturating_add(1),
            }
        }
        let text = self.data.get(self.at..end)?;
        self.at = end.saturating_add(1);
        if escaped {
            let quoted = self.data.get(start..self.at)?;
            return serde_json::from_slice::<Cow<'a, str>>(quoted).ok().map(Some);
        }
        std::str::from_utf8(text).ok().map(|s| Some(Cow::Borrowed(s)))
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        (self.data.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A member the event does not use: a plain string, an integer, `true`, `false`, `null`
    /// or `[]`.
    fn simple_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => drop(self.plain_string()?),
            b'[' => {
                self.at = self.at.saturating_add(1);
                self.space();
                self.byte(b']')?;
            }
            b'-' | b'0'..=b'9' => {
                if self.peek() == Some(b'-') {
                    self.at = self.at.saturating_add(1);
                }
                let first = self.at;
                while let Some(b'0'..=b'9') = self.peek() {
                    self.at = self.at.saturating_add(1);
                }
                let digits = self.at.saturating_sub(first);
                // JSON has no leading zeros; a fraction or exponent goes to the full parse.
                if digits == 0 || (digits > 1 && self.data.get(first) == Some(&b'0')) {
                    return None;
                }
                if let Some(b'.' | b'e' | b'E') = self.peek() {
                    return None;
                }
            }
            b't' => self.word(b"true")?,
            b'f' => self.word(b"false")?,
            b'n' => self.word(b"null")?,
            _ => return None,
        }
        Some(())
    }
}

/// Decodes a raw part of an event; a missing or malformed part counts as absent.
fn decode<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Option<T> {
    serde_json::from_str(raw?.get()).ok()
}

/// The error object of an event, tolerating a missing or oddly shaped one.
fn error_fields<'a>(
    raw: Option<&'a RawValue>,
    code: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
) -> ErrorFields<'a> {
    let mut fields: ErrorFields = raw
        .and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or_default();
    fields.code = fields.code.or(code);
    fields.message = fields.message.or(message);
    fields
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
