"""Every recorded upstream stream (tests/fixtures/streams) through Envoy and the module, for
chat and text completions, streamed and not: the same answers the core's unit tests expect."""

from __future__ import annotations

from typing import Any, List

import pytest

from chat_helpers import chat_body, error_of, post, sse_data
from harness import sse
from harness.mock_codex import Script

# fixture -> (streamed: text|finish|total tokens or text|error code,
#             not streamed: status text|finish|total tokens or status error code)
EXPECTED = {
    "text": ("Hello world|stop|17", "200 Hello world|stop|17"),
    "reasoning": ("Héllo 🌍 世界|stop|15", "200 Héllo 🌍 世界|stop|15"),
    "parallel_tools": ("|tool_calls|60", "200 |tool_calls|60"),
    "incomplete": ("The answer is cut|length|15", "200 The answer is cut|length|15"),
    "failed": ("partial|server_is_overloaded", "503 server_is_overloaded"),
    "usage_limit": ("|usage_limit_reached", "429 usage_limit_reached"),
    "policy_refusal": ("|misalignment_policy_violation", "400 misalignment_policy_violation"),
    "policy_error": ("|misalignment_policy_violation", "400 misalignment_policy_violation"),
    "dropped": ("Hello wo|stream_incomplete", "502 stream_incomplete"),
}

ENDPOINTS = {
    "chat": ("/v1/chat/completions", lambda stream: chat_body(stream=stream, stream_options={"include_usage": True})),
    "completions": (
        "/v1/completions",
        lambda stream: {"model": "gpt-5.5", "prompt": "hello", "stream": stream, "stream_options": {"include_usage": True}},
    ),
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(sse.FIXTURES)


def brief_stream(frames: List[Any]) -> str:
    assert frames[-1] == "[DONE]" and frames.count("[DONE]") == 1, frames
    text, end = "", []
    for frame in frames[:-1]:
        if "error" in frame:
            end.append(frame["error"]["code"])
            continue
        for choice in frame["choices"]:
            text += choice.get("delta", {}).get("content") or choice.get("text") or ""
            if choice["finish_reason"]:
                end.append(choice["finish_reason"])
        if frame.get("usage"):
            end.append(str(frame["usage"]["total_tokens"]))
    return "|".join([text, *end])


def script(name: str) -> Script:
    # `dropped` was cut mid-event by a connection that closed.
    return Script.fixture(name, ending="close" if name == "dropped" else "chunked")


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("name", sse.FIXTURES)
def test_fixture_streamed(envoy, mock_codex, name, endpoint):
    path, body = ENDPOINTS[endpoint]
    mock_codex.enqueue(script(name))
    resp = post(envoy.url + path, body(True))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert brief_stream(sse_data(resp.text)) == EXPECTED[name][0]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("name", sse.FIXTURES)
def test_fixture_not_streamed(envoy, mock_codex, name, endpoint):
    path, body = ENDPOINTS[endpoint]
    mock_codex.enqueue(script(name))
    resp = post(envoy.url + path, body(False))
    if resp.status_code != 200:
        status, error = error_of(resp)
        assert f"{status} {error['code']}" == EXPECTED[name][1]
        if name == "usage_limit":
            assert resp.headers["retry-after"] == "300"
        return
    answer = resp.json()
    choice = answer["choices"][0]
    text = choice["message"]["content"] if endpoint == "chat" else choice["text"]
    assert f"200 {text or ''}|{choice['finish_reason']}|{answer['usage']['total_tokens']}" == EXPECTED[name][1]
    if name == "parallel_tools" and endpoint == "chat":
        assert [c["function"]["arguments"] for c in choice["message"]["tool_calls"]] == ['{"city":"Paris"}', '{"tz":"CET"}']
