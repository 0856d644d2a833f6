"""Several ChatGPT accounts behind one wrapper (OPENAI_CODEX_AUTH as a JSON array): the mock
backend answers per account (`chatgpt-account-id`); conversations stick to their account, a
usage-limit 429 moves the request to another account before the client sees anything, and
only a pool that is spent answers 429 with the earliest reset."""

from __future__ import annotations

import json
import time
from typing import Dict, List

import openai
import requests

from chat_helpers import chat_body, post
from conftest import TEST_API_KEY
from harness import tokens

CHAT = "/v1/chat/completions"
LABELS = ("alpha", "beta", "gamma")
ACCOUNT_IDS = {label: f"acct_{label}" for label in LABELS}


def pool_auth(expired: Dict[str, bool] = None, refresh_tokens: Dict[str, str] = None) -> str:
    expired = expired or {}
    refresh_tokens = refresh_tokens or {}
    documents = []
    for label in LABELS:
        document = tokens.auth_document(
            account_id=ACCOUNT_IDS[label],
            refresh_token=refresh_tokens.get(label, f"rt_{label}"),
            expires_in=-60 if expired.get(label) else tokens.TEN_DAYS,
        )
        document["label"] = label
        documents.append(document)
    return json.dumps(documents)


def label_of(account_id: str) -> str:
    return {v: k for k, v in ACCOUNT_IDS.items()}[account_id]


def conversation(n: int) -> dict:
    return chat_body(messages=[{"role": "user", "content": f"conversation {n}"}])


def served(mock) -> List[str]:
    return [label_of(a) for a in mock.accounts_served()]


def usage(envoy) -> dict:
    resp = requests.get(envoy.url + "/v1/usage", headers={"Authorization": f"Bearer {TEST_API_KEY}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def stat(envoy, fragment: str, **tags: str) -> float:
    text = requests.get(envoy.admin_url + "/stats/prometheus", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or fragment not in line:
            continue
        if all(f'{k}="{v}"' in line for k, v in tags.items()):
            total += float(line.rpartition(" ")[2])
    return total


def test_conversations_stick_and_new_ones_go_where_the_headroom_is(envoy_factory, mock_codex):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=pool_auth())
    mock_codex.set_windows(ACCOUNT_IDS["alpha"], primary=50)
    mock_codex.set_windows(ACCOUNT_IDS["beta"], primary=10, secondary=5)
    mock_codex.set_windows(ACCOUNT_IDS["gamma"], primary=30)
    # Three conversations, three turns each: every turn goes where its first one went.
    for _turn in range(3):
        for n in range(3):
            resp = post(envoy.url + CHAT, conversation(n))
            assert resp.status_code == 200, resp.text
    accounts = served(mock_codex)
    by_conversation = [accounts[n::3] for n in range(3)]
    for turns in by_conversation:
        assert len(set(turns)) == 1, by_conversation
    assert {turns[0] for turns in by_conversation} == set(LABELS), "new conversations spread over unknown accounts"
    # Every account has reported its windows: new conversations go to the emptiest (beta).
    before = len(mock_codex.requests)
    for n in range(10, 13):
        assert post(envoy.url + CHAT, conversation(n)).status_code == 200
    assert served(mock_codex)[before:] == ["beta"] * 3


def test_a_usage_limit_mid_run_moves_new_and_retried_requests_without_an_error(envoy_factory, mock_codex):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=pool_auth())
    assert post(envoy.url + CHAT, conversation(1)).status_code == 200
    first = served(mock_codex)[0]
    resets_at = mock_codex.exhaust(ACCOUNT_IDS[first], resets_in=600)
    client = openai.OpenAI(base_url=envoy.url + "/v1", api_key=TEST_API_KEY, max_retries=0, timeout=20)
    # The same conversation: its account answers 429, Envoy sends it again on another one.
    answer = client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "conversation 1"}])
    assert answer.choices[0].message.content == "Hello world"
    seen = mock_codex.requests
    assert seen[1].header("chatgpt-account-id") == ACCOUNT_IDS[first]
    moved = label_of(seen[2].header("chatgpt-account-id"))
    assert moved != first
    # The request went out again whole, with the other account's own token.
    assert seen[2].json == seen[1].json
    assert tokens.decode_jwt_claims(seen[2].header("authorization").removeprefix("Bearer "))[tokens.AUTH_CLAIM][
        "chatgpt_account_id"
    ] == ACCOUNT_IDS[moved]
    # Later turns of it, and new conversations, avoid the spent account.
    for n in (1, 2, 3, 4):
        assert post(envoy.url + CHAT, conversation(n)).status_code == 200
    assert first not in served(mock_codex)[3:]
    assert served(mock_codex)[3] == moved, "the conversation stays on its new account"
    report = usage(envoy)
    states = {a["label"]: a for a in report["accounts"]}
    assert states[first]["state"] == "exhausted"
    assert states[first]["primary"] == {"used_percent": 100, "resets_at": resets_at}
    assert report["pool"]["exhausted"] == 1 and report["pool"]["usable"] == 2
    assert report["pool"]["next_reset_at"] == resets_at
    assert stat(envoy, "codex_openai_wrapper_account_usage_limit_reached", codex_account=first) == 1
    assert stat(envoy, "codex_openai_wrapper_account_exhausted", codex_account=first) == 1


def test_a_spent_pool_answers_429_with_the_earliest_reset_and_no_more_upstream_attempts(envoy_factory, mock_codex):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=pool_auth())
    resets = {
        "alpha": mock_codex.exhaust(ACCOUNT_IDS["alpha"], resets_in=900),
        "beta": mock_codex.exhaust(ACCOUNT_IDS["beta"], resets_in=300),
        "gamma": mock_codex.exhaust(ACCOUNT_IDS["gamma"], resets_in=600),
    }
    resp = post(envoy.url + CHAT, conversation(1))
    assert resp.status_code == 429, resp.text
    error = resp.json()["error"]
    assert error["code"] == "usage_limit_reached" and error["type"] == "usage_limit_reached"
    assert error["resets_at"] == resets["beta"]
    assert 290 <= int(resp.headers["retry-after"]) <= 300
    assert "x-envoy-ratelimited" not in resp.headers and "x-codex-wrapper-account" not in resp.headers
    assert sorted(served(mock_codex)) == sorted(LABELS), "each account was tried once"
    # Known to be spent now: answered at once, without another upstream attempt.
    again = post(envoy.url + CHAT, conversation(2))
    assert again.status_code == 429 and 290 <= int(again.headers["retry-after"]) <= 300
    assert len(mock_codex.requests) == 3
    assert usage(envoy)["pool"] == {
        "accounts": 3, "usable": 0, "exhausted": 3, "failed": 0, "next_reset_at": resets["beta"]
    }


def test_an_exhausted_account_serves_again_after_its_reset(envoy_factory, mock_codex):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=pool_auth())
    for label in ("beta", "gamma"):
        mock_codex.set_windows(ACCOUNT_IDS[label], primary=90)
    mock_codex.exhaust(ACCOUNT_IDS["alpha"], resets_in=2)
    # Until every account has been seen, alpha (unknown, so empty) is tried first or in turn.
    for n in range(4):
        assert post(envoy.url + CHAT, conversation(n)).status_code == 200
    limited = [r for r in mock_codex.requests if r.header("chatgpt-account-id") == ACCOUNT_IDS["alpha"]]
    assert len(limited) == 1, "alpha answered 429 once and was left alone after"
    deadline = time.time() + 3
    while time.time() < deadline:
        time.sleep(0.2)
    before = len(mock_codex.requests)
    assert post(envoy.url + CHAT, conversation(50)).status_code == 200
    assert served(mock_codex)[before:] == ["alpha"], "alpha, reset, has the most headroom again"


def test_a_rejected_refresh_token_takes_only_that_account_out(envoy_factory, mock_codex, mock_oauth):
    envoy = envoy_factory(
        OPENAI_CODEX_AUTH=pool_auth(expired={"alpha": True}, refresh_tokens={"alpha": "rt_revoked"})
    )
    for n in range(6):
        resp = post(envoy.url + CHAT, conversation(n))
        assert resp.status_code == 200, resp.text
    assert "alpha" not in served(mock_codex)
    deadline = time.monotonic() + 10
    while "refresh failed permanently (account alpha)" not in envoy.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "refresh failed permanently (account alpha)" in envoy.log_text()
    assert stat(envoy, "codex_openai_wrapper_account_token_refresh_permanent_failure", codex_account="alpha") == 1
    states = {a["label"]: a["state"] for a in usage(envoy)["accounts"]}
    assert states == {"alpha": "failed", "beta": "ready", "gamma": "ready"}


def test_each_account_is_refreshed_exactly_once_across_two_workers(envoy_factory, mock_codex, mock_oauth):
    for label in LABELS:
        mock_oauth.add_account(f"rt_{label}", ACCOUNT_IDS[label])
    envoy = envoy_factory(OPENAI_CODEX_AUTH=pool_auth(expired={label: True for label in LABELS}), concurrency=2)
    for n in range(12):
        resp = post(envoy.url + CHAT, conversation(n))
        assert resp.status_code == 200, resp.text
    presented = sorted(r.json["refresh_token"] for r in mock_oauth.http.requests)
    assert presented == sorted(f"rt_{label}" for label in LABELS)
    assert set(served(mock_codex)) == set(LABELS)


def test_chat_completions_and_responses_all_use_the_pool(envoy_factory, mock_codex):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=pool_auth())
    for label in ("alpha", "beta"):
        mock_codex.exhaust(ACCOUNT_IDS[label], resets_in=600)
    chat = post(envoy.url + CHAT, conversation(1))
    completion = post(envoy.url + "/v1/completions", {"model": "gpt-5.5", "prompt": "hello"})
    responses = post(envoy.url + "/v1/responses", {"model": "gpt-5.5", "input": "hello", "stream": False})
    for resp in (chat, completion, responses):
        assert resp.status_code == 200, resp.text
    tried = served(mock_codex)
    assert tried.count("gamma") == 3 and len(tried) <= 5, tried
    assert tried[-2:] == ["gamma", "gamma"], "once both are known to be spent, only gamma is asked"
    counts = {a["label"]: a["requests"] for a in usage(envoy)["accounts"]}
    assert counts["gamma"] == 3
    per_route = [stat(envoy, f"codex_openai_wrapper_account_requests_{route}_2xx", codex_account="gamma") for route in ("chat", "completions", "responses")]
    assert per_route == [1, 1, 1], per_route


def test_portable_mode_tells_the_client_to_retry_at_once_and_the_retry_goes_elsewhere(envoy_factory, mock_codex):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=pool_auth(), portable=True)
    # Portable mode sends the headers before the body: the conversation is the client's header.
    session = {"session_id": "conversation-1"}
    for _ in range(2):
        assert post(envoy.url + CHAT, conversation(1), headers=session).status_code == 200
    first, again = served(mock_codex)
    assert first == again, "the conversation sticks"
    mock_codex.exhaust(ACCOUNT_IDS[first], resets_in=600)
    resp = post(envoy.url + CHAT, conversation(1), headers=session)
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "account_switched"
    assert resp.headers["retry-after"] == "1"
    # The SDK retries a 503 by itself: the caller sees no error.
    client = openai.OpenAI(
        base_url=envoy.url + "/v1", api_key=TEST_API_KEY, max_retries=2, timeout=20, default_headers=session
    )
    answer = client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "conversation 1"}])
    assert answer.choices[0].message.content == "Hello world"
    assert served(mock_codex)[-1] != first


def test_two_replicas_with_etcd_see_each_others_exhaustion_marks(envoy_factory, mock_codex):
    from harness.etcd import EtcdServer

    etcd = EtcdServer()
    try:
        env = {"OPENAI_CODEX_AUTH": pool_auth(), "TOKEN_STORE": "etcd", "ETCD_ENDPOINT": etcd.url}
        first, second = envoy_factory(**env), envoy_factory(**env)
        resets_at = mock_codex.exhaust(ACCOUNT_IDS["alpha"], resets_in=600)
        # Until the first replica has met alpha's 429 (new conversations visit every account).
        n = 0
        while "alpha" not in served(mock_codex):
            assert post(first.url + CHAT, conversation(n)).status_code == 200
            n += 1
        assert n <= 3
        key = "/codex-openai-wrapper/chatgpt-tokens/accounts/alpha/state"
        deadline = time.monotonic() + 15
        while (etcd.get(key) or {}).get("exhausted_until") != resets_at and time.monotonic() < deadline:
            time.sleep(0.2)
        assert etcd.get(key)["exhausted_until"] == resets_at
        # The second replica never sent alpha anything, and knows it is spent.
        deadline = time.monotonic() + 15
        while usage(second)["pool"]["exhausted"] != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        states = {a["label"]: a["state"] for a in usage(second)["accounts"]}
        assert states == {"alpha": "exhausted", "beta": "ready", "gamma": "ready"}
        before = len(mock_codex.requests)
        for m in range(100, 106):
            assert post(second.url + CHAT, conversation(m)).status_code == 200
        assert "alpha" not in served(mock_codex)[before:]
        # Each account's token record is in etcd under its label.
        for label in LABELS:
            assert etcd.get(f"/codex-openai-wrapper/chatgpt-tokens/accounts/{label}") is not None
    finally:
        etcd.stop()


def test_accounts_added_by_a_reload_serve_and_a_refreshed_login_keeps_its_tokens(envoy_factory, mock_codex, mock_oauth):
    # Portable mode: the reload reaches the main instance, which picks the account itself (in
    # full mode the credentials instance's own configuration is only read at start-up).
    documents = json.loads(pool_auth(expired={"alpha": True}))
    mock_oauth.add_account("rt_alpha", ACCOUNT_IDS["alpha"])
    envoy = envoy_factory(OPENAI_CODEX_AUTH=json.dumps(documents[0]), portable=True)
    assert post(envoy.url + CHAT, conversation(0)).status_code == 200
    assert mock_oauth.calls == 1, "alpha was refreshed; its first refresh token is spent"
    # The same alpha document, now with two more accounts (as CODEX_AUTH_DIR gains files).
    envoy.reload(OPENAI_CODEX_AUTH=json.dumps(documents))
    for n in range(1, 7):
        resp = post(envoy.url + CHAT, conversation(n))
        assert resp.status_code == 200, resp.text
    assert set(served(mock_codex)[1:]) == set(LABELS)
    assert mock_oauth.calls == 1, "alpha kept its refreshed tokens instead of spending the old refresh token again"
    assert {a["label"] for a in usage(envoy)["accounts"]} == set(LABELS)


def test_with_a_keys_file_only_the_admin_key_sees_the_accounts(envoy_factory, mock_codex, tmp_path):
    keys = [
        {"name": "ops", "key": "sk-ops-pool", "admin": True},
        {"name": "dev", "key": "sk-dev-pool"},
    ]
    path = tmp_path / "client-keys.json"
    path.write_text(json.dumps(keys), encoding="utf-8")
    envoy = envoy_factory(OPENAI_CODEX_AUTH=pool_auth(), CLIENT_KEYS_FILE=str(path))
    resp = requests.post(envoy.url + CHAT, json=conversation(1), headers={"Authorization": "Bearer sk-dev-pool"}, timeout=20)
    assert resp.status_code == 200, resp.text

    def usage_as(key: str) -> dict:
        answer = requests.get(envoy.url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    dev = usage_as("sk-dev-pool")
    assert dev["key"]["name"] == "dev" and dev["key"]["requests"] == 1, dev
    assert "accounts" not in dev and "pool" not in dev and "keys" not in dev, dev
    ops = usage_as("sk-ops-pool")
    # The harness also sets OPENAI_API_KEY: an unnamed key beside the file.
    assert [k["name"] for k in ops["keys"]] == ["ops", "dev", "key-1"], ops
    assert sorted(a["label"] for a in ops["accounts"]) == sorted(LABELS), ops
    assert sum(a["requests"] for a in ops["accounts"]) == 1, ops
    assert ops["pool"]["accounts"] == 3, ops
