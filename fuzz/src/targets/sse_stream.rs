//! The SSE framer and the stream translator, from upstream bytes to every client format.
//!
//! For any upstream body, in every `REASONING_OUTPUT_MODE`, for chat and text completions,
//! streamed and aggregated:
//! * the output is the same however the body is cut into chunks (empty chunks included);
//! * a streamed body is `data: <JSON object>` frames, exactly one `data: [DONE]`, last; an
//!   error frame only right before it and never next to a finish chunk; one finish chunk
//!   otherwise, then at most a usage chunk;
//! * the aggregated answer says what the stream said: the same text, reasoning, tool calls,
//!   finish reason and usage, or the same error (with a 4xx/5xx status);
//! * the client gets at most a bounded multiple of what the upstream sent;
//! * the fast read of a delta event reads what the full parse reads (or leaves it to it).

use codex_openai_wrapper::core::reasoning::OutputMode;
use codex_openai_wrapper::core::translate::response::chat_aggregate::ChatAggregator;
use codex_openai_wrapper::core::translate::response::chat_stream::ChatStreamWriter;
use codex_openai_wrapper::core::translate::response::completions::{
    CompletionAggregator, CompletionStreamWriter,
};
use codex_openai_wrapper::core::translate::response::events::fast_read_agrees;
use codex_openai_wrapper::core::translate::response::translator::{End, Output, Pipeline, Translator};
use serde_json::Value;

use crate::engine::{Rng, Target, files_in, fnv, mix, repo_root};
use crate::mutate;

pub const TARGET: Target = Target {
    name: "sse_stream",
    seeds,
    dictionary: DICTIONARY,
    check,
    mutate: Some(mutate_events),
    max_len: 256 * 1024,
};

const MODES: [OutputMode; 5] = [
    OutputMode::OpenAi,
    OutputMode::Tagged,
    OutputMode::O3,
    OutputMode::R1,
    OutputMode::Hidden,
];
const MODEL: &str = "gpt-5.5";
const NOW: u64 = 1_766_361_600;

pub(crate) const DICTIONARY: &[&str] = &[
    "event: ",
    "data: ",
    "data:",
    "\n\n",
    "\r\n",
    ": keep-alive\n\n",
    "id: 1\n",
    "retry: 10\n",
    "\u{FEFF}",
    "[DONE]",
    r#""type":"#,
    r#""delta":"#,
    r#""item_id":"#,
    r#""arguments":"#,
    r#""response":"#,
    r#""error":"#,
    r#""code":"#,
    r#""message":"#,
    r#""usage":"#,
    r#""total_tokens":"#,
    r#""resets_at":"#,
    r#""resets_in_seconds":"#,
    r#""incomplete_details":{"reason":"content_filter"}"#,
    r#""item":{"type":"function_call","id":"fc_9","call_id":"call_9","name":"f","arguments":""}"#,
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.reasoning_summary.delta",
    "response.reasoning.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
    "codex.rate_limits",
    "function_call",
    "usage_limit_reached",
    "server_is_overloaded",
    "context_length_exceeded",
    "rate_limit_exceeded",
    "Please try again in 11.054s",
];

/// The event types the interpreter knows, and a few it must ignore.
const EVENT_TYPES: &[&str] = &[
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
    "codex.rate_limits",
    "response.metadata",
];

fn seeds() -> Vec<Vec<u8>> {
    files_in(&repo_root().join("tests").join("fixtures").join("streams"))
}

// ------------------------------------------------------------------------------------------
// Running one format

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    ChatStream,
    ChatAggregate,
    CompletionStream,
    CompletionAggregate,
}

/// What the client gets: the streamed body, or the aggregated body, or (status, error body).
#[derive(Debug, PartialEq, Eq)]
enum Client {
    Streamed(Vec<u8>),
    Answer(Vec<u8>),
    Error(u16, Vec<u8>),
}

fn drive<S: Output>(mut t: Translator<S>, chunks: &[&[u8]], streams: bool) -> Client {
    let mut out = Vec::new();
    for chunk in chunks {
        let now = t.push(chunk, NOW);
        assert!(
            streams || now.is_empty(),
            "an aggregator forwarded bytes before the end"
        );
        out.extend_from_slice(now);
    }
    match (t.finish(NOW), streams) {
        (End::Tail(tail), true) => {
            out.extend_from_slice(tail);
            Client::Streamed(out)
        }
        (End::Body(body), false) => Client::Answer(body.to_vec()),
        (End::Error(error), false) => Client::Error(error.status, error.body()),
        (other, _) => panic!(
            "{} translator ended with {other:?}",
            if streams { "a streaming" } else { "an aggregating" }
        ),
    }
}

fn client(format: Format, mode: OutputMode, usage: bool, chunks: &[&[u8]]) -> Client {
    match format {
        Format::ChatStream => drive(
            Translator::new(mode, ChatStreamWriter::new(MODEL, 1, usage)),
            chunks,
            true,
        ),
        Format::ChatAggregate => drive(
            Translator::new(mode, ChatAggregator::new(MODEL, 1)),
            chunks,
            false,
        ),
        Format::CompletionStream => drive(
            Translator::new(mode, CompletionStreamWriter::new(MODEL, 1, usage)),
            chunks,
            true,
        ),
        Format::CompletionAggregate => drive(
            Translator::new(mode, CompletionAggregator::new(MODEL, 1)),
            chunks,
            false,
        ),
    }
}

/// Chunk boundaries derived from the input itself, so a saved input replays the same cuts.
pub(crate) fn split_plans(len: usize, hash: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(hash);
    let two = vec![rng.below(len + 1)];
    let mut three = vec![rng.below(len + 1), rng.below(len + 1)];
    three.sort_unstable();
    let size = 1 + rng.below(13);
    let fixed: Vec<usize> = (0..=len).step_by(size).collect();
    // Random sizes, with the odd empty chunk (Envoy may call with zero bytes).
    let mut random = Vec::new();
    let mut at = 0;
    while at < len {
        at += rng.below(64);
        random.push(at.min(len));
    }
    vec![two, three, fixed, random]
}

pub(crate) fn cut<'a>(data: &'a [u8], plan: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::with_capacity(plan.len() + 1);
    let mut from = 0;
    for &to in plan {
        let to = to.clamp(from, data.len());
        chunks.push(&data[from..to]);
        from = to;
    }
    chunks.push(&data[from..]);
    chunks
}

// ------------------------------------------------------------------------------------------
// The check

pub fn check(data: &[u8]) -> u64 {
    for line in data.split(|b| *b == b'\n') {
        if let Some(payload) = line.strip_prefix(b"data:") {
            let payload = payload.strip_prefix(b" ").unwrap_or(payload);
            let payload = payload.strip_suffix(b"\r").unwrap_or(payload);
            assert!(
                fast_read_agrees(payload),
                "the fast delta read disagrees with the full parse: {:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }
    let hash = fnv(data);
    let usage = hash & 1 == 0;
    let plans = split_plans(data.len(), hash >> 1);
    let mut signature = Vec::new();
    let mut combinations: Vec<(Format, Format, OutputMode)> = MODES
        .iter()
        .map(|m| (Format::ChatStream, Format::ChatAggregate, *m))
        .collect();
    // Text completions present in `hidden` mode, as the filter runs them.
    combinations.push((
        Format::CompletionStream,
        Format::CompletionAggregate,
        OutputMode::Hidden,
    ));
    for (stream_format, aggregate_format, mode) in combinations {
        let streamed = client(stream_format, mode, usage, &[data]);
        let aggregated = client(aggregate_format, mode, usage, &[data]);
        // Every cut for the mode that shows every signal; one or two for the others.
        let cuts: &[Vec<usize>] = if mode == OutputMode::OpenAi {
            &plans
        } else {
            &plans[..2]
        };
        for plan in cuts {
            let chunks = cut(data, plan);
            assert_eq!(
                client(stream_format, mode, usage, &chunks),
                streamed,
                "{stream_format:?} {mode:?}: different output when cut at {plan:?}"
            );
        }
        let chunks = cut(data, &plans[3]);
        assert_eq!(
            client(aggregate_format, mode, usage, &chunks),
            aggregated,
            "{aggregate_format:?} {mode:?}: different answer when cut at {:?}",
            plans[3]
        );
        let Client::Streamed(body) = &streamed else {
            unreachable!()
        };
        assert!(
            body.len() <= 16 * data.len() + 4096,
            "{stream_format:?} {mode:?}: {} bytes out for {} bytes in",
            body.len(),
            data.len()
        );
        let seen = read_stream(body, stream_format);
        agree(&seen, &aggregated, aggregate_format, mode);
        if mode == OutputMode::OpenAi || stream_format == Format::CompletionStream {
            signature.push(seen.signature);
            signature.push(match &aggregated {
                Client::Error(status, _) => u64::from(*status),
                _ => 200,
            });
        }
    }
    mix(&signature)
}

/// What a streamed body said, read the way a client reads it.
#[derive(Debug, Default)]
struct Seen {
    content: String,
    reasoning_content: String,
    reasoning: String,
    /// (id, name, arguments) by index.
    tools: Vec<(String, String, String)>,
    finish: Option<String>,
    usage: Option<Value>,
    error: Option<Value>,
    signature: u64,
}

fn read_stream(body: &[u8], format: Format) -> Seen {
    let text = std::str::from_utf8(body).unwrap_or_else(|e| panic!("streamed output is not UTF-8: {e}"));
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "the stream does not end with [DONE]: {text:?}"
    );
    let frames: Vec<&str> = text
        .strip_suffix("\n\n")
        .unwrap_or(text)
        .split("\n\n")
        .map(|frame| {
            frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {frame:?}"))
        })
        .collect();
    let (done, frames) = frames.split_last().unwrap_or_else(|| unreachable!());
    assert_eq!(*done, "[DONE]");
    let mut seen = Seen::default();
    let mut kinds: Vec<u64> = Vec::new();
    let mut id: Option<(Value, Value)> = None;
    let mut role_seen = false;
    for (i, frame) in frames.iter().enumerate() {
        assert_ne!(*frame, "[DONE]", "[DONE] before the end");
        let value: Value =
            serde_json::from_str(frame).unwrap_or_else(|e| panic!("frame {i} is not JSON ({e}): {frame:?}"));
        assert!(value.is_object(), "frame {i} is not an object: {frame}");
        assert!(seen.error.is_none(), "a frame after the error frame: {frame}");
        if let Some(error) = value.get("error") {
            assert!(seen.finish.is_none(), "an error after the finish chunk: {frame}");
            assert_eq!(
                i + 1,
                frames.len(),
                "the error frame is not the last before [DONE]"
            );
            assert_openai_error(&value);
            seen.error = Some(error.clone());
            // The type, not the code: upstream codes pass through, so any string is one.
            kinds.push(fnv(error["type"].to_string().as_bytes()));
            continue;
        }
        let object = if format == Format::ChatStream {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        assert_eq!(value["object"], object, "frame {i}: {frame}");
        assert_eq!(value["model"], MODEL, "frame {i}: {frame}");
        let this_id = (value["id"].clone(), value["created"].clone());
        assert!(
            this_id.0.as_str().is_some_and(|s| s.contains('-')),
            "frame {i} id: {frame}"
        );
        assert!(this_id.1.is_u64(), "frame {i} created: {frame}");
        match &id {
            Some(first) => assert_eq!(first, &this_id, "frame {i} changed the id or time: {frame}"),
            None => id = Some(this_id),
        }
        let choices = value["choices"]
            .as_array()
            .unwrap_or_else(|| panic!("frame {i} has no choices: {frame}"));
        let Some(choice) = choices.first() else {
            // The usage chunk: right after the finish chunk, once.
            assert!(
                seen.finish.is_some() && seen.usage.is_none(),
                "a usage chunk out of place: {frame}"
            );
            assert_eq!(i + 1, frames.len(), "a frame after the usage chunk");
            seen.usage = Some(value["usage"].clone());
            kinds.push(2);
            continue;
        };
        assert_eq!(choices.len(), 1);
        assert_eq!(choice["index"], 0);
        assert!(seen.finish.is_none(), "a chunk after the finish chunk: {frame}");
        if let Some(reason) = choice["finish_reason"].as_str() {
            assert!(
                ["stop", "length", "tool_calls", "content_filter"].contains(&reason),
                "finish reason {reason:?}"
            );
            seen.finish = Some(reason.to_string());
            kinds.push(fnv(reason.as_bytes()));
            continue;
        }
        assert!(choice["finish_reason"].is_null(), "frame {i}: {frame}");
        if format == Format::CompletionStream {
            seen.content.push_str(
                choice["text"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no text: {frame}")),
            );
            push_kind(&mut kinds, 3);
            continue;
        }
        let delta = &choice["delta"];
        if delta.get("role").is_some() {
            assert!(
                !role_seen && i == 0,
                "the role is not the first chunk's, once: {frame}"
            );
            assert_eq!(delta, &serde_json::json!({"role": "assistant", "content": ""}));
            role_seen = true;
            kinds.push(1);
            continue;
        }
        assert!(role_seen, "a delta before the role: {frame}");
        let fields = delta.as_object().map(|o| o.len()).unwrap_or_default();
        assert_eq!(fields, 1, "a delta with {fields} fields: {frame}");
        if let Some(text) = delta["content"].as_str() {
            seen.content.push_str(text);
            push_kind(&mut kinds, 3);
        } else if let Some(text) = delta["reasoning_content"].as_str() {
            seen.reasoning_content.push_str(text);
            push_kind(&mut kinds, 4);
        } else if let Some(text) = delta["reasoning"]["content"][0]["text"].as_str() {
            seen.reasoning.push_str(text);
            push_kind(&mut kinds, 4);
        } else if let Some(call) = delta["tool_calls"].get(0) {
            let index = call["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("no index: {frame}")) as usize;
            if let Some(call_id) = call.get("id") {
                assert_eq!(
                    index,
                    seen.tools.len(),
                    "tool call indexes are not 0, 1, 2…: {frame}"
                );
                assert_eq!(call["function"]["arguments"], "", "{frame}");
                seen.tools.push((
                    call_id.as_str().unwrap_or_default().to_string(),
                    call["function"]["name"].as_str().unwrap_or_default().to_string(),
                    String::new(),
                ));
                push_kind(&mut kinds, 5);
            } else {
                let args = call["function"]["arguments"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{frame}"));
                assert!(!args.is_empty(), "an empty arguments delta: {frame}");
                let tool = seen
                    .tools
                    .get_mut(index)
                    .unwrap_or_else(|| panic!("arguments before the call: {frame}"));
                tool.2.push_str(args);
                push_kind(&mut kinds, 6);
            }
        } else {
            panic!("a delta of an unknown shape: {frame}");
        }
    }
    assert!(
        seen.error.is_some() != seen.finish.is_some(),
        "a stream must end with one finish chunk or one error frame: {text:?}"
    );
    seen.signature = mix(&kinds);
    seen
}

/// Consecutive deltas of one kind count once, so longer answers are not new behaviour.
fn push_kind(kinds: &mut Vec<u64>, kind: u64) {
    if kinds.last() != Some(&kind) {
        kinds.push(kind);
    }
}

fn assert_openai_error(value: &Value) {
    let error = value["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {value}"));
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert!(
        ["code", "message", "param", "type"]
            .iter()
            .all(|k| keys.contains(k)),
        "error fields {keys:?}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{value}"
    );
    assert!(error["type"].as_str().is_some_and(|t| !t.is_empty()), "{value}");
    assert_eq!(value.as_object().map(|o| o.len()), Some(1), "{value}");
}

/// The aggregated answer says what the stream said.
fn agree(seen: &Seen, aggregated: &Client, format: Format, mode: OutputMode) {
    let context = format!("{format:?} {mode:?}");
    match aggregated {
        Client::Streamed(_) => unreachable!(),
        Client::Error(status, body) => {
            assert!((400..=599).contains(status), "{context}: status {status}");
            let value: Value =
                serde_json::from_slice(body).unwrap_or_else(|e| panic!("{context}: error body: {e}"));
            assert_openai_error(&value);
            assert_eq!(
                Some(&value["error"]),
                seen.error.as_ref(),
                "{context}: the stream's error differs"
            );
        }
        Client::Answer(body) => {
            assert!(
                seen.error.is_none(),
                "{context}: the stream failed, the answer did not"
            );
            let v: Value =
                serde_json::from_slice(body).unwrap_or_else(|e| panic!("{context}: answer is not JSON: {e}"));
            let choice = &v["choices"][0];
            assert_eq!(
                choice["finish_reason"].as_str(),
                seen.finish.as_deref(),
                "{context}"
            );
            match &seen.usage {
                Some(Value::Null) | None => {
                    assert!(v.get("usage").is_none() || seen.usage.is_none(), "{context}")
                }
                Some(usage) => assert_eq!(&v["usage"], usage, "{context}"),
            }
            if format == Format::CompletionAggregate {
                assert_eq!(v["object"], "text_completion");
                assert_eq!(choice["text"].as_str(), Some(seen.content.as_str()), "{context}");
                return;
            }
            assert_eq!(v["object"], "chat.completion");
            let message = &choice["message"];
            let text = |field: &str| message[field].as_str().unwrap_or_default().to_string();
            assert_eq!(text("content"), seen.content, "{context}");
            assert_eq!(text("reasoning_content"), seen.reasoning_content, "{context}");
            assert_eq!(
                message["reasoning"]["content"][0]["text"]
                    .as_str()
                    .unwrap_or_default(),
                seen.reasoning,
                "{context}"
            );
            let tools: Vec<(String, String, String)> = message["tool_calls"]
                .as_array()
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| {
                            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                            (
                                s(&c["id"]),
                                s(&c["function"]["name"]),
                                s(&c["function"]["arguments"]),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(tools, seen.tools, "{context}");
        }
    }
}

// ------------------------------------------------------------------------------------------
// Event-level mutation

/// SSE records (each with its trailing blank line) of a stream.
fn records(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(2).position(|w| w == b"\n\n") {
        out.push(rest[..at + 2].to_vec());
        rest = &rest[at + 2..];
    }
    if !rest.is_empty() {
        out.push(rest.to_vec());
    }
    out
}

/// Rebuilds a record around a new payload, as the backend frames one.
fn record(payload: &Value) -> Vec<u8> {
    let kind = payload["type"].as_str().unwrap_or("message");
    format!("event: {kind}\ndata: {}\n\n", mutate::to_json(payload)).into_bytes()
}

fn payload(record: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(record).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    serde_json::from_str(line).ok()
}

pub(crate) fn mutate_events(
    rng: &mut Rng,
    data: &[u8],
    corpus: &[Vec<u8>],
    dictionary: &[&str],
) -> Option<Vec<u8>> {
    let mut events = records(data);
    if events.is_empty() {
        return None;
    }
    let i = rng.below(events.len());
    match rng.below(12) {
        0 => {
            events.remove(i);
        }
        1 => {
            let copy = events[i].clone();
            events.insert(i, copy);
        }
        2 => {
            let j = rng.below(events.len());
            events.swap(i, j);
        }
        3 => {
            // An event of another stream.
            let other: &Vec<u8> = rng.pick(corpus);
            let others = records(other);
            if !others.is_empty() {
                let other = rng.pick(&others).clone();
                events.insert(i, other);
            }
        }
        4..=6 => {
            let mut value = payload(&events[i])?;
            mutate::json_value(rng, &mut value, dictionary);
            events[i] = record(&value);
        }
        7 => {
            // Another event type with the same fields.
            let mut value = payload(&events[i])?;
            let kind = rng.pick(EVENT_TYPES).to_string();
            // A payload that is not an object (a mutated one) has no type to change.
            value
                .as_object_mut()?
                .insert("type".to_string(), Value::String(kind));
            events[i] = record(&value);
        }
        8 => {
            let ending: &[u8] = if rng.one_in(2) { b"\r\n" } else { b"\r" };
            let all = rng.one_in(2);
            for (j, event) in events.iter_mut().enumerate() {
                if all || j == i {
                    *event = event
                        .iter()
                        .flat_map(|b| if *b == b'\n' { ending.to_vec() } else { vec![*b] })
                        .collect();
                }
            }
        }
        9 => {
            let extras: &[&str] = &[
                ": keep-alive\n\n",
                "id: 7\nretry: 5\n\n",
                "data: [DONE]\n\n",
                "event: ping\n\n",
            ];
            let extra = *rng.pick(extras);
            events.insert(i, extra.as_bytes().to_vec());
        }
        10 => {
            // One payload as several `data:` lines (the framer joins them with newlines,
            // which JSON allows between tokens).
            let text = String::from_utf8(events[i].clone()).ok()?;
            let line = text.lines().find(|l| l.starts_with("data: "))?.to_string();
            let split = line.replacen(",\"", "\ndata: ,\"", 1 + rng.below(3));
            events[i] = text.replacen(&line, &split, 1).into_bytes();
        }
        _ => {
            // Cut the stream short, maybe mid-event.
            events.truncate(i + 1);
            let last = events.last_mut()?;
            let keep = rng.below(last.len() + 1);
            last.truncate(keep);
        }
    }
    Some(events.concat())
}
