"""Smoke tests: the filter answers through Envoy; envoy/render.py renders what Envoy needs.

`make validate` loads the rendered default configuration (and the module) in Envoy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from harness.envoy import EnvoyHandle
from harness.repo import RENDER_PY, load_render
from harness.tokens import auth_json

render = load_render()


# --------------------------------------------------------------------------------------
# Through Envoy


def test_health(envoy: EnvoyHandle) -> None:
    response = requests.get(envoy.url + "/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --------------------------------------------------------------------------------------
# Rendering


def codex_cluster(config: dict) -> dict:
    """The Responses backend's cluster (the oauth cluster and optional ones sit beside it)."""
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "codex"]
    return cluster


def http_connection_manager(config: dict) -> dict:
    (listener,) = config["static_resources"]["listeners"]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def route(config: dict) -> dict:
    """The catch-all route (always the last one)."""
    last = http_connection_manager(config)["route_config"]["virtual_hosts"][0]["routes"][-1]
    assert last["match"] == {"prefix": "/"}
    return last


def wasm_config(config: dict) -> dict:
    (wasm,) = [f for f in http_connection_manager(config)["http_filters"] if f["name"] == "envoy.filters.http.wasm"]
    return wasm["typed_config"]["config"]


def socket_address(cluster: dict) -> dict:
    return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]


def test_https_upstream_gets_a_tls_cluster_with_sni() -> None:
    config = render.render_config({"CHATGPT_RESPONSES_URL": "https://chatgpt.com/backend-api/codex/responses"})
    cluster = codex_cluster(config)
    assert cluster["name"] == "codex" and cluster["type"] == "LOGICAL_DNS"
    assert cluster["dns_lookup_family"] == "V4_PREFERRED"
    assert socket_address(cluster) == {"address": "chatgpt.com", "port_value": 443}
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "chatgpt.com"
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] == render.default("ENVOY_CA_BUNDLE")
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["upstream_http_protocol_options"] == {"auto_sni": True, "auto_san_validation": True}
    assert "http2_protocol_options" in options["auto_config"]
    assert route(config)["route"]["host_rewrite_literal"] == "chatgpt.com"


def test_http_ip_upstream_gets_a_static_plain_cluster() -> None:
    config = render.render_config({"CHATGPT_RESPONSES_URL": "http://127.0.0.1:18080/backend-api/codex/responses"})
    cluster = codex_cluster(config)
    assert cluster["type"] == "STATIC"
    assert "transport_socket" not in cluster
    assert socket_address(cluster) == {"address": "127.0.0.1", "port_value": 18080}
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["explicit_http_config"] == {"http_protocol_options": {}}
    assert route(config)["route"]["host_rewrite_literal"] == "127.0.0.1:18080"


def test_http_hostname_upstream_uses_strict_dns_and_port_80() -> None:
    cluster = codex_cluster(render.render_config({"CHATGPT_RESPONSES_URL": "http://mock.internal/x"}))
    assert cluster["type"] == "STRICT_DNS"
    assert socket_address(cluster) == {"address": "mock.internal", "port_value": 80}


def test_defaults_and_limits() -> None:
    config = render.render_config({}, wasm_path=Path("relative/module.wasm"))
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8787}
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    limit = 16 * 1024 * 1024 + 1024 * 1024
    assert listener["per_connection_buffer_limit_bytes"] == limit
    # The Codex cluster reads in small chunks (first tokens sooner); bodies buffer on the listener.
    assert codex_cluster(config)["per_connection_buffer_limit_bytes"] == render.CODEX_READ_BUFFER_BYTES
    hcm = http_connection_manager(config)
    assert hcm["stream_idle_timeout"] == "300s" and hcm["request_timeout"] == "0s"
    assert route(config)["route"]["timeout"] == "0s"
    assert "x-request-id" in route(config)["request_headers_to_remove"]
    assert [f["name"] for f in hcm["http_filters"]] == [
        "envoy.filters.http.cors",
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.wasm",
        "envoy.filters.http.router",
    ]
    vm = wasm_config(config)["vm_config"]
    assert Path(vm["code"]["local"]["filename"]).is_absolute()
    assert vm["environment_variables"]["host_env_keys"] == render.filter_variables()


@pytest.mark.parametrize("portable, hold", [("", True), ("0", True), ("1", False), ("yes", False), ("TRUE", False)])
def test_portable_mode_drops_the_header_hold_flag(portable: str, hold: bool) -> None:
    config = wasm_config(render.render_config({"ENVOY_PORTABLE": portable, "MAX_REQUEST_BODY_BYTES": "1000"}))
    assert config.get("allow_on_headers_stop_iteration", False) is hold
    plugin = json.loads(config["configuration"]["value"])
    expected = {"ENVOY_HOLD_HEADERS": hold, "MAX_REQUEST_BODY_BYTES": 1000}
    if hold:
        # Only full mode has the cluster's credentials instance (WasmPlugin cannot place one).
        expected["CREDENTIALS_UPSTREAM"] = True
    assert plugin == expected


def test_secrets_never_reach_the_rendered_file() -> None:
    auth = auth_json()
    settings = {"OPENAI_API_KEY": "sk-very-secret", "OPENAI_CODEX_AUTH": auth, "UPSTREAM_API_KEY": "up-secret"}
    text = json.dumps(render.render_config(settings))
    assert "sk-very-secret" not in text and "up-secret" not in text
    assert json.loads(auth)["tokens"]["access_token"] not in text


# --------------------------------------------------------------------------------------
# .dev.vars


DEV_VARS = r"""
# a comment
export PORT=9000
OPENAI_API_KEY="sk-local" # trailing comment after quotes
SINGLE='keep $this \n literally'
DOUBLE="line1\nline2 \"quoted\" back\\slash"
UNQUOTED = plain-value # inline comment
HASH_NO_SPACE=abc#def
EMPTY=
OPENAI_CODEX_AUTH='{"tokens": {"access_token": "a.b.c", "note": "x #y"}}'
EXPOSE_MODELS='["gpt-5", "gpt-5-codex"]' # models
MULTI='{
  "a": 1
}'
"""


def test_dev_vars_parsing(tmp_path: Path) -> None:
    env_file = tmp_path / ".dev.vars"
    env_file.write_text(DEV_VARS)
    settings = render.load_settings(env_file, environ={"PORT": "9100"})
    assert settings["PORT"] == "9100", "the environment overrides the file"
    assert settings["OPENAI_API_KEY"] == "sk-local"
    assert settings["SINGLE"] == r"keep $this \n literally"
    assert settings["DOUBLE"] == 'line1\nline2 "quoted" back\\slash'
    assert settings["UNQUOTED"] == "plain-value"
    assert settings["HASH_NO_SPACE"] == "abc#def"
    assert settings["EMPTY"] == ""
    assert json.loads(settings["OPENAI_CODEX_AUTH"]) == {"tokens": {"access_token": "a.b.c", "note": "x #y"}}
    assert json.loads(settings["EXPOSE_MODELS"]) == ["gpt-5", "gpt-5-codex"]
    assert json.loads(settings["MULTI"]) == {"a": 1}


def test_dev_vars_missing_file_is_empty(tmp_path: Path) -> None:
    assert render.load_settings(tmp_path / "absent", environ={"A": "1"}) == {"A": "1"}


def test_dev_vars_blank_means_default() -> None:
    config = render.render_config({"PORT": "  ", "CHATGPT_RESPONSES_URL": ""})
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == 8787
    assert socket_address(codex_cluster(config))["address"] == "chatgpt.com"


def test_dev_vars_rejects_garbage_lines(tmp_path: Path) -> None:
    env_file = tmp_path / ".dev.vars"
    env_file.write_text("A=1\nthis is not an assignment\n")
    with pytest.raises(render.ConfigError, match=r"\.dev\.vars:2"):
        render.load_settings(env_file, environ={})


# --------------------------------------------------------------------------------------
# CLI errors


def run_render_cli(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RENDER_PY), "--out", str(tmp_path / "out.yaml"), "--env-file", "/dev/null"],
        env={"PATH": "/usr/bin:/bin", render.SETTINGS_BIN_VAR: render.settings_bin(), **env},
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "not a url", "https://", "http://host:99999/x", "https://user:pw@host/x"]
)
def test_invalid_responses_url_fails_naming_the_variable(tmp_path: Path, url: str) -> None:
    result = run_render_cli(tmp_path, CHATGPT_RESPONSES_URL=url)
    assert result.returncode != 0
    assert "CHATGPT_RESPONSES_URL" in result.stderr
    assert not (tmp_path / "out.yaml").exists()


@pytest.mark.parametrize("value", ["0", "-5", "lots", "1.5"])
def test_invalid_body_limit_fails_naming_the_variable(tmp_path: Path, value: str) -> None:
    result = run_render_cli(tmp_path, MAX_REQUEST_BODY_BYTES=value)
    assert result.returncode != 0
    assert "MAX_REQUEST_BODY_BYTES" in result.stderr


def test_cli_writes_json(tmp_path: Path) -> None:
    result = run_render_cli(tmp_path, PORT="9123")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "out.yaml").read_text())
    assert config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] == 9123
