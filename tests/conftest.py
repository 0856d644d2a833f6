"""Fixtures for the end-to-end tests: the built module, the mock backend, Envoy, clients.

A missing Envoy, module or SDK is a failure, never a skip: these tests are the only place
where the filter meets a real Envoy.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import openai
import pytest

from harness import tokens
from harness.envoy import EnvoyHandle, start_envoy
from harness.mock_codex import MockCodex
from harness.mock_oauth import MockOAuth
from harness.repo import REPO_ROOT, WASM_PATH

# For experiments only: point the suite at another module and skip the cargo build.
WASM_OVERRIDE_VAR = "CODEX_WRAPPER_WASM"
TEST_API_KEY = "test-key"


def _build_module() -> Path:
    try:
        result = subprocess.run(
            ["cargo", "build", "--release", "--target", "wasm32-wasip1", "--lib"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        pytest.fail("cargo not found on PATH: install Rust with rustup", pytrace=False)
    if result.returncode != 0:
        pytest.fail(f"cargo build failed:\n{result.stderr[-4000:]}", pytrace=False)
    if not WASM_PATH.is_file():
        pytest.fail(f"cargo build succeeded but {WASM_PATH} is missing", pytrace=False)
    return WASM_PATH


@pytest.fixture(scope="session")
def wasm_module() -> Path:
    """The filter module, freshly built (cargo makes this cheap when nothing changed)."""
    override = os.environ.get(WASM_OVERRIDE_VAR)
    if override:
        path = Path(override).resolve()
        if not path.is_file():
            pytest.fail(f"{WASM_OVERRIDE_VAR}={override} does not exist", pytrace=False)
        return path
    return _build_module()


@pytest.fixture(scope="session")
def _mock_codex_server() -> Iterator[MockCodex]:
    with MockCodex() as mock:
        yield mock


@pytest.fixture
def mock_codex(_mock_codex_server: MockCodex) -> MockCodex:
    """The session's mock backend with an empty queue and no recorded requests."""
    _mock_codex_server.reset()
    return _mock_codex_server


@pytest.fixture(scope="session")
def auth_json() -> str:
    """A valid ChatGPT auth.json document (access token valid for 10 days)."""
    return tokens.auth_json()


@pytest.fixture(scope="session")
def _mock_oauth_server() -> Iterator[MockOAuth]:
    with MockOAuth() as oauth:
        yield oauth


@pytest.fixture
def mock_oauth(_mock_oauth_server: MockOAuth) -> MockOAuth:
    """The token endpoint the per-test Envoys refresh against, back at its first refresh token."""
    _mock_oauth_server.reset()
    return _mock_oauth_server


def default_env(mock: MockCodex, auth: str, oauth: Optional[MockOAuth] = None) -> Dict[str, str]:
    env = {"OPENAI_API_KEY": TEST_API_KEY, "OPENAI_CODEX_AUTH": auth, "CHATGPT_RESPONSES_URL": mock.url}
    if oauth is not None:
        env["CODEX_REFRESH_TOKEN_URL"] = oauth.url
    return env


@pytest.fixture(scope="module")
def envoy(
    wasm_module: Path, _mock_codex_server: MockCodex, auth_json: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EnvoyHandle]:
    """Envoy with the default test settings, shared by the tests of one module (with a token
    endpoint of its own, so refreshes it makes cannot disturb other modules)."""
    with MockOAuth() as oauth:
        handle = start_envoy(
            default_env(_mock_codex_server, auth_json, oauth), wasm=wasm_module, workdir=tmp_path_factory.mktemp("envoy")
        )
        try:
            yield handle
        finally:
            handle.stop()


@pytest.fixture
def envoy_factory(
    wasm_module: Path,
    _mock_codex_server: MockCodex,
    mock_oauth: MockOAuth,
    auth_json: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., EnvoyHandle]]:
    """`envoy_factory(portable=False, concurrency=1, filter_only_env=None, **env)` starts an
    Envoy for one test.

    `env` is merged over the default test settings; a value of None removes a default.
    `filter_only_env` goes to Envoy's environment without passing the renderer.
    """
    started: List[EnvoyHandle] = []

    def factory(
        *, portable: bool = False, concurrency: int = 1, filter_only_env: Optional[Dict[str, str]] = None, **env: Optional[str]
    ) -> EnvoyHandle:
        merged: Dict[str, Optional[str]] = {**default_env(_mock_codex_server, auth_json, mock_oauth), **env}
        settings = {name: value for name, value in merged.items() if value is not None}
        handle = start_envoy(
            settings,
            portable=portable,
            concurrency=concurrency,
            wasm=wasm_module,
            workdir=tmp_path_factory.mktemp("envoy"),
            filter_only_env=filter_only_env,
        )
        started.append(handle)
        return handle

    try:
        yield factory
    finally:
        for handle in started:
            handle.stop()


@pytest.fixture
def openai_client(envoy: EnvoyHandle) -> openai.OpenAI:
    """The official SDK pointed at the module's Envoy; no retries so failures show."""
    return openai.OpenAI(base_url=envoy.url + "/v1", api_key=TEST_API_KEY, max_retries=0, timeout=20)
