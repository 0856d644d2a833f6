"""ChatGPT token refresh through the real Envoy: one refresher for all worker VMs, requests
that wait instead of failing, rotation, permanent and temporary failures."""

from __future__ import annotations

import json
import threading
import time

import openai
import pytest
import requests

from chat_helpers import chat_body, error_of, post
from conftest import TEST_API_KEY
from harness import sse, tokens
from harness.mock_codex import Script


def stat(envoy, fragment: str) -> float:
    text = requests.get(envoy.admin_url + "/stats/prometheus", timeout=5).text
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines() if not line.startswith("#") and fragment in line)


def bearer(request) -> str:
    return request.header("authorization").removeprefix("Bearer ")


def test_an_expired_token_is_refreshed_once_and_the_request_succeeds(envoy_factory, mock_codex, mock_oauth):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=-60), concurrency=4)
    resp = post(envoy.url + "/v1/chat/completions", chat_body())
    assert resp.status_code == 200, resp.text
    assert mock_oauth.calls == 1
    sent = mock_oauth.http.last_request.json
    assert sent == {"client_id": "app_EMoamEEZ73f0CkXaXp7hrann", "grant_type": "refresh_token", "refresh_token": tokens.DEFAULT_REFRESH_TOKEN}
    assert tokens.decode_jwt_claims(bearer(mock_codex.last_request))["exp"] > tokens.decode_jwt_claims(
        json.loads(tokens.auth_json(expires_in=-60))["tokens"]["access_token"]
    )["exp"]
    for _ in range(5):
        assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
    assert mock_oauth.calls == 1, "every worker VM must use the refreshed token, not refresh again"
    assert stat(envoy, "codex_token_refresh_ok") == 1
    assert "refreshed the ChatGPT access token (generation 1" in envoy.log_text()


def test_a_token_about_to_expire_is_refreshed_ahead_while_requests_flow(envoy_factory, mock_codex, mock_oauth):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=120), concurrency=4)
    mock_oauth.delay = 0.5
    original = json.loads(envoy.env["OPENAI_CODEX_AUTH"])["tokens"]["access_token"]
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
        seen.append(bearer(mock_codex.last_request))
        if seen[-1] != original:
            break
        time.sleep(0.05)
    assert seen[0] == original, "the still-valid token is used until the refresh lands"
    assert seen[-1] != original, "the refresh ran ahead of expiry"
    assert seen.index(seen[-1]) > 0
    assert mock_oauth.calls == 1


def test_concurrent_requests_during_a_refresh_all_succeed(envoy_factory, mock_codex, mock_oauth):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=-60), concurrency=4)
    mock_oauth.delay = 1.0
    results = []

    def call():
        resp = post(envoy.url + "/v1/chat/completions", chat_body(stream=True))
        results.append(resp.status_code if resp.status_code == 200 else resp.text)

    threads = [threading.Thread(target=call) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 12
    assert mock_oauth.calls == 1
    fresh = {bearer(r) for r in mock_codex.requests}
    assert len(fresh) == 1, "every waiting request went out with the refreshed token"


def test_a_permanent_failure_answers_401_without_a_retry_storm(envoy_factory, mock_codex, mock_oauth):
    mock_oauth.reset(refresh_token="rt_someone_else")  # ours is unknown to the endpoint
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=-60), concurrency=2)
    for _ in range(4):
        status, error = error_of(post(envoy.url + "/v1/chat/completions", chat_body()))
        assert (status, error["code"]) == (401, "refresh_token_invalid")
        assert "make login" in error["message"]
    assert mock_oauth.calls == 1
    assert mock_codex.requests == []
    assert stat(envoy, "codex_token_refresh_permanent_failure") == 1


def test_a_reused_refresh_token_is_permanent(envoy_factory, mock_codex, mock_oauth):
    mock_oauth.fail_next(Script.json(400, {"error": "invalid_grant", "code": "refresh_token_reused"}))
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=-60))
    status, error = error_of(post(envoy.url + "/v1/chat/completions", chat_body()))
    assert (status, error["code"]) == (401, "refresh_token_invalid")
    # The official client reads `error` before a top-level `code`.
    assert "invalid_grant" in error["message"]
    assert mock_oauth.calls == 1


def test_a_400_invalid_grant_is_permanent_log_in_again_and_no_retry_storm(envoy_factory, mock_codex, mock_oauth):
    mock_oauth.fail_next(Script.json(400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}))
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=-60), concurrency=2)
    for _ in range(4):
        status, error = error_of(post(envoy.url + "/v1/chat/completions", chat_body()))
        assert (status, error["code"]) == (401, "refresh_token_invalid")
        assert "make login" in error["message"] and "invalid_grant" in error["message"]
    # The endpoint would answer the next call: a second attempt would have succeeded.
    time.sleep(6)
    status, error = error_of(post(envoy.url + "/v1/chat/completions", chat_body()))
    assert (status, error["code"]) == (401, "refresh_token_invalid")
    assert mock_oauth.calls == 1, "a permanent failure is not retried"
    assert mock_codex.requests == []
    assert stat(envoy, "codex_token_refresh_permanent_failure") == 1


def test_a_temporary_failure_is_retried_with_backoff(envoy_factory, mock_codex, mock_oauth):
    mock_oauth.fail_next(Script.json(503, {"error": "temporarily_unavailable"}))
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=-60))
    resp = post(envoy.url + "/v1/chat/completions", chat_body())
    assert resp.status_code == 200, resp.text
    assert mock_oauth.calls == 2
    assert "token refresh failed: the token endpoint answered HTTP 503" in envoy.log_text()


def test_no_refresh_token_means_401_and_no_call(envoy_factory, mock_codex, mock_oauth):
    document = json.loads(tokens.auth_json(expires_in=-60))
    del document["tokens"]["refresh_token"]
    envoy = envoy_factory(OPENAI_CODEX_AUTH=json.dumps(document))
    status, error = error_of(post(envoy.url + "/v1/chat/completions", chat_body()))
    assert (status, error["code"]) == (401, "token_expired")
    assert mock_oauth.calls == 0


def test_no_secret_reaches_the_log(envoy_factory, mock_codex, mock_oauth, auth_json):
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=-60), VERBOSE="true")
    assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
    log = envoy.log_text()
    secrets = [tokens.DEFAULT_REFRESH_TOKEN, mock_oauth.current_refresh_token, bearer(mock_codex.last_request)]
    for secret in secrets:
        assert secret not in log


@pytest.mark.parametrize("stream", [True, False])
def test_a_backend_401_is_retried_once_with_the_refreshed_token(envoy_factory, mock_codex, mock_oauth, stream):
    """Full mode: the credentials instance in the Codex cluster and Envoy's 401 retry."""
    envoy = envoy_factory(concurrency=2)
    mock_codex.enqueue(Script.json(401, {"error": {"message": "Provided authentication token is expired.", "code": "token_expired"}}))
    resp = post(envoy.url + "/v1/chat/completions", chat_body(stream=stream))
    assert resp.status_code == 200, resp.text
    assert "Hello" in resp.text
    assert mock_oauth.calls == 1
    first, retry = mock_codex.requests
    assert bearer(first) != bearer(retry), "the retry carries the refreshed token"
    assert first.json == retry.json, "the same translated body is sent again"
    assert stat(envoy, "codex_token_refresh_ok") == 1


def test_portable_mode_asks_the_client_to_retry_a_401_and_refreshes(envoy_factory, mock_codex, mock_oauth):
    """Portable mode (no credentials instance, as under Istio): the filter cannot send the
    request again itself, so the client is told to retry, not to log in again."""
    envoy = envoy_factory(portable=True)
    mock_codex.enqueue(Script.json(401, {"error": {"message": "expired", "code": "token_expired"}}))
    resp = post(envoy.url + "/v1/chat/completions", chat_body())
    status, error = error_of(resp)
    assert (status, error["code"]) == (503, "upstream_token_rejected")
    assert resp.headers["retry-after"] == "1"
    assert "Retry the request" in error["message"] and "login" not in error["message"]
    resp = post(envoy.url + "/v1/chat/completions", chat_body())
    assert resp.status_code == 200, resp.text
    assert mock_oauth.calls == 1
    first, retry = mock_codex.requests
    assert bearer(first) != bearer(retry)


def test_portable_mode_the_official_sdk_gets_the_answer_after_a_backend_401(envoy_factory, mock_codex, mock_oauth):
    envoy = envoy_factory(portable=True)
    mock_codex.enqueue(Script.json(401, {"error": {"message": "expired", "code": "token_expired"}}))
    client = openai.OpenAI(base_url=envoy.url + "/v1", api_key=TEST_API_KEY, max_retries=2, timeout=20)
    result = client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == "Hello world"
    assert mock_oauth.calls == 1
    assert len(mock_codex.requests) == 2
    assert stat(envoy, "codex_token_refresh_ok") == 1


def test_usage_limit_headers_and_bodies_become_stats(envoy_factory, mock_codex, mock_oauth):
    envoy = envoy_factory()
    limits = {
        "x-codex-primary-used-percent": "42.4",
        "x-codex-primary-reset-at": "1900000000",
        "x-codex-secondary-used-percent": "100",
        "x-codex-secondary-reset-after-seconds": "600",
    }
    mock_codex.enqueue(Script.events(sse.text_events(["ok"]), headers={"content-type": "text/event-stream", **limits}))
    assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
    assert stat(envoy, "codex_rate_limit_primary_used_percent") == 42
    assert stat(envoy, "codex_rate_limit_primary_resets_at") == 1900000000
    assert stat(envoy, "codex_rate_limit_secondary_used_percent") == 100
    assert stat(envoy, "codex_rate_limit_secondary_resets_at") > time.time()
    mock_codex.enqueue(Script.json(429, {"error": {"type": "usage_limit_reached", "message": "limit", "resets_in_seconds": 600}}, headers=limits))
    resp = post(envoy.url + "/v1/chat/completions", chat_body())
    assert (resp.status_code, resp.headers["retry-after"]) == (429, "600")
    assert stat(envoy, "codex_usage_limit_reached") == 1
    deadline = time.monotonic() + 5
    while stat(envoy, "codex_token_expires_in_seconds") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # the gauge is updated on the filter's once-a-second tick
    assert 0 < stat(envoy, "codex_token_expires_in_seconds") <= tokens.TEN_DAYS
