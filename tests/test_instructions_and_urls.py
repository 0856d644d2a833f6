"""Instruction texts fetched through an Envoy cluster, and the upstream URL precedence."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chat_helpers import chat_body, post
from harness.mock_codex import MockCodex

BASE_TEXT = "You are a careful assistant working through Codex."


class PromptServer:
    """Serves one text at /prompt.md; the first `fail_first` GETs answer 503."""

    def __init__(self, text: str, fail_first: int = 0) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # noqa: D401 - quiet
                pass

            def do_GET(self):  # noqa: N802 - stdlib name
                with owner.lock:
                    owner.hits += 1
                    failing = owner.hits <= fail_first
                data = b"busy" if failing else text.encode()
                self.send_response(503 if failing else 200)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.lock = threading.Lock()
        self.hits = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/prompt.md"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for_instructions(envoy, mock, expected: str, deadline_s: float = 30.0) -> dict:
    """Send requests until the fetched text shows up (the fetch runs in the background)."""
    deadline = time.monotonic() + deadline_s
    while True:
        assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
        sent = mock.last_request.json
        if sent["instructions"].startswith(expected) or time.monotonic() > deadline:
            return sent
        time.sleep(0.2)


def test_base_instructions_are_fetched_once_and_prefixed(envoy_factory, mock_codex):
    prompts = PromptServer(BASE_TEXT)
    try:
        envoy = envoy_factory(INSTRUCTIONS_BASE_URL=prompts.url)
        sent = wait_for_instructions(envoy, mock_codex, BASE_TEXT)
        assert sent["instructions"] == BASE_TEXT
        post(envoy.url + "/v1/chat/completions", chat_body(messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "x"}]))
        assert mock_codex.last_request.json["instructions"] == BASE_TEXT + "\n\nBe terse."
        hits = prompts.hits
        for _ in range(3):
            post(envoy.url + "/v1/chat/completions", chat_body())
        assert prompts.hits == hits, "the text must be fetched once per VM, not per request"
        assert hits <= 3  # one fetch per VM: the main thread and one worker
    finally:
        prompts.close()


def test_failed_fetch_falls_back_then_retries(envoy_factory, mock_codex):
    prompts = PromptServer(BASE_TEXT, fail_first=2)
    try:
        envoy = envoy_factory(INSTRUCTIONS_BASE_URL=prompts.url)
        assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
        assert mock_codex.last_request.json["instructions"] in ("You are a helpful assistant.", BASE_TEXT)
        sent = wait_for_instructions(envoy, mock_codex, BASE_TEXT)
        assert sent["instructions"] == BASE_TEXT
        assert "retrying later" in envoy.log_text()
    finally:
        prompts.close()


@pytest.mark.parametrize(
    "env_for, expected_path",
    [
        (lambda m: {"CHATGPT_RESPONSES_URL": "http://127.0.0.1:9/never", "UPSTREAM_RESPONSES_URL": m.origin + "/custom/responses"}, "/custom/responses"),
        (lambda m: {"CHATGPT_RESPONSES_URL": "http://127.0.0.1:9/never", "UPSTREAM_BASE_URL": m.origin + "/v1/", "UPSTREAM_WIRE_API_PATH": "wire/resp"}, "/v1/wire/resp"),
        (lambda m: {"CHATGPT_RESPONSES_URL": "http://127.0.0.1:9/never", "UPSTREAM_BASE_URL": m.origin + "/v1"}, "/v1/responses"),
    ],
)
def test_upstream_url_precedence_reaches_the_right_server_and_path(envoy_factory, env_for, expected_path):
    with MockCodex(path=expected_path) as other:
        envoy = envoy_factory(**env_for(other))
        resp = post(envoy.url + "/v1/chat/completions", chat_body())
        assert resp.status_code == 200, resp.text
        assert other.last_request.path == expected_path
        assert resp.json()["choices"][0]["message"]["content"] == "Hello world"
