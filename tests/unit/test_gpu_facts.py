"""GPU facts per node and GPU: catalog resolution of Ray's node GPU series and the DCGM exporter's (both naming
eras), the per-GPU record (node_stats.gpus) and its report table, and the stated `no data` on CPU. No GPU ran these:
tests/fixtures/gpu_ray-node-and-dcgm-exporter.prom is written from the documented series names and labels."""

from __future__ import annotations

import re

import pytest
from test_catalog import FIX, names_in

from harness.metrics import per_node
from harness.metrics.catalog import resolve
from harness.report.markdown import gpu_lines

GPU_PROM = "gpu_ray-node-and-dcgm-exporter.prom"
GPU = ("gpu_utilization", "gpu_memory_used", "gpu_power", "gpu_sm_clock")
MIB = 1024.0 * 1024.0


def test_ray_first_then_dcgm_then_dcgm_1x() -> None:
    allnames = names_in(GPU_PROM)
    r = resolve(allnames)
    assert (r["gpu_utilization"], r["gpu_memory_used"]) == ("ray_node_gpus_utilization", "ray_node_gram_used")
    assert (r["gpu_power"], r["gpu_sm_clock"]) == ("DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK")  # DCGM only
    dcgm = resolve({n for n in allnames if n.startswith("DCGM_")})
    assert [dcgm[s] for s in GPU] == [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_SM_CLOCK",
    ]
    old = resolve({n for n in allnames if n.startswith("dcgm_")})
    assert [old[s] for s in GPU] == ["dcgm_gpu_utilization", "dcgm_fb_used", "dcgm_power_usage", "dcgm_sm_clock"]
    cpu = resolve(names_in("ray-2.60_serve-and-core-metrics.prom"))  # captured on this CPU box
    assert [cpu[s] for s in GPU] == [None] * 4


class _FakeProm:
    """Answers `max by (labels) (fn(metric{sel}[r]))` from the exposition file: one result per series."""

    def __init__(self, url: str) -> None:
        self.rows = []
        for line in (FIX / GPU_PROM).read_text().splitlines():
            m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)\{(.*)\} (\S+)$", line)
            if m:
                self.rows.append((m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2))), float(m.group(3))))

    def instant(self, q: str, at: float | None = None) -> list[dict]:
        by = re.search(r"max by \(([^)]*)\)", q).group(1).split(", ")  # type: ignore[union-attr]
        metric = re.search(r"_over_time\(([A-Za-z_:][A-Za-z0-9_:]*)", q).group(1)  # type: ignore[union-attr]
        return [
            {"metric": {k: v for k, v in labels.items() if k in by}, "value": [at, str(value)]}
            for name, labels, value in self.rows
            if name == metric
        ]


@pytest.fixture()
def fake_prom(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.metrics.scrape as scrape

    monkeypatch.setattr(scrape, "Prom", _FakeProm)


def test_per_gpu_record_from_ray_series(fake_prom: None) -> None:
    out = per_node.per_gpu_stats("http://x", resolve(names_in(GPU_PROM)), "session_x", 0.0, 60.0)
    ray_node = out["nodes"]["10.0.0.2"]
    assert sorted(ray_node) == ["0", "1"]
    assert ray_node["0"]["gpu_utilization"] == {"max": 0.87, "mean": 0.87, "last": 0.87}
    assert ray_node["1"]["gpu_memory_used"]["max"] == 70010.0 * MIB
    dcgm_node = out["nodes"]["gpu-node-1"]  # power and clock only from DCGM, keyed by its Hostname and gpu
    assert dcgm_node["0"]["gpu_power"]["max"] == 612.5 and dcgm_node["0"]["gpu_sm_clock"]["last"] == 1980.0
    assert out["series"]["gpu_utilization"] == "ray_node_gpus_utilization"
    text = "\n".join(gpu_lines(out))
    assert "| 10.0.0.2 | 0 | 87 / 87 % | 70 / 70 GiB | — | — |" in text
    assert "| gpu-node-1 | 0 | — | — | 612 / 612 W | 1980 / 1980 MHz |" in text


def test_cpu_run_states_no_data(fake_prom: None) -> None:
    cpu = resolve(names_in("ray-2.60_serve-and-core-metrics.prom"))
    out = per_node.per_gpu_stats("http://x", cpu, "session_x", 0.0, 60.0)
    assert out == {"no_data": per_node.NO_GPU}
    assert gpu_lines(out) == ["", "## GPUs", "", f"No data: {per_node.NO_GPU}."]


def test_gpu_key_reads_either_exporters_labels() -> None:
    assert per_node.gpu_key({"ip": "10.0.0.2", "GpuIndex": "3"}) == ("10.0.0.2", "3")
    assert per_node.gpu_key({"Hostname": "n1", "gpu": "7"}) == ("n1", "7")
