"""`make login` (src/bin/codex-login): the built program against the mock OAuth issuer.

The device-code flow end to end (what it prints, what it polls, the file it writes), the
browser flow driven as a browser would (open the printed URL, follow the redirect to the
local callback), the error cases with their messages and exit statuses, `--status`, and a
wrapper that serves chat with the login the program wrote.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterator, List, Optional
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from harness import tokens
from harness.envoy import start_envoy
from harness.mock_codex import Script
from harness.mock_oauth import CLIENT_ID, DEVICE_CALLBACK_PATH, DEVICE_TOKEN_PATH, LOGIN_ACCOUNT_ID, OAUTH_PATH, MockOAuth
from harness.repo import REPO_ROOT, load_render

RUN_TIMEOUT = 60
CALLBACK_PORTS = (1455, 1457)


@pytest.fixture(scope="session")
def login_bin() -> Path:
    """The program `make login` runs, freshly built."""
    built = subprocess.run(
        ["cargo", "build", "--quiet", "--bin", "codex-login", "--message-format=json-render-diagnostics"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        pytest.fail(f"cargo build --bin codex-login failed:\n{built.stderr[-4000:]}", pytrace=False)
    for line in built.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("target", {}).get("name") == "codex-login":
            if message.get("executable"):
                return Path(message["executable"])
    pytest.fail("cargo built no codex-login executable", pytrace=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def login_env(home: Path, oauth: MockOAuth, **extra: str) -> Dict[str, str]:
    """A clean environment: nothing from the developer's own login or settings."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_AUTH_ISSUER": oauth.issuer}
    env.update(extra)
    return env


def toolchain_env() -> Dict[str, str]:
    """The test's HOME is not the developer's: rustup and cargo keep theirs."""
    return {
        "RUSTUP_HOME": os.environ.get("RUSTUP_HOME") or str(Path.home() / ".rustup"),
        "CARGO_HOME": os.environ.get("CARGO_HOME") or str(Path.home() / ".cargo"),
    }


def run_login(login_bin: Path, env: Dict[str, str], *args: str, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(login_bin), "--env-file", "/dev/null", *args],
        env=env,
        cwd=cwd or env["HOME"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def secrets_of(document: dict) -> List[str]:
    """Every token of a token document, and each JWT's parts (a part alone is a leak too)."""
    found = []
    for name in ("access_token", "refresh_token", "id_token"):
        value = document.get(name)
        if value:
            found.append(value)
            found.extend(part for part in value.split(".") if len(part) > 16)
    return found


def form_of(request) -> Dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


# --------------------------------------------------------------------------------------
# Device code


def test_device_login_writes_codex_clis_auth_json_with_mode_0600(login_bin, mock_oauth, home):
    mock_oauth.pending_polls = 2
    before = time.time()
    result = run_login(login_bin, login_env(home, mock_oauth))
    assert result.returncode == 0, result.stderr

    # What the user is shown: the page and the code the issuer gave, nothing secret.
    assert f"{mock_oauth.issuer}/codex/device" in result.stdout
    code = re.search(r"^\s+(\d{4}-\d{4})\s*$", result.stdout, re.M)
    assert code, result.stdout
    polls = mock_oauth.requests_to(DEVICE_TOKEN_PATH)
    assert len(polls) == 3, "two pending answers, then the authorization"
    assert all(p.json["user_code"] == code.group(1) for p in polls)
    assert all(p.json["device_auth_id"].startswith("dev_") for p in polls)

    # The exchange: form-encoded, the device callback as redirect URI, the issuer's verifier.
    (exchange,) = mock_oauth.requests_to(OAUTH_PATH)
    form = form_of(exchange)
    assert exchange.header("content-type").startswith("application/x-www-form-urlencoded")
    assert form["grant_type"] == "authorization_code"
    assert form["redirect_uri"] == mock_oauth.issuer + DEVICE_CALLBACK_PATH
    assert form["client_id"] == CLIENT_ID

    path = home / ".codex" / "auth.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    (issued,) = mock_oauth.logins
    assert list(document) == ["auth_mode", "OPENAI_API_KEY", "tokens", "last_refresh"]
    assert document["auth_mode"] == "chatgpt" and document["OPENAI_API_KEY"] is None
    assert document["tokens"] == {**issued, "account_id": LOGIN_ACCOUNT_ID}
    written = datetime.strptime(document["last_refresh"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before - 1 <= written.timestamp() <= time.time() + 1
    for secret in secrets_of(issued):
        assert secret not in result.stdout + result.stderr
    assert str(path) in result.stdout


def test_make_login_runs_the_program_with_its_arguments(mock_oauth, home, login_bin):
    env = login_env(home, mock_oauth, CODEX_HOME=str(home / "via-make"), **toolchain_env())
    result = subprocess.run(
        ["make", "-s", "login", "ARGS=--env-file /dev/null --timeout 30"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "/codex/device" in result.stdout
    document = json.loads((home / "via-make" / "auth.json").read_text())
    assert document["tokens"]["refresh_token"] == mock_oauth.logins[0]["refresh_token"]


def test_a_new_login_replaces_the_old_file_in_one_step(login_bin, mock_oauth, home):
    codex_home = home / "codex-home"
    codex_home.mkdir()
    path = codex_home / "auth.json"
    old = tokens.auth_json(account_id="acct_old")
    path.write_text(old)
    path.chmod(0o644)
    old_inode = path.stat().st_ino
    # A reader that opened the old file before the login (a file watch, Codex CLI) keeps
    # reading the whole old document: the new one arrives by rename, never by rewriting.
    with open(path) as reader:
        mock_oauth.pending_polls = 1
        result = run_login(login_bin, login_env(home, mock_oauth, CODEX_HOME=str(codex_home)))
        assert result.returncode == 0, result.stderr
        assert reader.read() == old
    assert path.stat().st_ino != old_inode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["tokens"]["account_id"] == LOGIN_ACCOUNT_ID
    assert sorted(p.name for p in codex_home.iterdir()) == ["auth.json"], "no temporary file is left"


def test_label_writes_an_account_of_the_pool(login_bin, mock_oauth, home, tmp_path):
    pool = tmp_path / "pool"
    env = login_env(home, mock_oauth, CODEX_AUTH_DIR=str(pool))
    result = run_login(login_bin, env, "--label", "work-2")
    assert result.returncode == 0, result.stderr
    document = json.loads((pool / "work-2.json").read_text())
    assert document["tokens"]["refresh_token"] == mock_oauth.logins[0]["refresh_token"]
    assert stat.S_IMODE((pool / "work-2.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(pool.stat().st_mode) == 0o700, "a new directory for secrets is private"
    assert not (home / ".codex").exists()

    out = tmp_path / "elsewhere" / "login.json"
    result = run_login(login_bin, env, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["tokens"]["refresh_token"] == mock_oauth.logins[1]["refresh_token"]

    for args, message in (
        (["--label", "../escape"], "--label"),
        (["--label", "a", "--out", str(out)], "cannot be used together"),
    ):
        result = run_login(login_bin, env, *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    result = run_login(login_bin, login_env(home, mock_oauth), "--label", "work")
    assert result.returncode == 2 and "CODEX_AUTH_DIR" in result.stderr, result.stderr
    assert len(mock_oauth.logins) == 2, "a refused argument starts no login"


def test_device_login_disabled_says_how_to_enable_it(login_bin, mock_oauth, home):
    mock_oauth.device_enabled = False
    result = run_login(login_bin, login_env(home, mock_oauth))
    assert result.returncode == 3, result.stderr
    assert "enable device code login in ChatGPT security settings, or use --browser" in result.stderr
    assert not (home / ".codex").exists()


def test_an_expired_code_says_to_log_in_again(login_bin, mock_oauth, home):
    mock_oauth.device_outcome = "expire"
    result = run_login(login_bin, login_env(home, mock_oauth))
    assert result.returncode == 4, result.stderr
    assert "the code expired" in result.stderr and "run `make login` again" in result.stderr
    # The issuer never answers: the program's own deadline ends the wait the same way.
    mock_oauth.device_outcome = "wait"
    result = run_login(login_bin, login_env(home, mock_oauth), "--timeout", "2")
    assert result.returncode == 4, result.stderr
    assert "the code expired" in result.stderr
    assert not mock_oauth.requests_to(OAUTH_PATH), "nothing was exchanged"
    assert not (home / ".codex").exists()


def test_a_refused_exchange_or_authorization_writes_nothing(login_bin, mock_oauth, home):
    mock_oauth.fail_next(Script.json(400, {"error": "invalid_grant", "error_description": "the code was already used"}))
    result = run_login(login_bin, login_env(home, mock_oauth))
    assert result.returncode == 5, result.stderr
    assert "refused" in result.stderr and "invalid_grant" in result.stderr and "already used" in result.stderr
    assert "run `make login` again" in result.stderr
    mock_oauth.device_outcome = "deny"
    result = run_login(login_bin, login_env(home, mock_oauth))
    assert result.returncode == 5 and "access_denied" in result.stderr, result.stderr
    # A server error is no refusal: worth another try.
    mock_oauth.device_outcome = "authorize"
    mock_oauth.fail_next(Script.json(503, {"error": {"code": "unavailable"}}))
    result = run_login(login_bin, login_env(home, mock_oauth))
    assert result.returncode == 1 and "the code exchange failed" in result.stderr, result.stderr
    assert not (home / ".codex").exists()


def test_an_unreachable_issuer_is_a_plain_failure(login_bin, home, mock_oauth):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    env = login_env(home, mock_oauth, CODEX_AUTH_ISSUER=f"http://127.0.0.1:{port}")
    result = run_login(login_bin, env)
    assert result.returncode == 1 and "cannot reach" in result.stderr, result.stderr
    result = run_login(login_bin, login_env(home, mock_oauth, CODEX_AUTH_ISSUER="auth.example.com"))
    assert result.returncode == 2 and "CODEX_AUTH_ISSUER" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------
# Browser


class BrowserLogin:
    """`codex-login --browser` running; `authorize()` is the browser at the printed URL."""

    def __init__(self, login_bin: Path, env: Dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [str(login_bin), "--env-file", "/dev/null", "--browser"],
            env=env,
            cwd=env["HOME"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = self._printed_url()

    def _printed_url(self) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip().startswith("http"):
                return line.strip()
        raise AssertionError(f"no URL printed; stderr: {self.process.stderr.read() if self.process.stderr else ''}")

    @property
    def redirect_uri(self) -> str:
        return parse_qs(urlsplit(self.url).query)["redirect_uri"][0]

    def authorize(self) -> str:
        """The issuer's redirect (what the browser would follow next)."""
        request = urllib.request.Request(self.url)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(request, timeout=10)
        except urllib.error.HTTPError as redirect:
            assert redirect.code == 302, redirect.read()
            return redirect.headers["location"]
        raise AssertionError("the issuer did not redirect")

    def finish(self) -> subprocess.CompletedProcess:
        stdout, stderr = self.process.communicate(timeout=RUN_TIMEOUT)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout, stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - stdlib signature
        return None


def browser_get(url: str) -> tuple:
    """GET as the browser: the status and body the local callback answers."""
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def with_state(url: str, state: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["state"] = state
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture
def browser(login_bin, mock_oauth, home) -> Iterator:
    started: List[BrowserLogin] = []

    def start(**extra: str) -> BrowserLogin:
        login = BrowserLogin(login_bin, login_env(home, mock_oauth, **extra))
        started.append(login)
        return login

    yield start
    for login in started:
        login.kill()


def test_browser_login_with_pkce_and_a_checked_state(browser, mock_oauth, home):
    login = browser()
    query = parse_qs(urlsplit(login.url).query)
    assert login.url.startswith(mock_oauth.issuer + "/oauth/authorize?")
    assert query["code_challenge_method"] == ["S256"] and query["response_type"] == ["code"]
    assert query["scope"] == ["openid profile email offline_access api.connectors.read api.connectors.invoke"]
    assert urlsplit(login.redirect_uri).hostname == "localhost"
    assert urlsplit(login.redirect_uri).port in CALLBACK_PORTS

    callback = login.authorize()
    assert callback.startswith(login.redirect_uri + "?")
    # A connection the browser opened and never used (a preconnect) holds nothing up.
    idle = socket.create_connection(("127.0.0.1", urlsplit(login.redirect_uri).port))
    # A callback with another state (a stale tab, a forged link) is refused, the login waits on.
    status, body = browser_get(with_state(callback, "forged"))
    assert status == 400 and "State mismatch" in body
    assert login.process.poll() is None and not mock_oauth.requests_to(OAUTH_PATH)

    status, body = browser_get(callback)
    assert status == 200 and "Signed in" in body
    result = login.finish()
    idle.close()
    assert result.returncode == 0, result.stderr
    assert "state is not this login's" in result.stderr

    (exchange,) = mock_oauth.requests_to(OAUTH_PATH)
    form = form_of(exchange)
    assert form["redirect_uri"] == login.redirect_uri
    assert len(form["code_verifier"]) == 86, "64 random bytes, base64url"
    document = json.loads((home / ".codex" / "auth.json").read_text())
    assert document["tokens"] == {**mock_oauth.logins[0], "account_id": LOGIN_ACCOUNT_ID}
    assert stat.S_IMODE((home / ".codex" / "auth.json").stat().st_mode) == 0o600


def hold(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


def test_a_busy_callback_port_falls_back_then_fails_with_advice(browser, login_bin, mock_oauth, home):
    with hold(1455):
        login = browser()
        assert urlsplit(login.redirect_uri).port == 1457
        status, _ = browser_get(login.authorize())
        assert status == 200
        assert login.finish().returncode == 0
        with hold(1457):
            result = run_login(login_bin, login_env(home, mock_oauth), "--browser")
    assert result.returncode == 6, result.stderr
    assert "127.0.0.1:1455 and 127.0.0.1:1457 in use" in result.stderr
    assert "device code login" in result.stderr


def test_a_denied_browser_sign_in_ends_the_login(browser, mock_oauth, home):
    login = browser()
    state = parse_qs(urlsplit(login.url).query)["state"][0]
    query = urlencode({"state": state, "error": "access_denied", "error_description": "missing_codex_entitlement"})
    status, _ = browser_get(f"{login.redirect_uri}?{query}")
    assert status == 403
    result = login.finish()
    assert result.returncode == 5 and "no Codex access" in result.stderr, result.stderr
    assert not (home / ".codex").exists()


def test_a_browser_login_nobody_completes_times_out(login_bin, mock_oauth, home):
    result = run_login(login_bin, login_env(home, mock_oauth), "--browser", "--timeout", "1")
    assert result.returncode == 4, result.stderr
    assert "/oauth/authorize?" in result.stdout
    assert "no sign-in came back to the callback within 1s" in result.stderr


def test_a_browser_exchange_refused_by_the_issuer(browser, mock_oauth, home):
    login = browser()
    callback = login.authorize()
    mock_oauth.fail_next(Script.json(401, {"error": {"code": "invalid_client", "message": "no"}}))
    status, body = browser_get(callback)
    assert status == 502 and "could not be completed" in body
    result = login.finish()
    assert result.returncode == 5 and "invalid_client" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------
# --status


def test_status_lists_every_login_and_never_a_token(login_bin, mock_oauth, home, tmp_path):
    pool = tmp_path / "pool"
    env = login_env(home, mock_oauth, CODEX_AUTH_DIR=str(pool))
    assert run_login(login_bin, env).returncode == 0
    assert run_login(login_bin, env, "--label", "second").returncode == 0
    (pool / "broken.json").write_text('{"tokens": {"access_token": "sk-not-shown"')
    (pool / ".second.json.123.tmp").write_text("{}")
    document = tokens.auth_json(account_id="4f1c2d3e-aaaa-bbbb-cccc-1234567890ab", plan="team")

    result = run_login(login_bin, {**env, "OPENAI_CODEX_AUTH": document}, "--status")
    assert result.returncode == 0, result.stderr
    labels = [line for line in result.stdout.splitlines() if line and not line.startswith(" ")]
    assert labels == ["OPENAI_CODEX_AUTH", "default", "broken", "second"]
    assert "4f1c2d3e…" in result.stdout and "team" in result.stdout
    assert result.stdout.count("plan:         pro") == 2
    assert result.stdout.count(f"account:      {LOGIN_ACCOUNT_ID}") == 2
    assert re.search(r"token expiry: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in (9d 23h|10d 0h)\)", result.stdout)
    assert "last refresh: 20" in result.stdout
    assert "unusable:     the document is not valid auth.json JSON" in result.stdout
    assert result.stdout.count("in use:       no, `make run` passes another login (OPENAI_CODEX_AUTH is set and wins)") == 3
    without = run_login(login_bin, env, "--status")
    assert without.stdout.count("in use:       no") == 1 and "(CODEX_AUTH_DIR is set and wins)" in without.stdout
    shown = result.stdout + result.stderr
    for issued in [*mock_oauth.logins, json.loads(document)["tokens"]]:
        for secret in secrets_of(issued):
            assert secret not in shown
    assert "sk-not-shown" not in shown

    (home / "nobody").mkdir()
    empty = run_login(login_bin, login_env(home / "nobody", mock_oauth), "--status")
    assert empty.returncode == 1 and "run `make login`" in empty.stderr


# --------------------------------------------------------------------------------------
# The wrapper with the new login


def test_make_run_serves_chat_with_a_login_made_while_it_runs(login_bin, mock_oauth, mock_codex, wasm_module, home, tmp_path):
    """The first steps of a new user: `make run` with no login answers 401 saying to run
    `make login`; `make login` (same .dev.vars) while it runs; chat then works, same Envoy."""
    from harness.envoy import _accepts, free_ports
    from test_reload import RunPy, chat_status, poll, responses_requests

    port, admin_port = free_ports(2)
    codex_home = home / "codex"
    env_file = tmp_path / ".dev.vars"
    env_file.write_text(
        f"CODEX_HOME={codex_home}\nOPENAI_API_KEY=test-key\nCHATGPT_RESPONSES_URL={mock_codex.url}\n"
        f"CODEX_AUTH_ISSUER={mock_oauth.issuer}\nPORT={port}\nENVOY_ADMIN_PORT={admin_port}\nENVOY_CONCURRENCY=2\n",
        encoding="utf-8",
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(home), **toolchain_env()}
    run = RunPy([sys.executable, str(REPO_ROOT / "envoy" / "run.py"), "--env-file", str(env_file), "--wasm", str(wasm_module)], env)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            poll(lambda: run.process.poll() is None and _accepts(port), "Envoy listens", timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; make run said:\n{run.output()[-3000:]}") from None
        refused = urllib.request.Request(
            url + "/v1/chat/completions",
            data=json.dumps({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"content-type": "application/json", "authorization": "Bearer test-key"},
        )
        with pytest.raises(urllib.error.HTTPError) as no_login:
            urllib.request.urlopen(refused, timeout=20)
        assert no_login.value.code == 401
        assert "make login" in json.loads(no_login.value.read())["error"]["message"]
        envoy_pid = run.process.pid

        result = subprocess.run(
            [str(login_bin), "--env-file", str(env_file)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
        assert result.returncode == 0, result.stderr
        assert (codex_home / "auth.json").is_file()

        poll(lambda: chat_status(url, "test-key") == 200, "chat works with the new login")
        upstream = responses_requests(mock_codex)[-1]
        assert upstream.header("chatgpt-account-id") == LOGIN_ACCOUNT_ID
        assert upstream.header("authorization") == "Bearer " + mock_oauth.logins[0]["access_token"]
        assert run.process.poll() is None and run.process.pid == envoy_pid, "no restart"
        assert "applied the new settings (OPENAI_CODEX_AUTH)" in run.output()
    finally:
        code = run.stop()
    assert code == 0, run.output()[-3000:]
    for secret in secrets_of(mock_oauth.logins[0]):
        assert secret not in run.output()


def test_a_wrapper_started_after_the_login_serves_chat_with_it(login_bin, mock_oauth, mock_codex, wasm_module, home, tmp_path):
    """What `make login`, then `make run`, does: run.py's settings read $CODEX_HOME/auth.json."""
    result = run_login(login_bin, login_env(home, mock_oauth))
    assert result.returncode == 0, result.stderr
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CODEX_AUTH_ISSUER": mock_oauth.issuer,
        "CHATGPT_RESPONSES_URL": mock_codex.url,
    }
    settings = load_render().load_settings(None, environ=environ, codex_auth=True)
    assert json.loads(settings["OPENAI_CODEX_AUTH"])["tokens"]["account_id"] == LOGIN_ACCOUNT_ID
    handle = start_envoy(settings, wasm=wasm_module, workdir=tmp_path / "envoy")
    try:
        request = urllib.request.Request(
            handle.url + "/v1/chat/completions",
            data=json.dumps({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            answer = json.loads(response.read())
        assert answer["choices"][0]["message"]["content"] == "Hello world"
        upstream = mock_codex.last_request
        assert upstream.header("authorization") == "Bearer " + mock_oauth.logins[0]["access_token"]
        assert upstream.header("chatgpt-account-id") == LOGIN_ACCOUNT_ID
    finally:
        handle.stop()
