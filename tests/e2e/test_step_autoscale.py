"""The load step for real: the sim engine autoscales 1 → 3 replicas; the report shows the scale-up, its time and
the churn, and the autoscaling SLOs hold. Also checks `--json` (stdout is summary.json) and `harness report`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# exclusive: three sim replicas at full load starve a 2-core box (a trace replay beside it: TTFT p95 4.5 s, sim 40 ms)
pytestmark = [pytest.mark.integration, pytest.mark.exclusive]


def harness(*args, env, timeout=400):
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_step_autoscale_scales_up_and_reports_it(tmp_path, shared_stack):
    env = shared_stack  # a fresh app on the session's stack: the scale-up starts from 1 replica all the same
    results = tmp_path / "results"
    r = harness("run", "scenarios/step-autoscale.yaml", "--results-dir", str(results), "--json", env=env)
    summary = json.loads(r.stdout)  # --json: stdout is exactly summary.json; progress went to stderr
    # the shipped scenario is meant to pass: every SLO, autoscaling and latency alike, so exit 0
    assert r.returncode == 0 and summary["verdict"] == "pass", (
        [s for s in summary["slos"] if not s["passed"]],
        r.stderr[-3000:],
    )
    (run_dir,) = [d for d in results.iterdir() if d.is_dir()]
    verdicts = {s["slo"]: s for s in summary["slos"]}
    auto = ("replicas.max >= 3", "scale_up_time.max <= 60s", "replica_starts.total <= 6", "flaps.total == 0")
    for slo in auto:
        assert verdicts[slo]["passed"], (slo, verdicts[slo], summary.get("autoscaling"))
    a = summary["autoscaling"]
    up = next(u for u in a["scale_ups"] if u["stage"] == "step")  # a fresh app's first replica may count for `low`
    assert up["reached"] and 0 < up["time_s"] < 40 and up["wanted"] >= 3
    assert a["replica_starts"] >= 2 and a["churn_per_min"] > 0
    print(
        f"scale-up 1 -> {up['wanted']:g} replicas in {up['time_s']:.1f} s; {a['replica_starts']:g} starts, "
        f"churn {a['churn_per_min']:.2f}/min; verdict {summary['verdict']}"
    )
    md = (run_dir / "report.md").read_text()
    assert "## Autoscaling" in md and "scale-up (`step`)" in md and f"{up['time_s']:.1f} s" in md and "churn" in md
    html = (run_dir / "report.html").read_text()
    assert html.count('class="plotly-graph-div"') >= 8 and "replicas after" in html
    # re-render from the record alone: the same page (renderers are pure functions of the record)
    (run_dir / "report.html").unlink()
    rr = harness("report", str(run_dir), env=env, timeout=120)
    assert rr.returncode == 0, rr.stderr
    assert (run_dir / "report.html").read_text() == html
