//! The Responses pass-through: the request normalisation (`responses_request`) and the two
//! answers built from the backend's stream (`responses_stream`).
//!
//! `responses_request`, whatever the client sends:
//! * never a panic, and the same body always gives the same bytes;
//! * for the ChatGPT backend, `Ok` is a JSON object with `stream: true`, `store: false`,
//!   `reasoning.encrypted_content` once in `include`, no parameter the backend rejects, a list
//!   `input` that is the client's own bytes when it sent a list, the resolved model and the
//!   session id as `prompt_cache_key`;
//! * for an API-key upstream, `Ok` is the body unchanged;
//! * `Err` is a 4xx with an OpenAI error body.
//!
//! `responses_stream`, whatever the backend sends:
//! * the same client bytes and the same answer at every cut into chunks;
//! * the streamed bytes are whole SSE records of `event:` and `data:` lines only;
//! * the aggregated answer is a JSON object, or an OpenAI error with a 4xx/5xx status.

use std::collections::BTreeMap;

use codex_openai_wrapper::core::reasoning::{Effort, Summary};
use codex_openai_wrapper::core::translate::request::common::{ToolsFormat, TranslateContext};
use codex_openai_wrapper::core::translate::request::responses::{DROPPED, Upstream, translate};
use codex_openai_wrapper::core::translate::response::responses::{ResponsesAggregator, ResponsesStream};
use codex_openai_wrapper::core::translate::response::translator::{End, Pipeline};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::engine::{Target, files_in, fnv, mix, repo_root};
use crate::targets::request::rejected;
use crate::targets::sse_stream;
use crate::targets::{catalogue, models};

pub const REQUEST: Target = Target {
    name: "responses_request",
    seeds: Vec::new,
    dictionary: REQUEST_DICTIONARY,
    check: check_request,
    mutate: None,
    max_len: 64 * 1024,
};

pub const STREAM: Target = Target {
    name: "responses_stream",
    seeds: stream_seeds,
    dictionary: sse_stream::DICTIONARY,
    check: check_stream,
    mutate: Some(sse_stream::mutate_events),
    max_len: 256 * 1024,
};

const REQUEST_DICTIONARY: &[&str] = &[
    r#""model":"#,
    r#""input":"#,
    r#""instructions":"#,
    r#""reasoning":{"effort":"high","summary":"detailed","context":"all_turns"}"#,
    r#""include":["reasoning.encrypted_content","message.output_text.logprobs"]"#,
    r#""store":true"#,
    r#""stream":true"#,
    r#""stream":false"#,
    r#""previous_response_id":"resp_1""#,
    r#""conversation":"#,
    r#""background":true"#,
    r#""prompt_cache_key":"#,
    r#""max_output_tokens":5"#,
    r#""temperature":1"#,
    r#""metadata":{}"#,
    r#""tools":[{"type":"function","name":"f","parameters":{}}]"#,
    r#""client_metadata":{"turn_id":"t"}"#,
    r#"{"type":"message","role":"user","content":"hi"}"#,
    r#"{"type":"function_call_output","call_id":"c","output":"x"}"#,
    r#"{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gA"}"#,
    "\\u00e9",
    "\\ud83c\\udf0d",
    "gpt-5.5",
    "gpt-5-codex-high",
    "gpt-6.1-sol",
    "ultra",
    "none",
];

fn context(hash: u64) -> TranslateContext<'static> {
    let bit = |n: u32| hash >> n & 1 == 1;
    TranslateContext {
        default_effort: bit(0).then_some(Effort::High),
        default_summary: if bit(1) { Summary::None } else { Summary::Auto },
        tools_format: ToolsFormat::Flat,
        session_hint: bit(2).then_some("session-from-header"),
        base_instructions: bit(3).then_some("Base instructions."),
        codex_instructions: None,
        ..TranslateContext::defaults(catalogue(), models())
    }
}

fn check_request(data: &[u8]) -> u64 {
    let hash = fnv(data);
    let ctx = context(hash);
    let mut signature = Vec::new();
    for upstream in [
        Upstream::Chatgpt { lite_shape: false },
        Upstream::Chatgpt { lite_shape: true },
        Upstream::ApiKey,
    ] {
        let result = translate(data, &ctx, upstream);
        let again = translate(data, &ctx, upstream);
        match (&result, &again) {
            (Ok(a), Ok(b)) => assert_eq!(a.body, b.body, "the same body normalised twice differs"),
            (Err(a), Err(b)) => assert_eq!(a, b, "the same body failed twice differently"),
            _ => panic!("the same body normalised once and failed once"),
        }
        signature.push(match result {
            Ok(t) if upstream == Upstream::ApiKey => {
                assert_eq!(t.body, data, "an API-key upstream got another body");
                1
            }
            Ok(t) => normalised(data, &t.body, &t.session_id, &t.model),
            Err(error) => rejected(&error),
        });
    }
    mix(&signature)
}

fn normalised(client: &[u8], body: &[u8], session: &str, model: &str) -> u64 {
    let fields: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("the upstream body is not a JSON object: {e}"));
    let value = |name: &str| -> Value {
        let raw = fields.get(name).unwrap_or_else(|| panic!("no {name:?} upstream"));
        serde_json::from_str(raw.get()).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    assert_eq!(value("stream"), true);
    assert_eq!(value("store"), false);
    let include = value("include");
    let include = include.as_array().unwrap_or_else(|| panic!("include: {include}"));
    assert_eq!(
        include
            .iter()
            .filter(|i| *i == "reasoning.encrypted_content")
            .count(),
        1,
        "{include:?}"
    );
    for name in DROPPED {
        assert!(!fields.contains_key(*name), "{name} reached the backend");
    }
    assert_eq!(value("model"), model);
    assert_eq!(value("prompt_cache_key"), session);
    let reasoning: BTreeMap<String, Box<RawValue>> = serde_json::from_str(fields["reasoning"].get())
        .unwrap_or_else(|e| panic!("reasoning is not an object: {e}"));
    let effort = reasoning.get("effort").map(|e| e.get());
    assert!(
        effort.is_some_and(|e| e.starts_with('"')),
        "reasoning.effort {effort:?}"
    );
    let input = fields["input"].get();
    assert!(input.starts_with('['), "input {input}");
    // A list the client sent goes up as the client wrote it (duplicates: the last one).
    let sent: Option<BTreeMap<String, Box<RawValue>>> = serde_json::from_slice(client).ok();
    if let Some(raw) = sent
        .as_ref()
        .and_then(|s| s.get("input"))
        .filter(|raw| raw.get().starts_with('['))
    {
        assert_eq!(raw.get(), input, "the client's input was changed");
    }
    let mut keys: Vec<u64> = fields.keys().map(|k| fnv(k.as_bytes())).collect();
    keys.sort_unstable();
    mix(&keys)
}

// ------------------------------------------------------------------------------------------
// Streams

const LIMIT: usize = 1 << 20;

fn stream_seeds() -> Vec<Vec<u8>> {
    files_in(&repo_root().join("tests").join("fixtures").join("streams"))
}

#[derive(Debug, PartialEq)]
enum Client {
    Streamed(Vec<u8>),
    Answer(Vec<u8>),
    Error(u16, Vec<u8>),
}

fn drive(pipeline: &mut dyn Pipeline, chunks: &[&[u8]], streams: bool) -> Client {
    let mut out = Vec::new();
    for chunk in chunks {
        let now = pipeline.push(chunk, 1);
        assert!(
            streams || now.is_empty(),
            "an aggregator forwarded bytes before the end"
        );
        out.extend_from_slice(now);
    }
    match (pipeline.finish(1), streams) {
        (End::Tail(tail), true) => {
            out.extend_from_slice(tail);
            Client::Streamed(out)
        }
        (End::Body(body), false) => Client::Answer(body.to_vec()),
        (End::Error(error), false) => Client::Error(error.status, error.body()),
        (other, _) => panic!("the pipeline ended with {other:?}"),
    }
}

fn check_stream(data: &[u8]) -> u64 {
    let plans = sse_stream::split_plans(data.len(), fnv(data));
    let streamed = drive(&mut ResponsesStream::new(LIMIT), &[data], true);
    let answer = drive(&mut ResponsesAggregator::new(LIMIT), &[data], false);
    for plan in &plans {
        let chunks = sse_stream::cut(data, plan);
        assert_eq!(
            drive(&mut ResponsesStream::new(LIMIT), &chunks, true),
            streamed,
            "a different stream when cut at {plan:?}"
        );
        assert_eq!(
            drive(&mut ResponsesAggregator::new(LIMIT), &chunks, false),
            answer,
            "a different answer when cut at {plan:?}"
        );
    }
    let Client::Streamed(body) = &streamed else {
        unreachable!()
    };
    let mut signature = vec![records(body)];
    signature.push(match &answer {
        Client::Answer(body) => {
            // Raw: the backend's numbers (`1e400`) need not fit serde_json's values.
            let object: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("the answer is not a JSON object: {e}"));
            object.len().min(16) as u64
        }
        Client::Error(status, body) => {
            assert!((400..600).contains(status), "error status {status}");
            let value: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("error body: {e}"));
            assert!(value["error"]["message"].is_string(), "{value}");
            u64::from(*status)
        }
        Client::Streamed(_) => unreachable!(),
    });
    mix(&signature)
}

/// Checks the streamed body's framing and returns a signature of its event types.
fn records(body: &[u8]) -> u64 {
    assert!(
        body.is_empty() || body.ends_with(b"\n\n"),
        "the stream does not end a record"
    );
    let mut kinds = Vec::new();
    for record in body
        .split(|b| *b == b'\n')
        .collect::<Vec<_>>()
        .split(|line| line.is_empty())
    {
        if record.is_empty() {
            continue;
        }
        for line in record {
            assert!(
                line.starts_with(b"event: ") || line.starts_with(b"data: "),
                "a line that is neither event nor data: {:?}",
                String::from_utf8_lossy(line)
            );
        }
        if let Some(event) = record.iter().find_map(|l| l.strip_prefix(b"event: ")) {
            kinds.push(fnv(event));
        }
    }
    kinds.dedup();
    mix(&kinds)
}
