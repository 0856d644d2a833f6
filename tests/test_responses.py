"""`/v1/responses` and `/v1/responses/compact` through the real Envoy and module: the official
`openai` SDK's `responses` API against the mock backend, which answers a body it would refuse
with the backend's own 400 (`as_backend`), so every forced and dropped member is checked where
it lands."""

from __future__ import annotations

import json
import socket
from typing import Any, Dict, List

import openai
import pytest
import requests

from chat_helpers import AUTH, error_of, post
from conftest import TEST_API_KEY
from harness import sse
from harness.mock_codex import CODEX_PATH, COMPACTED_OUTPUT, REJECTED_PARAMETERS, Script, as_backend

DROPPED_BY_THE_WRAPPER = {
    "max_output_tokens": 64,
    "temperature": 0.2,
    "top_p": 0.9,
    "truncation": "auto",
    "user": "u-1",
    "metadata": {"k": "v"},
    "max_tool_calls": 2,
    "top_logprobs": 1,
    "safety_identifier": "s-1",
    "prompt_cache_retention": "24h",
}


def sdk(envoy, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=envoy.url + "/v1", api_key=TEST_API_KEY, max_retries=0, timeout=20, **kwargs)


def access_token(auth_json: str) -> str:
    return json.loads(auth_json)["tokens"]["access_token"]


def assert_normalised(seen: Dict[str, Any]) -> None:
    """What the ChatGPT backend needs, whatever the client sent."""
    assert seen["store"] is False and seen["stream"] is True
    assert seen["include"].count("reasoning.encrypted_content") == 1
    for name in REJECTED_PARAMETERS:
        assert name not in seen, f"{name} reached the backend"
    assert isinstance(seen["input"], list)


def assert_relayed(content: bytes, name: str, output_types: List[str]) -> None:
    """The client got the fixture's records byte for byte, but for the final
    `response.completed`, whose empty `output` is filled in with the items streamed before."""
    upstream = sse.fixture_records(name)
    sent = [record + b"\n\n" for record in content.split(b"\n\n") if record]
    assert len(sent) == len(upstream)
    assert sent[:-1] == upstream[:-1]
    mended = json.loads(sent[-1].split(b"data: ", 1)[1])
    original = json.loads(upstream[-1].split(b"data: ", 1)[1])
    assert original["response"]["output"] == []
    assert [item["type"] for item in mended["response"]["output"]] == output_types
    assert mended == {**original, "response": {**original["response"], "output": mended["response"]["output"]}}


# --------------------------------------------------------------------------------------
# The SDK's responses API


def test_create_streamed_relays_the_backend_events(envoy, mock_codex, openai_client, auth_json):
    mock_codex.enqueue(as_backend(Script.fixture("reasoning")))
    events = list(
        openai_client.responses.create(model="gpt-5.5", input="hello", stream=True, store=True, **DROPPED_BY_THE_WRAPPER)
    )
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Héllo 🌍 世界"
    assert [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"] == ["Think A", "Think B"]
    assert events[-1].response.usage.input_tokens == 10
    seen = mock_codex.last_request
    assert_normalised(seen.json)
    assert seen.json["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}]
    assert seen.json["instructions"] == "You are a helpful assistant."
    assert seen.json["model"] == "gpt-5.5"
    # The wrapper's credentials and identity, never the client's key.
    assert seen.header("authorization") == f"Bearer {access_token(auth_json)}"
    assert seen.header("chatgpt-account-id")
    assert seen.header("originator") == "codex_cli_rs"
    assert TEST_API_KEY not in json.dumps(seen.headers)
    assert seen.header("session-id") == seen.json["prompt_cache_key"]


def test_the_stream_reaches_the_client_as_the_backend_sent_it(envoy, mock_codex):
    mock_codex.enqueue(as_backend(Script.fixture("reasoning")))
    resp = post(envoy.url + "/v1/responses", {"model": "gpt-5.5", "input": "hi", "stream": True})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert_relayed(resp.content, "reasoning", ["reasoning", "message"])


def test_create_not_streamed_returns_the_final_response(envoy, mock_codex, openai_client):
    mock_codex.enqueue(as_backend(Script.fixture("reasoning")))
    response = openai_client.responses.create(model="gpt-5.5", input="hello", max_output_tokens=64)
    assert response.status == "completed"
    assert response.output_text == "Héllo 🌍 世界"
    # The backend's response.completed had an empty output: rebuilt from the finished items.
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].encrypted_content
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 5)
    assert_normalised(mock_codex.last_request.json)


def test_an_incomplete_response_says_why(envoy, mock_codex, openai_client):
    mock_codex.enqueue(Script.fixture("incomplete"))
    response = openai_client.responses.create(model="gpt-5.5", input="hello")
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"


def test_the_stream_helper_accumulates_the_answer(envoy, mock_codex, openai_client):
    mock_codex.enqueue(as_backend(Script.fixture("text")))
    with openai_client.responses.stream(model="gpt-5.5", input="hello", instructions="Be terse.") as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == "Hello world"
    assert final.output_text == "Hello world"
    assert mock_codex.last_request.json["instructions"] == "Be terse."


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather by city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _reasoning_then_call() -> List[dict]:
    return [
        sse.created(),
        sse.item_added_reasoning(),
        sse.reasoning_part_added(),
        sse.reasoning_delta("Checking the weather"),
        sse.item_done_reasoning(["Checking the weather"]),
        sse.item_added_function_call("call_1", "get_weather", output_index=1),
        sse.args_delta("fc_1", 1, '{"city":'),
        sse.args_delta("fc_1", 1, '"Paris"}'),
        sse.args_done("fc_1", 1, '{"city":"Paris"}'),
        sse.item_done_function_call("call_1", "get_weather", '{"city":"Paris"}', output_index=1),
        sse.completed(usage=sse.usage()),
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_round_trip_with_reasoning_items(envoy, mock_codex, openai_client, stream):
    mock_codex.enqueue(as_backend(Script.events(_reasoning_then_call())), as_backend(Script.fixture("text")))
    question = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with openai_client.responses.stream(model="gpt-5.5", input=question, tools=[WEATHER_TOOL]) as events:
            first = events.get_final_response()
    else:
        first = openai_client.responses.create(model="gpt-5.5", input=question, tools=[WEATHER_TOOL])
    reasoning, call = first.output
    assert (reasoning.type, reasoning.encrypted_content) == ("reasoning", "gAAAAB-test")
    assert (call.type, call.call_id, call.name, call.arguments) == ("function_call", "call_1", "get_weather", '{"city":"Paris"}')
    sent = mock_codex.last_request.json
    assert sent["tools"] == [WEATHER_TOOL]

    # The next turn sends everything again (the backend stores nothing), reasoning included.
    follow_up = [*question, *[item.model_dump(exclude_none=True) for item in first.output]]
    follow_up.append({"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'})
    second = openai_client.responses.create(model="gpt-5.5", input=follow_up, tools=[WEATHER_TOOL])
    assert second.output_text == "Hello world"
    seen = mock_codex.last_request.json
    assert_normalised(seen)
    assert seen["input"] == follow_up
    assert seen["input"][1]["encrypted_content"] == "gAAAAB-test"
    assert seen["input"][-1] == {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'}
    # One conversation, one cache key across its turns.
    first_key, second_key = (r.json["prompt_cache_key"] for r in mock_codex.requests[-2:])
    assert first_key == second_key


# --------------------------------------------------------------------------------------
# Failures


@pytest.mark.parametrize("stream", [False, True])
def test_a_usage_limit_is_a_rate_limit_error_with_retry_after(envoy, mock_codex, openai_client, stream):
    mock_codex.enqueue(
        Script.json(429, {"error": {"type": "usage_limit_reached", "message": "You've hit your usage limit.", "resets_in_seconds": 120}})
    )
    with pytest.raises(openai.RateLimitError) as caught:
        result = openai_client.responses.create(model="gpt-5.5", input="hello", stream=stream)
        if stream:
            list(result)
    assert caught.value.response.headers["retry-after"] == "120"
    assert caught.value.body["type"] == "usage_limit_reached"
    assert caught.value.body["code"] == "usage_limit_reached"


def test_a_failure_inside_the_stream_reaches_the_sdk(envoy, mock_codex, openai_client):
    # response.failed is an event the SDK hands over with the backend's error.
    mock_codex.enqueue(Script.fixture("failed"))
    events = list(openai_client.responses.create(model="gpt-5.5", input="hello", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "server_is_overloaded"
    # An `error` event (here the usage limit, in the 200 stream) is raised.
    mock_codex.enqueue(Script.fixture("usage_limit"))
    with pytest.raises(openai.APIError) as caught:
        list(openai_client.responses.create(model="gpt-5.5", input="hello", stream=True))
    assert caught.value.body["type"] == "usage_limit_reached"


def test_a_stream_cut_short_ends_with_an_error_event(envoy, mock_codex, openai_client):
    # The connection closes in the middle of an event (a reset instead is Envoy's to report).
    mock_codex.enqueue(Script.fixture("dropped", ending="close"))
    received: List[str] = []
    with pytest.raises(openai.APIError) as caught:
        for event in openai_client.responses.create(model="gpt-5.5", input="hello", stream=True):
            received.append(event.type)
    assert "response.output_text.delta" in received
    assert caught.value.body["code"] == "stream_incomplete"
    assert "closed the stream" in caught.value.message


@pytest.mark.parametrize(
    "fixture, status, code, error",
    [
        ("failed", 503, "server_is_overloaded", openai.InternalServerError),
        ("usage_limit", 429, "usage_limit_reached", openai.RateLimitError),
        ("dropped", 502, "stream_incomplete", openai.InternalServerError),
    ],
)
def test_a_failed_turn_is_an_error_status_for_a_non_streaming_client(envoy, mock_codex, openai_client, fixture, status, code, error):
    mock_codex.enqueue(Script.fixture(fixture, ending="close" if fixture == "dropped" else "chunked"))
    with pytest.raises(error) as caught:
        openai_client.responses.create(model="gpt-5.5", input="hello")
    assert caught.value.status_code == status
    assert caught.value.body["code"] == code


def test_the_key_gate_applies(envoy, mock_codex):
    client = openai.OpenAI(base_url=envoy.url + "/v1", api_key="wrong", max_retries=0, timeout=20)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.responses.create(model="gpt-5.5", input="hello")
    assert caught.value.body["code"] == "invalid_api_key"
    assert mock_codex.requests == []


def test_previous_response_id_is_refused_before_the_backend(envoy, mock_codex, openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(model="gpt-5.5", input="more", previous_response_id="resp_1")
    assert caught.value.body["code"] == "previous_response_unsupported"
    assert caught.value.body["param"] == "previous_response_id"
    assert "Send the whole conversation in `input`" in caught.value.message
    assert mock_codex.requests == []


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "gpt-5.5"}, "input"),
        ({"input": 5}, "input"),
        ({"input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"input": "x", "background": True}, "background"),
        ({"input": "x", "prompt_cache_key": " padded"}, "prompt_cache_key"),
    ],
)
def test_bad_bodies_never_reach_the_backend(envoy, mock_codex, body, param):
    status, error = error_of(post(envoy.url + "/v1/responses", body))
    assert (status, error["type"], error["param"]) == (400, "invalid_request_error", param)
    assert mock_codex.requests == []


# --------------------------------------------------------------------------------------
# Codex CLI's requests


def test_codex_turn_headers_and_client_metadata_are_kept(envoy, mock_codex):
    turn = {
        "session-id": "01a230d8-5c2a-7e83-91b9-ba0df6da9322",
        "thread-id": "01a230d8-5c2a-7e83-91b9-ba0df6da9322",
        "x-client-request-id": "01a230d8-5c2a-7e83-91b9-ba0df6da9322",
        "x-codex-window-id": "01a230d8-5c2a-7e83-91b9-ba0df6da9322:0",
        "x-codex-turn-metadata": '{"turn_id":"t1"}',
        "x-codex-beta-features": "remote_compaction_v2",
        "x-openai-internal-codex-responses-lite": "true",
    }
    body = {
        "model": "gpt-5.5",
        "stream": True,
        "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low", "context": "all_turns"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "01a230d8-5c2a-7e83-91b9-ba0df6da9322",
        "text": {"verbosity": "low"},
        "client_metadata": {"x-codex-installation-id": "77d734f5", "turn_id": "t1"},
    }
    mock_codex.enqueue(as_backend())
    resp = post(envoy.url + "/v1/responses", body, headers={**turn, "originator": "codex_exec"})
    assert resp.status_code == 200
    assert_relayed(resp.content, "text", ["message"])
    seen = mock_codex.last_request
    for name, value in turn.items():
        assert seen.header(name) == value, name
    # The lite shape carries its instructions in `input`: none are added, the rest is as sent.
    assert seen.json == {**body, "model": "gpt-5.5"}


def test_compaction_is_passed_through(envoy, mock_codex, auth_json):
    body = {"model": "gpt-5.5", "input": [{"type": "message", "role": "user", "content": "long history"}], "instructions": "x"}
    resp = post(envoy.url + "/v1/responses/compact", body, headers={"session-id": "s-1"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"output": COMPACTED_OUTPUT}
    seen = mock_codex.last_request
    assert seen.path == CODEX_PATH + "/compact"
    assert seen.json == body
    assert seen.header("authorization") == f"Bearer {access_token(auth_json)}"
    assert seen.header("session-id") == "s-1"
    # An upstream error keeps its OpenAI shape and status.
    mock_codex.enqueue(Script.json(400, {"detail": "Input is too long"}))
    status, error = error_of(post(envoy.url + "/v1/responses/compact", body))
    assert (status, error["message"]) == (400, "Input is too long")


def _raw_http(envoy, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        return data


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def test_a_websocket_handshake_is_told_to_use_http(envoy, mock_codex):
    handshake = (
        "GET /v1/responses HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{envoy.port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "OpenAI-Beta: responses_websockets=2026-02-06\r\n"
        f"Authorization: Bearer {TEST_API_KEY}\r\n"
        "\r\n"
    ).encode()
    answer = _raw_http(envoy, handshake)
    head, body = answer.split(b"\r\n\r\n", 1)
    # 426 is what makes Codex CLI fall back to HTTP at once (any other status it retries).
    assert head.startswith(b"HTTP/1.1 426"), head
    error = json.loads(body)["error"]
    assert (error["code"], error["type"]) == ("websocket_unsupported", "invalid_request_error")
    assert "HTTP POST /v1/responses" in error["message"]
    assert mock_codex.requests == []


def test_responses_under_a_reasoning_mode_prefix(envoy_factory, mock_codex):
    envoy = envoy_factory(REASONING_OUTPUT_MODE="all")
    mock_codex.enqueue(as_backend())
    resp = post(envoy.url + "/tagged/v1/responses", {"model": "gpt-5.5", "input": "hi", "stream": True})
    assert resp.status_code == 200
    assert_relayed(resp.content, "text", ["message"])


def test_portable_mode_relays_too(envoy_factory, mock_codex):
    envoy = envoy_factory(portable=True)
    mock_codex.enqueue(as_backend(), as_backend())
    streamed = post(envoy.url + "/v1/responses", {"model": "gpt-5.5", "input": "hi", "stream": True})
    assert_relayed(streamed.content, "text", ["message"])
    whole = post(envoy.url + "/v1/responses", {"model": "gpt-5.5", "input": "hi"})
    assert whole.json()["output"][0]["content"][0]["text"] == "Hello world"


# --------------------------------------------------------------------------------------
# API-key upstreams


def test_an_api_key_upstream_gets_the_body_as_sent(envoy_factory, mock_codex):
    envoy = envoy_factory(
        UPSTREAM_AUTH_MODE="apikey_env",
        UPSTREAM_API_KEY="sk-upstream",
        UPSTREAM_BASE_URL=mock_codex.origin + "/backend-api/codex",
        CHATGPT_RESPONSES_URL=None,
        OPENAI_CODEX_AUTH=None,
    )
    final = {"id": "resp_k", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-4.1", "output": []}
    mock_codex.enqueue(Script.json(200, final), Script.fixture("text"))
    body = {"model": "gpt-4.1", "input": "hi", "temperature": 0.3, "max_output_tokens": 9, "previous_response_id": "resp_0", "store": True}
    raw = json.dumps(body, separators=(",", ":")).encode()
    resp = post(envoy.url + "/v1/responses", None, raw=raw)
    assert resp.status_code == 200
    assert resp.json() == final
    seen = mock_codex.last_request
    assert seen.path == CODEX_PATH
    assert seen.body == raw
    assert seen.header("authorization") == "Bearer sk-upstream"
    assert seen.header("chatgpt-account-id") is None and seen.header("session-id") is None
    streamed = post(envoy.url + "/v1/responses", {**body, "stream": True})
    assert_relayed(streamed.content, "text", ["message"])


def test_a_non_post_gets_405(envoy):
    resp = requests.get(envoy.url + "/v1/responses", headers=AUTH, timeout=10)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"


def test_usage_and_rate_limits_are_read_on_the_way(envoy_factory, mock_codex):
    envoy = envoy_factory()
    limits = {"x-codex-primary-used-percent": "42", "x-codex-primary-window-minutes": "300", "x-codex-primary-reset-at": "1767225600"}
    stream = sse.text_events(["hi"], usage=sse.usage(7, 3, reasoning_tokens=1))
    mock_codex.enqueue(Script.events(stream, headers={"content-type": "text/event-stream", **limits}))
    resp = post(envoy.url + "/v1/responses", {"model": "gpt-5.5", "input": "hi", "stream": True})
    assert resp.status_code == 200
    for name, value in limits.items():
        assert resp.headers[name] == value, name
    values = {}
    for line in requests.get(envoy.admin_url + "/stats/prometheus", timeout=5).text.splitlines():
        if not line.startswith("#") and "codex" in line:
            name, _, value = line.rpartition(" ")
            values[name] = float(value)

    def stat(fragment: str) -> float:
        matches = [v for k, v in values.items() if fragment in k]
        assert matches, f"no stat containing {fragment!r} in {sorted(values)}"
        return sum(matches)

    assert stat("codex_requests_responses_2xx") == 1
    assert (stat("codex_tokens_prompt"), stat("codex_tokens_completion")) == (7, 3)
    assert stat("codex_rate_limit_primary_used_percent") == 42
