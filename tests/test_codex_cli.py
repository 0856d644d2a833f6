"""Codex CLI (npm `@openai/codex`, tests/node) as a client of the wrapper's `/v1/responses`.

`codex exec` runs one non-interactive turn with a custom provider pointing at Envoy + the
module, with the `config.toml` block of the README's Codex CLI section; the mock backend
plays the model. Each run of the CLI costs about a second, so these tests stay few.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import List

from conftest import TEST_API_KEY
from harness import sse, tokens
from harness.mock_codex import CODEX_PATH, RecordedRequest, Script
from harness.repo import REPO_ROOT
from node_clients import codex_binary

MODEL = "gpt-6.1-sol"
CLIENT_KEY_ENV = "CODEX_WRAPPER_API_KEY"
# The CLI's own turn headers: the backend keys its prompt cache and turn state on them.
CODEX_TURN_HEADERS = (
    "session-id",
    "thread-id",
    "x-client-request-id",
    "x-codex-window-id",
    "x-codex-turn-metadata",
    "x-codex-beta-features",
)

README_BASE_URL = "http://localhost:8787/v1"


def readme_config_toml() -> str:
    """The `config.toml` of the README's Codex CLI section: the tests run exactly that."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n### Codex CLI\n" in readme, "the README lost its Codex CLI section"
    match = re.search(r"```toml\n(.*?)```", readme.split("\n### Codex CLI\n", 1)[1], re.S)
    assert match, "no config.toml block in the README's Codex CLI section"
    config = match.group(1)
    assert f'base_url = "{README_BASE_URL}"' in config and f'env_key = "{CLIENT_KEY_ENV}"' in config, config
    assert f'model = "{MODEL}"' in config, config
    return config


def codex_exec(envoy, tmp_path: Path, prompt: str, key: str = TEST_API_KEY, extra_config: str = "") -> subprocess.CompletedProcess:
    """One `codex exec` turn: its own CODEX_HOME and HOME (no login, no user config), a scratch
    working directory outside git, read-only sandbox, no approvals."""
    home = tmp_path / "codex-home"
    workdir = tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    config = readme_config_toml().replace(README_BASE_URL, envoy.url + "/v1") + extra_config
    (home / "config.toml").write_text(config, encoding="utf-8")
    # PATH as given: the `codex` launcher is a Node script.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(home), CLIENT_KEY_ENV: key}
    return subprocess.run(
        [str(codex_binary()), "exec", "--skip-git-repo-check", "--ephemeral", "--sandbox", "read-only",
         "--color", "never", "--cd", str(workdir), prompt],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"codex exec failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


def session_id_of(result: subprocess.CompletedProcess) -> str:
    match = re.search(r"^session id: (\S+)$", result.stderr, re.M)
    assert match, f"no session id in the CLI's output:\n{result.stderr[-2000:]}"
    return match.group(1)


def assert_wrapper_credentials(seen: RecordedRequest, auth_json: str) -> None:
    assert seen.method == "POST" and seen.path == CODEX_PATH
    access_token = json.loads(auth_json)["tokens"]["access_token"]
    assert seen.header("authorization") == "Bearer " + access_token
    assert seen.header("chatgpt-account-id") == tokens.DEFAULT_ACCOUNT_ID
    assert TEST_API_KEY not in json.dumps(seen.headers), "the client key reached the upstream"
    assert TEST_API_KEY.encode() not in seen.body


def assert_turn_state_kept(seen: RecordedRequest, session_id: str) -> None:
    """The CLI's session headers and client_metadata arrive as the CLI sent them."""
    for name in CODEX_TURN_HEADERS:
        assert seen.header(name), f"{name} did not reach the upstream: {sorted(seen.headers)}"
    assert seen.header("session-id") == session_id
    assert seen.header("thread-id") == session_id
    assert seen.header("x-codex-window-id").startswith(session_id + ":")
    turn = json.loads(seen.header("x-codex-turn-metadata"))
    assert (turn["session_id"], turn["thread_id"], turn["model"]) == (session_id, session_id, MODEL)
    body = seen.json
    metadata = body["client_metadata"]
    assert metadata["session_id"] == session_id
    assert metadata["thread_id"] == session_id
    assert metadata["x-codex-turn-metadata"] == seen.header("x-codex-turn-metadata")
    assert metadata["turn_id"] == turn["turn_id"]
    assert body["prompt_cache_key"] == session_id


def assert_backend_body(seen: RecordedRequest) -> None:
    body = seen.json
    assert body["model"] == MODEL
    assert body["store"] is False
    assert body["stream"] is True
    assert "reasoning.encrypted_content" in body["include"]
    assert isinstance(body["input"], list) and body["input"]


def user_texts(body: dict) -> List[str]:
    return [
        part.get("text")
        for item in body["input"]
        if item.get("type") == "message" and item.get("role") == "user"
        for part in item.get("content", [])
    ]


def test_codex_exec_completes_a_turn_through_the_wrapper(envoy, mock_codex, auth_json, tmp_path):
    answer = "Hello from the mock backend."
    mock_codex.enqueue(Script.events(sse.text_events(["Hello from", " the mock", " backend."], usage=sse.usage(30, 7), model=MODEL)))

    result = succeeded(codex_exec(envoy, tmp_path, "Say hello"))

    assert result.stdout.strip() == answer
    [seen] = [r for r in mock_codex.requests if r.path == CODEX_PATH]
    assert_wrapper_credentials(seen, auth_json)
    assert_backend_body(seen)
    assert_turn_state_kept(seen, session_id_of(result))
    assert "Say hello" in user_texts(seen.json)


def custom_tool_call_events(call_id: str, name: str, source: str) -> List[dict]:
    """A turn that ends in one call of the CLI's freeform `exec` tool (JavaScript that may call
    its nested tools, the shell among them)."""
    item = {"id": "ctc_1", "type": "custom_tool_call", "status": "completed", "call_id": call_id, "name": name, "input": source}
    return [
        sse.created(model=MODEL),
        sse.in_progress(model=MODEL),
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "status": "in_progress", "input": ""}},
        {"type": "response.custom_tool_call_input.delta", "item_id": "ctc_1", "output_index": 0, "delta": source},
        {"type": "response.custom_tool_call_input.done", "item_id": "ctc_1", "output_index": 0, "input": source},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        sse.completed(usage=sse.usage(40, 9), model=MODEL),
    ]


def test_codex_exec_runs_a_shell_command_and_sends_its_output_back(envoy, mock_codex, auth_json, tmp_path):
    # The CLI runs the command itself (read-only sandbox); the wrapper carries the call out and
    # the tool output back in the next request of the same turn.
    source = 'const r = await tools.exec_command({cmd: "echo shell-$((6*7))"}); text(r);'
    mock_codex.enqueue(
        Script.events(custom_tool_call_events("call_shell_1", "exec", source)),
        Script.events(sse.text_events(["The command printed shell-42."], usage=sse.usage(60, 8), model=MODEL, id="resp_2")),
    )

    result = succeeded(codex_exec(envoy, tmp_path, "Run echo in the shell"))

    assert result.stdout.strip() == "The command printed shell-42."
    first, second = [r for r in mock_codex.requests if r.path == CODEX_PATH]
    session_id = session_id_of(result)
    for seen in (first, second):
        assert_wrapper_credentials(seen, auth_json)
        assert_backend_body(seen)
        assert_turn_state_kept(seen, session_id)
    items = second.json["input"]
    calls = [i for i in items if i.get("type") == "custom_tool_call"]
    assert [(c["call_id"], c["name"], c["input"]) for c in calls] == [("call_shell_1", "exec", source)]
    [output] = [i for i in items if i.get("type") == "custom_tool_call_output"]
    assert output["call_id"] == "call_shell_1"
    output_text = json.dumps(output["output"])
    assert "shell-42" in output_text, output_text
    assert '\\"exit_code\\":0' in output_text, output_text


def test_codex_exec_with_a_wrong_key_shows_the_wrappers_401(envoy, mock_codex, tmp_path):
    # No retries: the CLI would otherwise retry a 401 five times with backoff.
    no_retries = "request_max_retries = 0\nstream_max_retries = 0\n"
    result = codex_exec(envoy, tmp_path, "Say hello", key="wrong-key", extra_config=no_retries)
    assert result.returncode != 0
    assert "401 Unauthorized: Invalid API key" in result.stderr, result.stderr[-2000:]
    assert not [r for r in mock_codex.requests if r.path == CODEX_PATH], "a request with a wrong key reached the upstream"
