"""run_load end to end against bench/mock_openai.py on loopback (each test ~5-15 s)."""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.request

import pyarrow.parquet as pq
import pytest

from harness.errors import LoadError
from harness.load import runner as runner_mod
from harness.load.runner import run_load
from harness.load.samples import SCHEMA
from harness.scenario import parse_scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

TTFT_MS, ITL_MS = 30.0, 10.0


def _records(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/mock/records", timeout=5) as r:
        return json.load(r)


def _scenario(url: str, *, workers: int = 0, stages=None, api: str = "chat", **load) -> object:
    return parse_scenario(
        {
            "name": "load-it",
            "target": {"engine": "external", "model": "mock", "url": url},
            "workload": {
                "api": api,
                "prompt_tokens": {"mean": 40, "stddev": 10},
                "output_tokens": {"mean": 16},
                "request_timeout_s": 5,
            },
            "load": {
                "warmup_s": 1,
                "workers": workers,
                "stages": stages
                or [
                    {"name": "low", "duration_s": 4, "users": 2, "spawn_rate": 10},
                    {"name": "high", "duration_s": 4, "users": 4, "spawn_rate": 10},
                ],
                **load,
            },
        }
    )


def _check_fidelity(df, recs) -> None:
    ok = df[df.ok]
    # Client TTFT ≥ server's first send, and close to it (loopback + asyncio's ~1 ms timer granularity).
    server_ttft = statistics.median((r["sends"][0] - r["t_recv"]) * 1000 for r in recs if r.get("sends"))
    client_ttft = ok.ttft_ms.median()
    assert TTFT_MS <= client_ttft < TTFT_MS + 10, client_ttft
    assert abs(client_ttft - server_ttft) < 5, (client_ttft, server_ttft)
    assert ok.itl_mean_ms.mean() == pytest.approx(ITL_MS, abs=1.0)
    assert ok.tpot_ms.median() == pytest.approx(ITL_MS, abs=1.5)
    assert (ok.itl_count == ok.output_tokens - 1).all()


@pytest.mark.exclusive
def test_two_stages_single_process(mock_server, tmp_path):
    url = mock_server("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS))
    progress: list[dict] = []
    t0 = time.time()
    res = run_load(_scenario(url), url, tmp_path, on_progress=progress.append)
    assert res.exit_code == 0 and not res.interrupted and res.message is None
    assert res.requests > 50 and res.errors == 0
    assert res.requests == res.locust_requests and res.locust_failures == 0
    assert t0 < res.started_at < res.warmup_end == res.started_at + 1 < res.ended_at
    assert res.ended_at - res.started_at < 8 + 5

    t = pq.read_table(res.samples_path)
    assert t.schema.equals(SCHEMA)
    df = t.to_pandas()
    assert len(df) == res.requests == len(_records(url))
    assert set(df.stage) == {"low", "high"}
    assert (df.stage == "high").sum() > (df.stage == "low").sum()  # twice the users
    assert df.warmup.sum() > 0 and (df[df.warmup].t_start_s < res.warmup_end).all()
    assert (df.output_tokens == 16).all() and df.usage_reported.all()
    assert (df.prompt_tokens == df.prompt_words).all()  # the mock counts words
    _check_fidelity(df, _records(url))

    assert 5 <= len(progress) <= 14
    last = progress[-1]
    assert set(last) >= {
        "elapsed_s",
        "total_s",
        "stage",
        "users",
        "requests",
        "errors",
        "rps",
        "ttft_p50_ms",
        "ttft_p95_ms",
    }
    assert last["total_s"] == 8 and 0 < last["requests"] <= res.requests
    assert [p["stage"] for p in progress][:2] == ["low", "low"]
    assert (tmp_path / "locust" / "locust_stats.csv").exists() and (tmp_path / "locust" / "locust.log").exists()


@pytest.mark.exclusive
def test_two_workers_lose_nothing(mock_server, tmp_path):
    url = mock_server("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS))
    res = run_load(_scenario(url, workers=2), url, tmp_path)
    assert res.exit_code == 0 and res.errors == 0
    df = pq.read_table(res.samples_path).to_pandas()
    assert len(df) == res.requests == res.locust_requests == len(_records(url))
    assert df.worker.nunique() == 2 and len(list((tmp_path / "samples").glob("samples-*.jsonl"))) == 2
    _check_fidelity(df, _records(url))


def test_max_requests_is_exact_and_completions_api(mock_server, tmp_path):
    url = mock_server("--ttft-ms", "5", "--itl-ms", "1")
    t0 = time.time()
    res = run_load(
        _scenario(url, api="completions", max_requests=37, stages=[{"duration_s": 30, "users": 4, "spawn_rate": 50}]),
        url,
        tmp_path,
    )
    assert res.requests == 37 == res.locust_requests == len(_records(url))
    assert time.time() - t0 < 15  # stopped by the budget, not the 30 s stage


def test_errors_are_classified_and_reconciled(mock_server, tmp_path):
    url = mock_server("--ttft-ms", "5", "--itl-ms", "1", "--error-rate", "0.3")
    res = run_load(_scenario(url, stages=[{"duration_s": 3, "users": 2, "spawn_rate": 10}]), url, tmp_path)
    df = pq.read_table(res.samples_path).to_pandas()
    bad = df[~df.ok]
    assert 0 < res.errors == len(bad) == res.locust_failures
    assert set(bad.error) == {"http_500"} and set(bad.status) == {500} and bad.ttft_ms.isna().all()


def test_connection_refused_is_status_0(tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    res = run_load(
        _scenario(url, stages=[{"duration_s": 2, "users": 1, "spawn_rate": 10}], think_time_s=0.2), url, tmp_path
    )
    df = pq.read_table(res.samples_path).to_pandas()
    assert len(df) > 0 and set(df.error) == {"connection"} and set(df.status) == {0}
    assert res.requests == res.locust_requests


def test_stop_event_interrupts_and_keeps_samples(mock_server, tmp_path):
    url = mock_server("--ttft-ms", "5", "--itl-ms", "2")
    stop = threading.Event()
    threading.Timer(3.0, stop.set).start()
    t0 = time.time()
    res = run_load(
        _scenario(url, stages=[{"duration_s": 60, "users": 2, "spawn_rate": 10}]), url, tmp_path, stop_event=stop
    )
    assert res.interrupted and time.time() - t0 < 15
    assert res.requests > 0 and res.requests == len(_records(url)) == res.locust_requests


def test_broken_locustfile_is_a_load_error(tmp_path, monkeypatch):
    bad = tmp_path / "bad_locustfile.py"
    bad.write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.setattr(runner_mod, "LOCUSTFILE", bad)
    with pytest.raises(LoadError) as e:
        run_load(_scenario("http://127.0.0.1:9"), "http://127.0.0.1:9", tmp_path / "run")
    assert "boom at import" in e.value.render()


def test_api_key_is_sent_and_never_written(mock_server, tmp_path, monkeypatch):
    url = mock_server("--ttft-ms", "5", "--itl-ms", "1", "--api-key", "sk-test-Zq81")
    stages = [{"duration_s": 2, "users": 1, "spawn_rate": 10}]
    monkeypatch.setenv("MOCK_KEY", "sk-test-Zq81")
    sc = parse_scenario(
        {
            "name": "k",
            "target": {"engine": "external", "model": "m", "url": url, "api_key_env": "MOCK_KEY"},
            "load": {"stages": stages},
        }
    )
    res = run_load(sc, url, tmp_path / "with")  # key resolved from target.api_key_env
    assert res.requests > 0 and res.errors == 0
    for p in (tmp_path / "with").rglob("*"):
        assert not p.is_file() or b"sk-test-Zq81" not in p.read_bytes(), p
    res = run_load(_scenario(url, stages=stages), url, tmp_path / "without")
    df = pq.read_table(res.samples_path).to_pandas()
    assert res.requests == res.errors > 0 and set(df.error) == {"http_401"}


def test_locust_dying_mid_run_is_reported(mock_server, tmp_path):
    import os
    import signal

    url = mock_server("--ttft-ms", "5", "--itl-ms", "1")

    def kill_when_running() -> None:
        started = tmp_path / "locust" / "started_at"
        for _ in range(300):
            if started.exists():
                time.sleep(2)
                os.kill(int((tmp_path / "locust" / "locust.pid").read_text()), signal.SIGKILL)
                return
            time.sleep(0.1)

    threading.Thread(target=kill_when_running, daemon=True).start()
    res = run_load(_scenario(url, stages=[{"duration_s": 60, "users": 2, "spawn_rate": 10}]), url, tmp_path)
    assert res.exit_code == -signal.SIGKILL and "killed by signal 9" in res.message and not res.interrupted
    assert res.requests > 0  # what was flushed before the crash is still merged


def test_open_loop_constant_rate_split_over_two_workers(mock_server, tmp_path):
    url = mock_server("--ttft-ms", "5", "--itl-ms", "2")
    sc = _scenario(url, workers=2, stages=[{"duration_s": 4, "rate_rps": 20}], arrival={"process": "constant"})
    res = run_load(sc, url, tmp_path)
    df = pq.read_table(res.samples_path).to_pandas()
    # 2 processes × 10/s, phase-shifted: 80 arrivals in 4 s (+1 for the one at t=0 of each schedule at most)
    assert 78 <= len(df) <= 82 and res.errors == 0
    assert len(df) == res.locust_requests == len(_records(url)) and df.worker.nunique() == 2
    assert df.sched_s.notna().all() and df.lateness_ms.notna().all()
    assert res.generator["lateness_ms"]["count"] == len(df) and len(res.generator["processes"]) == 3  # master + 2
    gaps = df.sort_values("sched_s").sched_s.diff().dropna()
    assert abs(gaps.median() - 0.05) < 0.01  # the two schedules interleave


def test_trace_replay_split_over_two_workers(mock_server, tmp_path):
    """A generic-JSONL trace (out of order in the file, replayed 4x faster): each row sent once, by one of the two
    processes, at its scaled time."""
    url = mock_server("--ttft-ms", "5", "--itl-ms", "2")
    f = tmp_path / "t.jsonl"
    times_ms = [0, 400, 200, 1200, 1300, 1310, 1320, 4000, 8000, 20000]  # 20000 / 4 = 5 s: after the load
    f.write_text(
        "".join(
            json.dumps(
                {
                    "timestamp_ms": t,
                    "input_tokens": 10 + i,
                    "output_tokens": 3 + i % 4,
                    "prefix_id": "sys",
                    "prefix_tokens": 8,
                }
            )
            + "\n"
            for i, t in enumerate(times_ms)
        )
    )
    sc = parse_scenario(
        {
            "name": "trace-it",
            "target": {"engine": "external", "model": "mock", "url": url},
            "measure_only": True,
            "workload": {"request_timeout_s": 5, "trace": {"path": str(f), "format": "jsonl", "speedup": 4}},
            "load": {"workers": 2, "stages": [{"duration_s": 3}]},
        }
    )
    res = run_load(sc, url, tmp_path / "run")
    df = pq.read_table(res.samples_path).to_pandas()
    assert res.workload["rows"] == 9 and res.workload["rows_after_load"] == 1 and res.workload["reordered"]
    assert len(df) == 9 == len(_records(url)) and res.errors == 0 and df.worker.nunique() == 2
    want = sorted((t / 4000.0, 10 + i, 3 + i % 4) for i, t in enumerate(times_ms[:-1]))
    got = sorted(zip(df.sched_s - res.started_at, df.prompt_words, df.max_tokens))
    assert [g[1:] for g in got] == [w[1:] for w in want]
    assert max(abs(g[0] - w[0]) for g, w in zip(got, want)) < 1e-4
