"""`POST /v1/completions` through the real Envoy: text_completion objects, streamed and not."""

from __future__ import annotations

import openai
import pytest

from chat_helpers import error_of, post, sse_data
from harness import sse
from harness.mock_codex import Script


def url(envoy) -> str:
    return envoy.url + "/v1/completions"


def test_streamed_text_completion(envoy, mock_codex):
    mock_codex.enqueue(Script.events(sse.text_events(["Waves ", "fold"], usage=sse.usage(4, 2))))
    resp = post(url(envoy), {"model": "gpt-5.5", "prompt": "Write a haiku.", "stream": True, "stream_options": {"include_usage": True}})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    frames = sse_data(resp.text)
    assert [f["choices"][0]["text"] for f in frames[:3]] == ["Waves ", "fold", ""]
    assert [f["choices"][0]["finish_reason"] for f in frames[:3]] == [None, None, "stop"]
    assert frames[0]["object"] == "text_completion"
    assert frames[0]["id"].startswith("cmpl-")
    assert frames[3]["choices"] == [] and frames[3]["usage"]["total_tokens"] == 6
    assert frames[4] == "[DONE]"
    sent = mock_codex.last_request.json
    assert sent["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Write a haiku."}]}]
    assert (sent["stream"], sent["store"], "max_tokens" in sent) == (True, False, False)


def test_text_completion_with_the_sdk(envoy, mock_codex, openai_client):
    mock_codex.enqueue(Script.events([sse.created(), sse.reasoning_delta("hidden thoughts"), sse.text_delta("4"), sse.completed(usage=sse.usage(3, 1))]))
    result = openai_client.completions.create(model="gpt-5.5", prompt="2+2=")
    assert result.object == "text_completion"
    assert result.choices[0].text == "4"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.total_tokens == 4


def test_streamed_text_completion_with_the_sdk(envoy, mock_codex, openai_client):
    mock_codex.enqueue(Script(body=sse.split(sse.text_stream(["a", "b", "c"]), 5)))
    text = "".join(chunk.choices[0].text for chunk in openai_client.completions.create(model="gpt-5.5", prompt="x", stream=True) if chunk.choices)
    assert text == "abc"


@pytest.mark.parametrize("stream", [True, False])
def test_failed_completion_is_reported(envoy, mock_codex, stream):
    mock_codex.enqueue(Script.events([sse.created(), sse.text_delta("par"), sse.failed("server_is_overloaded", "busy")]))
    resp = post(url(envoy), {"prompt": "x", "stream": stream})
    if stream:
        frames = sse_data(resp.text)
        assert frames[-2]["error"]["code"] == "server_is_overloaded" and frames[-1] == "[DONE]"
    else:
        assert error_of(resp)[0] == 503


def test_usage_limit_on_completions_is_429(envoy, mock_codex, openai_client):
    mock_codex.enqueue(Script.json(429, {"error": {"type": "usage_limit_reached", "message": "limit", "resets_in_seconds": 30}}))
    with pytest.raises(openai.RateLimitError):
        openai_client.completions.create(model="gpt-5.5", prompt="x")


@pytest.mark.parametrize("body, param", [({}, "prompt"), ({"prompt": [1, 2]}, "prompt"), ({"prompt": "x", "reasoning_effort": "extreme"}, "reasoning_effort")])
def test_bad_completion_requests_are_400(envoy, mock_codex, body, param):
    status, error = error_of(post(url(envoy), body))
    assert (status, error["param"]) == (400, param)
    assert mock_codex.requests == []
