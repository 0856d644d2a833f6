"""Client keys from a keys file, through Envoy with two workers: per-key limits (requests per
minute, tokens per hour from the usage the mock reports), allowed routes and models,
`/v1/usage` for a key and for the admin, stats per key name, and a malformed entry that stops
the renderer."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Dict

import pytest
import requests

from chat_helpers import chat_body, error_of
from conftest import TEST_API_KEY
from harness import sse
from harness.mock_codex import Script
from harness.repo import load_render

CHAT = "/v1/chat/completions"
KEYS = {"alice": "sk-alice-0001", "bob": "sk-bob-0002", "carol": "sk-carol-0003", "ops": "sk-ops-0004"}


def keys_file(directory: Path) -> Path:
    entries = [
        {"name": "alice", "key": KEYS["alice"], "requests_per_minute": 2},
        # The file may hold the digest instead of the key.
        {"name": "bob", "sha256": hashlib.sha256(KEYS["bob"].encode()).hexdigest(), "tokens_per_hour": 20},
        {"name": "carol", "key": KEYS["carol"], "tokens_per_day": 100000, "routes": ["/v1/chat/completions"], "models": ["gpt-5.5"]},
        {"name": "ops", "key": KEYS["ops"], "admin": True},
    ]
    path = directory / "client-keys.json"
    path.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return path


def auth(name: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def chat(envoy, name: str, **body) -> requests.Response:
    # A new connection each time, so the requests spread over both workers.
    return requests.post(envoy.url + CHAT, json=chat_body(**body), headers=auth(name), timeout=20)


def usage(envoy, name: str) -> dict:
    resp = requests.get(envoy.url + "/v1/usage", headers=auth(name), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def stats(envoy) -> Dict[str, int]:
    text = requests.get(envoy.admin_url + "/stats?filter=codex_openai_wrapper", timeout=5).text
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            # Envoy keeps a module's stats under `wasmcustom.`.
            found[name.strip().removeprefix("wasmcustom.")] = int(value)
    return found


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture
def keyed(envoy_factory, tmp_path):
    return envoy_factory(concurrency=2, CLIENT_KEYS_FILE=str(keys_file(tmp_path)))


def test_a_key_over_its_request_rate_gets_429_while_the_others_work(keyed, mock_codex):
    for _ in range(2):
        resp = chat(keyed, "alice")
        assert resp.status_code == 200, resp.text
    sent = len(mock_codex.requests)
    refused = chat(keyed, "alice")
    status, error = error_of(refused)
    assert (status, error["code"], error["type"]) == (429, "key_limit_reached", "rate_limit_error")
    assert '"alice"' in error["message"] and "2 requests per minute" in error["message"]
    assert KEYS["alice"] not in refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert len(mock_codex.requests) == sent, "a refused request reached the upstream"
    # The other keys, and OPENAI_API_KEY beside the file, keep working.
    for name in ("bob", "carol", "ops"):
        assert chat(keyed, name).status_code == 200
    resp = requests.post(keyed.url + CHAT, json=chat_body(), headers={"Authorization": f"Bearer {TEST_API_KEY}"}, timeout=20)
    assert resp.status_code == 200, resp.text
    assert chat(keyed, "alice").status_code == 429
    wrong = requests.post(keyed.url + CHAT, json=chat_body(), headers={"Authorization": "Bearer sk-nobody"}, timeout=20)
    assert error_of(wrong)[1]["code"] == "invalid_api_key"
    # Keys without limits (ops, key-1) are counted per worker and shared on its tick: a worker
    # that did not serve them sees them within a tick. Each look is a new connection, on either
    # worker: several in a row must all agree.
    def unlimited() -> Dict[str, tuple]:
        keys = {k["name"]: k for k in usage(keyed, "ops")["keys"]}
        return {name: (keys[name]["requests"], keys[name]["input_tokens"]) for name in ("ops", "key-1")}

    wanted = {"ops": (1, 12), "key-1": (1, 12)}
    wait_until(lambda: all(unlimited() == wanted for _ in range(4)), "the keys without limits counted on every worker")

    wait_until(lambda: stats(keyed).get("codex_openai_wrapper.key.alice.limit_rejected") == 2, "alice's rejections counted")
    counted = stats(keyed)
    assert counted["codex_openai_wrapper.key.alice.requests.chat.2xx"] == 2
    assert counted["codex_openai_wrapper.key.alice.requests.chat.4xx"] == 2
    assert counted["codex_openai_wrapper.key.bob.requests.chat.2xx"] == 1
    assert counted["codex_openai_wrapper.key.key-1.requests.chat.2xx"] == 1
    assert not any(KEYS[name] in stat or hashlib.sha256(KEYS[name].encode()).hexdigest() in stat for stat in counted for name in KEYS)
    # The name is a tag: one Prometheus metric, a label per key.
    text = requests.get(keyed.admin_url + "/stats/prometheus", timeout=5).text
    assert any(line.startswith("codex_openai_wrapper_key_limit_rejected{") and 'codex_key="alice"' in line and line.endswith(" 2") for line in text.splitlines()), text
    log = keyed.log_text()
    assert not any(key in log for key in KEYS.values())


def test_token_budgets_count_the_usage_the_backend_reports(keyed, mock_codex):
    for _ in range(2):
        mock_codex.enqueue(Script.events(sse.text_events(["hi"], usage=sse.usage(12, 5))))
    assert chat(keyed, "bob").status_code == 200
    # 17 of 20 tokens: still under the limit, so one more goes through (and goes over).
    wait_until(lambda: usage(keyed, "bob")["key"]["input_tokens"] == 12, "the first answer's tokens counted")
    assert chat(keyed, "bob").status_code == 200
    wait_until(lambda: usage(keyed, "bob")["key"]["output_tokens"] == 10, "the second answer's tokens counted")
    sent = len(mock_codex.requests)
    refused = chat(keyed, "bob")
    status, error = error_of(refused)
    assert (status, error["code"]) == (429, "key_limit_reached")
    assert "20 tokens per hour" in error["message"], error
    assert 1 <= int(refused.headers["retry-after"]) <= 3600
    assert len(mock_codex.requests) == sent
    assert chat(keyed, "carol").status_code == 200

    mine = usage(keyed, "bob")
    assert set(mine) == {"object", "key"}, "only an admin sees every key"
    key = mine["key"]
    assert (key["name"], key["requests"], key["rejected"], key["input_tokens"], key["output_tokens"]) == ("bob", 2, 1, 24, 10)
    assert key["limits"]["tokens_per_hour"]["limit"] == 20
    assert key["limits"]["tokens_per_hour"]["used"] == 34
    assert key["limits"]["tokens_per_hour"]["remaining"] == 0
    assert key["limits"]["tokens_per_hour"]["resets_at"] > time.time()
    assert key["limits"]["requests_per_minute"] == {"limit": None, "used": 2, "remaining": None, "resets_at": key["limits"]["requests_per_minute"]["resets_at"]}

    everyone = usage(keyed, "ops")
    assert everyone["key"]["name"] == "ops" and everyone["key"]["admin"] is True
    by_name = {k["name"]: k for k in everyone["keys"]}
    assert list(by_name) == ["alice", "bob", "carol", "ops", "key-1"]
    assert by_name["bob"]["input_tokens"] == 24 and by_name["bob"]["rejected"] == 1
    assert by_name["carol"]["requests"] == 1
    assert KEYS["bob"] not in json.dumps(everyone)
    wait_until(lambda: stats(keyed).get("codex_openai_wrapper.key.bob.tokens.input") == 24, "bob's token stats")
    assert stats(keyed)["codex_openai_wrapper.key.bob.tokens.output"] == 10


def test_routes_and_models_a_key_may_use(keyed, mock_codex):
    resp = requests.post(keyed.url + "/v1/responses", json={"model": "gpt-5.5", "input": "hi"}, headers=auth("carol"), timeout=20)
    status, error = error_of(resp)
    assert (status, error["code"]) == (403, "route_not_allowed")
    assert "/v1/chat/completions" in error["message"]
    resp = chat(keyed, "carol", model="gpt-5.6-luna")
    status, error = error_of(resp)
    assert (status, error["code"], error["param"]) == (403, "model_not_allowed", "model")
    assert mock_codex.requests == []
    # /v1/usage stays open to every key, whatever its routes.
    assert usage(keyed, "carol")["key"]["name"] == "carol"
    assert chat(keyed, "carol").status_code == 200


def test_usage_endpoint_can_be_hidden_and_needs_a_key(envoy_factory, tmp_path):
    envoy = envoy_factory(CLIENT_KEYS_FILE=str(keys_file(tmp_path)), USAGE_ENDPOINT="false")
    resp = requests.get(envoy.url + "/v1/usage", headers=auth("ops"), timeout=10)
    assert error_of(resp)[:1] == (404,)
    open_gate = envoy_factory(OPENAI_API_KEY=TEST_API_KEY)
    resp = requests.get(open_gate.url + "/v1/usage", timeout=10)
    assert error_of(resp)[1]["code"] == "invalid_api_key"
    resp = requests.get(open_gate.url + "/v1/usage", headers={"Authorization": f"Bearer {TEST_API_KEY}"}, timeout=10)
    assert resp.json()["key"]["name"] == "key-1"


def test_a_malformed_entry_stops_the_renderer_naming_the_entry(tmp_path, mock_codex):
    path = tmp_path / "client-keys.json"
    path.write_text('[\n  {"name": "alice", "key": "sk-alice-0001"},\n  {"name": "bob", "key": "sk-bob-0002", "rpm": 5}\n]\n', encoding="utf-8")
    render = load_render()
    with pytest.raises(render.ConfigError) as caught:
        render.render_config({"CLIENT_KEYS_FILE": str(path), "CHATGPT_RESPONSES_URL": mock_codex.url})
    message = str(caught.value)
    assert caught.value.variable == "CLIENT_KEYS_FILE"
    assert 'line 3, entry "bob": unknown field "rpm"' in message, message
    assert "sk-bob-0002" not in message


def test_replicas_share_a_keys_counters_through_etcd(envoy_factory, mock_codex, tmp_path):
    from harness.etcd import EtcdServer

    etcd = EtcdServer()
    try:
        env = {"TOKEN_STORE": "etcd", "ETCD_ENDPOINT": etcd.url, "CLIENT_KEYS_FILE": str(keys_file(tmp_path))}
        first, second = envoy_factory(concurrency=2, **env), envoy_factory(concurrency=2, **env)
        mock_codex.enqueue(Script.events(sse.text_events(["hi"], usage=sse.usage(12, 5))))
        assert chat(first, "alice").status_code == 200
        # The first replica's flush reaches etcd, and the second adopts it on its next read.
        record = "/codex-openai-wrapper/chatgpt-tokens/keys/alice"
        # Alice's limit is on requests: her request is counted at once, her tokens (which decide
        # nothing for her) on the worker's next tick, so a flush to etcd may carry them later.
        wait_until(lambda: (etcd.get(record) or {}).get("requests") == 1, "alice's count in etcd")
        wait_until(lambda: etcd.get(record).get("input_tokens") == 12, "alice's tokens in etcd")
        assert etcd.get(record)["requests"] == 1
        wait_until(lambda: usage(second, "alice")["key"]["input_tokens"] == 12, "the second replica sees the first's request", 30)
        assert usage(second, "alice")["key"]["requests"] == 1
        assert chat(second, "alice").status_code == 200
        # Two of two requests per minute between the replicas: both now refuse alice.
        wait_until(lambda: usage(first, "alice")["key"]["requests"] == 2, "the first replica sees the second's request", 30)
        sent = len(mock_codex.requests)
        assert error_of(chat(first, "alice"))[1]["code"] == "key_limit_reached"
        assert error_of(chat(second, "alice"))[1]["code"] == "key_limit_reached"
        assert len(mock_codex.requests) == sent
        assert chat(first, "bob").status_code == 200
        stored = json.dumps(etcd.get(record))
        assert "pending" not in stored and KEYS["alice"] not in stored
    finally:
        etcd.stop()


def test_a_revoked_key_stops_working_without_a_restart(envoy_factory, mock_codex, tmp_path):
    path = keys_file(tmp_path)
    envoy = envoy_factory(concurrency=2, CLIENT_KEYS_FILE=str(path))
    assert chat(envoy, "alice").status_code == 200
    assert chat(envoy, "bob").status_code == 200
    entries = [entry for entry in json.loads(path.read_text(encoding="utf-8")) if entry["name"] != "alice"]
    path.write_text(json.dumps(entries), encoding="utf-8")
    envoy.reload()
    wait_until(lambda: chat(envoy, "alice").status_code == 401, "alice's key is refused")
    # The filter's configuration holds digests: carol's plain key from the file is not in it.
    assert KEYS["carol"] not in envoy.filter_config.read_text(encoding="utf-8")
    assert error_of(chat(envoy, "alice"))[1]["code"] == "invalid_api_key"
    # The others keep working, and their counters (in shared data) survived the reload.
    assert chat(envoy, "bob").status_code == 200
    assert usage(envoy, "bob")["key"]["requests"] == 2
    names = [k["name"] for k in usage(envoy, "ops")["keys"]]
    assert "alice" not in names and names[:3] == ["bob", "carol", "ops"]
    # Without the keys file only OPENAI_API_KEY is left.
    envoy.reload(CLIENT_KEYS_FILE=None)
    wait_until(lambda: chat(envoy, "bob").status_code == 401, "bob's key is refused")
    resp = requests.post(envoy.url + CHAT, json=chat_body(), headers={"Authorization": f"Bearer {TEST_API_KEY}"}, timeout=20)
    assert resp.status_code == 200, resp.text
    assert envoy.alive
