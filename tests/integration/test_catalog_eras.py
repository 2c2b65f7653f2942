"""Old naming eras through a real Prometheus: the catalog resolves each, and one SLO list evaluates identically.

Ray 2.60 drops custom metric names containing ':', so `ray_vllm:*` and `vllm:*` cannot come from a live
cluster here: the exposition recorded in tests/fixtures (vLLM 0.32 through Ray 2.60) is renamed into each era
and served, with counters and histograms growing over time, from a tiny HTTP server on 127.0.0.1 that one
real Prometheus per era scrapes every 0.5 s. Also compares the harness's Python histogram math with PromQL's
`histogram_quantile(q, sum by (le)(increase(x_bucket[W])))` on the same data.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from harness.metrics.mathx import bucket_around
from harness.metrics.scrape import Prom, Window, scrape
from harness.slo.evaluate import evaluate
from harness.stack.net import free_port, http_get

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FIX = Path(__file__).resolve().parents[1] / "fixtures"
MODEL = "tiny-llama"
BORN_S, RAMP_STEPS = 2.0, 6  # counters appear 2 s after t0 and grow for 6 s, then freeze (the load ended)
KV = [0.1, 0.2, 0.35, 0.5, 0.5, 0.5, 0.3, 0.1]  # gauge schedule per second; the max is held for 3 s
RUNNING = [1, 2, 4, 6, 6, 6, 3, 1]

ERAS = {
    "ray_vllm_ (current)": {"prefix": "ray_vllm_", "old": False, "ray": True},
    "ray_vllm: (pre late 2025)": {"prefix": "ray_vllm:", "old": False, "ray": True},
    "ray_vllm: + old vLLM names": {"prefix": "ray_vllm:", "old": True, "ray": True},
    "vllm: (plain vllm serve)": {"prefix": "vllm:", "old": False, "ray": False},
    "vllm: + old vLLM names": {"prefix": "vllm:", "old": True, "ray": False},
}
RENAMES = {
    "kv_cache_usage_perc": "gpu_cache_usage_perc",
    "inter_token_latency_seconds": "time_per_output_token_seconds",
    "prefix_cache_queries": "gpu_prefix_cache_queries",
    "prefix_cache_hits": "gpu_prefix_cache_hits",
}
SLOS = [
    "kv_cache_usage.max < 0.9",
    "requests_running.max >= 1",
    "queue_waiting.max <= 100",
    "server_ttft.p95 <= 500ms",
    "server_itl.p95 <= 100ms",
    "server_e2e.p99 <= 10s",
    "preemptions.total <= 0",
]
EXPECTED = {
    "server_ttft": "time_to_first_token_seconds",
    "server_itl": "inter_token_latency_seconds",
    "kv_cache_usage": "kv_cache_usage_perc",
    "engine_requests": "request_success_total",
    "prefix_cache_hit_rate": "prefix_cache_hits_total",
}

SESSION = "session_2026-11-25_17-46-34_641078_20979"
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def _recorded() -> list[tuple[str, str, float, str]]:
    """(name, labels, value, kind) of the vLLM-through-Ray lines plus the Ray core lines the harness needs."""
    out, kinds = [], {}
    for f, keep in (
        ("ray-2.60_vllm-0.32_engine-metrics-via-ray.prom", "ray_vllm_"),
        ("ray-2.60_serve-and-core-metrics.prom", "ray_cluster_active_nodes"),
    ):
        for line in (FIX / f).read_text().splitlines():
            if line.startswith("# TYPE "):
                _, _, fam, kind = line.split()
                kinds[fam] = kind
            m = _LINE.match(line)
            if m and m.group(1).startswith(keep):
                name = m.group(1)
                fam = re.sub(r"_(bucket|sum|count|total)$", "", name)
                kind = kinds.get(fam) or kinds.get(name) or ("counter" if name.endswith("_total") else "gauge")
                labels = re.sub(
                    r'SessionName="[^"]*"', f'SessionName="{SESSION}"', m.group(2) or ""
                )  # two captures: one session
                out.append((name, labels, float(m.group(3)), kind))
    return out


def _era_name(name: str, era: dict) -> str | None:
    if not name.startswith("ray_vllm_"):
        return name if era["ray"] else None  # Ray core series exist only behind Ray
    base = name.removeprefix("ray_vllm_")
    if era["old"]:
        for new, old in RENAMES.items():
            if base.startswith(new):
                base = old + base[len(new) :]
    return era["prefix"] + base


class Exposition:
    """Serves every era's text at /<index>/metrics; values are a function of time since `t0`."""

    def __init__(self) -> None:
        self.lines = _recorded()
        self.t0: float | None = None

    def text(self, era: dict) -> str:
        el = None if self.t0 is None else time.time() - self.t0
        step = -1 if el is None else int(el)
        grow = 0.0 if el is None or el < BORN_S else min(int(el - BORN_S) + 1, RAMP_STEPS) / RAMP_STEPS
        g = KV[min(max(step, 0), len(KV) - 1)] if step >= 0 else 0.0
        r = RUNNING[min(max(step, 0), len(RUNNING) - 1)] if step >= 0 else 0
        out = []
        for name, labels, value, kind in self.lines:
            n = _era_name(name, era)
            if n is None:
                continue
            if kind in ("counter", "histogram"):
                if grow == 0.0:
                    continue  # Ray exports a counter only after its first increment
                v = value * grow
            elif "kv_cache_usage" in name:
                v = g
            elif "num_requests_running" in name:
                v = r
            else:
                v = value
            out.append(f"{n}{labels} {v!r}")
        return "\n".join(out) + "\n"


def _is_ours(url: str, tsdb: Path, proc: subprocess.Popen, timeout_s: float = 30.0) -> bool:
    """The Prometheus answering at `url` is the one we started (same tsdb path), within a bounded wait."""
    import json

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            status, body = http_get(f"{url}/api/v1/status/flags", 1)
            if status == 200:
                return json.loads(body)["data"].get("storage.tsdb.path") == str(tsdb)
        except Exception:
            pass
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def eras(tmp_path_factory):
    exe = shutil.which("prometheus")
    if not exe:
        pytest.skip("prometheus binary not installed")
    expo = Exposition()
    names = list(ERAS)

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            m = re.fullmatch(r"/(\d+)/metrics", self.path)
            if not m or int(m.group(1)) >= len(names):
                self.send_error(404)
                return
            body = expo.text(ERAS[names[int(m.group(1))]]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    procs, urls = [], {}
    try:
        for i, era in enumerate(names):
            d = tmp_path_factory.mktemp(f"prom{i}")
            port = free_port()
            cfg = {
                "global": {"scrape_interval": "500ms", "evaluation_interval": "5s"},
                "scrape_configs": [
                    {
                        "job_name": "era",
                        "metrics_path": f"/{i}/metrics",
                        "static_configs": [{"targets": [f"127.0.0.1:{srv.server_port}"]}],
                    }
                ],
            }
            (d / "prometheus.yml").write_text(yaml.safe_dump(cfg))
            # a port picked free can be taken before Prometheus binds it (busy box): then the URL would answer with
            # another era's Prometheus. Start, check it is ours (its tsdb path), else retry on another port.
            for _attempt in range(5):
                p = subprocess.Popen(
                    [
                        exe,
                        f"--config.file={d / 'prometheus.yml'}",
                        f"--storage.tsdb.path={d / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                procs.append(p)
                if _is_ours(f"http://127.0.0.1:{port}", d / "data", p):
                    break
                port = free_port()
            urls[era] = f"http://127.0.0.1:{port}"
        for url in urls.values():  # bounded wait until each Prometheus has scraped its target once
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if http_get(f"{url}/-/ready", 1)[0] == 200 and Prom(url).scalar('up{job="era"}') == 1:
                        break
                except Exception:
                    pass
                time.sleep(0.3)
            else:
                pytest.fail(f"Prometheus {url} never scraped the exposition server")
        expo.t0 = time.time()
        window = Window(expo.t0 + 0.5, expo.t0 + 0.5, expo.t0 + len(KV) + 0.5)
        time.sleep(window.end - time.time() + 1.0)
        results = {}
        for era, url in urls.items():
            res = scrape(url, window, model=MODEL, app=None, step_s=0.5, settle_timeout_s=10, settle_quiet_s=1.5)
            results[era] = (url, res, evaluate(SLOS, {}, res.stats, res.resolved))
        yield window, results
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        srv.shutdown()


def test_catalog_resolves_every_era(eras):
    _, results = eras
    for era, (_, res, _) in results.items():
        cfg = ERAS[era]
        for sig, base in EXPECTED.items():
            got = res.resolved[sig]
            assert got is not None, f"{era}: {sig} unresolved"
            want = base
            if cfg["old"]:
                for new, old in RENAMES.items():
                    want = want.replace(new, old)
            assert got.startswith(cfg["prefix"] + want), (era, sig, got)
        assert (res.resolved["cluster_nodes"] is not None) == cfg["ray"]
        assert res.settled and not [e for e in res.errors if "still moving" in e]


def test_same_slos_evaluate_identically_in_every_era(eras):
    _, results = eras
    verdicts = {era: [(v.slo, v.observed, v.passed) for v in vs] for era, (_, _, vs) in results.items()}
    ref_era = next(iter(verdicts))
    ref = verdicts[ref_era]
    assert all(obs is not None for _, obs, _ in ref), ref
    assert all(passed for _, _, passed in ref), ref
    for era, vs in verdicts.items():
        for (slo, a, pa), (_, b, pb) in zip(ref, vs):
            assert pa == pb and a == pytest.approx(b, rel=1e-9), f"{slo}: {ref_era} {a} vs {era} {b}"
    # counters and the derived hit rate agree too (identical exposition, frozen before the scrape)
    stats = [res.stats for _, res, _ in results.values()]
    for s in stats[1:]:
        assert s["engine_requests"]["total_run"] == pytest.approx(stats[0]["engine_requests"]["total_run"])
        assert s["prefix_cache_hit_rate"]["value"] == pytest.approx(stats[0]["prefix_cache_hit_rate"]["value"])


def test_counter_totals_are_exact_and_promql_histogram_quantile_agrees_within_a_bucket(eras):
    window, results = eras
    url, res, _ = results["ray_vllm_ (current)"]
    recorded = {
        n: v
        for n, lab, v, k in _recorded()
        if n in ("ray_vllm_request_success_total", "ray_vllm_prefix_cache_hits_total")
    }
    # born inside the window: Python counts the first increment; recorded finals are reached exactly
    assert res.stats["engine_requests"]["total_run"] == pytest.approx(recorded["ray_vllm_request_success_total"])
    assert res.stats["prefix_cache_hit_rate"]["value"] == pytest.approx(512.0 / 1710.0)
    prom = Prom(url)
    at = time.time()
    w = int(math.ceil(at - window.start))
    diffs = []
    for q in (0.5, 0.9, 0.95, 0.99):
        pq = (
            prom.scalar(
                f"histogram_quantile({q}, sum by (le)(increase(ray_vllm_time_to_first_token_seconds_bucket[{w}s])))", at
            )
            * 1000
        )
        py = res.stats["server_ttft"][{0.5: "p50", 0.9: "p90", 0.95: "p95", 0.99: "p99"}[q]]
        lo, hi = bucket_around(res.histograms["server_ttft"]["le"], py)
        diffs.append((q, py, pq))
        assert abs(pq - py) <= hi - lo, f"q={q}: python {py:.2f} ms vs PromQL {pq:.2f} ms (bucket {lo}-{hi})"
    promql_count = prom.scalar(f"sum(increase(ray_vllm_request_success_total[{w}s]))", at)
    print(
        "PromQL vs Python (ms):",
        [(q, round(a, 2), round(b, 2)) for q, a, b in diffs],
        f"request count PromQL {promql_count:.2f} vs Python {res.stats['engine_requests']['total_run']:.0f}",
    )
    # PromQL increase() loses the first increment of a series born in the window (and extrapolates):
    assert promql_count < res.stats["engine_requests"]["total_run"]
