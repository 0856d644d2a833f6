use super::*;
use crate::core::test_support::{self as ts, FIXTURES, created, crlf, fixture, sse};
use crate::core::translate::response::chat_aggregate::ChatAggregator;
use crate::core::translate::response::chat_stream::MAX_UPSTREAM_ID_BYTES;
use crate::core::translate::response::completions::{CompletionAggregator, CompletionStreamWriter};
use serde_json::{Value, json};

/// Reasoning in two summary parts, text with multi-byte characters, usage.
fn reasoning_stream() -> Vec<u8> {
    fixture("reasoning").to_vec()
}

/// Two tool calls whose argument deltas interleave and are split mid-token.
fn tool_stream() -> Vec<u8> {
    fixture("parallel_tools").to_vec()
}

fn stream_translator(mode: OutputMode, include_usage: bool) -> Translator<ChatStreamWriter> {
    Translator::new(mode, ChatStreamWriter::new("gpt-5.5", 1, include_usage))
}

/// The whole client body for an upstream body cut into the given chunks.
fn run_stream(mode: OutputMode, include_usage: bool, chunks: &[&[u8]]) -> String {
    let mut t = stream_translator(mode, include_usage);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(t.push(chunk, 0));
    }
    match t.finish(0) {
        End::Tail(tail) => out.extend_from_slice(tail),
        other => panic!("{other:?}"),
    }
    String::from_utf8(out).unwrap()
}

fn frames(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let data = f
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad frame {f:?}"));
            if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect()
}

/// Only the deltas and finish reasons, so expectations stay readable.
fn deltas(body: &str) -> Vec<Value> {
    frames(body)
        .into_iter()
        .map(|f| match f.get("choices").and_then(|c| c.get(0)) {
            Some(choice) if !choice["finish_reason"].is_null() => {
                json!({"finish": choice["finish_reason"]})
            }
            Some(choice) => choice["delta"].clone(),
            None if f.get("usage").is_some() => json!({"usage": f["usage"]["total_tokens"]}),
            None => f,
        })
        .collect()
}

#[test]
fn openai_mode_stream_is_exact() {
    let body = run_stream(OutputMode::OpenAi, true, &[&reasoning_stream()]);
    let all = frames(&body);
    assert_eq!(
        all[0],
        json!({"id": "chatcmpl-0a1b", "object": "chat.completion.chunk", "created": 1766361600, "model": "gpt-5.5",
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]})
    );
    assert_eq!(
        deltas(&body),
        vec![
            json!({"role": "assistant", "content": ""}),
            json!({"reasoning_content": "Think A"}),
            json!({"reasoning_content": "\n"}),
            json!({"reasoning_content": "Think B"}),
            json!({"content": "Héllo 🌍"}),
            json!({"content": " 世界"}),
            json!({"finish": "stop"}),
            json!({"usage": 15}),
            json!("[DONE]"),
        ]
    );
    let usage_frame = &all[all.len() - 2];
    assert_eq!(usage_frame["choices"], json!([]));
    assert_eq!(
        usage_frame["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
               "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}})
    );
}

#[test]
fn every_output_mode() {
    let stream = reasoning_stream();
    let cases: Vec<(OutputMode, Vec<Value>)> = vec![
        (
            OutputMode::Tagged,
            vec![
                json!({"content": "<think>"}),
                json!({"content": "Think A"}),
                json!({"content": "\n"}),
                json!({"content": "Think B"}),
                json!({"content": "</think>"}),
            ],
        ),
        (
            OutputMode::R1,
            vec![
                json!({"reasoning_content": "Think A"}),
                json!({"reasoning_content": "Think B"}),
            ],
        ),
        (
            OutputMode::O3,
            vec![
                json!({"reasoning": {"content": [{"type": "text", "text": "Think A"}]}}),
                json!({"reasoning": {"content": [{"type": "text", "text": "\n"}]}}),
                json!({"reasoning": {"content": [{"type": "text", "text": "Think B"}]}}),
            ],
        ),
        (OutputMode::Hidden, vec![]),
    ];
    for (mode, reasoning) in cases {
        let mut expected = vec![json!({"role": "assistant", "content": ""})];
        expected.extend(reasoning);
        expected.extend([
            json!({"content": "Héllo 🌍"}),
            json!({"content": " 世界"}),
            json!({"finish": "stop"}),
            json!("[DONE]"),
        ]);
        assert_eq!(deltas(&run_stream(mode, false, &[&stream])), expected, "{mode:?}");
    }
}

#[test]
fn tagged_mode_reopens_a_block_for_reasoning_after_text() {
    let stream = sse(&[
        created(),
        ts::text_delta("A"),
        ts::reasoning_text_delta("r"),
        ts::text_delta("B"),
        ts::completed(json!(null)),
    ]);
    let contents: Vec<Value> = deltas(&run_stream(OutputMode::Tagged, false, &[&stream]));
    assert_eq!(
        contents,
        vec![
            json!({"role": "assistant", "content": ""}),
            json!({"content": "A"}),
            json!({"content": "<think>"}),
            json!({"content": "r"}),
            json!({"content": "</think>"}),
            json!({"content": "B"}),
            json!({"finish": "stop"}),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn tool_calls_stream_incrementally_with_one_finish() {
    let body = run_stream(OutputMode::OpenAi, false, &[&tool_stream()]);
    assert_eq!(
        deltas(&body),
        vec![
            json!({"role": "assistant", "content": ""}),
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]}),
            json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\":\"CET\"}"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Paris\"}"}}]}),
            json!({"finish": "tool_calls"}),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn failures_become_an_error_frame_then_done() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            fixture("failed").to_vec(),
            "Our servers are currently overloaded.",
        ),
        (fixture("usage_limit").to_vec(), "You've hit your usage limit."),
        (
            fixture("policy_refusal").to_vec(),
            "This request was refused under the usage policy.",
        ),
        (
            fixture("policy_error").to_vec(),
            "This request was refused under the usage policy.",
        ),
        (
            fixture("dropped").to_vec(),
            "closed the stream before the response was complete",
        ),
        (
            sse(&[created(), ts::text_delta("par")]),
            "closed the stream before the response was complete",
        ),
        (b"garbage without framing".to_vec(), "closed the stream before"),
    ];
    for (stream, message) in cases {
        let out = deltas(&run_stream(OutputMode::OpenAi, false, &[&stream]));
        let n = out.len();
        assert!(n >= 2, "{out:?}");
        assert!(
            out[n - 2]["error"]["message"].as_str().unwrap().contains(message),
            "{out:?}"
        );
        assert_eq!(out[n - 1], json!("[DONE]"));
        assert!(
            !out.iter().any(|d| d.get("finish").is_some()),
            "finish chunk next to an error: {out:?}"
        );
    }
}

#[test]
fn incomplete_maps_to_length_and_nothing_follows_the_terminal_event() {
    let mut stream = fixture("incomplete").to_vec();
    stream.extend(sse(&[ts::text_delta("late")]));
    let out = deltas(&run_stream(OutputMode::OpenAi, false, &[&stream]));
    assert_eq!(out[out.len() - 2], json!({"finish": "length"}));
    assert_eq!(out.iter().filter(|d| **d == json!("[DONE]")).count(), 1);
    assert!(!out.contains(&json!({"content": "late"})));
}

#[test]
fn every_split_offset_gives_the_same_output() {
    for fixture in FIXTURES {
        for stream in [fixture.bytes.to_vec(), crlf(fixture.bytes)] {
            for mode in [OutputMode::OpenAi, OutputMode::Tagged] {
                let whole = run_stream(mode, true, &[&stream]);
                let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                assert_eq!(
                    run_stream(mode, true, &bytes),
                    whole,
                    "{}: byte by byte",
                    fixture.name
                );
                for size in [2, 3, 7, 64] {
                    for start in 0..size {
                        let (head, rest) = stream.split_at(start.min(stream.len()));
                        let mut chunks = vec![head];
                        chunks.extend(rest.chunks(size));
                        assert_eq!(
                            run_stream(mode, true, &chunks),
                            whole,
                            "{}: size {size} offset {start}",
                            fixture.name
                        );
                    }
                }
            }
        }
    }
}

/// Every client format the translator serves.
#[derive(Debug, Clone, Copy)]
enum Format {
    ChatStream,
    ChatAggregate,
    CompletionStream,
    CompletionAggregate,
}

/// What the client gets, as text: the streamed body, or the aggregated body or error with
/// its status.
fn client_output(format: Format, mode: OutputMode, chunks: &[&[u8]]) -> String {
    fn drive<S: Output>(mut t: Translator<S>, chunks: &[&[u8]], streams: bool) -> String {
        let mut out = Vec::new();
        for chunk in chunks {
            let now = t.push(chunk, 0);
            assert!(streams || now.is_empty(), "aggregation forwards nothing early");
            out.extend_from_slice(now);
        }
        match t.finish(0) {
            End::Tail(tail) if streams => out.extend_from_slice(tail),
            End::Body(body) if !streams => out.extend_from_slice(body),
            End::Error(e) if !streams => {
                out.extend_from_slice(format!("error {} {:?} ", e.status, e.retry_after).as_bytes());
                out.extend_from_slice(&e.body());
            }
            other => panic!("{other:?}"),
        }
        String::from_utf8(out).unwrap()
    }
    match format {
        Format::ChatStream => drive(
            Translator::new(mode, ChatStreamWriter::new("gpt-5.5", 1, true)),
            chunks,
            true,
        ),
        Format::ChatAggregate => drive(
            Translator::new(mode, ChatAggregator::new("gpt-5.5", 1)),
            chunks,
            false,
        ),
        Format::CompletionStream => drive(
            Translator::new(mode, CompletionStreamWriter::new("gpt-5.5", 1, true)),
            chunks,
            true,
        ),
        Format::CompletionAggregate => drive(
            Translator::new(mode, CompletionAggregator::new("gpt-5.5", 1)),
            chunks,
            false,
        ),
    }
}

/// Every fixture split in two at every byte offset. The chat stream in `openai` mode shows
/// every signal the turn produced, and every other format and mode is built from the same
/// signals (the fuzz targets check them all at random splits).
fn every_two_way_split(crlf_endings: bool) {
    for fixture in FIXTURES {
        let stream = if crlf_endings {
            crlf(fixture.bytes)
        } else {
            fixture.bytes.to_vec()
        };
        let whole = client_output(Format::ChatStream, OutputMode::OpenAi, &[&stream]);
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(
                client_output(Format::ChatStream, OutputMode::OpenAi, &[a, b]),
                whole,
                "{}: split at {at}",
                fixture.name
            );
        }
    }
}

#[test]
fn every_fixture_is_the_same_at_every_two_way_split() {
    every_two_way_split(false);
}

#[test]
fn every_fixture_with_crlf_is_the_same_at_every_two_way_split() {
    every_two_way_split(true);
}

/// What each fixture gives each kind of client, in brief.
#[test]
fn every_fixture_in_every_format() {
    let cases: &[(&str, &str, &str)] = &[
        ("text", "Hello world|stop|17", "200 Hello world|stop|17"),
        ("reasoning", "Héllo 🌍 世界|stop|15", "200 Héllo 🌍 世界|stop|15"),
        ("parallel_tools", "|tool_calls|60", "200 |tool_calls|60"),
        (
            "incomplete",
            "The answer is cut|length|15",
            "200 The answer is cut|length|15",
        ),
        (
            "failed",
            "partial|server_is_overloaded",
            "503 server_is_overloaded",
        ),
        ("usage_limit", "|usage_limit_reached", "429 usage_limit_reached"),
        (
            "policy_refusal",
            "|misalignment_policy_violation",
            "400 misalignment_policy_violation",
        ),
        (
            "policy_error",
            "|misalignment_policy_violation",
            "400 misalignment_policy_violation",
        ),
        ("dropped", "Hello wo|stream_incomplete", "502 stream_incomplete"),
    ];
    assert_eq!(cases.len(), FIXTURES.len(), "a fixture without an expectation");
    for (name, streamed, aggregated) in cases {
        for (format, mode) in [
            (Format::ChatStream, OutputMode::Hidden),
            (Format::CompletionStream, OutputMode::Hidden),
            (Format::ChatAggregate, OutputMode::Hidden),
            (Format::CompletionAggregate, OutputMode::Hidden),
        ] {
            let out = client_output(format, mode, &[fixture(name)]);
            let brief = match format {
                Format::ChatStream | Format::CompletionStream => brief_stream(&out),
                Format::ChatAggregate | Format::CompletionAggregate => brief_answer(&out),
            };
            let expected = match format {
                Format::ChatStream | Format::CompletionStream => streamed,
                Format::ChatAggregate | Format::CompletionAggregate => aggregated,
            };
            assert_eq!(brief, *expected, "{name} {format:?}");
        }
    }
}

/// `text|finish reason|total tokens` of a streamed body, or `text|error code`.
fn brief_stream(body: &str) -> String {
    let all = frames(body);
    assert_eq!(all.last(), Some(&json!("[DONE]")), "{body}");
    assert_eq!(all.iter().filter(|f| **f == json!("[DONE]")).count(), 1, "{body}");
    let mut text = String::new();
    let mut end = Vec::new();
    for f in &all {
        let choice = &f["choices"][0];
        text.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
        text.push_str(choice["text"].as_str().unwrap_or_default());
        if let Some(reason) = choice["finish_reason"].as_str() {
            end.push(reason.to_string());
        }
        if let Some(total) = f["usage"]["total_tokens"].as_u64() {
            end.push(total.to_string());
        }
        if let Some(code) = f["error"]["code"].as_str() {
            end.push(code.to_string());
        }
    }
    format!("{text}|{}", end.join("|"))
}

/// `status text|finish reason|total tokens` of an aggregated answer, or `status error code`.
fn brief_answer(out: &str) -> String {
    if let Some(error) = out.strip_prefix("error ") {
        let mut parts = error.splitn(3, ' ');
        let (status, _retry_after) = (parts.next().unwrap(), parts.next());
        let body: Value = serde_json::from_str(parts.next().unwrap()).unwrap();
        return format!("{status} {}", body["error"]["code"].as_str().unwrap());
    }
    let v: Value = serde_json::from_str(out).unwrap();
    let choice = &v["choices"][0];
    let text = choice["message"]["content"]
        .as_str()
        .or(choice["text"].as_str())
        .unwrap_or_default();
    format!(
        "200 {text}|{}|{}",
        choice["finish_reason"].as_str().unwrap(),
        v["usage"]["total_tokens"]
    )
}

fn aggregate(mode: OutputMode, stream: &[u8]) -> Result<Value, ApiError> {
    let mut t = Translator::new(mode, ChatAggregator::new("gpt-5.5", 1));
    assert!(t.push(stream, 0).is_empty(), "aggregation forwards nothing early");
    match t.finish(0) {
        End::Body(body) => Ok(serde_json::from_slice(body).unwrap()),
        End::Error(e) => Err(e.clone()),
        End::Tail(_) => panic!("tail from an aggregator"),
    }
}

#[test]
fn aggregated_completion_matches_the_stream() {
    let v = aggregate(OutputMode::OpenAi, &reasoning_stream()).unwrap();
    assert_eq!(
        v,
        json!({"id": "chatcmpl-0a1b", "object": "chat.completion", "created": 1766361600, "model": "gpt-5.5",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "Héllo 🌍 世界", "reasoning_content": "Think A\nThink B"},
                            "logprobs": null, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                         "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}})
    );
    let tagged = aggregate(OutputMode::Tagged, &reasoning_stream()).unwrap();
    assert_eq!(
        tagged["choices"][0]["message"]["content"],
        "<think>Think A\nThink B</think>Héllo 🌍 世界"
    );
    let o3 = aggregate(OutputMode::O3, &reasoning_stream()).unwrap();
    assert_eq!(
        o3["choices"][0]["message"]["reasoning"],
        json!({"content": [{"type": "text", "text": "Think A\nThink B"}]})
    );
    let hidden = aggregate(OutputMode::Hidden, &reasoning_stream()).unwrap();
    assert_eq!(
        hidden["choices"][0]["message"],
        json!({"role": "assistant", "content": "Héllo 🌍 世界"})
    );
}

#[test]
fn aggregated_tool_calls_and_failures() {
    let v = aggregate(OutputMode::OpenAi, &tool_stream()).unwrap();
    assert_eq!(
        v["choices"][0],
        json!({"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}},
        ]}})
    );
    let failed = sse(&[
        created(),
        ts::failed(json!({"type": "usage_limit_reached", "message": "limit", "resets_in_seconds": 60})),
    ]);
    let err = aggregate(OutputMode::OpenAi, &failed).unwrap_err();
    assert_eq!((err.status, err.retry_after), (429, Some(60)));
    let err = aggregate(OutputMode::OpenAi, fixture("usage_limit")).unwrap_err();
    assert_eq!((err.status, err.retry_after), (429, Some(300)));
    let err = aggregate(OutputMode::OpenAi, b"").unwrap_err();
    assert_eq!(err.status, 502);
}

#[test]
fn oversized_events_fail_safely() {
    let mut t = stream_translator(OutputMode::OpenAi, false);
    let huge = vec![b'x'; MAX_EVENT_BYTES + 10];
    let mut out = t.push(b"data: ", 0).to_vec();
    out.extend_from_slice(t.push(&huge, 0));
    if let End::Tail(tail) = t.finish(0) {
        out.extend_from_slice(tail);
    }
    let body = String::from_utf8(out).unwrap();
    assert!(
        body.contains("upstream_event_too_large") && body.ends_with("data: [DONE]\n\n"),
        "{body}"
    );
}

#[test]
fn text_completions_stream_and_aggregate_only_the_answer() {
    let mut t = Translator::new(
        OutputMode::Hidden,
        CompletionStreamWriter::new("gpt-5.5", 1, true),
    );
    let mut out = t.push(&reasoning_stream(), 0).to_vec();
    if let End::Tail(tail) = t.finish(0) {
        out.extend_from_slice(tail);
    }
    let all = frames(&String::from_utf8(out).unwrap());
    let texts: Vec<&str> = all
        .iter()
        .filter_map(|f| f["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(texts, ["Héllo 🌍", " 世界", ""]);
    assert_eq!(all[0]["object"], "text_completion");
    assert_eq!(all[0]["id"], "cmpl-0a1b");
    assert_eq!(all[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(all[3]["choices"], json!([]));
    assert_eq!(all[3]["usage"]["total_tokens"], 15);
    assert_eq!(all[4], json!("[DONE]"));
    assert_eq!(t.usage().map(|u| u.total_tokens), Some(15));

    let mut t = Translator::new(OutputMode::Hidden, CompletionAggregator::new("gpt-5.5", 1));
    t.push(&reasoning_stream(), 0);
    let End::Body(body) = t.finish(0) else {
        panic!("no body")
    };
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        v["choices"],
        json!([{"text": "Héllo 🌍 世界", "index": 0, "logprobs": null, "finish_reason": "stop"}])
    );
    assert_eq!(v["object"], "text_completion");
}

#[test]
fn a_late_or_repeated_created_event_renames_no_chunk() {
    let again = json!({"type": "response.created", "response": {"id": "resp_other", "created_at": 5}});
    let repeated = sse(&[
        created(),
        ts::text_delta("a"),
        again.clone(),
        ts::completed(json!(null)),
    ]);
    let late = sse(&[ts::text_delta("a"), again, ts::completed(json!(null))]);
    for (stream, id, created_at) in [
        (&repeated, "chatcmpl-0a1b", 1_766_361_600),
        (&late, "chatcmpl-codex", 1),
    ] {
        let all = frames(&run_stream(OutputMode::OpenAi, true, &[stream]));
        for f in &all[..all.len() - 1] {
            assert_eq!(
                (f["id"].as_str(), f["created"].as_u64()),
                (Some(id), Some(created_at)),
                "{f}"
            );
        }
        let answer = aggregate(OutputMode::OpenAi, stream).unwrap();
        assert_eq!(
            (answer["id"].as_str(), answer["created"].as_u64()),
            (Some(id), Some(created_at))
        );
    }
}

#[test]
fn a_huge_upstream_id_is_cut_before_every_chunk_repeats_it() {
    let id = format!("resp_{}é", "x".repeat(MAX_UPSTREAM_ID_BYTES - 1));
    let mut events = vec![json!({"type": "response.created", "response": {"id": id, "created_at": 5}})];
    events.extend((0..100).map(|_| ts::text_delta("a")));
    events.push(ts::completed(json!(null)));
    let stream = sse(&events);
    let body = run_stream(OutputMode::OpenAi, false, &[&stream]);
    let all = frames(&body);
    // The multi-byte character that would cross the limit is left out whole.
    let expected = format!("chatcmpl-{}", "x".repeat(MAX_UPSTREAM_ID_BYTES - 1));
    for f in &all[..all.len() - 1] {
        assert_eq!(f["id"], expected.as_str());
    }
    assert!(
        body.len() < 3 * stream.len(),
        "{} bytes out for {} in",
        body.len(),
        stream.len()
    );
    let answer = aggregate(OutputMode::OpenAi, &stream).unwrap();
    assert_eq!(answer["id"], expected.as_str());
    assert_eq!(
        crate::core::translate::response::chat_stream::response_id("cmpl", "resp_abc"),
        "cmpl-abc"
    );
}
