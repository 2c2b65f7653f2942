"""docker/compose.yaml, checked without a container engine.

The file is validated against the Compose specification's JSON schema (vendored in tests/fixtures/compose-spec/,
Apache-2.0), before and after variable interpolation, and the facts the stack relies on are asserted: the shared
ray_metrics volume, Prometheus's read-only view of it at /tmp/ray, ports bound to 127.0.0.1 by default, the
Grafana password without a default, the Ray image tag as a variable, and agreement with the Prometheus and
Grafana configs. When a `docker compose` CLI is present, `docker compose config` must accept the file too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is needed to validate compose.yaml (test extra)")

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
SCHEMA = REPO / "tests" / "fixtures" / "compose-spec" / "compose-spec.json"

RAY_SERVICES = ("ray-head", "ray-worker")
REQUIRED_ENV = {"GRAFANA_ADMIN_PASSWORD": "test-password"}

_VAR = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariable(Exception):
    pass


def interpolate(value, env: dict[str, str]):
    """Compose-style interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg")
        current = env.get(name)
        unset_or_empty = current is None or current == ""
        if op == ":-":
            return arg if unset_or_empty else current
        if op == "-":
            return arg if current is None else current
        if op == ":?" and unset_or_empty or op == "?" and current is None:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def resolved(raw) -> dict:
    """The file as Compose sees it with only the required variables set (every other one at its default)."""
    return interpolate(raw, dict(REQUIRED_ENV))


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    assert "draft-07" in schema["$schema"]  # spelled without the trailing '#', so name the draft explicitly
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_matches_compose_spec_schema(raw, validator):
    assert _errors(validator, raw) == []


def test_interpolated_compose_file_matches_compose_spec_schema(resolved, validator):
    assert _errors(validator, resolved) == []


def test_schema_validation_catches_mistakes(raw, validator):
    """Guard against a schema that accepts anything."""
    broken = json.loads(json.dumps(raw))
    broken["services"]["prometheus"]["volumes_typo"] = []
    broken["services"]["grafana"]["ports"] = "13000:3000"
    assert len(_errors(validator, broken)) >= 2


def _ports(service: dict) -> list[dict]:
    return service.get("ports", [])


def _volume_entries(service: dict) -> list[tuple[str, str, str]]:
    out = []
    for v in service.get("volumes", []):
        assert isinstance(v, str), f"use the short volume syntax: {v!r}"
        parts = v.split(":")
        out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return out


# ------------------------------------------------------------------ volumes and mounts


def test_ray_metrics_volume_shared_between_ray_head_and_prometheus(raw):
    assert "ray_metrics" in raw["volumes"]
    head = _volume_entries(raw["services"]["ray-head"])
    prom = _volume_entries(raw["services"]["prometheus"])
    assert ("ray_metrics", "/tmp/ray", "rw") in head
    assert ("ray_metrics", "/tmp/ray", "ro") in prom, "Prometheus must mount ray_metrics read-only at /tmp/ray"


def test_only_the_head_writes_ray_metrics(raw):
    writers = {
        name
        for name, svc in raw["services"].items()
        for src, _dst, mode in _volume_entries(svc)
        if src == "ray_metrics" and mode != "ro"
    }
    assert writers == {"ray-head", "ray-metrics-init"}
    # Workers keep their own /tmp/ray: the head's discovery file lists every node anyway.
    assert all(src != "ray_metrics" for src, _, _ in _volume_entries(raw["services"]["ray-worker"]))


def test_bind_mount_sources_exist(raw):
    for name, svc in raw["services"].items():
        for src, dst, _mode in _volume_entries(svc):
            if src.startswith("."):
                assert (DOCKER / src).exists(), f"{name}: bind source {src} (for {dst}) does not exist"


def test_serve_app_code_is_mounted_on_every_ray_node(raw):
    for name in RAY_SERVICES:
        targets = {(src, dst, mode) for src, dst, mode in _volume_entries(raw["services"][name])}
        assert ("../serve_apps", "/home/ray/app/serve_apps", "ro") in targets, name
        assert ("../harness", "/home/ray/app/harness", "ro") in targets, name
        assert raw["services"][name]["environment"]["PYTHONPATH"] == "/home/ray/app"


# ------------------------------------------------------------------ ports


@pytest.mark.parametrize(
    ("service", "target", "variable", "default"),
    [
        ("prometheus", 9090, "PROMETHEUS_PORT", "19090"),
        ("grafana", 3000, "GRAFANA_PORT", "13000"),
    ],
)
def test_ui_ports_from_env_with_defaults(raw, resolved, service, target, variable, default):
    [raw_port] = [p for p in _ports(raw["services"][service]) if p["target"] == target]
    assert raw_port["published"] == f"${{{variable}:-{default}}}"
    [port] = [p for p in _ports(resolved["services"][service]) if p["target"] == target]
    assert (port["host_ip"], port["published"]) == ("127.0.0.1", default)
    overridden = interpolate(raw, {**REQUIRED_ENV, variable: "29999"})
    [port] = [p for p in _ports(overridden["services"][service]) if p["target"] == target]
    assert port["published"] == "29999"


def test_every_published_port_binds_to_loopback_by_default(raw, resolved):
    published = [(name, p) for name, svc in resolved["services"].items() for p in _ports(svc)]
    assert published, "no published ports?"
    for name, port in published:
        assert isinstance(port, dict), f"{name}: use the long port syntax so host_ip is explicit"
        assert port.get("host_ip") == "127.0.0.1", f"{name}:{port.get('target')} must bind to 127.0.0.1 by default"
    for name, svc in raw["services"].items():
        for p in _ports(svc):
            assert p["host_ip"] == "${BIND_ADDRESS:-127.0.0.1}", name
    opened = interpolate(raw, {**REQUIRED_ENV, "BIND_ADDRESS": "0.0.0.0"})
    assert {p["host_ip"] for svc in opened["services"].values() for p in _ports(svc)} == {"0.0.0.0"}


def test_ray_client_port_published_for_harness(resolved):
    targets = {p["target"]: p["published"] for p in _ports(resolved["services"]["ray-head"])}
    assert targets[10001] == "10001"  # harness run --ray-address ray://127.0.0.1:10001


# ------------------------------------------------------------------ secrets and variables


def test_grafana_password_has_no_default(raw):
    env = raw["services"]["grafana"]["environment"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    with pytest.raises(MissingVariable, match="GRAFANA_ADMIN_PASSWORD"):
        interpolate(raw, {})
    with pytest.raises(MissingVariable):
        interpolate(raw, {"GRAFANA_ADMIN_PASSWORD": ""})  # ':?' rejects empty too
    assert (
        interpolate(raw, REQUIRED_ENV)["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
        == "test-password"
    )


def test_no_other_secret_has_a_default(raw):
    text = COMPOSE.read_text()
    assert not re.search(r"PASSWORD:-", text)


def test_ray_image_tag_is_a_variable(raw, resolved):
    images = {raw["services"][s]["image"] for s in (*RAY_SERVICES, "ray-metrics-init")}
    assert len(images) == 1, "all Ray containers must run the same image"
    [image] = images
    assert "${RAY_IMAGE_TAG:-" in image
    matrix = interpolate(raw, {**REQUIRED_ENV, "RAY_IMAGE_TAG": "2.59.0-py311-cu128"})
    assert matrix["services"]["ray-head"]["image"].endswith(":2.59.0-py311-cu128")
    assert resolved["services"]["ray-head"]["image"].split(":")[1].startswith("2.60.0")


# ------------------------------------------------------------------ Ray nodes


def _flag(command: list[str], name: str) -> str | None:
    for arg in command:
        if arg == name:
            return ""
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def test_ray_head_command(raw):
    cmd = raw["services"]["ray-head"]["command"]
    assert cmd[:3] == ["ray", "start", "--head"]
    assert _flag(cmd, "--block") == ""
    port = int(_flag(cmd, "--metrics-export-port"))
    assert port == 8080
    assert not 10002 <= port <= 19999, "must lie outside Ray's default worker port range"
    assert _flag(cmd, "--dashboard-host") == "0.0.0.0"
    assert _flag(cmd, "--ray-client-server-port") == "10001"


def test_workers_join_head_with_same_metrics_port(raw):
    cmd = raw["services"]["ray-worker"]["command"]
    assert cmd[:2] == ["ray", "start"] and "--head" not in cmd
    assert _flag(cmd, "--address") == "ray-head:6379"
    assert _flag(cmd, "--metrics-export-port") == _flag(raw["services"]["ray-head"]["command"], "--metrics-export-port")


def _gpu_devices(svc: dict) -> list[dict]:
    return svc["deploy"]["resources"]["reservations"]["devices"]


@pytest.mark.parametrize("service", RAY_SERVICES)
def test_ray_nodes_reserve_gpus(raw, service):
    [dev] = _gpu_devices(raw["services"][service])
    assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"]
    assert "count" in dev


def test_workers_are_scalable(raw, resolved):
    assert raw["services"]["ray-worker"]["deploy"]["replicas"] == "${RAY_GPU_WORKERS:-0}"
    assert "container_name" not in raw["services"]["ray-worker"], "container_name prevents --scale"
    scaled = interpolate(raw, {**REQUIRED_ENV, "RAY_GPU_WORKERS": "3"})
    assert scaled["services"]["ray-worker"]["deploy"]["replicas"] == "3"


def test_ray_env_for_metrics_and_serve(raw):
    env = raw["services"]["ray-head"]["environment"]
    assert env["RAY_SERVE_DEFAULT_HTTP_HOST"] == "0.0.0.0"
    assert "RAY_metrics_report_interval_ms" in env


# ------------------------------------------------------------------ agreement with the other configs


def test_prometheus_uses_the_config_dir_and_listen_address(raw):
    prom = raw["services"]["prometheus"]
    cmd = prom["command"]
    assert _flag(cmd, "--config.file") == "/etc/prometheus/prometheus.yml"
    assert _flag(cmd, "--web.listen-address") == "0.0.0.0:9090"
    assert ("./prometheus", "/etc/prometheus", "ro") in _volume_entries(prom)
    assert (DOCKER / "prometheus" / "prometheus.yml").is_file()


def test_prometheus_discovery_file_is_inside_the_shared_volume():
    cfg = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    [ray] = [j for j in cfg["scrape_configs"] if j["job_name"] == "ray"]
    [sd_file] = ray["file_sd_configs"][0]["files"]
    assert sd_file.startswith("/tmp/ray/")


def test_static_head_job_matches_head_metrics_port(raw):
    cfg = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    [static] = [j for j in cfg["scrape_configs"] if j["job_name"] == "ray-head-static"]
    port = _flag(raw["services"]["ray-head"]["command"], "--metrics-export-port")
    assert static["static_configs"][0]["targets"] == [f"ray-head:{port}"]
    assert raw["services"]["ray-head"]["hostname"] == "ray-head"


def test_grafana_provisioning_agrees_with_compose(raw):
    graf = raw["services"]["grafana"]
    mounts = {dst: src for src, dst, _ in _volume_entries(graf)}
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    ds = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    [prom] = ds["datasources"]
    assert prom["type"] == "prometheus" and prom["url"] == "http://prometheus:9090" and prom["isDefault"] is True
    cfg = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    assert prom["jsonData"]["timeInterval"] == cfg["global"]["scrape_interval"]
    boards = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    [provider] = boards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert mounts["/var/lib/grafana/dashboards"] == "./grafana/dashboards"
    assert (DOCKER / "grafana" / "dashboards").is_dir()


def test_alertmanager_is_optional_and_configured(raw):
    am = raw["services"]["alertmanager"]
    assert am["profiles"] == ["alerting"]
    assert yaml.safe_load((DOCKER / "alertmanager" / "alertmanager.yml").read_text())["route"]["receiver"] == "default"
    cfg = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


# ------------------------------------------------------------------ a real Compose parser, where installed


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def test_docker_compose_config_accepts_the_file():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` CLI here; the JSON-schema tests above cover the file")
    env = {**os.environ, **REQUIRED_ENV}
    ok = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    env.pop("GRAFANA_ADMIN_PASSWORD")
    bad = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in bad.stderr


def test_one_shot_init_is_adopted_so_up_wait_succeeds(raw):
    """`docker compose up --wait` treats an exited container as a failure unless a running service depends on it
    with condition service_completed_successfully."""
    services = raw["services"]
    one_shots = {n for n, s in services.items() if s.get("restart") == "no"}
    assert one_shots == {"ray-metrics-init"}
    for name in one_shots:
        adopters = [
            n
            for n, s in services.items()
            if isinstance(s.get("depends_on"), dict)
            and s["depends_on"].get(name, {}).get("condition") == "service_completed_successfully"
        ]
        assert adopters, f"{name} is not adopted by any long-running service"


def test_model_cache_volume_survives_per_run_project_names(resolved):
    assert resolved["volumes"]["hf_cache"]["name"] == "harness_hf_cache"
