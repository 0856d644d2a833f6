"""Ollama pass-through: `/api/*` behind the key gate, untouched otherwise."""

from __future__ import annotations

import json

import pytest
import requests

from chat_helpers import AUTH, error_of
from conftest import TEST_API_KEY
from harness.mock_ollama import MockOllama


@pytest.fixture(scope="module")
def ollama():
    with MockOllama() as mock:
        yield mock


@pytest.fixture
def ollama_envoy(envoy_factory, ollama):
    return envoy_factory(OLLAMA_API_URL=ollama.url)


def test_streamed_chat_passes_through_as_ndjson(ollama_envoy, ollama):
    body = {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}
    with requests.post(ollama_envoy.url + "/api/chat?keep=1", json=body, headers=AUTH, stream=True, timeout=10) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert [line.get("message", {}).get("content") for line in lines[:2]] == ["Hel", "lo"]
    assert lines[-1]["done"] is True
    seen = ollama.requests[-1]
    assert (seen["method"], seen["path"]) == ("POST", "/api/chat?keep=1")
    assert json.loads(seen["body"]) == body
    assert "authorization" not in seen["headers"]
    assert TEST_API_KEY not in json.dumps(seen["headers"])


@pytest.mark.parametrize("method, path, status", [("GET", "/api/tags", 200), ("GET", "/api/version", 200), ("DELETE", "/api/delete", 200), ("GET", "/api/nope", 404)])
def test_methods_and_paths_are_preserved(ollama_envoy, ollama, method, path, status):
    resp = requests.request(method, ollama_envoy.url + path, headers=AUTH, timeout=10)
    assert resp.status_code == status
    assert (ollama.requests[-1]["method"], ollama.requests[-1]["path"]) == (method, path)


def test_non_streaming_chat_body_is_untouched(ollama_envoy):
    resp = requests.post(ollama_envoy.url + "/api/chat", json={"model": "llama3", "messages": [], "stream": False}, headers=AUTH, timeout=10)
    assert resp.json() == {"model": "llama3", "message": {"role": "assistant", "content": "Hello"}, "done": True}


def test_ollama_routes_need_the_key(ollama_envoy, ollama):
    before = len(ollama.requests)
    status, error = error_of(requests.get(ollama_envoy.url + "/api/tags", timeout=5))
    assert (status, error["code"]) == (401, "invalid_api_key")
    assert len(ollama.requests) == before


def test_without_ollama_url_api_routes_answer_503(envoy):
    status, error = error_of(requests.get(envoy.url + "/api/tags", headers=AUTH, timeout=5))
    assert (status, error["code"]) == (503, "ollama_not_configured")
    assert "OLLAMA_API_URL" in error["message"]
