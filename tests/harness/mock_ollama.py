"""A small stand-in for an Ollama server: `/api/*` routes with Ollama's own JSON and NDJSON
shapes, recording every request (method, path, headers, body) for assertions."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _handle(self) -> None:
        body = self._body()
        mock: MockOllama = self.server.mock  # type: ignore[attr-defined]
        mock.record({"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        route = self.path.split("?")[0]
        if route == "/api/chat" and json.loads(body or b"{}").get("stream", True):
            self._ndjson([{"model": "llama3", "message": {"role": "assistant", "content": part}, "done": False} for part in ("Hel", "lo")] + [{"model": "llama3", "done": True, "done_reason": "stop"}])
        elif route == "/api/tags":
            self._json(200, {"models": [{"name": "llama3:latest", "model": "llama3:latest"}]})
        elif route == "/api/version":
            self._json(200, {"version": "0.9.0"})
        elif route == "/api/chat":
            self._json(200, {"model": "llama3", "message": {"role": "assistant", "content": "Hello"}, "done": True})
        elif route == "/api/delete":
            self._json(200, {})
        else:
            self._json(404, {"error": f"path {route} not found"})

    do_GET = do_POST = do_DELETE = do_HEAD = _handle

    def _json(self, status: int, document: Any) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _ndjson(self, lines: List[dict]) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/x-ndjson")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for line in lines:
            data = (json.dumps(line) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class MockOllama:
    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.mock = self  # type: ignore[attr-defined]
        self._lock = threading.Lock()
        self._requests: List[Dict[str, Any]] = []
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "MockOllama":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, request: Dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> List[Dict[str, Any]]:
        with self._lock:
            return list(self._requests)
