"""Locust workers as Ray actors on chosen nodes, the master on the driver's host (how Ray's own Serve release
tests run Locust across a cluster). Each actor starts `python -m locust --worker` on its node against the master.

The locustfile coordinates through files in the run folder (samples/, locust/started_at, done.cnt, stop): every
node must see the run folder at the same path. On one machine (the local multi-node stack) that holds; on a real
cluster put --results-dir on a shared filesystem (NFS, EFS, Filestore) mounted at the same path on every node.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.errors import LoadError

ACTOR_CPUS = 0.25  # logical share each worker actor reserves on its node


def _actor_class():
    import ray

    @ray.remote(num_cpus=ACTOR_CPUS, max_restarts=0)
    class LocustWorkerProcess:
        """Owns one `locust --worker` process on its node."""

        def __init__(self):
            self.proc = None

        def where(self) -> dict:
            return {
                "node_id": ray.get_runtime_context().get_node_id(),
                "node_ip": ray.util.get_node_ip_address(),
                "pid": os.getpid(),
            }

        def start(self, cmd: list[str], env: dict, cwd: str, log: str) -> int:
            out = open(log, "ab")
            self.proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            return self.proc.pid

        def wait(self, timeout_s: float) -> int | None:
            try:
                return self.proc.wait(timeout_s) if self.proc else None
            except subprocess.TimeoutExpired:
                return None

        def kill(self) -> None:
            if self.proc and self.proc.poll() is None:
                os.killpg(self.proc.pid, 9)

    return LocustWorkerProcess


def choose_nodes(n: int, wanted: list[str], head_ip: str | None) -> list[dict]:
    """n target nodes (round-robin): over `wanted` (IPs or worker indexes), else over the non-head nodes."""
    import ray

    alive = [x for x in ray.nodes() if x.get("Alive")]
    by_ip = {x["NodeManagerAddress"]: x for x in alive}
    workers = sorted((x for x in alive if x["NodeManagerAddress"] != head_ip), key=lambda x: x["NodeManagerAddress"])
    if wanted:
        pool = []
        for w in wanted:
            if w in by_ip:
                pool.append(by_ip[w])
            elif w.isdigit() and int(w) < len(workers):
                pool.append(workers[int(w)])
            else:
                raise LoadError(
                    f"load.worker_nodes: {w!r} is not an alive Ray node",
                    fix=f"use node IPs {sorted(by_ip)} or worker indexes 0..{len(workers) - 1}",
                )
    else:
        pool = workers or alive
    return [
        {"node_id": pool[i % len(pool)]["NodeID"], "node_ip": pool[i % len(pool)]["NodeManagerAddress"]}
        for i in range(n)
    ]


class RayLocustWorkers:
    """Start n Locust worker processes through Ray actors pinned to nodes; stop() ends them (bounded)."""

    def __init__(self, n: int, wanted: list[str], head_ip: str | None):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.nodes = choose_nodes(n, wanted, head_ip)
        cls = _actor_class()
        self.actors = [
            cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nd["node_id"], soft=False)).remote()
            for nd in self.nodes
        ]
        try:
            self.where = ray.get([a.where.remote() for a in self.actors], timeout=60)
        except Exception as e:  # noqa: BLE001 — GetTimeoutError, actor died...
            self.stop()
            raise LoadError(
                f"Locust worker actors did not start on nodes {[x['node_ip'] for x in self.nodes]}: {e}",
                fix=f"each needs {ACTOR_CPUS} free logical CPU on its node",
            ) from None
        self.pids: list[int] = []

    def start(self, locustfile: str, master_host: str, master_port: int, env: dict, locust_dir: Path) -> None:
        import ray

        refs = []
        for i, a in enumerate(self.actors):
            cmd = [
                sys.executable,
                "-m",
                "locust",
                "-f",
                locustfile,
                "--worker",
                "--master-host",
                master_host,
                "--master-port",
                str(master_port),
                "--logfile",
                str(locust_dir / f"worker-{i}.log"),
                "--loglevel",
                "INFO",
            ]
            refs.append(a.start.remote(cmd, env, str(locust_dir), str(locust_dir / f"worker-{i}.out")))
        self.pids = ray.get(refs, timeout=30)

    def stop(self, timeout_s: float = 30.0) -> list[dict]:
        import ray

        codes: list = []
        try:
            codes = ray.get([a.wait.remote(timeout_s) for a in self.actors], timeout=timeout_s + 10)
        except Exception:  # noqa: BLE001
            codes = [None] * len(self.actors)
        for a in self.actors:
            try:
                ray.get(a.kill.remote(), timeout=10)
            except Exception:  # noqa: BLE001
                pass
            ray.kill(a)
        w = getattr(self, "where", [{}] * len(self.actors))
        return [
            {
                "index": i,
                "node_ip": w[i].get("node_ip"),
                "locust_pid": self.pids[i] if i < len(self.pids) else None,
                "exit_code": codes[i] if i < len(codes) else None,
            }
            for i in range(len(self.actors))
        ]
