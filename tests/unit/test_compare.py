"""harness compare on stored records: regression beyond noise → exit 1, noise → exit 0, schema 0 upgrade, gates."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.compare import compare_runs
from harness.compare.rules import parse_rule, parse_rules
from harness.compare.significance import diff_intervals
from harness.compare.stats import Values
from harness.errors import HarnessError
from harness.record import read_run
from harness.record.store import SCHEMA_VERSION

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "compare"
A, A2, SLOW, V0 = FIX / "ray-2.59a", FIX / "ray-2.59b", FIX / "ray-2.60-slow", FIX / "v0-ray-2.58"
runner = CliRunner()


def _cli(*args):
    return runner.invoke(app, ["compare", *map(str, args)])


def _row(result, key, i=0):
    return next(r for r in result["comparisons"][i]["rows"] if r["key"] == key)


def _copy(src: Path, dst: Path, edit_run=None) -> Path:
    shutil.copytree(src, dst)
    if edit_run:
        run = json.loads((dst / "run.json").read_text())
        edit_run(run)
        (dst / "run.json").write_text(json.dumps(run))
    return dst


def test_same_version_twice_is_not_a_regression():
    r = _cli(A, A2)
    assert r.exit_code == 0, r.output
    assert "no regression" in r.output
    res = compare_runs([A, A2])
    for key in ("ttft.p95", "itl.p95", "e2e.p95", "throughput"):
        row = _row(res, key)
        assert row["significant"] is False and row["ci"][0] < 0 < row["ci"][1], row


def test_slower_version_is_a_significant_regression():
    r = _cli(A, SLOW)
    assert r.exit_code == 1, r.output
    res = compare_runs([A, SLOW])
    keys = {x.split()[0] for x in res["comparisons"][0]["regressions"]}
    assert {"itl.p50", "tpot.p50", "e2e.p50", "throughput"} <= keys  # the default gates: central stats
    row = _row(res, "e2e.p95")
    assert row["significant"] and row["ci"][0] > 0 and 0.15 < row["rel_change"] < 0.35
    assert _row(res, "throughput")["assessment"] == "worse" and _row(res, "throughput")["change"] < 0
    # the scenario target differs (slowdown) and Ray differs: warnings, not refusal
    w = " ".join(res["comparisons"][0]["warnings"])
    assert "target.sim.slowdown_factor" in w and "ray: '2.59.0' → '2.60.0'" in w


def test_threshold_beyond_the_change_does_not_fire():
    assert _cli(A, SLOW, "--fail-on", "e2e.p95:+50%", "--fail-on", "ttft_p95:+40%").exit_code == 0
    assert _cli(A, SLOW, "--fail-on", "e2e.p95:+20%").exit_code == 1
    assert _cli(A, SLOW, "--fail-on", "e2e.p95:+100ms").exit_code == 0
    assert _cli(A, SLOW, "--fail-on", "e2e.p95:+50ms").exit_code == 1
    assert _cli(A, SLOW, "--fail-on", "none").exit_code == 0


def test_bootstrap_is_deterministic():
    a, b = compare_runs([A, SLOW]), compare_runs([A, SLOW])
    assert [r["ci"] for r in a["comparisons"][0]["rows"]] == [r["ci"] for r in b["comparisons"][0]["rows"]]


def test_schema_0_record_upgrades():
    run, summary = read_run(V0)
    assert run["schema_version"] == summary["schema_version"] == SCHEMA_VERSION
    assert run["environment"]["ray"] == "2.58.0" and run["environment"]["cluster"]["nodes"] == 1
    assert summary["verdict"] == "pass" and summary["client"]["ttft_ms"]["p95"] > 0
    assert summary["server_series"]["server_ttft"] == "ray_vllm:time_to_first_token_seconds"  # old naming era
    assert set(summary["server"]) == {"server_ttft", "kv_cache_usage", "replicas"}  # logical names
    assert summary["slos"][0]["signal"] == "ttft" and summary["slos"][0]["unit"] == "ms"


def test_compare_across_schema_and_naming_eras():
    res = compare_runs([V0, A])
    assert res["exit_code"] == 0
    c = res["comparisons"][0]
    assert any(
        "ray_vllm:time_to_first_token_seconds" in n and "ray_vllm_time_to_first_token_seconds" in n for n in c["notes"]
    )
    row = _row(res, "server_ttft.p95")
    assert row["base"] is not None and row["new"] is not None
    assert _row(res, "tpot.p50")["base"] is not None  # schema 0 had no tpot: computed from the upgraded samples
    assert compare_runs([V0, SLOW])["exit_code"] == 1


def test_incomparable_scenarios_are_refused_unless_forced(tmp_path):
    other = _copy(A2, tmp_path / "other", lambda r: r["scenario"]["load"]["stages"][0].update(users=16))
    r = _cli(A, other)
    assert r.exit_code == 2 and "scenario load differs" in r.output and "--force" in r.output
    r = _cli(A, other, "--force")
    assert r.exit_code == 0 and "(forced)" in r.output
    renamed = _copy(A2, tmp_path / "renamed", lambda r: r["scenario"].update(name="other"))
    assert _cli(A, renamed).exit_code == 2


def test_hardware_difference_warns(tmp_path):
    big = _copy(A2, tmp_path / "big", lambda r: r["environment"].update(cpu_count=64))
    res = compare_runs([A, big])
    assert any("hardware differs: cpu_count: 2 → 64" in w for w in res["comparisons"][0]["warnings"])


def test_without_samples_rules_gate_on_threshold_alone(tmp_path):
    slow = _copy(SLOW, tmp_path / "slow")
    (slow / "samples.parquet").unlink()
    res = compare_runs([A, slow])
    assert res["exit_code"] == 1
    assert _row(res, "ttft.p95")["significant"] is None
    assert any("no samples.parquet" in w for w in res["comparisons"][0]["warnings"])


def test_bad_input_exits_2(tmp_path):
    assert _cli(A, tmp_path).exit_code == 2
    assert _cli(A).exit_code == 2
    r = _cli(A, A2, "--fail-on", "ttft.p95>10")
    assert r.exit_code == 2 and "cannot parse" in r.output
    assert _cli(A, A2, "--fail-on", "bogus.p95:+10%").exit_code == 2
    assert _cli(A, A2, "--fail-on", "ttft.p95:+10").exit_code == 2  # no unit


def test_outputs(tmp_path):
    md, html, js = tmp_path / "c.md", tmp_path / "c.html", tmp_path / "c.json"
    r = _cli(A, A2, SLOW, "--md", md, "--html", html, "--json", js)
    assert r.exit_code == 1
    text = md.read_text()
    assert "REGRESSION" in text and "| `ttft.p95` |" in text and "ray=2.60.0 vs ray=2.59.0" in text
    data = json.loads(js.read_text())
    assert [c["new"] for c in data["comparisons"]] == ["fixture-chat-ray-2.59b", "fixture-chat-ray-2.60-slow"]
    assert data["comparisons"][0]["regressions"] == [] and data["comparisons"][1]["regressions"]
    page = html.read_text()
    assert page.count('class="plotly-graph-div"') == 4  # ttft, itl, tpot, e2e CDFs
    assert page.count("Plotly.newPlot(") == 4 and "plotly.js v" in page  # plotly.js inlined: opens offline
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing fetched from the network


def test_rules_parse():
    assert parse_rule("ttft_p99:+10%").metric == "ttft.p99"
    assert parse_rule("itl.p99.9:+5%").metric == "itl.p99.9"
    r = parse_rule("error_rate:+1pp")
    assert (r.metric, r.kind, r.amount) == ("error_rate", "abs", 0.01)
    assert parse_rule("e2e.p95:+2s").amount == 2000.0
    t = parse_rule("throughput:-10%")
    assert t.beyond(100.0, 85.0) and not t.beyond(100.0, 95.0) and not t.beyond(100.0, 130.0)
    assert parse_rule("error_rate.value:+1pp").metric == "error_rate"
    assert len(parse_rules(None)) == 6 and parse_rules(["none"]) == []
    with pytest.raises(HarnessError):
        parse_rule("ttft.p95:10%")


def test_cluster_bootstrap_detects_shift_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.lognormal(np.log(100), 0.3, 400)
    same = rng.lognormal(np.log(100), 0.3, 400)
    slow = rng.lognormal(np.log(115), 0.3, 400)
    v = lambda a: Values(a, np.arange(a.size), a.size)  # noqa: E731
    assert not diff_intervals(v(base), v(same), ["p50", "p95", "mean"])["p50"].significant
    ci = diff_intervals(v(base), v(slow), ["p50", "mean"])
    assert ci["p50"].significant and ci["mean"].low > 0
    # ITL-like: 40 requests x 50 gaps; per-request offsets make gaps correlated: the request-level bootstrap
    # must give a wider interval than pretending 2000 independent gaps
    offs = np.repeat(rng.normal(0, 3, 40), 50)
    gaps = 10 + offs + rng.normal(0, 1, 2000)
    clustered = Values(gaps, np.repeat(np.arange(40), 50), 40)
    naive = Values(gaps, np.arange(2000), 2000)
    w = lambda x: x.high - x.low  # noqa: E731
    assert w(diff_intervals(clustered, clustered, ["mean"])["mean"]) > 2 * w(
        diff_intervals(naive, naive, ["mean"])["mean"]
    )
