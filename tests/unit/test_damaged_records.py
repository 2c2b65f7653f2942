"""Issue 26: every command that reads run folders goes through one reader (harness/record/read.py). A malformed
file is exit 2 naming the file, what is wrong and the fix, never a traceback; listings skip a bad folder with a
one-line warning; read-only commands write nothing; output paths are checked before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import app

CMP = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "compare"


def _out(res) -> str:
    err = res.stderr if res.stderr_bytes is not None else ""
    return res.output if err in res.output else res.output + err  # click >= 8.2: output holds both


def _clean_exit(res, code: int, *words: str) -> str:
    out = _out(res)
    assert res.exit_code == code, (res.exit_code, out)
    assert "Traceback" not in out, out
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    for w in words:
        assert w in out, (w, out)
    return out


def _edit(path: Path, fn) -> None:
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


def _set(key, value):
    return lambda d: {**d, key: value}


def _deep(n: int) -> str:
    return '{"a":' * n + "1" + "}" * n


DAMAGE = {  # name -> (file, how to damage it, words the message must have)
    "schema_version string": ("run.json", lambda p: _edit(p, _set("schema_version", "2")), ["schema_version", '"2"']),
    "schema_version null": ("summary.json", lambda p: _edit(p, _set("schema_version", None)), ["null"]),
    "schema_version future": ("run.json", lambda p: _edit(p, _set("schema_version", 99)), ["run.json", "newer"]),
    "json array": ("run.json", lambda p: p.write_text("[1, 2]"), ["run.json", "array, not an object"]),
    "json too deep": ("summary.json", lambda p: p.write_text(_deep(100_000)), ["summary.json", "nested deeper"]),
    "json deep but parsable": ("run.json", lambda p: p.write_text(_deep(500)), ["run.json", "nested deeper"]),
    "not json": ("run.json", lambda p: p.write_text("{oops"), ["run.json", "not valid JSON"]),
    "not utf-8": ("run.json", lambda p: p.write_bytes(b"\xff\xfe{}"), ["run.json", "UTF-8"]),
    "wrong field type": ("summary.json", lambda p: _edit(p, _set("slos", "all good")), ["summary.json", "slos"]),
    "samples other columns": (
        "samples.parquet",
        lambda p: pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(p),
        ["samples.parquet", "no column"],
    ),
    "samples all-NaN latencies": (
        "samples.parquet",
        lambda p: pd.read_parquet(p).assign(t_start_s=np.nan, e2e_ms=np.nan, ttft_ms=np.nan).to_parquet(p),
        ["samples.parquet", "no finite value"],
    ),
    "samples not parquet": ("samples.parquet", lambda p: p.write_text("nope"), ["samples.parquet"]),
}


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    return shutil.copytree(CMP / "ray-2.59a", tmp_path / "a"), shutil.copytree(CMP / "ray-2.59b", tmp_path / "b")


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_compare_and_report_name_the_damaged_file(runner, tmp_path, case):
    a, b = _pair(tmp_path)
    name, damage, words = DAMAGE[case]
    damage(b / name)
    _clean_exit(runner.invoke(app, ["compare", str(a), str(b), "--store", "none"]), 2, "fix:", *words)
    if name != "summary.json" or case != "json too deep":
        _clean_exit(runner.invoke(app, ["report", str(b)]), 2, *words)


def test_repeat_group_file_not_an_object(runner, tmp_path):
    g = tmp_path / "group"
    for i, src in enumerate(["ray-2.59a", "ray-2.59b", "ray-2.59a"]):
        shutil.copytree(CMP / src, g / f"r{i}")
    (g / "repeat.json").write_text("[]")
    a = shutil.copytree(CMP / "ray-2.59a", tmp_path / "a")
    _clean_exit(runner.invoke(app, ["compare", str(a), str(g), "--store", "none"]), 2, "repeat.json", "array")
    (g / "repeat.json").write_text(json.dumps({"runs": "r0"}))
    _clean_exit(runner.invoke(app, ["compare", str(a), str(g), "--store", "none"]), 2, "repeat.json", "runs")


@pytest.mark.parametrize("store", [["--store", "none"], []])
def test_history_skips_a_bad_folder_with_one_warning_and_lists_the_rest(runner, tmp_path, store):
    res = tmp_path / "results"
    for name in ("run1", "run2", "run3"):
        shutil.copytree(CMP / "ray-2.59a", res / name)
    (res / "run2" / "run.json").write_text("[]")
    _edit(res / "run3" / "summary.json", _set("schema_version", "x"))
    js = tmp_path / "h.json"
    out = _clean_exit(runner.invoke(app, ["history", "-o", str(res), "--json", str(js), *store]), 0)
    warnings = [ln for ln in out.splitlines() if ln.startswith("warning: skipped")]
    assert len(warnings) == 2 and "run2" in warnings[0] and "run3" in warnings[1], out
    assert [Path(r["dir"]).name for s in json.loads(js.read_text())["scenarios"] for r in s["runs"]] == ["run1"]


def test_store_sync_skips_a_bad_folder_with_a_warning(runner, tmp_path):
    res = tmp_path / "results"
    for name in ("run1", "run2"):
        shutil.copytree(CMP / "ray-2.59a", res / name)
    (res / "run2" / "summary.json").write_text(_deep(100_000))
    _edit(res / "run1" / "run.json", _set("run_id", "run1"))
    out = _clean_exit(runner.invoke(app, ["store", "sync", "-o", str(res)]), 0, "added 1 run(s)", "1 malformed")
    assert "warning: skipped" in out and "run2" in out


def _tree(d: Path) -> dict[str, float]:
    return {str(p.relative_to(d)): p.stat().st_mtime for p in d.rglob("*")}


def test_read_only_commands_write_nothing(runner, tmp_path):
    res = tmp_path / "results"
    a = shutil.copytree(CMP / "ray-2.59a", res / "a")
    b = shutil.copytree(CMP / "ray-2.59b", res / "b")
    before = _tree(tmp_path)
    _clean_exit(runner.invoke(app, ["history", "-o", str(res)]), 0)
    _clean_exit(runner.invoke(app, ["compare", str(a), str(b), "-o", str(res)]), 0)
    r = runner.invoke(app, ["compare", "latest-pass", str(b), "-o", str(res)])
    assert r.exit_code in (0, 1), _out(r)
    assert _tree(tmp_path) == before  # no harness.db, no store.json markers, no reports


@pytest.mark.parametrize("where", ["dir", "missing parent", "parent is a file"])
@pytest.mark.parametrize("opt", ["--md", "--json", "--html"])
def test_compare_output_checked_before_the_verdict(runner, tmp_path, where, opt):
    a, b = _pair(tmp_path)
    (tmp_path / "f").write_text("x")
    target = {"dir": tmp_path, "missing parent": tmp_path / "no" / "x", "parent is a file": tmp_path / "f" / "x"}
    r = runner.invoke(app, ["compare", str(a), str(b), "--store", "none", opt, str(target[where])])
    out = _clean_exit(r, 2, opt, "fix:")
    assert "regression" not in out  # no verdict printed before the failure
    assert not [p for p in tmp_path.rglob(".*.tmp")]


@pytest.mark.parametrize("opt", ["--html", "--json"])
def test_history_output_checked_before_work(runner, tmp_path, opt):
    res = tmp_path / "results"
    shutil.copytree(CMP / "ray-2.59a", res / "a")
    _clean_exit(runner.invoke(app, ["history", "-o", str(res), "--store", "none", opt, str(res)]), 2, "is a folder")


def test_atomic_write_leaves_no_temp_file(tmp_path, monkeypatch):
    import os

    from harness.record.store import write_text

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_text(tmp_path / "x.md", "hello" * 1000)
    assert list(tmp_path.iterdir()) == []
