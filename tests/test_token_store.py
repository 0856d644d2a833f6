"""TOKEN_STORE=etcd: several Envoy replicas share one ChatGPT login through etcd; a rotated
refresh token survives a restart."""

from __future__ import annotations

import threading
import time

import pytest

from chat_helpers import chat_body, post
from harness import tokens
from harness.etcd import EtcdServer

KEY = "/codex-openai-wrapper/chatgpt-tokens"


@pytest.fixture
def etcd():
    server = EtcdServer()
    yield server
    server.stop()


def test_two_replicas_refresh_once_and_a_restart_uses_the_rotated_token(envoy_factory, mock_codex, mock_oauth, etcd):
    expired = tokens.auth_json(expires_in=-60)
    env = {"TOKEN_STORE": "etcd", "ETCD_ENDPOINT": etcd.url, "OPENAI_CODEX_AUTH": expired}
    replicas = [envoy_factory(concurrency=2, **env), envoy_factory(concurrency=2, **env)]
    mock_oauth.delay = 0.5
    results = []

    def call(envoy):
        results.append(post(envoy.url + "/v1/chat/completions", chat_body()).status_code)

    threads = [threading.Thread(target=call, args=(replicas[i % 2],)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert results == [200] * 10
    assert mock_oauth.calls == 1, "two replicas spent the refresh token once between them"
    stored = etcd.get(KEY)
    assert stored["record"]["tokens"]["refresh_token"] == mock_oauth.current_refresh_token
    assert stored["lock"] is None

    # A replica restarts with the original (now spent) login: it must take the rotated
    # tokens from etcd instead of refreshing with the spent refresh token.
    replicas[0].stop()
    restarted = envoy_factory(concurrency=2, **env)
    assert post(restarted.url + "/v1/chat/completions", chat_body()).status_code == 200
    assert mock_oauth.calls == 1
    assert "took newer ChatGPT tokens from the token store" in restarted.log_text()


def test_a_fresh_store_gets_the_configured_login(envoy_factory, mock_codex, mock_oauth, etcd):
    envoy = envoy_factory(TOKEN_STORE="etcd", ETCD_ENDPOINT=etcd.url)
    assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
    deadline = time.monotonic() + 10
    while etcd.get(KEY) is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the start-up reconciliation runs on the filter's first ticks
    stored = etcd.get(KEY)
    assert stored is not None and stored["record"]["tokens"]["refresh_token"] == tokens.DEFAULT_REFRESH_TOKEN
    assert mock_oauth.calls == 0
