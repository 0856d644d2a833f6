use super::*;
use crate::core::test_support::{FIXTURES, completed, created, fixture, sse, text_delta};
use serde_json::{Value, json};

/// What a client sees of one upstream body pushed in `chunks`: the bytes it gets (the chunks
/// themselves when the pipeline relays), the end, and the usage.
fn play(
    pipeline: &mut dyn Pipeline,
    chunks: &[&[u8]],
) -> (Vec<u8>, Result<Vec<u8>, ApiError>, Option<Usage>) {
    let mut client = Vec::new();
    for chunk in chunks {
        let out = pipeline.push(chunk, 1_000).to_vec();
        if pipeline.relays() {
            assert!(out.is_empty());
            client.extend_from_slice(chunk);
        } else {
            client.extend_from_slice(&out);
        }
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

#[test]
#[allow(clippy::type_complexity)] // a table of cases reads best as tuples
fn a_streaming_client_gets_the_upstream_bytes_and_the_filter_reads_the_usage() {
    let cases: &[(&str, Option<(u64, u64)>, Option<&str>)] = &[
        ("text", Some((12, 5)), None),
        ("reasoning", Some((10, 5)), None),
        ("parallel_tools", Some((42, 18)), None),
        ("incomplete", Some((12, 3)), None),
        ("failed", None, None),
        ("usage_limit", None, None),
        // Cut short: one more event tells the client, numbered after the last one it got.
        ("dropped", None, Some("stream_incomplete")),
    ];
    assert_eq!(cases.len(), FIXTURES.len());
    for (name, usage, added) in cases {
        let stream = fixture(name);
        let (client, _, got) = whole(&mut ResponsesStream::new(), stream);
        assert_eq!(tokens(got), *usage, "{name}");
        let extra = client.get(stream.len()..).unwrap_or_default();
        assert_eq!(&client[..stream.len()], stream, "{name}");
        match added {
            None => assert!(extra.is_empty(), "{name}: {}", String::from_utf8_lossy(extra)),
            Some(code) => {
                let text = String::from_utf8_lossy(extra);
                let data = text.strip_prefix("event: error\ndata: ").unwrap_or_default();
                let event: Value = serde_json::from_str(data.trim_end()).unwrap();
                assert_eq!(event["type"], "error");
                assert_eq!(event["code"], *code);
                assert_eq!(event["error"]["code"], *code);
                assert_eq!(event["error"]["type"], "upstream_error");
                assert_eq!(event["sequence_number"], 7, "{name}");
                assert!(text.ends_with("\n\n"));
            }
        }
    }
}

#[test]
fn an_event_too_large_to_read_still_reaches_the_client_whole() {
    let big = "x".repeat(2 * MAX_EVENT_BYTES);
    let stream = sse(&[
        created(),
        text_delta(&big),
        completed(json!({"input_tokens": 1, "output_tokens": 1})),
    ]);
    let chunks: Vec<&[u8]> = stream.chunks(64 * 1024).collect();
    let (client, _, usage) = play(&mut ResponsesStream::new(), &chunks);
    // The filter stopped reading at the big event, so it neither counts nor complains.
    assert!(client == stream, "the client's bytes differ from the upstream's");
    assert_eq!(usage, None);
}

fn aggregate(stream: &[u8]) -> Result<Value, ApiError> {
    let (client, end, _) = whole(&mut ResponsesAggregator::new(1 << 20), stream);
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
    let text = whole(&mut ResponsesAggregator::new(1 << 20), fixture("text"))
        .1
        .unwrap();
    assert!(
        String::from_utf8(text)
            .unwrap()
            .starts_with(r#"{"id":"resp_0a1b","object":"response""#)
    );
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
        let expected_stream = whole(&mut ResponsesStream::new(), stream);
        let expected_body = whole(&mut ResponsesAggregator::new(1 << 20), stream);
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            let got = play(&mut ResponsesStream::new(), &[a, b]);
            assert_eq!(
                (&got.0, tokens(got.2)),
                (&expected_stream.0, tokens(expected_stream.2)),
                "{} at {at}",
                f.name
            );
            let got = play(&mut ResponsesAggregator::new(1 << 20), &[a, b]);
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
