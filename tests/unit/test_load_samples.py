import json
import multiprocessing as mp
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness.load.counter import AppendCounter
from harness.load.samples import SCHEMA, Progress, SampleTail, merge_samples

STARTED = 1_000_000.0


def _raw(t_rel, *, ttft=50.0, itl=(10.0, 20.0, 30.0), out=4, error=None, status=200, worker=1):
    return {
        "t_start_s": STARTED + t_rel,
        "ttft_ms": ttft,
        "e2e_ms": (ttft or 0) + sum(itl),
        "itl_ms": list(itl),
        "prompt_tokens": 12,
        "output_tokens": out,
        "usage_reported": True,
        "prompt_words": 12,
        "max_tokens": out,
        "status": status,
        "error": error,
        "worker": worker,
    }


def _write(path: Path, rows, torn: bool = False):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        if torn:
            f.write('{"t_start_s": 1')


def test_merge_derives_columns_stage_and_warmup(tmp_path):
    d = tmp_path / "samples"
    d.mkdir()
    _write(d / "samples-1.jsonl", [_raw(0.5), _raw(3.0, ttft=None, itl=(), out=0, error="http_500", status=500)])
    _write(d / "samples-2.jsonl", [_raw(6.0, itl=(), out=1, worker=2), _raw(12.0, worker=2)], torn=True)
    out = tmp_path / "samples.parquet"
    n, errs = merge_samples(d, out, started_at=STARTED, warmup_s=2.0, stage_names=["a", "b"], stage_ends=[5.0, 10.0])
    assert (n, errs) == (4, 1)
    t = pq.read_table(out)
    assert t.schema.equals(SCHEMA)
    df = t.to_pandas().sort_values("t_start_s").reset_index(drop=True)
    assert list(df.stage) == ["a", "a", "b", "b"]  # 12 s is after the last stage: labelled with it
    assert list(df.warmup) == [True, False, False, False]
    assert list(df.ok) == [True, False, True, True]
    first = df.iloc[0]
    assert first.tpot_ms == pytest.approx(60.0 / 3)
    assert (first.itl_count, first.itl_mean_ms, first.itl_p50_ms, first.itl_max_ms) == (3, 20.0, 20.0, 30.0)
    assert list(first.itl_ms) == [10.0, 20.0, 30.0]
    assert df.iloc[1].error == "http_500" and df.iloc[1].status == 500
    assert df.tpot_ms.isna().tolist() == [False, True, True, False]  # <2 tokens: no TPOT
    assert not out.with_suffix(".parquet.tmp").exists()


def test_merge_of_nothing_writes_an_empty_table_with_the_schema(tmp_path):
    (tmp_path / "s").mkdir()
    n, errs = merge_samples(
        tmp_path / "s", tmp_path / "o.parquet", started_at=0, warmup_s=0, stage_names=["a"], stage_ends=[1]
    )
    t = pq.read_table(tmp_path / "o.parquet")
    assert (n, errs, t.num_rows) == (0, 0, 0) and t.schema.equals(SCHEMA)


def test_merge_in_small_batches_keeps_every_row(tmp_path):
    (tmp_path / "s").mkdir()
    _write(tmp_path / "s" / "samples-9.jsonl", [_raw(i * 0.01) for i in range(57)])
    n, _ = merge_samples(
        tmp_path / "s",
        tmp_path / "o.parquet",
        started_at=STARTED,
        warmup_s=0,
        stage_names=["a"],
        stage_ends=[10],
        batch_rows=10,
    )
    assert n == 57 == pq.read_table(tmp_path / "o.parquet").num_rows


def test_tail_reads_only_new_whole_lines(tmp_path):
    p = tmp_path / "samples-1.jsonl"
    tail = SampleTail(tmp_path)
    assert tail.poll() == []
    line = json.dumps(_raw(1.0)) + "\n"
    p.write_text(line + line[:10])
    assert len(tail.poll()) == 1
    with open(p, "a") as f:
        f.write(line[10:] + line)
    assert len(tail.poll()) == 2
    assert tail.poll() == []


def test_progress_window():
    pr = Progress(window_s=10)
    pr.add([_raw(0.0), _raw(1.0, error="timeout", ttft=None), _raw(20.0, ttft=80.0)])
    snap = pr.snapshot(STARTED + 21.0)
    assert (snap["requests"], snap["errors"]) == (3, 1)
    assert snap["rps"] == 0.1 and snap["ttft_p50_ms"] == 80.0


def _bump_many(path: str, n: int, q) -> None:
    c = AppendCounter(Path(path))
    q.put([c.bump() for _ in range(n)])


def test_append_counter_tickets_are_unique_across_processes(tmp_path):
    path = tmp_path / "tickets.cnt"
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_bump_many, args=(str(path), 300, q)) for _ in range(3)]
    for p in procs:
        p.start()
    got = sorted(t for _ in procs for t in q.get(timeout=30))
    for p in procs:
        p.join()
    assert got == list(range(1, 901))
    assert AppendCounter(path).value() == 900
