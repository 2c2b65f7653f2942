"""Trace replay: the four format parsers, scheduling (sort, scale, window), prompts with shared prefixes, and the
scenario rules around workload.trace."""

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError, ScenarioError
from harness.load import runner
from harness.load.prepare import REPO_ROOT, check_inputs, prepare_workload
from harness.load.trace import TraceReplay, load_trace, parse_azure_time, parse_trace, schedule
from harness.scenario import absolute_inputs, parse_scenario

DS = REPO_ROOT / "datasets"


def _sc(trace, stages=None, **load):
    return parse_scenario(
        {
            "name": "t",
            "target": {"engine": "sim", "model": "m"},
            "workload": {"trace": trace},
            "load": {"stages": stages or [{"duration_s": 20}], **load},
            "measure_only": True,
        }
    )


def _load(path, fmt, **kw):
    args = {"speedup": 1.0, "start_s": 0.0, "duration_s": 1e9, "prefix_tokens": None, "block_tokens": 64, **kw}
    return load_trace(Path(path), fmt, **args)


def test_mooncake_rows_and_hash_ids(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text(
        '{"timestamp": 1000, "input_length": 100, "output_length": 5, "hash_ids": [0, 1]}\n\n'
        '{"timestamp": 3052, "input_length": 70, "output_length": 9, "hash_ids": [0, 7], "extra": 1}\n'
    )
    rows, info = _load(f, "mooncake")
    assert [r["t"] for r in rows] == [0.0, pytest.approx(2.052)]  # ms, from the first request
    assert rows[0] == {"t": 0.0, "in": 100, "out": 5, "blocks": [0, 1], "shared": 100}
    assert info["rows"] == 2 and info["format"] == "mooncake" and "hash_ids" in info["prefix"]
    rows, _ = _load(DS / "trace-mooncake-mini.jsonl", "mooncake")
    assert len(rows) == 89 and all(r["blocks"] for r in rows)


def test_azure_timestamps_both_eras(tmp_path):
    gap = parse_azure_time("2023-11-16 18:15:50.9951690") - parse_azure_time("2023-11-16 18:15:46.6805900")
    assert gap == pytest.approx(4.314579)
    assert parse_azure_time("2024-05-10 01:00:00.5+01:00") == parse_azure_time("2024-05-10 00:00:00.5")
    f = tmp_path / "a.csv"
    f.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,109\n"
    )
    rows, info = _load(f, "azure")
    assert [(r["in"], r["out"]) for r in rows] == [(374, 44), (396, 109)] and rows[1]["t"] == pytest.approx(4.314579)
    assert "blocks" not in rows[0] and "none" in info["prefix"]
    rows, _ = _load(DS / "trace-azure-mini.csv", "azure")
    assert len(rows) == 46


def test_burstgpt_models_and_failed_rows(tmp_path):
    f = tmp_path / "b.csv"
    f.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,472,18,490,Conversation log\n6.5,GPT-4,1087,0,1087,Conversation log\n"
    )
    rows, info = _load(f, "burstgpt")
    got = [(r["t"], r["in"], r["out"], r["model"]) for r in rows]
    assert got == [(0.0, 472, 18, "ChatGPT"), (1.5, 1087, 1, "GPT-4")]
    assert info["zero_length_rows_sent_as_1"] == 1 and info["models"] == {"ChatGPT": 1, "GPT-4": 1}
    f.write_text("Timestamp,Request tokens,Response tokens\n0,10,2\n")  # Model is optional
    assert "model" not in _load(f, "burstgpt")[0][0]
    rows, info = _load(DS / "trace-burstgpt-mini.csv", "burstgpt")
    assert len(rows) == 51 and set(info["models"]) == {"ChatGPT", "GPT-4"}


def test_generic_jsonl_prefix_ids(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text(
        '{"timestamp_ms": 0, "input_tokens": 50, "output_tokens": 4, "model": "a", "prefix_id": "sys", '
        '"prefix_tokens": 20}\n'
        '{"timestamp_ms": 250, "input_tokens": 10, "output_tokens": 4, "prefix_id": "sys"}\n'
        '{"timestamp_ms": 500, "input_tokens": 30, "output_tokens": 4}\n'
    )
    with pytest.raises(HarnessError) as ei:  # row 2 has a prefix_id and no length anywhere
        _load(f, "jsonl")
    assert ":2:" in ei.value.problems[0] and "prefix_tokens" in ei.value.fix
    rows, info = _load(f, "jsonl", prefix_tokens=8)
    assert rows[0]["shared"] == 20 and rows[1]["shared"] == 8 and "blocks" not in rows[2]
    assert rows[0]["blocks"][0] == rows[1]["blocks"][0] and info["models"] == {"a": 1}
    rows, _ = _load(DS / "trace-generic-mini.jsonl", "jsonl")
    assert len(rows) == 57


@pytest.mark.parametrize(
    "fmt,text,where,what",
    [
        ("mooncake", '{"timestamp": 0, "input_length": 5}\n', ":1:", "missing output_length"),
        ("mooncake", '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": "x"}\n', ":1:", "hash_ids"),
        ("jsonl", '{"timestamp_ms": 0, "input_tokens": 1, "output_tokens": 1}\nnot json\n', ":2:", "Expecting value"),
        (
            "jsonl",
            '{"timestamp_ms": "soon", "input_tokens": 1, "output_tokens": 1}\n',
            ":1:",
            "timestamp_ms must be a number",
        ),
        ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n", ":2:", "not a date-time"),
        ("azure", "Timestamp,Request tokens,Response tokens\n1,1,1\n", ":1:", "the header lacks TIMESTAMP"),
        ("burstgpt", "Timestamp,Request tokens,Response tokens\n1,-3,1\n", ":2:", "whole number >= 0"),
        ("burstgpt", "Timestamp,Request tokens,Response tokens\n1,2.5,1\n", ":2:", "whole number >= 0"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, fmt, text, where, what):
    f = tmp_path / "t"
    f.write_text(text)
    with pytest.raises(HarnessError) as ei:
        parse_trace(f, fmt)
    assert any(str(f) + where in p and what in p for p in ei.value.problems), ei.value.problems
    assert ei.value.fix


def test_empty_trace_is_an_error(tmp_path):
    f = tmp_path / "e.jsonl"
    f.write_text("\n")
    with pytest.raises(HarnessError, match="no requests"):
        parse_trace(f, "jsonl")


def test_schedule_sorts_scales_and_windows():
    rows = [{"t": t, "in": 5, "out": 2, "line": i} for i, t in enumerate([10.0, 12.0, 11.0, 16.0, 30.0], 1)]
    out, info = schedule(rows, speedup=2.0, start_s=1.0, duration_s=5.0, prefix_tokens=None, block_tokens=4)
    # t0 = 10; start_s drops the first second of the trace; /2; offsets >= 5 s are after the load
    assert [r["t"] for r in out] == [0.0, 0.5, 2.5] and info["reordered"] is True
    assert info["rows_before_start"] == 1 and info["rows_after_load"] == 1 and info["rows"] == 3
    with pytest.raises(HarnessError, match="none of the trace's 5 requests"):
        schedule(rows, speedup=1.0, start_s=100.0, duration_s=5.0, prefix_tokens=None, block_tokens=4)


def test_prompts_share_prefixes_by_hash_id():
    rows = [
        {"t": 0.0, "in": 10, "out": 1, "blocks": [0, 1, 2], "shared": 10},
        {"t": 0.1, "in": 7, "out": 1, "blocks": [0, 1, 9], "shared": 7},
        {"t": 0.2, "in": 10, "out": 1, "blocks": [5, 1, 2], "shared": 10},
        {"t": 0.3, "in": 12, "out": 1},
    ]
    tr = TraceReplay(rows, None, {"seed": 0}, block_tokens=3)
    p = [tr.prompt(i).split() for i in range(4)]
    assert [len(x) for x in p] == [10, 7, 10, 12]  # exact lengths (words; tokens with a single-token vocabulary)
    assert p[0][:6] == p[1][:6] and p[0][6:7] != p[1][6:7]  # blocks 0, 1 shared; block 2 vs 9 differ
    assert p[0][:3] != p[2][:3] and p[0][3:9] == p[2][3:9]  # a different first block: block ids, not positions
    assert tr.prompt(3) == TraceReplay(rows, None, {"seed": 0}, 3).prompt(3)  # same row, same prompt
    assert tr.prompt(3) != TraceReplay(rows, None, {"seed": 1}, 3).prompt(3)
    s = tr.session(1)
    _, max_tokens, prompt_len, turn = s.next_turn()
    assert max_tokens == 1 and prompt_len == 7 and turn == 0 and s.next_turn() is None
    # two load processes split the rows, each row once, offsets carry their row
    a, b = list(tr.offsets(0, 2)), list(tr.offsets(1, 2))
    assert [o.row for o in a] == [0, 2] and [o.row for o in b] == [1, 3] and b[0] == 0.1 and b[0] + 1.0 == 1.1


def test_scenario_rules_for_traces(tmp_path):
    tr = {"path": "datasets/trace-mooncake-mini.jsonl", "format": "mooncake", "speedup": 2}
    sc = _sc(tr)
    assert sc.workload.trace.speedup == 2 and not sc.load.open_loop and sc.load.stages[0].users is None
    for stages, load, msg in [
        ([{"duration_s": 5, "users": 2}], {}, "stages give durations only"),
        ([{"duration_s": 5, "rate_rps": 2}], {"arrival": {}}, "workload.trace sets the send times"),
    ]:
        with pytest.raises(ScenarioError) as ei:
            _sc(tr, stages, **load)
        assert msg in ei.value.render(), ei.value.render()
    for bad in ({**tr, "format": "csv"}, {**tr, "speedup": 0}):
        with pytest.raises(ScenarioError):
            _sc(bad)
    with pytest.raises(ScenarioError, match="invalid"):
        parse_scenario(
            {
                "name": "t",
                "target": {"engine": "sim", "model": "m"},
                "measure_only": True,
                "workload": {"trace": tr, "session_turns": 2},
                "load": {"stages": [{"duration_s": 5}]},
            }
        )
    # a relative trace path resolves next to the scenario file, like a dataset path
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.csv").write_text("Timestamp,Request tokens,Response tokens\n0,10,2\n1,10,2\n")
    sc = absolute_inputs(_sc({"path": "mine.csv", "format": "burstgpt"}), tmp_path / "sub" / "s.yaml")
    assert sc.workload.trace.path == str(tmp_path / "sub" / "mine.csv")
    check_inputs(sc, "s.yaml")
    (tmp_path / "sub" / "mine.csv").write_text("Timestamp,Request tokens\n0,10\n")
    with pytest.raises(ScenarioError) as ei:
        check_inputs(sc, "s.yaml")
    assert "s.yaml: workload.trace: " in ei.value.render() and "Response tokens" in ei.value.render()
    with pytest.raises(ScenarioError, match="file not found"):
        check_inputs(_sc({"path": "nope.jsonl", "format": "jsonl"}), "s.yaml")


def test_config_carries_the_trace_for_locust(tmp_path):
    sc = _sc(
        {"path": "datasets/trace-mooncake-mini.jsonl", "format": "mooncake", "speedup": 2, "max_concurrency": 8},
        [{"name": "a", "duration_s": 4}, {"name": "b", "duration_s": 2}],
    )
    prepared = prepare_workload(sc)
    assert prepared.info["kind"] == "trace" and prepared.info["rows"] + prepared.info["rows_after_load"] == 89
    assert max(r["t"] for r in prepared.trace) < 6.0
    (tmp_path / "locust").mkdir()
    cfg = runner.build_config(sc, tmp_path, prepared)
    assert cfg["open_loop"]["process"] == "trace" and cfg["open_loop"]["max_concurrency"] == 8
    assert json.loads(Path(cfg["trace_path"]).read_text()) == prepared.trace and cfg["trace_block_tokens"] == 512


def test_report_plots_the_traces_offered_rate():
    from harness.report.html import _stages, _users_pts

    sc = _sc({"path": "datasets/trace-mooncake-mini.jsonl", "format": "mooncake", "block_tokens": 64})
    info = prepare_workload(sc).info
    assert sum(info["sends_per_bin"]) == info["rows"] == 89 and info["rate_bin_s"] == 1.0
    run = {"scenario": sc.model_dump(mode="json"), "load": {"workload": info}}
    _, y = _users_pts(run)
    assert max(y) == max(info["sends_per_bin"]) > 3 * info["mean_rate_rps"]  # the burst shows, not a flat mean
    assert _stages(run)[0]["level"] == "trace replay"
