"""envoy/render.py and the settings it takes from codex-settings: upstream URL precedence, the
optional clusters and routes, CORS and the per-endpoint stats (also checked through a real
Envoy), the commented example configuration, and the run command's preparation.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import requests
import yaml

from chat_helpers import AUTH, chat_body, post
from harness import tokens
from harness.envoy import validate_config
from harness.mock_codex import MockCodex
from harness.repo import RENDER_PY, REPO_ROOT, load_render

render = load_render()
# The CLI tests run render.py with a bare PATH (no cargo): they use the tool built here.
SETTINGS_BIN_ENV = {render.SETTINGS_BIN_VAR: render.settings_bin()}

ALL_OPTIONAL = {
    "OLLAMA_API_URL": "http://127.0.0.1:11434/ollama",
    "INSTRUCTIONS_BASE_URL": "https://raw.githubusercontent.com/example/prompts/main/prompt.md",
    "INSTRUCTIONS_CODEX_URL": "https://raw.githubusercontent.com/example/prompts/main/codex.md",
    "TOKEN_STORE": "etcd",
    "ETCD_ENDPOINT": "http://127.0.0.1:2379",
    "CORS_ALLOW_ORIGINS": "https://app.example.com,http://localhost:3000",
}


# --------------------------------------------------------------------------------------
# Helpers over the rendered dict


def clusters_by_name(config: dict) -> Dict[str, dict]:
    found = config["static_resources"]["clusters"]
    names = [c["name"] for c in found]
    assert len(names) == len(set(names)), f"duplicate cluster names: {names}"
    return {c["name"]: c for c in found}


def hcm(config: dict) -> dict:
    (listener,) = config["static_resources"]["listeners"]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def virtual_host(config: dict) -> dict:
    (vhost,) = hcm(config)["route_config"]["virtual_hosts"]
    return vhost


def routes(config: dict) -> List[dict]:
    return virtual_host(config)["routes"]


def address(cluster: dict) -> dict:
    return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]


def tls_of(cluster: dict) -> Optional[dict]:
    socket = cluster.get("transport_socket")
    return socket["typed_config"] if socket else None


def protocol_options(cluster: dict) -> dict:
    return cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]


def cors_policy(config: dict) -> dict:
    return virtual_host(config)["typed_per_filter_config"]["envoy.filters.http.cors"]


def render_error(settings: Dict[str, str]) -> "render.ConfigError":
    with pytest.raises(render.ConfigError) as caught:
        render.render_config(settings)
    return caught.value


def blames(error: "render.ConfigError", variable: str) -> bool:
    """The error is the filter's own message for that variable."""
    return error.variable == variable and str(error).startswith(f"invalid {variable}: ")


# --------------------------------------------------------------------------------------
# Responses URL precedence


@pytest.mark.parametrize(
    "settings, url, variable",
    [
        ({}, "https://chatgpt.com/backend-api/codex/responses", "CHATGPT_RESPONSES_URL"),
        ({"CHATGPT_RESPONSES_URL": " http://mock:9/r "}, "http://mock:9/r", "CHATGPT_RESPONSES_URL"),
        ({"CHATGPT_RESPONSES_URL": "http://c/x", "UPSTREAM_BASE_URL": "http://h/v1"}, "http://h/v1/responses", "UPSTREAM_BASE_URL"),
        ({"UPSTREAM_BASE_URL": "http://h/v1/", "UPSTREAM_WIRE_API_PATH": "custom/resp"}, "http://h/v1/custom/resp", "UPSTREAM_BASE_URL"),
        ({"UPSTREAM_BASE_URL": "http://h/v1/", "UPSTREAM_WIRE_API_PATH": " /x/y "}, "http://h/v1/x/y", "UPSTREAM_BASE_URL"),
        # ONE trailing slash is removed, not all of them.
        ({"UPSTREAM_BASE_URL": "http://h/v1//"}, "http://h/v1//responses", "UPSTREAM_BASE_URL"),
        ({"UPSTREAM_BASE_URL": "http://h/v1", "UPSTREAM_WIRE_API_PATH": "   "}, "http://h/v1/responses", "UPSTREAM_BASE_URL"),
        (
            {"UPSTREAM_RESPONSES_URL": " https://r/y ", "UPSTREAM_BASE_URL": "http://h/v1", "CHATGPT_RESPONSES_URL": "http://c/x"},
            "https://r/y",
            "UPSTREAM_RESPONSES_URL",
        ),
        # Blank counts as unset at every level.
        ({"UPSTREAM_RESPONSES_URL": "  ", "UPSTREAM_BASE_URL": " ", "CHATGPT_RESPONSES_URL": "http://c/x"}, "http://c/x", "CHATGPT_RESPONSES_URL"),
    ],
)  # fmt: skip
def test_responses_url_precedence(settings: Dict[str, str], url: str, variable: str) -> None:
    codex = render.resolve(settings)["upstreams"]["codex"]
    assert (codex["url"], codex["variable"]) == (url, variable)


def test_the_winning_url_becomes_the_codex_cluster_and_host_rewrite() -> None:
    config = render.render_config(
        {"UPSTREAM_BASE_URL": "https://api.example.com:8443/v1/", "CHATGPT_RESPONSES_URL": "http://127.0.0.1:1/x"}
    )
    codex = clusters_by_name(config)["codex"]
    assert address(codex) == {"address": "api.example.com", "port_value": 8443}
    assert tls_of(codex)["sni"] == "api.example.com"
    assert routes(config)[-1]["route"]["host_rewrite_literal"] == "api.example.com:8443"


@pytest.mark.parametrize(
    "settings, variable",
    [
        ({"UPSTREAM_RESPONSES_URL": "ftp://r/y", "CHATGPT_RESPONSES_URL": "http://ok/x"}, "UPSTREAM_RESPONSES_URL"),
        ({"UPSTREAM_BASE_URL": "h/v1", "CHATGPT_RESPONSES_URL": "http://ok/x"}, "UPSTREAM_BASE_URL"),
        ({"CHATGPT_RESPONSES_URL": "https://user:pw@h/x"}, "CHATGPT_RESPONSES_URL"),
    ],
)
def test_a_bad_responses_url_names_the_variable_that_supplied_it(settings: Dict[str, str], variable: str) -> None:
    error = render_error(settings)
    assert blames(error, variable), error


# --------------------------------------------------------------------------------------
# Ollama


def test_without_ollama_there_is_no_ollama_cluster_or_api_route() -> None:
    config = render.render_config({"OLLAMA_API_URL": "  "})
    assert "ollama" not in clusters_by_name(config)
    assert [r["match"] for r in routes(config)] == [{"prefix": "/"}]


def test_ollama_route_comes_before_the_catch_all() -> None:
    config = render.render_config({"OLLAMA_API_URL": "http://localhost:11434", "STREAM_IDLE_TIMEOUT_SECONDS": "120"})
    cluster = clusters_by_name(config)["ollama"]
    assert cluster["type"] == "STRICT_DNS" and "transport_socket" not in cluster
    assert address(cluster) == {"address": "localhost", "port_value": 11434}
    ollama, catch_all = routes(config)
    assert ollama["match"]["prefix"] == "/api/"
    assert catch_all["match"] == {"prefix": "/"}
    assert ollama["route"] == {
        "cluster": "ollama",
        "timeout": "0s",
        "idle_timeout": "120s",
        "host_rewrite_literal": "localhost:11434",
    }
    assert ollama["request_headers_to_remove"] == catch_all["request_headers_to_remove"]
    assert catch_all["route"]["cluster"] == "codex"


@pytest.mark.parametrize(
    "url, rewrite",
    [("http://h:11434/ollama", "/ollama/api/"), ("http://h:11434/a/b/", "/a/b/api/"), ("http://h:11434/", None)],
)
def test_ollama_base_path_becomes_a_prefix_rewrite(url: str, rewrite: Optional[str]) -> None:
    (ollama, _) = routes(render.render_config({"OLLAMA_API_URL": url}))
    assert ollama["route"].get("prefix_rewrite") == rewrite


def test_https_ollama_gets_tls_and_the_default_port() -> None:
    config = render.render_config({"OLLAMA_API_URL": "https://ollama.example.com"})
    cluster = clusters_by_name(config)["ollama"]
    assert address(cluster) == {"address": "ollama.example.com", "port_value": 443}
    assert tls_of(cluster)["sni"] == "ollama.example.com"
    assert routes(config)[0]["route"]["host_rewrite_literal"] == "ollama.example.com"


@pytest.mark.parametrize("url", ["localhost:11434", "ftp://h/x", "http://h:11434/?x=1", "http://h:11434/#f"])
def test_bad_ollama_url_names_the_variable(url: str) -> None:
    assert blames(render_error({"OLLAMA_API_URL": url}), "OLLAMA_API_URL")


# --------------------------------------------------------------------------------------
# OAuth, instructions, etcd


def test_oauth_cluster_is_always_there_with_tls_to_the_token_host() -> None:
    cluster = clusters_by_name(render.render_config({}))["oauth"]
    assert cluster["type"] == "LOGICAL_DNS" and cluster["dns_lookup_family"] == "V4_PREFERRED"
    assert address(cluster) == {"address": "auth.openai.com", "port_value": 443}
    tls = tls_of(cluster)
    assert tls["sni"] == "auth.openai.com"
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] == render.default("ENVOY_CA_BUNDLE")
    assert protocol_options(cluster)["upstream_http_protocol_options"] == {"auto_sni": True, "auto_san_validation": True}


def test_oauth_cluster_follows_codex_refresh_token_url() -> None:
    cluster = clusters_by_name(render.render_config({"CODEX_REFRESH_TOKEN_URL": "http://127.0.0.1:18081/oauth/token"}))["oauth"]
    assert cluster["type"] == "STATIC" and "transport_socket" not in cluster
    assert address(cluster) == {"address": "127.0.0.1", "port_value": 18081}
    assert blames(render_error({"CODEX_REFRESH_TOKEN_URL": "auth.openai.com/oauth/token"}), "CODEX_REFRESH_TOKEN_URL")


def test_instruction_clusters_exist_only_when_their_variable_is_set() -> None:
    assert set(clusters_by_name(render.render_config({}))) == {"codex", "codex_catalogue", "oauth"}
    config = render.render_config({"INSTRUCTIONS_CODEX_URL": "https://raw.githubusercontent.com/x/y/main/codex.md"})
    names = clusters_by_name(config)
    assert set(names) == {"codex", "codex_catalogue", "oauth", "instructions_codex"}
    assert address(names["instructions_codex"]) == {"address": "raw.githubusercontent.com", "port_value": 443}
    names = clusters_by_name(render.render_config({"INSTRUCTIONS_BASE_URL": "http://10.0.0.5:8000/prompt.md"}))
    assert set(names) == {"codex", "codex_catalogue", "oauth", "instructions_base"}
    assert address(names["instructions_base"]) == {"address": "10.0.0.5", "port_value": 8000}
    assert blames(render_error({"INSTRUCTIONS_BASE_URL": "prompt.md"}), "INSTRUCTIONS_BASE_URL")


def test_the_catalogue_cluster_reaches_the_codex_host_without_the_credentials_instance() -> None:
    names = clusters_by_name(render.render_config({"CHATGPT_RESPONSES_URL": "http://127.0.0.1:18080/backend-api/codex/responses"}))
    catalogue, codex = names["codex_catalogue"], names["codex"]
    assert address(catalogue) == address(codex) == {"address": "127.0.0.1", "port_value": 18080}
    protocol = catalogue["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http_filters" not in protocol
    assert "http_filters" in codex["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    renamed = clusters_by_name(render.render_config({"CATALOGUE_CLUSTER": "outbound|443||chatgpt.com"}))
    assert "outbound|443||chatgpt.com" in renamed and "codex_catalogue" not in renamed
    keyed = clusters_by_name(render.render_config({"UPSTREAM_AUTH_MODE": "apikey_env", "UPSTREAM_API_KEY": "k"}))
    assert set(keyed) == {"codex", "oauth"}, "API-key upstreams have no catalogue to fetch"


@pytest.mark.parametrize(
    "settings, etcd",
    [
        ({}, False),
        ({"ETCD_ENDPOINT": "http://127.0.0.1:2379"}, False),
        ({"TOKEN_STORE": "memory", "ETCD_ENDPOINT": "http://127.0.0.1:2379"}, False),
        ({"TOKEN_STORE": "etcd", "ETCD_ENDPOINT": "http://127.0.0.1:2379"}, True),
        ({"TOKEN_STORE": " ETCD ", "ETCD_ENDPOINT": "http://127.0.0.1:2379"}, True),
    ],
)
def test_etcd_cluster_only_with_the_etcd_token_store(settings: Dict[str, str], etcd: bool) -> None:
    names = clusters_by_name(render.render_config(settings))
    assert ("etcd" in names) is etcd
    if etcd:
        assert names["etcd"]["type"] == "STATIC"
        assert address(names["etcd"]) == {"address": "127.0.0.1", "port_value": 2379}


def test_etcd_store_without_endpoint_names_both_variables() -> None:
    message = str(render_error({"TOKEN_STORE": "etcd", "ETCD_ENDPOINT": " "}))
    assert "TOKEN_STORE" in message and "ETCD_ENDPOINT" in message


def test_unknown_token_store_lists_the_allowed_values() -> None:
    error = render_error({"TOKEN_STORE": "redis"})
    message = str(error)
    assert blames(error, "TOKEN_STORE") and "memory" in message and "etcd" in message and "redis" in message


# --------------------------------------------------------------------------------------
# CORS


def test_cors_filter_runs_before_the_wasm_filter() -> None:
    names = [f["name"] for f in hcm(render.render_config({}))["http_filters"]]
    assert names.index("envoy.filters.http.cors") < names.index("envoy.filters.http.wasm") < names.index(
        "envoy.filters.http.router"
    )


def test_default_cors_allows_any_origin_without_credentials() -> None:
    policy = cors_policy(render.render_config({}))
    assert policy["@type"] == "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
    assert policy["allow_origin_string_match"] == [{"safe_regex": {"regex": ".*"}}]
    assert policy["allow_credentials"] is False
    assert policy["allow_methods"] == "GET, POST, OPTIONS"
    assert policy["max_age"] == "600"
    headers = [h.strip() for h in policy["allow_headers"].split(",")]
    # Envoy sends the list verbatim and browsers do not expand patterns: no wildcards.
    assert not [h for h in headers if "*" in h]
    for name in ("authorization", "content-type", "openai-beta", "openai-organization", "x-session-id", "session_id",
                 "session-id", "x-stainless-arch", "x-stainless-lang", "x-stainless-os", "x-stainless-package-version",
                 "x-stainless-retry-count", "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout"):  # fmt: skip
        assert name in headers, name
    exposed = [h.strip() for h in policy["expose_headers"].split(",")]
    assert exposed == [
        "retry-after",
        "x-request-id",
        "x-codex-primary-used-percent",
        "x-codex-primary-reset-at",
        "x-codex-secondary-used-percent",
        "x-codex-secondary-reset-at",
    ]


def test_explicit_cors_origins_are_exact_and_get_credentials() -> None:
    policy = cors_policy(render.render_config({"CORS_ALLOW_ORIGINS": " https://a.example.com , http://localhost:3000,"}))
    assert policy["allow_origin_string_match"] == [
        {"exact": "https://a.example.com", "ignore_case": True},
        {"exact": "http://localhost:3000", "ignore_case": True},
    ]
    assert policy["allow_credentials"] is True
    assert cors_policy(render.render_config({"CORS_ALLOW_ORIGINS": " * "}))["allow_credentials"] is False


@pytest.mark.parametrize(
    "origins", ["*, https://a.example.com", "https://a.example.com/", "https://*.example.com", "a.example.com", "https://a.example.com/app"]
)
def test_bad_cors_origins_name_the_variable(origins: str) -> None:
    assert blames(render_error({"CORS_ALLOW_ORIGINS": origins}), "CORS_ALLOW_ORIGINS")


# --------------------------------------------------------------------------------------
# Stats and the filter's variables


def _vcluster_regex(config: dict, name: str) -> str:
    (vcluster,) = [v for v in virtual_host(config)["virtual_clusters"] if v["name"] == name]
    (matcher,) = vcluster["headers"]
    assert matcher["name"] == render.CLIENT_PATH_HEADER
    return matcher["string_match"]["safe_regex"]["regex"]


@pytest.mark.parametrize(
    "name, matching, other",
    [
        ("chat", ["/v1/chat/completions", "/tagged/v1/chat/completions", "/hidden/v1/chat/completions?x=1"],
         ["/v1/completions", "/x/v1/chat/completions", "/v1/chat/completions/extra", "/api/chat"]),
        ("completions", ["/v1/completions", "/r1/v1/completions", "/o3/v1/completions?a"],
         ["/v1/chat/completions", "/v1/completions2"]),
        ("ollama", ["/api/tags", "/api/show"], ["/api", "/v1/models"]),
        ("responses", ["/v1/responses", "/v1/responses/compact", "/tagged/v1/responses?x=1"],
         ["/v1/responses/other", "/v1/responsesx", "/v1/chat/completions"]),
    ],
)  # fmt: skip
def test_virtual_clusters_match_the_client_paths(name: str, matching: List[str], other: List[str]) -> None:
    # Envoy's safe_regex is RE2 with full-match semantics; these patterns mean the same in `re`.
    pattern = re.compile(_vcluster_regex(render.render_config({}), name))
    assert [p for p in matching if not pattern.fullmatch(p)] == []
    assert [p for p in other if pattern.fullmatch(p)] == []


def test_client_path_header_is_stamped_before_the_filter_and_stripped_upstream() -> None:
    config = render.render_config({"OLLAMA_API_URL": "http://127.0.0.1:11434"})
    filters = hcm(config)["http_filters"]
    names = [f["name"] for f in filters]
    stamp = filters[names.index("envoy.filters.http.header_mutation")]
    assert names.index("envoy.filters.http.header_mutation") < names.index("envoy.filters.http.wasm")
    # The client's own x-envoy-* headers go first, so the stamp below survives.
    strip, mutation = stamp["typed_config"]["mutations"]["request_mutations"]
    assert strip == {"remove_on_match": {"key_matcher": {"prefix": "x-envoy-"}}}
    assert mutation["append"] == {
        "header": {"key": render.CLIENT_PATH_HEADER, "value": "%REQ(:path)%"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
    for route in routes(config):
        assert render.CLIENT_PATH_HEADER in route["request_headers_to_remove"]


def test_filter_variables_cover_the_new_settings() -> None:
    variables = render.filter_variables()
    assert len(variables) == len(set(variables))
    for name in (
        "UPSTREAM_RESPONSES_URL", "UPSTREAM_BASE_URL", "UPSTREAM_WIRE_API_PATH", "OLLAMA_API_URL",
        "CODEX_REFRESH_TOKEN_URL", "CHATGPT_LOCAL_CLIENT_ID", "INSTRUCTIONS_BASE_URL", "INSTRUCTIONS_CODEX_URL",
        "TOKEN_STORE", "ETCD_ENDPOINT", "FORWARD_CLIENT_HEADERS_MODE", "FORWARD_CLIENT_HEADERS_LIST",
        "FORWARD_CLIENT_HEADERS_OVERRIDE", "FORWARD_CLIENT_HEADERS_OVERRIDE_CODEX",
        "FORWARD_CLIENT_HEADERS_CODEX_VERSION", "FORWARD_CLIENT_HEADERS_CODEX_ORIGINATOR",
        "FORWARD_CLIENT_HEADERS_CODEX_OS_TYPE", "FORWARD_CLIENT_HEADERS_CODEX_OS_VERSION",
        "FORWARD_CLIENT_HEADERS_CODEX_ARCH", "FORWARD_CLIENT_HEADERS_CODEX_EDITOR",
        "CODEX_INTERNAL_ORIGINATOR_OVERRIDE", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "TERM",
    ):  # fmt: skip
        assert name in variables, name
    # Render-only: it shapes Envoy's CORS policy, the filter never reads it.
    assert "CORS_ALLOW_ORIGINS" not in variables
    # Set by the rendered plugin configuration, not taken from the environment.
    for name in ("MAX_REQUEST_BODY_BYTES", "ENVOY_HOLD_HEADERS", "CREDENTIALS_UPSTREAM", "FILTER_ROLE"):
        assert name not in variables, name
    assert render.render_config({})["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["http_filters"][2]["typed_config"]["config"]["vm_config"]["environment_variables"][
        "host_env_keys"] == variables  # fmt: skip


def test_every_optional_upstream_at_once_passes_envoy_validation(wasm_module: Path, tmp_path: Path) -> None:
    settings = {**ALL_OPTIONAL, "UPSTREAM_BASE_URL": "https://api.example.com/v1/"}
    config = render.render_config(settings, wasm_path=wasm_module)
    assert set(clusters_by_name(config)) == {"codex", "codex_catalogue", "oauth", "ollama", "instructions_base", "instructions_codex", "etcd"}
    out = render.write_config(config, tmp_path / "envoy.yaml")
    result = validate_config(out)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------
# CLI options for configurations that run elsewhere (docker compose)


def test_cli_writes_container_paths_literally(tmp_path: Path) -> None:
    out = tmp_path / "compose.yaml"
    result = subprocess.run(
        [sys.executable, str(RENDER_PY), "--out", str(out), "--env-file", "/dev/null",
         "--wasm-path-in-config", "/etc/envoy/codex_openai_wrapper.wasm", "--listen-port", "8787",
         "--listen-address", "0.0.0.0"],
        env={"PATH": "/usr/bin:/bin", "PORT": "9999", "LISTEN_ADDRESS": "127.0.0.1", **SETTINGS_BIN_ENV},
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads(out.read_text())
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8787}
    vm = [f for f in hcm(config)["http_filters"] if f["name"] == "envoy.filters.http.wasm"][0]["typed_config"]["config"]
    assert vm["vm_config"]["code"]["local"]["filename"] == "/etc/envoy/codex_openai_wrapper.wasm"


def test_cli_rejects_a_relative_container_path(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(RENDER_PY), "--out", str(tmp_path / "x.yaml"), "--env-file", "/dev/null",
         "--wasm-path-in-config", "plugin.wasm"],
        env={"PATH": "/usr/bin:/bin", **SETTINGS_BIN_ENV},
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 2 and "--wasm-path-in-config" in result.stderr
    assert not (tmp_path / "x.yaml").exists()


# --------------------------------------------------------------------------------------
# Through a real Envoy

ORIGIN = "https://app.example.com"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
}


def test_preflight_is_answered_by_envoy_without_a_key(envoy_factory, mock_codex: MockCodex) -> None:
    envoy = envoy_factory()
    response = requests.options(envoy.url + "/v1/chat/completions", headers=PREFLIGHT, timeout=10)
    assert response.status_code in (200, 204)
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert "x-stainless-os" in [h.strip() for h in response.headers["access-control-allow-headers"].split(",")]
    assert response.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in response.headers
    assert mock_codex.requests == []


def test_responses_carry_cors_headers(envoy_factory, mock_codex: MockCodex) -> None:
    envoy = envoy_factory()
    ok = post(envoy.url + "/v1/chat/completions", chat_body(), headers={"Origin": ORIGIN})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "x-codex-primary-used-percent" in ok.headers["access-control-expose-headers"]
    # The key gate's own answer too, so a browser can read the error.
    denied = requests.post(envoy.url + "/v1/chat/completions", json=chat_body(), headers={"Origin": ORIGIN}, timeout=10)
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == ORIGIN


def test_explicit_origins_allow_credentials_and_ignore_other_origins(envoy_factory, mock_codex: MockCodex) -> None:
    envoy = envoy_factory(CORS_ALLOW_ORIGINS=f"{ORIGIN}, http://localhost:3000")
    allowed = requests.options(envoy.url + "/v1/chat/completions", headers=PREFLIGHT, timeout=10)
    assert allowed.status_code in (200, 204)
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    other = requests.options(
        envoy.url + "/v1/chat/completions", headers={**PREFLIGHT, "Origin": "https://evil.example.com"}, timeout=10
    )
    assert "access-control-allow-origin" not in other.headers
    health = requests.get(envoy.url + "/health", headers={"Origin": "https://evil.example.com"}, timeout=10)
    assert health.status_code == 200 and "access-control-allow-origin" not in health.headers
    assert mock_codex.requests == []


def _prometheus_value(text: str, metric: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[len(metric) : line.rindex("}") + 1]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_upstream_requests_are_counted_per_endpoint(envoy_factory, mock_codex: MockCodex) -> None:
    envoy = envoy_factory()
    # A client copy of the stamp header must not move the request to another bucket.
    response = post(envoy.url + "/v1/chat/completions", chat_body(), headers={render.CLIENT_PATH_HEADER: "/api/x"})
    assert response.status_code == 200
    (upstream,) = mock_codex.requests
    assert upstream.header(render.CLIENT_PATH_HEADER) is None
    stats = requests.get(envoy.admin_url + "/stats/prometheus", timeout=10).text
    metric = "envoy_vhost_vcluster_upstream_rq"
    assert _prometheus_value(stats, metric, envoy_virtual_cluster="chat", envoy_response_code="200") == 1
    assert _prometheus_value(stats, metric, envoy_virtual_cluster="ollama", envoy_response_code="200") == 0
    assert _prometheus_value(stats, metric, envoy_virtual_cluster="other", envoy_response_code="200") == 0


def test_ollama_requests_reach_the_ollama_base_path(envoy_factory) -> None:
    # The mock answers only POST on its path; what matters is the request it recorded.
    with MockCodex(path="/ollama/api/tags") as ollama:
        authority = ollama.origin.split("://", 1)[1]
        envoy = envoy_factory(OLLAMA_API_URL=ollama.origin + "/ollama/")
        requests.get(envoy.url + "/api/tags", headers=AUTH, timeout=10)
        (seen,) = ollama.requests
    assert seen.path == "/ollama/api/tags"
    assert seen.header("host") == authority
    assert seen.header(render.CLIENT_PATH_HEADER) is None and seen.header("x-forwarded-for") is None


def test_every_value_in_dev_vars_example_renders(tmp_path: Path) -> None:
    """Uncommenting the example's settings must give a configuration, not an error."""
    example = (REPO_ROOT / ".dev.vars.example").read_text(encoding="utf-8")
    assignment = re.compile(r"^# ([A-Z][A-Z0-9_]*=.*)$")
    lines = [m.group(1) for m in map(assignment.match, example.splitlines()) if m]
    env_file = tmp_path / ".dev.vars"
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = render.load_settings(env_file, environ={})
    for name in ("UPSTREAM_BASE_URL", "OLLAMA_API_URL", "TOKEN_STORE", "ETCD_ENDPOINT", "CORS_ALLOW_ORIGINS"):
        assert name in settings, name
    config = render.render_config(settings)
    assert {"codex", "oauth", "ollama"} <= set(clusters_by_name(config))


def test_a_backend_path_under_api_still_goes_to_the_backend(envoy_factory) -> None:
    # The filter rewrites :path to the backend's, and Envoy matches routes again on the new
    # path: the Ollama route must only take requests whose client path is /api/*.
    with MockCodex(path="/api/responses") as backend, MockCodex(path="/api/responses") as ollama:
        envoy = envoy_factory(CHATGPT_RESPONSES_URL=backend.url, OLLAMA_API_URL=ollama.origin)
        response = post(envoy.url + "/v1/chat/completions", chat_body())
        assert response.status_code == 200, response.text
        assert [r.path for r in backend.requests] == ["/api/responses"]
        assert ollama.requests == []


def test_api_route_holds_before_any_filter_edits_headers(monkeypatch, tmp_path: Path) -> None:
    # Without the Wasm filter nothing makes Envoy match the routes a second time: the first
    # match, made before the client path is stamped, must already pick Ollama for /api/*.
    from harness.envoy import start_envoy

    original = render.http_connection_manager

    def without_wasm(opts, *args):
        manager = original(opts, *args)
        filters = manager["typed_config"]["http_filters"]
        wasm = ("envoy.filters.http.wasm", render.FILTER_CONFIG_NAME)
        manager["typed_config"]["http_filters"] = [f for f in filters if f["name"] not in wasm]
        return manager

    monkeypatch.setattr(render, "http_connection_manager", without_wasm)
    with MockCodex(path="/api/tags") as backend, MockCodex(path="/api/tags") as ollama:
        # An API-key upstream: the Codex cluster then has no credentials instance either.
        env = {"CHATGPT_RESPONSES_URL": backend.url, "OLLAMA_API_URL": ollama.origin, "UPSTREAM_AUTH_MODE": "apikey_env", "UPSTREAM_API_KEY": "k"}
        with start_envoy(env, workdir=tmp_path) as envoy:
            requests.get(envoy.url + "/api/tags", timeout=10)
            requests.get(envoy.url + "/v1/models", timeout=10)
        assert [r.path for r in ollama.requests] == ["/api/tags"]
        assert [r.path for r in backend.requests] == ["/v1/models"]


@pytest.mark.parametrize(
    "settings, expected",
    [({}, True), ({"ENVOY_PORTABLE": "1"}, False), ({"UPSTREAM_AUTH_MODE": "apikey_env", "UPSTREAM_API_KEY": "k"}, False)],
)
def test_the_credentials_instance_and_the_401_retry_go_together(settings, expected) -> None:
    config = render.render_config(settings)
    (codex,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "codex"]
    options = codex["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    filters = options.get("http_filters", [])
    route = [r for r in config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"] if r["route"]["cluster"] == "codex"][0]
    assert bool(filters) is expected
    assert ("retry_policy" in route["route"]) is expected
    if expected:
        plugin = filters[0]["typed_config"]["config"]
        assert json.loads(plugin["configuration"]["value"]) == {"FILTER_ROLE": "credentials"}
        assert filters[-1]["name"] == "envoy.filters.http.upstream_codec"
        assert route["route"]["retry_policy"]["retriable_status_codes"] == [401]
        assert route["route"]["retry_policy"]["num_retries"] == 1
        main = [f for f in config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"] if f["name"] == "envoy.filters.http.wasm"][0]
        assert plugin["vm_config"] == main["typed_config"]["config"]["vm_config"], "one VM for both instances"



def codex_route(config: dict) -> dict:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return [r for r in hcm["route_config"]["virtual_hosts"][0]["routes"] if r["route"]["cluster"] == "codex"][0]


@pytest.mark.parametrize(
    "settings, retries",
    [
        ({}, 1),
        ({"OPENAI_CODEX_AUTH": json.dumps([tokens.auth_document()])}, 64),
        ({"CODEX_AUTH_DIR": "/somewhere"}, 64),
    ],
)
def test_the_429_retry_is_sized_for_the_largest_pool_where_accounts_can_change(settings, retries) -> None:
    policy = codex_route(render.render_config(settings))["route"]["retry_policy"]
    assert policy["num_retries"] == retries
    assert (429 in policy["retriable_status_codes"]) is (retries > 1)


def test_with_an_ecds_file_the_credentials_instance_is_loaded_from_its_own_file_beside_it(tmp_path: Path) -> None:
    opts = render.options_from(render.resolve({}))
    filter_config = tmp_path / "filter" / "filter.json"
    config = render.build_config(opts, filter_config)
    (codex,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "codex"]
    options = codex["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    source = options["http_filters"][0]["config_discovery"]["config_source"]["path_config_source"]
    assert source["path"] == str(tmp_path / "filter" / "credentials.json")
    values = {"OPENAI_CODEX_AUTH": tokens.auth_json(), "REASONING_EFFORT": "high"}
    render.write_filter_configs(opts, values, filter_config)
    (main,) = json.loads(filter_config.read_text())["resources"]
    (credentials,) = json.loads((tmp_path / "filter" / "credentials.json").read_text())["resources"]
    assert credentials["name"] == options["http_filters"][0]["name"]
    plugin = credentials["typed_config"]["config"]
    assert json.loads(plugin["configuration"]["value"]) == {**values, "FILTER_ROLE": "credentials"}
    assert plugin["vm_config"] == main["typed_config"]["config"]["vm_config"], "one VM for both instances"
    assert (tmp_path / "filter" / "credentials.json").stat().st_mode & 0o777 == 0o600

# --------------------------------------------------------------------------------------
# envoy/envoy.example.yaml: the configuration for default settings, commented

EXAMPLE = REPO_ROOT / "envoy" / "envoy.example.yaml"


def test_the_example_is_what_the_renderer_writes_for_default_settings(tmp_path: Path) -> None:
    out = tmp_path / "example.yaml"
    # As `make envoy-example` runs it: no settings at all.
    result = subprocess.run(
        [sys.executable, str(RENDER_PY), "--example", "--out", str(out)],
        env={"PATH": "/usr/bin:/bin", **SETTINGS_BIN_ENV},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert EXAMPLE.read_text(encoding="utf-8") == out.read_text(encoding="utf-8"), "stale: run `make envoy-example`"
    # The YAML says what the JSON the renderer writes says, comments aside.
    defaults = render.render_config({}, wasm_path_in_config=render.EXAMPLE_WASM_PATH)
    assert yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")) == defaults
    assert "# " in EXAMPLE.read_text(encoding="utf-8").split("static_resources:", 1)[1]


def test_the_example_loads_in_envoy(wasm_module: Path, tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(render.EXAMPLE_WASM_PATH, str(wasm_module))
    config = tmp_path / "example.yaml"
    config.write_text(text, encoding="utf-8")
    result = validate_config(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yaml_output_round_trips_and_reports_comments_that_match_nothing() -> None:
    value = {"@type": "t", "a": [{"name": "x", "b": "0s"}, "yes", 1, True, None, "%REQ(:path)%", "k:", "::1", "1.5"], "e": {}, "f": []}
    text, unused = render.to_yaml(value, {("a", "x"): "item x", ("a", "x", "b"): "key b", ("nowhere",): "lost"})
    assert yaml.safe_load(text) == value
    assert unused == [("nowhere",)]
    lines = text.splitlines()
    assert lines.index("  # item x") < lines.index("  - name: x") < lines.index("    # key b") < lines.index('    b: "0s"')


def test_the_cli_writes_yaml_on_request(tmp_path: Path) -> None:
    out = tmp_path / "envoy.yaml"
    result = subprocess.run(
        [sys.executable, str(RENDER_PY), "--out", str(out), "--env-file", "/dev/null", "--format", "yaml"],
        env={"PATH": "/usr/bin:/bin", "OLLAMA_API_URL": "http://127.0.0.1:11434/ollama", **SETTINGS_BIN_ENV},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert config == render.render_config({"OLLAMA_API_URL": "http://127.0.0.1:11434/ollama"})


# --------------------------------------------------------------------------------------
# Where the settings come from


def test_the_renderer_refuses_what_the_filter_refuses_with_its_message() -> None:
    error = render_error({"REASONING_EFFORT": "extreme"})
    assert error.variable == "REASONING_EFFORT"
    assert str(error) == 'invalid REASONING_EFFORT: "extreme" is not one of none, minimal, low, medium, high, xhigh, max, ultra'
    assert blames(render_error({"OPENAI_CODEX_AUTH": "{broken"}), "OPENAI_CODEX_AUTH")
    assert blames(render_error({"UPSTREAM_AUTH_MODE": "apikey_env"}), "UPSTREAM_API_KEY")
    # Render-only settings are checked the same way.
    for variable, value in (("PORT", "http"), ("LISTEN_ADDRESS", "localhost"), ("ENVOY_PORTABLE", "maybe")):
        assert blames(render_error({variable: value}), variable), variable


def test_cluster_names_the_filter_calls_are_the_rendered_ones() -> None:
    config = render.render_config({"OAUTH_CLUSTER": "outbound|443||auth.openai.com", "TOKEN_STORE": "etcd",
                                   "ETCD_ENDPOINT": "http://127.0.0.1:2379", "ETCD_CLUSTER": "store",
                                   "CATALOGUE_CLUSTER": "models"})  # fmt: skip
    assert set(clusters_by_name(config)) == {"codex", "models", "outbound|443||auth.openai.com", "store"}


def test_unquoted_json_in_dev_vars_is_refused_without_echoing_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".dev.vars"
    env_file.write_text('PORT=9000\nOPENAI_CODEX_AUTH={"tokens": {"refresh_token": "rt-secret"}}\n', encoding="utf-8")
    with pytest.raises(render.ConfigError) as caught:
        render.load_settings(env_file, environ={})
    message = str(caught.value)
    assert message.startswith(f"{env_file}:2: cannot read the value of OPENAI_CODEX_AUTH: ") and "'single quotes'" in message
    assert "rt-secret" not in message
    env_file.write_text('OPENAI_CODEX_AUTH=\'{"tokens": {"refresh_token": "rt-secret"}}\'\n', encoding="utf-8")
    assert json.loads(render.load_settings(env_file, environ={})["OPENAI_CODEX_AUTH"])["tokens"]["refresh_token"] == "rt-secret"


def _load_run():
    import importlib.util

    spec = importlib.util.spec_from_file_location("codex_envoy_run", REPO_ROOT / "envoy" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_run_reads_codex_home_auth_json_before_validating(tmp_path: Path, monkeypatch) -> None:
    run = _load_run()
    monkeypatch.setattr(run, "RUN_DIR", tmp_path / "run")
    monkeypatch.setattr(run, "CONFIG_PATH", tmp_path / "run" / "envoy.yaml")
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    # An API-key login: apikey_auth_json only validates once auth.json has been read.
    (codex_home / "auth.json").write_text('{"OPENAI_API_KEY": "sk-from-auth-json"}', encoding="utf-8")
    env_file = tmp_path / ".dev.vars"
    env_file.write_text(
        f"CODEX_HOME={codex_home}\nUPSTREAM_AUTH_MODE=apikey_auth_json\nPORT=9123\n"
        "ENVOY_LOG_LEVEL=Debug\nENVOY_CONCURRENCY=3\nENVOY_BIN=/opt/envoy\n",
        encoding="utf-8",
    )
    settings = render.load_settings(env_file, environ={"PATH": "/usr/bin:/bin"}, codex_auth=True)
    assert settings["OPENAI_CODEX_AUTH"] == '{"OPENAI_API_KEY": "sk-from-auth-json"}'
    args = run.prepare(settings, Path("module.wasm"))
    assert args[:5] == ["/opt/envoy", "-c", str(tmp_path / "run" / "envoy.yaml"), "--log-level", "debug"]
    # Debug, but without the components that print every header (credentials included).
    assert args[5:7] == ["--component-log-level", "http:info,http2:info,router:info,config:info"]
    assert args[7:9] == ["--concurrency", "3"]
    assert args[-1] == str(tmp_path / "run" / "base-id-9123")
    config = json.loads((tmp_path / "run" / "envoy.yaml").read_text())
    assert config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] == 9123
    assert "sk-from-auth-json" not in json.dumps(config)
    assert settings["FORWARD_CLIENT_HEADERS_CODEX_OS_TYPE"], "make run describes this host"


def test_websocket_handshakes_reach_the_filter() -> None:
    # Without the upgrade type Envoy answers a handshake 403 itself, which Codex CLI retries;
    # the filter answers 426, which sends it to HTTP at once (tests/test_responses.py).
    assert hcm(render.render_config({}))["upgrade_configs"] == [{"upgrade_type": "websocket"}]


def test_reloadable_values_carry_the_secrets_but_nothing_the_bootstrap_depends_on() -> None:
    settings = {
        "OPENAI_API_KEY": "sk-client",
        "OPENAI_CODEX_AUTH": '{"tokens": {}}',
        "REASONING_EFFORT": "high",
        "CHATGPT_RESPONSES_URL": "http://127.0.0.1:1/x",
        "PORT": "9000",
        "MAX_REQUEST_BODY_BYTES": "1000",
    }
    assert render.reloadable_values(settings) == {
        "OPENAI_API_KEY": "sk-client",
        "OPENAI_CODEX_AUTH": '{"tokens": {}}',
        "REASONING_EFFORT": "high",
    }
    # Every variable that needs a restart is one the filter reads (a renamed one would fall out).
    assert render.RESTART_VARIABLES <= set(render.filter_variables())
    assert set(render.reloadable_variables()) | render.RESTART_VARIABLES == set(render.filter_variables())


def test_the_filter_config_file_holds_the_secrets_and_the_bootstrap_none(tmp_path: Path) -> None:
    settings = {"OPENAI_API_KEY": "sk-client", "CHATGPT_RESPONSES_URL": "http://127.0.0.1:1/x"}
    opts = render.options_from(render.resolve(settings))
    filter_file = tmp_path / "filter" / "filter.json"
    render.write_filter_config(render.filter_config_resource(opts, render.reloadable_values(settings)), filter_file)
    assert filter_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in filter_file.parent.iterdir()] == ["filter.json"], "no temporary file is left behind"
    (resource,) = json.loads(filter_file.read_text())["resources"]
    assert resource["name"] == render.FILTER_CONFIG_NAME
    plugin = resource["typed_config"]["config"]
    assert json.loads(plugin["configuration"]["value"])["OPENAI_API_KEY"] == "sk-client"
    inline = render.build_config(opts)
    # The same VM as the inline filter and the credentials instance: shared data survives a reload.
    assert plugin["vm_config"] == wasm_plugin(inline)["vm_config"]

    bootstrap = render.build_config(opts, filter_file, admin_socket=tmp_path / "admin.sock")
    assert "sk-client" not in json.dumps(bootstrap)
    (wasm,) = [f for f in hcm(bootstrap)["http_filters"] if f["name"] == render.FILTER_CONFIG_NAME]
    source = wasm["config_discovery"]["config_source"]["path_config_source"]
    assert source == {"path": str(filter_file), "watched_directory": {"path": str(filter_file.parent)}}
    assert bootstrap["admin"]["address"] == {"pipe": {"path": str(tmp_path / "admin.sock"), "mode": 0o600}}


def wasm_plugin(config: dict) -> dict:
    (wasm,) = [f for f in hcm(config)["http_filters"] if f["name"] == "envoy.filters.http.wasm"]
    return wasm["typed_config"]["config"]
