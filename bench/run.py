"""Load-generator benchmarks: the harness's Locust user vs a plain aiohttp client, measured in the same run.

    harness bench                       # all three, ~2 min
    python bench/run.py --only efficiency,fidelity --duration-s 8 --json out.json

(a) efficiency: CPU-ms per completed streamed request (64 tokens, one SSE event each) and req/s against the
    zero-latency mock, 64 concurrent streams. Locust's CPU is RUSAGE_CHILDREN around run_load minus the CPU of
    an idle run of the same kind (start-up, imports, drain), so it is the per-request cost; the sample merge
    into Parquet runs in this process and is not counted. The reference counts its CPU from the load's start.
(b) fidelity: client TTFT / ITL percentiles minus the mock's own timing (t_recv → first send, gaps between
    sends) at 1 and 64 concurrent streams, mock TTFT 50 ms / ITL 10 ms.
(c) scaling: req/s against the zero-latency mock with 1 and 2 Locust worker processes (master + N).
(d) coalesced: the mock sends 4 tokens per SSE event (tokens on a 10 ms schedule, an event every 40 ms); per-token
    ITL error against the mock's own per-token timing (each event's send gap / its tokens), with continuous
    usage stats (tokens per event known) and without (one token per event assumed, as before per-token ITL).
The mock runs in its own process and shares the machine's cores with the client: on a 2-core box the numbers
are noisy, the mock is often the bottleneck at zero latency, and ratios to the reference matter more than
absolute values. Never a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness.load.runner import run_load  # noqa: E402
from harness.scenario import parse_scenario  # noqa: E402

TOKENS = 64


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Mock:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, str(HERE / "mock_openai.py"), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.p.stdout.readline()
        if not line.startswith("LISTENING"):
            raise SystemExit(f"mock did not start: {line!r}")
        self.url = line.split()[1]

    def records(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/mock/records", timeout=30) as r:
            return json.load(r)

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/mock/reset", method="POST"), timeout=10).read()

    def stop(self) -> None:
        self.p.terminate()
        self.p.wait(10)


def _scenario(
    url: str, users: int, duration_s: float, workers: int = 0, warmup_s: float = 1.0, continuous: bool = True
):
    return parse_scenario(
        {
            "name": "bench",
            "target": {"engine": "external", "model": "mock", "url": url},
            "workload": {
                "prompt_tokens": {"mean": 32},
                "output_tokens": {"mean": TOKENS},
                "request_timeout_s": 30,
                "continuous_usage_stats": continuous,
            },
            "load": {
                "warmup_s": warmup_s if users else 0,
                "workers": workers,
                "stages": [{"duration_s": duration_s, "users": users, "spawn_rate": 1000}],
            },
        }
    )


def locust_run(url: str, users: int, duration_s: float, workers: int = 0, continuous: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as d:
        c0 = _children_cpu()
        res = run_load(_scenario(url, users, duration_s, workers, continuous=continuous), url, Path(d))
        cpu = _children_cpu() - c0
        import pandas as pd

        df = pd.read_parquet(res.samples_path)
    ok = df[df.ok]
    meas = ok[~ok.warmup]
    itl = np.concatenate([np.asarray(x) for x in meas.itl_ms if len(x)]) if len(meas) else np.array([])
    gaps = np.concatenate([np.asarray(x) for x in meas.chunk_gap_ms if len(x)]) if len(meas) else np.array([])
    return {
        "requests": int(len(ok)),
        "errors": res.errors,
        "cpu_s": cpu,
        "wall_s": duration_s,
        "chunk_gap_ms": gaps,
        "rps": len(ok) / duration_s,
        "ttft_ms": meas.ttft_ms.to_numpy(),
        "itl_ms": itl,
        "started_at": res.started_at,
        "warmup_end": res.warmup_end,
        "generator": res.generator,
    }


def ref_run(url: str, conc: int, duration_s: float) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "ref_aiohttp.py"),
            url,
            "--concurrency",
            str(conc),
            "--duration-s",
            str(duration_s),
            "--tokens",
            str(TOKENS),
        ],
        capture_output=True,
        text=True,
        timeout=duration_s + 120,
    )
    d = json.loads(out.stdout.strip().splitlines()[-1])
    d["rps"] = d["requests"] / d["wall_s"]
    d["ttft_ms"], d["itl_ms"] = np.asarray(d["ttft_ms"]), np.asarray(d["itl_ms"])
    return d


def server_timing(records: list[dict], since: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    ttft, itl = [], []
    for r in records:
        s = r.get("sends") or []
        if r.get("status") != 200 or not s or r["t_recv"] < since:
            continue
        ttft.append((s[0] - r["t_recv"]) * 1000.0)
        itl += [(b - a) * 1000.0 for a, b in zip(s, s[1:])]
    return np.asarray(ttft), np.asarray(itl)


def server_per_token_itl(records: list[dict], since: float = 0.0) -> np.ndarray:
    """The mock's own per-token gaps: each event's send gap spread over the tokens it carried."""
    out: list[float] = []
    for r in records:
        s, k = r.get("sends") or [], int(r.get("tokens_per_event") or 1)
        if r.get("status") != 200 or r["t_recv"] < since:
            continue
        n = int(r.get("n") or 0)
        for i, (a, b) in enumerate(zip(s, s[1:])):
            toks = min(k, n - (i + 1) * k)  # tokens in event i+1 (the last may be shorter)
            out += [(b - a) * 1000.0 / max(toks, 1)] * max(toks, 1)
    return np.asarray(out)


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


# ---------- the three benchmarks ----------


def efficiency(dur: float) -> dict:
    m = Mock("--ttft-ms", "0", "--itl-ms", "0", "--no-record-tokens")
    try:
        idle = locust_run(m.url, 0, 2.0)  # start-up + drain + idle probes: the fixed cost
        loc = locust_run(m.url, 64, dur)
        m.reset()
        ref = ref_run(m.url, 64, dur)
    finally:
        m.stop()
    # fixed cost scales a little with duration (idle greenlets); subtract it once
    loc_net = max(loc["cpu_s"] - idle["cpu_s"], 0.0)
    return {
        "locust": {
            "cpu_ms_per_req": loc_net * 1000 / max(loc["requests"], 1),
            "cpu_ms_per_req_raw": loc["cpu_s"] * 1000 / max(loc["requests"], 1),
            "rps": loc["rps"],
            "requests": loc["requests"],
            "fixed_cpu_s": idle["cpu_s"],
        },
        "aiohttp": {
            "cpu_ms_per_req": ref["cpu_s"] * 1000 / max(ref["requests"], 1),
            "rps": ref["rps"],
            "requests": ref["requests"],
        },
    }


def fidelity(dur: float) -> dict:
    out = {}
    m = Mock("--ttft-ms", "50", "--itl-ms", "10")
    try:
        for conc in (1, 64):
            m.reset()
            loc = locust_run(m.url, conc, dur)
            s_ttft, s_itl = server_timing(m.records(), since=loc["warmup_end"])
            m.reset()
            ref = ref_run(m.url, conc, dur)
            r_ttft, r_itl = server_timing(m.records())
            row = {}
            for name, c, st, si in (("locust", loc, s_ttft, s_itl), ("aiohttp", ref, r_ttft, r_itl)):
                row[name] = {
                    "requests": int(len(c["ttft_ms"])),
                    "ttft_p50_err_ms": pct(c["ttft_ms"], 50) - pct(st, 50),
                    "ttft_p99_err_ms": pct(c["ttft_ms"], 99) - pct(st, 99),
                    "itl_p50_err_ms": pct(c["itl_ms"], 50) - pct(si, 50),
                    "itl_p99_err_ms": pct(c["itl_ms"], 99) - pct(si, 99),
                    "itl_mean_err_ms": float(np.mean(c["itl_ms"]) - np.mean(si))
                    if len(si) and len(c["itl_ms"])
                    else float("nan"),
                    "server_ttft_p50_ms": pct(st, 50),
                    "server_ttft_p99_ms": pct(st, 99),
                }
            row["locust"]["lag_p99_ms"] = (loc["generator"] or {}).get("lag_p99_ms_max")
            out[f"streams_{conc}"] = row
    finally:
        m.stop()
    return out


def scaling(dur: float) -> dict:
    m = Mock("--ttft-ms", "0", "--itl-ms", "0", "--no-record-tokens")
    try:
        res = {f"workers_{w}": locust_run(m.url, 64, dur, workers=w)["rps"] for w in (1, 2)}
        m.reset()
        res["aiohttp"] = ref_run(m.url, 64, dur)["rps"]
    finally:
        m.stop()
    return res


def coalesced(dur: float) -> dict:
    out = {}
    m = Mock("--ttft-ms", "50", "--itl-ms", "10", "--coalesce", "4")
    try:
        for name, cont in (("usage_per_event", True), ("one_token_per_event", False)):
            m.reset()
            loc = locust_run(m.url, 8, dur, continuous=cont)
            truth = server_per_token_itl(m.records(), since=loc["warmup_end"])
            c = loc["itl_ms"]
            out[name] = {
                "requests": loc["requests"],
                "itl_values": int(len(c)),
                "truth_values": int(len(truth)),
                "itl_p50_err_ms": pct(c, 50) - pct(truth, 50),
                "itl_p99_err_ms": pct(c, 99) - pct(truth, 99),
                "itl_mean_err_ms": float(np.mean(c) - np.mean(truth)) if len(c) and len(truth) else float("nan"),
                "truth_p50_ms": pct(truth, 50),
                "chunk_gap_p50_ms": pct(loc["chunk_gap_ms"], 50),
            }
    finally:
        m.stop()
    return out


# ---------- output ----------


def render(r: dict) -> str:
    L = []
    if "efficiency" in r:
        e = r["efficiency"]
        lo, ao = e["locust"], e["aiohttp"]
        L += [
            "(a) efficiency: zero-latency mock, 64 streams x 64 tokens",
            f"  {'client':10} {'CPU-ms/req':>11} {'req/s':>9} {'requests':>9}",
            f"  {'locust':10} {lo['cpu_ms_per_req']:11.3f} {lo['rps']:9.1f} {lo['requests']:9d}   "
            f"(raw incl. start-up {lo['cpu_ms_per_req_raw']:.3f}; fixed {lo['fixed_cpu_s']:.2f} s)",
            f"  {'aiohttp':10} {ao['cpu_ms_per_req']:11.3f} {ao['rps']:9.1f} {ao['requests']:9d}",
            f"  ratio locust/aiohttp: CPU {lo['cpu_ms_per_req'] / max(ao['cpu_ms_per_req'], 1e-9):.2f}x, "
            f"req/s {lo['rps'] / max(ao['rps'], 1e-9):.2f}x   (target <= 0.5 CPU-ms/req)",
            "",
        ]
    if "fidelity" in r:
        L += [
            "(b) fidelity: client minus mock-measured timing (ms), mock TTFT 50 / ITL 10",
            f"  {'streams':8} {'client':8} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} "
            f"{'ITL mean':>9} {'n':>6}",
        ]
        for k, row in r["fidelity"].items():
            for name in ("locust", "aiohttp"):
                x = row[name]
                L.append(
                    f"  {k.split('_')[1]:8} {name:8} {x['ttft_p50_err_ms']:+9.2f} {x['ttft_p99_err_ms']:+9.2f} "
                    f"{x['itl_p50_err_ms']:+8.3f} {x['itl_p99_err_ms']:+8.3f} {x['itl_mean_err_ms']:+9.3f} "
                    f"{x['requests']:6d}"
                )
        L += ["  (targets: TTFT p50 <= 1 ms @1, p99 <= 5 ms @64, ITL <= 0.1 ms)", ""]
    if "scaling" in r:
        s = r["scaling"]
        L += [
            "(c) scaling: req/s vs Locust worker processes (zero-latency mock, 64 streams)",
            f"  workers 1: {s['workers_1']:.1f}   workers 2: {s['workers_2']:.1f}   "
            f"ratio {s['workers_2'] / max(s['workers_1'], 1e-9):.2f}x"
            f"   aiohttp (1 process): {s['aiohttp']:.1f}",
        ]
    if "coalesced" in r:
        L += [
            "",
            "(d) coalesced: 4 tokens per SSE event, mock ITL 10 ms per token; "
            "client per-token ITL minus the mock's (ms)",
            f"  {'token counts':22} {'ITL p50':>8} {'ITL p99':>8} {'ITL mean':>9} {'values':>8} {'truth':>8} "
            f"{'gap p50':>8}",
        ]
        for name, x in r["coalesced"].items():
            L.append(
                f"  {name:22} {x['itl_p50_err_ms']:+8.3f} {x['itl_p99_err_ms']:+8.3f} {x['itl_mean_err_ms']:+9.3f} "
                f"{x['itl_values']:8d} {x['truth_values']:8d} {x['chunk_gap_p50_ms']:8.2f}"
            )
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="efficiency,fidelity,scaling,coalesced")
    ap.add_argument("--duration-s", type=float, default=8.0)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    a = ap.parse_args()
    fns = {"efficiency": efficiency, "fidelity": fidelity, "scaling": scaling, "coalesced": coalesced}
    res: dict = {
        "machine": {"cpus": __import__("os").cpu_count(), "loadavg_start": list(__import__("os").getloadavg())}
    }
    for name in a.only.split(","):
        t0 = time.monotonic()
        res[name] = fns[name](a.duration_s)
        print(f"[{name} done in {time.monotonic() - t0:.0f} s]", file=sys.stderr)
    res["machine"]["loadavg_end"] = list(__import__("os").getloadavg())
    print(render(res))
    print(
        f"load average start {res['machine']['loadavg_start'][0]:.1f}, end {res['machine']['loadavg_end'][0]:.1f} "
        f"on {res['machine']['cpus']} CPUs (shared machine: expect noise)"
    )
    if a.json:
        a.json.write_text(json.dumps(res, indent=2, default=float))


if __name__ == "__main__":
    main()
