"""Settings, logins and keys reach a running Envoy without a restart: a new main filter
configuration through file-based ECDS (the harness writes it as `make run` does), and
`make run`'s supervisor (envoy/run.py) turning changed files into that configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import requests

from chat_helpers import chat_body, post, sse_data
from harness import sse, tokens
from harness.envoy import free_ports
from harness.mock_codex import MockCodex, Script
from harness.repo import REPO_ROOT

DEADLINE_SECONDS = 20.0


def bearer(request) -> str:
    return request.header("authorization").removeprefix("Bearer ")


def poll(check: Callable[[], bool], what: str, timeout: float = DEADLINE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        time.sleep(0.1)


def chat_status(url: str, key: str) -> int:
    return post(url + "/v1/chat/completions", chat_body(), headers={"Authorization": f"Bearer {key}"}).status_code


def responses_requests(mock: MockCodex) -> List:
    return [r for r in mock.requests if r.path.endswith("/responses")]


def test_a_new_client_key_applies_at_once_while_a_stream_in_flight_finishes(envoy_factory, mock_codex):
    envoy = envoy_factory()
    frames = sse.sse_frames(sse.text_events(["Hello", " world"]))
    gate = threading.Event()
    mock_codex.enqueue(Script(body=[*frames[:3], gate, *frames[3:]]))
    slow = requests.post(
        envoy.url + "/v1/chat/completions",
        json=chat_body(stream=True),
        headers={"Authorization": "Bearer test-key"},
        stream=True,
        timeout=30,
    )
    try:
        assert slow.status_code == 200
        envoy.reload(OPENAI_API_KEY="the-new-key")
        poll(lambda: chat_status(envoy.url, "test-key") == 401, "the old key is refused")
        assert chat_status(envoy.url, "the-new-key") == 200
    finally:
        gate.set()
    text = slow.text
    content = "".join(
        f["choices"][0]["delta"].get("content") or ""
        for f in sse_data(text)
        if isinstance(f, dict) and f.get("choices")
    )
    assert content == "Hello world" and text.rstrip().endswith("data: [DONE]"), text
    assert envoy.alive


def test_a_replaced_login_replaces_the_token_record(envoy_factory, mock_codex):
    envoy = envoy_factory()
    assert chat_status(envoy.url, "test-key") == 200
    assert responses_requests(mock_codex)[-1].header("chatgpt-account-id") == tokens.DEFAULT_ACCOUNT_ID
    other = tokens.auth_json(account_id="acct-other", refresh_token="rt-other")
    envoy.reload(OPENAI_CODEX_AUTH=other)

    def other_account_used() -> bool:
        assert chat_status(envoy.url, "test-key") == 200
        return responses_requests(mock_codex)[-1].header("chatgpt-account-id") == "acct-other"

    poll(other_account_used, "the backend sees the new login's account")
    assert bearer(responses_requests(mock_codex)[-1]) == json.loads(other)["tokens"]["access_token"]


def test_a_refreshed_login_survives_a_reload_of_other_settings(envoy_factory, mock_codex, mock_oauth):
    # The token record lives in the VM's shared data: a new filter configuration (a new root
    # context in the same VM) with the same login must keep the refreshed tokens.
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=-60), concurrency=2)
    assert chat_status(envoy.url, "test-key") == 200
    assert mock_oauth.calls == 1
    refreshed = bearer(responses_requests(mock_codex)[-1])
    envoy.reload(REASONING_EFFORT="high")

    def effort_high() -> bool:
        assert chat_status(envoy.url, "test-key") == 200
        return (responses_requests(mock_codex)[-1].json.get("reasoning") or {}).get("effort") == "high"

    poll(effort_high, "the new setting is used")
    assert bearer(responses_requests(mock_codex)[-1]) == refreshed
    assert mock_oauth.calls == 1, "the spent login must not come back and be refreshed again"


# --------------------------------------------------------------------------------------
# make run's supervisor


class RunPy:
    """envoy/run.py as a process, its output collected."""

    def __init__(self, args: List[str], env: dict) -> None:
        self.process = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
        self.lines: List[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> Optional[int]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(5)
        return self.process.returncode


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def test_make_run_picks_up_a_replaced_auth_json_and_ignores_a_broken_one(wasm_module, mock_codex, tmp_path):
    from harness.envoy import _accepts

    port, admin_port = free_ports(2)
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    auth_file = codex_home / "auth.json"
    auth_file.write_text(tokens.auth_json(), encoding="utf-8")
    env_file = tmp_path / ".dev.vars"
    env_file.write_text(
        f"CODEX_HOME={codex_home}\nOPENAI_API_KEY=test-key\nCHATGPT_RESPONSES_URL={mock_codex.url}\n"
        f"PORT={port}\nENVOY_ADMIN_PORT={admin_port}\nENVOY_CONCURRENCY=2\n",
        encoding="utf-8",
    )
    env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    run = RunPy([sys.executable, str(REPO_ROOT / "envoy" / "run.py"), "--env-file", str(env_file), "--wasm", str(wasm_module)], env)
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: run.process.poll() is None and _accepts(port), "Envoy listens", timeout=60)
        poll(lambda: chat_status(url, "test-key") == 200, "the first chat works")
        assert responses_requests(mock_codex)[-1].header("chatgpt-account-id") == tokens.DEFAULT_ACCOUNT_ID

        write_atomically(auth_file, tokens.auth_json(account_id="acct-new", refresh_token="rt-new"))

        def new_account_used() -> bool:
            assert chat_status(url, "test-key") == 200
            return responses_requests(mock_codex)[-1].header("chatgpt-account-id") == "acct-new"

        poll(new_account_used, "the replaced auth.json is used")
        assert "applied the new settings (OPENAI_CODEX_AUTH)" in run.output()

        auth_file.write_text('{"tokens": {"access_token": ', encoding="utf-8")
        poll(lambda: "invalid OPENAI_CODEX_AUTH" in run.output(), "the broken auth.json is reported")
        assert "the running configuration stays" in run.output()
        assert chat_status(url, "test-key") == 200
        assert responses_requests(mock_codex)[-1].header("chatgpt-account-id") == "acct-new"

        # While auth.json is broken nothing is applied; with it mended, a changed key in
        # .dev.vars is. No secret in what run.py prints.
        write_atomically(auth_file, tokens.auth_json(account_id="acct-new", refresh_token="rt-new"))
        env_file.write_text(env_file.read_text(encoding="utf-8").replace("OPENAI_API_KEY=test-key", "OPENAI_API_KEY=key-2"))
        poll(lambda: chat_status(url, "key-2") == 200, "the key from the changed .dev.vars is accepted")
        assert chat_status(url, "test-key") == 401
        assert "key-2" not in run.output() and "rt-new" not in run.output()
        assert "restart `make run`" not in run.output()

        # A new upstream URL needs a new Envoy: said, not applied; the rest still is.
        env_file.write_text(
            env_file.read_text(encoding="utf-8").replace("OPENAI_API_KEY=key-2", "OPENAI_API_KEY=key-3")
            + "CHATGPT_RESPONSES_URL=http://127.0.0.1:1/elsewhere\n"
        )
        poll(lambda: chat_status(url, "key-3") == 200, "the key is applied beside the restart-only change")
        assert "CHATGPT_RESPONSES_URL changed: restart `make run` to apply it" in run.output()
        # The ECDS file with the login, and the admin socket, are their owner's only.
        run_dir = REPO_ROOT / "target" / "envoy"
        assert (run_dir / f"filter-{port}" / "filter.json").stat().st_mode & 0o777 == 0o600
        assert (run_dir / f"admin-{port}.sock").stat().st_mode & 0o077 == 0
        assert f"admin-{port}.sock" in run.output()
    finally:
        code = run.stop()
    assert code == 0, run.output()[-3000:]
    assert not _accepts(port), "Ctrl-C stops Envoy too"
    assert not (run_dir / f"filter-{port}").exists(), "the file with the login is removed at exit"


def test_a_configuration_the_filter_refuses_leaves_the_running_one_in_place(envoy_factory, mock_codex):
    # Where no supervisor checks the values first (a hand-written file, a control plane),
    # Envoy itself must keep the last configuration the filter accepted.
    from harness.repo import load_render

    render = load_render()
    envoy = envoy_factory()
    bad = {**render.reloadable_values(envoy.settings), "OPENAI_API_KEY": "other-key", "REASONING_EFFORT": "extreme"}
    render.write_filter_config(render.filter_config_resource(envoy.opts, bad), envoy.filter_config)
    poll(lambda: "invalid REASONING_EFFORT" in envoy.log_text(), "the filter refuses the configuration")
    assert chat_status(envoy.url, "test-key") == 200
    assert chat_status(envoy.url, "other-key") == 401
    assert envoy.alive


def test_make_run_with_an_auth_dir_uses_the_pool_and_an_account_added_while_it_runs(wasm_module, mock_codex, tmp_path):
    # Both filter instances (the main one and the credentials one in the Codex cluster) must
    # get the accounts from run.py's configuration files: Envoy's environment has none.
    from harness.envoy import _accepts

    port, admin_port = free_ports(2)
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    auth_dir = tmp_path / "accounts"
    auth_dir.mkdir()
    ids = {label: f"acct_{label}" for label in ("alpha", "beta", "gamma")}
    for label in ("alpha", "beta"):
        (auth_dir / f"{label}.json").write_text(tokens.auth_json(account_id=ids[label], refresh_token=f"rt_{label}"))
    env_file = tmp_path / ".dev.vars"
    env_file.write_text(
        f"CODEX_HOME={codex_home}\nCODEX_AUTH_DIR={auth_dir}\nOPENAI_API_KEY=test-key\n"
        f"CHATGPT_RESPONSES_URL={mock_codex.url}\nPORT={port}\nENVOY_ADMIN_PORT={admin_port}\nENVOY_CONCURRENCY=2\n",
        encoding="utf-8",
    )
    env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    run = RunPy([sys.executable, str(REPO_ROOT / "envoy" / "run.py"), "--env-file", str(env_file), "--wasm", str(wasm_module)], env)
    url = f"http://127.0.0.1:{port}"
    body = chat_body(messages=[{"role": "user", "content": "one conversation"}])

    def chat() -> requests.Response:
        return post(url + "/v1/chat/completions", body, headers={"Authorization": "Bearer test-key"})

    def last_account() -> str:
        request = responses_requests(mock_codex)[-1]
        account = request.header("chatgpt-account-id")
        claims = tokens.decode_jwt_claims(bearer(request))[tokens.AUTH_CLAIM]
        assert claims["chatgpt_account_id"] == account, "the attempt carries its account's own token"
        return account

    try:
        poll(lambda: run.process.poll() is None and _accepts(port), "Envoy listens", timeout=60)
        resp = chat()
        assert resp.status_code == 200, resp.text
        first = last_account()
        assert first in (ids["alpha"], ids["beta"])
        other = ids["beta"] if first == ids["alpha"] else ids["alpha"]

        # The conversation's account reaches its usage limit: the client sees no error, the
        # retry goes out on the other account.
        mock_codex.exhaust(first, resets_in=600)
        resp = chat()
        assert resp.status_code == 200, resp.text
        assert [r.header("chatgpt-account-id") for r in responses_requests(mock_codex)[-2:]] == [first, other]
        last_account()

        # Both spent: the pool answers 429 ...
        mock_codex.exhaust(other, resets_in=600)
        assert chat().status_code == 429
        # ... until a third login is dropped into the directory.
        write_atomically(auth_dir / "gamma.json", tokens.auth_json(account_id=ids["gamma"], refresh_token="rt_gamma"))
        poll(lambda: chat().status_code == 200, "the added account serves")
        assert last_account() == ids["gamma"]
        assert "applied the new settings (OPENAI_CODEX_AUTH)" in run.output()
        assert "restart `make run`" not in run.output()
        assert "rt_gamma" not in run.output()
    finally:
        code = run.stop()
    assert code == 0, run.output()[-3000:]
