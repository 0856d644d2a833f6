"""Small helpers shared by the end-to-end tests: raw HTTP calls and SSE parsing."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

import requests

from conftest import TEST_API_KEY

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


def chat_body(stream: bool = False, **extra: Any) -> Dict[str, Any]:
    body: Dict[str, Any] = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hello"}], "stream": stream}
    body.update(extra)
    return body


def post(url: str, body: Any, headers: Optional[Dict[str, str]] = None, raw: Optional[bytes] = None) -> requests.Response:
    all_headers = {"Content-Type": "application/json", **AUTH, **(headers or {})}
    data = raw if raw is not None else json.dumps(body).encode()
    return requests.post(url, data=data, headers=all_headers, timeout=20)


def sse_data(text: str) -> List[Any]:
    """The `data:` payloads of an SSE body, JSON-decoded (`[DONE]` stays a string)."""
    out: List[Any] = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        assert frame.startswith("data: "), f"unexpected frame {frame!r}"
        payload = frame[len("data: ") :]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def deltas(frames: List[Any]) -> List[Any]:
    """Each chunk reduced to its delta (or finish reason / usage / error) for readable asserts."""
    out: List[Any] = []
    for f in frames:
        if f == "[DONE]":
            out.append("[DONE]")
        elif "error" in f:
            out.append({"error": f["error"]["code"]})
        elif f["choices"] and f["choices"][0]["finish_reason"]:
            out.append({"finish": f["choices"][0]["finish_reason"]})
        elif f["choices"]:
            out.append(f["choices"][0]["delta"])
        else:
            out.append({"usage": f["usage"]})
    return out


def error_of(resp: requests.Response) -> Tuple[int, Dict[str, Any]]:
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "param", "code"} <= set(body["error"]), body
    return resp.status_code, body["error"]
