"""Verdicts: goodput, scopes, == for counts, autoscaling signals and their reasons (pure, on synthetic data)."""

import numpy as np
import pandas as pd
import pytest

from harness.metrics.scrape import Window
from harness.record.schema import ClientStats, ServerStat
from harness.run.evaluate import evaluate_run
from harness.scenario import parse_scenario
from harness.slo.evaluate import EvalContext, client_stats, evaluate, goodput_stats

T0 = 1000.0
STAGES = [
    {"name": "low", "duration_s": 10, "users": 2, "spawn_rate": 2},
    {"name": "step", "duration_s": 10, "users": 8, "spawn_rate": 100},
]


def samples():
    t = np.arange(0, 20, 0.5)
    ttft = np.where(t < 10, 50.0, 400.0)  # slow during the step
    return pd.DataFrame(
        {
            "t_start_s": T0 + t,
            "ttft_ms": ttft,
            "e2e_ms": ttft + 500,
            "tpot_ms": np.where(t < 15, 10.0, 60.0),
            "itl_ms": [[10.0, 12.0]] * len(t),
            "itl_max_ms": 12.0,
            "output_tokens": 50,
            "ok": t != 12.0,
            "error": np.where(t == 12.0, "HTTP 500", None),
            "warmup": t < 2,
            "stage": np.where(t < 10, "low", "step"),
        }
    )


def test_goodput_counts_ok_requests_meeting_every_bound():
    s = samples()
    g = goodput_stats(s, {"ttft_ms": 300, "tpot_ms": 50}, duration_s=18.0)
    post = s[~s["warmup"]]
    expect = int(((post["ttft_ms"] <= 300) & (post["tpot_ms"] <= 50) & post["ok"]).sum())
    assert g["total"] == expect and g["attainment"] == pytest.approx(expect / len(post))
    assert g["rate"] == pytest.approx(expect / 18.0)


def test_evaluate_run_goodput_scopes_and_autoscaling():
    s = samples()
    rows = pd.DataFrame(
        [{"signal": "replicas", "t": T0 + t, "value": 1.0 if t < 14 else 2.0} for t in range(0, 21)]
        + [{"signal": "target_replicas", "t": T0 + t, "value": 1.0 if t < 11 else 2.0} for t in range(0, 21)]
        + [{"signal": "kv_cache_usage", "t": T0 + t, "value": 0.1 if t < 10 else 0.8} for t in range(0, 21)]
    )
    sc = {
        "name": "t",
        "load": {"warmup_s": 2, "stages": STAGES},
        "target": {"engine": "sim", "model": "sim-tiny", "autoscaling": {"max_replicas": 3}},
        "goodput": {"ttft_ms": 300, "tpot_ms": None},
        "slos": [
            "goodput.attainment >= 90%",
            "goodput.rate > 0",
            "ttft.p95 <= 100ms @low",
            "ttft.p95 <= 100ms @step",
            "ttft.p95 <= 100ms @steady",
            "kv_cache_usage.max < 0.5 @low",
            "kv_cache_usage.max < 0.5",
            "scale_up_time.max <= 5s",
            "flaps.total == 0",
            "replicas.max >= 3",
            "scale_down_time.max <= 60s",
        ],
    }
    client = ClientStats.model_validate(client_stats(s, 18.0))
    server = {"kv_cache_usage": ServerStat(max=0.8), "replicas": ServerStat(max=2.0)}
    before = client.model_dump()
    ev = evaluate_run(
        parse_scenario(sc),
        s,
        rows,
        client,
        server,
        {"kv_cache_usage": "k", "replicas": "r"},
        Window(T0, T0 + 2, T0 + 20),
    )
    assert client.model_dump() == before and ev.client.goodput is not None  # new data, the input is not mutated
    got = {x.slo: x for x in ev.verdicts}
    assert not got["goodput.attainment >= 90%"].passed  # half the requests are slow
    assert got["goodput.rate > 0"].passed
    assert got["ttft.p95 <= 100ms @low"].passed and not got["ttft.p95 <= 100ms @step"].passed
    assert got["ttft.p95 <= 100ms @low"].scope == "low" and "@low" in got["ttft.p95 <= 100ms @low"].source
    assert got["kv_cache_usage.max < 0.5 @low"].passed and not got["kv_cache_usage.max < 0.5"].passed
    assert got["scale_up_time.max <= 5s"].observed == pytest.approx(4000.0) and got["scale_up_time.max <= 5s"].passed
    assert got["flaps.total == 0"].passed
    r = got["replicas.max >= 3"]
    assert not r.passed and r.reason == "observed 2 is not >= 3"  # a bound above max_replicas is refused at load
    d = got["scale_down_time.max <= 60s"]
    assert not d.passed and d.observed is None and "no scale-down happened" in d.reason
    assert ev.autoscaling["scale_ups"][0]["time_s"] == pytest.approx(4.0)
    assert set(ev.scopes) == {"low", "step", "steady"}


def test_autoscaling_slo_without_replica_series_says_why():
    v = evaluate(["scale_up_time.max <= 60s", "churn <= 1"], client_stats(samples(), 18.0), {}, {}, EvalContext())
    assert all(not x.passed and "no replica series" in x.reason for x in v)


def test_equals_for_counts():
    ctx = EvalContext(autoscaling={"stats": {"flaps": {"total": 1.0}}, "notes": {}})
    (v,) = evaluate(["flaps.total == 0"], {}, {}, {}, ctx)
    assert not v.passed and v.observed == 1.0 and "is not == 0" in v.reason
