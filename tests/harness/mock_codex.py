"""A scripted mock of the Codex Responses backend (`POST /backend-api/codex/responses`, and
its `/compact`).

Tests enqueue `Script`s; each request to the path takes the next one (or a default short
text stream when the queue is empty) and every request is recorded. The HTTP framing is
under the script's control because the filter must cope with all of them: chunked bodies
split anywhere, Content-Length bodies, close-delimited bodies, and connections that die
mid-stream.

The same class serves other single-path mocks (OAuth token endpoint, ...) through `path`.
The Codex mock also answers the model catalogue (`GET /backend-api/codex/models`, see
`MockCatalogue`); those calls are counted there, not among the recorded requests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qs, urlsplit

from . import sse
from .repo import REPO_ROOT

CODEX_PATH = "/backend-api/codex/responses"
CATALOGUE_PATH = "/backend-api/codex/models"
# The filter's built-in catalogue: what the mock account's catalogue holds unless a test
# sets another.
BUILTIN_CATALOGUE = REPO_ROOT / "src" / "core" / "catalogue" / "builtin.json"
FIRST_ETAG = '"cat-1"'
ENDINGS = ("chunked", "length", "close", "abort")
# A gate that is never opened must not hang the suite forever.
GATE_TIMEOUT_SECONDS = 30.0

# A body element is bytes to send, or an Event the writer waits for first (lets a test
# release chunks one by one without relying on timing).
Chunk = Union[bytes, threading.Event]


@dataclass
class Script:
    """One scripted response.

    ending: "chunked" (each body element is its own HTTP chunk, then the terminating chunk),
            "length" (Content-Length, one write), "close" (no framing, the socket closes at
            the end), "abort" (chunked, then the socket is shut down without the
            terminating chunk).
    delay:  seconds to wait between body elements.
    """

    status: int = 200
    headers: Dict[str, str] = field(default_factory=lambda: {"content-type": "text/event-stream"})
    body: Sequence[Chunk] = field(default_factory=list)
    delay: float = 0.0
    ending: str = "chunked"

    def __post_init__(self) -> None:
        if self.ending not in ENDINGS:
            raise ValueError(f"ending must be one of {ENDINGS}, got {self.ending!r}")
        if isinstance(self.body, (bytes, bytearray)):
            self.body = [bytes(self.body)]
        else:
            self.body = list(self.body)

    @classmethod
    def json(cls, status: int, document: Any, headers: Optional[Dict[str, str]] = None) -> "Script":
        """A JSON answer with Content-Length (typical for upstream errors)."""
        all_headers = {"content-type": "application/json"}
        all_headers.update(headers or {})
        return cls(status=status, headers=all_headers, body=[json.dumps(document).encode()], ending="length")

    @classmethod
    def events(cls, events: Sequence[dict], **kwargs) -> "Script":
        """An SSE stream sent one event per HTTP chunk."""
        return cls(body=sse.sse_frames(events), **kwargs)

    @classmethod
    def fixture(cls, name: str, **kwargs) -> "Script":
        """A recorded upstream stream (tests/fixtures/streams/<name>.sse), one event per HTTP
        chunk; `dropped` should go with ending="close" or "abort", as it was recorded."""
        return cls(body=sse.fixture_records(name), **kwargs)


COMPACT_SUFFIX = "/compact"
# What the backend's compaction answers: the conversation, shortened to these items.
COMPACTED_OUTPUT = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Summary of the earlier turns."}]}
]


def default_script(request: Optional["RecordedRequest"] = None) -> Script:
    """The `text` fixture: "Hello world", usage 12 + 5; a compaction gets COMPACTED_OUTPUT."""
    if request is not None and urlsplit(request.path).path.endswith(COMPACT_SUFFIX):
        return Script.json(200, {"output": COMPACTED_OUTPUT})
    return Script.fixture("text")


# The backend's rules for a turn body (its 400 `{"detail": ...}` answers): parameters it
# rejects, and the members it requires.
REJECTED_PARAMETERS = (
    "max_output_tokens", "max_tokens", "max_completion_tokens", "max_tool_calls", "temperature", "top_p",
    "top_logprobs", "logprobs", "truncation", "user", "safety_identifier", "metadata", "background",
    "prompt_cache_retention", "stream_options", "previous_response_id", "conversation",
)


def backend_refusal(body: Any) -> Optional[str]:
    """Why the backend would answer 400 to this turn body, or None when it takes it."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if body.get("stream") is not True:
        return "Stream must be set to true"
    if body.get("store") is not False:
        return "Store must be set to false"
    for name in REJECTED_PARAMETERS:
        if name in body:
            return f"Unsupported parameter: {name}"
    if not isinstance(body.get("input"), list):
        return "Input must be a list"
    if "reasoning.encrypted_content" not in (body.get("include") or []):
        return "include must list reasoning.encrypted_content with store=false"
    return None


def as_backend(script: Optional[Script] = None) -> Callable[["RecordedRequest"], Script]:
    """A script that first checks the body as the backend does: a body it would refuse gets
    its 400, anything else `script` (default: the `text` fixture)."""

    def answer(request: "RecordedRequest") -> Script:
        refusal = backend_refusal(request.json)
        if refusal is not None:
            return Script.json(400, {"detail": refusal})
        return script if script is not None else default_script(request)

    return answer


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # including the query string
    headers: Dict[str, str]  # lower-cased names; repeated headers joined with ", "
    header_list: List[Tuple[str, str]]  # as received, in order, lower-cased names
    body: bytes
    json: Any  # parsed body, or None if it is not JSON
    chunked: bool  # the request body came with Transfer-Encoding: chunked
    client: Tuple[str, int]  # peer address: equal ports mean a reused (keep-alive) connection

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())


ScriptSource = Union[Script, Callable[[RecordedRequest], Script]]


@dataclass(frozen=True)
class CatalogueCall:
    request: RecordedRequest
    status: int  # what the mock answered (0: the connection was cut)
    at: float  # time.monotonic() on arrival


class MockCatalogue:
    """The account's model catalogue, `GET /backend-api/codex/models?client_version=…`.

    Every call is counted. A call without `client_version` gets a 400, one without a bearer
    token a 401; otherwise the answer is 200 with the current document and its ETag, or 304
    when `If-None-Match` names that ETag. `set` replaces the document (a new catalogue),
    `fail_with` makes every call fail (a status, or None to cut the connection)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.reset()

    def reset(self) -> None:
        with self._cond:
            self._document: Any = json.loads(BUILTIN_CATALOGUE.read_text(encoding="utf-8"))
            self._etag = FIRST_ETAG
            self._failing: Optional[Union[int, str]] = None
            self._calls: List[CatalogueCall] = []

    def set(self, document: Any, etag: str) -> None:
        with self._cond:
            self._document, self._etag = document, etag

    def fail_with(self, status: Optional[int]) -> None:
        """Fail every later call with `status` (None: cut the connection); `recover` ends it."""
        with self._cond:
            self._failing = "cut" if status is None else status

    def recover(self) -> None:
        with self._cond:
            self._failing = None

    @property
    def etag(self) -> str:
        with self._cond:
            return self._etag

    @property
    def calls(self) -> List[CatalogueCall]:
        with self._cond:
            return list(self._calls)

    def wait_for_calls(self, n: int, timeout: float = 30.0) -> List[CatalogueCall]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._calls) >= n, timeout):
                raise AssertionError(f"expected {n} catalogue call(s) within {timeout}s, got {len(self._calls)}")
            return list(self._calls)

    def answer(self, request: RecordedRequest) -> Script:
        with self._cond:
            script = self._script(request)
            status = 0 if script.ending == "abort" else script.status
            self._calls.append(CatalogueCall(request, status, time.monotonic()))
            self._cond.notify_all()
            return script

    def _script(self, request: RecordedRequest) -> Script:
        version = parse_qs(urlsplit(request.path).query).get("client_version", [""])[0]
        if not version:
            return Script.json(400, {"detail": "client_version is required"})
        if not (request.header("authorization") or "").startswith("Bearer ") or len(request.header("authorization")) <= 7:
            return Script.json(401, {"detail": "Unauthorized"})
        if self._failing == "cut":
            return Script(status=200, headers={"content-type": "application/json"}, body=[b'{"models":'], ending="abort")
        if self._failing is not None:
            return Script.json(int(self._failing), {"error": {"message": "catalogue unavailable"}})
        if request.header("if-none-match") == self._etag:
            return Script(status=304, headers={"etag": self._etag}, body=[], ending="length")
        return Script.json(200, self._document, headers={"etag": self._etag})


# --------------------------------------------------------------------------------------
# Request side


def _read_chunked(rfile) -> bytes:
    body = bytearray()
    while True:
        size_line = rfile.readline(65537)
        if not size_line:
            raise ConnectionError("request body ended inside chunked framing")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Trailers (if any) end with an empty line.
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(body)
        body += rfile.read(size)
        rfile.readline(3)  # CRLF after the chunk data


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _headers_of(message) -> Tuple[Dict[str, str], List[Tuple[str, str]]]:
    header_list = [(name.lower(), value) for name, value in message.items()]
    joined: Dict[str, str] = {}
    for name, value in header_list:
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined, header_list


# --------------------------------------------------------------------------------------
# Response side


def _wait_gate(gate: threading.Event) -> None:
    gate.wait(GATE_TIMEOUT_SECONDS)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real backend behind Envoy
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep pytest output clean

    def _read_body(self) -> Tuple[bytes, bool]:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return _read_chunked(self.rfile), True
        length = int(self.headers.get("content-length") or 0)
        return (self.rfile.read(length) if length else b""), False

    def _handle(self) -> None:
        body, chunked = self._read_body()
        headers, header_list = _headers_of(self.headers)
        request = RecordedRequest(
            self.command, self.path, headers, header_list, body, _parse_json(body), chunked, self.client_address
        )
        mock = self.server.mock
        if mock.catalogue is not None and self.command == "GET" and urlsplit(self.path).path == CATALOGUE_PATH:
            script = mock.catalogue.answer(request)
        elif (
            self.command == "POST" and urlsplit(self.path).path in (mock.path, mock.path + COMPACT_SUFFIX)
        ) or urlsplit(self.path).path in mock.extra_paths:
            mock._record(request)
            script = mock._next_script(request)
        else:
            mock._record(request)
            script = Script.json(404, {"error": {"message": f"mock: no route for {self.command} {self.path}"}})
        try:
            self._write(script)
        except (BrokenPipeError, ConnectionResetError):
            # The client (Envoy) went away mid-response, e.g. after a downstream cancel.
            self.close_connection = True
            mock._note_disconnect()

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def _start(self, script: Script, framing: Dict[str, str]) -> None:
        self.send_response(script.status)
        for name, value in {**script.headers, **framing}.items():
            self.send_header(name, value)
        self.end_headers()

    def _pieces(self, script: Script):
        """The body's byte strings, honouring gates and the inter-chunk delay."""
        first = True
        for element in script.body:
            if isinstance(element, threading.Event):
                _wait_gate(element)
                continue
            if not element:
                continue  # an empty HTTP chunk would terminate a chunked body early
            if not first and script.delay:
                time.sleep(script.delay)
            first = False
            yield element

    def _write(self, script: Script) -> None:
        if script.ending == "length":
            data = b"".join(self._pieces(script))
            self._start(script, {"Content-Length": str(len(data))})
            self.wfile.write(data)
        elif script.ending == "close":
            self._start(script, {"Connection": "close"})  # also sets close_connection
            for piece in self._pieces(script):
                self.wfile.write(piece)
                self.wfile.flush()
        else:
            self._start(script, {"Transfer-Encoding": "chunked"})
            for piece in self._pieces(script):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            if script.ending == "abort":
                self._abort_connection()
            else:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

    def _abort_connection(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mock: "MockCodex"


# --------------------------------------------------------------------------------------
# The mock


class MockCodex:
    def __init__(
        self,
        path: str = CODEX_PATH,
        default: Callable[["RecordedRequest"], Script] = default_script,
        host: str = "127.0.0.1",
        extra_paths: Sequence[str] = (),
    ) -> None:
        self.path = path
        # More paths answered like `path`, for any method (the OAuth mock's login endpoints).
        self.extra_paths = tuple(extra_paths)
        # Only the Codex backend has a model catalogue.
        self.catalogue: Optional[MockCatalogue] = MockCatalogue() if path == CODEX_PATH else None
        self._default = default
        self._host = host
        self._cond = threading.Condition()
        self._scripts: Deque[ScriptSource] = deque()
        self._requests: List[RecordedRequest] = []
        self._disconnects = 0
        # Per ChatGPT account (the `chatgpt-account-id` header): usage-limit resets (Unix
        # seconds, wall clock) and the window headers every answer carries.
        self._limits: Dict[str, Tuple[float, str]] = {}
        self._windows: Dict[str, Dict[str, str]] = {}
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # lifecycle ----------------------------------------------------------------------
    def start(self) -> "MockCodex":
        self._server = _Server((self._host, 0), _Handler)
        self._server.mock = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="mock-codex", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "MockCodex":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "mock not started"
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + self.path

    # scripting ----------------------------------------------------------------------
    def enqueue(self, *scripts: ScriptSource) -> None:
        """Queue responses; a callable receives the RecordedRequest and returns a Script."""
        with self._cond:
            self._scripts.extend(scripts)

    def reset(self) -> None:
        """Forget queued scripts and recorded requests (between tests)."""
        with self._cond:
            self._scripts.clear()
            self._requests.clear()
            self._disconnects = 0
            self._limits.clear()
            self._windows.clear()
        if self.catalogue is not None:
            self.catalogue.reset()

    def pending_scripts(self) -> int:
        with self._cond:
            return len(self._scripts)

    # accounts -----------------------------------------------------------------------
    def exhaust(self, account_id: str, resets_in: float, kind: str = "usage_limit_reached") -> int:
        """Answer every request of this account with the backend's usage-limit 429 until
        `resets_in` seconds from now (`kind`: usage_limit_reached or usage_not_included).
        Returns the reset time (Unix seconds)."""
        resets_at = int(time.time() + resets_in)
        with self._cond:
            self._limits[account_id] = (resets_at, kind)
        return resets_at

    def set_windows(self, account_id: str, primary: float, secondary: float = 0.0, resets_in: int = 3600) -> None:
        """The usage windows this account's answers report (`x-codex-*` headers)."""
        reset = str(int(time.time()) + resets_in)
        with self._cond:
            self._windows[account_id] = {
                "x-codex-primary-used-percent": str(primary),
                "x-codex-primary-reset-at": reset,
                "x-codex-secondary-used-percent": str(secondary),
                "x-codex-secondary-reset-at": str(int(reset) + 86400),
            }

    def accounts_served(self) -> List[Optional[str]]:
        """The `chatgpt-account-id` of every recorded request, in order."""
        return [r.header("chatgpt-account-id") for r in self.requests]

    def _limited(self, account: Optional[str]) -> Optional[Script]:
        with self._cond:
            limit = self._limits.get(account or "")
        if limit is None or time.time() >= limit[0]:
            return None
        resets_at, kind = limit
        headers = {
            "x-codex-primary-used-percent": "100",
            "x-codex-primary-reset-at": str(resets_at),
            "x-codex-secondary-used-percent": "20",
        }
        return Script.json(
            429,
            {"error": {"type": kind, "message": "You've hit your usage limit.", "plan_type": "plus", "resets_at": resets_at}},
            headers,
        )

    def _next_script(self, request: RecordedRequest) -> Script:
        account = request.header("chatgpt-account-id")
        limited = self._limited(account)
        if limited is not None:
            return limited
        with self._cond:
            source = self._scripts.popleft() if self._scripts else None
            windows = dict(self._windows.get(account or "", {}))
        if source is None:
            script = self._default(request)
        else:
            script = source(request) if callable(source) else source
        if windows:
            script = Script(
                status=script.status,
                headers={**script.headers, **windows},
                body=script.body,
                delay=script.delay,
                ending=script.ending,
            )
        return script

    # recording ----------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    def _note_disconnect(self) -> None:
        with self._cond:
            self._disconnects += 1
            self._cond.notify_all()

    @property
    def requests(self) -> List[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._cond:
            assert self._requests, "the mock has received no request"
            return self._requests[-1]

    @property
    def disconnects(self) -> int:
        """Responses cut short because the client closed the connection."""
        with self._cond:
            return self._disconnects

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> List[RecordedRequest]:
        """Block until at least `n` requests were recorded; fail the test otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise AssertionError(f"mock expected {n} request(s) within {timeout}s, got {len(self._requests)}")
            return list(self._requests)

    def wait_for_disconnects(self, n: int = 1, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._disconnects >= n, timeout):
                raise AssertionError(f"mock expected {n} client disconnect(s) within {timeout}s, got {self._disconnects}")
