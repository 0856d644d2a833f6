"""Faults that used to take the filter's VM or Envoy down: a non-streaming answer larger than
Envoy's response buffer, and header values that are not UTF-8 (either direction). After each,
the same listener must still serve a normal request and the log must show no VM failure."""

from __future__ import annotations

import json
import socket
from typing import Dict, List, Tuple

import pytest
import requests

from chat_helpers import AUTH, chat_body, error_of, post, sse_data
from conftest import TEST_API_KEY
from harness import sse
from harness.mock_codex import Script
from harness.mock_ollama import MockOllama

SMALL_LIMIT = 65536
VM_FAILURES = ("codex filter panic", "RuntimeError", "Segmentation fault")


def big_answer(total_bytes: int = 2_000_000, piece: int = 1000) -> Script:
    """~`total_bytes` of text in deltas (the terminal event does not repeat it, so no single
    event is large: only the aggregate is)."""
    deltas = ["x" * piece] * (total_bytes // piece)
    events = [
        sse.created(),
        sse.in_progress(),
        sse.item_added_message(),
        sse.content_part_added(),
        *(sse.text_delta(d) for d in deltas),
        sse.completed(usage=sse.usage()),
    ]
    return Script.events(events)


def assert_still_serving(envoy) -> None:
    assert envoy.alive, envoy.log_tail()
    resp = post(envoy.url + "/v1/chat/completions", chat_body())
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "Hello world"
    log = envoy.log_text()
    for failure in VM_FAILURES:
        assert failure not in log, envoy.log_tail()


def raw_request(port: int, method: str, path: str, headers: List[Tuple[bytes, bytes]], body: bytes = b"") -> Tuple[int, Dict[bytes, bytes], bytes]:
    """One HTTP/1.1 request with header bytes exactly as given; returns status, headers, body."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: localhost", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Content-Length: " + str(len(body)).encode())
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    found = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        found[name.strip().lower()] = value.strip()
    if found.get(b"transfer-encoding") == b"chunked":
        body_out = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body_out += rest[:size]
            rest = rest[size + 2 :]
        rest = body_out
    return int(status_line.split()[1]), found, rest


CHAT = json.dumps(chat_body()).encode()
KEY = (b"Authorization", f"Bearer {TEST_API_KEY}".encode())
JSON = (b"Content-Type", b"application/json")


# --- a non-streaming answer larger than Envoy's response buffer ----------------------------


@pytest.mark.parametrize(
    "path, body",
    [("/v1/chat/completions", chat_body()), ("/v1/completions", {"model": "gpt-5.5", "prompt": "hi"})],
)
def test_an_oversized_non_streaming_answer_is_a_502_and_envoy_lives(envoy_factory, mock_codex, path, body):
    envoy = envoy_factory(MAX_REQUEST_BODY_BYTES=str(SMALL_LIMIT))
    mock_codex.enqueue(big_answer())
    status, error = error_of(post(envoy.url + path, body))
    assert (status, error["code"], error["type"]) == (502, "upstream_response_too_large", "upstream_error")
    assert '"stream": true' in error["message"]
    # Just under the limit, the answer is whole.
    mock_codex.enqueue(big_answer(total_bytes=60_000))
    resp = post(envoy.url + path, body)
    assert resp.status_code == 200, resp.text[:300]
    choice = resp.json()["choices"][0]
    assert len(choice.get("text") or choice["message"]["content"]) == 60_000
    assert_still_serving(envoy)


def test_an_oversized_answer_in_portable_mode_ends_in_an_error_body(envoy_factory, mock_codex):
    envoy = envoy_factory(portable=True, MAX_REQUEST_BODY_BYTES=str(SMALL_LIMIT))
    mock_codex.enqueue(big_answer())
    resp = post(envoy.url + "/v1/chat/completions", chat_body())
    # Portable mode sent its headers before the body: only the body can say what happened.
    assert resp.json()["error"]["code"] == "upstream_response_too_large"
    assert_still_serving(envoy)


def test_a_streaming_client_gets_the_whole_large_answer(envoy_factory, mock_codex):
    envoy = envoy_factory(MAX_REQUEST_BODY_BYTES=str(SMALL_LIMIT))
    mock_codex.enqueue(big_answer(total_bytes=300_000))
    resp = requests.post(envoy.url + "/v1/chat/completions", json=chat_body(stream=True), headers=AUTH, timeout=30)
    assert resp.status_code == 200
    frames = sse_data(resp.text)
    text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f != "[DONE]" and f.get("choices"))
    assert len(text) == 300_000 and frames[-1] == "[DONE]"
    assert_still_serving(envoy)


# --- header values that are not UTF-8 -----------------------------------------------------


def test_an_odd_client_header_is_dropped_not_fatal(envoy, mock_codex):
    status, _, body = raw_request(envoy.port, "POST", "/v1/chat/completions", [KEY, JSON, (b"X-Odd", b"caf\xe9")], CHAT)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == "Hello world"
    assert "x-odd" not in mock_codex.last_request.headers
    assert_still_serving(envoy)


@pytest.mark.parametrize("name", [b"Authorization", b"Content-Type", b"X-Session-Id"])
def test_an_odd_header_the_filter_reads_is_a_400(envoy, mock_codex, name):
    headers = [h for h in (KEY, JSON) if h[0] != name] + [(name, b"Bearer caf\xe9")]
    status, found, body = raw_request(envoy.port, "POST", "/v1/chat/completions", headers, CHAT)
    assert status == 400, body
    assert found[b"content-type"] == b"application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_header" and name.decode().lower() in error["message"]
    assert mock_codex.requests == []
    assert_still_serving(envoy)


def test_an_odd_header_passes_through_to_ollama_untouched(envoy_factory, mock_codex):
    with MockOllama() as ollama:
        envoy = envoy_factory(OLLAMA_API_URL=ollama.url)
        status, _, body = raw_request(envoy.port, "GET", "/api/tags", [KEY, (b"X-Odd", b"caf\xe9"), (b"Cookie", b"s=\xff")])
        assert status == 200, body
        seen = ollama.requests[-1]["headers"]
        # The mock reads header bytes as latin-1, so the byte arrives as it was sent.
        assert seen["x-odd"] == "caf\xe9"
        assert "cookie" not in seen and "authorization" not in seen
        assert_still_serving(envoy)


@pytest.mark.parametrize("stream", [False, True])
def test_an_odd_upstream_header_is_not_fatal(envoy, mock_codex, stream):
    # http.server writes header values as latin-1: the upstream sends the byte 0xE9.
    headers = {"content-type": "text/event-stream", "x-odd": "caf\xe9"}
    mock_codex.enqueue(Script.events(sse.text_events(["Hello", " world"]), headers=headers))
    resp = requests.post(envoy.url + "/v1/chat/completions", json=chat_body(stream=stream), headers=AUTH, timeout=20)
    assert resp.status_code == 200, resp.text
    if stream:
        assert sse_data(resp.text)[-1] == "[DONE]"
    else:
        assert resp.json()["choices"][0]["message"]["content"] == "Hello world"
    # Left for Envoy to pass on as it came.
    assert resp.headers["x-odd"] == "caf\xe9"
    assert_still_serving(envoy)


def test_an_odd_upstream_content_type_is_an_upstream_error(envoy, mock_codex):
    headers = {"content-type": "text/event-stream\xe9"}
    mock_codex.enqueue(Script.events(sse.text_events(["Hello"]), headers=headers))
    status, error = error_of(post(envoy.url + "/v1/chat/completions", chat_body()))
    assert (status, error["type"]) == (502, "upstream_error")
    assert_still_serving(envoy)
