"""Grafana dashboards as code, built from the metric catalog so every query names series that exist
(each naming era joined with `or`), plus import of Ray's generated dashboards with the KubeRay-only
`ray_io_cluster` filter removed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TypedDict

from harness.metrics.catalog import CATALOG, series_name
from harness.paths import asset_dir

DASHBOARD_DIR = asset_dir("docker") / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # uid provisioned in docker/grafana/provisioning
RATE_WINDOW = "1m"

# Default SLO lines drawn on panels (canonical units of the panel).
THRESHOLDS = {"kv_cache_usage": 0.9, "server_ttft": 0.5, "server_itl": 0.05, "server_e2e": 10.0, "error_ratio": 0.01}


def _sel(metric: str) -> str:
    # Ray's series are scraped by job "ray"; a legacy static job may scrape the same endpoint again.
    job = ',job="ray"' if metric.startswith("ray_") else ""
    return f'{{__name__="{metric}"{job}}}'


def _alts(names, fmt: str) -> str:
    """`fmt` applied to every candidate series, joined with `or` (the first era that has data answers)."""
    return " or ".join(fmt.format(s=_sel(n)) for n in names)


def gauge_expr(signal: str, by: str = "", agg: str | None = None) -> str:
    sig = CATALOG[signal]
    grp = f" by ({by})" if by else ""
    # Ray exports some gauges only in bursts (per health check): hold each series' last value across the gaps
    inner = f"last_over_time({{s}}[{sig.hold_s:g}s])" if sig.hold_s else "{s}"
    return _alts(sig.candidates, f"{agg or sig.agg}{grp}({inner})")


def rate_expr(signal: str, by: str = "") -> str:
    sig = CATALOG[signal]
    grp = f" by ({by})" if by else ""
    return _alts(sig.candidates, f"sum{grp}(rate({{s}}[{RATE_WINDOW}]))")


def quantile_expr(signal: str, q: float) -> str:
    sig = CATALOG[signal]
    buckets = [series_name(sig, c) for c in sig.candidates]
    inner = _alts(buckets, f"sum by (le) (rate({{s}}[{RATE_WINDOW}]))")
    return f"histogram_quantile({q}, {inner})"


def _panel(
    pid: int,
    title: str,
    targets: list[tuple[str, str]],
    unit: str,
    x: int,
    y: int,
    threshold: float | None = None,
    description: str = "",
) -> dict:
    fc: dict = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 0}}
    if threshold is not None:
        fc["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": threshold}],
        }
        fc["custom"]["thresholdsStyle"] = {"mode": "line"}
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": fc, "overrides": []},
        "targets": [
            {"refId": chr(65 + i), "expr": e, "legendFormat": leg, "datasource": DATASOURCE}
            for i, (e, leg) in enumerate(targets)
        ],
    }


def _dashboard(uid: str, title: str, panels: list[dict]) -> dict:
    return {
        "uid": uid,
        "title": title,
        "tags": ["harness"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "panels": panels,
        "templating": {"list": []},
        "annotations": {"list": []},
    }


class _PanelOpts(TypedDict, total=False):
    threshold: float
    description: str


_Targets = list[tuple[str, str]]
# (title, [(expr, legend)], unit) or (title, [(expr, legend)], unit, {threshold, description})
_PanelSpec = tuple[str, _Targets, str] | tuple[str, _Targets, str, _PanelOpts]


def _grid(specs: list[_PanelSpec]) -> list[dict]:
    panels = []
    for i, spec in enumerate(specs):
        opts: _PanelOpts = spec[3] if len(spec) == 4 else {}
        panels.append(_panel(i + 1, spec[0], spec[1], spec[2], x=(i % 2) * 12, y=(i // 2) * 8, **opts))
    return panels


def build_dashboards() -> dict[str, dict]:
    """file name → Grafana dashboard JSON (pure)."""
    pct = lambda s: [(quantile_expr(s, q), f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)]  # noqa: E731
    golden = _grid(
        [
            ("Time to first token", pct("server_ttft"), "s", {"threshold": THRESHOLDS["server_ttft"]}),
            ("Inter-token latency", pct("server_itl"), "s", {"threshold": THRESHOLDS["server_itl"]}),
            ("End-to-end request latency", pct("server_e2e"), "s", {"threshold": THRESHOLDS["server_e2e"]}),
            (
                "KV-cache usage (max over replicas)",
                [(gauge_expr("kv_cache_usage"), "kv usage")],
                "percentunit",
                {"threshold": THRESHOLDS["kv_cache_usage"]},
            ),
            (
                "Requests running / waiting",
                [(gauge_expr("requests_running"), "running"), (gauge_expr("queue_waiting"), "waiting")],
                "short",
            ),
            ("Preemptions / s", [(rate_expr("preemptions"), "preemptions")], "short"),
        ]
    )
    autoscaling = _grid(
        [
            ("Healthy replicas by deployment", [(gauge_expr("replicas", "deployment"), "{{deployment}}")], "short"),
            (
                "Target vs desired replicas",
                [
                    (gauge_expr("target_replicas", "deployment"), "target {{deployment}}"),
                    (gauge_expr("desired_replicas", "deployment"), "desired {{deployment}}"),
                ],
                "short",
            ),
            (
                "Replica starts / min",
                [(rate_expr("replica_starts", "deployment") + " * 60", "{{deployment}}")],
                "short",
            ),
            (
                "Serve requests / s by deployment",
                [(rate_expr("serve_requests", "deployment"), "{{deployment}}")],
                "reqps",
            ),
        ]
    )
    gpu = _grid(
        [
            (
                "GPU utilisation by node",
                [(gauge_expr("gpu_utilization", "instance", "avg"), "{{instance}}")],
                "percent",
                {"description": "Ray's node GPU metrics; empty on CPU-only clusters."},
            ),
            (
                "GPU memory used by node (MiB)",
                [(gauge_expr("gpu_memory_used", "instance"), "{{instance}}")],
                "decmbytes",
            ),
            ("Cluster nodes", [(gauge_expr("cluster_nodes"), "active nodes")], "short"),
        ]
    )
    throughput = _grid(
        [
            ("Generated tokens / s", [(rate_expr("generation_tokens"), "output tok/s")], "short"),
            ("Prompt tokens / s", [(rate_expr("prompt_tokens"), "prompt tok/s")], "short"),
            ("Serve HTTP requests / s", [(rate_expr("serve_http_requests"), "req/s")], "reqps"),
            # the error counter appears only after the first error: absent means zero here
            (
                "Serve HTTP error ratio",
                [(f"({rate_expr('serve_errors')} or vector(0)) / ({rate_expr('serve_http_requests')})", "errors")],
                "percentunit",
                {"threshold": THRESHOLDS["error_ratio"]},
            ),
            (
                "Serve HTTP latency (ms)",
                [(quantile_expr("serve_latency", q), f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)],
                "ms",
            ),
        ]
    )
    return {
        "vllm-golden-signals.json": _dashboard("harness-vllm-golden", "harness · vLLM golden signals", golden),
        "serve-autoscaling.json": _dashboard("harness-serve-autoscaling", "harness · Serve autoscaling", autoscaling),
        "gpu-utilisation.json": _dashboard("harness-gpu", "harness · GPU utilisation", gpu),
        "throughput-latency.json": _dashboard("harness-throughput", "harness · throughput and latency", throughput),
    }


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def write_dashboards(out_dir: Path = DASHBOARD_DIR / "harness") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, dash in build_dashboards().items():
        p = out_dir / name
        p.write_text(json.dumps(dash, indent=2, sort_keys=True) + "\n")
        paths.append(p)
    return paths


# ---------- Ray's generated dashboards ----------

_CLUSTER_MATCHER = re.compile(r',?\s*ray_io_cluster=~\\?"\$Cluster\\?"\s*,?')


def fix_ray_dashboard(text: str) -> str:
    """Drop the KubeRay-only `ray_io_cluster=~"$Cluster"` matcher and the Cluster variable.

    Outside KubeRay no series carries `ray_io_cluster`, so the variable has no values and every panel is empty.
    """

    def _sub(m: re.Match) -> str:
        s = m.group(0)
        return "," if s.lstrip().startswith(",") and s.rstrip().endswith(",") else ""

    text = _CLUSTER_MATCHER.sub(_sub, text)
    dash = json.loads(text)
    tmpl = dash.get("templating", {}).get("list", [])
    dash.setdefault("templating", {})["list"] = [v for v in tmpl if v.get("name") != "Cluster"]
    return json.dumps(dash, indent=2)


def import_ray_dashboards(ray_temp_dir: Path, out_dir: Path = DASHBOARD_DIR / "ray") -> list[Path]:
    src = Path(ray_temp_dir) / "session_latest" / "metrics" / "grafana" / "dashboards"
    if not src.is_dir():
        from harness.errors import HarnessError

        raise HarnessError(
            f"{src}: Ray's generated Grafana dashboards are not there",
            fix="give the Ray temp dir of a running or past cluster (default /tmp/ray; a local harness stack "
            "uses /tmp/harness-ray/<id>); Ray writes them when the head starts",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in sorted(src.glob("*.json")):
        dst = out_dir / f.name
        dst.write_text(fix_ray_dashboard(f.read_text()))
        written.append(dst)
    return written
