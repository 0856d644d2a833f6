"""Upstream auth modes, header forwarding, tools format, logging and stats, through Envoy:
each asserts what the mock backend actually received."""

from __future__ import annotations

import json

import pytest
import requests

from chat_helpers import AUTH, chat_body, post
from conftest import TEST_API_KEY
from harness import sse, tokens
from harness.mock_codex import Script
from harness.repo import load_render

CHATGPT_ONLY = ("chatgpt-account-id", "originator", "session-id")


def chat(envoy, headers=None, **body):
    resp = post(envoy.url + "/v1/chat/completions", chat_body(**body), headers=headers)
    assert resp.status_code == 200, resp.text
    return resp


def test_apikey_env_sends_the_key_in_the_configured_header(envoy_factory, mock_codex):
    envoy = envoy_factory(
        UPSTREAM_AUTH_MODE="apikey_env", UPSTREAM_API_KEY="sk-upstream", UPSTREAM_AUTH_HEADER="X-Api-Key", UPSTREAM_AUTH_SCHEME="none", OPENAI_CODEX_AUTH=None
    )
    chat(envoy)
    seen = mock_codex.last_request
    assert seen.header("x-api-key") == "sk-upstream"
    assert seen.header("authorization") is None
    for name in CHATGPT_ONLY:
        assert seen.header(name) is None, f"{name} sent to an API-key upstream"
    assert seen.header("user-agent").startswith("codex-openai-wrapper/")
    assert seen.json["store"] is False


def test_apikey_auth_json_reads_the_key_from_the_document(envoy_factory, mock_codex):
    document = json.dumps({"OPENAI_API_KEY": None, "PLATFORM_KEY": "sk-from-json"})
    envoy = envoy_factory(UPSTREAM_AUTH_MODE="apikey_auth_json", UPSTREAM_AUTH_ENV_KEY="PLATFORM_KEY", OPENAI_CODEX_AUTH=document)
    chat(envoy)
    assert mock_codex.last_request.header("authorization") == "Bearer sk-from-json"
    assert mock_codex.last_request.header("chatgpt-account-id") is None


def test_chatgpt_mode_headers_and_custom_scheme(envoy_factory, mock_codex, auth_json):
    envoy = envoy_factory(UPSTREAM_AUTH_SCHEME="Token")
    chat(envoy)
    access = json.loads(auth_json)["tokens"]["access_token"]
    assert mock_codex.last_request.header("authorization") == f"Token {access}"
    assert mock_codex.last_request.header("chatgpt-account-id") == tokens.DEFAULT_ACCOUNT_ID


CLIENT_HEADERS = {
    "User-Agent": "OpenWebUI/0.6",
    "Accept-Language": "fr-FR",
    "X-Trace-Id": "trace-1",
    "Cookie": "sid=secret",
    "X-Api-Key": "client-secret",
    "sec-ch-ua-platform": '"macOS"',
}


@pytest.mark.parametrize(
    "env, expected, absent",
    [
        (
            {},
            {"user-agent": "codex_cli_rs/0.169.0 (unknown unknown; unknown) unknown (codex_cli_rs; 0.169.0)", "version": "0.169.0"},
            ["accept-language", "x-trace-id", "cookie", "x-api-key"],
        ),
        ({"FORWARD_CLIENT_HEADERS_MODE": "safe"}, {"user-agent": "OpenWebUI/0.6", "accept-language": "fr-FR", "sec-ch-ua-platform": '"macOS"'}, ["x-trace-id", "cookie", "x-api-key"]),
        (
            {"FORWARD_CLIENT_HEADERS_MODE": "list", "FORWARD_CLIENT_HEADERS_LIST": "x-trace-id, cookie, authorization"},
            {"x-trace-id": "trace-1", "authorization": None},
            ["cookie", "accept-language"],
        ),
        (
            {"FORWARD_CLIENT_HEADERS_MODE": "override", "FORWARD_CLIENT_HEADERS_OVERRIDE": '{"X-Extra": "1", "User-Agent": "custom/1", "Authorization": "Bearer stolen", "Accept": "text/plain"}'},
            {"x-extra": "1", "user-agent": "custom/1", "accept": "text/event-stream"},
            ["x-trace-id"],
        ),
        (
            {"FORWARD_CLIENT_HEADERS_MODE": "override-codex", "FORWARD_CLIENT_HEADERS_CODEX_VERSION": "0.150.0", "TERM_PROGRAM": "iTerm.app"},
            {
                "user-agent": "codex_cli_rs/0.150.0 (macOS unknown; unknown) iTerm.app (codex_cli_rs; 0.150.0)",
                "originator": "codex_cli_rs",
                "version": "0.150.0",
            },
            ["x-trace-id", "accept-language"],
        ),
    ],
)
def test_forwarding_modes(envoy_factory, mock_codex, auth_json, env, expected, absent):
    envoy = envoy_factory(**env)
    chat(envoy, headers=CLIENT_HEADERS)
    seen = mock_codex.last_request
    for name, value in expected.items():
        if value is None:
            assert seen.header(name) == "Bearer " + json.loads(auth_json)["tokens"]["access_token"], name
        else:
            assert seen.header(name) == value, name
    for name in absent:
        assert seen.header(name) is None, f"{name} forwarded"
    assert TEST_API_KEY not in json.dumps(seen.headers)


def test_nested_tools_format(envoy_factory, mock_codex):
    envoy = envoy_factory(UPSTREAM_TOOLS_FORMAT="nested")
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    chat(envoy, tools=[tool], tool_choice={"type": "function", "function": {"name": "f"}})
    sent = mock_codex.last_request.json
    assert sent["tools"] == [tool]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "f"}}


def test_invalid_modes_stop_start_up(envoy_factory):
    from harness.envoy import EnvoyStartError

    for env, variable in [
        ({"UPSTREAM_AUTH_MODE": "magic"}, "UPSTREAM_AUTH_MODE"),
        ({"UPSTREAM_AUTH_MODE": "apikey_env"}, "UPSTREAM_API_KEY"),
        ({"FORWARD_CLIENT_HEADERS_MODE": "everything"}, "FORWARD_CLIENT_HEADERS_MODE"),
        ({"FORWARD_CLIENT_HEADERS_MODE": "override", "FORWARD_CLIENT_HEADERS_OVERRIDE": "{oops"}, "FORWARD_CLIENT_HEADERS_OVERRIDE"),
        ({"UPSTREAM_TOOLS_FORMAT": "deep"}, "UPSTREAM_TOOLS_FORMAT"),
    ]:
        # The renderer refuses it first, and the filter itself where no renderer runs.
        with pytest.raises(load_render().ConfigError) as refused:
            envoy_factory(**env)
        assert refused.value.variable == variable
        with pytest.raises(EnvoyStartError) as caught:
            envoy_factory(filter_only_env=env)
        assert f"invalid {variable}" in str(caught.value) and str(refused.value) in str(caught.value)


def test_verbose_logs_one_line_per_request_without_secrets(envoy_factory, mock_codex, auth_json):
    envoy = envoy_factory(VERBOSE="true")
    mock_codex.enqueue(Script.events(sse.text_events(["hi"], usage=sse.usage(7, 3, cached_tokens=2, reasoning_tokens=1))))
    chat(envoy)
    requests.get(envoy.url + "/v1/models", headers=AUTH, timeout=5)
    log = envoy.log_text()
    lines = [line for line in log.splitlines() if "codex filter: POST /v1/chat/completions -> 200" in line]
    assert len(lines) == 1, log[-3000:]
    assert "model=gpt-5.5" in lines[0] and "tokens=7+3 (cached 2, reasoning 1)" in lines[0] and "upstream=" in lines[0]
    assert "codex filter: GET /v1/models -> 200" in log
    doc = json.loads(auth_json)["tokens"]
    for secret in (doc["access_token"], doc["refresh_token"], doc["id_token"], TEST_API_KEY):
        assert secret not in log


def test_stats_count_requests_tokens_and_upstream_errors(envoy_factory, mock_codex):
    envoy = envoy_factory()
    mock_codex.enqueue(Script.events(sse.text_events(["hi"], usage=sse.usage(7, 3, reasoning_tokens=1))))
    chat(envoy)
    mock_codex.enqueue(Script.json(500, {"error": {"message": "boom"}}))
    post(envoy.url + "/v1/chat/completions", chat_body())
    requests.get(envoy.url + "/v1/models", timeout=5)  # 401, answered locally
    stats = requests.get(envoy.admin_url + "/stats/prometheus", timeout=5).text
    values = {}
    for line in stats.splitlines():
        if line.startswith("#") or "codex" not in line:
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)

    def stat(fragment):
        matches = [v for k, v in values.items() if fragment in k]
        assert matches, f"no stat containing {fragment!r} in {sorted(values)}"
        return sum(matches)

    assert stat("codex_requests_chat_2xx") == 1
    assert stat("codex_requests_chat_5xx") == 1
    assert stat("codex_requests_local_4xx") == 1
    assert stat("codex_upstream_errors") == 1
    assert stat("codex_tokens_prompt") == 7
    assert stat("codex_tokens_completion") == 3
    assert stat("codex_tokens_reasoning") == 1
