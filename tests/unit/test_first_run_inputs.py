"""A user's first run (issue 12, items 7-8): broken runs are not comparable, a path is a path, a run with no
SLOs does not pass. CLI through CliRunner: exit 2, a message naming file/run and the fix, no traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import app
from harness.record.health import MAX_ERROR_RATE, load_failure
from harness.scenario import SCENARIO_DIR, resolve_scenario_path

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "compare"
GOOD = """name: t
target: {engine: sim, model: m}
load:
  stages: [{duration_s: 5, users: 1}]
slos: [ttft.p95 <= 500ms]
"""
NO_SLOS = GOOD.replace("slos: [ttft.p95 <= 500ms]\n", "")


def _out(res) -> str:
    return res.output + (res.stderr if res.stderr_bytes is not None else "")


def _clean(res, code=2, *words):
    out = _out(res)
    assert res.exit_code == code, (res.exit_code, out)
    assert "Traceback" not in out and (res.exception is None or isinstance(res.exception, SystemExit)), out
    for w in words:
        assert w in out, (w, out)
    return out


def _run_copy(tmp_path: Path, src: str, name: str, *, errors: float | None = None, status: str | None = None) -> Path:
    """A fixture run folder whose load failed the way a user's did: `errors` share of requests failed."""
    d = shutil.copytree(FIX / src, tmp_path / name)
    s = json.loads((d / "summary.json").read_text())
    if errors is not None:
        n = s["client"]["requests"]
        s["client"]["errors"] = round(errors * n)
        s["client"]["error_rate"] = s["client"]["errors"] / n
        s["client"]["errors_by_class"] = {
            'HTTP 422: {"detail":[{"loc":["query","request"],"msg":"Field required"}]}': s["client"]["errors"]
        }
    if status is not None:
        s["status"] = status
    (d / "summary.json").write_text(json.dumps(s))
    return d


# ---------- 7: broken runs are not comparable ----------


def test_two_runs_with_every_request_failed_do_not_compare_as_ok(runner, tmp_path):
    a = _run_copy(tmp_path, "ray-2.59a", "a", errors=1.0)
    b = _run_copy(tmp_path, "ray-2.59b", "b", errors=1.0)
    out = _clean(
        runner.invoke(app, ["compare", str(a), str(b)]),
        2,
        "every request failed",
        str(a),
        str(b),
        "--force",
        "HTTP 422",
    )
    assert "no regression" not in out


def test_a_broken_new_run_or_base_is_named(runner, tmp_path):
    ok = _run_copy(tmp_path, "ray-2.59a", "ok")
    bad = _run_copy(tmp_path, "ray-2.59b", "bad", errors=0.8)
    out = _clean(runner.invoke(app, ["compare", str(ok), str(bad)]), 2, "80% of requests failed", "bound 50%")
    assert str(bad) in out and f"({ok})" not in out
    _clean(runner.invoke(app, ["compare", str(bad), str(ok)]), 2, str(bad))
    failed = _run_copy(tmp_path, "ray-2.59b", "failed", status="failed")
    _clean(runner.invoke(app, ["compare", str(ok), str(failed)]), 2, "the run failed")


def test_force_compares_a_broken_run_and_says_so(runner, tmp_path):
    ok = _run_copy(tmp_path, "ray-2.59a", "ok")
    bad = _run_copy(tmp_path, "ray-2.59b", "bad", errors=1.0)
    js = tmp_path / "c.json"
    res = runner.invoke(app, ["compare", str(ok), str(bad), "--force", "--json", str(js), "--resamples", "100"])
    assert res.exit_code in (0, 1), _out(res)
    c = json.loads(js.read_text())
    assert c["load_failures"] and any(
        "(forced)" in w and "every request failed" in w for w in c["comparisons"][0]["warnings"]
    )
    assert c["runs"][1]["load_failure"].startswith("every request failed") and c["runs"][0]["load_failure"] is None


def test_some_errors_stay_comparable(runner, tmp_path):
    a = _run_copy(tmp_path, "ray-2.59a", "a", errors=0.1)
    b = _run_copy(tmp_path, "ray-2.59b", "b", errors=MAX_ERROR_RATE)  # at the bound: still a measurement
    res = runner.invoke(app, ["compare", str(a), str(b), "--fail-on", "none", "--resamples", "100"])
    assert res.exit_code == 0, _out(res)


def test_load_failure_reasons():
    assert load_failure(None).startswith("no summary.json")
    assert (
        load_failure({"status": "interrupted", "client": {}})
        == "the run interrupted (status 'interrupted' in summary.json)"
    )
    assert (
        load_failure({"status": "completed", "client": {"requests": 0, "errors": 0}})
        == "no request was measured after warmup"
    )
    assert (
        load_failure({"status": "completed", "client": {"requests": 10, "errors": 10}})
        == "every request failed (10 of 10)"
    )
    assert load_failure({"status": "completed", "client": {"requests": 10, "errors": 5}}) is None
    assert load_failure({"client": {"ttft_ms": {}}}) is None  # old layout without counts: nothing to judge


def test_history_marks_broken_runs_and_keeps_them_out_of_baselines(runner, tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    for i in range(6):
        d = _run_copy(res, "ray-2.59a", f"r{i}", errors=1.0 if i == 4 else None)
        run, s = json.loads((d / "run.json").read_text()), json.loads((d / "summary.json").read_text())
        run["run_id"] = s["run_id"] = d.name
        run["timeline"]["created_at"] = 1_780_000_000 + 3600 * i
        if i == 4:
            s["client"]["ttft_ms"]["p95"] *= 5  # a broken run's numbers are not a move of the statistic
        (d / "run.json").write_text(json.dumps(run))
        (d / "summary.json").write_text(json.dumps(s))
    js, html = tmp_path / "h.json", tmp_path / "h.html"
    r = runner.invoke(app, ["history", "--results-dir", str(res), "--json", str(js), "--html", str(html)])
    assert r.exit_code == 0, _out(r)
    (sc,) = json.loads(js.read_text())["scenarios"]
    assert [b["run_id"] for b in sc["broken"]] == ["r4"] and "every request failed" in sc["broken"][0]["message"]
    assert not any(f["metric"] == "ttft.p95" for f in sc["flags"])
    assert "broken:" in r.output and "r4" in r.output
    assert "broken: r4" in html.read_text()


def test_matrix_does_not_compare_a_broken_run(tmp_path):
    from harness.commands.matrix import matrix
    from harness.errors import HarnessError

    def builder(e, env_dir, log):
        return False

    def runner_(e, env_dir, scenario, results_dir, state_dir, log, timeout_s):
        return str(_run_copy(results_dir, "ray-2.59a", f"run-{e.name}", errors=1.0 if e.ray == "2.60.0" else None)), 1

    (tmp_path / "r").mkdir()
    with pytest.raises(HarnessError) as ei:
        matrix(
            "s",
            ["2.59.0", "2.60.0"],
            results_dir=tmp_path / "r",
            envs_dir=tmp_path / "e",
            builder=builder,
            runner=runner_,
        )
    assert "ray-2.60.0: the load failed: every request failed" in ei.value.render()
    (tmp_path / "r2").mkdir()
    res = matrix(
        "s",
        ["2.59.0", "2.60.0"],
        results_dir=tmp_path / "r2",
        envs_dir=tmp_path / "e",
        builder=builder,
        runner=runner_,
        force=True,
    )
    assert res.comparison["load_failures"] and res.entries[1].load_failure


# ---------- 8: a path is a path; no SLOs is not a pass ----------


def test_a_missing_path_is_never_replaced_by_the_shipped_scenario(tmp_path):
    assert (SCENARIO_DIR / "smoke.yaml").exists()
    for arg in (str(tmp_path / "smoke.yaml"), "nosuchdir/smoke.yaml", "smoke.yml", "./smoke"):
        assert resolve_scenario_path(arg) == Path(arg), arg
    assert resolve_scenario_path("smoke") == SCENARIO_DIR / "smoke.yaml"  # a bare name is a shipped name


@pytest.mark.parametrize("command", ["run", "validate", "show"])
def test_missing_path_suggests_the_shipped_scenario(runner, tmp_path, command):
    arg = str(tmp_path / "scenarios" / "smoke.yaml")
    args = {
        "run": ["run", arg, "--results-dir", str(tmp_path / "res")],
        "validate": ["scenarios", "validate", arg],
        "show": ["scenarios", "show", arg],
    }[command]
    _clean(runner.invoke(app, args), 2, arg, "not found", "`smoke`", "harness run smoke")
    assert not (tmp_path / "res").exists()


def test_mistyped_name_suggests_the_close_one(runner, tmp_path):
    _clean(runner.invoke(app, ["run", "smok", "--results-dir", str(tmp_path / "res")]), 2, "not found", "`smoke`")


@pytest.mark.parametrize("command", ["run", "validate"])
def test_no_slos_is_an_input_error(runner, tmp_path, command):
    p = tmp_path / "s.yaml"
    p.write_text(NO_SLOS)
    args = (
        ["run", str(p), "--results-dir", str(tmp_path / "res")]
        if command == "run"
        else ["scenarios", "validate", str(p)]
    )
    _clean(runner.invoke(app, args), 2, str(p), "no SLOs", "--measure-only", "measure_only: true")
    assert not (tmp_path / "res").exists()


def test_a_duplicated_slos_key_leaving_an_empty_list_is_refused(runner, tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD + "slos: []\n")  # the second key wins in plain YAML: the gate would check nothing
    _clean(runner.invoke(app, ["scenarios", "validate", str(p)]), 2, str(p), "slos")


def test_measure_only_must_be_explicit_and_alone(runner, tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text(NO_SLOS + "measure_only: true\n")
    assert runner.invoke(app, ["scenarios", "validate", str(p)]).exit_code == 0
    both = tmp_path / "both.yaml"
    both.write_text(GOOD + "measure_only: true\n")
    _clean(runner.invoke(app, ["scenarios", "validate", str(both)]), 2, "measure_only", "remove one")
    g = tmp_path / "g.yaml"
    g.write_text(GOOD)
    _clean(
        runner.invoke(app, ["run", str(g), "--measure-only", "--results-dir", str(tmp_path / "res")]),
        2,
        "--measure-only",
        "1 SLO",
    )
    _clean(
        runner.invoke(app, ["sweep", str(p), "--concurrency", "1,2", "--results-dir", str(tmp_path / "res")]),
        2,
        "slos",
        "add SLOs",
    )
    assert not (tmp_path / "res").exists()


def test_summary_verdicts():
    from harness.record.schema import ClientStats, RunRecord
    from harness.record.summary import build_summary
    from harness.report.junit import render_junit
    from harness.report.markdown import render_markdown

    ok = ClientStats(requests=10, errors=0, error_rate=0.0)
    bad = ClientStats(requests=10, errors=10, error_rate=1.0, errors_by_class={"HTTP 500": 10})
    kw = dict(run_id="r", scenario="s", server={}, server_series={}, reconciliation={}, warnings=[])
    m = build_summary(status="completed", verdicts=[], client=ok, measure_only=True, **kw)
    assert (m.verdict, m.measure_only, m.load_failure) == ("measured", True, None)
    f = build_summary(status="completed", verdicts=[], client=bad, measure_only=True, **kw)
    assert f.verdict == "fail" and "every request failed" in f.warnings[0]
    n = build_summary(status="completed", verdicts=[], client=ok, **kw)
    assert n.verdict == "fail" and "no SLOs were judged" in n.warnings[0]  # a library caller gets no free PASS
    run = RunRecord(run_id="r", scenario={"name": "s"})
    assert 'failures="1"' in render_junit(run, f) and "load worked" in render_junit(run, f)
    assert 'tests="0"' in render_junit(run, m)
    assert "measure-only run" in render_markdown(run, m)
