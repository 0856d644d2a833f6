use super::*;
use crate::core::test_support::{self as ts, FIXTURES, fixture, payloads};
use serde_json::json;

/// Signals rendered as short strings, so expected sequences read like a transcript.
fn transcript_of(payloads: &[&[u8]], eof: bool) -> (Vec<String>, u32) {
    let mut turn = Turn::default();
    let mut out = Vec::new();
    let mut emit = |s: Signal<'_>| {
        out.push(match s {
            Signal::Meta { id, created } => format!("meta {id} {created:?}"),
            Signal::Text(t) => format!("text {t}"),
            Signal::Reasoning(t) => format!("reason {t}"),
            Signal::ReasoningBreak => "break".into(),
            Signal::ToolCallStart { index, call_id, name } => format!("call{index} {call_id} {name}"),
            Signal::ToolCallArgs { index, delta } => format!("args{index} {delta}"),
            Signal::Finish { reason, usage } => format!(
                "finish {} {}",
                reason.as_str(),
                usage.map_or(0, |u| u.total_tokens)
            ),
            Signal::Fail(e) => format!("fail {} {}", e.status, e.code_str().unwrap_or_default()),
        })
    };
    for data in payloads {
        turn.event(data, 1_000, &mut emit);
    }
    if eof {
        turn.end_of_stream(&mut emit);
    }
    (out, turn.malformed_events)
}

fn transcript(events: &[serde_json::Value], eof: bool) -> Vec<String> {
    let data: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let data: Vec<&[u8]> = data.iter().map(|d| d.as_bytes()).collect();
    transcript_of(&data, eof).0
}

#[test]
fn every_fixture_reads_as_its_transcript() {
    let meta = "meta resp_0a1b Some(1766361600)";
    let cases: &[(&str, &[&str], u32)] = &[
        ("text", &[meta, "text Hello", "text  world", "finish stop 17"], 0),
        (
            "reasoning",
            &[
                meta,
                "reason Think A",
                "break",
                "reason Think B",
                "text Héllo 🌍",
                "text  世界",
                "finish stop 15",
            ],
            0,
        ),
        (
            "parallel_tools",
            &[
                meta,
                "call0 call_a get_weather",
                "args0 {\"ci",
                "call1 call_b get_time",
                "args1 {\"tz\":\"CET\"}",
                "args0 ty\":\"Paris\"}",
                "finish tool_calls 60",
            ],
            0,
        ),
        (
            "incomplete",
            &[meta, "text The answer is", "text  cut", "finish length 15"],
            0,
        ),
        (
            "failed",
            &[meta, "text partial", "fail 503 server_is_overloaded"],
            0,
        ),
        ("usage_limit", &[meta, "fail 429 usage_limit_reached"], 0),
        (
            "policy_refusal",
            &[meta, "fail 400 misalignment_policy_violation"],
            0,
        ),
        (
            "policy_error",
            &[meta, "fail 400 misalignment_policy_violation"],
            0,
        ),
        // The last record is cut mid-JSON: skipped as malformed, then the missing terminal
        // event is the error.
        (
            "dropped",
            &[meta, "text Hel", "text lo wo", "fail 502 stream_incomplete"],
            1,
        ),
    ];
    assert_eq!(cases.len(), FIXTURES.len(), "a fixture without a transcript");
    for (name, expected, malformed) in cases {
        let (got, bad) = transcript_of(&payloads(fixture(name)), true);
        assert_eq!(got, *expected, "{name}");
        assert_eq!(bad, *malformed, "{name}: malformed events");
    }
}

#[test]
fn nothing_after_the_terminal_event_counts() {
    let mut data = payloads(fixture("reasoning"));
    let late = ts::text_delta("after the end").to_string();
    data.push(late.as_bytes());
    data.push(b"{not json");
    let (got, malformed) = transcript_of(&data, true);
    assert_eq!(got.last().map(String::as_str), Some("finish stop 15"));
    assert_eq!(got.len(), 7);
    assert_eq!(malformed, 0, "events after the end are not even parsed");
}

#[test]
fn tool_calls_stream_with_stable_indexes_and_reconcile() {
    let got = transcript(
        &[
            ts::function_call("response.output_item.added", "fc_1", "call_a", "get_weather", ""),
            ts::arguments_delta("fc_1", "{\"city\":"),
            ts::function_call("response.output_item.added", "fc_2", "call_b", "get_time", ""),
            ts::arguments_delta("fc_1", "\"Paris\"}"),
            ts::arguments_done("fc_1", "{\"city\":\"Paris\"}"),
            // No deltas for the second call: its arguments arrive whole at done.
            ts::function_call("response.output_item.done", "fc_2", "call_b", "get_time", "{}"),
            // A call seen only at output_item.done.
            ts::function_call("response.output_item.done", "fc_3", "call_c", "x", "{\"a\":1}"),
            json!({"type": "response.completed", "response": {}}),
        ],
        false,
    );
    assert_eq!(
        got,
        [
            "call0 call_a get_weather",
            "args0 {\"city\":",
            "call1 call_b get_time",
            "args0 \"Paris\"}",
            "args1 {}",
            "call2 call_c x",
            "args2 {\"a\":1}",
            "finish tool_calls 0",
        ]
    );
}

#[test]
fn terminal_variants() {
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({"type": "response.incomplete", "response": {"incomplete_details": {"reason": "max_output_tokens"}}}),
            "finish length 0",
        ),
        (
            json!({"type": "response.incomplete", "response": {"incomplete_details": {"reason": "content_filter"}}}),
            "finish content_filter 0",
        ),
        (
            json!({"type": "response.failed", "response": {"error": {"code": "context_length_exceeded", "message": "too long"}}}),
            "fail 400 context_length_exceeded",
        ),
        (
            json!({"type": "response.failed", "response": {"error": {"type": "usage_limit_reached", "message": "limit", "resets_in_seconds": 60}}}),
            "fail 429 usage_limit_reached",
        ),
        (
            json!({"type": "error", "error": {"type": "service_unavailable_error", "code": "server_is_overloaded", "message": "busy"}}),
            "fail 503 server_is_overloaded",
        ),
        (
            json!({"type": "error", "code": "context_length_exceeded", "message": "long"}),
            "fail 400 context_length_exceeded",
        ),
        (
            json!({"type": "response.failed", "response": {"error": null}}),
            "fail 502 ",
        ),
    ];
    for (event, expected) in cases {
        assert_eq!(
            transcript(std::slice::from_ref(&event), true),
            [expected],
            "{event}"
        );
    }
}

#[test]
fn truncated_and_malformed_streams_fail_cleanly() {
    assert_eq!(
        transcript(
            &[json!({"type": "response.output_text.delta", "delta": "par"})],
            true
        ),
        ["text par", "fail 502 stream_incomplete"]
    );
    let mut turn = Turn::default();
    let mut signals = 0;
    for data in [
        &b"{not json"[..],
        b"[DONE]",
        b"",
        b"{\"type\":5}",
        b"{\"no_type\":1}",
    ] {
        turn.event(data, 0, &mut |_| signals += 1);
    }
    assert_eq!((signals, turn.malformed_events), (0, 4));
}

#[test]
fn ignored_event_types_are_skipped_without_parsing() {
    let mut turn = Turn::default();
    let mut signals = 0;
    // Not valid JSON after the type: proof that it was never parsed.
    turn.event(
        br#"{"type":"response.output_text.done","text":"...truncated"#,
        0,
        &mut |_| signals += 1,
    );
    turn.event(
        br#"{"type":"codex.rate_limits","rate_limits":{}}"#,
        0,
        &mut |_| signals += 1,
    );
    assert_eq!((signals, turn.malformed_events), (0, 0));
    assert_eq!(leading_type(br#"  {"type":"a.b","x":1}"#), Some(&b"a.b"[..]));
    assert_eq!(
        leading_type(br#"{"type":"a\u002eb"}"#),
        None,
        "escapes fall back to the full parse"
    );
    assert_eq!(leading_type(br#"{ "type": "a.b"}"#), None);
    assert_eq!(
        leading_type(br#"{"delta":"x","type":"response.output_text.delta"}"#),
        None
    );
    // Types that matter are still handled, whatever the key order.
    let got = transcript(
        &[json!({"delta": "x", "type": "response.output_text.delta"})],
        false,
    );
    assert_eq!(got, ["text x"]);
}

#[test]
fn delta_events_are_read_without_a_full_parse_as_the_full_parse_reads_them() {
    let taken: &[&[u8]] = &[
        br#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi","logprobs":[]}"#,
        br#"{"type":"response.output_text.delta","sequence_number":12,"item_id":"msg_1","delta":"a \"b\"\n\u00e9 \ud83c\udf0d","obfuscation":"Zx9"}"#,
        br#"{"type":"response.output_text.delta" , "delta" : "x" , "flag" : true , "n" : -30 , "z" : null , "l" : [ ] } "#,
        br#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":1,"delta":"{\"a\":1}"}"#,
        br#"{"type":"response.reasoning_summary_text.delta","delta":null}"#,
        "{\"type\":\"response.output_text.delta\",\"delta\":\"Héllo 世界\"}".as_bytes(),
    ];
    for data in taken {
        assert!(
            leading_type(data).and_then(|k| fast_delta(data, k)).is_some(),
            "{}",
            String::from_utf8_lossy(data)
        );
        assert!(fast_read_agrees(data), "{}", String::from_utf8_lossy(data));
    }
    // Shapes the fast read leaves to the full parse (which may take or refuse them).
    let left: &[&[u8]] = &[
        br#" { "type" : "response.output_text.delta" , "delta" : "x" } "#,
        br#"{"type":"response.output_text.delta","delta":"a","delta":"b"}"#,
        br#"{"type":"response.output_text.delta","delta":"a","type":"x"}"#,
        br#"{"type":"response.output_text.delta","delta":"a"} x"#,
        br#"{"type":"response.output_text.delta","delta":"a","n":1.5}"#,
        br#"{"type":"response.output_text.delta","delta":"a","n":01}"#,
        br#"{"type":"response.output_text.delta","delta":"a","l":[1]}"#,
        br#"{"type":"response.output_text.delta","delta":"a","o":{}}"#,
        br#"{"type":"response.output_text.delta","delta":"a","s":"\n"}"#,
        br#"{"type":"response.output_text.delta","d\u0065lta":"a"}"#,
        br#"{"type":"response.output_text.delta","delta":"\ud800"}"#,
        br#"{"type":"response.output_text.delta","delta":7}"#,
        br#"{"type":"response.output_text.delta","code":"x","delta":"a"}"#,
        br#"{"type":"response.output_text.delta","delta":"a""#,
        br#"{"type":"response.output_text.delta","delta":"a",}"#,
        br#"{"type":"response.output_text.done","text":"a"}"#,
        b"{\"type\":\"response.output_text.delta\",\"delta\":\"a\x01\"}",
        b"{\"type\":\"response.output_text.delta\",\"k\xff\":1,\"delta\":\"a\"}",
        b"{\"type\":\"response.output_text.delta\",\"delta\":\"\xc3\"}",
        b"\x0c{\"type\":\"response.output_text.delta\",\"delta\":\"a\"}",
    ];
    for data in left {
        assert!(
            leading_type(data).and_then(|k| fast_delta(data, k)).is_none(),
            "{}",
            String::from_utf8_lossy(data)
        );
    }
    // Every event of every recorded stream, and every prefix of the taken ones.
    for fixture in FIXTURES {
        for data in payloads(fixture.bytes) {
            let name = fixture.name;
            assert!(
                fast_read_agrees(data),
                "{name}: {}",
                String::from_utf8_lossy(data)
            );
        }
    }
    for data in taken {
        for cut in 0..data.len() {
            assert!(fast_read_agrees(data.get(..cut).unwrap_or_default()));
        }
    }
}
