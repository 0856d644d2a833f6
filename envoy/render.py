#!/usr/bin/env python3
"""Render the Envoy bootstrap for codex-openai-wrapper.

Usage: python3 envoy/render.py --out PATH [--env-file .dev.vars] [--wasm PATH]
                              [--wasm-path-in-config PATH] [--listen-port PORT] [--listen-address ADDR]
                              [--format json|yaml]
       python3 envoy/render.py --example --out envoy/envoy.example.yaml

Settings are the values of `.dev.vars` (if present) overridden by the process environment.
This file holds the Envoy templates only: which variables exist, their defaults, allowed values
and the upstream URL precedence live in Rust, and `codex-settings resolve`
(src/bin/codex-settings, the filter's own configuration code) hands over the validated values.
The output is JSON (valid YAML, so the file may be named `.yaml`), or commented YAML.

Secrets (API keys, auth.json) never enter the rendered bootstrap. Under `make run`
(`envoy/run.py`) the two filter instances' configurations are not in the bootstrap at all:
Envoy loads them from files through file-based extension config discovery (ECDS) and reloads
them when a file is replaced, so the values of `reloadable_values()` (secrets included) reach
a running Envoy; those files are written with mode 0600 (`write_filter_configs`). Without it, the filter reads every setting
from Envoy's process environment through `host_env_keys`.

Standard library only, Python >= 3.9: the run command uses it before any venv exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENV_FILE = REPO_ROOT / ".dev.vars"
DEFAULT_WASM = REPO_ROOT / "target" / "wasm32-wasip1" / "release" / "codex_openai_wrapper.wasm"

# Headroom above the largest body: headers and framing share the connection buffer.
BUFFER_HEADROOM_BYTES = 1024 * 1024
CONNECT_TIMEOUT = "10s"
UPSTREAM_IDLE_TIMEOUT = "300s"

PLUGIN_NAME = "codex_openai_wrapper"
VIRTUAL_HOST = "any"

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
# keeps it for the route configuration, which strips it (above).
CLIENT_PATH_HEADER = "x-envoy-client-path"

# Every client header with this prefix is removed before any filter sees the request: Envoy
# reads some of them itself (x-envoy-retry-on, x-envoy-upstream-rq-timeout-ms, ...) and the
# rest would travel on to the upstreams, the Ollama pass-through included. Envoy only strips
# them by itself at an edge (use_remote_address), which would change x-forwarded-for.
CLIENT_ENVOY_HEADER_PREFIX = "x-envoy-"


class ConfigError(Exception):
    """A setting has an unusable value; `variable` names it (None for a problem with the env
    file itself, whose message names the file and line)."""

    def __init__(self, message: str, variable: Optional[str] = None) -> None:
        super().__init__(message)
        self.variable = variable


# --------------------------------------------------------------------------------------
# Settings: codex-settings (src/bin/codex-settings) works them out

SETTINGS_BIN_VAR = "CODEX_SETTINGS_BIN"
_settings_bin: Optional[str] = None


def settings_bin() -> str:
    """The codex-settings executable: $CODEX_SETTINGS_BIN, else built here by cargo (once per
    process; a no-op when it is up to date)."""
    global _settings_bin
    explicit = os.environ.get(SETTINGS_BIN_VAR, "").strip()
    if explicit:
        return explicit
    if _settings_bin is None:
        command = ["cargo", "build", "--quiet", "--bin", "codex-settings", "--message-format=json-render-diagnostics"]
        try:
            built = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        except FileNotFoundError:
            raise ConfigError(f"cargo is not on PATH: install Rust with rustup, or set {SETTINGS_BIN_VAR}") from None
        if built.returncode != 0:
            raise ConfigError(f"`{' '.join(command[:5])}` failed:\n{built.stderr.strip()}")
        for line in built.stdout.splitlines():
            message = json.loads(line)
            if message.get("reason") == "compiler-artifact" and message.get("executable"):
                if message["target"]["name"] == "codex-settings":
                    _settings_bin = message["executable"]
        if _settings_bin is None:
            raise ConfigError("cargo built no codex-settings executable")
    return _settings_bin


def run_settings(args: Sequence[str], environ: Mapping[str, str]) -> Any:
    """codex-settings' JSON answer, run with exactly `environ` as its environment."""
    result = subprocess.run([settings_bin(), *args], env=dict(environ), capture_output=True, text=True)
    if result.returncode == 0:
        sys.stderr.write(result.stderr)  # make run's notes (which credentials it found)
        return json.loads(result.stdout)
    try:
        error = json.loads(result.stdout)["error"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"codex-settings {' '.join(args)} failed: {result.stderr.strip()}") from None
    raise ConfigError(error["message"], error.get("variable"))


def resolve(settings: Mapping[str, str]) -> dict:
    """Everything the templates need for these settings (validated as the filter validates
    them; no secret in it). Raises ConfigError naming the variable."""
    resolved = run_settings(["resolve"], settings)
    resolved["pool_source"] = bool(settings.get("CODEX_AUTH_DIR", "").strip()) or settings.get(
        "OPENAI_CODEX_AUTH", ""
    ).lstrip().startswith("[")
    return resolved


def load_settings(
    env_file: Optional[Path] = DEFAULT_ENV_FILE, environ: Optional[Mapping[str, str]] = None, codex_auth: bool = False
) -> Dict[str, str]:
    """`.dev.vars` values overridden by the process environment (secrets included).

    `codex_auth`: fill OPENAI_CODEX_AUTH from $CODEX_HOME/auth.json when it is unset."""
    args = ["env"] + (["--env-file", str(env_file)] if env_file is not None else [])
    return run_settings(args + (["--codex-auth"] if codex_auth else []), os.environ if environ is None else environ)


_manifest: Optional[List[dict]] = None


def variables() -> List[dict]:
    """Every variable: name, reader (filter, plugin, envoy, run, internal), default,
    default_note, allowed values, secret."""
    global _manifest
    if _manifest is None:
        _manifest = run_settings(["variables"], {})["variables"]
    return _manifest


def default(name: str) -> Optional[str]:
    """The value an unset variable stands for, when there is one."""
    (variable,) = [v for v in variables() if v["name"] == name]
    return variable["default"]


def filter_variables() -> List[str]:
    """The variables the filter reads from Envoy's environment (`host_env_keys`)."""
    return [v["name"] for v in variables() if v["reader"] == "filter"]


# Filter variables a running Envoy cannot take from a new plugin configuration: they shape the
# rendered bootstrap (clusters, routes, whether the Codex cluster carries the credentials
# instance), or they are read by the credentials instance, whose configuration is part of the
# bootstrap where it is not loaded through ECDS (docker compose). A change to one of them needs a
# new Envoy (`make run` says so and keeps the value it started with).
RESTART_VARIABLES = frozenset(
    {
        "CHATGPT_RESPONSES_URL",
        "CHATGPT_LOCAL_CLIENT_ID",
        "CODEX_AUTH_ISSUER",
        "CODEX_REFRESH_TOKEN_URL",
        "UPSTREAM_AUTH_MODE",
        "UPSTREAM_AUTH_ENV_KEY",
        "UPSTREAM_RESPONSES_URL",
        "UPSTREAM_BASE_URL",
        "UPSTREAM_WIRE_API_PATH",
        "OLLAMA_API_URL",
        "INSTRUCTIONS_BASE_URL",
        "INSTRUCTIONS_CODEX_URL",
        "TOKEN_STORE",
        "ETCD_ENDPOINT",
        "ETCD_KEY",
        "CATALOGUE_CLUSTER",
        "OAUTH_CLUSTER",
        "ETCD_CLUSTER",
        "INSTRUCTIONS_BASE_CLUSTER",
        "INSTRUCTIONS_CODEX_CLUSTER",
    }
)


def reloadable_variables() -> List[str]:
    """The filter variables a new plugin configuration changes in a running Envoy."""
    return [name for name in filter_variables() if name not in RESTART_VARIABLES]


def reloadable_values(settings: Mapping[str, str]) -> Dict[str, str]:
    """The values that go into the main filter's plugin configuration (variable name -> string
    value), so that a changed login, key or setting reaches a running Envoy without a restart.
    Secrets included: the file they go to is mode 0600 and the admin interface that could dump
    it is kept from other users (README, "Reloading")."""
    values = {name: settings[name] for name in reloadable_variables() if settings.get(name) is not None}
    keys = client_keys(settings)
    if keys is not None:
        values["CLIENT_KEYS"] = keys
    return values


def client_keys(settings: Mapping[str, str]) -> Optional[str]:
    """The keys file (`CLIENT_KEYS_FILE`) as the filter's `CLIENT_KEYS`: names, SHA-256 digests
    and limits, read and checked by codex-settings (a malformed entry raises ConfigError naming
    the file, the line and the entry); None without a keys file."""
    if not settings.get("CLIENT_KEYS_FILE", "").strip():
        return None
    return resolve(settings)["plugin_configuration"]["main"].get("CLIENT_KEYS")


# --------------------------------------------------------------------------------------
# Envoy's log level

# At debug and trace these Envoy components print whole header maps: the client's
# Authorization and cookies, and (portable mode, API-key upstreams) the upstream credential;
# `config` prints every configuration update in full, the filter's reloadable one (keys and
# login) included. They stay at info whatever ENVOY_LOG_LEVEL says; nothing else Envoy logs
# carries a secret.
HEADER_LOGGING_COMPONENTS = ("http", "http2", "router", "config")


def envoy_log_args(level: str) -> List[str]:
    """Envoy's log flags for a (validated) ENVOY_LOG_LEVEL, safe at every level."""
    args = ["--log-level", level]
    if level in ("trace", "debug"):
        args += ["--component-log-level", ",".join(f"{name}:info" for name in HEADER_LOGGING_COMPONENTS)]
    return args


# --------------------------------------------------------------------------------------
# Options: the resolved settings plus the module path


@dataclass(frozen=True)
class Upstream:
    """An upstream URL's facts, as codex-settings worked them out."""

    cluster: str
    variable: str  # the setting that supplied the URL
    url: str
    is_tls: bool
    host: str  # hostname or IP literal, without brackets
    port: int
    path: str
    authority: str  # Host header value: the port only when it is not the scheme's default
    is_ip_literal: bool
    # Ollama only: `/api/` → `<base path>/api/` when the base URL has a path.
    api_prefix_rewrite: Optional[str] = None

    @classmethod
    def from_resolved(cls, fields: Optional[Mapping[str, Any]]) -> Optional["Upstream"]:
        if fields is None:
            return None
        return cls(
            cluster=fields["cluster"],
            variable=fields["variable"],
            url=fields["url"],
            is_tls=fields["tls"],
            host=fields["host"],
            port=fields["port"],
            path=fields["path"],
            authority=fields["authority"],
            is_ip_literal=fields["ip_literal"],
            api_prefix_rewrite=fields.get("api_prefix_rewrite"),
        )


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
    codex: Upstream
    catalogue: Optional[Upstream]
    oauth: Upstream
    ollama: Optional[Upstream]
    instructions_base: Optional[Upstream]
    instructions_codex: Optional[Upstream]
    etcd: Optional[Upstream]
    # Exact origins; None allows any origin.
    cors_allow_origins: Optional[List[str]]
    credentials_upstream: bool
    plugin_configuration: Dict[str, Any]
    credentials_plugin_configuration: Dict[str, Any]
    host_env_keys: List[str]
    reasoning_output_prefixes: List[str]
    # ChatGPT accounts in OPENAI_CODEX_AUTH (a pool when more than one).
    accounts: int = 1
    # Whether the accounts can change while Envoy runs: CODEX_AUTH_DIR, or a JSON array.
    pool_source: bool = False

    @property
    def buffer_limit_bytes(self) -> int:
        return self.max_request_body_bytes + BUFFER_HEADROOM_BYTES

    @property
    def request_buffer_limit_bytes(self) -> int:
        """What Envoy may hold of one request body on the Codex route. The filter keeps at most
        MAX_REQUEST_BODY_BYTES and drops the rest of an oversize body as it arrives, but one
        socket read (up to the listener's buffer limit) lands on top before the filter sees it;
        below this sum Envoy would answer 413 itself, early, and reset a client still writing."""
        return 2 * self.buffer_limit_bytes

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
    resolved: Mapping[str, Any], wasm_path: Optional[Path] = None, wasm_path_in_config: Optional[str] = None
) -> Options:
    """`resolved` is codex-settings' answer (`resolve(settings)`)."""
    upstreams = resolved["upstreams"]
    return Options(
        listen_address=resolved["listener"]["address"],
        port=resolved["listener"]["port"],
        admin_port=resolved["admin_port"],
        max_request_body_bytes=resolved["max_request_body_bytes"],
        stream_idle_seconds=resolved["stream_idle_timeout_seconds"],
        portable=resolved["portable"],
        ca_bundle=resolved["ca_bundle"],
        wasm_path=config_wasm_path(wasm_path, wasm_path_in_config),
        codex=Upstream.from_resolved(upstreams["codex"]),
        catalogue=Upstream.from_resolved(upstreams["catalogue"]),
        oauth=Upstream.from_resolved(upstreams["oauth"]),
        ollama=Upstream.from_resolved(upstreams["ollama"]),
        instructions_base=Upstream.from_resolved(upstreams["instructions_base"]),
        instructions_codex=Upstream.from_resolved(upstreams["instructions_codex"]),
        etcd=Upstream.from_resolved(upstreams["etcd"]),
        cors_allow_origins=resolved["cors_allow_origins"],
        credentials_upstream=resolved["credentials_upstream"],
        plugin_configuration=resolved["plugin_configuration"]["main"],
        credentials_plugin_configuration=resolved["plugin_configuration"]["credentials"],
        host_env_keys=resolved["host_env_keys"],
        reasoning_output_prefixes=resolved["reasoning_output_prefixes"],
        accounts=resolved.get("accounts", 1),
        pool_source=resolved.get("pool_source", False),
    )


# --------------------------------------------------------------------------------------
# Upstream URLs → clusters


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


def cluster_for(upstream: Upstream, opts: Options) -> dict:
    """An Envoy cluster reaching the upstream's host, named as the filter expects."""
    name = upstream.cluster
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


def optional_clusters(opts: Options) -> List[dict]:
    """Clusters that exist only when their variable is set (the etcd one with TOKEN_STORE=etcd)."""
    optional = (opts.ollama, opts.instructions_base, opts.instructions_codex, opts.etcd)
    return [cluster_for(upstream, opts) for upstream in optional if upstream is not None]


# Reads from the Codex backend in chunks of at most this size: a burst of SSE then reaches the
# filter (and the client) in several callbacks instead of one large one, which measurably cuts
# the time to the first token (bench/RESULTS.md). Request bodies still go out whole; they are
# buffered on the listener's side.
CODEX_READ_BUFFER_BYTES = 64 * 1024


def codex_cluster(opts: Options, filter_config: Optional[Path] = None) -> dict:
    cluster = cluster_for(opts.codex, opts)
    cluster["per_connection_buffer_limit_bytes"] = CODEX_READ_BUFFER_BYTES
    if opts.credentials_upstream:
        options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        options["http_filters"] = [
            credentials_filter(opts, filter_config),
            {
                "name": "envoy.filters.http.upstream_codec",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
            },
        ]
    return cluster


def clusters(opts: Options, filter_config: Optional[Path] = None) -> List[dict]:
    return [
        codex_cluster(opts, filter_config),
        # The filter refreshes ChatGPT tokens with dispatch_http_call to this cluster.
        cluster_for(opts.oauth, opts),
        # And fetches the model catalogue from the Codex host through this one.
        *([cluster_for(opts.catalogue, opts)] if opts.catalogue is not None else []),
        *optional_clusters(opts),
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


def cors_policy(opts: Options) -> dict:
    origins = opts.cors_allow_origins
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
    """Drops the client's x-envoy-* headers, then copies its :path into CLIENT_PATH_HEADER."""
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {
                "request_mutations": [
                    {"remove_on_match": {"key_matcher": {"prefix": CLIENT_ENVOY_HEADER_PREFIX}}},
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


def plugin_configuration(opts: Options) -> dict:
    """Non-secret settings only: this JSON is visible in the admin /config_dump. Whether the
    Codex cluster gets the filter's credentials instance (CREDENTIALS_UPSTREAM) is decided by
    codex-settings: ChatGPT-token mode only, and not in portable mode (Istio's WasmPlugin
    cannot place a plugin in a cluster's upstream filter chain)."""
    return dict(opts.plugin_configuration)


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
            "environment_variables": {"host_env_keys": list(opts.host_env_keys)},
        },
    }


def credentials_plugin(opts: Options, values: Optional[Mapping[str, str]] = None) -> dict:
    """The credentials instance's PluginConfig: the same reloadable values as the main
    instance's (the accounts above all: both must know the same ones), its role on top."""
    return _wasm_plugin(CREDENTIALS_CONFIG_NAME, {**(values or {}), **opts.credentials_plugin_configuration}, opts)


def credentials_filter(opts: Options, filter_config: Optional[Path] = None) -> dict:
    """The filter's credentials instance, in the Codex cluster's upstream filter chain: it
    runs once per upstream attempt, so Envoy's retry after a backend 401 goes out with the
    token the refresher fetched in between. With `filter_config` (the main filter's ECDS
    file) it is loaded through ECDS too, from `credentials_config_path(filter_config)`."""
    if filter_config is None:
        return {"name": "envoy.filters.http.wasm", "typed_config": {"@type": WASM_TYPE_URL, "config": credentials_plugin(opts)}}
    return {"name": CREDENTIALS_CONFIG_NAME, "config_discovery": _config_discovery(credentials_config_path(filter_config))}


# One retry, only for a 401: the credentials instance has marked the token stale by then,
# and the retry waits for the refreshed one.
TOKEN_RETRY_POLICY = {
    "retry_on": "retriable-status-codes",
    "retriable_status_codes": [401],
    "num_retries": 1,
    "retry_back_off": {"base_interval": "0.05s", "max_interval": "0.2s"},
}


# The most accounts a pool holds (MAX_ACCOUNTS in src/core/accounts/login.rs).
MAX_ACCOUNTS = 64


def pool_retry_policy(accounts: int) -> dict:
    """Several accounts: a 429 is retried too. The credentials instance has marked the
    account exhausted by then and sends the retry on another one (it marks a 429 that no
    other account can take `x-envoy-ratelimited`, which Envoy does not retry); one retry per
    account covers every account failing in turn (and the 401 retry)."""
    return {**TOKEN_RETRY_POLICY, "retriable_status_codes": [401, 429], "num_retries": accounts}


def codex_retry_policy(opts: Options) -> dict:
    """Where accounts can come and go while Envoy runs (a CODEX_AUTH_DIR, a JSON array in
    OPENAI_CODEX_AUTH), the route is sized for the largest pool, so an account added by a
    reload can take a 429 too: the retries stop at the first 429 no account can take."""
    if opts.pool_source:
        return pool_retry_policy(MAX_ACCOUNTS)
    return TOKEN_RETRY_POLICY if opts.accounts <= 1 else pool_retry_policy(opts.accounts)


WASM_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
# The name of the main filter's extension config (ECDS resource), and so of its HTTP filter.
FILTER_CONFIG_NAME = PLUGIN_NAME
# The credentials instance's (its own resource, in its own file beside the main one's).
CREDENTIALS_CONFIG_NAME = PLUGIN_NAME + "_credentials"


def credentials_config_path(filter_config: Path) -> Path:
    """The credentials instance's ECDS file: beside the main one, in the same watched directory."""
    return Path(filter_config).parent / "credentials.json"


def main_plugin(opts: Options, values: Optional[Mapping[str, str]] = None) -> dict:
    """The main instance's PluginConfig; `values` (reloadable_values) join the plugin
    configuration, where they win over Envoy's environment. With `values`, the keys come from
    them alone (the options may be older: a keys file dropped since must not keep its keys)."""
    base = plugin_configuration(opts)
    if values is not None:
        base.pop("CLIENT_KEYS", None)
    config = _wasm_plugin(PLUGIN_NAME, {**base, **(values or {})}, opts)
    if not opts.portable:
        # Envoy >= 1.35 only (older versions reject the field): lets the filter hold the
        # request headers until the body is translated. Portable mode omits it.
        config["allow_on_headers_stop_iteration"] = True
    return config


def wasm_filter(opts: Options, filter_config: Optional[Path] = None) -> dict:
    """The main filter: inline, or (with `filter_config`) loaded from that file through ECDS
    and reloaded whenever a new file is moved into its directory. The plugin's vm_config is
    the credentials instance's, so a new configuration gets a new root context in the same
    VM, and shared data (the token record) stays."""
    if filter_config is None:
        return {"name": "envoy.filters.http.wasm", "typed_config": {"@type": WASM_TYPE_URL, "config": main_plugin(opts)}}
    return {"name": FILTER_CONFIG_NAME, "config_discovery": _config_discovery(filter_config)}


def _config_discovery(path: Path) -> dict:
    return {
        "config_source": {
            "path_config_source": {
                "path": str(path),
                # Envoy reloads when a file is moved into the directory: writers rename a
                # finished temporary file there, so a half-written one is never read.
                "watched_directory": {"path": str(Path(path).parent)},
            },
            "resource_api_version": "V3",
        },
        "type_urls": [WASM_TYPE_URL],
    }


def _resource(name: str, config: dict) -> dict:
    return {
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": name,
                "typed_config": {"@type": WASM_TYPE_URL, "config": config},
            }
        ]
    }


def filter_config_resource(opts: Options, values: Mapping[str, str]) -> dict:
    """The ECDS file's content: a DiscoveryResponse with the main filter's one extension config."""
    return _resource(FILTER_CONFIG_NAME, main_plugin(opts, values))


def credentials_config_resource(opts: Options, values: Mapping[str, str]) -> dict:
    """The credentials instance's ECDS file's content."""
    return _resource(CREDENTIALS_CONFIG_NAME, credentials_plugin(opts, values))


def write_filter_configs(opts: Options, values: Mapping[str, str], filter_config: Path) -> None:
    """Both instances' ECDS files for these reloadable values (the credentials instance's only
    where the Codex cluster carries it). The credentials instance's goes first: an account is
    then known where attempts pick it before the main instance can route a request to it."""
    if opts.credentials_upstream:
        write_filter_config(credentials_config_resource(opts, values), credentials_config_path(filter_config))
    write_filter_config(filter_config_resource(opts, values), filter_config)


def write_filter_config(resource: dict, out: Path) -> Path:
    """Writes the ECDS file atomically (a temporary file in the same, watched directory, then a
    rename), readable by its owner only: it carries the keys and the login."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(json.dumps(resource, indent=2) + "\n")
    os.replace(tmp, out)
    return out


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
    route = upstream_route(upstream.cluster, match, upstream.cluster, upstream, opts)
    rewrite = upstream.api_prefix_rewrite
    if rewrite:
        route["route"]["prefix_rewrite"] = rewrite
    return route


def routes(opts: Options) -> List[dict]:
    found = []
    if opts.ollama is not None:
        # Before the catch-all. Without OLLAMA_API_URL, /api/* reaches the filter like any path.
        found.append(ollama_route(opts.ollama, opts))
    codex = upstream_route(opts.codex.cluster, {"prefix": "/"}, opts.codex.cluster, opts.codex, opts)
    codex["request_body_buffer_limit"] = opts.request_buffer_limit_bytes
    if opts.credentials_upstream:
        codex["route"]["retry_policy"] = codex_retry_policy(opts)
    found.append(codex)
    return found


def _mode_prefix(opts: Options) -> str:
    """The reasoning-output prefixes of REASONING_OUTPUT_MODE=all (`/tagged/v1/...`)."""
    return "(/(" + "|".join(map(re.escape, opts.reasoning_output_prefixes)) + "))?"


def _path_matcher(regex: str) -> dict:
    # A StringMatcher regex must match the whole value (the query string included). Not
    # `:path`: by the time the router picks the virtual cluster, the filter has rewritten it.
    return {"name": CLIENT_PATH_HEADER, "string_match": {"safe_regex": {"regex": regex}}}


def virtual_clusters(opts: Options) -> List[dict]:
    """Per-endpoint upstream request stats (`vhost.any.vcluster.<name>.upstream_rq_<code>`).

    Requests the filter answers itself (health, models, errors) never reach the router and are
    not counted here; the HCM's `http.codex.downstream_rq_<class>xx` counts every response.
    """
    mode_prefix = _mode_prefix(opts)
    return [
        {"name": "chat", "headers": [_path_matcher(f"^{mode_prefix}/v1/chat/completions(\\?.*)?$")]},
        {"name": "completions", "headers": [_path_matcher(f"^{mode_prefix}/v1/completions(\\?.*)?$")]},
        {"name": "responses", "headers": [_path_matcher(f"^{mode_prefix}/v1/responses(/compact)?(\\?.*)?$")]},
        {"name": "ollama", "headers": [_path_matcher("^/api/.*$")]},
    ]


def route_config(opts: Options) -> dict:
    return {
        "name": "codex_routes",
        "virtual_hosts": [
            {
                "name": VIRTUAL_HOST,
                "domains": ["*"],
                "routes": routes(opts),
                "virtual_clusters": virtual_clusters(opts),
                "typed_per_filter_config": {"envoy.filters.http.cors": cors_policy(opts)},
            }
        ],
    }


# --------------------------------------------------------------------------------------
# Envoy's own error replies, OpenAI-shaped
#
# Envoy answers some requests itself: an upstream that resets or goes silent, a body over
# the buffer limit, a malformed request, overload. Its text/plain bodies are rewritten here
# rather than in the filter because many of them never pass through the filter: a reply made
# after the filter has seen the response headers (a non-streaming client whose upstream fails
# mid-body) goes straight to the client, and a codec error comes before any filter runs. The
# filter still translates the plain-text replies it does see, for configurations without
# this block (a mesh's Envoy).

# The response code details of the filter's own replies (src/core/flow/step.rs): never
# rewritten.
FILTER_REPLY_DETAILS = "codex_filter"

TIMEOUT_FLAGS = ["UT", "SI", "UMSDR"]
UNREACHABLE_FLAGS = ["UF", "UH", "UO", "URX", "NC", "DF"]
RESET_FLAGS = ["UC", "UPE", "UR"]
OVERLOAD_FLAGS = ["OM", "DO"]


def _cel_filter(expression: str) -> dict:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": expression,
            },
        }
    }


def _error_mapper(condition: dict, kind: str, code: Optional[str], message: str, status: Optional[int] = None,
                  retry_after: Optional[int] = None) -> dict:
    mapper: dict = {
        "filter": {"and_filter": {"filters": [_cel_filter(f"response.code_details != '{FILTER_REPLY_DETAILS}'"), condition]}},
        "body_format_override": {
            "json_format": {"error": {"message": message, "type": kind, "param": None, "code": code}},
        },
    }
    if status is not None:
        mapper["status_code"] = status
    if retry_after is not None:
        mapper["headers_to_add"] = [
            {"header": {"key": "retry-after", "value": str(retry_after)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ]
    return mapper


def _flags(flags: List[str]) -> dict:
    return {"response_flag_filter": {"flags": list(flags)}}


def _status_at_least(status: int) -> dict:
    return {"status_code_filter": {"comparison": {"op": "GE", "value": {"default_value": status, "runtime_key": "codex_unused"}}}}


def local_reply_config(opts: Options) -> dict:
    """Mappers for Envoy's own replies; the first that matches rewrites the status and body."""
    idle = opts.stream_idle_seconds
    return {
        "mappers": [
            _error_mapper(
                _cel_filter("response.code_details == 'request_payload_too_large'"),
                "invalid_request_error",
                "request_too_large",
                f"The request body is larger than the {opts.max_request_body_bytes}-byte limit (MAX_REQUEST_BODY_BYTES).",
                status=413,
            ),
            _error_mapper(
                _cel_filter("response.code_details == 'response_payload_too_large'"),
                "upstream_error",
                "upstream_response_too_large",
                "The answer is larger than Envoy buffers for a non-streaming response; send the "
                'request with "stream": true, or raise MAX_REQUEST_BODY_BYTES.',
                status=502,
            ),
            _error_mapper(
                _flags(TIMEOUT_FLAGS),
                "upstream_error",
                "upstream_timeout",
                f"Nothing arrived on this request for {idle} s (STREAM_IDLE_TIMEOUT_SECONDS): the upstream "
                "or the client went silent. Retry the request.",
                status=504,
            ),
            _error_mapper(
                _flags(UNREACHABLE_FLAGS),
                "upstream_error",
                "upstream_unavailable",
                "Cannot reach the upstream (connection failed or no healthy upstream); retry shortly.",
                status=502,
            ),
            _error_mapper(
                _flags(RESET_FLAGS),
                "upstream_error",
                "upstream_reset",
                "The upstream closed or reset the connection before the answer was complete; retry the request.",
                status=502,
            ),
            _error_mapper(
                _flags(OVERLOAD_FLAGS),
                "server_error",
                "overloaded",
                "The proxy is overloaded; retry shortly.",
                status=503,
                retry_after=1,
            ),
            _error_mapper(
                _cel_filter("response.code_details.startsWith('wasm_fail')"),
                "server_error",
                "filter_unavailable",
                "The filter failed and is being reloaded; retry shortly.",
                status=503,
                retry_after=1,
            ),
            _error_mapper(
                _flags(["NR"]),
                "invalid_request_error",
                "unknown_url",
                "Unknown route %REQ(:PATH)%. This server answers /v1/chat/completions, /v1/completions, /v1/responses and /v1/models.",
                status=404,
            ),
            _error_mapper(
                {
                    "or_filter": {
                        "filters": [
                            _flags(["DPE"]),
                            _cel_filter("response.code_details.matches('^http[123][.]')"),
                        ]
                    }
                },
                "invalid_request_error",
                "invalid_http_request",
                "The request is not valid HTTP: %LOCAL_REPLY_BODY% (%RESPONSE_CODE_DETAILS%).",
            ),
            _error_mapper(
                _status_at_least(500),
                "server_error",
                None,
                "The proxy answered HTTP %RESPONSE_CODE% (%RESPONSE_CODE_DETAILS%): %LOCAL_REPLY_BODY%",
            ),
            # 2xx and 3xx local replies (CORS preflights) keep their bodies.
            _error_mapper(
                _status_at_least(400),
                "invalid_request_error",
                None,
                "The proxy answered HTTP %RESPONSE_CODE% (%RESPONSE_CODE_DETAILS%): %LOCAL_REPLY_BODY%",
            ),
        ]
    }


def http_connection_manager(opts: Options, filter_config: Optional[Path] = None) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "codex",
            "codec_type": "AUTO",
            "request_timeout": "0s",
            # Reasoning models can be silent for minutes before the first token.
            "stream_idle_timeout": opts.stream_idle_timeout,
            # Lets a WebSocket handshake reach the filter, which refuses it with 426 (Codex CLI
            # then uses HTTP at once); without it Envoy answers 403 itself and the client retries.
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "route_config": route_config(opts),
            "local_reply_config": local_reply_config(opts),
            # CORS first: Envoy answers preflights itself (no key needed) and adds the CORS
            # headers to every response, the filter's own replies included.
            "http_filters": [cors_filter(), client_path_filter(), wasm_filter(opts, filter_config), router_filter()],
        },
    }


def listener(opts: Options, filter_config: Optional[Path] = None) -> dict:
    return {
        "name": "codex_openai_wrapper",
        "address": {"socket_address": {"address": opts.listen_address, "port_value": opts.port}},
        # The filter buffers the whole request body; beyond this Envoy answers 413 itself.
        "per_connection_buffer_limit_bytes": opts.buffer_limit_bytes,
        "filter_chains": [{"filters": [http_connection_manager(opts, filter_config)]}],
    }


def admin(opts: Options, socket: Optional[Path] = None) -> dict:
    # Loopback only: /config_dump and /quitquitquit must not be reachable from outside. With
    # `socket`, a unix socket only its owner may connect to: /config_dump then shows the
    # reloadable filter configuration, keys and login included.
    if socket is not None:
        return {"address": {"pipe": {"path": str(socket), "mode": 0o600}}}
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": opts.admin_port}}}


def stats_config() -> dict:
    """The filter's per-key and per-account stats (`codex_openai_wrapper.key.<name>.<stat>`)
    carry the name as a tag, so Prometheus sees one metric per stat with a `codex_key` (or
    `codex_account`) label rather than one metric per name. Envoy keeps a module's own stats
    under `wasmcustom.`, which its Prometheus output leaves out."""
    return {
        "stats_tags": [
            {"tag_name": f"codex_{kind}", "regex": rf"^(?:wasmcustom\.)?codex_openai_wrapper\.{kind}\.(([A-Za-z0-9_-]+)\.)"}
            for kind in ("key", "account")
        ]
    }


def build_config(opts: Options, filter_config: Optional[Path] = None, admin_socket: Optional[Path] = None) -> dict:
    """The Envoy bootstrap as a dict; with `filter_config`, the main filter's configuration is
    loaded from that ECDS file, and the credentials instance's from the one beside it
    (`write_filter_configs`)."""
    config: dict = {}
    if filter_config is not None:
        # Envoy asks every xDS subscription, a file-based one too, for a node identity.
        config["node"] = {"id": PLUGIN_NAME, "cluster": PLUGIN_NAME}
    config["admin"] = admin(opts, admin_socket)
    config["stats_config"] = stats_config()
    config["static_resources"] = {"listeners": [listener(opts, filter_config)], "clusters": clusters(opts, filter_config)}
    return config


def render_config(
    settings: Mapping[str, str], wasm_path: Optional[Path] = None, wasm_path_in_config: Optional[str] = None
) -> dict:
    """The Envoy bootstrap for these settings (they are the whole environment codex-settings
    sees); raises ConfigError on a bad setting."""
    return build_config(options_from(resolve(settings), wasm_path, wasm_path_in_config))


# --------------------------------------------------------------------------------------
# Commented YAML (envoy/envoy.example.yaml)

# Where the example's module path points: the path docker compose mounts it at.
EXAMPLE_WASM_PATH = "/etc/envoy/codex_openai_wrapper.wasm"
EXAMPLE_HEADER = """\
# The Envoy configuration envoy/render.py writes for the default settings: no .dev.vars, an
# empty environment, the module at the path docker compose mounts it at. Generated, do not
# edit: `make envoy-example` rewrites it and tests/test_render.py checks that it is current.
# README.md, "Configuration", lists the settings that change it. Secrets never appear here: the
# filter reads them from Envoy's environment (host_env_keys below).

"""

# Comments for the example, by path: mapping keys, and list items by their `name` (or "*").
_LISTENER = ("static_resources", "listeners", "codex_openai_wrapper")
_HCM = _LISTENER + ("filter_chains", "0", "filters", "envoy.filters.network.http_connection_manager", "typed_config")
_VHOST = _HCM + ("route_config", "virtual_hosts", VIRTUAL_HOST)
_WASM = _HCM + ("http_filters", "envoy.filters.http.wasm")
_CLUSTERS = ("static_resources", "clusters")
_PROTOCOL = ("typed_extension_protocol_options", "envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
EXAMPLE_COMMENTS: Dict[Tuple[str, ...], str] = {
    ("admin",): (
        "Loopback only (ENVOY_ADMIN_PORT): /config_dump and /quitquitquit must not be\n"
        "reachable from outside; /stats/prometheus and /ready are here too."
    ),
    _LISTENER: (
        "The OpenAI-compatible API (LISTEN_ADDRESS, PORT)."
    ),
    _LISTENER + ("per_connection_buffer_limit_bytes",): (
        "The filter buffers the whole request body: MAX_REQUEST_BODY_BYTES plus 1 MiB\n"
        "for headers and framing. Beyond it Envoy answers 413 itself."
    ),
    _HCM + ("request_timeout",): (
        "No overall request timeout: a stream lasts as long as the model writes."
    ),
    _HCM + ("stream_idle_timeout",): (
        "Reasoning models can be silent for minutes before the first token\n"
        "(STREAM_IDLE_TIMEOUT_SECONDS; 0 disables it)."
    ),
    _VHOST + ("routes", "codex"): (
        "Everything goes to the Responses backend; the filter answers /, /health and\n"
        "/v1/models itself and rewrites the path of the rest to the backend's. With\n"
        "OLLAMA_API_URL set, a route for /api/* to the `ollama` cluster comes first."
    ),
    _VHOST + ("routes", "codex", "route", "timeout"): (
        "The default 15 s would cut long streams; the idle timeouts apply instead."
    ),
    _VHOST + ("routes", "codex", "route", "host_rewrite_literal"): (
        "The host of the Responses URL: UPSTREAM_RESPONSES_URL, else UPSTREAM_BASE_URL +\n"
        "UPSTREAM_WIRE_API_PATH, else CHATGPT_RESPONSES_URL."
    ),
    _VHOST + ("routes", "codex", "route", "retry_policy"): (
        "One retry, only for a 401: the credentials instance (in the cluster below) has\n"
        "marked the token stale by then, and the retry waits for the refreshed one.\n"
        "ChatGPT login in full mode only."
    ),
    _VHOST + ("routes", "codex", "request_body_buffer_limit"): (
        "What Envoy may hold of one request on this route (this also bounds a response):\n"
        "twice the listener's buffer. The filter keeps at most MAX_REQUEST_BODY_BYTES and\n"
        "drops the rest of an oversize body, but one socket read lands on top before the\n"
        "filter sees it; Envoy's own 413 would come early and reset a client still writing."
    ),
    _VHOST + ("routes", "codex", "request_headers_to_remove"): (
        "Envoy adds these towards the upstream; a third-party backend must not see them."
    ),
    _VHOST + ("virtual_clusters",): (
        "Per-endpoint upstream stats (vhost.any.vcluster.<name>.upstream_rq_<code>),\n"
        "matched on the client's path as stamped before the filter rewrote it. Answers\n"
        "the filter gives itself are not upstream requests; http.codex.downstream_rq_*\n"
        "counts every response."
    ),
    _VHOST + ("typed_per_filter_config",): (
        "CORS_ALLOW_ORIGINS: `*` without credentials, or a list of exact origins with\n"
        "them. Envoy sends allow_headers verbatim and browsers do not expand patterns,\n"
        "so the OpenAI SDK's headers are listed one by one."
    ),
    _HCM + ("upgrade_configs",): (
        "WebSocket handshakes reach the filter, which answers them 426 (no WebSocket\n"
        "here): Codex CLI then falls back to HTTP at once instead of retrying."
    ),
    _HCM + ("local_reply_config",): (
        "Envoy's own replies (an upstream reset or silence, an oversize body, a malformed\n"
        "request, overload) as OpenAI-shaped JSON: many never pass through the filter.\n"
        "The first mapper that matches rewrites status and body; the filter's own replies\n"
        "(response code details codex_filter) and 2xx replies are left alone."
    ),
    _HCM + ("http_filters",): (
        "CORS first: Envoy answers preflights itself (no key needed) and adds the CORS\n"
        "headers to every response, the filter's own answers included."
    ),
    _HCM + ("http_filters", "envoy.filters.http.header_mutation"): (
        "Drops every x-envoy-* header the client sent (Envoy would act on some, and\n"
        "none may reach an upstream), then stamps the client's :path for the virtual\n"
        "clusters (the routes strip it before the upstream)."
    ),
    _WASM: (
        "The filter. Its secrets never appear in this file: it reads them from Envoy's\n"
        "environment (host_env_keys)."
    ),
    _WASM + ("typed_config", "config", "failure_policy"): (
        "A panic kills the worker's VM; reload it instead of failing every later request."
    ),
    _WASM + ("typed_config", "config", "configuration"): (
        "Non-secret values only (this is visible in /config_dump): full mode, the body\n"
        "limit, and that the Codex cluster carries the credentials instance."
    ),
    _WASM + ("typed_config", "config", "vm_config"): (
        "The same for both instances, so they share one VM (and its shared data) per worker."
    ),
    _WASM + ("typed_config", "config", "allow_on_headers_stop_iteration"): (
        "Envoy >= 1.35: request headers wait until the body is translated.\n"
        "ENVOY_PORTABLE=true leaves it out (Istio's WasmPlugin, Envoy Gateway)."
    ),
    _HCM + ("http_filters", "envoy.filters.http.router", "typed_config", "suppress_envoy_headers"): (
        "No x-envoy-* headers towards the third-party upstream."
    ),
    _CLUSTERS + ("codex",): (
        "The Responses backend. An https host name is resolved lazily (LOGICAL_DNS: one\n"
        "name behind a CDN); a plain-HTTP name uses STRICT_DNS, an IP address STATIC."
    ),
    _CLUSTERS + ("codex", "per_connection_buffer_limit_bytes"): (
        "Reads from the backend in chunks of at most 64 KiB: a burst of events reaches\n"
        "the client in several callbacks, which brings the first token sooner."
    ),
    _CLUSTERS + ("codex",) + _PROTOCOL + ("upstream_http_protocol_options",): (
        "SNI and certificate checks follow the rewritten host."
    ),
    _CLUSTERS + ("codex",) + _PROTOCOL + ("auto_config",): (
        "ALPN picks HTTP/2 where the backend offers it."
    ),
    _CLUSTERS + ("codex",) + _PROTOCOL + ("http_filters",): (
        "The filter's credentials instance runs once per upstream attempt, so the 401\n"
        "retry goes out with the token refreshed in between."
    ),
    _CLUSTERS + ("codex", "transport_socket"): (
        "Verified against ENVOY_CA_BUNDLE."
    ),
    _CLUSTERS + ("oauth",): (
        "The OAuth token endpoint (CODEX_REFRESH_TOKEN_URL): the filter refreshes the\n"
        "ChatGPT tokens through it. Clusters that exist only when their variable is set\n"
        "look the same: ollama (OLLAMA_API_URL), instructions_base and instructions_codex\n"
        "(INSTRUCTIONS_BASE_URL, INSTRUCTIONS_CODEX_URL), etcd (TOKEN_STORE=etcd)."
    ),
    _CLUSTERS + ("codex_catalogue",): (
        "The Codex backend's host again (ChatGPT login only): the filter fetches the\n"
        "account's model catalogue through it (CATALOGUE_CLUSTER). It has no credentials\n"
        "instance: a call the filter makes cannot pass through a filter of its own VM."
    ),
}


def _yaml_scalar(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    plain = re.fullmatch(r"[A-Za-z_/][A-Za-z0-9_./:()+-]*(?<!:)", text) and text.lower() not in (
        "y", "n", "yes", "no", "on", "off", "true", "false", "null",
    )  # fmt: skip
    return text if plain else json.dumps(text)


def _path_matches(pattern: Tuple[str, ...], path: Tuple[str, ...]) -> bool:
    return len(pattern) == len(path) and all(p in ("*", q) for p, q in zip(pattern, path))


def to_yaml(
    config: Any, comments: Mapping[Tuple[str, ...], str] = EXAMPLE_COMMENTS, header: str = ""
) -> Tuple[str, List[Tuple[str, ...]]]:
    """Block-style YAML of a JSON-like value with `comments` above the nodes they name, and
    the comment paths that matched nothing (so a comment cannot silently fall off)."""
    lines: List[str] = []
    used = set()

    def comment(path: Tuple[str, ...], indent: str) -> None:
        for pattern, text in comments.items():
            if _path_matches(pattern, path):
                used.add(pattern)
                lines.extend(f"{indent}# {line}".rstrip() for line in text.splitlines())

    def emit(value: Any, path: Tuple[str, ...], indent: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                comment(path + (key,), indent)
                emit_entry(f"{indent}{_yaml_scalar(key)}:", item, path + (key,), indent)
        else:
            for index, item in enumerate(value):
                name = item.get("name") if isinstance(item, dict) else None
                item_path = path + (str(name if isinstance(name, str) else index),)
                comment(item_path, indent)
                emit_entry(f"{indent}-", item, item_path, indent, in_list=True)

    def emit_entry(lead: str, value: Any, path: Tuple[str, ...], indent: str, in_list: bool = False) -> None:
        if isinstance(value, (dict, list)) and value:
            if in_list and isinstance(value, dict):
                # `- first_key: ...`, the other keys aligned under the first; the first key's
                # comments go above the dash.
                start = len(lines)
                emit(value, path, indent + "  ")
                first = next(i for i in range(start, len(lines)) if not lines[i].lstrip().startswith("#"))
                lines[first] = f"{lead} {lines[first][len(indent) + 2 :]}"
                for i in range(start, first):
                    lines[i] = indent + lines[i][len(indent) + 2 :]
            else:
                lines.append(lead)
                emit(value, path, indent + "  ")
        elif isinstance(value, (dict, list)):
            lines.append(f"{lead} {'{}' if isinstance(value, dict) else '[]'}")
        else:
            lines.append(f"{lead} {_yaml_scalar(value)}")

    emit(config, (), "")
    return header + "\n".join(lines) + "\n", [p for p in comments if p not in used]


def example_yaml() -> str:
    """envoy/envoy.example.yaml as the renderer writes it now."""
    text, unused = to_yaml(render_config({}, wasm_path_in_config=EXAMPLE_WASM_PATH), header=EXAMPLE_HEADER)
    if unused:
        raise ConfigError(f"EXAMPLE_COMMENTS name nodes the default configuration does not have: {unused}")
    return text


def write_text(text: str, out: Path) -> Path:
    """Write atomically, so an Envoy starting meanwhile never reads half a file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def write_config(config: dict, out: Path, fmt: str = "json") -> Path:
    """JSON, or YAML with the example's comments where they apply."""
    text = to_yaml(config)[0] if fmt == "yaml" else json.dumps(config, indent=2) + "\n"
    return write_text(text, out)


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
    parser.add_argument("--format", choices=("json", "yaml"), default="json", help="json (default) or yaml")
    parser.add_argument(
        "--example",
        action="store_true",
        help="write envoy/envoy.example.yaml's content (default settings, commented YAML); ignores the other options",
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.example:
            write_text(example_yaml(), args.out)
            return 0
        settings = load_settings(args.env_file)
        if args.listen_port is not None:
            settings["PORT"] = str(args.listen_port)
        if args.listen_address is not None:
            settings["LISTEN_ADDRESS"] = args.listen_address
        write_config(render_config(settings, args.wasm, args.wasm_path_in_config), args.out, args.format)
    except ConfigError as exc:
        print(f"render.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
