"""Issue 26, property-based tier: damaged run folders (run.json, summary.json, samples) and out-of-range options for
`report`, `compare` and `history`. Whatever hypothesis generates: exit 0, 1 or 2, never a traceback, and the
read-only commands (`history`, `compare`) write nothing into the folders. In-process (CliRunner), bounded."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import traceback
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from harness.cli import app

CMP = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "compare"
BASES = ("ray-2.59a", "ray-2.59b")
FILES = {b: {f.name: f.read_bytes() for f in (CMP / b).iterdir()} for b in BASES}
SAMPLES = pd.read_parquet(CMP / "ray-2.59a" / "samples.parquet")
RUNNER = CliRunner()
FUZZ = settings(  # FUZZ_EXAMPLES=500 explores further (random); the default is small and the same every run
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    derandomize="FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------- damage ----------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(doc: Any, prefix: tuple = (), depth: int = 4) -> list[tuple]:
    out = [prefix] if prefix else []
    if depth and isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k), depth - 1)
    elif depth and isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += _paths(v, (*prefix, i), depth - 1)
    return out


DOCS = {name: json.loads(FILES["ray-2.59b"][name]) for name in ("run.json", "summary.json")}
PATHS = {name: _paths(doc) for name, doc in DOCS.items()}


def _set_at(doc: Any, path: tuple, value: Any, delete: bool) -> Any:
    doc = json.loads(json.dumps(doc))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete and isinstance(parent, dict):
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return doc


@st.composite
def json_damage(draw, name: str) -> bytes:
    """A damaged run.json / summary.json: a field changed or removed, the whole document replaced, cut short, or
    not text at all."""
    doc, raw = DOCS[name], FILES["ray-2.59b"][name]
    how = draw(st.sampled_from(["field", "delete", "whole", "truncate", "bytes", "deep"]))
    if how in ("field", "delete"):
        path = draw(st.sampled_from(PATHS[name]))
        return json.dumps(_set_at(doc, path, draw(json_values), how == "delete")).encode()
    if how == "whole":
        return json.dumps(draw(json_values)).encode()
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "deep":
        n = draw(st.integers(100, 5000))
        return ('{"a":' * n + "1" + "}" * n).encode()
    return draw(st.binary(max_size=64))


@st.composite
def samples_damage(draw) -> bytes:
    """A damaged samples.parquet: columns dropped, filled with NaN/inf/text/None, rows gone, or not Parquet."""
    how = draw(st.sampled_from(["drop", "fill", "empty", "bytes", "truncate"]))
    df = SAMPLES.copy()
    if how == "drop":
        df = df.drop(columns=draw(st.lists(st.sampled_from(list(df.columns)), min_size=1, max_size=4, unique=True)))
    elif how == "fill":
        for col in draw(st.lists(st.sampled_from(list(df.columns)), min_size=1, max_size=3, unique=True)):
            v = draw(st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 1e300, "x", None, True]))
            df[col] = pd.Series([v] * len(df), dtype=object if isinstance(v, str) or v is None else None)
    elif how == "empty":
        df = df.iloc[0:0]
    elif how == "bytes":
        return draw(st.binary(max_size=64))
    buf = io.BytesIO()
    try:
        df.to_parquet(buf)
    except Exception:  # a mix pyarrow cannot write: write what a broken writer might have left
        return b"PAR1" + draw(st.binary(max_size=32))
    data = buf.getvalue()
    return data[: draw(st.integers(0, len(data) - 1))] if how == "truncate" else data


@st.composite
def damaged_folder(draw) -> dict[str, bytes]:
    """The files of run b, one or two of them damaged."""
    files = dict(FILES["ray-2.59b"])
    for name in draw(st.lists(st.sampled_from(sorted(files)), min_size=1, max_size=2, unique=True)):
        files[name] = draw(samples_damage() if name.endswith(".parquet") else json_damage(name))
    if draw(st.booleans()) and draw(st.booleans()):
        files.pop(draw(st.sampled_from(sorted(files))))  # a file missing altogether
    return files


# ---------- options ----------

ints = st.one_of(st.integers(-5, 5), st.integers(-(2**40), 2**40), st.sampled_from([0, 1, 2**32, 10**6]))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["nan", "-inf", "1e400", "x"]))
fail_on = st.one_of(
    st.text(max_size=20),
    st.builds(
        "{}:{}{}{}".format,
        st.sampled_from(["ttft_p99", "itl_p50", "e2e_max", "error_rate", "tfft_p99", "ttft_p101", "throughput"]),
        st.sampled_from(["+", "-", "", "*"]),
        st.sampled_from(["10", "0", "-5", "1e400", "nan", "abc", "999999"]),
        st.sampled_from(["%", "ms", "s", "", "x"]),
    ),
)


def _write(root: Path, name: str, files: dict[str, bytes]) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for f, data in files.items():
        (d / f).write_bytes(data)
    return d


def _tree(d: Path) -> dict[str, tuple[float, int]]:
    return {str(p.relative_to(d)): (p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*")}


def _check(res) -> None:
    out = res.output + (res.stderr if res.stderr_bytes is not None and res.stderr not in res.output else "")
    assert res.exit_code in (0, 1, 2), (res.exit_code, out, repr(res.exception))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        where = "".join(traceback.format_exception(res.exception)[-6:])
        raise AssertionError(f"{res.exception!r} escaped the command:\n{where}")
    assert "Traceback" not in out, out


# ---------- properties ----------


@FUZZ
@given(
    files=damaged_folder(),
    seed=st.one_of(st.none(), ints),
    resamples=st.one_of(st.none(), st.integers(-3, 20), st.sampled_from([10**6])),
    rules=st.lists(fail_on, max_size=2),
    force=st.booleans(),
    store=st.sampled_from([None, "none"]),
    new_first=st.booleans(),
)
def test_compare_damaged_folders_and_options(files, seed, resamples, rules, force, store, new_first):
    with tempfile.TemporaryDirectory() as tmp:
        res_dir = Path(tmp) / "results"
        a = _write(res_dir, "a", FILES["ray-2.59a"])
        b = _write(res_dir, "b", files)
        args = ["compare", *([str(b), str(a)] if new_first else [str(a), str(b)]), "-o", str(res_dir)]
        args += ["--seed", str(seed)] if seed is not None else []
        args += ["--resamples", str(resamples if resamples is not None else 20)]
        args += [x for r in rules for x in ("--fail-on", r)] + (["--force"] if force else [])
        args += ["--store", store] if store else []
        before = _tree(Path(tmp))
        _check(RUNNER.invoke(app, args))
        assert _tree(Path(tmp)) == before  # read-only: no harness.db, no reports, no temp files


@FUZZ
@given(
    folders=st.lists(damaged_folder(), min_size=1, max_size=3),
    window=st.one_of(st.none(), ints),
    threshold=st.one_of(st.none(), floats),
    scenario=st.one_of(st.none(), st.text(max_size=10)),
    label=st.one_of(st.none(), st.text(max_size=10)),
    store=st.sampled_from([None, "none"]),
)
def test_history_damaged_folders_and_options(folders, window, threshold, scenario, label, store):
    with tempfile.TemporaryDirectory() as tmp:
        res_dir = Path(tmp) / "results"
        _write(res_dir, "good", FILES["ray-2.59a"])
        for i, files in enumerate(folders):
            _write(res_dir, f"bad{i}", files)
        args = ["history", "-o", str(res_dir)]
        args += ["--window", str(window)] if window is not None else []
        args += ["--threshold", str(threshold)] if threshold is not None else []
        args += ["--scenario", scenario] if scenario is not None else []
        args += ["--label", label] if label is not None else []
        args += ["--store", store] if store else []
        before = _tree(Path(tmp))
        _check(RUNNER.invoke(app, args))
        assert _tree(Path(tmp)) == before


@FUZZ
@given(files=damaged_folder(), where=st.sampled_from(["folder", "folder", "folder", "file", "missing", "parent"]))
def test_report_damaged_folders(files, where):
    with tempfile.TemporaryDirectory() as tmp:
        d = _write(Path(tmp) / "results", "b", files)
        target = {"folder": d, "file": d / "run.json", "missing": d / "nope", "parent": d.parent}[where]
        _check(RUNNER.invoke(app, ["report", str(target)]))  # report writes its reports by design
        shutil.rmtree(tmp, ignore_errors=True)
