"""Faults a client, an upstream or the network can cause, replayed through the real Envoy.

Every test checks, after its fault, that a normal request on the same listener still
succeeds and that Envoy's log shows no failed VM (`assert_still_healthy`): a panic in the
filter kills the worker's VM and every request in flight on it, so a fault that "only" costs
its own request still fails the test.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import httpx
import openai
import pytest
import requests

from chat_helpers import AUTH, chat_body, error_of, sse_data
from conftest import TEST_API_KEY, default_env
from harness import sse, tokens
from harness.envoy import EnvoyHandle, free_ports, start_envoy
from harness.mock_codex import MockCodex, Script
from harness.mock_ollama import MockOllama
from harness.mock_oauth import MockOAuth
from harness.repo import load_render

render = load_render()

# Small limits, so the faults are quick to provoke.
IDLE_SECONDS = 2
BODY_LIMIT = 256 * 1024
CHAT = "/v1/chat/completions"

# What Envoy logs when a filter VM fails or Envoy itself dies: the filter's panic hook (at
# critical), the trap V8 reports for the callback (an uncaught RuntimeError), and Envoy's
# crash handler.
VM_FAILURE_MARKERS = (
    "][critical][",
    "panic",
    "RuntimeError",
    "Function: proxy_",
    "Segmentation fault",
    "Caught Aborted",
    "Backtrace",
)


# --------------------------------------------------------------------------------------
# Fixtures and helpers


def start(wasm: Path, workdir: Path, env: Dict[str, str], **kwargs) -> EnvoyHandle:
    settings = {"STREAM_IDLE_TIMEOUT_SECONDS": str(IDLE_SECONDS), "MAX_REQUEST_BODY_BYTES": str(BODY_LIMIT), **env}
    return start_envoy(settings, wasm=wasm, workdir=workdir, **kwargs)


@pytest.fixture(scope="module")
def faulty(wasm_module, _mock_codex_server, auth_json, tmp_path_factory) -> Iterator[EnvoyHandle]:
    """One worker (one VM), short idle timeout, 256 KiB body limit; shared by the faults that
    Envoy survives today (each test looks only at the log its own requests wrote)."""
    with MockOAuth() as oauth:
        handle = start(wasm_module, tmp_path_factory.mktemp("faults"), default_env(_mock_codex_server, auth_json, oauth))
        try:
            yield handle
        finally:
            handle.stop()


@pytest.fixture
def fresh(wasm_module, _mock_codex_server, auth_json, mock_oauth, tmp_path_factory):
    """`fresh(**env)`: an Envoy of its own for faults that can take a VM or Envoy down."""
    started: List[EnvoyHandle] = []

    def factory(portable: bool = False, **env: Optional[str]) -> EnvoyHandle:
        merged = {**default_env(_mock_codex_server, auth_json, mock_oauth), **env}
        settings = {k: v for k, v in merged.items() if v is not None}
        handle = start(wasm_module, tmp_path_factory.mktemp("fault"), settings, portable=portable)
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        handle.stop()


@pytest.fixture
def log_start(faulty: EnvoyHandle) -> int:
    return len(faulty.log_text())


def vm_reloads(envoy: EnvoyHandle) -> int:
    text = requests.get(envoy.admin_url + "/stats", timeout=5).text
    return sum(int(line.rpartition(" ")[2]) for line in text.splitlines() if ".vm_reload" in line.split(":")[0])


def assert_still_healthy(envoy: EnvoyHandle, mock: MockCodex, since: int = 0) -> None:
    assert envoy.alive, f"Envoy exited (code {envoy.process.returncode}); log tail:\n{envoy.log_tail()}"
    mock.enqueue(Script.events(sse.text_events(["still", " here"])))
    resp = requests.post(envoy.url + CHAT, json=chat_body(), headers=AUTH, timeout=20)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "still here"
    log = envoy.log_text()[since:]
    found = [marker for marker in VM_FAILURE_MARKERS if marker in log]
    assert not found, f"Envoy's log shows a failed VM ({found}):\n" + "\n".join(log.splitlines()[-40:])
    assert vm_reloads(envoy) == 0, "a filter VM was reloaded"


def text_frames(*deltas: str) -> List[bytes]:
    return sse.sse_frames(sse.text_events(list(deltas)))


def streamed_content(frames: List[Any]) -> str:
    """The text of a chat stream's chunks (`sse_data` frames)."""
    return "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f != "[DONE]" and f["choices"])


def read_stream(envoy: EnvoyHandle, body: dict, timeout: float = 20) -> Tuple[int, str, Optional[Exception]]:
    """Status, the text received and the transport error that ended it (if any)."""
    text, error = "", None
    with requests.post(envoy.url + CHAT, json=body, headers=AUTH, stream=True, timeout=timeout) as resp:
        try:
            for piece in resp.iter_content(chunk_size=None):
                text += piece.decode("utf-8", "replace")
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as exc:
            error = exc
        return resp.status_code, text, error


def raw_exchange(port: int, request: bytes, timeout: float = 20) -> Tuple[int, Dict[str, str], bytes]:
    """One HTTP/1.1 request over a plain socket (bytes no HTTP library would send): the status,
    the headers (lower-cased names, values as latin-1) and the body without its framing."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            assert piece, f"connection closed before a response: {data!r}"
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            while len(rest) < int(headers["content-length"]):
                piece = sock.recv(65536)
                assert piece, "connection closed inside the body"
                rest += piece
            body = rest[: int(headers["content-length"])]
        elif headers.get("transfer-encoding") == "chunked":
            while not rest.endswith(b"0\r\n\r\n"):
                piece = sock.recv(65536)
                assert piece, "connection closed inside the chunked body"
                rest += piece
            body, chunks = b"", rest
            while True:
                size_line, _, chunks = chunks.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                body, chunks = body + chunks[:size], chunks[size + 2 :]
        else:  # the body ends with the connection
            while piece := sock.recv(65536):
                rest += piece
            body = rest
    return int(status_line.split()[1]), headers, body


def request_bytes(method: str, path: str, headers: Mapping[str, bytes], body: bytes = b"") -> bytes:
    """An HTTP/1.1 request with each header value's bytes exactly as given."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: localhost"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    if body or method == "POST":
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def post_bytes(path: str, body: bytes, headers: Optional[Mapping[str, bytes]] = None) -> bytes:
    """A POST with the test key and a JSON content type; `headers` adds to them or replaces them."""
    defaults = {"Authorization": b"Bearer " + TEST_API_KEY.encode(), "Content-Type": b"application/json"}
    return request_bytes("POST", path, {**defaults, **(headers or {})}, body)


def assert_openai_error(status: int, headers: Dict[str, str], body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json"), (status, headers, body)
    document = json.loads(body)
    assert set(document) == {"error"} and {"message", "type", "param", "code"} <= set(document["error"]), document
    return document["error"]


def sdk(envoy: EnvoyHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=envoy.url + "/v1", api_key=TEST_API_KEY, max_retries=0, timeout=30)


# --------------------------------------------------------------------------------------
# Upstream faults: reset and silence


def test_upstream_reset_mid_body_is_an_openai_error_for_a_non_streaming_client(faulty, mock_codex, log_start):
    frames = text_frames("Hello", " world")
    mock_codex.enqueue(Script(body=frames[:5], ending="abort"))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(faulty).chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_reset", caught.value.body
    assert caught.value.type == "upstream_error"
    assert_still_healthy(faulty, mock_codex, log_start)


def test_upstream_reset_mid_body_ends_a_stream_without_done(faulty, mock_codex, log_start):
    frames = text_frames("Hello", " world")
    mock_codex.enqueue(Script(body=frames[:5], ending="abort"))
    status, text, error = read_stream(faulty, chat_body(stream=True))
    # The answer had started, so Envoy can only cut the connection: the client must see a
    # broken stream, never a clean end it could take for a complete answer.
    assert status == 200
    assert error is not None, text
    assert "[DONE]" not in text
    assert streamed_content(sse_data(text)) == "Hello"
    assert_still_healthy(faulty, mock_codex, log_start)


@pytest.mark.parametrize("where", ["after_headers", "mid_body"])
def test_a_silent_upstream_is_a_504_for_a_non_streaming_client(faulty, mock_codex, log_start, where):
    frames = text_frames("Hello", " world")
    gate = threading.Event()
    head = [] if where == "after_headers" else frames[:5]
    mock_codex.enqueue(Script(body=[*head, gate, *frames[len(head) :]]))
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(faulty).chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    finally:
        gate.set()
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout", caught.value.body
    assert "STREAM_IDLE_TIMEOUT_SECONDS" in caught.value.message
    assert_still_healthy(faulty, mock_codex, log_start)


@pytest.mark.parametrize("where", ["after_headers", "mid_body"])
def test_a_silent_upstream_ends_a_stream_without_done(faulty, mock_codex, log_start, where):
    frames = text_frames("Hello", " world")
    gate = threading.Event()
    head = [] if where == "after_headers" else frames[:5]
    mock_codex.enqueue(Script(body=[*head, gate, *frames[len(head) :]]))
    try:
        status, text, error = read_stream(faulty, chat_body(stream=True))
    finally:
        gate.set()
    assert status == 200
    assert error is not None, text
    assert "[DONE]" not in text
    assert_still_healthy(faulty, mock_codex, log_start)


@pytest.mark.parametrize("stream", [False, True])
def test_an_unreachable_upstream_is_a_502_openai_error(fresh, mock_codex, stream):
    (closed_port,) = free_ports(1)
    envoy = fresh(CHATGPT_RESPONSES_URL=f"http://127.0.0.1:{closed_port}/backend-api/codex/responses")
    resp = requests.post(envoy.url + CHAT, json=chat_body(stream=stream), headers=AUTH, timeout=20)
    status, error = error_of(resp)
    assert (status, error["code"], error["type"]) == (502, "upstream_unavailable", "upstream_error")
    assert envoy.alive
    assert not [m for m in VM_FAILURE_MARKERS if m in envoy.log_text()]


def test_envoys_own_protocol_errors_are_openai_errors(faulty, mock_codex, log_start):
    status, headers, body = raw_exchange(faulty.port, b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n")
    assert (status, assert_openai_error(status, headers, body)["code"]) == (400, "invalid_http_request")
    huge = b"X-Big: " + b"a" * (100 * 1024) + b"\r\n"
    status, headers, body = raw_exchange(faulty.port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + huge + b"\r\n")
    assert status == 431
    assert assert_openai_error(status, headers, body)["type"] == "invalid_request_error"
    assert_still_healthy(faulty, mock_codex, log_start)


def test_the_filters_own_errors_are_left_as_they_are(faulty, mock_codex, log_start):
    resp = requests.post(faulty.url + CHAT, json={"model": "gpt-5.5"}, headers=AUTH, timeout=10)
    status, error = error_of(resp)
    assert (status, error["param"]) == (400, "messages")
    assert error["message"].startswith("`messages` is required")
    resp = requests.get(faulty.url + "/v1/models", timeout=10)
    assert error_of(resp)[1]["code"] == "invalid_api_key"
    preflight = requests.options(
        faulty.url + CHAT,
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 200 and preflight.text == ""
    assert_still_healthy(faulty, mock_codex, log_start)


# --------------------------------------------------------------------------------------
# Oversize answers


def big_answer(total: int = 2 * 1024 * 1024) -> Tuple[str, Script]:
    """Exactly `total` bytes of text in deltas of at most 1 KiB. No event repeats the whole
    text (the `.done` events may leave it out): each stays far below the filter's 1 MiB event
    limit, so only the aggregated answer is large."""
    piece = "0123456789abcdef" * 64
    deltas = [piece] * (total // len(piece))
    if total % len(piece):
        deltas.append(piece[: total % len(piece)])
    events = [
        sse.created(),
        sse.in_progress(),
        sse.item_added_message(),
        sse.content_part_added(),
        *(sse.text_delta(delta) for delta in deltas),
        sse.completed(usage=sse.usage()),
    ]
    return "".join(deltas), Script.events(events)


# MAX_REQUEST_BODY_BYTES, which also caps what the filter holds of a non-streaming answer.
ANSWER_LIMIT = 65536
COMPLETIONS = "/v1/completions"
ENDPOINTS = {"chat": (CHAT, chat_body()), "completions": (COMPLETIONS, {"model": "gpt-5.5", "prompt": "hi"})}


@pytest.mark.parametrize("portable", [False, True], ids=["full", "portable"])
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_an_oversize_non_streaming_answer_is_too_large_and_envoy_survives(fresh, mock_codex, endpoint, portable):
    envoy = fresh(portable=portable, MAX_REQUEST_BODY_BYTES=str(ANSWER_LIMIT))
    path, body = ENDPOINTS[endpoint]
    # Twice what Envoy buffers of one response for this limit (about 2 MiB).
    buffered = render.options_from(render.resolve({"MAX_REQUEST_BODY_BYTES": str(ANSWER_LIMIT)})).request_buffer_limit_bytes
    _, script = big_answer(2 * buffered)
    mock_codex.enqueue(script)
    try:
        resp = requests.post(envoy.url + path, json=body, headers=AUTH, timeout=30)
    except requests.exceptions.ConnectionError as exc:
        pytest.fail(f"no answer ({exc}); Envoy alive: {envoy.alive}; log tail:\n{envoy.log_tail(12)}")
    status, error = error_of(resp)
    # Portable mode has sent its 200 before the body: only the body can say what happened.
    assert status == (200 if portable else 502)
    assert (error["code"], error["type"]) == ("upstream_response_too_large", "upstream_error")
    assert '"stream": true' in error["message"]
    # Just under the limit, the answer is whole.
    text, script = big_answer(60_000)
    mock_codex.enqueue(script)
    resp = requests.post(envoy.url + path, json=body, headers=AUTH, timeout=30)
    assert resp.status_code == 200, resp.text[:300]
    choice = resp.json()["choices"][0]
    assert (choice["text"] if path == COMPLETIONS else choice["message"]["content"]) == text
    assert_still_healthy(envoy, mock_codex)


def test_an_oversize_streamed_answer_streams_in_full(faulty, mock_codex, log_start):
    text, script = big_answer()
    # Far over the non-streaming limit, and over what Envoy buffers of one response.
    assert len(text) > render.options_from(render.resolve({"MAX_REQUEST_BODY_BYTES": str(BODY_LIMIT)})).buffer_limit_bytes
    mock_codex.enqueue(script)
    status, body, error = read_stream(faulty, chat_body(stream=True), timeout=60)
    assert (status, error) == (200, None)
    frames = sse_data(body)
    assert frames[-1] == "[DONE]"
    assert streamed_content(frames) == text
    assert_still_healthy(faulty, mock_codex, log_start)


# --------------------------------------------------------------------------------------
# Bytes that are not UTF-8 (in header values, both ways)

ODD = b"caf\xe9"  # latin-1 for "café"; not UTF-8


def test_a_non_utf8_client_header_byte_does_not_fail_the_vm(fresh, mock_codex):
    with MockOllama() as ollama:
        envoy = fresh(OLLAMA_API_URL=ollama.url)
        body = json.dumps(chat_body()).encode()
        # A header the filter reads is refused before anything goes upstream.
        for name in ("Authorization", "Content-Type", "X-Session-Id"):
            sent = len(mock_codex.requests)
            status, headers, answer = raw_exchange(envoy.port, post_bytes(CHAT, body, {name: b"Bearer " + ODD}))
            assert status == 400, (name, answer)
            assert headers["content-type"] == "application/json"
            error = assert_openai_error(status, headers, answer)
            assert error["code"] == "invalid_header" and name.lower() in error["message"], error
            assert len(mock_codex.requests) == sent
            assert_still_healthy(envoy, mock_codex)
        # One it does not read is dropped on the way to the ChatGPT backend.
        status, _, answer = raw_exchange(envoy.port, post_bytes(CHAT, body, {"X-Odd": ODD}))
        assert status == 200, answer
        assert json.loads(answer)["choices"][0]["message"]["content"] == "Hello world"
        assert "x-odd" not in mock_codex.last_request.headers
        status, _, answer = raw_exchange(envoy.port, request_bytes("GET", "/health", {"X-Odd": ODD}))
        assert status == 200, answer
        # The Ollama passthrough leaves it untouched (the mock reads header bytes as latin-1,
        # so the byte arrives as it was sent) and still strips the client's credentials.
        key = b"Bearer " + TEST_API_KEY.encode()
        status, _, answer = raw_exchange(envoy.port, request_bytes("GET", "/api/tags", {"Authorization": key, "X-Odd": ODD, "Cookie": b"s=\xff"}))
        assert status == 200, answer
        seen = ollama.requests[-1]["headers"]
        assert seen["x-odd"] == "caf\xe9"
        assert "cookie" not in seen and "authorization" not in seen
        assert_still_healthy(envoy, mock_codex)


@pytest.mark.parametrize("stream", [False, True])
def test_a_non_utf8_upstream_header_byte_does_not_fail_the_vm(fresh, mock_codex, stream):
    envoy = fresh()
    headers = {"content-type": "text/event-stream", "x-odd": "caf\xe9"}  # http.server sends the byte 0xE9
    mock_codex.enqueue(Script.events(sse.text_events(["Hello", " world"]), headers=headers))
    resp = requests.post(envoy.url + CHAT, json=chat_body(stream=stream), headers=AUTH, timeout=20)
    assert resp.status_code == 200, resp.text
    if stream:
        frames = sse_data(resp.text)
        assert frames[-1] == "[DONE]"
        assert streamed_content(frames) == "Hello world"
    else:
        assert resp.json()["choices"][0]["message"]["content"] == "Hello world"
    # A header the filter does not read is left for Envoy to pass on as it came.
    assert resp.headers["x-odd"] == "caf\xe9"
    # The one it reads, the content type, is no event stream with such a byte in it.
    mock_codex.enqueue(Script.events(sse.text_events(["Hello"]), headers={"content-type": "text/event-stream\xe9"}))
    resp = requests.post(envoy.url + CHAT, json=chat_body(stream=stream), headers=AUTH, timeout=20)
    status, error = error_of(resp)
    assert (status, error["type"]) == (502, "upstream_error")
    assert_still_healthy(envoy, mock_codex)


# --------------------------------------------------------------------------------------
# Client headers and keys that must not reach the upstream


ENVOY_HEADERS = {
    "X-Envoy-Foo": "bar",
    "X-Envoy-Original-Path": "/elsewhere",
    "X-Envoy-Retry-On": "5xx",
    "X-Envoy-Max-Retries": "3",
}


def assert_no_envoy_headers(names) -> None:
    leaked = [name for name in names if name.lower().startswith("x-envoy-")]
    assert not leaked, leaked


@pytest.mark.parametrize("stream", [False, True])
def test_client_x_envoy_headers_never_reach_the_chatgpt_backend(faulty, mock_codex, log_start, stream):
    resp = requests.post(faulty.url + CHAT, json=chat_body(stream=stream), headers={**AUTH, **ENVOY_HEADERS}, timeout=20)
    assert resp.status_code == 200
    assert_no_envoy_headers(name for name, _ in mock_codex.last_request.header_list)
    # Nor does Envoy act on them: a client cannot make it retry a failed upstream call.
    mock_codex.enqueue(Script.json(503, {"error": {"message": "busy"}}))
    resp = requests.post(faulty.url + CHAT, json=chat_body(stream=stream), headers={**AUTH, **ENVOY_HEADERS}, timeout=20)
    assert error_of(resp)[0] >= 500
    assert len(mock_codex.requests) == 2
    assert_still_healthy(faulty, mock_codex, log_start)


def test_client_x_envoy_headers_never_reach_an_api_key_upstream(fresh, mock_codex):
    envoy = fresh(UPSTREAM_AUTH_MODE="apikey_env", UPSTREAM_API_KEY="sk-upstream", OPENAI_CODEX_AUTH=None)
    resp = requests.post(envoy.url + CHAT, json=chat_body(), headers={**AUTH, **ENVOY_HEADERS}, timeout=20)
    assert resp.status_code == 200, resp.text
    assert_no_envoy_headers(name for name, _ in mock_codex.last_request.header_list)


def test_client_x_envoy_headers_never_reach_ollama(fresh, mock_codex):
    with MockOllama() as ollama:
        envoy = fresh(OLLAMA_API_URL=ollama.url)
        resp = requests.get(envoy.url + "/api/tags", headers={**AUTH, **ENVOY_HEADERS}, timeout=20)
        assert resp.status_code == 200
        assert_no_envoy_headers(ollama.requests[-1]["headers"])


BAD_CACHE_KEYS = {
    "crlf": "conv\r\nx-injected: 1",
    "lf": "conv\nx",
    "nul": "conv\x00x",
    "100k": "k" * (100 * 1024),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("key", list(BAD_CACHE_KEYS))
def test_a_prompt_cache_key_that_cannot_be_a_header_is_a_400(faulty, mock_codex, log_start, key, stream):
    body = chat_body(stream=stream, prompt_cache_key=BAD_CACHE_KEYS[key])
    resp = requests.post(faulty.url + CHAT, json=body, headers=AUTH, timeout=20)
    status, error = error_of(resp)
    assert (status, error["code"], error["param"]) == (400, "invalid_prompt_cache_key", "prompt_cache_key")
    assert mock_codex.requests == []
    assert_still_healthy(faulty, mock_codex, log_start)


# --------------------------------------------------------------------------------------
# Oversize uploads


def oversize_body(size: int) -> bytes:
    return json.dumps(chat_body(messages=[{"role": "user", "content": "x" * size}])).encode()


def test_a_chunked_upload_over_the_limit_is_a_413(faulty, mock_codex, log_start):
    data = oversize_body(4 * BODY_LIMIT)
    chunks = iter([data[i : i + 8192] for i in range(0, len(data), 8192)])
    resp = requests.post(faulty.url + CHAT, data=chunks, headers={**AUTH, "Content-Type": "application/json"}, timeout=30)
    status, error = error_of(resp)
    assert (status, error["code"]) == (413, "request_too_large")
    assert str(BODY_LIMIT) in error["message"]
    assert mock_codex.requests == []
    assert_still_healthy(faulty, mock_codex, log_start)


WHOLE_BODY = 64 * 1024 * 1024


def test_a_64_mb_body_written_before_reading_gets_its_413_with_urllib(faulty, mock_codex, log_start):
    request = urllib.request.Request(
        faulty.url + CHAT, data=oversize_body(WHOLE_BODY), headers={**AUTH, "Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=120)
    answer = caught.value
    error = assert_openai_error(answer.code, {k.lower(): v for k, v in answer.headers.items()}, answer.read())
    assert (answer.code, error["code"]) == (413, "request_too_large")
    assert mock_codex.requests == []
    assert_still_healthy(faulty, mock_codex, log_start)


def test_a_64_mb_body_written_before_reading_gets_its_413_with_httpx(faulty, mock_codex, log_start):
    resp = httpx.post(faulty.url + CHAT, content=oversize_body(WHOLE_BODY), headers=AUTH, timeout=120)
    error = assert_openai_error(resp.status_code, dict(resp.headers), resp.content)
    assert (resp.status_code, error["code"]) == (413, "request_too_large")
    # The SDK (httpx underneath) gets an error it will not retry, not a connection error.
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(faulty).chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "x" * WHOLE_BODY}])
    assert (caught.value.status_code, caught.value.code) == (413, "request_too_large")
    assert mock_codex.requests == []
    assert_still_healthy(faulty, mock_codex, log_start)


def urlopen_error(url: str, body: bytes, headers: dict) -> tuple:
    """What urllib (which writes the whole body before it reads) gets for a refused request."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=120)
    answer = caught.value
    error = assert_openai_error(answer.code, {k.lower(): v for k, v in answer.headers.items()}, answer.read())
    return answer.code, error["code"]


def test_a_wrong_key_on_a_64_mb_body_is_a_401_not_a_reset(fresh, mock_codex):
    envoy = fresh()
    wrong = {"Authorization": "Bearer not-the-key"}
    assert urlopen_error(envoy.url + CHAT, oversize_body(WHOLE_BODY), wrong) == (401, "invalid_api_key")
    assert mock_codex.requests == []
    assert_still_healthy(envoy, mock_codex)


def test_portable_mode_answers_a_chunked_oversize_upload_with_a_413(fresh, mock_codex):
    envoy = fresh(portable=True)
    data = oversize_body(4 * BODY_LIMIT)
    chunks = iter([data[i : i + 8192] for i in range(0, len(data), 8192)])
    resp = requests.post(envoy.url + CHAT, data=chunks, headers={**AUTH, "Content-Type": "application/json"}, timeout=30)
    assert error_of(resp)[:1] == (413,)
    assert_still_healthy(envoy, mock_codex)


# --------------------------------------------------------------------------------------
# Secrets in Envoy's own log


CLIENT_KEY = "client-key-SECRET-1"
COOKIE = "session=cookie-SECRET-2"
UPSTREAM_KEY = "sk-upstream-SECRET-3"


@pytest.mark.parametrize("level", ["debug", "trace"])
@pytest.mark.parametrize("mode", ["chatgpt", "chatgpt-portable", "apikey-portable"])
def test_envoys_log_holds_no_secret_at_any_level(wasm_module, mock_codex, mock_oauth, tmp_path, level, mode):
    env = {"OPENAI_API_KEY": CLIENT_KEY, "OPENAI_CODEX_AUTH": tokens.auth_json(expires_in=-60), "CHATGPT_RESPONSES_URL": mock_codex.url, "CODEX_REFRESH_TOKEN_URL": mock_oauth.url}
    if mode.startswith("apikey"):
        env.update(UPSTREAM_AUTH_MODE="apikey_env", UPSTREAM_API_KEY=UPSTREAM_KEY)
    log_args = render.envoy_log_args(level)
    envoy = start(wasm_module, tmp_path, env, portable=mode.endswith("portable"), log_args=log_args)
    try:
        for stream in (False, True):
            headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Cookie": COOKIE}
            resp = requests.post(envoy.url + CHAT, json=chat_body(stream=stream), headers=headers, timeout=20)
            assert resp.status_code == 200, resp.text
        upstream_credential = mock_codex.last_request.header("authorization").removeprefix("Bearer ")
        log = envoy.log_text()
    finally:
        envoy.stop()
    assert f"][{level}][" in log, "the level took effect"
    secrets = [CLIENT_KEY, "cookie-SECRET-2", upstream_credential, tokens.DEFAULT_REFRESH_TOKEN]
    if mode == "chatgpt":
        secrets.append(mock_oauth.current_refresh_token)
    leaked = [secret[:12] for secret in secrets if secret in log]
    assert not leaked, f"secrets in Envoy's {level} log: {leaked}"


def test_every_log_level_keeps_the_header_printing_components_at_info_or_above():
    with pytest.raises(render.ConfigError, match=r'invalid ENVOY_LOG_LEVEL: "loud" is not one of trace, debug'):
        render.resolve({"ENVOY_LOG_LEVEL": "loud"})
    for level in ("trace", "debug"):
        assert render.envoy_log_args(level) == [
            "--log-level", level, "--component-log-level", "http:info,http2:info,router:info,config:info",
        ]  # fmt: skip
    for level in ("info", "warning", "error", "critical", "off"):
        assert render.envoy_log_args(level) == ["--log-level", level]


# --------------------------------------------------------------------------------------
# A slow token endpoint

# Longer than the 20 s the filter used to give a refresh call, shorter than the 30 s a
# request waits for a refresh. The mock rotates the refresh token even when the caller has
# given up, as the real endpoint does.
SLOW_TOKEN_ENDPOINT_SECONDS = 25.0


def test_a_slow_token_endpoint_still_refreshes_the_login(fresh, mock_codex, mock_oauth):
    # The default idle timeout: a request waiting for a refresh moves no bytes meanwhile.
    envoy = fresh(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=-60), STREAM_IDLE_TIMEOUT_SECONDS="300")
    mock_oauth.delay = SLOW_TOKEN_ENDPOINT_SECONDS
    resp = requests.post(envoy.url + CHAT, json=chat_body(), headers=AUTH, timeout=90)
    assert resp.status_code == 200, f"the request waiting for the refresh got {resp.status_code} {resp.text}"
    mock_oauth.delay = 0.0
    resp = requests.post(envoy.url + CHAT, json=chat_body(), headers=AUTH, timeout=30)
    assert resp.status_code == 200, f"after the slow refresh: {resp.status_code} {resp.text}"
    assert mock_oauth.calls == 1, "the rotated refresh token was not spent twice"
    assert tokens.decode_jwt_claims(mock_codex.last_request.header("authorization").removeprefix("Bearer "))["exp"] > 0
    assert_still_healthy(envoy, mock_codex)


def test_the_readme_lists_every_code_envoys_replies_carry():
    readme = (Path(render.REPO_ROOT) / "README.md").read_text(encoding="utf-8")
    options = render.options_from(render.resolve({}))
    codes = {m["body_format_override"]["json_format"]["error"]["code"] for m in render.local_reply_config(options)["mappers"]}
    missing = [code for code in codes - {None} if f"`{code}`" not in readme]
    assert not missing, missing
