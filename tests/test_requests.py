"""Routes, the key gate, credentials and bad input, through the real Envoy."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from chat_helpers import AUTH, chat_body, deltas, error_of, post, sse_data
from conftest import TEST_API_KEY
from harness import sse, tokens
from harness.envoy import EnvoyStartError
from harness.repo import load_render
from harness.mock_codex import Script


def test_health_and_root_are_public(envoy):
    for path in ("/", "/health"):
        resp = requests.get(envoy.url + path, timeout=5)
        assert (resp.status_code, resp.json()) == (200, {"status": "ok"})
    assert requests.head(envoy.url + "/health", timeout=5).status_code == 200


def test_models_list_is_gated_and_openai_shaped(envoy, openai_client):
    assert requests.get(envoy.url + "/v1/models", timeout=5).status_code == 401
    assert requests.get(envoy.url + "/v1/models?client_version=0.169.0", timeout=5).status_code == 401
    body = requests.get(envoy.url + "/v1/models", headers=AUTH, timeout=5).json()
    assert body["object"] == "list"
    first = body["data"][0]
    assert first == {
        "id": "gpt-6.1-sol",
        "object": "model",
        "created": first["created"],
        "owned_by": "openai-codex",
        "display_name": "GPT-6.1-Sol",
        "description": "Latest workhorse model for coding and everyday work.",
        "context_window": 272000,
    }
    assert openai_client.models.retrieve("gpt-5.5").id == "gpt-5.5"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("gpt-0")


def test_expose_models_replaces_the_list(envoy_factory):
    envoy = envoy_factory(EXPOSE_MODELS='["a-model", "gpt-5.5"]')
    body = requests.get(envoy.url + "/v1/models", headers=AUTH, timeout=5).json()
    assert [m["id"] for m in body["data"]] == ["a-model", "gpt-5.5"]
    assert "context_window" not in body["data"][0] and body["data"][1]["context_window"] == 272000
    codex = requests.get(envoy.url + "/v1/models?client_version=0.169.0", headers=AUTH, timeout=5).json()
    assert [(m["slug"], m["priority"]) for m in codex["models"]] == [("a-model", 1), ("gpt-5.5", 2)]


@pytest.mark.parametrize(
    "headers, message",
    [
        ({}, "Missing Authorization header"),
        ({"Authorization": "Basic abc"}, "Invalid Authorization header format. Expected: Bearer <token>"),
        ({"Authorization": "Bearer wrong"}, "Invalid API key"),
        ({"Authorization": f"Bearer {TEST_API_KEY}x"}, "Invalid API key"),
    ],
)
def test_key_gate_rejects_with_invalid_api_key(envoy, mock_codex, headers, message):
    resp = requests.post(envoy.url + "/v1/chat/completions", json=chat_body(), headers=headers, timeout=5)
    status, error = error_of(resp)
    assert (status, error["code"], error["message"]) == (401, "invalid_api_key", message)
    assert mock_codex.requests == []


def test_key_gate_accepts_any_case_of_the_scheme(envoy, mock_codex):
    resp = requests.post(envoy.url + "/v1/chat/completions", json=chat_body(), headers={"Authorization": f"bearer {TEST_API_KEY}"}, timeout=5)
    assert resp.status_code == 200


def test_sdk_with_a_wrong_key_gets_authentication_error(envoy):
    client = openai.OpenAI(base_url=envoy.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "x"}])


def test_open_gate_without_a_configured_key(envoy_factory, mock_codex):
    envoy = envoy_factory(OPENAI_API_KEY=None)
    resp = requests.post(envoy.url + "/v1/chat/completions", json=chat_body(), timeout=5)
    assert resp.status_code == 200
    assert "OPENAI_API_KEY is not set" in envoy.log_text()


@pytest.mark.parametrize(
    "method, path, status, code",
    [
        ("GET", "/v2/anything", 404, "unknown_url"),
        ("GET", "/v1/embeddings", 404, "unknown_url"),
        ("GET", "/tagged/v1/chat/completions", 404, "unknown_url"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
        ("PUT", "/health", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_wrong_methods(envoy, method, path, status, code):
    got_status, error = error_of(requests.request(method, envoy.url + path, headers=AUTH, timeout=5))
    assert (got_status, error["code"]) == (status, code)


@pytest.mark.parametrize(
    "raw, param, text",
    [
        (b"{not json", None, "Invalid JSON body"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b"null", None, "must be a JSON object"),
        (b"{}", "messages", "`messages` is required"),
        (json.dumps({"messages": "hi"}).encode(), "messages", "expected a sequence"),
        (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), "messages[0].role", "Unknown role"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}).encode(), "stream", "expected a boolean"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"}).encode(), "reasoning_effort", "extreme"),
    ],
)
def test_bad_bodies_get_400_and_never_reach_upstream(envoy, mock_codex, raw, param, text):
    status, error = error_of(post(envoy.url + "/v1/chat/completions", None, raw=raw))
    assert (status, error["type"], error["param"]) == (400, "invalid_request_error", param)
    assert text in error["message"]
    assert mock_codex.requests == []


def test_empty_body_and_wrong_content_type(envoy, mock_codex):
    resp = requests.post(envoy.url + "/v1/chat/completions", headers=AUTH, timeout=5)
    assert error_of(resp)[0] == 400
    resp = requests.post(envoy.url + "/v1/chat/completions", data="hello", headers={**AUTH, "Content-Type": "text/plain"}, timeout=5)
    status, error = error_of(resp)
    assert (status, error["code"]) == (415, "unsupported_media_type")
    assert mock_codex.requests == []


def test_oversized_bodies_get_413(envoy_factory, mock_codex):
    envoy = envoy_factory(MAX_REQUEST_BODY_BYTES="4096")
    big = chat_body(messages=[{"role": "user", "content": "x" * 8000}])
    status, error = error_of(post(envoy.url + "/v1/chat/completions", big))
    assert (status, error["code"]) == (413, "request_too_large")
    # Without a content-length (chunked upload) the limit holds too.
    data = json.dumps(big).encode()
    resp = requests.post(
        envoy.url + "/v1/chat/completions", data=iter([data[:3000], data[3000:]]), headers={**AUTH, "Content-Type": "application/json"}, timeout=10
    )
    assert error_of(resp)[0] == 413
    assert mock_codex.requests == []


def test_missing_credentials_answer_401_with_how_to_log_in(envoy_factory, mock_codex):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=None)
    status, error = error_of(post(envoy.url + "/v1/chat/completions", chat_body()))
    assert (status, error["code"]) == (401, "missing_credentials")
    assert "make login" in error["message"]
    assert requests.get(envoy.url + "/health", timeout=5).status_code == 200
    assert mock_codex.requests == []


def test_account_id_comes_from_the_id_token_when_absent(envoy_factory, mock_codex):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(include_account_id=False))
    assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
    assert mock_codex.last_request.header("chatgpt-account-id") == tokens.DEFAULT_ACCOUNT_ID


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"REASONING_EFFORT": "extreme"}, "invalid REASONING_EFFORT"),
        ({"CHATGPT_RESPONSES_URL": "http://127.0.0.1:1/x", "REASONING_OUTPUT_MODE": "xml"}, "invalid REASONING_OUTPUT_MODE"),
        ({"OPENAI_CODEX_AUTH": "{broken"}, "invalid OPENAI_CODEX_AUTH"),
    ],
)
def test_bad_configuration_stops_start_up_naming_the_variable(envoy_factory, env, needle):
    # The renderer refuses it before Envoy starts ...
    with pytest.raises(load_render().ConfigError) as refused:
        envoy_factory(**env)
    assert needle in str(refused.value)
    # ... and so does the filter itself where no renderer runs, with the same message.
    with pytest.raises(EnvoyStartError) as caught:
        envoy_factory(filter_only_env=env)
    assert needle in str(caught.value) and str(refused.value) in str(caught.value)


class TestPortableMode:
    """Envoy without allow_on_headers_stop_iteration (as Istio's WasmPlugin ships it)."""

    def test_stream_and_aggregate_work(self, envoy_factory, mock_codex):
        envoy = envoy_factory(portable=True)
        mock_codex.enqueue(Script.events(sse.text_events(["a", "b"])))
        resp = post(envoy.url + "/v1/chat/completions", chat_body(stream=True))
        assert deltas(sse_data(resp.text))[1:4] == [{"content": "a"}, {"content": "b"}, {"finish": "stop"}]
        assert mock_codex.last_request.header("session-id") is None
        mock_codex.enqueue(Script.events(sse.text_events(["a", "b"])))
        resp = post(envoy.url + "/v1/chat/completions", chat_body(), headers={"X-Session-Id": "conv-7"})
        assert resp.json()["choices"][0]["message"]["content"] == "ab"
        assert mock_codex.last_request.header("session-id") == "conv-7"
        assert mock_codex.last_request.json["prompt_cache_key"] == "conv-7"

    def test_upstream_errors_keep_their_status(self, envoy_factory, mock_codex):
        envoy = envoy_factory(portable=True)
        mock_codex.enqueue(
            Script.json(429, {"error": {"type": "usage_limit_reached", "message": "limit", "resets_in_seconds": 90}}, headers={"retry-after": "90"})
        )
        resp = post(envoy.url + "/v1/chat/completions", chat_body(stream=True))
        status, error = error_of(resp)
        assert (status, error["type"], resp.headers["retry-after"]) == (429, "usage_limit_reached", "90")

    def test_bad_input_is_still_rejected(self, envoy_factory, mock_codex):
        envoy = envoy_factory(portable=True)
        status, error = error_of(post(envoy.url + "/v1/chat/completions", None, raw=b"{oops"))
        assert status == 400
        assert mock_codex.requests == []


def test_large_bodies_within_the_limit_reach_the_upstream_whole(envoy, mock_codex):
    text = "long prompt " * 250_000  # about 3 MB, e.g. a pasted file
    resp = post(envoy.url + "/v1/chat/completions", chat_body(messages=[{"role": "user", "content": text}]))
    assert resp.status_code == 200, resp.text[:200]
    assert mock_codex.last_request.json["input"][0]["content"][0]["text"] == text
