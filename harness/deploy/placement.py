"""Placement checks and provenance for deployed replicas on a (multi-node) Ray cluster.

Before deploying: would every replica's bundles fit on the cluster's alive nodes at all? A placement group that
cannot be placed leaves the Serve app DEPLOYING forever, so an impossible request fails here with the reason.
After deploying: which node and which GPU ids hold each replica and each of its bundles (from the sim's
per-bundle rank actors).
"""

from __future__ import annotations

import time
from typing import Any

from harness.errors import DeployError

PENDING_FAIL_S = 20.0  # a placement group still PENDING this long after the deploy began is reported as the cause


def node_capacity() -> list[dict[str, Any]]:
    import ray

    return [
        {"node_ip": n["NodeManagerAddress"], "node_id": n["NodeID"], "resources": dict(n.get("Resources", {}))}
        for n in ray.nodes()
        if n.get("Alive")
    ]


def _fits(bundle: dict[str, float], free: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items())


def _take(bundle: dict[str, float], free: dict[str, float]) -> None:
    for k, v in bundle.items():
        free[k] = free.get(k, 0.0) - v


def infeasible_reason(
    bundles: list[dict[str, float]], strategy: str, replicas: int, nodes: list[dict[str, Any]]
) -> str | None:
    """Greedy first-fit of `replicas` placement groups over the nodes' total resources; None when they fit.

    A necessary check (Ray may still fragment worse), enough to turn "hangs forever" into a clear reason."""
    free = [dict(n["resources"]) for n in nodes]
    for r in range(replicas):
        if strategy in ("STRICT_PACK", "PACK"):
            whole: dict[str, float] = {}
            for b in bundles:
                for k, v in b.items():
                    whole[k] = whole.get(k, 0.0) + v
            i = next((i for i, f in enumerate(free) if _fits(whole, f)), None)
            if i is not None:
                _take(whole, free[i])
                continue
            if strategy == "STRICT_PACK":
                return _reason(r, bundles, strategy, nodes, "no single node has room for all its bundles")
        used: set[int] = set()
        for b in bundles:
            cands = [i for i, f in enumerate(free) if _fits(b, f) and not (strategy == "STRICT_SPREAD" and i in used)]
            if not cands:
                return _reason(r, bundles, strategy, nodes, f"no node has room for bundle {b}")
            _take(b, free[cands[0]])
            used.add(cands[0])
    return None


def _reason(r: int, bundles, strategy, nodes, why: str) -> str:
    inv = "; ".join(
        f"{n['node_ip']}: GPU {n['resources'].get('GPU', 0):g}, CPU {n['resources'].get('CPU', 0):g}"
        + "".join(f", {k}" for k in n["resources"] if k.startswith("accelerator_type:"))
        for n in nodes
    )
    return (
        f"pending placement: replica {r + 1} cannot be placed ({why}); each replica asks for bundles {bundles} "
        f"with strategy {strategy}; alive nodes: {inv}"
    )


def check_feasible(bundles: list[dict[str, float]], strategy: str, replicas: int) -> None:
    reason = infeasible_reason(bundles, strategy, replicas, node_capacity())
    if reason:
        raise DeployError(
            reason,
            fix="ask for fewer replicas or GPUs per replica (tensor/pipeline parallel size), "
            "or start more / bigger worker nodes (cluster.workers, cluster.gpus_per_worker, "
            "cluster.accelerator_type)",
        )


def pending_groups(min_age_s: float = 0.0) -> list[dict]:
    """Placement groups Ray has not been able to place yet."""
    import ray

    out = []
    for pg_id, t in ray.util.placement_group_table().items():
        if t.get("state") == "PENDING":
            out.append({"id": pg_id, "bundles": list(t.get("bundles", {}).values()), "strategy": t.get("strategy")})
    return out


def placement_of_replicas(timeout_s: float = 10.0) -> list[dict]:
    """Per replica: its node and, per bundle, the node and GPU ids Ray granted (from the sim's rank actors)."""
    import ray

    from serve_apps.sim.placement import RANK_PREFIX

    names = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(RANK_PREFIX)]
    refs: list[Any] = []  # ray.ObjectRef of each rank's where()
    for a in names:
        try:
            refs.append(ray.get_actor(a["name"], namespace=a["namespace"]).where.remote())
        except ValueError:  # gone between the listing and the lookup
            continue
    infos = ray.get(refs, timeout=timeout_s) if refs else []
    ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
    replicas: dict[str, dict] = {}
    for i in sorted(infos, key=lambda x: (x["replica_id"], x["bundle_index"])):
        r = replicas.setdefault(
            i["replica_id"],
            {
                "replica_id": i["replica_id"],
                "node_id": i["replica_node_id"],
                "node_ip": ips.get(i["replica_node_id"]),
                "bundles": [],
            },
        )
        r["bundles"].append(
            {"index": i["bundle_index"], "node_id": i["node_id"], "node_ip": i["node_ip"], "gpu_ids": i["gpu_ids"]}
        )
    for r in replicas.values():
        r["gpu_ids"] = [g for b in r["bundles"] for g in b["gpu_ids"]]
        r["nodes"] = sorted({b["node_ip"] for b in r["bundles"]})
    return list(replicas.values())


def wait_placed(t0: float) -> str | None:
    """Called while waiting for the app: the reason when a placement group stayed PENDING too long."""
    if time.monotonic() - t0 < PENDING_FAIL_S:
        return None
    pend = pending_groups()
    if not pend:
        return None
    return (
        f"pending placement: {len(pend)} placement group(s) still PENDING after {PENDING_FAIL_S:.0f} s "
        f"(bundles {pend[0]['bundles']}, strategy {pend[0]['strategy']}): the cluster has no node with room"
    )
