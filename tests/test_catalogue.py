"""The model catalogue through the real Envoy: `/v1/models` for the OpenAI SDK and for Codex
CLI, the per-model rules the backend sees (effort, service tier), and the exact upstream
request of a lite model and of a classic one, next to the official client's."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
import requests

from chat_helpers import AUTH, post
from harness import tokens

RECORDED_TURN = Path(__file__).parent / "fixtures" / "requests" / "codex-0.169.0-lite-turn.json"
LITE_HEADER = "x-openai-internal-codex-responses-lite"

# The built-in catalogue's `visibility: list` entries in priority order (Codex CLI 0.169.0).
LISTED = [
    "gpt-6.1-sol",
    "gpt-6-astra",
    "gpt-6-sol",
    "gpt-6-luna",
    "gpt-5.6-sol",
    "gpt-6.1-terra",
    "gpt-5.6-terra",
    "gpt-5.6-luna",
    "gpt-5.5",
]
HIDDEN = ["gpt-daybreak-blue-latest", "gpt-daybreak-red-latest", "codex-auto-review"]

# codex-rs `ModelInfo` fields without a serde default, and the JSON type Codex CLI reads.
CODEX_REQUIRED = {
    "slug": str,
    "display_name": str,
    "supported_reasoning_levels": list,
    "shell_type": str,
    "visibility": str,
    "supported_in_api": bool,
    "priority": int,
    "base_instructions": str,
    "supports_reasoning_summaries": bool,
    "support_verbosity": bool,
    "truncation_policy": dict,
    "supports_parallel_tool_calls": bool,
    "experimental_supported_tools": list,
}

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
FLAT_TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Weather in Paris?"}]
USER_ITEM = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}

# What the official client sends that the filter does not (it has no installation, window or
# turn of its own): per-turn metadata headers and the body's `client_metadata`.
NOT_MIRRORED_HEADERS = {"x-codex-beta-features", "x-codex-window-id", "x-codex-turn-metadata", "x-client-request-id", "thread-id"}
NOT_MIRRORED_BODY = {"client_metadata"}


def recorded_turn():
    return json.loads(RECORDED_TURN.read_text(encoding="utf-8"))


def test_the_sdk_lists_the_catalogue_and_retrieves_hidden_models(openai_client):
    assert [m.id for m in openai_client.models.list()] == LISTED
    for hidden in HIDDEN:
        model = openai_client.models.retrieve(hidden)
        assert (model.id, model.object, model.owned_by) == (hidden, "model", "openai-codex")
    sol = openai_client.models.retrieve("gpt-6.1-sol")
    assert (sol.display_name, sol.context_window) == ("GPT-6.1-Sol", 272000)
    for gone in ("gpt-5.2", "gpt-5.4"):
        with pytest.raises(openai.NotFoundError):
            openai_client.models.retrieve(gone)


def test_codex_cli_gets_the_catalogue_in_its_own_shape(envoy):
    resp = requests.get(envoy.url + "/v1/models?client_version=0.169.0", headers=AUTH, timeout=5)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    models = resp.json()["models"]
    # Every entry, hidden ones too, in priority order.
    assert [m["slug"] for m in models] == [
        "gpt-6.1-sol",
        "gpt-6-astra",
        "gpt-6-sol",
        "gpt-6-luna",
        "gpt-5.6-sol",
        "gpt-6.1-terra",
        "gpt-5.6-terra",
        "gpt-5.6-luna",
        "gpt-daybreak-blue-latest",
        "gpt-daybreak-red-latest",
        "gpt-5.5",
        "codex-auto-review",
    ]
    for model in models:
        for name, kind in CODEX_REQUIRED.items():
            assert isinstance(model.get(name), kind), (model["slug"], name, model.get(name))
        for level in model["supported_reasoning_levels"]:
            assert isinstance(level["effort"], str) and isinstance(level["description"], str), model["slug"]
        for tier in model.get("service_tiers", []):
            assert all(isinstance(tier[f], str) for f in ("id", "name", "description")), model["slug"]
        assert "model_messages" not in model
    sol = models[0]
    assert (sol["visibility"], sol["priority"], sol["use_responses_lite"], sol["default_reasoning_level"]) == ("list", 1, True, "low")


def chat(envoy, body):
    resp = post(envoy.url + "/v1/chat/completions", body)
    assert resp.status_code == 200, resp.text
    return resp


def test_the_lite_request_is_pinned_and_matches_the_official_one(envoy_factory, mock_codex, auth_json):
    # The official client sends no reasoning summary for these models (their default is none).
    envoy = envoy_factory(REASONING_SUMMARY="none")
    chat(envoy, {"model": "gpt-6.1-sol", "messages": MESSAGES, "tools": [TOOL]})
    seen = mock_codex.last_request
    key = seen.json["prompt_cache_key"]
    assert seen.json == {
        "model": "gpt-6.1-sol",
        "input": [
            {"type": "additional_tools", "role": "developer", "tools": [FLAT_TOOL]},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be terse."}]},
            USER_ITEM,
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low", "context": "all_turns"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": key,
        "text": {"verbosity": "low"},
    }
    doc = json.loads(auth_json)
    assert seen.header(LITE_HEADER) == "true"
    assert seen.header("session-id") == key
    assert seen.header("authorization") == "Bearer " + doc["tokens"]["access_token"]
    assert seen.header("chatgpt-account-id") == tokens.DEFAULT_ACCOUNT_ID
    assert (seen.header("accept"), seen.header("content-type")) == ("text/event-stream", "application/json")
    assert seen.header("user-agent").startswith(seen.header("originator") + "/")

    official = recorded_turn()
    assert set(official["body"]) - set(seen.json) == NOT_MIRRORED_BODY
    assert set(seen.json) - set(official["body"]) == set()
    assert set(official["body"]["reasoning"]) == set(seen.json["reasoning"])
    assert {k: official["body"][k] for k in ("tool_choice", "parallel_tool_calls", "store", "stream", "include", "text")} == {
        k: seen.json[k] for k in ("tool_choice", "parallel_tool_calls", "store", "stream", "include", "text")
    }
    assert set(official["headers"]) - set(seen.headers) == NOT_MIRRORED_HEADERS
    assert official["headers"][LITE_HEADER] == seen.header(LITE_HEADER)


def test_the_classic_request_is_pinned(envoy_factory, mock_codex):
    envoy = envoy_factory(REASONING_SUMMARY="none")
    chat(envoy, {"model": "gpt-5.5", "messages": MESSAGES, "tools": [TOOL]})
    seen = mock_codex.last_request
    key = seen.json["prompt_cache_key"]
    assert seen.json == {
        "model": "gpt-5.5",
        "instructions": "Be terse.",
        "input": [USER_ITEM],
        "tools": [FLAT_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "medium"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": key,
        "text": {"verbosity": "low"},
    }
    assert seen.header(LITE_HEADER) is None
    assert seen.header("session-id") == key
    official = recorded_turn()["body"]
    assert set(seen.json) - set(official) == {"instructions", "tools"}
    assert set(official) - set(seen.json) == NOT_MIRRORED_BODY


def test_portable_mode_sends_lite_models_in_the_classic_shape(envoy_factory, mock_codex):
    envoy = envoy_factory(portable=True)
    chat(envoy, {"model": "gpt-6.1-sol", "messages": MESSAGES, "reasoning_effort": "ultra"})
    seen = mock_codex.last_request
    assert seen.header(LITE_HEADER) is None
    assert seen.json["instructions"] == "Be terse." and seen.json["tools"] == []
    assert (seen.json["parallel_tool_calls"], seen.json["reasoning"]["effort"]) == (False, "max")


@pytest.mark.parametrize(
    "model, extra, effort, tier",
    [
        # No effort anywhere: the model's catalogue default.
        ("gpt-6.1-sol", {}, "low", None),
        ("gpt-6-luna", {}, "medium", "priority"),
        # Efforts: clamped to the model's list (nearest, ties upward), ultra sent as max.
        ("gpt-6.1-sol", {"reasoning_effort": "ultra"}, "max", None),
        ("gpt-6-luna", {"reasoning": {"effort": "ultra"}}, "max", "priority"),
        ("gpt-5.5", {"reasoning_effort": "ultra"}, "xhigh", None),
        ("gpt-5.5", {"reasoning_effort": "max"}, "xhigh", None),
        ("gpt-5.5", {"reasoning_effort": "minimal"}, "low", None),
        ("gpt-5.5-high", {}, "high", None),
        ("gpt-6-sol:ultra", {}, "max", "priority"),
        ("some-future-model", {"reasoning_effort": "ultra"}, "max", None),
        ("some-future-model", {"reasoning_effort": "minimal"}, "minimal", None),
        # Tiers: only what the model lists; fast means priority; default drops the catalogue's.
        ("gpt-6.1-sol", {"service_tier": "fast"}, "low", "priority"),
        ("gpt-6.1-sol", {"service_tier": "flex"}, "low", None),
        ("gpt-5.5", {"service_tier": "default"}, "medium", None),
        ("gpt-5.5-fast", {}, "medium", "priority"),
        ("gpt-5.5-fast-xhigh", {}, "xhigh", "priority"),
        ("gpt-6-sol", {}, "medium", "priority"),
        ("gpt-6-sol", {"service_tier": "default"}, "medium", None),
        ("gpt-daybreak-blue-latest", {"service_tier": "priority"}, "low", None),
    ],
)
def test_effort_and_tier_rules_reach_the_backend(envoy, mock_codex, model, extra, effort, tier):
    chat(envoy, {"model": model, "messages": [{"role": "user", "content": "x"}], **extra})
    sent = mock_codex.last_request.json
    assert sent["reasoning"]["effort"] == effort
    assert sent.get("service_tier") == tier


def test_completions_follow_the_same_rules(envoy, mock_codex):
    resp = post(envoy.url + "/v1/completions", {"model": "gpt-6-astra-fast", "prompt": "2+2=", "reasoning_effort": "ultra"})
    assert resp.status_code == 200, resp.text
    seen = mock_codex.last_request
    assert seen.header(LITE_HEADER) == "true"
    assert (seen.json["model"], seen.json["reasoning"]["effort"], seen.json["service_tier"]) == ("gpt-6-astra", "max", "priority")
    assert seen.json["input"][0]["type"] == "additional_tools" and "instructions" not in seen.json
    assert resp.json()["model"] == "gpt-6-astra"
