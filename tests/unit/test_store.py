"""The results store on its embedded backend (SQLite): indexing, label queries, baselines, outages and sync,
compare from stored runs, credentials kept out. PostgreSQL: tests/e2e/test_shared_store.py."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import HarnessError
from harness.report import ci
from harness.store import Selector, Store, entry_from_folder, index_run, redact, resolve_url, scrub, sync

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "records"
CMP = FIX / "compare"


def _results(tmp_path: Path) -> Path:
    """Four finished runs of one scenario, two runners, the newest passing one on runner b."""
    res = tmp_path / "results"
    for i, (src, runner, verdict) in enumerate(
        [
            ("ray-2.59a", "a", "pass"),
            ("ray-2.59b", "b", "pass"),
            ("ray-2.59a", "a", "fail"),
            ("ray-2.60-slow", "b", "pass"),
        ]
    ):
        d = shutil.copytree(CMP / src, res / f"fixture-chat-run{i}")
        run, summ = json.loads((d / "run.json").read_text()), json.loads((d / "summary.json").read_text())
        run["run_id"] = summ["run_id"] = d.name
        run["timeline"]["created_at"] = 1_780_000_000 + 3600 * i
        run["origin"] = {"branch": "main", "commit": f"c{i}", "runner": runner}
        summ["verdict"] = verdict
        (d / "run.json").write_text(json.dumps(run))
        (d / "summary.json").write_text(json.dumps(summ))
    return res


def test_url_resolution_and_redaction(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_STORE_URL", raising=False)
    assert resolve_url(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/harness.db"
    assert resolve_url("none", tmp_path) is None
    assert resolve_url("postgresql://u:pw@h:5/db", tmp_path) == "postgresql+psycopg://u:pw@h:5/db"
    monkeypatch.setenv("HARNESS_STORE_URL", "postgres://u@h/db")
    assert resolve_url(None, tmp_path) == "postgresql+psycopg://u@h/db"
    assert redact("postgresql+psycopg://u:hunter2@h:5/db") == "postgresql+psycopg://u:***@h:5/db"
    assert scrub({"env": {"API_KEY": "x", "RAY_AUTH_TOKEN_PATH": "/p", "n": 1.0}, "l": [{"password": "y"}]}) == {
        "env": {"API_KEY": "<redacted>", "RAY_AUTH_TOKEN_PATH": "/p", "n": 1.0},
        "l": [{"password": "<redacted>"}],
    }


def test_entry_has_verdict_stats_versions_labels_and_location():
    e = entry_from_folder(FIX / "step-autoscale")
    assert e["scenario"] == "step-autoscale" and e["verdict"] == "pass" and e["status"] == "completed"
    assert e["stats"]["ttft_p95_ms"] == pytest.approx(1148.85, abs=0.01) and e["ray_version"] == "2.60.0"
    assert e["path"] == str((FIX / "step-autoscale").resolve()) and e["labels"]["commit"]
    assert entry_from_folder(FIX) is None  # not a run folder


def test_store_queries_labels_and_baselines(tmp_path):
    res = _results(tmp_path)
    st = Store(resolve_url(None, res))
    assert len(sync(res, st)["added"]) == 4 and sync(res, st)["added"] == []  # idempotent
    rows = st.query("fixture-chat")
    assert [r["run_id"] for r in rows] == [f"fixture-chat-run{i}" for i in range(4)]  # oldest first
    assert [r["run_id"] for r in st.query(labels={"runner": "a"})] == ["fixture-chat-run0", "fixture-chat-run2"]
    assert st.find(Selector.parse("latest-pass"), "fixture-chat")["run_id"] == "fixture-chat-run3"
    assert st.find(Selector.parse("latest-pass:runner=a"), "fixture-chat")["run_id"] == "fixture-chat-run0"
    assert st.find(Selector.parse("latest:runner=a,branch=main"), "fixture-chat")["run_id"] == "fixture-chat-run2"
    assert st.find(Selector.parse("latest-pass:runner=zz"), "fixture-chat") is None
    assert st.find(Selector.parse("latest-pass"), "other-scenario") is None
    with pytest.raises(HarnessError, match="not key=value"):
        Selector.parse("latest-pass:main")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once closed


def test_unreachable_store_is_recorded_then_synced_and_the_password_stays_out(tmp_path):
    res = _results(tmp_path)
    run = res / "fixture-chat-run0"
    down = f"postgresql://harness:TopSecret42@127.0.0.1:{_closed_port()}/db"
    out = index_run(run, resolve_url(down, res))
    assert out["indexed"] is False and "unreachable" in out["error"] and "TopSecret42" not in json.dumps(out)
    mark = json.loads((run / "store.json").read_text())
    assert mark["indexed"] is False and mark["store"].endswith("harness:***@127.0.0.1:" + down.rsplit(":", 1)[1])
    r = CliRunner().invoke(app, ["store", "sync", "--results-dir", str(res)])  # later, to a store that answers
    assert r.exit_code == 0 and "added 4 run(s)" in r.output, r.output
    assert json.loads((run / "store.json").read_text())["indexed"] is True
    r = CliRunner().invoke(app, ["store", "sync", "--results-dir", str(res), "--store", down])
    assert r.exit_code == 2 and "unreachable" in r.output and "TopSecret42" not in r.output
    assert "TopSecret42" not in (res / "harness.db").read_bytes().decode("latin-1")


def test_compare_and_history_read_the_store(tmp_path):
    res = _results(tmp_path)
    r = CliRunner().invoke(
        app, ["history", "--results-dir", str(res), "--label", "runner=b", "--json", str(tmp_path / "h.json")]
    )
    assert r.exit_code == 0, r.output
    (sc,) = json.loads((tmp_path / "h.json").read_text())["scenarios"]
    assert [x["run_id"] for x in sc["runs"]] == ["fixture-chat-run1", "fixture-chat-run3"]
    # a stored baseline by selector, against a folder: the gate works like `compare BASE NEW`
    js = tmp_path / "c.json"
    r = CliRunner().invoke(
        app,
        [
            "compare",
            "latest-pass:runner=a",
            str(res / "fixture-chat-run3"),
            "--results-dir",
            str(res),
            "--json",
            str(js),
        ],
    )
    assert r.exit_code == 1, r.output  # ray-2.60-slow regressed against ray-2.59a
    assert json.loads(js.read_text())["runs"][0]["run_id"] == "fixture-chat-run0"
    # a run whose folder lives on another machine: compared from its stored documents, without significance tests
    st = Store(resolve_url(None, res))
    e = entry_from_folder(res / "fixture-chat-run1")
    st.put(
        [
            {
                **e,
                "run_id": "remote-run",
                "host": "gpu-runner-7",
                "path": "/nowhere/remote-run",
                "run_doc": {**e["run_doc"], "run_id": "remote-run"},
            }
        ]
    )
    r = CliRunner().invoke(
        app, ["compare", "remote-run", str(res / "fixture-chat-run0"), "--results-dir", str(res), "--json", str(js)]
    )
    assert r.exit_code in (0, 1), r.output
    assert any("no samples.parquet" in w for w in json.loads(js.read_text())["comparisons"][0]["warnings"])
    r = CliRunner().invoke(app, ["compare", "no-such-run", str(res / "fixture-chat-run0"), "--results-dir", str(res)])
    assert r.exit_code == 2 and "no stored run" in r.output


def test_step_summary_goes_where_ci_shows_it(tmp_path, monkeypatch):
    target = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    text = ci.step_summary("# run\n", None, {"store": "sqlite:///x", "indexed": False, "error": "down"})
    assert ci.publish(text) == [str(target)] and ci.publish(text)
    assert target.read_text().count("# run") == 2 and "**not indexed** (down)" in target.read_text()
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    assert ci.publish(text) == []
