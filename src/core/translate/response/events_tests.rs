use super::*;
use serde_json::json;

/// Signals rendered as short strings, so expected sequences read like a transcript.
fn transcript(events: &[serde_json::Value], eof: bool) -> Vec<String> {
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
    for event in events {
        turn.event(event.to_string().as_bytes(), 1_000, &mut emit);
    }
    if eof {
        turn.end_of_stream(&mut emit);
    }
    out
}

fn fc_added(item_id: &str, call_id: &str, name: &str) -> serde_json::Value {
    json!({"type": "response.output_item.added", "item": {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": ""}})
}

#[test]
fn text_reasoning_and_usage() {
    let got = transcript(
        &[
            json!({"type": "response.created", "response": {"id": "resp_1", "created_at": 5}}),
            json!({"type": "response.in_progress"}),
            json!({"type": "response.reasoning_summary_part.added"}),
            json!({"type": "response.reasoning_summary_text.delta", "delta": "A"}),
            json!({"type": "response.reasoning_summary_part.added"}),
            json!({"type": "response.reasoning_summary_text.delta", "delta": "B"}),
            json!({"type": "response.output_text.delta", "delta": "Hi", "obfuscation": "x"}),
            json!({"type": "response.output_text.done", "text": "Hi"}),
            json!({"type": "response.completed", "response": {"usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}, "output": []}}),
            json!({"type": "response.output_text.delta", "delta": "after the end"}),
        ],
        true,
    );
    assert_eq!(
        got,
        [
            "meta resp_1 Some(5)",
            "reason A",
            "break",
            "reason B",
            "text Hi",
            "finish stop 3"
        ]
    );
}

#[test]
fn tool_calls_stream_with_stable_indexes_and_reconcile() {
    let got = transcript(
        &[
            fc_added("fc_1", "call_a", "get_weather"),
            json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{\"city\":"}),
            fc_added("fc_2", "call_b", "get_time"),
            json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "\"Paris\"}"}),
            json!({"type": "response.function_call_arguments.done", "item_id": "fc_1", "arguments": "{\"city\":\"Paris\"}"}),
            // No deltas for the second call: its arguments arrive whole at done.
            json!({"type": "response.output_item.done", "item": {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "get_time", "arguments": "{}"}}),
            // A call seen only at output_item.done.
            json!({"type": "response.output_item.done", "item": {"type": "function_call", "id": "fc_3", "call_id": "call_c", "name": "x", "arguments": "{\"a\":1}"}}),
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
