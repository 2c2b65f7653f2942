"""Repeated runs: between-run statistics with exact known values, group compare, exit codes, sim cache reset."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import pytest

from harness.commands.repeat import converged, group_exit_code
from harness.compare import compare_runs, group_intervals, is_group
from harness.compare.between import group_stats, t_quantile, t_sf2, welch
from harness.report.compare_html import render_compare_html
from harness.report.compare_md import render_compare_markdown
from serve_apps.sim.app import prefix_keys
from serve_apps.sim.engine import SimConfig, SimLLMEngine

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "compare" / "ray-2.59a"


def test_t_distribution_known_values():  # reference values: Student's t tables (also scipy.stats.t)
    assert t_quantile(0.975, 2) == pytest.approx(4.302652729749, abs=1e-9)
    assert t_quantile(0.975, 10) == pytest.approx(2.228138851986, abs=1e-9)
    assert t_sf2(2.0, 5) == pytest.approx(0.101939478830, abs=1e-10)
    assert t_sf2(0.0, 3) == pytest.approx(1.0)


def test_group_stats_mean_interval_cv():
    g = group_stats([10.0, 11.0, 12.0])
    assert (g.n, g.mean, g.sd) == (3, 11.0, 1.0)
    h = 4.302652729749 / math.sqrt(3)
    assert g.ci == pytest.approx((11 - h, 11 + h), abs=1e-9)
    assert g.cv == pytest.approx(1 / 11)
    assert g.width_rel == pytest.approx(2 * h / 11)
    assert group_stats([5.0]).ci is None


def test_welch_known_values():
    w = welch([100.0, 102.0, 98.0], [130.0, 131.0, 129.0])
    assert w.diff == pytest.approx(30.0)
    assert w.t == pytest.approx(23.2379000772, abs=1e-8)
    assert w.df == pytest.approx(2.94117647059, abs=1e-9)
    assert w.p == pytest.approx(0.000199254203, abs=1e-10)
    assert w.ci == pytest.approx((25.8446004968, 34.1553995032), abs=1e-8)
    assert w.significant
    same = welch([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (same.diff, same.p, same.significant) == (0.0, 1.0, False)
    const = welch([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])  # e.g. error_rate 0 everywhere: no difference, not an error
    assert not const.significant


def test_group_exit_code_and_convergence():
    assert group_exit_code([0, 0, 0]) == 0
    assert group_exit_code([0, 1, 0]) == 1  # any failed repeat fails the gate
    assert group_exit_code([0, 2]) == 2
    assert group_exit_code([0, 1, 130]) == 130
    assert converged({"a": {"width_rel": 0.04}, "b": {"width_rel": 0.05}}, 0.05)
    assert not converged({"a": {"width_rel": 0.04}, "b": {"width_rel": 0.06}}, 0.05)
    assert not converged({"a": {"n": 1}}, 0.05)


def _group(root: Path, name: str, e2e_p50: list[float]) -> Path:
    """A repeat group of copies of one stored run with known e2e.p50 values (no samples: summaries only)."""
    g = root / name
    runs = []
    for i, v in enumerate(e2e_p50):
        d = g / f"run-{i}"
        shutil.copytree(FIX, d)
        (d / "samples.parquet").unlink()
        s = json.loads((d / "summary.json").read_text())
        s["client"]["e2e_ms"]["p50"] = v
        (d / "summary.json").write_text(json.dumps(s))
        runs.append({"run_dir": str(d)})
    (g / "repeat.json").write_text(json.dumps({"runs": runs}))
    return g


def test_between_run_compare_flags_shift_not_noise(tmp_path):
    base = _group(tmp_path, "base", [100.0, 102.0, 98.0])
    same = _group(tmp_path, "same", [101.0, 99.0, 100.0])
    slow = _group(tmp_path, "slow", [130.0, 131.0, 129.0])
    assert is_group(base) and not is_group(base / "run-0")
    res = compare_runs([base, same, slow], fail_on=["e2e.p50:+10%"])
    assert res["method"]["kind"] == "between-run" and res["method"]["runs_per_side"] == [3, 3, 3]
    noise, shift = (next(r for r in c["rows"] if r["key"] == "e2e.p50") for c in res["comparisons"])
    assert noise["regression"] is False and noise["significant"] is False
    assert shift["regression"] is True and shift["p_welch"] == pytest.approx(0.000199254203, abs=1e-10)
    assert shift["base_runs"]["cv"] == pytest.approx(2 / 100) and shift["new_runs"]["n"] == 3
    assert res["comparisons"][0]["regressions"] == [] and res["exit_code"] == 1
    md = render_compare_markdown(res)
    assert "between-run" in md and "Welch p" in md and "base CV" in md
    assert "between-run" in render_compare_html(res)
    gi = group_intervals([json.loads((base / f"run-{i}" / "summary.json").read_text()) for i in range(3)], ["e2e.p50"])
    assert gi["e2e.p50"]["mean"] == pytest.approx(100.0) and gi["e2e.p50"]["sd"] == pytest.approx(2.0)


def test_fewer_than_three_runs_falls_back_to_within_run(tmp_path):
    base = _group(tmp_path, "base", [100.0, 102.0])
    slow = _group(tmp_path, "slow", [130.0, 131.0, 129.0])
    res = compare_runs([base, slow], fail_on=["e2e.p50:+10%"])
    assert res["method"]["kind"] == "within-run" and res["method"]["runs_per_side"] == [2, 3]
    assert "first run of each side" in res["method"]["reason"]
    assert "within-run" in render_compare_markdown(res)


def test_sim_prefix_cache_reset_empties_it():
    """Ground truth: a repeated prompt is served from the cache (all full blocks but the last token), and after
    reset_prefix_cache the same prompt hits nothing."""

    async def go() -> tuple[int, int, int, int, dict]:
        eng = SimLLMEngine(SimConfig(prefix_caching=True, block_size=16, jitter_frac=0))
        keys = prefix_keys("user:" + "abcd" * 70, 16)  # 285 chars: 4 full blocks of 64 chars
        first = eng.submit(72, 2, prefix_keys=keys)
        again = eng.submit(72, 2, prefix_keys=keys)
        dropped = eng.reset_prefix_cache()
        after = eng.submit(72, 2, prefix_keys=keys)
        stats = eng.stats()
        await eng.close()
        return first.cached_tokens, again.cached_tokens, dropped, after.cached_tokens, stats

    first, again, dropped, after, stats = asyncio.run(go())
    assert (first, again, dropped, after) == (0, 64, 4, 0)
    assert stats["prefix_cache_hits_tokens"] == 64 and stats["prefix_cache_resets"] == 1
    assert SimConfig().prefix_caching is False  # off unless the scenario asks: existing timings unchanged


def test_external_reset_is_recorded_as_not_done_when_the_route_is_missing(mock_server):
    """An external endpoint without /reset_prefix_cache (the mock, like a vLLM server outside dev mode): the
    attempt and the endpoint's answer are recorded; the run would go on."""
    from harness.deploy.cache import reset_prefix_cache
    from harness.scenario import Target

    url = mock_server()
    t = Target(engine="external", model="mock", url=url)
    r = reset_prefix_cache(t, url.rstrip("/").removesuffix("/v1"), None, [])
    assert r["attempted"] is True and r["done"] is False and r["method"] == "http"
    assert "HTTP 404" in r["detail"] and r["duration_s"] is not None


def test_sweep_step_from_repeats_passes_only_if_every_repeat_passes():
    from harness.commands.sweep import Step, merge_repeats

    a = Step(1.0, "r1", "pass", 0, requests=10, achieved_rps=2.0, ttft_ms={"p50": 10.0, "p95": 20.0})
    b = Step(1.0, "r2", "fail", 1, requests=12, achieved_rps=4.0, ttft_ms={"p50": 30.0, "p95": 40.0}, failed_slos=["x"])
    m = merge_repeats(1.0, [a, b], "grp", 1)
    assert (m.verdict, m.requests, m.achieved_rps, m.ttft_ms, m.failed_slos) == (
        "fail",
        22,
        3.0,
        {"p50": 20.0, "p95": 30.0},
        ["x"],
    )
    assert [r["verdict"] for r in m.repeats] == ["pass", "fail"]
    assert merge_repeats(1.0, [a, a], "grp", 0).verdict == "pass"


def test_matrix_repeat_compares_version_groups_between_runs(tmp_path):
    """matrix --repeat 3: each version's runner is asked for 3 repeats and returns a group folder; the comparison
    is between runs (fixture runs: 2.60 is ~25 % slower in every repeat)."""
    from harness.commands.matrix import matrix

    fix = FIX.parent
    asked = []

    def builder(e, env_dir: Path, log: Path) -> bool:
        env_dir.mkdir(parents=True, exist_ok=True)
        return False

    def runner(e, env_dir, scenario, results_dir: Path, state_dir, log, timeout_s, repeat=1):
        asked.append(repeat)
        g = results_dir / f"repeat-{e.name}"
        src = {"2.59.0": ("ray-2.59a", "ray-2.59b", "ray-2.59a"), "2.60.0": ("ray-2.60-slow",) * 3}[e.ray]
        for i, s in enumerate(src):
            shutil.copytree(fix / s, g / f"run-{i}")
        return str(g), 0

    res = matrix(
        "fixture-chat",
        ["2.59.0", "2.60.0"],
        results_dir=tmp_path,
        envs_dir=tmp_path / "envs",
        builder=builder,
        runner=runner,
        repeat=3,
    )
    assert asked == [3, 3]
    assert res.comparison["method"]["kind"] == "between-run" and res.comparison["method"]["runs_per_side"] == [3, 3]
    assert res.exit_code == 1
