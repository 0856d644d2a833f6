"""The Node clients of tests/node (installed by `make node-clients`): Codex CLI and the AI SDK.

A missing install is a failure that says how to install it, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from harness.repo import REPO_ROOT

NODE_DIR = REPO_ROOT / "tests" / "node"
CODEX_BIN = NODE_DIR / "node_modules" / ".bin" / "codex"
CODEX_VERSION = "0.169.0"
INSTALL_HINT = "run `make node-clients` (npm ci in tests/node; needs Node.js 20+ with npm)"


def node_binary() -> str:
    found = shutil.which("node")
    if not found:
        pytest.fail(f"node not found on PATH: {INSTALL_HINT}", pytrace=False)
    return found


def codex_binary() -> Path:
    """tests/node's Codex CLI, checked to be the pinned release."""
    if not CODEX_BIN.is_file():
        pytest.fail(f"{CODEX_BIN} is missing: {INSTALL_HINT}", pytrace=False)
    version = subprocess.run([str(CODEX_BIN), "--version"], capture_output=True, text=True, timeout=60)
    if version.returncode != 0 or version.stdout.split() != ["codex-cli", CODEX_VERSION]:
        pytest.fail(f"{CODEX_BIN} --version: {version.stdout!r} {version.stderr[-500:]!r}: {INSTALL_HINT}", pytrace=False)
    return CODEX_BIN


def node_module(name: str) -> Path:
    """A package of tests/node (fails when it is not installed)."""
    path = NODE_DIR / "node_modules" / name
    if not (path / "package.json").is_file():
        pytest.fail(f"{path} is missing: {INSTALL_HINT}", pytrace=False)
    return path


def run_node_script(script: Path, env: Dict[str, str], args: List[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """`node script args…` with tests/node as the working directory (its node_modules resolve)."""
    return subprocess.run(
        [node_binary(), str(script), *args],
        cwd=NODE_DIR,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
