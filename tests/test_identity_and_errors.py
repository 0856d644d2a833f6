"""What the filter says it is to the Codex backend (the `User-Agent` and `version` of the
current Codex CLI), and the backend's refusals that concern it: a model that needs a newer
client, a model not offered to ChatGPT accounts, and a policy refusal over HTTP and inside
the stream."""

from __future__ import annotations

import openai
import pytest

from chat_helpers import chat_body, error_of, post, sse_data
from conftest import TEST_API_KEY
from harness.mock_codex import Script

OFFICIAL_UA = "codex_cli_rs/0.169.0 (unknown unknown; unknown) unknown (codex_cli_rs; 0.169.0)"
TOO_OLD = "The 'gpt-6-sol' model requires a newer version of Codex. Please upgrade to the latest app or CLI and try again."
NOT_FOR_CHATGPT = "The 'gpt-5.4' model is not supported when using Codex with a ChatGPT account."


def chat_url(envoy) -> str:
    return envoy.url + "/v1/chat/completions"


def sdk(envoy) -> openai.OpenAI:
    return openai.OpenAI(base_url=envoy.url + "/v1", api_key=TEST_API_KEY, max_retries=0, timeout=20)


def test_a_turn_carries_the_current_codex_identity(envoy, mock_codex):
    assert post(chat_url(envoy), chat_body()).status_code == 200
    seen = mock_codex.last_request
    assert seen.header("user-agent") == OFFICIAL_UA
    assert seen.header("version") == "0.169.0"
    assert seen.header("originator") == "codex_cli_rs"


def test_the_version_setting_moves_every_identity_header(envoy_factory, mock_codex):
    envoy = envoy_factory(FORWARD_CLIENT_HEADERS_CODEX_VERSION="0.171.2", FORWARD_CLIENT_HEADERS_CODEX_ORIGINATOR="codex_exec")
    assert post(chat_url(envoy), chat_body(stream=True)).status_code == 200
    seen = mock_codex.last_request
    assert seen.header("user-agent") == "codex_exec/0.171.2 (unknown unknown; unknown) unknown (codex_exec; 0.171.2)"
    assert seen.header("version") == "0.171.2"
    assert seen.header("originator") == "codex_exec"


@pytest.mark.parametrize("stream", [False, True])
def test_an_old_client_refusal_names_the_version_variable(envoy, mock_codex, stream):
    mock_codex.enqueue(Script.json(400, {"detail": TOO_OLD}))
    with pytest.raises(openai.BadRequestError) as caught:
        result = sdk(envoy).chat.completions.create(
            model="gpt-6-sol", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        if stream:
            list(result)
    error = caught.value
    assert error.status_code == 400
    assert error.code == "client_version_too_old"
    assert "FORWARD_CLIENT_HEADERS_CODEX_VERSION" in error.message
    assert "'gpt-6-sol'" in error.message
    assert mock_codex.last_request.header("version") == "0.169.0"


def test_a_model_chatgpt_accounts_cannot_use_points_to_the_model_list(envoy, mock_codex):
    mock_codex.enqueue(Script.json(400, {"detail": NOT_FOR_CHATGPT}))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(envoy).chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_supported"
    assert "/v1/models" in caught.value.message
    assert "FORWARD_CLIENT_HEADERS_CODEX_VERSION" not in caught.value.message


@pytest.mark.parametrize("status", [400, 403])
@pytest.mark.parametrize("stream", [False, True])
def test_a_policy_refusal_over_http_is_a_4xx_with_its_code(envoy, mock_codex, status, stream):
    refusal = {"error": {"code": "misalignment_policy_violation", "message": "Refused under the usage policy."}}
    mock_codex.enqueue(Script.json(status, refusal))
    got, error = error_of(post(chat_url(envoy), chat_body(stream=stream)))
    assert (got, error["type"], error["code"]) == (status, "invalid_request_error", "misalignment_policy_violation")
    assert error["message"] == "Refused under the usage policy."


@pytest.mark.parametrize("fixture", ["policy_refusal", "policy_error"])
def test_a_policy_refusal_inside_the_stream(envoy, mock_codex, fixture):
    # Streaming: an OpenAI-shaped error frame with the backend's code, then [DONE].
    mock_codex.enqueue(Script.fixture(fixture))
    resp = post(chat_url(envoy), chat_body(stream=True))
    assert resp.status_code == 200
    frames = sse_data(resp.text)
    assert frames[-1] == "[DONE]"
    error = frames[-2]["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "misalignment_policy_violation")
    # Not streaming: the official SDK gets a 400 it raises as BadRequestError.
    mock_codex.enqueue(Script.fixture(fixture))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(envoy).chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "misalignment_policy_violation"
