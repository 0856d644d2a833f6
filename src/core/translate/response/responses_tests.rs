use super::*;
use crate::core::test_support::{FIXTURES, completed, created, fixture, sse, text_delta};
use serde_json::{Value, json};

/// What a client sees of one upstream body pushed in `chunks`: the bytes it gets, the end,
/// and the usage.
fn play(
    pipeline: &mut dyn Pipeline,
    chunks: &[&[u8]],
) -> (Vec<u8>, Result<Vec<u8>, ApiError>, Option<Usage>) {
    let mut client = Vec::new();
    for chunk in chunks {
        client.extend_from_slice(pipeline.push(chunk, 1_000));
    }
    let end = match pipeline.finish(1_000) {
        End::Tail(tail) => {
            client.extend_from_slice(tail);
            Ok(Vec::new())
        }
        End::Body(body) => Ok(body.to_vec()),
        End::Error(error) => Err(error.clone()),
    };
    (client, end, pipeline.usage())
}

fn whole(pipeline: &mut dyn Pipeline, stream: &[u8]) -> (Vec<u8>, Result<Vec<u8>, ApiError>, Option<Usage>) {
    play(pipeline, &[stream])
}

fn tokens(usage: Option<Usage>) -> Option<(u64, u64)> {
    usage.map(|u| (u.prompt_tokens, u.completion_tokens))
}

const LIMIT: usize = 1 << 20;

/// The stream's records (`event:` + `data:` lines), a last unterminated one included.
fn records(stream: &[u8]) -> Vec<&[u8]> {
    let text = stream;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.windows(2).position(|w| w == b"\n\n") {
        out.push(&rest[..at + 2]);
        rest = &rest[at + 2..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn data_of(record: &[u8]) -> Value {
    let text = String::from_utf8_lossy(record);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_default();
    serde_json::from_str(line).unwrap()
}

#[test]
#[allow(clippy::type_complexity)] // a table of cases reads best as tuples
fn a_streaming_client_gets_the_backend_events_and_the_filter_reads_the_usage() {
    // (fixture, usage, the final output's item types, the error event added)
    let cases: &[(&str, Option<(u64, u64)>, Option<&[&str]>, Option<&str>)] = &[
        ("text", Some((12, 5)), Some(&["message"]), None),
        ("reasoning", Some((10, 5)), Some(&["reasoning", "message"]), None),
        (
            "parallel_tools",
            Some((42, 18)),
            Some(&["function_call", "function_call"]),
            None,
        ),
        ("incomplete", Some((12, 3)), None, None),
        ("failed", None, None, None),
        ("usage_limit", None, None, None),
        // Cut short: the broken record is dropped and one more event tells the client,
        // numbered after the last one it got.
        ("dropped", None, None, Some("stream_incomplete")),
    ];
    assert_eq!(cases.len(), FIXTURES.len());
    for (name, usage, output, added) in cases {
        let stream = fixture(name);
        let (client, _, got) = whole(&mut ResponsesStream::new(LIMIT), stream);
        assert_eq!(tokens(got), *usage, "{name}");
        let upstream = records(stream);
        let sent = records(&client);
        let complete = upstream.iter().filter(|r| r.ends_with(b"\n\n")).count();
        // Every complete record is the backend's, byte for byte, but a mended `output`.
        for (i, record) in upstream.iter().take(complete).enumerate() {
            let last = i + 1 == complete;
            match (last, output) {
                (true, Some(kinds)) => {
                    let mended = data_of(sent[i]);
                    let mut original = data_of(record);
                    let types: Vec<&str> = mended["response"]["output"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|item| item["type"].as_str().unwrap())
                        .collect();
                    assert_eq!(types, *kinds, "{name}");
                    original["response"]["output"] = mended["response"]["output"].clone();
                    assert_eq!(mended, original, "{name}");
                    assert!(sent[i].starts_with(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":"));
                }
                _ => assert_eq!(
                    String::from_utf8_lossy(sent[i]),
                    String::from_utf8_lossy(record),
                    "{name} record {i}"
                ),
            }
        }
        match added {
            None => assert_eq!(sent.len(), complete, "{name}"),
            Some(code) => {
                assert_eq!(sent.len(), complete + 1, "{name}");
                let event = data_of(sent[complete]);
                assert!(sent[complete].starts_with(b"event: error\n"));
                assert_eq!(event["type"], "error");
                assert_eq!(event["code"], *code);
                assert_eq!(event["error"]["code"], *code);
                assert_eq!(event["error"]["type"], "upstream_error");
                assert_eq!(event["sequence_number"], 6, "{name}");
            }
        }
    }
}

#[test]
fn an_event_over_the_limit_ends_the_stream_with_an_error_event() {
    let big = "x".repeat(2 * LIMIT);
    let stream = sse(&[
        created(),
        text_delta(&big),
        completed(json!({"input_tokens": 1, "output_tokens": 1})),
    ]);
    let chunks: Vec<&[u8]> = stream.chunks(64 * 1024).collect();
    let (client, _, usage) = play(&mut ResponsesStream::new(LIMIT), &chunks);
    let sent = records(&client);
    assert_eq!(sent.len(), 2);
    assert_eq!(data_of(sent[1])["code"], "upstream_event_too_large");
    assert_eq!(usage, None);
}

#[test]
fn multi_line_payloads_keep_their_lines_and_an_output_already_there_stays() {
    let stream = b"event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\ndata: \"sequence_number\":1}\n\n";
    let (client, _, _) = whole(&mut ResponsesStream::new(LIMIT), stream);
    assert!(client.starts_with(stream), "{}", String::from_utf8_lossy(&client));
    let mut done = completed(json!({"input_tokens": 1, "output_tokens": 1}));
    done["response"]["output"] = json!([{"type": "message", "id": "m", "content": []}]);
    let stream = sse(&[
        created(),
        json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "other"}}),
        done,
    ]);
    let (client, _, _) = whole(&mut ResponsesStream::new(LIMIT), &stream);
    assert_eq!(client, stream);
    // A type that decodes to a line break cannot be an `event:` line.
    let odd = b"data: {\"type\":\"a\\nb\"}\n\n";
    let (client, _, _) = whole(&mut ResponsesStream::new(LIMIT), odd);
    assert!(client.starts_with(odd), "{}", String::from_utf8_lossy(&client));
}

fn aggregate(stream: &[u8]) -> Result<Value, ApiError> {
    let (client, end, _) = whole(&mut ResponsesAggregator::new(LIMIT), stream);
    assert!(client.is_empty());
    end.map(|body| serde_json::from_slice(&body).unwrap())
}

#[test]
#[allow(clippy::type_complexity)] // a table of cases reads best as tuples
fn a_non_streaming_client_gets_the_final_response_object() {
    let cases: &[(&str, Result<(&str, &[&str]), (u16, &str)>)] = &[
        ("text", Ok(("completed", &["message"]))),
        ("reasoning", Ok(("completed", &["reasoning", "message"]))),
        (
            "parallel_tools",
            Ok(("completed", &["function_call", "function_call"])),
        ),
        ("incomplete", Ok(("incomplete", &[]))),
        ("failed", Err((503, "server_is_overloaded"))),
        ("usage_limit", Err((429, "usage_limit_reached"))),
        ("dropped", Err((502, "stream_incomplete"))),
    ];
    for (name, expected) in cases {
        let got = aggregate(fixture(name));
        match (got, expected) {
            (Ok(response), Ok((status, kinds))) => {
                assert_eq!(response["status"], *status, "{name}");
                assert_eq!(response["id"], "resp_0a1b", "{name}");
                let output: Vec<&str> = response["output"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["type"].as_str().unwrap())
                    .collect();
                assert_eq!(output, *kinds, "{name}");
            }
            (Err(error), Err((status, code))) => {
                assert_eq!((error.status, error.code_str()), (*status, Some(*code)), "{name}");
            }
            (got, _) => panic!("{name}: {got:?}"),
        }
    }
    let reasoning = aggregate(fixture("reasoning")).unwrap();
    let first = &reasoning["output"][0];
    assert_eq!(first["summary"][1]["text"], "Think B");
    assert!(first["encrypted_content"].is_string());
    assert_eq!(reasoning["output"][1]["content"][0]["text"], "Héllo 🌍 世界");
    let incomplete = aggregate(fixture("incomplete")).unwrap();
    assert_eq!(incomplete["incomplete_details"]["reason"], "max_output_tokens");
    let limit = aggregate(fixture("usage_limit")).err().unwrap();
    assert_eq!(limit.retry_after, Some(300));
}

#[test]
fn an_output_the_backend_filled_in_is_kept_as_it_is() {
    let mut done = completed(json!({"input_tokens": 1, "output_tokens": 1}));
    done["response"]["output"] = json!([{"type": "message", "id": "m", "content": []}]);
    let stream = sse(&[
        created(),
        json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "other"}}),
        done,
    ]);
    let response = aggregate(&stream).unwrap();
    assert_eq!(
        response["output"],
        json!([{"type": "message", "id": "m", "content": []}])
    );
    // The rebuilt object keeps every other member, in order.
    let text = whole(&mut ResponsesAggregator::new(LIMIT), fixture("text"))
        .1
        .unwrap();
    assert!(
        String::from_utf8(text)
            .unwrap()
            .starts_with(r#"{"id":"resp_0a1b","object":"response""#)
    );
}

#[test]
fn a_terminal_event_without_a_response_object_is_a_502() {
    for response in [json!("text"), json!(null), json!([1])] {
        let mut done = completed(json!({}));
        done["response"] = response;
        let error = aggregate(&sse(&[created(), done])).err().unwrap();
        assert_eq!(
            (error.status, error.kind),
            (502, crate::core::error::ErrorType::Upstream)
        );
    }
}

#[test]
fn an_answer_over_the_limit_is_a_502() {
    let (_, end, _) = whole(&mut ResponsesAggregator::new(40), fixture("text"));
    assert_eq!(
        end.err()
            .and_then(|e| e.code_str().map(str::to_string))
            .as_deref(),
        Some("upstream_response_too_large")
    );
}

#[test]
fn every_split_of_every_fixture_gives_the_same_answer() {
    for f in FIXTURES {
        let stream = f.bytes;
        let expected_stream = whole(&mut ResponsesStream::new(LIMIT), stream);
        let expected_body = whole(&mut ResponsesAggregator::new(LIMIT), stream);
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            let got = play(&mut ResponsesStream::new(LIMIT), &[a, b]);
            assert_eq!(
                (&got.0, tokens(got.2)),
                (&expected_stream.0, tokens(expected_stream.2)),
                "{} at {at}",
                f.name
            );
            let got = play(&mut ResponsesAggregator::new(LIMIT), &[a, b]);
            assert_eq!(
                (&got.1, tokens(got.2)),
                (&expected_body.1, tokens(expected_body.2)),
                "{} at {at}",
                f.name
            );
        }
    }
}

#[test]
fn error_events_carry_both_shapes() {
    let error = ApiError::of(Code::StreamIncomplete, "m").with_param("p");
    let event = error_event(&error, 3);
    let text = String::from_utf8(event).unwrap();
    let data: Value = serde_json::from_str(text.trim_start_matches("event: error\ndata: ").trim()).unwrap();
    assert_eq!(
        data,
        json!({"type": "error", "sequence_number": 3, "code": "stream_incomplete", "message": "m", "param": "p",
               "error": {"type": "upstream_error", "code": "stream_incomplete", "message": "m", "param": "p"}})
    );
}
