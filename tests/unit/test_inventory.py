"""run.json environment.inventory (CPU model, memory, GPU driver/CUDA, accelerators per node from Ray's resources,
container) and `harness compare`'s warning when two runs differ in it. No GPU ran these: the GPU cases feed the
functions the shapes Ray's `ray.nodes()` and nvidia-smi document (its header line `CUDA Version: 12.4`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.compare import compare_runs
from harness.record import environment as envmod

CMP = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "compare"


def test_cpu_machine_states_no_gpu_data() -> None:
    inv = envmod.inventory({"nodes": 1, "gpus": 0.0, "node_list": [{"node_ip": "127.0.0.1", "gpus": 0.0}]}, None)
    assert inv["gpu"] == {"present": False, "no_data": "no GPU: Ray lists 0 GPUs and nvidia-smi found none (CPU run)"}
    assert inv["gpu_driver"] is None and inv["nodes"][0]["node_ip"] == "127.0.0.1"
    assert inv["memory_total_bytes"] and inv["memory_total_bytes"] > 2**30  # this box: 24 GiB
    assert inv["cpu_model"]


def test_gpu_cluster_facts_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = {
        "nodes": 2,
        "gpus": 8.0,
        "node_list": [
            {"node_ip": "10.0.0.1", "accelerator_type": None, "gpus": 0.0, "cpus": 8.0, "memory_bytes": 1e10},
            {"node_ip": "10.0.0.2", "accelerator_type": "H100", "gpus": 8.0, "cpus": 96.0, "memory_bytes": 1e12},
        ],
    }
    smi = [{"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "memory": "81559 MiB"}] * 8
    monkeypatch.setattr(envmod.shutil, "which", lambda exe: "/usr/bin/nvidia-smi")
    header = "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |\n"
    monkeypatch.setattr(
        envmod.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=header, stderr="")
    )
    inv = envmod.inventory(cluster, smi)
    assert inv["gpu"] == {"present": True} and inv["gpu_driver"] == "550.54.15" and inv["cuda"] == "12.4"
    assert [(n["accelerator_type"], n["gpus"]) for n in inv["nodes"]] == [(None, 0.0), ("H100", 8.0)]


def test_cuda_from_torch_build_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envmod.shutil, "which", lambda exe: None)
    monkeypatch.setattr(envmod, "_version", lambda d: "2.5.1+cu124" if d == "torch" else None)
    assert envmod.cuda_version() == "12.4"
    monkeypatch.setattr(envmod, "_version", lambda d: "2.13.0+cpu" if d == "torch" else None)
    assert envmod.cuda_version() is None


def _with_inventory(tmp_path: Path, src: str, name: str, inv: dict) -> Path:
    d = shutil.copytree(CMP / src, tmp_path / name)
    run = json.loads((d / "run.json").read_text())
    run["environment"]["inventory"] = inv
    (d / "run.json").write_text(json.dumps(run))
    return d


def test_compare_warns_when_inventories_differ(tmp_path: Path) -> None:
    inv = {"cpu_model": "AMD EPYC", "memory_total_bytes": 25 * 2**30, "gpu_driver": None, "cuda": None, "nodes": []}
    a = _with_inventory(tmp_path, "ray-2.59a", "a", inv)
    b = _with_inventory(tmp_path, "ray-2.59b", "b", inv)
    assert not [w for w in compare_runs([a, b])["comparisons"][0]["warnings"] if "hardware" in w]
    c = _with_inventory(tmp_path, "ray-2.59b", "c", {**inv, "cpu_model": "Intel Xeon", "cuda": "12.4"})
    w = [x for x in compare_runs([a, c])["comparisons"][0]["warnings"] if x.startswith("hardware differs")]
    assert "hardware differs: cpu_model: 'AMD EPYC' → 'Intel Xeon'" in w
    assert not any("cuda" in x for x in w)  # unknown on one side (None): older records lack it, not a difference
