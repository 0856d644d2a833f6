#!/usr/bin/env python3
"""Render the Envoy bootstrap for codex-openai-wrapper.

Usage: python3 envoy/render.py --out PATH [--env-file .dev.vars] [--wasm PATH]
                              [--wasm-path-in-config PATH] [--listen-port PORT] [--listen-address ADDR]

Settings are the values of `.dev.vars` (if present) overridden by the process
environment. The output is JSON (valid YAML, so the file may be named `.yaml`).

Secrets (API keys, auth.json) never enter the rendered file: the filter reads them from
Envoy's process environment through `host_env_keys`, because the plugin configuration is
visible to anyone who can read `/config_dump` on the admin listener.

Standard library only, Python >= 3.9: the run command uses it before any venv exists.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENV_FILE = REPO_ROOT / ".dev.vars"
DEFAULT_WASM = REPO_ROOT / "target" / "wasm32-wasip1" / "release" / "codex_openai_wrapper.wasm"

DEFAULT_CHATGPT_RESPONSES_URL = "https://chatgpt.com/backend-api/codex/responses"
DEFAULT_WIRE_API_PATH = "/responses"
DEFAULT_REFRESH_TOKEN_URL = "https://auth.openai.com/oauth/token"
DEFAULT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DEFAULT_MAX_REQUEST_BODY_BYTES = 16 * 1024 * 1024
# Headroom above the largest body: headers and framing share the connection buffer.
BUFFER_HEADROOM_BYTES = 1024 * 1024
CONNECT_TIMEOUT = "10s"
UPSTREAM_IDLE_TIMEOUT = "300s"

PLUGIN_NAME = "codex_openai_wrapper"
VIRTUAL_HOST = "any"

# Cluster names: the filter addresses its dispatch_http_call targets by these names.
CODEX_CLUSTER = "codex"
OLLAMA_CLUSTER = "ollama"
OAUTH_CLUSTER = "oauth"
ETCD_CLUSTER = "etcd"
INSTRUCTIONS_BASE_CLUSTER = "instructions_base"
INSTRUCTIONS_CODEX_CLUSTER = "instructions_codex"

TOKEN_STORES = ("memory", "etcd")

# Variables the filter reads from Envoy's process environment (host_env_keys).
# A name that is absent from the environment is harmless: Envoy starts and the filter
# simply sees the variable as unset (checked with Envoy 1.40).
# Render-only settings (PORT, LISTEN_ADDRESS, ENVOY_*, STREAM_IDLE_TIMEOUT_SECONDS,
# CORS_ALLOW_ORIGINS) are not listed: they shape the Envoy configuration itself.
FILTER_VARIABLES: List[str] = [
    "OPENAI_API_KEY",
    "OPENAI_CODEX_AUTH",
    "CHATGPT_RESPONSES_URL",
    "CHATGPT_LOCAL_CLIENT_ID",
    "CODEX_REFRESH_TOKEN_URL",
    "EXPOSE_MODELS",
    "DEBUG_MODEL",
    "REASONING_EFFORT",
    "REASONING_SUMMARY",
    "REASONING_OUTPUT_MODE",
    "VERBOSE",
    "UPSTREAM_AUTH_MODE",
    "UPSTREAM_API_KEY",
    "UPSTREAM_AUTH_ENV_KEY",
    "UPSTREAM_AUTH_HEADER",
    "UPSTREAM_AUTH_SCHEME",
    "UPSTREAM_RESPONSES_URL",
    "UPSTREAM_BASE_URL",
    "UPSTREAM_WIRE_API_PATH",
    "UPSTREAM_TOOLS_FORMAT",
    "FORWARD_CLIENT_HEADERS_MODE",
    "FORWARD_CLIENT_HEADERS_LIST",
    "FORWARD_CLIENT_HEADERS_OVERRIDE",
    "FORWARD_CLIENT_HEADERS_OVERRIDE_CODEX",
    "FORWARD_CLIENT_HEADERS_CODEX_VERSION",
    "FORWARD_CLIENT_HEADERS_CODEX_ORIGINATOR",
    "FORWARD_CLIENT_HEADERS_CODEX_OS_TYPE",
    "FORWARD_CLIENT_HEADERS_CODEX_OS_VERSION",
    "FORWARD_CLIENT_HEADERS_CODEX_ARCH",
    "FORWARD_CLIENT_HEADERS_CODEX_EDITOR",
    "CODEX_INTERNAL_ORIGINATOR_OVERRIDE",
    # The terminal token of the Codex-style User-Agent, as the Codex CLI derives it.
    "TERM_PROGRAM",
    "TERM_PROGRAM_VERSION",
    "TERM",
    "WEZTERM_VERSION",
    "KITTY_WINDOW_ID",
    "ALACRITTY_SOCKET",
    "KONSOLE_VERSION",
    "VTE_VERSION",
    "WT_SESSION",
    "OLLAMA_API_URL",
    "INSTRUCTIONS_BASE_URL",
    "INSTRUCTIONS_CODEX_URL",
    "TOKEN_STORE",
    "ETCD_ENDPOINT",
    "ETCD_KEY",
    # Names of the clusters the filter calls itself (Istio names them differently).
    "OAUTH_CLUSTER",
    "ETCD_CLUSTER",
    "INSTRUCTIONS_BASE_CLUSTER",
    "INSTRUCTIONS_CODEX_CLUSTER",
]

# Envoy adds these towards the upstream; a third-party backend must not see them.
UPSTREAM_HEADERS_TO_REMOVE = [
    "x-envoy-original-host",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-request-id",
    "x-envoy-external-address",
    "x-envoy-client-path",
]

# Stamped before the Wasm filter, which rewrites :path to the upstream's: the virtual
# clusters (per-endpoint stats) match the client's path through this header. The filter
# keeps x-envoy-* headers for the route configuration, which strips this one (above).
CLIENT_PATH_HEADER = "x-envoy-client-path"

TRUTHY = {"1", "true", "yes"}


class ConfigError(Exception):
    """A setting has an unusable value; the message names the variable."""


# --------------------------------------------------------------------------------------
# .dev.vars and settings


def _unescape_double_quoted(raw: str) -> str:
    out = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and raw[i + 1] in 'n"\\':
            out.append({"n": "\n", '"': '"', "\\": "\\"}[raw[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _find_closing_quote(text: str, quote: str) -> int:
    """Index of the closing quote in `text` (which starts after the opening one), or -1."""
    i = 0
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2  # an escaped character can never close a double-quoted value
            continue
        if text[i] == quote:
            return i
        i += 1
    return -1


def _unquoted_value(raw: str) -> str:
    value = raw.strip()
    # A JSON document (EXPOSE_MODELS, OPENAI_CODEX_AUTH) is kept whole even if it happens to
    # contain " #"; only text that is not valid JSON as a whole loses its inline comment.
    if value[:1] in ("{", "["):
        try:
            json.loads(value)
            return value
        except ValueError:
            pass
    for i, ch in enumerate(value):
        if ch == "#" and i > 0 and value[i - 1] in " \t":
            return value[:i].rstrip()
    return value


def parse_dev_vars(text: str, source: str = ".dev.vars") -> Dict[str, str]:
    """Parse dotenv-style text into a dict.

    `KEY=VALUE` lines; blank lines and `#` comments ignored; optional `export ` prefix;
    single quotes are literal, double quotes process `\\n`, `\\"` and `\\\\`; a quoted value
    may span lines (a pasted auth.json); unquoted values lose an inline ` #comment`.
    """
    values: Dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line_no = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"{source}:{line_no}: expected KEY=VALUE, got {line.split('=')[0]!r}")
        rest = rest.lstrip()
        quote = rest[:1]
        if quote not in ("'", '"'):
            values[key] = _unquoted_value(rest)
            continue
        body = rest[1:]
        end = _find_closing_quote(body, quote)
        while end < 0 and index < len(lines):
            body += "\n" + lines[index]
            index += 1
            end = _find_closing_quote(body, quote)
        if end < 0:
            raise ConfigError(f"{source}:{line_no}: unterminated {quote} quote in {key}")
        raw = body[:end]
        values[key] = _unescape_double_quoted(raw) if quote == '"' else raw
    return values


def load_dev_vars(path: Optional[Path]) -> Dict[str, str]:
    if path is None or not Path(path).is_file():
        return {}
    return parse_dev_vars(Path(path).read_text(encoding="utf-8"), source=str(path))


def load_settings(
    env_file: Optional[Path] = DEFAULT_ENV_FILE, environ: Optional[Mapping[str, str]] = None
) -> Dict[str, str]:
    """`.dev.vars` values overridden by the process environment."""
    settings = load_dev_vars(env_file)
    settings.update(os.environ if environ is None else environ)
    return settings


def setting(settings: Mapping[str, str], name: str, default: str) -> str:
    """A setting's trimmed value; blank counts as unset so `PORT=` in .dev.vars means default."""
    value = settings.get(name, "").strip()
    return value if value else default


def int_setting(settings: Mapping[str, str], name: str, default: int, minimum: int, maximum: Optional[int] = None) -> int:
    raw = setting(settings, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name} must be an integer {bounds}, got {raw!r}")
    return value


def is_truthy(value: str) -> bool:
    return value.strip().lower() in TRUTHY


# --------------------------------------------------------------------------------------
# Options derived from the settings (validated once)


@dataclass(frozen=True)
class Options:
    listen_address: str
    port: int
    admin_port: int
    max_request_body_bytes: int
    stream_idle_seconds: int
    portable: bool
    ca_bundle: str
    wasm_path: Path

    @property
    def buffer_limit_bytes(self) -> int:
        return self.max_request_body_bytes + BUFFER_HEADROOM_BYTES

    @property
    def stream_idle_timeout(self) -> str:
        return f"{self.stream_idle_seconds}s"


def config_wasm_path(wasm_path: Optional[Path], wasm_path_in_config: Optional[str]) -> Path:
    """The module path written into the configuration.

    `wasm_path_in_config` is taken literally (it names a file inside a container, which need
    not exist here); otherwise the host path is made absolute.
    """
    if wasm_path_in_config:
        if not wasm_path_in_config.startswith("/"):
            raise ConfigError(f"--wasm-path-in-config must be an absolute path, got {wasm_path_in_config!r}")
        return Path(wasm_path_in_config)
    return Path(wasm_path if wasm_path is not None else DEFAULT_WASM).resolve()


def options_from(
    settings: Mapping[str, str], wasm_path: Optional[Path] = None, wasm_path_in_config: Optional[str] = None
) -> Options:
    return Options(
        listen_address=setting(settings, "LISTEN_ADDRESS", "0.0.0.0"),
        port=int_setting(settings, "PORT", 8787, 1, 65535),
        admin_port=int_setting(settings, "ENVOY_ADMIN_PORT", 9901, 1, 65535),
        max_request_body_bytes=int_setting(settings, "MAX_REQUEST_BODY_BYTES", DEFAULT_MAX_REQUEST_BODY_BYTES, 1),
        # 0 disables the idle timeout in Envoy; allowed on purpose.
        stream_idle_seconds=int_setting(settings, "STREAM_IDLE_TIMEOUT_SECONDS", 300, 0),
        portable=is_truthy(settings.get("ENVOY_PORTABLE", "")),
        ca_bundle=setting(settings, "ENVOY_CA_BUNDLE", DEFAULT_CA_BUNDLE),
        wasm_path=config_wasm_path(wasm_path, wasm_path_in_config),
    )


# --------------------------------------------------------------------------------------
# Upstream URLs → clusters


class Upstream(NamedTuple):
    scheme: str
    host: str  # hostname or IP literal, without brackets
    port: int
    path: str

    @property
    def is_tls(self) -> bool:
        return self.scheme == "https"

    @property
    def is_ip_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
            return True
        except ValueError:
            return False

    @property
    def authority(self) -> str:
        """Host header value: the port is only spelled out when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.is_tls else 80
        return host if self.port == default_port else f"{host}:{self.port}"


def parse_upstream_url(url: str, setting_name: str) -> Upstream:
    def fail(reason: str) -> ConfigError:
        return ConfigError(f"{setting_name} {reason}, got {url!r}")

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise fail(f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise fail("must be an http:// or https:// URL")
    if not parts.hostname:
        raise fail("has no host")
    if parts.username is not None or parts.password is not None:
        # Credentials would end up in the rendered file; they belong in environment variables.
        raise fail("must not contain user:password@")
    default_port = 443 if parts.scheme == "https" else 80
    return Upstream(parts.scheme, parts.hostname, port or default_port, parts.path or "/")


def _endpoint(cluster_name: str, upstream: Upstream) -> dict:
    return {
        "cluster_name": cluster_name,
        "endpoints": [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": upstream.host, "port_value": upstream.port}}}}
                ]
            }
        ],
    }


def _tls_transport_socket(upstream: Upstream, opts: Options) -> dict:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": upstream.host,
            "common_tls_context": {"validation_context": {"trusted_ca": {"filename": opts.ca_bundle}}},
        },
    }


def _http_protocol_options(upstream: Upstream) -> dict:
    options: dict = {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "common_http_protocol_options": {"idle_timeout": UPSTREAM_IDLE_TIMEOUT},
    }
    if upstream.is_tls:
        # SNI and certificate checks follow the rewritten host; ALPN picks h2 where offered.
        options["upstream_http_protocol_options"] = {"auto_sni": True, "auto_san_validation": True}
        options["auto_config"] = {"http_protocol_options": {}, "http2_protocol_options": {}}
    else:
        options["explicit_http_config"] = {"http_protocol_options": {}}
    return options


def _discovery_type(upstream: Upstream) -> str:
    if upstream.is_tls:
        # One name behind a CDN: resolve lazily, connect to whatever the DNS answer is now.
        return "LOGICAL_DNS"
    return "STATIC" if upstream.is_ip_literal else "STRICT_DNS"


def cluster_for_url(name: str, url: str, setting_name: str, opts: Options) -> dict:
    """An Envoy cluster reaching the host of `url`; errors name `setting_name`."""
    upstream = parse_upstream_url(url, setting_name)
    cluster = {
        "name": name,
        "type": _discovery_type(upstream),
        "connect_timeout": CONNECT_TIMEOUT,
        "per_connection_buffer_limit_bytes": opts.buffer_limit_bytes,
        "load_assignment": _endpoint(name, upstream),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _http_protocol_options(upstream)
        },
    }
    if upstream.is_tls:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
        cluster["transport_socket"] = _tls_transport_socket(upstream, opts)
    return cluster


def responses_url(settings: Mapping[str, str]) -> Tuple[str, str]:
    """(URL, variable name) of the Responses backend the `codex` cluster points at.

    The original project's precedence, which the filter applies too (for the request path):
    `UPSTREAM_RESPONSES_URL` (trimmed) > `UPSTREAM_BASE_URL` with ONE trailing `/` removed,
    then trimmed, + `UPSTREAM_WIRE_API_PATH` (trimmed, default `/responses`, a leading `/`
    added if missing) > `CHATGPT_RESPONSES_URL` (default: the ChatGPT Codex backend).
    Blank values count as unset. The name is the variable to blame for a bad URL.
    """
    explicit = setting(settings, "UPSTREAM_RESPONSES_URL", "")
    if explicit:
        return explicit, "UPSTREAM_RESPONSES_URL"
    raw_base = settings.get("UPSTREAM_BASE_URL", "")
    if raw_base.strip():
        base = (raw_base[:-1] if raw_base.endswith("/") else raw_base).strip()
        path = setting(settings, "UPSTREAM_WIRE_API_PATH", DEFAULT_WIRE_API_PATH)
        if not path.startswith("/"):
            path = "/" + path
        return base + path, "UPSTREAM_BASE_URL"
    return setting(settings, "CHATGPT_RESPONSES_URL", DEFAULT_CHATGPT_RESPONSES_URL), "CHATGPT_RESPONSES_URL"


def responses_upstream(settings: Mapping[str, str]) -> Upstream:
    url, variable = responses_url(settings)
    return parse_upstream_url(url, variable)


def ollama_upstream(settings: Mapping[str, str]) -> Optional[Upstream]:
    """The Ollama server behind `/api/*`, or None when OLLAMA_API_URL is unset."""
    url = setting(settings, "OLLAMA_API_URL", "")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigError(f"OLLAMA_API_URL must be a base URL without ?query or #fragment, got {url!r}")
    return parse_upstream_url(url, "OLLAMA_API_URL")


def ollama_prefix_rewrite(upstream: Upstream) -> Optional[str]:
    """`/api/` → `<base path>/api/` when the base URL has a path (`http://h:11434/ollama`)."""
    base_path = upstream.path.rstrip("/")
    return f"{base_path}/api/" if base_path else None


def token_store(settings: Mapping[str, str]) -> str:
    raw = setting(settings, "TOKEN_STORE", "memory")
    value = raw.lower()
    if value not in TOKEN_STORES:
        raise ConfigError(f"TOKEN_STORE must be one of {', '.join(TOKEN_STORES)}, got {raw!r}")
    return value


def etcd_url(settings: Mapping[str, str]) -> Optional[str]:
    """ETCD_ENDPOINT when the refresh-token store is etcd; None for the in-memory store."""
    if token_store(settings) != "etcd":
        return None
    endpoint = setting(settings, "ETCD_ENDPOINT", "")
    if not endpoint:
        raise ConfigError("TOKEN_STORE=etcd needs ETCD_ENDPOINT (e.g. http://127.0.0.1:2379)")
    return endpoint


def optional_clusters(settings: Mapping[str, str], opts: Options) -> List[dict]:
    """Clusters that exist only when their variable is set."""
    found: List[dict] = []
    ollama = setting(settings, "OLLAMA_API_URL", "")
    if ollama:
        ollama_upstream(settings)  # validates the base-URL rules
        found.append(cluster_for_url(OLLAMA_CLUSTER, ollama, "OLLAMA_API_URL", opts))
    for name, variable in (
        (INSTRUCTIONS_BASE_CLUSTER, "INSTRUCTIONS_BASE_URL"),
        (INSTRUCTIONS_CODEX_CLUSTER, "INSTRUCTIONS_CODEX_URL"),
    ):
        url = setting(settings, variable, "")
        if url:
            found.append(cluster_for_url(name, url, variable, opts))
    etcd = etcd_url(settings)
    if etcd:
        found.append(cluster_for_url(ETCD_CLUSTER, etcd, "ETCD_ENDPOINT", opts))
    return found


# Reads from the Codex backend in chunks of at most this size: a burst of SSE then reaches the
# filter (and the client) in several callbacks instead of one large one, which measurably cuts
# the time to the first token (bench/RESULTS.md). Request bodies still go out whole; they are
# buffered on the listener's side.
CODEX_READ_BUFFER_BYTES = 64 * 1024


def codex_cluster(settings: Mapping[str, str], opts: Options) -> dict:
    url, variable = responses_url(settings)
    cluster = cluster_for_url(CODEX_CLUSTER, url, variable, opts)
    cluster["per_connection_buffer_limit_bytes"] = CODEX_READ_BUFFER_BYTES
    if credentials_upstream(settings, opts):
        options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        options["http_filters"] = [
            credentials_filter(opts),
            {
                "name": "envoy.filters.http.upstream_codec",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
            },
        ]
    return cluster


def clusters(settings: Mapping[str, str], opts: Options) -> List[dict]:
    refresh_url = setting(settings, "CODEX_REFRESH_TOKEN_URL", DEFAULT_REFRESH_TOKEN_URL)
    return [
        codex_cluster(settings, opts),
        # The filter refreshes ChatGPT tokens with dispatch_http_call to this cluster.
        cluster_for_url(OAUTH_CLUSTER, refresh_url, "CODEX_REFRESH_TOKEN_URL", opts),
        *optional_clusters(settings, opts),
    ]


# --------------------------------------------------------------------------------------
# CORS (Envoy's own filter; preflights never reach the Wasm filter's key gate)

CORS_ALLOW_METHODS = "GET, POST, OPTIONS"
# Envoy copies allow_headers verbatim into the preflight answer and browsers do not expand
# patterns such as `x-stainless-*`, so the OpenAI JS SDK's headers are listed one by one.
CORS_ALLOW_HEADERS = [
    "authorization",
    "content-type",
    "openai-beta",
    "openai-organization",
    "openai-project",
    "x-session-id",
    "session_id",
    "session-id",
    "x-stainless-arch",
    "x-stainless-helper-method",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
]
CORS_EXPOSE_HEADERS = [
    "retry-after",
    "x-request-id",
    "x-codex-primary-used-percent",
    "x-codex-primary-reset-at",
    "x-codex-secondary-used-percent",
    "x-codex-secondary-reset-at",
]
CORS_MAX_AGE_SECONDS = 600


def cors_origins(settings: Mapping[str, str]) -> Optional[List[str]]:
    """CORS_ALLOW_ORIGINS as a list of exact origins, or None for `*` (any origin)."""
    raw = setting(settings, "CORS_ALLOW_ORIGINS", "*")
    origins = [item.strip() for item in raw.split(",") if item.strip()]
    if origins == ["*"]:
        return None
    for origin in origins:
        parts = urlsplit(origin)
        if (
            origin == "*"
            or not parts.scheme
            or not parts.netloc
            or "*" in origin
            or parts.path
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            raise ConfigError(
                "CORS_ALLOW_ORIGINS must be `*` alone or a comma-separated list of origins such as "
                f"https://app.example.com (scheme://host[:port], no path, no trailing /), got {raw!r}"
            )
    return origins


def cors_policy(settings: Mapping[str, str]) -> dict:
    origins = cors_origins(settings)
    if origins is None:
        matchers = [{"safe_regex": {"regex": ".*"}}]
    else:
        matchers = [{"exact": origin, "ignore_case": True} for origin in origins]
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": matchers,
        "allow_methods": CORS_ALLOW_METHODS,
        "allow_headers": ", ".join(CORS_ALLOW_HEADERS),
        "expose_headers": ", ".join(CORS_EXPOSE_HEADERS),
        "max_age": str(CORS_MAX_AGE_SECONDS),
        # Browsers reject credentials with a wildcard origin; only an explicit list gets them.
        "allow_credentials": origins is not None,
    }


def cors_filter() -> dict:
    return {
        "name": "envoy.filters.http.cors",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
    }


# --------------------------------------------------------------------------------------
# Listener, HTTP connection manager, filters


def client_path_filter() -> dict:
    """Copies the client's :path into CLIENT_PATH_HEADER (overwriting any client copy)."""
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {
                "request_mutations": [
                    {
                        "append": {
                            "header": {"key": CLIENT_PATH_HEADER, "value": "%REQ(:path)%"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                    }
                ]
            },
        },
    }


def credentials_upstream(settings: Mapping[str, str], opts: Options) -> bool:
    """Whether the Codex cluster gets the filter's credentials instance (see below).

    ChatGPT-token mode only, and not in portable mode: Istio's WasmPlugin cannot place a
    plugin in a cluster's upstream filter chain.
    """
    mode = setting(settings, "UPSTREAM_AUTH_MODE", "chatgpt_token").lower()
    return mode == "chatgpt_token" and not opts.portable


def plugin_configuration(settings: Mapping[str, str], opts: Options) -> dict:
    """Non-secret settings only: this JSON is visible in the admin /config_dump."""
    config = {"ENVOY_HOLD_HEADERS": not opts.portable, "MAX_REQUEST_BODY_BYTES": opts.max_request_body_bytes}
    if credentials_upstream(settings, opts):
        config["CREDENTIALS_UPSTREAM"] = True
    return config


def _wasm_plugin(root_id: str, configuration: dict, opts: Options) -> dict:
    return {
        "name": root_id,
        "root_id": root_id,
        # A panic kills the worker's VM; reload it instead of failing every later request.
        "failure_policy": "FAIL_RELOAD",
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(configuration, separators=(",", ":")),
        },
        # Identical for both instances, so they share one VM (and its shared data) per worker.
        "vm_config": {
            "vm_id": PLUGIN_NAME,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(opts.wasm_path)}},
            "environment_variables": {"host_env_keys": list(FILTER_VARIABLES)},
        },
    }


def credentials_filter(opts: Options) -> dict:
    """The filter's credentials instance, in the Codex cluster's upstream filter chain: it
    runs once per upstream attempt, so Envoy's retry after a backend 401 goes out with the
    token the refresher fetched in between."""
    config = _wasm_plugin(PLUGIN_NAME + "_credentials", {"FILTER_ROLE": "credentials"}, opts)
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": config},
    }


# One retry, only for a 401: the credentials instance has marked the token stale by then,
# and the retry waits for the refreshed one.
TOKEN_RETRY_POLICY = {
    "retry_on": "retriable-status-codes",
    "retriable_status_codes": [401],
    "num_retries": 1,
    "retry_back_off": {"base_interval": "0.05s", "max_interval": "0.2s"},
}


def wasm_filter(settings: Mapping[str, str], opts: Options) -> dict:
    config = _wasm_plugin(PLUGIN_NAME, plugin_configuration(settings, opts), opts)
    if not opts.portable:
        # Envoy >= 1.35 only (older versions reject the field): lets the filter hold the
        # request headers until the body is translated. Portable mode omits it.
        config["allow_on_headers_stop_iteration"] = True
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": config},
    }


def router_filter() -> dict:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            # No x-envoy-* headers towards the third-party upstream.
            "suppress_envoy_headers": True,
        },
    }


def upstream_route(name: str, match: dict, cluster: str, upstream: Upstream, opts: Options) -> dict:
    action = {
        "cluster": cluster,
        # The default 15 s would cut long SSE streams; rely on idle timeouts.
        "timeout": "0s",
        "idle_timeout": opts.stream_idle_timeout,
        "host_rewrite_literal": upstream.authority,
    }
    return {
        "name": name,
        "match": match,
        "route": action,
        "request_headers_to_remove": list(UPSTREAM_HEADERS_TO_REMOVE),
    }


def ollama_route(upstream: Upstream, opts: Options) -> dict:
    # Envoy picks the route before any filter runs, and again after the filter edits the
    # request headers, then on the path the filter set: a backend path such as /api/responses
    # must not land here. So the client's own path (stamped before the filter) must be /api/
    # too, or not stamped yet (the first match).
    match = {
        "prefix": "/api/",
        "headers": [
            {
                "name": CLIENT_PATH_HEADER,
                "string_match": {"safe_regex": {"regex": "^(/api/.*)?$"}},
                "treat_missing_header_as_empty": True,
            }
        ],
    }
    route = upstream_route(OLLAMA_CLUSTER, match, OLLAMA_CLUSTER, upstream, opts)
    rewrite = ollama_prefix_rewrite(upstream)
    if rewrite:
        route["route"]["prefix_rewrite"] = rewrite
    return route


def routes(settings: Mapping[str, str], opts: Options) -> List[dict]:
    found = []
    ollama = ollama_upstream(settings)
    if ollama is not None:
        # Before the catch-all. Without OLLAMA_API_URL, /api/* reaches the filter like any path.
        found.append(ollama_route(ollama, opts))
    codex = upstream_route(CODEX_CLUSTER, {"prefix": "/"}, CODEX_CLUSTER, responses_upstream(settings), opts)
    if credentials_upstream(settings, opts):
        codex["route"]["retry_policy"] = TOKEN_RETRY_POLICY
    found.append(codex)
    return found


# The reasoning-output prefixes of REASONING_OUTPUT_MODE=all (`/tagged/v1/...`).
_MODE_PREFIX = "(/(tagged|r1|o3|openai|hidden))?"


def _path_matcher(regex: str) -> dict:
    # A StringMatcher regex must match the whole value (the query string included). Not
    # `:path`: by the time the router picks the virtual cluster, the filter has rewritten it.
    return {"name": CLIENT_PATH_HEADER, "string_match": {"safe_regex": {"regex": regex}}}


def virtual_clusters() -> List[dict]:
    """Per-endpoint upstream request stats (`vhost.any.vcluster.<name>.upstream_rq_<code>`).

    Requests the filter answers itself (health, models, errors) never reach the router and are
    not counted here; the HCM's `http.codex.downstream_rq_<class>xx` counts every response.
    """
    return [
        {"name": "chat", "headers": [_path_matcher(f"^{_MODE_PREFIX}/v1/chat/completions(\\?.*)?$")]},
        {"name": "completions", "headers": [_path_matcher(f"^{_MODE_PREFIX}/v1/completions(\\?.*)?$")]},
        {"name": "ollama", "headers": [_path_matcher("^/api/.*$")]},
    ]


def route_config(settings: Mapping[str, str], opts: Options) -> dict:
    return {
        "name": "codex_routes",
        "virtual_hosts": [
            {
                "name": VIRTUAL_HOST,
                "domains": ["*"],
                "routes": routes(settings, opts),
                "virtual_clusters": virtual_clusters(),
                "typed_per_filter_config": {"envoy.filters.http.cors": cors_policy(settings)},
            }
        ],
    }


def http_connection_manager(settings: Mapping[str, str], opts: Options) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "codex",
            "codec_type": "AUTO",
            "request_timeout": "0s",
            # Reasoning models can be silent for minutes before the first token.
            "stream_idle_timeout": opts.stream_idle_timeout,
            "route_config": route_config(settings, opts),
            # CORS first: Envoy answers preflights itself (no key needed) and adds the CORS
            # headers to every response, the filter's own replies included.
            "http_filters": [cors_filter(), client_path_filter(), wasm_filter(settings, opts), router_filter()],
        },
    }


def listener(settings: Mapping[str, str], opts: Options) -> dict:
    return {
        "name": "codex_openai_wrapper",
        "address": {"socket_address": {"address": opts.listen_address, "port_value": opts.port}},
        # The filter buffers the whole request body; beyond this Envoy answers 413 itself.
        "per_connection_buffer_limit_bytes": opts.buffer_limit_bytes,
        "filter_chains": [{"filters": [http_connection_manager(settings, opts)]}],
    }


def admin(opts: Options) -> dict:
    # Loopback only: /config_dump and /quitquitquit must not be reachable from outside.
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": opts.admin_port}}}


def render_config(
    settings: Mapping[str, str], wasm_path: Optional[Path] = None, wasm_path_in_config: Optional[str] = None
) -> dict:
    """The Envoy bootstrap as a dict; raises ConfigError on a bad setting."""
    opts = options_from(settings, wasm_path, wasm_path_in_config)
    return {
        "admin": admin(opts),
        "static_resources": {
            "listeners": [listener(settings, opts)],
            "clusters": clusters(settings, opts),
        },
    }


def write_config(config: dict, out: Path) -> Path:
    """Write atomically, so an Envoy starting meanwhile never reads half a file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def render_to_file(
    settings: Mapping[str, str], out: Path, wasm_path: Optional[Path] = None, wasm_path_in_config: Optional[str] = None
) -> Path:
    return write_config(render_config(settings, wasm_path, wasm_path_in_config), out)


# --------------------------------------------------------------------------------------
# CLI


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Render the Envoy configuration for codex-openai-wrapper.")
    parser.add_argument("--out", required=True, type=Path, help="where to write the configuration")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=DEFAULT_ENV_FILE,
        help="dotenv file with settings, overridden by the environment (default: .dev.vars at the repo root)",
    )
    parser.add_argument("--wasm", type=Path, default=None, help=f"filter module (default: {DEFAULT_WASM})")
    # For a configuration that runs elsewhere (docker compose: `make compose-config`).
    parser.add_argument(
        "--wasm-path-in-config",
        default=None,
        metavar="PATH",
        help="write this absolute module path into the configuration as is (a path inside a container)",
    )
    parser.add_argument("--listen-port", type=int, default=None, metavar="PORT", help="overrides PORT")
    parser.add_argument("--listen-address", default=None, metavar="ADDRESS", help="overrides LISTEN_ADDRESS")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(args.env_file)
        if args.listen_port is not None:
            settings["PORT"] = str(args.listen_port)
        if args.listen_address is not None:
            settings["LISTEN_ADDRESS"] = args.listen_address
        render_to_file(settings, args.out, args.wasm, args.wasm_path_in_config)
    except ConfigError as exc:
        print(f"render.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
