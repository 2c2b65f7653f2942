"""harness history: trend across stored runs and the first run where a statistic moved beyond noise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app
from harness.compare.history import change_points, history

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "compare"


def _results(tmp_path: Path, ttft_p95: list[float], fail_at: int | None = None) -> Path:
    res = tmp_path / "results"
    for i, v in enumerate(ttft_p95):
        d = res / f"fixture-chat-run{i:02d}"
        shutil.copytree(FIX / ("ray-2.59a" if i % 2 else "ray-2.59b"), d)
        run, summ = json.loads((d / "run.json").read_text()), json.loads((d / "summary.json").read_text())
        run["run_id"] = summ["run_id"] = d.name
        run["timeline"]["created_at"] = 1_780_000_000 + 3600 * i
        run["labels"] = {"ray": f"2.{50 + i}.0"}
        summ["client"]["ttft_ms"]["p95"] = v
        if i == fail_at:
            summ["verdict"] = "fail"
        (d / "run.json").write_text(json.dumps(run))
        (d / "summary.json").write_text(json.dumps(summ))
    old = shutil.copytree(FIX / "v0-ray-2.58", res / "zz-old-layout")  # schema 0 record: read through upgrade()
    run = json.loads((old / "run.json").read_text())
    run["started_at"] = 1_779_000_000
    (old / "run.json").write_text(json.dumps(run))
    (res / "not-a-run").mkdir()
    return res


def test_change_points_need_history_and_beat_noise():
    assert change_points([100, 101, 99, 100, 130, 131]) == [(4, 130, 100.0), (5, 131, 100.0)]
    assert change_points([100, 130]) == []  # too little history
    assert change_points([100, 140, 60, 120, 135]) == []  # noisy history: a 35 % move is within 3 MADs
    assert change_points([100, 101, 99, 100, 105]) == []  # 5 % < 10 %


def test_history_flags_first_moved_run(tmp_path):
    res = _results(tmp_path, [150, 152, 149, 151, 150, 190, 192], fail_at=5)
    h = history(res)
    (sc,) = h["scenarios"]
    assert len(sc["runs"]) == 8 and sc["runs"][0]["run_id"] == "fixture-chat-v0-ray-2.58"  # oldest first
    flags = {f["metric"]: f for f in sc["flags"]}
    assert flags["ttft.p95"]["run_id"] == "fixture-chat-run05" and flags["ttft.p95"]["assessment"] == "worse"
    assert "ray=2.55.0" in flags["ttft.p95"]["message"]
    assert "e2e.p95" not in flags  # unchanged statistics are not flagged


def test_history_cli(tmp_path):
    res = _results(tmp_path, [150, 152, 149, 151, 150, 190])
    html = tmp_path / "h.html"
    r = CliRunner().invoke(
        app, ["history", "--results-dir", str(res), "--scenario", "fixture-chat", "--html", str(html)]
    )
    assert r.exit_code == 0, r.output
    assert "moved" in r.output and "fixture-chat-run05" in r.output
    page = html.read_text()
    assert page.count('class="plotly-graph-div"') >= 5 and "fixture-chat-run05" in page
    r = CliRunner().invoke(app, ["history", "--results-dir", str(res), "--scenario", "nope"])
    assert r.exit_code == 2 and "no completed runs" in r.output
    assert CliRunner().invoke(app, ["history", "--results-dir", str(tmp_path / "missing")]).exit_code == 2
