//! Micro-benchmarks of the pure core (native, criterion): `cargo bench --bench core`.
//!
//! What the filter does per request, without Envoy or the Wasm VM:
//! * `chat_request/translate` — a typical chat body (system prompt, a tool round trip, two tools)
//!   into the Codex Responses request; `chat_request/translate_long` — the same after 60 earlier
//!   turns (~50 KB of messages);
//! * `stream/<profile>/{framer,framer+turn,chat_stream,chat_aggregate}` — a Responses SSE stream fed
//!   in 4 KiB chunks: the SSE framer alone, framer + turn interpreter (no output), and the
//!   whole translator through `ChatStreamWriter` (streaming client) and `ChatAggregator`
//!   (non-streaming client). Profiles: `long` (2,000 text deltas of ~4 characters, ~400 KB),
//!   `short` (12 deltas), `tools` (two function calls with argument deltas) — the same shapes
//!   as the mock in bench/mock;
//! * `responses_request/normalise` — a Codex CLI turn body (60 KB of `input`) through the
//!   `/v1/responses` normalisation, and `stream/<profile>/{responses_stream,responses_aggregate}`
//!   — the same streams relayed event by event, or made the final response object;
//! * `stream/fixtures/{chat_stream,chat_aggregate}` — the recorded upstream streams of
//!   tests/fixtures/streams (text, reasoning, tools, and the failure endings) one after the
//!   other, whole: the mix of small answers and error paths rather than one long stream.
//!
//! Throughput (MB/s) is over the input bytes. Criterion reports time per iteration (one whole
//! request or one whole stream); divide by the event count printed at start-up for ns/event.

// A bench is not shipped code: the crate's no-panic lints (unwrap, expect, indexing, print)
// are for the filter, and a broken fixture here should fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use codex_openai_wrapper::core::catalogue::Catalogue;
use codex_openai_wrapper::core::catalogue::settings::ModelSettings;
use codex_openai_wrapper::core::reasoning::{Effort, OutputMode, Summary};
use codex_openai_wrapper::core::translate::request::chat::translate;
use codex_openai_wrapper::core::translate::request::common::{ToolsFormat, TranslateContext};
use codex_openai_wrapper::core::translate::request::responses::{self as responses_request, Upstream};
use codex_openai_wrapper::core::translate::response::chat_aggregate::ChatAggregator;
use codex_openai_wrapper::core::translate::response::chat_stream::ChatStreamWriter;
use codex_openai_wrapper::core::translate::response::events::{Signal, Turn};
use codex_openai_wrapper::core::translate::response::responses::{ResponsesAggregator, ResponsesStream};
use codex_openai_wrapper::core::translate::response::translator::{
    End, MAX_EVENT_BYTES, Pipeline, Translator,
};
use codex_openai_wrapper::core::wire::sse::SseFramer;

const CHUNK: usize = 4096;
const NOW: u64 = 1_766_361_600;

const CHAT_BODY: &str = r#"{"model":"gpt-5.5","messages":[{"role":"system","content":"You are a concise assistant for an engineering team. Answer in plain English."},{"role":"user","content":"What is the weather in Paris this week?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_prev_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris, France\",\"unit\":\"celsius\"}"}}]},{"role":"tool","tool_call_id":"call_prev_1","content":"{\"forecast\":[\"sunny\",\"cloudy\",\"rain\"],\"high_c\":21}"},{"role":"user","content":"Thanks. Now summarise how Envoy filters process streaming responses."}],"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather forecast for a location","parameters":{"type":"object","properties":{"location":{"type":"string","description":"City and country"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer","minimum":1,"maximum":10}},"required":["location"]}}},{"type":"function","function":{"name":"search_docs","description":"Search the engineering documentation","parameters":{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"integer"},"lang":{"type":"string"}},"required":["query"]}}}],"tool_choice":"auto","temperature":0.2,"stream":true,"stream_options":{"include_usage":true}}"#;

const LOREM: &str = "The quick brown fox jumps over the lazy dog while the careful engineer \
measures every microsecond of the proxy, because a gateway that buffers tokens is a gateway \
that users notice. Streams must flow one frame at a time, without stalls, without Nagle, and \
without surprises. ";

// ------------------------------------------------------------------------------------------
// Responses SSE streams (shapes: tests/harness/sse.py; same as bench/mock)

fn frame(out: &mut Vec<u8>, seq: &mut usize, kind: &str, fields: &str) {
    out.extend_from_slice(
        format!("event: {kind}\ndata: {{\"type\":\"{kind}\",\"sequence_number\":{seq},{fields}}}\n\n")
            .as_bytes(),
    );
    *seq += 1;
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn response(status: &str, extra: &str) -> String {
    format!(
        "\"response\":{{\"id\":\"resp_bench_1\",\"object\":\"response\",\"created_at\":1766361600,\"status\":\"{status}\",\"model\":\"gpt-5.5\",\"output\":[]{extra}}}"
    )
}

fn usage(output_tokens: usize) -> String {
    format!(
        ",\"usage\":{{\"input_tokens\":42,\"input_tokens_details\":{{\"cached_tokens\":0}},\"output_tokens\":{output_tokens},\"output_tokens_details\":{{\"reasoning_tokens\":0}},\"total_tokens\":{}}}",
        42 + output_tokens
    )
}

fn text_stream(deltas: usize) -> (Vec<u8>, usize) {
    let chars: Vec<char> = LOREM.chars().collect();
    let pieces: Vec<String> = (0..deltas)
        .map(|i| (0..4).map(|k| chars[(i * 4 + k) % chars.len()]).collect())
        .collect();
    let text: String = pieces.concat();
    let (mut out, mut seq) = (Vec::new(), 0);
    frame(
        &mut out,
        &mut seq,
        "response.created",
        &response("in_progress", ",\"usage\":null"),
    );
    frame(
        &mut out,
        &mut seq,
        "response.in_progress",
        &response("in_progress", ",\"usage\":null"),
    );
    frame(
        &mut out,
        &mut seq,
        "response.output_item.added",
        "\"output_index\":0,\"item\":{\"id\":\"msg_bench_1\",\"type\":\"message\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}",
    );
    frame(
        &mut out,
        &mut seq,
        "response.content_part.added",
        "\"item_id\":\"msg_bench_1\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"annotations\":[],\"text\":\"\"}",
    );
    for piece in &pieces {
        frame(
            &mut out,
            &mut seq,
            "response.output_text.delta",
            &format!(
                "\"item_id\":\"msg_bench_1\",\"output_index\":0,\"content_index\":0,\"delta\":{},\"logprobs\":[]",
                quoted(piece)
            ),
        );
    }
    let text_q = quoted(&text);
    frame(
        &mut out,
        &mut seq,
        "response.output_text.done",
        &format!("\"item_id\":\"msg_bench_1\",\"output_index\":0,\"content_index\":0,\"text\":{text_q}"),
    );
    frame(
        &mut out,
        &mut seq,
        "response.output_item.done",
        &format!(
            "\"output_index\":0,\"item\":{{\"id\":\"msg_bench_1\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{{\"type\":\"output_text\",\"annotations\":[],\"text\":{text_q}}}]}}"
        ),
    );
    frame(
        &mut out,
        &mut seq,
        "response.completed",
        &response("completed", &usage(deltas)),
    );
    (out, seq)
}

fn tools_stream() -> (Vec<u8>, usize) {
    let calls = [
        (
            "get_weather",
            r#"{"location":"Paris, France","unit":"celsius","days":3}"#,
        ),
        (
            "search_docs",
            r#"{"query":"envoy proxy-wasm streaming","limit":5,"lang":"en"}"#,
        ),
    ];
    let (mut out, mut seq) = (Vec::new(), 0);
    frame(
        &mut out,
        &mut seq,
        "response.created",
        &response("in_progress", ",\"usage\":null"),
    );
    frame(
        &mut out,
        &mut seq,
        "response.in_progress",
        &response("in_progress", ",\"usage\":null"),
    );
    for (index, (name, args)) in calls.iter().enumerate() {
        let (item, call) = (
            format!("fc_bench_{}", index + 1),
            format!("call_bench_{}", index + 1),
        );
        frame(
            &mut out,
            &mut seq,
            "response.output_item.added",
            &format!(
                "\"output_index\":{index},\"item\":{{\"id\":\"{item}\",\"type\":\"function_call\",\"status\":\"in_progress\",\"call_id\":\"{call}\",\"name\":\"{name}\",\"arguments\":\"\"}}"
            ),
        );
        let chars: Vec<char> = args.chars().collect();
        for piece in chars.chunks(chars.len().div_ceil(12)) {
            let piece: String = piece.iter().collect();
            frame(
                &mut out,
                &mut seq,
                "response.function_call_arguments.delta",
                &format!(
                    "\"item_id\":\"{item}\",\"output_index\":{index},\"delta\":{}",
                    quoted(&piece)
                ),
            );
        }
        frame(
            &mut out,
            &mut seq,
            "response.function_call_arguments.done",
            &format!(
                "\"item_id\":\"{item}\",\"output_index\":{index},\"arguments\":{}",
                quoted(args)
            ),
        );
        frame(
            &mut out,
            &mut seq,
            "response.output_item.done",
            &format!(
                "\"output_index\":{index},\"item\":{{\"id\":\"{item}\",\"type\":\"function_call\",\"status\":\"completed\",\"call_id\":\"{call}\",\"name\":\"{name}\",\"arguments\":{}}}",
                quoted(args)
            ),
        );
    }
    frame(
        &mut out,
        &mut seq,
        "response.completed",
        &response("completed", &usage(40)),
    );
    (out, seq)
}

/// The recorded streams the unit and end-to-end tests play (tests/fixtures/README.md).
const FIXTURES: &[(&str, &[u8])] = &[
    ("text", include_bytes!("../tests/fixtures/streams/text.sse")),
    (
        "reasoning",
        include_bytes!("../tests/fixtures/streams/reasoning.sse"),
    ),
    (
        "parallel_tools",
        include_bytes!("../tests/fixtures/streams/parallel_tools.sse"),
    ),
    (
        "incomplete",
        include_bytes!("../tests/fixtures/streams/incomplete.sse"),
    ),
    ("failed", include_bytes!("../tests/fixtures/streams/failed.sse")),
    (
        "usage_limit",
        include_bytes!("../tests/fixtures/streams/usage_limit.sse"),
    ),
    ("dropped", include_bytes!("../tests/fixtures/streams/dropped.sse")),
];

// ------------------------------------------------------------------------------------------
// Drivers

fn stream_through_writer(stream: &[u8]) -> usize {
    let mut t = Translator::new(OutputMode::OpenAi, ChatStreamWriter::new("gpt-5.5", NOW, true));
    let mut forwarded = 0;
    for chunk in stream.chunks(CHUNK) {
        forwarded += black_box(t.push(chunk, NOW)).len();
    }
    match t.finish(NOW) {
        End::Tail(tail) => forwarded + black_box(tail).len(),
        other => panic!("streaming ended with {other:?}"),
    }
}

fn stream_through_aggregator(stream: &[u8]) -> usize {
    let mut t = Translator::new(OutputMode::OpenAi, ChatAggregator::new("gpt-5.5", NOW));
    for chunk in stream.chunks(CHUNK) {
        black_box(t.push(chunk, NOW));
    }
    match t.finish(NOW) {
        End::Body(body) => black_box(body).len(),
        other => panic!("aggregation ended with {other:?}"),
    }
}

/// The answer limit of the default `MAX_REQUEST_BODY_BYTES`.
const LIMIT: usize = 16 * 1024 * 1024;

fn stream_through_responses(stream: &[u8]) -> usize {
    let mut p = ResponsesStream::new(LIMIT);
    let mut forwarded = 0;
    for chunk in stream.chunks(CHUNK) {
        forwarded += black_box(p.push(chunk, NOW)).len();
    }
    match p.finish(NOW) {
        End::Tail(tail) => forwarded + black_box(tail).len(),
        other => panic!("streaming ended with {other:?}"),
    }
}

fn stream_through_responses_aggregate(stream: &[u8]) -> usize {
    let mut p = ResponsesAggregator::new(LIMIT);
    for chunk in stream.chunks(CHUNK) {
        black_box(p.push(chunk, NOW));
    }
    match p.finish(NOW) {
        End::Body(body) => black_box(body).len(),
        other => panic!("aggregation ended with {other:?}"),
    }
}

/// Every fixture through the streaming writer; each ends with `[DONE]`, errors included.
fn fixtures_through_writer() -> usize {
    FIXTURES
        .iter()
        .map(|(_, stream)| stream_through_writer(stream))
        .sum()
}

/// Every fixture aggregated: an answer body, or the error a non-streaming client gets.
fn fixtures_through_aggregator() -> usize {
    let mut answered = 0;
    for (_, stream) in FIXTURES {
        let mut t = Translator::new(OutputMode::OpenAi, ChatAggregator::new("gpt-5.5", NOW));
        for chunk in stream.chunks(CHUNK) {
            black_box(t.push(chunk, NOW));
        }
        answered += match t.finish(NOW) {
            End::Body(body) => black_box(body).len(),
            End::Error(error) => usize::from(black_box(error).status),
            End::Tail(_) => panic!("aggregation ended with a stream tail"),
        };
    }
    answered
}

fn framer_only(stream: &[u8]) -> usize {
    let mut framer = SseFramer::new(MAX_EVENT_BYTES);
    let mut events = 0;
    for chunk in stream.chunks(CHUNK) {
        framer
            .push(chunk, |data| {
                black_box(data);
                events += 1;
            })
            .unwrap();
    }
    framer.finish(|_| events += 1);
    events
}

fn framer_and_turn(stream: &[u8]) -> usize {
    let mut framer = SseFramer::new(MAX_EVENT_BYTES);
    let mut turn = Turn::default();
    let mut signals = 0;
    let mut emit = |signal: Signal<'_>| {
        black_box(&signal);
        signals += 1;
    };
    for chunk in stream.chunks(CHUNK) {
        framer
            .push(chunk, |data| turn.event(data, NOW, &mut emit))
            .unwrap();
    }
    framer.finish(|data| turn.event(data, NOW, &mut emit));
    turn.end_of_stream(&mut emit);
    signals
}

fn bench_request(c: &mut Criterion) {
    let models = ModelSettings::default();
    let catalogue = Catalogue::builtin();
    let ctx = TranslateContext {
        catalogue: &catalogue,
        models: &models,
        lite_shape: true,
        default_effort: Some(Effort::Medium),
        default_summary: Summary::Auto,
        tools_format: ToolsFormat::Flat,
        session_hint: None,
        base_instructions: None,
        codex_instructions: None,
    };
    let body = CHAT_BODY.as_bytes();
    let translated = translate(body, &ctx).unwrap();
    println!(
        "chat_request: {} B chat body -> {} B Responses body",
        body.len(),
        translated.body.len()
    );
    let mut group = c.benchmark_group("chat_request");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("translate", |b| {
        b.iter(|| translate(black_box(body), &ctx).unwrap().body.len())
    });
    // A long conversation: 60 turns of a user question (text parts), the assistant's answer
    // and a tool round trip, the shape agents send.
    let turn = r#"{"role":"user","content":[{"type":"text","text":"Look at the Envoy logs for the last deploy and tell me which filter added the most latency, with the numbers."}]},{"role":"assistant","content":null,"tool_calls":[{"id":"call_logs","type":"function","function":{"name":"search_docs","arguments":"{\"query\":\"envoy filter latency\",\"limit\":5}"}}]},{"role":"tool","tool_call_id":"call_logs","content":"{\"hits\":[{\"title\":\"Filter chain timing\",\"snippet\":\"The Wasm filter adds 140 us at p50; the credentials filter 20 us.\"}]}"},{"role":"assistant","content":"The Wasm filter added the most: about 140 \u00b5s at p50, against 20 \u00b5s for the credentials filter."}"#;
    let long = CHAT_BODY.replacen(
        r#""messages":["#,
        &format!(r#""messages":[{},"#, vec![turn; 60].join(",")),
        1,
    );
    println!("chat_request: {} B long chat body", long.len());
    group.throughput(Throughput::Bytes(long.len() as u64));
    group.bench_function("translate_long", |b| {
        b.iter(|| translate(black_box(long.as_bytes()), &ctx).unwrap().body.len())
    });
    group.finish();

    // A Codex CLI turn: a long history in `input`, the rest as the CLI sends it.
    let item = r#"{"type":"message","role":"user","content":[{"type":"input_text","text":"Explain how the filter streams the answer, with examples of each event."}]}"#;
    let input = vec![item; 400].join(",");
    let codex = format!(
        r#"{{"model":"gpt-5.5","stream":true,"input":[{input}],"tool_choice":"auto","parallel_tool_calls":false,"reasoning":{{"effort":"low","context":"all_turns"}},"store":false,"include":["reasoning.encrypted_content"],"prompt_cache_key":"01a230d8-5c2a-7e83-91b9-ba0df6da9322","text":{{"verbosity":"low"}},"client_metadata":{{"turn_id":"t1"}}}}"#
    );
    let upstream = Upstream::Chatgpt { lite_shape: true };
    let normalised = responses_request::translate(codex.as_bytes(), &ctx, upstream).unwrap();
    println!(
        "responses_request: {} B Codex CLI body -> {} B upstream body",
        codex.len(),
        normalised.body.len()
    );
    let mut group = c.benchmark_group("responses_request");
    group.throughput(Throughput::Bytes(codex.len() as u64));
    group.bench_function("normalise", |b| {
        b.iter(|| {
            responses_request::translate(black_box(codex.as_bytes()), &ctx, upstream)
                .unwrap()
                .body
                .len()
        })
    });
    group.finish();
}

fn bench_streams(c: &mut Criterion) {
    let profiles = [
        ("long", text_stream(2000)),
        ("short", text_stream(12)),
        ("tools", tools_stream()),
    ];
    for (name, (stream, events)) in &profiles {
        // Same answer both ways, checked once before timing.
        let streamed = stream_through_writer(stream);
        let aggregated = stream_through_aggregator(stream);
        println!(
            "stream/{name}: {events} events, {} B of SSE in {} chunks of {CHUNK} B -> {streamed} B streamed, {aggregated} B aggregated",
            stream.len(),
            stream.len().div_ceil(CHUNK)
        );
        let mut group = c.benchmark_group(format!("stream/{name}"));
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_function("framer", |b| b.iter(|| framer_only(black_box(stream))));
        group.bench_function("framer+turn", |b| b.iter(|| framer_and_turn(black_box(stream))));
        group.bench_function("chat_stream", |b| {
            b.iter(|| stream_through_writer(black_box(stream)))
        });
        group.bench_function("chat_aggregate", |b| {
            b.iter(|| stream_through_aggregator(black_box(stream)))
        });
        group.bench_function("responses_stream", |b| {
            b.iter(|| stream_through_responses(black_box(stream)))
        });
        group.bench_function("responses_aggregate", |b| {
            b.iter(|| stream_through_responses_aggregate(black_box(stream)))
        });
        group.finish();
    }
    bench_fixtures(c);
}

fn bench_fixtures(c: &mut Criterion) {
    let bytes: usize = FIXTURES.iter().map(|(_, stream)| stream.len()).sum();
    for (name, stream) in FIXTURES {
        let mut t = Translator::new(OutputMode::OpenAi, ChatStreamWriter::new("gpt-5.5", NOW, true));
        let mut out = t.push(stream, NOW).to_vec();
        if let End::Tail(tail) = t.finish(NOW) {
            out.extend_from_slice(tail);
        }
        assert!(
            out.ends_with(b"data: [DONE]\n\n"),
            "fixture {name} did not end with [DONE]"
        );
    }
    println!(
        "stream/fixtures: {} recorded streams, {bytes} B of SSE -> {} B streamed",
        FIXTURES.len(),
        fixtures_through_writer()
    );
    let mut group = c.benchmark_group("stream/fixtures");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("chat_stream", |b| b.iter(fixtures_through_writer));
    group.bench_function("chat_aggregate", |b| b.iter(fixtures_through_aggregator));
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_request, bench_streams
}
criterion_main!(benches);
