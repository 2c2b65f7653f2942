"""Fault injection during the load: the scenario's `faults:` list, executed on a thread beside the load stage.

`kill_replica` finds the deployment's replica actors by their Serve names (`SERVE_REPLICA::<app>#<dep>#<id>`)
and `ray.kill`s some of them at load t = at_s, then watches until Serve has as many RUNNING replicas again.
After the load, `fault_report` joins what the thread saw with the client samples: errors in the gap, when
requests succeeded again, and the recovery time (the `recovery_time` SLO signal).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.scenario import Fault, Scenario

log = logging.getLogger(__name__)

POLL_S = 0.5
START_WAIT_S = 180.0  # longest wait for the load to start (Locust writes locust/started_at at shape t=0)
GAP_SLACK_S = 5.0  # errors this long after the replicas are back still count as the fault's


@dataclass
class FaultEvent:
    index: int
    action: str
    deployment: str | None
    at_s: float  # planned, after load start
    fired_at: float | None = None  # epoch seconds
    killed: list[str] = field(default_factory=list)  # actor names
    replicas_before: int | None = None
    recovered_at: float | None = None  # epoch: RUNNING replicas back to replicas_before (None: not within the timeout)
    min_replicas_seen: int | None = None
    error: str | None = None  # the fault could not be executed
    node: str | None = None  # kill_node / partition_node: the worker node's IP
    lost_replicas: list[str] = field(default_factory=list)  # replica actors that ran on the node
    healed_at: float | None = None  # partition_node: link up again
    no_recovery_reason: str | None = None  # why the replicas did not come back (e.g. pending placement)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------- Ray access (isolated so tests can replace it) ----------


class RayReplicas:
    """Replica actors and Serve's RUNNING count for one app, through the already connected Ray driver."""

    def __init__(self, app: str):
        self.app = app

    def deployments(self) -> list[str]:
        from ray import serve

        app = serve.status().applications.get(self.app)
        return sorted(app.deployments) if app else []

    def alive(self, deployment: str) -> list[tuple[str, str]]:
        """(name, namespace) of the live replica actors, named `SERVE_REPLICA::<app>#<deployment>#<id>` by Serve.

        Asks the GCS (ray.util.list_named_actors, dead actors excluded) rather than the state API, which needs
        the dashboard's address and refuses to guess when several Ray clusters run on the machine."""
        import ray

        prefix = f"SERVE_REPLICA::{self.app}#{deployment}#"
        named = ray.util.list_named_actors(all_namespaces=True)
        return sorted((a["name"], a["namespace"]) for a in named if a["name"].startswith(prefix))

    def running(self, deployment: str) -> int:
        from ray import serve

        app = serve.status().applications.get(self.app)
        dep = app.deployments.get(deployment) if app else None
        states: Mapping[Any, int] = dep.replica_states if dep else {}
        return int(states.get("RUNNING", 0))

    def kill(self, name: str, namespace: str) -> None:
        import ray

        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)

    def on_node(self, deployment: str) -> dict[str, list[str]]:
        """Live replica actor names by the IP of the node they run on (GCS actor table)."""
        import ray
        from ray._private import state

        ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        prefix = f"SERVE_REPLICA::{self.app}#{deployment}#"
        out: dict[str, list[str]] = {}
        for a in state.actors().values():
            if a.get("State") == "ALIVE" and (a.get("Name") or "").startswith(prefix):
                out.setdefault(ips.get(a["Address"]["NodeID"], "?"), []).append(a["Name"])
        return out


class FaultInjector:
    """Runs the faults on a daemon thread; `stop()` ends it (bounded) whatever it is doing."""

    def __init__(
        self, faults: list[Fault], app: str | None, started_file: Path, replicas=None, cluster: dict | None = None
    ):
        self.faults = sorted(enumerate(faults), key=lambda p: p[1].at_s)
        self.app = app
        self.cluster = cluster
        self.started_file = Path(started_file)
        self.ray = replicas or (RayReplicas(app) if app else None)
        self.events = [FaultEvent(i, f.action, f.deployment, f.at_s) for i, f in enumerate(faults)]
        self._stop = threading.Event()  # abort everything
        self._load_done = threading.Event()  # fire nothing more; a recovery watch goes on
        self._thread: threading.Thread | None = None

    def start(self) -> FaultInjector:
        if self.faults:
            self._thread = threading.Thread(target=self._run, name="harness-faults", daemon=True)
            self._thread.start()
        return self

    def stop(self, grace_s: float = 0.0) -> list[FaultEvent]:
        """The load is over: fire nothing more, let a recovery watch go on for up to grace_s, then end it."""
        self._load_done.set()
        if self._thread is not None:
            self._thread.join(grace_s)
            self._stop.set()
            self._thread.join(5.0)
        self._stop.set()
        return self.events

    def finish(self, samples, load) -> list[dict]:
        """After the load: wait (bounded) for pending recoveries, then join the events with the samples."""
        if not self.faults:
            return []
        grace = 0.0 if load.interrupted else max(f.recovery_timeout_s for _, f in self.faults)
        return fault_report(self.stop(grace_s=grace), samples, load.ended_at)

    def _sleep_until(self, pred, deadline_m: float, *, until_load_done: bool = True) -> bool:
        while (
            not self._stop.is_set()
            and not (until_load_done and self._load_done.is_set())
            and time.monotonic() < deadline_m
        ):
            if pred():
                return True
            self._stop.wait(POLL_S)
        return False

    def _run(self) -> None:
        try:
            started = self._sleep_until(
                lambda: _read_float(self.started_file) is not None, time.monotonic() + START_WAIT_S
            )
            t0 = _read_float(self.started_file) if started else None
            if t0 is None:
                for e in self.events:
                    e.error = e.error or "the load never started: fault not injected"
                return
            for i, f in self.faults:
                ev = self.events[i]
                if not self._sleep_until(lambda due=t0 + f.at_s: time.time() >= due, time.monotonic() + f.at_s + 5.0):
                    if self._stop.is_set() or self._load_done.is_set():
                        ev.error = "the load ended before this fault was due"
                        continue
                self._fire(f, ev)
        except Exception as e:  # noqa: BLE001 — a fault thread must never take the run down
            log.exception("fault injection failed")
            for ev in self.events:
                if ev.fired_at is None and ev.error is None:
                    ev.error = f"{e.__class__.__name__}: {e}"

    def _fire(self, f: Fault, ev: FaultEvent) -> None:
        if self.ray is None:
            ev.error = f"{f.action} needs a Serve app deployed by the harness"
            return
        if f.action != "kill_replica":
            return self._fire_node(f, ev)
        try:
            dep = f.deployment
            if dep is None:
                deps = self.ray.deployments()
                if len(deps) != 1:
                    ev.error = f"app {self.app!r} has deployments {deps}: name one in `deployment:`"
                    return
                dep = deps[0]
            ev.deployment = dep
            ev.replicas_before = self.ray.running(dep)
            alive = self.ray.alive(dep)
            if not alive:
                ev.error = f"no live replica of deployment {dep!r} in app {self.app!r} to kill"
                return
            victims = alive[: f.count]
            ev.fired_at = time.time()
            for name, ns in victims:
                self.ray.kill(name, ns)
                ev.killed.append(name)
            # over HTTP the kill runs as a cluster job seconds after the call: time the fault from the kill itself
            ev.fired_at = getattr(self.ray, "killed_at", None) or ev.fired_at
        except Exception as e:  # noqa: BLE001
            ev.error = f"kill_replica failed: {e.__class__.__name__}: {e}"
            return
        self._watch_recovery(f, ev, dep, set(ev.killed))

    @property
    def replicas(self) -> RayReplicas:
        """The app's replicas (`_fire` checked there is an app)."""
        if self.ray is None:
            raise RuntimeError("no Serve app to inject faults into")
        return self.ray

    def _fire_node(self, f: Fault, ev: FaultEvent) -> None:
        from harness.stack import multinode

        if not self.cluster:
            ev.error = f"{f.action} needs the local multi-node stack (scenario `cluster:`)"
            return
        c = multinode.Cluster.from_dict(self.cluster)
        try:
            dep = f.deployment or self._only_deployment()
            if dep is None:
                ev.error = f"app {self.app!r} has several deployments: name one in `deployment:`"
                return
            ev.deployment = dep
            ev.replicas_before = self.replicas.running(dep)
            by_node = self.replicas.on_node(dep)
            if f.node is not None:
                w = c.worker(f.node)
            else:  # the worker holding the first replica (by name), else worker 0
                hosts = sorted((names[0], ip) for ip, names in by_node.items() if ip != c.head_ip)
                w = c.worker(hosts[0][1]) if hosts else c.workers[0]
            ev.node = w.ip
            ev.lost_replicas = sorted(by_node.get(w.ip, []))
            ev.fired_at = time.time()
            if f.action == "kill_node":
                multinode.kill_worker(w)
            else:
                multinode.set_link(w, up=False)
        except Exception as e:  # noqa: BLE001
            ev.error = f"{f.action} failed: {e.__class__.__name__}: {e}"
            return
        if f.action == "partition_node":
            threading.Thread(target=self._heal, args=(w, ev, f.duration_s), name="harness-heal", daemon=True).start()
        partition = f.action == "partition_node"  # replicas may survive a short partition: wait for the heal instead
        self._watch_recovery(
            f,
            ev,
            dep,
            set() if partition else set(ev.lost_replicas),
            (lambda: ev.healed_at is not None) if partition else None,
        )
        if ev.recovered_at is None and ev.fired_at is not None:
            ev.no_recovery_reason = _why_not_recovered()

    def _heal(self, w, ev: FaultEvent, duration_s: float) -> None:
        from harness.stack import multinode

        self._stop.wait(duration_s)  # the link comes back even when the run is stopping
        try:
            multinode.set_link(w, up=True)
            ev.healed_at = time.time()
        except Exception as e:  # noqa: BLE001
            ev.error = f"partition_node: could not bring {w.veth} up again: {e}"

    def _only_deployment(self) -> str | None:
        deps = self.replicas.deployments()
        return deps[0] if len(deps) == 1 else None

    def _watch_recovery(self, f: Fault, ev: FaultEvent, dep: str, killed: set[str], also=None) -> None:
        ev.min_replicas_seen = ev.replicas_before

        def back() -> bool:
            if also is not None and not also():
                return False
            try:
                live = [n for n, _ in self.replicas.alive(dep) if n not in killed]
                running = self.replicas.running(dep)
            except Exception:  # noqa: BLE001 — the state API can time out under load: poll again
                return False
            seen = [n for n in (ev.min_replicas_seen, len(live), running) if n is not None]
            ev.min_replicas_seen = min(seen)
            before = ev.replicas_before or 0
            return len(live) >= before and running >= before

        # A recovery is only measured after a visible drop; Serve may report the dead replica as RUNNING briefly.
        if self._sleep_until(back, time.monotonic() + f.recovery_timeout_s, until_load_done=False):
            ev.recovered_at = time.time()


def _why_not_recovered() -> str:
    """After a node fault without recovery: placement groups Ray cannot place, and the nodes left."""
    try:
        import ray

        from harness.deploy.placement import pending_groups

        pend = pending_groups()
        nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")]
        gpus = sum(n.get("Resources", {}).get("GPU", 0.0) for n in ray.nodes() if n.get("Alive"))
        if pend:
            return (
                f"pending placement: {len(pend)} replacement placement group(s) cannot be placed (bundles "
                f"{pend[0]['bundles']}); alive nodes {nodes} with {gpus:g} GPU(s) in total"
            )
        return f"replicas did not come back within the timeout; alive nodes {nodes} with {gpus:g} GPU(s)"
    except Exception as e:  # noqa: BLE001
        return f"replicas did not come back within the timeout ({e.__class__.__name__} while asking Ray why)"


def start_faults(
    scenario: Scenario,
    app_name: str | None,
    run_dir: Path,
    cluster: dict | None = None,
    dashboard_url: str | None = None,
) -> FaultInjector:
    """Start the fault thread (a no-op without `faults:`); it waits for the load's t = 0 by itself.
    `dashboard_url`: an attached cluster reached over HTTP (no Ray connection): replicas through its REST APIs."""
    replicas = None
    if dashboard_url and app_name and scenario.faults:
        from harness.deploy.rest import RestReplicas
        from harness.stack.dashboard import Dashboard

        replicas = RestReplicas(Dashboard(dashboard_url), app_name)
    started = Path(run_dir) / "locust" / "started_at"
    return FaultInjector(scenario.faults, app_name, started, replicas=replicas, cluster=cluster).start()


# ---------- after the load: what the faults did to the requests ----------


def fault_report(events: list[FaultEvent], samples, load_end: float | None = None) -> list[dict]:
    """Per fault: the gap, errors in it by class, when requests succeeded again, and the recovery time (s).

    recovery_s = max(replica recovery, end of the last failed request in the gap); None when the replicas did not
    come back within the fault's timeout (an SLO on recovery_time then has no data and fails).
    """
    import pandas as pd

    df = samples if samples is not None else pd.DataFrame()
    if len(df):
        end_t = df["t_start_s"] + df["e2e_ms"].fillna(0) / 1000.0
    out = []
    for ev in events:
        d = ev.to_dict()
        d["replica_recovery_s"] = round(ev.recovered_at - ev.fired_at, 3) if ev.recovered_at and ev.fired_at else None
        d.update(
            gap_start=ev.fired_at,
            gap_end=None,
            errors_in_gap=0,
            errors_in_gap_by_class={},
            requests_in_gap=0,
            last_error_s=None,
            first_ok_after_s=None,
            recovery_s=None,
        )
        if ev.fired_at is None:
            out.append(d)
            continue
        gap_end = (ev.recovered_at or load_end or ev.fired_at) + GAP_SLACK_S
        if load_end is not None:
            gap_end = min(gap_end, load_end)
        d["gap_end"] = gap_end
        if len(df):
            in_gap = df[(end_t >= ev.fired_at) & (end_t <= gap_end)]
            errs = in_gap[~in_gap["ok"]]
            d["requests_in_gap"] = int(len(in_gap))
            d["errors_in_gap"] = int(len(errs))
            d["errors_in_gap_by_class"] = {
                str(k): int(v) for k, v in errs["error"].fillna("unknown").value_counts().items()
            }
            if len(errs):
                d["last_error_s"] = round(float(end_t[errs.index].max()) - ev.fired_at, 3)
            ok_after = df[df["ok"] & (df["t_start_s"] >= ev.fired_at)]
            if len(ok_after):
                d["first_ok_after_s"] = round(float(end_t[ok_after.index].min()) - ev.fired_at, 3)
        if d["replica_recovery_s"] is not None:
            d["recovery_s"] = round(max(d["replica_recovery_s"], d["last_error_s"] or 0.0), 3)
        out.append(d)
    return out


RECOVERY_SOURCE = "fault monitor: Ray state API (replicas) + client samples (errors)"


def recovery_signal(report: list[dict]) -> dict:
    """{"recovery_time": stats} to evaluate SLOs on, or {} (no data: a recovery_time SLO then fails)."""
    st = recovery_stats(report)
    return {"recovery_time": st} if st else {}


def recovery_series(report: list[dict]) -> dict:
    return {"recovery_time": RECOVERY_SOURCE} if report else {}


def recovery_stats(report: list[dict]) -> dict[str, float] | None:
    """Stats for the `recovery_time` signal in ms; None (no data) when no fault fired or one never recovered."""
    fired = [r for r in report if r.get("fired_at") is not None]
    if not fired or any(r.get("recovery_s") is None for r in fired):
        return None
    ms = [r["recovery_s"] * 1000.0 for r in fired]
    return {"max": max(ms), "min": min(ms), "mean": sum(ms) / len(ms), "count": float(len(ms))}


def _read_float(path: Path) -> float | None:
    """The number in a file another process writes (it may exist, still empty, for a moment)."""
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None
