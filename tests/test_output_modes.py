"""REASONING_OUTPUT_MODE and the prefixed route families, streamed and not, through Envoy."""

from __future__ import annotations

import pytest
import requests

from chat_helpers import AUTH, chat_body, deltas, post, sse_data
from harness import sse
from harness.mock_codex import Script


def reasoning_script() -> Script:
    return Script.events(
        [
            sse.created(),
            sse.reasoning_part_added(summary_index=0),
            sse.reasoning_delta("Think A", summary_index=0),
            sse.reasoning_part_added(summary_index=1),
            sse.reasoning_delta("Think B", summary_index=1),
            sse.text_delta("Hello"),
            sse.completed(usage=sse.usage()),
        ]
    )


STREAMED = {
    "openai": [{"reasoning_content": "Think A"}, {"reasoning_content": "\n"}, {"reasoning_content": "Think B"}, {"content": "Hello"}],
    "r1": [{"reasoning_content": "Think A"}, {"reasoning_content": "Think B"}, {"content": "Hello"}],
    "o3": [
        {"reasoning": {"content": [{"type": "text", "text": "Think A"}]}},
        {"reasoning": {"content": [{"type": "text", "text": "\n"}]}},
        {"reasoning": {"content": [{"type": "text", "text": "Think B"}]}},
        {"content": "Hello"},
    ],
    "tagged": [{"content": "<think>"}, {"content": "Think A"}, {"content": "\n"}, {"content": "Think B"}, {"content": "</think>"}, {"content": "Hello"}],
    "hidden": [{"content": "Hello"}],
}

MESSAGES = {
    "openai": {"role": "assistant", "content": "Hello", "reasoning_content": "Think A\nThink B"},
    "r1": {"role": "assistant", "content": "Hello", "reasoning_content": "Think AThink B"},
    "o3": {"role": "assistant", "content": "Hello", "reasoning": {"content": [{"type": "text", "text": "Think A\nThink B"}]}},
    "tagged": {"role": "assistant", "content": "<think>Think A\nThink B</think>Hello"},
    "hidden": {"role": "assistant", "content": "Hello"},
}


@pytest.fixture(scope="module")
def all_modes_envoy(wasm_module, _mock_codex_server, auth_json, tmp_path_factory):
    from conftest import default_env
    from harness.envoy import start_envoy

    env = {**default_env(_mock_codex_server, auth_json), "REASONING_OUTPUT_MODE": "all"}
    handle = start_envoy(env, wasm=wasm_module, workdir=tmp_path_factory.mktemp("envoy-all"))
    yield handle
    handle.stop()


@pytest.mark.parametrize("mode", list(STREAMED))
def test_each_mode_streamed_via_its_prefix(all_modes_envoy, mock_codex, mode):
    mock_codex.enqueue(reasoning_script())
    resp = post(f"{all_modes_envoy.url}/{mode}/v1/chat/completions", chat_body(stream=True))
    assert deltas(sse_data(resp.text)) == [{"role": "assistant", "content": ""}, *STREAMED[mode], {"finish": "stop"}, "[DONE]"]


@pytest.mark.parametrize("mode", list(MESSAGES))
def test_each_mode_aggregated_via_its_prefix(all_modes_envoy, mock_codex, mode):
    mock_codex.enqueue(reasoning_script())
    resp = post(f"{all_modes_envoy.url}/{mode}/v1/chat/completions", chat_body())
    assert resp.json()["choices"][0]["message"] == MESSAGES[mode]


def test_root_routes_stay_openai_under_all(all_modes_envoy, mock_codex):
    mock_codex.enqueue(reasoning_script())
    assert post(all_modes_envoy.url + "/v1/chat/completions", chat_body()).json()["choices"][0]["message"] == MESSAGES["openai"]
    assert requests.get(all_modes_envoy.url + "/tagged/v1/models", headers=AUTH, timeout=5).json()["object"] == "list"


@pytest.mark.parametrize("mode", ["tagged", "hidden"])
def test_a_single_mode_applies_to_v1_and_prefixes_are_404(envoy_factory, mock_codex, mode):
    envoy = envoy_factory(REASONING_OUTPUT_MODE=mode)
    mock_codex.enqueue(reasoning_script())
    assert post(envoy.url + "/v1/chat/completions", chat_body()).json()["choices"][0]["message"] == MESSAGES[mode]
    assert post(envoy.url + "/tagged/v1/chat/completions", chat_body()).status_code == 404


def test_reasoning_settings_reach_the_upstream(envoy_factory, mock_codex):
    envoy = envoy_factory(REASONING_EFFORT="high", REASONING_SUMMARY="off")
    post(envoy.url + "/v1/chat/completions", chat_body())
    assert mock_codex.last_request.json["reasoning"] == {"effort": "high"}
    post(envoy.url + "/v1/chat/completions", chat_body(model="gpt-5.5-medium", reasoning={"summary": "detailed"}))
    assert mock_codex.last_request.json["reasoning"] == {"effort": "medium", "summary": "detailed"}
    post(envoy.url + "/v1/chat/completions", chat_body(reasoning_effort="xhigh"))
    assert mock_codex.last_request.json["reasoning"]["effort"] == "xhigh"


def test_model_aliases_and_debug_model(envoy_factory, mock_codex):
    envoy = envoy_factory()
    resp = post(envoy.url + "/v1/chat/completions", chat_body(model="gpt-5-codex-latest"))
    assert (mock_codex.last_request.json["model"], resp.json()["model"]) == ("gpt-6.1-sol", "gpt-6.1-sol")
    for retired, current in [("gpt-5.4", "gpt-5.6-terra"), ("GPT-5.4-mini-high", "gpt-5.6-luna"), ("gpt-5.2-codex", "gpt-6.1-sol")]:
        post(envoy.url + "/v1/chat/completions", chat_body(model=retired))
        assert mock_codex.last_request.json["model"] == current, retired
    post(envoy.url + "/v1/chat/completions", chat_body(model="Some-Future-Model"))
    assert mock_codex.last_request.json["model"] == "some-future-model"
    envoy = envoy_factory(DEBUG_MODEL="gpt-5.2")
    post(envoy.url + "/v1/chat/completions", chat_body(model="gpt-5.6-sol-high"))
    assert mock_codex.last_request.json["model"] == "gpt-5.2"
    assert mock_codex.last_request.json["reasoning"]["effort"] == "high"
