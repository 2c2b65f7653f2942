"""Rates over the stats window (stage end, not the drain), and attached clusters: SessionName from the connected
cluster, the server window shifted by the export interval in force."""

import math

import pandas as pd

from harness.load.runner import stats_end_at
from harness.load.samples import derive
from harness.metrics import scrape as scrape_mod
from harness.metrics.cluster import server_window_shift_s
from harness.metrics.scrape import ScrapeResult, Window, _counter
from harness.slo.evaluate import client_stats


def test_stats_end_is_the_last_stage_end_not_the_drain():
    assert stats_end_at(1000.0, 1075.0, 60.0, 0.0) == 1060.0  # Locust drained until 1075
    assert stats_end_at(1000.0, 1075.0, 60.0, 10.0) == 1050.0  # cooldown start
    assert stats_end_at(1000.0, 1030.0, 60.0, 0.0) == 1030.0  # interrupted early


def test_server_counter_rate_counts_the_stats_window_only():
    # one request per second from t=100 to t=170; stats window 110..140; the drain runs to 170
    pts = [(float(t), float(max(0, t - 100))) for t in range(60, 171)]
    out = ScrapeResult({}, None, 0.0, True, {})
    _counter(out, "serve_requests", None, [pts], Window(100.0, 110.0, 140.0), 170.0)
    st = out.stats["serve_requests"]
    assert st["total_stats_window"] == 30.0 and st["rate"] == 1.0  # was 60 / 30 = 2.0
    assert st["total"] == 60.0 and st["total_run"] == 70.0


def test_requests_started_after_the_stages_are_not_measured():
    base = {"e2e_ms": 10.0, "ttft_ms": 1.0, "output_tokens": 2, "itl_ms": [1.0]}
    rows = [
        derive({**base, "t_start_s": t}, started_at=0.0, warmup_end=0.0, names=["s"], ends=[10.0], cooldown_start=10.0)
        for t in (1.0, 5.0, 10.5)
    ]
    stats = client_stats(pd.DataFrame(rows), 10.0)
    assert stats["requests"] == 2 and stats["requests_per_s"] == 0.2


def test_window_shift_follows_the_intervals_in_force():
    assert server_window_shift_s(1.0, 2.0) == 1.5  # local stack
    assert server_window_shift_s(10.0, 5.0) == 7.5  # Ray's default on an attached cluster
    assert server_window_shift_s(None, None) == 0.0


class _FakeProm:
    """Prometheus answers for two Ray sessions on one shared server: `other` has the newest samples."""

    url = "http://fake"
    timeout_s = 1.0

    def __init__(self, series):
        self.series = series  # selector substring → list of (labels, points)
        self.ranges = []

    def names(self):
        return {"ray_serve_num_router_requests_total", "ray_cluster_active_nodes"}

    def instant(self, q, at=None):
        return [
            {"metric": {"SessionName": "session_mine"}, "values": [[100.0, "1"]]},
            {"metric": {"SessionName": "session_other"}, "values": [[200.0, "1"]]},
        ]

    def scalar(self, q, at=None):
        return 1.0

    def range(self, q, start, end, step_s):
        self.ranges.append(q)
        return [{"metric": {}, "values": [[t, str(v)] for t, v in pts]} for key, pts in self.series.items() if key in q]


def _scrape(monkeypatch, **kw):
    pts = [(float(t), float(max(0, t - 100))) for t in range(60, 171)]
    fake = _FakeProm({"session_mine": pts})
    monkeypatch.setattr(scrape_mod, "Prom", lambda url: fake)
    monkeypatch.setattr(scrape_mod, "scrape_interval_s", lambda prom: 5.0)
    out = scrape_mod.scrape(
        "http://fake",
        Window(100.0, 110.0, 140.0),
        model="m",
        app="app",
        step_s=1.0,
        settle_timeout_s=0.0,
        settle_quiet_s=0.0,
        signals=("serve_requests",),
        **kw,
    )
    return out, fake


def test_session_comes_from_the_connected_cluster_not_the_newest_sample(monkeypatch):
    out, fake = _scrape(monkeypatch, session="session_mine", export_interval_s=10.0)
    assert out.session == "session_mine" and out.session_source == "cluster"
    assert all("session_mine" in q for q in fake.ranges)
    # 10 s export + 5 s scrape: the window is read 7.5 s later, still 30 s long → 30 requests
    assert out.window_shift_s == 7.5 and out.stats["serve_requests"]["total_stats_window"] == 30.0


def test_without_cluster_facts_the_newest_session_is_a_labelled_guess(monkeypatch):
    out, _ = _scrape(monkeypatch)
    assert out.session == "session_other" and out.session_source == "newest sample"
    assert math.isclose(out.window_shift_s, 2.5)


def test_later_turns_of_an_open_loop_session_count_from_their_send():
    base = {"e2e_ms": 100.0, "ttft_ms": 10.0, "output_tokens": 2, "itl_ms": [1.0]}
    first = derive(
        {**base, "t_start_s": 1.0, "sched_s": 0.9, "lateness_ms": 100.0},
        started_at=0.0,
        warmup_end=0.0,
        names=["s"],
        ends=[10.0],
    )
    later = derive({**base, "t_start_s": 2.0, "turn": 1}, started_at=0.0, warmup_end=0.0, names=["s"], ends=[10.0])
    stats = client_stats(pd.DataFrame([first, later]), 10.0)
    assert stats["latency_from"] == "scheduled arrival" and stats["ttft_ms"]["count"] == 2
    assert stats["ttft_ms"]["max"] == 110.0 and stats["ttft_ms"]["min"] == 10.0
