"""`harness verify`: is the metrics path healthy? Ray's discovery file → Prometheus's `ray` targets → the series
the harness needs → Ray's generated Grafana dashboards. Every failed check carries the concrete fix.

Works from Prometheus's target list alone when the discovery file is not readable here (docker: the file lives
in a volume that only Prometheus mounts).
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from harness.metrics.catalog import CATALOG, resolve
from harness.stack.discovery import STALE_AFTER_S, read_discovery
from harness.stack.net import http_get, http_json
from harness.stack.prom_config import RAY_JOB

Status = Literal["ok", "warn", "fail", "skip"]

FIX_WAIT = (
    "wait 10-30 s after Ray starts: Ray writes the discovery file ~7 s after start, Prometheus re-reads it every 10 s"
)
FIX_MOUNT = (
    "check that Prometheus reads the same discovery file (file_sd path in prometheus.yml; docker: the volume that "
    "mounts Ray's temp dir, e.g. /tmp/ray, into the Prometheus container)"
)
FIX_PORT = (
    "check Ray's metrics_export_port (`ray start --metrics-export-port=P`, outside 10002-19999) and that Prometheus "
    "can reach the target's host:port (network reachability: firewall, docker network, node IP vs 127.0.0.1)"
)
FIX_WORKLOAD = (
    "run a workload (e.g. `harness run smoke --keep-up`): Ray exports a counter only after its first increment"
)
FIX_STALE = (
    "the Ray that wrote it is gone (the file is left behind after `ray stop`): start Ray, or point at the live "
    "session's file (<ray temp dir>/prom_metrics_service_discovery.json)"
)
KEY_CLUSTER = "ray_cluster_active_nodes"
KEY_SERVE = "ray_serve_num_router_requests_total"
FRESH_S = 60.0  # a series whose newest sample is older than this belongs to a cluster that stopped


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class VerifyReport:
    prometheus_url: str
    discovery_file: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.healthy else 1

    def to_dict(self) -> dict:
        return {
            "healthy": self.healthy,
            "prometheus_url": self.prometheus_url,
            "discovery_file": self.discovery_file,
            "checks": [asdict(c) for c in self.checks],
        }


def verify(
    prometheus_url: str,
    *,
    discovery_file: str | None = None,
    ray_address: str | None = None,
    ray_temp_dir: str | None = None,
    timeout_s: float = 5.0,
    ray_dashboard: dict | None = None,
) -> VerifyReport:
    url = prometheus_url.rstrip("/")
    rep = VerifyReport(url, discovery_file)
    add = rep.checks.append
    if ray_address:
        add(_check_ray(ray_address, timeout_s))
    file_targets = None
    if discovery_file:
        chk = _check_discovery(discovery_file)
        add(chk)
        file_targets = chk.data.get("targets")
    else:
        add(
            Check(
                "discovery_file",
                "skip",
                "no discovery file given: judged from Prometheus's target list alone",
                "pass --discovery-file to check the file too (when it is readable here)",
            )
        )
    add(_check_ready(url, timeout_s))
    if rep.checks[-1].status == "fail":
        for name in ("prometheus_targets", "metrics"):
            add(Check(name, "skip", "Prometheus is not reachable"))
    else:
        add(_check_targets(url, file_targets, timeout_s))
        add(_check_nodes(url, rep.checks[-1].data.get("targets") or [], ray_dashboard, timeout_s))
        rep.checks += _check_metrics(url, timeout_s)
    temp = ray_temp_dir or (
        str(Path(discovery_file).parent) if discovery_file and Path(discovery_file).exists() else None
    )
    add(_check_dashboards(temp))
    return rep


def _check_ray(address: str, timeout_s: float) -> Check:
    u = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = u.hostname, u.port or (10001 if u.scheme == "ray" else 6379)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        return Check(
            "ray",
            "fail",
            f"Ray at {address} is not reachable ({e.__class__.__name__}: {e})",
            "check --ray-address (ray://host:10001 for a client, host:6379 for GCS) and network reachability",
        )
    return Check("ray", "ok", f"Ray answers at {host}:{port}")


def _check_discovery(path: str) -> Check:
    st = read_discovery(path)
    data = {"path": st.path, "targets": st.targets, "age_s": None if st.age_s is None else round(st.age_s, 1)}
    if not st.exists:
        return Check(
            "discovery_file",
            "fail",
            f"{path} does not exist",
            f"{FIX_WAIT}; check Ray's temp dir and {FIX_MOUNT}",
            data,
        )
    if st.error:
        return Check(
            "discovery_file",
            "fail",
            st.error,
            f"{FIX_WAIT} (Ray replaces the file atomically; a broken file is not Ray's)",
            data,
        )
    if not st.targets:
        return Check("discovery_file", "fail", f"{path} lists no targets", FIX_WAIT, data)
    if st.stale:
        return Check(
            "discovery_file",
            "fail",
            f"{path} is stale: last written {st.age_s:.0f} s ago (Ray rewrites it every 5 s; > {STALE_AFTER_S:.0f} s "
            f"means nobody does); targets {', '.join(st.targets)}",
            FIX_STALE,
            data,
        )
    return Check(
        "discovery_file",
        "ok",
        f"{len(st.targets)} targets, written {st.age_s:.0f} s ago: {', '.join(st.targets)}",
        data=data,
    )


def _check_ready(url: str, timeout_s: float) -> Check:
    try:
        status, _ = http_get(f"{url}/-/ready", timeout_s)
    except OSError as e:
        return Check(
            "prometheus",
            "fail",
            f"Prometheus at {url} is not reachable ({e.__class__.__name__}: {e})",
            "start Prometheus (local stack: `harness up`) or fix --prometheus-url (scheme, host, port); "
            "check network reachability from here",
        )
    if status != 200:
        return Check(
            "prometheus", "fail", f"Prometheus at {url} answered /-/ready with HTTP {status}", "wait until it is ready"
        )
    return Check("prometheus", "ok", f"Prometheus ready at {url}")


def _check_targets(url: str, file_targets: list[str] | None, timeout_s: float) -> Check:
    try:
        data = http_json(f"{url}/api/v1/targets?state=active", timeout_s)
    except (OSError, ValueError) as e:
        return Check("prometheus_targets", "fail", f"cannot read {url}/api/v1/targets: {e}", "check the Prometheus URL")
    targets = [
        {
            "address": (t.get("discoveredLabels") or {}).get("__address__") or urlparse(t.get("scrapeUrl", "")).netloc,
            "url": t.get("scrapeUrl"),
            "health": t.get("health"),
            "last_error": t.get("lastError") or "",
            "last_scrape": t.get("lastScrape"),
        }
        for t in data["data"]["activeTargets"]
        if (t.get("labels") or {}).get("job") == RAY_JOB
    ]
    d = {"targets": targets}
    if not targets:
        return Check(
            "prometheus_targets",
            "fail",
            f"Prometheus has no targets for job {RAY_JOB!r}",
            f"{FIX_WAIT}; {FIX_MOUNT}",
            d,
        )
    down = [t for t in targets if t["health"] != "up"]
    lines = [
        f"{t['address']} {t['health'].upper()}" + (f" ({t['last_error']})" if t["last_error"] else "") for t in targets
    ]
    if down:
        fix = (
            FIX_PORT
            if len(down) < len(targets)
            else f"{FIX_PORT}; if every target is DOWN the discovery file may be stale: {FIX_STALE}"
        )
        if any(t["health"] == "unknown" for t in down):
            fix = f"{FIX_WAIT} (targets not scraped yet); {fix}"
        return Check(
            "prometheus_targets", "fail", f"{len(down)}/{len(targets)} Ray targets not UP: " + "; ".join(lines), fix, d
        )
    if file_targets is not None:
        missing = sorted(set(file_targets) - {t["address"] for t in targets})
        if missing:
            return Check(
                "prometheus_targets",
                "warn",
                f"all {len(targets)} targets UP, but the discovery file also lists {', '.join(missing)}",
                f"{FIX_WAIT}; or Prometheus reads another file: {FIX_MOUNT}",
                d,
            )
    return Check("prometheus_targets", "ok", f"{len(targets)} Ray targets UP: " + "; ".join(lines), data=d)


def ray_node_list(dashboard: dict, timeout_s: float = 5.0) -> list[dict]:
    """Ray's own node list from the head's dashboard ({url, token_path}): [{node_ip, state}]."""
    headers = {}
    if dashboard.get("token_path"):
        headers["Authorization"] = "Bearer " + Path(dashboard["token_path"]).read_text().strip()
    data = http_json(f"{dashboard['url']}/nodes?view=summary", timeout_s, headers)
    return [
        {"node_ip": (n.get("raylet") or {}).get("nodeManagerAddress"), "state": (n.get("raylet") or {}).get("state")}
        for n in data.get("data", {}).get("summary", [])
    ]


def _check_nodes(url: str, targets: list[dict], dashboard: dict | None, timeout_s: float) -> Check:
    """Per node (target host): targets UP of all and the last error; the node count against Ray's node list."""
    if not targets:
        return Check("nodes", "skip", "no Ray targets in Prometheus to group by node")
    per: dict[str, dict] = {}
    for t in targets:
        host = (t.get("address") or "").rsplit(":", 1)[0]
        n = per.setdefault(host, {"node": host, "targets": 0, "up": 0, "last_error": ""})
        n["targets"] += 1
        n["up"] += t.get("health") == "up"
        n["last_error"] = n["last_error"] or t.get("last_error") or ""
    d: dict = {"nodes": sorted(per.values(), key=lambda n: n["node"])}
    lines = [
        f"{n['node']} {n['up']}/{n['targets']} UP" + (f" ({n['last_error']})" if n["last_error"] else "")
        for n in d["nodes"]
    ]
    if dashboard:
        try:
            ray_nodes = ray_node_list(dashboard, timeout_s)
        except (OSError, ValueError) as e:
            return Check(
                "nodes",
                "warn",
                f"{'; '.join(lines)}; Ray's node list unreadable ({e})",
                "check that the head's dashboard is up",
                d,
            )
        alive = sorted(n["node_ip"] for n in ray_nodes if n["state"] == "ALIVE")
        d["ray_nodes_alive"] = alive
        missing = sorted(set(alive) - set(per))
        extra = sorted(set(per) - set(alive))
        if missing:
            return Check(
                "nodes",
                "fail",
                f"Ray lists {len(alive)} alive node(s), Prometheus scrapes {len(per)}: no targets "
                f"for {', '.join(missing)}; " + "; ".join(lines),
                f"{FIX_WAIT}; {FIX_PORT}",
                d,
            )
        if extra:
            return Check(
                "nodes",
                "warn",
                f"Prometheus still has targets on {', '.join(extra)}, which Ray does not list as "
                "alive (a dead node; Ray drops it from the discovery file within seconds); " + "; ".join(lines),
                FIX_WAIT,
                d,
            )
        head = f"{len(alive)} node(s), as in Ray's node list"
    else:
        head = f"{len(per)} node(s) (Ray's node list not checked: no dashboard known)"
    bad = [n for n in d["nodes"] if n["up"] < n["targets"]]
    if bad:
        return Check("nodes", "fail", f"{head}; not every target UP: " + "; ".join(lines), FIX_PORT, d)
    return Check("nodes", "ok", f"{head}; " + "; ".join(lines), data=d)


def _query(url: str, q: str, timeout_s: float) -> list[dict]:
    from urllib.parse import quote

    return http_json(f"{url}/api/v1/query?query={quote(q)}", timeout_s)["data"]["result"]


def _check_metrics(url: str, timeout_s: float) -> list[Check]:
    try:
        names = set(http_json(f"{url}/api/v1/label/__name__/values", timeout_s)["data"])
        fresh = _query(url, f"{KEY_CLUSTER}[5m]", timeout_s)  # raw samples: Ray exports this gauge in bursts
        serve = _query(url, f"sum({KEY_SERVE})", timeout_s)
    except (OSError, ValueError, KeyError) as e:
        return [Check("metrics", "fail", f"querying Prometheus failed: {e}", "check the Prometheus URL and its log")]
    out = []
    ray_names = sorted(n for n in names if n.startswith("ray_"))
    out.append(
        Check(
            "ray_metric_names",
            "ok" if ray_names else "fail",
            f"{len(ray_names)} ray_* metric names",
            "" if ray_names else f"{FIX_WAIT}; {FIX_PORT}",
            {"count": len(ray_names)},
        )
    )
    now = time.time()
    sessions: dict[str, float] = {}
    for r in fresh:
        age = round(now - max(float(t) for t, _ in r["values"]), 1)
        k = r["metric"].get("SessionName", "")
        sessions[k] = min(age, sessions.get(k, age))
    if not sessions:
        out.append(Check(KEY_CLUSTER, "fail", f"{KEY_CLUSTER} is absent", f"{FIX_WAIT}; {FIX_PORT}"))
    elif min(sessions.values()) > FRESH_S:
        out.append(
            Check(
                KEY_CLUSTER,
                "fail",
                f"{KEY_CLUSTER} has no sample in the last {FRESH_S:.0f} s "
                f"(newest {min(sessions.values()):.0f} s old): the cluster Prometheus scraped has stopped",
                FIX_STALE,
                {"sessions_age_s": sessions},
            )
        )
    else:
        live = min(sessions, key=sessions.__getitem__)
        extra = (
            f"; {len(sessions) - 1} older session(s) also in Prometheus (the harness scopes queries by SessionName)"
            if len(sessions) > 1
            else ""
        )
        out.append(
            Check(
                KEY_CLUSTER,
                "ok",
                f"present, fresh ({sessions[live]:.0f} s old), session {live}{extra}",
                data={"sessions_age_s": sessions},
            )
        )
    if serve:
        out.append(Check(KEY_SERVE, "ok", f"present ({float(serve[0]['value'][1]):.0f} requests so far)"))
    else:
        out.append(Check(KEY_SERVE, "warn", f"{KEY_SERVE} is absent (no request routed by Serve yet)", FIX_WORKLOAD))
    engine = [s for s, sig in CATALOG.items() if sig.scope == "model"]
    res = resolve(names, engine)
    missing = [s for s, v in res.items() if v is None]
    detail = ", ".join(f"{s}={v or 'absent'}" for s, v in res.items())
    if not missing:
        out.append(
            Check("vllm_signals", "ok", f"all {len(engine)} engine signals resolve: {detail}", data={"resolved": res})
        )
    else:
        out.append(
            Check(
                "vllm_signals",
                "warn",
                f"{len(missing)}/{len(engine)} engine signals have no series: {', '.join(missing)}",
                f"deploy an engine (sim or vLLM with engine metrics through Ray) and {FIX_WORKLOAD}; "
                "counters such as preemptions stay absent until they first happen",
                {"resolved": res},
            )
        )
    return out


def _check_dashboards(temp_dir: str | None) -> Check:
    if not temp_dir or not Path(temp_dir).is_dir():
        return Check(
            "grafana_dashboards",
            "skip",
            "Ray's temp dir is not readable here",
            "pass --discovery-file (its folder is Ray's temp dir) to check the generated dashboards",
        )
    d = Path(temp_dir) / "session_latest" / "metrics" / "grafana" / "dashboards"
    files = sorted(p.name for p in d.glob("*.json")) if d.is_dir() else []
    if not files:
        return Check(
            "grafana_dashboards",
            "fail",
            f"no generated Grafana dashboards in {d}",
            "Ray writes them when the head starts with the dashboard (`ray[default]`/`ray[serve]`); "
            "check that this is the head's temp dir (`ray start --temp-dir`)",
            {"dir": str(d)},
        )
    return Check("grafana_dashboards", "ok", f"{len(files)} dashboards in {d}", data={"dir": str(d), "files": files})


_MARK = {"ok": "OK  ", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}


def render_text(rep: VerifyReport) -> str:
    lines = [
        f"Prometheus {rep.prometheus_url}" + (f", discovery file {rep.discovery_file}" if rep.discovery_file else "")
    ]
    for c in rep.checks:
        lines.append(f"{_MARK[c.status]} {c.name}: {c.detail}")
        if c.fix and c.status in ("fail", "warn"):
            lines.append(f"     fix: {c.fix}")
    lines.append("healthy" if rep.healthy else "NOT healthy: see the FAIL lines and their fixes")
    return "\n".join(lines)


def inputs(
    ray_address: str | None, prometheus_url: str | None, discovery_file: str | None, dashboard_url: str | None = None
) -> dict:
    """Keyword arguments for verify(): the given ones, or the `harness up` stack's. HarnessError on bad input."""
    from harness import stack
    from harness.errors import HarnessError

    if dashboard_url and not prometheus_url:
        raise HarnessError(
            "--dashboard-url needs --prometheus-url (verify checks the metrics path through Prometheus)",
            fix="add --prometheus-url http://<prometheus>:9090",
        )
    if dashboard_url:
        from harness.stack.dashboard import Dashboard

        Dashboard(dashboard_url, timeout_s=8.0).version()  # not a Ray dashboard: exit 2 now, within seconds

    if prometheus_url:
        u = urlparse(prometheus_url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise HarnessError(
                f"--prometheus-url {prometheus_url!r}: expected http://host:port",
                fix="e.g. --prometheus-url http://127.0.0.1:9090",
            )
        dash = {"url": dashboard_url.rstrip("/"), "token_path": None} if dashboard_url else None
        return {
            "prometheus_url": prometheus_url,
            "ray_address": ray_address,
            "discovery_file": discovery_file,
            "ray_dashboard": dash,
        }
    if ray_address:
        raise HarnessError(
            "--ray-address needs --prometheus-url (verify checks the metrics path through Prometheus)",
            fix="add --prometheus-url http://<prometheus>:9090",
        )
    cur = stack.load_current()
    if cur is None:
        raise HarnessError(
            f"no running local stack recorded in {stack.state_root()} and no --prometheus-url given",
            fix="start one with `harness up`, or pass --prometheus-url (and --discovery-file) of an existing stack",
        )
    r = cur.ray or {}
    dash = (
        {"url": f"http://{r.get('host', '127.0.0.1')}:{r['dashboard_port']}", "token_path": r.get("auth_token_path")}
        if r.get("dashboard_port")
        else None
    )
    return {
        "prometheus_url": cur.prometheus_url,
        "ray_address": cur.ray_address,
        "discovery_file": discovery_file or cur.sd_file,
        "ray_temp_dir": r.get("temp_dir"),
        "ray_dashboard": dash,
    }
