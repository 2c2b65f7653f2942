"""Capacity search: the highest arrival rate (or concurrency) at which a scenario still meets its SLOs.

Each step is one ordinary `pipeline.run` of the scenario with its load replaced by a single stage at the step's
rate (open loop) or user count (closed loop); every step is a full run folder. All steps share one stack (the
one from `harness up`, else one started here and stopped at the end) and one Serve app: later steps reuse the
first step's replicas, and the engine's prefix cache is reset before each step's load (recorded per step as
run.json `cache_reset`; `--no-cache-reset` turns it off), so one step's seeded prompts are not served from the
cache an earlier step filled (vLLM #54227). With `repeat` > 1 each step is a repeat group
(harness/commands/repeat.py) and passes only when every repeat passes; its numbers are medians over the repeats.
The search is bounded: candidates in ascending order until the first failure, then at most `refine`
bisection steps between the last pass and the first failure. With `load.stop_when.saturation` in the scenario, a
step the detector stops (harness/load/stop.py) ends the sweep there: no larger value or bisection is tried, and
sweep.json reports the capacity found (`capacity`: the saturated step's median achieved rate while saturated).

Goodput per step: requests/s that succeeded and met per-request bounds — the scenario's `goodput:` criteria,
else the thresholds of its ttft/tpot/e2e SLOs applied to each request.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from harness.errors import EXIT_INTERRUPTED, HarnessError
from harness.scenario import Scenario, parse_scenario

Mode = Literal["rate", "concurrency"]
DEFAULT_VALUES = {"rate": [1.0, 2.0, 4.0, 8.0, 16.0], "concurrency": [1.0, 2.0, 4.0, 8.0, 16.0]}


@dataclass
class Step:
    value: float
    run_dir: str
    verdict: str
    exit_code: int
    requests: int = 0
    achieved_rps: float | None = None
    ttft_ms: dict = field(default_factory=dict)  # p50 p95 p99
    itl_ms: dict = field(default_factory=dict)
    error_rate: float | None = None
    goodput_rps: float | None = None
    failed_slos: list = field(default_factory=list)
    generator_bottleneck: bool = False
    cache_reset: dict | None = None  # the step's prefix-cache reset (run.json cache_reset)
    repeats: list = field(default_factory=list)  # with --repeat: [{run_dir, verdict, exit_code}] per repeat
    stopped_early: dict | None = None  # summary.json stopped_early of the step (load.stop_when fired)
    saturated: bool = False  # the saturation detector stopped this step: the sweep ends here


def step_scenario(base: Scenario, mode: Mode, value: float, duration_s: float) -> Scenario:
    d = base.model_dump(mode="json", exclude_none=True)
    ld = d["load"]
    stage = {"name": f"{'rate' if mode == 'rate' else 'users'}-{value:g}", "duration_s": duration_s}
    if mode == "rate":
        stage["rate_rps"] = value
        ld["arrival"] = {k: v for k, v in (ld.get("arrival") or {"process": "poisson"}).items() if k != "rate_rps"}
    else:
        stage.update(users=int(value), spawn_rate=max(float(value), 1.0))
        ld.pop("arrival", None)
    ld["stages"] = [stage]
    ld["warmup_s"] = min(float(ld.get("warmup_s", 0.0)), duration_s / 3)
    ld["cooldown_s"] = min(float(ld.get("cooldown_s", 0.0)), duration_s / 3)
    d.pop("faults", None)  # a capacity search measures steady capacity
    return parse_scenario(d, f"{base.name} (sweep step {value:g})")


def goodput_criteria(sc: Scenario) -> dict[str, float]:
    g = getattr(sc, "goodput", None)
    if g is not None:
        return {k: v for k, v in g.model_dump().items() if v is not None}
    from harness.slo.parse import parse_slo

    out: dict[str, float] = {}
    for text in sc.slos:
        s = parse_slo(text)
        if s.signal in ("ttft", "tpot", "e2e") and s.op in ("<", "<="):
            key = f"{s.signal}_ms"
            out[key] = min(out.get(key, float("inf")), float(s.threshold))
    return out


def _goodput(run_dir: Path, criteria: dict[str, float], duration_s: float) -> float | None:
    from harness.record.read import RecordError, read_samples
    from harness.slo.evaluate import goodput_stats

    try:
        samples = read_samples(run_dir / "samples.parquet")
    except RecordError:
        return None
    return None if samples is None else goodput_stats(samples, criteria, duration_s)["rate"]


def _pick(d: dict | None) -> dict:
    return {k: round(float(d[k]), 3) for k in ("p50", "p95", "p99") if d and d.get(k) is not None}


def summarize_step(value: float, out, criteria: dict[str, float]) -> Step:
    s = out.summary or {}
    c = s.get("client") or {}
    st = Step(value=value, run_dir=str(out.run_dir), verdict=s.get("verdict", "none"), exit_code=out.exit_code)
    st.requests = int(c.get("requests") or 0)
    st.achieved_rps = c.get("requests_per_s")
    st.ttft_ms, st.itl_ms = _pick(c.get("ttft_ms")), _pick(c.get("itl_ms"))
    st.error_rate = c.get("error_rate")
    st.failed_slos = [v["slo"] for v in s.get("slos", []) if not v.get("passed")]
    st.goodput_rps = _goodput(Path(out.run_dir), criteria, float(c.get("duration_s") or 0.0))
    run = _run_doc(Path(out.run_dir))
    st.generator_bottleneck = bool(((run.get("load") or {}).get("generator") or {}).get("bottleneck"))
    st.cache_reset = run.get("cache_reset")
    st.stopped_early = s.get("stopped_early")
    st.saturated = bool(st.stopped_early and st.stopped_early.get("trigger") == "saturation")
    return st


def merge_repeats(value: float, steps: list[Step], group_dir: str, exit_code: int) -> Step:
    """One step from its repeats: pass only if every repeat passed; numbers are medians over the repeats."""
    import statistics

    def med(xs: list) -> float | None:
        xs = [x for x in xs if x is not None]
        return round(float(statistics.median(xs)), 3) if xs else None

    def med_d(ds: list[dict]) -> dict:
        return {k: v for k in ("p50", "p95", "p99") if (v := med([d.get(k) for d in ds])) is not None}

    return Step(
        value=value,
        run_dir=group_dir,
        verdict="pass" if all(s.verdict == "pass" for s in steps) else "fail",
        exit_code=exit_code,
        requests=sum(s.requests for s in steps),
        achieved_rps=med([s.achieved_rps for s in steps]),
        ttft_ms=med_d([s.ttft_ms for s in steps]),
        itl_ms=med_d([s.itl_ms for s in steps]),
        error_rate=med([s.error_rate for s in steps]),
        goodput_rps=med([s.goodput_rps for s in steps]),
        failed_slos=sorted({x for s in steps for x in s.failed_slos}),
        generator_bottleneck=any(s.generator_bottleneck for s in steps),
        cache_reset=steps[0].cache_reset if steps else None,
        repeats=[{"run_dir": s.run_dir, "verdict": s.verdict, "exit_code": s.exit_code} for s in steps],
        stopped_early=next((s.stopped_early for s in steps if s.saturated), None),
        saturated=any(s.saturated for s in steps),
    )


def _run_doc(run_dir: Path) -> dict:
    from harness.record.read import RecordError, read_json_object

    try:
        return read_json_object(run_dir / "run.json")
    except RecordError:
        return {}


def candidates(values: list[float], results: dict[float, Step], refine: int) -> float | None:
    """Next value to try: ascending until the first failure, then bisect (at most `refine` times)."""
    for v in sorted(values):
        if v not in results:
            return v
        if results[v].verdict != "pass":
            break
    passed = [v for v, s in results.items() if s.verdict == "pass"]
    failed = [v for v, s in results.items() if s.verdict != "pass"]
    if not failed or not passed:
        return None
    lo, hi = max(passed), min(f for f in failed)
    extra = [v for v in results if v not in values]
    if len(extra) >= refine or hi <= lo:
        return None
    mid = (lo + hi) / 2
    return round(mid, 3) if abs(hi - lo) > 0.02 * hi else None


def run_sweep(
    base: Scenario,
    mode: Mode,
    values: list[float] | None,
    *,
    results_dir: Path,
    step_duration_s: float | None,
    refine: int,
    ui,
    scenario_file: str | None = None,
    max_steps: int = 12,
    repeat: int = 1,
    cache_reset: bool = True,
    attach: dict[str, str | None] | None = None,
) -> tuple[dict, Path]:
    """`attach`: an existing cluster (RunOptions' dashboard_url / prometheus_url / endpoint_url / ray_address)."""
    from harness.commands.repeat import held_stack, run_repeats
    from harness.run.pipeline import RunOptions
    from harness.run.pipeline import run as run_pipeline

    vals = sorted(set(values or DEFAULT_VALUES[mode]))
    if any(v <= 0 for v in vals):
        raise HarnessError(f"sweep values must be > 0, got {vals}", fix="e.g. --rates 1,2,4,8")
    dur = step_duration_s or base.load.duration_s
    criteria = goodput_criteria(base)
    sweep_dir = Path(results_dir) / f"sweep-{base.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    sweep_dir.mkdir(parents=True, exist_ok=False)
    steps_dir = sweep_dir / "steps"

    results: dict[float, Step] = {}
    interrupted = False
    at = attach or {}
    opts = RunOptions(
        results_dir=steps_dir,
        keep_app=True,
        scenario_file=scenario_file,
        cache_reset=cache_reset,
        dashboard_url=at.get("dashboard_url"),
        prometheus_url=at.get("prometheus_url"),
        endpoint_url=at.get("endpoint_url"),
    )
    with held_stack(base, replace(opts, keep_app=False)):  # afterwards: the user's stack without our app
        while len(results) < max_steps:
            v = candidates(vals, results, refine)
            if v is None:
                break
            sc = step_scenario(base, mode, v, dur)
            o = replace(opts, labels={"sweep": sweep_dir.name, f"sweep_{mode}": f"{v:g}"}, reuse_app=bool(results))
            if repeat > 1:
                grp = run_repeats(sc, o, repeat, ui, cache_reset=cache_reset, hold_stack=False)
                steps = [summarize_step(v, out, criteria) for out in grp.outcomes]
                results[v], code = merge_repeats(v, steps, str(grp.group_dir), grp.exit_code), grp.exit_code
            else:
                out = run_pipeline(sc, o, ui)
                results[v], code = summarize_step(v, out, criteria), out.exit_code
            _write(sweep_dir, base, mode, dur, criteria, results)
            if code == EXIT_INTERRUPTED:
                interrupted = True
                break
            if code not in (0, 1):
                break  # setup problem: more steps would fail the same way
            if results[v].saturated:
                break  # past capacity: larger values only measure a longer queue
    doc = _write(sweep_dir, base, mode, dur, criteria, results, interrupted=interrupted)
    return doc, sweep_dir


def _write(
    sweep_dir: Path,
    base: Scenario,
    mode: Mode,
    dur: float,
    criteria: dict,
    results: dict[float, Step],
    interrupted: bool = False,
) -> dict:
    steps = [results[v] for v in sorted(results)]
    passing = [s.value for s in steps if s.verdict == "pass"]
    best = max(passing) if passing else None
    # the answer holds only if every smaller tried value passed too
    if best is not None and any(s.verdict != "pass" for s in steps if s.value < best):
        best = min(s.value for s in steps if s.verdict != "pass")
        best = max((v for v in passing if v < best), default=None)
    doc = {
        "schema_version": 1,
        "scenario": base.name,
        "mode": mode,
        "unit": "req/s" if mode == "rate" else "users",
        "step_duration_s": dur,
        "slos": base.slos,
        "goodput_criteria": criteria,
        "max_passing": best,
        "interrupted": interrupted,
        "cache_reset": "prefix cache reset before each step's load (per step: steps[].cache_reset)"
        if any(s.cache_reset and s.cache_reset.get("attempted") for s in steps)
        else "none",
        "steps": [asdict(s) for s in steps],
        "capacity": capacity(steps, mode),
    }
    (sweep_dir / "sweep.json").write_text(json.dumps(doc, indent=2))
    (sweep_dir / "sweep.md").write_text(render_table(doc) + "\n")
    return doc


def capacity(steps: list[Step], mode: Mode) -> dict | None:
    """The first saturated step (load.stop_when.saturation): its value, the capacity it measured (median achieved
    req/s while saturated) and the largest value below it that did not saturate; None if no step saturated."""
    sat = next((s for s in steps if s.saturated), None)
    if sat is None:
        return None
    ev = (sat.stopped_early or {}).get("evidence") or {}
    below = [s.value for s in steps if s.value < sat.value and not s.saturated]
    return {
        "saturated_at": sat.value,
        "unit": "req/s" if mode == "rate" else "users",
        "capacity_rps": ev.get("capacity_rps", sat.achieved_rps),
        "last_unsaturated": max(below) if below else None,
        "stopped_at_s": (sat.stopped_early or {}).get("at_s"),
    }


def render_table(doc: dict) -> str:
    unit = doc["unit"]
    head = (
        f"| {unit} | verdict | req/s | goodput/s | TTFT p50 | TTFT p95 | TTFT p99 | ITL p50 | ITL p99 | errors "
        "| failed SLOs |"
    )
    lines = [f"# sweep: {doc['scenario']} ({doc['mode']})", "", head, "|" + "---|" * 11]

    def ms(d: dict, k: str) -> str:
        return f"{d[k]:.1f}" if k in d else "-"

    for s in doc["steps"]:
        g = f"{s['goodput_rps']:.2f}" if s["goodput_rps"] is not None else "-"
        r = f"{s['achieved_rps']:.2f}" if s["achieved_rps"] is not None else "-"
        e = f"{s['error_rate'] * 100:.1f}%" if s["error_rate"] is not None else "-"
        flag = " (generator bound)" if s["generator_bottleneck"] else ""
        flag += " (saturated: stopped)" if s.get("saturated") else ""
        lines.append(
            f"| {s['value']:g} | {s['verdict']}{flag} | {r} | {g} | "
            f"{ms(s['ttft_ms'], 'p50')} | {ms(s['ttft_ms'], 'p95')} | "
            f"{ms(s['ttft_ms'], 'p99')} | {ms(s['itl_ms'], 'p50')} | {ms(s['itl_ms'], 'p99')} | {e} | "
            f"{'; '.join(s['failed_slos']) or '-'} |"
        )
    best = doc["max_passing"]
    lines += [
        "",
        f"highest {doc['mode']} meeting every SLO: "
        + (f"{best:g} {unit}" if best is not None else "none of the tried values"),
    ]
    cap = doc.get("capacity")
    if cap:
        lines.append(
            f"saturated at {cap['saturated_at']:g} {cap['unit']} (stopped after {cap['stopped_at_s']:.1f} s): "
            f"capacity ~{cap['capacity_rps']:.2f} req/s; the sweep stopped there"
        )
    lines.append(
        "(latencies in ms; goodput: requests/s meeting "
        + (
            ", ".join(f"{k} <= {v:g}" for k, v in doc["goodput_criteria"].items())
            or "no per-request bound: all successful"
        )
        + ")"
    )
    return "\n".join(lines)
