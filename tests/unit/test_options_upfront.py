"""Issue 26: options are parsed before anything starts (ranges in the Typer definitions, --fail-on against the
signal's stat and unit, --baseline selectors, --store URLs, label keys), and help shows the code's defaults."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.defaults import DEFAULT_RESAMPLES, DEFAULT_RULES, DEFAULT_SEED, HISTORY_THRESHOLD, HISTORY_WINDOW

CMP = Path(__file__).resolve().parents[1] / "fixtures" / "records" / "compare"
GOOD = """name: s
target: {engine: sim, model: m}
workload: {prompt_tokens: {mean: 16}, output_tokens: {mean: 8}}
load: {stages: [{duration_s: 1, users: 1}]}
slos: ["ttft.p95 <= 1s"]
"""


def _bad(res, *words: str) -> None:
    out = res.output + (getattr(res, "stderr", "") if res.stderr_bytes is not None else "")
    assert res.exit_code == 2, (res.exit_code, out)
    assert "Traceback" not in out and (res.exception is None or isinstance(res.exception, SystemExit)), out
    for w in words:
        assert w in out, (w, out)


@pytest.fixture
def pair(tmp_path):
    return [str(shutil.copytree(CMP / s, tmp_path / s)) for s in ("ray-2.59a", "ray-2.59b")]


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--seed", "-1"], ["--seed"]),
        (["--resamples", "0"], ["--resamples"]),
        (["--resamples", "-5"], ["--resamples"]),
        (["--fail-on", "ttft.p97:+10%"], ["ttft.p97", "no statistic"]),
        (["--fail-on", "error_rate:+5ms"], ["error_rate:+5ms", "does not fit"]),
        (["--fail-on", "throughput:-3pp"], ["does not fit"]),
        (["--fail-on", "ttft.p95:+1pp"], ["does not fit"]),
        (["--fail-on", "bogus.p95:+1%"], ["unknown signal"]),
        (["--store", "not a url"], ["--store", "not a store URL"]),
    ],
)
def test_compare_options(pair, extra, words):
    _bad(CliRunner().invoke(app, ["compare", *pair, *extra]), *words)


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--window", "0"], ["--window"]),
        (["--window", "-3"], ["--window"]),
        (["--threshold", "nan"], ["--threshold"]),
        (["--threshold", "inf"], ["--threshold"]),
        (["--threshold", "-0.1"], ["--threshold"]),
        (["--label", "=x"], ["key is empty"]),
        (["--store", "mysql//x"], ["not a store URL"]),
    ],
)
def test_history_options(tmp_path, extra, words):
    _bad(CliRunner().invoke(app, ["history", "-o", str(tmp_path), *extra]), *words)


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--baseline", "lastest-pass"], ["did you mean 'latest-pass'"]),
        (["--baseline", "latest-pass:=main"], ["not key=value"]),
        (["--baseline", "latest-pass", "--fail-on", "ttft.p95:+2pp"], ["does not fit"]),
        (["--fail-on", "ttft.p95:+10%"], ["--fail-on", "--baseline"]),
        (["--store", "ftp://x"], ["not a store URL"]),
        (["--label", " =v"], ["key is empty"]),
        (["--repeat", "3", "--repeat-until-width", "nan"], ["--repeat-until-width"]),
        (["--repeat", "3", "--repeat-until-width", "0"], ["--repeat-until-width"]),
    ],
)
def test_run_options_before_anything_starts(tmp_path, extra, words):
    sc = tmp_path / "s.yaml"
    sc.write_text(GOOD)
    res = tmp_path / "res"
    _bad(CliRunner().invoke(app, ["run", str(sc), "-o", str(res), *extra]), *words)
    assert not res.exists()  # nothing started, nothing written


def test_baseline_run_id_nobody_has_is_bad_input(tmp_path):
    from harness.errors import HarnessError
    from harness.store import Store, resolve_url
    from harness.store.gate import choose

    st = Store(resolve_url(None, tmp_path))
    with pytest.raises(HarnessError, match="no stored run has this id"):
        choose(st, "fixture-chat-2026-typo", "fixture-chat")
    assert choose(st, "latest-pass:branch=new", "fixture-chat") is None  # no baseline yet: the run goes on


def test_matrix_fail_on_checked_before_any_environment(tmp_path):
    _bad(
        CliRunner().invoke(app, ["matrix", "smoke", "--ray-version", "2.60.0", "--fail-on", "e2e.p95:+1pp"]),
        "does not fit",
    )


def _flat(text: str) -> str:
    return re.sub(r"[\s│]+", " ", re.sub(r"\x1b\[[0-9;]*m", "", text))


def test_help_defaults_are_the_code_constants():
    cmp = _flat(CliRunner().invoke(app, ["compare", "--help"], terminal_width=400).output)
    assert " ".join(DEFAULT_RULES) in cmp, cmp
    assert str(DEFAULT_SEED) in cmp and str(DEFAULT_RESAMPLES) in cmp
    mx = _flat(CliRunner().invoke(app, ["matrix", "--help"], terminal_width=400).output)
    assert " ".join(DEFAULT_RULES) in mx
    hist = _flat(CliRunner().invoke(app, ["history", "--help"], terminal_width=400).output)
    assert f"default: {HISTORY_WINDOW}" in hist and f"default: {HISTORY_THRESHOLD}" in hist, hist
    from harness.compare.history import change_points
    from harness.compare.rules import DEFAULT_RULES as used
    from harness.compare.significance import DEFAULT_RESAMPLES as res_used

    assert used == DEFAULT_RULES and res_used == DEFAULT_RESAMPLES
    assert change_points.__kwdefaults__["window"] == HISTORY_WINDOW
    assert change_points.__kwdefaults__["rel_threshold"] == HISTORY_THRESHOLD
