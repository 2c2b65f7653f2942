"""The seed's compose stack (docker/compose.yaml), for real, on a machine with no GPU and no image registry.

    build_images()  Debian base (debootstrap + docker import) → Ray and Prometheus images from Debian's packages
                    and PyPI; each tagged by a hash of what goes into it, so a machine builds it once
    compose_up()    compose.yaml + compose.cpu.yaml, ports published on 127.0.0.1, a subnet of the project's own
    compose_down()  the project's containers, network and volumes, nothing else

The harness then reaches the stack like any attached cluster: `--dashboard-url`, `--prometheus-url`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import StackError
from harness.paths import asset_dir
from harness.stack.net import LOOPBACK, free_port

DEFAULT_RAY_VERSION = "2.60.0"
DEFAULT_PROJECT = "harness-cpu"
BASE_TAG = "harness-debian:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUBNET_POOL = ipaddress.ip_network("10.232.0.0/16")  # /24s of the project's own (the multi-node stack: 10.231.x)
INSTALL_HINT = (
    "as root: apt-get install -y docker.io && dockerd & ; Compose v2: Debian 13's docker-compose package "
    "(its usr/libexec/docker/cli-plugins/docker-compose into /usr/local/lib/docker/cli-plugins/); .ci/setup does both"
)


@dataclass
class Images:
    base: str
    ray: str
    prometheus: str
    ray_version: str
    built: list[str] = field(default_factory=list)  # built by this call (the rest were cached)
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass
class ComposeStack:
    project: str
    dashboard_url: str
    prometheus_url: str
    serve_url: str
    ray_client_address: str
    subnet: str
    workers: int
    images: dict[str, str]
    ports: dict[str, int]
    alerting: bool = False
    alertmanager_url: str | None = None
    up_s: float | None = None  # `up` until every Ray node's targets are UP in Prometheus
    targets_up_s: float | None = None  # of which: containers healthy until Prometheus scraped every node

    def to_dict(self) -> dict:
        return asdict(self)


# ---------- the engine ----------


def docker(*args: str, timeout_s: float = 600.0, check: bool = True, input_bytes: bytes | None = None):
    try:
        p = subprocess.run(["docker", *args], capture_output=True, timeout=timeout_s, input=input_bytes)
    except FileNotFoundError:
        raise StackError("the `docker` command was not found", fix=INSTALL_HINT) from None
    except subprocess.TimeoutExpired:
        raise StackError(
            f"`docker {' '.join(args[:3])}` did not finish within {timeout_s:.0f} s",
            fix="check the Docker daemon (docker info)",
        ) from None
    if check and p.returncode != 0:
        raise StackError(
            f"`docker {' '.join(args[:4])}` failed (exit {p.returncode}): {_tail(p.stderr or p.stdout)}",
            fix="see the message above; `docker info` shows the daemon's state",
        )
    return p


def check_docker() -> None:
    """Docker CLI, a running daemon and the Compose v2 plugin, or exit 2 with the install line."""
    if shutil.which("docker") is None:
        raise StackError("the `docker` command was not found", fix=INSTALL_HINT)
    p = docker("info", "--format", "{{.ServerVersion}}", timeout_s=20.0, check=False)
    if p.returncode != 0:
        raise StackError(
            f"the Docker daemon is not reachable: {_tail(p.stderr)}",
            fix="start it (as root: dockerd &, or systemctl start docker); " + INSTALL_HINT,
        )
    p = docker("compose", "version", "--short", timeout_s=20.0, check=False)
    if p.returncode != 0:
        raise StackError("the Docker Compose v2 plugin (`docker compose`) is missing", fix=INSTALL_HINT)
    major = re.match(r"v?(\d+)", p.stdout.decode().strip())
    if not major or int(major[1]) < 2:
        raise StackError(
            f"Docker Compose {p.stdout.decode().strip()} is too old (v2.24+ reads !override/!reset)", fix=INSTALL_HINT
        )


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, timeout_s=30.0, check=False).returncode == 0


def image_id(tag: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", tag, timeout_s=30.0).stdout.decode().strip()


# ---------- images ----------


def _dockerfile(name: str) -> Path:
    return asset_dir("docker") / "images" / f"{name}.Dockerfile"


def image_tag(name: str, dockerfile_text: str, base_id: str, **args: str) -> str:
    """`harness-<name>:<version->hash`: the hash of the Dockerfile, its build args and the base image."""
    h = hashlib.sha256("\n".join([dockerfile_text, base_id, *[f"{k}={v}" for k, v in sorted(args.items())]]).encode())
    version = args.get("RAY_VERSION")
    return f"harness-{name}:{version + '-' if version else ''}{h.hexdigest()[:12]}"


def host_ca_bundle() -> Path:
    """The CA bundle this machine's TLS clients trust (pip in the build needs it where TLS is intercepted)."""
    for cand in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        ssl.get_default_verify_paths().cafile,
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if cand and Path(cand).is_file():
            return Path(cand)
    raise StackError(
        "no CA bundle found to hand to the image build",
        fix="set SSL_CERT_FILE to your CA bundle (e.g. /etc/ssl/certs/ca-certificates.crt)",
    )


def build_base(tag: str = BASE_TAG) -> bool:
    """A minimal Debian 12 base from debootstrap (no registry needed); False when it exists already."""
    if image_exists(tag):
        return False
    if shutil.which("debootstrap") is None:
        raise StackError("building the Debian base image needs `debootstrap`", fix="apt-get install -y debootstrap")
    if os.geteuid() != 0:
        raise StackError(
            "debootstrap needs root to build the Debian base image", fix="run `harness docker build` as root"
        )
    with tempfile.TemporaryDirectory(prefix="harness-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        p = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(root), _mirror()], capture_output=True, timeout=900
        )
        if p.returncode != 0:
            raise StackError(
                f"debootstrap failed (exit {p.returncode}): {_tail(p.stderr or p.stdout)}",
                fix="check that Debian's mirror is reachable (apt-get update)",
            )
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            imp = subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, capture_output=True, timeout=600)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(60)
        if imp.returncode != 0:
            raise StackError(f"docker import failed: {_tail(imp.stderr)}", fix="check the Docker daemon (docker info)")
    return True


def _mirror() -> str:
    """The Debian mirror apt uses here (deb822 or one-line sources), else Debian's CDN."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = f.read_text()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s", text, re.M
        )
        if m:
            return m[1]
    return DEBIAN_MIRROR


def build_image(name: str, base: str, *, rebuild: bool = False, **args: str) -> tuple[str, bool]:
    """(tag, built now?) of `docker/images/<name>.Dockerfile` on `base`, built only when its tag is missing."""
    text = _dockerfile(name).read_text()
    tag = image_tag(name, text, image_id(base), **args)
    if image_exists(tag) and not rebuild:
        return tag, False
    with tempfile.TemporaryDirectory(prefix=f"harness-build-{name}-") as ctx:
        (Path(ctx) / "Dockerfile").write_text(text)
        shutil.copyfile(host_ca_bundle(), Path(ctx) / "ca.pem")  # in the context only; deleted in the image's layer
        build_args = [a for k, v in {"BASE_IMAGE": base, **args}.items() for a in ("--build-arg", f"{k}={v}")]
        docker("build", "-q", "-t", tag, *build_args, ctx, timeout_s=1800.0)
    return tag, True


def build_images(ray_version: str = DEFAULT_RAY_VERSION, *, rebuild: bool = False, pip_extra: str = "") -> Images:
    """`pip_extra`: more pip requirements for the Ray image (e.g. "fastapi<0.140" for a Ray release that the newest
    FastAPI breaks); part of the image's hash."""
    check_docker()
    t0 = time.monotonic()
    built = [BASE_TAG] if build_base() else []
    t_base = time.monotonic()
    extra = {"PIP_EXTRA": pip_extra} if pip_extra else {}
    ray, ray_built = build_image("ray", BASE_TAG, rebuild=rebuild, RAY_VERSION=ray_version, **extra)
    t_ray = time.monotonic()
    prom, prom_built = build_image("prometheus", BASE_TAG, rebuild=rebuild)
    built += [t for t, b in ((ray, ray_built), (prom, prom_built)) if b]
    return Images(
        BASE_TAG,
        ray,
        prom,
        ray_version,
        built,
        {
            "base_s": round(t_base - t0, 1),
            "ray_s": round(t_ray - t_base, 1),
            "prometheus_s": round(time.monotonic() - t_ray, 1),
        },
    )


# ---------- compose ----------


def compose_files(cpu: bool = True) -> list[Path]:
    d = asset_dir("docker")
    return [d / "compose.yaml", d / "compose.cpu.yaml"] if cpu else [d / "compose.yaml"]


def compose(project: str, env: dict[str, str], *args: str, timeout_s: float = 300.0, check: bool = True):
    files = [a for f in compose_files(cpu="HARNESS_RAY_IMAGE" in env) for a in ("-f", str(f))]
    full_env = {**os.environ, **env}
    # compose.yaml refuses every command without a Grafana password; Grafana only runs with its profile
    full_env.setdefault("GRAFANA_ADMIN_PASSWORD", secrets.token_hex(16))
    try:
        p = subprocess.run(
            ["docker", "compose", "-p", project, *files, *args], capture_output=True, timeout=timeout_s, env=full_env
        )
    except subprocess.TimeoutExpired:
        raise StackError(
            f"`docker compose {' '.join(args[:2])}` did not finish within {timeout_s:.0f} s",
            fix=f"`harness docker down --project {project}`, then look at `docker compose logs`",
        ) from None
    if check and p.returncode != 0:
        raise StackError(
            f"`docker compose {' '.join(args[:3])}` failed (exit {p.returncode}): {_tail(p.stderr or p.stdout, 1500)}",
            fix=f"see above; `docker compose -p {project} logs` has the containers' output",
        )
    return p


def free_subnet() -> str:
    """A /24 of SUBNET_POOL that no Docker network and no host route uses."""
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    nets = docker("network", "ls", "-q", timeout_s=30.0).stdout.decode().split()
    if nets:
        out = docker(
            "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *nets, timeout_s=30.0
        ).stdout.decode()
        used += [ipaddress.ip_network(s, strict=False) for s in out.split() if ":" not in s]
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout if shutil.which("ip") else ""
    used += [ipaddress.ip_network(w, strict=False) for w in re.findall(r"^(\d+\.\d+\.\d+\.\d+/\d+)", routes, re.M)]
    for cand in SUBNET_POOL.subnets(new_prefix=24):
        if not any(cand.overlaps(u) for u in used):
            return str(cand)
    raise StackError(f"no free /24 left in {SUBNET_POOL}", fix="`harness docker down` stacks you no longer need")


def state_file(project: str) -> Path:
    from harness.stack import state_root

    return state_root() / "docker" / f"{project}.json"


def check_project(project: str) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", project):
        raise StackError(
            f"--project {project!r}: Compose project names are lowercase letters, digits, '-' and '_'",
            fix="e.g. --project harness-ray259",
        )


def compose_up(
    images: Images | None,
    *,
    project: str = DEFAULT_PROJECT,
    workers: int = 1,
    alerting: bool = False,
    timeout_s: float = 300.0,
) -> ComposeStack:
    check_project(project)
    check_docker()
    if state_file(project).exists() or _project_containers(project):
        raise StackError(
            f"a compose project {project!r} is already up",
            fix=f"`harness docker down --project {project}`, or pick another --project",
        )
    ports = {k: free_port() for k in ("dashboard", "serve", "ray_client", "prometheus", "alertmanager", "grafana")}
    subnet = free_subnet()
    env = _env(images, ports, subnet, workers)
    t0 = time.monotonic()
    args = (["--profile", "alerting"] if alerting else []) + [
        "up",
        "-d",
        "--wait",
        "--wait-timeout",
        str(int(timeout_s)),
    ]
    try:
        compose(project, env, *args, timeout_s=timeout_s + 60)
    except StackError:
        compose(project, env, "down", "-v", "--remove-orphans", timeout_s=180.0, check=False)
        raise
    stack = ComposeStack(
        project=project,
        dashboard_url=f"http://{LOOPBACK}:{ports['dashboard']}",
        prometheus_url=f"http://{LOOPBACK}:{ports['prometheus']}",
        serve_url=f"http://{LOOPBACK}:{ports['serve']}",
        ray_client_address=f"ray://{LOOPBACK}:{ports['ray_client']}",
        subnet=subnet,
        workers=workers,
        images={"ray": images.ray, "prometheus": images.prometheus} if images else {},
        ports=ports,
        alerting=alerting,
        alertmanager_url=f"http://{LOOPBACK}:{ports['alertmanager']}" if alerting else None,
        up_s=None,
    )
    try:
        stack.targets_up_s = wait_all_nodes_scraped(stack.dashboard_url, stack.prometheus_url, 1 + workers)
    except StackError:
        compose(project, env, "down", "-v", "--remove-orphans", timeout_s=180.0, check=False)
        raise
    stack.up_s = round(time.monotonic() - t0, 1)
    p = state_file(project)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({**stack.to_dict(), "env": env}, indent=2))
    return stack


def wait_all_nodes_scraped(dashboard_url: str, prometheus_url: str, nodes: int = 1, timeout_s: float = 90.0) -> float:
    """Until Ray lists `nodes` alive nodes (State API) and each has an UP target in Prometheus's discovery job:
    containers are healthy before the workers have joined and before Prometheus's next file_sd refresh (10 s) has
    seen them. Returns the seconds waited."""
    from harness.stack.dashboard import Dashboard
    from harness.stack.net import http_json
    from harness.stack.prom_config import RAY_JOB

    dash = Dashboard(dashboard_url)
    t0 = time.monotonic()
    missing: set[str] = set()
    while time.monotonic() - t0 < timeout_s:
        ips = {n.get("node_ip") for n in dash.nodes() if n.get("state") == "ALIVE"}
        try:
            active = http_json(f"{prometheus_url}/api/v1/targets?state=active")["data"]["activeTargets"]
        except (OSError, ValueError):
            active = []
        up = {
            t["labels"].get("instance", "").rsplit(":", 1)[0]
            for t in active
            if t.get("labels", {}).get("job") == RAY_JOB and t.get("health") == "up"
        }
        missing = {str(ip) for ip in ips} - up
        if len(ips) >= nodes and not missing:
            return round(time.monotonic() - t0, 1)
        time.sleep(1.0)
    raise StackError(
        f"within {timeout_s:.0f} s, Ray did not list {nodes} node(s) or Prometheus did not scrape each of them "
        f"(no UP target for {sorted(missing)})",
        fix="see `harness verify --dashboard-url ... --prometheus-url ...` for the cause and its fix",
    )


def _env(images: Images | None, ports: dict[str, int], subnet: str, workers: int) -> dict[str, str]:
    """None: the upstream GPU images of compose.yaml alone (a GPU host)."""
    cpu = {"HARNESS_RAY_IMAGE": images.ray, "HARNESS_PROM_IMAGE": images.prometheus} if images else {}
    return {
        **cpu,
        "HARNESS_DOCKER_SUBNET": subnet,
        "BIND_ADDRESS": LOOPBACK,
        "RAY_DASHBOARD_PORT": str(ports["dashboard"]),
        "SERVE_PORT": str(ports["serve"]),
        "RAY_CLIENT_PORT": str(ports["ray_client"]),
        "PROMETHEUS_PORT": str(ports["prometheus"]),
        "ALERTMANAGER_PORT": str(ports["alertmanager"]),
        "GRAFANA_PORT": str(ports["grafana"]),
        "RAY_GPU_WORKERS": str(workers),
    }


def load_stack(project: str = DEFAULT_PROJECT) -> dict | None:
    try:
        return json.loads(state_file(project).read_text())
    except (OSError, ValueError):
        return None


def scale_workers(project: str, workers: int, timeout_s: float = 180.0) -> None:
    st = load_stack(project)
    if st is None:
        raise StackError(f"no compose project {project!r} started by the harness", fix="harness docker up first")
    env = {**st["env"], "RAY_GPU_WORKERS": str(workers)}
    compose(
        project, env, "up", "-d", "--wait", "--no-recreate", "--scale", f"ray-worker={workers}", timeout_s=timeout_s
    )
    st["env"], st["workers"] = env, workers
    state_file(project).write_text(json.dumps(st, indent=2))


def compose_down(project: str = DEFAULT_PROJECT) -> bool:
    """Remove the project's containers, network and volumes; False when there was nothing to remove."""
    check_docker()
    st = load_stack(project)
    had = bool(st) or bool(_project_containers(project))
    env = (st or {}).get("env") or {"HARNESS_RAY_IMAGE": "unused", "HARNESS_PROM_IMAGE": "unused"}  # any, for `down`
    compose(
        project,
        env,
        "--profile",
        "alerting",
        "--profile",
        "grafana",
        "down",
        "-v",
        "--remove-orphans",
        "--timeout",
        "5",
        timeout_s=300.0,
    )
    state_file(project).unlink(missing_ok=True)
    return had


def _project_containers(project: str) -> list[str]:
    p = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}", timeout_s=30.0, check=False)
    return p.stdout.decode().split()


def project_resources(project: str) -> dict[str, list[str]]:
    """Everything of the compose project that Docker still has (containers, networks, volumes)."""
    lab = f"label=com.docker.compose.project={project}"
    out = {}
    for kind, args in (
        ("containers", ["ps", "-aq"]),
        ("networks", ["network", "ls", "-q"]),
        ("volumes", ["volume", "ls", "-q"]),
    ):
        out[kind] = docker(*args, "--filter", lab, timeout_s=30.0, check=False).stdout.decode().split()
    return out


def _tail(b: bytes | str, n: int = 600) -> str:
    s = b.decode(errors="replace") if isinstance(b, bytes) else b
    return s.strip()[-n:]
