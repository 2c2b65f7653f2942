"""A real multi-node Ray cluster on one machine: the head on a bridge, each worker node in its own network namespace.

    bridge hmn<k> 10.231.<k>.1/24   ── head (root namespace): GCS, dashboard, Serve controller + proxy, no GPUs
      ├─ veth ─ netns hmn<k>-w0 10.231.<k>.10   worker: --num-gpus=G, resource accelerator_type:<NAME>
      └─ veth ─ netns hmn<k>-w1 10.231.<k>.11   ...

Ray trusts declared GPU counts, so placement groups and bundles schedule for real (GPU ids are handed out as
CUDA_VISIBLE_DEVICES) although no GPU exists. Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN for `ip netns`).
Everything made is listed in a registry file under /run/harness-multinode/ so that `teardown` and
`cleanup_leftovers` (a crashed run) remove exactly it: namespaces, the bridge, and the processes inside.
Processes are stopped by process group / namespace pid list, never with `ray stop`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import StackError
from harness.stack.procs import group_alive as _group_alive
from harness.stack.ray_head import LocalRay, ray_cli, stop_ray

PREFIX = "hmn"  # bridge hmn<k>, namespaces hmn<k>-w<i>, host-side veths hmn<k>w<i>
SUBNET = "10.231.{k}.0/24"  # private; a k whose /24 is already on the host is skipped
WORKER_METRICS_PORT = 58080  # each namespace has its own port space; outside Ray's worker port range
WORKER_OBJECT_STORE_BYTES = 256 * 1024**2  # /dev/shm is shared by every node on the machine
# The GCS declares a node dead after `threshold` failed health checks `period` apart (defaults 3 s x 5): a dead
# raylet refuses connections at once, so this finds a killed node in ~10 s; the timeout stays generous for load.
HEAD_ENV = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "10",
    "RAY_health_check_timeout_ms": "5000",
}
# Every node of the cluster shares this machine's cores: give slow agent and raylet starts time under load.
SLOW_START_ENV = {"RAY_raylet_start_wait_time_s": "180", "RAY_agent_register_timeout_ms": "180000"}
REGISTRY = Path(os.environ.get("HARNESS_NETNS_REGISTRY", "/run/harness-multinode"))
PRIV_FIX = (
    "run as root (or with CAP_NET_ADMIN and CAP_SYS_ADMIN, e.g. a container started with "
    "--cap-add NET_ADMIN --cap-add SYS_ADMIN), or drop `cluster:` / --workers for the single-node "
    "loopback stack, or attach to a real cluster with --ray-address and --prometheus-url"
)


@dataclass
class WorkerNode:
    index: int
    netns: str
    veth: str  # host end, on the bridge (partition_node sets it down)
    ip: str
    temp_dir: str
    num_cpus: int
    num_gpus: int
    pgid: int | None = None
    start_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Cluster:
    """What the harness made for one multi-node stack (also the registry entry)."""

    k: int
    bridge: str
    head_ip: str
    accelerator_type: str | None
    gpus_per_worker: int
    workers: list[WorkerNode] = field(default_factory=list)
    owner_pid: int = field(default_factory=os.getpid)
    head_pgid: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Cluster:
        d = dict(d)
        d["workers"] = [WorkerNode(**w) for w in d.get("workers", [])]
        return cls(**d)

    def worker(self, selector: str | int) -> WorkerNode:
        """A worker by index, netns name or IP."""
        for w in self.workers:
            if selector in (w.index, str(w.index), w.netns, w.ip):
                return w
        raise KeyError(f"no worker node {selector!r} (workers: {[w.netns for w in self.workers]})")


# ---------- commands ----------


def _ip(*args: str, check: bool = True, timeout_s: float = 15.0) -> subprocess.CompletedProcess:
    exe = shutil.which("ip") or "/usr/sbin/ip"
    r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout_s)
    if check and r.returncode != 0:
        raise StackError(
            f"`ip {' '.join(args)}` failed: {r.stderr.strip() or r.stdout.strip()}",
            fix=PRIV_FIX
            if "ermission" in r.stderr or "not permitted" in r.stderr
            else "see the message; `harness down` removes what a previous run left",
        )
    return r


def check_privileges() -> None:
    if not (shutil.which("ip") or Path("/usr/sbin/ip").exists()):
        raise StackError(
            "the `ip` command (iproute2) was not found; it makes the network namespaces",
            fix="apt-get install -y iproute2",
        )
    if os.geteuid() != 0:
        raise StackError("a local multi-node cluster needs network namespaces, which need root", fix=PRIV_FIX)


def _netns_list() -> list[str]:
    r = _ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _links() -> list[str]:
    r = _ip("-o", "link", "show", check=False)
    return [line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines() if ":" in line]


def _host_networks() -> list[ipaddress.IPv4Network]:
    r = _ip("-o", "-4", "addr", "show", check=False)
    nets: list[ipaddress.IPv4Network] = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
    return nets


def _pick_k() -> int:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    used_nets, links, spaces = _host_networks(), set(_links()), set(_netns_list())
    for k in range(1, 255):
        net = ipaddress.ip_network(SUBNET.format(k=k))
        if (
            (REGISTRY / f"{k}.json").exists()
            or f"{PREFIX}{k}" in links
            or any(s.startswith(f"{PREFIX}{k}-") for s in spaces)
        ):
            continue
        if any(net.overlaps(n) for n in used_nets):
            continue
        return k
    raise StackError("no free 10.231.<k>.0/24 subnet for the multi-node bridge", fix="run `harness down`")


def _save(cluster: Cluster) -> None:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    tmp = REGISTRY / f".{cluster.k}.json.tmp"
    tmp.write_text(json.dumps(cluster.to_dict(), indent=2))
    tmp.replace(REGISTRY / f"{cluster.k}.json")


# ---------- network ----------


def make_network(k: int, workers: int) -> tuple[str, str, list[tuple[str, str, str]]]:
    """Bridge with the head address, one namespace + veth pair per worker: (bridge, head_ip, [(ns, veth, ip)])."""
    net = ipaddress.ip_network(SUBNET.format(k=k))
    hosts = list(net.hosts())
    bridge, head_ip = f"{PREFIX}{k}", str(hosts[0])
    _ip("link", "add", bridge, "type", "bridge")
    _ip("addr", "add", f"{head_ip}/{net.prefixlen}", "dev", bridge)
    _ip("link", "set", bridge, "up")
    out = []
    for i in range(workers):
        ns, veth, peer, ip = f"{PREFIX}{k}-w{i}", f"{PREFIX}{k}w{i}", f"{PREFIX}{k}w{i}p", str(hosts[9 + i])
        _ip("netns", "add", ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", ns)
        _ip("link", "set", veth, "master", bridge, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", peer, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{ip}/{net.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "route", "add", "default", "via", head_ip)
        out.append((ns, veth, ip))
    return bridge, head_ip, out


def remove_network(k: int) -> None:
    """Delete hmn<k>'s namespaces (their veth pairs go with them) and the bridge; kill what still runs inside."""
    for ns in [s for s in _netns_list() if s.startswith(f"{PREFIX}{k}-")]:
        _kill_netns_pids(ns)
        _ip("netns", "delete", ns, check=False)
    if f"{PREFIX}{k}" in _links():
        _ip("link", "delete", f"{PREFIX}{k}", check=False)


def _netns_pids(ns: str) -> list[int]:
    r = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _kill_netns_pids(ns: str, grace_s: float = 0.0) -> None:
    """Every process inside a namespace we created (all of them were started by us)."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        pids = _netns_pids(ns)
        if not pids:
            return
        if sig == signal.SIGTERM and grace_s <= 0:
            continue
        for p in pids:
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _netns_pids(ns):
            time.sleep(0.1)


# ---------- Ray nodes ----------


def _ray_env(token_path: str) -> dict[str, str]:
    from harness.paths import child_env

    env = {k: v for k, v in child_env().items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}  # not a loopback cluster
    env.update(
        {
            **SLOW_START_ENV,
            "RAY_metrics_report_interval_ms": "1000",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": token_path,
        }
    )
    return env


def start_worker(
    w: WorkerNode, head: str, token_path: str, accelerator_type: str | None, log: Path
) -> subprocess.Popen:
    resources = {f"accelerator_type:{accelerator_type}": 1} if accelerator_type else {}
    cmd = [
        shutil.which("ip") or "/usr/sbin/ip",
        "netns",
        "exec",
        w.netns,
        *ray_cli(),
        "start",
        f"--address={head}",
        f"--node-ip-address={w.ip}",
        f"--num-cpus={w.num_cpus}",
        f"--num-gpus={w.num_gpus}",
        f"--resources={json.dumps(resources)}",
        f"--metrics-export-port={WORKER_METRICS_PORT}",
        f"--temp-dir={w.temp_dir}",
        f"--object-store-memory={WORKER_OBJECT_STORE_BYTES}",
        "--disable-usage-stats",
    ]
    Path(w.temp_dir).mkdir(parents=True, exist_ok=True)
    # own session: the raylet and its children keep this process group, so kill_node ends exactly this node
    return subprocess.Popen(
        cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=_ray_env(token_path), start_new_session=True
    )


def kill_worker(w: WorkerNode) -> None:
    """SIGKILL a worker node's Ray processes (a node dying): its process group and everything in its namespace."""
    if w.pgid:
        try:
            os.killpg(w.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _kill_netns_pids(w.netns)


def set_link(w: WorkerNode, up: bool) -> None:
    """partition_node: the worker's veth on the bridge goes down (or up again)."""
    _ip("link", "set", w.veth, "up" if up else "down")


def start_cluster(
    state_dir: Path,
    head: LocalRay,
    head_ip: str,
    *,
    k: int,
    bridge: str,
    net: list[tuple[str, str, str]],
    cpus_per_worker: int,
    gpus_per_worker: int,
    accelerator_type: str | None,
    timeout_s: float = 180.0,
) -> Cluster:
    """Start one Ray worker node per namespace (in parallel) and wait until the head lists them all alive."""
    cluster = Cluster(
        k=k,
        bridge=bridge,
        head_ip=head_ip,
        accelerator_type=accelerator_type,
        gpus_per_worker=gpus_per_worker,
        head_pgid=head.pgid,
    )
    procs = []
    t0 = time.monotonic()
    for i, (ns, veth, ip) in enumerate(net):
        w = WorkerNode(i, ns, veth, ip, f"{head.temp_dir}-w{i}", cpus_per_worker, gpus_per_worker)
        cluster.workers.append(w)
        p = start_worker(
            w, f"{head_ip}:{head.gcs_port}", head.auth_token_path, accelerator_type, state_dir / f"ray-{ns}.log"
        )
        w.pgid = p.pid
        procs.append((w, p))
    _save(cluster)
    deadline = t0 + timeout_s
    failed = []
    for w, p in procs:
        rc = _wait_start(w, p, deadline, state_dir, timeout_s)
        w.start_s = round(time.monotonic() - t0, 2)
        if rc != 0:
            failed.append(w)
    # On a loaded machine a worker's raylet can give up waiting for its dashboard agent: try those once more, alone.
    for w in failed:
        log = state_dir / f"ray-{w.netns}.log"
        first = log.read_text(errors="replace")
        for _attempt in range(1):
            kill_worker(w)
            p = start_worker(w, f"{head_ip}:{head.gcs_port}", head.auth_token_path, accelerator_type, log)
            w.pgid = p.pid
            rc = _wait_start(w, p, time.monotonic() + timeout_s, state_dir, timeout_s)
            w.start_s = round(time.monotonic() - t0, 2)
            if rc == 0:
                break
        if rc != 0:
            tail = log.read_text(errors="replace")[-1500:]
            raise StackError(
                f"`ray start` of worker {w.netns} ({w.ip}) failed twice (exit {rc}):\n{tail}\n"
                f"(first attempt ended: {first.strip().splitlines()[-1][:300] if first.strip() else ''})",
                fix=f"see {log} and the raylet logs under {w.temp_dir}",
            )
    _save(cluster)
    return cluster


def _wait_start(w: WorkerNode, p: subprocess.Popen, deadline: float, state_dir: Path, timeout_s: float) -> int:
    """`ray start`'s exit code; a start still running at the deadline is killed and counts as failed (-1)."""
    try:
        return p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill_worker(w)
        with (state_dir / f"ray-{w.netns}.log").open("a") as f:
            f.write(f"\nharness: `ray start` did not finish within {timeout_s:.0f} s; killed\n")
        return -1


def alive_nodes(dashboard_url: str, timeout_s: float = 5.0) -> list[dict]:
    """Ray's own node list from the head's dashboard (no driver needed): [{node_ip, alive, resources}]."""
    from harness.stack.net import http_json

    data = http_json(f"{dashboard_url}/nodes?view=summary", timeout_s)
    rows = data.get("data", {}).get("summary", [])
    out = []
    for r in rows:
        raylet = r.get("raylet", {})
        out.append(
            {
                "node_ip": raylet.get("nodeManagerAddress") or r.get("ip"),
                "state": raylet.get("state"),
                "node_id": raylet.get("nodeId"),
            }
        )
    return out


def teardown(cluster: Cluster | dict) -> None:
    """Stop every worker node, remove the namespaces and the bridge, drop the registry entry (the head is the
    caller's: stop_ray)."""
    c = cluster if isinstance(cluster, Cluster) else Cluster.from_dict(cluster)
    for w in c.workers:
        kill_worker(w)
        shutil.rmtree(w.temp_dir, ignore_errors=True)
    remove_network(c.k)
    (REGISTRY / f"{c.k}.json").unlink(missing_ok=True)
    (REGISTRY / f"{c.k}.kept").unlink(missing_ok=True)


def cleanup_leftovers() -> list[str]:
    """Remove what crashed runs left: registry entries whose head is gone, and hmn* namespaces/bridges with no
    registry entry. A cluster whose head still runs is someone's live stack and is left alone."""
    removed: list[str] = []
    if not shutil.which("ip") and not Path("/usr/sbin/ip").exists():
        return removed
    live: set[int] = set()
    if REGISTRY.exists():
        for f in REGISTRY.glob("*.json"):
            try:
                c = Cluster.from_dict(json.loads(f.read_text()))
            except (OSError, ValueError, TypeError):
                f.unlink(missing_ok=True)
                continue
            if c.head_pgid and _group_alive(c.head_pgid) and _owner_alive(c):
                live.add(c.k)
                continue
            if not c.head_pgid and _owner_alive(c):  # another process is still setting this cluster up
                live.add(c.k)
                continue
            if c.head_pgid and _group_alive(c.head_pgid):
                _kill_group(c.head_pgid)
            teardown(c)
            removed.append(f"{PREFIX}{c.k}")
    spaces = _netns_list()
    ks = {
        int(s[len(PREFIX) :].split("-")[0])
        for s in spaces
        if s.startswith(PREFIX) and s[len(PREFIX) :].split("-")[0].isdigit()
    }
    ks |= {int(link[len(PREFIX) :]) for link in _links() if link.startswith(PREFIX) and link[len(PREFIX) :].isdigit()}
    for k in sorted(ks - live):
        remove_network(k)
        removed.append(f"{PREFIX}{k}")
    return sorted(set(removed))


def _owner_alive(c: Cluster) -> bool:
    """The head's group alive is enough for a kept stack (`harness up`); a run's own stack dies with its owner."""
    kept = (REGISTRY / f"{c.k}.kept").exists()
    if kept:
        return True
    try:
        os.kill(c.owner_pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def mark_kept(cluster: Cluster | dict, kept: bool = True) -> None:
    k = cluster.k if isinstance(cluster, Cluster) else cluster["k"]
    p = REGISTRY / f"{k}.kept"
    if kept:
        p.touch()
    else:
        p.unlink(missing_ok=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_head(head: LocalRay) -> None:
    stop_ray(head)
    shutil.rmtree(head.temp_dir, ignore_errors=True)


# ---------- the stack ----------


def start_multinode_stack(
    *,
    workers: int,
    gpus_per_worker: int = 0,
    cpus_per_worker: int = 2,
    accelerator_type: str | None = None,
    head_cpus: int = 4,
    targets_timeout_s: float = 90.0,
    alerting: bool = True,
):
    """Bridge + namespaces, a Ray head on the bridge address, one Ray worker per namespace, and a loopback
    Prometheus reading the head's discovery file; waits until every node's metrics target is UP."""
    from harness.stack import Stack, state_root
    from harness.stack.net import free_port
    from harness.stack.prometheus import start_prometheus, stop_prometheus, wait_for_ray_targets
    from harness.stack.ray_head import start_ray

    check_privileges()
    if not shutil.which("prometheus"):
        from harness.stack.prometheus import INSTALL_HINT

        raise StackError("the `prometheus` binary was not found on PATH (needed for the local stack)", fix=INSTALL_HINT)
    cleanup_leftovers()
    state_dir = state_root() / "stacks" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    state_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    k = _pick_k()
    # registry entry first: a crash between here and the end still leaves a trail cleanup_leftovers follows
    cluster = Cluster(
        k=k, bridge=f"{PREFIX}{k}", head_ip="", accelerator_type=accelerator_type, gpus_per_worker=gpus_per_worker
    )
    _save(cluster)
    head = prom = am = None
    try:
        bridge, head_ip, net = make_network(k, workers)
        cluster.head_ip = head_ip
        t_net = time.monotonic()
        try:
            head = start_ray(
                state_dir,
                num_cpus=head_cpus,
                host=head_ip,
                extra_args=("--num-gpus=0",),
                extra_env={**HEAD_ENV, **SLOW_START_ENV},
            )
        except StackError:  # on a loaded machine the head's raylet can time out waiting for its agents: once more
            head = start_ray(
                state_dir,
                num_cpus=head_cpus,
                host=head_ip,
                extra_args=("--num-gpus=0",),
                extra_env={**HEAD_ENV, **SLOW_START_ENV},
            )
        cluster.head_pgid = head.pgid
        _save(cluster)
        t_head = time.monotonic()
        cluster = start_cluster(
            state_dir,
            head,
            head_ip,
            k=k,
            bridge=bridge,
            net=net,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            accelerator_type=accelerator_type,
        )
        t_workers = time.monotonic()
        if alerting:
            from harness.stack.alerts import local_rules, start_alertmanager

            am = start_alertmanager(state_dir)
            am.rules_file = str(local_rules(state_dir))
            prom = start_prometheus(
                state_dir, head.sd_file, rule_files=[am.rules_file], alertmanager=f"127.0.0.1:{am.port}"
            )
        else:
            prom = start_prometheus(state_dir, head.sd_file)
        # head: metrics agent, autoscaler, dashboard; every worker: its metrics agent
        wait_for_ray_targets(prom.url, str(head.sd_file), timeout_s=targets_timeout_s, min_targets=3 + workers)
    except BaseException:
        if prom is not None:
            stop_prometheus(prom)
        if am is not None:
            from harness.stack.alerts import stop_alertmanager

            stop_alertmanager(am)
        if head is not None:
            stop_head(head)
        teardown(cluster)
        raise
    stack = Stack(
        ray_address=head.address,
        prometheus_url=prom.url,
        serve_port=free_port(),
        sd_file=str(head.sd_file),
        local=True,
        state_dir=str(state_dir),
        ray=head.to_dict(),
        prometheus=prom.to_dict(),
        ray_env=head.driver_env,
    )
    stack.endpoint_url = f"http://{head.host}:{stack.serve_port}"  # Serve's one proxy listens on the bridge
    stack.cluster = cluster.to_dict()
    stack.alerting = am.to_dict() if am is not None else None
    stack.timings_s = {
        "network_s": round(t_net - t0, 2),
        "ray_head_start_s": round(t_head - t_net, 2),
        "ray_workers_start_s": round(t_workers - t_head, 2),
        "targets_up_s": round(time.monotonic() - t_workers, 2),
        "nodes": 1 + workers,
    }
    (state_dir / "stack.json").write_text(json.dumps(stack.to_dict(), indent=2))
    return stack


def start_for(spec) -> object:
    """start_multinode_stack from a scenario's `cluster:` section (harness.scenario.ClusterSpec)."""
    return start_multinode_stack(
        workers=spec.workers,
        gpus_per_worker=spec.gpus_per_worker,
        cpus_per_worker=spec.cpus_per_worker,
        accelerator_type=spec.accelerator_type,
        head_cpus=spec.head_cpus,
    )


def matches(stack, spec) -> str | None:
    """Why a running stack does not have the shape a scenario's `cluster:` asks for (None: it does)."""
    c = stack.cluster
    if spec is None:
        return None
    if not c:
        return "the running stack is single-node"
    if (
        len(c["workers"]) != spec.workers
        or c["gpus_per_worker"] != spec.gpus_per_worker
        or c.get("accelerator_type") != spec.accelerator_type
    ):
        return (
            f"the running stack has {len(c['workers'])} worker(s) x {c['gpus_per_worker']} GPU(s) "
            f"({c.get('accelerator_type')})"
        )
    return None
