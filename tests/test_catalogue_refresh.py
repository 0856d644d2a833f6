"""The live model catalogue through the real Envoy: one `GET …/models` for all worker VMs,
200 with an ETag then 304s, a new fetch when a turn announces another `x-models-etag`, and
the built-in catalogue when the backend's cannot be had."""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Set

import requests

from chat_helpers import AUTH, chat_body, post
from harness import tokens
from harness.mock_codex import BUILTIN_CATALOGUE, FIRST_ETAG, Script

CLIENT_VERSION = "0.169.0"
WORKERS = 2


def stat(envoy, fragment: str) -> float:
    text = requests.get(envoy.admin_url + "/stats/prometheus", timeout=5).text
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines() if not line.startswith("#") and fragment in line)


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def threads_logging(envoy, fragment: str) -> Set[str]:
    """The Envoy threads (one per VM) whose log has a line containing `fragment`."""
    threads = set()
    for line in envoy.log_text().splitlines():
        if fragment in line:
            match = re.match(r"\[[^\]]*\]\[(\d+)\]", line)
            if match:
                threads.add(match.group(1))
    return threads


def big_catalogue() -> dict:
    """The built-in catalogue with a prompt text per entry, about the size of the real
    answer (half a megabyte), which the filter must read whole and keep only in part."""
    document = json.loads(BUILTIN_CATALOGUE.read_text(encoding="utf-8"))
    for entry in document["models"]:
        entry["base_instructions"] = "You are a coding agent. " * 2000
    return document


def changed_catalogue() -> dict:
    document = json.loads(BUILTIN_CATALOGUE.read_text(encoding="utf-8"))
    first = copy.deepcopy(document["models"][0])
    first.update(slug="gpt-7-nova", display_name="GPT-7-Nova", priority=0)
    document["models"].insert(0, first)
    return document


def test_one_call_per_interval_for_all_workers_200_then_304(envoy_factory, mock_codex, auth_json):
    catalogue = mock_codex.catalogue
    catalogue.set(big_catalogue(), FIRST_ETAG)
    envoy = envoy_factory(concurrency=WORKERS, CATALOGUE_REFRESH_SECONDS="2", FORWARD_CLIENT_HEADERS_CODEX_VERSION=CLIENT_VERSION)
    calls = catalogue.wait_for_calls(3)
    first = calls[0].request
    assert first.path == f"/backend-api/codex/models?client_version={CLIENT_VERSION}"
    access_token = json.loads(auth_json)["tokens"]["access_token"]
    assert first.header("authorization") == f"Bearer {access_token}"
    assert first.header("chatgpt-account-id") == tokens.DEFAULT_ACCOUNT_ID
    assert first.header("originator") == "codex_cli_rs"
    assert first.header("user-agent").startswith(f"codex_cli_rs/{CLIENT_VERSION} (")
    assert first.header("if-none-match") is None
    assert [c.status for c in calls[:3]] == [200, 304, 304]
    assert all(c.request.header("if-none-match") == FIRST_ETAG for c in calls[1:3])
    # Without the shared lease every VM would call at once on its first tick; with it the
    # calls are an interval apart (2 s, less the one-second resolution of the clock).
    gaps = [later.at - earlier.at for earlier, later in zip(calls, calls[1:3])]
    assert min(gaps) > 0.9, gaps
    wait_until(lambda: stat(envoy, "codex_catalogue_not_modified") >= 2, "the 304s counted")
    assert stat(envoy, "codex_catalogue_fetched") == 1
    assert stat(envoy, "codex_catalogue_failed") == 0
    # Every worker VM took the fetched catalogue (the fetching one logs the fetch).
    wait_until(
        lambda: len(threads_logging(envoy, "model catalogue version 1") | threads_logging(envoy, "fetched the model catalogue (version 1")) >= WORKERS,
        "every worker VM adopted the catalogue",
    )
    assert "fetched the model catalogue (version 1, 9 models listed" in envoy.log_text()
    assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
    turn = mock_codex.requests[-1]
    assert turn.path == "/backend-api/codex/responses", "catalogue calls are not turns"
    for name in ("authorization", "chatgpt-account-id", "originator", "user-agent", "version"):
        assert first.header(name) == turn.header(name), f"{name}: the catalogue call's differs from the turn's"
    assert first.header("version") == CLIENT_VERSION


def test_a_turn_announcing_a_new_etag_brings_the_changed_catalogue(envoy_factory, mock_codex):
    catalogue = mock_codex.catalogue
    envoy = envoy_factory(concurrency=WORKERS)
    catalogue.wait_for_calls(1)
    wait_until(lambda: stat(envoy, "codex_catalogue_fetched") == 1, "the first catalogue stored")
    # The same ETag on a turn changes nothing; a new one makes the next tick fetch.
    mock_codex.enqueue(Script.fixture("text", headers={"content-type": "text/event-stream", "x-models-etag": FIRST_ETAG}))
    assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
    catalogue.set(changed_catalogue(), '"cat-2"')
    mock_codex.enqueue(Script.fixture("text", headers={"content-type": "text/event-stream", "x-models-etag": '"cat-2"'}))
    assert post(envoy.url + "/v1/chat/completions", chat_body()).status_code == 200
    calls = catalogue.wait_for_calls(2)
    assert calls[1].request.header("if-none-match") == FIRST_ETAG
    assert calls[1].status == 200
    wait_until(lambda: stat(envoy, "codex_catalogue_fetched") == 2, "the changed catalogue stored")
    assert "fetched the model catalogue (version 2, 10 models listed" in envoy.log_text()
    wait_until(
        lambda: len(threads_logging(envoy, "model catalogue version 2") | threads_logging(envoy, "fetched the model catalogue (version 2")) >= WORKERS,
        "every worker VM adopted the changed catalogue",
    )
    # What clients see follows on every worker (each VM takes the stored catalogue up on its
    # next tick; the log above may come from the main thread's VM, so ask until a run of
    # requests, spread over the workers' connections, all see it): the OpenAI list and the
    # default model, and Codex CLI's own call gets the backend's answer as it came (prompt
    # texts included).
    def listed_first() -> str:
        return requests.get(envoy.url + "/v1/models", headers=AUTH, timeout=10).json()["data"][0]["id"]

    wait_until(lambda: all(listed_first() == "gpt-7-nova" for _ in range(8 * WORKERS)), "every worker lists the new catalogue")
    codex = requests.get(envoy.url + "/v1/models?client_version=0.169.0", headers=AUTH, timeout=10)
    assert codex.json() == changed_catalogue()
    body = chat_body()
    body.pop("model", None)
    for _ in range(2 * WORKERS):
        mock_codex.enqueue(Script.fixture("text"))
        assert post(envoy.url + "/v1/chat/completions", body).status_code == 200
        assert mock_codex.requests[-1].json["model"] == "gpt-7-nova"
    # Turns announcing the catalogue in use ask for nothing more; the interval is 300 s.
    for _ in range(3):
        mock_codex.enqueue(Script.fixture("text", headers={"content-type": "text/event-stream", "x-models-etag": '"cat-2"'}))
        assert post(envoy.url + "/v1/chat/completions", chat_body(stream=True)).status_code == 200
    assert len(catalogue.calls) == 2


def test_an_unreachable_catalogue_leaves_the_builtin_one_and_the_wrapper_serving(envoy_factory, mock_codex):
    catalogue = mock_codex.catalogue
    catalogue.fail_with(None)
    envoy = envoy_factory(concurrency=WORKERS)
    catalogue.wait_for_calls(1)
    wait_until(lambda: stat(envoy, "codex_catalogue_failed") >= 1, "the failed call counted")
    wait_until(lambda: "could not fetch the model catalogue" in envoy.log_text(), "the warning")
    assert "the built-in catalogue serves, retrying in 5s" in envoy.log_text()
    models = requests.get(envoy.url + "/v1/models", headers=AUTH, timeout=10)
    assert models.status_code == 200, models.text
    assert models.json()["object"] == "list" and models.json()["data"]
    resp = post(envoy.url + "/v1/chat/completions", chat_body())
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "Hello world"
    # The backend comes back: the retry after the backoff gets the catalogue.
    catalogue.recover()
    wait_until(lambda: stat(envoy, "codex_catalogue_fetched") == 1, "the retry fetched the catalogue")
    assert "the model catalogue fetch works again after" in envoy.log_text()
    assert envoy.log_text().count("could not fetch the model catalogue") == 1, "one warning per failure streak"


def test_a_401_on_the_catalogue_call_refreshes_the_token(envoy_factory, mock_codex, mock_oauth):
    catalogue = mock_codex.catalogue
    catalogue.fail_with(401)
    envoy = envoy_factory(OPENAI_CODEX_AUTH=tokens.auth_json(expires_in=3600))
    catalogue.wait_for_calls(1)
    wait_until(lambda: mock_oauth.calls == 1, "the refresh after the catalogue's 401")
    catalogue.recover()
    calls = catalogue.wait_for_calls(2)
    assert calls[1].request.header("authorization") != calls[0].request.header("authorization"), "the refreshed token"
    wait_until(lambda: stat(envoy, "codex_catalogue_fetched") == 1, "the catalogue with the new token")
