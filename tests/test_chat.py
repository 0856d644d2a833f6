"""`POST /v1/chat/completions` through the real Envoy and the built module."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from chat_helpers import AUTH, chat_body, deltas, error_of, post, sse_data
from conftest import TEST_API_KEY
from harness import sse, tokens
from harness.mock_codex import Script


def chat_url(envoy) -> str:
    return envoy.url + "/v1/chat/completions"


def test_streamed_text_is_translated_frame_by_frame(envoy, mock_codex):
    mock_codex.enqueue(Script.events(sse.text_events(["Hel", "lo"], usage=sse.usage(12, 5))))
    resp = post(chat_url(envoy), chat_body(stream=True))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in resp.headers
    frames = sse_data(resp.text)
    assert deltas(frames) == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {"finish": "stop"},
        "[DONE]",
    ]
    first = frames[0]
    assert first["object"] == "chat.completion.chunk"
    assert first["id"].startswith("chatcmpl-")
    assert first["model"] == "gpt-5.5"
    assert resp.text.endswith("data: [DONE]\n\n")


def test_upstream_sees_the_codex_request_and_no_client_credentials(envoy, mock_codex, auth_json):
    resp = post(
        chat_url(envoy),
        chat_body(messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]),
        headers={"Cookie": "session=secret", "X-Api-Key": "client-key", "OpenAI-Organization": "org-1", "User-Agent": "curl/8"},
    )
    assert resp.status_code == 200, resp.text
    seen = mock_codex.last_request
    assert seen.method == "POST"
    assert seen.path == "/backend-api/codex/responses"
    doc = json.loads(auth_json)
    assert seen.header("authorization") == "Bearer " + doc["tokens"]["access_token"]
    assert seen.header("chatgpt-account-id") == tokens.DEFAULT_ACCOUNT_ID
    assert seen.header("originator") == "codex_cli_rs"
    assert seen.header("user-agent").startswith("codex_cli_rs/")
    assert seen.header("accept") == "text/event-stream"
    assert seen.header("content-type") == "application/json"
    assert seen.header("session-id") == seen.json["prompt_cache_key"]
    for leaked in ("cookie", "x-api-key", "openai-organization", "x-request-id", "x-forwarded-for", "x-forwarded-proto"):
        assert seen.header(leaked) is None, f"{leaked} reached the upstream"
    assert not [name for name, _ in seen.header_list if name.startswith("x-envoy-")]
    assert TEST_API_KEY not in json.dumps(seen.headers)
    body = seen.json
    assert body["model"] == "gpt-5.5"
    assert body["instructions"] == "Be terse."
    assert body["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    assert (body["store"], body["stream"], body["include"]) == (False, True, ["reasoning.encrypted_content"])
    # No effort anywhere: the model's catalogue default (medium for gpt-5.5).
    assert body["reasoning"] == {"effort": "medium", "summary": "auto"}


def test_non_streaming_answer_is_one_completion_with_usage(envoy, mock_codex):
    mock_codex.enqueue(Script.events(sse.text_events(["Hello", " world"], usage=sse.usage(12, 5, cached_tokens=8, reasoning_tokens=3))))
    resp = post(chat_url(envoy), chat_body())
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Hello world"}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert body["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


def reasoning_events():
    return [
        sse.created(),
        sse.item_added_reasoning(),
        sse.reasoning_part_added(summary_index=0),
        sse.reasoning_delta("Plan A", summary_index=0),
        sse.reasoning_part_added(summary_index=1),
        sse.reasoning_delta("Plan B", summary_index=1),
        sse.item_done_reasoning(["Plan A", "Plan B"]),
        sse.item_added_message(output_index=1),
        sse.text_delta("Done", output_index=1),
        sse.completed(usage=sse.usage(3, 4, reasoning_tokens=2)),
    ]


def test_reasoning_and_usage_chunk_with_the_sdk(envoy, mock_codex, openai_client):
    mock_codex.enqueue(Script.events(reasoning_events()))
    stream = openai_client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "think"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert (reasoning, content, finishes) == ("Plan A\nPlan B", "Done", ["stop"])
    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == 1
    assert usage_chunks[0].usage.total_tokens == 7
    assert usage_chunks[0].usage.completion_tokens_details.reasoning_tokens == 2


def tool_events():
    return [
        sse.created(),
        sse.item_added_function_call("call_a", "get_weather", item_id="fc_1", output_index=0),
        sse.args_delta("fc_1", 0, '{"ci'),
        sse.item_added_function_call("call_b", "get_time", item_id="fc_2", output_index=1),
        sse.args_delta("fc_2", 1, '{"tz":'),
        sse.args_delta("fc_1", 0, 'ty":"Par'),
        sse.args_delta("fc_2", 1, '"CET"}'),
        sse.args_delta("fc_1", 0, 'is"}'),
        sse.args_done("fc_1", 0, '{"city":"Paris"}'),
        sse.item_done_function_call("call_a", "get_weather", '{"city":"Paris"}', item_id="fc_1", output_index=0),
        sse.args_done("fc_2", 1, '{"tz":"CET"}'),
        sse.item_done_function_call("call_b", "get_time", '{"tz":"CET"}', item_id="fc_2", output_index=1),
        sse.completed(usage=sse.usage()),
    ]


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time", "description": "time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
]


def test_tool_calls_stream_incrementally_through_the_sdk(envoy, mock_codex, openai_client):
    # The stream is cut into 7-byte TCP writes so events and JSON split anywhere.
    mock_codex.enqueue(Script(body=sse.split(sse.sse(tool_events()), 7)))
    stream = openai_client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "weather and time?"}], tools=TOOLS, tool_choice="required", stream=True
    )
    calls = {}
    finishes = []
    for chunk in stream:
        choice = chunk.choices[0]
        if choice.finish_reason:
            finishes.append(choice.finish_reason)
        for tc in choice.delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                assert entry["id"] is None, "id sent twice"
                entry["id"], entry["name"] = tc.id, tc.function.name
            entry["arguments"] += tc.function.arguments or ""
    assert calls == {
        0: {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        1: {"id": "call_b", "name": "get_time", "arguments": '{"tz":"CET"}'},
    }
    assert finishes == ["tool_calls"]
    sent = mock_codex.last_request.json
    assert sent["tool_choice"] == "required"
    assert sent["tools"][0] == {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def test_tool_calls_and_results_without_streaming(envoy, mock_codex, openai_client):
    mock_codex.enqueue(Script.events(tool_events()))
    result = openai_client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "x"}], tools=TOOLS)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_time", {"tz": "CET"}),
    ]
    # The follow-up turn sends the calls and their results back.
    mock_codex.enqueue(Script.events(sse.text_events(["Sunny, 12:00."])))
    follow = openai_client.chat.completions.create(
        model="gpt-5.5",
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "x"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        ],
    )
    assert follow.choices[0].message.content == "Sunny, 12:00."
    items = mock_codex.last_request.json["input"]
    assert [i["type"] for i in items] == ["message", "function_call", "function_call", "function_call_output", "function_call_output"]
    assert items[1] == {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert items[3] == {"type": "function_call_output", "call_id": "call_a", "output": "sunny"}


def test_multibyte_text_split_across_writes(envoy, mock_codex):
    mock_codex.enqueue(Script(body=sse.split(sse.text_stream(["Grüße ", "🌍 世界"]), 3)))
    resp = post(chat_url(envoy), chat_body())
    assert resp.json()["choices"][0]["message"]["content"] == "Grüße 🌍 世界"


@pytest.mark.parametrize("stream", [True, False])
def test_incomplete_response_finishes_with_length(envoy, mock_codex, stream):
    mock_codex.enqueue(Script.events([sse.created(), sse.text_delta("cut"), sse.incomplete("max_output_tokens", usage=sse.usage())]))
    resp = post(chat_url(envoy), chat_body(stream=stream))
    assert resp.status_code == 200
    if stream:
        assert deltas(sse_data(resp.text))[-2:] == [{"finish": "length"}, "[DONE]"]
    else:
        assert resp.json()["choices"][0]["finish_reason"] == "length"


def test_failed_stream_ends_with_an_error_frame_then_done(envoy, mock_codex):
    mock_codex.enqueue(Script.events([sse.created(), sse.text_delta("partial"), sse.failed("server_is_overloaded", "Overloaded")]))
    resp = post(chat_url(envoy), chat_body(stream=True))
    frames = sse_data(resp.text)
    assert deltas(frames)[-3:] == [{"content": "partial"}, {"error": "server_is_overloaded"}, "[DONE]"]
    assert frames[-2]["error"]["message"] == "Overloaded"
    assert frames[-2]["error"]["type"] == "server_error"


@pytest.mark.parametrize(
    "events, status, code",
    [
        ([sse.created(), sse.failed("context_length_exceeded", "Your input exceeds the context window.")], 400, "context_length_exceeded"),
        ([sse.created(), sse.failed("server_is_overloaded", "busy")], 503, "server_is_overloaded"),
        ([sse.created(), sse.failed("mystery", "???")], 502, "mystery"),
    ],
)
def test_failed_turn_without_streaming_is_an_http_error(envoy, mock_codex, events, status, code):
    mock_codex.enqueue(Script.events(events))
    got_status, error = error_of(post(chat_url(envoy), chat_body()))
    assert (got_status, error["code"]) == (status, code)


@pytest.mark.parametrize("stream", [True, False])
def test_usage_limit_becomes_429_with_retry_after(envoy, mock_codex, stream):
    resets_in = 3600
    mock_codex.enqueue(
        Script.json(
            429,
            {"error": {"type": "usage_limit_reached", "message": "You've hit your usage limit.", "plan_type": "plus", "resets_in_seconds": resets_in}},
            headers={"x-codex-primary-used-percent": "100", "x-codex-primary-reset-after-seconds": str(resets_in)},
        )
    )
    resp = post(chat_url(envoy), chat_body(stream=stream))
    status, error = error_of(resp)
    assert status == 429
    assert (error["type"], error["code"]) == ("usage_limit_reached", "usage_limit_reached")
    assert error["message"] == "You've hit your usage limit."
    assert int(resp.headers["retry-after"]) == resets_in


def test_usage_limit_with_the_sdk_raises_rate_limit_error(envoy, mock_codex, openai_client):
    mock_codex.enqueue(Script.json(429, {"error": {"type": "usage_limit_reached", "message": "limit", "resets_in_seconds": 60}}))
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "x"}])
    assert caught.value.response.headers["retry-after"] == "60"


@pytest.mark.parametrize(
    "script, status, code, text",
    [
        (
            Script.json(400, {"detail": "The 'gpt-9' model is not supported when using Codex with a ChatGPT account."}),
            400,
            "model_not_supported",
            "gpt-9",
        ),
        (Script(status=500, headers={"content-type": "text/plain"}, body=[b"boom"], ending="length"), 502, None, "boom"),
        (Script(status=200, headers={"content-type": "application/json"}, body=[b"{}"], ending="length"), 502, None, "HTTP 502"),
    ],
)
def test_upstream_http_errors_are_openai_errors(envoy, mock_codex, script, status, code, text):
    mock_codex.enqueue(script)
    got_status, error = error_of(post(chat_url(envoy), chat_body(stream=True)))
    assert (got_status, error["code"]) == (status, code)
    assert text in error["message"]


def test_a_401_that_survives_the_refresh_tells_the_user_to_log_in(envoy, mock_codex):
    rejected = Script.json(401, {"error": {"message": "Provided authentication token is expired.", "code": "token_expired"}})
    mock_codex.enqueue(rejected, rejected)
    status, error = error_of(post(chat_url(envoy), chat_body(stream=True)))
    assert (status, error["code"]) == (401, "token_expired")
    assert "make login" in error["message"]
    assert len(mock_codex.requests) == 2, "one retry, not more"


def test_stream_closed_before_completion_reports_an_error(envoy, mock_codex):
    mock_codex.enqueue(Script.events([sse.created(), sse.text_delta("half")], ending="close"))
    resp = post(chat_url(envoy), chat_body(stream=True))
    assert deltas(sse_data(resp.text))[-3:] == [{"content": "half"}, {"error": "stream_incomplete"}, "[DONE]"]


def test_connection_reset_mid_stream_fails_visibly_and_envoy_keeps_serving(envoy, mock_codex):
    mock_codex.enqueue(Script.events([sse.created(), sse.text_delta("half")], ending="abort"))
    with pytest.raises(requests.exceptions.RequestException):
        resp = requests.post(chat_url(envoy), json=chat_body(stream=True), headers=AUTH, timeout=20)
        resp.content  # noqa: B018 - reading the body is what fails
    assert post(chat_url(envoy), chat_body()).json()["choices"][0]["message"]["content"] == "Hello world"


def test_malformed_upstream_sse_never_breaks_the_filter(envoy, mock_codex):
    mock_codex.enqueue(Script(body=[b"data: {not json\n\n", b"\xff\xfe garbage\r\r\n", b"data: [DONE]\n\n"]))
    resp = post(chat_url(envoy), chat_body(stream=True))
    assert deltas(sse_data(resp.text)) == [{"error": "stream_incomplete"}, "[DONE]"]
    assert requests.get(envoy.url + "/health", timeout=5).json() == {"status": "ok"}


def test_non_streaming_sdk_call(envoy, mock_codex, openai_client):
    mock_codex.enqueue(Script.events(sse.text_events(["4"], usage=sse.usage(9, 1))))
    result = openai_client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "2+2?"}])
    assert result.choices[0].message.content == "4"
    assert result.usage.total_tokens == 10


def test_one_conversation_keeps_one_cache_key_and_another_gets_its_own(envoy, mock_codex):
    first_turn = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Plan a trip to Rome."}]
    post(chat_url(envoy), chat_body(messages=first_turn))
    key_1 = mock_codex.last_request.json["prompt_cache_key"]
    second_turn = first_turn + [{"role": "assistant", "content": "When?"}, {"role": "user", "content": "In May."}]
    post(chat_url(envoy), chat_body(messages=second_turn))
    assert mock_codex.last_request.json["prompt_cache_key"] == key_1
    assert mock_codex.last_request.header("session-id") == key_1
    post(chat_url(envoy), chat_body(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write a poem."}]))
    assert mock_codex.last_request.json["prompt_cache_key"] != key_1
