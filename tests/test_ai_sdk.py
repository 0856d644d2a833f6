"""The AI SDK (`ai` + `@ai-sdk/openai`, tests/node): `openai('<model>')` is its Responses
model, so `generateText` and `streamText` call `POST /v1/responses` on the wrapper."""

from __future__ import annotations

import json

import pytest

from conftest import TEST_API_KEY
from harness import sse, tokens
from harness.mock_codex import CODEX_PATH, Script
from node_clients import NODE_DIR, node_module, run_node_script

MODEL = "gpt-6.1-sol"


@pytest.mark.parametrize("mode", ["generate", "stream"])
def test_ai_sdk_default_openai_model_answers_through_the_wrapper(envoy, mock_codex, auth_json, mode):
    node_module("ai")
    node_module("@ai-sdk/openai")
    mock_codex.enqueue(Script.events(sse.text_events(["Hello", " from", " the mock"], usage=sse.usage(12, 5), model=MODEL)))

    result = run_node_script(
        NODE_DIR / "ai_sdk.mjs",
        {"WRAPPER_BASE_URL": envoy.url + "/v1", "WRAPPER_API_KEY": TEST_API_KEY, "MODEL": MODEL},
        [mode],
    )

    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-3000:]}"
    answer = json.loads(result.stdout)
    assert answer["text"] == "Hello from the mock"
    assert answer["finishReason"] == "stop"
    assert (answer["usage"]["inputTokens"], answer["usage"]["outputTokens"]) == (12, 5)
    if mode == "stream":
        assert answer["parts"] == ["Hello", " from", " the mock"]
    [seen] = [r for r in mock_codex.requests if r.path == CODEX_PATH]
    assert seen.header("authorization") == "Bearer " + json.loads(auth_json)["tokens"]["access_token"]
    assert seen.header("chatgpt-account-id") == tokens.DEFAULT_ACCOUNT_ID
    assert TEST_API_KEY not in json.dumps(seen.headers)
    body = seen.json
    assert (body["model"], body["store"], body["stream"]) == (MODEL, False, True)
    user_messages = [item for item in body["input"] if item.get("role") == "user"]
    assert [m["content"] for m in user_messages] == [[{"type": "input_text", "text": "Say hello"}]]
