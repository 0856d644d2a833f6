"""Self-test of the mock backend, with plain HTTP clients and no Envoy.

The end-to-end tests are only as trustworthy as the mock's HTTP framing, so each ending is
checked on the wire.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import List, Tuple

import pytest
import requests

from harness import sse
from harness.mock_codex import COMPACTED_OUTPUT, REJECTED_PARAMETERS, MockCodex, Script, as_backend, backend_refusal

TIMEOUT = 10


def raw_exchange(mock: MockCodex, body: bytes = b"{}") -> Tuple[bytes, bytes]:
    """POST over a raw socket with `Connection: close`; returns (head, body as sent on the wire)."""
    request = (
        f"POST {mock.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", mock.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    return head, rest


def chunk_sizes(wire: bytes) -> List[int]:
    """Sizes of the HTTP chunks in a chunked body, including the final 0."""
    sizes, offset = [], 0
    while True:
        line_end = wire.index(b"\r\n", offset)
        size = int(wire[offset:line_end], 16)
        sizes.append(size)
        offset = line_end + 2 + size + 2
        if size == 0:
            return sizes


def test_chunked_ending_sends_each_element_as_one_chunk(mock_codex: MockCodex) -> None:
    mock_codex.enqueue(Script(body=[b"a", b"bc", b"def"]))
    head, wire = raw_exchange(mock_codex)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert chunk_sizes(wire) == [1, 2, 3, 0]
    assert wire.endswith(b"0\r\n\r\n")


def test_chunked_ending_through_requests(mock_codex: MockCodex) -> None:
    mock_codex.enqueue(Script(body=[b"data: 1\n\n", b"data: 2\n\n"]))
    response = requests.post(mock_codex.url, json={"x": 1}, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.content == b"data: 1\n\ndata: 2\n\n"


def test_length_ending(mock_codex: MockCodex) -> None:
    mock_codex.enqueue(Script(status=201, headers={"content-type": "text/plain"}, body=[b"ab", b"cd"], ending="length"))
    response = requests.post(mock_codex.url, data=b"x", timeout=TIMEOUT)
    assert response.status_code == 201
    assert response.headers["content-length"] == "4"
    assert "transfer-encoding" not in response.headers
    assert response.content == b"abcd"


def test_close_ending_is_close_delimited(mock_codex: MockCodex) -> None:
    mock_codex.enqueue(Script(body=[b"one ", b"two"], ending="close"))
    head, wire = raw_exchange(mock_codex)
    lowered = head.lower()
    assert b"content-length" not in lowered and b"transfer-encoding" not in lowered
    assert b"connection: close" in lowered
    assert wire == b"one two"
    mock_codex.enqueue(Script(body=[b"one ", b"two"], ending="close"))
    assert requests.post(mock_codex.url, data=b"x", timeout=TIMEOUT).content == b"one two"


def test_abort_ending_breaks_the_client(mock_codex: MockCodex) -> None:
    mock_codex.enqueue(Script(body=[b"data: partial\n\n"], ending="abort"))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        _ = requests.post(mock_codex.url, data=b"x", timeout=TIMEOUT).content
    mock_codex.enqueue(Script(body=[b"abc"], ending="abort"))
    head, wire = raw_exchange(mock_codex)
    assert head.startswith(b"HTTP/1.1 200")
    assert wire == b"3\r\nabc\r\n", "the chunks arrive, the terminating chunk never does"


def test_keep_alive_reuses_the_connection(mock_codex: MockCodex) -> None:
    mock_codex.enqueue(Script(body=[b"a"]), Script(body=[b"b"], ending="length"), Script(body=[b"c"]))
    with requests.Session() as session:
        bodies = [session.post(mock_codex.url, data=b"x", timeout=TIMEOUT).content for _ in range(3)]
    assert bodies == [b"a", b"b", b"c"]
    ports = {request.client[1] for request in mock_codex.requests}
    assert len(ports) == 1, "chunked and length responses must keep the connection open"


def test_records_requests_including_chunked_bodies(mock_codex: MockCodex) -> None:
    payload = {"model": "gpt-5", "input": [{"role": "user", "content": "hi"}]}
    encoded = json.dumps(payload).encode()

    def body_in_pieces():  # a generator makes requests send Transfer-Encoding: chunked
        yield encoded[:7]
        yield encoded[7:]

    requests.post(
        mock_codex.url + "?q=1",
        data=body_in_pieces(),
        headers={"X-Custom-Header": "v1", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    requests.post(mock_codex.url, json=payload, timeout=TIMEOUT)
    first, second = mock_codex.wait_for_requests(2, timeout=TIMEOUT)
    assert first.chunked and not second.chunked
    assert first.method == "POST" and first.path == mock_codex.path + "?q=1"
    assert first.headers["x-custom-header"] == "v1"
    assert ("x-custom-header", "v1") in first.header_list
    assert first.body == encoded and first.json == payload
    assert second.json == payload


def test_wait_for_requests_fails_when_nothing_arrives(mock_codex: MockCodex) -> None:
    with pytest.raises(AssertionError, match="expected 1 request"):
        mock_codex.wait_for_requests(1, timeout=0.2)


def test_empty_queue_answers_a_default_text_stream(mock_codex: MockCodex) -> None:
    response = requests.post(mock_codex.url, json={}, timeout=TIMEOUT)
    assert response.status_code == 200
    assert b"event: response.output_text.delta" in response.content
    assert response.content.rstrip().splitlines()[-1].startswith(b'data: {"type":"response.completed"')


def test_scripts_are_served_in_order_and_callables_see_the_request(mock_codex: MockCodex) -> None:
    mock_codex.enqueue(
        Script.json(429, {"error": {"code": "rate_limited"}}),
        lambda request: Script.json(200, {"echo": request.json}),
    )
    first = requests.post(mock_codex.url, json={"n": 1}, timeout=TIMEOUT)
    second = requests.post(mock_codex.url, json={"n": 2}, timeout=TIMEOUT)
    assert first.status_code == 429 and first.json() == {"error": {"code": "rate_limited"}}
    assert second.json() == {"echo": {"n": 2}}
    assert mock_codex.pending_scripts() == 0


def test_gate_holds_the_rest_of_the_body(mock_codex: MockCodex) -> None:
    gate = threading.Event()
    mock_codex.enqueue(Script(body=[b"first", gate, b"second"]))
    with requests.post(mock_codex.url, data=b"x", stream=True, timeout=TIMEOUT) as response:
        pieces = response.iter_content(chunk_size=None)
        assert next(pieces) == b"first"
        assert not gate.is_set()
        gate.set()
        assert b"".join(pieces) == b"second"


def test_other_paths_answer_404_and_are_recorded(mock_codex: MockCodex) -> None:
    response = requests.get(mock_codex.origin + "/v1/models", timeout=TIMEOUT)
    assert response.status_code == 404
    assert mock_codex.last_request.path == "/v1/models"


def test_reset_forgets_scripts_and_requests(mock_codex: MockCodex) -> None:
    mock_codex.enqueue(Script(status=500))
    requests.get(mock_codex.origin + "/nowhere", timeout=TIMEOUT)
    mock_codex.reset()
    assert mock_codex.requests == [] and mock_codex.pending_scripts() == 0


def test_script_rejects_unknown_endings() -> None:
    with pytest.raises(ValueError):
        Script(ending="trailers")


def test_events_script_sends_one_event_per_chunk(mock_codex: MockCodex) -> None:
    events = sse.text_events(["a", "b"])
    mock_codex.enqueue(Script.events(events))
    _, wire = raw_exchange(mock_codex)
    sizes = chunk_sizes(wire)
    assert sizes[:-1] == [len(frame) for frame in sse.sse_frames(events)]


GOOD_TURN = {"model": "gpt-5.5", "input": [], "store": False, "stream": True, "include": ["reasoning.encrypted_content"]}


@pytest.mark.parametrize(
    "change, refusal",
    [
        ({"stream": False}, "Stream must be set to true"),
        ({"store": None}, "Store must be set to false"),
        ({"input": "hi"}, "Input must be a list"),
        ({"include": []}, "include must list reasoning.encrypted_content with store=false"),
        *[({name: 1}, f"Unsupported parameter: {name}") for name in REJECTED_PARAMETERS],
    ],
)
def test_the_backend_rules_refuse_each_violation(change, refusal):
    body = {**GOOD_TURN, **change}
    body = {k: v for k, v in body.items() if v is not None}
    assert backend_refusal(GOOD_TURN) is None
    assert backend_refusal(body) == refusal


def test_as_backend_answers_a_refused_body_400_and_compaction_has_a_default(mock_codex):
    mock_codex.enqueue(as_backend(), as_backend())
    bad = requests.post(mock_codex.url, json={**GOOD_TURN, "temperature": 1}, timeout=TIMEOUT)
    assert (bad.status_code, bad.json()) == (400, {"detail": "Unsupported parameter: temperature"})
    good = requests.post(mock_codex.url, json=GOOD_TURN, timeout=TIMEOUT)
    assert good.content == sse.fixture("text")
    compact = requests.post(mock_codex.url + "/compact", json={"input": []}, timeout=TIMEOUT)
    assert compact.json() == {"output": COMPACTED_OUTPUT}
