"""Placement of a sim replica, built the way Ray Serve LLM builds a vLLM replica's placement group.

Ray Serve LLM asks for one bundle per TP x PP rank (`{"GPU": 1}` on GPU, `{"CPU": 1}` on CPU), adds
`accelerator_type:<T>: 0.001` to every bundle when an accelerator type is set, and merges the replica actor's
own resources into the first bundle (Serve requires the actor to fit in bundle 0). vLLM then starts one Ray
worker per bundle that holds the bundle's device. The sim does the same with a `SimRank` actor per bundle, so
Ray hands out real GPU ids (CUDA_VISIBLE_DEVICES) on the nodes that declared GPUs.
"""

from __future__ import annotations

import os
from typing import Any

import ray

RANK_PREFIX = "harness-sim-rank::"  # named actors: harness-sim-rank::<replica id>::<bundle index>


def bundles(placement: dict, replica_cpus: float) -> list[dict[str, float]]:
    n = int(placement.get("tensor_parallel_size", 1)) * int(placement.get("pipeline_parallel_size", 1))
    device = placement.get("device", "gpu")
    one = {"GPU": 1.0} if device == "gpu" else {"CPU": 1.0}
    accel = placement.get("accelerator_type")
    out = []
    for i in range(n):
        b = dict(one)
        if accel:
            b[f"accelerator_type:{accel}"] = 0.001
        if i == 0 and replica_cpus:
            b["CPU"] = b.get("CPU", 0.0) + replica_cpus
        out.append(b)
    return out


def deployment_options(placement: dict | None, replica_cpus: float) -> dict[str, Any]:
    """Serve deployment options for the replica (no placement: the replica actor alone, as before)."""
    if not placement:
        return {"ray_actor_options": {"num_cpus": replica_cpus}}
    return {
        "ray_actor_options": {"num_cpus": replica_cpus},
        "placement_group_bundles": bundles(placement, replica_cpus),
        "placement_group_strategy": placement.get("strategy", "PACK"),
    }


@ray.remote(num_cpus=0)
class SimRank:
    """Holds one bundle's device for the life of its replica, like a vLLM Ray worker, and says where it is."""

    def __init__(self, replica_id: str, index: int, replica_node_id: str):
        self.info = {
            "replica_id": replica_id,
            "bundle_index": index,
            "replica_node_id": replica_node_id,
            "node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def where(self) -> dict:
        return self.info


def start_ranks(placement: dict, replica_id: str, timeout_s: float = 60.0) -> tuple[list, list[dict]]:
    """One SimRank per bundle of the current placement group; returns (handles, their placement info)."""
    from ray.util.placement_group import get_current_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = get_current_placement_group()
    n = len(bundles(placement, 0.0))
    device = placement.get("device", "gpu")
    node = ray.get_runtime_context().get_node_id()
    handles = []
    for i in range(n):
        opts: dict[str, Any] = {"num_gpus": 1, "num_cpus": 0} if device == "gpu" else {"num_cpus": 1}
        if pg is not None:
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)
        # ray.remote's stub leaves SimRank typed as the plain class; at runtime it is an ActorClass
        rank = SimRank.options(name=f"{RANK_PREFIX}{replica_id}::{i}", **opts)  # type: ignore[attr-defined]
        handles.append(rank.remote(replica_id, i, node))
    infos = ray.get([h.where.remote() for h in handles], timeout=timeout_s)
    return handles, infos
