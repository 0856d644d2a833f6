//! Test data shared by the core's unit tests: the canonical upstream streams kept as files in
//! `tests/fixtures/streams/` (the end-to-end mock, the fuzz corpus and the benchmark play the
//! same files), one builder for the odd streams a test needs beyond them, and the model
//! catalogues the request rules are tested against.

use std::sync::OnceLock;

use serde_json::Value;

use crate::core::catalogue::Catalogue;
use crate::core::catalogue::settings::ModelSettings;

/// The built-in catalogue (slimmed from the one Codex CLI 0.169.0 bundles), parsed once.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let cat = Catalogue::builtin();
        assert!(!cat.entries.is_empty(), "the built-in catalogue did not parse");
        cat
    })
}

/// No `EXPOSE_MODELS`, no `DEBUG_MODEL`.
pub fn settings() -> &'static ModelSettings {
    static SETTINGS: OnceLock<ModelSettings> = OnceLock::new();
    SETTINGS.get_or_init(ModelSettings::default)
}

/// A catalogue of odd entries the real one does not have (yet): gaps between efforts, no
/// effort list, no parallel tool calls, a catalogue default tier, no verbosity.
pub fn odd_catalogue() -> Catalogue {
    let body = br#"{"models":[
      {"slug":"gapped","visibility":"list","priority":1,"use_responses_lite":false,
       "supported_reasoning_levels":[{"effort":"low"},{"effort":"high"}],
       "supports_parallel_tool_calls":false,"support_verbosity":false,"default_verbosity":"high",
       "service_tiers":[{"id":"priority"},{"id":"flex"}],"default_service_tier":"flex"},
      {"slug":"bare","visibility":"hide","priority":2}
    ]}"#;
    Catalogue::parse(body).unwrap_or_else(|e| panic!("{e}"))
}

/// One recorded upstream body, exactly as the backend sends it.
pub struct Fixture {
    pub name: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/streams/",
                $name,
                ".sse"
            )),
        }
    };
}

/// Every fixture (tests/fixtures/README.md says what each one covers).
pub const FIXTURES: &[Fixture] = &[
    fixture!("text"),
    fixture!("reasoning"),
    fixture!("parallel_tools"),
    fixture!("incomplete"),
    fixture!("failed"),
    fixture!("usage_limit"),
    fixture!("policy_refusal"),
    fixture!("policy_error"),
    fixture!("dropped"),
];

pub fn fixture(name: &str) -> &'static [u8] {
    match FIXTURES.iter().find(|f| f.name == name) {
        Some(f) => f.bytes,
        None => panic!("no fixture {name:?}"),
    }
}

/// The `data:` payloads of a stream, read the simplest way (one-line payloads, as the
/// backend writes them), including a last record the connection cut short.
pub fn payloads(stream: &[u8]) -> Vec<&[u8]> {
    stream
        .split(|b| *b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data: "))
        .collect()
}

/// A fixture with every line ending turned into CRLF (the framer must not care).
pub fn crlf(stream: &[u8]) -> Vec<u8> {
    String::from_utf8(stream.to_vec())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes()
}

// ------------------------------------------------------------------------------------------
// Builder: events as JSON values, framed the way the backend frames them.

/// `event: <type>`, then the payload with `type` and `sequence_number` first as the backend
/// writes them (the interpreter skips ignored events by that leading `type`), blank line.
pub fn frame(event: &Value, sequence: usize) -> Vec<u8> {
    let kind = event["type"].as_str().unwrap();
    let mut fields = event.as_object().cloned().unwrap_or_default();
    fields.remove("type");
    let sequence = fields
        .remove("sequence_number")
        .unwrap_or_else(|| Value::from(sequence));
    let mut data = format!("{{\"type\":{},\"sequence_number\":{sequence}", Value::from(kind));
    for (name, value) in &fields {
        data.push_str(&format!(",{}:{value}", Value::from(name.as_str())));
    }
    format!("event: {kind}\ndata: {data}}}\n\n").into_bytes()
}

/// A whole stream; events without a `sequence_number` are numbered in order.
pub fn sse(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .enumerate()
        .flat_map(|(sequence, event)| frame(event, sequence))
        .collect()
}

pub const RESPONSE_ID: &str = "resp_0a1b";
pub const CREATED_AT: u64 = 1_766_361_600;

fn response(status: &str) -> Value {
    serde_json::json!({"id": RESPONSE_ID, "object": "response", "created_at": CREATED_AT,
                       "status": status, "model": "gpt-5.5", "output": []})
}

pub fn created() -> Value {
    serde_json::json!({"type": "response.created", "response": response("in_progress")})
}

pub fn completed(usage: Value) -> Value {
    let mut response = response("completed");
    response["usage"] = usage;
    serde_json::json!({"type": "response.completed", "response": response})
}

pub fn text_delta(text: &str) -> Value {
    serde_json::json!({"type": "response.output_text.delta", "item_id": "msg_01", "output_index": 0,
                       "content_index": 0, "delta": text})
}

pub fn reasoning_text_delta(text: &str) -> Value {
    serde_json::json!({"type": "response.reasoning_text.delta", "item_id": "rs_01", "output_index": 0,
                       "content_index": 0, "delta": text})
}

/// A function call item as `response.output_item.added` (`arguments` empty) or
/// `response.output_item.done` (`arguments` whole).
pub fn function_call(event: &str, item_id: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    serde_json::json!({"type": event, "item": {"id": item_id, "type": "function_call", "call_id": call_id,
                                               "name": name, "arguments": arguments}})
}

pub fn arguments_delta(item_id: &str, delta: &str) -> Value {
    serde_json::json!({"type": "response.function_call_arguments.delta", "item_id": item_id, "delta": delta})
}

pub fn arguments_done(item_id: &str, arguments: &str) -> Value {
    serde_json::json!({"type": "response.function_call_arguments.done", "item_id": item_id,
                       "arguments": arguments})
}

/// A plain answer: `response.created`, one text delta per piece, `response.completed` with
/// usage 7 (2 cached) + 3 (1 reasoning).
pub fn text_stream(deltas: &[&str]) -> Vec<u8> {
    let mut events = vec![created()];
    events.extend(deltas.iter().map(|d| text_delta(d)));
    events.push(completed(serde_json::json!({
        "input_tokens": 7, "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 10})));
    sse(&events)
}

/// `response.failed` with this `error` object.
pub fn failed(error: Value) -> Value {
    let mut response = response("failed");
    response["error"] = error;
    serde_json::json!({"type": "response.failed", "response": response})
}

#[test]
fn the_builder_frames_like_the_fixtures() {
    // The builder's shapes are the fixtures' shapes: `text.sse` rebuilt event by event.
    let text = fixture("text");
    let rebuilt: Vec<u8> = payloads(text)
        .iter()
        .enumerate()
        .flat_map(|(sequence, data)| frame(&serde_json::from_slice(data).unwrap(), sequence))
        .collect();
    let sorted_keys = |stream: &[u8]| -> Vec<Value> {
        payloads(stream)
            .iter()
            .map(|d| serde_json::from_slice(d).unwrap())
            .collect()
    };
    assert_eq!(sorted_keys(&rebuilt), sorted_keys(text));
    for data in payloads(&rebuilt) {
        assert!(
            data.starts_with(b"{\"type\":\"response."),
            "{}",
            String::from_utf8_lossy(data)
        );
    }
    assert_eq!(payloads(&sse(&[created(), text_delta("x")])).len(), 2);
    for f in FIXTURES {
        assert!(!payloads(f.bytes).is_empty(), "{}", f.name);
    }
}
